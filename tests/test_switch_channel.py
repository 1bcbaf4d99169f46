"""The switch control plane: offload channel, flow-table limits, aging, switchd, clean unload.

The daemon runs against a scratch namespace standing in for the switch; the
channel is spoken by `ChannelClient`, byte for byte the wire format of
miresga.h, as the front-end will speak it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import time

import pytest
from scapy.all import IP, TCP, Ether, raw

from common.netns import ifindex, netns
from common.scratch_ns import ScratchNs
from switchhost import bpf
from switchhost.ebpf_switch import EbpfSwitch, PinnedMaps
from switchhost.layouts import CTL_HDR, CTL_MAGIC, CtlOp, SwitchCounter
from switchhost.pipelines.miresga import (MAPS, SWITCH_OBJ, SWITCH_PROG, Endpoint,
                                            MiresgaSwitch, SwitchPlan, VipSpec,
                                            read_pinned_counters)
from switchhost.protocol import ChannelClient, Entry, encode_batch
from switchhost.daemon import SwitchDaemon

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORTS = ["c0", "f0", "b1", "b2"]
ADDR = {"c0": "10.8.0.1/24", "f0": "10.8.2.1/24", "b1": "10.8.11.1/24", "b2": "10.8.12.1/24"}


def make_plan(ns: ScratchNs, capacity: int = 64, **kw) -> SwitchPlan:
    return SwitchPlan(
        netns=ns.name, ports=PORTS, vips=[VipSpec(ip="10.8.100.1", port=80)],
        backends=[Endpoint(ip="10.8.11.2", mac="02:00:00:00:11:02", switch_port="b1"),
                  Endpoint(ip="10.8.12.2", mac="02:00:00:00:12:02", switch_port="b2")],
        frontends=[Endpoint(ip="10.8.2.2", mac="02:00:00:00:02:02", switch_port="f0")],
        client_nets=["10.8.0.0/24"], flow_capacity=capacity, filter_bits_log2=10, **kw)


@pytest.fixture(scope="module")
def ns():
    with ScratchNs() as n:
        for p in PORTS:
            n.add_port(p, ADDR[p])
        yield n


@pytest.fixture
def daemon(ns):
    with SwitchDaemon(make_plan(ns), listen=("10.8.2.1", 0), attach=False,
                      run_clock=False) as d:
        yield d


def client(ns: ScratchNs, d: SwitchDaemon) -> ChannelClient:
    # The channel listens in the switch's namespace, as front-ends see it.
    with netns(ns.name):
        return ChannelClient("10.8.2.1", d.port)


def adds(n: int, backend: int = 0, start: int = 0, base="10.8.0.") -> list[Entry]:
    return [Entry(f"{base}{10 + (start + i) // 1000}", 20000 + (start + i) % 1000, CtlOp.ADD,
                  backend) for i in range(n)]


def table(d: SwitchDaemon) -> dict:
    return {k: v.backend_idx for k, v in d.switch.flows.entries().items()}


# ---------------------------------------------------------------- channel

@pytest.mark.root
def test_batches_add_and_delete_entries(ns, daemon):
    """A batch of adds lands in the flow table; deletes remove them; ACKs say how many."""
    with client(ns, daemon) as c:
        ack = c.batch(adds(50, backend=1))
        assert (ack.added, ack.deleted, ack.refused) == (50, 0, 0)
        t = table(daemon)
        assert len(t) == 50 and set(t.values()) == {1}
        assert t[("10.8.0.10", 20007)] == 1
        dels = [Entry(e.client_ip, e.client_port, CtlOp.DEL) for e in adds(20)]
        ack = c.batch(dels + [Entry("10.8.0.99", 1, CtlOp.DEL)])  # one that is not there
        assert (ack.added, ack.deleted, ack.refused) == (0, 20, 0)
        assert len(table(daemon)) == 30
    st = daemon.switch.flows.stats
    assert (st.adds, st.deletes, st.del_missing) == (50, 20, 1)
    assert daemon.switch.flows.occupancy() == 30


@pytest.mark.root
def test_batch_operations_apply_in_order(ns, daemon):
    """Within a batch an add, a delete and an add of the same flow apply in order,
    and an add of an existing flow re-routes it (the front-end moved it)."""
    e = lambda op, be=0: Entry("10.8.0.50", 30000, op, be)  # noqa: E731
    with client(ns, daemon) as c:
        ack = c.batch([e(CtlOp.ADD, 0), e(CtlOp.DEL), e(CtlOp.ADD, 1)])
        assert (ack.added, ack.deleted) == (2, 1)
        assert table(daemon) == {("10.8.0.50", 30000): 1}
        c.batch([e(CtlOp.ADD, 0)])
        assert table(daemon) == {("10.8.0.50", 30000): 0}


@pytest.mark.root
def test_full_table_refuses_new_flows_and_counts_them(ns, daemon):
    """With capacity 64, adds beyond it are refused (the flows stay on the
    front-end) while re-routing an existing flow still works."""
    with client(ns, daemon) as c:
        ack = c.batch(adds(80))
        assert (ack.added, ack.refused) == (64, 16)
        assert daemon.switch.flows.occupancy() == 64
        first = adds(1)[0]
        ack = c.batch([Entry(first.client_ip, first.client_port, CtlOp.ADD, 1)]
                      + adds(3, start=500))
        assert (ack.added, ack.refused) == (1, 3)
        assert table(daemon)[(first.client_ip, first.client_port)] == 1
    assert daemon.switch.flows.stats.refused_full == 19
    assert daemon.stats()["flow_table"]["refused_full"] == 19


@pytest.mark.root
def test_entries_naming_unknown_things_are_refused(ns, daemon):
    """An unknown op, back-end index or VIP index is refused; the rest goes in."""
    with client(ns, daemon) as c:
        ack = c.batch([Entry("10.8.0.1", 1, 7), Entry("10.8.0.1", 2, CtlOp.ADD, 2),
                       Entry("10.8.0.1", 3, CtlOp.ADD, 0, vip_idx=1),
                       Entry("10.8.0.1", 4, CtlOp.ADD, 1)])
        assert (ack.added, ack.refused) == (1, 3)
    assert table(daemon) == {("10.8.0.1", 4): 1}
    assert daemon.switch.flows.stats.refused_invalid == 3


@pytest.mark.root
def test_malformed_messages_are_counted_and_the_channel_keeps_serving(ns, daemon):
    """Garbage, a wrong version, a wrong type and an oversized count are each
    counted; headers with the magic are answered (refusing their entries); the
    next good batch on the same connection is installed."""
    with client(ns, daemon) as c:
        c.send_raw(b"\xde\xad\xbe\xef" * 7)
        c.send_raw(CTL_HDR.pack(CTL_MAGIC, 9, 1, 2, 101) + adds(2)[0].encode() * 2)
        c.send_raw(CTL_HDR.pack(CTL_MAGIC, 1, 2, 1, 102) + adds(1)[0].encode())
        c.send_raw(CTL_HDR.pack(CTL_MAGIC, 1, 1, 4000, 103))
        assert [(a.seq, a.refused) for a in (c.recv_ack(), c.recv_ack(), c.recv_ack())] == [
            (101, 2), (102, 1), (103, 4000 & 0xFFFF)]
        ack = c.batch(adds(5))
        assert (ack.added, ack.refused) == (5, 0)
    assert daemon.server.stats.malformed == 4
    assert len(table(daemon)) == 5


@pytest.mark.root
def test_a_batch_split_across_segments_is_reassembled(ns, daemon):
    """The server waits for a whole batch, however the stream cuts it."""
    msg = encode_batch(77, adds(10))
    with client(ns, daemon) as c:
        for i in range(0, len(msg), 7):
            c.send_raw(msg[i:i + 7])
            time.sleep(0.002)
        ack = c.recv_ack()
    assert (ack.seq, ack.added) == (77, 10)


@pytest.mark.root
def test_pipelined_batches_are_acked_in_order(ns, daemon):
    """A front-end may send batches without waiting; ACKs come back in order."""
    with client(ns, daemon) as c:
        seqs = [c.send(adds(5, start=5 * i)) for i in range(10)]
        acks = [c.recv_ack() for _ in seqs]
    assert [a.seq for a in acks] == seqs and all(a.added == 5 for a in acks)
    assert daemon.switch.flows.occupancy() == 50


@pytest.mark.root
def test_two_frontends_at_once(ns, daemon):
    """Several front-ends keep connections open and interleave batches."""
    with client(ns, daemon) as a, client(ns, daemon) as b:
        sa, sb = a.send(adds(30)), b.send(adds(30, start=100))
        assert a.recv_ack().seq == sa and b.recv_ack().seq == sb
    assert daemon.switch.flows.occupancy() == 60
    assert daemon.server.stats.connections == 2


@pytest.mark.root
def test_insertion_rate_limit(ns):
    """At 1000 entries/s, 600 entries take at least 0.55 s (one 50-entry burst,
    then the rate) and arrive in the table progressively, not all at the end;
    without the limit they take a few milliseconds.  The bounds that matter
    hold however loaded the machine is: a busy machine only installs slower."""
    with SwitchDaemon(make_plan(ns, capacity=2048), listen=("10.8.2.1", 0), attach=False,
                      run_clock=False) as d, client(ns, d) as c:
        t0 = time.monotonic()
        c.batch(adds(300)), c.batch(adds(300, start=300))
        assert time.monotonic() - t0 < 0.5
    with SwitchDaemon(make_plan(ns, capacity=2048), listen=("10.8.2.1", 0), attach=False,
                      run_clock=False, rate=1000) as d, client(ns, d) as c:
        t0 = time.monotonic()
        c.send(adds(300))
        c.send(adds(300, start=300))
        time.sleep(0.3)
        midway = d.switch.flows.occupancy()
        c.recv_ack(), c.recv_ack()
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.55, elapsed
        assert elapsed < 5, f"the limiter stalls: {elapsed:.1f} s"
        # By 0.3 s at most the burst plus 0.3 s of rate (with slack for the
        # time it takes to look), and at least the first slice.
        assert 1 <= midway <= 450, midway
        assert d.switch.flows.occupancy() == 600
        assert d.server.stats.rate_limited_s > 0.3


# ------------------------------------------------------------------ aging

def _pure_ack(client_ip: str, cport: int) -> bytes:
    return raw(Ether(src="02:00:00:00:00:10", dst="02:00:00:00:00:01")
               / IP(src=client_ip, dst="10.8.100.1") / TCP(sport=cport, dport=80, flags="A"))


@pytest.mark.root
def test_idle_entries_age_out_and_active_ones_stay(ns, daemon):
    """Entries the data plane has not touched for the idle timeout are deleted;
    an entry refreshed by a packet (last_seen stamped by the pipeline) stays."""
    sw = daemon.switch
    with client(ns, daemon) as c:
        c.batch(adds(10))
    daemon.call(sw.tick, 50)
    # One flow keeps sending: the pipeline stamps it with the clock.
    ctx = struct.pack("=10I", 0, 0, 0, 0, 0, 0, 0, 0, 0, ifindex(ns.name, "c0"))
    with netns(ns.name):
        out = bpf.prog_test_run(sw.program_fd(), _pure_ack("10.8.0.10", 20003), ctx=ctx)
    assert out.retval == bpf.TC_ACT_REDIRECT
    daemon.call(sw.tick, 20)
    assert daemon.call(sw.flows.age, 60) == 9
    assert list(table(daemon)) == [("10.8.0.10", 20003)]
    assert sw.flows.stats.aged == 9
    daemon.call(sw.tick, 60)
    assert daemon.call(sw.flows.age, 60) == 1 and not table(daemon)


@pytest.mark.root
def test_daemon_ages_on_its_own(ns):
    """switchd's clock and aging task remove idle entries without being asked."""
    with SwitchDaemon(make_plan(ns), listen=("10.8.2.1", 0), attach=False,
                      idle_timeout_s=1, aging_interval_s=0.5) as d, client(ns, d) as c:
        c.batch(adds(10))
        deadline = time.monotonic() + 6
        while d.switch.flows.occupancy() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert d.switch.flows.occupancy() == 0
        assert d.switch.flows.stats.aged == 10


