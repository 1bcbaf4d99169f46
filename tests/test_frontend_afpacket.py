"""The DPDK front-end on a real port: af_packet and af_xdp in an emulated testbed.

The front-end binary runs in the `frontend1` namespace of a small emulated
testbed (client, switch, frontend1), started by the launcher in
miresga/control/frontend.py.  On the switch's side of its link a scapy socket
plays the switch, the client and the back-ends at once (the switch's kernel
forwarding is turned off, so nothing else answers), and a CtlServer in the
switch namespace plays the switch control plane's offload channel.

Checked on the wire: the back-end SYN (client source, seq c, s in the ack
field, no ACK flag, options from the cookie), the handshake ACK, the request
bytes, the offload ADD, response forwarding with the VIP as source, FIN
teardown and the DEL; every error answer from real bad requests; checksums of
every frame; flows, held mbufs and mbufs back to zero; the offload channel's
reconnect, resend and refusals; an idle front-end not burning its core.
The walk, the error answers and the idle test run on both ports; the af_xdp
port's own needs (native XDP, a link to itself, the kernel keeping its own
frames) have their tests at the end.
"""

from __future__ import annotations

import json
import select
import time

import pytest
from scapy.arch.linux import L2Socket
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from common.netns import netns, write_sysctl
from common.service import Cluster, Rule, Service
from hosts.testbed import EmulatedTestbed
from hosts.topology import parse_topology
from switchhost import layouts
from miresga.control.frontend import (BINARY, PORTS, Frontend, FrontendError, FrontendFacts,
                                      facts_from_testbed)

from conftest import unique_prefix
from ctl_server import CtlServer
from fe_harness import TOS, make_cookie, mark
from packets import checksums_ok

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

VIP = "10.10.0.100"
CLIENT = "198.18.0.10"
# Back-ends exist only as addresses: the scapy socket answers for them.
BACKENDS = {"be1": "10.10.11.2", "be2": "10.10.12.2", "be3": "10.10.13.2"}
TOPOLOGY = {
    "testbed": {"name": "fe", "vip": VIP, "vip_port": 80},
    "host": [
        {"name": "client", "role": "client", "address": "10.10.1.2/24"},
        {"name": "switch", "role": "switch"},
        {"name": "frontend1", "role": "frontend", "address": "10.10.2.2/24"},
    ],
}
SERVICE = Service(
    vip=VIP, port=80,
    clusters=[Cluster(name="static", backends=["be1", "be2"]),
              Cluster(name="api", backends=["be3"], port=8080)],
    rules=[Rule(cluster="static", path_prefix="/static"),
           Rule(cluster="api", path_prefix="/api"),
           Rule(cluster="static", path_prefix="/private", offload=False)],
    max_header_bytes=8192, request_timeout_s=1.0,
)
# `async` unless a test names another: the channel's ADDs and DELs are what most
# of these tests read, and `dataplane` (the default) sends none.
LIMITS = {"syn_timeout_ms": 300, "syn_retries": 0, "grace_ms": 300, "answer_rto_ms": 200, "mbufs": 4095,
          "flow_capacity": 1024, "handoff": "async"}


@pytest.fixture(scope="module")
def testbed():
    with EmulatedTestbed(parse_topology(TOPOLOGY, "test_frontend_afpacket"),
                         prefix=unique_prefix("fe")) as tb:
        # The scapy socket is the switch here: the kernel must not route too.
        write_sysctl(tb.ns("switch"), "net.ipv4.ip_forward", 0)
        yield tb


class Wire:
    """The switch's end of the front-end's link, as raw frames."""

    def __init__(self, tb, ctl_port: int):
        self.host = tb.host("frontend1")
        self.fe_mac = self.host.mac
        self.switch_mac = self.host.switch_mac
        self.ctl_port = ctl_port
        with netns(tb.ns("switch")):
            self.sock = L2Socket(iface=self.host.switch_port, promisc=False)

    def send(self, pkt) -> None:
        self.sock.send(Ether(src=self.switch_mac, dst=self.fe_mac) / pkt)

    def frames(self, timeout: float, want: int | None = None) -> list[Ether]:
        """Frames the front-end's DPDK side sent (not its kernel's control traffic)."""
        out, deadline = [], time.monotonic() + timeout
        while (want is None or len(out) < want) and time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            f = self.sock.recv()
            if f is None or f.src != self.fe_mac or TCP not in f:
                continue
            if self.ctl_port in (f[TCP].sport, f[TCP].dport):
                continue
            assert checksums_ok(f), f.summary()
            assert f.dst == self.switch_mac
            out.append(f)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def ctl(testbed):
    gw = str(testbed.topology.get("frontend1").gateway_address)
    with CtlServer(gw, 0, ns=testbed.ns("switch"), frontend="frontend1") as server:
        yield server


