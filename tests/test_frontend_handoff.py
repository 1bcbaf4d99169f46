"""The hand-off, frame by frame (issues 13 and 14): admission, the three
hand-off modes, requests of any shape, the end of a response, liveness.

Same rig and fixture service as tests/test_frontend_fsm.py (the real C state
machine in miresga-frontend-test, scapy packets in and out): cluster
"static" (be1 index 0, be2 index 1), cluster "api" (be3 index 2, port 8080);
/api -> api, /private -> static without offload, default static.  The
switch's answers (ADDED, REFUSED, an entry's liveness) are handed to the
state machine as the channel thread would (Harness.result).
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from switchhost import layouts
from miresga.control.frontend import LIMIT_DEFAULTS

from fe_harness import (BACKENDS, QUERY_OP, VIP, Client, Harness, backend_pkt,  # noqa: F401
                        config_text, harness_binary, mark, payload)
from packets import checksums_ok

GET = b"GET /index.html HTTP/1.1\r\nHost: www.example\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
ADD, DEL = layouts.CtlOp.ADD, layouts.CtlOp.DEL
DRAIN_QUIET = LIMIT_DEFAULTS["drain_quiet_ms"] / 1000
CONFIRM_TIMEOUT = LIMIT_DEFAULTS["confirm_timeout_ms"] / 1000
RTO = LIMIT_DEFAULTS["answer_rto_ms"] / 1000


def harness(binary, **limits) -> Harness:
    return Harness(config_text(**limits), binary=binary)


def only(frames, n=1):
    assert len(frames) == n, [f.summary() for f in frames]
    for f in frames:
        assert checksums_ok(f), f.summary()
    return frames[0] if n == 1 else frames


def to_backend(f, backend, port=80):
    return f[IP].dst == BACKENDS[backend] and f[TCP].dport == port


def to_client(f, c: Client):
    return f[IP].src == VIP and f[IP].dst == c.ip and f[TCP].dport == c.port


def assert_clean(h: Harness):
    st = h.stats()
    assert st["flows"] == 0, st["flows_by_state"]
    assert st["held_mbufs"] == 0
    assert st["mbufs_in_use"] == 0


def open_flow(h: Harness, c: Client, request: bytes = GET, backend: str = "be1"):
    """Handshake ACK and a one-segment request: returns the SYN to the back-end."""
    assert c.send(h) == []
    syn = only(c.send(h, request, "PA"))
    assert to_backend(syn, backend) and syn[TCP].flags == "S"
    return syn


def join(h: Harness, c: Client, backend: str = "be1", port: int = 80):
    return h.send(backend_pkt(c, backend, c.s, c.c + 1, "SA", port=port))


def respond(h: Harness, c: Client, data: bytes = RESPONSE, backend: str = "be1",
            flags: str = "PA", port: int = 80):
    """The back-end's next response bytes; the client acknowledges them later (c.ack)."""
    seq = getattr(c, "server_next", c.s + 1)
    c.server_next = seq + len(data)
    return h.send(backend_pkt(c, backend, seq, c.seq, flags, data, port=port))


def remove_control(f, c: Client, backend: str = "be1", vip_index: int = 0) -> bool:
    """A REMOVE_CTL control packet: client -> back-end, no TCP flag, no payload."""
    return (mark(f) == "remove_ctl" and f[IP].src == c.ip and f[TCP].sport == c.port and
            to_backend(f, backend) and int(f[TCP].flags) == 0 and not payload(f) and
            f[IP].id == vip_index)


# ------------------------------------------------------------ admission (14.1)

def test_only_a_packet_the_switch_admitted_creates_a_flow(harness_binary):
    """KNOWN (entry or seen filter, no proof) without a flow: one RST at its ack, no
    state; unmarked: dropped silently; ADMIT (the cookie checked out): a flow."""
    with harness(harness_binary) as h:
        c = Client(port=47001)
        rst = only(h.send(c.pkt(mark="known")))
        assert to_client(rst, c) and rst[TCP].flags == "R" and rst[TCP].seq == c.ack
        assert h.send(c.pkt(GET, "PA", mark="none")) == []
        st = h.stats()
        assert st["flows"] == 0 and st["flows_created"] == 0
        assert st["packets"]["known_reset"] == 1 and st["packets"]["unadmitted"] == 1
        open_flow(h, c)
        assert h.stats()["flows"] == 1


