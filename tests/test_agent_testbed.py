"""The back-end agent on the emulated testbed, against real Linux TCP and nginx.

No Miresga switch or front-end: the client's namespace plays both with raw
frames (tests/rawtcp.py).  It sends the fused SYN to backend1 through the
(kernel-forwarding) switch, completes the handshake, requests a 10 MB object
from a real nginx, and receives it as the client would: every byte arrives
with sequence numbers in the switch's space, which only the agent's rewriting
can produce.  The receiver loses two segments on purpose, so the back-end has
to recover using SACK blocks that the agent translated.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.netns import netns as in_netns
from hosts.testbed import EmulatedTestbed
from hosts.topology import DEFAULT_TOPOLOGY, load_topology
from miresga.control.agent import PROG_EGRESS, PROG_INGRESS, Agent, AgentConn, AgentKey
from switchhost.bpf import Map
from miresga.control.frontend import quiet_afpacket_link

from conftest import unique_prefix
from rawtcp import ACK, PSH, SYN, RawPeer, receive_response, syn_options

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

OBJECT_SIZE = 10 * 1024 * 1024
CLIENT_WSCALE = 7
CLIENT_WINDOW = 2048        # << 7 = 256 KiB
ROOT = Path(__file__).resolve().parents[1]
M32 = 0xFFFFFFFF


@pytest.fixture(scope="module")
def tb():
    with EmulatedTestbed(load_topology(DEFAULT_TOPOLOGY), prefix=unique_prefix("ag")) as tb:
        # The raw peer reads the client's link like an af_packet port: full
        # checksums, one MTU per frame (the switch's port completes them).
        quiet_afpacket_link(tb.host("client"), tb.switch)
        yield tb


@pytest.fixture(scope="module")
def nginx(tb):
    """nginx on backend1 serving a 10 MB object of random bytes; yields its sha256."""
    be = tb.host("backend1")
    wd = Path(be.workdir) / "nginx"
    (wd / "www").mkdir(parents=True, exist_ok=True)
    body = random.Random(6).randbytes(OBJECT_SIZE)
    (wd / "www" / "10MB.bin").write_bytes(body)
    temps = "".join(f"  {k}_temp_path {wd}/{k};\n"
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (wd / "nginx.conf").write_text(f"""\
daemon off;
user root;
worker_processes 1;
pid {wd}/nginx.pid;
error_log {wd}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
{temps}  sendfile on;
  server {{
    listen {be.address}:80;
    root {wd}/www;
  }}
}}
""")
    proc = be.start(f"exec nginx -p {wd} -c {wd}/nginx.conf", name="nginx")
    try:
        be.run("for i in $(seq 100); do ss -ltnH | grep -q ':80 ' && exit 0; sleep 0.05; done; "
               "exit 1")
        yield hashlib.sha256(body).hexdigest()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def backend_wscale(tb, nginx) -> int:
    """The window scale backend1's nginx answers with, seen by a real client's stack.

    It depends on the host's buffer sysctls (tcp_rmem, rmem_max), so it is
    measured, not assumed: TCP_INFO's tcpi_snd_wscale is the peer's shift.
    """
    with in_netns(tb.host("client").netns):
        sock = socket.create_connection((str(tb.host("backend1").address), 80), timeout=5)
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return info[6] & 0x0F  # tcpi_snd_wscale:4, tcpi_rcv_wscale:4
    finally:
        sock.close()


def netstat(host) -> dict[str, int]:
    """TcpExt counters of a host's namespace."""
    lines = host.run("cat /proc/net/netstat").stdout.splitlines()
    out = {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            out.update(zip(names.split()[1:], map(int, values.split()[1:])))
    return out


def tx_stats(host) -> tuple[int, int]:
    link = json.loads(host.run("ip -s -j link show eth0").stdout)[0]["stats64"]["tx"]
    return link["packets"], link["bytes"]


def bpf_ids(kind: str) -> set[int]:
    out = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True,
                         check=True).stdout
    return {x["id"] for x in json.loads(out or "[]")}


def tc_state(host) -> dict[str, str]:
    return {
        "qdisc": host.run("tc qdisc show dev eth0").stdout,
        "ingress": host.run("tc filter show dev eth0 ingress").stdout,
        "egress": host.run("tc filter show dev eth0 egress").stdout,
    }


