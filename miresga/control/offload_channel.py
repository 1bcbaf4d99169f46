"""The offload channel: front-ends push flow-table entries to the switch.

Wire format (miresga.h, mirrored in layouts.CTL_*; network byte order):

    front-end -> switch   mg_ctl_hdr {magic "MGS1", version 1, type BATCH, count, seq}
                          then `count` x mg_ctl_entry {client ip, client port, op ADD|DEL,
                                                       backend_idx, vip_idx}
    switch -> front-end   mg_ctl_hdr {magic, version, type ACK, count 1, seq}
                          then mg_ctl_ack {seq, added, deleted, refused}

Every BATCH is answered by one ACK carrying its seq, in order, once the
batch is installed.  The front-end need not wait for it: the channel is
asynchronous by design (DESIGN.md step 6); a front-end keeps forwarding a
flow until its entry is in, and `refused` tells it which flows stay with it.

What the server does with bad input:
- an entry with an unknown op, back-end or VIP index, or an ADD into a full
  table, is refused (counted in the ACK's `refused` and in the stats);
- a header with the right magic but a wrong version, type, or a count above
  MG_CTL_MAX_BATCH is a malformed message: counted, answered with an ACK
  that refuses `count` entries (so a sender waiting on that seq is not left
  hanging), and skipped;
- bytes that do not start with the magic are counted once per run and
  skipped up to the next magic: the stream resynchronises, the connection
  stays up.

Rate limit.  A Tofino's control plane installs on the order of 10^4 entries
per second (driver and PCIe bound); `rate` emulates such a limit with a
token bucket shared by all connections: a batch is installed in slices as
tokens arrive, and acknowledged when its last slice is in.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from dataclasses import asdict, dataclass, field

from miresga.control.layouts import (CTL_ACK, CTL_ENTRY, CTL_HDR, CTL_MAGIC, CTL_MAX_BATCH,
                                     CTL_PORT_DEFAULT, CTL_VERSION, CtlOp, CtlType)
from miresga.control.miresga_switch import ApplyResult, FlowOp

log = logging.getLogger("miresga.offload_channel")

MAGIC_BYTES = struct.pack("!I", CTL_MAGIC)


# ------------------------------------------------------------------ codec

@dataclass(frozen=True)
class Entry:
    """One add or delete, in readable form."""

    client_ip: str
    client_port: int
    op: int = CtlOp.ADD
    backend_idx: int = 0
    vip_idx: int = 0

    def encode(self) -> bytes:
        return CTL_ENTRY.pack(socket.inet_aton(self.client_ip), self.client_port, self.op,
                              self.backend_idx, self.vip_idx)

    @classmethod
    def decode(cls, b: bytes) -> "Entry":
        ip, port, op, be, vip = CTL_ENTRY.unpack(b)
        return cls(socket.inet_ntoa(ip), port, op, be, vip)


@dataclass(frozen=True)
class Ack:
    seq: int
    added: int
    deleted: int
    refused: int


def encode_batch(seq: int, entries: list[Entry]) -> bytes:
    if len(entries) > CTL_MAX_BATCH:
        raise ValueError(f"{len(entries)} entries: a batch holds at most {CTL_MAX_BATCH}")
    return (CTL_HDR.pack(CTL_MAGIC, CTL_VERSION, CtlType.BATCH, len(entries), seq & 0xFFFFFFFF)
            + b"".join(e.encode() for e in entries))


def encode_ack(seq: int, added: int, deleted: int, refused: int) -> bytes:
    clamp = lambda n: min(n, 0xFFFF)  # noqa: E731 - a batch count fits; be safe anyway
    return (CTL_HDR.pack(CTL_MAGIC, CTL_VERSION, CtlType.ACK, 1, seq & 0xFFFFFFFF)
            + CTL_ACK.pack(seq & 0xFFFFFFFF, clamp(added), clamp(deleted), clamp(refused)))


ACK_SIZE = CTL_HDR.size + CTL_ACK.size


def decode_ack(b: bytes) -> Ack:
    magic, version, typ, count, seq = CTL_HDR.unpack_from(b)
    if magic != CTL_MAGIC or version != CTL_VERSION or typ != CtlType.ACK or count != 1:
        raise ValueError(f"not an ACK: magic {magic:#x} version {version} type {typ}")
    aseq, added, deleted, refused = CTL_ACK.unpack_from(b, CTL_HDR.size)
    return Ack(aseq, added, deleted, refused)


# ----------------------------------------------------------------- client

class ChannelClient:
    """A blocking client, as a front-end would be: send batches, read ACKs.

    Used by tests and the benchmark, and a reference for the front-end's C
    implementation.  `send()` does not wait; `recv_ack()` reads the next ACK.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = CTL_PORT_DEFAULT,
                 timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seq = 0

    def send(self, entries: list[Entry]) -> int:
        self.seq += 1
        self.sock.sendall(encode_batch(self.seq, entries))
        return self.seq

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_ack(self) -> Ack:
        buf = b""
        while len(buf) < ACK_SIZE:
            chunk = self.sock.recv(ACK_SIZE - len(buf))
            if not chunk:
                raise ConnectionError("switch closed the offload channel")
            buf += chunk
        return decode_ack(buf)

    def batch(self, entries: list[Entry]) -> Ack:
        """Send one batch and wait for its ACK."""
        seq = self.send(entries)
        ack = self.recv_ack()
        if ack.seq != seq:
            raise ValueError(f"ACK for seq {ack.seq}, expected {seq}")
        return ack

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------ rate limit

