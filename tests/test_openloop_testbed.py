"""The open-loop runner on an emulated testbed, against the direct target (nginx)."""

from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram
from target_rig import running

from bench import clients
from bench.openloop import OpenLoopJob, OpenLoopRunner
from common.service import default_service
from workloads.model import parse_size

pytestmark = pytest.mark.testbed

RATE = 300
DURATION_S = 5


@pytest.fixture(scope="module")
def direct(served):
    """nginx serving the default objects on every back-end, and the direct target, up."""
    tb, store, _ = served
    target = running("direct", tb, default_service([h.name for h in tb.backends]))
    yield tb, store, target
    target.stop()


def classes(store, mix: dict[str, int]) -> list[dict]:
    return [{"name": n, "weight": w, "paths": store.objects.paths(n)} for n, w in mix.items()]


@pytest.mark.parametrize("close", [False, True], ids=["keepalive", "close"])
def test_open_loop_run_holds_the_rate_with_every_body_intact(direct, close):
    """Two processes at 300 req/s for 5 s on the client: the rate is achieved within 2%,
    no request fails, every body has its object's length and sha256, and the bytes
    add up to the objects drawn."""
    tb, store, target = direct
    mix = classes(store, {"1KB": 5000, "10KB": 5000})
    job = OpenLoopJob(url=target.endpoint.url, classes=mix, rate=RATE, duration_s=DURATION_S,
                      warmup_s=1, processes=2, close=close, manifest=store.manifest(),
                      verify_every=1, seed=3)
    out = OpenLoopRunner(tb.clients[0]).run(job)
    assert out.ok, (out.error, out.stdout[-2000:])
    d = out.data
    assert d["streams_reported"] == d["streams_total"] == 2
    assert d["mode"] == ("close" if close else "keepalive")
    assert d["requests"] == RATE * DURATION_S
    assert d["errors"] == {} and d["ok"] == d["requests"]
    assert abs(d["requests_per_s"] - RATE) <= 0.02 * RATE, d["requests_per_s"]
    assert d["verified"] == d["ok"]
    assert sum(d["drawn"].values()) == d["ok"] and set(d["drawn"]) == {"1KB", "10KB"}
    assert d["bytes"] == sum(parse_size(n) * k for n, k in d["drawn"].items())
    hist = HdrHistogram.decode(d["histogram"])
    assert hist.get_total_count() == d["ok"] == d["latency_us"]["count"]
    p = d["latency_us"]["percentiles"]
    assert 0 < p["50"] <= p["90"] <= p["99"] <= p["99.9"] <= d["latency_us"]["max"]
    if close:
        assert d["connections_opened"] >= d["ok"]


def test_open_loop_run_against_nothing_fails_with_connect_errors(direct):
    """No server at the address: every request fails to connect, and the run is an error."""
    tb, store, _ = direct
    job = OpenLoopJob(url=f"http://{tb.host('frontend1').address}:80",
                      classes=classes(store, {"1KB": 10000}), rate=50, duration_s=1, warmup_s=0,
                      timeout_s=2)
    out = OpenLoopRunner(tb.clients[0]).run(job)
    assert not out.ok and "no request succeeded" in out.error
    assert out.data["errors"] == {"connect": 50} and out.data["ok"] == 0


def test_every_client_host_runs_its_share_of_one_schedule(direct):
    """Both client hosts at 300 req/s together, started at one time: each ran one of the two
    streams, every request of the schedule was offered once and answered intact, and the
    merged histogram holds every response of both."""
    tb, store, target = direct
    assert len(tb.clients) == 2
    job = OpenLoopJob(url=target.endpoint.url, classes=classes(store, {"1KB": 10000}),
                      rate=RATE, duration_s=DURATION_S, warmup_s=1, manifest=store.manifest(),
                      verify_every=1, seed=5)
    out = clients.run_open(tb.clients, job)
    assert out.ok, (out.error, [o.stdout[-1000:] for _, o in out.parts])
    d = out.data
    assert [c["host"] for c in d["clients"]] == [h.name for h in tb.clients]
    assert [c["streams"] for c in d["clients"]] == [1, 1]
    assert sorted(s["stream"] for s in d["streams"]) == [0, 1]
    assert d["requests"] == RATE * DURATION_S and d["ok"] == d["requests"] == d["verified"]
    assert HdrHistogram.decode(d["histogram"]).get_total_count() == d["ok"]
    # One schedule: the two hosts' streams were offered the same number of requests.
    assert [s["requests"] for s in d["streams"]] == [RATE * DURATION_S // 2] * 2
