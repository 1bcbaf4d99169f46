"""A drained front-end closes its kept-alive connections (the switch host's
NOTICE DRAIN; miresga/frontend/fe_drain.c, "drain close"), driven through the
state machine harness: a request that comes while draining is answered with
"Connection: close" in the back-end's own response, so the client closes, FIN
by FIN; a connection that is quiet is closed with a FIN in the client's name,
once the switch says its entry carried nothing either.  No RST anywhere."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from switchhost import layouts
from miresga.control.frontend import LIMIT_DEFAULTS

from fe_harness import (BACKENDS, QUERY_OP, Client, Harness, backend_pkt,  # noqa: F401
                        config_text, harness_binary, mark, payload)
from packets import checksums_ok

GET = b"GET /index.html HTTP/1.1\r\nHost: www.example\r\n\r\n"
KEEP = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"
CLOSE = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: close     \r\nContent-Length: 5\r\n\r\nhello"
ADD, DEL = layouts.CtlOp.ADD, layouts.CtlOp.DEL
DRAIN_QUIET = LIMIT_DEFAULTS["drain_quiet_ms"] / 1000


def only(frames, n=1):
    assert len(frames) == n, [f.summary() for f in frames]
    for f in frames:
        assert checksums_ok(f), f.summary()
    return frames[0] if n == 1 else frames


def to_backend(f, backend="be1"):
    return f[IP].dst == BACKENDS[backend]


def notice(h: Harness, what: str) -> list:
    frames, extra = h._cmd(f"notice {what}")
    assert extra is None, extra
    return frames


def kept_alive(h: Harness, c: Client) -> int:
    """A spliced connection with one request answered through the switch (its entry
    installed): returns the back-end's next sequence number."""
    assert c.send(h) == []
    assert only(c.send(h, GET, "PA"))[TCP].flags == "S"
    out = h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA"))
    assert [f[TCP].flags for f in out] == ["A", "PA"]     # our ACK, the released request
    assert [e["op"] for e in h.offload()] == [ADD]
    assert h.result("added", c, 0) == []
    # The response went the switch's way; the client acknowledged it there.
    c.ack = (c.ack + len(KEEP)) & 0xFFFFFFFF
    return c.ack


def test_a_request_while_draining_gets_connection_close_and_ends_fin_by_fin(harness_binary):
    """The next request of a kept-alive connection after the NOTICE: its entry goes
    (the response comes through the front-end), the back-end's "Connection:
    keep-alive" reaches the client as "Connection: close" of the same length, every
    other byte and the checksums intact; the client's FIN then closes the connection
    the usual way and the flow is freed."""
    with Harness(config_text(), binary=harness_binary) as h:
        c = Client(port=48001)
        server = kept_alive(h, c)
        assert notice(h, "drain") == []
        released = only(c.send(h, GET, "PA"))
        assert to_backend(released) and payload(released) == GET
        assert [e["op"] for e in h.offload()] == [DEL], "served without the switch"
        resp = only(h.send(backend_pkt(c, "be1", server, c.seq, "PA", KEEP)))
        assert resp[IP].dst == c.ip and payload(resp) == CLOSE
        assert mark(resp) == "none"
        c.ack = (server + len(KEEP)) & 0xFFFFFFFF
        assert h.offload() == [], "no entry for it again"
        # The client read "close": it closes; its FIN waits for the response's end.
        held = only(c.send(h, flags="FA"))
        assert to_backend(held) and held[TCP].flags == "A", "the FIN held, its ACK on"
        fin = only(h.advance(DRAIN_QUIET + 0.01))
        assert to_backend(fin) and fin[TCP].flags == "FA"
        bfin = only(h.send(backend_pkt(c, "be1", c.ack, c.seq, "FA")))
        assert bfin[IP].dst == c.ip and bfin[TCP].flags == "FA"
        c.ack += 1
        last = only(c.send(h, flags="A"))
        assert to_backend(last) and last[TCP].flags == "A"
        st = h.stats()
        assert st["packets"]["close_marked"] == 1 and st["packets"]["rst_sent"] == 0
        assert st["offload"]["draining"] == 1
        assert st["flows_by_state"]["time_wait"] == 1
        h.advance(2.1)
        assert h.stats()["flows"] == 0


