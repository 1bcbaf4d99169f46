"""Several front-end hosts: the topology and inventory that declare them, the
miresga target that runs one front-end per host (or the subset it is given)."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from hosts.inventory import load_inventory
from hosts.topology import Role, load_topology
from switchhost.daemon import frontend_keys
from switchhost.daemon import parser as daemon_parser
from targets.base import TargetError, make_target
from targets.miresga import Miresga, MiresgaParams
from targets.switchd import Switchd

from fe_harness import SERVICE, SWITCH_MAC, VIP

REPO = Path(__file__).resolve().parent.parent


def test_two_frontend_topology_declares_two_front_end_hosts():
    topo = load_topology(REPO / "testbeds" / "two-frontends.toml")
    assert [h.name for h in topo.hosts(Role.FRONTEND)] == ["frontend1", "frontend2"]
    assert str(topo.get("frontend2").gateway_address) == "10.10.4.1"


def test_example_inventory_declares_two_front_ends():
    inv = load_inventory(REPO / "testbeds" / "inventory.example.toml")
    assert [h.name for h in inv.hosts("frontend")] == ["frontend1", "frontend2"]


def _testbed(tmp_path, names):
    fes = [SimpleNamespace(name=n, workdir=str(tmp_path), cpus="1", switch_mac=SWITCH_MAC,
                           iface="eth0", gateway="10.10.2.1") for n in names]
    return SimpleNamespace(frontends=fes, switch=SimpleNamespace(workdir=str(tmp_path)),
                           vip=VIP, backends=[], bpf_dir=tmp_path)


def test_miresga_runs_one_front_end_per_host_or_the_subset_it_is_given(tmp_path):
    tb = _testbed(tmp_path, ["frontend1", "frontend2"])
    t = make_target("miresga", tb, SERVICE)
    assert [h.name for h in t.frontend_hosts()] == ["frontend1", "frontend2"]
    t = make_target("miresga", tb, SERVICE, {"frontend_hosts": ["frontend2"]})
    assert [h.name for h in t.frontend_hosts()] == ["frontend2"]
    for bad in (["frontend3"], ["frontend1", "frontend1"]):
        with pytest.raises(TargetError, match="frontend_hosts .*: the testbed's front-end "
                                              "hosts are frontend1, frontend2"):
            make_target("miresga", tb, SERVICE, {"frontend_hosts": bad})


def test_frontend_hosts_are_checked_against_the_testbed_before_a_run():
    """The pre-run check (bench run, bench up) names the field and the hosts there are."""
    hosts = {"client": ["client1"], "switch": ["switch"], "frontend": ["frontend1", "frontend2"],
             "backend": ["backend1"]}
    assert Miresga.testbed_problems(MiresgaParams(frontend_hosts=["frontend2"]), hosts) == []
    assert Miresga.testbed_problems(MiresgaParams(frontend_hosts=["frontend3"]), hosts) == [
        ("params.frontend_hosts", "['frontend3']: the testbed's front-end hosts are "
                                  "frontend1, frontend2, each named once")]


class _Host:
    """What Switchd asks of a host, recorded: secrets and files it writes, what it starts."""

    def __init__(self, name: str, workdir: Path):
        self.name, self.workdir = name, str(workdir)
        self.secrets: dict[str, str] = {}
        self.started: list[str] = []

    def put_text(self, text: str, path: str) -> None:
        pass

    def put_secret(self, text: str, path: str) -> None:
        self.secrets[path] = text

    def run(self, cmd: str, **kw):
        return SimpleNamespace(ok=True, stdout="", stderr="")

    def tool(self, module: str, args: str) -> str:
        return f"python3 -m {module} {args}"

    def start(self, cmd: str, name: str):
        self.started.append(cmd)
        return SimpleNamespace(logs=lambda: 'switchd ready {"listen": []}\n',
                               running=lambda: True)


def test_each_front_end_gets_a_key_of_its_own_which_names_it_to_the_daemon(tmp_path):
    """The deployment writes one fresh key per front-end, on its host and beside
    the daemon's, and starts the daemon with `--frontend-key NAME=PATH` for each,
    NAME the plan's: what lets the daemon know which front-end a connection is,
    whatever address it comes from (a management network: control_address)."""
    switch = _Host("switch", tmp_path)
    fes = [_Host(n, tmp_path) for n in ("frontend1", "frontend2")]
    tb = SimpleNamespace(switch=switch, bpf_dir=tmp_path)
    plan = SimpleNamespace(to_json=lambda: "{}", netns=None, ports=[],
                           frontends=[SimpleNamespace(name=fe.name, ip="10.10.2.2")
                                      for fe in fes])
    d = Switchd(tb, "miresga")
    d.deploy(plan, [(fe, f"/fe/{fe.name}/ctl.key") for fe in fes])
    d.start(["10.10.2.1", "10.10.4.1"])
    (cmd,) = switch.started
    args = daemon_parser().parse_args(shlex.split(cmd)[3:])
    assert args.frontend_key == [(fe.name, d.frontend_keys[fe.name]) for fe in fes]
    for fe in fes:
        assert fe.secrets[f"/fe/{fe.name}/ctl.key"] == switch.secrets[d.frontend_keys[fe.name]]
    keys = [switch.secrets[d.key_path]] + [fe.secrets[f"/fe/{fe.name}/ctl.key"] for fe in fes]
    assert len(set(keys)) == 3, "the daemon's key and each front-end's are different"
    # The daemon takes them: every name is a front-end of the plan.
    for name, path in args.frontend_key:
        (tmp_path / f"{name}.key").write_text(switch.secrets[path])
        (tmp_path / f"{name}.key").chmod(0o600)
    got = frontend_keys(plan, [(n, str(tmp_path / f"{n}.key")) for n, _ in args.frontend_key])
    assert sorted(got) == ["frontend1", "frontend2"]