def assert_nothing_left(host, pin_dir: Path, prog_ids: set[int], map_ids: set[int]) -> None:
    """No filter, no clsact, no pin; and the kernel has freed the programs and maps
    (checked with tc and bpftool, the tools an operator would use)."""
    state = tc_state(host)
    assert state["ingress"].strip() == "" and state["egress"].strip() == "", state
    assert "clsact" not in state["qdisc"], state["qdisc"]
    assert not pin_dir.exists()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = (prog_ids & bpf_ids("prog")) | (map_ids & bpf_ids("map"))
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"still loaded after detach: progs {prog_ids & bpf_ids('prog')}, "
                         f"maps {map_ids & bpf_ids('map')}")


def pinned_map_ids(pin_dir: Path) -> set[int]:
    ids = set()
    for p in pin_dir.iterdir():
        out = subprocess.run(["bpftool", "-j", "map", "show", "pinned", str(p)],
                             capture_output=True, text=True, check=True).stdout
        ids.add(json.loads(out)["id"])
    return ids


def cli(host, args: str) -> str:
    return host.run(host.tool("miresga.control.agent", args)).stdout


def set_offloads(host, on: bool) -> None:
    v = "on" if on else "off"
    host.run(f"ethtool -K eth0 sg {v} tx {v} tso {v} gso {v}")
    feats = host.run("ethtool -k eth0").stdout
    assert f"tx-checksumming: {v}" in feats and f"tcp-segmentation-offload: {v}" in feats, feats


def spare_address(tb) -> str:
    """An address in the client's subnet that no namespace owns (see rawtcp.py)."""
    cl = tb.host("client")
    net = ipaddress.ip_network(f"{cl.address}/24", strict=False)
    taken = {str(h.address) for h in tb.hosts.values() if h.address} | {str(cl.gateway)}
    return next(str(a) for a in reversed(list(net.hosts())) if str(a) not in taken)


@pytest.mark.parametrize("offload,same_scale", [(True, True), (False, True), (True, False),
                                                (False, False)],
                         ids=["offload-on-W-equal", "offload-off-W-equal",
                              "offload-on-W-differs", "offload-off-W-differs"])
