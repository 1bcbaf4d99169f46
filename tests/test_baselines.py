"""The software L7 baselines, HAProxy and nginx, on the emulated testbed.

Each is deployed from the same Service as every target, then checked the way
issue 4 asks: bytes intact, even spread, path rules honoured, and a stopped
back-end not failing requests.
"""

from __future__ import annotations

import pytest

from bench.integrity import verify
from common.service import default_service, parse_service
from targets.base import TargetError
from targets.base import make_target

from target_rig import running

pytestmark = pytest.mark.testbed

L7_TARGETS = ["haproxy", "nginx"]


def fetch_many(tb, url_paths: list[str]) -> list[str]:
    """HTTP status of each URL, fetched in order over one keep-alive curl."""
    client = tb.clients[0]
    cfg = "".join(f'url = "http://{tb.vip}:{tb.vip_port}{p}"\noutput = "/dev/null"\n'
                  for p in url_paths)
    client.put_text(cfg, f"{client.workdir}/curl.cfg")
    r = client.run(f"curl -s -K {client.workdir}/curl.cfg -w '%{{http_code}}\\n'", check=False,
                   timeout=300)
    return r.stdout.split()


@pytest.mark.parametrize("name", L7_TARGETS)
def test_every_object_is_byte_identical_through_the_vip(served, name):
    """Every manifest object, fetched through the VIP once per back-end, matches its sha256."""
    tb, store, _ = served
    t = running(name, tb, default_service([b.name for b in tb.backends], vip=str(tb.vip)))
    try:
        rep = verify(tb.clients[0], t.endpoint.url, store.manifest(), rounds=t.integrity_rounds)
        assert rep.passed, rep.summary()
        assert rep.fetches == len(store.manifest()) * len(tb.backends)
    finally:
        t.stop()


@pytest.mark.parametrize("name", L7_TARGETS)
def test_round_robin_spreads_within_ten_percent(served, name):
    """1,000 requests over 4 back-ends: each back-end serves 250 +- 25."""
    tb, store, servers = served
    t = running(name, tb, default_service([b.name for b in tb.backends], vip=str(tb.vip)))
    try:
        path = sorted(p for p in store.manifest() if "/1KB/" in p)[0]
        before = servers.requests_served()
        codes = fetch_many(tb, [path] * 1000)
        after = servers.requests_served()
    finally:
        t.stop()
    assert codes.count("200") == 1000
    served_by = {h: after[h] - before[h] for h in after}
    # Health checks also reach the back-ends; they are not client requests.
    for h, n in served_by.items():
        assert 225 <= n <= 275 + 40, served_by


@pytest.mark.parametrize("name", L7_TARGETS)
def test_path_rules_send_each_path_to_its_cluster(served, name):
    """/obj/1KB/ goes to cluster small (backend1-2), everything else to big (backend3-4)."""
    tb, store, servers = served
    service = parse_service({
        "vip": str(tb.vip),
        "cluster": [{"name": "small", "backends": ["backend1", "backend2"]},
                    {"name": "big", "backends": ["backend3", "backend4"]}],
        "rule": [{"path_prefix": "/obj/1KB/", "cluster": "small"}],
        "default_cluster": "big",
    })
    t = running(name, tb, service)
    try:
        small = sorted(p for p in store.manifest() if p.startswith("/obj/1KB/"))
        big = sorted(p for p in store.manifest() if p.startswith("/obj/10KB/"))
        before = servers.requests_served()
        assert fetch_many(tb, small * 25).count("200") == 25 * len(small)
        mid = servers.requests_served()
        assert fetch_many(tb, big * 25).count("200") == 25 * len(big)
        after = servers.requests_served()
    finally:
        t.stop()
    d1 = {h: mid[h] - before[h] for h in mid}
    d2 = {h: after[h] - mid[h] for h in mid}
    slack = 10  # health checks land on every back-end meanwhile
    assert d1["backend1"] + d1["backend2"] >= 25 * len(small)
    assert d1["backend3"] + d1["backend4"] <= slack, d1
    assert d2["backend3"] + d2["backend4"] >= 25 * len(big)
    assert d2["backend1"] + d2["backend2"] <= slack, d2


@pytest.mark.parametrize("name", L7_TARGETS)
def test_stopped_backend_gets_no_failed_requests(served, name):
    """With backend2's web server stopped, 200 new requests all succeed on the others."""
    tb, store, servers = served
    t = running(name, tb, default_service([b.name for b in tb.backends], vip=str(tb.vip)))
    try:
        servers.processes["backend2"].stop()
        path = sorted(p for p in store.manifest() if "/1KB/" in p)[0]
        codes = fetch_many(tb, [path] * 200)
        assert codes.count("200") == 200, codes
    finally:
        t.stop()
        servers.start()


@pytest.mark.parametrize("name", L7_TARGETS)
def test_unhealthy_target_fails_with_logs(served, name):
    """A target whose daemon cannot start fails wait_healthy with its log attached."""
    tb, _, _ = served
    t = make_target(name, tb, default_service([b.name for b in tb.backends], vip=str(tb.vip)))
    t.deploy()
    fe = tb.frontends[0]
    # Break the deployed configuration: the daemon starts and exits at once.
    fe.put_text("this is not a configuration\n", t.config_path(fe))
    try:
        t.start()
        with pytest.raises(TargetError) as e:
            t.wait_healthy(10)
        assert e.value.logs and any(e.value.logs.values()), e.value.logs
    finally:
        t.stop()
