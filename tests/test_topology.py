"""Topology files: bad ones are refused before anything is created, naming the field."""

from __future__ import annotations

import tomllib

import pytest

from common.errors import ConfigError
from hosts.testbed import EmulatedTestbed, existing_namespaces
from hosts.topology import DEFAULT_TOPOLOGY, Role, load_topology, parse_topology


def base() -> dict:
    return tomllib.loads(DEFAULT_TOPOLOGY.read_text())


def test_default_topology_loads():
    """The shipped topology is valid: 2 clients, 1 switch, 1 front-end, 4 back-ends."""
    topo = load_topology(DEFAULT_TOPOLOGY)
    assert [len(topo.hosts(r)) for r in (Role.CLIENT, Role.SWITCH, Role.FRONTEND, Role.BACKEND)] \
        == [2, 1, 1, 4]
    assert str(topo.get("backend1").gateway_address) == "10.10.11.1"


def refused(data: dict) -> str:
    before = existing_namespaces()
    with pytest.raises(ConfigError) as e:
        EmulatedTestbed(parse_topology(data, source="bad.toml"), prefix="tbad")
    assert existing_namespaces() == before, "a refused topology must create nothing"
    return str(e.value)


def test_unknown_role_is_refused():
    """An unknown role names the host index and the field."""
    data = base()
    data["host"][3]["role"] = "loadbalancer"
    msg = refused(data)
    assert "bad.toml: host[3].role:" in msg and "'client'" in msg


def test_duplicate_address_is_refused():
    """Two hosts with one address: the second is named, with the first as the owner."""
    data = base()
    data["host"][4]["address"] = "10.10.11.2/24"
    msg = refused(data)
    assert "host[4]" in msg and "10.10.11.2" in msg


def test_duplicate_vip_is_refused():
    """The VIP may not be any host's address."""
    data = base()
    data["testbed"]["vip"] = "10.10.1.2"
    msg = refused(data)
    assert "10.10.1.2" in msg and "testbed.vip" in msg


def test_missing_field_is_refused():
    """A host without an address: the field is named."""
    data = base()
    del data["host"][0]["address"]
    msg = refused(data)
    assert "host[0]" in msg and "address" in msg and "missing" in msg


def test_missing_vip_is_refused():
    data = base()
    del data["testbed"]["vip"]
    assert "testbed.vip: missing required field" in refused(data)


def test_gateway_outside_subnet_is_refused():
    """A gateway outside the host's subnet cannot be reached on the link."""
    data = base()
    data["host"][2]["gateway"] = "10.10.99.1"
    msg = refused(data)
    assert "host[2]" in msg and "gateway: 10.10.99.1 is outside the subnet 10.10.2.0/24" in msg


def test_network_address_is_refused():
    data = base()
    data["host"][0]["address"] = "10.10.1.0/24"
    assert "is not a host address" in refused(data)


def test_unknown_field_is_refused():
    data = base()
    data["host"][0]["colour"] = "blue"
    assert "host[0].colour: unknown field" in refused(data)


def test_two_switches_are_refused():
    data = base()
    data["host"][2] = {"name": "switch2", "role": "switch"}
    assert "exactly one host with role 'switch'" in refused(data)


def test_overlapping_subnets_are_refused():
    data = base()
    data["host"][3]["address"] = "10.10.1.3/24"
    msg = refused(data)
    assert "overlaps" in msg and "client" in msg


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read topology"):
        load_topology(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[testbed\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_topology(bad)


def test_congestion_control_is_named_and_checked_against_the_kernel():
    """A malformed name is refused by the file's reader; a well-formed one this
    kernel lacks is refused before a testbed is built, naming the field and
    what the kernel has."""
    data = base()
    data["testbed"]["congestion_control"] = "BBR; reboot"
    assert "congestion_control" in refused(data)
    data["testbed"]["congestion_control"] = "nosuchcc"
    topo = parse_topology(data, source="bad.toml")
    before = existing_namespaces()
    with pytest.raises(ConfigError, match=r"bad.toml: testbed.congestion_control: 'nosuchcc'.*"
                                          r"available: .*cubic"):
        EmulatedTestbed(topo, prefix="tbad").up()
    assert existing_namespaces() == before
