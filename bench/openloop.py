"""The open-loop runner: constant-rate load whose latency counts from each
request's intended send time (workloads/openloop/loadgen.py on the client).

    runner = OpenLoopRunner(client_host)
    out = runner.run(OpenLoopJob(url=..., classes=..., rate=5000, duration_s=10))
    out.data["requests_per_s"], out.data["latency_us"]["percentiles"]["99"]

Which latency this is: request i of the run is due at t0 + i / rate, whatever
happened before it, and its latency is the time from then to the last byte
of its response.  A request the generator could not start on time (every
connection busy, the connection cap reached, the generator itself behind)
is sent late and its latency still counts from its due time; it is counted
in `late` (started more than `late_ms` after its due time) and, if it found
no free connection, in `waited_for_connection`.  Nothing is dropped.  So,
unlike wrk's, these latencies are not subject to coordinated omission, and
two targets measured at the same rate were offered the same load.  With one
connection per request (`close`) the latency includes the TCP handshake.

How late requests went out is kept apart too (`send_lag_us`): a large send
lag says the generator, not the system under test, fell behind, and the run
measured the generator.

Every process on the client (`processes`) runs one stream of the schedule
(request i of stream k of n is due at t0 + (i * n + k) / rate) and records an
HdrHistogram (1 us to 1 h, 3 significant digits); the runner decodes and adds
them, which is exact: the merged histogram is the one a single process would
have recorded.  `merge_histograms` does the same for repetitions and for
several client hosts.

URLs come from the mix with wrk's rule and seeds (workloads/lua/sampler.lua):
stream k draws what wrk thread k + 1 draws with the same seed.
"""

from __future__ import annotations

import itertools
import json
import math
import shlex
import time
from dataclasses import dataclass, field

from analysis import latency
from common.errors import Error
from hosts.hosts import Host, Process
from workloads.model import parse_size
from workloads.openloop.loadgen import BEGIN, END, FORMAT, VERSION, new_histogram  # noqa: F401 (re-exported)

#: The generator, relative to a checkout (the host's repo_dir).
LOADGEN = "workloads/openloop/loadgen.py"
#: Where `make build` (`make host-client` on a real client host) puts the
#: generator's Python (hdrhistogram, uvloop) inside a checkout.
LOADGEN_VENV = "build/loadgen-venv"

_serial = itertools.count()


class OpenLoopError(Error):
    pass


@dataclass
class OpenLoopJob:
    """One open-loop run on one client host."""

    url: str                                 # http://ADDR:PORT, no path
    classes: list[dict]                      # [{"name", "weight", "paths"}], as WrkJob's
    rate: float                              # requests/s, all processes together
    duration_s: float = 10
    warmup_s: float = 2
    processes: int = 1
    close: bool = False                      # one connection per request
    #: keep-alive connections each process opens before the start; None: enough
    #: for the rate at 2 ms per request.  The pool grows when all are busy.
    connections: int | None = None
    max_connections: int = 1000              # per process, either mode
    timeout_s: float = 10
    seed: int = 1
    #: path -> {"size", "sha256"} (ObjectStore.manifest()); without it, sizes
    #: come from the class names ("1KB") and no body is hashed
    manifest: dict | None = None
    verify_every: int = 0                    # hash every N-th response (0: none)
    late_ms: float = 1.0
    uvloop: bool = True
    #: Several client hosts on one schedule: each runs `processes` streams from
    #: `first_stream` (host h of H: h * processes) out of `total_streams`
    #: (H * processes), all at `start_at` (wall clock; their clocks
    #: synchronised), and `rate` is the rate of all hosts together.  The
    #: default, one host, starts when its processes are ready.
    first_stream: int = 0
    total_streams: int | None = None
    start_at: float | None = None
    role: str = "load"

    def __post_init__(self):
        if not self.rate > 0:
            raise OpenLoopError(f"open-loop job: rate {self.rate} must be positive")
        if not self.duration_s > 0 or self.warmup_s < 0:
            raise OpenLoopError("open-loop job: duration_s must be positive, warmup_s >= 0")
        if self.processes < 1:
            raise OpenLoopError(f"open-loop job: processes {self.processes} must be >= 1")
        if not 0 <= self.first_stream <= self.streams - self.processes:
            raise OpenLoopError(f"open-loop job: streams {self.first_stream}.."
                                f"{self.first_stream + self.processes - 1} are not within "
                                f"the {self.streams} of the schedule")

    @property
    def streams(self) -> int:
        return self.total_streams if self.total_streams is not None else self.processes

    @property
    def host_port(self) -> tuple[str, int]:
        rest = self.url.split("://", 1)[-1].rstrip("/")
        host, _, port = rest.rpartition(":")
        return (host, int(port)) if host else (rest, 80)

    def initial_connections(self) -> int:
        if self.connections is not None:
            return self.connections
        return max(2, math.ceil(self.rate / self.streams * 0.002))

    def config(self) -> dict:
        """What every process of the host reads (loadgen.py's configuration)."""
        host, port = self.host_port
        classes = []
        for c in self.classes:
            sizes, digests = {}, {}
            for p in c["paths"]:
                if self.manifest is not None:
                    if p not in self.manifest:
                        raise OpenLoopError(f"open-loop job: {p} is not in the manifest")
                    sizes[p] = self.manifest[p]["size"]
                    digests[p] = self.manifest[p]["sha256"]
                else:
                    sizes[p] = parse_size(c["name"])
            classes.append({"name": c["name"], "weight": c["weight"], "paths": list(c["paths"]),
                            "sizes": sizes, "sha256": digests})
        return {"role": self.role, "host": host, "port": port, "rate": self.rate,
                "duration_s": self.duration_s, "warmup_s": self.warmup_s,
                "mode": "close" if self.close else "keepalive",
                "streams": self.streams, "first_stream": self.first_stream,
                "processes": self.processes,
                "connections": self.initial_connections(),
                "max_connections": self.max_connections, "timeout_s": self.timeout_s,
                "seed": self.seed, "verify_every": self.verify_every, "late_ms": self.late_ms,
                "uvloop": self.uvloop, "start_at": self.start_at,
                "classes": classes}

    def wait_s(self) -> float:
        """How long a run may take before it is declared hung: drawing every URL
        before the start (~10 us each), the schedule, the last timeouts."""
        draws = self.rate / self.streams * (self.duration_s + self.warmup_s) * 50e-6
        ahead = max(0.0, self.start_at - time.time()) if self.start_at is not None else 0.0
        return ahead + draws + self.warmup_s + self.duration_s + 2 * self.timeout_s + 30