class TokenBucket:
    """`rate` tokens per second, at most `burst` banked; async take()."""

    def __init__(self, rate: float, burst: float | None = None):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        # Default burst: 50 ms worth.  A batch is installed in slices of up
        # to `burst` entries, one slice per wake-up: slices much smaller than
        # the event loop's timer jitter would make the real rate fall short.
        self.burst = float(burst) if burst else max(1.0, self.rate / 20)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, n: int) -> int:
        """Wait for a slice of min(n, burst) tokens, take it, return its size."""
        want = max(1, min(n, int(self.burst)))
        while True:
            self._refill()
            if self.tokens >= want:
                self.tokens -= want
                return want
            await asyncio.sleep((want - self.tokens) / self.rate)


# ----------------------------------------------------------------- server

@dataclass
class ChannelStats:
    connections: int = 0        # accepted so far
    open_connections: int = 0
    batches: int = 0
    entries: int = 0
    malformed: int = 0          # malformed headers and runs of garbage
    refused: int = 0            # entries refused in ACKs (full + invalid + malformed)
    bytes_in: int = 0
    rate_limited_s: float = 0.0  # time batches spent waiting for tokens


# A peer that goes silent without closing (its host down, its link cut) is
# declared gone after KEEPALIVE_IDLE_S + KEEPALIVE_COUNT x KEEPALIVE_INTERVAL_S
# of silence, or USER_TIMEOUT_S with data unacknowledged: 3 s either way.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 1, 1, 2
USER_TIMEOUT_S = 3
PEER_SILENCE_S = max(KEEPALIVE_IDLE_S + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_S, USER_TIMEOUT_S)


def set_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_S * 1000)


@dataclass
class _Conn:
    peer: str
    buf: bytearray = field(default_factory=bytearray)
    in_garbage: bool = False


