"""The back-end agent's eBPF programs, packet by packet, through BPF_PROG_TEST_RUN.

Names: c = client ISN, s = switch cookie ISN (in the fused SYN's ack field),
b = back-end ISN, d = b - s.  Egress seq -= d; ingress ack and SACK edges += d.
Each test loads a fresh copy of the object (no tc attach, nothing pinned), so
its map starts empty; see tests/agentlib.py for the step tables.
"""

from __future__ import annotations

import ctypes
import time

import pytest
from scapy.layers.inet import ICMP, IP, IPOption_Router_Alert, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from agentlib import (BACKEND_IP, CLIENT_IP, CLIENT_PORT, IN, M32, OUT, PASS, Step,
                      checksum_errors, delta_of, from_backend, marked, play, run, sack_option,
                      syn_options, synack_options, to_backend)
from miresga.control.agent import (RST, AgentConfig, AgentConfigRaw, AgentConn, AgentKey,
                                  ConnState, LoadedAgent)

pytestmark = pytest.mark.root  # the agent runs through BPF_PROG_TEST_RUN

C = 0x12345678                 # client ISN
S = 0xFFFFF8C9                 # switch ISN, close to 2^32 so data wraps around
B = 0x7A000000                 # back-end ISN
D = (B - S) & M32
REQ = b"GET /10MB.bin HTTP/1.1\r\nHost: vip\r\nUser-Agent: agent-test\r\n\r\n"
MSS = 1448


@pytest.fixture
def agent():
    with LoadedAgent(AgentConfig(ports=(80, 8080), wscale=7, max_conns=1024)) as a:
        yield a


def make_agent(**kw) -> LoadedAgent:
    base = dict(ports=(80,), wscale=7, max_conns=1024)
    base.update(kw)
    return LoadedAgent(AgentConfig(**base))


def establish(agent, c=C, s=S, b=B, client_ws=7, backend_ws=7, cport=CLIENT_PORT) -> None:
    """Fused SYN in, SYN-ACK out: leaves one established entry."""
    r = run(agent, IN, bytes(to_backend("S", c, s, syn_options(client_ws), sport=cport)))
    assert Ether(r.data)[TCP].ack == 0
    r = run(agent, OUT, bytes(from_backend("SA", b, c + 1, synack_options(backend_ws),
                                           window=64240, dport=cport)))
    assert Ether(r.data)[TCP].seq == s


def entry(agent, cport=CLIENT_PORT, lport=80):
    conns = {(c.client_ip, c.client_port, c.local_port): c for c in agent.connections()}
    return conns.get((CLIENT_IP, cport, lport))


# ------------------------------------------------------------ the handshake

def test_handshake_and_data_exchange(agent):
    """Fused SYN, SYN-ACK, request, a response that wraps past 2^32, a SACK, both FINs:
    every seq/ack/SACK value the client and the back-end see, with valid checksums."""
    n = len(REQ)
    before = agent.counters()
    play(agent, [
        Step("fused SYN: s stored, ack field zeroed", IN,
             to_backend("S", C, S, syn_options(7)),
             to_backend("S", C, 0, syn_options(7))),
        Step("SYN-ACK: d = b - s, leaves with seq s", OUT,
             from_backend("SA", B, C + 1, synack_options(7), window=64240),
             marked(from_backend("SA", S, C + 1, synack_options(7), window=64240))),
        Step("front-end's ACK: ack s+1 -> b+1", IN,
             to_backend("A", C + 1, S + 1),
             to_backend("A", C + 1, B + 1)),
        Step("request: client seq untouched, ack -> b+1", IN,
             to_backend("PA", C + 1, S + 1, payload=REQ),
             to_backend("PA", C + 1, B + 1, payload=REQ)),
        Step("response segment 1: seq b+1 -> s+1", OUT,
             from_backend("A", B + 1, C + 1 + n, payload=b"x" * MSS),
             marked(from_backend("A", S + 1, C + 1 + n, payload=b"x" * MSS))),
        Step("response segment 2", OUT,
             from_backend("A", B + 1 + MSS, C + 1 + n, payload=b"y" * MSS),
             marked(from_backend("A", S + 1 + MSS, C + 1 + n, payload=b"y" * MSS))),
        Step("response segment 3: client's seq space wraps past 2^32", OUT,
             from_backend("PA", B + 1 + 2 * MSS, C + 1 + n, payload=b"z" * MSS),
             marked(from_backend("PA", S + 1 + 2 * MSS, C + 1 + n, payload=b"z" * MSS))),
        Step("client lost segment 2: dup ACK with SACK of segment 3, both += d", IN,
             to_backend("A", C + 1 + n, S + 1 + MSS,
                        [("NOP", None), ("NOP", None), sack_option(S + 1 + 2 * MSS,
                                                                   S + 1 + 3 * MSS)]),
             to_backend("A", C + 1 + n, B + 1 + MSS,
                        [("NOP", None), ("NOP", None), sack_option(B + 1 + 2 * MSS,
                                                                   B + 1 + 3 * MSS)])),
        Step("retransmission of segment 2", OUT,
             from_backend("A", B + 1 + MSS, C + 1 + n, payload=b"y" * MSS),
             marked(from_backend("A", S + 1 + MSS, C + 1 + n, payload=b"y" * MSS))),
        Step("back-end FIN", OUT,
             from_backend("FA", B + 1 + 3 * MSS, C + 1 + n),
             marked(from_backend("FA", S + 1 + 3 * MSS, C + 1 + n))),
        Step("client FIN acks the back-end's FIN", IN,
             to_backend("FA", C + 1 + n, S + 2 + 3 * MSS),
             to_backend("FA", C + 1 + n, B + 2 + 3 * MSS)),
        Step("back-end's last ACK, inside the grace period", OUT,
             from_backend("A", B + 2 + 3 * MSS, C + 2 + n),
             marked(from_backend("A", S + 2 + 3 * MSS, C + 2 + n))),
    ])
    moved = delta_of(before, agent.counters())
    assert moved == {"in_pkts": 5, "out_pkts": 7, "conn_new": 1, "synack": 1,
                     "rewrite_in": 4, "rewrite_out": 6, "sack_rewrite": 1, "sack_blocks": 1,
                     "close_fin": 1, "marked": 7}
    e = entry(agent)
    assert (e.switch_isn, e.client_isn, e.backend_isn, e.delta) == (S, C, B, D)
    assert e.state == "closing" and e.closing_for_s is not None
    assert (e.client_wscale, e.backend_wscale, e.egress_shift, e.ingress_shift) == (7, 7, 0, 0)