def test_10mb_response_through_the_agent(tb, nginx, backend_wscale, offload, same_scale):
    """A fused connection to nginx: the SYN-ACK arrives with seq s, the 10 MB response
    with the right sha256 and valid checksums, SACK-based recovery works through the
    agent's translation, and the entry is cleaned up after both FINs.  Run with TX
    checksum offload and TSO on (the agent rewrites CHECKSUM_PARTIAL super-packets)
    and off, and with the switch's W equal to and different from the back-end's own
    window scale."""
    wscale = backend_wscale if same_scale else (backend_wscale - 2 if backend_wscale >= 2
                                                 else backend_wscale + 2)
    be, cl, sw = tb.host("backend1"), tb.host("client"), tb.switch
    pin_dir = tb.bpf_dir / "agent-backend1"
    cx = spare_address(tb)
    rnd = random.Random(f"{offload}{same_scale}")
    sport = rnd.randrange(20000, 60000)
    c = rnd.getrandbits(32)
    s = (2**32 - 5_000_000 + rnd.getrandbits(8)) & M32   # stream wraps 2^32 near 5 MB
    set_offloads(be, offload)
    sw.run(f"ip neigh replace {cx} lladdr {cl.mac} dev {cl.switch_port} nud permanent")
    cli(be, f"attach --iface eth0 --pin-dir {pin_dir} --wscale {wscale} --close-grace 1 "
            f"--idle-timeout 60 --max-conns 4096")
    agent = Agent("eth0", netns=be.netns, pin_dir=str(pin_dir))
    ids = agent.attached()
    prog_ids, map_ids = {ids["ingress"], ids["egress"]}, pinned_map_ids(pin_dir)
    peer = RawPeer(cl.netns, cl.iface, cl.mac, cl.switch_mac, cx, str(be.address), sport)
    try:
        ns0, tx0 = netstat(be), tx_stats(be)

        # The front-end's fused SYN: seq c, s in the ack field, ACK flag off.
        synack = None
        for _ in range(3):
            peer.send(SYN, c, s, 64240, syn_options(1460, CLIENT_WSCALE))
            synack = peer.recv(2.0)
            while synack is not None and synack.flags & (SYN | ACK) != SYN | ACK:
                synack = peer.recv(2.0)
            if synack is not None:
                break
        assert synack is not None, "no SYN-ACK"
        assert synack.checksum_ok
        assert (synack.seq, synack.ack) == (s, (c + 1) & M32), "SYN-ACK not translated to s"
        assert synack.option(3) == bytes([wscale]), "window scale option should read W"

        peer.send(ACK, c + 1, s + 1, CLIENT_WINDOW)
        req = (f"GET /10MB.bin HTTP/1.1\r\nHost: {tb.vip}\r\nConnection: close\r\n\r\n"
               .encode())
        peer.send(PSH | ACK, c + 1, s + 1, CLIENT_WINDOW, payload=req)
        dl = receive_response(peer, c, s, CLIENT_WINDOW, drop_offsets=[1_000_000, 5_000_000])

        assert b" 200 OK" in dl.headers.split(b"\r\n")[0]
        assert len(dl.body) == OBJECT_SIZE
        assert hashlib.sha256(dl.body).hexdigest() == nginx
        assert peer.bad_checksums == 0, f"{peer.bad_checksums} frames with bad checksums"

        # Recovery used the SACK blocks the agent translated: the back-end's
        # kernel took them as valid (none discarded) and recovered with them.
        ns1 = netstat(be)
        assert len(dl.dropped) == 2 and dl.sacks_sent > 0
        assert ns1["TCPSACKDiscard"] - ns0["TCPSACKDiscard"] == 0
        assert ns1["TCPSackRecovery"] - ns0["TCPSackRecovery"] >= 1
        assert dl.retransmissions_seen >= 2

        st = agent.stats()
        cnt = st["counters"]
        assert st["connections"] == 1 and cnt["synack"] == 1
        assert cnt["rewrite_out"] >= 1 and cnt["rewrite_in"] >= dl.segments // 2
        assert cnt["sack_rewrite"] >= 1
        assert cnt["close_fin"] == 1
        assert cnt["bad_options"] == 0 and cnt["map_fail"] == 0
        if not same_scale:
            assert cnt["wscale_opt_fix"] == 1 and cnt["window_fix"] > 0
        else:
            assert cnt["wscale_opt_fix"] == 0 and cnt["window_fix"] == 0

        packets, nbytes = (b - a for a, b in zip(tx0, tx_stats(be)))
        if offload:
            # veth counts a TSO super-packet once: the agent rewrote GSO skbs.
            assert nbytes / packets > 1514, "offload on but no super-packets"
        else:
            assert nbytes / packets <= 1514

        # Both FINs seen: the entry goes once the 1 s grace period is over.
        deadline = time.monotonic() + 10
        while agent.stats()["entries"] and time.monotonic() < deadline:
            time.sleep(0.2)
        st = agent.stats()
        assert st["entries"] == 0 and st["cleanups"] == 1
    finally:
        peer.close()
        out = cli(be, f"detach --iface eth0 --pin-dir {pin_dir}")
        sw.run(f"ip neigh del {cx} dev {cl.switch_port}", check=False)
    assert "detached" in out
    assert_nothing_left(be, pin_dir, prog_ids, map_ids)