def start_frontend(testbed, ctl, service=SERVICE, port="af_packet", iface=None,
                   **limits) -> Frontend:
    host = testbed.host("frontend1")
    facts = FrontendFacts(vip=VIP, vip_port=80, backend_addresses=BACKENDS,
                          nexthop_mac=host.switch_mac, iface=iface or host.iface,
                          control=(ctl.address, ctl.port), control_key=ctl.key_path)
    fe = Frontend(host, service, facts, limits={**LIMITS, **limits}, port=port)
    fe.start()
    fe.wait_healthy(20)
    return fe


@pytest.fixture(params=PORTS)
def frontend(testbed, ctl, request):
    fe = start_frontend(testbed, ctl, port=request.param)
    wire = Wire(testbed, ctl.port)
    # The channel's TCP connection is the front-end host's kernel's, on the
    # same link: an af_xdp port must have left its frames to the kernel.
    ctl.wait_for(lambda s: s.connections >= 1)
    try:
        yield fe, wire
    finally:
        wire.close()
        rc = fe.stop()
        assert rc == 0, fe.logs()
        assert "stopped" in fe.logs()


class Conn:
    """A client connection after the switch's SYN-ACK; its packets carry the mark
    the switch would put on them (ADMIT while its numbers are the cookie's)."""

    def __init__(self, port: int, isn: int = 1000):
        self.port, self.c = port, isn
        self.s = make_cookie(CLIENT, port, isn)
        self.seq, self.ack = isn + 1, (self.s + 1) & 0xFFFFFFFF

    def pkt(self, data: bytes = b"", flags: str = "A", **kw):
        seq, ack = kw.get("seq", self.seq), kw.get("ack", self.ack)
        admit = seq == self.c + 1 and ack == (self.s + 1) & 0xFFFFFFFF
        p = IP(src=CLIENT, dst=VIP, tos=TOS["admit" if admit else "known"]) / \
            TCP(sport=self.port, dport=80, seq=seq, ack=ack, flags=flags, window=502)
        if "seq" not in kw:
            self.seq += len(data) + (1 if "F" in flags else 0)
        return p / Raw(data) if data else p

    def from_backend(self, backend: str, seq: int, ack: int, flags: str, data: bytes = b"",
                     port: int = 80):
        p = IP(src=BACKENDS[backend], dst=CLIENT) / TCP(sport=port, dport=self.port, seq=seq,
                                                         ack=ack, flags=flags, window=509)
        return p / Raw(data) if data else p