def test_syn_retransmission_keeps_the_entry(agent):
    """The same fused SYN twice (the front-end retransmits): one entry, ack zeroed both times."""
    syn = to_backend("S", C, S, syn_options(7))
    play(agent, [Step("fused SYN", IN, syn, to_backend("S", C, 0, syn_options(7))),
                 Step("the same SYN again", IN, syn, to_backend("S", C, 0, syn_options(7)))])
    c = agent.counters()
    assert (c["conn_new"], c["syn_retrans"], c["conn_reuse"]) == (1, 1, 0)
    assert len(agent.connections()) == 1


def test_time_wait_reset_then_the_same_syn_keeps_the_entry_alive(agent):
    """The back-end's TIME_WAIT answers the fused SYN with a bare ACK; the front-end
    resets it and sends the same SYN again: the RST (before any SYN-ACK) passes
    untouched, and the resent SYN revives the entry, which then lives on as a
    normal connection instead of being closed after the grace period."""
    syn = to_backend("S", C, S, syn_options(7))
    play(agent, [
        Step("fused SYN", IN, syn, to_backend("S", C, 0, syn_options(7))),
        Step("the TIME_WAIT's bare ACK: marked (the front-end must see it), not translated",
             OUT, from_backend("A", 5000, 987654), marked(from_backend("A", 5000, 987654))),
        Step("the front-end's RST (seq = that ack): untouched", IN,
             to_backend("R", 987654, 0, window=0)),
        Step("the same SYN again", IN, syn, to_backend("S", C, 0, syn_options(7))),
        Step("SYN-ACK: seq s", OUT,
             from_backend("SA", B, C + 1, synack_options(7), window=64240),
             marked(from_backend("SA", S, C + 1, synack_options(7), window=64240))),
    ])
    e = entry(agent)
    assert e.state == "established" and e.closing_for_s is None and not e.flags & 0x4
    c = agent.counters()
    assert (c["close_rst"], c["syn_retrans"], c["conn_new"]) == (1, 1, 1)


def test_synack_retransmission_gives_the_same_offset(agent):
    """A retransmitted SYN-ACK (same b) is translated to s again; d does not move."""
    establish(agent)
    play(agent, [Step("SYN-ACK again", OUT,
                      from_backend("SA", B, C + 1, synack_options(7), window=64240),
                      marked(from_backend("SA", S, C + 1, synack_options(7), window=64240))),
                 Step("data after it", OUT,
                      from_backend("A", B + 1, C + 1, payload=b"a" * 10),
                      marked(from_backend("A", S + 1, C + 1, payload=b"a" * 10)))])
    assert entry(agent).delta == D


def test_rst_from_frontend_is_translated(agent):
    """An RST with ACK carries a back-end sequence number in its ack field: translated;
    the entry enters its grace period."""
    establish(agent)
    play(agent, [Step("RST,ACK from the front-end", IN,
                      to_backend("RA", C + 1, S + 1, window=0),
                      to_backend("RA", C + 1, B + 1, window=0))])
    assert agent.counters()["close_rst"] == 1
    assert entry(agent).state == "closing"


def test_rst_from_backend_is_translated(agent):
    """A back-end RST must carry a seq the client accepts: seq -= d."""
    establish(agent)
    play(agent, [Step("RST from the back-end", OUT,
                      from_backend("RA", B + 1, C + 1, window=0),
                      marked(from_backend("RA", S + 1, C + 1, window=0)))])
    assert agent.counters()["close_rst"] == 1


# -------------------------------------------------------------------- SACK

def test_sack_blocks_at_odd_offset(agent):
    """A SACK option after a single NOP puts its edges at odd offsets, straddling
    checksum words: the values and the checksum must still be right."""
    establish(agent)
    blocks_in = [S + 100, S + 200, S + 300, S + 400, S + 500, S + 600]
    blocks_out = [(x - S + B) & M32 for x in blocks_in]
    play(agent, [Step("NOP, SACK x3 (edges at odd offsets)", IN,
                      to_backend("A", C + 1, S + 1, [("NOP", None), sack_option(*blocks_in)]),
                      to_backend("A", C + 1, B + 1, [("NOP", None), sack_option(*blocks_out)]))])
    assert agent.counters()["sack_blocks"] == 3


def test_sack_four_blocks_and_with_timestamps(agent):
    """Four blocks (the most that fit) are all translated; so are three behind a
    timestamp option, which is left alone."""
    establish(agent)
    four = [S + 10 * i for i in range(1, 9)]
    three = [S + 1000 + 10 * i for i in range(1, 7)]
    ts = ("Timestamp", (123456, 654321))
    play(agent, [
        Step("SACK x4", IN,
             to_backend("A", C + 1, S + 1, [("NOP", None), ("NOP", None), sack_option(*four)]),
             to_backend("A", C + 1, B + 1, [("NOP", None), ("NOP", None),
                                            sack_option(*[x + D for x in four])])),
        Step("timestamps then SACK x3", IN,
             to_backend("A", C + 1, S + 1, [("NOP", None), ("NOP", None), ts, ("NOP", None),
                                            ("NOP", None), sack_option(*three)]),
             to_backend("A", C + 1, B + 1, [("NOP", None), ("NOP", None), ts, ("NOP", None),
                                            ("NOP", None), sack_option(*[x + D for x in three])])),
    ])
    c = agent.counters()
    assert (c["sack_rewrite"], c["sack_blocks"]) == (2, 7)


# ------------------------------------------------------------- timestamps

T0 = 0x7FFFFFF0                # the switch's SYN-ACK TSval (the client's view of the server clock)
TB = 0x00100000                # the back-end's TSval in its SYN-ACK
TC = 0x01234567                # the client's TSval
TD = (TB - T0) & M32


def ts_syn(tsval=TC, tsecr=T0, ws=7):
    return [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (tsval, tsecr)), ("NOP", None),
            ("WScale", ws)]


def ts_opts(tsval, tsecr):
    return [("NOP", None), ("NOP", None), ("Timestamp", (tsval & M32, tsecr & M32))]


