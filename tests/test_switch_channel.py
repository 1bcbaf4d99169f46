"""The switch host: its daemon, the control protocol (both clients), the install
budget, flow-table limits and liveness, aging, and a clean unload.

The daemon runs against a scratch namespace standing in for the switch; the
protocol is spoken by `ControlClient` (switchhost/client.py) and by the
front-end's C client (fe_offload.c, driven alone by build/miresga-offload-test),
byte for byte the format miresga.h defines.  Where the install budget's timing
is under test, it runs on a virtual clock: the tests assert what it did (slices,
waits, refusals), never how long the machine took.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import json
import os
import select
import signal
import struct
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Ether, raw

from common.netns import ifindex, netns
from common.scratch_ns import ScratchNs
from switchhost import bpf
from switchhost import layouts as L
from switchhost.addresses import ip_be, port_be
from switchhost.budget import InstallBudget
from switchhost.client import ControlClient, ControlError
from switchhost.daemon import SwitchDaemon
from switchhost.ebpf_switch import EbpfSwitch, PinnedMaps
from switchhost.layouts import CtlOp, CtlType, SwitchCounter
from switchhost.pipelines import l4switch_layouts as L4
from switchhost.pipelines.l4switch import L4Plan, L4Switch
from switchhost.pipelines.miresga import MAPS, MiresgaSwitch, SwitchPlan
from switchhost.plan import Endpoint, VipSpec
from switchhost.protocol import Entry, Key, new_key, read_key

from conftest import wait_for
from ctl_server import CtlServer

REPO = Path(__file__).resolve().parent.parent
OFFLOAD_TEST = REPO / "build" / "miresga-offload-test"
PORTS = ["c0", "f0", "b1", "b2"]
ADDR = {"c0": "10.8.0.1/24", "f0": "10.8.2.1/24", "b1": "10.8.11.1/24", "b2": "10.8.12.1/24"}
CONTROL = "10.8.2.1"    # the switch's address on the front-end's link


def make_plan(ns: ScratchNs, capacity: int = 64, **kw) -> SwitchPlan:
    return SwitchPlan(
        netns=ns.name, ports=PORTS, vips=[VipSpec(ip="10.8.100.1", port=80)],
        backends=[Endpoint(ip="10.8.11.2", mac="02:00:00:00:11:02", switch_port="b1"),
                  Endpoint(ip="10.8.12.2", mac="02:00:00:00:12:02", switch_port="b2")],
        frontends=[Endpoint(ip="10.8.2.2", mac="02:00:00:00:02:02", switch_port="f0")],
        flow_capacity=capacity, filter_bits_log2=10, **kw)


def write_key(path: Path, hexkey: str | None = None, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write((hexkey or new_key()) + "\n")
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module")
def ns():
    with ScratchNs() as n:
        for p in PORTS:
            n.add_port(p, ADDR[p])
        yield n


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    return write_key(tmp_path_factory.mktemp("key") / "ctl.key")


@pytest.fixture(scope="module")
def key(key_file) -> bytes:
    return read_key(key_file)


def daemon_for(ns, key, plan=None, pipeline=MiresgaSwitch, **kw) -> SwitchDaemon:
    kw.setdefault("run_clock", False)
    return SwitchDaemon(pipeline(plan or make_plan(ns), attach=False), key=key,
                        listen=[(CONTROL, 0)], **kw)


@pytest.fixture
def daemon(ns, key):
    with daemon_for(ns, key) as d:
        yield d


def client(ns: ScratchNs, d: SwitchDaemon, key: bytes) -> ControlClient:
    # The protocol is served in the switch's namespace, as front-ends see it.
    with netns(ns.name):
        return ControlClient(CONTROL, d.port, key=key)


def adds(n: int, backend: int = 0, start: int = 0, base="10.8.0.") -> list[Entry]:
    return [Entry(f"{base}{10 + (start + i) // 1000}", 20000 + (start + i) % 1000, CtlOp.ADD,
                  backend) for i in range(n)]


def table(d: SwitchDaemon) -> dict:
    return {k: v.backend_idx for k, v in d.pipeline.flows.entries().items()}


def closed(c: ControlClient) -> bool:
    """The daemon closed this connection (EOF where an answer would be)."""
    c.sock.settimeout(30)
    try:
        return c.sock.recv(1) == b""
    except ConnectionResetError:
        return True


class VirtualClock:
    """Time for the install budget that moves only when it waits."""

    def __init__(self, on_sleep=None):
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if self.on_sleep:
            self.on_sleep()
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class HeldTicks:
    """The data-plane table's clock (~1 ms ticks), held by the test."""

    def __init__(self, now: int = 1_000_000):
        self.now = now

    def __call__(self) -> int:
        return self.now


def dp_idle_ms(ticks: int) -> int:
    """What a REPLY says of a slot last seen `ticks` ago (DataplaneTable.liveness)."""
    return (ticks << L.DP_TICK_SHIFT) // 1_000_000


def put_slot(sw: MiresgaSwitch, ip: str, port: int, backend: int, last_seen: int,
             vip: int = 0) -> int:
    """Write (client IP, port) -> back-end into a free way of the data-plane table,
    as the pipeline does for an INSTALL mark; returns the slot's index."""
    dp = sw.dataplane
    for way in range(dp.ways):
        i = ctypes.c_uint32(L.dp_slot_index(dp.seed, ip_be(ip), port_be(port), way,
                                            dp.slots_log2))
        if dp.map.lookup(i).client_ip_be == 0:
            dp.map.update(i, L.DpSlot(ip_be(ip), port_be(port), backend, vip, last_seen))
            return i.value
    raise AssertionError(f"every way of {ip}:{port} is taken")


def dp_holds(sw: MiresgaSwitch, ip: str, port: int) -> bool:
    return bool(sw.dataplane.slots_of(ip_be(ip), port_be(port)))


# ---------------------------------------------------------------- batches

