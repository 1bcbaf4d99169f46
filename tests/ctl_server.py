"""A stand-in for the switch control plane's offload channel, for front-end tests.

It speaks the wire format of miresga/include/miresga.h (through the Python
mirror in switchhost/layouts.py): a BATCH header and `count` entries in,
one ACK header and one mg_ctl_ack out.  It keeps a table like the switch's
(client ip/port -> back-end index), can be given a capacity to refuse adds,
and can drop connections to exercise the front-end's reconnect and resend.
"""

from __future__ import annotations

import socket
import threading
import time

from common.netns import netns
from switchhost import layouts


class CtlServer:
    def __init__(self, address: str = "127.0.0.1", port: int = 0, ns: str | None = None,
                 capacity: int | None = None, drop_first_batches: int = 0):
        with netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((address, port))
            self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.address, self.port = self.sock.getsockname()
        self.capacity = capacity
        self.drop_first_batches = drop_first_batches
        self.table: dict[tuple[str, int], int] = {}
        self.log: list[dict] = []          # every entry applied, in order
        self.batches: list[int] = []       # seq of every batch received
        self.connections = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- serve
    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = conn.recv(n - len(buf))
            except socket.timeout:
                if self._stop:
                    return None
                continue
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def _conn(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self._stop:
                hdr = self._read(conn, layouts.CTL_HDR.size)
                if hdr is None:
                    return
                magic, version, kind, count, seq = layouts.CTL_HDR.unpack(hdr)
                if (magic != layouts.CTL_MAGIC or version != layouts.CTL_VERSION or
                        kind != layouts.CtlType.BATCH or count > layouts.CTL_MAX_BATCH):
                    self.errors.append(f"bad header {hdr.hex()}")
                    return
                body = self._read(conn, count * layouts.CTL_ENTRY.size)
                if body is None:
                    return
                with self._lock:
                    self.batches.append(seq)
                    if self.drop_first_batches > 0:
                        # Lose the batch and the connection, as a crashed peer would.
                        self.drop_first_batches -= 1
                        return
                    added = deleted = refused = 0
                    for i in range(count):
                        ip, port, op, backend, vip = layouts.CTL_ENTRY.unpack_from(
                            body, i * layouts.CTL_ENTRY.size)
                        key = (socket.inet_ntoa(ip), port)
                        entry = {"op": op, "ip": key[0], "port": port, "backend": backend,
                                 "vip": vip, "seq": seq}
                        if op == layouts.CtlOp.ADD:
                            if (self.capacity is not None and key not in self.table and
                                    len(self.table) >= self.capacity):
                                refused += 1
                                entry["refused"] = True
                            else:
                                self.table[key] = backend
                                added += 1
                        elif op == layouts.CtlOp.DEL:
                            self.table.pop(key, None)
                            deleted += 1
                        else:
                            self.errors.append(f"bad op {op}")
                        self.log.append(entry)
                ack = layouts.CTL_HDR.pack(layouts.CTL_MAGIC, layouts.CTL_VERSION,
                                           layouts.CtlType.ACK, 1, seq)
                ack += layouts.CTL_ACK.pack(seq, added, deleted, refused)
                try:
                    conn.sendall(ack)
                except OSError:
                    return

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
                raise AssertionError(f"control channel: condition not met in {timeout}s; "
                                     f"log={self.log} errors={self.errors}")
            time.sleep(0.02)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> "CtlServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