def test_a_quiet_connection_is_closed_once_the_switch_says_its_entry_is_idle(harness_binary):
    """No request after the NOTICE: the front-end waits drain_quiet, asks the switch;
    busy (the entry carried a packet within the last second or so): asks again;
    idle: a FIN to the back-end in the client's name (the entry goes with it), the
    back-end's FIN on to the client."""
    with Harness(config_text(), binary=harness_binary) as h:
        c = Client(port=48002)
        server = kept_alive(h, c)
        notice(h, "drain")
        assert h.advance(DRAIN_QUIET + 0.01) == []
        assert h.offload() == [{"op": QUERY_OP, "ip": c.ip, "port": c.port, "vip": 0}]
        assert h.result("liveness", c, 1, 1000) == [], "busy: not now"
        assert h.advance(DRAIN_QUIET + 0.01) == []
        assert [e["op"] for e in h.offload()] == [QUERY_OP]
        fin = only(h.result("liveness", c, 1, 3000))
        assert to_backend(fin) and fin[TCP].flags == "FA" and fin[TCP].seq == c.seq
        assert [e["op"] for e in h.offload()] == [DEL]
        bfin = only(h.send(backend_pkt(c, "be1", server, c.seq + 1, "FA")))
        assert bfin[IP].dst == c.ip and bfin[TCP].flags == "FA" and bfin[TCP].seq == server
        # Its ACK field counted our FIN, which the client never sent: a client
        # drops such a segment, and would never see the close.
        assert bfin[TCP].ack == c.seq
        st = h.stats()
        assert st["packets"]["drain_close"] == 1 and st["packets"]["rst_sent"] == 0
        assert st["offload"]["entry_busy"] == 1 and st["offload"]["entry_idle"] == 1
        assert st["errors"]["idle_timeout"] == 0


def test_a_response_that_went_the_switch_way_is_closed_once_acknowledged(harness_binary):
    """The entry went with the request, but the whole response still took the
    switch's path (the DEL had not landed): the front-end never sees its header, so
    it closes the connection once the client has acknowledged the response and
    nothing moved for drain_quiet."""
    with Harness(config_text(), binary=harness_binary) as h:
        c = Client(port=48005)
        server = kept_alive(h, c)
        notice(h, "drain")
        assert to_backend(only(c.send(h, GET, "PA")))
        assert [e["op"] for e in h.offload()] == [DEL]
        assert h.advance(DRAIN_QUIET + 0.01) == [], "nothing of the response acknowledged"
        c.ack = (server + len(KEEP)) & 0xFFFFFFFF
        assert to_backend(only(c.send(h, flags="A")))     # its ACK, now through us
        fin = only(h.advance(DRAIN_QUIET + 0.01))
        assert to_backend(fin) and fin[TCP].flags == "FA" and fin[TCP].seq == c.seq
        assert h.stats()["packets"]["drain_close"] == 1


def test_pipelined_requests_are_not_cut_by_a_close(harness_binary):
    """Two requests in one segment while draining: the first one's response is left
    as it is (a close would leave the second unanswered); the connection ends at a
    quiet moment instead."""
    with Harness(config_text(), binary=harness_binary) as h:
        c = Client(port=48006)
        server = kept_alive(h, c)
        notice(h, "drain")
        both = only(c.send(h, GET + GET, "PA"), 2)
        assert all(to_backend(f) and payload(f) == GET for f in both)
        for i in range(2):
            resp = only(h.send(backend_pkt(c, "be1", server + i * len(KEEP), c.seq, "PA", KEEP)))
            assert payload(resp) == KEEP
        assert h.stats()["packets"]["close_marked"] == 0


def test_resume_keeps_the_connections_not_closed_yet(harness_binary):
    """DRAIN then RESUME before the connection was quiet: it stays, and its next
    request is handed to the switch as before, its response untouched."""
    with Harness(config_text(), binary=harness_binary) as h:
        c = Client(port=48003)
        server = kept_alive(h, c)
        notice(h, "drain")
        notice(h, "resume")
        assert h.advance(DRAIN_QUIET + 0.01) == []
        assert h.offload() == []
        assert to_backend(only(c.send(h, GET, "PA")))
        resp = only(h.send(backend_pkt(c, "be1", server, c.seq, "PA", KEEP)))
        assert payload(resp) == KEEP
        st = h.stats()
        assert st["packets"]["drain_close"] == 0 and st["packets"]["close_marked"] == 0


def test_a_new_connection_while_draining_is_served_once_and_closed(harness_binary):
    """A client of the draining front-end's that opens a connection anyway (its
    packets follow the old selection): served, without the switch, with
    "Connection: close"."""
    with Harness(config_text(), binary=harness_binary) as h:
        notice(h, "drain")
        c = Client(port=48004)
        assert c.send(h) == []
        only(c.send(h, GET, "PA"))
        out = h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA"))
        assert [f[TCP].flags for f in out] == ["A", "PA"]
        assert h.offload() == [], "no entry asked for"
        resp = only(h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "PA", KEEP)))
        assert payload(resp) == CLOSE
        assert h.stats()["packets"]["close_marked"] == 1