def test_kept_alive_connection_after_a_restart_gets_a_clean_rst(harness_binary):
    """A front-end that restarted has no state for an old kept-alive connection: its
    next request arrives KNOWN (its numbers are no cookie's any more) and gets one RST
    with seq = the request's ack, so the client reconnects; no back-end ever sees a SYN
    with options the front-end could not know."""
    with harness(harness_binary) as h:
        c = Client(port=47002)
        c.seq += 200                    # requests went before the restart
        c.ack += 5000
        out = h.send(c.pkt(GET, "PA"))
        rst = only(out)
        assert to_client(rst, c) and rst[TCP].flags == "R" and rst[TCP].seq == c.ack
        assert not [f for f in out if f[TCP].flags == "S"]
        st = h.stats()
        assert st["packets"]["known_reset"] == 1 and st["packets"]["syn_sent"] == 0
        assert st["flows"] == 0


def test_a_reused_port_needs_admit_to_replace_a_flow_in_its_grace_period(harness_binary):
    """A packet after the old stream's end starts a new connection only if the switch
    checked its cookie (ADMIT); a KNOWN one is the old connection's business."""
    with harness(harness_binary) as h:
        old = Client(port=47003, isn=5000)
        open_flow(h, old)
        join(h, old)
        h.send(old.pkt(flags="R"))
        assert h.stats()["flows_by_state"]["time_wait"] == 1
        new = Client(port=47003, isn=5000 + 64_000_000)
        assert h.send(new.pkt(mark="known")) == []
        assert h.stats()["packets"]["reincarnation"] == 0
        assert new.send(h) == []
        assert h.stats()["packets"]["reincarnation"] == 1


def test_require_admit_0_takes_any_ack_as_a_switch_without_marks_would_send(harness_binary):
    with harness(harness_binary, require_admit=0) as h:
        c = Client(port=47004)
        assert h.send(c.pkt(mark="none")) == []
        syn = only(h.send(c.pkt(GET, "PA", mark="none")))
        assert syn[TCP].flags == "S"


# ------------------------------------------------------------ dataplane mode

def test_dataplane_install_rides_on_the_handshake_ack_with_the_request_behind(harness_binary):
    """handoff dataplane: the ACK that completes the back-end's handshake carries
    INSTALL and the VIP index in IP ID; the request follows in the same burst; nothing
    goes over the channel."""
    svc_facts_vip = 3
    from fe_harness import SERVICE, facts
    from miresga.control.frontend import render_config
    import dataclasses
    text = render_config(SERVICE, dataclasses.replace(facts(), vip_index=svc_facts_vip), "",
                         {"handoff": "dataplane", "mbufs": 4095, "flow_capacity": 1024})
    with Harness(text, binary=harness_binary) as h:
        c = Client(port=47101)
        open_flow(h, c)
        ack, req = only(join(h, c), 2)
        assert to_backend(ack, "be1") and ack[TCP].flags == "A" and not payload(ack)
        assert mark(ack) == "install" and ack[IP].id == svc_facts_vip
        assert ack[IP].src == c.ip and ack[TCP].sport == c.port
        assert payload(req) == GET and mark(req) != "install"
        assert h.offload() == []
        st = h.stats()
        assert st["packets"]["install_sent"] == 1 and st["offload"]["handoff"] == "dataplane"


def test_dataplane_entry_goes_with_the_flows_last_fin(harness_binary):
    """Connection: close: the back-end's FIN goes to the client unmarked; the client's
    FIN, the last of the two, carries REMOVE to the back-end."""
    with harness(harness_binary, handoff="dataplane") as h:
        c = Client(port=47102)
        open_flow(h, c)
        join(h, c)
        bfin = only(respond(h, c, RESPONSE, flags="FPA"))
        assert to_client(bfin, c) and mark(bfin) == "none"
        c.ack = c.server_next + 1
        fin = only(c.send(h, flags="FA"))
        assert to_backend(fin, "be1") and fin[TCP].flags == "FA"
        assert mark(fin) == "remove" and fin[IP].id == 0
        st = h.stats()
        assert st["packets"]["remove_marked"] == 1 and st["packets"]["remove_sent"] == 0
        assert h.offload() == []
        h.send(backend_pkt(c, "be1", c.ack, c.seq, "A"))
        h.advance(2.1)
        assert_clean(h)


