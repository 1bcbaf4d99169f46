"""A tc program run packet by packet through BPF_PROG_TEST_RUN, in a scratch
namespace whose ports stand in for the switch's: the rig of the Miresga
switch's and the l4switch's packet tests.

`run` hands the program one packet as if it arrived on a port and returns the
verdict, the packet as the program left it, the port it redirected to and the
counters that moved.  Every packet the program changes or redirects has its
checksums checked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from scapy.all import TCP, Ether, raw

from common.netns import ifindex, netns
from common.scratch_ns import ScratchNs
from switchhost import bpf
from packets import assert_checksums


@dataclass
class Out:
    retval: int
    data: bytes
    egress: str | None
    delta: dict[str, int]

    @property
    def pkt(self) -> Ether:
        return Ether(self.data)


class TcRig:
    """`sw` is a loaded switch driver (program_fd(), counters()); `ports` names its ports."""

    def __init__(self, ns: ScratchNs, sw, ports):
        self.ns, self.sw = ns, sw
        self.ifindex = {p: ifindex(ns.name, p) for p in ports}
        self.port_of = {v: k for k, v in self.ifindex.items()}
        self.fd = sw.program_fd()

    def counters(self) -> dict[str, int]:
        return self.sw.counters()

    def run(self, pkt, port: str = "c0", gso_size: int = 0) -> Out:
        # struct __sk_buff (uapi/linux/bpf.h): ifindex at 40, cb[] at 48,
        # gso_segs at 164, gso_size at 176; 192 bytes in all.
        ctx = bytearray(192)
        struct.pack_into("=I", ctx, 40, self.ifindex[port])
        if gso_size:
            payload = len(pkt[TCP].payload)
            struct.pack_into("=I", ctx, 164, -(-payload // gso_size))
            struct.pack_into("=I", ctx, 176, gso_size)
        before = self.counters()
        with netns(self.ns.name):
            r = bpf.prog_test_run(self.fd, raw(pkt), ctx=bytes(ctx))
        after = self.counters()
        delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
        egress_ifindex = struct.unpack_from("=I", r.ctx, 48)[0]
        out = Out(r.retval, r.data, self.port_of.get(egress_ifindex), delta)
        if out.retval == bpf.TC_ACT_REDIRECT or out.data != raw(pkt):
            assert_checksums(out.pkt)
        return out
