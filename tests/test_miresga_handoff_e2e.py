"""The hand-off end to end (issues 13 and 14): requests of any shape, pipelining
across clusters, half-close, a download that outlasts the front-end's idle
timeout, kept-alive connections across a front-end restart; and every hand-off
mode serving every size byte for byte.

The `miresga` target on the emulated testbed, deployed as a campaign deploys
it, driven by real clients: curl, h2load, and a raw socket client
(RAW_HTTP below) for the shapes curl cannot make: segments of 7 or 1 bytes, a
request pipeline, a half-close, connections kept across a restart.  Every
body is checked against the object manifest (sha256).  The client's link MTU
and initial congestion window are changed for single tests and put back.

Service: cluster `small` (backend1, backend2) serves /obj/1KB/, cluster `big`
(backend3, backend4) every other object and /health.  Short timeouts: the
front-end's idle timeout is 2 s, so a download rate-limited to 10 s outlasts
it five times.
"""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest

from bench.integrity import verify
from switchhost.layouts import DP_SLOTS_DEFAULT, DP_WAYS_DEFAULT
from targets.base import make_target

from target_rig import two_cluster_service

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

FRONTEND_IDLE_S = 2.0
PARAMS = {
    "frontend_grace_ms": 500,
    "agent_close_grace_s": 1.0,
    "frontend_idle_s": FRONTEND_IDLE_S,
    "filter_period_s": 30.0,
    "switch_idle_s": 30.0,
    "agent_idle_s": 60.0,
}

# A raw HTTP/1.1 client, standard library only.  argv[1]: a JSON spec; prints JSON.
#   send      the payload in writes of `segment` bytes (0: one write, TCP_NODELAY,
#             a short pause between writes so that each leaves as its own
#             segment), optionally shutdown(SHUT_WR), then reads `responses`
#             responses (Content-Length framing) and, with wait_eof, the close
#   slowread  one request, the response read at `rate` bytes/s through a 64 KB
#             receive buffer (curl's --limit-rate lets a fast transfer burst)
#   restart   `count` kept-alive connections, one request each; then the file
#             `ready` appears and the client waits for the file `go`; then the
#             request again on each: "reset", "eof", "response" or "timeout"
RAW_HTTP = r"""
import hashlib, json, os, socket, sys, time

def parse(buf):
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if len(buf) < end + 4 + length:
        return None
    body = buf[end + 4:end + 4 + length]
    return ({"status": int(head[0].split()[1]), "length": length,
             "sha256": hashlib.sha256(body).hexdigest()}, buf[end + 4 + length:])

def read(sock, n, deadline, wait_eof):
    buf, out, eof, reset = b"", [], False, False
    while True:
        r = parse(buf)
        if r and len(out) < n:
            out.append(r[0])
            buf = r[1]
            continue
        if len(out) >= n and not wait_eof:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            b = sock.recv(1 << 18)
        except socket.timeout:
            break
        except ConnectionResetError:
            reset = True
            break
        if not b:
            eof = True
            break
        buf += b
    return {"responses": out, "eof": eof, "reset": reset, "left_over": len(buf)}

def connect(spec):
    s = socket.create_connection((spec["host"], spec["port"]), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

spec = json.loads(sys.argv[1])
if spec["op"] == "send":
    s = connect(spec)
    payload, seg = bytes.fromhex(spec["payload"]), spec.get("segment", 0) or len(spec["payload"])
    t0 = time.monotonic()
    for i in range(0, len(payload), seg):
        s.sendall(payload[i:i + seg])
        if seg < len(payload):
            time.sleep(0.002)
    if spec.get("shutdown"):
        s.shutdown(socket.SHUT_WR)
    out = read(s, spec["responses"], time.monotonic() + spec["timeout"], spec.get("wait_eof", False))
    out["elapsed"] = time.monotonic() - t0
    print(json.dumps(out))
elif spec["op"] == "slowread":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    s.connect((spec["host"], spec["port"]))
    s.sendall(bytes.fromhex(spec["payload"]))
    t0, got, buf, rate = time.monotonic(), 0, b"", spec["rate"]
    while True:
        ahead = got / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
        try:
            b = s.recv(1 << 14)
        except ConnectionResetError:
            break
        if not b:
            break
        buf += b
        got += len(b)
        r = parse(buf)
        if r:
            break
    r = parse(buf)
    print(json.dumps({"responses": [r[0]] if r else [], "bytes": len(buf),
                      "elapsed": time.monotonic() - t0}))
elif spec["op"] == "restart":
    req = bytes.fromhex(spec["payload"])
    conns, first = [], []
    for _ in range(spec["count"]):
        s = connect(spec)
        s.sendall(req)
        first.append(read(s, 1, time.monotonic() + 10, False)["responses"])
        conns.append(s)
    open(spec["ready"], "w").close()
    while not os.path.exists(spec["go"]):
        time.sleep(0.05)
    after = []
    for s in conns:
        try:
            s.sendall(req)
            r = read(s, 1, time.monotonic() + spec["timeout"], True)
            after.append("reset" if r["reset"] else "response" if r["responses"]
                         else "eof" if r["eof"] else "timeout")
        except (ConnectionResetError, BrokenPipeError):
            after.append("reset")
    print(json.dumps({"first": first, "after": after}))
"""