@pytest.mark.root
def test_batches_add_and_delete_entries(ns, daemon, key):
    """A batch of adds lands in the flow table; deletes remove them; ACKs say how many."""
    with client(ns, daemon, key) as c:
        ack = c.batch(adds(50, backend=1))
        assert (ack.added, ack.deleted, ack.refused, ack.refused_at) == (50, 0, 0, frozenset())
        t = table(daemon)
        assert len(t) == 50 and set(t.values()) == {1}
        assert t[("10.8.0.10", 20007)] == 1
        dels = [Entry(e.client_ip, e.client_port, CtlOp.DEL) for e in adds(20)]
        ack = c.batch(dels + [Entry("10.8.0.99", 1, CtlOp.DEL)])  # one that is not there
        assert (ack.added, ack.deleted, ack.refused) == (0, 20, 0)
        assert len(table(daemon)) == 30
    st = daemon.pipeline.flows.stats
    assert (st.adds, st.deletes, st.del_missing) == (50, 20, 1)
    assert daemon.pipeline.flows.occupancy() == 30


@pytest.mark.root
def test_batch_operations_apply_in_order(ns, daemon, key):
    """Within a batch an add, a delete and an add of the same flow apply in order,
    and an add of an existing flow re-routes it (the front-end moved it)."""
    e = lambda op, be=0: Entry("10.8.0.50", 30000, op, be)  # noqa: E731
    with client(ns, daemon, key) as c:
        ack = c.batch([e(CtlOp.ADD, 0), e(CtlOp.DEL), e(CtlOp.ADD, 1)])
        assert (ack.added, ack.deleted) == (2, 1)
        assert table(daemon) == {("10.8.0.50", 30000): 1}
        c.batch([e(CtlOp.ADD, 0)])
        assert table(daemon) == {("10.8.0.50", 30000): 0}


@pytest.mark.root
def test_full_table_refuses_exactly_the_new_flows_it_cannot_hold(ns, daemon, key):
    """With capacity 64, the ACK's bitmap marks exactly the 16 adds beyond it (the
    flows that stay on the front-end), while re-routing an existing flow still
    works in a full table."""
    with client(ns, daemon, key) as c:
        ack = c.batch(adds(80))
        assert (ack.added, ack.refused) == (64, 16)
        in_table = set(table(daemon))
        refused = {(e.client_ip, e.client_port) for i, e in enumerate(adds(80))
                   if i in ack.refused_at}
        assert len(refused) == 16 and not refused & in_table
        assert daemon.pipeline.flows.occupancy() == 64
        first = adds(1)[0]
        ack = c.batch([Entry(first.client_ip, first.client_port, CtlOp.ADD, 1)]
                      + adds(3, start=500))
        assert (ack.added, ack.refused, ack.refused_at) == (1, 3, frozenset({1, 2, 3}))
        assert table(daemon)[(first.client_ip, first.client_port)] == 1
    assert daemon.pipeline.flows.stats.refused_full == 19
    assert daemon.stats()["flow_table"]["refused_full"] == 19
    assert daemon.stats()["channel"]["refused"] == 19


@pytest.mark.root
def test_entries_naming_unknown_things_are_refused(ns, daemon, key):
    """An unknown op, back-end index or VIP index is refused, each marked in the
    bitmap; the rest goes in."""
    with client(ns, daemon, key) as c:
        ack = c.batch([Entry("10.8.0.1", 1, 7), Entry("10.8.0.1", 2, CtlOp.ADD, 2),
                       Entry("10.8.0.1", 3, CtlOp.ADD, 0, vip_idx=1),
                       Entry("10.8.0.1", 4, CtlOp.ADD, 1)])
        assert (ack.added, ack.refused, ack.refused_at) == (1, 3, frozenset({0, 1, 2}))
    assert table(daemon) == {("10.8.0.1", 4): 1}
    assert daemon.pipeline.flows.stats.refused_invalid == 3


@pytest.mark.root
def test_a_batch_split_across_segments_is_reassembled(ns, daemon, key):
    """The server waits for a whole message, however the stream cuts it."""
    with client(ns, daemon, key) as c:
        c.seq += 1
        msg = c.macs.seal(L.CTL_HDR.pack(L.CTL_MAGIC, L.CTL_VERSION, CtlType.BATCH, 10, 77)
                          + b"".join(e.encode() for e in adds(10)))
        for i in range(0, len(msg), 7):
            c.send_raw(msg[i:i + 7])
        ack = c.recv_ack()
    assert (ack.seq, ack.added) == (77, 10)


@pytest.mark.root
def test_pipelined_batches_are_acked_in_order(ns, daemon, key):
    """A front-end may send batches without waiting; ACKs come back in order."""
    with client(ns, daemon, key) as c:
        seqs = [c.send_batch(adds(5, start=5 * i)) for i in range(10)]
        acks = [c.recv_ack() for _ in seqs]
    assert [a.seq for a in acks] == seqs and all(a.added == 5 for a in acks)
    assert daemon.pipeline.flows.occupancy() == 50


@pytest.mark.root
def test_two_frontends_at_once(ns, daemon, key):
    """Several front-ends keep connections open and interleave batches."""
    with client(ns, daemon, key) as a, client(ns, daemon, key) as b:
        sa, sb = a.send_batch(adds(30)), b.send_batch(adds(30, start=100))
        assert a.recv_ack().seq == sa and b.recv_ack().seq == sb
    assert daemon.pipeline.flows.occupancy() == 60
    assert daemon.server.stats.auth_ok == 2


# ---------------------------------------------------------------- queries

def _pure_ack(client_ip: str, cport: int) -> bytes:
    return raw(Ether(src="02:00:00:00:00:10", dst="02:00:00:00:00:01")
               / IP(src=client_ip, dst="10.8.100.1") / TCP(sport=cport, dport=80, flags="A"))


def _through_the_switch(ns, d: SwitchDaemon, client_ip: str, cport: int) -> None:
    """One client packet of an offloaded flow, run through the pipeline."""
    ctx = struct.pack("=10I", 0, 0, 0, 0, 0, 0, 0, 0, 0, ifindex(ns.name, "c0"))
    with netns(ns.name):
        out = bpf.prog_test_run(d.pipeline.program_fd(), _pure_ack(client_ip, cport), ctx=ctx)
    assert out.retval == bpf.TC_ACT_REDIRECT


