"""Packet fixtures for the back-end agent's tests, Katran style.

A test is a table of steps: what the step shows, which program sees the
packet (ingress: client/front-end -> back-end, egress: back-end -> client),
the input frame, the frame expected out of the program (None: byte for byte
unchanged) and the verdict.  Frames are built with scapy, which also computes
every checksum of the expected frame: comparing bytes therefore checks the
rewritten fields *and* that the incremental checksum update matches a full
recomputation.
"""

from __future__ import annotations

import dataclasses
import struct
from socket import inet_aton

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import checksum

from switchhost import bpf
from miresga.control.agent import Counter, LoadedAgent
from switchhost.layouts import DSCP_MIRESGA

PASS = 0xFFFFFFFF  # TC_ACT_UNSPEC (-1) as BPF_PROG_TEST_RUN's u32 retval

CLIENT_IP, CLIENT_PORT = "10.0.1.2", 40000
BACKEND_IP, PORT = "10.0.3.2", 80
SWITCH_MAC, BACKEND_MAC = "02:00:00:00:00:01", "02:00:00:00:03:02"

IN, OUT = "ingress", "egress"
M32 = 0xFFFFFFFF

# The options Linux puts in a SYN-ACK when the SYN offered MSS, SACK and
# window scaling (no timestamps): MSS, NOP, NOP, SACK-permitted, NOP, WS.
def synack_options(wscale: int | None, mss: int = 1460) -> list:
    opts = [("MSS", mss), ("NOP", None), ("NOP", None), ("SAckOK", b"")]
    if wscale is not None:
        opts += [("NOP", None), ("WScale", wscale)]
    return opts


# What the front-end replays from the client: MSS, SACK-permitted, WS.
def syn_options(wscale: int | None, mss: int = 1460) -> list:
    opts = [("MSS", mss), ("SAckOK", b"")]
    if wscale is not None:
        opts += [("NOP", None), ("WScale", wscale)]
    return opts


def to_backend(flags: str, seq: int, ack: int, options=(), payload: bytes = b"",
               window: int = 502, src: str = CLIENT_IP, sport: int = CLIENT_PORT,
               dport: int = PORT, raw_options: bytes | None = None) -> Packet:
    """A frame the back-end receives (the agent's ingress)."""
    return _frame(SWITCH_MAC, BACKEND_MAC, src, BACKEND_IP, sport, dport, flags, seq, ack,
                  options, payload, window, raw_options)


def from_backend(flags: str, seq: int, ack: int, options=(), payload: bytes = b"",
                 window: int = 502, dst: str = CLIENT_IP, dport: int = CLIENT_PORT,
                 sport: int = PORT, raw_options: bytes | None = None) -> Packet:
    """A frame the back-end sends (the agent's egress)."""
    return _frame(BACKEND_MAC, SWITCH_MAC, BACKEND_IP, dst, sport, dport, flags, seq, ack,
                  options, payload, window, raw_options)


def _frame(smac, dmac, src, dst, sport, dport, flags, seq, ack, options, payload, window,
           raw_options):
    ip = IP(src=src, dst=dst, id=1, flags="DF", ttl=64)
    if raw_options is None:
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq & M32, ack=ack & M32,
                  window=window, options=list(options))
        return Ether(src=smac, dst=dmac) / ip / tcp / Raw(payload) if payload else \
            Ether(src=smac, dst=dmac) / ip / tcp
    # Options scapy would refuse to build (truncated, zero length): put them
    # in by hand behind a header whose data offset covers them.  scapy still
    # checksums the whole segment.
    assert len(raw_options) % 4 == 0, "pad raw options to a multiple of 4"
    tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq & M32, ack=ack & M32,
              window=window, dataofs=5 + len(raw_options) // 4)
    return Ether(src=smac, dst=dmac) / ip / tcp / Raw(raw_options + payload)


def marked(pkt: Packet) -> Packet:
    """`pkt` as the agent lets a packet of its connections go: DSCP MIRESGA, ECN
    bits kept, the IP checksum computed afresh by scapy."""
    q = pkt.copy()
    q[IP].tos = (DSCP_MIRESGA << 2) | (q[IP].tos & 3)
    q[IP].chksum = None
    return Ether(bytes(q))


@dataclasses.dataclass
class Step:
    what: str
    direction: str
    packet: Packet
    expect: Packet | None = None  # None: must leave the program unchanged
    verdict: int = PASS


def run(agent: LoadedAgent, direction: str, frame: bytes) -> bpf.TestRun:
    fd = agent.ingress_fd if direction == IN else agent.egress_fd
    return bpf.prog_test_run(fd, frame)


def checksum_errors(frame: bytes) -> list[str]:
    """Verify the IPv4 header and TCP checksums over the frame's raw bytes.

    scapy's Internet checksum over the header (and over pseudo header plus
    segment for TCP) must come out 0.  Raw bytes rather than a scapy rebuild,
    which would re-serialise malformed options differently from the wire.
    """
    pkt = Ether(frame)
    if IP not in pkt:
        return []
    errors = []
    ip = pkt[IP]
    ihl = ip.ihl * 4
    if checksum(frame[14:14 + ihl]) != 0:
        errors.append(f"IP checksum {ip.chksum:#06x} wrong")
    if ip.proto == 6 and ip.frag == 0 and not ip.flags.MF:
        seg = frame[14 + ihl:14 + ip.len]
        pseudo = inet_aton(ip.src) + inet_aton(ip.dst) + struct.pack("!BBH", 0, 6, len(seg))
        if checksum(pseudo + seg) != 0:
            errors.append(f"TCP checksum {struct.unpack('!H', seg[16:18])[0]:#06x} wrong")
    return errors


def describe(frame: bytes) -> str:
    pkt = Ether(frame)
    if TCP not in pkt:
        return pkt.summary()
    t = pkt[TCP]
    return (f"{pkt[IP].src}:{t.sport} > {pkt[IP].dst}:{t.dport} [{t.flags}] seq={t.seq:#010x} "
            f"ack={t.ack:#010x} win={t.window} opts={t.options} csum={t.chksum:#06x}")


def play(agent: LoadedAgent, steps: list[Step]) -> None:
    """Run every step in order; fail on the first whose output is not the expected one."""
    for i, step in enumerate(steps):
        frame = bytes(step.packet)
        result = run(agent, step.direction, frame)
        want = bytes(step.expect) if step.expect is not None else frame
        where = f"step {i} ({step.direction}): {step.what}"
        assert result.retval == step.verdict, f"{where}: verdict {result.retval:#x}"
        assert result.data == want, (f"{where}: output differs\n"
                                     f"  in:   {describe(frame)}\n"
                                     f"  out:  {describe(result.data)}\n"
                                     f"  want: {describe(want)}")
        assert not checksum_errors(result.data), f"{where}: {checksum_errors(result.data)}"


def counters(agent: LoadedAgent) -> dict[str, int]:
    return agent.counters()


def delta_of(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counters that moved, for assertions that name only what should change."""
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def sack_option(*edges: int) -> tuple:
    return ("SAck", tuple(e & M32 for e in edges))


def be32(v: int) -> bytes:
    return struct.pack("!I", v & M32)


__all__ = [
    "PASS", "CLIENT_IP", "CLIENT_PORT", "BACKEND_IP", "PORT", "IN", "OUT", "M32", "Step",
    "synack_options", "syn_options", "to_backend", "from_backend", "run", "play",
    "checksum_errors", "counters", "delta_of", "sack_option", "be32", "Counter", "marked",
]
