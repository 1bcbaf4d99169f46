"""Inventory files: the example is valid; bad ones are refused naming the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from common.errors import ConfigError
from hosts.inventory import load_inventory, parse_inventory

EXAMPLE = Path(__file__).resolve().parent.parent / "testbeds" / "inventory.example.toml"


def base() -> dict:
    return tomllib.loads(EXAMPLE.read_text())


def test_example_inventory_is_valid():
    inv = load_inventory(EXAMPLE)
    fe = inv.hosts("frontend")[0]
    assert fe.pci == "0000:3b:00.0" and inv.ssh_target(fe).sudo
    assert inv.ssh_target(fe).jump.host == "gateway.lab.example"
    assert "ssh" not in inv.redacted()["host"][0]


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["host"][2].__setitem__("role", "lb"), "host[2].role"),
    (lambda d: d["host"][3].pop("iface"), "host[3]: iface: missing required field"),
    (lambda d: d["host"][3].__setitem__("address", "10.10.1.2/24"), "host[3].address: 10.10.1.2 is also host[0].address"),
    (lambda d: d["host"][0].__setitem__("mac", "zz:00"), "host[0].mac"),
    (lambda d: d["host"][2].__setitem__("pci", "3b:00.0"), "host[2].pci"),
    (lambda d: d["host"][4].pop("switch_port"), "host[4].switch_port: missing required field"),
    (lambda d: d["host"][1].__setitem__("ssh", {}), "host[1].ssh.host: missing required field"),
    (lambda d: d["switch"].__setitem__("tofino", {"bfrt_grpc": "10.0.0.5:50052"}),
     "switch.tofino: unknown field"),
    (lambda d: d["defaults"].__setitem__("python", "python3; reboot"),
     "defaults.python: 'python3; reboot' is neither a command name"),
    (lambda d: d["host"][4].__setitem__("python", "bin/python3"),
     "host[4].python: 'bin/python3' is neither a command name"),
])
def test_bad_inventory_is_refused(mutate, message):
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as e:
        parse_inventory(data, source="lab.toml")
    assert message in str(e.value)


def test_a_hardware_switch_is_refused_naming_what_exists():
    """kind = "tofino" would be accepted and then nothing would drive it: refused, and the
    message says what does exist (the eBPF pipeline on a Linux switch host)."""
    data = base()
    data["switch"]["kind"] = "tofino"
    with pytest.raises(ConfigError) as e:
        parse_inventory(data, source="lab.toml")
    text = str(e.value)
    assert text.startswith("lab.toml: switch.kind: 'tofino' is not supported"), text
    assert "eBPF on a Linux host" in text and 'kind = "linux"' in text
    assert "docs/remote.md" in text


def test_an_unreachable_jump_host_is_named_as_itself():
    """Through a jump host that refuses connections, the failure is the jump host's: the
    host behind it was never tried, and the message says so instead of blaming it."""
    import socket

    from common.errors import TestbedError
    from hosts.remote import RemoteTestbed

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        data = base()
        for h in data["host"]:
            h.setdefault("ssh", {}).update(jump=f"bench@127.0.0.1:{port}", connect_timeout=5)
        rt = RemoteTestbed(parse_inventory(data, source="lab.toml"), progress=False)
        with pytest.raises(TestbedError) as e:
            rt.reach()
    text = str(e.value)
    for h in data["host"]:
        assert (f"{h['name']}: the jump host bench@127.0.0.1:{port} cannot be reached"
                in text), text
        assert f"{h['name']} itself was not tried" in text
    assert "cannot reach" not in text