@pytest.mark.root
def test_daemon_rotates_secrets_and_filter(ns):
    """Cookie epoch and seen-filter generation advance with their periods."""
    with SwitchDaemon(make_plan(ns), listen=("10.8.2.1", 0), attach=False,
                      cookie_epoch_s=0.3, filter_period_s=0.3) as d:
        cfg0 = d.switch.config()
        keys0 = [(k.k0, k.k1) for k in cfg0.keys]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cfg = d.switch.config()
            if cfg.epoch >= cfg0.epoch + 2 and cfg.filter_gen >= cfg0.filter_gen + 2:
                break
            time.sleep(0.1)
        assert cfg.epoch >= cfg0.epoch + 2 and cfg.filter_gen >= cfg0.filter_gen + 2
        assert [(k.k0, k.k1) for k in cfg.keys] != keys0


@pytest.mark.root
def test_stats_file(ns, tmp_path):
    """The stats file is valid JSON with occupancy, rates, channel stats and counters."""
    path = tmp_path / "switch-stats.json"
    with SwitchDaemon(make_plan(ns), listen=("10.8.2.1", 0), attach=False,
                      stats_file=str(path), stats_interval_s=0.2) as d, client(ns, d) as c:
        c.batch(adds(40))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = json.loads(path.read_text())
            if st["flow_table"]["occupancy"] == 40:
                break
            time.sleep(0.1)
    assert st["flow_table"]["occupancy"] == 40 and st["flow_table"]["capacity"] == 64
    assert st["flow_table"]["adds"] == 40 and st["channel"]["batches"] == 1
    assert set(st["rates"]) == {"adds_per_s", "deletes_per_s", "refusals_per_s"}
    assert set(st["counters"]) == {m.name.lower() for m in SwitchCounter}


