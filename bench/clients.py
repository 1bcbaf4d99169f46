"""Load from every client host of a testbed: the load shared out, started together, merged.

A testbed may have several client hosts (testbeds/emulated.toml has two);
every measured load runs on all of them, so that no single client's CPU caps
what a target is shown to carry.

wrk (closed loop): the connections are shared out (the first hosts take the
remainder), each host runs wrk with min(threads, its connections) threads;
all are started in the background one after the other (a few milliseconds
apart, against runs of seconds: wrk has no start time to agree on) and
collected.  Merged: requests, bytes and their rates are summed (each host's
rate over its own run), errors and drawn objects added per kind, the run's
duration the longest host's.  Latency: each host's recorded histogram (wrk's
coordinated-omission correction undone, bench/wrk.py) is added into one,
which is exact; wrk's own per-host summaries (`latency_us_wrk`) cannot be
merged and stay in each host's raw output.  If some host has no usable
histogram, the merged run has none either (`histogram_error` says which), and
its `latency_us` is the first host's, so nothing pretends to be merged.

Open loop: see bench/openloop.py; the rate is the rate of all hosts together,
each host runs its share of the schedule's streams, all start at one wall
clock time, and their streams' histograms are added (`run_open`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from analysis import latency
from bench.openloop import OpenLoopJob, OpenLoopOutput, OpenLoopRunner, summarize
from bench.wrk import WrkJob, WrkOutput, WrkRunner

#: How far ahead of now several hosts' open-loop runs are told to start: enough
#: for every host's processes to draw their URLs and open their connections.
START_LEAD_S = 3.0


def shares(total: int, n: int) -> list[int]:
    """`total` shared out over n hosts, the first ones taking the remainder."""
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


# ---------------------------------------------------------------- wrk

@dataclass
class MergedWrkOutput:
    """Several hosts' wrk runs of one load, as one run (WrkOutput's interface)."""

    role: str
    parts: list[tuple[str, WrkOutput]]          # (host name, its run)
    data: dict | None = None
    error: str | None = None
    config: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def cmd(self) -> str:
        return " ; ".join(f"{h}: {o.cmd}" for h, o in self.parts)

    @property
    def stdout(self) -> str:
        return "".join(f"==== {h}\n{o.stdout}{o.stderr}" for h, o in self.parts)

    def raw(self) -> dict:
        return {"role": self.role, "cmd": self.cmd, "stdout": self.stdout,
                "rc": [o.rc for _, o in self.parts], "config": self.config, "error": self.error,
                "clients": [{"host": h, **o.raw()} for h, o in self.parts]}


def wrk_jobs(job: WrkJob, n: int) -> list[WrkJob]:
    """One job per host: the connections shared out, as many threads as fit."""
    return [replace(job, connections=c, threads=min(job.threads, c))
            for c in shares(job.connections, n) if c > 0]


def run_wrk(hosts: list, job: WrkJob, binary: str = "wrk") -> WrkOutput | MergedWrkOutput:
    """`job` on every host in `hosts` (its connections shared), merged.  One host: wrk's
    own run, unchanged."""
    if len(hosts) == 1:
        return WrkRunner(hosts[0], binary=binary).run(job)
    jobs = wrk_jobs(job, len(hosts))
    running = []
    try:
        for h, j in zip(hosts, jobs):
            running.append((h.name, WrkRunner(h, binary=binary).start(j)))
    except BaseException:
        for _, r in running:
            r.abort()
        raise
    parts = [(name, r.finish()) for name, r in running]
    return merge_wrk(job.role, parts, job.config(), [j.connections for j in jobs])


def merge_wrk(role: str, parts: list[tuple[str, WrkOutput]], config: dict | None = None,
              connections: list[int] | None = None) -> MergedWrkOutput:
    """One run of several hosts' (`connections`: how many each opened, for the record)."""
    errors = [f"{h}: {o.error}" for h, o in parts if not o.ok]
    out = MergedWrkOutput(role, parts, config=config or {},
                          error="; ".join(errors) if errors else None)
    datas = [o.data for _, o in parts]
    if any(d is None for d in datas):
        return out
    # Merged even when some host failed, so that a caller can tell "no request in
    # a short warm-up" from errors, as it can for one host.
    m: dict = {k: sum(d.get(k) or 0 for d in datas)
               for k in ("requests", "requests_per_s", "bytes", "bytes_per_s")}
    m["duration_us"] = max(d.get("duration_us") or 0 for d in datas)
    for key in ("errors", "drawn"):
        total: dict[str, int] = {}
        for d in datas:
            for k, v in (d.get(key) or {}).items():
                total[k] = total.get(k, 0) + v
        m[key] = total
    missing = [f"{h}: {o.data.get('histogram_error') or 'no histogram'}"
               for h, o in parts if not o.data.get("histogram")]
    if missing:
        m["histogram"] = None
        m["histogram_error"] = "not merged, some client has no histogram: " + "; ".join(missing)
        m["latency_us"] = datas[0].get("latency_us")
    else:
        h = latency.merge(d["histogram"] for d in datas)
        m["histogram"] = latency.encode(h)
        m["histogram_error"] = None
        m["latency_us"] = latency.summary(h)
    # wrk's own (corrected) summaries are per host; they cannot be added.
    m["latency_us_wrk"] = None
    conns = connections or [None] * len(parts)
    m["clients"] = [{"host": h, "connections": c, "requests_per_s": o.data.get("requests_per_s")}
                    for (h, o), c in zip(parts, conns)]
    out.data = m
    return out