def wait_stats(fe: Frontend, predicate, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = fe.stats()
        if predicate(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"front-end stats never satisfied the condition: {st}")
        time.sleep(0.05)


def clean(fe: Frontend):
    """Flows and held mbufs back to zero, and on af_packet every mbuf back in
    the pool.  An af_xdp port keeps 2,048 mbufs in the kernel's fill ring and
    takes sent ones back only at its next transmission, so the pool's count
    says nothing exact there; the same code's accounting is held to zero on
    af_packet."""
    def done(st: dict) -> bool:
        return (st["flows"] == 0 and st["held_mbufs"] == 0
                and (fe.port != "af_packet" or st["mbufs_in_use"] == 0))
    return done


# ----------------------------------------------------------------- the walk

def test_request_is_spliced_offloaded_forwarded_and_torn_down(frontend, ctl):
    """One connection through the front-end on a real port, every frame checked."""
    fe, wire = frontend
    c = Conn(40000)
    request = (b"GET /static/logo.png HTTP/1.1\r\nHost: www.example\r\n"
               b"User-Agent: scapy\r\nAccept: */*\r\n\r\n")
    wire.send(c.pkt())
    wire.send(c.pkt(request[:20], "A"))
    assert wire.frames(0.3) == [], "nothing may leave before the header is complete"
    wire.send(c.pkt(request[20:], "PA"))
    syn, = wire.frames(3, want=1)
    t = syn[TCP]
    assert syn[IP].src == CLIENT and syn[IP].dst in (BACKENDS["be1"], BACKENDS["be2"])
    assert t.sport == c.port and t.dport == 80 and t.flags == "S"
    assert t.seq == c.c and t.ack == c.s
    assert t.options == [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""),
                         ("NOP", None), ("WScale", 7)]
    be = "be1" if syn[IP].dst == BACKENDS["be1"] else "be2"
    index = SERVICE.backends.index(be)

    # The agent on the back-end makes its SYN-ACK carry seq s.
    wire.send(c.from_backend(be, c.s, c.c + 1, "SA"))
    out = wire.frames(3, want=3)
    ack, data = out[0], out[1:]
    assert ack[TCP].flags == "A" and ack[TCP].seq == c.c + 1 and ack[TCP].ack == c.s + 1
    assert all(f[IP].dst == BACKENDS[be] and f[IP].src == CLIENT for f in out)
    assert b"".join(bytes(f[TCP].payload) for f in data) == request
    assert [f[TCP].seq for f in data] == [c.c + 1, c.c + 21]

    add, = ctl.wait_for(lambda s: s.entries(layouts.CtlOp.ADD))
    assert (add["ip"], add["port"], add["backend"], add["vip"]) == (CLIENT, c.port, index, 0)
    wait_stats(fe, lambda st: st["offload"]["added"] == 1 and st["offload"]["batches_acked"] == 1)

    # Until the switch takes over, the response goes through the front-end.
    body = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + bytes(range(256)) * 4
    body = body[:1200]
    wire.send(c.from_backend(be, c.s + 1, c.seq, "PA", body))
    resp, = wire.frames(3, want=1)
    assert resp[IP].src == VIP and resp[IP].dst == CLIENT
    assert resp[TCP].sport == 80 and resp[TCP].dport == c.port
    assert resp[TCP].seq == c.s + 1 and bytes(resp[TCP].payload) == body
    c.ack = c.s + 1 + len(body)

    # Teardown: the client's FIN waits until the response is over (its ACK goes on,
    # the entry is deleted so the rest would come this way), then FIN both ways,
    # the last ACK, then the grace period.
    wire.send(c.pkt(flags="FA"))
    held, fin = wire.frames(3, want=2)
    assert held[IP].dst == BACKENDS[be] and held[TCP].flags == "A"
    assert fin[IP].dst == BACKENDS[be] and fin[TCP].flags == "FA" and fin[TCP].seq == c.seq - 1
    dl, = ctl.wait_for(lambda s: s.entries(layouts.CtlOp.DEL))
    assert (dl["ip"], dl["port"]) == (CLIENT, c.port)
    wire.send(c.from_backend(be, c.ack, c.seq, "FA"))
    bfin, = wire.frames(3, want=1)
    assert bfin[IP].src == VIP and bfin[TCP].flags == "FA"
    c.ack += 1
    wire.send(c.pkt(flags="A"))
    last, = wire.frames(3, want=1)
    assert last[IP].dst == BACKENDS[be] and last[TCP].ack == c.ack
    st = wait_stats(fe, clean(fe))
    # The way a remote host's socket is read gives the same answer.
    assert fe.stats(through_host=True)["flows_created"] == st["flows_created"] == 1
    assert st["requests"] == 1 and st["decisions"]["first"] == 1
    assert st["offload"]["deleted"] == 1 and ctl.table == {}
    assert st["packets"]["bad_checksum"] == 0 and st["packets"]["malformed"] == 0