def test_dataplane_reset_takes_the_entry_away(harness_binary):
    """The back-end's RST goes to the client; the switch takes a REMOVE's key from its
    source, so a control packet goes beside it.  The client's RST carries the mark."""
    with harness(harness_binary, handoff="dataplane") as h:
        c = Client(port=47103)
        open_flow(h, c)
        join(h, c)
        ctl, rst = only(h.send(backend_pkt(c, "be1", c.s + 1, 0, "R")), 2)
        assert remove_control(ctl, c)
        assert to_client(rst, c) and rst[TCP].flags == "R" and mark(rst) == "none"
        h.advance(2.1)
        assert_clean(h)
        c2 = Client(port=47107)
        open_flow(h, c2, backend="be2")
        join(h, c2, "be2")
        rst = only(c2.send(h, flags="R"))
        assert to_backend(rst, "be2") and mark(rst) == "remove"


def test_dataplane_client_fin_first_sends_a_remove_control_packet(harness_binary):
    """The client closes first: the entry must go now (the rest of the response must
    come this way) and no packet of the flow's carries it: a REMOVE control packet."""
    with harness(harness_binary, handoff="dataplane") as h:
        c = Client(port=47104)
        open_flow(h, c)
        join(h, c)
        out = c.send(h, flags="FA")
        ack, ctl = only(out, 2)
        assert to_backend(ack, "be1") and ack[TCP].flags == "A"
        assert remove_control(ctl, c)
        assert h.stats()["packets"]["remove_sent"] == 1


def test_dataplane_request_without_offload_takes_the_entry_away(harness_binary):
    """A kept-alive request whose rule says no offload: REMOVE before it goes on."""
    with harness(harness_binary, handoff="dataplane") as h:
        c = Client(port=47105)
        open_flow(h, c)
        join(h, c)
        respond(h, c)
        c.ack = c.server_next
        req = b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n"
        ctl, fwd = only(c.send(h, req, "PA"), 2)
        assert remove_control(ctl, c) and payload(fwd) == req


def test_dataplane_flow_whose_client_closed_before_the_join_is_not_installed(harness_binary):
    """Request and FIN together: the front-end must see the response end to pass the
    FIN on, so the flow stays on it: no INSTALL."""
    with harness(harness_binary, handoff="dataplane") as h:
        c = Client(port=47106)
        c.send(h)
        syn = only(c.send(h, GET, "FPA"))
        assert syn[TCP].flags == "S"
        ack, req = only(join(h, c), 2)
        assert mark(ack) == "none" and payload(req) == GET and "F" not in req[TCP].flags
        st = h.stats()
        assert st["decisions"]["half_closed"] == 1 and st["packets"]["install_sent"] == 0


# ------------------------------------------------------------ confirmed mode

def test_confirmed_holds_the_request_until_the_switch_adds_the_entry(harness_binary):
    with harness(harness_binary, handoff="confirmed") as h:
        c = Client(port=47201)
        open_flow(h, c)
        ack = only(join(h, c))
        assert to_backend(ack, "be1") and ack[TCP].flags == "A" and not payload(ack)
        assert h.offload() == [{"op": ADD, "ip": c.ip, "port": c.port, "backend": 0, "vip": 0,
                                "want_result": True}]
        assert h.stats()["flows_by_state"]["confirming"] == 1
        assert h.result("added", c, 1) == [], "an answer about another back-end is not ours"
        req = only(h.result("added", c, 0))
        assert to_backend(req, "be1") and payload(req) == GET
        st = h.stats()
        assert st["flows_by_state"]["spliced"] == 1 and st["offload"]["confirmed"] == 1
        assert st["offload"]["late_results"] == 1


def test_confirmed_refusal_releases_and_keeps_the_flow_on_the_frontend(harness_binary):
    """REFUSED: the request goes, nothing is deleted, and the flow is not offered
    again (no ADD when the response passes)."""
    with harness(harness_binary, handoff="confirmed") as h:
        c = Client(port=47202)
        open_flow(h, c)
        join(h, c)
        h.offload()
        req = only(h.result("refused", c, 0))
        assert payload(req) == GET
        only(respond(h, c, b"x" * 1000))
        assert h.offload() == []
        assert h.stats()["offload"]["confirm_refused"] == 1


