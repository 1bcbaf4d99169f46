"""The af_xdp port's XDP program (miresga/frontend/fe_xsk.bpf.c), frame by frame.

Through BPF_PROG_TEST_RUN, Katran style: a table of frames built with scapy
and the verdict each must get.  The program hands the front-end's frames to
its AF_XDP socket and leaves every other frame to the kernel.  No socket is
in xsks_map here, so a frame the program steers to the front-end comes back
XDP_DROP (its fallback) and one it leaves to the kernel XDP_PASS: the two
verdicts tell the decisions apart.
"""

from __future__ import annotations

import ctypes

import pytest
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, IPv6, Raw, raw

from miresga.control.frontend import XSK_OBJECT
from switchhost import bpf
from switchhost.addresses import ip_be, port_be

pytestmark = pytest.mark.root  # loads the program and runs it through BPF_PROG_TEST_RUN

XDP_DROP, XDP_PASS = 1, 2
FE_XSK_TO, FE_XSK_FROM = 1, 2
VIP = "10.10.0.100"
HOST = "10.10.2.2"                  # the front-end host's own address on the link
SWITCH = "10.10.2.1"
CLIENT = "198.18.0.10"
BACKENDS = [("10.10.11.2", 80), ("10.10.12.2", 8080)]
ETH = Ether(src="02:4d:47:00:02:01", dst="02:4d:47:00:02:02")


class Key(ctypes.Structure):
    """struct fe_xsk_key (fe_xsk.h)."""
    _fields_ = [("addr_be", ctypes.c_uint32), ("port_be", ctypes.c_uint16),
                ("pad", ctypes.c_uint16)]


def key(addr: str, port: int) -> Key:
    return Key(ip_be(addr), port_be(port), 0)


@pytest.fixture(scope="module")
def program():
    """The program loaded, its steering map as the front-end fills it."""
    with bpf.BpfObject(str(XSK_OBJECT)) as obj:
        obj.load()
        steer = obj.map("fe_xsk_steer", Key, ctypes.c_uint8)
        steer.update(key(VIP, 80), ctypes.c_uint8(FE_XSK_TO))
        for addr, port in BACKENDS:
            steer.update(key(addr, port), ctypes.c_uint8(FE_XSK_FROM))
        yield obj.program_fd("fe_xsk"), steer


def verdict(prog_fd: int, frame) -> int:
    return bpf.prog_test_run(prog_fd, raw(frame)).retval


CASES = [
    ("a client's request to the VIP's port", XDP_DROP,
     ETH / IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"GET /")),
    ("a client's FIN to the VIP's port", XDP_DROP,
     ETH / IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=80, flags="FA")),
    ("a back-end's SYN-ACK to a client", XDP_DROP,
     ETH / IP(src="10.10.11.2", dst=CLIENT) / TCP(sport=80, dport=40000, flags="SA")),
    ("a back-end's data on its second port", XDP_DROP,
     ETH / IP(src="10.10.12.2", dst=CLIENT) / TCP(sport=8080, dport=40000, flags="PA")),
    ("IP options do not hide the TCP header", XDP_DROP,
     ETH / IP(src=CLIENT, dst=VIP, options=[b"\x94\x04\x00\x00"]) / TCP(sport=1, dport=80)),
    ("the VIP on another port: not the service", XDP_PASS,
     ETH / IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=443)),
    ("a back-end on a port that is not its service's", XDP_PASS,
     ETH / IP(src="10.10.11.2", dst=HOST) / TCP(sport=22, dport=50000)),
    ("a back-end's address as destination (the front-end sends those)", XDP_PASS,
     ETH / IP(src=CLIENT, dst="10.10.11.2") / TCP(sport=40000, dport=80)),
    ("the offload channel's reply to the host's kernel", XDP_PASS,
     ETH / IP(src=SWITCH, dst=HOST) / TCP(sport=7470, dport=51000, flags="SA")),
    ("ARP", XDP_PASS, ETH / ARP(psrc=SWITCH, pdst=HOST)),
    ("ICMP to the VIP", XDP_PASS, ETH / IP(src=CLIENT, dst=VIP) / ICMP()),
    ("UDP to the VIP's port", XDP_PASS, ETH / IP(src=CLIENT, dst=VIP) / UDP(sport=1, dport=80)),
    ("IPv6", XDP_PASS, ETH / IPv6(dst="fe80::1") / TCP(dport=80)),
    ("a TCP header cut short", XDP_PASS, ETH / IP(src=CLIENT, dst=VIP, proto=6) / Raw(b"\x9c\x40")),
]


@pytest.mark.parametrize("what, want, frame", CASES, ids=[c[0] for c in CASES])
def test_frame_goes_where_it_belongs(program, what, want, frame):
    prog_fd, _ = program
    assert verdict(prog_fd, frame) == want, what


def test_empty_map_leaves_every_frame_to_the_kernel():
    """Before the front-end has filled the map (its port is coming up), even its
    own frames go to the kernel: nothing is dropped for want of a socket."""
    with bpf.BpfObject(str(XSK_OBJECT)) as obj:
        obj.load()
        frame = ETH / IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=80, flags="PA")
        assert verdict(obj.program_fd("fe_xsk"), frame) == XDP_PASS
