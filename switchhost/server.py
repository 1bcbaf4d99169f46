"""The server side of the switch host's control protocol (miresga/include/miresga.h).

One asyncio server for every peer: front-ends (BATCH -> ACK with the
per-entry refusals, QUERY -> REPLY from the data plane's last-seen stamps)
and tools (CMD -> RESULT).  It runs inside the daemon (switchhost/daemon.py),
on sockets the daemon bound to the control addresses only.

A connection starts with the handshake: HELLO with the server's nonce, then
the peer's AUTH must prove the key within `handshake_timeout_s`.  A peer that
does not (wrong key, silence, garbage) is counted in `auth_failures`, logged
with its address, and closed.  After it every message carries a MAC; a bad
one is counted in `bad_macs` and ends the connection, as does anything
malformed (counted in `malformed`): inside a MAC'd stream there is no way to
resynchronise, and a peer that authenticated and then sends garbage is
broken.

Messages of a connection are read as they arrive (the arrival time is what
the install budget's max_wait is measured from) and answered in order.

Who a peer is follows from the key it proves.  The daemon's own key (`key`)
is the switch host's: its tools prove it.  Each front-end gets a key of its
own (`frontend_keys`, name -> key, one per front-end and deployment), so the
handshake that proves a front-end's key names that front-end, whatever
address it connects from (its data link, or a management network when DPDK
owns its NIC).  An authenticated front-end connection is that front-end's
heartbeat: the pipeline hears of it when the handshake succeeds and again
when the connection closes (`Pipeline.peer`; Miresga's front-end liveness,
pipelines/fe_liveness.py).  The pipeline can tell a front-end something
unasked, on every connection that proved its key (`Pipeline.notify_peer`: a
NOTICE, MAC'd in the stream between two answers).  A peer that goes silent
without closing (its host down, its link cut) is closed by TCP keepalive and
the user timeout, within PEER_SILENCE_S.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
from dataclasses import asdict, dataclass
from typing import Callable

from switchhost import layouts as L
from switchhost import protocol as P
from switchhost.budget import InstallBudget
from switchhost.layouts import CtlType
from switchhost.pipeline import Pipeline

log = logging.getLogger("switchhost.server")

HANDSHAKE_TIMEOUT_S = 5.0
# Messages read ahead of the one being answered, per connection.
READ_AHEAD = 64

# A peer that goes silent without closing is declared gone after
# KEEPALIVE_IDLE_S + KEEPALIVE_COUNT x KEEPALIVE_INTERVAL_S of silence, or
# USER_TIMEOUT_S with data unacknowledged: 3 s either way.
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
class ServerStats:
    connections: int = 0        # accepted so far
    open_connections: int = 0
    auth_ok: int = 0
    auth_failures: int = 0      # wrong proof, no AUTH in time, or not AUTH at all
    bad_macs: int = 0
    malformed: int = 0
    batches: int = 0
    entries: int = 0
    refused: int = 0            # entries refused in ACKs (full, invalid, over budget)
    queries: int = 0
    keys_queried: int = 0
    commands: int = 0
    command_errors: int = 0
    notices: int = 0            # NOTICE messages sent
    bytes_in: int = 0


class _Closed(Exception):
    """The connection is over; the reason is counted already."""


class ControlServer:
    def __init__(self, key: bytes, pipeline: Pipeline, budget: InstallBudget,
                 commands: dict[str, Callable[[dict], dict]],
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 frontend_keys: dict[str, bytes] | None = None):
        self.key = key
        # Whose key a proof matches: None for the daemon's own (a tool).
        self.keys: list[tuple[str | None, bytes]] = [(None, key),
                                                     *(frontend_keys or {}).items()]
        if len({k for _, k in self.keys}) != len(self.keys):
            raise ValueError("every front-end needs a key of its own, and none the daemon's")
        self.pipeline = pipeline
        self.budget = budget
        self.commands = commands
        self.handshake_timeout_s = handshake_timeout_s
        self.stats = ServerStats()
        self._servers: list[asyncio.base_events.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task] = set()
        # Each front-end's authenticated connections (by the key each proved):
        # where a NOTICE to it goes.
        self._frontends: dict[str, list[tuple[asyncio.StreamWriter, P.Macs]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        pipeline.notify_peer = self.notify

    async def listen(self, socks: list[socket.socket]) -> None:
        self._loop = asyncio.get_running_loop()
        for s in socks:
            self._servers.append(await asyncio.start_server(self._serve, sock=s))

    async def stop(self) -> None:
        """Stop listening, close every open connection and let its handler finish
        (a handler cancelled by the loop's end is reported as an error by asyncio)."""
        for srv in self._servers:
            srv.close()
        for w in list(self._writers):
            w.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=10)
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()

    def snapshot(self) -> dict:
        return asdict(self.stats)

    def notify(self, frontend: str, what: str) -> None:
        """Send NOTICE `what` on every connection that proved front-end `frontend`'s
        key, whatever address it comes from; from any thread (a management op runs
        in a worker)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notice, frontend, what)

    def _notice(self, frontend: str, what: str) -> None:
        # Sealed and written in one step of the loop, as every answer is: the
        # MAC counter follows the order on the wire.
        for writer, macs in list(self._frontends.get(frontend, ())):
            if not writer.is_closing():
                writer.write(macs.seal(P.notice(what)))
                self.stats.notices += 1

    # ---------------------------------------------------------- connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        frontend: str | None = None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            set_keepalive(sock)
        self._writers.add(writer)
        self._handlers.add(asyncio.current_task())
        self.stats.connections += 1
        self.stats.open_connections += 1
        tasks: list[asyncio.Task] = []
        try:
            macs, frontend = await self._handshake(reader, writer, peer)
            log.info("control: %s authenticated%s", peer,
                     f" as front-end {frontend}" if frontend else "")
            if frontend is not None:
                self._frontends.setdefault(frontend, []).append((writer, macs))
            what = self._tell_pipeline(frontend, True)
            if what is not None:
                writer.write(macs.seal(P.notice(what)))
                self.stats.notices += 1
            inbox: asyncio.Queue = asyncio.Queue(READ_AHEAD)
            reading = asyncio.create_task(self._read(reader, inbox, macs, peer))
            answering = asyncio.create_task(self._answer(inbox, writer, macs))
            tasks = [reading, answering]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if reading.done():
                reading.result()        # a malformed message or bad MAC ends it here
                await inbox.put(None)   # the peer closed: answer what it sent first
            await answering
        except _Closed:
            pass
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            log.info("control: %s: %s", peer, e)
        except Exception:  # noqa: BLE001 - a failed request ends its connection, not the daemon
            log.exception("control: %s: closed", peer)
        finally:
            for t in tasks:
                t.cancel()
            self._writers.discard(writer)
            self._handlers.discard(asyncio.current_task())
            self.stats.open_connections -= 1
            if frontend is not None:
                conns = self._frontends.get(frontend, [])
                conns[:] = [c for c in conns if c[0] is not writer]
                if not conns:
                    self._frontends.pop(frontend, None)
            self._tell_pipeline(frontend, False)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass  # closing on shutdown; nothing left to tell the peer

    def _tell_pipeline(self, frontend: str | None, connected: bool) -> str | None:
        if frontend is None:
            return None  # not a front-end (a tool), or it never authenticated
        try:
            return self.pipeline.peer(frontend, connected)
        except Exception:  # noqa: BLE001 - the connection is not to blame
            log.exception("control: pipeline.peer(%s, %s) failed", frontend, connected)
            return None

    async def _handshake(self, reader, writer, peer: str) -> tuple[P.Macs, str | None]:
        """The connection's MACs, and the front-end whose key the peer proved
        (None: the daemon's own key)."""
        server_nonce = P.new_nonce()
        writer.write(P.handshake_message(CtlType.HELLO, server_nonce))
        await writer.drain()

        async def read_auth() -> bytes:
            typ, _, _, length = P.parse_header(await reader.readexactly(L.CTL_HDR.size))
            if typ != CtlType.AUTH:
                raise P.ProtocolError(f"type {typ} where AUTH was due")
            return await reader.readexactly(length)

        try:
            body = await asyncio.wait_for(read_auth(), self.handshake_timeout_s)
        except asyncio.TimeoutError:
            self._auth_failed(peer, f"no AUTH within {self.handshake_timeout_s:g} s")
        except (asyncio.IncompleteReadError, P.ProtocolError) as e:
            self._auth_failed(peer, str(e))
        client_nonce, proof = body[:L.CTL_NONCE_LEN], body[L.CTL_NONCE_LEN:]
        # Every key is tried: how long the check takes says nothing of whose matched.
        matches = [(name, key) for name, key in self.keys
                   if hmac.compare_digest(proof, P.client_proof(key, server_nonce,
                                                                client_nonce))]
        if not matches:
            self._auth_failed(peer, "wrong key")
        name, key = matches[0]
        writer.write(P.handshake_message(CtlType.AUTH_OK,
                                         P.server_proof(key, server_nonce, client_nonce)))
        await writer.drain()
        self.stats.auth_ok += 1
        return P.Macs(key, server_nonce, client_nonce, server=True), name

    def _auth_failed(self, peer: str, why: str):
        self.stats.auth_failures += 1
        log.warning("control: %s failed authentication (%s): closed", peer, why)
        raise _Closed

    async def _read(self, reader, inbox: asyncio.Queue, macs: P.Macs, peer: str) -> None:
        while True:
            try:
                hdr = await reader.readexactly(L.CTL_HDR.size)
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    self._malformed(peer, "truncated header")
                return  # the peer closed between messages
            try:
                typ, count, seq, length = P.parse_header(hdr)
                if typ not in (CtlType.BATCH, CtlType.QUERY, CtlType.CMD):
                    raise P.ProtocolError(f"type {typ} is not a request")
            except P.ProtocolError as e:
                self._malformed(peer, str(e))
            rest = await reader.readexactly(length + L.CTL_MAC_LEN)
            self.stats.bytes_in += len(hdr) + len(rest)
            body = rest[:length]
            try:
                macs.check(hdr + body, rest[length:])
            except P.AuthError:
                self.stats.bad_macs += 1
                log.warning("control: %s: bad MAC on message seq %d: closed", peer, seq)
                raise _Closed from None
            # Arrival on the budget's clock: its max_wait counts from here.
            await inbox.put((typ, count, seq, body, self.budget.clock()))

    def _malformed(self, peer: str, why: str):
        self.stats.malformed += 1
        log.warning("control: %s: malformed message (%s): closed", peer, why)
        raise _Closed

    async def _answer(self, inbox: asyncio.Queue, writer, macs: P.Macs) -> None:
        while True:
            item = await inbox.get()
            if item is None:
                return
            typ, count, seq, body, arrived = item
            if typ == CtlType.BATCH:
                reply = await self._batch(count, seq, body, arrived)
            elif typ == CtlType.QUERY:
                reply = self._query(count, seq, body)
            else:
                reply = await self._command(count, seq, body)
            writer.write(macs.seal(reply))
            await writer.drain()

    # ------------------------------------------------------------ requests

    async def _batch(self, count: int, seq: int, body: bytes, arrived: float) -> bytes:
        ops = P.decode_entries(body)
        res = await self.budget.install(ops, self.pipeline.apply, arrived=arrived)
        self.stats.batches += 1
        self.stats.entries += count
        self.stats.refused += res.refused
        ack = P.Ack(seq, res.added, res.deleted, res.refused, frozenset(res.refused_idx))
        return P.header(CtlType.ACK, count, seq) + ack.encode(count)

    def _query(self, count: int, seq: int, body: bytes) -> bytes:
        answers = self.pipeline.liveness(P.decode_keys(body))
        self.stats.queries += 1
        self.stats.keys_queried += count
        return P.header(CtlType.REPLY, count, seq) + P.encode_reply(answers)

    async def _command(self, count: int, seq: int, body: bytes) -> bytes:
        self.stats.commands += 1
        try:
            req = P.decode_json(body)
            op = req.get("op")
            fn = self.commands.get(op)
            if fn is None:
                raise ValueError(f"unknown op {op!r} (known: {', '.join(sorted(self.commands))})")
            # Off the loop: a table scan or a fill must not stall the front-ends.
            out = {"ok": True, **await asyncio.to_thread(fn, req)}
            result = P.encode_json(out)
        except Exception as e:  # noqa: BLE001 - every error goes back to the caller
            self.stats.command_errors += 1
            result = P.encode_json({"error": f"{type(e).__name__}: {e}"})
        return P.header(CtlType.RESULT, len(result), seq) + result