def test_confirmed_without_an_answer_releases_after_the_timeout_and_deletes(harness_binary):
    """No answer within confirm_timeout: release, DEL (a late ADD must not stay), and
    a late ADDED changes nothing."""
    with harness(harness_binary, handoff="confirmed") as h:
        c = Client(port=47203)
        open_flow(h, c)
        join(h, c)
        h.offload()
        assert h.advance(CONFIRM_TIMEOUT * 0.9) == []
        req = only(h.advance(CONFIRM_TIMEOUT * 0.2))
        assert payload(req) == GET
        assert [e["op"] for e in h.offload()] == [DEL]
        assert h.result("added", c, 0) == []
        st = h.stats()
        assert st["offload"]["confirm_timeout"] == 1 and st["offload"]["late_results"] == 1
        only(respond(h, c, b"x" * 1000))
        assert h.offload() == [], "stays on the front-end"


# ------------------------------------------------- requests of any shape (13.2)

def tiny_request(h: Harness, c: Client, request: bytes, size: int):
    """Send `request` in segments of `size` bytes; returns the front-end's ACKs."""
    acks = []
    for i in range(0, len(request), size):
        out = c.send(h, request[i:i + size], "A" if i + size < len(request) else "PA")
        acks += [f for f in out if to_client(f, c)]
    return acks


def test_thirteen_segments_of_seven_bytes_are_acknowledged_and_reach_the_backend(harness_binary):
    """More segments than an initial window of 10: the front-end acknowledges every
    second one, so the client can go on; the back-end gets every byte."""
    req = b"GET /a HTTP/1.1\r\nHost: www.example\r\nX-Pad: " + b"p" * 44 + b"\r\n\r\n"
    assert len(req) == 91
    with harness(harness_binary, handoff="dataplane") as h:
        c = Client(port=47301)
        c.send(h)
        acks = tiny_request(h, c, req, 7)
        assert len(acks) == 6 and [a[TCP].ack for a in acks] == \
            [c.c + 1 + 14 * i for i in range(1, 7)]
        out = join(h, c)
        assert mark(out[0]) == "none", "pinned: no INSTALL"
        assert b"".join(payload(f) for f in out) == req


def test_one_byte_segments_are_acknowledged(harness_binary):
    with harness(harness_binary) as h:
        c = Client(port=47302)
        c.send(h)
        acks = tiny_request(h, c, GET, 1)
        assert len(acks) == (len(GET) - 1) // 2
        assert all(a[TCP].seq == c.s + 1 for a in acks)
        assert b"".join(payload(f) for f in join(h, c)) == GET


def test_own_ack_window_is_what_the_hold_limit_leaves_unscaled_without_wscale(harness_binary):
    with harness(harness_binary, hold_limit_bytes=4096) as h:
        c = Client(port=47303, wscale=None)
        c.send(h)
        acks = tiny_request(h, c, GET, 10)
        assert [a[TCP].window for a in acks] == [4096 - 20, 4096 - 40]


def test_bytes_we_acknowledged_are_retransmitted_until_the_backend_has_them(harness_binary):
    """The back-end does not acknowledge the released request: the front-end sends
    again the bytes it acknowledged itself (the client will resend the rest) after
    answer_rto, then after twice that; once the back-end ACKs them, the copies go."""
    with harness(harness_binary) as h:
        c = Client(port=47304)
        c.send(h)
        acks = tiny_request(h, c, GET, 10)
        own = acks[-1][TCP].ack - (c.c + 1)
        assert own == 40
        first = [f for f in join(h, c) if payload(f)]
        assert b"".join(payload(f) for f in first) == GET
        kept = [f for f in first if f[TCP].seq - (c.c + 1) < own]
        assert len(kept) == 4
        again = h.advance(RTO + 0.001)
        assert [bytes(f[TCP].payload) for f in again] == [payload(f) for f in kept]
        assert [f[TCP].seq for f in again] == [f[TCP].seq for f in kept]
        assert all(to_backend(f, "be1") and f[TCP].ack == c.ack for f in again)
        assert h.advance(RTO + 0.001) == [], "backed off: twice the RTO"
        assert len(h.advance(RTO)) == len(kept)
        assert h.stats()["packets"]["rtx"] == 2 * len(kept)
        h.send(backend_pkt(c, "be1", c.s + 1, c.c + 1 + 20, "A"))
        assert h.stats()["held_mbufs"] == len(kept) - 2
        h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "A"))
        assert h.stats()["held_mbufs"] == 0
        assert h.advance(10) == [], "nothing more to resend"


