"""The emulated testbed: reachability through the switch, and teardown in every way a run ends."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bench.metadata import host_facts
from common.errors import TestbedError
from hosts.testbed import EmulatedTestbed, teardown
from hosts.topology import DEFAULT_TOPOLOGY, parse_topology
from miresga.control.frontend import quiet_afpacket_link, restore_links

from conftest import unique_prefix
from testbed_checks import leftovers

pytestmark = pytest.mark.testbed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_host_pings_every_other(module_testbed):
    """ICMP between every pair of hosts, across the switch."""
    tb = module_testbed
    hosts = [h for h in tb.hosts.values() if h.address is not None]
    for src in hosts:
        targets = " ".join(str(h.address) for h in hosts if h is not src)
        r = src.run(f"for a in {targets}; do ping -c1 -W2 -q $a >/dev/null || "
                    f"{{ echo unreachable $a; exit 1; }}; done", check=False)
        assert r.ok, f"{src.name}: {r.stdout}{r.stderr}"


def test_traffic_crosses_the_switch(module_testbed):
    """Hosts are one routed hop apart: TTL drops by one, and the switch's counters move."""
    tb = module_testbed
    sw = tb.switch
    before = int(sw.run("cat /sys/class/net/backend1/statistics/tx_packets "
                        "2>/dev/null || ip -s -j link show backend1 | python3 -c "
                        "'import json,sys; print(json.load(sys.stdin)[0][\"stats64\"][\"tx\"][\"packets\"])'"
                        ).stdout.split()[-1])
    r = tb.host("client").run(f"ping -c3 -i0.2 -W2 {tb.host('backend1').address}")
    assert "ttl=63" in r.stdout  # one router on the path
    after = int(sw.run("ip -s -j link show backend1 | python3 -c "
                       "'import json,sys; print(json.load(sys.stdin)[0][\"stats64\"][\"tx\"][\"packets\"])'"
                       ).stdout)
    assert after - before >= 3


@pytest.mark.parametrize("src,dst", [("client", "backend1"), ("frontend1", "backend4"),
                                     ("backend2", "client")])
def test_tcp_transfer_is_intact(module_testbed, tmp_path, src, dst):
    """4 MiB of random bytes over TCP between two hosts arrive with the same sha256."""
    tb = module_testbed
    payload = os.urandom(4 << 20)
    blob = tmp_path / "blob"
    blob.write_bytes(payload)
    out = tmp_path / "received"
    d = tb.host(dst)
    port = 5001
    rx = d.start(f"nc -l -d -s {d.address} -p {port} > {out}", name=f"rx-{src}")
    try:
        d.run(f"for i in $(seq 50); do ss -Hltn 'sport = :{port}' | grep -q . && exit 0; "
              f"sleep 0.05; done; exit 1")
        tb.host(src).run(f"nc -q 1 -N {d.address} {port} < {blob}", timeout=60)
        assert rx.wait(30) is not None
    finally:
        rx.stop()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()


CC_PROBE = textwrap.dedent("""
    import socket, sys
    def cc(s):
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\\0").decode()
    if sys.argv[1] == "listen":
        srv = socket.create_server((sys.argv[2], int(sys.argv[3])))
        conn, _ = srv.accept()
        print(cc(conn), flush=True)
    else:
        print(cc(socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)))
""")


@pytest.mark.parametrize("src,dst", [("client", "backend1"), ("frontend1", "backend4")])
def test_connections_use_the_stated_congestion_control(module_testbed, tmp_path, src, dst):
    """Both ends of a connection between hosts run the testbed's congestion control,
    not the machine's default, which a namespace would inherit."""
    tb = module_testbed
    d, port, out = tb.host(dst), 5002, tmp_path / "accepted"
    probe = shlex.quote(CC_PROBE)
    rx = d.start(f"python3 -c {probe} listen {d.address} {port} > {out}", name=f"cc-{src}")
    try:
        d.run(f"for i in $(seq 50); do ss -Hltn 'sport = :{port}' | grep -q . && exit 0; "
              f"sleep 0.05; done; exit 1")
        opened = tb.host(src).run(f"python3 -c {probe} connect {d.address} {port}").stdout
        assert rx.wait(30) is not None
    finally:
        rx.stop()
    named = tb.topology.testbed.congestion_control
    assert named == "cubic"  # the default; this machine's own may be bbr
    assert opened.strip() == named
    assert out.read_text().strip() == named
    # and every result file says so
    assert host_facts(tb.host(src), str(d.address))["tcp_congestion_control"] == named


def test_up_over_an_existing_testbed_says_so(topology, prefix):
    """A second `up` with the same prefix is refused and leaves the first intact."""
    with EmulatedTestbed(topology, prefix=prefix) as tb:
        with pytest.raises(TestbedError, match="already up"):
            EmulatedTestbed(topology, prefix=prefix, guard=False).up()
        assert tb.host("client").run(f"ping -c1 -W2 {tb.host('backend1').address}").ok
    assert leftovers(prefix) == []


def test_down_removes_everything_and_is_idempotent(topology, prefix):
    """Processes, pins, namespaces and links all go; a second down is harmless."""
    tb = EmulatedTestbed(topology, prefix=prefix)
    tb.up()
    sleeper = tb.host("backend1").start("sleep 600", name="sleeper")
    # A daemon that detached from us: found by namespace, not by our handle.
    tb.host("backend2").run("setsid sleep 600 > /dev/null 2>&1 < /dev/null &")
    (tb.bpf_dir).mkdir(parents=True)
    assert leftovers(prefix)
    tb.down()
    assert leftovers(prefix) == []
    assert sleeper.wait(5) is not None
    tb.down()
    assert leftovers(prefix) == []