def answer(wire: Wire, c: Conn, status: int, timeout: float = 3.0) -> Ether:
    """The front-end's answer (its ACKs of held header bytes before it aside)."""
    deadline, frames = time.monotonic() + timeout, []
    while not frames and time.monotonic() < deadline:
        got = wire.frames(deadline - time.monotonic(), want=1)
        frames = [f for f in got if f[IP].dst == CLIENT and "F" in f[TCP].flags]
    assert len(frames) == 1, [f.summary() for f in frames]
    f = frames[0]
    assert f[IP].src == VIP and f[TCP].sport == 80 and f[TCP].dport == c.port
    assert "F" in f[TCP].flags and f[TCP].seq == c.s + 1
    text = bytes(f[TCP].payload)
    assert text.startswith(f"HTTP/1.1 {status} ".encode()), text
    return f


def close_answered(wire: Wire, c: Conn, ans: Ether) -> None:
    end = ans[TCP].seq + len(ans[TCP].payload) + 1
    c.ack = end
    wire.send(c.pkt(flags="FA"))
    ack, = wire.frames(3, want=1)
    assert ack[TCP].flags == "A" and ack[TCP].ack == c.seq


def test_every_error_code_from_real_bad_requests(frontend, ctl):
    """400, 431, 404, 408 and 503 (timeout and reset) over the wire, then nothing left."""
    fe, wire = frontend

    c = Conn(41000)                                       # malformed: 400
    wire.send(c.pkt())
    wire.send(c.pkt(b"GET /static HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", "PA"))
    ans = answer(wire, c, 400)
    assert ans[TCP].ack == c.seq
    close_answered(wire, c, ans)

    c = Conn(41001)                                       # 9 KB of header: 431
    wire.send(c.pkt())
    big = b"GET /static HTTP/1.1\r\nHost: a\r\nCookie: " + b"k" * 9000
    for i in range(0, len(big), 1400):
        wire.send(c.pkt(big[i:i + 1400], "A"))
    ans = answer(wire, c, 431)
    close_answered(wire, c, ans)

    c = Conn(41002)                                       # no rule, no default: 404
    wire.send(c.pkt())
    wire.send(c.pkt(b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
    close_answered(wire, c, answer(wire, c, 404))

    c = Conn(41003)                                       # never completes: 408
    wire.send(c.pkt())
    wire.send(c.pkt(b"GET /static HTTP/1.1\r\nHost: a\r\n", "PA"))
    assert wire.frames(0.7) == []
    close_answered(wire, c, answer(wire, c, 408, timeout=2.0))

    c = Conn(41004)                                       # both back-ends silent: 503
    wire.send(c.pkt())
    wire.send(c.pkt(b"GET /static/x HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
    syns = wire.frames(2.0, want=3)
    assert [f[TCP].flags for f in syns[:2]] == ["S", "S"]
    assert {f[IP].dst for f in syns[:2]} == {BACKENDS["be1"], BACKENDS["be2"]}
    assert syns[2][IP].dst == CLIENT
    ans = syns[2]
    assert bytes(ans[TCP].payload).startswith(b"HTTP/1.1 503 ") and ans[TCP].seq == c.s + 1
    close_answered(wire, c, ans)

    c = Conn(41005)                                       # the api back-end refuses: 503
    wire.send(c.pkt())
    wire.send(c.pkt(b"GET /api/v1 HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
    syn, = wire.frames(3, want=1)
    assert syn[IP].dst == BACKENDS["be3"] and syn[TCP].dport == 8080
    wire.send(c.from_backend("be3", 0, c.c + 1, "RA", port=8080))
    close_answered(wire, c, answer(wire, c, 503))

    st = wait_stats(fe, clean(fe))
    assert {k: st["errors"][k] for k in ("400", "404", "408", "431", "503")} == \
        {"400": 1, "404": 1, "408": 1, "431": 1, "503": 2}
    assert st["errors"]["syn_timeout"] == 2 and st["errors"]["backend_refused"] == 1
    assert ctl.entries() == []


def test_dataplane_marks_cross_the_wire(testbed, ctl):
    """handoff dataplane on a real port: the handshake ACK leaves with INSTALL and
    the VIP index in IP ID, the request right behind it; the client's FIN that ends
    the connection leaves with REMOVE; nothing goes over the channel.  An unmarked
    packet creates nothing; a KNOWN one without a flow gets one RST."""
    fe = start_frontend(testbed, ctl, handoff="dataplane")
    wire = Wire(testbed, ctl.port)
    try:
        stray = Conn(44100)
        stray.seq += 100
        wire.send(stray.pkt(b"GET /static/a HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
        rst, = wire.frames(3, want=1)
        assert rst[IP].dst == CLIENT and rst[TCP].flags == "R" and rst[TCP].seq == stray.ack
        c = Conn(44101)
        p = c.pkt()
        p[IP].tos = 0
        wire.send(p)
        wire.send(c.pkt(b"GET /static/a HTTP/1.1\r\nHost: a\r\n\r\n", "PA", seq=c.c + 1))
        syn, = wire.frames(3, want=1)
        be = "be1" if syn[IP].dst == BACKENDS["be1"] else "be2"
        wire.send(c.from_backend(be, c.s, c.c + 1, "SA"))
        ack, req = wire.frames(3, want=2)
        assert mark(ack) == "install" and ack[IP].id == 0 and ack[TCP].flags == "A"
        assert bytes(req[TCP].payload).startswith(b"GET /static/a")
        wire.send(c.from_backend(be, c.s + 1, c.seq, "FPA", b"HTTP/1.1 200 OK\r\n\r\n"))
        wire.frames(3, want=1)
        c.ack = c.s + 1 + 19 + 1
        wire.send(c.pkt(flags="FA"))
        fin, = wire.frames(3, want=1)
        assert fin[IP].dst == BACKENDS[be] and fin[TCP].flags == "FA" and mark(fin) == "remove"
        st = fe.stats()
        assert st["packets"]["unadmitted"] == 1 and st["packets"]["known_reset"] == 1
        assert st["packets"]["install_sent"] == 1 and st["packets"]["remove_marked"] == 1
        assert st["offload"]["queued_add"] == st["offload"]["queued_del"] == 0
    finally:
        wire.close()
        assert fe.stop() == 0


# ----------------------------------------------------------- offload channel

def test_offload_channel_resends_after_reconnect_and_counts_refusals(testbed):
    """A lost batch is resent on a new connection; a full switch table refuses, flows go on."""
    gw = str(testbed.topology.get("frontend1").gateway_address)
    with CtlServer(gw, 0, ns=testbed.ns("switch"), capacity=1, drop_first_batches=1) as ctl:
        fe = start_frontend(testbed, ctl)
        wire = Wire(testbed, ctl.port)
        try:
            for port in (42000, 42001):
                c = Conn(port)
                wire.send(c.pkt())
                wire.send(c.pkt(b"GET /static/a HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
                syn, = wire.frames(3, want=1)
                be = "be1" if syn[IP].dst == BACKENDS["be1"] else "be2"
                wire.send(c.from_backend(be, c.s, c.c + 1, "SA"))
                assert len(wire.frames(3, want=2)) == 2
                if port == 42000:
                    # The first batch is lost with its connection, then resent.
                    ctl.wait_for(lambda s: s.entries(layouts.CtlOp.ADD), timeout=10)
            st = wait_stats(fe, lambda st: st["offload"]["batches_acked"] >= 2, timeout=10)
            o = st["offload"]
            assert o["connects"] >= 2 and o["disconnects"] >= 1 and o["batches_resent"] >= 1
            assert o["added"] == 1 and o["refused"] == 1
            assert ctl.batches[0] == ctl.batches[1], "the lost batch is resent as it was"
            assert ctl.bodies[0] == ctl.bodies[1]
            assert len(ctl.table) == 1
            assert st["flows_by_state"]["spliced"] == 2, "a refused flow stays on the front-end"
        finally:
            wire.close()
            assert fe.stop() == 0
    # On the way out the front-end deleted what it had installed.
    assert ctl.table == {}


def test_link_down_closes_the_control_connection_until_the_link_is_back(testbed, ctl):
    """The front-end's interface goes down: its watchdog sees the port's link down
    and closes the control connection (the switch host's daemon would take it out of
    the selection); the link comes back: it connects again at once, and serves."""
    host = testbed.host("frontend1")
    fe = start_frontend(testbed, ctl)
    try:
        ctl.wait_for(lambda s: s.connections >= 1)
        st = wait_stats(fe, lambda st: st["offload"]["connected"] == 1)
        assert st["offload"]["healthy"] == 1 and st["offload"]["link_downs"] == 0
        before = ctl.connections
        host.run(f"ip link set dev {host.iface} down")
        try:
            st = wait_stats(fe, lambda st: st["offload"]["healthy"] == 0 and
                            st["offload"]["connected"] == 0)
            assert st["offload"]["link_downs"] == 1 and st["offload"]["health_closes"] == 1
        finally:
            host.run(f"ip link set dev {host.iface} up")
        wait_stats(fe, lambda st: st["offload"]["healthy"] == 1 and
                   st["offload"]["connected"] == 1, timeout=20)
        ctl.wait_for(lambda s: s.connections > before, timeout=20)
        wire = Wire(testbed, ctl.port)
        try:
            c = Conn(43100)
            wire.send(c.pkt())
            wire.send(c.pkt(b"GET /static/a HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
            syn, = wire.frames(3, want=1)
            assert syn[TCP].flags == "S", "the packet loop serves after the link came back"
        finally:
            wire.close()
    finally:
        assert fe.stop() == 0


def test_drain_notice_reaches_the_packet_loop(testbed, ctl):
    """The switch host's NOTICE DRAIN, then RESUME, to front-end frontend1 by name,
    on the real binary's control connection (it proved frontend1's key): its
    channel reads them, MACs checked (the loop's part is the state
    machine's, tests/test_frontend_drain.py)."""
    fe = start_frontend(testbed, ctl)
    try:
        wait_stats(fe, lambda st: st["offload"]["connected"] == 1)
        ctl.server.notify("frontend1", "drain")
        st = wait_stats(fe, lambda st: st["offload"]["draining"] == 1)
        assert st["offload"]["notices"] == 1
        ctl.server.notify("frontend1", "resume")
        st = wait_stats(fe, lambda st: st["offload"]["draining"] == 0)
        assert st["offload"]["notices"] == 2 and st["offload"]["bad_macs"] == 0
    finally:
        assert fe.stop() == 0


def test_front_end_survives_a_missing_control_plane(testbed, tmp_path):
    """No one listens on the channel: flows are served, entries wait, connects are retried."""
    host = testbed.host("frontend1")
    key = tmp_path / "ctl.key"
    key.write_text("00" * 32 + "\n")
    key.chmod(0o600)
    facts = FrontendFacts(vip=VIP, vip_port=80, backend_addresses=BACKENDS,
                          nexthop_mac=host.switch_mac, control=("10.10.2.1", 9),
                          control_key=str(key))
    fe = Frontend(host, SERVICE, facts, limits=LIMITS)
    fe.start()
    wire = Wire(testbed, 9)
    try:
        fe.wait_healthy(20)
        c = Conn(43000)
        wire.send(c.pkt())
        wire.send(c.pkt(b"GET /static/a HTTP/1.1\r\nHost: a\r\n\r\n", "PA"))
        syn, = wire.frames(3, want=1)
        be = "be1" if syn[IP].dst == BACKENDS["be1"] else "be2"
        wire.send(c.from_backend(be, c.s, c.c + 1, "SA"))
        assert len(wire.frames(3, want=2)) == 2
        st = wait_stats(fe, lambda st: st["offload"]["connect_failures"] >= 2)
        assert st["offload"]["connected"] == 0 and st["offload"]["queued_add"] == 1
    finally:
        wire.close()
        assert fe.stop() == 0


# ---------------------------------------------------------------- resources

def test_idle_front_end_does_not_burn_a_core(frontend):
    """With nothing to do the poller backs off to sleeping: well under a core."""
    fe, _ = frontend
    pid = fe.stats()["pid"]

    def cpu_s() -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100.0   # utime + stime, in ticks

    time.sleep(0.5)
    before, t0 = cpu_s(), time.monotonic()
    time.sleep(3)
    used = (cpu_s() - before) / (time.monotonic() - t0)
    print(f"idle front-end: {used:.1%} of a core")
    assert used < 0.2, f"idle front-end used {used:.0%} of a core"


def test_facts_come_from_the_testbed(testbed):
    facts = facts_from_testbed(testbed, "frontend1", control=("10.10.2.1", 7000))
    host = testbed.host("frontend1")
    assert facts.vip == VIP and facts.vip_port == 80 and facts.iface == "eth0"
    assert facts.nexthop_mac == host.switch_mac and facts.control == ("10.10.2.1", 7000)
    assert facts.backend_addresses == {}      # this topology has no back-end hosts


def test_launcher_refuses_a_config_the_binary_rejects(testbed):
    host = testbed.host("frontend1")
    facts = FrontendFacts(vip=VIP, vip_port=80, backend_addresses=BACKENDS,
                          nexthop_mac=host.switch_mac)
    fe = Frontend(host, SERVICE, facts, limits={"flow_capacity": 0})

    with pytest.raises(FrontendError, match="flow_capacity"):
        fe.start()
    assert fe.process is None
    assert BINARY.exists()


# ------------------------------------------------------------ the af_xdp port

def test_af_xdp_port_is_native_and_leaves_the_kernel_its_frames(testbed, ctl):
    """The port's program (fe_xsk) runs in the veth driver; the front-end host's
    kernel keeps its own traffic on the link (the channel connects, ping is
    answered) and the front-end does not even see it; stop() takes the
    program off the link."""
    fe = start_frontend(testbed, ctl, port="af_xdp")
    try:
        prog = fe.xdp_program()
        assert prog is not None and (prog["name"], prog["mode"]) == ("fe_xsk", "native"), prog
        ctl.wait_for(lambda s: s.connections >= 1)
        rx = fe.stats()["packets"]["rx"]
        host = testbed.host("frontend1")
        ping = testbed.switch.run(f"ping -c 3 -i 0.2 -W 2 {host.address}", check=False)
        assert ping.ok, ping.stdout + ping.stderr
        assert fe.stats()["packets"]["rx"] == rx
    finally:
        assert fe.stop() == 0
    assert fe.xdp_program() is None


@pytest.fixture
def generic_link(testbed):
    """An interface whose driver has no native XDP (a bridge: this kernel has
    no dummy driver), in the front-end's namespace."""
    host = testbed.host("frontend1")
    host.run("ip link add xdpbr0 type bridge && ip link set xdpbr0 up")
    try:
        yield host, "xdpbr0"
    finally:
        host.run("ip link del xdpbr0", check=False)


def test_af_xdp_port_refuses_generic_xdp(generic_link, ctl):
    """Where the kernel can attach the program only in generic (skb) mode, the
    launcher stops the front-end, says why, and leaves no program behind."""
    host, dev = generic_link
    facts = FrontendFacts(vip=VIP, vip_port=80, backend_addresses=BACKENDS,
                          nexthop_mac=host.switch_mac, iface=dev, control=(ctl.address, ctl.port),
                          control_key=ctl.key_path)
    fe = Frontend(host, SERVICE, facts, limits=LIMITS, port="af_xdp")
    fe.start()
    with pytest.raises(FrontendError, match=r"generic mode: its driver \(bridge\) has no "
                                            r"native XDP"):
        fe.wait_healthy(20)
    assert not fe.process.running() and "miresga-frontend: stopped" in fe.logs()
    link = json.loads(host.run(f"ip -j link show dev {dev}").stdout)[0]
    assert "xdp" not in link, link


def test_af_xdp_port_refuses_a_link_it_cannot_serve(generic_link, testbed, ctl):
    """An MTU above what the port's mbufs hold, receive queues it would not read,
    or an XDP program already on the link (another front-end's), is refused
    before anything starts."""
    host, dev = generic_link
    host.run(f"ip link set {dev} mtu 3000")
    with pytest.raises(FrontendError, match="MTU 3000 is above 1778"):
        start_frontend(testbed, ctl, port="af_xdp", iface=dev)
    host.run(f"ethtool -L {host.iface} rx 2")
    try:
        with pytest.raises(FrontendError, match="eth0 has 2 receive queues"):
            start_frontend(testbed, ctl, port="af_xdp")
    finally:
        host.run(f"ethtool -L {host.iface} rx 1")
    first = start_frontend(testbed, ctl, port="af_xdp")
    try:
        with pytest.raises(FrontendError, match=r"eth0 already has an XDP program \(fe_xsk"):
            start_frontend(testbed, ctl, port="af_xdp")
    finally:
        assert first.stop() == 0
    assert first.xdp_program() is None
