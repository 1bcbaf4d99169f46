"""Two front-ends on the emulated testbed (testbeds/two-frontends.toml): both
serve; a killed one leaves the selection within the stated bound while a
parallel client keeps succeeding; a drained one finishes its connections
byte-exact, then stops.

Real clients in the client namespace (a Python script, standard library only,
below) check every body against the manifest's sha256.  Every wait polls a
state with a deadline.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from common.paths import REPO_ROOT
from common.service import parse_service
from hosts.backends import DELAYED_PREFIX, DELAYED_S, BackendServers, ObjectStore
from hosts.testbed import EmulatedTestbed
from hosts.topology import load_topology
from switchhost.addresses import ip_be, port_be
from switchhost.pipelines.miresga import client_slot, frontend_selection
from switchhost.server import PEER_SILENCE_S
from targets.base import make_target
from workloads.model import load_workloads

from conftest import unique_prefix

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

TOPOLOGY = REPO_ROOT / "testbeds" / "two-frontends.toml"
# What the README states: a front-end whose process exits leaves the
# selection within PEER_SILENCE_S (3 s), in practice at once (the daemon sees
# its control connection close); so does a silent host.
REMOVAL_BOUND_S = PEER_SILENCE_S

PARAMS = {
    "frontend_grace_ms": 500,
    "agent_close_grace_s": 1.0,
    "frontend_idle_s": 20.0,
    "filter_period_s": 30.0,
    "switch_idle_s": 30.0,
    "agent_idle_s": 60.0,
}

CLIENT = r"""
import hashlib, json, socket, sys, time

def request(sock, host, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())

def response(sock, rate=0):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = sock.recv(65536)
        if not b:
            raise ConnectionError("closed before the header")
        buf += b
    head, body = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = next(int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                  if l.lower().startswith(b"content-length:"))
    h = hashlib.sha256(body)
    got = len(body)
    while got < length:
        b = sock.recv(min(16384, length - got))
        if not b:
            raise ConnectionError(f"closed at {got} of {length}")
        h.update(b)
        got += len(b)
        if rate:
            time.sleep(len(b) / rate)
    return status, h.hexdigest()

mode, host, port, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if mode == "loop":   # new connection per request until the stop file appears
    path, sha, stop = sys.argv[5], sys.argv[6], sys.argv[7]
    import os
    with open(out, "a") as f:
        while not os.path.exists(stop):
            t0 = time.time()
            try:
                s = socket.create_connection((host, port), timeout=3)
                request(s, host, path)
                status, digest = response(s)
                s.close()
                ok = status == 200 and digest == sha
                err = "" if ok else f"status {status}, sha {digest[:12]}"
            except OSError as e:
                ok, err = False, repr(e)
            f.write(json.dumps({"t0": t0, "t1": time.time(), "ok": ok, "err": err}) + "\n")
            f.flush()
elif mode == "slow":  # one kept-alive connection from a given port, two requests,
    # the second once the go file appears
    # source port: the first of a comma list that is free (the client's other
    # connections may hold or have just held some)
    srcs, path1, path2, rate = sys.argv[5], sys.argv[6], sys.argv[7], float(sys.argv[8])
    go = sys.argv[9]
    import os
    for src in map(int, srcs.split(",")):
        s = socket.socket()
        s.settimeout(30)
        try:
            s.bind(("", src))
            break
        except OSError:
            s.close()
    s.connect((host, port))
    with open(out, "a") as f:
        request(s, host, path1)
        f.write(json.dumps({"event": "sent"}) + "\n"); f.flush()
        r1 = response(s, rate)
        deadline = time.time() + 60
        while not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.05)
        try:
            request(s, host, path2)
            r2 = response(s)
        except OSError as e:
            r2 = repr(e)
        s.close()
        f.write(json.dumps({"event": "done", "responses": [r1, r2]}) + "\n")
