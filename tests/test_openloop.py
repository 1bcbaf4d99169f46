"""The open-loop generator on this machine, against a tiny HTTP server the test controls.

What is checked: latency counts from the intended send time (a server stall
is counted by every request due during it, whichever way the requests wait),
histograms of several streams merge into exactly the histogram of all their
samples, the URL sampler draws what wrk's Lua sampler draws, and bad
responses are counted by kind.  No assertion depends on timing: the stall
begins and ends at requests of the schedule (the 100th issued, then 40 more),
not after a sleep, and the checks compare timestamps the run itself recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
import time

import pytest
import uvloop
from hdrh.histogram import HdrHistogram

from bench.openloop import OpenLoopJob, merge_histograms, new_histogram, summarize
from bench.wrk import LUA_DIR, lua_literal
from workloads.model import DEFAULT_WORKLOADS, load_workloads
from workloads.openloop.loadgen import Generator, LuaJitRandom, MixSampler, parse_head

PATHS = [f"/obj/1KB/{i}.bin" for i in range(4)]
BODIES = {p: hashlib.shake_256(p.encode()).digest(1024) for p in PATHS}


class TinyServer:
    """HTTP/1.1 on 127.0.0.1 in the test's event loop: objects by path, keep-alive
    or close as the request asks, a stall that holds every response from
    `begin_stall` until `release` is set, and misbehaviour by path."""

    def __init__(self):
        self.release = asyncio.Event()
        self.stall_from: float | None = None     # due time of the request that began it
        self.released_at: float | None = None
        self.server = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    def begin_stall(self, due: float) -> None:
        self.stall_from = due

    async def release_when(self, condition, deadline_s: float = 60.0) -> None:
        """End the stall once `condition()` holds (polled), or fail after the deadline."""
        end = time.monotonic() + deadline_s
        while not condition():
            if time.monotonic() > end:
                raise AssertionError("the release condition never held")
            await asyncio.sleep(0.001)
        self.released_at = time.monotonic()
        self.release.set()

    async def _handle(self, reader, writer) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if self.stall_from is not None and not self.release.is_set():
                    await self.release.wait()
                writer.write(self.response(path))
                await writer.drain()
                # A short body is followed by a close, as from a server that died.
                if b"connection: close" in head.lower() or path == "/short":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    def response(path: str) -> bytes:
        if path == "/missing":
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        if path == "/flipped":
            body = bytearray(BODIES[PATHS[0]])
            body[100] ^= 0xFF
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + bytes(body)
        if path == "/short":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + BODIES[PATHS[0]][:10]
        if path == "/unframed":
            return b"HTTP/1.1 200 OK\r\n\r\n" + BODIES[PATHS[0]]
        body = BODIES[path]
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def config(port: int, **kw) -> dict:
    cfg = {"host": "127.0.0.1", "port": port, "rate": 1000, "duration_s": 0.5, "warmup_s": 0,
           "mode": "keepalive", "connections": 2, "max_connections": 100, "timeout_s": 10,
           "seed": 1, "verify_every": 1, "late_ms": 1.0, "trace": True, "stream": 0,
           "streams": 1,
           "classes": [{"name": "1KB", "weight": 10000, "paths": PATHS,
                        "sizes": {p: 1024 for p in PATHS},
                        "sha256": {p: hashlib.sha256(b).hexdigest() for p, b in BODIES.items()}}]}
    cfg.update(kw)
    return cfg


class StallingGenerator(Generator):
    """Begins the server's stall as it issues its `stall_at`-th request: in the
    schedule's order, so every later request is due during the stall however
    far behind its schedule the generator runs on a loaded machine."""

    def __init__(self, cfg, loop, server: TinyServer, stall_at: int):
        super().__init__(cfg, loop)
        self.server = server
        self.stall_at = stall_at

    def issue(self, req):
        if self.c["requests"] == self.stall_at:
            self.server.begin_stall(req.due)
        super().issue(req)


def run(server: TinyServer, cfgs: list[dict], stall_at: int | None = None,
        release_after: int = 0):
    """Run one Generator per configuration (streams) in one uvloop loop beside the server;
    with `stall_at`, the server stalls from that request until `release_after` more
    have been issued."""
    loop = uvloop.new_event_loop()

    async def main():
        await server.start()
        if stall_at is None:
            gens = [Generator(dict(c, port=server.port), loop) for c in cfgs]
        else:
            gens = [StallingGenerator(dict(c, port=server.port), loop, server, stall_at)
                    for c in cfgs]
        watcher = None
        if stall_at is not None:
            watcher = loop.create_task(server.release_when(
                lambda: gens[0].c["requests"] >= stall_at + release_after))
        start_at = time.time() + 0.05
        docs = await asyncio.gather(*(g.run(lambda: start_at) for g in gens))
        if watcher is not None:
            await watcher
        await server.stop()
        return gens, docs

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.parametrize("mode, max_connections", [
    ("keepalive", 1),      # due requests wait for the one connection
    ("keepalive", 100),    # the pool grows: requests go out on time, answers are held
    ("close", 100),        # a connection per request, answers held
])
def test_a_server_stall_counts_for_every_request_due_during_it(mode, max_connections):
    """Every request due while the server stalls completes after the stall ends, so its
    latency (from its due time) includes the rest of the stall; none is dropped."""
    server = TinyServer()
    (gen,), (doc,) = run(server, [config(0, mode=mode, max_connections=max_connections)],
                         stall_at=100, release_after=40)
    assert doc["errors"] == {} and doc["ok"] == doc["requests"] == 500
    assert len(gen.trace) == 500
    during = [t for t in gen.trace if server.stall_from <= t[0] < server.released_at]
    assert len(during) >= 40
    for due, _sent, done, outcome in during:
        assert outcome is None
        assert done >= server.released_at, "a request due during the stall did not wait for it"
    # The histogram holds those latencies: its maximum is at least the longest
    # wait from a due time inside the stall to its end.
    hist = HdrHistogram.decode(doc["histogram"])
    assert hist.get_max_value() >= int((server.released_at - server.stall_from) * 1e6) * 0.999
    assert hist.get_total_count() == 500
    if max_connections == 1:
        # They could not be sent on time, so they waited and are late, and said so:
        # the 40 issued before the release found the one connection held.
        assert doc["waited_for_connection"] >= 39
        assert doc["late"] >= 20


def test_two_streams_merge_into_the_histogram_of_all_their_samples():
    """Two streams of one schedule: their merged histogram equals one histogram of every
    latency the two recorded, and together they sent the schedule's requests."""
    server = TinyServer()
    cfgs = [config(0, rate=800, streams=2, stream=k) for k in range(2)]
    gens, docs = run(server, cfgs)
    merged = summarize(docs)
    every = new_histogram()
    for g in gens:
        for due, _sent, done, outcome in g.trace:
            assert outcome is None
    for g in gens:
        for v in g.latency_us:
            every.record_value(max(1, v))
    back = HdrHistogram.decode(merged["histogram"])
    assert back.get_total_count() == every.get_total_count() == 400
    assert [back.get_count_at_index(i) for i in range(back.counts_len)] == \
        [every.get_count_at_index(i) for i in range(every.counts_len)]
    assert merged["requests"] == merged["ok"] == 400
    assert merged["bytes"] == 400 * 1024 and merged["verified"] == 400
    with pytest.raises(Exception, match="repeat a stream"):
        summarize(docs + docs[:1])
    with pytest.raises(Exception, match="rate"):
        summarize([docs[0], dict(docs[1], rate=1)])
    # The streams interleave: stream 1's requests fall between stream 0's.
    dues = sorted((t[0], k) for k, g in enumerate(gens) for t in g.trace)
    assert [k for _, k in dues[:6]] == [0, 1, 0, 1, 0, 1]


