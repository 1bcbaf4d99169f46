"""What a testbed can leave behind, for the tests that take one down in every way a run ends."""

from __future__ import annotations

import subprocess

from common.paths import BPF_ROOT, STATE_DIR
from hosts.cgroups import V1_CPU_ROOT, _base
from hosts.testbed import existing_namespaces


def leftovers(prefix: str) -> list[str]:
    """Everything of a testbed that can outlive it: namespaces, links, state, pins."""
    found = [ns for ns in existing_namespaces() if ns.startswith(prefix + "-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line for line in links.splitlines() if prefix in line]
    if (STATE_DIR / f"{prefix}.json").exists():
        found.append("state file")
    if (BPF_ROOT / prefix).exists():
        found.append("bpf pins")
    if _base() is not None and (_base() / prefix).exists():
        found.append("cgroup")
    if (V1_CPU_ROOT / "miresga" / prefix).exists():
        found.append("cpu cgroup (budget)")
    mounts = open("/proc/mounts").read()
    found += [m for m in mounts.splitlines() if f"{prefix}-" in m]
    return found
