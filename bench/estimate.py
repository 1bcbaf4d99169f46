"""How long a campaign will take: the dry run's estimate.

The load itself is known exactly (each point's warm-up and measured seconds,
each fault run's duration); what surrounds it is not, and is estimated from
costs measured on the emulated testbed of this repository (2 vCPUs, the
default topology and objects, `bench run experiments/quick.toml` with the
phases timed):

- the testbed: namespaces up, nginx on every back-end with the objects put
  there, the campaign's metadata; and down at the end;
- each deployment of a target (once per target, or once per target and
  repetition with `interleave`): deploy, start, wait until healthy;
- its integrity check: every object fetched `rounds` times with curl on the
  client (a process per fetch) and hashed;
- each point: starting wrk twice (warm-up and load), the response-header
  probe, the target's counters before and after, CPU snapshots, the result file;
- each fault run: the prober's start, the fault's undo (a back-end restarted,
  a flow table drained).

Points that are not applicable to their target (bench/reroute.py: the
re-route workload where there is no L7 decision) cost nothing: they are
recorded, not run, and a target with nothing else to run is not deployed.

On real hosts or a busier machine the overheads grow; the load does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.clients import START_LEAD_S
from bench.faults import FaultPoint
from bench.loadcurve import OpenLoopPoint
from bench.reroute import not_applicable
from targets.base import available

TESTBED_S = 6.0
#: deploy + start + healthy, per target (a target not listed: DEFAULT_DEPLOY_S)
DEPLOY_S = {"direct": 0.2, "haproxy": 1.5, "nginx": 1.5, "l4switch": 3.0, "miresga": 5.0}
DEFAULT_DEPLOY_S = 5.0
#: one fetch of the integrity check, beyond its bytes (curl and sha256sum start)
FETCH_S = 0.03
#: bytes a second the integrity check fetches and hashes
INTEGRITY_BYTES_PER_S = 200e6
POINT_S = 1.0
FAULT_S = 3.0
#: an open-loop point beyond its load: the agreed start of the clients' generators,
#: their start and end (measured: 6.5 s on the emulated testbed, 2 clients, busy)
OPENLOOP_S = START_LEAD_S + 3.0


@dataclass
class Estimate:
    testbed_s: float = 0.0
    deployments: int = 0
    deploy_s: float = 0.0
    integrity_s: float = 0.0
    points: int = 0
    load_s: float = 0.0
    overhead_s: float = 0.0
    not_applicable: int = 0

    @property
    def total_s(self) -> float:
        return (self.testbed_s + self.deploy_s + self.integrity_s + self.load_s
                + self.overhead_s)

    def describe(self) -> str:
        return (f"{duration(self.total_s)}: testbed {duration(self.testbed_s)}, "
                f"{self.deployments} deployments {duration(self.deploy_s)} + integrity checks "
                f"{duration(self.integrity_s)}, {self.points} points "
                f"{duration(self.load_s)} of load + {duration(self.overhead_s)} around it"
                + (f" ({self.not_applicable} more not applicable, not run)"
                   if self.not_applicable else ""))


def duration(s: float) -> str:
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def estimate(campaign, todo: list) -> Estimate:
    """How long running `todo` (points of `campaign`) should take."""
    est = Estimate()
    if not todo:
        return est
    exp = campaign.exp
    known = available()
    est.testbed_s = TESTBED_S  # the runner brings the testbed up for any point to do
    measured = [p for p in todo if isinstance(p, FaultPoint) or not_applicable(
        exp.workloads.get(p.workload), p.params["conn_mode"], known[p.target.name].layer7,
        p.target.name) is None]
    est.not_applicable = len(todo) - len(measured)
    todo = measured
    if not todo:
        return est
    backends = len(campaign.topology.hosts("backend"))
    objects = exp.workloads.objects
    n_objects = len(objects.all_paths())
    n_bytes = sum(size for _, size in objects.all_paths())
    interleave = exp.spec.campaign.interleave
    groups = {(p.target.key, p.repetition if interleave and not isinstance(p, FaultPoint)
               else None): p.target for p in todo}
    for target in groups.values():
        cls = known[target.name]
        # L7 targets: one more round, alternating clusters (bench/reroute.py).
        rounds = cls.integrity_rounds_for(backends) + (cls.layer7 and backends >= 2)
        est.deployments += 1
        est.deploy_s += DEPLOY_S.get(target.name, DEFAULT_DEPLOY_S)
        est.integrity_s += rounds * (n_objects * FETCH_S + n_bytes / INTEGRITY_BYTES_PER_S)
    for p in todo:
        est.points += 1
        if isinstance(p, FaultPoint):
            est.load_s += p.spec.duration_s
            est.overhead_s += FAULT_S
        elif isinstance(p, OpenLoopPoint):
            # The generators draw their URLs and start together START_LEAD_S after
            # being started; the wait for the last timeouts is rare.
            est.load_s += p.spec.warmup_s + p.spec.duration_s
            est.overhead_s += OPENLOOP_S
        else:
            est.load_s += p.params["warmup_s"] + p.params["duration_s"]
            est.overhead_s += POINT_S
    return est
