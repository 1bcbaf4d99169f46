"""Preflight checks of `remote check` (hosts/remote.py) against hosts that answer its commands
as Linux does, for what the sshd test testbed cannot show: a VLAN sub-interface as a switch
port (this machine's kernel has no 8021q, so no VLAN can be made here), the tools of a
role its hosts all have, and the Python an inventory names for a host, which the checks,
host-side tools and attacks run under.  tests/test_remote_docs.py runs the other checks on
real hosts."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

from hosts.inventory import parse_inventory
from hosts.remote import HostReport, RemoteTestbed
from hosts.topology import Role

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "testbeds" / "inventory.example.toml"
DOC = (REPO / "docs" / "remote.md").read_text()

UP = ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]
DOWN = ["BROADCAST", "MULTICAST"]


def answer(stdout: str = "", ok: bool = True) -> SimpleNamespace:
    return SimpleNamespace(ok=ok, stdout=stdout, stderr="" if ok else "failed")


class LinuxSwitch:
    """The switch host of an inventory set up as docs/remote.md step 3 says, answering the
    commands the switch checks run; `links` is what `ip -d -j link show` knows."""

    python = "python3"

    def __init__(self, tb: RemoteTestbed):
        self.ports = {o.switch_port: o for o in tb.hosts.values() if o.switch_port}
        self.links = {port: {"ifname": port, "flags": list(UP), "mtu": 1500,
                             "address": o.switch_mac}
                      for port, o in self.ports.items()}

    def run(self, cmd: str, check: bool = False, timeout: float | None = None):
        if cmd == "sysctl -n net.ipv4.ip_forward":
            return answer("1")
        if cmd.startswith("sysctl -n "):
            return answer("0")  # rp_filter, send_redirects
        if m := re.fullmatch(r"ip -d -j link show dev (\S+)", cmd):
            link = self.links.get(m[1])
            return answer(json.dumps([link])) if link else answer(ok=False)
        if m := re.fullmatch(r"ip -4 -o addr show dev (\S+)", cmd):
            gw = self.ports[m[1]].gateway
            return answer(f"9: {m[1]}    inet {gw}/24 brd {gw} scope global {m[1]}")
        if m := re.fullmatch(r"ip neigh show (\S+) dev (\S+)", cmd):
            return answer(f"{m[1]} lladdr {self.ports[m[2]].mac} PERMANENT")
        raise AssertionError(f"the stub does not know {cmd!r}: teach it what Linux answers")


def lab_testbed(**switch_ports: str) -> RemoteTestbed:
    data = tomllib.loads(EXAMPLE.read_text())
    for h in data["host"]:
        if h["name"] in switch_ports:
            h["switch_port"] = switch_ports[h["name"]]
    return RemoteTestbed(parse_inventory(data, source="lab.toml"), progress=False)


def switch_report(tb: RemoteTestbed, switch: LinuxSwitch) -> HostReport:
    rep = HostReport("switch")
    tb._check_switch(switch, rep)
    return rep


def test_the_switch_stub_passes_as_set_up():
    rep = switch_report(tb := lab_testbed(), LinuxSwitch(tb))
    assert (rep.problems, rep.warnings) == ([], [])


def test_a_vlan_port_whose_nic_is_down_is_named_and_the_fix_works():
    """backend2's port is VLAN 12 of ens3f0 (step 3's sub-interfaces of one NIC).  The NIC
    goes down, and the kernel takes its VLANs down with it: the check names the port and
    its NIC; `ip link set dev ens3f0 up` (the page's fix) brings both back."""
    tb = lab_testbed(backend2="ens3f0.12")
    switch = LinuxSwitch(tb)
    vlan = switch.links["ens3f0.12"]
    vlan.update(link="ens3f0", flags=list(DOWN), linkinfo={
        "info_kind": "vlan", "info_data": {"protocol": "802.1Q", "id": 12,
                                           "flags": ["REORDER_HDR"]}})
    switch.links["ens3f0"] = {"ifname": "ens3f0", "flags": list(DOWN), "mtu": 1500,
                              "address": vlan["address"]}
    assert switch_report(tb, switch).problems == [
        "switch port ens3f0.12 (toward backend2) is down",
        "switch port ens3f0.12 is a VLAN of ens3f0, which is down or missing"]
    assert "| VLAN | `switch port vlan11 is a VLAN of ens1f0, which is down or missing` | " \
           "`ip link set dev ens1f0 up` |" in DOC
    for dev in ("ens3f0", "ens3f0.12"):
        switch.links[dev]["flags"] = list(UP)
    assert switch_report(tb, switch).problems == []
    # A NIC that is not there at all: the same line.
    del switch.links["ens3f0"]
    assert switch_report(tb, switch).problems == [
        "switch port ens3f0.12 is a VLAN of ens3f0, which is down or missing"]


class Host:
    """A host of some role that has every command but those in `missing`; `python` imports
    every module but those in `missing`, and other interpreters import none (as a pyenv
    python3 first on root's PATH lacks Debian's python3-scapy)."""

    def __init__(self, missing: set[str], python: str = "python3",
                 with_modules: str = "python3"):
        self.missing, self.python, self.with_modules = missing, python, with_modules

    def run(self, cmd: str, check: bool = False, timeout: float | None = None):
        if m := re.fullmatch(r"command -v (\S+) >/dev/null", cmd):
            return answer(ok=m[1] not in self.missing)
        if m := re.fullmatch(r"(\S+) -c 'import (\w+)'", cmd):
            return answer(ok=m[1] == self.with_modules and m[2] not in self.missing)
        raise AssertionError(f"the stub does not know {cmd!r}")


def tool_problems(role: Role, missing: set[str], **host) -> list[str]:
    rep = HostReport("h")
    lab_testbed()._check_tools(Host(missing, **host), role, rep)
    return rep.problems


def test_the_extra_host_needs_scapy_under_its_python3_and_hping3():
    """The attacks of the fault runs import scapy under the host's python3, and the SYN
    flood runs hping3: an extra host without them is not ready."""
    assert tool_problems(Role.EXTRA, set()) == []
    assert tool_problems(Role.EXTRA, {"scapy", "hping3"}) == [
        "hping3 is not installed (run `python -m bench remote deploy`, or install it)",
        "python3 cannot import scapy (run `python -m bench remote deploy`, or install "
        "python3-scapy)"]
    # Only the extra host forges packets.
    assert tool_problems(Role.CLIENT, {"scapy"}) == []
    assert "python3-scapy" in (REPO / "scripts" / "setup-system.sh").read_text()
    assert "python3 cannot import scapy" in DOC


def test_the_extra_host_is_checked_under_the_python_its_inventory_names():
    """Where an SSH session's python3 is not the one with python3-scapy (a pyenv shim first
    on root's PATH), the check fails under it, and passes once the inventory names Debian's;
    scapy missing under the named one still fails, naming it."""
    assert tool_problems(Role.EXTRA, set(), with_modules="/usr/bin/python3") == [
        "python3 cannot import scapy (run `python -m bench remote deploy`, or install "
        "python3-scapy)"]
    debian = {"python": "/usr/bin/python3", "with_modules": "/usr/bin/python3"}
    assert tool_problems(Role.EXTRA, set(), **debian) == []
    assert tool_problems(Role.EXTRA, {"scapy"}, **debian) == [
        "/usr/bin/python3 cannot import scapy (run `python -m bench remote deploy`, or install "
        "python3-scapy)"]
    assert 'python = "/usr/bin/python3"' in DOC


def test_each_host_runs_the_python_its_inventory_names():
    """`python` under [defaults] is every host's, a host's own wins, and without either a
    host runs the python3 of its SSH session's PATH."""
    assert {h.python for h in lab_testbed().hosts.values()} == {"python3"}
    data = tomllib.loads(EXAMPLE.read_text())
    data["defaults"]["python"] = "/usr/bin/python3"
    [client] = [h for h in data["host"] if h["name"] == "client"]
    client["python"] = "/opt/lab/bin/python3"
    tb = RemoteTestbed(parse_inventory(data, source="lab.toml"), progress=False)
    assert {n: h.python for n, h in tb.hosts.items()} == {
        n: "/opt/lab/bin/python3" if n == "client" else "/usr/bin/python3" for n in tb.hosts}
    assert tb.hosts["switch"].tool("switchhost", "--help").endswith(
        "exec /usr/bin/python3 -m switchhost --help")


class Attacker:
    """The extra host as an attack uses it: what it is told to start is recorded, and the
    attacker is ready at once."""

    name, workdir, python = "attacker", "/w", "/opt/lab/bin/python3"

    def __init__(self):
        self.started: list[str] = []

    def run(self, cmd: str, check: bool = True, timeout: float | None = None):
        return answer()

    def put(self, local, remote) -> None:
        pass

    def start(self, cmd: str, name: str | None = None, env: dict | None = None):
        self.started.append(cmd)
        return SimpleNamespace(running=lambda: True)


def test_the_attacks_run_under_the_hosts_python():
    from bench.faults import FaultsSpec, _Attack

    host = Attacker()
    tb = SimpleNamespace(vip="10.10.0.100", vip_port=80)
    _Attack(tb, host, "forged_ack", FaultsSpec(run=["forged_ack"])).arm()
    [cmd] = host.started
    assert cmd.startswith("exec /opt/lab/bin/python3 /w/faults/attack-forged_ack.py "), cmd