@pytest.mark.root
def test_query_answers_from_the_data_planes_last_seen_time(ns, daemon, key):
    """A QUERY's REPLY, in the order of its keys: an entry is present with its
    back-end and the time since the pipeline last stamped it (a packet through the
    switch resets it, however long the front-end has not seen the flow); a key
    without an entry, or with the entry of another VIP, is absent."""
    sw = daemon.pipeline
    with client(ns, daemon, key) as c:
        c.batch([Entry("10.8.0.10", 20001, CtlOp.ADD, 1), Entry("10.8.0.10", 20002, CtlOp.ADD, 0)])
        daemon.call(sw.tick, 7)
        _through_the_switch(ns, daemon, "10.8.0.10", 20002)
        daemon.call(sw.tick, 2)
        live = c.query([Key("10.8.0.10", 20001), Key("10.8.0.99", 1), Key("10.8.0.10", 20002),
                        Key("10.8.0.10", 20001, vip_idx=1)])
    assert [tuple(x) for x in live] == [(True, 1, 9000), (False, 0, 0), (True, 0, 2000),
                                        (False, 0, 0)]
    st = daemon.server.stats
    assert (st.queries, st.keys_queried) == (1, 4)


@pytest.mark.root
def test_query_answers_from_the_data_plane_table_too(ns, key):
    """A key without an exact-match entry is looked up in the data-plane table, as
    the pipeline looks it up: present, with its back-end and the time since the
    slot's last-seen stamp on the data plane's clock (held by the test here); a
    slot idle for the table's timeout is absent, as is one of another VIP; where
    both tables hold the key, the exact-match entry answers."""
    ticks = HeldTicks()
    plan = make_plan(ns, dp_idle_timeout_s=10)
    with daemon_for(ns, key, plan, pipeline=partial(MiresgaSwitch, dp_clock=ticks)) as d, \
            client(ns, d, key) as c:
        sw = d.pipeline
        idle = sw.dataplane.idle_ticks
        put_slot(sw, "10.8.0.20", 30001, 1, ticks.now - 3000)
        put_slot(sw, "10.8.0.20", 30002, 1, ticks.now - idle)
        put_slot(sw, "10.8.0.20", 30003, 1, ticks.now, vip=1)
        put_slot(sw, "10.8.0.20", 30004, 1, ticks.now)
        c.batch([Entry("10.8.0.20", 30004, CtlOp.ADD, 0)])
        d.call(sw.tick, 4)
        live = c.query([Key("10.8.0.20", 30001), Key("10.8.0.20", 30002),
                        Key("10.8.0.20", 30003), Key("10.8.0.20", 30004)])
    assert [tuple(x) for x in live] == [(True, 1, dp_idle_ms(3000)), (False, 0, 0),
                                        (False, 0, 0), (True, 0, 4000)]


@pytest.mark.root
def test_a_del_clears_the_keys_data_plane_slot(ns, key):
    """A DEL over the channel (the front-end's fallback when no packet can carry
    its REMOVE mark) clears the key's data-plane slot as well as its exact-match
    entry; other keys' slots stay; the pipeline's stats count it."""
    ticks = HeldTicks()
    with daemon_for(ns, key, pipeline=partial(MiresgaSwitch, dp_clock=ticks)) as d, \
            client(ns, d, key) as c:
        sw = d.pipeline
        put_slot(sw, "10.8.0.21", 30001, 1, ticks.now)
        put_slot(sw, "10.8.0.21", 30002, 1, ticks.now)
        ack = c.batch([Entry("10.8.0.21", 30001, CtlOp.DEL, 0)])
        assert ack.refused == 0
        assert not dp_holds(sw, "10.8.0.21", 30001) and dp_holds(sw, "10.8.0.21", 30002)
        assert [tuple(x) for x in c.query([Key("10.8.0.21", 30001)])] == [(False, 0, 0)]
        assert c.cmd("stats")["dp_table"]["removed_by_del"] == 1


@pytest.mark.root
def test_l4switch_pipeline_refuses_entries_and_answers_its_own_commands(ns, key):
    """The same daemon runs the l4switch pipeline: it has no flow table, so a
    BATCH is refused entry by entry and a QUERY finds nothing; its management ops
    (pool, set-pool, conns) come over the same authenticated protocol."""
    plan = L4Plan(netns=ns.name, ports=PORTS, vips=[VipSpec(ip="10.8.100.1", port=80)],
                  backends=[Endpoint(name="b1", ip="10.8.11.2", mac="02:00:00:00:11:02",
                                     switch_port="b1"),
                            Endpoint(name="b2", ip="10.8.12.2", mac="02:00:00:00:12:02",
                                     switch_port="b2")],
                  health_interval_ms=0, maglev_size=251)
    with daemon_for(ns, key, plan, pipeline=L4Switch) as d, client(ns, d, key) as c:
        ack = c.batch(adds(3))
        assert (ack.added, ack.refused, ack.refused_at) == (0, 3, frozenset({0, 1, 2}))
        assert [tuple(x) for x in c.query([Key("10.8.0.10", 20000)])] == [(False, 0, 0)]
        assert c.cmd("pool")["pools"][0]["effective"] == ["b1", "b2"]
        assert c.cmd("set-pool", backends=["b2"])["effective"] == ["b2"]
        assert d.pipeline.pool() == ["b2"]
        assert c.cmd("conns") == {"ok": True, "conns": []}
        assert c.cmd("ping")["pipeline"] == "l4switch"
        with pytest.raises(ControlError, match="no back-end named"):
            c.cmd("set-pool", backends=["b9"])


@pytest.mark.root
def test_l4switch_conns_come_in_pages(ns, key):
    """A result longer than one message is paged (`next`); the client follows the
    pages and the connection list arrives whole."""
    plan = L4Plan(netns=ns.name, ports=PORTS, vips=[VipSpec(ip="10.8.100.1", port=80)],
                  backends=[Endpoint(name="b1", ip="10.8.11.2", mac="02:00:00:00:11:02",
                                     switch_port="b1")],
                  health_interval_ms=0, maglev_size=251)
    with daemon_for(ns, key, plan, pipeline=L4Switch) as d, client(ns, d, key) as c:
        m = d.pipeline.map("conn_table")
        n = 450
        keys = [L4.ConnKey(ip_be("10.8.0.10"), ip_be("10.8.100.1"), port_be(1000 + i), port_be(80))
                for i in range(n)]
        m.update_batch(keys, [L4.Conn(0, 0, 1)] * n)
        conns = c.cmd("conns")["conns"]
    assert sorted(x["client_port"] for x in conns) == list(range(1000, 1000 + n))
    assert d.server.stats.commands >= 3     # three pages of at most 200


