"""The wrk runner: one class that drives Debian's wrk (4.1.0, LuaJIT) on a host.

    runner = WrkRunner(client_host)
    out = runner.run(WrkJob(url=..., classes=..., threads=2, connections=64, duration_s=10))
    out.data["requests_per_s"], out.data["latency_us"]["percentiles"]["99"]

The Lua script (workloads/lua/) draws every request's URL from a mix and
prints one JSON document at the end; this module writes the per-run script
to the host through the host interface, runs wrk, and parses the document.
A run whose wrk fails, prints no document, or completed no request is a
failed run (`WrkOutput.error`), never a row of zeros.

Which latency this is: wrk is closed-loop.  Each connection sends a request,
waits for the whole response, then sends the next; the latency of a request
is the time from writing it to reading its last byte, recorded in wrk's
histogram (microsecond resolution).  Under saturation this includes queueing
in the system under test.  It does not include the TCP handshake, also in
one-connection-per-request mode (wrk starts the clock at the first write).

The histogram.  The Lua script prints wrk's whole latency histogram; this
module turns it into an HdrHistogram of the latencies wrk recorded (`data
["histogram"]`, encoded) and derives `latency_us` from it, so repetitions can
be merged (analysis/latency.py).  wrk 4.1 does not hand its script the
recorded histogram: before done() it applies its own coordinated-omission
"correction" (src/stats.c, stats_correct), which, for every recorded value n
of at least twice the interval I = duration / (requests / connections),
adds n's count at n - I, n - 2I, ... down to just above I: samples of requests
that were never sent.  Its printed percentiles include them.  The correction
is undone exactly here (`recorded_counts`): the stored histogram holds one
sample per completed request (but those slower than the timeout, which wrk
counts as timeout errors), and wrk's own summary is kept as `latency_us_wrk`.
Neither is free of coordinated omission: a closed-loop connection that waits
on a slow response sends nothing meanwhile.  For latency under a given
offered load, use the open-loop generator (bench/openloop.py).
The 1 KB probe beside a mix is paced (CONFIG.delay_ms) at a low rate so that
its own requests are a sample of the latency the background load causes,
not a part of that load.
"""

from __future__ import annotations

import itertools
import json
import shlex
from dataclasses import dataclass, field

from analysis import latency
from common.paths import REPO_ROOT
from hosts.hosts import Host, Process

LUA_DIR = REPO_ROOT / "workloads" / "lua"
BEGIN = "----BEGIN MIRESGA-BENCH JSON----"
END = "----END MIRESGA-BENCH JSON----"
#: What add_histogram() adds to a run's document, for the result file.
LATENCY_HISTOGRAM_KEYS = ("histogram", "histogram_error", "latency_us_wrk")

_serial = itertools.count()


def lua_literal(v) -> str:
    """A Python value as a Lua literal (dicts, lists, strings, numbers, bools)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid Lua escapes for ASCII
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua_literal(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"[{lua_literal(str(k))}] = {lua_literal(x)}"
                               for k, x in v.items()) + "}"
    if v is None:
        return "nil"
    raise TypeError(f"no Lua literal for {type(v).__name__}")


@dataclass
class WrkJob:
    """One wrk invocation."""

    url: str                                 # http://ADDR:PORT, no path
    classes: list[dict]                      # [{"name", "weight", "paths"}]
    threads: int = 2
    connections: int = 64
    duration_s: int = 10
    timeout_s: int = 10
    seed: int = 1
    close: bool = False                      # "Connection: close": one connection per request
    delay_ms: float = 0                      # pause before each request (the probe)
    role: str = "load"
    # The re-route workload: header sets each request takes in turn (bench/reroute.py).
    # wrk's request() knows no connection, only its thread, so each thread must have
    # one connection for a connection's requests to take them in turn.
    alternate: list[dict[str, str]] | None = None

    def __post_init__(self):
        if self.alternate and self.threads != self.connections:
            raise ValueError(f"wrk job {self.role}: alternating requests need one connection "
                             f"per thread ({self.connections} connections on "
                             f"{self.threads} threads)")

    def config(self) -> dict:
        headers = {"Connection": "close"} if self.close else {}
        out = {"role": self.role, "seed": self.seed, "classes": self.classes,
               "headers": headers, "delay_ms": self.delay_ms}
        if self.alternate:
            out["alternate"] = self.alternate
        return out

    def script(self) -> str:
        return (f"-- generated by bench.wrk for one run\nCONFIG = {lua_literal(self.config())}\n\n"
                + (LUA_DIR / "sampler.lua").read_text() + "\n"
                + (LUA_DIR / "wrk_bench.lua").read_text())


@dataclass
class WrkOutput:
    """What one wrk run left: the command, exit code, raw output, parsed document."""

    role: str
    cmd: str
    rc: int | None
    stdout: str
    stderr: str = ""
    data: dict | None = None
    error: str | None = None
    config: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def raw(self) -> dict:
        return {"role": self.role, "cmd": self.cmd, "rc": self.rc, "stdout": self.stdout,
                "stderr": self.stderr, "config": self.config, "error": self.error}


def parse_output(stdout: str) -> dict | None:
    """The JSON document the Lua script printed, or None."""
    start = stdout.rfind(BEGIN)
    if start < 0:
        return None
    end = stdout.find(END, start)
    if end < 0:
        return None
    try:
        return json.loads(stdout[start + len(BEGIN):end])
    except json.JSONDecodeError:
        return None


def wrk_correction_interval_us(requests: int, duration_us: int, connections: int) -> int | None:
    """The interval wrk 4.1's stats_correct used (src/wrk.c), or None if it did not run."""
    per_connection = int(requests) // int(connections)
    return int(duration_us) // per_connection if per_connection > 0 else None


