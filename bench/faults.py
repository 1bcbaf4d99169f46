"""Faults during a run: does the load balancer keep serving, and is every byte intact?

An experiment's `[faults]` table adds, for each listed target, one fault run
per (fault, repetition) after the target's measurement points, on the same
deployment:

    [faults]
    run = ["backend_killed", "frontend_restarted", "table_full", "syn_flood"]
    targets = ["haproxy", "nginx", "l4switch", "miresga"]   # default: every L7 target
    duration_s = 20      # the prober's run
    at_s = 6             # when the fault strikes
    conn_mode = "close"  # one connection per request: every request crosses setup

A fault run drives the time-resolved prober (workloads/probe/httpprobe.py) at
the target's endpoint, injects the fault at `at_s`, and records per 100 ms bin
how many requests succeeded, failed or came back corrupt (every response is
checked against the manifest's sha256), then derives: requests failed, the
time from the fault until requests stopped failing (recovery), whether the
target kept serving (some request succeeded after the fault; degraded is
fine, stuck is not), and whether every completed response was intact.

Faults:
- backend_killed: SIGKILL to one back-end's web server (the last back-end of
  the service); restarted after the run.
- frontend_restarted: the target restarts its front-end process(es)
  (Target.restart_frontend); targets without a front-end: not applicable.
- frontend_killed: SIGKILL to one of several front-ends (Target.kill_frontend,
  the last one); the others must take its clients; restarted after the run.
  Targets with fewer than two front-ends: not applicable.
- table_full: the target fills its switch flow table (Target.fill_flow_table),
  so new connections cannot be offloaded; drained after the run.
- syn_flood: hping3 on an `extra` host floods the VIP with spoofed SYNs at
  `flood_pps` for the rest of the run.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.paths import REPO_ROOT

PROBER = REPO_ROOT / "workloads" / "probe" / "httpprobe.py"
FaultName = Literal["backend_killed", "frontend_restarted", "frontend_killed", "table_full",
                    "syn_flood"]
FAULTS: tuple[str, ...] = FaultName.__args__  # type: ignore[attr-defined]


class NotApplicable(Exception):
    """The fault does not exist for this target (e.g. no front-end to restart)."""


class FaultsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    run: list[FaultName] = Field(min_length=1)
    targets: list[str] | None = None
    repetitions: int = Field(default=1, ge=1, le=100)
    duration_s: Annotated[float, Field(gt=2, le=3600)] = 20.0
    at_s: Annotated[float, Field(gt=0)] = 6.0
    concurrency: int = Field(default=4, ge=1, le=256)
    conn_mode: Literal["keep-alive", "close"] = "close"
    timeout_s: float = Field(default=3.0, gt=0, le=60)
    flood_pps: int = Field(default=20000, ge=1, le=10_000_000)
    bin_ms: float = Field(default=100.0, ge=10, le=10000)

    def model_post_init(self, _ctx) -> None:
        if self.at_s >= self.duration_s:
            raise ValueError(f"faults.at_s: {self.at_s} must be before the end of the run "
                             f"(duration_s = {self.duration_s})")


@dataclass(frozen=True)
class FaultPoint:
    """One fault run: a target, a fault, a repetition."""

    index: int
    target: Any          # experiment.TargetSpec
    fault: str
    repetition: int
    spec: FaultsSpec
    kind: str = "fault"

    @property
    def id(self) -> str:
        return f"{self.target.key}/faults/{self.fault}/rep{self.repetition}"

    @property
    def relpath(self) -> str:
        return self.id + ".json"

    @property
    def workload(self) -> str:  # for the progress line
        return f"fault:{self.fault}"


# ------------------------------------------------------------------ analysis

def analyse(probe: dict, inject_at_s: float, undone_at_s: float | None = None) -> dict:
    """Outcome of a fault run from the prober's bins.

    recovery_s: from the fault to the end of the last bin with a failure (0
    if nothing failed after the fault); None if requests were still failing
    in the last bin (not recovered within the run).
    """
    b = probe["bin_s"]
    ok, failed, corrupt = probe["ok"], probe["failed"], probe["corrupt"]
    first = int(inject_at_s / b)
    bad_bins = [i for i in range(first, len(ok)) if failed[i] or corrupt[i]]
    still_failing = bool(bad_bins) and bad_bins[-1] >= len(ok) - 1
    recovery = None if still_failing else (
        max(0.0, (bad_bins[-1] + 1) * b - inject_at_s) if bad_bins else 0.0)
    after_ok = sum(ok[first:])
    before = slice(0, first)
    return {
        "requests_ok": probe["totals"]["ok"],
        "requests_failed": probe["totals"]["failed"],
        "responses_corrupt": probe["totals"]["corrupt"],
        "failed_before_fault": sum(failed[before]) + sum(corrupt[before]),
        "failed_after_fault": sum(failed[first:]) + sum(corrupt[first:]),
        "ok_per_s_before": sum(ok[before]) / max(first * b, b),
        "ok_per_s_after": after_ok / max((len(ok) - first) * b, b),
        "recovery_s": recovery,
        "recovered": recovery is not None,
        "kept_serving": after_ok > 0,
        "intact": probe["totals"]["corrupt"] == 0,
        "errors": probe.get("errors", {}),
    }


# ------------------------------------------------------------------ injection

def _victim_backend(ctx) -> str:
    return ctx.service.backends[-1]


def inject(fault: str, ctx, target, spec: FaultsSpec) -> dict:
    """Strike; returns what was done (recorded in the result) and how to undo it."""
    if fault == "backend_killed":
        name = _victim_backend(ctx)
        proc = ctx.backends.processes.get(name)
        if proc is None:
            raise NotApplicable(f"no web server process on {name}")
        proc.signal(9)  # SIGKILL: a crash, not a clean shutdown
        return {"backend": name, "signal": "SIGKILL"}
    if fault == "frontend_restarted":
        try:
            return {"restarted": target.restart_frontend() or True}
        except NotImplementedError:
            raise NotApplicable(f"target {target.name} has no front-end process") from None
    if fault == "frontend_killed":
        try:
            return target.kill_frontend() or {}
        except NotImplementedError:
            raise NotApplicable(f"target {target.name} has no second front-end to take over "
                                f"from a killed one") from None
    if fault == "table_full":
        try:
            return target.fill_flow_table() or {}
        except NotImplementedError:
            raise NotApplicable(f"target {target.name} has no switch flow table") from None
    if fault == "syn_flood":
        extra = ctx.tb.by_role("extra")
        if not extra:
            raise NotApplicable("the testbed has no host with role 'extra' to flood from")
        h = extra[0]
        interval_us = max(1, int(1e6 / spec.flood_pps))
        proc = h.start(f"exec hping3 -q -S -p {ctx.tb.vip_port} -i u{interval_us} --rand-source "
                       f"{ctx.tb.vip}", name="syn-flood")
        ctx.fault_procs.append(proc)
        return {"from": h.name, "pps": spec.flood_pps, "tool": "hping3 --rand-source"}
    raise ValueError(f"unknown fault {fault!r}")


def undo(fault: str, ctx, target) -> None:
    """Put things back for the next run (idempotent)."""
    for p in ctx.fault_procs:
        p.stop(timeout=3)
    ctx.fault_procs.clear()
    if fault == "backend_killed":
        name = _victim_backend(ctx)
        proc = ctx.backends.processes.get(name)
        if proc is not None and not proc.running():
            ctx.backends.restart(name)
    elif fault == "table_full":
        try:
            target.drain_flow_table()
        except NotImplementedError:
            pass
    elif fault == "frontend_killed":
        try:
            target.revive_frontend()
        except NotImplementedError:
            pass


# ------------------------------------------------------------------ a run

def run_fault(ctx, target, point: FaultPoint) -> dict:
    """Prober + fault; returns the fault part of a result document."""
    spec = point.spec
    client = ctx.tb.clients[0]
    work = f"{client.workdir}/faults"
    manifest = ctx.store.manifest()
    # Mostly small objects with some large ones: enough requests per bin to
    # see an outage, and large bodies to check for corruption mid-stream.
    small = sorted(p for p, m in manifest.items() if m["size"] <= 16 << 10)
    large = sorted(p for p, m in manifest.items() if (1 << 20) <= m["size"] <= (1 << 20) * 2)
    chosen = (small * 9 + large)[: max(10, len(small) * 9 + len(large))] or sorted(manifest)
    lines = "".join(f"{p} {manifest[p]['size']} {manifest[p]['sha256']}\n" for p in chosen)
    client.put_text(lines, f"{work}/paths.txt")
    client.put(PROBER, f"{work}/httpprobe.py")
    cmd = (f"exec {client.python} {work}/httpprobe.py --base {shlex.quote(target.endpoint.url)} "
           f"--paths {work}/paths.txt --duration {spec.duration_s} "
           f"--concurrency {spec.concurrency} --timeout {spec.timeout_s} --bin-ms {spec.bin_ms}"
           + (" --close" if spec.conn_mode == "close" else ""))
    stats_before = _stats(target)
    t_start = time.time()
    prober = client.start(f"{cmd} > {work}/probe.json", name=f"probe-{point.fault}")
    injected: dict = {}
    error = None
    inject_wall = None
    try:
        time.sleep(max(0.0, spec.at_s - (time.time() - t_start)))
        inject_wall = time.time()
        try:
            injected = inject(point.fault, ctx, target, spec)
        except NotApplicable as e:
            prober.stop()
            return {"status": "not_applicable", "error": str(e)}
        rc = prober.wait(spec.duration_s + spec.timeout_s + 30)
        if rc is None:
            prober.stop()
            error = "the prober did not finish in time"
    finally:
        stats_after = _stats(target)
        undo(point.fault, ctx, target)
    text = client.read_text(f"{work}/probe.json", missing_ok=True)
    try:
        probe = json.loads(text)
    except json.JSONDecodeError:
        return {"status": "failed", "error": error or f"the prober printed no result: "
                f"{prober.logs()[-1000:]}"}
    # The prober's clock starts when it starts; align the fault to it.
    inject_at = inject_wall - probe["started_at"]
    outcome = analyse(probe, inject_at)
    return {
        "status": "ok" if error is None else "failed", "error": error,
        "fault": {"name": point.fault, "at_s": round(inject_at, 3), **injected},
        "outcome": outcome, "probe": probe,
        "target_stats": {"before": stats_before, "after": stats_after},
    }


def _stats(target) -> dict:
    try:
        return target.stats()
    except Exception as e:  # noqa: BLE001 - stats must not sink a fault run
        return {"error": f"{type(e).__name__}: {e}"}