def test_retransmission_gives_up_and_resets_both_ends(harness_binary):
    with harness(harness_binary, answer_retries=2) as h:
        c = Client(port=47305)
        c.send(h)
        tiny_request(h, c, GET, 10)
        join(h, c)
        h.advance(RTO + 0.001)
        h.advance(2 * RTO + 0.001)
        out = h.advance(4 * RTO + 0.001)
        assert sorted(f[TCP].flags for f in out) == ["R", "R"]
        assert h.stats()["errors"]["rtx_timeout"] == 1
        assert_clean(h)


def test_a_segment_sent_again_is_acknowledged_again(harness_binary):
    """Our ACK was lost: the client resends; the front-end acknowledges at once."""
    with harness(harness_binary) as h:
        c = Client(port=47306)
        c.send(h)
        assert c.send(h, GET[:10], "A") == []
        ack = only(c.send(h, GET[10:20], "A"))
        again = only(h.send(c.pkt(GET[10:20], "A", seq=c.seq - 10)))
        assert again[TCP].ack == ack[TCP].ack == c.seq
        assert h.stats()["packets"]["duplicate"] == 1


@pytest.mark.parametrize("mode", ["async", "dataplane"])
def test_offloaded_keepalive_flow_loses_its_entry_when_a_header_needs_our_acks(mode, harness_binary):
    """The switch carries a kept-alive flow; the next header comes in pieces that need
    the front-end's ACKs: the entry goes first (direct -> front-end is safe), and the
    connection stays on the front-end from then on."""
    with harness(harness_binary, handoff=mode) as h:
        c = Client(port=47307)
        open_flow(h, c)
        join(h, c)
        h.offload()
        c.ack += 100                    # the response went by the switch
        assert c.send(h, b"GET /b HTTP/1.1\r\n", "A") == []
        out = c.send(h, b"Host: x\r\n", "A")
        acks = [f for f in out if to_client(f, c)]
        assert len(acks) == 1 and acks[0][TCP].ack == c.seq and acks[0][TCP].seq == c.ack
        if mode == "dataplane":
            assert len([f for f in out if remove_control(f, c)]) == 1
            assert h.offload() == []
        else:
            assert [e["op"] for e in h.offload()] == [DEL]
        fwd = c.send(h, b"\r\n", "PA")
        assert all(to_backend(f, "be1") for f in fwd)
        assert b"".join(payload(f) for f in fwd) == b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        st = h.stats()
        assert st["decisions"]["pinned"] == 1 and st["held_mbufs"] == 2, "copies of 2 segments"


# ------------------------------------------------- pipelining across clusters

