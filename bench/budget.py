"""The front-end CPU budget: every L7 target's front-end host capped at the same CPU.

An experiment sets `frontend_cpu_cores` (a parameter like conn_mode; a list
sweeps it).  Before a point's warm-up the runner caps every host of the
target's front-end role (HAProxy's, nginx's, the Miresga front-end's) at that
many CPUs with a CFS bandwidth quota on the host's cgroup (hosts/cgroups.py),
or lifts the cap for a point without a budget.  The quota changes on the
running deployment: a budget sweep costs no redeploy.

Every point records what the kernel held and how often the quota ran out
during the measured run (nr_throttled of nr_periods): a budget that never
throttled did not limit the point, so its throughput is not the budget's.
"""

from __future__ import annotations

from common.errors import ConfigError
from hosts.cgroups import CgroupError, cpu_quota_support


def check_supported(points, inventory) -> None:
    """Refuse, before a testbed exists, a campaign that asks for a budget this
    machine (or a testbed of SSH hosts, which have no cgroup of the bench's) cannot give."""
    asked = sorted({p.params["frontend_cpu_cores"] for p in points
                    if getattr(p, "params", {}).get("frontend_cpu_cores") is not None})
    if not asked:
        return
    if inventory is not None:
        raise ConfigError(f"frontend_cpu_cores = {asked}: a CPU budget is applied to an "
                          f"emulated host's cgroup; the hosts of an inventory have none")
    try:
        cpu_quota_support()
    except CgroupError as e:
        raise ConfigError(f"frontend_cpu_cores = {asked}: {e}") from None


class FrontendBudget:
    """The cap of one point on a target's front-end hosts, and its throttling counters."""

    def __init__(self, target, cores: float | None):
        self.cores = cores
        self.hosts = [h for h in target.frontend_hosts() if getattr(h, "cgroup", None)]
        self.settings: dict[str, dict] = {}
        self._before: dict[str, dict | None] = {}

    def apply(self) -> "FrontendBudget":
        for h in self.hosts:
            try:
                self.settings[h.name] = h.cgroup.set_cpu_quota(self.cores)
            except CgroupError as e:
                raise CgroupError(f"front-end host {h.name}: {e}") from None
        return self

    def snapshot(self) -> None:
        """Counters at the start of the measured run."""
        self._before = {h.name: h.cgroup.cpu_throttling() for h in self.hosts}

    def result(self) -> dict:
        """The budget as the point's metrics record it: cores, per host the quota held
        and the throttling counters' deltas over the measured run."""
        hosts = {}
        for h in self.hosts:
            before, after = self._before.get(h.name), h.cgroup.cpu_throttling()
            delta = ({k: after[k] - before[k] for k in after}
                     if before is not None and after is not None else None)
            hosts[h.name] = {**self.settings.get(h.name, {}), "throttling": delta}
        periods = sum((v["throttling"] or {}).get("nr_periods", 0) for v in hosts.values())
        throttled = sum((v["throttling"] or {}).get("nr_throttled", 0) for v in hosts.values())
        return {"cores": self.cores, "hosts": hosts,
                "throttled_share": throttled / periods if periods else None}
