"""The switch host's daemon watches the front-ends: an authenticated control
connection that closes takes one out of the selection, a new one puts it back;
a front-end is known by the key of its own it proves, from whatever address it
connects; a connection that fails the key proof, or proves the daemon's own key
(a tool), counts for nothing; a silent one is closed by the socket options that
bound it; the operator drains and resumes by name through management ops
(python -m switchhost.ctl).  Waits poll the state with a deadline."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from common.netns import netns
from common.paths import REPO_ROOT
from common.scratch_ns import ScratchNs
from switchhost import ctl
from switchhost.addresses import ip_be, port_be
from switchhost.budget import InstallBudget
from switchhost.client import ControlClient, ControlError
from switchhost.daemon import SwitchDaemon, frontend_keys
from switchhost.daemon import main as daemon_main
from switchhost.pipelines.miresga import MiresgaSwitch, SwitchPlan
from switchhost.plan import Endpoint, VipSpec
from switchhost.protocol import new_key, read_key
from switchhost.server import (KEEPALIVE_COUNT, KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S,
                               PEER_SILENCE_S, USER_TIMEOUT_S, ControlServer)

from conftest import wait_for

pytestmark = pytest.mark.root

PORTS = ["c0", "f0", "f1", "b1"]
ADDR = {"c0": "10.8.0.1/24", "f0": "10.8.2.1/24", "f1": "10.8.3.1/24", "b1": "10.8.11.1/24"}
CONTROL = "10.8.2.1"
FE = {"fe-a": ("10.8.2.2", "f0"), "fe-b": ("10.8.3.2", "f1")}
# Another address of fe-b's host, not its link's: a management network, as a
# front-end whose NIC DPDK owns reaches the daemon (control_address).
FE_B_MANAGEMENT = "10.8.9.2"
CLIENTS = [(ip_be(f"10.8.0.{10 + i % 50}"), port_be(30000 + i)) for i in range(300)]


@pytest.fixture(scope="module")
def ns():
    with ScratchNs("mf2") as n:
        for p in PORTS:
            n.add_port(p, ADDR[p])
        # The front-ends' addresses, on the far ends of their links, so that a
        # control connection can come from them.
        for ip, port in FE.values():
            subprocess.run(["ip", "-n", n.name, "addr", "add", f"{ip}/24", "dev", f"{port}p"],
                           check=True)
        subprocess.run(["ip", "-n", n.name, "addr", "add", f"{FE_B_MANAGEMENT}/32", "dev",
                        f"{FE['fe-b'][1]}p"], check=True)
        yield n


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "ctl.key"
    path.touch(0o600)
    path.write_text(new_key() + "\n")
    return path


@pytest.fixture(scope="module")
def key(key_file) -> bytes:
    """The daemon's own key: the switch host's tools prove it."""
    return read_key(key_file)


# Each front-end's own key (targets/switchd.py writes one per front-end).
FE_KEYS = {name: bytes.fromhex(new_key()) for name in FE}


@pytest.fixture
def daemon(ns, key):
    plan = SwitchPlan(
        netns=ns.name, ports=PORTS, vips=[VipSpec(ip="10.8.100.1", port=80)],
        backends=[Endpoint(ip="10.8.11.2", mac="02:00:00:00:11:02", switch_port="b1")],
        frontends=[Endpoint(name=n, ip=ip, mac="02:00:00:00:02:02", switch_port=p)
                   for n, (ip, p) in FE.items()],
        flow_capacity=64, filter_bits_log2=10)
    with SwitchDaemon(MiresgaSwitch(plan, attach=False), key=key, frontend_keys=FE_KEYS,
                      listen=[(CONTROL, 0)], run_clock=False) as d:
        yield d


def connect_as(ns: ScratchNs, d: SwitchDaemon, key: bytes, name: str | None,
               source: str | None = None) -> ControlClient:
    """An authenticated control connection with `key` from front-end `name`'s
    address on its link, or from `source` (None, None: from the switch's own, as
    a tool on the switch host)."""
    with netns(ns.name):
        return ControlClient(CONTROL, d.port, key=key,
                             source=source or (FE[name][0] if name else None))


def connect_fe(ns: ScratchNs, d: SwitchDaemon, name: str, source: str | None = None):
    """Front-end `name`, proving its own key."""
    return connect_as(ns, d, FE_KEYS[name], name, source)


def selected(d: SwitchDaemon, new: bool = True) -> set:
    return {d.pipeline.frontend_of(ip, port, new) for ip, port in CLIENTS}


def live(d: SwitchDaemon):
    return d.pipeline.fe_liveness


def test_a_front_end_whose_connection_closes_leaves_the_selection_and_comes_back(
        ns, daemon, key):
    """Presumed alive before it ever connects; down when its last authenticated
    connection closes (its clients then go to the other); active again when it
    authenticates anew."""
    d = daemon
    assert selected(d) == {"fe-a", "fe-b"}
    a, b = connect_fe(ns, d, "fe-a"), connect_fe(ns, d, "fe-b")
    wait_for(lambda: live(d).connections == {"fe-a": 1, "fe-b": 1}, "both connections seen")
    b.close()
    wait_for(lambda: live(d).states()["fe-b"] == "down", "fe-b down")
    assert selected(d) == {"fe-a"} and selected(d, new=False) == {"fe-a"}
    b = connect_fe(ns, d, "fe-b")
    wait_for(lambda: live(d).states()["fe-b"] == "active", "fe-b active")
    assert selected(d) == {"fe-a", "fe-b"}
    events = d.stats()["frontends"]["events"]
    assert [(e["frontend"], e["state"], e["why"]) for e in events] == [
        ("fe-b", "down", "connection closed"), ("fe-b", "active", "connection authenticated")]
    a.close()
    b.close()


def test_only_authenticated_front_end_connections_count(ns, daemon, key):
    """A connection from a front-end's address that fails the key proof keeps
    nothing alive, nor does one that proves the daemon's own key (a tool), from
    the switch's address or from a front-end's."""
    d = daemon
    a = connect_fe(ns, d, "fe-a")
    wait_for(lambda: live(d).connections["fe-a"] == 1, "fe-a connected")
    with pytest.raises(ConnectionError):
        connect_as(ns, d, bytes(32), "fe-b")   # the wrong key
    wait_for(lambda: d.server.stats.auth_failures == 1, "the failed proof counted")
    # fe-b never authenticated: still presumed alive, never counted.
    assert live(d).connections == {"fe-a": 1, "fe-b": 0}
    tool = connect_as(ns, d, key, None)
    assert tool.cmd("frontends")["frontends"]["fe-b"]["connections"] == 0
    on_fe_host = connect_as(ns, d, key, "fe-b")   # the daemon's key from fe-b's address
    assert on_fe_host.cmd("frontends")["frontends"]["fe-b"]["connections"] == 0
    on_fe_host.close()
    tool.close()
    a.close()
    wait_for(lambda: d.server.stats.open_connections == 0, "every connection closed")
    # fe-a's closing took it out; the tool's and the failed one changed nothing.
    assert live(d).states() == {"fe-a": "down", "fe-b": "active"}
    assert [(e["frontend"], e["state"]) for e in live(d).events] == [("fe-a", "down")]


def test_a_front_end_is_known_by_its_key_whatever_address_it_connects_from(ns, daemon):
    """A front-end whose control connection comes from another address than its
    data link (a management network, where DPDK owns its NIC) is watched all the
    same: its key names it.  Its key from the other front-end's address counts
    for it, not for the owner of the address."""
    d = daemon
    a = connect_fe(ns, d, "fe-a")
    b = connect_fe(ns, d, "fe-b", source=FE_B_MANAGEMENT)
    wait_for(lambda: live(d).connections == {"fe-a": 1, "fe-b": 1}, "both connections seen")
    assert b.sock.getsockname()[0] == FE_B_MANAGEMENT
    b.close()
    wait_for(lambda: live(d).states()["fe-b"] == "down", "fe-b down")
    assert selected(d) == {"fe-a"}
    b = connect_fe(ns, d, "fe-b", source=FE["fe-a"][0])
    wait_for(lambda: live(d).states()["fe-b"] == "active", "fe-b active")
    assert live(d).connections == {"fe-a": 1, "fe-b": 1}
    assert selected(d) == {"fe-a", "fe-b"}
    b.close()
    a.close()


def test_front_end_keys_are_checked_against_the_plan(ns, daemon, key, tmp_path, capsys):
    """The daemon's --frontend-key: a name the plan has no front-end of, one
    given twice, and a key shared with another front-end or the daemon are
    refused before it starts, naming the flag."""
    plan = daemon.pipeline.plan
    paths = {}
    for name in ("fe-a", "fe-b", "dup"):
        paths[name] = tmp_path / f"{name}.key"
        paths[name].touch(0o600)
        paths[name].write_text(new_key() + "\n")
    paths["dup"].write_text(paths["fe-a"].read_text())
    got = frontend_keys(plan, [("fe-a", str(paths["fe-a"])), ("fe-b", str(paths["fe-b"]))])
    assert got == {n: read_key(paths[n]) for n in ("fe-a", "fe-b")}
    with pytest.raises(ValueError, match=r"--frontend-key fe-z: not a front-end of the plan "
                                         r"\(fe-a, fe-b\)"):
        frontend_keys(plan, [("fe-z", str(paths["fe-a"]))])
    with pytest.raises(ValueError, match="--frontend-key fe-a: given twice"):
        frontend_keys(plan, [("fe-a", str(paths["fe-a"])), ("fe-a", str(paths["fe-b"]))])
    with pytest.raises(ValueError, match="--frontend-key fe-b: every front-end needs a key "
                                         "of its own"):
        frontend_keys(plan, [("fe-a", str(paths["fe-a"])), ("fe-b", str(paths["dup"]))])
    with pytest.raises(ValueError, match="--frontend-key fe-a: every front-end needs a key "
                                         "of its own, and none the daemon's"):
        frontend_keys(plan, [("fe-a", str(paths["fe-a"]))], read_key(paths["dup"]))
    with pytest.raises(ValueError, match="every front-end needs a key of its own"):
        ControlServer(key, daemon.pipeline, InstallBudget(), {},
                      frontend_keys={"fe-a": FE_KEYS["fe-a"], "fe-b": FE_KEYS["fe-a"]})
    with pytest.raises(ValueError, match="every front-end needs a key of its own"):
        ControlServer(key, daemon.pipeline, InstallBudget(), {}, frontend_keys={"fe-a": key})
    # The daemon's command line says so and does not start.
    (tmp_path / "plan.json").write_text(plan.to_json())
    rc = daemon_main(["--pipeline", "miresga", "--plan", str(tmp_path / "plan.json"),
                      "--key", str(paths["dup"]), "--frontend-key", f"fe-a={paths['fe-a']}"])
    assert rc == 2
    assert "--frontend-key fe-a: every front-end needs a key of its own" in capsys.readouterr().err


def test_drain_and_resume_through_management_ops(ns, daemon, key, key_file, capsys):
    """`drain-frontend name=fe-b`: new connections go to fe-a only, established
    ones still to both (the stable column); its connection closing makes it
    down; `resume-frontend` (with a connection) brings it back.  Bad requests
    are answered with an error, not fatal."""
    d = daemon
    b = connect_fe(ns, d, "fe-b")
    wait_for(lambda: live(d).connections["fe-b"] == 1, "fe-b connected")
    tool = connect_as(ns, d, key, None)
    out = tool.cmd("drain-frontend", name="fe-b")
    assert out["frontends"]["fe-b"]["state"] == "draining"
    assert selected(d) == {"fe-a"} and selected(d, new=False) == {"fe-a", "fe-b"}
    b.close()
    wait_for(lambda: live(d).states()["fe-b"] == "down", "fe-b down")
    assert selected(d, new=False) == {"fe-a"}
    b = connect_fe(ns, d, "fe-b")
    wait_for(lambda: live(d).states()["fe-b"] == "draining", "fe-b back, still draining")
    with netns(ns.name):
        rc = ctl.main(["--connect", f"{CONTROL}:{d.port}", "--key", str(key_file),
                       "resume-frontend", "name=fe-b"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["frontends"]["fe-b"]["state"] == "active"
    assert selected(d) == {"fe-a", "fe-b"}
    with pytest.raises(ControlError, match=r"front-end 'fe-z': not in the plan \(fe-a, fe-b\)"):
        tool.cmd("drain-frontend", name="fe-z")
    with pytest.raises(ControlError, match="name: the front-end's name is required"):
        tool.cmd("drain-frontend")
    with netns(ns.name):
        rc = ctl.main(["--connect", f"{CONTROL}:{d.port}", "--key", str(key_file), "reboot"])
    assert rc == 1 and "unknown op 'reboot'" in capsys.readouterr().out
    tool.close()
    b.close()


def test_a_drained_front_end_is_told_on_each_of_its_connections(ns, daemon, key):
    """`drain-frontend` sends a NOTICE "drain" on every connection that proved the
    drained front-end's key, whatever its address (fe-b's second one comes from
    its management network), and on no other (not the other front-end's, not one
    from fe-b's address with the daemon's key); again right after the handshake
    of a connection it opens while drained, and "resume" when it is resumed;
    answers to its requests still come in order around them."""
    d = daemon
    a, b = connect_fe(ns, d, "fe-a"), connect_fe(ns, d, "fe-b")
    wait_for(lambda: live(d).connections == {"fe-a": 1, "fe-b": 1}, "both connections seen")
    tool, tool_on_b = connect_as(ns, d, key, None), connect_as(ns, d, key, "fe-b")
    tool.cmd("drain-frontend", name="fe-b")
    assert b.wait_notice() == "drain"
    b2 = connect_fe(ns, d, "fe-b", source=FE_B_MANAGEMENT)
    assert b2.wait_notice() == "drain"
    assert "pid" in b.cmd("ping")     # an answer after the NOTICE, in order
    tool.cmd("resume-frontend", name="fe-b")
    assert b.wait_notice() == "resume" and b2.wait_notice() == "resume"
    assert a.cmd("ping") is not None and a.notices == [] and tool.notices == []
    assert tool_on_b.cmd("ping") is not None and tool_on_b.notices == []
    assert d.server.stats.notices == 4 and d.server.stats.bad_macs == 0
    for c in (a, b, b2, tool, tool_on_b):
        c.close()


def test_the_last_live_front_end_is_never_taken_out(ns, daemon, key):
    """Fail open: when every front-end's connection is gone, none leaves the
    selection (nobody would take its clients); the first to reconnect is the
    only one in, once the other is known to be gone."""
    d = daemon
    a, b = connect_fe(ns, d, "fe-a"), connect_fe(ns, d, "fe-b")
    wait_for(lambda: live(d).connections == {"fe-a": 1, "fe-b": 1}, "both connections seen")
    a.close()
    wait_for(lambda: live(d).states()["fe-a"] == "down", "fe-a down")
    b.close()
    wait_for(lambda: live(d).connections["fe-b"] == 0, "fe-b's connection gone")
    wait_for(lambda: live(d).states() == {"fe-a": "active", "fe-b": "active"},
             "both back in")
    assert selected(d) == {"fe-a", "fe-b"}
    b = connect_fe(ns, d, "fe-b")
    wait_for(lambda: live(d).states()["fe-a"] == "down", "fe-a out again")
    assert selected(d) == {"fe-b"}
    b.close()


def test_a_silent_front_end_is_closed_by_keepalive(ns, daemon, key):
    """A front-end whose host goes silent (no FIN, no RST) is closed by TCP
    keepalive and the user timeout, and leaves the selection.  The bound is the
    accepted socket's options, read back from the kernel: silence for idle +
    count x interval, or data unacknowledged for the user timeout, closes it
    within PEER_SILENCE_S, the 3 s the README states."""
    d = daemon
    a, b = connect_fe(ns, d, "fe-a"), connect_fe(ns, d, "fe-b")
    wait_for(lambda: live(d).connections == {"fe-a": 1, "fe-b": 1}, "both connections seen")
    accepted = [w.get_extra_info("socket") for w in list(d.server._writers)]
    assert len(accepted) == 2
    for sock in accepted:
        opt = lambda level, name: sock.getsockopt(level, name)  # noqa: E731
        assert opt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        idle = opt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        interval = opt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
        count = opt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
        user_timeout_ms = opt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
        assert (idle, interval, count, user_timeout_ms) == (
            KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT, USER_TIMEOUT_S * 1000)
        assert idle + count * interval <= PEER_SILENCE_S
        assert user_timeout_ms <= PEER_SILENCE_S * 1000
    assert PEER_SILENCE_S == 3
    # Compared with its line breaks folded, so rewrapping the README keeps the check.
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    assert "(TCP keepalive and user timeout, 3 s: `PEER_SILENCE_S`" in readme
    # Silence fe-b as a dead host is silent: its address gone, the daemon's
    # keepalive probes to it go unanswered (no FIN, no RST).
    ip, port = FE["fe-b"]
    addr = ["ip", "-n", ns.name, "addr"]
    subprocess.run(addr + ["del", f"{ip}/24", "dev", f"{port}p"], check=True)
    try:
        wait_for(lambda: live(d).states()["fe-b"] == "down", "fe-b down after silence")
    finally:
        subprocess.run(addr + ["add", f"{ip}/24", "dev", f"{port}p"], check=True)
    assert selected(d) == {"fe-a"}
    b.sock.close()
    a.close()
