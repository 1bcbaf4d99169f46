"""Back-ends, wrk and the verifier on a real emulated testbed, with the direct target."""

from __future__ import annotations

import hashlib
import shlex

import pytest

from analysis import latency
from bench.cpu import CpuSampler
from bench.integrity import verify
from bench.wrk import WrkJob, WrkRunner, judge
from common.service import default_service
from hosts.backends import BackendServers, ObjectStore, object_bytes
from targets.base import TargetError, make_target
from workloads.model import Objects

OBJECTS = Objects(sizes=["1KB", "10KB", "1MB"], per_size=2, seed=99)


@pytest.fixture(scope="module")
def bench(module_testbed, tmp_path_factory):
    """nginx on every back-end with small objects, and the direct target, up."""
    tb = module_testbed
    store = ObjectStore(OBJECTS, cache_dir=tmp_path_factory.mktemp("objects"))
    servers = BackendServers(tb, store)
    servers.start()
    service = default_service([h.name for h in tb.backends], vip=str(tb.vip))
    target = make_target("direct", tb, service)
    target.deploy()
    target.start()
    target.wait_healthy(10)
    yield tb, store, servers, target
    target.stop()
    servers.stop()


def test_objects_are_reproducible_and_depend_on_their_name(tmp_path):
    """Same definition -> same bytes and manifest; two objects of one size differ."""
    a = ObjectStore(OBJECTS, cache_dir=tmp_path / "a")
    b = ObjectStore(OBJECTS, cache_dir=tmp_path / "b")
    a.generate(), b.generate()
    assert a.manifest() == b.manifest()
    m = a.manifest()
    assert len(m) == 6
    assert m["/obj/1KB/0.bin"]["sha256"] != m["/obj/1KB/1.bin"]["sha256"]
    data = (a.www / "obj/1MB/1.bin").read_bytes()
    assert len(data) == 1 << 20
    assert hashlib.sha256(data).hexdigest() == m["/obj/1MB/1.bin"]["sha256"]
    assert data == object_bytes(99, "/obj/1MB/1.bin", 1 << 20)


@pytest.mark.testbed
def test_backends_serve_every_object_intact(bench):
    """The verifier passes through the direct target, on every back-end directly too."""
    tb, store, _, target = bench
    rep = verify(tb.clients[0], target.endpoint.url, store.manifest())
    assert rep.passed, rep.failures
    assert rep.fetches == 6
    for be in tb.backends:
        assert verify(tb.clients[0], f"http://{be.address}:80", store.manifest()).passed


@pytest.mark.testbed
def test_verifier_catches_one_wrong_byte(bench):
    """One flipped byte in one object on the back-end: integrity fails, naming that object."""
    tb, store, servers, _ = bench
    be = tb.host("backend4")
    path = "/obj/10KB/1.bin"
    f = f"{servers.www_dir(be)}{path}"
    flip = (f"python3 -c \"import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); "
            f"b[5000]^=0xff; open(p,'r+b').write(b)\" {shlex.quote(f)}")
    be.run(flip)
    try:
        target = make_target("direct", tb, default_service([h.name for h in tb.backends]),
                             {"backend": "backend4"})
        rep = verify(tb.clients[0], target.endpoint.url, store.manifest())
        assert not rep.passed
        assert [x["path"] for x in rep.failures] == [path]
        assert "sha256" in rep.failures[0]["problem"]
        assert "integrity FAILED" in rep.summary()
    finally:
        be.run(flip)  # flip it back
    assert verify(tb.clients[0], f"http://{be.address}:80", store.manifest()).passed


@pytest.mark.testbed
def test_verifier_reports_a_dead_endpoint(bench):
    """Nothing listening: every fetch fails with status 000, not a pass."""
    tb, store, _, _ = bench
    rep = verify(tb.clients[0], f"http://{tb.host('frontend1').address}:80", store.manifest())
    assert not rep.passed and len(rep.failures) == 6
    assert all(x["status"] == "000" for x in rep.failures)


@pytest.mark.testbed
def test_direct_target_life_cycle(bench):
    """direct: endpoint is its back-end, healthy, counts switch traffic, no front-end cost."""
    tb, _, _, target = bench
    assert target.endpoint.url == f"http://{tb.host('backend1').address}:80"
    assert target.healthy()
    assert target.frontend_hosts() == []
    before = target.stats()
    tb.clients[0].run(f"curl -s -o /dev/null {target.endpoint.url}/obj/1MB/0.bin")
    after = target.stats()
    assert after["to_backend_packets"] > before["to_backend_packets"]
    assert after["from_backend_bytes"] - before["from_backend_bytes"] > 1 << 20
    target.stop()
    target.stop()  # idempotent
    with pytest.raises(TargetError, match="unknown parameter"):
        make_target("direct", tb, default_service(["backend1"]), {"nosuch": 1})
    with pytest.raises(TargetError, match="not a back-end"):
        make_target("direct", tb, default_service(["backend1"]), {"backend": "client"})