def test_merging_encoded_histograms_is_exact():
    """Samples split across histograms, encoded and decoded, add up to the histogram
    of all samples: same count in every bucket, same min, max and percentiles."""
    rng = random.Random(5)
    samples = [int(rng.lognormvariate(6, 1.5)) + 1 for _ in range(20000)]
    parts = [new_histogram() for _ in range(3)]
    whole = new_histogram()
    for i, v in enumerate(samples):
        parts[i % 3].record_value(v)
        whole.record_value(v)
    merged = merge_histograms(p.encode().decode() for p in parts)
    assert merged.get_total_count() == len(samples)
    assert [merged.get_count_at_index(i) for i in range(merged.counts_len)] == \
        [whole.get_count_at_index(i) for i in range(whole.counts_len)]
    assert merged.get_min_value() == whole.get_min_value()
    assert merged.get_max_value() == whole.get_max_value()
    for p in (50, 90, 99, 99.9):
        assert merged.get_value_at_percentile(p) == whole.get_value_at_percentile(p)


@pytest.mark.parametrize("path, kind", [
    ("/missing", "status"), ("/flipped", "corrupt"), ("/short", "read"),
    ("/unframed", "protocol"),
])
def test_bad_responses_are_counted_by_kind(path, kind):
    """A wrong status, a flipped byte, a short body, an unframed body: each request
    fails with its kind and none counts as a success or a latency."""
    server = TinyServer()
    digest = hashlib.sha256(BODIES[PATHS[0]]).hexdigest()
    cfg = config(0, rate=200, duration_s=0.1, classes=[
        {"name": "1KB", "weight": 10000, "paths": [path], "sizes": {path: 1024},
         "sha256": {path: digest}}])
    (_,), (doc,) = run(server, [cfg])
    assert doc["requests"] == 20
    assert doc["ok"] == 0 and doc["errors"] == {kind: 20}
    assert HdrHistogram.decode(doc["histogram"]).get_total_count() == 0