# --------------------------------------------------------------- commands

@pytest.mark.root
def test_management_ops_over_the_protocol(ns, daemon, key):
    """ping, stats, and Miresga's fill/drain (the table-full fault) are CMDs; an
    unknown op or a bad argument comes back as an error, and the connection goes on."""
    with client(ns, daemon, key) as c:
        assert c.cmd("ping")["pipeline"] == "miresga"
        assert c.cmd("fill", count=40) == {"ok": True, "added": 40, "deleted": 0, "refused": 0}
        assert daemon.pipeline.flows.occupancy() == 40
        st = c.cmd("stats")
        assert st["flow_table"]["occupancy"] == 40 and st["pipeline"] == "miresga"
        with pytest.raises(ControlError, match="unknown op 'nope'"):
            c.cmd("nope")
        with pytest.raises(ControlError, match="count"):
            c.cmd("fill", count=-1)
        assert c.cmd("drain", count=40)["deleted"] == 40
    assert daemon.pipeline.flows.occupancy() == 0
    assert daemon.server.stats.command_errors == 2


# --------------------------------------------------------- authentication

@pytest.mark.root
def test_wrong_key_is_refused_and_counted(ns, daemon):
    """A client that cannot prove the key is closed before it can send anything."""
    with pytest.raises(ConnectionError):
        client(ns, daemon, bytes(32))
    wait_for(lambda: daemon.server.stats.auth_failures == 1, "the failure to be counted")
    assert daemon.server.stats.auth_ok == 0


@pytest.mark.root
def test_silent_or_garbage_peer_is_closed_and_counted(ns, daemon):
    """A peer that sends no AUTH within the handshake timeout, or garbage instead of
    one, is closed and counted; it never reaches the flow table."""
    import socket
    daemon.server.handshake_timeout_s = 0.5
    with netns(ns.name):
        silent = socket.create_connection((CONTROL, daemon.port))
        garbage = socket.create_connection((CONTROL, daemon.port))
    with silent, garbage:
        garbage.sendall(b"GET / HTTP/1.1\r\n\r\n" * 4)
        for s in (silent, garbage):
            s.settimeout(30)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert struct.unpack_from("!IBB", data) == (L.CTL_MAGIC, L.CTL_VERSION,
                                                        CtlType.HELLO)
    assert daemon.server.stats.auth_failures == 2
    assert daemon.pipeline.flows.occupancy() == 0


@pytest.mark.root
def test_replayed_message_breaks_the_connection(ns, daemon, key):
    """An ADD, then its DEL; the ADD's bytes sent again are a replay: its MAC was
    for message 0, not 2.  The connection ends, the bad MAC is counted, and the
    entry is not back."""
    e = Entry("10.8.0.60", 40000, CtlOp.ADD, 1)
    with client(ns, daemon, key) as c:
        c.batch([e])
        replay = c.last_sent
        c.batch([Entry(e.client_ip, e.client_port, CtlOp.DEL)])
        c.send_raw(replay)
        assert closed(c)
    assert daemon.server.stats.bad_macs == 1
    assert table(daemon) == {}


@pytest.mark.root
def test_tampered_message_breaks_the_connection(ns, daemon, key):
    """One bit of a MAC'd batch changed on the way: the MAC fails, nothing applies."""
    with client(ns, daemon, key) as c:
        c.seq += 1
        msg = bytearray(c.macs.seal(L.CTL_HDR.pack(L.CTL_MAGIC, L.CTL_VERSION, CtlType.BATCH, 1,
                                                   c.seq) + adds(1, backend=1)[0].encode()))
        msg[L.CTL_HDR.size + 7] ^= 1      # the back-end index
        c.send_raw(bytes(msg))
        assert closed(c)
    assert daemon.server.stats.bad_macs == 1 and table(daemon) == {}


@pytest.mark.root
@pytest.mark.parametrize("what", ["version", "type", "count", "garbage"])
def test_malformed_message_is_counted_and_ends_the_connection(ns, daemon, key, what):
    """After the handshake a wrong version, a type a client may not send, a count
    the type does not allow, or garbage ends the connection (a MAC'd stream cannot
    resynchronise), counted; the next client is served."""
    hdr = {"version": L.CTL_HDR.pack(L.CTL_MAGIC, 9, CtlType.BATCH, 1, 1),
           "type": L.CTL_HDR.pack(L.CTL_MAGIC, L.CTL_VERSION, CtlType.ACK, 1, 1),
           "count": L.CTL_HDR.pack(L.CTL_MAGIC, L.CTL_VERSION, CtlType.BATCH, 4000, 1),
           "garbage": b"\xde\xad\xbe\xef" * 3}[what]
    with client(ns, daemon, key) as c:
        c.send_raw(hdr + bytes(64))
        assert closed(c)
    assert daemon.server.stats.malformed == 1
    with client(ns, daemon, key) as c:
        assert c.batch(adds(5)).added == 5


@pytest.mark.root
def test_daemon_listens_on_the_control_addresses_only(ns, daemon):
    """Served on the front-end link's address: another address of the switch
    refuses the connection."""
    import socket
    with netns(ns.name):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("10.8.0.1", daemon.port), timeout=10)


def test_a_key_others_can_read_is_refused(tmp_path):
    """A key file readable by group or others, or not 32 bytes of hex, is refused
    with the file named."""
    with pytest.raises(ValueError, match=r"ctl.key: mode 0644.*owner only"):
        read_key(write_key(tmp_path / "ctl.key", mode=0o644))
    with pytest.raises(ValueError, match=r"short.key: expected 64 hex digits"):
        read_key(write_key(tmp_path / "short.key", "abcd"))


# ---------------------------------------------------------- install budget

