"""The layouts of targets/l4switch/l4switch.h, mirrored once in ctypes.

The VIP and back-end tables use Miresga's layouts (switchhost.layouts:
VipKey, Vip, BackendKey, Backend); what is the l4switch's own is here.
tests/test_l4switch.py checks sizes, offsets, constants and the flow hash
against the C compiler (build/l4switch-layout-probe).  Standard library only:
the pipeline runs on a switch host with a bare python3.
"""

from __future__ import annotations

import ctypes
import enum

from switchhost.addresses import ip_be, port_be
from switchhost.layouts import M32, mix32

MAGLEV_SIZE_DEFAULT = 65537
CONN_CAPACITY_DEFAULT = 262_144
BACKEND_NONE = 0xFFFFFFFF

CONN_REVERSE = 0x1
CONN_FIN_CLIENT = 0x2
CONN_FIN_BACKEND = 0x4
CONN_RST = 0x8

u32 = ctypes.c_uint32
u16 = ctypes.c_uint16


class ConnKey(ctypes.Structure):
    _fields_ = [("client_ip_be", u32), ("peer_ip_be", u32), ("client_port_be", u16),
                ("peer_port_be", u16)]


class Conn(ctypes.Structure):
    _fields_ = [("idx", u32), ("flags", u32), ("last_seen_s", u32)]


class Config(ctypes.Structure):
    _fields_ = [("now_s", u32), ("maglev_size", u32), ("vip_capacity", u32),
                ("maglev_gen", u32), ("hash_seed", u32), ("_pad", u32)]


class Counter(enum.IntEnum):
    PKTS = 0
    PASS = enum.auto()
    FWD = enum.auto()
    FWD_BYTES = enum.auto()
    REV = enum.auto()
    REV_BYTES = enum.auto()
    CONN_NEW = enum.auto()
    CONN_REOPENED = enum.auto()
    CONN_MISS = enum.auto()
    CONN_HIT = enum.auto()
    FIN = enum.auto()
    RST = enum.auto()
    RST_NO_CONN = enum.auto()
    NO_BACKEND = enum.auto()
    VIP_NOT_TCP = enum.auto()
    VIP_MALFORMED = enum.auto()
    REV_NO_CONN = enum.auto()
    FIB_MISS = enum.auto()
    FRAG_NEEDED = enum.auto()
    TTL_EXCEEDED = enum.auto()
    CONN_ADD_FAILED = enum.auto()
    CONN_DONE = enum.auto()


COUNTER_MAX = len(Counter)


def conn_closing(flags: int) -> bool:
    """l4_conn_closing(): a RST was seen, or a FIN from both sides."""
    both = CONN_FIN_CLIENT | CONN_FIN_BACKEND
    return bool(flags & CONN_RST) or (flags & both) == both


# ------------------------------------------------------------- flow hash

def flow_hash(seed: int, client: str, client_port: int, vip: str, vip_port: int) -> int:
    """l4_flow_hash(): which Maglev slot (hash % M) a connection takes."""
    # The C code hashes the raw network-order words, read as host-order
    # integers on this (little-endian) machine: what ip_be/port_be give.
    h = mix32((seed ^ ip_be(client)) & M32)
    h = mix32(h ^ ip_be(vip))
    return mix32(h ^ ((port_be(client_port) << 16) | port_be(vip_port)))
