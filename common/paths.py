"""Where things are: the checkout, its build outputs and results, and a testbed's state.

Each is stated here once.  Host-side tools (the switch host's daemon, the agent)
import this module with a bare python3: standard library only.
"""

from __future__ import annotations

from pathlib import Path

#: The checkout (on a real host: where `python -m bench remote deploy` put it).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: What `make build` writes: eBPF objects, the front-end, probes, the object cache.
BUILD_DIR = REPO_ROOT / "build"
#: Campaign results, one directory per campaign (results/<campaign>/).
RESULTS_ROOT = REPO_ROOT / "results"

#: Work directories of emulated testbeds (WORK_ROOT/<prefix>/<host>).
WORK_ROOT = Path("/tmp/miresga")
#: State files of emulated testbeds that are up (STATE_DIR/<prefix>.json).
STATE_DIR = Path("/run/miresga/testbeds")
#: Targets left running by `python -m bench up`: a state file, a control
#: socket and the log of the process that owns them, per testbed prefix.
SESSION_DIR = Path("/run/miresga/sessions")
#: bpffs directory under which every testbed and component pins its maps.
BPF_ROOT = Path("/sys/fs/bpf/miresga")