class ChannelServer:
    """Serves the offload channel for a FlowTable (miresga_switch.FlowTable).

    Runs in an asyncio loop: `await server.start()` inside one, or
    `SwitchDaemon` (switchd.py) for a thread or a process.
    """

    def __init__(self, table, host: str = "0.0.0.0", port: int = CTL_PORT_DEFAULT,
                 rate: float | None = None, burst: float | None = None):
        self.table = table
        self.host = host
        self.port = port
        self.bucket = TokenBucket(rate, burst) if rate else None
        self.stats = ChannelStats()
        self._server: asyncio.base_events.Server | None = None
        # One installer at a time: batches from several front-ends are
        # serialised as a switch driver would, and the bucket is shared.
        self._install_lock = asyncio.Lock()
        self._writers: set[asyncio.StreamWriter] = set()
        # Called with (peer address, True) when a connection opens and
        # (peer address, False) when it closes: a front-end's channel is its
        # heartbeat (switchd.FrontendLiveness).
        self.on_peer = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True)
        # Port 0 in tests: learn the one the kernel picked.
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn = _Conn(peer=f"{peer[0]}:{peer[1]}" if peer else "?")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            set_keepalive(sock)
        self._writers.add(writer)
        peer_ip = peer[0] if peer else None
        if self.on_peer is not None and peer_ip:
            self.on_peer(peer_ip, True)
        self.stats.connections += 1
        self.stats.open_connections += 1
        log.info("offload channel: %s connected", conn.peer)
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                self.stats.bytes_in += len(data)
                conn.buf += data
                await self._drain(conn, writer)
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            log.info("offload channel: %s: %s", conn.peer, e)
        finally:
            self._writers.discard(writer)
            self.stats.open_connections -= 1
            if self.on_peer is not None and peer_ip:
                self.on_peer(peer_ip, False)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass  # closing on shutdown; nothing left to tell the peer
            log.info("offload channel: %s closed", conn.peer)

    async def _drain(self, conn: _Conn, writer: asyncio.StreamWriter) -> None:
        """Handle every complete message in the connection's buffer."""
        buf = conn.buf
        while len(buf) >= CTL_HDR.size:
            magic, version, typ, count, seq = CTL_HDR.unpack_from(buf)
            if magic != CTL_MAGIC:
                # Resynchronise: skip to the next magic, keeping a possible
                # partial magic at the end of the buffer.
                if not conn.in_garbage:
                    self.stats.malformed += 1
                    conn.in_garbage = True
                    log.warning("offload channel: %s: bad magic %#x, resynchronising",
                                conn.peer, magic)
                nxt = buf.find(MAGIC_BYTES, 1)
                del buf[:nxt if nxt > 0 else max(1, len(buf) - 3)]
                continue
            conn.in_garbage = False
            if version != CTL_VERSION or typ != CtlType.BATCH or count > CTL_MAX_BATCH:
                self.stats.malformed += 1
                self.stats.refused += count
                log.warning("offload channel: %s: malformed message seq %d (version %d, "
                            "type %d, count %d)", conn.peer, seq, version, typ, count)
                writer.write(encode_ack(seq, 0, 0, count))
                # The length cannot be trusted: drop the header, resync on
                # the next magic (the body, if any, is skipped as garbage
                # without being counted again).
                del buf[:4]
                conn.in_garbage = True
                continue
            size = CTL_HDR.size + count * CTL_ENTRY.size
            if len(buf) < size:
                break  # wait for the rest of the batch
            body = bytes(buf[CTL_HDR.size:size])
            del buf[:size]
            ack = await self._install(seq, body, count)
            writer.write(ack)
        await writer.drain()

    async def _install(self, seq: int, body: bytes, count: int) -> bytes:
        ops = []
        for i in range(count):
            ip, port, op, be, vip = CTL_ENTRY.unpack_from(body, i * CTL_ENTRY.size)
            # Keys are stored as the raw network-order words a C struct holds.
            ops.append(FlowOp(op, struct.unpack("=I", ip)[0],
                              struct.unpack("=H", struct.pack("!H", port))[0], be, vip))
        total = ApplyResult()
        async with self._install_lock:
            done = 0
            while done < count:
                n = count - done
                if self.bucket is not None:
                    t0 = time.monotonic()
                    n = await self.bucket.take(n)
                    self.stats.rate_limited_s += time.monotonic() - t0
                total += self.table.apply(ops[done:done + n])
                done += n
        self.stats.batches += 1
        self.stats.entries += count
        self.stats.refused += total.refused
        return encode_ack(seq, total.added, total.deleted, total.refused)

    def snapshot(self) -> dict:
        d = asdict(self.stats)
        d["rate_limit"] = self.bucket.rate if self.bucket else None
        return d


# -------------------------------------------------------------------- CLI

# Synthetic clients for `fill`/`drain`: the benchmarking range (RFC 2544),
# which no testbed gives a real host, so the entries never match a packet.
FILL_NET = "198.18.0.0"
FILL_PORTS = 60000


def fill_entries(count: int, op: int, backend_idx: int = 0) -> list[Entry]:
    """`count` entries for distinct synthetic client endpoints, the same every call."""
    base = struct.unpack("!I", socket.inet_aton(FILL_NET))[0]
    return [Entry(socket.inet_ntoa(struct.pack("!I", base + i // FILL_PORTS)),
                  1 + i % FILL_PORTS, op, backend_idx) for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    """python -m miresga.control.offload_channel fill|drain --connect HOST:PORT --count N

    Plays a front-end that adds (fill) or deletes (drain) N entries for
    synthetic clients: how the bench fills the switch's flow table for its
    table-full fault.  Prints {"added", "deleted", "refused"} as JSON.
    Standard library only: it runs on the switch host.
    """
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m miresga.control.offload_channel")
    ap.add_argument("action", choices=["fill", "drain"])
    ap.add_argument("--connect", default=f"127.0.0.1:{CTL_PORT_DEFAULT}", metavar="HOST:PORT")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--backend", type=int, default=0, help="back-end index of the entries")
    args = ap.parse_args(argv)
    host, _, port = args.connect.rpartition(":")
    op = CtlOp.ADD if args.action == "fill" else CtlOp.DEL
    entries = fill_entries(args.count, op, args.backend)
    out = {"added": 0, "deleted": 0, "refused": 0}
    with ChannelClient(host or "127.0.0.1", int(port), timeout=60) as c:
        for i in range(0, len(entries), CTL_MAX_BATCH):
            ack = c.batch(entries[i:i + CTL_MAX_BATCH])
            out["added"] += ack.added
            out["deleted"] += ack.deleted
            out["refused"] += ack.refused
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