# ------------------------------------------------------------ open loop

@dataclass
class MergedOpenLoopOutput:
    """Several hosts' open-loop runs of one schedule, as one run."""

    role: str
    parts: list[tuple[str, OpenLoopOutput]]
    data: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raw(self) -> dict:
        return {"role": self.role, "error": self.error,
                "clients": [{"host": h, **o.raw()} for h, o in self.parts]}


def start_time() -> float:
    """A wall-clock start for runs on several hosts (their clocks synchronised)."""
    return time.time() + START_LEAD_S


def open_jobs(job: OpenLoopJob, n: int, start_at: float | None = None) -> list[OpenLoopJob]:
    """One job per host: host h runs streams h * processes .. of n * processes, all
    starting at `start_at` (default: one host starts when ready, several at start_time())."""
    if n == 1 and start_at is None:
        return [job]
    start = start_time() if start_at is None else start_at
    return [replace(job, first_stream=h * job.processes, total_streams=n * job.processes,
                    start_at=start) for h in range(n)]


def run_open(hosts: list, job: OpenLoopJob, start_at: float | None = None
             ) -> MergedOpenLoopOutput:
    """`job` (its rate: all hosts together) on every host in `hosts`, merged."""
    return finish_open(job.role, start_open(hosts, job, start_at))


def start_open(hosts: list, job: OpenLoopJob, start_at: float | None = None) -> list:
    """`job` started on every host: [(host name, running run)]."""
    jobs = open_jobs(job, len(hosts), start_at)
    running = []
    try:
        for h, j in zip(hosts, jobs):
            running.append((h.name, OpenLoopRunner(h).start(j)))
    except BaseException:
        for _, r in running:
            r.abort()
        raise
    return running


def finish_open(role: str, running: list) -> MergedOpenLoopOutput:
    return merge_open(role, [(name, r.finish()) for name, r in running])


def merge_open(role: str, parts: list[tuple[str, OpenLoopOutput]]) -> MergedOpenLoopOutput:
    """Every host's streams summarized as one run (a failed host fails the run: its
    share of the schedule was never offered)."""
    out = MergedOpenLoopOutput(role, parts)
    broken = [f"{h}: {o.error}" for h, o in parts if o.data is None]
    if broken:
        out.error = "; ".join(broken)
        return out
    streams = [s for _, o in parts for s in o.data["streams"]]
    out.data = summarize(streams, role)
    out.data["clients"] = [{"host": h, "streams": o.data["streams_reported"],
                            "requests_per_s": o.data["requests_per_s"]} for h, o in parts]
    errors = [f"{h}: {o.error}" for h, o in parts if not o.ok]
    if errors:
        out.error = "; ".join(errors)
    return out
