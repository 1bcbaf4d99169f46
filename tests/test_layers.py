"""The tools that run on real switch and back-end hosts need nothing but python3.

Those hosts have a bare python3: no venv, no pydantic.  Each host-side tool
is imported, and its command line asked for --help, by the system python3
with -S (no site-packages at all) from the repository root, as `python3 -m`
runs it on a host; every module it loads must be the standard library's or
the project's.  (The import contracts in pyproject.toml check the same
statically; this runs it.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
PROJECT = {"bench", "plots", "analysis", "targets", "hosts", "miresga", "switchhost", "workloads",
           "common"}
HOST_TOOLS = ["switchhost", "switchhost.ctl", "miresga.control.agent"]
# Everything the daemon loads, pipelines included (the import above loads them too).
HOST_LIBRARIES = ["switchhost.daemon", "switchhost.pipelines.miresga",
                  "switchhost.pipelines.l4switch", "switchhost.server", "switchhost.client"]


def bare_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SYSTEM_PYTHON, "-S", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_bare_python_has_no_third_party_packages():
    """The check below means something: -S leaves pydantic (installed for the bench) out."""
    r = bare_python("-c", "import pydantic")
    assert r.returncode != 0 and "No module named 'pydantic'" in r.stderr


@pytest.mark.parametrize("module", HOST_TOOLS + HOST_LIBRARIES)
def test_host_side_module_loads_only_the_standard_library(module):
    r = bare_python("-c", f"import sys, {module}; print(' '.join(sorted(sys.modules)))")
    assert r.returncode == 0, r.stderr
    loaded = {m.split(".")[0] for m in r.stdout.split()}
    assert loaded - set(sys.stdlib_module_names) - PROJECT - {"__main__"} == set()


@pytest.mark.parametrize("module", HOST_TOOLS)
def test_host_side_tool_command_line_runs(module):
    r = bare_python("-m", module, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout


def test_the_prober_runs_with_a_bare_python():
    """workloads/probe/httpprobe.py is copied to the client host and run as a script."""
    r = bare_python(str(REPO / "workloads" / "probe" / "httpprobe.py"), "--help")
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout


def test_the_layouts_generator_runs_with_a_bare_python():
    """scripts/gen_layouts.py is run by `make build` with the system python3,
    before (and without) the project's venv."""
    r = bare_python(str(REPO / "scripts" / "gen_layouts.py"), "--help")
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout
