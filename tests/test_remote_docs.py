"""docs/remote.md, followed on the "remote" test testbed: namespace hosts each running a real
sshd, reached only over SSH (each from inside its own namespace, as over a management network,
so that breaking the data plane does not cut the check's own connection).

`remote check` only reads (the hosts' state is compared before and after); the preflight
checks of the page's steps 3 and 4 are broken on the hosts or in a copy of the inventory,
named, and fixed by the page's command (the VLAN port and the extra host's tools are in
tests/test_remote_checks.py; hugepages and irqbalance are machine-wide, and not broken
here); then the page's commands in order: check, deploy, dry run, run, clean."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.paths import BPF_ROOT
from hosts.inventory import parse_inventory
from hosts.remote import HUGEPAGE_MOUNT, RemoteTestbed, emulated_inventory
from hosts.sshd import dial_from, make_keys, start_sshd

from inventory_rig import toml_dump

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "remote.md").read_text()


def bench(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout)


def lab_inventory(tb, keys, workroot: str) -> dict:
    inv = emulated_inventory(tb, keys, workroot=workroot)
    for h in inv["host"]:
        h["ssh"]["proxy_command"] = dial_from(tb.host(h["name"]).netns)
    return inv


@pytest.fixture(scope="module")
def lab(module_testbed, tmp_path_factory):
    tb = module_testbed
    tmp = tmp_path_factory.mktemp("lab")
    keys = make_keys(tmp / "keys")
    procs = [start_sshd(h, keys, address=str(h.address or tb.host("client").gateway))
             for h in tb.hosts.values()]
    workroot = f"/tmp/miresga-remote-{tb.prefix}"
    inv = lab_inventory(tb, keys, workroot)
    (tmp / "lab.toml").write_text(toml_dump(inv))
    yield tb, tmp, inv, workroot
    for p in procs:
        p.stop()
    subprocess.run(["rm", "-rf", workroot])


pytestmark = pytest.mark.testbed


# ------------------------------------------------------------ read-only

def ours(mounts: str) -> list[str]:
    return [m for m in mounts.splitlines() if "miresga" in m or "hugetlbfs" in m]


def private_mounts(pids: list[str]) -> list[list[str]]:
    """Our mounts (hugepages, pins) made in each mount namespace of its own that a host's
    processes are in (an sshd started with private_mounts, and its sessions); not the
    copies of the machine's it started with."""
    root = os.readlink("/proc/self/ns/mnt")
    machine = set(ours(Path("/proc/self/mounts").read_text()))
    found: dict[str, list[str]] = {}
    for pid in pids:
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns != root and ns not in found:
                found[ns] = [m for m in ours(Path(f"/proc/{pid}/mounts").read_text())
                             if m not in machine]
        except OSError:
            continue  # a session that ended meanwhile
    return sorted(found.values())


def host_state(tb, workroot: str) -> dict:
    """What a cleanup or a careless check could change, read from inside the namespaces
    (not over SSH): processes, qdiscs and filters, links (XDP), addresses, routes,
    neighbours, the switch's sysctls, mounts of the host's own; files under the work
    directories; pins; the machine's mounts."""
    out = {}
    for h in tb.hosts.values():
        pids = subprocess.run(["ip", "netns", "pids", h.netns], capture_output=True,
                              text=True).stdout.split()
        procs = h.run(f"ps -o pid=,args= -p {','.join(pids)}", check=False).stdout if pids else ""
        devs = [d["ifname"] for d in json.loads(h.run("ip -j link show").stdout)]
        filters = "".join(h.run(f"tc filter show dev {d} {k}", check=False).stdout
                          for d in devs for k in ("ingress", "egress"))
        out[h.name] = {
            # sshd's per-connection children come and go with the check's connections
            # ps pads the pid column to a width: a 4-digit pid starts with a space
            "processes": sorted(line.strip() for line in procs.splitlines()
                                if "sshd:" not in line),
            "qdiscs": h.run("tc qdisc show").stdout, "filters": filters,
            "links": h.run("ip -d link show").stdout, "addresses": h.run("ip addr show").stdout,
            "routes": h.run("ip route show table all").stdout,
            "neighbours": h.run("ip neigh show nud permanent").stdout,
            "sysctls": h.run("sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter").stdout,
            "mounts": private_mounts(pids),
        }
    out["files"] = subprocess.run(["find", workroot, "-printf", r"%p %s %T@\n"],
                                  capture_output=True, text=True).stdout
    out["pins"] = subprocess.run(["find", str(BPF_ROOT / tb.prefix)], capture_output=True,
                                 text=True).stdout
    out["mounts"] = ours(Path("/proc/mounts").read_text())
    return out