@pytest.mark.root
def test_insertion_rate_limit(ns, key):
    """At 1000 entries/s with a 50-entry bucket, two batches of 300 are installed
    in 12 slices of 50: the first from the bucket, then 11 that each waited for
    50 tokens (0.05 s), so 550 entries were queued and 0.55 s of (virtual) time
    passed; the table grows by 50 between waits.  Without a rate nothing waits."""
    with daemon_for(ns, key, make_plan(ns, capacity=2048)) as d, client(ns, d, key) as c:
        c.batch(adds(300)), c.batch(adds(300, start=300))
        b = d.budget.stats
        assert (b.queued, b.slices, b.waited_s) == (0, 2, 0.0)
    seen: list[int] = []
    holder: list[SwitchDaemon] = []
    vc = VirtualClock(on_sleep=lambda: seen.append(holder[0].pipeline.flows.occupancy()))
    budget = InstallBudget(rate=1000, burst=50, max_wait_s=10, clock=vc, sleep=vc.sleep)
    with daemon_for(ns, key, make_plan(ns, capacity=2048), budget=budget) as d, \
            client(ns, d, key) as c:
        holder.append(d)
        s1, s2 = c.send_batch(adds(300)), c.send_batch(adds(300, start=300))
        acks = [c.recv_ack(), c.recv_ack()]
        assert [(a.seq, a.added, a.refused) for a in acks] == [(s1, 300, 0), (s2, 300, 0)]
        assert d.pipeline.flows.occupancy() == 600
        b = d.budget.stats
        assert (b.queued, b.slices, b.refused) == (550, 12, 0)
        assert b.waited_s == pytest.approx(0.55) and vc.sleeps == pytest.approx([0.05] * 11)
        assert seen == list(range(50, 600, 50)), "installed in slices, not all at the end"
        assert d.stats()["budget"]["queued"] == 550


@pytest.mark.root
def test_adds_over_the_wait_bound_are_refused_and_deletes_never(ns, key):
    """At 100 entries/s, a 5-entry bucket and at most 0.1 s of wait, a batch of 50
    ADDs gets 15 in (5 banked, 10 more within 0.1 s) and 35 refused, marked in the
    ACK; a batch of 50 DELs is never refused, however long it waits."""
    vc = VirtualClock()
    budget = InstallBudget(rate=100, burst=5, max_wait_s=0.1, clock=vc, sleep=vc.sleep)
    with daemon_for(ns, key, budget=budget) as d, client(ns, d, key) as c:
        ack = c.batch(adds(50))
        assert (ack.added, ack.refused, ack.refused_at) == (15, 35, frozenset(range(15, 50)))
        assert len(table(d)) == 15
        ack = c.batch([Entry(e.client_ip, e.client_port, CtlOp.DEL) for e in adds(50)])
        assert (ack.deleted, ack.refused) == (15, 0)
        b = d.budget.stats
        assert (b.refused, b.entries, b.batches) == (35, 100, 2)
        assert d.server.stats.refused == 35


@pytest.mark.root
def test_batch_latency_delays_every_batch(ns, key):
    """A fixed round trip per batch, in order: each ACK leaves after its batch's
    delay, on the budget's clock."""
    vc = VirtualClock()
    budget = InstallBudget(batch_latency_s=0.004, clock=vc, sleep=vc.sleep)
    with daemon_for(ns, key, budget=budget) as d, client(ns, d, key) as c:
        for i in range(5):
            assert c.batch(adds(3, start=3 * i)).added == 3
    assert vc.sleeps == [0.004] * 5 and d.budget.stats.waited_s == pytest.approx(0.02)


# ------------------------------------------------------------------ aging

@pytest.mark.root
def test_idle_entries_age_out_and_active_ones_stay(ns, daemon, key):
    """Entries the data plane has not touched for the idle timeout are deleted;
    an entry refreshed by a packet (last_seen stamped by the pipeline) stays."""
    sw = daemon.pipeline
    with client(ns, daemon, key) as c:
        c.batch(adds(10))
    daemon.call(sw.tick, 50)
    _through_the_switch(ns, daemon, "10.8.0.10", 20003)
    daemon.call(sw.tick, 20)
    assert daemon.call(sw.flows.age, 60) == 9
    assert list(table(daemon)) == [("10.8.0.10", 20003)]
    assert sw.flows.stats.aged == 9
    daemon.call(sw.tick, 60)
    assert daemon.call(sw.flows.age, 60) == 1 and not table(daemon)


@pytest.mark.root
def test_daemon_ages_on_its_own(ns, key):
    """The daemon's clock follows its time source and its aging task removes idle
    entries without being asked: time jumps 10 s (a clock the test holds), and
    the entries, idle for 1 s, go."""
    now = [1000.0]
    with daemon_for(ns, key, make_plan(ns, idle_timeout_s=1, aging_interval_s=0.2),
                    clock=lambda: now[0], run_clock=True) as d, client(ns, d, key) as c:
        c.batch(adds(10))
        assert d.pipeline.flows.occupancy() == 10
        now[0] += 10
        wait_for(lambda: d.pipeline.flows.occupancy() == 0, "the entries to age out")
        assert d.pipeline.now_s() >= 11
        assert d.pipeline.flows.stats.aged == 10


@pytest.mark.root
def test_daemon_ages_the_data_plane_table_on_its_aging_tick(ns, key):
    """The daemon's aging task also clears data-plane slots idle for the table's
    timeout (the pipeline already treats them as empty; clearing keeps their
    32-bit stamps from wrapping into "young"): the data plane's clock (held by
    the test) moves one timeout on, the three slots go, and a slot written after
    that stays."""
    ticks = HeldTicks()
    plan = make_plan(ns, idle_timeout_s=1, aging_interval_s=0.2, dp_idle_timeout_s=1)
    with daemon_for(ns, key, plan, pipeline=partial(MiresgaSwitch, dp_clock=ticks),
                    clock=lambda: 1000.0, run_clock=True) as d, client(ns, d, key) as c:
        sw = d.pipeline
        for port in (30001, 30002, 30003):
            put_slot(sw, "10.8.0.22", port, 0, ticks.now)
        assert sw.dataplane.occupancy() == 3
        ticks.now += sw.dataplane.idle_ticks
        put_slot(sw, "10.8.0.22", 30004, 0, ticks.now)
        wait_for(lambda: not any(dp_holds(sw, "10.8.0.22", p) for p in (30001, 30002, 30003)),
                 "the aged slots to be cleared")
        assert dp_holds(sw, "10.8.0.22", 30004)
        st = c.cmd("stats")["dp_table"]
        assert st["aged"] == 3 and st["occupancy"] == 1


