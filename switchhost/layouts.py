"""Python mirror of miresga/include/miresga.h.

This is the only Python copy of the shared layouts.  tests/test_layouts.py
compiles a probe against the C header and checks every size and offset here,
so the two cannot drift apart silently.
"""

from __future__ import annotations

import ctypes
import enum
import socket
import struct

FLOW_CAPACITY_DEFAULT = 143_360
MAX_BACKENDS = 256
MAX_FRONTENDS = 16
FE_SLOTS_DEFAULT = 1021
FE_SLOTS_MAX = 65537
FE_NONE = 0xFF
MAX_VIPS = 16
MAX_PORTS = 256

# Marks (miresga.h, "marks"): DSCP values, RFC 2474 pool 2.
DSCP_NONE = 0x00
DSCP_ADMIT = 0x03
DSCP_KNOWN = 0x07
DSCP_INSTALL = 0x0B
DSCP_REMOVE = 0x0F
DSCP_REMOVE_CTL = 0x13
DSCP_MIRESGA = 0x17
DSCP_MARKS = frozenset({DSCP_ADMIT, DSCP_KNOWN, DSCP_INSTALL, DSCP_REMOVE, DSCP_REMOVE_CTL,
                        DSCP_MIRESGA})

PORT_FRONTEND = 0x1
DP_TICK_SHIFT = 20
DP_SLOTS_LOG2_MAX = 24
DP_SLOTS_DEFAULT = 1 << 17
DP_WAYS_DEFAULT = 2


class VipKey(ctypes.Structure):
    _fields_ = [("ip_be", ctypes.c_uint32), ("port_be", ctypes.c_uint16), ("_pad", ctypes.c_uint16)]


class Vip(ctypes.Structure):
    _fields_ = [("vip_idx", ctypes.c_uint8), ("_pad", ctypes.c_uint8 * 3)]


class FlowKey(ctypes.Structure):
    _fields_ = [
        ("client_ip_be", ctypes.c_uint32),
        ("client_port_be", ctypes.c_uint16),
        ("_pad", ctypes.c_uint16),
    ]


class Flow(ctypes.Structure):
    _fields_ = [
        ("backend_idx", ctypes.c_uint8),
        ("vip_idx", ctypes.c_uint8),
        ("_pad", ctypes.c_uint16),
        ("last_seen_s", ctypes.c_uint32),
    ]


class BackendKey(ctypes.Structure):
    _fields_ = [("ip_be", ctypes.c_uint32), ("port_be", ctypes.c_uint16), ("_pad", ctypes.c_uint16)]