# -------------------------------------------------------- loading, unloading

def _filters(ns: ScratchNs, ports=PORTS) -> dict:
    return {p: bpf.tc_attached_prog_id(ns.name, p) for p in ports}


def _has_clsact(ns: ScratchNs, port: str) -> bool:
    out = subprocess.run(["ip", "netns", "exec", ns.name, "tc", "qdisc", "show", "dev", port],
                         capture_output=True, text=True).stdout
    return "clsact" in out


@pytest.mark.root
def test_switch_attaches_everywhere_and_unloads_without_a_trace(ns):
    """Attached on every port with pinned maps; close() (twice) removes filters,
    the clsact qdiscs it added, and the pins."""
    sw = MiresgaSwitch(make_plan(ns)).load()
    try:
        ids = _filters(ns)
        assert all(ids.values()) and len(set(ids.values())) == 1
        assert sorted(os.listdir(sw.pin_dir)) == sorted(m.name for m in MAPS)
        # Another process's view: counters through the pins.
        assert read_pinned_counters(sw.pin_dir)["pkts"] >= 0
    finally:
        sw.close()
        sw.close()
    assert not any(_filters(ns).values())
    assert not any(_has_clsact(ns, p) for p in PORTS)
    assert not os.path.exists(sw.pin_dir)


