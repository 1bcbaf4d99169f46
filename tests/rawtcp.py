"""A raw-frame TCP peer that plays the switch, the front-end and the client of
one Miresga connection, for testing the back-end agent against a real stack.

It sends the front-end's fused SYN (seq c, the switch's ISN s in the ack
field, ACK flag off), completes the handshake the way the front-end does, then
receives a response as the client would: in order, ACKing every segment, and
with SACK blocks when it holds out-of-order data.  It can also *lose* chosen
segments on purpose, so that the back-end's recovery has to rely on the SACK
blocks the agent translates.

It uses an AF_PACKET socket opened inside the client's namespace, with a
source address that is not configured there: the namespace's own TCP stack
never sees the connection, so it sends no RST for it (no firewall needed).
The switch needs a neighbour entry to deliver to that address.
"""

from __future__ import annotations

import array
import dataclasses
import socket
import struct
import time

from common.netns import netns as in_netns

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
M32 = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def after(a: int, b: int) -> bool:
    """a is later than b in sequence space."""
    return a != b and ((a - b) & M32) < 0x80000000


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def inet_sum(data: bytes) -> int:
    """One's-complement sum of 16-bit words (byte order of the host)."""
    if len(data) % 2:
        data += b"\0"
    return _fold(sum(array.array("H", data)))


def csum(data: bytes) -> bytes:
    """The Internet checksum of data, as the two bytes to put in a header."""
    return struct.pack("=H", ~inet_sum(data) & 0xFFFF)


@dataclasses.dataclass
class Segment:
    seq: int
    ack: int
    flags: int
    window: int
    options: bytes
    payload: bytes
    checksum_ok: bool

    def option(self, kind: int) -> bytes | None:
        """The value bytes of the first option of `kind`, or None."""
        o, i = self.options, 0
        while i < len(o):
            if o[i] == 0:
                break
            if o[i] == 1:
                i += 1
                continue
            if i + 1 >= len(o) or o[i + 1] < 2:
                break
            if o[i] == kind:
                return o[i + 2:i + o[i + 1]]
            i += o[i + 1]
        return None