def _classes(names_weights):
    return [{"name": n, "weight": w, "paths": OBJECTS.paths(n)} for n, w in names_weights]


@pytest.mark.testbed
def test_wrk_json_from_a_real_run(bench):
    """wrk with the bench's Lua against nginx: the JSON document parses and adds up."""
    tb, _, _, target = bench
    cpu = CpuSampler(list(tb.hosts.values()))
    a = cpu.snapshot()
    out = WrkRunner(tb.clients[0]).run(WrkJob(
        url=target.endpoint.url, classes=_classes([("1KB", 8000), ("10KB", 2000)]),
        threads=2, connections=4, duration_s=1, seed=5))
    b = cpu.snapshot()
    assert out.ok, (out.error, out.stdout, out.stderr)
    d = out.data
    assert d["format"] == "miresga-bench-wrk" and d["threads"] == 2
    assert d["requests"] > 100
    assert d["requests_per_s"] == pytest.approx(d["requests"] / (d["duration_us"] / 1e6))
    assert d["bytes"] > d["requests"] * 1024
    pct = d["latency_us"]["percentiles"]
    assert 0 < pct["50"] <= pct["90"] <= pct["99"] <= pct["99.9"] <= d["latency_us"]["max"]
    # The recorded latencies, one per completed request, as an HdrHistogram.
    assert d["histogram_error"] is None
    assert latency.decode(d["histogram"]).get_total_count() == d["requests"]
    assert d["errors"] == {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    # Every completed request was drawn; in-flight ones at the end are drawn too.
    assert set(d["drawn"]) == {"1KB", "10KB"}
    assert d["requests"] <= sum(d["drawn"].values()) <= d["requests"] + 4 + 2
    assert 0.7 < d["drawn"]["1KB"] / sum(d["drawn"].values()) < 0.9
    # CPU of the window: the client and the back-end worked, the front-end did not.
    delta = cpu.delta(a, b)
    assert delta["per_role_s"]["client"] > 0.05
    assert delta["per_role_s"]["backend"] > 0.05
    assert delta["per_role_s"]["frontend"] < 0.05
    assert delta["softirq_s"] >= 0 and len(delta["machines"]) == 1
    machine = next(iter(delta["machines"].values()))
    assert len(machine["loadavg_end"]) == 3 and machine["loadavg_end"][0] >= 0
    assert delta["steal_s"] == machine["seconds"]["steal"] >= 0


@pytest.mark.testbed
def test_close_mode_and_the_probe(bench):
    """One connection per request with a paced probe beside it: both documents parse."""
    tb, _, _, target = bench
    runner = WrkRunner(tb.clients[0])
    probe = runner.start(WrkJob(url=target.endpoint.url, classes=_classes([("1KB", 1)]),
                                threads=1, connections=1, duration_s=1, delay_ms=20,
                                close=True, role="probe"))
    load = runner.run(WrkJob(url=target.endpoint.url, classes=_classes([("1MB", 1)]),
                             threads=1, connections=2, duration_s=1, close=True))
    p = probe.finish()
    assert load.ok and p.ok, (load.error, p.error, p.stdout)
    assert load.data["errors"]["connect"] == 0 and load.data["requests"] > 5
    # Paced: at most one request per 20 ms on its one connection (wrk's own
    # measured duration, which runs a little past the 1 s asked for).
    assert 5 <= p.data["requests"] <= p.data["duration_us"] / 1e6 / 0.020 + 2
    assert p.data["role"] == "probe"


@pytest.mark.parametrize("rc,stdout,expect", [
    (1, "unable to connect to 10.10.11.2:81 Connection refused\n", "exited with 1"),
    (0, "", "printed nothing"),
    (0, "Running 1s test @ http://x\n", "printed no result document"),
    (None, "", "did not finish"),
    (0, '----BEGIN MIRESGA-BENCH JSON----\n{"requests": 0, "errors": {"connect": 9}}\n'
        '----END MIRESGA-BENCH JSON----\n', "completed no request"),
])
def test_a_bad_wrk_run_is_an_error_not_zeros(rc, stdout, expect):
    """Failure, silence, garbage, a hang or zero requests: each is an error with its cause."""
    data, error = judge("load", rc, stdout)
    assert error is not None and expect in error