def test_timestamps_are_shifted_onto_the_switch_clock(agent):
    """Fused SYN with timestamps: its TSecr (the switch's SYN-ACK TSval T0, as the
    client echoed it) is the base and is zeroed; the back-end's SYN-ACK TSval TB
    leaves as T0; later egress TSvals -= TB - T0, ingress TSecrs += TB - T0, wrapping
    past 2^32; a resent SYN-ACK does not move the offset; TSecr of egress and TSval
    of ingress (the client's clock) are untouched."""
    synack_ts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (TB, TC)), ("NOP", None),
                 ("WScale", 7)]
    play(agent, [
        Step("fused SYN: s and TSecr zeroed", IN,
             to_backend("S", C, S, ts_syn()), to_backend("S", C, 0, ts_syn(tsecr=0))),
        Step("SYN-ACK: seq s, TSval T0", OUT,
             from_backend("SA", B, C + 1, synack_ts, window=64240),
             marked(from_backend("SA", S, C + 1, [("MSS", 1460), ("SAckOK", b""),
                                          ("Timestamp", (T0, TC)), ("NOP", None),
                                          ("WScale", 7)], window=64240))),
        Step("client ACK: TSecr T0+5 -> TB+5", IN,
             to_backend("A", C + 1, S + 1, ts_opts(TC + 1, T0 + 5)),
             to_backend("A", C + 1, B + 1, ts_opts(TC + 1, TB + 5))),
        Step("response: TSval TB+40 -> T0+40 (wraps past 2^32)", OUT,
             from_backend("PA", B + 1, C + 1, ts_opts(TB + 40, TC + 1), payload=b"r" * 100),
             marked(from_backend("PA", S + 1, C + 1, ts_opts(T0 + 40, TC + 1), payload=b"r" * 100))),
        Step("the same SYN-ACK resent later (TSval TB+60): offset unchanged", OUT,
             from_backend("SA", B, C + 1, [("MSS", 1460), ("SAckOK", b""),
                                          ("Timestamp", (TB + 60, TC)), ("NOP", None),
                                          ("WScale", 7)], window=64240),
             marked(from_backend("SA", S, C + 1, [("MSS", 1460), ("SAckOK", b""),
                                          ("Timestamp", (T0 + 60, TC)), ("NOP", None),
                                          ("WScale", 7)], window=64240))),
        Step("client ACK with SACK behind timestamps: TSecr and SACK both translated", IN,
             to_backend("A", C + 1, S + 1, ts_opts(TC + 2, T0 + 40)
                        + [("NOP", None), ("NOP", None), sack_option(S + 51, S + 101)]),
             to_backend("A", C + 1, B + 1, ts_opts(TC + 2, TB + 40)
                        + [("NOP", None), ("NOP", None), sack_option(B + 51, B + 101)])),
    ])
    e = entry(agent)
    assert e.flags & 0x8 and (e.ts_base, e.ts_delta) == (T0, TD)
    assert agent.counters()["ts_rewrite"] == 5


def test_backend_that_declines_timestamps_gets_none_translated(agent):
    """A fused SYN with timestamps answered by a SYN-ACK without them: the entry
    stops translating timestamps; a timestamp option later is left alone."""
    play(agent, [
        Step("fused SYN", IN, to_backend("S", C, S, ts_syn()),
             to_backend("S", C, 0, ts_syn(tsecr=0))),
        Step("SYN-ACK without timestamps", OUT,
             from_backend("SA", B, C + 1, synack_options(7), window=64240),
             marked(from_backend("SA", S, C + 1, synack_options(7), window=64240))),
        Step("a client ACK that still carries timestamps: only the ack moves", IN,
             to_backend("A", C + 1, S + 1, ts_opts(TC + 1, T0)),
             to_backend("A", C + 1, B + 1, ts_opts(TC + 1, T0))),
    ])
    assert not entry(agent).flags & 0x8
    assert agent.counters()["ts_rewrite"] == 0


def test_egress_sack_is_not_translated(agent):
    """SACK blocks the back-end sends name client bytes (client seq space): untouched,
    while the segment's own seq is translated."""
    establish(agent)
    opts = [("NOP", None), ("NOP", None), sack_option(C + 1000, C + 2000)]
    play(agent, [Step("back-end SACKs client data", OUT,
                      from_backend("A", B + 1, C + 1, opts),
                      marked(from_backend("A", S + 1, C + 1, opts)))])


# ------------------------------------------------------------ window scale

def test_window_scale_equal_is_left_alone(agent):
    """Back-end scale == W: no option rewrite, window fields untouched."""
    establish(agent, backend_ws=7)
    play(agent, [Step("data with window 1234", OUT,
                      from_backend("A", B + 1, C + 1, window=1234),
                      marked(from_backend("A", S + 1, C + 1, window=1234)))])
    c = agent.counters()
    assert (c["window_fix"], c["wscale_opt_fix"]) == (0, 0)


def test_window_scale_backend_larger(agent):
    """Wb=9 > W=7: SYN-ACK option says 7, windows << 2, and clip at 65535 (never over-advertise)."""
    play(agent, [
        Step("fused SYN, client WS 8", IN, to_backend("S", C, S, syn_options(8)),
             to_backend("S", C, 0, syn_options(8))),
        Step("SYN-ACK WS 9 -> 7 (SYN-ACK window itself is unscaled: untouched)", OUT,
             from_backend("SA", B, C + 1, synack_options(9), window=65535),
             marked(from_backend("SA", S, C + 1, synack_options(7), window=65535))),
        Step("window 100 << 9 = 51200 bytes = 400 << 7", OUT,
             from_backend("A", B + 1, C + 1, window=100),
             marked(from_backend("A", S + 1, C + 1, window=400))),
        Step("window 0x4000 << 2 overflows: clipped to 65535", OUT,
             from_backend("A", B + 1, C + 1, window=0x4000),
             marked(from_backend("A", S + 1, C + 1, window=0xFFFF))),
        Step("zero window stays zero", OUT,
             from_backend("A", B + 1, C + 1, window=0),
             marked(from_backend("A", S + 1, C + 1, window=0))),
        Step("client windows are read with the client's own scale: untouched", IN,
             to_backend("A", C + 1, S + 1, window=300),
             to_backend("A", C + 1, B + 1, window=300)),
    ])
    c = agent.counters()
    assert (c["wscale_opt_fix"], c["window_fix"], c["window_capped"]) == (1, 2, 1)
    e = entry(agent)
    assert (e.client_wscale, e.backend_wscale, e.egress_shift) == (8, 9, 2)