def test_attach_is_idempotent_and_detach_leaves_nothing(tb):
    """attach twice reloads the programs in place and keeps live entries; a resize while
    attached is refused without disturbing the attachment; detach twice is harmless and
    leaves no filter, qdisc, pin, program or map behind (tc, bpftool)."""
    be = tb.host("backend2")
    pin_dir = tb.bpf_dir / "agent-backend2"
    assert "clsact" not in tc_state(be)["qdisc"]
    try:
        out = cli(be, f"attach --iface eth0 --pin-dir {pin_dir} --max-conns 512")
        assert "attached" in out
        agent = Agent("eth0", netns=be.netns, pin_dir=str(pin_dir))
        first = agent.attached()
        maps = pinned_map_ids(pin_dir)
        assert first["ingress"] and first["egress"]
        st = tc_state(be)
        assert f"id {first['ingress']} name {PROG_INGRESS} " in st["ingress"], st
        assert f"id {first['egress']} name {PROG_EGRESS} " in st["egress"], st

        # A live entry, to show a reload keeps connection state.
        key = AgentKey.of("10.10.1.9", 4242, 80)
        with Map.from_pin(str(pin_dir / "mg_agent_conns"), AgentKey, AgentConn) as conns:
            conns.update(key, AgentConn(switch_isn=1, client_isn=2, state=2, delta=7,
                                        last_seen_ns=time.clock_gettime_ns(time.CLOCK_MONOTONIC)))

        cli(be, f"attach --iface eth0 --pin-dir {pin_dir} --max-conns 512 --wscale 6")
        second = agent.attached()
        assert second["ingress"] != first["ingress"] and second["egress"] != first["egress"]
        assert pinned_map_ids(pin_dir) == maps, "maps must be reused, not recreated"
        assert [c.delta for c in agent.connections()] == [7]
        assert agent.stats()["wscale"] == 6
        # The replaced programs are gone from the kernel.
        deadline = time.monotonic() + 10
        while {first["ingress"], first["egress"]} & bpf_ids("prog") and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert not {first["ingress"], first["egress"]} & bpf_ids("prog")

        r = be.run(be.tool("miresga.control.agent",
                           f"attach --iface eth0 --pin-dir {pin_dir} --max-conns 1024"),
                   check=False)
        assert not r.ok and "detach first" in r.stderr, r.stderr
        assert agent.attached() == second, "a refused attach must not disturb the agent"

        stats = json.loads(cli(be, f"stats --iface eth0 --pin-dir {pin_dir} --json"))
        assert stats["capacity"] == 512 and stats["entries"] == 1
        assert "10.10.1.9:4242" in cli(be, f"conns --iface eth0 --pin-dir {pin_dir}")
    finally:
        out1 = cli(be, f"detach --iface eth0 --pin-dir {pin_dir}")
        out2 = cli(be, f"detach --iface eth0 --pin-dir {pin_dir}")
    assert out1.strip() == "agent detached" and out2.strip() == "agent was not attached"
    assert_nothing_left(be, pin_dir, {second["ingress"], second["egress"]}, maps)


def test_detach_keeps_other_filters(tb):
    """Detach removes only the agent's filters; a clsact qdisc that holds someone
    else's filter stays (the agent sits at its own priority and handle)."""
    be = tb.host("backend3")
    pin_dir = tb.bpf_dir / "agent-backend3"
    agent = Agent("eth0", netns=be.netns, pin_dir=str(pin_dir))
    try:
        be.run("tc qdisc add dev eth0 clsact && "
               "tc filter add dev eth0 ingress prio 1 u32 match u32 0 0 flowid 1:1")
        agent.attach()
        assert agent.attached()["ingress"] is not None
        assert agent.detach() is True
        st = tc_state(be)
        assert "u32" in st["ingress"] and "clsact" in st["qdisc"]
        assert "agent" not in st["ingress"] and st["egress"].strip() == ""
        assert agent.attached() == {"ingress": None, "egress": None}
    finally:
        agent.detach()
        be.run("tc qdisc del dev eth0 clsact", check=False)
    assert not pin_dir.exists()


def test_plain_traffic_passes_untouched(tb, nginx):
    """With the agent attached, an ordinary client (a real Linux stack, curl) fetching
    from the back-end directly is not Miresga's: every byte arrives, no entry is made,
    nothing is rewritten.  The agent is driven here from outside the namespace with the
    CLI's --netns, as a control plane on the same machine would."""
    be, cl = tb.host("backend1"), tb.host("client")
    pin_dir = tb.bpf_dir / "agent-plain"
    agent_cli = [sys.executable, "-m", "miresga.control.agent"]
    where = ["--netns", be.netns, "--iface", "eth0", "--pin-dir", str(pin_dir)]
    subprocess.run(agent_cli + ["attach", *where], check=True, capture_output=True, cwd=ROOT)
    try:
        r = cl.run(f"curl -sS --max-time 30 http://{be.address}/10MB.bin | sha256sum")
        assert r.stdout.split()[0] == nginx
        out = subprocess.run(agent_cli + ["stats", "--json", *where], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        cnt = json.loads(out)["counters"]
        assert cnt["syn_plain"] == 1
        assert cnt["miss_in"] > 0 and cnt["miss_out"] > 0
        for k in ("conn_new", "conn_reuse", "synack", "rewrite_in", "rewrite_out",
                  "sack_rewrite", "window_fix", "bad_options", "truncated"):
            assert cnt[k] == 0, k
        assert json.loads(out)["entries"] == 0
    finally:
        subprocess.run(agent_cli + ["detach", *where], check=True, capture_output=True, cwd=ROOT)
    assert not pin_dir.exists() and "clsact" not in tc_state(be)["qdisc"]
