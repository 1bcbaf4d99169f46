"""CPU accounting per emulated host, with one cgroup per host.

Every command a NetnsHost runs joins its host's cgroup before it executes, so
the cgroup's CPU counter covers all of a role's processes, those that have
already exited included (a wrk thread, an nginx worker that was replaced).
Summing /proc/PID/stat over the processes alive at the end of a run would
miss those.

cgroup v2 (`cpu.stat` usage_usec) and v1 (`cpuacct.usage`) both work; the
machine decides which exists.  Softirq work (the veth and eBPF path) is not
charged to any cgroup: the bench reads it machine-wide from /proc/stat.

A host can also be given a CPU budget (`set_cpu_quota`: the front-end budget
of an experiment, `frontend_cpu_cores`): a CFS bandwidth quota, `cpu.max` on
cgroup v2, `cpu.cfs_quota_us` / `cpu.cfs_period_us` in v1's cpu hierarchy
(mounted apart from cpuacct, so the host gets a second cgroup there).  A host
joins that cgroup only once it has been given a budget, so hosts never given
one are scheduled exactly as before (no group of their own in the cpu
controller); a lifted budget leaves the host's processes in their group,
uncapped, until the testbed goes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpuacct")
V1_CPU_ROOT = Path("/sys/fs/cgroup/cpu")
# The CFS bandwidth period: the kernel's default, so a quota of 0.25 core is
# 25 ms of CPU per 100 ms.
CPU_PERIOD_US = 100_000
# The kernel refuses quotas below 1 ms.
MIN_CPU_CORES = 0.01
# v1: how long moving a host's processes into its cpu cgroup may take, pass after
# pass, before a tree that keeps forking outside it is an error.
MOVE_DEADLINE_S = 10.0


class CgroupError(Exception):
    """A CPU quota cannot be applied on this machine, or the kernel refused it."""


def _base() -> Path | None:
    if (V2_ROOT / "cgroup.controllers").exists():
        return V2_ROOT / "miresga"
    if (V1_ROOT / "cpuacct.usage").exists():
        return V1_ROOT / "miresga"
    return None


def cpu_quota_support() -> str:
    """How this machine caps a cgroup's CPU: "v2" (cpu.max) or "v1" (cpu.cfs_quota_us);
    CgroupError saying what is missing when neither works."""
    if (V2_ROOT / "cgroup.controllers").exists():
        if "cpu" in (V2_ROOT / "cgroup.controllers").read_text().split():
            return "v2"
        raise CgroupError(f"cgroup v2 is mounted at {V2_ROOT} without the cpu controller "
                          f"({V2_ROOT / 'cgroup.controllers'}): no cpu.max, so a CPU budget "
                          f"cannot be applied")
    if (V1_CPU_ROOT / "cpu.cfs_quota_us").exists():
        if (V1_ROOT / "cpuacct.usage").exists():
            return "v1"
        raise CgroupError(f"cgroup v1's cpu controller is mounted at {V1_CPU_ROOT} but not "
                          f"cpuacct at {V1_ROOT}: a budgeted host's CPU could not be measured")
    raise CgroupError(f"neither cgroup v2's cpu controller ({V2_ROOT}/cpu.max) nor cgroup "
                      f"v1's ({V1_CPU_ROOT}/cpu.cfs_quota_us) is mounted: a CPU budget "
                      f"cannot be applied (CONFIG_CFS_BANDWIDTH, and the cpu controller "
                      f"mounted, are needed)")


class HostCgroup:
    def __init__(self, testbed_prefix: str, host: str):
        base = _base()
        self.path = base / testbed_prefix / host if base else None
        self.v2 = base is not None and base.parent == V2_ROOT
        # Where the CPU quota is set: the same cgroup on v2, one in v1's cpu
        # hierarchy otherwise (created by set_cpu_quota).
        self.cpu_path = (self.path if self.v2
                         else V1_CPU_ROOT / "miresga" / testbed_prefix / host
                         if self.path is not None else None)

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
        join = f"echo $$ > {self.path}/cgroup.procs; "
        if not self.v2:
            # v1: the cpu hierarchy's cgroup exists once the host has a budget.
            cpu = self.cpu_path / "cgroup.procs"
            join += f"if [ -e {cpu} ]; then echo $$ > {cpu}; fi; "
        return join

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


    # ------------------------------------------------------------ CPU budget
    def set_cpu_quota(self, cores: float | None) -> dict:
        """Cap everything the host runs, now and later, at `cores` CPUs (None: no cap).
        Returns what the kernel now holds (cpu_quota_settings)."""
        if self.path is None:
            raise CgroupError("this host has no cgroup of its own (no cgroup mounted)")
        if cores is not None and cores < MIN_CPU_CORES:
            raise CgroupError(f"a CPU budget of {cores} cores is below the kernel's least "
                              f"quota ({MIN_CPU_CORES} cores at a {CPU_PERIOD_US} us period)")
        if cores is None and self.cpu_quota_settings()["cores"] is None:
            return self.cpu_quota_settings()    # no cap, and none to lift
        kind = cpu_quota_support()
        quota = -1 if cores is None else max(1000, round(cores * CPU_PERIOD_US))
        try:
            if kind == "v2":
                _enable_v2_cpu(self.path)
                (self.path / "cpu.max").write_text(
                    f"{'max' if quota < 0 else quota} {CPU_PERIOD_US}\n")
            else:
                self.cpu_path.mkdir(parents=True, exist_ok=True)
                (self.cpu_path / "cpu.cfs_period_us").write_text(f"{CPU_PERIOD_US}\n")
                (self.cpu_path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
                self._move_into_cpu_cgroup()
        except OSError as e:
            raise CgroupError(f"setting a CPU quota of {cores} cores on {self.cpu_path}: "
                              f"{e}") from None
        return self.cpu_quota_settings()

    def _move_into_cpu_cgroup(self) -> None:
        """v1: every process the host already runs joins the cpu cgroup (those it starts
        later join it in join_snippet; children follow their parent).  A child forked
        before its parent moved stays behind, so a busy tree (a shell script's
        pipelines, a pyenv shim) takes one pass per generation: passes until none is
        left, bounded by time, not by a count a loaded machine outruns."""
        deadline = time.monotonic() + MOVE_DEADLINE_S
        while True:
            moving = set(self.pids()) - set(self._cpu_pids())
            if not moving:
                return
            if time.monotonic() > deadline:
                raise CgroupError(f"{self.path}: processes kept appearing outside "
                                  f"{self.cpu_path} for {MOVE_DEADLINE_S} s: {sorted(moving)}")
            for pid in moving:
                try:
                    (self.cpu_path / "cgroup.procs").write_text(f"{pid}\n")
                except ProcessLookupError:
                    pass        # exited meanwhile

    def _cpu_pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.cpu_path / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def cpu_quota_settings(self) -> dict:
        """The quota the kernel holds: cores (None: none), quota_us, period_us."""
        quota, period = -1, CPU_PERIOD_US
        try:
            if self.v2:
                q, p = (self.cpu_path / "cpu.max").read_text().split()
                quota, period = (-1 if q == "max" else int(q)), int(p)
            elif self.cpu_path is not None and self.cpu_path.exists():
                quota = int((self.cpu_path / "cpu.cfs_quota_us").read_text())
                period = int((self.cpu_path / "cpu.cfs_period_us").read_text())
        except (FileNotFoundError, ValueError):
            pass
        return {"cores": None if quota < 0 else quota / period,
                "quota_us": None if quota < 0 else quota, "period_us": period}

    def cpu_throttling(self) -> dict | None:
        """The bandwidth counters: periods with runnable tasks (nr_periods), periods in
        which the quota ran out (nr_throttled) and the time throttled (throttled_s)."""
        if self.cpu_path is None:
            return None
        try:
            stat = dict(line.split() for line in
                        (self.cpu_path / "cpu.stat").read_text().splitlines())
        except (FileNotFoundError, ValueError):
            return None
        throttled_ns = (int(stat["throttled_usec"]) * 1000 if "throttled_usec" in stat
                        else int(stat.get("throttled_time", 0)))
        return {"nr_periods": int(stat.get("nr_periods", 0)),
                "nr_throttled": int(stat.get("nr_throttled", 0)),
                "throttled_s": throttled_ns / 1e9}


def _enable_v2_cpu(path: Path) -> None:
    """v2: the cpu controller enabled from the root down to `path`'s parent."""
    for parent in reversed(path.parents):
        if parent == V2_ROOT or V2_ROOT in parent.parents:
            ctl = parent / "cgroup.subtree_control"
            if "cpu" not in ctl.read_text().split():
                ctl.write_text("+cpu\n")


def remove_testbed_cgroups(prefix: str) -> None:
    """rmdir a testbed's cgroups; their processes must be gone already."""
    base = _base()
    if base is None:
        return
    if base.parent != V2_ROOT:
        _remove_tree(V1_CPU_ROOT / "miresga" / prefix)
    _remove_tree(base / prefix)


def _remove_tree(root: Path) -> None:
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