def test_window_scale_backend_smaller():
    """Wb=4 < W=7: windows >> 3, rounding down (advertise at most what the back-end has)."""
    with make_agent(wscale=7) as agent:
        play(agent, [
            Step("fused SYN", IN, to_backend("S", C, S, syn_options(7)),
                 to_backend("S", C, 0, syn_options(7))),
            Step("SYN-ACK WS 4 -> 7", OUT,
                 from_backend("SA", B, C + 1, synack_options(4), window=65535),
                 marked(from_backend("SA", S, C + 1, synack_options(7), window=65535))),
            Step("1000 << 4 = 16000 bytes = 125 << 7", OUT,
                 from_backend("A", B + 1, C + 1, window=1000),
                 marked(from_backend("A", S + 1, C + 1, window=125))),
            Step("1001 << 4 = 16016 bytes: rounds down to 125 << 7", OUT,
                 from_backend("A", B + 1, C + 1, window=1001),
                 marked(from_backend("A", S + 1, C + 1, window=125))),
        ])
        assert entry(agent).egress_shift == -3


def test_window_scale_backend_declines_scaling():
    """Client offered scaling, back-end answered without: the client still scales by W
    and by its own Wc, the back-end by nothing; rescale both directions."""
    with make_agent(wscale=7) as agent:
        play(agent, [
            Step("fused SYN, client WS 6", IN, to_backend("S", C, S, syn_options(6)),
                 to_backend("S", C, 0, syn_options(6))),
            Step("SYN-ACK without WS: nothing to rewrite in it", OUT,
                 from_backend("SA", B, C + 1, synack_options(None), window=29200),
                 marked(from_backend("SA", S, C + 1, synack_options(None), window=29200))),
            Step("egress window 60000 bytes = 468 << 7 (rounded down)", OUT,
                 from_backend("A", B + 1, C + 1, window=60000),
                 marked(from_backend("A", S + 1, C + 1, window=468))),
            Step("ingress window 100 << 6 = 6400 bytes, unscaled for the back-end", IN,
                 to_backend("A", C + 1, S + 1, window=100),
                 to_backend("A", C + 1, B + 1, window=6400)),
            Step("ingress window 2000 << 6 overflows: clipped", IN,
                 to_backend("A", C + 1, S + 1, window=2000),
                 to_backend("A", C + 1, B + 1, window=0xFFFF)),
        ])
        e = entry(agent)
        assert (e.client_wscale, e.backend_wscale, e.egress_shift, e.ingress_shift) == \
            (6, None, -7, 6)


def test_client_without_window_scaling():
    """No scaling offered by the client: nobody scales, nothing is rescaled."""
    with make_agent(wscale=7) as agent:
        play(agent, [
            Step("fused SYN without WS", IN, to_backend("S", C, S, syn_options(None)),
                 to_backend("S", C, 0, syn_options(None))),
            Step("SYN-ACK without WS", OUT,
                 from_backend("SA", B, C + 1, synack_options(None), window=29200),
                 marked(from_backend("SA", S, C + 1, synack_options(None), window=29200))),
            Step("window untouched", OUT,
                 from_backend("A", B + 1, C + 1, window=29200),
                 marked(from_backend("A", S + 1, C + 1, window=29200))),
            Step("window untouched", IN,
                 to_backend("A", C + 1, S + 1, window=1000),
                 to_backend("A", C + 1, B + 1, window=1000)),
        ])
        assert agent.counters()["window_fix"] == 0


def test_window_scale_option_at_odd_offset():
    """A SYN-ACK whose WS shift byte sits at an odd offset: byte rewrite, right checksum."""
    with make_agent(wscale=7) as agent:
        odd = [("MSS", 1460), ("WScale", 9), ("NOP", None)]  # shift byte at 20+4+2 = 26: even
        odd2 = [("MSS", 1460), ("NOP", None), ("WScale", 9)]  # shift byte at 27: odd
        run(agent, IN, bytes(to_backend("S", C, S, syn_options(7))))
        play(agent, [Step("WS byte at odd offset", OUT,
                          from_backend("SA", B, C + 1, odd2, window=65535),
                          marked(from_backend("SA", S, C + 1, [("MSS", 1460), ("NOP", None),
                                                        ("WScale", 7)], window=65535)))])
        run(agent, IN, bytes(to_backend("S", C, S, syn_options(7), sport=CLIENT_PORT + 1)))
        play(agent, [Step("WS byte at even offset", OUT,
                          from_backend("SA", B, C + 1, odd, window=65535,
                                       dport=CLIENT_PORT + 1),
                          marked(from_backend("SA", S, C + 1, [("MSS", 1460), ("WScale", 7),
                                                        ("NOP", None)], window=65535,
                                       dport=CLIENT_PORT + 1)))])
        assert agent.counters()["wscale_opt_fix"] == 2


# ---------------------------------------------------------------- key re-use

def test_key_reuse_replaces_the_entry(agent):
    """The front-end resets the back-end connection and opens a new one for the same
    client endpoint (seq = client_seq-1, ack field = client_ack-1): the new fused SYN
    replaces the entry, the old offset is gone, the new one applies."""
    establish(agent)
    c2, s2, b2 = C + 1 + len(REQ) - 1, S + 1 + 5000 - 1, 0x0BAD0000
    d2 = (b2 - s2) & M32
    play(agent, [
        Step("front-end resets the old back-end connection", IN,
             to_backend("R", C + 1 + len(REQ), 0, window=0)),
        Step("new fused SYN for the same client endpoint", IN,
             to_backend("S", c2, s2, syn_options(7)),
             to_backend("S", c2, 0, syn_options(7))),
        Step("before the new SYN-ACK, a stray ACK cannot be translated", IN,
             to_backend("A", c2 + 1, s2 + 1)),
        Step("new SYN-ACK: d' = b' - s'", OUT,
             from_backend("SA", b2, c2 + 1, synack_options(7), window=64240),
             marked(from_backend("SA", s2, c2 + 1, synack_options(7), window=64240))),
        Step("new connection's data continues the client's view", OUT,
             from_backend("A", b2 + 1, c2 + 1, payload=b"q" * 100),
             marked(from_backend("A", S + 1 + 5000, c2 + 1, payload=b"q" * 100))),
        Step("and the ack uses d'", IN,
             to_backend("A", c2 + 1, s2 + 101),
             to_backend("A", c2 + 1, b2 + 101)),
    ])
    c = agent.counters()
    assert (c["conn_new"], c["conn_reuse"], c["close_rst"], c["not_established"]) == (1, 1, 1, 1)
    e = entry(agent)
    assert (e.switch_isn, e.client_isn, e.delta, e.state, e.closing_for_s) == \
        (s2 & M32, c2, d2, "established", None)