@pytest.mark.root
def test_failed_load_leaves_nothing(ns):
    """A load that fails half-way (a map that is not in the object) undoes itself."""
    sw = EbpfSwitch(str(SWITCH_OBJ), SWITCH_PROG, MAPS, netns=ns.name, ports=PORTS,
                    capacities={"no_such_map": 1})
    with pytest.raises(OSError):
        sw.load()
    assert not os.path.exists(sw.pin_dir) and not any(_filters(ns).values())
    sw2 = EbpfSwitch(str(SWITCH_OBJ), SWITCH_PROG, MAPS, netns=ns.name,
                     ports=PORTS + ["nosuchport"])
    with pytest.raises(OSError):
        sw2.load()
    assert not os.path.exists(sw2.pin_dir) and not any(_filters(ns).values())
    assert not any(_has_clsact(ns, p) for p in PORTS)


@pytest.mark.root
def test_cleanup_removes_what_a_crashed_owner_left(ns):
    """EbpfSwitch.cleanup() detaches and unpins given only the pin dir and namespace."""
    sw = MiresgaSwitch(make_plan(ns)).load()
    pin_dir = sw.pin_dir
    sw.sw._attached.clear()  # forget, as a killed process would
    sw.sw._maps.clear()
    sw.sw._obj = None
    assert all(_filters(ns).values())
    EbpfSwitch.cleanup(pin_dir, ns.name)
    assert not any(_filters(ns).values()) and not os.path.exists(pin_dir)


