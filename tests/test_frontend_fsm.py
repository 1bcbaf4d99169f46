"""The front-end's splice state machine, packet by packet (docs/design.md section 3).

Each test plays the switch, the client and the back-ends against the real C
state machine (tests/fe_harness.py), checks every frame the front-end sends
(addresses, flags, sequence numbers, options, payload, checksums) and ends
with no flow and no held mbuf left.  Fixture service: cluster "static"
(be1 index 0, be2 index 1, port 80), cluster "api" (be3 index 2, port 8080);
/api -> api, /private -> static without offload, Host img.example -> static,
default static; header limit 1024 bytes, request timeout 5 s.  Every test
runs against both builds of the harness, plain and sanitized (ASan + UBSan):
a sanitizer report fails the test.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from common.service import Cluster, Rule, Service
from switchhost import layouts

from fe_harness import (BACKENDS, FE_MAC, GET, SWITCH_MAC, VIP, Client, Harness,  # noqa: F401
                        backend_pkt, config_text, harness_binary, mark, only, payload, splice,
                        to_backend)
from miresga.control.frontend import LIMIT_DEFAULTS
from packets import checksums_ok

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture
def h(harness_binary):
    with Harness(binary=harness_binary) as harness:
        yield harness


def assert_clean(h: Harness):
    st = h.stats()
    assert st["flows"] == 0, st["flows_by_state"]
    assert st["held_mbufs"] == 0
    assert st["mbufs_in_use"] == 0


DRAIN_QUIET = 0.05   # drain_quiet_ms's default: a back-end this quiet has ended its response


def close(h: Harness, c: Client, backend: str = "be1", server_seq: int | None = None):
    """Client FIN (held back until the response is over: everything acknowledged
    and the back-end quiet for drain_quiet), back-end FIN, last ACK, grace: the
    flow must be gone."""
    server_seq = c.ack if server_seq is None else server_seq
    held = only(c.send(h, flags="FA"))
    assert held[TCP].flags == "A" and to_backend(held, backend, held[TCP].dport), \
        "the FIN waits; the ACK it carried goes on"
    assert h.stats()["flows_by_state"]["closing"] == 1
    fin = only(h.advance(DRAIN_QUIET))
    assert fin[TCP].flags == "FA" and to_backend(fin, backend, fin[TCP].dport)
    assert fin[TCP].seq == (c.seq - 1) & 0xFFFFFFFF and fin[TCP].ack == c.ack
    bfin = only(h.send(backend_pkt(c, backend, server_seq, c.seq, "FA", port=fin[TCP].dport)))
    assert bfin[IP].src == VIP and bfin[TCP].sport == 80 and bfin[TCP].flags == "FA"
    c.ack = server_seq + 1
    last = only(c.send(h, flags="A"))
    assert last[TCP].flags == "A" and last[TCP].ack == c.ack
    assert h.stats()["flows_by_state"]["time_wait"] == 1
    h.advance(2.1)
    assert_clean(h)


# ------------------------------------------------------------ the main walk

def test_first_request_opens_backend_with_cookie_numbers(h):
    """The back-end SYN: client source, seq c, s in the ack field with ACK off, options replayed."""
    c = Client(port=40001, isn=0xFFFFFFF0, mss=1440, wscale=9, sack=True)
    assert c.send(h) == [], "the handshake ACK is not answered"
    syn = only(c.send(h, GET, "PA"))
    t = syn[TCP]
    assert syn[IP].src == c.ip and syn[IP].dst == BACKENDS["be1"]
    assert t.sport == c.port and t.dport == 80
    assert t.flags == "S"
    assert t.seq == c.c and t.ack == c.s
    assert t.options == [("MSS", 1440), ("NOP", None), ("NOP", None), ("SAckOK", b""),
                         ("NOP", None), ("WScale", 9)]
    assert t.window == min(65535, 502 << 9)
    st = h.stats()
    assert st["flows_by_state"]["syn_sent"] == 1 and st["decisions"]["first"] == 1


@pytest.mark.parametrize("mss,wscale,sack", [(536, None, False), (1220, 0, True),
                                             (1460, 14, False)])
def test_syn_options_follow_the_cookie(h, mss, wscale, sack):
    """MSS class, window scale (or none) and SACK come from the cookie's low byte."""
    c = Client(mss=mss, wscale=wscale, sack=sack)
    c.send(h)
    t = only(c.send(h, GET, "PA"))[TCP]
    want = [("MSS", mss)] + ([("NOP", None), ("NOP", None), ("SAckOK", b"")] if sack else []) + \
        ([("NOP", None), ("WScale", wscale)] if wscale is not None else [])
    assert t.options == want
    assert "Timestamp" not in [o[0] for o in t.options]


def test_synack_completes_handshake_releases_request_and_offloads(h):
    """SYN-ACK seq s -> ACK (c+1, s+1), the held request to the back-end, an offload ADD."""
    c = Client(port=40002, isn=7777)
    ack, req = only(splice(h, c), 2)
    assert to_backend(ack, "be1") and ack[TCP].flags == "A"
    assert ack[TCP].seq == c.c + 1 and ack[TCP].ack == c.s + 1
    assert to_backend(req, "be1") and req[IP].src == c.ip and req[TCP].sport == c.port
    assert req[TCP].seq == c.c + 1 and req[TCP].ack == c.s + 1
    assert payload(req) == GET
    assert h.offload() == [{"op": layouts.CtlOp.ADD, "ip": c.ip, "port": c.port, "backend": 0,
                            "vip": 0}]
    assert h.stats()["flows_by_state"]["spliced"] == 1