def test_plain_syn_does_not_remove_a_live_entry(agent):
    """A SYN with a zero ack field (anyone can send one) on the key of an established
    connection leaves the entry: the kernel answers its live socket with a challenge
    ACK, which is translated and marked as every packet of the connection."""
    establish(agent)
    play(agent, [
        Step("plain SYN, same endpoint: untouched", IN, to_backend("S", 999, 0, syn_options(7))),
        Step("the kernel's challenge ACK: translated, marked", OUT,
             from_backend("A", B + 1, C + 1), marked(from_backend("A", S + 1, C + 1))),
        Step("the connection goes on", IN, to_backend("A", C + 1, S + 1),
             to_backend("A", C + 1, B + 1)),
    ])
    c = agent.counters()
    assert (c["syn_plain"], c["syn_plain_kept"], c["stale_removed"]) == (1, 1, 0)
    assert entry(agent).state == "established"


def test_plain_syn_does_not_remove_a_closing_entry_within_its_grace(agent):
    """Both FINs passed: the entry translates stragglers for its grace period, and a
    plain SYN does not cut that short."""
    establish(agent)
    run(agent, OUT, bytes(from_backend("FA", B + 1, C + 1)))
    run(agent, IN, bytes(to_backend("FA", C + 1, S + 2)))
    play(agent, [Step("plain SYN in the grace period: untouched", IN,
                      to_backend("S", 999, 0, syn_options(7))),
                 Step("a retransmitted FIN still translated", OUT,
                      from_backend("FA", B + 1, C + 1),
                      marked(from_backend("FA", S + 1, C + 1)))])
    assert agent.counters()["syn_plain_kept"] == 1
    assert entry(agent).state == "closing"


def test_syn_ack_of_a_new_plain_connection_removes_the_old_entry(agent):
    """The kernel accepted a plain SYN on a closed connection's 4-tuple (a TIME_WAIT
    socket takes a higher ISN): its SYN-ACK answers an ISN that is not the entry's, so
    it passes untouched and unmarked (not Miresga's), and the old entry goes."""
    establish(agent)
    run(agent, OUT, bytes(from_backend("FA", B + 1, C + 1)))
    run(agent, IN, bytes(to_backend("FA", C + 1, S + 2)))
    play(agent, [
        Step("plain SYN, same endpoint", IN, to_backend("S", 999, 0, syn_options(7))),
        Step("its SYN-ACK passes untouched", OUT,
             from_backend("SA", 5555, 1000, synack_options(7), window=64240)),
        Step("and so does the rest of the new connection", OUT,
             from_backend("A", 5556, 1000, payload=b"plain")),
    ])
    c = agent.counters()
    assert (c["syn_plain_kept"], c["synack_foreign"], c["stale_removed"], c["miss_out"]) == \
        (1, 1, 1, 1)
    assert entry(agent) is None


def put_entry(agent, closed_s_ago: float | None = None, idle_s: float = 0.0,
              state: ConnState = ConnState.ESTABLISHED) -> None:
    """Write an established entry (c, s, b as establish() leaves it) straight into
    the map, its clocks set in the past: no fused SYN, so the aging sweeper is
    not armed and cannot race the test."""
    now = time.monotonic_ns()  # bpf_ktime_get_ns() is CLOCK_MONOTONIC
    conn = AgentConn(switch_isn=S, client_isn=C, backend_isn=B, delta=D,
                     last_seen_ns=now - int(idle_s * 1e9), state=state,
                     client_wscale=7, backend_wscale=7)
    if closed_s_ago is not None:
        conn.close_ns = now - int(closed_s_ago * 1e9)
        conn.flags = RST
    agent.conns.update(AgentKey.of(CLIENT_IP, CLIENT_PORT, 80), conn)


def test_plain_syn_removes_a_dead_entry(agent):
    """An entry whose connection closed and whose grace period is over (the sweeper
    has not come by yet) must not translate a new plain connection: the SYN removes
    it.  So does one idle past the idle timeout."""
    for dead in (dict(closed_s_ago=20.0, state=ConnState.CLOSING), dict(idle_s=400.0)):
        put_entry(agent, **dead)
        play(agent, [Step("plain SYN", IN, to_backend("S", 999, 0, syn_options(7))),
                     Step("its SYN-ACK untouched", OUT,
                          from_backend("SA", 5555, 1000, synack_options(7), window=64240))])
        assert entry(agent) is None
    c = agent.counters()
    assert (c["syn_plain"], c["stale_removed"], c["syn_plain_kept"]) == (2, 2, 0)


def test_reopen_after_both_fins_replaces_the_entry(agent):
    """A front-end that drained a connection (its FIN, the back-end's FIN) and later
    routes the same client endpoint to the same back-end again opens it with a new
    fused SYN: the old connection is over, so the SYN takes the entry."""
    establish(agent)
    c2, s2, b2 = C + 5000, S + 9000, 0x0BAD0000
    play(agent, [
        Step("back-end FIN", OUT, from_backend("FA", B + 1, C + 1),
             marked(from_backend("FA", S + 1, C + 1))),
        Step("front-end FIN", IN, to_backend("FA", C + 1, S + 2),
             to_backend("FA", C + 1, B + 2)),
        Step("new fused SYN for the same endpoint: taken", IN,
             to_backend("S", c2, s2, syn_options(7)), to_backend("S", c2, 0, syn_options(7))),
        Step("new SYN-ACK: d' = b' - s'", OUT,
             from_backend("SA", b2, c2 + 1, synack_options(7), window=64240),
             marked(from_backend("SA", s2, c2 + 1, synack_options(7), window=64240))),
    ])
    c = agent.counters()
    assert (c["close_fin"], c["conn_reuse"], c["syn_live_kept"]) == (1, 1, 0)
    assert entry(agent).delta == (b2 - s2) & M32


def test_fused_syn_on_an_idle_entry_replaces_it(agent):
    """An entry idle past the idle timeout (the sweeper not come by yet) belongs to a
    connection that is over: a new fused SYN takes it."""
    put_entry(agent, idle_s=400.0)
    play(agent, [Step("new fused SYN", IN, to_backend("S", C + 7, S + 7, syn_options(7)),
                      to_backend("S", C + 7, 0, syn_options(7)))])
    assert agent.counters()["conn_reuse"] == 1
    assert (entry(agent).client_isn, entry(agent).state) == (C + 7, "syn_seen")


