"""The switch pipeline on the emulated testbed, with real kernels at the ends.

No front-end, agent or web server runs here: the switch alone must complete a
client's handshake (the client kernel accepts its SYN-ACK), and the packets
it hands on are captured with AF_PACKET where they land.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest
from scapy.all import IP, TCP, Ether, Raw, raw

from common import miresga_defaults as defaults
from common.netns import netns
from common.service import Cluster, Service, default_service
from hosts.testbed import EmulatedTestbed
from hosts.topology import DEFAULT_TOPOLOGY, load_topology
from switchhost import bpf, layouts
from miresga.control.frontend import quiet_afpacket_link
from switchhost.layouts import CtlOp
from switchhost.addresses import ip_be, port_be
from switchhost.client import ControlClient
from switchhost.pipeline import FlowOp
from switchhost.pipelines.miresga import MiresgaSwitch, SwitchPlan
from switchhost.protocol import Entry, new_key

from conftest import unique_prefix
from packets import TP_STATUS_CSUMNOTREADY, Capture, checksums_ok, ones_sum

pytestmark = pytest.mark.testbed

def tcp_info(s: socket.socket) -> dict:
    b = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return {"state": b[0], "options": b[5], "snd_wscale": b[6] & 0xF, "rcv_wscale": b[6] >> 4}


@pytest.fixture(scope="module")
def tb():
    with EmulatedTestbed(load_topology(DEFAULT_TOPOLOGY), prefix=unique_prefix("sw")) as t:
        # The front-end's link as the miresga target leaves it (an af_packet
        # port): the switch's port toward it completes checksums.
        for fe in t.frontends:
            quiet_afpacket_link(fe, t.switch)
        yield t


def load_switch(tb, service=None, **params) -> MiresgaSwitch:
    service = service or default_service([h.name for h in tb.backends])
    plan = SwitchPlan.from_testbed(tb, service, **params)
    return MiresgaSwitch(plan, pin_dir=str(tb.bpf_dir / "switch")).load()


def test_connect_completes_against_the_switch_and_data_reaches_the_frontend(tb):
    """A client's connect() to the VIP completes with the switch's SYN-ACK (MSS
    1460, SACK, window scale 7, timestamps whose TSval is the cookie) and its
    handshake ACK and first
    data segment arrive at the front-end's port, addressed to the VIP, with the
    front-end's MAC, TTL - 1 and correct checksums; the ACK carries the cookie,
    whose low byte holds the client's options.  Both carry the switch's ADMIT mark:
    each still has seq - 1 = c and ack - 1 = s."""
    fe, client = tb.frontends[0], tb.host("client")
    request = b"GET /switch-test HTTP/1.1\r\nHost: miresga\r\n\r\n"
    with load_switch(tb) as sw:
        cap = Capture(fe.netns, fe.iface)
        try:
            with netns(client.netns):
                s = socket.socket()
            s.settimeout(5)
            s.connect((str(tb.vip), tb.vip_port))  # raises unless a SYN-ACK came back
            info = tcp_info(s)
            lport = s.getsockname()[1]
            # 1460 less the 12 bytes of the timestamp option on every segment
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 1448
            s.sendall(request)
            from_client = lambda p: (TCP in p and p[IP].src == str(client.address)  # noqa
                                     and p[TCP].sport == lport)
            data = cap.wait_for(lambda p: from_client(p) and Raw in p)
            acks = cap.wait_for(lambda p: from_client(p) and Raw not in p
                                and p[TCP].flags == "A")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        finally:
            cap.close()
        counters = sw.counters()

    assert info["state"] == 1  # TCP_ESTABLISHED
    assert info["options"] & 0x1 and info["options"] & 0x2 and info["options"] & 0x4
    assert info["snd_wscale"] == 7
    assert acks and data, "nothing from the client reached the front-end"
    ack, _ = acks[0]
    pkt, _ = data[0]
    for p in (ack, pkt):
        assert p[IP].dst == str(tb.vip) and p[TCP].dport == tb.vip_port
        assert p[Ether].dst == fe.mac and p[Ether].src == fe.switch_mac
        assert p[IP].ttl == 63
        assert checksums_ok(p)
    assert bytes(pkt[Raw].load) == request
    assert pkt[TCP].seq == ack[TCP].seq and pkt[TCP].ack == ack[TCP].ack
    f = layouts.cookie_fields(ack[TCP].ack - 1)
    assert dict(ack[TCP].options)["Timestamp"][1] == ack[TCP].ack - 1  # TSecr echoes the cookie
    assert (f["mss"], f["sack"], f["wscale"]) == (1460, True, info["rcv_wscale"])
    assert ack[IP].tos >> 2 == layouts.DSCP_ADMIT and pkt[IP].tos >> 2 == layouts.DSCP_ADMIT
    assert counters["syn_cookie"] >= 1 and counters["cookie_ok"] >= 1
    assert counters["to_frontend"] >= 2 and counters["cookie_bad"] == 0
    assert counters["fe_admit"] >= 2


@pytest.mark.parametrize("egress_tx", ["off", "on"])
def test_offloaded_ack_with_partial_checksum_reaches_the_backend(tb, egress_tx):
    """With TX checksum offload on at the client, its kernel hands the switch
    CHECKSUM_PARTIAL packets, whose checksum field holds only the pseudo-header
    sum.  The handshake ACK of a flow with an entry is rewritten VIP:80 ->
    back-end:8080.  If the switch's port toward the back-end has TX offload
    off, the kernel completes the checksum from that field on the way out: the
    back-end must receive a correct one.  If it has it on, the frame arrives
    still PARTIAL, and its field must be the pseudo-header sum of the new
    addresses, so that the checksum a device completes is correct."""
    client, be = tb.host("client"), tb.backends[0]
    service = Service(clusters=[Cluster(name="all", backends=[h.name for h in tb.backends],
                                        port=8080)], default_cluster="all")
    lport = 45678 if egress_tx == "off" else 45679
    client.run("ethtool -K eth0 tx on")
    tb.switch.run(f"ethtool -K {be.switch_port} tx {egress_tx}")
    try:
        with load_switch(tb, service) as sw:
            sw.apply([FlowOp(CtlOp.ADD, ip_be(str(client.address)), port_be(lport), 0)])
            cap = Capture(be.netns, be.iface)
            try:
                with netns(client.netns):
                    s = socket.socket()
                s.settimeout(5)
                s.bind(("0.0.0.0", lport))
                s.connect((str(tb.vip), tb.vip_port))
                hits = cap.wait_for(lambda p: TCP in p and p[TCP].sport == lport)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            finally:
                cap.close()
            counters = sw.counters()
    finally:
        client.run("ethtool -K eth0 tx off")
        tb.switch.run(f"ethtool -K {be.switch_port} tx off")

    assert hits, "the offloaded ACK did not reach the back-end"
    p, status = hits[0]
    assert p[IP].dst == str(be.address) and p[TCP].dport == 8080 and p[TCP].flags == "A"
    assert p[Ether].dst == be.mac and p[IP].ttl == 63
    assert counters["offload_fwd"] >= 1
    if egress_tx == "off":
        assert not status & TP_STATUS_CSUMNOTREADY
        assert checksums_ok(p), "the checksum completed from the switch's field is wrong"
        return
    assert status & TP_STATUS_CSUMNOTREADY, "expected a CHECKSUM_PARTIAL frame"
    seg = raw(p[TCP])
    pseudo = struct.pack("!4s4sBBH", socket.inet_aton(p[IP].src), socket.inet_aton(p[IP].dst),
                         0, 6, len(seg))
    assert p[TCP].chksum == ones_sum(pseudo), "field must hold the new pseudo-header sum"
    # Complete it as the device would: sum the segment as it is, store ~sum.
    completed = p.copy()
    completed[TCP].chksum = (~ones_sum(seg)) & 0xFFFF
    assert checksums_ok(Ether(raw(completed)))


def test_backend_packets_go_to_the_client_rewritten_or_to_the_frontend(tb):
    """A back-end's packet marked by its agent (MIRESGA) to a client with an entry
    leaves the switch toward the client with source VIP:80, routed by the switch's
    FIB, its mark cleared; without an entry it goes to the client's front-end
    untouched but for MACs, TTL and the mark, which says BACKEND there (its agent's
    mark checked on its own port: a front-end may answer in the back-end's name).
    An unmarked one is not Miresga's: the switch routes it like any packet."""
    client, be, fe = tb.host("client"), tb.backends[0], tb.frontends[0]
    marked = layouts.DSCP_MIRESGA << 2
    with load_switch(tb) as sw:
        sw.apply([FlowOp(CtlOp.ADD, ip_be(str(client.address)), port_be(46000), 0)])
        at_client, at_fe = Capture(client.netns, client.iface), Capture(fe.netns, fe.iface)
        try:
            with netns(be.netns):
                tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            tx.bind((be.iface, 0))
            for cport, body, tos in ((46000, b"offloaded", marked),
                                     (46001, b"not-offloaded", marked),
                                     (46002, b"not-miresga", 0)):
                tx.send(raw(Ether(src=be.mac, dst=be.switch_mac)
                            / IP(src=str(be.address), dst=str(client.address), tos=tos)
                            / TCP(sport=80, dport=cport, flags="PA", seq=1, ack=1) / body))
            tx.close()
            rewritten = at_client.wait_for(lambda p: TCP in p and p[TCP].dport == 46000)
            plain = at_client.wait_for(lambda p: TCP in p and p[TCP].dport == 46002)
            handed = at_fe.wait_for(lambda p: TCP in p and p[TCP].dport == 46001)
        finally:
            at_client.close()
            at_fe.close()
        counters = sw.counters()
    assert rewritten and handed and plain
    p, _ = rewritten[0]
    assert (p[IP].src, p[TCP].sport, p[IP].ttl, p[IP].tos) == (str(tb.vip), 80, 63, 0)
    assert p[Ether].dst == client.mac and p[Ether].src == client.switch_mac
    assert bytes(p[Raw].load) == b"offloaded" and checksums_ok(p)
    q, _ = handed[0]
    assert (q[IP].src, q[TCP].sport, q[Ether].dst, q[IP].tos) == (str(be.address), 80, fe.mac,
                                                                layouts.DSCP_BACKEND << 2)
    assert bytes(q[Raw].load) == b"not-offloaded" and checksums_ok(q)
    u, _ = plain[0]
    assert (u[IP].src, u[TCP].sport) == (str(be.address), 80)
    assert counters["offload_rev"] == 1 and counters["rev_to_frontend"] == 1
    assert counters["be_unmarked"] == 1 and counters["fib_miss"] == 0


def test_install_mark_counts_only_from_a_frontend_port(tb):
    """An INSTALL-marked segment from the front-end's host writes the data-plane
    entry (the port table knows the front-end's switch port) and reaches the back-end
    with the mark cleared; the same segment from the client's host writes nothing."""
    client, be, fe = tb.host("client"), tb.backends[0], tb.frontends[0]
    cip = str(client.address)

    def install_from(host, cport):
        with netns(host.netns):
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with tx:
            tx.bind((host.iface, 0))
            tx.send(raw(Ether(src=host.mac, dst=host.switch_mac)
                        / IP(src=cip, dst=str(be.address), tos=layouts.DSCP_INSTALL << 2, id=0)
                        / TCP(sport=cport, dport=80, flags="A", seq=1, ack=1)))

    with load_switch(tb) as sw:
        at_be = Capture(be.netns, be.iface)
        try:
            install_from(fe, 47000)
            install_from(client, 47001)
            got = at_be.wait_for(lambda p: TCP in p and p[TCP].sport == 47000)
            at_be.wait_for(lambda p: TCP in p and p[TCP].sport == 47001)
        finally:
            at_be.close()
        live = sw.liveness([(ip_be(cip), port_be(47000), 0), (ip_be(cip), port_be(47001), 0)])
        counters = sw.counters()
    assert live[0].present and live[0].backend_idx == 0 and not live[1].present
    assert got[0][0][IP].tos == 0 and checksums_ok(got[0][0])
    assert counters["dp_install"] == 1 and counters["mark_untrusted"] == 1


def test_switchd_on_the_switch_host(tb):
    """The switch host's daemon started with the plan `bench testbed plan miresga`
    builds from the testbed's facts: the pipeline is on every switch port, a
    client's connect() completes, a front-end reaches the protocol at its gateway
    address with the key and installs an entry, stats are written, and SIGTERM
    leaves neither filters nor pins behind."""
    fe, client = tb.frontends[0], tb.host("client")
    stats = f"{tb.switch.workdir}/switch-stats.json"
    plan = f"{tb.switch.workdir}/switch-plan.json"
    key_path, key = f"{tb.switch.workdir}/ctl.key", new_key()
    made = tb.switch.run(tb.switch.tool("bench", f"testbed plan miresga --prefix {tb.prefix}"))
    made_plan = json.loads(made.stdout)
    assert made_plan["netns"] == tb.switch.netns
    # The deployment's timeouts are stated, so the daemon checks that they nest.
    assert {k: made_plan[k] for k in ("idle_timeout_s", "frontend_idle_s", "agent_idle_s")} == {
        "idle_timeout_s": defaults.SWITCH_IDLE_S, "frontend_idle_s": defaults.FRONTEND_IDLE_S,
        "agent_idle_s": defaults.AGENT_IDLE_S}
    tb.switch.put_text(made.stdout, plan)
    tb.switch.put_secret(key + "\n", key_path)
    # tool() execs, so the process stop() signals and waits for is the daemon
    # itself, not a shell that dies at once while it is still unloading.
    proc = tb.switch.start(tb.switch.tool(
        "switchhost", f"--pipeline miresga --plan {plan} --key {key_path} "
                      f"--listen {fe.gateway}:{layouts.CTL_PORT_DEFAULT} "
                      f"--pin-dir {tb.bpf_dir}/switch --stats-file {stats} --stats-interval 0.2"),
        name="switchd")
    try:
        deadline = time.monotonic() + 60
        while "switchd ready" not in proc.logs() and time.monotonic() < deadline:
            assert proc.running(), proc.logs()
            time.sleep(0.1)
        line = next(ln for ln in proc.logs().splitlines() if ln.startswith("switchd ready"))
        info = json.loads(line.split(" ", 2)[2])
        ports = [h.switch_port for h in tb.hosts.values() if h.role != "switch"]
        assert sorted(info["ports"]) == sorted(ports)
        assert info["pin_dir"] == str(tb.bpf_dir / "switch")
        assert all(bpf.tc_attached_prog_id(tb.switch.netns, p) for p in ports)

        with netns(client.netns):
            s = socket.create_connection((str(tb.vip), tb.vip_port), timeout=5)
        cport = s.getsockname()[1]
        s.close()
        with netns(fe.netns):
            c = ControlClient(str(fe.gateway), layouts.CTL_PORT_DEFAULT, key=bytes.fromhex(key))
        with c:
            ack = c.batch([Entry(str(client.address), cport, CtlOp.ADD, 0)])
        assert ack.added == 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = json.loads(open(stats).read())
            if st["flow_table"]["occupancy"] == 1:
                break
            time.sleep(0.1)
        assert st["flow_table"]["occupancy"] == 1 and st["counters"]["syn_cookie"] >= 1
    finally:
        rc = proc.stop(10)
    assert rc == 0, proc.logs()
    assert not any(bpf.tc_attached_prog_id(tb.switch.netns, p) for p in ports)
    assert not os.path.exists(info["pin_dir"])
