"""Several front-end hosts: the topology and inventory that declare them, the
miresga target that runs one front-end per host (or the subset it is given)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hosts.inventory import load_inventory
from hosts.topology import Role, load_topology
from targets.base import TargetError, make_target
from targets.miresga import Miresga, MiresgaParams

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