class RawPeer:
    def __init__(self, netns: str, iface: str, src_mac: str, dst_mac: str, src_ip: str,
                 dst_ip: str, sport: int, dport: int = 80):
        with in_netns(netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
            self.sock.bind((iface, 0))
        # Enough buffer for a whole window of the response: losses must be
        # the ones the test makes, not the receiver falling behind.
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
        self.iface = iface
        self.eth = bytes.fromhex(dst_mac.replace(":", "")) + \
            bytes.fromhex(src_mac.replace(":", "")) + struct.pack("!H", ETH_P_IP)
        self.src, self.dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
        self.sport, self.dport = sport, dport
        self.ip_id = 0
        self.bad_checksums = 0
        self.frames_in = 0

    def close(self) -> None:
        self.sock.close()

    # ---------------------------------------------------------------- send
    def send(self, flags: int, seq: int, ack: int, window: int, options: bytes = b"",
             payload: bytes = b"") -> None:
        assert len(options) % 4 == 0
        tcp = struct.pack("!HHIIBBH", self.sport, self.dport, seq & M32, ack & M32,
                          (5 + len(options) // 4) << 4, flags, window) + b"\0\0\0\0" + options
        seg = tcp + payload
        pseudo = self.src + self.dst + struct.pack("!BBH", 0, 6, len(seg))
        seg = seg[:16] + csum(pseudo + seg) + seg[18:]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), self.ip_id, 0x4000, 64, 6, 0,
                         self.src, self.dst)
        ip = ip[:10] + csum(ip) + ip[12:]
        self.sock.send(self.eth + ip + seg)

    # ------------------------------------------------------------- receive
    def recv(self, timeout: float) -> Segment | None:
        """The next segment of this connection (dst_ip:dport -> src_ip:sport), or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                frame, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                return None
            if addr[2] == PACKET_OUTGOING:
                continue
            seg = self._parse(frame)
            if seg is not None:
                return seg

    def _parse(self, frame: bytes) -> Segment | None:
        ip = frame[14:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            return None
        ihl = (ip[0] & 0xF) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[12:16] != self.dst or ip[16:20] != self.src:
            return None
        seg = ip[ihl:total]
        sport, dport, seq, ack, off, flags, window = struct.unpack("!HHIIBBH", seg[:16])
        if sport != self.dport or dport != self.sport:
            return None
        self.frames_in += 1
        pseudo = self.dst + self.src + struct.pack("!BBH", 0, 6, len(seg))
        ok = inet_sum(ip[:ihl]) == 0xFFFF and inet_sum(pseudo + seg) == 0xFFFF
        if not ok:
            self.bad_checksums += 1
        doff = (off >> 4) * 4
        return Segment(seq, ack, flags, window, seg[20:doff], seg[doff:], ok)


def syn_options(mss: int = 1460, wscale: int | None = 7, sack: bool = True) -> bytes:
    o = struct.pack("!BBH", 2, 4, mss)
    if sack:
        o += b"\x04\x02"
    if wscale is not None:
        o += b"\x01\x03\x03" + bytes([wscale])
    return o + b"\x00" * (-len(o) % 4)


def sack_options(blocks: list[tuple[int, int]]) -> bytes:
    if not blocks:
        return b""
    o = b"\x01\x01\x05" + bytes([2 + 8 * len(blocks)])
    for left, right in blocks:
        o += struct.pack("!II", left & M32, right & M32)
    return o


@dataclasses.dataclass
class Download:
    body: bytes
    headers: bytes
    segments: int
    dropped: list[int]
    sacks_sent: int
    retransmissions_seen: int
    max_window: int


def receive_response(peer: RawPeer, c: int, s: int, window: int, drop_offsets: list[int],
                     deadline_s: float = 90.0) -> Download:
    """Receive an HTTP response sent with Connection: close, as the client.

    `c`, `s`: the client's and the switch's ISNs; every sequence number the
    back-end's bytes arrive with must be in s's space.  `drop_offsets`: byte
    offsets of the response; the first segment that carries each is ignored
    on first arrival (lost), and later segments are SACKed until the
    back-end retransmits it.  Ends after both FINs; raises on timeout.
    """
    irs = s  # the ISN of the byte stream we receive, as the switch told the client
    rcv_nxt = (irs + 1) & M32
    snd_nxt = None  # set by the caller's request; we only ACK here
    data = bytearray()
    ooo: dict[int, bytes] = {}
    to_drop = sorted(drop_offsets)
    dropped: list[int] = []
    seen_payload: set[int] = set()
    sacks = retrans = segments = 0
    max_window = 0
    fin_at = None
    end = time.monotonic() + deadline_s
    my_seq = None

    def ack(seq_to_send: int, flags: int = ACK) -> None:
        nonlocal sacks
        blocks = []
        for start in sorted(ooo, key=lambda x: (x - rcv_nxt) & M32):
            stop = (start + len(ooo[start])) & M32
            if blocks and blocks[-1][1] == start:
                blocks[-1] = (blocks[-1][0], stop)
            else:
                blocks.append((start, stop))
        blocks = blocks[:3]
        if blocks:
            sacks += 1
        peer.send(flags, seq_to_send, rcv_nxt, window, sack_options(blocks))

    while True:
        if time.monotonic() > end:
            raise TimeoutError(f"response incomplete after {deadline_s}s: {len(data)} bytes in "
                               f"order, {len(ooo)} out of order, rcv_nxt={rcv_nxt:#x}")
        seg = peer.recv(1.0)
        if seg is None:
            continue
        if not seg.checksum_ok:
            continue  # a real stack drops it too; counted in peer.bad_checksums
        if my_seq is None:
            my_seq = seg.ack  # the back-end has acked the request: our next seq
        max_window = max(max_window, seg.window)
        if seg.flags & RST:
            raise ConnectionResetError(f"RST from the back-end, seq={seg.seq:#x}")
        n = len(seg.payload)
        if n:
            segments += 1
            if seg.seq in seen_payload:
                retrans += 1
            seen_payload.add(seg.seq)
            rel = (seg.seq - irs - 1) & M32
            if to_drop and rel <= to_drop[0] < rel + n and seg.seq not in ooo:
                dropped.append(rel)
                to_drop.pop(0)
                continue
            if seg.seq == rcv_nxt:
                data += seg.payload
                rcv_nxt = (rcv_nxt + n) & M32
                while rcv_nxt in ooo:
                    more = ooo.pop(rcv_nxt)
                    data += more
                    rcv_nxt = (rcv_nxt + len(more)) & M32
            elif after(seg.seq, rcv_nxt):
                ooo[seg.seq] = seg.payload
        if seg.flags & FIN:
            fin_at = (seg.seq + n) & M32
        if fin_at is not None and rcv_nxt == fin_at and not ooo:
            rcv_nxt = (rcv_nxt + 1) & M32
            # Our FIN with the ACK of theirs, then wait for their last ACK.
            peer.send(FIN | ACK, my_seq, rcv_nxt, window)
            last = peer.recv(5.0)
            while last is not None and not (last.flags & ACK and last.ack == (my_seq + 1) & M32):
                last = peer.recv(5.0)
            if last is None:
                raise TimeoutError("no ACK of our FIN")
            break
        ack(my_seq)
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    assert sep, "no HTTP header in the response"
    return Download(body=body, headers=head, segments=segments, dropped=dropped,
                    sacks_sent=sacks, retransmissions_seen=retrans, max_window=max_window)