def recorded_counts(corrected: dict[int, int], interval: int | None) -> dict[int, int]:
    """wrk's histogram without the samples its stats_correct added.

    stats_correct adds the count of every value n >= 2I at n - kI for every
    k >= 1 with n - kI > I.  So for m > I the corrected count is
    h'(m) = h(m) + sum over k >= 1 of h(m + kI), hence h(m) = h'(m) - h'(m + I);
    at m <= I nothing was added.  A negative count means the histogram was not
    corrected with this interval: ValueError.
    """
    if not interval:
        return {v: c for v, c in corrected.items() if c}
    out = {}
    for v, c in corrected.items():
        n = c - corrected.get(v + interval, 0) if v > interval else c
        if n < 0:
            raise ValueError(f"count {n} at {v} us: not wrk's correction with interval "
                             f"{interval} us")
        if n:
            out[v] = n
    return out


def add_histogram(data: dict, connections: int) -> None:
    """Turn the Lua script's histogram into `histogram` (HdrHistogram, encoded) and
    `latency_us` (from it), keeping wrk's own summary as `latency_us_wrk`.

    Without a usable histogram (an older script, wrk not 4.1, counts that do
    not add up) `latency_us` stays wrk's and `histogram_error` says why.
    """
    flat = data.get("latency_histogram_us")
    data["latency_us_wrk"] = data.get("latency_us")
    data["histogram"] = None
    data["histogram_error"] = data.get("latency_histogram_error")
    if flat is None:
        data["histogram_error"] = data["histogram_error"] or "wrk printed no histogram"
        return
    corrected: dict[int, int] = {}
    value = 0
    for delta, count in zip(flat[0::2], flat[1::2]):
        value += int(delta)
        corrected[value] = int(count)
    requests = int(data.get("requests") or 0)
    timeouts = int((data.get("errors") or {}).get("timeout") or 0)
    try:
        counts = recorded_counts(corrected, wrk_correction_interval_us(
            requests, int(data.get("duration_us") or 0), connections))
    except ValueError as e:
        data["histogram_error"] = str(e)
        return
    # Every completed request is recorded once, unless slower than the timeout.
    total = sum(counts.values())
    if not requests - timeouts <= total <= requests:
        data["histogram_error"] = (f"histogram holds {total} samples for {requests} requests "
                                   f"({timeouts} timeouts)")
        return
    h = latency.from_counts(counts.items())
    data["histogram"] = latency.encode(h)
    data["latency_us"] = latency.summary(h)


def judge(role: str, rc: int | None, stdout: str, stderr: str = "") -> tuple[dict | None, str | None]:
    """(document, error): a run is good only if wrk exited 0 and completed requests."""
    data = parse_output(stdout)
    if rc is None:
        return data, f"{role}: wrk did not finish in time"
    if rc != 0:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        return data, f"{role}: wrk exited with {rc}" + (f": {' / '.join(tail)}" if tail else "")
    if data is None:
        if not stdout.strip():
            return None, f"{role}: wrk printed nothing"
        return None, f"{role}: wrk printed no result document"
    if not data.get("requests"):
        errs = data.get("errors", {})
        return data, f"{role}: wrk completed no request (errors: {errs})"
    return data, None


class WrkRunner:
    """Runs wrk on a (client) host; `binary` is overridable, e.g. by tests."""

    def __init__(self, host: Host, binary: str = "wrk"):
        self.host = host
        self.binary = binary

    def command(self, job: WrkJob, script_path: str) -> str:
        return (f"{self.binary} -t {job.threads} -c {job.connections} -d {job.duration_s}s "
                f"--timeout {job.timeout_s}s -s {shlex.quote(script_path)} {shlex.quote(job.url)}")

    def _prepare(self, job: WrkJob) -> tuple[str, str]:
        n = next(_serial)
        path = f"{self.host.workdir}/bench/wrk-{job.role}-{n}.lua"
        self.host.put_text(job.script(), path)
        return path, f"wrk-{job.role}-{n}"

    def run(self, job: WrkJob) -> WrkOutput:
        """Run to completion in the foreground."""
        path, _ = self._prepare(job)
        cmd = self.command(job, path)
        r = self.host.run(cmd, check=False, timeout=job.duration_s + job.timeout_s + 30)
        rc = None if r.rc == 124 and "timed out" in r.stderr else r.rc
        data, error = judge(job.role, rc, r.stdout, r.stderr)
        if data is not None:
            add_histogram(data, job.connections)
        return WrkOutput(job.role, cmd, rc, r.stdout, r.stderr, data, error, job.config())

    def start(self, job: WrkJob) -> "RunningWrk":
        """Start in the background (the probe beside the load); `finish()` collects it."""
        path, name = self._prepare(job)
        cmd = self.command(job, path)
        return RunningWrk(job, cmd, self.host.start(cmd, name=name))


@dataclass
class RunningWrk:
    job: WrkJob
    cmd: str
    process: Process

    def finish(self, grace_s: float = 30) -> WrkOutput:
        rc = self.process.wait(self.job.duration_s + self.job.timeout_s + grace_s)
        if rc is None:
            self.process.stop()
        out = self.process.logs()
        data, error = judge(self.job.role, rc, out)
        if data is not None:
            add_histogram(data, self.job.connections)
        return WrkOutput(self.job.role, self.cmd, rc, out, "", data, error, self.job.config())

    def abort(self) -> None:
        self.process.stop()