@pytest.mark.root
def test_daemon_rotates_secrets_and_filter(ns, key):
    """Cookie epoch and seen-filter generation advance with their periods."""
    with daemon_for(ns, key, make_plan(ns, cookie_epoch_s=0.2, filter_period_s=0.2)) as d:
        cfg0 = d.pipeline.config()
        keys0 = [(k.k0, k.k1) for k in cfg0.keys]
        cfg = wait_for(lambda: (lambda c: c if c.epoch >= cfg0.epoch + 2
                                and c.filter_gen >= cfg0.filter_gen + 2 else None)(
                                    d.pipeline.config()), "two rotations of each")
        assert [(k.k0, k.k1) for k in cfg.keys] != keys0


@pytest.mark.root
def test_stats_file(ns, key, tmp_path):
    """The stats file is valid JSON with occupancy, rates, protocol and budget stats
    and counters."""
    path = tmp_path / "switch-stats.json"
    with daemon_for(ns, key, stats_file=str(path), stats_interval_s=0.2) as d, \
            client(ns, d, key) as c:
        c.batch(adds(40))
        st = wait_for(lambda: (lambda s: s if s["flow_table"]["occupancy"] == 40 else None)(
            json.loads(path.read_text())), "the stats file to show the entries")
    assert st["flow_table"]["capacity"] == 64 and st["flow_table"]["adds"] == 40
    assert st["channel"]["batches"] == 1 and st["channel"]["auth_ok"] == 1
    assert st["budget"]["rate"] is None and st["budget"]["entries"] == 40
    assert set(st["rates"]) == {"adds_per_s", "deletes_per_s", "refusals_per_s"}
    assert set(st["counters"]) == {m.name.lower() for m in SwitchCounter}


# -------------------------------------------------- the front-end's C client