def test_response_forwarded_with_vip_source_and_teardown_deletes_entry(h):
    """Back-end data reaches the client from the VIP, intact; FIN both ways frees and DELs."""
    c = Client(port=40003)
    splice(h, c)
    h.offload()
    resp = only(h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "PA", RESPONSE)))
    assert resp[IP].src == VIP and resp[IP].dst == c.ip
    assert resp[TCP].sport == 80 and resp[TCP].dport == c.port
    assert resp[TCP].seq == c.s + 1 and resp[TCP].ack == c.seq
    assert payload(resp) == RESPONSE
    # A pure ACK from the client (before the switch entry is in place).
    ack = only(c.send(h, flags="A", ack=c.s + 1 + len(RESPONSE)))
    assert to_backend(ack, "be1") and ack[TCP].ack == c.s + 1 + len(RESPONSE)
    c.ack = c.s + 1 + len(RESPONSE)
    close(h, c)
    assert h.offload() == [{"op": layouts.CtlOp.DEL, "ip": c.ip, "port": c.port, "backend": 0,
                            "vip": 0}]


def test_entry_is_deleted_when_the_client_closes_not_after_the_grace(h):
    """Regression (found end to end): the switch entry used to stay until the
    grace period ended, so a client that reused the port sent its next
    handshake ACK to the old back-end's TIME_WAIT socket.  The DEL now goes out
    as soon as the client's FIN arrives (the front-end must see the rest of the
    response to pass that FIN on); the back-end's FIN releases the client's at
    once; the last ACK still reaches the back-end."""
    c = Client(port=40013)
    splice(h, c)
    h.offload()
    only(c.send(h, flags="FA"))
    assert h.offload() == [{"op": layouts.CtlOp.DEL, "ip": c.ip, "port": c.port, "backend": 0,
                            "vip": 0}]
    bfin, fin = only(h.send(backend_pkt(c, "be1", c.ack, c.seq, "FA")), 2)
    assert bfin[IP].dst == c.ip and bfin[TCP].flags == "FA"
    assert to_backend(fin, "be1") and fin[TCP].flags == "FA" and fin[TCP].seq == c.seq - 1
    assert h.stats()["flows_by_state"]["time_wait"] == 1
    c.ack += 1
    last = only(c.send(h, flags="A"))
    assert to_backend(last, "be1") and last[TCP].ack == c.ack
    h.advance(2.1)
    assert h.offload() == [], "no second DEL when the state goes"
    assert_clean(h)


def test_port_reused_during_the_grace_period_starts_a_new_flow(h):
    """Regression (found end to end, one connection per request): a client
    reusing the port of a flow in its grace period had its request forwarded
    to the old back-end until the grace ended (1-2 s stalls).  A packet whose
    seq lies after the old stream's end (TCP's own TIME_WAIT rule) starts a
    new flow with the new cookie numbers, on whichever back-end the rule picks."""
    old = Client(port=40014, isn=5000)
    splice(h, old)
    only(old.send(h, flags="FA"))
    only(h.send(backend_pkt(old, "be1", old.ack, old.seq, "FA")), 2)
    old.ack += 1
    only(old.send(h, flags="A"))
    h.offload()
    new = Client(port=40014, isn=5000 + 64_000_000)   # a clock-driven ISN, later
    assert new.send(h) == [], "the handshake ACK starts a flow and is not answered"
    syn = only(new.send(h, GET, "PA"))
    assert syn[TCP].flags == "S" and syn[TCP].seq == new.c and syn[TCP].ack == new.s
    st = h.stats()
    assert st["packets"]["reincarnation"] == 1 and st["flows"] == 1
    assert st["flows_by_state"]["syn_sent"] == 1
    backend = next(b for b in BACKENDS if to_backend(syn, b))
    out = h.send(backend_pkt(new, backend, new.s, new.c + 1, "SA"))
    ack, req = only(out, 2)
    assert payload(req) == GET and req[TCP].seq == new.c + 1 and req[TCP].ack == new.s + 1
    # A late resend of the old connection's last ACK is not a new connection.
    before = h.stats()["packets"]["reincarnation"]
    h.send(old.pkt(flags="A", seq=old.seq, ack=old.ack))
    assert h.stats()["packets"]["reincarnation"] == before


def test_offload_waits_for_offload_after_bytes_of_response(harness_binary):
    """With offload_after_bytes 2000: no ADD when the back-end joins; the ADD goes
    once 2000 response bytes have passed through the front-end; a flow whose whole
    response is smaller never costs the switch an ADD or a DEL."""
    with Harness(config_text(offload_after_bytes=2000), binary=harness_binary) as h:
        big = Client(port=40021)
        splice(h, big)
        assert h.offload() == []
        seq = big.s + 1
        for chunk in (1000, 1000):
            only(h.send(backend_pkt(big, "be1", seq, big.seq, "PA", b"x" * chunk)))
            seq += chunk
            big.ack = seq
        assert h.offload() == [{"op": layouts.CtlOp.ADD, "ip": big.ip, "port": big.port,
                                "backend": 0, "vip": 0}]
        close(h, big, server_seq=seq)
        assert [e["op"] for e in h.offload()] == [layouts.CtlOp.DEL]

        small = Client(port=40022)
        splice(h, small, backend="be2")        # round robin: the cluster's second
        only(h.send(backend_pkt(small, "be2", small.s + 1, small.seq, "PA", RESPONSE)))
        small.ack = small.s + 1 + len(RESPONSE)
        close(h, small, backend="be2")
        assert h.offload() == [], "a short flow is never offloaded"
        assert h.stats()["offload"]["queued_add"] == 1


