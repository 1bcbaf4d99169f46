"""The switch host's control protocol, version 2: what both of its sides share.

The wire format and the handshake are defined once, in
miresga/include/miresga.h (mirrored in switchhost/layouts.py); the server is
switchhost/server.py, the Python client switchhost/client.py, the front-end's
C client miresga/frontend/fe_offload.c.  This module holds the codec and the
authentication they both need:

- the keys (the daemon's, and each front-end's own, which both ends of its
  connection hold): `read_key()` reads a file the deploy installed (hex,
  readable by its owner only: a key anyone on the host can read is refused);
- the handshake's proofs, `client_proof()` and `server_proof()`;
- `Macs`, the MAC of every message after the handshake, with the counter of
  each direction that makes a replayed or reordered message fail;
- headers, and the bodies of every message type.

Standard library only (hmac, hashlib, secrets): the daemon runs on a switch
host with a bare python3.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from switchhost import layouts as L
from switchhost.layouts import CtlOp
from switchhost.pipeline import FlowKey, FlowOp, Liveness


class ProtocolError(Exception):
    """A malformed message: the connection it came on is closed."""


class AuthError(ProtocolError):
    """A peer that does not know the key, or a message whose MAC is wrong."""


# --------------------------------------------------------------------- key

def read_key(path: str | Path) -> bytes:
    """A control key from its file: 64 hex digits, the file readable by its owner only."""
    try:
        st = os.stat(path)
        text = Path(path).read_text()
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror}") from None
    if st.st_mode & 0o077:
        raise ValueError(f"{path}: mode {st.st_mode & 0o777:04o}: a control key must be "
                         f"readable by its owner only (chmod 600)")
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != L.CTL_KEY_LEN:
        raise ValueError(f"{path}: expected {2 * L.CTL_KEY_LEN} hex digits (a "
                         f"{L.CTL_KEY_LEN}-byte key)")
    return key


def new_key() -> str:
    """A fresh key, as the hex its file holds."""
    return os.urandom(L.CTL_KEY_LEN).hex()


# --------------------------------------------------------------- handshake

def _hmac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def client_proof(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return _hmac(key, b"MGS2c", server_nonce, client_nonce)


def server_proof(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return _hmac(key, b"MGS2s", client_nonce, server_nonce)


def new_nonce() -> bytes:
    return os.urandom(L.CTL_NONCE_LEN)


class Macs:
    """The MACs of one authenticated connection, as one of its two ends sees them.

    MAC = HMAC-SHA256(key, Ns || Nc || dir || counter || hdr || body)[:16],
    counter = messages already sent that way on this connection.
    """

    _COUNTER = struct.Struct("!BQ")

    def __init__(self, key: bytes, server_nonce: bytes, client_nonce: bytes, server: bool):
        self._key = key
        self._nonces = server_nonce + client_nonce
        self._out = L.CTL_DIR_TO_CLIENT if server else L.CTL_DIR_TO_SERVER
        self._in = L.CTL_DIR_TO_SERVER if server else L.CTL_DIR_TO_CLIENT
        self.sent = 0
        self.received = 0

    def _mac(self, direction: int, counter: int, message: bytes) -> bytes:
        return _hmac(self._key, self._nonces, self._COUNTER.pack(direction, counter),
                     message)[:L.CTL_MAC_LEN]

    def seal(self, message: bytes) -> bytes:
        """The message (header and body) with its MAC appended."""
        mac = self._mac(self._out, self.sent, message)
        self.sent += 1
        return message + mac

    def check(self, message: bytes, mac: bytes) -> None:
        expected = self._mac(self._in, self.received, message)
        self.received += 1
        if not hmac.compare_digest(expected, mac):
            raise AuthError("bad MAC")


# ------------------------------------------------------------------ header

def header(typ: int, count: int, seq: int = 0) -> bytes:
    return L.CTL_HDR.pack(L.CTL_MAGIC, L.CTL_VERSION, typ, count, seq & 0xFFFFFFFF)


def parse_header(b: bytes) -> tuple[int, int, int, int]:
    """(type, count, seq, body length) of a header; ProtocolError if it is not one."""
    magic, version, typ, count, seq = L.CTL_HDR.unpack(b)
    if magic != L.CTL_MAGIC or version != L.CTL_VERSION:
        raise ProtocolError(f"not an MGS2 header: magic {magic:#x} version {version}")
    length = L.ctl_body_len(typ, count)
    if length is None:
        raise ProtocolError(f"type {typ} with count {count} is not a message")
    return typ, count, seq, length


def handshake_message(typ: int, body: bytes) -> bytes:
    return header(typ, 0) + body


# ------------------------------------------------------------------ bodies

def _ip_be(raw: bytes) -> int:
    return struct.unpack("=I", raw)[0]


def _port_be(port: int) -> int:
    return struct.unpack("=H", struct.pack("!H", port))[0]


@dataclass(frozen=True)
class Entry:
    """One add or delete of a BATCH, in readable form."""

    client_ip: str
    client_port: int
    op: int = CtlOp.ADD
    backend_idx: int = 0
    vip_idx: int = 0

    def encode(self) -> bytes:
        return L.CTL_ENTRY.pack(socket.inet_aton(self.client_ip), self.client_port, self.op,
                                self.backend_idx, self.vip_idx)


@dataclass(frozen=True)
class Key:
    """One key of a QUERY, in readable form."""

    client_ip: str
    client_port: int
    vip_idx: int = 0

    def encode(self) -> bytes:
        return L.CTL_KEY.pack(socket.inet_aton(self.client_ip), self.client_port, self.vip_idx)


def decode_entries(body: bytes) -> list[FlowOp]:
    """A BATCH body as the pipeline takes it (addresses as network-order words)."""
    return [FlowOp(op, _ip_be(ip), _port_be(port), backend, vip)
            for ip, port, op, backend, vip in L.CTL_ENTRY.iter_unpack(body)]


def decode_keys(body: bytes) -> list[FlowKey]:
    return [FlowKey(_ip_be(ip), _port_be(port), vip)
            for ip, port, vip in L.CTL_KEY.iter_unpack(body)]


@dataclass(frozen=True)
class Ack:
    seq: int
    added: int
    deleted: int
    refused: int
    refused_at: frozenset[int] = field(default_factory=frozenset)   # entries of the batch

    def encode(self, count: int) -> bytes:
        clamp = lambda n: min(n, 0xFFFF)  # noqa: E731 - a batch count fits; be safe anyway
        words = [0] * L.ctl_ack_words(count)
        for i in self.refused_at:
            words[i // 32] |= 1 << (i % 32)
        return (L.CTL_ACK.pack(self.seq & 0xFFFFFFFF, clamp(self.added), clamp(self.deleted),
                               clamp(self.refused))
                + struct.pack(f"!{len(words)}I", *words))

    @classmethod
    def decode(cls, count: int, body: bytes) -> "Ack":
        seq, added, deleted, refused = L.CTL_ACK.unpack_from(body)
        words = struct.unpack_from(f"!{L.ctl_ack_words(count)}I", body, L.CTL_ACK.size)
        bits = frozenset(i for i in range(count) if words[i // 32] >> (i % 32) & 1)
        return cls(seq, added, deleted, refused, bits)


def encode_reply(answers: list[Liveness]) -> bytes:
    return b"".join(L.CTL_LIVENESS.pack(int(a.present), a.backend_idx,
                                        min(a.idle_ms, 0xFFFFFFFF)) for a in answers)


def decode_reply(body: bytes) -> list[Liveness]:
    return [Liveness(bool(present), backend, idle)
            for present, backend, idle in L.CTL_LIVENESS.iter_unpack(body)]


# A NOTICE's `what`, by the name the pipeline gives it.
NOTICES = {"drain": L.CtlNoticeWhat.DRAIN, "resume": L.CtlNoticeWhat.RESUME}


def notice(what: str) -> bytes:
    """A NOTICE message (header and body, no MAC): the server tells a front-end `what`."""
    return header(L.CtlType.NOTICE, 1, 0) + L.CTL_NOTICE.pack(NOTICES[what])


def decode_notice(body: bytes) -> str:
    (code,) = L.CTL_NOTICE.unpack(body)
    for name, value in NOTICES.items():
        if value == code:
            return name
    raise ProtocolError(f"NOTICE {code} is not one of {sorted(NOTICES)}")


def encode_json(obj: dict) -> bytes:
    """A CMD or RESULT body; ValueError if it would not fit in one message."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    if len(body) > L.CTL_MAX_BODY:
        raise ValueError(f"{len(body)} bytes of JSON: a message holds at most {L.CTL_MAX_BODY}")
    return body


def decode_json(body: bytes) -> dict:
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("JSON body is not an object")
    return obj
