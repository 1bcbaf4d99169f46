"""Packet checks the tests share: checksums scapy recomputes, one's-complement
sums, and frames captured where they land with their tp_status.

A frame whose checksums are checked here must be TCP over IPv4.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from scapy.all import IP, TCP, Ether, raw

from common.netns import netns

SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_CSUMNOTREADY = 1 << 3
PACKET_OUTGOING = 4


def checksums_ok(p: Ether) -> bool:
    """Both checksums of a frame equal what scapy computes from scratch."""
    q = p.copy()
    del q[IP].chksum
    del q[TCP].chksum
    q = Ether(raw(q))
    return q[IP].chksum == p[IP].chksum and q[TCP].chksum == p[TCP].chksum


def assert_checksums(pkt: Ether) -> None:
    """IP and TCP checksums of `pkt` are what scapy computes from scratch."""
    if IP not in pkt:
        return
    again = pkt.copy()
    del again[IP].chksum
    if TCP in again:
        del again[TCP].chksum
    again = Ether(raw(again))
    assert pkt[IP].chksum == again[IP].chksum, "IP checksum"
    if TCP in pkt:
        assert pkt[TCP].chksum == again[TCP].chksum, "TCP checksum"


def routed(p: Ether, dst_mac: str, src_mac: str, **fields) -> Ether:
    """`p` as a switch forwards it: new MACs, TTL - 1, rewritten fields, checksums."""
    q = p.copy()
    q[Ether].dst, q[Ether].src = dst_mac, src_mac
    q[IP].ttl -= 1
    for k, v in fields.items():
        setattr(q[TCP] if k in ("sport", "dport") else q[IP], k, v)
    del q[IP].chksum
    del q[TCP].chksum
    return Ether(raw(q))


def ones_sum(b: bytes) -> int:
    """One's-complement sum of the big-endian 16-bit words of `b`, folded to 16 bits."""
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


class Capture:
    """Frames arriving on an interface of a namespace (AF_PACKET), with their
    tp_status, so that a CHECKSUM_PARTIAL frame can be told apart."""

    def __init__(self, ns: str, ifname: str):
        with netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            self.sock.bind((ifname, 0))
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.sock.settimeout(0.1)
        self.frames: list[tuple[bytes, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, anc, _, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(20))
            except (TimeoutError, socket.timeout):
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            status = 0
            for level, kind, blob in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status = struct.unpack_from("=I", blob)[0]
            self.frames.append((data, status))

    def wait_for(self, match, timeout: float = 5.0) -> list[tuple[Ether, int]]:
        """Frames (parsed, tp_status) for which match(pkt) holds, once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [(Ether(d), st) for d, st in list(self.frames) if match(Ether(d))]
            if hits:
                return hits
            time.sleep(0.05)
        return []

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()