def test_old_backend_that_never_ends_its_response_times_out_into_a_503(harness_binary):
    """DRAIN bounded by request_timeout without progress: the old back-end is reset,
    and the client, which has every byte of the old response, gets a 503 there."""
    with harness(harness_binary) as h:
        c = Client(port=47401)
        open_flow(h, c)
        join(h, c)
        only(respond(h, c))
        req_seq = c.seq
        c.ack = c.server_next
        assert c.send(h, b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n", "PA") == []
        fin = only(h.advance(DRAIN_QUIET))
        assert fin[TCP].flags == "FA"
        out = []
        for _ in range(round(5.0 / DRAIN_QUIET)):   # 5 s of quiet: request_timeout
            out += h.advance(DRAIN_QUIET)
        rst = [f for f in out if to_backend(f, "be1")]
        assert len(rst) == 1 and rst[0][TCP].flags == "R" and rst[0][TCP].seq == req_seq + 1
        ans = [f for f in out if to_client(f, c)]
        assert payload(ans[0]).startswith(b"HTTP/1.1 503") and ans[0][TCP].seq == c.ack
        assert h.stats()["errors"]["drain_timeout"] == 1


def test_drain_waits_for_the_client_to_acknowledge_the_old_stream(harness_binary):
    """The old back-end's FIN came, but the client has not acknowledged F_end yet:
    nothing moves until it does."""
    with harness(harness_binary) as h:
        c = Client(port=47402)
        open_flow(h, c)
        join(h, c)
        respond(h, c)
        c.ack = c.server_next
        assert c.send(h, b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n", "PA") == []
        only(h.advance(DRAIN_QUIET))
        # A last byte and its FIN arrive after ours (the response was not quite over).
        tail = only(respond(h, c, b"!", flags="FPA"))
        assert to_client(tail, c) and payload(tail) == b"!" and tail[TCP].flags == "PA"
        st = h.stats()
        assert st["flows_by_state"]["drain"] == 1 and st["packets"]["fin_swallowed"] == 1
        # The client acknowledges F_end: its ACK goes to the old back-end, then ours of
        # the old back-end's FIN, then the new back-end's SYN after F_end.
        ack, fin_ack, syn = only(c.send(h, flags="A", ack=c.server_next), 3)
        assert to_backend(ack, "be1") and ack[TCP].ack == c.server_next
        assert to_backend(fin_ack, "be1") and fin_ack[TCP].ack == c.server_next + 1
        assert to_backend(syn, "be3", 8080) and syn[TCP].ack == c.server_next - 1


def test_old_backend_reset_in_drain_moves_on_without_an_ack(harness_binary):
    with harness(harness_binary) as h:
        c = Client(port=47403)
        open_flow(h, c)
        join(h, c)
        respond(h, c)
        c.ack = c.server_next
        req_seq = c.seq
        assert c.send(h, b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n", "PA") == []
        syn = only(h.send(backend_pkt(c, "be1", c.server_next, req_seq, "R")))
        assert to_backend(syn, "be3", 8080) and syn[TCP].flags == "S"
        assert syn[TCP].seq == req_seq - 1 and syn[TCP].ack == c.ack - 1


# ------------------------------------------------------------ half-close

def test_client_fin_waits_until_the_response_is_over(harness_binary):
    """Request, then FIN at once (shutdown(SHUT_WR)): the flow stays on the front-end
    (half_closed), the response goes through it, the FIN waits while the back-end sends
    and while bytes are unacknowledged; the client's resent FIN is absorbed; the FIN goes
    once everything is acknowledged and the back-end was quiet for drain_quiet."""
    with harness(harness_binary, handoff="dataplane") as h:
        c = Client(port=47501)
        c.send(h)
        only(c.send(h, GET, "PA"))
        assert c.send(h, flags="FA") == []      # before the join: nothing to pass on
        ack, req = only(join(h, c), 2)
        assert mark(ack) == "none" and payload(req) == GET
        assert h.stats()["flows_by_state"]["closing"] == 1
        for _ in range(3):
            only(respond(h, c, b"x" * 1000))
            assert h.advance(DRAIN_QUIET) == [], "bytes unacknowledged"
        resent = only(h.send(c.pkt(flags="FA", seq=c.seq - 1, ack=c.server_next)))
        assert resent[TCP].flags == "A" and resent[TCP].seq == c.seq - 1, \
            "the resent FIN goes on as an ACK at the FIN's place (it acknowledges more)"
        assert h.send(c.pkt(flags="FA", seq=c.seq - 1, ack=c.server_next)) == [], \
            "sent again with nothing new: absorbed, no duplicate ACK for the back-end"
        c.ack = c.server_next
        assert h.advance(DRAIN_QUIET * 0.5) == [], "not quiet long enough"
        fin = only(h.advance(DRAIN_QUIET))
        assert to_backend(fin, "be1") and fin[TCP].flags == "FA" and fin[TCP].seq == c.seq - 1
        st = h.stats()
        assert st["packets"]["fin_deferred"] == 1 and st["packets"]["fin_released"] == 1
        assert st["packets"]["fin_absorbed"] == 2


def test_client_acks_after_a_deferred_fin_reach_the_backend_at_the_fins_place(harness_binary):
    with harness(harness_binary) as h:
        c = Client(port=47502)
        open_flow(h, c)
        join(h, c)
        only(c.send(h, flags="FA"))
        only(respond(h, c, b"y" * 500))
        ack = only(c.send(h, flags="A", ack=c.server_next))
        assert to_backend(ack, "be1") and ack[TCP].seq == c.seq - 1 and "F" not in ack[TCP].flags


def test_backend_fin_releases_the_deferred_client_fin_at_once(harness_binary):
    with harness(harness_binary) as h:
        c = Client(port=47503)
        open_flow(h, c)
        join(h, c)
        only(c.send(h, flags="FA"))
        bfin, fin = only(respond(h, c, RESPONSE, flags="FPA"), 2)
        assert to_client(bfin, c) and "F" in bfin[TCP].flags
        assert to_backend(fin, "be1") and fin[TCP].flags == "FA"
        assert h.stats()["flows_by_state"]["time_wait"] == 1


def test_small_response_and_half_close_closes_within_the_quiet_period(harness_binary):
    with harness(harness_binary) as h:
        c = Client(port=47504)
        open_flow(h, c)
        join(h, c)
        only(respond(h, c))
        c.ack = c.server_next
        only(c.send(h, flags="FA"))
        fin = only(h.advance(DRAIN_QUIET))
        assert fin[TCP].flags == "FA"


# ------------------------------------------------------------ liveness (13.3)

@pytest.mark.parametrize("mode", ["async", "dataplane"])
def test_idle_timer_of_a_flow_with_an_entry_asks_the_switch(mode, harness_binary):
    """The front-end saw nothing for idle_timeout, but the switch carries the flow:
    a query, and as long as the answer says busy, no close."""
    with harness(harness_binary, handoff=mode, idle_timeout_ms=3000) as h:
        c = Client(port=47601)
        open_flow(h, c)
        join(h, c)
        h.offload()
        for _ in range(3):
            assert h.advance(3.1) == []
            assert h.offload() == [{"op": QUERY_OP, "ip": c.ip, "port": c.port, "vip": 0}]
            assert h.result("liveness", c, 1, 40) == []
        st = h.stats()
        assert st["offload"]["entry_busy"] == 3 and st["flows_by_state"]["spliced"] == 1


@pytest.mark.parametrize("present,idle_ms,counter", [(1, 3500, "entry_idle"),
                                                     (0, 0, "entry_gone")])
def test_idle_or_absent_entry_closes_the_flow_with_a_fin(present, idle_ms, counter, harness_binary):
    with harness(harness_binary, handoff="dataplane", idle_timeout_ms=3000) as h:
        c = Client(port=47602)
        open_flow(h, c)
        join(h, c)
        h.advance(3.1)
        h.offload()
        fin = only(h.result("liveness", c, present, idle_ms))
        assert to_backend(fin, "be1") and fin[TCP].flags == "FA" and fin[TCP].seq == c.seq
        assert mark(fin) == "remove", "the entry goes with our FIN"
        assert h.stats()["offload"][counter] == 1


def test_query_without_answer_closes_at_the_next_expiry(harness_binary):
    """A query nobody answers (the switch unreachable, the query or its answer lost
    on the way): the front-end falls back on its own view one idle timeout later."""
    with harness(harness_binary, idle_timeout_ms=3000) as h:
        c = Client(port=47603)
        open_flow(h, c)
        join(h, c)
        assert h.advance(3.1) == []
        fin = only(h.advance(3.1))
        assert fin[TCP].flags == "FA"
        assert h.stats()["offload"]["query_unanswered"] == 1
        # The harness lists the entries, then the queries (their own ring).
        assert [e["op"] for e in h.offload()] == [ADD, DEL, QUERY_OP]


def test_traffic_through_the_frontend_cancels_a_pending_query(harness_binary):
    with harness(harness_binary, idle_timeout_ms=3000) as h:
        c = Client(port=47604)
        open_flow(h, c)
        join(h, c)
        h.advance(3.1)
        only(c.send(h, flags="A"))
        assert h.result("liveness", c, 0, 0) == [], "late: the flow is busy again"
        assert h.stats()["offload"]["late_results"] == 1


def test_data_after_our_idle_fin_resets_both_ends(harness_binary):
    with harness(harness_binary, idle_timeout_ms=3000) as h:
        c = Client(port=47605)
        open_flow(h, c, b"GET /private/x HTTP/1.1\r\nHost: a\r\n\r\n")
        join(h, c)
        only(h.advance(3.1))
        out = c.send(h, GET, "PA")
        assert sorted(f[TCP].flags for f in out) == ["R", "R"]
        assert h.stats()["errors"]["idle_close_race"] == 1
        assert_clean(h)