def test_request_split_across_segments_is_held_and_acknowledged_until_complete(h):
    """Nothing goes to a back-end until the header's last byte.  Meanwhile the
    front-end acknowledges every second held segment as a receiver would: from the
    VIP, seq = the client's ack field, ack = the next byte it expects, the window
    what the hold limit still takes (scaled by W).  Then all of it, in order; the
    connection stays on the front-end (no ADD), which keeps copies of the bytes it
    acknowledged until the back-end acknowledges them."""
    c = Client(port=40004)
    c.send(h)
    starts = list(range(0, len(GET) - 1, 7)) + [len(GET) - 1]
    for n, i in enumerate(starts[:-1], 1):
        out = c.send(h, GET[i:min(i + 7, len(GET) - 1)], "A")
        if n % 2:
            assert out == [], n
            continue
        ack = only(out)
        assert ack[IP].src == VIP and ack[IP].dst == c.ip and ack[TCP].sport == 80
        assert ack[TCP].flags == "A" and ack[TCP].seq == c.s + 1 and ack[TCP].ack == c.seq
        assert ack[TCP].window == (LIMIT_DEFAULTS["hold_limit_bytes"] - (c.seq - c.c - 1)) >> 7
    syn = only(c.send(h, GET[-1:], "PA"))
    assert syn[TCP].flags == "S"
    out = h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA"))
    data = [f for f in out if payload(f)]
    assert b"".join(payload(f) for f in data) == GET
    # The first four segments as they came, the rest copied into the fourth
    # (fe_hold.c): released as four.
    assert [f[TCP].seq for f in data] == [c.c + 1 + i for i in starts[:4]]
    st = h.stats()
    assert st["packets"]["own_ack"] == 3 and st["decisions"]["pinned"] == 1
    assert h.offload() == [], "a request that needed our ACKs is not handed to the switch"
    assert st["held_mbufs"] > 0, "copies of what we acknowledged"
    h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "A"))
    assert h.stats()["held_mbufs"] == 0, "the back-end has them all"


def test_round_robin_across_the_cluster(h):
    """New connections to one cluster alternate between its back-ends."""
    picks = []
    for i in range(4):
        c = Client(port=41000 + i)
        c.send(h)
        picks.append(only(c.send(h, GET, "PA"))[IP].dst)
    assert picks == [BACKENDS["be1"], BACKENDS["be2"]] * 2


def test_host_rule_and_absolute_form_route(h):
    """Host img.example (any case, any port) goes to static; /api goes to api on port 8080."""
    c = Client(port=41010)
    c.send(h)
    syn = only(c.send(h, b"GET /api/x HTTP/1.1\r\nHost: img.example\r\n\r\n", "PA"))
    assert to_backend(syn, "be3", 8080)
    c2 = Client(port=41011)
    c2.send(h)
    syn2 = only(c2.send(h, b"GET http://api.example/api/v2 HTTP/1.1\r\nHost: x\r\n\r\n", "PA"))
    assert to_backend(syn2, "be3", 8080)


# ----------------------------------------------------- keep-alive decisions

def second_request(h, c, request, *, server_bytes=len(RESPONSE)):
    """After a response of server_bytes, the client sends its next request."""
    c.ack = c.s + 1 + server_bytes
    return c.send(h, request, "PA")


def test_keepalive_same_cluster_is_forwarded_to_the_same_backend(h):
    """A second request for the same cluster goes straight on, no new connection."""
    c = Client(port=42001)
    splice(h, c)
    h.offload()
    h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "PA", RESPONSE))
    req2 = b"GET /other HTTP/1.1\r\nHost: www.example\r\n\r\n"
    f = only(second_request(h, c, req2))
    assert to_backend(f, "be1") and payload(f) == req2
    assert f[TCP].seq == c.c + 1 + len(GET) and f[TCP].ack == c.ack
    st = h.stats()
    assert st["decisions"]["same_backend"] == 1 and st["requests"] == 2
    assert h.offload() == []


def test_keepalive_other_cluster_drains_old_backend_then_opens_new_with_fused_numbers(h):
    """Another cluster: the request is held and the entry deleted until the old
    response is over; then a FIN to the old back-end at the request's first byte;
    its FIN (at F_end, the end of its stream) is swallowed and acknowledged as the
    client would; the new back-end's SYN carries seq request-1 and ack field F_end-1."""
    c = Client(port=42002)
    splice(h, c)
    h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "PA", RESPONSE))
    assert h.offload()[0]["op"] == layouts.CtlOp.ADD
    req2 = b"POST /api/items HTTP/1.1\r\nHost: www.example\r\nContent-Length: 4\r\n\r\n"
    client_seq = c.seq
    assert second_request(h, c, req2) == [], "held until the old response is over"
    assert h.offload() == [{"op": layouts.CtlOp.DEL, "ip": c.ip, "port": c.port, "backend": 0,
                            "vip": 0}]
    assert h.stats()["flows_by_state"]["drain"] == 1
    # The body arrives meanwhile: held too.
    assert c.send(h, b"abcd", "PA") == []
    fin = only(h.advance(DRAIN_QUIET))
    assert to_backend(fin, "be1") and fin[TCP].flags == "FA"
    assert fin[TCP].seq == client_seq and fin[TCP].ack == c.ack
    # Its ACK of our FIN is not the client's business; its FIN is swallowed.
    assert h.send(backend_pkt(c, "be1", c.ack, client_seq + 1, "A")) == []
    ack, syn = only(h.send(backend_pkt(c, "be1", c.ack, client_seq + 1, "FA")), 2)
    assert to_backend(ack, "be1") and ack[TCP].flags == "A"
    assert ack[TCP].seq == client_seq + 1 and ack[TCP].ack == c.ack + 1
    assert to_backend(syn, "be3", 8080) and syn[TCP].flags == "S"
    assert syn[TCP].seq == client_seq - 1 and syn[TCP].ack == c.ack - 1
    out = h.send(backend_pkt(c, "be3", c.ack - 1, client_seq, "SA", port=8080))
    ack, data1, data2 = only(out, 3)
    assert ack[TCP].seq == client_seq and ack[TCP].ack == c.ack
    assert payload(data1) + payload(data2) == req2 + b"abcd"
    assert all(to_backend(f, "be3", 8080) for f in out)
    assert h.offload() == [{"op": layouts.CtlOp.ADD, "ip": c.ip, "port": c.port, "backend": 2,
                            "vip": 0}]
    # The new back-end answers in the client's numbering.
    resp = only(h.send(backend_pkt(c, "be3", c.ack, c.seq, "PA", RESPONSE, port=8080)))
    assert resp[IP].src == VIP and resp[TCP].sport == 80 and resp[TCP].seq == c.ack
    st = h.stats()
    assert st["decisions"]["other_backend"] == 1
    assert st["packets"]["drain_fin"] == 1 and st["packets"]["fin_swallowed"] == 1
    c.ack += len(RESPONSE)
    close(h, c, "be3")


