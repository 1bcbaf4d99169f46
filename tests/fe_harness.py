"""Drive the front-end's state machine with scapy packets, no port needed.

`Harness` runs `miresga-frontend-test pipe CONFIG`: the real C code (flow
table, parser, splice state machine, offload ring) with a virtual clock.  A
test sends frames as the switch would deliver them and gets back the frames
the front-end sends, like BPF_PROG_TEST_RUN for a DPDK program.

Also here: the addresses of the fixture service, a helper that plays the
client side of a connection, and checksum verification of every frame.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from common.service import Cluster, Rule, Service
from switchhost import layouts
from miresga.control.frontend import FrontendFacts, render_config
from packets import checksums_ok

REPO = Path(__file__).resolve().parent.parent
TEST_BINARY = REPO / "build" / "miresga-frontend-test"
# The same harness built with AddressSanitizer and UndefinedBehaviorSanitizer
# (frontend.mk): an out-of-bounds access, a use after free, a signed overflow
# or a bad shift in the front-end's code aborts it with a report on stderr.
SANITIZED_TEST_BINARY = REPO / "build" / "miresga-frontend-test-asan"
BINARY = REPO / "build" / "miresga-frontend"

#: Every build of the harness the state machine tests run against.
HARNESS_BUILDS = {"plain": TEST_BINARY, "sanitized": SANITIZED_TEST_BINARY}

# LeakSanitizer too: the harness frees everything before it exits (DPDK's
# own memory is not malloc's and is not looked at).
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:exitcode=86",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                   "SUMMARY: UndefinedBehaviorSanitizer")


@pytest.fixture(params=sorted(HARNESS_BUILDS))
def harness_binary(request) -> Path:
    """Each build of the harness in turn (a test taking this runs once per build)."""
    return HARNESS_BUILDS[request.param]


def harness_env() -> dict[str, str]:
    return {**os.environ, **SANITIZER_ENV}


def sanitizer_report(stderr: str) -> str | None:
    """The sanitizer's report in a harness's stderr, if it printed one."""
    for mark in SANITIZER_MARKS:
        i = stderr.find(mark)
        if i >= 0:
            return stderr[max(0, i - 200):i + 4000]
    return None

FE_MAC = "02:00:00:00:00:fe"        # the harness's port
SWITCH_MAC = "02:00:00:00:00:01"    # next hop of everything the front-end sends
VIP = "10.10.0.100"
BACKENDS = {"be1": "10.10.11.2", "be2": "10.10.12.2", "be3": "10.10.13.2"}
COOKIE_KEY = (0x01234567, 0x89ABCDEF)

# Back-end indices follow service.backends: be1 0, be2 1, be3 2.
SERVICE = Service(
    vip=VIP, port=80,
    clusters=[Cluster(name="static", backends=["be1", "be2"]),
              Cluster(name="api", backends=["be3"], port=8080)],
    rules=[Rule(cluster="api", path_prefix="/api"),
           Rule(cluster="static", path_prefix="/private", offload=False),
           Rule(cluster="static", path_prefix="/", host="img.example")],
    default_cluster="static",
    max_header_bytes=1024, request_timeout_s=5.0,
)


# The control key, relative to the harness's directory (its working directory),
# where Harness writes one: the harness never connects, but the front-end reads
# its key before it queues an entry.
KEY_FILE = "ctl.key"


def facts(control: tuple[str, int] | None = ("127.0.0.1", 1)) -> FrontendFacts:
    return FrontendFacts(vip=VIP, vip_port=80, backend_addresses=BACKENDS,
                         nexthop_mac=SWITCH_MAC, control=control, control_key=KEY_FILE)


def config_text(service: Service = SERVICE, control=("127.0.0.1", 1), **limits) -> str:
    # The `async` hand-off unless a test names another: these tests read the
    # channel's ADDs and DELs, which `dataplane` (the default) never sends.
    limits = {"syn_timeout_ms": 1000, "syn_retries": 0, "grace_ms": 2000, "idle_timeout_ms": 60000,
              "mbufs": 4095, "flow_capacity": 1024, "handoff": "async", **limits}
    return render_config(service, facts(control), "", limits)


class Harness:
    def __init__(self, config: str | None = None, binary: Path = TEST_BINARY):
        self._dir = tempfile.TemporaryDirectory(prefix="fe-harness-")
        path = Path(self._dir.name) / "fe.conf"
        path.write_text(config if config is not None else config_text())
        key = os.open(Path(self._dir.name) / KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(key, b"5a" * 32 + b"\n")
        os.close(key)
        self.binary = binary
        self.proc = subprocess.Popen([str(binary), "pipe", str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=harness_env(), cwd=self._dir.name)

    def _cmd(self, line: str) -> tuple[list[Ether], str | None]:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        frames, extra = [], None
        while True:
            out = self.proc.stdout.readline()
            if not out:
                raise RuntimeError(f"{self.binary.name} died: {self.proc.stderr.read()}")
            out = out.rstrip("\n")
            if out == "end":
                return frames, extra
            if out.startswith("tx "):
                frames.append(Ether(bytes.fromhex(out[3:])))
            else:
                extra = out

    def send(self, frame) -> list[Ether]:
        frames, _ = self._cmd("pkt " + bytes(frame).hex())
        return frames

    def advance(self, seconds: float) -> list[Ether]:
        frames, _ = self._cmd(f"advance {int(seconds * 1e6)}")
        return frames

    def stats(self) -> dict:
        _, line = self._cmd("stats")
        return json.loads(line[len("stats "):])

    def offload(self) -> list[dict]:
        _, line = self._cmd("offload")
        return json.loads(line[len("offload "):])

    def result(self, kind: str, client: "Client", *args: int) -> list[Ether]:
        """An answer of the switch: added | refused BACKEND, or liveness PRESENT IDLE_MS."""
        rest = "".join(f" {a}" for a in args)
        frames, extra = self._cmd(f"result {kind} {client.ip} {client.port}{rest}")
        if extra is not None:
            raise RuntimeError(f"harness: result {kind}: {extra}")
        return frames

    def close(self) -> None:
        """Stop the harness; a crash, a non-zero exit or a sanitizer report fails the test."""
        rc = self.proc.poll()
        if rc is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        err = self.proc.stderr.read()
        # A harness that died leaves DPDK's runtime directory behind.
        shutil.rmtree(f"/var/run/dpdk/fe{self.proc.pid}", ignore_errors=True)
        self._dir.cleanup()
        report = sanitizer_report(err)
        if rc != 0 or report:
            raise RuntimeError(f"{self.binary.name} pipe exited with {rc}: {report or err}")

    def __enter__(self) -> "Harness":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_cookie(client: str, sport: int, isn: int, mss: int = 1460, wscale: int | None = 7,
                sack: bool = True, epoch: int = 3) -> int:
    low = layouts.cookie_low_byte(layouts.mss_class(mss), wscale, sack, epoch)
    return layouts.cookie_make(COOKIE_KEY, client, VIP, sport, 80, isn, epoch, low)


#: how Harness.offload() lists a liveness query, after the entries (fe_test.c, QUERY_OP)
QUERY_OP = 0x80

#: The data-plane marks (miresga.h, "marks") as they sit in the IP TOS byte (ECN 0).
TOS = {name: getattr(layouts, f"DSCP_{name.upper()}") << 2
       for name in ("none", "admit", "known", "install", "remove", "remove_ctl", "miresga",
                    "backend")}


def mark(frame: Ether) -> str:
    """The data-plane mark of a frame the front-end sent ('none' if none)."""
    dscp = frame[IP].tos & ~3
    return next(name for name, tos in TOS.items() if tos == dscp)


class Client:
    """One client connection as the front-end sees it (after the switch's SYN-ACK).

    Its packets carry the mark the switch would put on them: ADMIT when the
    numbers are the cookie's (seq - 1 = c and ack - 1 = s), else KNOWN.
    """

    def __init__(self, ip: str = "10.10.1.2", port: int = 40000, isn: int = 1000, **cookie):
        self.ip, self.port, self.c = ip, port, isn
        self.s = make_cookie(ip, port, isn, **cookie)
        self.seq = isn + 1           # next byte the client sends
        self.ack = (self.s + 1) & 0xFFFFFFFF   # next byte it expects

    def pkt(self, payload: bytes = b"", flags: str = "A", seq: int | None = None,
            ack: int | None = None, window: int = 502, mark: str | None = None):
        seq = self.seq if seq is None else seq
        ack = self.ack if ack is None else ack
        if mark is None:
            cookie_ok = seq == (self.c + 1) & 0xFFFFFFFF and ack == (self.s + 1) & 0xFFFFFFFF
            mark = "admit" if cookie_ok and "A" in flags and not set("SR") & set(flags) else "known"
        p = (Ether(src=SWITCH_MAC, dst=FE_MAC) / IP(src=self.ip, dst=VIP, tos=TOS[mark]) /
             TCP(sport=self.port, dport=80, seq=seq, ack=ack, flags=flags, window=window))
        return p / Raw(payload) if payload else p

    def send(self, h: Harness, payload: bytes = b"", flags: str = "A", **kw) -> list[Ether]:
        """Send the next in-order segment and advance the client's seq."""
        out = h.send(self.pkt(payload, flags, **kw))
        if "seq" not in kw:
            self.seq = (self.seq + len(payload) + (1 if "F" in flags else 0)) & 0xFFFFFFFF
        return out


def backend_pkt(client: Client, backend: str, seq: int, ack: int, flags: str = "A",
                payload: bytes = b"", port: int = 80, mark: str = "backend"):
    """A back-end's packet to the client, as the switch hands it to the front-end
    (marked BACKEND: its agent's mark checked on its own port)."""
    p = (Ether(src=SWITCH_MAC, dst=FE_MAC) /
         IP(src=BACKENDS[backend], dst=client.ip, tos=TOS[mark]) /
         TCP(sport=port, dport=client.port, seq=seq, ack=ack, flags=flags, window=509))
    return p / Raw(payload) if payload else p


def payload(frame: Ether) -> bytes:
    return bytes(frame[TCP].payload)


# ------------------------------------------- the splice, step by step

GET = b"GET /index.html HTTP/1.1\r\nHost: www.example\r\n\r\n"


def only(frames, n=1):
    assert len(frames) == n, [f.summary() for f in frames]
    for f in frames:
        assert checksums_ok(f), f.summary()
        assert f.src == FE_MAC and f.dst == SWITCH_MAC
    return frames[0] if n == 1 else frames


def to_backend(f, backend, port=80):
    return f[IP].dst == BACKENDS[backend] and f[TCP].dport == port


def splice(h: Harness, c: Client, request: bytes = GET, backend: str = "be1", port: int = 80):
    """Handshake ACK, request, back-end SYN-ACK: returns the released request frames."""
    assert c.send(h) == []
    syn = only(c.send(h, request, "PA"))
    assert to_backend(syn, backend, port)
    out = h.send(backend_pkt(c, backend, c.s, c.c + 1, "SA", port=port))
    return out