@pytest.mark.root
def test_switchd_cli(ns, tmp_path):
    """`python -m switchhost.daemon` loads, serves, writes stats, and on
    SIGTERM detaches and unpins, exiting 0."""
    plan = make_plan(ns)
    (tmp_path / "plan.json").write_text(plan.to_json())
    pin_dir = f"/sys/fs/bpf/sw{os.getpid():x}cli"
    stats = tmp_path / "stats.json"
    p = subprocess.Popen(
        [sys.executable, "-m", "switchhost.daemon", "--plan", str(tmp_path / "plan.json"),
         "--listen", "10.8.2.1:7471", "--pin-dir", pin_dir, "--stats-file", str(stats),
         "--stats-interval", "0.2", "--rate", "50000"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 30)
        assert ready, "switchd did not start"
        line = p.stdout.readline()
        assert line.startswith("switchd ready "), line + p.stderr.read()
        info = json.loads(line.split(" ", 2)[2])
        assert info["pin_dir"] == pin_dir and info["listen"][1] == 7471
        assert all(_filters(ns).values())
        with netns(ns.name):
            c = ChannelClient("10.8.2.1", 7471)
        with c:
            assert c.batch(adds(12)).added == 12
        with PinnedMaps(pin_dir, [m for m in MAPS if m.name == "flow_table"]) as maps:
            assert maps["flow_table"].count_batch() == 12
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if json.loads(stats.read_text())["flow_table"]["occupancy"] == 12:
                break
            time.sleep(0.1)
        assert json.loads(stats.read_text())["flow_table"]["occupancy"] == 12
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
    assert rc == 0, p.stderr.read()
    assert not os.path.exists(pin_dir) and not any(_filters(ns).values())


def test_switchd_cli_rejects_a_bad_plan(tmp_path):
    """A plan with a bad field is refused with the field named, exit code 2."""
    bad = {"vips": [{"ip": "10.0.0.1"}], "frontends": [],
           "backends": [{"ip": "10.0.0.2", "mac": "zz", "switch_port": "b"}]}
    (tmp_path / "plan.json").write_text(json.dumps(bad))
    r = subprocess.run([sys.executable, "-m", "switchhost.daemon", "--plan",
                        str(tmp_path / "plan.json")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "frontends" in r.stderr


@pytest.mark.root
def test_plan_round_trips_through_json(ns):
    plan = make_plan(ns, mss=1400)
    assert SwitchPlan.from_json(plan.to_json()) == plan
    with pytest.raises(ValueError, match=r"backends\[1\]"):
        SwitchPlan.from_dict({**plan.to_dict(), "backends": [
            plan.to_dict()["backends"][0], plan.to_dict()["backends"][0]]})