def test_rule_without_offload_keeps_the_flow_and_withdraws_the_entry(h):
    """offload=false: no ADD; on a kept-alive connection the entry is deleted."""
    c = Client(port=42003)
    splice(h, c)
    assert [e["op"] for e in h.offload()] == [layouts.CtlOp.ADD]
    h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "PA", RESPONSE))
    f = only(second_request(h, c, b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert to_backend(f, "be1")
    assert [e["op"] for e in h.offload()] == [layouts.CtlOp.DEL]
    assert h.stats()["decisions"]["no_offload"] == 1
    c2 = Client(port=42004)
    splice(h, c2, b"GET /private/y HTTP/1.1\r\nHost: a\r\n\r\n", backend="be2")
    assert h.offload() == []


def test_pipelined_requests_in_one_segment_are_cut_at_the_boundary(h):
    """Two requests in one segment: the first is forwarded, the second parsed on its
    own; it is for another cluster, so it waits until the first one's response is
    over (the client acknowledged all of it) before the old back-end hears more."""
    c = Client(port=42005)
    splice(h, c)
    h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "PA", RESPONSE))
    r2 = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
    r3 = b"GET /api/b HTTP/1.1\r\nHost: a\r\n\r\n"
    start = c.seq
    first = only(second_request(h, c, r2 + r3))
    assert to_backend(first, "be1") and payload(first) == r2 and first[TCP].seq == start
    st = h.stats()
    assert st["packets"]["split"] == 1 and st["flows_by_state"]["drain"] == 1
    # r2's response: the client has not acknowledged it yet, so it is not over.
    only(h.send(backend_pkt(c, "be1", c.ack, start + len(r2), "PA", RESPONSE)))
    assert h.advance(DRAIN_QUIET) == []
    c.ack += len(RESPONSE)
    ack = only(c.send(h, flags="A"))
    assert to_backend(ack, "be1") and ack[TCP].ack == c.ack
    assert ack[TCP].seq == start + len(r2), "the old back-end never gets r3's bytes"
    fin = only(h.advance(DRAIN_QUIET))
    assert fin[TCP].flags == "FA" and fin[TCP].seq == start + len(r2)


