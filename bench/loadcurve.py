"""Latency versus offered load: an experiment's `[openloop]` table, its points, one point's run.

    [openloop]
    workload = ["1KB", "traffic3"]
    conn_mode = "keep-alive"
    rates = [1000, 2000, 4000, 8000, 12000]   # requests/s, all clients together
    # rates = { "1KB" = [4000, 16000], "traffic3" = [500, 2000] }   # per workload
    duration_s = 5
    warmup_s = 1
    # targets = ["direct", "haproxy"]         # default: every target of the experiment
    # processes = 1                           # generator processes per client host
    # probe_rate = 100                        # the 1 KB probe beside a mix, requests/s

For each listed target, one point per (workload, connection mode, rate,
repetition), run after the target's closed-loop points on the same deployment,
rates in increasing order.  A point offers `rate` requests/s with the open-loop
generator (bench/openloop.py) from every client host (each runs its share of
the schedule; bench/clients.py), and measures every request's latency from
its intended send time, so a target that falls behind shows its queueing.

Why absolute rates, the same for every target, rather than fractions of each
target's closed-loop capacity: the comparison this table exists for is two
targets at an *equal* offered load (the paper's latency claim), which
per-target fractions cannot give; absolute rates also need no earlier point
of the same run (a resumed or filtered run measures the same load), and the
knee of each target shows where its latency leaves the flat part.  Choose the
rates to span the slowest target's capacity (bench run's closed-loop
requests/s of the same workload) up to beyond it.

Under a mix, a 1 KB probe runs beside the load at `probe_rate`, open loop too
(on the first client), so "1 KB latency at an equal offered load" is measured
the same way for every target.  The result: `metrics.load` holds the merged
document of every client's streams (offered and achieved rate, late and
send-lag counts, the merged histogram), `metrics.probe` the probe's.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bench import clients
from bench.openloop import OpenLoopJob
from common.errors import Error

ConnMode = Literal["keep-alive", "close"]


def _listify(v):
    return v if isinstance(v, list) else [v]


class OpenLoopSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    workload: list[str] = Field(min_length=1)
    #: workload -> its rates (a plain list in the file: every workload's)
    rates: dict[str, Annotated[list[Annotated[float, Field(gt=0, le=10_000_000)]],
                               Field(min_length=1)]]
    conn_mode: list[ConnMode] = Field(default=["keep-alive"], min_length=1)
    targets: list[str] | None = None
    duration_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    warmup_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    processes: int = Field(default=1, ge=1, le=64)
    max_connections: int = Field(default=1000, ge=1, le=100_000)
    late_ms: Annotated[float, Field(gt=0, le=10_000)] = 1.0
    probe_rate: Annotated[float, Field(gt=0, le=100_000)] = 100.0

    @field_validator("workload", "conn_mode", mode="before")
    @classmethod
    def _to_list(cls, v):
        return _listify(v)

    @model_validator(mode="before")
    @classmethod
    def _rates_per_workload(cls, data):
        if isinstance(data, dict) and not isinstance(data.get("rates", {}), dict):
            data = {**data, "rates": {w: _listify(data["rates"])
                                      for w in _listify(data.get("workload", []))}}
        return data

    @model_validator(mode="after")
    def _rates_match(self) -> "OpenLoopSpec":
        for w, rates in self.rates.items():
            if w not in self.workload:
                raise ValueError(f"rates.{w}: not a workload of the table "
                                 f"({', '.join(self.workload)})")
            if len(set(rates)) != len(rates):
                raise ValueError(f"rates.{w}: {rates} repeats a rate")
        missing = [w for w in self.workload if w not in self.rates]
        if missing:
            raise ValueError(f"rates: no rates for {', '.join(missing)}")
        return self

    def all_rates(self) -> list[float]:
        return sorted({r for rates in self.rates.values() for r in rates})


@dataclass(frozen=True)
class OpenLoopPoint:
    """One open-loop point: a target, a workload, a connection mode, a rate, a repetition."""

    index: int
    target: Any          # experiment.TargetSpec
    workload: str
    conn_mode: str
    rate: float
    repetition: int
    spec: OpenLoopSpec
    kind: str = "openloop"

    @property
    def slug(self) -> str:
        return f"open-{self.conn_mode}-r{self.rate:g}"

    @property
    def id(self) -> str:
        return f"{self.target.key}/{self.workload}/{self.slug}/rep{self.repetition}"

    @property
    def relpath(self) -> str:
        return self.id + ".json"

    @property
    def params(self) -> dict[str, Any]:
        """The fields `--only` can filter on."""
        return {"conn_mode": self.conn_mode, "rate": self.rate, "load": "open"}


def points(spec: OpenLoopSpec | None, target, repetition: int, start: int) -> list[OpenLoopPoint]:
    """The points of one target and repetition (none if the table leaves the target out)."""
    if spec is None or (spec.targets is not None and target.key not in spec.targets):
        return []
    out = []
    for w in spec.workload:
        for mode in spec.conn_mode:
            for rate in sorted(spec.rates[w]):
                out.append(OpenLoopPoint(start + len(out), target, w, mode, rate, repetition,
                                         spec))
    return out


def parameters(campaign, point: OpenLoopPoint, workload_params: dict) -> dict[str, Any]:
    """The result file's parameters: the workload's description (as a closed-loop point's)
    and the open-loop load."""
    s = point.spec
    return {**workload_params, "load": "open", "conn_mode": point.conn_mode, "rate": point.rate,
            "duration_s": s.duration_s, "warmup_s": s.warmup_s, "timeout_s": s.timeout_s,
            "processes": s.processes, "max_connections": s.max_connections,
            "late_ms": s.late_ms,
            "probe_rate": s.probe_rate if workload_params.get("probe_size") else None}


def run_point(campaign, ctx, target, point: OpenLoopPoint, integrity) -> dict:
    """Measure one open-loop point; the result document (ok or failed, never raises
    but for Ctrl-C)."""
    t0 = time.monotonic()
    doc = campaign._base(point, integrity)
    doc["kind"] = "openloop"
    doc["target"] = target.describe()
    par = doc["parameters"]
    wl = campaign.exp.workloads.get(point.workload)
    objs = campaign.exp.workloads.objects
    url = target.endpoint.url
    close = point.conn_mode == "close"
    manifest = ctx.store.manifest()
    classes = [{"name": label, "weight": w, "paths": objs.paths(label)}
               for label, w in wl.classes()]

    def fail(error: str) -> dict:
        doc.update(status="failed", error=error,
                   logs={**doc["logs"], **target.logs(),
                         **{f"nginx-{k}": v for k, v in ctx.backends.logs().items()}},
                   elapsed_s=time.monotonic() - t0)
        return doc

    job = OpenLoopJob(url=url, classes=classes, rate=point.rate, duration_s=par["duration_s"],
                      warmup_s=par["warmup_s"], processes=par["processes"], close=close,
                      max_connections=par["max_connections"], timeout_s=par["timeout_s"],
                      seed=par["seed"], manifest=manifest, late_ms=par["late_ms"], role="load")
    probe_job = None
    if wl.kind == "mix":
        size = par["probe_size"]
        probe_job = OpenLoopJob(
            url=url, classes=[{"name": size, "weight": 1, "paths": objs.paths(size)}],
            rate=par["probe_rate"], duration_s=par["duration_s"], warmup_s=par["warmup_s"],
            close=close, timeout_s=par["timeout_s"], seed=par["seed"] + 2, manifest=manifest,
            late_ms=par["late_ms"], role="probe")
    try:
        if not target.healthy():
            try:
                target.wait_healthy(10)
            except Error as e:
                return fail(f"target unhealthy before the point: {e}")
        stats_before = target.stats()
        cpu0 = ctx.sampler.snapshot()
        net0 = ctx.netstat.snapshot()
        load, probe = _run_with_probe(ctx.tb.clients, job, probe_job)
        cpu1 = ctx.sampler.snapshot()
        net1 = ctx.netstat.snapshot()
        stats_after = target.stats()
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - every failure becomes a failed point
        doc["logs"]["traceback"] = traceback.format_exc()
        return fail(f"{type(e).__name__}: {e}")
    doc["raw"]["load"] = load.raw()
    if probe is not None:
        doc["raw"]["probe"] = probe.raw()
    doc["target"]["stats"] = {"before": stats_before, "after": stats_after}
    if not load.ok:
        return fail(load.error)
    if probe is not None and not probe.ok:
        return fail(probe.error)
    doc["metrics"] = {
        "load": _metrics(load.data),
        "probe": _metrics(probe.data) if probe is not None else None,
        "cpu": ctx.sampler.delta(cpu0, cpu1),
        "netstat": ctx.netstat.delta(net0, net1),
        "response_header_bytes": None,
    }
    doc["status"] = "ok"
    doc["elapsed_s"] = time.monotonic() - t0
    return doc


def _run_with_probe(hosts, job: OpenLoopJob, probe_job: OpenLoopJob | None):
    """The load from every client and, beside it, the probe from the first, all on one
    schedule start."""
    if probe_job is None:
        return clients.run_open(hosts, job), None
    start = clients.start_time()
    load = clients.start_open(hosts, job, start)
    try:
        probe = clients.start_open(hosts[:1], probe_job, start)
    except BaseException:
        for _, r in load:
            r.abort()
        raise
    return clients.finish_open("load", load), clients.finish_open("probe", probe)


# What a result keeps of the merged document: everything but the streams'
# own documents (their histograms are in the merged one), which stay in the
# raw section's output.
_DROP = ("streams",)


def _metrics(data: dict) -> dict:
    m = {k: v for k, v in data.items() if k not in _DROP}
    # The generator counts response bodies only: its bytes are the goodput.
    m["goodput_bytes_per_s"] = data["bytes_per_s"]
    m["offered_rate"] = data["rate"]
    m["late_share"] = data["late"] / data["requests"] if data["requests"] else None
    return m


def one_line(doc: dict) -> str:
    if doc["status"] != "ok":
        return f"[red]FAILED[/] {doc['point_id']}: {doc['error']}"
    m = doc["metrics"]["load"]
    p = m["latency_us"]["percentiles"]
    line = (f"[green]ok[/] {doc['point_id']}: offered {m['offered_rate']:,.0f} req/s, achieved "
            f"{m['requests_per_s']:,.0f}, p50 {p['50'] / 1000:.2f} ms, p99 {p['99'] / 1000:.2f} "
            f"ms, p99.9 {p['99.9'] / 1000:.2f} ms, {m['late']} late")
    probe = doc["metrics"].get("probe")
    if probe:
        line += f"; 1KB probe p99 {probe['latency_us']['percentiles']['99'] / 1000:.2f} ms"
    if m["failed"]:
        line += f" [yellow]({m['failed']} failed)[/]"
    return line