@pytest.mark.parametrize("state", ["established", "syn_seen"])
def test_spoofed_fused_syn_cannot_take_a_live_entry(agent, state):
    """A fused SYN with other ISNs on the key of a connection that is still going (no
    RST, no FINs, not idle) is refused: the entry and its offset stay, the SYN reaches
    the kernel with its ack field zeroed, and the connection's packets are translated
    as before."""
    if state == "established":
        establish(agent)
    else:
        run(agent, IN, bytes(to_backend("S", C, S, syn_options(7))))
    play(agent, [Step("forged fused SYN: ack zeroed, nothing stored", IN,
                      to_backend("S", 0x0EE1, 0x0BAD, syn_options(7)),
                      to_backend("S", 0x0EE1, 0, syn_options(7)))])
    if state == "established":
        play(agent, [Step("the connection's data: old offset", OUT,
                          from_backend("A", B + 1, C + 1, payload=b"still mine"),
                          marked(from_backend("A", S + 1, C + 1, payload=b"still mine")))])
    else:
        play(agent, [Step("the real SYN-ACK: seq s", OUT,
                          from_backend("SA", B, C + 1, synack_options(7), window=64240),
                          marked(from_backend("SA", S, C + 1, synack_options(7),
                                              window=64240)))])
    c = agent.counters()
    assert (c["syn_live_kept"], c["conn_reuse"]) == (1, 0)
    e = entry(agent)
    assert (e.switch_isn, e.client_isn) == (S, C)


def test_reopen_whose_reset_was_lost_recovers(agent):
    """The front-end reset the old back-end connection, but the RST was lost; its new
    fused SYN is refused, the live socket's challenge ACK reaches it translated, it
    resets the connection (seq = that ack) and sends the SYN again, which now takes
    the entry."""
    establish(agent)
    c2, s2 = C + 3000, S + 3000
    syn = to_backend("S", c2, s2, syn_options(7))
    play(agent, [
        Step("new fused SYN on a live entry: refused", IN, syn,
             to_backend("S", c2, 0, syn_options(7))),
        Step("the kernel's challenge ACK: translated, marked", OUT,
             from_backend("A", B + 1, C + 1), marked(from_backend("A", S + 1, C + 1))),
        Step("the front-end's RST (seq = the challenge's ack)", IN,
             to_backend("R", C + 1, 0, window=0)),
        Step("the same SYN again: taken", IN, syn, to_backend("S", c2, 0, syn_options(7))),
    ])
    c = agent.counters()
    assert (c["syn_live_kept"], c["close_rst"], c["conn_reuse"]) == (1, 1, 1)
    assert (entry(agent).client_isn, entry(agent).state) == (c2, "syn_seen")


def test_mark_keeps_ecn_and_survives_ip_options(agent):
    """The mark is DSCP only: ECN bits (CE here) stay; with IP options the header
    checksum still comes out right.  Packets of a connection the agent does not know
    leave unmarked."""
    establish(agent)
    ce = _with_ip(from_backend("A", B + 1, C + 1, payload=b"ecn"), tos=0x03)
    opts = _with_ip(from_backend("A", B + 1, C + 1, payload=b"opt"),
                    options=[IPOption_Router_Alert()])
    play(agent, [
        Step("CE-marked segment", OUT, ce,
             _with_ip(from_backend("A", S + 1, C + 1, payload=b"ecn"), tos=0x5F)),
        Step("segment with IP options", OUT, opts,
             _with_ip(from_backend("A", S + 1, C + 1, payload=b"opt"),
                      options=[IPOption_Router_Alert()], tos=0x5C)),
        Step("another client's segment: unmarked", OUT,
             from_backend("A", B + 1, C + 1, dport=CLIENT_PORT + 1)),
    ])
    assert agent.counters()["marked"] == 3  # the SYN-ACK and the two segments


def test_second_service_port_is_a_separate_key(agent):
    """One client endpoint talking to two service ports: two entries, two offsets."""
    establish(agent)
    s2, b2 = 0x00000100, 0x80000000
    run(agent, IN, bytes(to_backend("S", C, s2, syn_options(7), dport=8080)))
    run(agent, OUT, bytes(from_backend("SA", b2, C + 1, synack_options(7), sport=8080)))
    play(agent, [
        Step("port 80 uses d", OUT, from_backend("A", B + 1, C + 1),
             marked(from_backend("A", S + 1, C + 1))),
        Step("port 8080 uses its own d", OUT, from_backend("A", b2 + 1, C + 1, sport=8080),
             marked(from_backend("A", s2 + 1, C + 1, sport=8080))),
    ])
    assert entry(agent, lport=8080).delta == (b2 - s2) & M32


# ---------------------------------------------------------- cleanup, aging

def test_fin_both_ways_removes_entry_after_grace():
    """Both FINs start the grace period; during it packets are still translated;
    after it the entry is gone and later packets pass untouched."""
    # Margins are generous: the machine may be loaded, and the "inside grace"
    # step must not race the timer.
    with make_agent(close_grace_s=1.5, idle_timeout_s=30) as agent:
        establish(agent)
        run(agent, OUT, bytes(from_backend("FA", B + 1, C + 1)))
        assert entry(agent).state == "established", "one FIN does not close"
        run(agent, IN, bytes(to_backend("FA", C + 1, S + 2)))
        assert entry(agent).state == "closing"
        play(agent, [Step("last ACK inside grace", OUT, from_backend("A", B + 2, C + 2),
                          marked(from_backend("A", S + 2, C + 2)))])
        _wait_for(lambda: entry(agent) is None, 10.0)
        play(agent, [Step("retransmitted FIN after grace: untouched", OUT,
                          from_backend("FA", B + 1, C + 1))])
        c = agent.counters()
        assert (c["close_fin"], c["cleanup_closed"], c["cleanup_idle"], c["miss_out"]) == \
            (1, 1, 0, 1)


def test_rst_removes_entry_after_grace():
    """An RST starts the grace period; the entry is gone once it ends."""
    with make_agent(close_grace_s=1.0, idle_timeout_s=30) as agent:
        establish(agent)
        run(agent, IN, bytes(to_backend("RA", C + 1, S + 1, window=0)))
        assert entry(agent) is not None, "kept during grace"
        _wait_for(lambda: entry(agent) is None, 10.0)
        assert agent.counters()["cleanup_closed"] == 1


def test_idle_entry_ages_out_and_a_busy_one_does_not():
    """With idle timeout 1.5 s: an entry with no traffic goes; one that keeps
    seeing packets outlives it several times over."""
    with make_agent(close_grace_s=0.1, idle_timeout_s=1.5) as agent:
        establish(agent, cport=40001)   # busy
        establish(agent, cport=40002)   # idle
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.5:
            run(agent, OUT, bytes(from_backend("A", B + 1, C + 1, dport=40001)))
            time.sleep(0.05)
        assert entry(agent, cport=40001) is not None, "busy entry aged out"
        assert entry(agent, cport=40002) is None, "idle entry still there"
        assert agent.counters()["cleanup_idle"] == 1
        _wait_for(lambda: entry(agent, cport=40001) is None, 10.0)
        assert agent.counters()["cleanup_idle"] == 2