def service_for(tb):
    return two_cluster_service(tb)


@pytest.fixture(scope="module")
def mg(served):
    """The miresga target with the data-plane hand-off, the mode these shapes test."""
    tb, store, servers = served
    t = make_target("miresga", tb, service_for(tb),
                    {**PARAMS, "frontend_limits": {"handoff": "dataplane"}})
    try:
        t.deploy()
        t.start()
        t.wait_healthy(t.health_timeout_s)
        yield tb, store, servers, t
    finally:
        t.stop()


def paths(store, size: str) -> list[str]:
    return sorted(p for p in store.manifest() if p.startswith(f"/obj/{size}/"))


def fe_stats(t) -> dict:
    return t.frontends[0].stats()


def delta(before: dict, after: dict, group: str, key: str) -> int:
    return after[group][key] - before[group][key]


def wait_until(what: str, fn, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s (last: {v!r})")
        time.sleep(interval)


def raw(tb, spec: dict, timeout: float = 120) -> dict:
    client = tb.clients[0]
    script = f"{client.workdir}/raw_http.py"
    client.put_text(RAW_HTTP, script)
    spec = {"host": str(tb.vip), "port": tb.vip_port, **spec}
    r = client.run(f"{client.python} {script} {shlex.quote(json.dumps(spec))}", timeout=timeout)
    return json.loads(r.stdout)


def request(path: str, host: str = "vip", extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode() + extra + b"\r\n"


def expect(store, out: dict, wanted: list[str]):
    """The responses are the wanted objects, in order, byte for byte."""
    got = [(r["status"], r["sha256"]) for r in out["responses"]]
    assert got == [(200, store.manifest()[p]["sha256"]) for p in wanted], out


def curl(tb, args: str, timeout: float = 120) -> str:
    return tb.clients[0].run(f"curl -s {args}", check=False, timeout=timeout).stdout


# ----------------------------------------------------------------- the plan

def test_the_switch_is_told_the_frontends_handoff_and_sizes_its_data_plane_table(mg):
    """The target's plan carries the front-end's hand-off mode and the data-plane
    table's size, its slots aging with the switch's entries; the daemon runs it."""
    tb, _, _, t = mg
    plan = t.plan()
    assert plan.handoff == "dataplane"
    assert (plan.dp_slots, plan.dp_ways) == (DP_SLOTS_DEFAULT, DP_WAYS_DEFAULT)
    assert plan.dp_idle_timeout_s == PARAMS["switch_idle_s"]
    assert t.switchd.ctl("stats")["dp_table"]["slots"] == DP_SLOTS_DEFAULT


# ------------------------------------------------------ requests of any shape

@pytest.mark.parametrize("segment", [7, 1], ids=["7-byte-segments", "1-byte-segments"])
def test_request_in_tiny_segments_is_acknowledged_and_answered(mg, segment):
    """A request in 13 segments of 7 bytes (more than an initial window of 10), or in
    1-byte segments: the front-end acknowledges the held bytes so the client can go
    on, and the answer arrives byte for byte."""
    tb, store, _, t = mg
    path = paths(store, "1KB")[0]
    req = request(path)
    if segment == 7:
        req = request(path, extra=b"X-P: " + b"p" * (91 - len(request(path)) - 7) + b"\r\n")
        assert len(req) == 91
    before = fe_stats(t)
    out = raw(tb, {"op": "send", "payload": req.hex(), "segment": segment, "responses": 1,
                   "timeout": 20})
    expect(store, out, [path])
    after = fe_stats(t)
    assert delta(before, after, "packets", "own_ack") >= 1
    assert delta(before, after, "decisions", "pinned") == 1


def test_long_url_over_a_576_byte_mtu(mg):
    """A 6.5 KB URL from a client whose link MTU is 576 (MSS 536): 13 segments, the
    front-end's ACKs keep them coming; the 1 MB answer comes back in 536-byte
    segments, byte for byte."""
    tb, store, _, t = mg
    client = tb.clients[0]
    path = paths(store, "1MB")[0]
    url = f"{path}?pad={'u' * 6500}"
    mtu = json.loads(client.run(f"ip -j link show dev {client.iface}").stdout)[0]["mtu"]
    client.run(f"ip link set dev {client.iface} mtu 576")
    try:
        before = fe_stats(t)
        digest = curl(tb, f"{shlex.quote(t.endpoint.url + url)} | sha256sum").split()[0]
        assert digest == store.manifest()[path]["sha256"]
        assert delta(before, fe_stats(t), "packets", "own_ack") >= 1
    finally:
        client.run(f"ip link set dev {client.iface} mtu {mtu}")


def test_seven_kilobyte_cookie_with_an_initial_window_of_three(mg):
    """A client with initcwnd 3 (a route to the VIP) sends a 7 KB Cookie: five
    segments, more than its window; the front-end's ACKs let it finish."""
    tb, store, _, t = mg
    client = tb.clients[0]
    path = paths(store, "10KB")[0]
    gw = client.gateway
    client.run(f"ip route add {tb.vip}/32 via {gw} dev {client.iface} initcwnd 3")
    try:
        before = fe_stats(t)
        cookie = "Cookie: session=" + "c" * 7000
        digest = curl(tb, f"-H {shlex.quote(cookie)} {t.endpoint.url}{path} | sha256sum").split()[0]
        assert digest == store.manifest()[path]["sha256"]
        assert delta(before, fe_stats(t), "packets", "own_ack") >= 1
    finally:
        client.run(f"ip route del {tb.vip}/32", check=False)


# ------------------------------------------------------ pipelining across clusters

def test_pipelined_requests_across_clusters_are_answered_in_order(mg):
    """Six requests in one write, alternating between the clusters (a 1 MB response
    among them): every one answered, in order, byte for byte; the connection moved
    between the clusters once per change of cluster."""
    tb, store, _, t = mg
    small, big, large = paths(store, "1KB")[0], paths(store, "10KB")[0], paths(store, "1MB")[0]
    order = [small, big, small, large, small, big]
    before = fe_stats(t)
    out = raw(tb, {"op": "send", "payload": b"".join(request(p) for p in order).hex(),
                   "responses": len(order), "timeout": 60})
    expect(store, out, order)
    after = fe_stats(t)
    assert delta(before, after, "decisions", "other_backend") == 5
    assert delta(before, after, "errors", "drain_timeout") == 0


def test_h2load_pipelining_across_clusters(mg):
    """h2load --h1 -m4 over URIs of both clusters: every request succeeds and the data
    bytes add up to exactly the objects' sizes."""
    tb, store, _, t = mg
    small, big = paths(store, "1KB")[0], paths(store, "10KB")[0]
    n = 40
    url = t.endpoint.url
    r = tb.clients[0].run(f"h2load --h1 -n {n} -c 1 -m 4 {url}{small} {url}{big}", timeout=120)
    text = r.stdout
    assert f"requests: {n} total, {n} started, {n} done, {n} succeeded, 0 failed" in text, text
    assert f"status codes: {n} 2xx" in text, text
    sizes = store.manifest()
    data = re.search(r"\((\d+)\) data", text)
    assert data, text
    assert int(data.group(1)) == (n // 2) * (sizes[small]["size"] + sizes[big]["size"]), text


# ------------------------------------------------------------------ half-close

def test_ten_megabytes_after_a_half_close_arrive_whole(mg):
    """The request, then shutdown(SHUT_WR) at once: the whole 10 MB arrive, then the
    close (nginx would cut the response on reading the client's EOF while writing)."""
    tb, store, _, t = mg
    path = paths(store, "10MB")[0]
    before = fe_stats(t)
    out = raw(tb, {"op": "send", "payload": request(path).hex(), "shutdown": True,
                   "responses": 1, "wait_eof": True, "timeout": 60})
    expect(store, out, [path])
    assert out["eof"] and not out["reset"]
    after = fe_stats(t)
    assert delta(before, after, "packets", "fin_released") >= 1


def test_small_request_with_a_half_close_closes_when_the_response_is_over(mg):
    """A 1 KB request and a half-close: answered, and the connection closes because
    the response ended (fin_released), not because of an idle timeout."""
    tb, store, _, t = mg
    path = paths(store, "1KB")[0]
    before = fe_stats(t)
    out = raw(tb, {"op": "send", "payload": request(path).hex(), "shutdown": True,
                   "responses": 1, "wait_eof": True, "timeout": 20})
    expect(store, out, [path])
    assert out["eof"]
    after = fe_stats(t)
    assert delta(before, after, "packets", "fin_released") >= 1
    assert delta(before, after, "errors", "idle_timeout") == 0


# ------------------------------------------------------------------- liveness

def test_slow_download_outlasts_the_frontends_idle_timeout(mg):
    """10 MB read at 1 MB/s: about 10 s, five front-end idle timeouts, with the
    switch carrying the flow; the front-end asks the switch each time and keeps it."""
    tb, store, _, t = mg
    path = paths(store, "10MB")[0]
    before = fe_stats(t)
    out = raw(tb, {"op": "slowread", "payload": request(path).hex(), "rate": 1_000_000})
    expect(store, out, [path])
    assert out["elapsed"] > 3 * FRONTEND_IDLE_S, out
    after = fe_stats(t)
    assert delta(before, after, "offload", "entry_busy") >= 1


# ---------------------------------------------------------- a front-end restart

def test_kept_alive_connections_get_a_clean_reset_after_a_frontend_restart(mg):
    """Connections kept alive across a front-end restart: the new front-end has no
    state for them, and each one's next request gets an RST at once (the switch
    marks it KNOWN, not ADMIT); no back-end sees a SYN built from it; new
    connections are served."""
    tb, store, _, t = mg
    client = tb.clients[0]
    path = paths(store, "1KB")[0]
    work = client.workdir
    ready, go = f"{work}/restart.ready", f"{work}/restart.go"
    client.run(f"rm -f {ready} {go}")
    script = f"{work}/raw_http.py"
    client.put_text(RAW_HTTP, script)
    spec = {"op": "restart", "host": str(tb.vip), "port": tb.vip_port, "count": 4,
            "payload": request(path).hex(), "ready": ready, "go": go, "timeout": 10}
    proc = client.start(f"{client.python} {script} {shlex.quote(json.dumps(spec))}",
                        name="restart-client")
    try:
        wait_until("connections kept alive", lambda: client.run(
            f"test -e {ready}", check=False).ok, 30)
        t.restart_frontend()
        client.run(f"touch {go}")
        assert proc.wait(60) == 0, proc.logs()
        out = json.loads(proc.logs().strip().splitlines()[-1])
    finally:
        proc.stop()
    want = store.manifest()[path]["sha256"]
    assert [r[0]["sha256"] for r in out["first"]] == [want] * 4
    assert out["after"] == ["reset"] * 4, out
    assert fe_stats(t)["packets"]["known_reset"] >= 4
    assert curl(tb, f"{t.endpoint.url}{path} | sha256sum").split()[0] == want


# ------------------------------------------------------------- every mode

def restart_with(t, handoff: str) -> None:
    """The front-ends again, in another hand-off mode (the switch serves all three)."""
    for fe in t.frontends:
        fe.stop()
        fe.limits = {**fe.limits, "handoff": handoff}
        fe.start()
    for fe in t.frontends:
        fe.wait_healthy(20)


@pytest.mark.parametrize("handoff", ["async", "confirmed", "dataplane"])
def test_every_mode_serves_every_size_and_leaves_nothing_behind(mg, handoff):
    """Each hand-off mode: one object of every size, byte for byte, twice (both back-ends
    of a cluster), the 10 MB ones crossing the switch's offload branch; then the
    front-end's and the switch's tables empty."""
    tb, store, _, t = mg
    restart_with(t, handoff)
    try:
        manifest = {p: store.manifest()[p] for p in
                    (paths(store, s)[0] for s in ("1KB", "10KB", "100KB", "1MB", "10MB"))}
        sw0 = t.switch_stats()["counters"]
        rep = verify(tb.clients[0], t.endpoint.url, manifest, rounds=2)
        assert rep.passed, rep.summary()
        sw1 = t.switch_stats()["counters"]
        assert sw1["offload_rev_bytes"] - sw0["offload_rev_bytes"] > 10_000_000
        assert fe_stats(t)["offload"]["handoff"] == handoff

        def empty():
            st = t.stats()["summary"]
            return st["frontend_flows"] == 0 and st["switch_table_occupancy"] == 0
        wait_until("every table empty", empty, 20)
    finally:
        restart_with(t, "dataplane")