elif mode == "persist":  # kept-alive connections: some idle after a request, one busy
    srcs, path, sha, n_idle, go = (sys.argv[5], sys.argv[6], sys.argv[7], int(sys.argv[8]),
                                   sys.argv[9])
    # What the idle ones ask for first, by index (cycling): path and sha, comma lists.
    idle_paths, idle_shas = sys.argv[10].split(","), sys.argv[11].split(",")
    import os
    socks = []
    for src in map(int, srcs.split(",")):
        if len(socks) == n_idle + 1:
            break
        s = socket.socket()
        s.settimeout(60)
        try:
            s.bind(("", src))
            s.connect((host, port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    busy, idle = socks[0], socks[1:]
    ok, sent = True, 0
    with open(out, "a") as f:
        request(busy, host, path)
        ok &= response(busy) == (200, sha)
        for i, s in enumerate(idle):
            request(s, host, idle_paths[i % len(idle_paths)])
            ok &= response(s) == (200, idle_shas[i % len(idle_shas)])
        f.write(json.dumps({"event": "ready", "ok": ok}) + "\n"); f.flush()
        while not os.path.exists(go):
            time.sleep(0.02)
        # Request after request on the busy one, until a response says close.
        ended = None
        while ended is None and sent < 100000:
            try:
                request(busy, host, path)
                sent += 1
                buf = b""
                while b"\r\n\r\n" not in buf:
                    b = busy.recv(65536)
                    if not b:
                        raise ConnectionError("closed before the header")
                    buf += b
                head, body = buf.split(b"\r\n\r\n", 1)
                length = next(int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                              if l.lower().startswith(b"content-length:"))
                while len(body) < length:
                    b = busy.recv(length - len(body))
                    if not b:
                        raise ConnectionError("closed in the body")
                    body += b
                ok &= head.startswith(b"HTTP/1.1 200") and hashlib.sha256(body).hexdigest() == sha
                if any(l.lower().split(b":")[0] == b"connection" and b"close" in l.lower()
                       for l in head.split(b"\r\n")[1:]):
                    busy.shutdown(socket.SHUT_WR)
                    ended = "eof" if busy.recv(1) == b"" else "data after close"
            except OSError as e:
                ended = repr(e)
        idle_ends = []
        for s in idle:
            try:
                idle_ends.append("eof" if s.recv(1) == b"" else "data")
            except OSError as e:
                idle_ends.append(repr(e))
        f.write(json.dumps({"event": "done", "ok": ok, "requests": sent, "busy": ended,
                            "idle": idle_ends}) + "\n")
elif mode == "held":  # one request whose response the back-end delays: how it ended
    srcs, path = sys.argv[5], sys.argv[6]
    for src in map(int, srcs.split(",")):
        s = socket.socket()
        s.settimeout(60)
        try:
            s.bind(("", src))
            break
        except OSError:
            s.close()
    s.connect((host, port))
    with open(out, "a") as f:
        request(s, host, path)
        f.write(json.dumps({"event": "sent", "port": s.getsockname()[1]}) + "\n"); f.flush()
        t0 = time.time()
        try:
            r = list(response(s))
        except OSError as e:
            r = repr(e)
        f.write(json.dumps({"event": "done", "result": r, "waited_s": time.time() - t0}) + "\n")
"""


def service_for(tb):
    return parse_service({
        "vip": str(tb.vip),
        "cluster": [{"name": "web", "backends": ["backend1", "backend2"]}],
        # Responses the back-end delays, carried by the front-end (no switch
        # entry): a request a front-end holds while it waits.
        "rule": [{"path_prefix": DELAYED_PREFIX, "cluster": "web", "offload": False},
                 {"path_prefix": "/", "cluster": "web"}],
        "request_timeout_s": 2.0,
    })


@pytest.fixture(scope="module")
def two():
    with EmulatedTestbed(load_topology(TOPOLOGY), prefix=unique_prefix("mf")) as tb:
        store = ObjectStore(load_workloads().objects)
        servers = BackendServers(tb, store)
        servers.start()
        t = make_target("miresga", tb, service_for(tb), PARAMS)
        try:
            t.deploy()
            t.start()
            t.wait_healthy(t.health_timeout_s)
            client = tb.clients[0]
            client.put_text(CLIENT, f"{client.workdir}/mfe_client.py")
            yield tb, store, t
        finally:
            t.stop()
            servers.stop()


def wait_until(what: str, fn, timeout: float = 30.0, interval: float = 0.1, proc=None):
    """Poll fn() until true; on failure say what `proc` (a client script) printed."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            logs = f"; {proc.logs()[-2000:]}" if proc is not None else ""
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s (last: {v!r}){logs}")
        time.sleep(interval)


def an_object(store, size: str) -> tuple[str, str]:
    path = sorted(p for p in store.manifest() if p.startswith(f"/obj/{size}/"))[0]
    return path, store.manifest()[path]["sha256"]


def client_ports_of(t, tb, frontend: str, n: int, start: int = 21000) -> list[int]:
    """Client ports whose new connections the switch gives to `frontend`, and that
    no socket of the client holds now.  The testbed's ephemeral range covers them
    too (hosts/testbed.py: from 1024), so an earlier test's connections may have
    left some in TIME_WAIT, where a client cannot bind them (curl --local-port
    fails without a packet)."""
    plan = t.plan()
    ids = [f.name for f in plan.frontends]
    sel = frontend_selection(ids, {}, plan.fe_slots)
    client = tb.clients[0]
    cip = ip_be(str(client.address))
    held = {int(line.split()[3].rsplit(":", 1)[1])
            for line in client.run("ss -Htan").stdout.splitlines() if line.strip()}
    out = [p for p in range(start, start + 2000) if p not in held and
           ids[sel[client_slot(cip, port_be(p), plan.fe_slots)][0]] == frontend]
    return out[:n]


def records(client, path: str) -> list[dict]:
    text = client.read_text(path, missing_ok=True) or ""
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def fe_requests(t) -> dict[str, int]:
    return {fe.host.name: fe.stats().get("requests", 0) for fe in t.frontends}


def test_both_front_ends_serve_and_bytes_are_intact(two):
    """Requests from many client ports are spread over both front-ends, every
    body intact."""
    tb, store, t = two
    assert [f.name for f in t.plan().frontends] == ["frontend1", "frontend2"]
    before = fe_requests(t)
    path, sha = an_object(store, "10KB")
    client = tb.clients[0]
    out = client.run(f"for i in $(seq 40); do curl -s {t.endpoint.url}{path} | sha256sum; "
                     f"done", timeout=120).stdout.split()
    assert [x for x in out if x != "-"] == [sha] * 40
    after = fe_requests(t)
    assert all(after[n] > before[n] for n in after), (before, after)


def test_killed_front_end_leaves_the_selection_while_a_client_keeps_succeeding(two):
    """SIGKILL frontend2 during a stream of one-request connections and while one of
    its kept-alive connections downloads 1 MB (offloaded) slowly: the daemon marks
    it down within the stated bound; from then on every new connection
    succeeds (its clients go to frontend1), bytes intact; the offloaded download
    completes byte-exact, and that connection's next request, which needed
    frontend2, is reset (not left hanging).  frontend2 comes back after."""
    tb, store, t = two
    client = tb.clients[0]
    work = client.workdir
    out, stop = f"{work}/kill_loop.jsonl", f"{work}/kill_loop.stop"
    slow_out, go = f"{work}/kill_slow.jsonl", f"{work}/kill_slow.go"
    client.run(f"rm -f {out} {stop} {slow_out} {go}")
    path, sha = an_object(store, "1KB")
    (p1, sha1), (p2, _) = an_object(store, "1MB"), an_object(store, "10KB")
    loop = client.start(f"exec {client.python} {work}/mfe_client.py loop {tb.vip} "
                        f"{tb.vip_port} {out} {path} {sha} {stop}", name="mfe-loop")
    slow = None
    try:
        wait_until("the client succeeds before the kill",
                   lambda: sum(r["ok"] for r in records(client, out)) >= 20)
        ports = ",".join(map(str, client_ports_of(t, tb, "frontend2", 20, start=23000)))
        slow = client.start(f"exec {client.python} {work}/mfe_client.py slow {tb.vip} "
                            f"{tb.vip_port} {slow_out} {ports} {p1} {p2} 125000 {go}",
                            name="mfe-kill-slow")
        wait_until("the download is under way",
                   lambda: any(r.get("event") == "sent" for r in records(client, slow_out)),
                   proc=slow)
        killed = time.time()
        info = t.kill_frontend()
        removed = time.time()
        assert info["frontend"] == "frontend2"
        assert info["removed_from_selection_s"] <= REMOVAL_BOUND_S, info
        wait_until("40 connections opened after the removal",
                   lambda: sum(r["t0"] > removed for r in records(client, out)) >= 40)
        client.run(f"touch {go}")
        wait_until("the download and the next request are done",
                   lambda: any(r.get("event") == "done" for r in records(client, slow_out)), 120)
    finally:
        client.run(f"touch {stop} {go}")
        loop.wait(30)
        if slow is not None:
            slow.wait(60)
    done = next(r for r in records(client, slow_out) if r.get("event") == "done")
    assert done["responses"][0] == [200, sha1]
    assert "Reset" in done["responses"][1] or "closed" in done["responses"][1], done
    recs = records(client, out)
    after = [r for r in recs if r["t0"] > removed]
    assert after and all(r["ok"] for r in after), [r for r in after if not r["ok"]][:5]
    # What failed, failed between the kill and the removal (requests in flight
    # on frontend2, or sent to it before the switch knew).
    assert all(r["ok"] for r in recs if r["t1"] < killed)
    t.revive_frontend()
    assert t.frontend_states() == {"frontend1": "active", "frontend2": "active"}


def test_request_held_by_a_killed_front_end_is_reset_not_left_hanging(two):
    """A request frontend2 carries (a rule without offload) waits for a response the
    back-end delays by DELAYED_S; frontend2 is killed meanwhile.  The back-end's
    response then reaches frontend1, which has no state for the flow: it resets the
    back-end and, the packet being the back-end's own (the switch's BACKEND mark),
    the client, at the point its stream stands.  The client sees ECONNRESET, not a
    timeout, though it sends nothing after its request; a parallel client keeps
    succeeding throughout."""
    tb, store, t = two
    client = tb.clients[0]
    work = client.workdir
    out, stop, held_out = (f"{work}/held_loop.jsonl", f"{work}/held_loop.stop",
                           f"{work}/held.jsonl")
    client.run(f"rm -f {out} {stop} {held_out}")
    path, sha = an_object(store, "1KB")
    # Each back-end answers this path DELAYED_S after its previous answer:
    # one request straight to each (not through the VIP) makes the next wait.
    for b in tb.backends:
        client.run(f"curl -sf -o /dev/null --max-time {3 * DELAYED_S} "
                   f"http://{b.address}{DELAYED_PREFIX}{path.lstrip('/')}", timeout=60)
    orphans0 = t._frontend("frontend1").stats()["packets"]["orphan_reset"]
    ports = ",".join(map(str, client_ports_of(t, tb, "frontend2", 20, start=25000)))
    held = client.start(f"exec {client.python} {work}/mfe_client.py held {tb.vip} {tb.vip_port} "
                        f"{held_out} {ports} {DELAYED_PREFIX}{path.lstrip('/')}",
                        name="mfe-held")
    loop = None
    try:
        wait_until("the held request is sent",
                   lambda: any(r.get("event") == "sent" for r in records(client, held_out)),
                   proc=held)
        # The only flow of frontend2's now: the held one, joined to its back-end.
        wait_until("frontend2 carries it to a back-end",
                   lambda: t._frontend("frontend2").stats()["flows_by_state"]["spliced"] > 0,
                   proc=held)
        loop = client.start(f"exec {client.python} {work}/mfe_client.py loop {tb.vip} "
                            f"{tb.vip_port} {out} {path} {sha} {stop}", name="mfe-held-loop")
        wait_until("the parallel client succeeds before the kill",
                   lambda: sum(r["ok"] for r in records(client, out)) >= 5, proc=loop)
        info = t.kill_frontend()
        assert info["frontend"] == "frontend2"
        removed = time.time()
        assert not any(r.get("event") == "done" for r in records(client, held_out)), \
            "the back-end answered before the kill: its delay is gone"
        wait_until("the held request ends", lambda: any(
            r.get("event") == "done" for r in records(client, held_out)), 3 * DELAYED_S,
            proc=held)
        wait_until("20 connections opened after the removal",
                   lambda: sum(r["t0"] > removed for r in records(client, out)) >= 20)
    finally:
        client.run(f"touch {stop}")
        if loop is not None:
            loop.wait(30)
        held.wait(30)
    done = next(r for r in records(client, held_out) if r.get("event") == "done")
    assert "ConnectionResetError" in done["result"], done
    st = t._frontend("frontend1").stats()["packets"]
    assert st["orphan_reset"] > orphans0, st
    recs = records(client, out)
    after = [r for r in recs if r["t0"] > removed]
    assert after and all(r["ok"] for r in after), [r for r in after if not r["ok"]][:5]
    t.revive_frontend()
    assert t.frontend_states() == {"frontend1": "active", "frontend2": "active"}


def test_front_end_whose_link_goes_down_leaves_the_selection_and_comes_back(two):
    """frontend2's interface goes down: frontend2 closes its control connection
    (its watchdog: fe_offload.h, health) and the daemon takes it out of the
    selection; meanwhile frontend2's clients' new connections succeed through
    frontend1.  The link comes back: frontend2 connects again and is back in the
    selection, and serves."""
    tb, store, t = two
    fe2 = t._frontend("frontend2")
    iface = fe2.facts.iface
    client = tb.clients[0]
    path, sha = an_object(store, "1KB")
    closes0 = fe2.stats()["offload"]["health_closes"]
    # Two rounds of ten: a port's last connection is in the client's TIME_WAIT.
    ports, ports_after = (lambda p: (p[:10], p[10:]))(
        client_ports_of(t, tb, "frontend2", 20, start=27000))
    fe2.host.run(f"ip link set dev {iface} down")
    try:
        t.wait_frontend_state("frontend2", "down", REMOVAL_BOUND_S + 5)
        wait_until("frontend2 counts its link down", lambda: (lambda o: o["link_downs"] >= 1 and
                   o["healthy"] == 0)(fe2.stats()["offload"]))
        got = client.run(f"for p in {' '.join(map(str, ports))}; do curl -s --max-time 5 "
                         f"--local-port $p {t.endpoint.url}{path} | sha256sum; done",
                         timeout=120).stdout.split()
        assert [x for x in got if x != "-"] == [sha] * len(ports)
    finally:
        fe2.host.run(f"ip link set dev {iface} up")
    t.wait_frontend_state("frontend2", "active", 30)
    st = wait_until("frontend2 connected again", lambda: (lambda o: o if o["connected"] else None)(
        fe2.stats()["offload"]))
    assert st["healthy"] == 1 and st["health_closes"] > closes0, st
    before = fe2.stats()["requests"]
    got = client.run(f"for p in {' '.join(map(str, ports_after))}; do curl -s --max-time 5 "
                     f"--local-port $p {t.endpoint.url}{path} | sha256sum; done",
                     timeout=120).stdout.split()
    assert [x for x in got if x != "-"] == [sha] * len(ports_after)
    assert fe2.stats()["requests"] > before


def test_drain_closes_kept_alive_connections_cleanly_and_converges(two):
    """Kept-alive connections on frontend2: four idle after one request, one making
    request after request.  frontend2 is drained: the daemon tells it (NOTICE), and
    it closes each at a response's end: the busy one's next response says
    "Connection: close" and the connection ends FIN by FIN, the idle ones get a FIN
    once quiet.  Two idle ones first read 1 MB, which the switch carried: the
    client's ACKs of it reached the back-end without frontend2, so the FIN it sends
    in the client's name must catch up with them (fe_server.c, refused_our_fin()).
    No RST, every body intact, and frontend2 holds no flow well before the drain's
    timeout, then stops."""
    tb, store, t = two
    client = tb.clients[0]
    work = client.workdir
    out, go = f"{work}/persist.jsonl", f"{work}/persist.go"
    client.run(f"rm -f {out} {go}")
    path, sha = an_object(store, "10KB")
    big, big_sha = an_object(store, "1MB")
    ports = ",".join(map(str, client_ports_of(t, tb, "frontend2", 30, start=29000)))
    fe2 = t._frontend("frontend2")
    proc = client.start(f"exec {client.python} {work}/mfe_client.py persist {tb.vip} "
                        f"{tb.vip_port} {out} {ports} {path} {sha} 4 {go} {path},{big} "
                        f"{sha},{big_sha}", name="mfe-persist")
    timeout_s = 60.0
    result: dict = {}
    drainer = None
    try:
        ready = wait_until("five kept-alive connections answered", lambda: next(
            (r for r in records(client, out) if r.get("event") == "ready"), None), proc=proc)
        assert ready["ok"]
        assert fe2.stats()["flows"] >= 5
        requests0 = fe2.stats()["requests"]
        orphans0 = t._frontend("frontend1").stats()["packets"]["orphan_reset"]
        client.run(f"touch {go}")
        wait_until("the busy connection is under way",
                   lambda: fe2.stats()["requests"] >= requests0 + 10, proc=proc)
        drainer = threading.Thread(target=lambda: result.update(
            t.drain_frontend("frontend2", timeout_s=timeout_s)))
        drainer.start()
        wait_until("the connections ended", lambda: any(
            r.get("event") == "done" for r in records(client, out)), 90, proc=proc)
        drainer.join(120)
    finally:
        client.run(f"touch {go}")
        proc.wait(30)
        if drainer is not None:
            drainer.join(120)
    done = next(r for r in records(client, out) if r.get("event") == "done")
    assert done["ok"] and done["busy"] == "eof" and done["idle"] == ["eof"] * 4, done
    assert result["drained"] and result["flows_left"] == 0, result
    # No back-end was still closing a connection of frontend2's once it stopped
    # (frontend1 would have reset that client in the back-end's name).
    assert t._frontend("frontend1").stats()["packets"]["orphan_reset"] == orphans0
    assert result["drain_s"] < timeout_s / 2, result
    assert t.frontend_states() == {"frontend1": "active", "frontend2": "down"}
    t.resume_frontend("frontend2")
    assert t.frontend_states() == {"frontend1": "active", "frontend2": "active"}


def test_drained_front_end_finishes_its_connections_byte_exact_then_stops(two):
    """A kept-alive connection on frontend2 reads a 1 MB body slowly; frontend2 is
    drained meanwhile.  New connections from frontend2's clients go to
    frontend1 at once; the old connection's second request, sent once the drain
    is on, still reaches frontend2, and both bodies arrive byte-exact; then
    frontend2 holds no flow and stops."""
    tb, store, t = two
    client = tb.clients[0]
    work = client.workdir
    out, go = f"{work}/drain_slow.jsonl", f"{work}/drain_slow.go"
    client.run(f"rm -f {out} {go}")
    (p1, sha1), (p2, sha2) = an_object(store, "1MB"), an_object(store, "10KB")
    candidates = client_ports_of(t, tb, "frontend2", 40)
    old_ports, new_ports = candidates[:20], candidates[20:]
    slow = client.start(f"exec {client.python} {work}/mfe_client.py slow {tb.vip} {tb.vip_port} "
                        f"{out} {','.join(map(str, old_ports))} {p1} {p2} 250000 {go}",
                        name="mfe-slow")
    result: dict = {}
    drainer = None
    try:
        wait_until("the slow request is under way",
                   lambda: any(r.get("event") == "sent" for r in records(client, out)),
                   proc=slow)
        wait_until("frontend2 holds it", lambda: t._frontend("frontend2").stats()["flows"] > 0)
        before = fe_requests(t)
        drainer = threading.Thread(target=lambda: result.update(
            t.drain_frontend("frontend2", timeout_s=60)))
        drainer.start()
        wait_until("frontend2 draining",
                   lambda: t.frontend_states()["frontend2"] == "draining")
        # A new connection of a client of frontend2's goes to frontend1.
        body = client.run(f"for p in {' '.join(map(str, new_ports))}; do curl -s --local-port $p "
                          f"{t.endpoint.url}{p2} && break; done | sha256sum",
                          timeout=60).stdout.split()[0]
        assert body == sha2
        client.run(f"touch {go}")  # the old connection's second request, mid-drain
        wait_until("the old connection is done",
                   lambda: any(r.get("event") == "done" for r in records(client, out)), 120)
        drainer.join(90)
    finally:
        slow.wait(30)
        if drainer is not None:
            drainer.join(90)
    done = next(r for r in records(client, out) if r.get("event") == "done")
    assert done["responses"] == [[200, sha1], [200, sha2]]
    assert result["drained"] and result["flows_left"] == 0, result
    after_drain = t.frontend_states()
    assert after_drain == {"frontend1": "active", "frontend2": "down"}
    assert t._frontend("frontend2").process is None or \
        not t._frontend("frontend2").process.running()
    # The old connection's second request went through frontend2 while it
    # drained, the new connection through frontend1.
    assert result["requests_while_draining"] >= 1, result
    assert t._frontend("frontend1").stats()["requests"] > before["frontend1"]
    t.resume_frontend("frontend2")
    assert t.frontend_states() == {"frontend1": "active", "frontend2": "active"}