def test_thousands_of_new_connections_are_all_kept_and_all_aged():
    """Regression (found end to end, one connection per request): entries
    used to carry a bpf_timer each, and on Linux 6.18 bpf_timer_init() from the
    datapath fails with ENOMEM once its cache is empty, so all but the first
    few dozen fused SYNs were dropped (map_fail) and the front-end answered 503.
    Now 3,000 fused SYNs in a row all get an entry, and the one sweeper timer
    removes every one of them after the idle timeout."""
    n = 3000
    with make_agent(max_conns=4096, close_grace_s=0.2, idle_timeout_s=0.5) as agent:
        for i in range(n):
            run(agent, IN, bytes(to_backend("S", C + i, S - i, syn_options(7),
                                            sport=10000 + i)))
        c = agent.counters()
        assert (c["conn_new"], c["map_fail"], c["sweep_arm_fail"]) == (n, 0, 0)
        _wait_for(lambda: len(agent.connections()) == 0, 15.0)
        c = agent.counters()
        assert c["cleanup_idle"] == n and c["sweeps"] >= 1


def test_a_new_config_generation_rearms_the_sweeper():
    """A reload writes a new config generation; the next fused SYN re-arms the
    shared sweeper (with the reloaded program's callback) and aging goes on."""
    with make_agent(close_grace_s=0.2, idle_timeout_s=0.4) as agent:
        run(agent, IN, bytes(to_backend("S", C, S, syn_options(7), sport=40001)))
        _wait_for(lambda: entry(agent, cport=40001) is None, 10.0)
        agent.write_config(agent.config)          # what a reload does
        run(agent, IN, bytes(to_backend("S", C, S, syn_options(7), sport=40002)))
        _wait_for(lambda: entry(agent, cport=40002) is None, 10.0)
        assert agent.counters()["cleanup_idle"] == 2


def test_syn_only_entry_ages_out():
    """A fused SYN whose SYN-ACK never comes (back-end down) does not leak."""
    with make_agent(close_grace_s=0.1, idle_timeout_s=0.3) as agent:
        run(agent, IN, bytes(to_backend("S", C, S, syn_options(7))))
        assert entry(agent).state == "syn_seen"
        _wait_for(lambda: entry(agent) is None, 10.0)


def test_a_full_map_refuses_new_connections_and_keeps_live_ones():
    """max_conns sizes the map; when full a new connection's fused SYN is dropped and
    counted, and every live entry stays (an LRU map evicted them under churn)."""
    with make_agent(max_conns=64) as agent:
        assert agent.conns.max_entries == 64
        for i in range(64):
            r = run(agent, IN, bytes(to_backend("S", C, S + i, syn_options(7),
                                                sport=20000 + i)))
            assert Ether(r.data)[TCP].ack == 0
        for i in range(64, 200):
            r = run(agent, IN, bytes(to_backend("S", C, S + i, syn_options(7),
                                                sport=20000 + i)))
            assert r.retval == 2   # TC_ACT_SHOT
        assert len(agent.connections()) == 64
        assert all(entry(agent, cport=20000 + i) is not None for i in range(64))
        assert entry(agent, cport=20199) is None
        c = agent.counters()
        assert (c["conn_new"], c["map_fail"]) == (64, 136)


def _wait_for(cond, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    assert cond(), f"not true after {timeout} s"


# ------------------------------------------------------- not Miresga's traffic

FOREIGN = [
    ("UDP to port 80", IN, Ether() / IP(src=CLIENT_IP, dst=BACKEND_IP) / UDP(sport=1, dport=80)
     / Raw(b"x" * 20)),
    ("ICMP echo", IN, Ether() / IP(src=CLIENT_IP, dst=BACKEND_IP) / ICMP()),
    ("ARP", IN, Ether() / ARP(psrc=CLIENT_IP, pdst=BACKEND_IP)),
    ("IPv6 TCP SYN with a non-zero ack", IN,
     Ether() / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=4, dport=80, flags="S", ack=77)),
    ("fused-looking SYN to another port", IN, to_backend("S", C, S, syn_options(7), dport=22)),
    ("plain SYN to port 80", IN, to_backend("S", C, 0, syn_options(7))),
    ("SYN-ACK to port 80 (we are the client)", IN, to_backend("SA", C, S, syn_options(7))),
    ("ACK to port 80, unknown connection", IN, to_backend("A", C + 1, S + 1, payload=b"hi")),
    ("egress from port 80, unknown connection", OUT, from_backend("PA", B + 1, C + 1,
                                                                  payload=b"hello")),
    ("egress SYN-ACK, unknown connection", OUT, from_backend("SA", B, C + 1, synack_options(7))),
    ("egress from another port", OUT, from_backend("A", B + 1, C + 1, sport=443)),
    ("later IP fragment", IN, Ether() / IP(src=CLIENT_IP, dst=BACKEND_IP, proto=6, frag=100)
     / Raw(b"\x9c\x40\x00\x50" + b"\x00" * 40)),
]


@pytest.mark.parametrize("what,direction,pkt", FOREIGN, ids=[f[0] for f in FOREIGN])
def test_foreign_traffic_passes_untouched(agent, what, direction, pkt):
    """Traffic that is not Miresga's leaves byte for byte as it came, and creates no entry."""
    play(agent, [Step(what, direction, pkt)])
    assert agent.connections() == []


def test_foreign_traffic_to_a_live_key_other_port(agent):
    """An established entry for port 80 does not touch the same client's traffic to port 22."""
    establish(agent)
    play(agent, [Step("ACK to port 22", IN, to_backend("A", C + 1, S + 1, dport=22)),
                 Step("from port 22", OUT, from_backend("A", B + 1, C + 1, sport=22))])


def test_not_configured_passes_everything():
    """Before the loader writes the config, nothing is rewritten or stored."""
    with make_agent() as agent:
        agent.config_map.update(ctypes.c_uint32(0), AgentConfigRaw())
        play(agent, [Step("fused SYN, agent disabled", IN, to_backend("S", C, S,
                                                                      syn_options(7)))])
        assert agent.connections() == []
        assert agent.counters()["no_config"] == 1


# --------------------------------------------------------------- bad input

def _raw(*chunks: bytes) -> bytes:
    b = b"".join(chunks)
    return b + b"\x00" * (-len(b) % 4)


