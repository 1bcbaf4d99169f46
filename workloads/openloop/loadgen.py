"""An open-loop HTTP/1.1 load generator: requests at a constant rate, latency from
each request's intended send time, recorded in an HdrHistogram.

    python3 loadgen.py CONFIG.json

Request i of stream k (of n streams, one per process) is due at
    t0 + (i * n + k) / rate
so n processes together send at `rate`, interleaved.  A request's latency is
completion time minus that due time, whatever delayed it: this generator
itself, a request that waited for a free connection, a slow connect, a slow
server.  A closed-loop generator (wrk) starts the clock when it writes, so a
server stall delays the next requests without counting them (coordinated
omission); here every request due during a stall counts the stall.

How late the generator began each request (wrote it, or began to connect for
it, minus its due time) is recorded in a second histogram, so a reader can
tell a slow system under test from a generator that could not keep up.  A
request begun more than `late_ms` after its due time is counted late; one
that had to wait because every connection was busy is counted in
`waited_for_connection` too.  None is dropped: a request that cannot be sent
on time is sent late and its latency counts from its due time.

Connections: "keepalive" keeps a pool that opens `connections` before the
run and grows, when every connection is busy, up to `max_connections`;
"close" opens a connection per request ("Connection: close"), at most
`max_connections` at once.  Requests due in the first `warmup_s` are sent
but not measured.  The run ends when every measured request has completed or
timed out.

URLs are drawn from a response-size mix with the rule of wrk's sampler
(workloads/lua/sampler.lua): LuaJIT's math.random, seeded with
seed * 65537 + stream, 16 draws skipped, then one draw for the class and one
for the object.  The generator below is LuaJIT's (Tausworthe, lib_math.c),
so stream k here (0-based) draws the sequence wrk's thread k + 1 draws with
the same seed.

`loadgen.py CONFIG` runs this host's streams (`processes` of them, from
`first_stream`, out of `streams` on all hosts), one process each: every
process draws its URLs and opens its connections, says it is ready, and all
start together at the configuration's `start_at` (wall clock, for several
hosts) or as soon as all are ready.  One JSON document with every stream's
document goes to stdout between marker lines; the runner (bench/openloop.py)
adds their histograms.

Every response is checked: status 200 and a body of the object's length;
every `verify_every`-th response of an object with a known sha256 is hashed
too.

Runs on a client host of a real testbed: the standard library and the PyPI
package hdrhistogram (installed by `make host-client`), and uvloop when
the configuration asks for it.
"""

from __future__ import annotations

import array
import asyncio
import collections
import ctypes
import ctypes.util
import hashlib
import json
import math
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Callable

from hdrh.histogram import HdrHistogram

BEGIN = "----BEGIN MIRESGA-OPENLOOP JSON----"
END = "----END MIRESGA-OPENLOOP JSON----"
FORMAT = "miresga-bench-openloop"
VERSION = 1

# Latencies in microseconds, 1 us to 1 hour, 3 significant digits: the
# histogram every stream records and the runner merges; streams must agree.
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000
HIST_DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


# ------------------------------------------------------------------ sampler

_M64 = (1 << 64) - 1
# (k, q, s) of the four Tausworthe components of LuaJIT's TW223 generator.
_TW223 = ((63, 31, 18), (58, 19, 28), (55, 24, 7), (47, 21, 8))
_DOUBLE = struct.Struct("<d")
_U64 = struct.Struct("<Q")


