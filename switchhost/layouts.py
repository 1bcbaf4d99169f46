"""The layouts of miresga/include/miresga.h, and its functions Python needs.

The structs, enums and constants come from switchhost/layouts_gen.py,
generated from the BTF of the compiled header (scripts/gen_layouts.py, run by
`make build`); what is written here is what BTF cannot carry: the functions
(cookie, hashes, message lengths), held to C's by tests/test_layouts.py.
"""

from __future__ import annotations

import socket
import struct

from switchhost.layouts_gen import (  # noqa: F401  (re-exported: the names code imports)
    COOKIE_EPOCH_BIT,
    COOKIE_HASH_MASK,
    COOKIE_MSS_SHIFT,
    COOKIE_NO_WSCALE,
    COOKIE_SACK_BIT,
    COOKIE_WSCALE_SHIFT,
    CTL_ACK,
    CTL_DIR_TO_CLIENT,
    CTL_DIR_TO_SERVER,
    CTL_ENTRY,
    CTL_HDR,
    CTL_HMAC_LEN,
    CTL_KEY,
    CTL_KEY_LEN,
    CTL_LIVENESS,
    CTL_NOTICE,
    CTL_MAC_LEN,
    CTL_MAGIC,
    CTL_MAX_BATCH,
    CTL_MAX_BODY,
    CTL_NONCE_LEN,
    CTL_PORT_DEFAULT,
    CTL_VERSION,
    DP_SLOTS_DEFAULT,
    DP_SLOTS_LOG2_MAX,
    DP_TICK_SHIFT,
    DP_WAYS_DEFAULT,
    DSCP_ADMIT,
    DSCP_BACKEND,
    DSCP_INSTALL,
    DSCP_KNOWN,
    DSCP_MIRESGA,
    DSCP_NONE,
    DSCP_REMOVE,
    DSCP_REMOVE_CTL,
    FE_NONE,
    FE_SLOTS_DEFAULT,
    FE_SLOTS_MAX,
    FLOW_CAPACITY_DEFAULT,
    MAX_BACKENDS,
    MAX_FRONTENDS,
    MAX_PORTS,
    MAX_VIPS,
    PORT_FRONTEND,
    SWITCH_COUNTER_MAX,
    Backend,
    BackendKey,
    CookieKey,
    CtlNoticeWhat,
    CtlOp,
    CtlType,
    DpSlot,
    FeSlot,
    Flow,
    FlowKey,
    Frontend,
    Port,
    SwitchConfig,
    SwitchCounter,
    Vip,
    VipKey,
)

# Marks (miresga.h, "marks"): DSCP values, RFC 2474 pool 2.
DSCP_MARKS = frozenset({DSCP_ADMIT, DSCP_KNOWN, DSCP_INSTALL, DSCP_REMOVE, DSCP_REMOVE_CTL,
                        DSCP_MIRESGA, DSCP_BACKEND})

# ------------------------------------------------------------------ cookie

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
    if typ == CtlType.NOTICE:
        return CTL_NOTICE.size if count == 1 else None
    handshake = {CtlType.HELLO: CTL_NONCE_LEN, CtlType.AUTH: CTL_NONCE_LEN + CTL_HMAC_LEN,
                 CtlType.AUTH_OK: CTL_HMAC_LEN}
    if typ in handshake:
        return handshake[typ] if count == 0 else None
    return None