SACK_HDR = b"\x01\x01\x05\x0a"  # NOP NOP SACK len 10
MALFORMED = [
    ("SACK option runs past the header", _raw(b"\x01\x01\x05\x12", b"\x00" * 8)),
    ("option length 0 (a naive parser loops forever)", _raw(b"\x01\x01\x08\x00", b"\x00" * 8)),
    ("option length 1", _raw(b"\x13\x01\x01\x01")),
    ("unknown option runs past the end", _raw(b"\x01\x01\x1e\x20", b"\x00" * 4)),
    ("SACK length not 2 + 8n", _raw(b"\x01\x01\x05\x0b", b"\x00" * 9)),
    ("two SACK options", _raw(SACK_HDR, b"\xff" * 8, SACK_HDR, b"\xee" * 8)),
    ("kind byte is the last byte", _raw(b"\x01\x01\x01\x05")),
    ("40 bytes of NOP ending in a SACK kind", b"\x01" * 39 + b"\x05"),
]


@pytest.mark.parametrize("what,raw_opts", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_options_left_untouched(agent, what, raw_opts):
    """On an established connection a packet with a malformed option list still gets
    its ack translated (the connection must not break), but the options, including any
    SACK-looking bytes, are left exactly as they came, and the packet is counted."""
    establish(agent)
    play(agent, [Step(what, IN, to_backend("A", C + 1, S + 1, raw_options=raw_opts),
                      to_backend("A", C + 1, B + 1, raw_options=raw_opts))])
    c = agent.counters()
    assert (c["bad_options"], c["sack_rewrite"]) == (1, 0)


def test_malformed_options_in_fused_syn(agent):
    """A fused SYN with a truncated option list is still a fused SYN: stored, counted;
    the options themselves are not touched."""
    raw = b"\x02\x04\x05\xb4\x01\x01\x01\x03"  # MSS, NOP x3, WS kind as the last byte
    play(agent, [Step("fused SYN, truncated WS", IN, to_backend("S", C, S, raw_options=raw),
                      to_backend("S", C, 0, raw_options=raw))])
    assert agent.counters()["bad_options"] == 1
    assert entry(agent).client_wscale is None


def test_truncated_headers_pass_untouched(agent):
    """A frame whose IP header length is impossible, that ends inside the TCP header,
    or whose TCP header claims more options than the frame holds, is passed as it
    is and counted; nothing crashes."""
    establish(agent)
    ack = bytes(to_backend("A", C + 1, S + 1))
    # (A frame cut inside the IP header never reaches the program: the kernel
    # refuses it in BPF_PROG_TEST_RUN, and the stack drops it before tc.)
    long_ihl = bytearray(ack)
    long_ihl[14] = 0x4F          # IHL 15: 60 bytes of IP header on a 54-byte frame
    bad_ihl = bytearray(ack)
    bad_ihl[14] = 0x44           # IHL 4: shorter than any IP header
    cut_tcp = ack[:14 + 20 + 10]
    # data offset 15 (40 bytes of options) on a segment with none
    long_doff = bytearray(ack)
    long_doff[14 + 20 + 12] = 0xF0
    for what, frame in [("IP header longer than the frame", bytes(long_ihl)),
                        ("IHL below 5", bytes(bad_ihl)), ("TCP header cut", cut_tcp)]:
        r = run(agent, IN, frame)
        assert (r.retval, r.data) == (PASS, frame), what
    assert agent.counters()["truncated"] == 3
    r = run(agent, IN, bytes(long_doff))
    # The ack is still a back-end sequence number: translated; the "options"
    # beyond the frame are not read, and counted as bad.
    assert r.retval == PASS
    assert Ether(r.data)[TCP].ack == (B + 1) & M32
    assert r.data[:14 + 20 + 8] == bytes(long_doff)[:14 + 20 + 8]
    assert agent.counters()["bad_options"] == 1


def _with_ip(pkt, **fields):
    """The frame with IP header fields changed, lengths and checksums recomputed."""
    pkt = pkt.copy()
    for k, v in fields.items():
        setattr(pkt[IP], k, v)
    del pkt[IP].len, pkt[IP].ihl, pkt[IP].chksum
    return Ether(bytes(pkt))


@pytest.mark.parametrize("what,ip_fields", [
    ("IP options (router alert)", {"options": [IPOption_Router_Alert()]}),
    ("first fragment (MF, offset 0)", {"flags": "MF"}),
])
def test_tcp_after_ip_options_and_in_a_first_fragment_is_translated(agent, what, ip_fields):
    """A host's stack accepts IP options and fragments, so the agent does too: it
    finds TCP after the options (and in the first fragment, whose TCP checksum an
    incremental update keeps right) and translates the ack as usual."""
    establish(agent)
    sent = _with_ip(to_backend("A", C + 1, S + 1, payload=b"hi"), **ip_fields)
    want = _with_ip(to_backend("A", C + 1, B + 1, payload=b"hi"), **ip_fields)
    play(agent, [Step(what, IN, sent, want)])
    assert agent.counters()["rewrite_in"] == 1


def test_egress_before_synack_is_untouched(agent):
    """A back-end RST answering the fused SYN (no listener) has no back-end seq to
    translate: it is only marked (the front-end must see it) and the entry starts its
    grace period."""
    run(agent, IN, bytes(to_backend("S", C, S, syn_options(7))))
    rst = from_backend("RA", 0, C + 1, window=0)
    play(agent, [Step("RST,ACK to the fused SYN", OUT, rst, marked(rst)),
                 Step("a late ACK from the front-end: d unknown, untouched", IN,
                      to_backend("A", C + 1, S + 1))])
    c = agent.counters()
    assert (c["not_established"], c["close_rst"], c["rewrite_in"]) == (2, 1, 0)
    e = entry(agent)
    assert e.state == "syn_seen" and e.closing_for_s is not None


def test_checksum_helper_detects_corruption():
    """The fixture's own checksum check fails on a corrupted frame, so the tests above
    can fail."""
    frame = bytearray(bytes(to_backend("A", C + 1, S + 1)))
    frame[14 + 20 + 8] ^= 0x01
    assert checksum_errors(bytes(frame))


def test_key_layout_matches_packet_fields(agent):
    """The map key the loader builds for an endpoint is the one the program stores."""
    run(agent, IN, bytes(to_backend("S", C, S, syn_options(7))))
    assert agent.conns.lookup(AgentKey.of(CLIENT_IP, CLIENT_PORT, 80)) is not None
