"""A blocking client of the switch host's control protocol (miresga/include/miresga.h).

What the tests, the bench's tools on the switch host (switchhost/ctl.py) and
the benchmark of the channel speak; the front-end speaks the same bytes in C
(miresga/frontend/fe_offload.c).

    with ControlClient("127.0.0.1", 7470, key=read_key("ctl.key")) as c:
        ack = c.batch([Entry("10.0.1.2", 40000, CtlOp.ADD, backend_idx=1)])
        [live] = c.query([Key("10.0.1.2", 40000)])
        print(c.cmd("stats"))

The constructor does the handshake and checks that the server knows the key
too; a server that refuses ours closes the connection, which surfaces as
`ConnectionError`.
"""

from __future__ import annotations

import socket

from switchhost import layouts as L
from switchhost import protocol as P
from switchhost.layouts import CTL_PORT_DEFAULT, CtlType
from switchhost.pipeline import Liveness
from switchhost.protocol import Ack, Entry, Key


class ControlError(Exception):
    """The daemon answered a command with {"error": ...}."""


class ControlClient:
    def __init__(self, host: str = "127.0.0.1", port: int = CTL_PORT_DEFAULT, *, key: bytes,
                 timeout: float = 30.0, source: str | None = None):
        # `source`: the address to connect from (tests: a front-end's link, or
        # another address of its host).
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.key = key
        self.seq = 0
        self.notices: list[str] = []   # NOTICEs the daemon sent, in order (recv skips them)
        self.last_sent = b""     # the last message on the wire, MAC included (tests replay it)
        try:
            self.macs = self._handshake()
        except BaseException:
            self.sock.close()
            raise

    def _recv_exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the switch host closed the control connection")
            buf += chunk
        return buf

    def _expect(self, want: int) -> bytes:
        typ, _, _, length = P.parse_header(self._recv_exactly(L.CTL_HDR.size))
        if typ != want:
            raise P.ProtocolError(f"type {typ} where {CtlType(want).name} was due")
        return self._recv_exactly(length)

    def _handshake(self) -> P.Macs:
        server_nonce = self._expect(CtlType.HELLO)
        client_nonce = P.new_nonce()
        self.sock.sendall(P.handshake_message(
            CtlType.AUTH, client_nonce + P.client_proof(self.key, server_nonce, client_nonce)))
        proof = self._expect(CtlType.AUTH_OK)
        if proof != P.server_proof(self.key, server_nonce, client_nonce):
            raise P.AuthError("the switch host does not know the key")
        return P.Macs(self.key, server_nonce, client_nonce, server=False)

    # ------------------------------------------------------------- sending

    def send(self, typ: int, count: int, body: bytes) -> int:
        """One request, MAC'd; returns its seq."""
        self.seq += 1
        self.last_sent = self.macs.seal(P.header(typ, count, self.seq) + body)
        self.sock.sendall(self.last_sent)
        return self.seq

    def send_batch(self, entries: list[Entry]) -> int:
        return self.send(CtlType.BATCH, len(entries), b"".join(e.encode() for e in entries))

    def send_query(self, keys: list[Key]) -> int:
        return self.send(CtlType.QUERY, len(keys), b"".join(k.encode() for k in keys))

    def send_cmd(self, req: dict) -> int:
        body = P.encode_json(req)
        return self.send(CtlType.CMD, len(body), body)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # ----------------------------------------------------------- receiving

    def _message(self) -> tuple[int, int, int, bytes]:
        hdr = self._recv_exactly(L.CTL_HDR.size)
        typ, count, seq, length = P.parse_header(hdr)
        body = self._recv_exactly(length)
        self.macs.check(hdr + body, self._recv_exactly(L.CTL_MAC_LEN))
        return typ, count, seq, body

    def recv(self) -> tuple[int, int, Ack | list[Liveness] | dict]:
        """The next answer: (type, seq, decoded body); NOTICEs before it go to `notices`."""
        typ, count, seq, body = self._message()
        while typ == CtlType.NOTICE:
            self.notices.append(P.decode_notice(body))
            typ, count, seq, body = self._message()
        if typ == CtlType.ACK:
            return typ, seq, Ack.decode(count, body)
        if typ == CtlType.REPLY:
            return typ, seq, P.decode_reply(body)
        if typ == CtlType.RESULT:
            return typ, seq, P.decode_json(body)
        raise P.ProtocolError(f"type {typ} is not an answer")

    def _answer(self, seq: int, want: int):
        typ, got, value = self.recv()
        if (typ, got) != (want, seq):
            raise P.ProtocolError(f"{CtlType(typ).name} for seq {got}, expected "
                                  f"{CtlType(want).name} for {seq}")
        return value

    def wait_notice(self) -> str:
        """The next NOTICE (one already received first); the socket's timeout bounds the wait."""
        if self.notices:
            return self.notices.pop(0)
        typ, _, _, body = self._message()
        if typ != CtlType.NOTICE:
            raise P.ProtocolError(f"{CtlType(typ).name} where a NOTICE was awaited")
        return P.decode_notice(body)

    def recv_ack(self) -> Ack:
        typ, _, value = self.recv()
        if typ != CtlType.ACK:
            raise P.ProtocolError(f"{CtlType(typ).name} where an ACK was due")
        return value

    # ------------------------------------------------------- request/answer

    def batch(self, entries: list[Entry]) -> Ack:
        """Send one batch and wait for its ACK."""
        return self._answer(self.send_batch(entries), CtlType.ACK)

    def query(self, keys: list[Key]) -> list[Liveness]:
        return self._answer(self.send_query(keys), CtlType.REPLY)

    def cmd(self, op: str, **args) -> dict:
        """A management op; its whole result (pages followed, see `next`).

        A result too long for one message comes in pages: it carries
        `next`, the offset to ask for, and the list fields of every page add up.
        """
        out: dict = {}
        req = {"op": op, **args}
        while True:
            page = self._answer(self.send_cmd(req), CtlType.RESULT)
            if "error" in page:
                raise ControlError(page["error"])
            for k, v in page.items():
                if isinstance(v, list) and isinstance(out.get(k), list):
                    out[k] += v
                else:
                    out[k] = v
            if page.get("next") is None:
                out.pop("next", None)
                return out
            req["offset"] = page["next"]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