class Backend(ctypes.Structure):
    _fields_ = [
        ("ip_be", ctypes.c_uint32),
        ("port_be", ctypes.c_uint16),
        ("mac", ctypes.c_uint8 * 6),
        ("src_mac", ctypes.c_uint8 * 6),
        ("ifindex", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class Frontend(ctypes.Structure):
    _fields_ = [
        ("ip_be", ctypes.c_uint32),
        ("mac", ctypes.c_uint8 * 6),
        ("src_mac", ctypes.c_uint8 * 6),
        ("ifindex", ctypes.c_uint32),
    ]


class FeSlot(ctypes.Structure):
    _fields_ = [("active", ctypes.c_uint8), ("stable", ctypes.c_uint8),
                ("_pad", ctypes.c_uint8 * 2)]


class Port(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32)]


class DpSlot(ctypes.Structure):
    _fields_ = [
        ("client_ip_be", ctypes.c_uint32),
        ("client_port_be", ctypes.c_uint16),
        ("backend_idx", ctypes.c_uint8),
        ("vip_idx", ctypes.c_uint8),
        ("last_seen", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class CookieKey(ctypes.Structure):
    _fields_ = [("k0", ctypes.c_uint32), ("k1", ctypes.c_uint32)]


class SwitchConfig(ctypes.Structure):
    _fields_ = [
        ("keys", CookieKey * 2),
        ("epoch", ctypes.c_uint32),
        ("fe_slots", ctypes.c_uint32),
        ("mss", ctypes.c_uint16),
        ("window", ctypes.c_uint16),
        ("wscale", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8 * 3),
        ("now_s", ctypes.c_uint32),
        ("filter_key", CookieKey),
        ("filter_gen", ctypes.c_uint32),
        ("filter_bits_log2", ctypes.c_uint32),
        ("dp_slots_log2", ctypes.c_uint32),
        ("dp_ways", ctypes.c_uint32),
        ("dp_idle_ticks", ctypes.c_uint32),
        ("dp_seed", CookieKey),
    ]


class SwitchCounter(enum.IntEnum):
    PKTS = 0
    PASS = enum.auto()
    SYN_COOKIE = enum.auto()
    SYN_BAD_OPTIONS = enum.auto()
    COOKIE_OK = enum.auto()
    COOKIE_BAD = enum.auto()
    TO_FRONTEND = enum.auto()
    TO_FRONTEND_BYTES = enum.auto()
    OFFLOAD_FWD = enum.auto()
    OFFLOAD_FWD_BYTES = enum.auto()
    OFFLOAD_REV = enum.auto()
    OFFLOAD_REV_BYTES = enum.auto()
    REV_TO_FRONTEND = enum.auto()
    REV_TO_FRONTEND_BYTES = enum.auto()
    MALFORMED = enum.auto()
    VIP_NOT_TCP = enum.auto()
    NO_FRONTEND = enum.auto()
    FIB_MISS = enum.auto()
    CONN_KNOWN = enum.auto()
    VIP_MALFORMED = enum.auto()
    TTL_EXCEEDED = enum.auto()
    FE_ADMIT = enum.auto()
    FE_KNOWN = enum.auto()
    MARK_CLEARED = enum.auto()
    MARK_UNTRUSTED = enum.auto()
    FUSED_SYN_FORGED = enum.auto()
    BE_UNMARKED = enum.auto()
    BE_WRONG_PORT = enum.auto()
    DP_INSTALL = enum.auto()
    DP_REINSTALL = enum.auto()
    DP_COLLISION = enum.auto()
    DP_INSTALL_RACE = enum.auto()
    DP_INSTALL_BAD = enum.auto()
    DP_REMOVE = enum.auto()
    DP_REMOVE_MISS = enum.auto()
    CTL_CONSUMED = enum.auto()
    DP_HIT = enum.auto()
    DP_EXPIRED = enum.auto()
    FE_MOVED = enum.auto()
    FE_DRAINING = enum.auto()


SWITCH_COUNTER_MAX = len(SwitchCounter)

# ------------------------------------------------------------------ cookie

COOKIE_HASH_MASK = 0xFFFFFF00
COOKIE_MSS_SHIFT = 6
COOKIE_WSCALE_SHIFT = 2
COOKIE_SACK_BIT = 0x2
COOKIE_EPOCH_BIT = 0x1
COOKIE_NO_WSCALE = 15
MSS_CLASSES = (536, 1220, 1440, 1460)


def mss_class(mss: int) -> int:
    for cls in range(len(MSS_CLASSES) - 1, 0, -1):
        if mss >= MSS_CLASSES[cls]:
            return cls
    return 0


def cookie_low_byte(mss_cls: int, wscale: int | None, sack: bool, epoch: int) -> int:
    ws = COOKIE_NO_WSCALE if wscale is None or wscale > 14 else wscale
    return ((mss_cls & 3) << COOKIE_MSS_SHIFT) | ((ws & 0xF) << COOKIE_WSCALE_SHIFT) | (
        COOKIE_SACK_BIT if sack else 0
    ) | (epoch & COOKIE_EPOCH_BIT)


def cookie_fields(cookie: int) -> dict:
    """What the front-end reads back from a cookie: the client's options."""
    ws = (cookie >> COOKIE_WSCALE_SHIFT) & 0xF
    return {
        "mss": MSS_CLASSES[(cookie >> COOKIE_MSS_SHIFT) & 3],
        "wscale": None if ws == COOKIE_NO_WSCALE else ws,
        "sack": bool(cookie & COOKIE_SACK_BIT),
        "epoch_bit": cookie & COOKIE_EPOCH_BIT,
    }


M32 = 0xFFFFFFFF


def mix32(h: int) -> int:
    """mg_mix32() of miresga.h (murmur3's finaliser): front-end choice, seen
    filter, the data-plane table's hash, the l4switch's Maglev slot."""
    h &= M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def dp_hash(seed: tuple[int, int], ip_be: int, port_be: int, way: int) -> int:
    """mg_dp_hash() of miresga.h: over the raw network-order words, as a C
    struct holds them (ip_be, port_be as switchhost.addresses.ip_be/port_be give)."""
    h = mix32(ip_be ^ mix32(port_be ^ seed[0]))
    return mix32(h ^ seed[1]) if way else h


def dp_slot_index(seed: tuple[int, int], ip_be: int, port_be: int, way: int,
                  slots_log2: int) -> int:
    """Index of (client IP, port)'s slot in way `way` of the data-plane table."""
    return (way << slots_log2) | (dp_hash(seed, ip_be, port_be, way) & ((1 << slots_log2) - 1))


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (32 - b))) & 0xFFFFFFFF


def halfsiphash24(k0: int, k1: int, words: list[int]) -> int:
    """HalfSipHash-2-4, 32-bit output, over whole little-endian words."""
    m = 0xFFFFFFFF
    v0, v1 = k0, k1
    v2, v3 = 0x6C796765 ^ k0, 0x74656462 ^ k1

    def rnd():
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & m; v1 = _rotl(v1, 5); v1 ^= v0; v0 = _rotl(v0, 16)  # noqa: E702
        v2 = (v2 + v3) & m; v3 = _rotl(v3, 8); v3 ^= v2  # noqa: E702
        v0 = (v0 + v3) & m; v3 = _rotl(v3, 7); v3 ^= v0  # noqa: E702
        v2 = (v2 + v1) & m; v1 = _rotl(v1, 13); v1 ^= v2; v2 = _rotl(v2, 16)  # noqa: E702

    for w in list(words) + [(len(words) * 4) << 24 & m]:
        v3 ^= w
        rnd()
        rnd()
        v0 ^= w
    v2 ^= 0xFF
    for _ in range(4):
        rnd()
    return v1 ^ v3


def _be32_as_host(ip: str) -> int:
    # The C code hashes the raw network-order word as a host-order integer on
    # a little-endian machine; do the same so both sides produce one value.
    return struct.unpack("<I", socket.inet_aton(ip))[0]


def _be16_as_host(port: int) -> int:
    return struct.unpack("<H", struct.pack(">H", port))[0]


def cookie_make(key: tuple[int, int], saddr: str, daddr: str, sport: int, dport: int,
                client_isn: int, epoch: int, low_byte: int) -> int:
    ports = (_be16_as_host(sport) << 16) | _be16_as_host(dport)
    h = halfsiphash24(key[0], key[1], [
        _be32_as_host(saddr), _be32_as_host(daddr), ports, client_isn & 0xFFFFFFFF,
        ((epoch << 8) | (low_byte & 0xFF)) & 0xFFFFFFFF,
    ])
    cookie = (h & COOKIE_HASH_MASK) | (low_byte & 0xFF)
    # Never 0, as in miresga.h: an agent takes a fused SYN with ack field 0
    # for a plain SYN.
    return cookie or 1 << 8


# ---------------------------------------- the switch host's control protocol

CTL_MAGIC = 0x4D475332              # "MGS2"
CTL_VERSION = 2
CTL_MAX_BATCH = 512
CTL_MAX_BODY = 65535
CTL_PORT_DEFAULT = 7470
CTL_KEY_LEN = 32
CTL_NONCE_LEN = 16
CTL_HMAC_LEN = 32
CTL_MAC_LEN = 16
CTL_DIR_TO_SERVER = 0
CTL_DIR_TO_CLIENT = 1


class CtlType(enum.IntEnum):
    BATCH = 1
    ACK = 2
    HELLO = 3
    AUTH = 4
    QUERY = 5
    REPLY = 6
    CMD = 7
    RESULT = 8
    AUTH_OK = 9


class CtlOp(enum.IntEnum):
    ADD = 1
    DEL = 2


# Wire formats (network order), the same bytes as the C structs.
CTL_HDR = struct.Struct("!IBBHI")          # magic, version, type, count, seq
CTL_ENTRY = struct.Struct("!4sHBBB3x")     # client ip, client port, op, backend, vip
CTL_ACK = struct.Struct("!IHHH2x")         # seq, added, deleted, refused; then the bitmap
CTL_KEY = struct.Struct("!4sHBx")          # client ip, client port, vip
CTL_LIVENESS = struct.Struct("!BB2xI")     # present, backend, idle ms


def ctl_ack_words(count: int) -> int:
    """mg_ctl_ack_words(): 32-bit words of an ACK's refusal bitmap."""
    return (count + 31) // 32


def ctl_body_len(typ: int, count: int) -> int | None:
    """mg_ctl_body_len(): a message's body length from its header; None if malformed."""
    per_entry = {CtlType.BATCH: CTL_ENTRY.size, CtlType.QUERY: CTL_KEY.size,
                 CtlType.REPLY: CTL_LIVENESS.size}
    if typ in per_entry:
        return count * per_entry[typ] if 1 <= count <= CTL_MAX_BATCH else None
    if typ == CtlType.ACK:
        return CTL_ACK.size + 4 * ctl_ack_words(count) if 1 <= count <= CTL_MAX_BATCH else None
    if typ in (CtlType.CMD, CtlType.RESULT):
        return count if count >= 2 else None
    handshake = {CtlType.HELLO: CTL_NONCE_LEN, CtlType.AUTH: CTL_NONCE_LEN + CTL_HMAC_LEN,
                 CtlType.AUTH_OK: CTL_HMAC_LEN}
    if typ in handshake:
        return handshake[typ] if count == 0 else None
    return None
