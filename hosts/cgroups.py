"""CPU accounting per emulated host, with one cgroup per host.

Every command a NetnsHost runs joins its host's cgroup before it executes, so
the cgroup's CPU counter covers all of a role's processes, those that have
already exited included (a wrk thread, an nginx worker that was replaced).
Summing /proc/PID/stat over the processes alive at the end of a run would
miss those.

cgroup v2 (`cpu.stat` usage_usec) and v1 (`cpuacct.usage`) both work; the
machine decides which exists.  Softirq work (the veth and eBPF path) is not
charged to any cgroup: the bench reads it machine-wide from /proc/stat.
"""

from __future__ import annotations

import os
from pathlib import Path

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpuacct")


def _base() -> Path | None:
    if (V2_ROOT / "cgroup.controllers").exists():
        return V2_ROOT / "miresga"
    if (V1_ROOT / "cpuacct.usage").exists():
        return V1_ROOT / "miresga"
    return None


class HostCgroup:
    def __init__(self, testbed_prefix: str, host: str):
        base = _base()
        self.path = base / testbed_prefix / host if base else None
        self.v2 = base is not None and base.parent == V2_ROOT

    @property
    def available(self) -> bool:
        return self.path is not None

    def create(self) -> None:
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)

    def join_snippet(self) -> str:
        """Shell that moves the current shell (and so its children) into the cgroup."""
        if self.path is None:
            return ""
        return f"echo $$ > {self.path}/cgroup.procs; "

    def usage_ns(self) -> int | None:
        """CPU time of everything that ever ran in the cgroup, in nanoseconds."""
        if self.path is None:
            return None
        try:
            if self.v2:
                for line in (self.path / "cpu.stat").read_text().splitlines():
                    k, v = line.split()
                    if k == "usage_usec":
                        return int(v) * 1000
                return None
            return int((self.path / "cpuacct.usage").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def pids(self) -> list[int]:
        if self.path is None:
            return []
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []


def remove_testbed_cgroups(prefix: str) -> None:
    """rmdir a testbed's cgroups; their processes must be gone already."""
    base = _base()
    if base is None:
        return
    root = base / prefix
    if not root.exists():
        return
    for child in sorted(root.iterdir(), reverse=True):
        if child.is_dir():
            try:
                os.rmdir(child)
            except OSError:
                pass
    try:
        os.rmdir(root)
    except OSError:
        pass