def test_response_heads_parse_as_nginx_and_http_1_0_write_them():
    assert parse_head(b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 1024") == \
        (200, 1024, False)
    assert parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nConnection: close") == \
        (200, 5, True)
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 5") == (200, 5, True)


# --------------------------------------------------------------- sampler

def luajit_draws(classes: list[dict], seed: int, stream: int, n: int) -> list[tuple[int, int]]:
    driver = f"""
local s = sampler_new({lua_literal(classes)}, {seed}, {stream})
for i = 1, {n} do
  local ci, pi = sampler_draw(s)
  io.write(ci, " ", pi, "\\n")
end
"""
    script = (LUA_DIR / "sampler.lua").read_text() + "\n" + driver
    p = subprocess.run(["luajit", "-"], input=script, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [tuple(map(int, line.split())) for line in p.stdout.splitlines()]


@pytest.mark.parametrize("workload, seed, stream", [
    ("traffic2", 1, 1), ("traffic3", 7, 2), ("1KB", 3, 1), ("traffic3", 123456, 9),
])
def test_sampler_draws_what_wrks_lua_sampler_draws(workload, seed, stream):
    """The Python sampler is the LuaJIT one: the same (class, object) sequence for a
    seed and stream, so an open-loop run and a wrk run draw the same URLs."""
    wl = load_workloads(DEFAULT_WORKLOADS)
    classes = [{"name": label, "weight": w, "paths": wl.objects.paths(label)}
               for label, w in wl.get(workload).classes()]
    want = luajit_draws(classes, seed, stream, 5000)
    s = MixSampler(classes, seed, stream)
    assert [s.draw() for _ in range(5000)] == want


def test_luajit_random_matches_luajit_for_odd_seeds():
    """math.random() itself, bit for bit, including seeds whose state needs the MSB fix-up."""
    for seed in (0, 1, -5, 65537 * 20250428 + 3, 0.5):
        lua = (f"math.randomseed({seed!r}) "
               "for i = 1, 50 do io.write(string.format('%.17g\\n', math.random())) end")
        p = subprocess.run(["luajit", "-e", lua], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        r = LuaJitRandom(seed)
        assert [r.random() for _ in range(50)] == [float(x) for x in p.stdout.split()], seed


def test_job_configuration_sizes_the_pool_and_names_bad_input():
    """The job turns a mix into the generator's configuration, with sizes and digests
    from the manifest, and refuses what cannot run."""
    manifest = {p: {"size": 1024, "sha256": hashlib.sha256(b).hexdigest()}
                for p, b in BODIES.items()}
    job = OpenLoopJob(url="http://10.10.11.2:80", rate=4000, processes=2, manifest=manifest,
                      classes=[{"name": "1KB", "weight": 10000, "paths": PATHS}])
    cfg = job.config()
    assert (cfg["host"], cfg["port"], cfg["streams"], cfg["mode"]) == ("10.10.11.2", 80, 2,
                                                                        "keepalive")
    assert cfg["connections"] == 4          # 2,000 req/s per process at 2 ms each
    assert cfg["classes"][0]["sha256"] == {p: m["sha256"] for p, m in manifest.items()}
    bare = OpenLoopJob(url="http://h:8080", rate=10, classes=[
        {"name": "10KB", "weight": 10000, "paths": ["/obj/10KB/0.bin"]}]).config()
    assert bare["port"] == 8080 and bare["classes"][0]["sizes"] == {"/obj/10KB/0.bin": 10240}
    hosts = [OpenLoopJob(url="http://h:80", rate=900, processes=3, first_stream=3 * h,
                         total_streams=6, classes=[]) for h in range(2)]
    assert [(j.config()["first_stream"], j.config()["streams"]) for j in hosts] == [(0, 6),
                                                                                    (3, 6)]
    assert hosts[0].config()["connections"] == 2
    with pytest.raises(Exception, match="not within"):
        OpenLoopJob(url="http://h:80", rate=1, processes=2, first_stream=1, total_streams=2,
                    classes=[])
    with pytest.raises(Exception, match="rate"):
        OpenLoopJob(url="http://h:80", rate=0, classes=[])
    with pytest.raises(Exception, match="not in the manifest"):
        OpenLoopJob(url="http://h:80", rate=1, manifest={}, classes=[
            {"name": "1KB", "weight": 1, "paths": ["/nope"]}]).config()