class OffloadClient:
    """build/miresga-offload-test: fe_offload.c alone, one command per line."""

    def __init__(self, ns: ScratchNs, port: int, key_path: Path,
                 watch: tuple[int, str] | None = None):
        """watch: (the loop's allowed stall in ms, the interface to watch or "-")."""
        extra = [str(watch[0]), watch[1]] if watch else []
        self.p = subprocess.Popen(["ip", "netns", "exec", ns.name, str(OFFLOAD_TEST), CONTROL,
                                   str(port), str(key_path), *extra], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __call__(self, line: str) -> str:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline()
        assert out, self.p.stderr.read()
        return out.strip()

    def results(self, n: int, ms: int = 30000) -> list[dict]:
        return json.loads(self(f"results {n} {ms}"))

    def stats(self) -> dict:
        return json.loads(self("stats"))

    def close(self) -> int:
        if self.p.poll() is None:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
        return self.p.wait(60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.root
def test_c_client_gets_per_entry_results_and_liveness(ns, key, key_file):
    """fe_offload.c proves the key, pushes ADDs and gets back exactly which went in
    (capacity 4 of 6, from the ACK's bitmap), hears nothing of an ADD pushed
    without want_result, and a query comes back as the switch's liveness: present
    with the back-end and idle time, or absent."""
    with daemon_for(ns, key, make_plan(ns, capacity=5)) as d, \
            OffloadClient(ns, d.port, key_file) as c:
        assert c("connected 30000") == "1"
        assert c("push 1 10.8.0.20 1000 1 0 0") == "0"      # no result wanted
        for i in range(6):
            assert c(f"push 1 10.8.0.20 {2000 + i} 0 0 1") == "0"
        got = c.results(6)
        kinds = {r["port"]: r["kind"] for r in got}
        assert sorted(kinds.values()) == ["added"] * 4 + ["refused"] * 2
        refused = {p for p, k in kinds.items() if k == "refused"}
        assert {p for (_, p) in table(d) if p >= 2000} == set(kinds) - refused
        d.call(d.pipeline.tick, 3)
        for port in (1000, 2000, 2001, *refused):
            assert c(f"query 10.8.0.20 {port} 0") == "0"
        live = {r["port"]: (r["kind"], r["present"], r["idle_ms"]) for r in c.results(5)}
        assert live[1000] == ("liveness", 1, 3000) and live[2000][:2] == ("liveness", 1)
        assert all(live[p] == ("liveness", 0, 0) for p in refused)
        assert c.results(1, 200) == [], "nothing more came back"
        st = c.stats()
        assert st["batches_acked"] >= 1 and st["replies"] >= 1 and st["added"] == 5
        assert st["refused"] == 2 and st["bad_macs"] == st["auth_failures"] == 0
    assert d.server.stats.bad_macs == 0 and d.server.stats.auth_ok == 1


@pytest.mark.root
def test_c_client_proving_its_own_key_is_known_as_its_front_end(ns, key, tmp_path):
    """fe_offload.c given its front-end's own key (as a deployment writes one per
    front-end) proves it: the daemon counts the connection for that front-end,
    though it comes from another address than the plan's (10.8.2.1, the
    namespace's own), and answers its batches under that key;
    when it quits, the front-end has no connection left."""
    fe_key = write_key(tmp_path / "fe1.key")
    plan = dataclasses.replace(make_plan(ns), frontends=[Endpoint(
        name="fe1", ip="10.8.2.2", mac="02:00:00:00:02:02", switch_port="f0")])
    with daemon_for(ns, key, plan, frontend_keys={"fe1": read_key(fe_key)}) as d:
        with OffloadClient(ns, d.port, fe_key) as c:
            assert c("connected 30000") == "1"
            wait_for(lambda: d.pipeline.fe_liveness.connections == {"fe1": 1},
                     "the connection counted for fe1")
            assert c("push 1 10.8.0.21 1000 0 0 1") == "0"
            assert [r["kind"] for r in c.results(1)] == ["added"]
            assert c.stats()["bad_macs"] == 0
        wait_for(lambda: d.pipeline.fe_liveness.connections == {"fe1": 0},
                 "fe1's connection gone")
    assert d.server.stats.auth_ok == 1 and d.server.stats.bad_macs == 0


@pytest.mark.root
def test_c_client_leaves_while_its_front_end_cannot_serve(ns, key, key_file):
    """The front-end's control connection is its heartbeat, so the channel closes it
    while the port's link is down or the packet loop stops turning, and connects
    again as soon as both are back: the daemon sees the connection go and a new one
    authenticate each time; the channel counts why."""
    iface = "watched0"
    subprocess.run(["ip", "-n", ns.name, "link", "add", iface, "type", "veth", "peer", "name",
                    "watched1"], check=True)
    try:
        for dev in (iface, "watched1"):
            subprocess.run(["ip", "-n", ns.name, "link", "set", dev, "up"], check=True)
        with daemon_for(ns, key) as d, OffloadClient(ns, d.port, key_file, (300, iface)) as c:
            srv = d.server.stats
            assert c("connected 30000") == "1"
            assert c.stats()["healthy"] == 1 and srv.open_connections == 1
            subprocess.run(["ip", "-n", ns.name, "link", "set", iface, "down"], check=True)
            wait_for(lambda: srv.open_connections == 0, "the connection closed: link down")
            st = c.stats()
            assert st["healthy"] == 0 and st["link_downs"] == 1 and st["health_closes"] == 1
            subprocess.run(["ip", "-n", ns.name, "link", "set", iface, "up"], check=True)
            assert c("connected 30000") == "1"
            wait_for(lambda: srv.auth_ok == 2, "a new connection authenticated: link up")
            assert c("stall 1") == "1"
            wait_for(lambda: srv.open_connections == 0, "the connection closed: loop stalled")
            st = c.stats()
            assert st["healthy"] == 0 and st["loop_stalls"] == 1 and st["health_closes"] == 2
            assert c("stall 0") == "0"
            assert c("connected 30000") == "1"
            wait_for(lambda: srv.auth_ok == 3, "a new connection authenticated: loop turning")
            assert c.stats()["healthy"] == 1 and srv.auth_failures == 0
    finally:
        subprocess.run(["ip", "-n", ns.name, "link", "del", iface], check=False)


@pytest.mark.root
def test_c_client_hears_the_notices_between_its_answers(ns, key, tmp_path):
    """NOTICE DRAIN and RESUME, addressed to a front-end by name, reach fe_offload.c
    (which proved that front-end's key) unasked, MAC'd in the stream between the
    answers to its batches and queries, which still match; a tool's connection
    from the same address, with the daemon's key, hears none of them."""
    fe_key = write_key(tmp_path / "fe1.key")
    plan = dataclasses.replace(make_plan(ns), frontends=[Endpoint(
        name="fe1", ip="10.8.2.2", mac="02:00:00:00:02:02", switch_port="f0")])
    with daemon_for(ns, key, plan, frontend_keys={"fe1": read_key(fe_key)}) as d, \
            OffloadClient(ns, d.port, fe_key) as c, client(ns, d, key) as tool:
        assert c("connected 30000") == "1"
        d.server.notify("fe1", "drain")
        wait_for(lambda: c.stats()["draining"] == 1, "the drain notice")
        for i in range(3):
            assert c(f"push 1 10.8.0.40 {3000 + i} 0 0 1") == "0"
        d.server.notify("fe1", "resume")
        assert [r["kind"] for r in c.results(3)] == ["added"] * 3
        wait_for(lambda: c.stats()["draining"] == 0, "the resume notice")
        st = c.stats()
        assert st["notices"] == 2 and st["bad_macs"] == st["bad_acks"] == 0
        assert d.server.stats.notices == 2 and d.server.stats.bad_macs == 0
        # Both notices were written before this answer, had they been the tool's.
        assert tool.cmd("ping")["ok"] and tool.notices == []


@pytest.mark.root
def test_c_client_queries_are_not_starved_by_a_stream_of_entries(ns, tmp_path):
    """Entries and queries queued while the switch is away go out, once it is
    there, taking turns: with 2,048 entries (four full batches) ahead of it, the
    query is the second message, not the fifth."""
    import socket
    with netns(ns.name):
        probe = socket.create_server((CONTROL, 0))
    port = probe.getsockname()[1]
    probe.close()
    key_path = write_key(tmp_path / "ctl.key")
    with OffloadClient(ns, port, key_path) as c:
        assert c("pushn 2048 1 10.8.0.30 1000 0 0 0") == "2048"
        assert c("query 10.8.0.30 1000 0") == "0"
        with CtlServer(CONTROL, port, ns=ns.name, key_path=key_path) as srv:
            assert c.results(1)[0]["kind"] == "liveness"
            srv.wait_for(lambda s: len(s.batches) == 4, timeout=60)
    assert srv.batches == [1, 3, 4, 5] and srv.query_seqs == [2]


@pytest.mark.root
def test_c_client_with_a_wrong_key_never_connects(ns, key, tmp_path):
    """A front-end with another key is refused at every attempt, counted on both
    sides, and nothing it queued reaches the table."""
    wrong = write_key(tmp_path / "wrong.key")
    with daemon_for(ns, key) as d, OffloadClient(ns, d.port, wrong) as c:
        assert c("push 1 10.8.0.20 3000 0 0 1") == "0"
        wait_for(lambda: c.stats()["auth_failures"] >= 2, "two refused attempts")
        assert c("connected 0") == "0"
        assert d.server.stats.auth_failures >= 2 and d.server.stats.auth_ok == 0
        assert d.pipeline.flows.occupancy() == 0


def test_c_client_refuses_a_key_others_can_read(tmp_path):
    """The front-end will not use a key file group or others can read."""
    loose = write_key(tmp_path / "loose.key", mode=0o640)
    p = subprocess.run([str(OFFLOAD_TEST), "127.0.0.1", "1", str(loose)], input="quit\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "loose.key: mode 0640" in p.stderr


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
        # Another process's view: counters and occupancy through the pins.
        pins = MiresgaSwitch.read_pins(sw.pin_dir)
        assert pins["counters"]["pkts"] >= 0 and pins["occupancy"] == 0
    finally:
        sw.close()
        sw.close()
    assert not any(_filters(ns).values())
    assert not any(_has_clsact(ns, p) for p in PORTS)
    assert not os.path.exists(sw.pin_dir)


@pytest.mark.root
def test_failed_load_leaves_nothing(ns):
    """A load that fails half-way (a map that is not in the object) undoes itself."""
    obj, prog = str(REPO / "build" / "bpf" / MiresgaSwitch.object_name), MiresgaSwitch.prog_name
    sw = EbpfSwitch(obj, prog, MAPS, netns=ns.name, ports=PORTS, capacities={"no_such_map": 1})
    with pytest.raises(OSError):
        sw.load()
    assert not os.path.exists(sw.pin_dir) and not any(_filters(ns).values())
    sw2 = EbpfSwitch(obj, prog, MAPS, netns=ns.name, ports=PORTS + ["nosuchport"])
    with pytest.raises(OSError):
        sw2.load()
    assert not os.path.exists(sw2.pin_dir) and not any(_filters(ns).values())
    assert not any(_has_clsact(ns, p) for p in PORTS)


@pytest.mark.root
def test_cleanup_removes_what_a_crashed_owner_left(ns):
    """The pipeline's cleanup detaches and unpins given only the pin dir and namespace."""
    sw = MiresgaSwitch(make_plan(ns)).load()
    pin_dir = sw.pin_dir
    sw.sw._attached.clear()  # forget, as a killed process would
    sw.sw._maps.clear()
    sw.sw._obj = None
    assert all(_filters(ns).values())
    MiresgaSwitch.cleanup(pin_dir, ns.name)
    assert not any(_filters(ns).values()) and not os.path.exists(pin_dir)


def _switchd(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "switchhost", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.root
def test_switchd_cli(ns, key, key_file, tmp_path):
    """`python -m switchhost --pipeline miresga` loads, serves the protocol on the
    control addresses it is given, writes stats, answers `python -m
    switchhost.ctl` and `--read-pins`, and on SIGTERM detaches and unpins,
    exiting 0."""
    plan = make_plan(ns)
    (tmp_path / "plan.json").write_text(plan.to_json())
    pin_dir = f"/sys/fs/bpf/sw{os.getpid():x}cli"
    stats = tmp_path / "stats.json"
    p = subprocess.Popen(
        [sys.executable, "-m", "switchhost", "--pipeline", "miresga", "--plan",
         str(tmp_path / "plan.json"), "--key", str(key_file), "--listen", f"{CONTROL}:7471",
         "--listen", "127.0.0.1:7471", "--pin-dir", pin_dir, "--stats-file", str(stats),
         "--stats-interval", "0.2", "--rate", "50000", "--batch-latency-ms", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        assert ready, "switchd did not start"
        line = p.stdout.readline()
        assert line.startswith("switchd ready "), line + p.stderr.read()
        info = json.loads(line.split(" ", 2)[2])
        assert info["pin_dir"] == pin_dir and info["pipeline"] == "miresga"
        assert info["listen"] == [[CONTROL, 7471], ["127.0.0.1", 7471]]
        assert all(_filters(ns).values())
        with netns(ns.name):
            c = ControlClient(CONTROL, 7471, key=key)
        with c:
            assert c.batch(adds(12)).added == 12
        ctl = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-m",
                              "switchhost.ctl", "--connect", "127.0.0.1:7471", "--key",
                              str(key_file), "fill", "count=3"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
        assert json.loads(ctl.stdout) == {"ok": True, "added": 3, "deleted": 0, "refused": 0}
        pins = json.loads(_switchd("--pipeline", "miresga", "--read-pins", pin_dir).stdout)
        assert pins["occupancy"] == 15 and pins["capacity"] == 64
        with PinnedMaps(pin_dir, [m for m in MAPS if m.name == "flow_table"]) as maps:
            assert maps["flow_table"].count_batch() == 15
        st = wait_for(lambda: (lambda s: s if s["flow_table"]["occupancy"] == 15 else None)(
            json.loads(stats.read_text())), "the stats file")
        assert st["budget"]["rate"] == 50000 and st["budget"]["batch_latency_s"] == 0.001
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(60)
    assert rc == 0, p.stderr.read()
    assert not os.path.exists(pin_dir) and not any(_filters(ns).values())


def test_switchd_cli_rejects_a_bad_plan_and_a_loose_key(tmp_path):
    """A plan with a bad field is refused with the file and field named; a key
    anyone can read is refused with its file named; exit code 2 for both."""
    bad = {"vips": [{"ip": "10.0.0.1"}], "frontends": [],
           "backends": [{"ip": "10.0.0.2", "mac": "zz", "switch_port": "b"}]}
    (tmp_path / "plan.json").write_text(json.dumps(bad))
    r = _switchd("--pipeline", "miresga", "--plan", str(tmp_path / "plan.json"))
    assert r.returncode == 2 and "plan.json: backends[0].mac" in r.stderr
    good = SwitchPlan(vips=[VipSpec(ip="10.0.0.1")],
                      backends=[Endpoint(ip="10.0.0.2", mac="02:00:00:00:00:02", switch_port="b")],
                      frontends=[Endpoint(ip="10.0.0.3", mac="02:00:00:00:00:03",
                                          switch_port="f")])
    (tmp_path / "good.json").write_text(good.to_json())
    loose = write_key(tmp_path / "loose.key", mode=0o644)
    r = _switchd("--pipeline", "miresga", "--plan", str(tmp_path / "good.json"), "--key",
                 str(loose))
    assert r.returncode == 2 and "loose.key: mode 0644" in r.stderr
    r = _switchd("--pipeline", "miresga", "--plan", str(tmp_path / "good.json"))
    assert r.returncode == 2 and "--key is required" in r.stderr


def test_plan_round_trips_through_json():
    plan = SwitchPlan(vips=[VipSpec(ip="10.0.0.1")], mss=1400,
                      backends=[Endpoint(ip="10.0.0.2", mac="02:00:00:00:00:02", switch_port="b")],
                      frontends=[Endpoint(ip="10.0.0.3", mac="02:00:00:00:00:03",
                                          switch_port="f")])
    assert SwitchPlan.from_json(plan.to_json()) == plan
    with pytest.raises(ValueError, match=r"backends\[1\]"):
        SwitchPlan.from_dict({**plan.to_dict(), "backends": [
            plan.to_dict()["backends"][0], plan.to_dict()["backends"][0]]})
    with pytest.raises(ValueError, match="idle_timeout_s"):
        SwitchPlan.from_dict({**plan.to_dict(), "idle_timeout_s": 0})
