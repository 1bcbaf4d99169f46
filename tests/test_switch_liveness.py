"""switchd watches the front-ends: a closed channel takes one out of the
selection, a new one puts it back; the operator drains and resumes by name
through the management socket.  Waits poll the state with a deadline."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from common.netns import netns
from common.scratch_ns import ScratchNs
from miresga.control import switchd
from miresga.control.miresga_switch import Endpoint, SwitchPlan, VipSpec, ip_be, port_be
from miresga.control.switchd import SwitchDaemon, manage_command

pytestmark = pytest.mark.root

PORTS = ["c0", "f0", "f1", "b1"]
ADDR = {"c0": "10.8.0.1/24", "f0": "10.8.2.1/24", "f1": "10.8.3.1/24", "b1": "10.8.11.1/24"}
FE = {"fe-a": ("10.8.2.2", "f0"), "fe-b": ("10.8.3.2", "f1")}
CLIENTS = [(ip_be(f"10.8.0.{10 + i % 50}"), port_be(30000 + i)) for i in range(300)]


@pytest.fixture(scope="module")
def ns():
    with ScratchNs() as n:
        for p in PORTS:
            n.add_port(p, ADDR[p])
        # The front-ends' addresses, on the far ends of their links, so that a
        # channel connection can come from them.
        for ip, port in FE.values():
            subprocess.run(["ip", "-n", n.name, "addr", "add", f"{ip}/24", "dev", f"{port}p"],
                           check=True)
        yield n


@pytest.fixture
def daemon(ns, tmp_path):
    plan = SwitchPlan(
        netns=ns.name, ports=PORTS, vips=[VipSpec(ip="10.8.100.1", port=80)],
        backends=[Endpoint(ip="10.8.11.2", mac="02:00:00:00:11:02", switch_port="b1")],
        frontends=[Endpoint(name=n, ip=ip, mac="02:00:00:00:02:02", switch_port=p)
                   for n, (ip, p) in FE.items()],
        flow_capacity=64, filter_bits_log2=10)
    with SwitchDaemon(plan, listen=("0.0.0.0", 0), attach=False, run_clock=False,
                      manage_socket=str(tmp_path / "manage.sock")) as d:
        yield d


def channel_from(ns: ScratchNs, d: SwitchDaemon, name: str) -> socket.socket:
    """A front-end's channel connection: from its address to switchd."""
    with netns(ns.name):
        return socket.create_connection((ADDR["f0"].split("/")[0], d.port), timeout=5,
                                        source_address=(FE[name][0], 0))


def selected(d: SwitchDaemon, new: bool = True) -> set:
    return {d.switch.frontend_of(ip, port, new) for ip, port in CLIENTS}


def wait_until(what: str, fn, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s (last: {v!r})")
        time.sleep(0.02)


def test_a_front_end_whose_channel_closes_leaves_the_selection_and_comes_back(ns, daemon):
    """Presumed alive before it ever connects; down when its last channel closes
    (its clients then go to the other); active again when it reconnects."""
    d = daemon
    assert selected(d) == {"fe-a", "fe-b"}
    a, b = channel_from(ns, d, "fe-a"), channel_from(ns, d, "fe-b")
    wait_until("both channels seen", lambda: d.liveness.channels == {"fe-a": 1, "fe-b": 1})
    b.close()
    wait_until("fe-b down", lambda: d.liveness.states()["fe-b"] == "down")
    assert selected(d) == {"fe-a"} and selected(d, new=False) == {"fe-a"}
    b = channel_from(ns, d, "fe-b")
    wait_until("fe-b active", lambda: d.liveness.states()["fe-b"] == "active")
    assert selected(d) == {"fe-a", "fe-b"}
    events = d.stats()["frontends"]["events"]
    assert [(e["frontend"], e["state"], e["why"]) for e in events] == [
        ("fe-b", "down", "channel closed"), ("fe-b", "active", "channel connected")]
    a.close()
    b.close()


def test_other_peers_do_not_count(ns, daemon):
    """A connection from an address that is no front-end's (the bench's table
    filler, a tool on the switch) changes nothing."""
    with netns(ns.name):
        s = socket.create_connection(("10.8.2.1", daemon.port), timeout=5)
    s.close()
    wait_until("connection seen and closed",
               lambda: daemon.server.stats.connections == 1
               and daemon.server.stats.open_connections == 0)
    assert daemon.liveness.states() == {"fe-a": "active", "fe-b": "active"}


def test_drain_and_resume_through_the_management_socket(ns, daemon, capsys):
    """`drain fe-b`: new connections go to fe-a only, established ones still to
    both (the stable column); its channel closing makes it down; `resume`
    (with a channel) brings it back.  Bad commands are answered, not fatal."""
    d = daemon
    sock = d.manage_socket
    b = channel_from(ns, d, "fe-b")
    wait_until("fe-b connected", lambda: d.liveness.channels["fe-b"] == 1)
    out = manage_command(sock, ["drain", "fe-b"])
    assert out["ok"] and out["frontends"]["fe-b"]["state"] == "draining"
    assert selected(d) == {"fe-a"} and selected(d, new=False) == {"fe-a", "fe-b"}
    b.close()
    wait_until("fe-b down", lambda: d.liveness.states()["fe-b"] == "down")
    assert selected(d, new=False) == {"fe-a"}
    b = channel_from(ns, d, "fe-b")
    wait_until("fe-b back, still draining", lambda: d.liveness.states()["fe-b"] == "draining")
    assert switchd.main(["--manage", sock, "resume", "fe-b"]) == 0
    assert json.loads(capsys.readouterr().out)["frontends"]["fe-b"]["state"] == "active"
    assert selected(d) == {"fe-a", "fe-b"}
    assert manage_command(sock, ["drain", "fe-z"]) == {
        "ok": False, "error": "front-end 'fe-z': not in the plan (fe-a, fe-b)"}
    assert not manage_command(sock, ["reboot"])["ok"]
    assert switchd.main(["--manage", sock, "reboot"]) == 2
    b.close()


def test_the_last_live_front_end_is_never_taken_out(ns, daemon):
    """Fail open: when every front-end's channel is gone, none leaves the selection
    (nobody would take its clients); the first to reconnect is the only one in,
    once the other is known to be gone."""
    d = daemon
    a, b = channel_from(ns, d, "fe-a"), channel_from(ns, d, "fe-b")
    wait_until("both channels seen", lambda: d.liveness.channels == {"fe-a": 1, "fe-b": 1})
    a.close()
    wait_until("fe-a down", lambda: d.liveness.states()["fe-a"] == "down")
    b.close()
    wait_until("fe-b's channel gone", lambda: d.liveness.channels["fe-b"] == 0)
    wait_until("both back in", lambda: d.liveness.states() == {"fe-a": "active",
                                                               "fe-b": "active"})
    assert selected(d) == {"fe-a", "fe-b"}
    b = channel_from(ns, d, "fe-b")
    wait_until("fe-a out again", lambda: d.liveness.states()["fe-a"] == "down")
    assert selected(d) == {"fe-b"}
    b.close()
