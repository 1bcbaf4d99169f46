"""L7 decisions in the campaign: the campaign's service, the re-route workload's requests
(wrk against a recording server on loopback), where it does not apply, its counters."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from analysis.results import tidy_row
from bench.integrity import verify
from bench.reroute import (alternating_headers, integrity_alternation, load_threads,
                           not_applicable, reroute_metrics)
from bench.wrk import WrkJob, add_histogram, parse_output
from common.errors import ConfigError
from common.service import BIG_CLUSTER_HOST, SMALL_CLUSTER_HOST, bench_service
from workloads.model import load_workloads, parse_workloads

BACKENDS = ["backend1", "backend2", "backend3", "backend4"]


def test_the_campaign_service_routes_every_object_by_path_or_host():
    """Two clusters of two; the smallest objects to "small", the rest and /health to "big";
    a cluster's Host sends any path there; every object of the default workloads matches a
    rule (none is a 404)."""
    s = bench_service(BACKENDS, vip="10.0.0.100")
    assert {c.name: c.backends for c in s.clusters} == {
        "small": ["backend1", "backend2"], "big": ["backend3", "backend4"]}
    assert s.cluster_for("/obj/1KB/0.bin").name == "small"
    assert s.cluster_for("/obj/1MB/0.bin").name == "big"
    assert s.cluster_for("/health").name == "big"
    assert s.cluster_for("/obj/1MB/0.bin", SMALL_CLUSTER_HOST).name == "small"
    assert s.cluster_for("/obj/1KB/0.bin", f"{BIG_CLUSTER_HOST.upper()}:80").name == "big"
    assert s.cluster_for("/elsewhere") is None
    objs = load_workloads().objects
    assert {s.cluster_for(p).name for p, _ in objs.all_paths()} == {"small", "big"}


def test_the_campaign_service_with_one_backend_is_one_cluster():
    s = bench_service(["backend1"])
    assert [c.name for c in s.clusters] == ["all"]
    assert s.cluster_for("/obj/1MB/0.bin", SMALL_CLUSTER_HOST).name == "all"
    with pytest.raises(ValueError, match="not two clusters"):
        alternating_headers(s, "/obj/1KB/0.bin")


def test_the_alternating_headers_name_one_cluster_each():
    s = bench_service(BACKENDS)
    turns = alternating_headers(s, "/obj/1MB/0.bin")
    assert [s.cluster_for("/obj/1MB/0.bin", h["Host"]).name for h in turns] == ["small", "big"]


WL = parse_workloads({"objects": {"sizes": ["1KB", "1MB"]},
                      "workload": [{"name": "rr", "size": "1KB", "reroute": True},
                                   {"name": "1KB", "size": "1KB"}]})


def test_a_reroute_workload_is_a_kind_of_its_own_and_needs_a_fixed_size():
    assert WL.get("rr").kind == "reroute" and WL.get("1KB").kind == "fixed"
    assert load_threads(WL.get("rr"), 2, 64) == 64 and load_threads(WL.get("1KB"), 2, 64) == 2
    with pytest.raises(ConfigError, match=r"workload\[0\].*reroute: only with a fixed size"):
        parse_workloads({"objects": {"sizes": ["1KB"]},
                         "workload": [{"name": "m", "mix": {"1KB": 100}, "reroute": True}]})


@pytest.mark.parametrize("workload, mode, layer7, clusters, expect", [
    ("1KB", "close", False, 2, None),
    ("rr", "keep-alive", True, 2, None),
    ("rr", "keep-alive", False, 2, "cannot route by path or Host"),
    ("rr", "close", True, 2, "nothing to re-route"),
    ("rr", "keep-alive", True, 1, "one cluster"),
])
def test_where_the_reroute_workload_does_not_apply(workload, mode, layer7, clusters, expect):
    service = bench_service(BACKENDS[:clusters])
    why = not_applicable(WL.get(workload), mode, layer7, "l4switch", service)
    assert why is None if expect is None else expect in why


def test_reroute_metrics_from_the_counters():
    """Miresga's decisions.other_backend over its requests; HAProxy's per-server counts
    summed per cluster; the back-ends' own counts per cluster."""
    s = bench_service(BACKENDS)
    before = {"summary": {"frontend_requests": 10, "frontend_decisions": {"other_backend": 4}},
              "backends": {b: {"requests": 1} for b in BACKENDS}}
    after = {"summary": {"frontend_requests": 110, "frontend_decisions": {"other_backend": 94}},
             "backends": {b: {"requests": 26} for b in BACKENDS}}
    served0 = dict.fromkeys(BACKENDS, 5)
    served1 = {"backend1": 30, "backend2": 30, "backend3": 35, "backend4": 25}
    m = reroute_metrics(s, before, after, served0, served1, load_requests=91)
    assert m["rate"] == pytest.approx(0.9) and m["rerouted"] == 90 and m["requests"] == 100
    assert m["per_load_request"] == pytest.approx(90 / 91)
    assert m["target_cluster_requests"] == {"small": 50, "big": 50}
    assert m["cluster_requests"] == {"small": 50, "big": 50}
    none = reroute_metrics(s, {}, {}, None, served1)
    assert none["rate"] is None and none["cluster_requests"] is None
    assert none["target_cluster_requests"] is None
    row = tidy_row({"status": "ok", "metrics": {"l7": {**m, "cluster_requests":
                                                      {"small": 30, "big": 70}}}})
    assert row["reroute_rate"] == pytest.approx(90 / 91)
    assert row["cluster_min_share"] == pytest.approx(0.3)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 1 KB, keep-alive, and records (connection, Host)."""

    protocol_version = "HTTP/1.1"
    body = b"x" * 1024

    def do_GET(self):  # noqa: N802 - the stdlib's name
        with self.server.lock:
            self.server.seen.append((self.client_address, self.headers.get("Host")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_wrk_alternates_the_clusters_on_every_connection(tmp_path: Path):
    """The re-route workload's script on real wrk, one thread per connection: on each
    connection the Host headers go one cluster, the other, the first, ... (every request
    after a connection's first changes cluster), and wrk's histogram holds every request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen, server.lock = [], threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = bench_service(BACKENDS)
        job = WrkJob(url=f"http://127.0.0.1:{server.server_port}",
                     classes=[{"name": "1KB", "weight": 10000,
                               "paths": ["/obj/1KB/0.bin", "/obj/1KB/1.bin"]}],
                     threads=4, connections=4, duration_s=1, timeout_s=5,
                     alternate=alternating_headers(s, "/obj/1KB/0.bin"))
        script = tmp_path / "rr.lua"
        script.write_text(job.script())
        r = subprocess.run(["wrk", "-t4", "-c4", "-d1s", "--timeout", "5s", "-s", str(script),
                            job.url], capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stderr
    data = parse_output(r.stdout)
    assert data["requests"] > 20
    by_conn: dict = {}
    for conn, host in server.seen:
        by_conn.setdefault(conn, []).append(host)
    assert len(by_conn) == 4
    both = {SMALL_CLUSTER_HOST, BIG_CLUSTER_HOST}
    for hosts in by_conn.values():
        assert set(hosts) == both
        assert all(a != b for a, b in zip(hosts, hosts[1:])), hosts[:10]
    assert data["requests"] <= len(server.seen)
    add_histogram(data, connections=4)
    assert data["histogram_error"] is None


def test_alternating_requests_need_one_connection_per_thread():
    with pytest.raises(ValueError, match="one connection per thread"):
        WrkJob(url="http://x", classes=[], threads=2, connections=4,
               alternate=[{"Host": "a"}, {"Host": "b"}])


class _Objects(http.server.BaseHTTPRequestHandler):
    """Serves `server.objects` (path -> bytes), keep-alive; records (connection, Host);
    `server.corrupt_host`: the Host whose responses get one byte changed."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - the stdlib's name
        host = self.headers.get("Host")
        with self.server.lock:
            self.server.seen.append((self.client_address, host))
        body = self.server.objects.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if host == self.server.corrupt_host:
            body = bytes([body[0] ^ 1]) + body[1:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _LocalHost:
    """The part of the host interface verify() uses, on this machine."""

    def __init__(self, workdir: Path):
        self.workdir = str(workdir)

    def put_text(self, text: str, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)

    def run(self, cmd: str, check: bool = True, timeout: float = 60):
        p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        return SimpleNamespace(ok=p.returncode == 0, rc=p.returncode, stdout=p.stdout,
                               stderr=p.stderr)


def test_the_integrity_check_ends_with_a_round_that_alternates_clusters(tmp_path: Path):
    """An L7 target's integrity check: the usual rounds, then every object once more on one
    kept-alive connection, the Host alternating between the clusters' (so every request is
    re-routed), each response checked against the manifest; a byte changed on one cluster's
    responses fails it."""
    objects = {f"/obj/1KB/{i}.bin": hashlib.sha256(b"%d" % i).digest() * 32 for i in range(5)}
    manifest = {p: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                for p, b in objects.items()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Objects)
    server.seen, server.lock, server.objects, server.corrupt_host = [], threading.Lock(), objects, None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, url = _LocalHost(tmp_path), f"http://127.0.0.1:{server.server_port}"
    turns = integrity_alternation(bench_service(BACKENDS), layer7=True)
    try:
        rep = verify(host, url, manifest, rounds=1, alternate=turns)
        assert rep.passed, rep.failures
        assert rep.fetches == 10 and rep.alternate_fetches == 5 and rep.alternate_connections == 1
        alternating = [(c, h) for c, h in server.seen if h in (SMALL_CLUSTER_HOST,
                                                                BIG_CLUSTER_HOST)]
        assert len({c for c, _ in alternating}) == 1
        assert [h for _, h in alternating] == [SMALL_CLUSTER_HOST, BIG_CLUSTER_HOST] * 2 + \
            [SMALL_CLUSTER_HOST]
        server.corrupt_host = BIG_CLUSTER_HOST
        bad = verify(host, url, manifest, rounds=1, alternate=turns)
        assert not bad.passed
        assert sorted(f["path"] for f in bad.failures) == ["/obj/1KB/1.bin", "/obj/1KB/3.bin"]
        assert all(f["problem"].startswith("sha256") for f in bad.failures)
    finally:
        server.shutdown()
        server.server_close()
    assert integrity_alternation(bench_service(BACKENDS), layer7=False) is None
    assert integrity_alternation(bench_service(["backend1"]), layer7=True) is None