def _owner_script(prefix: str) -> str:
    return textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from hosts.testbed import EmulatedTestbed
        from hosts.topology import DEFAULT_TOPOLOGY, load_topology
        with EmulatedTestbed(load_topology(DEFAULT_TOPOLOGY), prefix={prefix!r}) as tb:
            tb.host("client").start("sleep 600", name="sleeper")
            print("ready", flush=True)
            time.sleep(600)
    """)


def _wait_gone(prefix: str, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = leftovers(prefix)
        if not left:
            return []
        time.sleep(0.1)
    return leftovers(prefix)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["killed", "ctrl-c", "terminated"])
def test_teardown_when_the_owner_dies(sig):
    """Kill -9, Ctrl-C or SIGTERM to the process owning a testbed: nothing is left behind."""
    prefix = unique_prefix("k")
    p = subprocess.Popen([sys.executable, "-c", _owner_script(prefix)], stdout=subprocess.PIPE,
                         text=True, cwd=REPO)
    try:
        assert p.stdout.readline().strip() == "ready"
        assert leftovers(prefix)
        p.send_signal(sig)
        p.wait(20)
        assert _wait_gone(prefix) == []
    finally:
        if p.poll() is None:
            p.kill()
        teardown(prefix)


def test_cli_up_status_exec_down(prefix):
    """The CLI: up, status, exec a command on a host, down; exit codes tell the state."""
    py = [sys.executable, "-m", "bench", "testbed"]
    try:
        up = subprocess.run(py + ["up", "--prefix", prefix], capture_output=True, text=True,
                            cwd=REPO)
        assert up.returncode == 0, up.stderr
        st = subprocess.run(py + ["status", "--prefix", prefix], capture_output=True, text=True,
                            cwd=REPO)
        assert st.returncode == 0 and f"{prefix}-backend4" in st.stdout
        ex = subprocess.run(py + ["exec", "client", "--prefix", prefix, "--", "ip", "-br",
                                  "addr", "show", "eth0"], capture_output=True, text=True,
                            cwd=REPO)
        assert ex.returncode == 0 and "10.10.1.2/24" in ex.stdout
        again = subprocess.run(py + ["up", "--prefix", prefix], capture_output=True, text=True,
                               cwd=REPO)
        assert again.returncode == 2 and "already up" in again.stderr
    finally:
        down = subprocess.run(py + ["down", "--prefix", prefix], capture_output=True, text=True,
                              cwd=REPO)
    assert down.returncode == 0
    assert leftovers(prefix) == []
    st = subprocess.run(py + ["status", "--prefix", prefix], capture_output=True, text=True,
                        cwd=REPO)
    assert st.returncode == 1 and "down" in st.stdout


def test_offloads_follow_the_topology(topology, prefix):
    """Per-link offload overrides reach ethtool on both ends of the link."""
    import tomllib

    data = tomllib.loads(DEFAULT_TOPOLOGY.read_text())
    data["offloads"] = {"tx": False, "tso": False, "gso": False, "gro": False}
    data["host"][3]["offloads"] = {"tx": True, "tso": True}
    topo = parse_topology(data)
    with EmulatedTestbed(topo, prefix=prefix) as tb:
        k = tb.host("backend1").run("ethtool -k eth0").stdout
        assert "tx-checksumming: on" in k and "tcp-segmentation-offload: on" in k
        k = tb.switch.run("ethtool -k backend1").stdout
        assert "tx-checksumming: on" in k
        k = tb.host("backend2").run("ethtool -k eth0").stdout
        assert "tx-checksumming: off" in k and "tcp-segmentation-offload: off" in k


def test_afpacket_link_is_quieted_and_restored(testbed):
    """The miresga target's front-end link: offloads off on both ends while it runs
    (an af_packet port), back to the topology's (on) afterwards."""
    fe, sw = testbed.frontends[0], testbed.switch
    on = {"tx": True, "tso": True, "gso": True, "gro": False}
    assert fe.offloads() == on and sw.offloads(fe.name) == on
    saved = quiet_afpacket_link(fe, sw)
    off = {k: False for k in on}
    assert fe.offloads() == off and sw.offloads(fe.name) == off
    assert testbed.host("backend1").offloads() == on
    restore_links(saved)
    assert fe.offloads() == on and sw.offloads(fe.name) == on


def test_cpu_is_accounted_per_host(testbed):
    """CPU burnt on one host shows up in that host's counter, not in another's.

    The work is a fixed loop that reports its own CPU time, so the check holds
    however loaded the machine is (no wall-clock assumptions).
    """
    be, cl = testbed.host("backend1"), testbed.host("client")
    b0, c0 = be.cpu_ns(), cl.cpu_ns()
    r = be.run("python3 -c 'import time; t = time.process_time(); "
               "sum(i * i for i in range(3_000_000)); print(time.process_time() - t)'")
    self_reported = float(r.stdout) * 1e9
    used = be.cpu_ns() - b0
    assert self_reported > 0
    assert used >= 0.9 * self_reported, (used, self_reported)
    assert cl.cpu_ns() - c0 < 0.5 * self_reported
