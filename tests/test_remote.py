"""A "remote" testbed: namespace hosts running real sshd, reached only over SSH."""

from __future__ import annotations

import copy

import pytest

from common.errors import TestbedError
from hosts.inventory import parse_inventory
from hosts.remote import RemoteTestbed, emulated_inventory
from hosts.sshd import make_keys, start_sshd

pytestmark = pytest.mark.testbed


@pytest.fixture(scope="module")
def remote_env(module_testbed, tmp_path_factory):
    """sshd on every host of an emulated testbed, and the inventory that reaches them."""
    tb = module_testbed
    keys = make_keys(tmp_path_factory.mktemp("keys"))
    procs = []
    for h in tb.hosts.values():
        addr = str(h.address) if h.address else str(tb.host("client").gateway)
        procs.append(start_sshd(h, keys, address=addr))
    inv = emulated_inventory(tb, keys, workroot=f"/tmp/miresga-remote-{tb.prefix}")
    yield tb, keys, inv, procs
    for p in procs:
        p.stop()


def remote(inv: dict) -> RemoteTestbed:
    return RemoteTestbed(parse_inventory(copy.deepcopy(inv), source="inventory"), progress=False)


def test_up_checks_every_host(remote_env):
    """Every host is reached over SSH and passes its role's prerequisite checks."""
    _, _, inv, _ = remote_env
    rt = remote(inv)
    try:
        rt.up()
        reports = rt.check_prerequisites()
        assert set(reports) == {h["name"] for h in inv["host"]}
        assert all(not r.problems for r in reports.values()), reports
        assert reports["backend1"].facts["kernel"]
        # Link facts come from the hosts themselves.
        offl = rt.link_offloads()
        assert offl["backend1"]["tx"] is True  # as the default topology sets it
    finally:
        rt.down()


def test_deploy_ships_and_builds(remote_env):
    """deploy() puts this checkout on every host and builds each role's parts there."""
    _, _, inv, _ = remote_env
    rt = remote(inv)
    try:
        rt.up()
        revs = rt.deploy(install_packages=True)
        assert len(set(revs.values())) == 1 and len(next(iter(revs.values())).split()[0]) == 40
        # A second deploy of the same checkout ships nothing.
        assert rt.deploy(only_if_changed=True) == {}
        be = rt.host("backend2")
        assert be.run(f"test -f {be.repo_dir}/hosts/remote.py").ok
        assert be.run(f"test -f {be.repo_dir}/.revision").ok
    finally:
        rt.down()


def test_host_with_sshd_down_is_reported_before_anything_starts(remote_env):
    """An unreachable host is named with its cause; the others get no processes."""
    tb, _, inv, procs = remote_env
    bad = copy.deepcopy(inv)
    for h in bad["host"]:
        if h["name"] == "backend4":
            h["ssh"]["port"] = 2222  # nothing listens there
    rt = remote(bad)
    with pytest.raises(TestbedError) as e:
        rt.up()
    assert "backend4" in str(e.value) and "cannot reach" in str(e.value)
    assert "backend1" not in str(e.value)
    assert rt.host("backend1").run("ls /tmp/miresga-remote-x 2>/dev/null", check=False).rc != 0


def test_missing_interface_is_reported(remote_env):
    _, _, inv, _ = remote_env
    bad = copy.deepcopy(inv)
    for h in bad["host"]:
        if h["name"] == "backend3":
            h["iface"] = "eth9"
    with pytest.raises(TestbedError, match="backend3: data-plane interface eth9 does not exist"):
        remote(bad).up()


def test_cleanup_on_reconnect(remote_env):
    """A process a dead session left behind is killed when the next session connects."""
    tb, _, inv, _ = remote_env
    first = remote(inv)
    first.up()
    p = first.host("client").start("sleep 600", name="orphan")
    pid = p.pid
    first.host("client").disconnect()  # the controller "dies": no stop()
    assert tb.host("client").run(f"kill -0 {pid}", check=False).ok
    second = remote(inv)
    try:
        second.up()
        assert not tb.host("client").run(f"kill -0 {pid}", check=False).ok
    finally:
        second.down()