class LuaJitRandom:
    """LuaJIT 2.1's math.random and math.randomseed (src/lib_math.c, lj_prng.c)."""

    def __init__(self, seed: float):
        self.u = [0, 0, 0, 0]
        d = float(seed)
        r = 0x11090601  # 64 - k[i], as four 8-bit constants
        for i in range(4):
            m = 1 << (r & 255)
            r >>= 8
            d = d * 3.14159265358979323846 + 2.7182818284590452354
            u = _U64.unpack(_DOUBLE.pack(d))[0]
            if u < m:
                u += m
            self.u[i] = u
        for _ in range(10):
            self._step()

    def _step(self) -> int:
        r = 0
        u = self.u
        for i, (k, q, s) in enumerate(_TW223):
            z = u[i]
            z = ((((z << q) & _M64) ^ z) >> (k - s)) ^ (
                ((z & ((_M64 << (64 - k)) & _M64)) << s) & _M64)
            r ^= z
            u[i] = z
        return r

    def random(self) -> float:
        """math.random(): a double in [0, 1)."""
        bits = (self._step() & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000
        return _DOUBLE.unpack(_U64.pack(bits))[0] - 1.0

    def randint(self, m: int) -> int:
        """math.random(m): an integer in [1, m]."""
        return math.floor(self.random() * m) + 1


class MixSampler:
    """sampler.lua's sampler_new/sampler_draw: (class index, object index), 1-based."""

    def __init__(self, classes: list[dict], seed: int, stream: int):
        self.cum = []
        total = 0
        for c in classes:
            total += c["weight"]
            self.cum.append(total)
        self.total = total
        self.npaths = [len(c["paths"]) for c in classes]
        # In doubles, as Lua computes the seed.
        self.rng = LuaJitRandom(float(seed) * 65537.0 + float(stream))
        for _ in range(16):
            self.rng.random()

    def draw(self) -> tuple[int, int]:
        r = self.rng.randint(self.total)
        ci = 1
        while r > self.cum[ci - 1]:
            ci += 1
        return ci, self.rng.randint(self.npaths[ci - 1])


# ------------------------------------------------------------------ pacer

class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_CLOCK_MONOTONIC = 1          # the clock of time.monotonic()
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class Pacer:
    """Wakes the event loop at a monotonic instant, to the microsecond.

    asyncio.sleep and uvloop's timers sleep in whole milliseconds (epoll's
    timeout), so a request due 0.1 ms from now would go out up to 1 ms late
    and that lag would count in its latency.  A timerfd armed for the due
    time (nanoseconds, absolute) and watched by the loop wakes it on time
    without spinning.  ctypes, because os.timerfd_* arrived in Python 3.13.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                                  ctypes.POINTER(_Itimerspec)]
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self.fd = fd
        self.loop = loop
        self._spec = _Itimerspec()
        self._waiter: asyncio.Future | None = None
        loop.add_reader(fd, self._fired)

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def wait_until(self, when: float) -> asyncio.Future:
        """A future that completes at monotonic time `when` (seconds)."""
        ns = max(1, int(when * 1e9))
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(ns, 1_000_000_000)
        if self._settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")
        self._waiter = self.loop.create_future()
        return self._waiter

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


# ------------------------------------------------------------------- HTTP

class Target:
    """One object to request: the request bytes and what a good answer is."""

    __slots__ = ("cls", "path", "request", "size", "sha256")

    def __init__(self, cls: int, path: str, request: bytes, size: int, sha256: str | None):
        self.cls = cls
        self.path = path
        self.request = request
        self.size = size
        self.sha256 = sha256


class Request:
    __slots__ = ("due", "target", "measured", "sent", "waited", "verify")

    def __init__(self, due: float, target: Target, measured: bool, verify: bool):
        self.due = due                # monotonic time it was meant to start
        self.target = target
        self.measured = measured      # due inside the measured window
        self.sent = 0.0
        self.waited = False           # found no free connection when due
        self.verify = verify          # hash the body


class ResponseError(Exception):
    def __init__(self, kind: str, detail: str = ""):
        super().__init__(detail or kind)
        self.kind = kind


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, server closes) of a response header (no final CRLF CRLF)."""
    if head[:7] != b"HTTP/1." or head[8:9] != b" " or not head[9:12].isdigit():
        raise ResponseError("protocol", f"bad status line {head[:40]!r}")
    status = int(head[9:12])
    lower = head.lower()
    if b"\r\ntransfer-encoding:" in lower:
        raise ResponseError("protocol", "chunked responses are not supported")
    i = lower.find(b"\r\ncontent-length:")
    if i < 0:
        raise ResponseError("protocol", "response without Content-Length")
    j = lower.find(b"\r\n", i + 2)
    value = lower[i + 17:j if j >= 0 else len(lower)].strip()
    if not value.isdigit():
        raise ResponseError("protocol", f"bad Content-Length {value[:20]!r}")
    if head[7:8] == b"0":
        closes = b"\r\nconnection: keep-alive" not in lower
    else:
        closes = b"\r\nconnection: close" in lower
    return status, int(value), closes


class HttpConnection(asyncio.Protocol):
    """One client connection: one request at a time, responses framed by Content-Length."""

    __slots__ = ("gen", "transport", "req", "head", "remaining", "body_len", "hash", "status",
                 "server_closes", "closed")

    def __init__(self, gen: "Generator"):
        self.gen = gen
        self.transport = None
        self.req: Request | None = None
        self.head = b""
        self.remaining = -1           # body bytes still to come; -1: in the header
        self.body_len = 0
        self.hash = None
        self.status = 0
        self.server_closes = False
        self.closed = False

    # asyncio's callbacks
    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        if self.req is not None:
            self.fail("read")
        self.gen.connection_gone(self)

    def data_received(self, data: bytes):
        if self.req is None:
            self.gen.errors["unexpected_data"] += 1
            self.transport.abort()
            return
        try:
            self._feed(data)
        except ResponseError as e:
            self.fail(e.kind)

    # one request
    def send(self, req: Request) -> None:
        self.req = req
        self.head = b""
        self.remaining = -1
        self.body_len = 0
        self.hash = hashlib.sha256() if req.verify else None
        self.transport.write(req.target.request)
        req.sent = time.monotonic()

    def _feed(self, data: bytes) -> None:
        if self.remaining < 0:
            if self.head:
                data = self.head + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > 65536:
                    raise ResponseError("protocol", "response header over 64 KiB")
                self.head = data
                return
            self.status, self.remaining, self.server_closes = parse_head(data[:end])
            data = data[end + 4:]
        n = len(data)
        if n > self.remaining:
            raise ResponseError("protocol", "more bytes than Content-Length")
        self.remaining -= n
        self.body_len += n
        if self.hash is not None and n:
            self.hash.update(data)
        if self.remaining == 0:
            self._done()

    def _done(self) -> None:
        now = time.monotonic()
        req, self.req = self.req, None
        t = req.target
        if self.status != 200:
            outcome = "status"
        elif self.body_len != t.size:
            outcome = "length"
        elif self.hash is not None and self.hash.hexdigest() != t.sha256:
            outcome = "corrupt"
        else:
            outcome = None
        self.gen.completed(req, now, outcome, self.body_len, self.hash is not None)
        if self.server_closes or self.gen.close_mode:
            self.transport.close()
        else:
            self.gen.idle(self)

    def fail(self, kind: str) -> None:
        req, self.req = self.req, None
        if req is not None:
            self.gen.failed(req, kind)
        if not self.closed:
            self.transport.abort()


# -------------------------------------------------------------- generator

CONFIG_FIELDS = ("host", "port", "rate", "stream", "streams", "duration_s", "warmup_s",
                 "timeout_s", "mode", "connections", "max_connections", "late_ms",
                 "verify_every", "seed", "classes")


class Generator:
    """One stream of the schedule: paces requests, owns the connections, counts."""

    def __init__(self, cfg: dict, loop: asyncio.AbstractEventLoop):
        # Every field is required: the runner (bench/openloop.py) states the defaults.
        missing = sorted(k for k in CONFIG_FIELDS if k not in cfg)
        if missing:
            raise ValueError(f"configuration: missing field(s) {', '.join(missing)}")
        self.loop = loop
        self.host = cfg["host"]
        self.port = int(cfg["port"])
        self.rate = float(cfg["rate"])                 # all streams together
        self.stream = int(cfg["stream"])               # 0-based
        self.streams = int(cfg["streams"])
        self.duration_s = float(cfg["duration_s"])
        self.warmup_s = float(cfg["warmup_s"])
        self.timeout_s = float(cfg["timeout_s"])
        self.close_mode = cfg["mode"] == "close"
        self.initial_connections = int(cfg["connections"])
        self.max_connections = int(cfg["max_connections"])
        self.late_s = float(cfg["late_ms"]) / 1e3
        self.verify_every = int(cfg["verify_every"])
        self.seed = int(cfg["seed"])
        if not (self.rate > 0 and self.duration_s > 0 and 0 <= self.stream < self.streams):
            raise ValueError("configuration: rate and duration_s must be positive and "
                             "0 <= stream < streams")
        if cfg["mode"] not in ("keepalive", "close"):
            raise ValueError(f"configuration: mode {cfg['mode']!r} is not keepalive or close")
        host_header = cfg.get("host_header") or (
            self.host if self.port == 80 else f"{self.host}:{self.port}")
        extra = b"Connection: close\r\n" if self.close_mode else b""
        self.classes = cfg["classes"]
        self.targets: list[list[Target]] = []
        for ci, c in enumerate(self.classes, start=1):
            row = []
            for p in c["paths"]:
                req = f"GET {p} HTTP/1.1\r\nHost: {host_header}\r\n".encode() + extra + b"\r\n"
                row.append(Target(ci, p, req, int(c["sizes"][p]), c.get("sha256", {}).get(p)))
            self.targets.append(row)

        self.pool: list[HttpConnection] = []        # idle keep-alive connections
        self.conns: set[HttpConnection] = set()     # open
        self.opening = 0                            # connects under way
        self.backlog: collections.deque[Request] = collections.deque()
        self.outstanding = 0                        # measured requests not yet finished
        self.all_done: asyncio.Future | None = None
        self.schedule_done = False
        # Raw samples in microseconds, put into the histograms after the run:
        # an array append is cheaper than a histogram update on the hot path.
        self.latency_us = array.array("q")         # completion - due, good responses
        self.lag_us = array.array("q")             # start - due
        self.c = collections.Counter()
        self.errors = collections.Counter()
        self.drawn = collections.Counter()
        self.bytes = 0
        self.measured_from = 0.0
        self.measured_until = 0.0
        self.last_connect_error = None
        # (due, sent, finished, outcome) of every request, when asked: for
        # tests and for looking at one run closely, not for long runs.
        self.trace: list[tuple] | None = [] if cfg.get("trace") else None

    # -- connections
    async def _open(self) -> HttpConnection | None:
        """Connect.  The caller has counted the attempt in `opening` already, so
        that the cap holds for attempts begun in the same loop iteration."""
        try:
            async with asyncio.timeout(self.timeout_s):
                _, conn = await self.loop.create_connection(lambda: HttpConnection(self),
                                                            self.host, self.port)
        except (OSError, TimeoutError) as e:
            self.c["connect_errors"] += 1
            self.last_connect_error = f"{type(e).__name__}: {e}"
            return None
        finally:
            self.opening -= 1
        self.c["connections_opened"] += 1
        self.conns.add(conn)
        return conn

    def _room(self) -> int:
        return self.max_connections - len(self.conns) - self.opening

    def connection_gone(self, conn: HttpConnection) -> None:
        self.conns.discard(conn)
        try:
            self.pool.remove(conn)
        except ValueError:
            pass
        self._pump()

    def idle(self, conn: HttpConnection) -> None:
        if self.backlog:
            self._send(conn, self.backlog.popleft())
        else:
            self.pool.append(conn)

    def _pump(self) -> None:
        """Give waiting requests what has freed up: idle connections, room for new ones."""
        if self.close_mode:
            while self.backlog and self._room() > 0:
                self._connect_for(self.backlog.popleft())
            return
        while self.backlog and self.pool:
            self._send(self.pool.pop(), self.backlog.popleft())
        # Grow the pool by one connection per waiting request, within the cap.
        for _ in range(max(0, min(len(self.backlog) - self.opening, self._room()))):
            self.opening += 1
            self.loop.create_task(self._grow_pool())

    async def _grow_pool(self) -> None:
        conn = await self._open()
        if conn is None:
            # The connection a waiting request counted on failed: so does it.
            if self.backlog:
                self.failed(self.backlog.popleft(), "connect")
            self._pump()
        elif not conn.closed:
            self.idle(conn)

    def _connect_for(self, req: Request) -> None:
        self._started(req)
        self.opening += 1
        self.loop.create_task(self._connect_and_send(req))

    async def _connect_and_send(self, req: Request) -> None:
        conn = await self._open()
        if conn is None:
            self.failed(req, "connect")
            self._pump()
        elif conn.closed:
            self.failed(req, "read")
        else:
            conn.send(req)

    async def _expire(self) -> None:
        """Fail requests that have waited `timeout_s` for their response.

        One sweep a tenth of the timeout apart, instead of a timer per request:
        timers in the loop's heap cost more than the requests they guard."""
        period = min(1.0, self.timeout_s / 10)
        while True:
            await asyncio.sleep(period)
            limit = time.monotonic() - self.timeout_s
            for conn in [c for c in self.conns if c.req is not None and c.req.sent < limit]:
                conn.fail("timeout")

    # -- requests
    def _started(self, req: Request) -> None:
        """The generator begins work on `req`: writes it, or connects for it."""
        now = time.monotonic()
        if self.measured_from <= now < self.measured_until:
            self.c["started_in_window"] += 1
        if req.measured:
            self.lag_us.append(int((now - req.due) * 1e6))
            if req.waited:
                self.c["waited_for_connection"] += 1

    def _send(self, conn: HttpConnection, req: Request) -> None:
        self._started(req)
        conn.send(req)

    def issue(self, req: Request) -> None:
        """`req` is due now: send it, connect for it, or queue it (it then counts as waiting)."""
        if req.measured:
            self.c["requests"] += 1
            self.outstanding += 1
            self.drawn[req.target.cls] += 1
        if not self.backlog:
            if self.close_mode:
                if self._room() > 0:
                    self._connect_for(req)
                    return
            elif self.pool:
                self._send(self.pool.pop(), req)
                return
        req.waited = True
        self.backlog.append(req)
        self._pump()

    def _finish(self, req: Request, now: float, outcome: str | None) -> None:
        if self.trace is not None:
            self.trace.append((req.due, req.sent, now, outcome))
        if self.measured_from <= now < self.measured_until:
            self.c["completed_in_window"] += 1
        if req.measured:
            self.outstanding -= 1
            if self.outstanding == 0 and self.schedule_done and not self.all_done.done():
                self.all_done.set_result(None)

    def completed(self, req: Request, now: float, outcome: str | None, nbytes: int,
                  verified: bool) -> None:
        if req.measured:
            self.bytes += nbytes
            if verified:
                self.c["verified"] += 1
            if outcome is None:
                self.c["ok"] += 1
                self.latency_us.append(int((now - req.due) * 1e6))
            else:
                self.errors[outcome] += 1
        self._finish(req, now, outcome)

    def failed(self, req: Request, kind: str) -> None:
        if req.measured:
            self.errors[kind] += 1
        self._finish(req, time.monotonic(), kind)

    # -- the schedule
    def plan(self) -> tuple[float, int, int, list[Target]]:
        """(offset of the first request, requests in warm-up, in all, their targets)."""
        period = self.streams / self.rate
        first = self.stream / self.rate
        n_warm = max(0, math.ceil((self.warmup_s - first) / period))
        n_total = max(0, math.ceil((self.warmup_s + self.duration_s - first) / period))
        sampler = MixSampler(self.classes, self.seed, self.stream + 1)
        targets = []
        for _ in range(n_total):
            ci, pi = sampler.draw()
            targets.append(self.targets[ci - 1][pi - 1])
        return first, n_warm, n_total, targets

    async def run(self, ready: Callable[[], float]) -> dict:
        """Prepare (draw every URL, open the pool), call `ready()` for the
        wall-clock instant to start at, run the schedule, drain; the document."""
        self.all_done = self.loop.create_future()
        first, n_warm, n_total, targets = self.plan()
        for _ in range(0 if self.close_mode else self.initial_connections):
            self.opening += 1
            conn = await self._open()
            if conn is not None:
                self.pool.append(conn)
        start_at = ready()
        # Every stream (and every client host) counts from one wall-clock instant.
        wall, mono = time.time(), time.monotonic()
        t0 = mono + (start_at - wall)
        self.c["start_behind_us"] = max(0, int((mono - t0) * 1e6))
        self.measured_from = t0 + self.warmup_s
        self.measured_until = self.measured_from + self.duration_s
        period = self.streams / self.rate
        verify_every = self.verify_every
        expire = self.loop.create_task(self._expire())
        pacer = Pacer(self.loop)
        n_verify = 0
        i = 0
        try:
            while i < n_total:
                due = t0 + first + i * period
                if due > time.monotonic():
                    await pacer.wait_until(due)
                    continue
                target = targets[i]
                measured = i >= n_warm
                verify = False
                if measured and verify_every and target.sha256 is not None:
                    verify = n_verify % verify_every == 0
                    n_verify += 1
                self.issue(Request(due, target, measured, verify))
                i += 1
                # A long burst of due requests (the loop fell behind) must not
                # keep responses waiting unread.
                if i % 64 == 0:
                    await asyncio.sleep(0)
            self.schedule_done = True
            if self.outstanding == 0:
                self.all_done.set_result(None)
            await self.all_done
        finally:
            pacer.close()
            expire.cancel()
            for conn in list(self.conns):
                conn.transport.abort()
        return self.document()

    def document(self) -> dict:
        latency, lag = new_histogram(), new_histogram()
        for v in self.latency_us:
            latency.record_value(max(1, v))
        late_us = self.late_s * 1e6
        late = 0
        for v in self.lag_us:
            lag.record_value(max(1, v))
            late += v > late_us
        c = self.c
        return {
            "format": FORMAT, "version": VERSION,
            "stream": self.stream, "streams": self.streams,
            "rate": self.rate, "mode": "close" if self.close_mode else "keepalive",
            "duration_s": self.duration_s, "warmup_s": self.warmup_s,
            "requests": c["requests"], "ok": c["ok"], "errors": dict(self.errors),
            "late": late, "late_ms": self.late_s * 1e3,
            "waited_for_connection": c["waited_for_connection"],
            "started_in_window": c["started_in_window"],
            "completed_in_window": c["completed_in_window"],
            "bytes": self.bytes, "verified": c["verified"],
            "connections_opened": c["connections_opened"],
            "connect_errors": c["connect_errors"],
            "last_connect_error": self.last_connect_error,
            "start_behind_us": c["start_behind_us"],
            "drawn": {self.classes[ci - 1]["name"]: n for ci, n in sorted(self.drawn.items())},
            "histogram": latency.encode().decode(),
            "send_lag_histogram": lag.encode().decode(),
        }


READY = "ready"


def run_stream(cfg: dict, stream: int, ready: Callable[[], float]) -> dict:
    """Run one stream in this process; its document."""
    cfg = dict(cfg, stream=stream)
    if cfg.get("uvloop"):
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    cpu0 = time.process_time()
    try:
        doc = loop.run_until_complete(Generator(cfg, loop).run(ready))
    finally:
        loop.close()
    doc["cpu_s"] = round(time.process_time() - cpu0, 6)
    return doc


def document_of(text: str) -> dict | None:
    start = text.rfind(BEGIN)
    end = text.find(END, start)
    if start < 0 or end < 0:
        return None
    try:
        return json.loads(text[start + len(BEGIN):end])
    except json.JSONDecodeError:
        return None


def _ready_on_stdio() -> float:
    """A stream process says it is ready and reads the start instant from its launcher."""
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()
    return float(sys.stdin.readline())


def main(argv=None) -> int:
    """`loadgen.py CONFIG` runs this host's streams, one process each, and prints
    one document holding every stream's; `loadgen.py CONFIG --stream K` is one
    of those processes."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--stream"):
        print("usage: loadgen.py CONFIG.json [--stream K]", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        cfg = json.load(f)
    if len(argv) == 3:
        doc = run_stream(cfg, int(argv[2]), _ready_on_stdio)
        sys.stdout.write(f"\n{BEGIN}\n{json.dumps(doc)}\n{END}\n")
        return 0
    first = int(cfg["first_stream"])
    n = int(cfg["processes"])
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), argv[0],
                               "--stream", str(k)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
             for k in range(first, first + n)]
    # Start when every process has drawn its URLs and opened its connections:
    # at the runner's start_at (several hosts), or now.
    for p in procs:
        p.stdout.readline()
    start_at = cfg["start_at"] or time.time() + 0.05
    for p in procs:
        try:
            p.stdin.write(f"{start_at!r}\n")
            p.stdin.close()
        except BrokenPipeError:
            pass
    streams, failures = [], []
    for k, p in zip(range(first, first + n), procs):
        out = p.stdout.read()
        p.wait()
        doc = document_of(out)
        if p.returncode != 0 or doc is None:
            failures.append(f"stream {k} exited with {p.returncode}"
                            + ("" if doc is not None else " and printed no document"))
        if doc is not None:
            streams.append(doc)
    result = {"format": FORMAT, "version": VERSION, "host": socket.gethostname(),
              "start_at": start_at, "streams": streams, "failures": failures}
    sys.stdout.write(f"\n{BEGIN}\n{json.dumps(result)}\n{END}\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