# ------------------------------------------------------------- histograms

# Merging and summarising live in analysis/latency.py, shared with wrk's histograms.
merge_histograms = latency.merge
latency_summary = latency.summary


def summarize(streams: list[dict], role: str = "load") -> dict:
    """The run's document from the streams' documents: of one host's processes, or
    of several hosts' (concatenate their `data["streams"]`)."""
    if not streams:
        raise OpenLoopError("no stream document to summarize")
    first = streams[0]
    for s in streams:
        if s.get("format") != FORMAT or s.get("version") != VERSION:
            raise OpenLoopError(f"stream {s.get('stream')}: not a {FORMAT} v{VERSION} document")
        for k in ("rate", "duration_s", "warmup_s", "mode", "streams"):
            if s[k] != first[k]:
                raise OpenLoopError(f"stream {s['stream']}: {k} {s[k]!r} differs from "
                                    f"stream {first['stream']}'s {first[k]!r}")
    seen = [s["stream"] for s in streams]
    if len(set(seen)) != len(seen):
        raise OpenLoopError(f"stream documents repeat a stream: {sorted(seen)}")
    latency = merge_histograms(s["histogram"] for s in streams)
    lag = merge_histograms(s["send_lag_histogram"] for s in streams)
    duration = first["duration_s"]

    def total(key: str) -> int:
        return sum(s[key] for s in streams)

    errors: dict[str, int] = {}
    drawn: dict[str, int] = {}
    for s in streams:
        for k, v in s["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in s["drawn"].items():
            drawn[k] = drawn.get(k, 0) + v
    completed = total("completed_in_window")
    return {
        "format": FORMAT, "version": VERSION, "role": role,
        "mode": first["mode"], "rate": first["rate"], "duration_s": duration,
        "warmup_s": first["warmup_s"],
        "streams_total": first["streams"], "streams_reported": len(streams),
        "streams": streams,
        # Requests due in the measured window, and how they ended.
        "requests": total("requests"), "ok": total("ok"), "errors": errors,
        "failed": sum(errors.values()),
        "late": total("late"), "late_ms": first["late_ms"],
        "waited_for_connection": total("waited_for_connection"),
        # Throughput: what was started and what completed inside the window.
        "requests_per_s": completed / duration,
        "started_per_s": total("started_in_window") / duration,
        "achieved_ratio": completed / duration / first["rate"],
        "bytes": total("bytes"), "bytes_per_s": total("bytes") / duration,
        "verified": total("verified"),
        "connections_opened": total("connections_opened"),
        "start_behind_us": max(s["start_behind_us"] for s in streams),
        "generator_cpu_s": sum(s.get("cpu_s", 0.0) for s in streams),
        "drawn": drawn,
        "latency_us": latency_summary(latency),
        "send_lag_us": latency_summary(lag),
        "histogram": latency.encode().decode(),
        "send_lag_histogram": lag.encode().decode(),
    }


# ------------------------------------------------------------------ runner

@dataclass
class OpenLoopOutput:
    """What one run left: the command, exit code, raw output, merged document."""

    role: str
    cmd: str
    rc: int | None
    stdout: str
    data: dict | None = None
    error: str | None = None
    config: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def raw(self) -> dict:
        return {"role": self.role, "cmd": self.cmd, "rc": self.rc, "stdout": self.stdout,
                "config": self.config, "error": self.error}


def parse_output(stdout: str) -> dict | None:
    start = stdout.rfind(BEGIN)
    end = stdout.find(END, start)
    if start < 0 or end < 0:
        return None
    try:
        return json.loads(stdout[start + len(BEGIN):end])
    except json.JSONDecodeError:
        return None


def judge(role: str, rc: int | None, stdout: str) -> tuple[dict | None, str | None]:
    """(merged document, error): good only if every process reported and some request succeeded."""
    doc = parse_output(stdout)
    if rc is None:
        return None, f"{role}: the open-loop generator did not finish in time"
    if doc is None:
        tail = stdout.strip().splitlines()[-3:]
        return None, (f"{role}: the open-loop generator exited with {rc} and printed no "
                      f"result document" + (f": {' / '.join(tail)}" if tail else ""))
    if doc.get("failures"):
        return None, f"{role}: " + "; ".join(doc["failures"])
    if rc != 0:
        return None, f"{role}: the open-loop generator exited with {rc}"
    data = summarize(doc["streams"], role)
    if not data["ok"]:
        return data, f"{role}: no request succeeded (errors: {data['errors']})"
    return data, None


class OpenLoopRunner:
    """Runs the open-loop generator on a (client) host.

    `python` is the interpreter on the host; by default the generator's venv in
    the host's checkout, which `make host-client` creates (scripts/loadgen-venv.sh)."""

    def __init__(self, host: Host, python: str | None = None):
        self.host = host
        self.python = python or f"{host.repo_dir}/{LOADGEN_VENV}/bin/python"

    def command(self, config_path: str) -> str:
        return (f"exec {shlex.quote(self.python)} "
                f"{shlex.quote(f'{self.host.repo_dir}/{LOADGEN}')} "
                f"{shlex.quote(config_path)}")

    def _prepare(self, job: OpenLoopJob) -> tuple[str, str]:
        modules = "hdrh.histogram, uvloop" if job.uvloop else "hdrh.histogram"
        probe = self.host.run(f"{shlex.quote(self.python)} -c 'import {modules}'", check=False)
        if not probe.ok:
            tail = (probe.stderr or probe.stdout).strip().splitlines()[-1:]
            raise OpenLoopError(f"{self.host.name}: {self.python} cannot import {modules}"
                                f"{': ' + tail[0] if tail else ''}: run `make host-client` "
                                f"on that host (it installs the open-loop generator's venv)")
        n = next(_serial)
        path = f"{self.host.workdir}/bench/openloop-{job.role}-{n}.json"
        self.host.put_text(json.dumps(job.config()), path)
        return path, f"openloop-{job.role}-{n}"

    def run(self, job: OpenLoopJob) -> OpenLoopOutput:
        """Run to completion in the foreground."""
        path, _ = self._prepare(job)
        cmd = self.command(path)
        r = self.host.run(cmd, check=False, timeout=job.wait_s())
        rc = None if r.rc == 124 and "timed out" in r.stderr else r.rc
        data, error = judge(job.role, rc, r.stdout)
        return OpenLoopOutput(job.role, cmd, rc, r.stdout + r.stderr, data, error, job.config())

    def start(self, job: OpenLoopJob) -> "RunningOpenLoop":
        """Start in the background (beside other load); `finish()` collects it."""
        path, name = self._prepare(job)
        cmd = self.command(path)
        return RunningOpenLoop(job, cmd, self.host.start(cmd, name=name), time.monotonic())


@dataclass
class RunningOpenLoop:
    job: OpenLoopJob
    cmd: str
    process: Process
    started: float

    def finish(self) -> OpenLoopOutput:
        left = self.job.wait_s() - (time.monotonic() - self.started)
        rc = self.process.wait(max(1.0, left))
        if rc is None:
            self.process.stop()
        out = self.process.logs()
        data, error = judge(self.job.role, rc, out)
        return OpenLoopOutput(self.job.role, self.cmd, rc, out, data, error, self.job.config())

    def abort(self) -> None:
        self.process.stop()