def test_content_length_and_chunked_bodies_mark_request_ends(h):
    """Bodies are followed exactly, so the request after each is recognised."""
    c = Client(port=42006)
    post = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
    splice(h, c, post)
    body = only(c.send(h, b"0123456789", "PA"))
    assert payload(body) == b"0123456789"
    chunked = (b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: 1\r\n\r\n")
    f = only(second_request(h, c, chunked, server_bytes=0))
    assert payload(f) == chunked
    # The next bytes start a new request: for the api cluster, so it moves
    # (once the old back-end's response is over).
    assert c.send(h, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", "PA") == []
    st = h.stats()
    assert st["decisions"]["other_backend"] == 1 and st["flows_by_state"]["drain"] == 1


def test_upgrade_makes_the_connection_opaque(h):
    """After an Upgrade request, bytes are forwarded without looking for requests."""
    c = Client(port=42007)
    splice(h, c, b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    f = only(c.send(h, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
    assert to_backend(f, "be1")
    assert h.stats()["decisions"]["opaque"] == 1


def test_broken_chunked_body_stays_with_its_backend(h):
    """A bad chunk size after dispatch: forwarded (the back-end answers it), routing stops."""
    c = Client(port=42008)
    splice(h, c, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    f = only(c.send(h, b"zz\r\nGET /api HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
    assert to_backend(f, "be1")
    assert h.stats()["errors"]["body_framing"] == 1


# ------------------------------------------------------------- answers

def answer_of(frames, c: Client):
    f = [x for x in frames if x[IP].dst == c.ip and "F" in x[TCP].flags]
    assert len(f) == 1, [x.summary() for x in frames]
    f = f[0]
    assert checksums_ok(f)
    assert f[IP].src == VIP and f[TCP].sport == 80 and f[TCP].dport == c.port
    return f


def finish_answered(h, c, ans, fin_sent=False):
    end = ans[TCP].seq + len(payload(ans)) + 1
    if fin_sent:
        h.send(c.pkt(flags="A", ack=end))
    else:
        ack = only(c.send(h, flags="FA", ack=end))
        assert ack[TCP].flags == "A" and ack[TCP].ack == c.seq and ack[TCP].seq == end
    h.advance(2.1)
    assert_clean(h)


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 1100, 431),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
])
def test_bad_request_gets_its_answer_from_the_vip(h, request_bytes, status):
    """The front-end answers in the client's numbering (s+1), acks what it read, closes."""
    c = Client(port=43000 + status)
    c.send(h)
    frames = []
    for i in range(0, len(request_bytes), 600):
        frames += c.send(h, request_bytes[i:i + 600], "PA")
    ans = answer_of(frames, c)
    text = payload(ans)
    assert text.startswith(f"HTTP/1.1 {status} ".encode()), text
    assert b"Connection: close" in text
    assert ans[TCP].seq == c.s + 1 and "F" in ans[TCP].flags
    assert c.c + 1 < ans[TCP].ack <= c.seq
    assert h.stats()["errors"][str(status)] == 1
    finish_answered(h, c, ans)


def test_unrouted_request_gets_404(harness_binary):
    """No rule and no default cluster: 404."""
    svc = Service(vip=VIP, clusters=[Cluster(name="api", backends=["be3"], port=8080)],
                  rules=[Rule(cluster="api", path_prefix="/api")])
    with Harness(config_text(svc), binary=harness_binary) as h:
        c = Client()
        c.send(h)
        ans = answer_of(c.send(h, GET, "PA"), c)
        assert payload(ans).startswith(b"HTTP/1.1 404 Not Found")
        assert ans[TCP].ack == c.seq
        finish_answered(h, c, ans)


def test_slow_client_gets_408(h):
    """A header that never completes is answered 408 when the request timer fires."""
    c = Client(port=43001)
    c.send(h)
    assert c.send(h, b"GET / HTTP/1.1\r\nHo", "PA") == []
    assert h.advance(4.9) == []
    ans = answer_of(h.advance(0.2), c)
    assert payload(ans).startswith(b"HTTP/1.1 408 Request Timeout")
    assert ans[TCP].seq == c.s + 1 and ans[TCP].ack == c.seq
    finish_answered(h, c, ans)


def test_connection_closed_mid_header_gets_400_and_empty_one_just_fin(h):
    c = Client(port=43002)
    c.send(h)
    ans = answer_of(c.send(h, b"GET / HTTP/1.1\r\nHo", "FPA"), c)
    assert payload(ans).startswith(b"HTTP/1.1 400")
    assert ans[TCP].ack == c.seq
    finish_answered(h, c, ans, fin_sent=True)
    e = Client(port=43003)
    e.send(h)
    ans = answer_of(e.send(h, flags="FA"), e)
    assert payload(ans) == b"" and ans[TCP].ack == e.seq
    finish_answered(h, e, ans, fin_sent=True)


def test_503_after_every_backend_of_the_cluster_timed_out(h):
    """SYN timeout -> the cluster's next back-end -> ... -> 503."""
    c = Client(port=43004)
    c.send(h)
    s1 = only(c.send(h, GET, "PA"))
    s2 = only(h.advance(1.01))
    assert {s1[IP].dst, s2[IP].dst} == {BACKENDS["be1"], BACKENDS["be2"]}
    assert s2[TCP].seq == c.c and s2[TCP].ack == c.s
    ans = answer_of(h.advance(1.01), c)
    assert payload(ans).startswith(b"HTTP/1.1 503")
    st = h.stats()
    assert st["errors"]["syn_timeout"] == 2 and st["errors"]["503"] == 1
    # A late SYN-ACK from the first back-end is reset, not spliced.
    late = h.send(backend_pkt(c, "be1" if s1[IP].dst == BACKENDS["be1"] else "be2", c.s, c.c + 1,
                              "SA"))
    assert len(late) == 1 and late[0][TCP].flags == "R" and late[0][TCP].seq == c.c + 1
    finish_answered(h, c, ans)


def test_lost_syn_is_sent_again_before_the_next_backend(harness_binary):
    """syn_retries: the same SYN (seq, ack field) again, then the next back-end."""
    with Harness(config_text(syn_retries=2), binary=harness_binary) as h:
        c = Client(port=43010)
        c.send(h)
        s1 = only(c.send(h, GET, "PA"))
        r1 = only(h.advance(1.01))
        r2 = only(h.advance(1.01))
        assert bytes(r1[TCP]) == bytes(r2[TCP]) == bytes(s1[TCP])
        assert r1[IP].dst == s1[IP].dst
        other = only(h.advance(1.01))
        assert other[IP].dst != s1[IP].dst and other[TCP].flags == "S"
        st = h.stats()
        assert st["packets"]["syn_retransmit"] == 2 and st["errors"]["syn_timeout"] == 1
        # The second back-end answers: spliced as usual.
        be = "be1" if other[IP].dst == BACKENDS["be1"] else "be2"
        out = h.send(backend_pkt(c, be, c.s, c.c + 1, "SA"))
        assert payload(out[-1]) == GET


def test_backend_time_wait_ack_is_reset_and_syn_sent_again_at_once(h):
    """A back-end whose TIME_WAIT refuses our SYN answers with a bare ACK: the front-end
    resets it (seq = that ACK's ack, RFC 793) and sends the same SYN again without
    waiting for a timeout; once per flow, so a second bare ACK is only counted."""
    c = Client(port=43011)
    c.send(h)
    s1 = only(c.send(h, GET, "PA"))
    be = "be1" if s1[IP].dst == BACKENDS["be1"] else "be2"
    rst, again = only(h.send(backend_pkt(c, be, 5000, 987654, "A")), 2)
    assert to_backend(rst, be) and rst[TCP].flags == "R" and rst[TCP].seq == 987654
    assert rst[IP].src == c.ip and rst[TCP].sport == c.port
    assert to_backend(again, be) and bytes(again[TCP]) == bytes(s1[TCP])
    assert h.send(backend_pkt(c, be, 5000, 987654, "A")) == []
    st = h.stats()
    assert st["packets"]["time_wait_reset"] == 1 and st["packets"]["unexpected"] == 1
    assert st["errors"]["syn_timeout"] == 0
    # The back-end takes the resent SYN: spliced as usual.
    out = h.send(backend_pkt(c, be, c.s, c.c + 1, "SA"))
    assert payload(out[-1]) == GET


def test_backend_reset_moves_on_and_agentless_backend_is_refused(h):
    """RST to our SYN, or a SYN-ACK not in the client's numbering: next back-end."""
    c = Client(port=43005)
    c.send(h)
    s1 = only(c.send(h, GET, "PA"))
    first = "be1" if s1[IP].dst == BACKENDS["be1"] else "be2"
    second = "be2" if first == "be1" else "be1"
    s2 = only(h.send(backend_pkt(c, first, 0, c.c + 1, "RA")))
    assert to_backend(s2, second)
    # A back-end without the agent answers with its own ISN.
    out = h.send(backend_pkt(c, second, 123456, c.c + 1, "SA"))
    rst, = [f for f in out if f[IP].dst == BACKENDS[second]]
    assert rst[TCP].flags == "R"
    ans = answer_of(out, c)
    assert payload(ans).startswith(b"HTTP/1.1 503")
    st = h.stats()
    assert st["errors"]["backend_refused"] == 1 and st["errors"]["agent_mismatch"] == 1
    finish_answered(h, c, ans)


def test_answer_is_retransmitted_until_acknowledged(h):
    c = Client(port=43006)
    c.send(h)
    ans = answer_of(c.send(h, b"BAD\x00", "PA"), c)
    again = answer_of(h.advance(0.21), c)
    assert bytes(again[TCP]) == bytes(ans[TCP])
    finish_answered(h, c, ans)


def test_answer_on_a_kept_alive_connection_continues_the_servers_numbering(h):
    """A bad second request: RST the back-end, answer at the client's ack, delete the entry."""
    c = Client(port=43007)
    splice(h, c)
    h.offload()
    h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "PA", RESPONSE))
    start = c.seq
    out = second_request(h, c, b"GET / HTTP/1.1\r\n\r\n")
    rst = [f for f in out if f[IP].dst == BACKENDS["be1"]]
    assert len(rst) == 1 and rst[0][TCP].flags == "R" and rst[0][TCP].seq == start
    ans = answer_of(out, c)
    assert ans[TCP].seq == c.s + 1 + len(RESPONSE)
    assert [e["op"] for e in h.offload()] == [layouts.CtlOp.DEL]
    finish_answered(h, c, ans)


# ------------------------------------------------------------- edge cases

def test_out_of_order_and_duplicate_segments_while_holding(h):
    """A gap is not skipped (the client resends); a resent segment is not doubled,
    and is acknowledged (the client waits for an ACK only the front-end can give)."""
    c = Client(port=44001)
    c.send(h)
    a, b = GET[:10], GET[10:]
    assert h.send(c.pkt(b, "PA", seq=c.seq + len(a))) == []
    assert c.send(h, a, "A") == []
    dup = only(c.send(h, a, "A", seq=c.c + 1))
    assert dup[IP].src == VIP and dup[TCP].flags == "A" and dup[TCP].ack == c.c + 1 + len(a)
    syn = only(c.send(h, b, "PA"))
    out = h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA"))
    assert b"".join(payload(f) for f in out) == GET
    st = h.stats()["packets"]
    assert st["out_of_order"] == 1 and st["duplicate"] == 1 and st["own_ack"] == 1
    assert syn[TCP].seq == c.c


def test_retransmission_reaching_into_a_held_request_passes_its_old_part(h):
    """While a new header is held, a resent segment spanning old and new bytes: old part goes."""
    c = Client(port=44005)
    splice(h, c)
    h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "PA", RESPONSE))
    c.ack = c.s + 1 + len(RESPONSE)
    tail_of_first = GET[-10:]
    assert c.send(h, b"GET /x HTTP/1.1\r\n", "PA") == []        # held, incomplete
    resent = c.pkt(tail_of_first + b"GET /x", "PA", seq=c.c + 1 + len(GET) - 10)
    f = only(h.send(resent))
    assert to_backend(f, "be1") and payload(f) == tail_of_first
    assert f[TCP].seq == c.c + 1 + len(GET) - 10 and "F" not in f[TCP].flags
    assert h.stats()["flows_by_state"]["next_header"] == 1


def test_client_reset_aborts_the_backend_connection(h):
    c = Client(port=44002)
    c.send(h)
    s = only(c.send(h, GET, "PA"))
    rst = only(c.send(h, flags="R"))
    assert rst[IP].dst == s[IP].dst and rst[TCP].flags == "R" and rst[TCP].seq == c.c + 1
    assert h.stats()["errors"]["client_reset"] == 1
    h.advance(2.1)
    assert_clean(h)


def test_backend_reset_is_passed_to_the_client(h):
    c = Client(port=44003)
    splice(h, c)
    rst = only(h.send(backend_pkt(c, "be1", c.s + 1, 0, "R")))
    assert rst[IP].src == VIP and rst[TCP].flags == "R" and rst[TCP].seq == c.s + 1
    h.advance(2.1)
    assert_clean(h)


def test_retransmitted_synack_is_acknowledged_again(h):
    c = Client(port=44004)
    splice(h, c)
    again = only(h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA")))
    assert again[TCP].flags == "A" and again[TCP].ack == c.s + 1


def test_idle_flow_is_closed_with_a_fin_as_the_client_would(harness_binary):
    """idle_timeout with nothing through the front-end and no switch entry (rule
    without offload): a FIN to the back-end at cli_next, in the client's name; the
    back-end's ACK of it and its FIN reach the client acknowledging no more than
    the client sent (a client drops a segment that acknowledges what it never
    sent, the FIN with it), and so does the FIN sent again; the client's ACK goes
    on one past our FIN and its own FIN is acknowledged by the front-end; freed
    after the grace."""
    with Harness(config_text(idle_timeout_ms=3000), binary=harness_binary) as h:
        c = Client()
        splice(h, c, b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert h.offload() == []
        fin = only(h.advance(3.1))
        assert to_backend(fin, "be1") and fin[TCP].flags == "FA"
        assert fin[TCP].seq == c.seq and fin[TCP].ack == c.ack
        ack = only(h.send(backend_pkt(c, "be1", c.ack, c.seq + 1, "A")))
        assert ack[IP].dst == c.ip and ack[TCP].flags == "A" and ack[TCP].ack == c.seq
        bfin = only(h.send(backend_pkt(c, "be1", c.ack, c.seq + 1, "FA")))
        assert bfin[IP].dst == c.ip and bfin[TCP].flags == "FA"
        assert bfin[TCP].seq == c.ack and bfin[TCP].ack == c.seq, "our FIN not counted"
        again = only(h.send(backend_pkt(c, "be1", c.ack, c.seq + 1, "FA")))
        assert again[TCP].flags == "FA" and again[TCP].ack == c.seq, "resent, in TIME_WAIT"
        c.ack += 1
        last = only(c.send(h, flags="A"))
        assert to_backend(last, "be1") and last[TCP].seq == c.seq + 1
        ours = only(c.send(h, flags="FA"))
        assert ours[IP].dst == c.ip and ours[TCP].flags == "A" and ours[TCP].ack == c.seq
        st = h.stats()
        assert st["errors"]["idle_timeout"] == 1 and st["packets"]["idle_fin"] == 1
        assert st["packets"]["fin_absorbed"] == 1
        h.advance(2.1)
        assert_clean(h)


def test_client_closing_at_once_after_an_idle_close_acknowledges_the_back_end(harness_binary):
    """The client reads the back-end's FIN and closes at once: its FIN's segment
    carries the ACK of the back-end's FIN.  The front-end acknowledges the client's
    FIN itself and passes that ACK on to the back-end, without the FIN and one past
    ours (dropped with the FIN, the back-end would send its FIN again after the flow
    is gone, and whoever got it would reset the client)."""
    with Harness(config_text(idle_timeout_ms=3000), binary=harness_binary) as h:
        c = Client(port=44010)
        splice(h, c, b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n")
        fin = only(h.advance(3.1))
        assert to_backend(fin, "be1") and fin[TCP].flags == "FA"
        bfin = only(h.send(backend_pkt(c, "be1", c.ack, c.seq + 1, "FA")))
        assert bfin[TCP].flags == "FA" and bfin[TCP].ack == c.seq
        c.ack += 1
        out = c.send(h, flags="FA")     # c.seq: one past the client's FIN, and ours
        ours = only([f for f in out if f[IP].dst == c.ip])
        assert ours[TCP].flags == "A" and ours[TCP].ack == c.seq
        on = only([f for f in out if to_backend(f, "be1")])
        assert on[TCP].flags == "A" and on[TCP].seq == c.seq and on[TCP].ack == c.ack
        st = h.stats()
        assert st["packets"]["fin_absorbed"] == 1 and st["packets"]["rst_sent"] == 0
        h.advance(2.1)
        assert_clean(h)


def with_ts(p, tsval: int, tsecr: int):
    p[TCP].options = [("NOP", None), ("NOP", None), ("Timestamp", (tsval, tsecr))]
    return p


def timestamps(f) -> tuple[int, int]:
    return next(v for k, v in f[TCP].options if k == "Timestamp")


def test_a_fin_the_back_end_refuses_goes_again_with_what_its_answer_teaches(harness_binary):
    """Our idle FIN carries the client's numbers as the front-end last saw them.  When
    the switch carried the flow, the client's later segments reached the back-end
    without the front-end (simulated here: the back-end saw a later TSval and sent
    more), so the back-end refuses the FIN (PAWS, RFC 7323; RFC 5961) with an ACK
    that does not take it, whose TSecr is the client's latest TSval and whose seq
    ends what it sent.  The FIN goes again with those, the answer not passed to the
    client; the back-end takes it and the close ends FIN by FIN, no RST."""
    with Harness(config_text(idle_timeout_ms=3000), binary=harness_binary) as h:
        c = Client(port=44020)
        assert h.send(with_ts(c.pkt(), 100, 7)) == []
        req = b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n"
        assert to_backend(only(h.send(with_ts(c.pkt(req, "PA"), 100, 7))), "be1")
        c.seq += len(req)
        h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA"))
        fin = only(h.advance(3.1))
        assert to_backend(fin, "be1") and fin[TCP].flags == "FA"
        assert (fin[TCP].seq, fin[TCP].ack, timestamps(fin)) == (c.seq, c.ack, (100, 7))
        sent = (c.ack + 5000) & 0xFFFFFFFF
        again = only(h.send(with_ts(backend_pkt(c, "be1", sent, c.seq, "A"), 900, 105)))
        assert to_backend(again, "be1") and again[TCP].flags == "FA"
        assert (again[TCP].seq, again[TCP].ack, timestamps(again)) == (c.seq, sent, (105, 900))
        # Nothing new: a duplicate ACK goes on to the client as any would.
        dup = only(h.send(with_ts(backend_pkt(c, "be1", sent, c.seq, "A"), 900, 105)))
        assert dup[IP].dst == c.ip and dup[TCP].ack == c.seq
        bfin = only(h.send(backend_pkt(c, "be1", sent, c.seq + 1, "FA")))
        assert bfin[IP].dst == c.ip and bfin[TCP].flags == "FA" and bfin[TCP].ack == c.seq
        st = h.stats()["packets"]
        assert st["fin_refreshed"] == 1 and st["idle_fin"] == 1 and st["rst_sent"] == 0
        assert h.stats()["flows_by_state"]["time_wait"] == 1


def test_idle_close_that_does_not_end_resets_both(harness_binary):
    """The back-end never answers our idle FIN: after the grace, the FIN once more
    (an answer to the first may have gone the switch's way); after another, RST both
    ends."""
    with Harness(config_text(idle_timeout_ms=3000), binary=harness_binary) as h:
        c = Client()
        splice(h, c, b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n")
        only(h.advance(3.1))
        again = only(h.advance(2.1))
        assert to_backend(again, "be1") and again[TCP].flags == "FA"
        assert again[TCP].seq == c.seq and h.stats()["packets"]["fin_again"] == 1
        out = h.advance(2.1)
        assert sorted(f[TCP].flags for f in out) == ["R", "R"]
        rst_be = next(f for f in out if to_backend(f, "be1"))
        assert rst_be[TCP].seq == c.seq + 1, "one past our FIN"
        assert h.stats()["errors"]["close_timeout"] == 1
        assert_clean(h)


def test_flow_table_full_of_requests_resets_new_connections(harness_binary):
    """Every flow has a request in progress: nothing to evict, a new connection gets RST."""
    with Harness(config_text(flow_capacity=2), binary=harness_binary) as h:
        for port in (45001, 45002):
            c = Client(port=port)
            c.send(h)
            assert only(c.send(h, GET, "PA"))[TCP].flags == "S"
        c = Client(port=45003)
        rst = only(c.send(h))
        assert rst[TCP].flags == "R" and rst[TCP].seq == c.ack and rst[IP].src == VIP
        st = h.stats()
        assert st["errors"]["flow_table_full"] == 1 and st["errors"]["evicted_for_flow"] == 0


def test_flow_table_full_of_idle_handshakes_evicts_the_oldest(harness_binary):
    """Handshakes that never sent a request fill the table: the oldest is reset to
    make room, and the new connection is served."""
    with Harness(config_text(flow_capacity=2), binary=harness_binary) as h:
        idle = [Client(port=port) for port in (45011, 45012)]
        for c in idle:
            assert c.send(h) == []
        c = Client(port=45013)
        rst = only(c.send(h))
        assert rst[IP].dst == idle[0].ip and rst[TCP].dport == idle[0].port
        assert rst[TCP].flags == "R" and rst[TCP].seq == idle[0].ack
        assert to_backend(only(c.send(h, GET, "PA")), "be1")
        st = h.stats()
        assert st["errors"]["evicted_for_flow"] == 1 and st["errors"]["flow_table_full"] == 0
        assert st["flows_by_state"]["header"] == 1 and st["flows_by_state"]["syn_sent"] == 1


def test_pipelined_requests_cut_at_an_odd_offset_go_out_whole(h):
    """Two 47-byte requests in one segment: the second is cut off at an odd offset
    and gets its headers put in front of it there; both reach the back-end intact
    (the sanitized build checks the headers' alignment)."""
    c = Client(port=46010)
    splice(h, c)
    both = only(c.send(h, GET + GET, "PA"), 2)
    assert len(GET) % 2 == 1
    assert all(to_backend(f, "be1") and payload(f) == GET for f in both)


def test_packets_without_a_flow_are_refused(h):
    """Data from a back-end's address for an unknown flow, without the switch's BACKEND
    mark (anyone could have sent it): the back-end is reset, no client; SYNs are the
    switch's."""
    c = Client(port=46001)
    assert h.send(c.pkt(flags="S")) == []
    stray = only(h.send(backend_pkt(c, "be2", 5, 6, "PA", b"x", mark="none")))
    assert stray[IP].dst == BACKENDS["be2"] and stray[TCP].flags == "R" and stray[TCP].seq == 6
    st = h.stats()["packets"]
    assert st["no_flow"] == 1 and st["unexpected"] == 1 and st["orphan_reset"] == 0


@pytest.mark.parametrize("flags, payload, client_seq", [
    ("PA", b"HTTP/1.1 200 OK\r\n", 5000),      # the held request's response starts
    ("A", b"", 5000),                           # the back-end acknowledges the request
    ("FA", b"", 5000),                          # it closes
    ("SA", b"", 5001),                          # a late SYN-ACK: one past its ISN
])
def test_backend_packet_of_a_flow_no_one_holds_resets_both_ends(h, flags, payload, client_seq):
    """The front-end that held the flow died: its back-end's packet (marked BACKEND by
    the switch, in the client's numbering) reaches a front-end without the flow, which
    resets the back-end at the packet's ack and the client at the packet's seq, the
    point its stream stands at; a back-end's RST gets no answer."""
    c = Client(port=46003)
    out = only(h.send(backend_pkt(c, "be2", 5000, 7000, flags, payload)), 2)
    to_be = next(f for f in out if f[IP].dst == BACKENDS["be2"])
    to_client = next(f for f in out if f[IP].dst == c.ip)
    assert to_be[TCP].flags == "R" and to_be[TCP].seq == 7000
    assert (to_client[IP].src, to_client[TCP].sport, to_client[TCP].dport) == (VIP, 80, c.port)
    assert to_client[TCP].flags == "R" and to_client[TCP].seq == client_seq
    assert mark(to_client) == "none" and mark(to_be) == "none"
    assert h.send(backend_pkt(c, "be2", 5000, 7000, "R")) == []
    st = h.stats()["packets"]
    assert st["no_flow"] == 2 and st["orphan_reset"] == 1 and st["rst_sent"] == 2


def test_backend_packet_of_a_flow_on_another_backend_resets_only_that_backend(h):
    """A flow the front-end holds, with another back-end (a late SYN-ACK after a move):
    only the stale back-end is reset; the client's connection lives on."""
    c = Client(port=46004)
    released = splice(h, c)
    assert released and all(to_backend(f, "be1") for f in released)
    stale = only(h.send(backend_pkt(c, "be2", 5000, 7000, "PA", b"late")))
    assert stale[IP].dst == BACKENDS["be2"] and stale[TCP].flags == "R"
    st = h.stats()["packets"]
    assert st["stale_backend"] == 1 and st["orphan_reset"] == 0


def test_corrupted_checksum_is_dropped(h):
    c = Client(port=46002)
    c.send(h)
    bad = c.pkt(GET, "PA")
    bad[TCP].chksum = 0x1234
    assert h.send(bad) == []
    assert h.stats()["packets"]["bad_checksum"] == 1


def test_other_traffic_on_the_link_is_ignored(h):
    from scapy.layers.l2 import ARP
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether

    assert h.send(Ether(src=SWITCH_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.10.2.2")) == []
    assert h.send(Ether(src=SWITCH_MAC, dst=FE_MAC) / IP(src="1.2.3.4", dst=VIP) / UDP()) == []
    assert h.send(Ether(src=FE_MAC, dst=SWITCH_MAC) / IP(src="1.2.3.4", dst=VIP) /
                  TCP(dport=80, flags="A")) == []
    st = h.stats()["packets"]
    assert st["not_ours"] == 2 and st["own"] == 1
    assert_clean(h)
