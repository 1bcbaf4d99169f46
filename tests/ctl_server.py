"""A stand-in for the switch host's daemon, for front-end tests: the real protocol
server (switchhost/server.py: handshake, MACs, per-entry ACKs, replies) over a
table in a dict instead of an eBPF map.

It keeps a table like the switch's (client ip/port -> back-end index), can be
given a capacity to refuse adds, can drop connections to exercise the
front-end's reconnect and resend, answers liveness queries from `idle_ms`
(a test sets how idle each key is), and writes the key file the front-end
reads (`key_path`), or uses the one it is given.  Given a front-end's name
(`frontend`), that key is the front-end's own, as a deployment writes one per
front-end, so `server.notify(frontend, ...)` reaches it; otherwise it is the
daemon's own key, which names no front-end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
import time

from common.netns import netns
from switchhost import layouts
from switchhost.addresses import ip_str, port_host
from switchhost.budget import InstallBudget
from switchhost.pipeline import ABSENT, ApplyResult, FlowKey, FlowOp, Liveness
from switchhost.protocol import new_key, read_key
from switchhost.server import ControlServer


class _Dropped(ConnectionError):
    """The stand-in loses a batch and the connection, as a crashed peer would."""


class _TablePipeline:
    """What ControlServer asks of a pipeline, over the stand-in's dict."""

    name = "stand-in"

    def __init__(self, owner: "CtlServer"):
        self.owner = owner

    def apply(self, ops: list[FlowOp]) -> ApplyResult:
        return self.owner._apply(ops)

    def liveness(self, keys: list[FlowKey]) -> list[Liveness]:
        return self.owner._liveness(keys)

    def peer(self, frontend: str, connected: bool) -> None:
        return None  # the stand-in selects no front-ends: no NOTICE for a new connection


class _Server(ControlServer):
    def __init__(self, owner: "CtlServer", key: bytes, frontend: str | None):
        if frontend is None:
            super().__init__(key, _TablePipeline(owner), InstallBudget(), {})
        else:
            # The daemon's own key is then one no front-end holds.
            super().__init__(bytes.fromhex(new_key()), _TablePipeline(owner), InstallBudget(),
                             {}, frontend_keys={frontend: key})
        self.owner = owner

    async def _batch(self, count, seq, body, arrived):
        with self.owner._lock:
            self.owner.batches.append(seq)
            self.owner.bodies.append(body)
            self.owner._seq = seq
        return await super()._batch(count, seq, body, arrived)

    def _query(self, count, seq, body):
        with self.owner._lock:
            self.owner.query_seqs.append(seq)
        return super()._query(count, seq, body)


class CtlServer:
    def __init__(self, address: str = "127.0.0.1", port: int = 0, ns: str | None = None,
                 capacity: int | None = None, drop_first_batches: int = 0,
                 key_path: str | os.PathLike | None = None, frontend: str | None = None):
        self.capacity = capacity
        self.drop_first_batches = drop_first_batches
        self.table: dict[tuple[str, int], int] = {}
        self.idle_ms: dict[tuple[str, int], int] = {}   # keys the switch "carries", how idle
        self.log: list[dict] = []          # every entry applied, in order
        self.batches: list[int] = []       # seq of every batch received
        self.bodies: list[bytes] = []      # and its entries as sent
        self.queries: list[list[tuple[str, int, int]]] = []
        self.query_seqs: list[int] = []    # seq of every query received
        self.errors: list[str] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="ctlkey")
        if key_path is None:
            key_path = os.path.join(self._dir.name, "ctl.key")
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new_key() + "\n")
        self.key_path = str(key_path)
        self.key = read_key(self.key_path)
        with netns(ns):
            self.sock = socket.create_server((address, port))
        self.address, self.port = self.sock.getsockname()
        self.server = _Server(self, self.key, frontend)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.server.listen([self.sock]))
        self._ready.set()
        self._loop.run_forever()

    @property
    def connections(self) -> int:
        """Connections that proved the key."""
        return self.server.stats.auth_ok

    # ---------------------------------------------------------------- table
    def _apply(self, ops: list[FlowOp]) -> ApplyResult:
        res = ApplyResult()
        with self._lock:
            if self.drop_first_batches > 0:
                self.drop_first_batches -= 1
                raise _Dropped("the stand-in drops this batch and the connection")
            for i, op in enumerate(ops):
                key = (ip_str(op.client_ip_be), port_host(op.client_port_be))
                entry = {"op": op.op, "ip": key[0], "port": key[1], "backend": op.backend_idx,
                         "vip": op.vip_idx, "seq": self._seq}
                if op.op == layouts.CtlOp.ADD:
                    if (self.capacity is not None and key not in self.table and
                            len(self.table) >= self.capacity):
                        res.refused_full += 1
                        res.refused_idx.append(i)
                        entry["refused"] = True
                    else:
                        self.table[key] = op.backend_idx
                        res.added += 1
                elif op.op == layouts.CtlOp.DEL:
                    self.table.pop(key, None)
                    res.deleted += 1
                else:
                    self.errors.append(f"bad op {op.op}")
                    res.refused_invalid += 1
                    res.refused_idx.append(i)
                self.log.append(entry)
        return res

    def _liveness(self, keys: list[FlowKey]) -> list[Liveness]:
        out = []
        with self._lock:
            self.queries.append([(ip_str(k.client_ip_be), port_host(k.client_port_be), k.vip_idx)
                                 for k in keys])
            for k in keys:
                key = (ip_str(k.client_ip_be), port_host(k.client_port_be))
                if key in self.table:
                    out.append(Liveness(True, self.table[key], self.idle_ms.get(key, 0)))
                else:
                    out.append(ABSENT)
        return out

    # -------------------------------------------------------------- queries
    def entries(self, op: int | None = None) -> list[dict]:
        with self._lock:
            return [e for e in self.log if op is None or e["op"] == op]

    def wait_for(self, predicate, timeout: float = 5.0):
        """Poll `predicate(self)` until it is truthy; return its value or raise."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"control server: condition not met in {timeout}s; "
                                     f"log={self.log} errors={self.errors} "
                                     f"stats={self.server.snapshot()}")
            time.sleep(0.02)

    def close(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop)
        try:
            fut.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._dir.cleanup()

    def __enter__(self) -> "CtlServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