def wait_equal(get, want, timeout: float = 30.0):
    """Poll until get() == want (sshd's session processes exit shortly after a
    connection closes); returns the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        now = get()
        if now == want or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


#: An XDP program that passes every packet: a leftover of the kind the pipelines leave.
XDP_PASS = """
__attribute__((section("xdp"), used)) int pass(void *ctx) { return 2; /* XDP_PASS */ }
char _license[] __attribute__((section("license"), used)) = "GPL";
"""


def test_remote_check_changes_nothing_and_clean_removes_the_leftovers(lab, tmp_path):
    """Left by an earlier session: a recorded process, a clsact qdisc and an XDP program
    (where programs attach), a pin directory, a hugepage mount (a DPDK front-end's).
    `remote check` leaves all of it and everything else as it was; `remote clean` removes
    exactly those.

    The hugepage mount's path is the same for every testbed on this machine, and an
    emulated host shares the machine's mounts: backend2 is reached here through an sshd
    in a mount namespace of its own, where the mount is made and cleaned."""
    tb, tmp, inv, workroot = lab
    b2 = tb.host("backend2")
    sshd = start_sshd(b2, make_keys(tmp / "keys"), port=2200, address=str(b2.address),
                      private_mounts=True)
    inv = copy.deepcopy(inv)
    next(h for h in inv["host"] if h["name"] == "backend2")["ssh"]["port"] = 2200
    (tmp_path / "lab.toml").write_text(toml_dump(inv))
    earlier = RemoteTestbed(parse_inventory(inv, source="lab"), progress=False)
    earlier.reach()
    orphan = earlier.host("client").start("sleep 600", name="orphan")
    earlier.host("client").disconnect()  # the controller died: nothing was stopped
    earlier.host("backend2").run(f"mkdir -p {HUGEPAGE_MOUNT} && "
                                 f"mount -t hugetlbfs nodev {HUGEPAGE_MOUNT}")
    earlier.host("backend2").disconnect()
    (tmp_path / "pass.c").write_text(XDP_PASS)
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-c", str(tmp_path / "pass.c"),
                    "-o", str(tmp_path / "pass.o")], check=True)
    b1 = tb.host("backend1")
    b1.run("tc qdisc add dev eth0 clsact")
    b1.run(f"ip link set dev eth0 xdp obj {tmp_path / 'pass.o'} sec xdp")
    pin = BPF_ROOT / tb.prefix / "leftover-pin"
    pin.mkdir(parents=True)
    try:
        before = host_state(tb, workroot)
        assert any(line.startswith(f"{orphan.pid} ") and "sleep 600" in line
                   for line in before["client"]["processes"])
        assert "prog/xdp" in before["backend1"]["links"]
        assert [[m.split()[1:3] for m in ns] for ns in before["backend2"]["mounts"]] == [
            [[HUGEPAGE_MOUNT, "hugetlbfs"]]]
        check = bench("remote", "check", "--inventory", str(tmp_path / "lab.toml"))
        assert check.returncode == 0, check.stdout + check.stderr
        for name in (h["name"] for h in inv["host"]):
            assert re.search(rf"^  {name}\s+ok ", check.stdout, re.M), check.stdout
        after = wait_equal(lambda: host_state(tb, workroot), before)
        assert after == before

        clean = bench("remote", "clean", "--inventory", str(tmp_path / "lab.toml"))
        assert clean.returncode == 0, clean.stderr
        assert f"client: orphan (pid {orphan.pid})" in clean.stdout, clean.stdout
        assert not tb.host("client").run(f"kill -0 {orphan.pid}", check=False).ok
        assert "clsact" not in b1.run("tc qdisc show dev eth0").stdout
        assert "prog/xdp" not in b1.run("ip -d link show dev eth0").stdout
        assert not pin.exists()
        assert host_state(tb, workroot)["backend2"]["mounts"] == [[]]
    finally:
        tb.host("client").run(f"kill -9 {orphan.pid}", check=False)
        b1.run("tc qdisc del dev eth0 clsact", check=False)
        b1.run("ip link set dev eth0 xdp off", check=False)
        if pin.exists():
            pin.rmdir()
        sshd.stop()  # its mount namespace, and a mount left in it, go with it


# --------------------------------------------------------- preflight

def report(stdout: str) -> dict[str, list[str]]:
    """`remote check`'s output: host -> its problem and warning lines."""
    out: dict[str, list[str]] = {}
    host = None
    for line in stdout.splitlines():
        m = re.match(r"^  (\S+)\s+(ok|\d+ problems) ", line)
        if m:
            host = m.group(1)
            out[host] = []
        elif host and line.startswith("      "):
            out[host].append(line.strip())
    return out


def breaks(tb) -> list[tuple[str, str, str, str]]:
    """(host, what breaks it, what the check prints, the fix docs/remote.md gives)."""
    b1, b3 = tb.host("backend1"), tb.host("backend3")
    return [
        ("switch", "sysctl -w net.ipv4.ip_forward=0",
         "problem: IPv4 forwarding is off (sysctl -w net.ipv4.ip_forward=1)",
         "sysctl -w net.ipv4.ip_forward=1"),
        ("switch", "sysctl -w net/ipv4/conf/backend2/rp_filter=1",
         "problem: strict reverse-path filtering on backend2",
         "sysctl -w net/ipv4/conf/backend2/rp_filter=0"),
        # Down, the port also loses its permanent neighbour: put it back as the page says.
        ("switch", "ip link set dev backend3 down",
         "problem: switch port backend3 (toward backend3) is down",
         f"ip link set dev backend3 up && ip neigh replace {b3.address} lladdr {b3.mac} "
         f"dev backend3 nud permanent"),
        ("switch", "true",
         f"warning: no neighbour entry for backend3 ({b3.address}) on backend3", "true"),
        ("switch", "ip link set dev backend4 mtu 1400",
         "problem: switch port backend4 has MTU 1400, below the testbed's 1500",
         "ip link set dev backend4 mtu 1500"),
        # The port's last address gone, the kernel flushes its neighbours too.
        ("switch", f"ip addr del {b1.gateway}/24 dev backend1",
         f"problem: switch port backend1 does not carry backend1's gateway address "
         f"{b1.gateway}",
         f"ip addr add {b1.gateway}/24 dev backend1 && ip neigh replace {b1.address} lladdr "
         f"{b1.mac} dev backend1 nud permanent"),
        ("switch", "sysctl -w net/ipv4/conf/frontend1/send_redirects=1",
         "warning: frontend1 sends ICMP redirects (sysctl -w net/ipv4/conf/all/send_redirects=0 "
         "net/ipv4/conf/frontend1/send_redirects=0)",
         "sysctl -w net/ipv4/conf/all/send_redirects=0 net/ipv4/conf/frontend1/send_redirects=0"),
        ("backend2", "ip link set dev eth0 mtu 1400",
         "problem: eth0 has MTU 1400, the inventory's testbed.mtu is 1500 "
         "(ip link set dev eth0 mtu 1500)",
         "ip link set dev eth0 mtu 1500"),
        ("backend1", "ip route add 10.10.0.100/32 dev eth0",
         "problem: traffic to 10.10.0.100 (the VIP) does not go through the switch "
         "(via 10.10.11.1 dev eth0)",
         "ip route del 10.10.0.100/32 dev eth0"),
    ]


def test_each_preflight_check_names_its_problem_and_the_fix_works(lab):
    """Hosts broken at once, each in a way the page lists: one check names every problem
    on the host that has it; after the fixes the page gives, the check passes."""
    tb, tmp, _, _ = lab
    cases = breaks(tb)
    for fix in ("sysctl -w net.ipv4.ip_forward=1", "sysctl -w net/ipv4/conf/", "ip link set dev",
                "nud permanent", "mtu 1500", "ip route add 10.10.0.0/16 via",
                "ip addr add 10.10.11.1/24 dev vlan11", "| redirects (warning) | "
                "`vlan11 sends ICMP redirects (...)` | as printed |"):
        assert fix in DOC, fix
    try:
        for host, brk, _, _ in cases:
            tb.host(host).run(brk)
        r = bench("remote", "check", "--inventory", str(tmp / "lab.toml"))
        assert r.returncode == 2, r.stdout + r.stderr
        got = report(r.stdout)
        for host, _, line, _ in cases:
            assert any(x.startswith(line) for x in got[host]), (host, line, got[host])
        assert not any(x.startswith("problem") for h in ("client", "frontend1", "attacker")
                       for x in got[h]), got
        assert "3 hosts are not ready (backend1, backend2, switch)" in r.stderr, r.stderr
        assert "the check changed nothing on any host" in r.stderr
    finally:
        for host, _, _, fix in cases:
            tb.host(host).run(fix, check=False)
    ok = bench("remote", "check", "--inventory", str(tmp / "lab.toml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert not any(report(ok.stdout).values()), ok.stdout  # no warning either


def test_inventory_fields_the_hosts_contradict_are_named(lab, tmp_path):
    """The inventory's word against the hosts': a switch_port the switch host does not
    have, a host's mac, a switch port's switch_mac, each named with its field.  The
    page's fix is to correct the inventory: the lab's own passes."""
    tb, tmp, inv, _ = lab
    wrong = copy.deepcopy(inv)
    hosts = {h["name"]: h for h in wrong["host"]}
    hosts["backend3"]["switch_port"] = "nosuch0"
    hosts["backend2"]["mac"] = "02:00:00:00:00:99"
    hosts["backend1"]["switch_mac"] = "02:00:00:00:00:98"
    (tmp_path / "wrong.toml").write_text(toml_dump(wrong))
    r = bench("remote", "check", "--inventory", str(tmp_path / "wrong.toml"))
    assert r.returncode == 2, r.stdout + r.stderr
    got = report(r.stdout)
    b1, b2 = tb.host("backend1"), tb.host("backend2")
    for host, line in [
        ("switch", "problem: switch port nosuch0 (toward backend3) does not exist"),
        ("switch", f"problem: switch port backend1 has MAC {b1.switch_mac}, the inventory says "
                   f"backend1's switch_mac = '02:00:00:00:00:98'"),
        ("backend2", f"problem: eth0 has MAC {b2.mac}, the inventory says mac = "
                     f"'02:00:00:00:00:99' (the switch pipeline addresses frames to it)"),
    ]:
        assert any(x.startswith(line) for x in got[host]), (host, line, got[host])
    assert "2 hosts are not ready (backend2, switch)" in r.stderr, r.stderr
    for row in ("| port | `switch port vlan11 (toward backend1) does not exist`",
                "| MAC | `switch port vlan11 has MAC ..., the inventory says backend1's "
                "switch_mac = ...` | correct the inventory |",
                "| MAC | `ens1f0 has MAC ..., the inventory says mac = ...` | correct the "
                "inventory |"):
        assert row in DOC, row
    ok = bench("remote", "check", "--inventory", str(tmp / "lab.toml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_dpdk_frontend_is_checked_for_its_binding_not_its_kernel_link(lab, tmp_path):
    """With `pci`, the NIC belongs to DPDK: no kernel interface is asked of it, its
    binding is (this machine has no NIC to bind: the check says so)."""
    tb, _, inv, _ = lab
    dpdk = json.loads(json.dumps(inv))
    fe = next(h for h in dpdk["host"] if h["name"] == "frontend1")
    fe["pci"] = "0000:00:1f.7"
    fe["iface"] = "ens9f9"
    (tmp_path / "dpdk.toml").write_text(toml_dump(dpdk))
    r = bench("remote", "check", "--inventory", str(tmp_path / "dpdk.toml"))
    assert r.returncode == 2
    assert ("NIC 0000:00:1f.7 is bound to no driver, not to a DPDK driver "
            "(dpdk-devbind.py -b vfio-pci 0000:00:1f.7)") in r.stdout, r.stdout
    assert "ens9f9" not in r.stdout


# ------------------------------------------------------- step by step

EXPERIMENT = """
[campaign]
name = "lab-smoke"
workloads = "./workloads.toml"

[[target]]
name = "direct"

[[target]]
name = "haproxy"

[parameters]
workload = ["1KB"]
connections = 4
threads = 1
duration_s = 1
warmup_s = 0
"""


def test_the_page_step_by_step(lab, tmp_path):
    """Steps 8 and 9 as written: check, deploy (ship, install, build, check), dry run, a
    run of one target, clean; each command as the page spells it."""
    tb, tmp, _, workroot = lab
    lab_file = str(tmp / "lab.toml")
    for cmd in ("python -m bench remote check  --inventory", "python -m bench remote deploy "
                "--inventory", "--inventory testbeds/lab.toml --dry-run",
                "python -m bench remote clean  --inventory"):
        assert cmd in DOC, cmd
    check = bench("remote", "check", "--inventory", lab_file)
    assert check.returncode == 0, check.stdout + check.stderr
    deploy = bench("remote", "deploy", "--inventory", lab_file)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert deploy.stdout.count(": deployed ") == len(tb.hosts)
    # Only the client builds the open-loop generator's Python.
    for h in tb.hosts.values():
        venv = Path(f"{workroot}/{h.name}/repo/build/loadgen-venv")
        assert venv.exists() == (h.role == "client"), h.name

    (tmp_path / "workloads.toml").write_text(
        '[objects]\nsizes = ["1KB"]\nper_size = 2\n\n[[workload]]\nname = "1KB"\nsize = "1KB"\n')
    exp = tmp_path / "lab-smoke.toml"
    exp.write_text(EXPERIMENT)
    dry = bench("run", str(exp), "--inventory", lab_file, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split() == ["todo", "direct/1KB/keep-alive-c4-t1/rep1",
                                  "todo", "haproxy/1KB/keep-alive-c4-t1/rep1"]
    run = bench("run", str(exp), "--inventory", lab_file, "--target", "direct",
                "--results", str(tmp_path / "results"))
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(next((tmp_path / "results" / "lab-smoke").rglob("rep1.json")).read_text())
    assert doc["status"] == "ok" and doc["metadata"]["testbed"]["kind"] == "remote"
    assert not (tmp_path / "results" / "lab-smoke" / "haproxy").exists()
    clean = bench("remote", "clean", "--inventory", lab_file)
    assert clean.returncode == 0
    assert clean.stdout.count("nothing left over") == len(tb.hosts), clean.stdout
