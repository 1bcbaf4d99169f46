"""The Miresga switch: its pipeline loaded on the switch, and the tables it needs.

`SwitchPlan` is everything the switch must know, as data: the VIPs, the
back-ends in service order (a back-end's index in the switch is its position
in `Service.backends`), the front-ends, the hand-off mode, the load-time
parameters and the timers of its control plane.  No list of clients: the
pipeline serves a client at any address.  It is built from a
Service and the testbed's facts (`SwitchPlan.from_testbed`) and serialises to
JSON, so that the switch host's daemon (`python -m switchhost --pipeline
miresga`) can run on a real switch host from a file.

`MiresgaSwitch` is the pipeline (switchhost/pipeline.py) that loads
build/bpf/switch.bpf.o, programs the front-end and port tables beside the
shared ones, owns the cookie secrets and the seen filter's generations, and
offers the flow table to the control protocol through `FlowTable`, which
installs and deletes entries with batched map operations and counts
occupancy from the map itself; and the data-plane table through `DataplaneTable` (read, cleared,
aged, counted; written only by the pipeline, from INSTALL marks).
`MiresgaSwitch.liveness()` answers "is this flow carried, by which back-end,
idle how long" from either table, for the front-ends' QUERY messages.

Time.  The data plane stamps flow entries with `config.now_s`, a coarse
clock the control plane advances (`tick()`, once a second under the daemon);
aging compares against the same clock, so the two never disagree about what
"idle for 60 s" means, and tests can move time by hand.  The data-plane table
keeps the data plane's own clock (bpf_ktime_get_ns(), CLOCK_MONOTONIC here
too), because it ages slots lazily without the control plane.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import secrets
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from common import miresga_defaults as defaults
from switchhost import bpf, layouts
from switchhost.addresses import ip_be, ip_str, mac_bytes, port_be, port_host
from switchhost.ebpf_switch import MapSpec, PinnedMaps, read_counters
from switchhost.layouts import CtlOp, SwitchCounter
from switchhost.pipelines.fe_liveness import FrontendLiveness
from switchhost.pipelines.maglev import is_prime, maglev_table
from switchhost.pipeline import ABSENT, SHARED_MAPS, ApplyResult, FlowOp, Liveness, Pipeline
from switchhost.plan import Endpoint, Plan, require, testbed_backends, testbed_ports, testbed_vips

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64

MAPS = SHARED_MAPS + [
    MapSpec("flow_table", layouts.FlowKey, layouts.Flow),
    MapSpec("frontend_table", u32, layouts.Frontend),
    MapSpec("fe_select", u32, layouts.FeSlot),
    MapSpec("port_table", u32, layouts.Port),
    MapSpec("dp_table", u32, layouts.DpSlot),
    MapSpec("config", u32, layouts.SwitchConfig),
    MapSpec("seen_filter", u32, u64),
    MapSpec("counters", u32, u64),
]

# Synthetic clients of the `fill`/`drain` commands: the benchmarking range
# (RFC 2544), which no testbed gives a real host, so the entries never match
# a packet.
FILL_NET = "198.18.0.0"
FILL_PORTS = 60000

# One tick of the data-plane table's clock, in seconds.
_DP_TICK_S = (1 << layouts.DP_TICK_SHIFT) / 1e9

# ------------------------------------------------------ front-end selection

# A front-end's state in the selection (switch.bpf.c, "front-end selection"):
#   active    gets new connections and keeps its own
#   draining  keeps its own connections, gets no new ones
#   down      gets nothing: its clients go to the others (dead, or drained)
FE_STATES = ("active", "draining", "down")


def frontend_id(f: Endpoint) -> str:
    """What the Maglev table hashes a front-end by: its name, else its address,
    so that a front-end keeps its slots whatever its position in the plan."""
    return f.name or f.ip


def frontend_selection(ids: list[str], states: dict[str, str], size: int) -> list[tuple[int, int]]:
    """Slot -> (active, stable) front-end indices into `ids`, FE_NONE for none.

    `active` is the Maglev table of the active front-ends, `stable` that of
    the active and draining ones: equal in every slot unless one drains.
    """
    def column(keep: tuple[str, ...]) -> list[int]:
        names = [i for i in ids if states.get(i, "active") in keep]
        if not names:
            return [layouts.FE_NONE] * size
        pos = [ids.index(n) for n in names]
        return [pos[k] for k in maglev_table(names, size)]

    return list(zip(column(("active",)), column(("active", "draining"))))


def client_slot(client_ip_be: int, client_port_be: int, size: int) -> int:
    """The selection slot of a client: client_hash() of switch.bpf.c, mod size."""
    return layouts.mix32(client_ip_be ^ layouts.mix32(client_port_be)) % size


# Hand-off modes (docs/design.md section 4.1): how a flow's entry reaches the switch.
#   async      ADD over the channel at join; the front-end forwards until it lands
#   confirmed  ADD over the channel; the front-end holds the request until it lands
#   dataplane  the front-end's INSTALL mark writes the data-plane table
HANDOFF_MODES = defaults.HANDOFF_MODES


# -------------------------------------------------------------------- plan

@dataclass(frozen=True, kw_only=True)
class SwitchPlan(Plan):
    """Everything the switch pipeline is programmed with, as data."""

    handoff: str = defaults.HANDOFF
    flow_capacity: int = layouts.FLOW_CAPACITY_DEFAULT
    # The data-plane table (switch.bpf.c, "data-plane table"): dp_slots slots
    # in all (a power of two, 0: none), split evenly over dp_ways ways (1 or
    # 2); a slot idle for dp_idle_timeout_s counts as empty.  The default,
    # 2 x 65,536 slots, refuses about 0.25% of installs with 10,000 live
    # flows and 13% with 50,000 (memory_model.dp_refusal), in 96 SRAM blocks.
    dp_slots: int = layouts.DP_SLOTS_DEFAULT
    dp_ways: int = layouts.DP_WAYS_DEFAULT
    dp_idle_timeout_s: float = defaults.SWITCH_IDLE_S
    mss: int = 1460
    wscale: int = defaults.WSCALE
    window: int = 65535
    # Seen filter: bits per generation = 2^filter_bits_log2; 0 disables it.
    filter_bits_log2: int = defaults.FILTER_BITS_LOG2
    # Front-end selection table slots (a prime; switch.bpf.c "front-end selection").
    fe_slots: int = layouts.FE_SLOTS_DEFAULT
    # The control plane's timers.
    idle_timeout_s: float = defaults.SWITCH_IDLE_S  # flow entries idle this long are deleted
    aging_interval_s: float = 0.0     # how often to look (0: a quarter of the timeout, >= 1 s)
    cookie_epoch_s: float = defaults.COOKIE_EPOCH_S  # cookie secret rotation (cookies live 1-2)
    # seen-filter rotation period (connections remembered 1-2 periods after
    # their last client packet)
    filter_period_s: float = defaults.FILTER_PERIOD_S
    # The deployment's other idle timeouts, which the switch's must nest with
    # (common/miresga_defaults.py); None: not stated, that rule unchecked.  A
    # plan derived from a MiresgaConfig states both.
    frontend_idle_s: float | None = None
    agent_idle_s: float | None = None

    def check(self) -> None:
        super().check()
        require(1 <= len(self.frontends) <= layouts.MAX_FRONTENDS, "frontends",
                f"1 to {layouts.MAX_FRONTENDS} front-ends")
        seen: set[str] = set()
        for i, f in enumerate(self.frontends):
            require(frontend_id(f) not in seen, f"frontends[{i}]",
                    f"{frontend_id(f)} is listed twice")
            seen.add(frontend_id(f))
        require(is_prime(self.fe_slots) and 7 <= self.fe_slots <= layouts.FE_SLOTS_MAX,
                "fe_slots", f"{self.fe_slots} is not a prime from 7 to {layouts.FE_SLOTS_MAX}")
        require(self.handoff in HANDOFF_MODES, "handoff",
                f"{self.handoff!r} is not one of {', '.join(HANDOFF_MODES)}")
        require(self.dp_ways in (1, 2), "dp_ways", "1 or 2")
        require(self.dp_slots == 0 or (
            self.dp_slots & (self.dp_slots - 1) == 0
            and self.dp_ways <= self.dp_slots <= self.dp_ways << layouts.DP_SLOTS_LOG2_MAX),
            "dp_slots", f"0 (none) or a power of two from dp_ways to "
                        f"dp_ways x 2^{layouts.DP_SLOTS_LOG2_MAX}")
        require(self.handoff != "dataplane" or self.dp_slots, "dp_slots",
                "handoff 'dataplane' needs a data-plane table")
        require(0.01 <= self.dp_idle_timeout_s <= (1 << 31) * _DP_TICK_S / 2,
                "dp_idle_timeout_s", "0.01 to about 13 days")
        require(1 <= self.flow_capacity <= 1 << 24, "flow_capacity", "1 to 16777216")
        require(536 <= self.mss <= 65535, "mss", "536 to 65535")
        require(0 <= self.wscale <= 14, "wscale", "0 to 14 (RFC 7323)")
        require(1 <= self.window <= 65535, "window", "1 to 65535")
        require(self.filter_bits_log2 == 0 or 6 <= self.filter_bits_log2 <= 30,
                "filter_bits_log2", "0 (disabled) or 6 to 30")
        require(self.idle_timeout_s >= 1, "idle_timeout_s", "at least 1")
        require(self.aging_interval_s >= 0, "aging_interval_s", "0 (automatic) or more")
        require(self.cookie_epoch_s > 0, "cookie_epoch_s", "must be positive")
        require(self.filter_period_s > 0, "filter_period_s", "must be positive")
        for problem in defaults.timeout_nesting_problems(
                self.frontend_idle_s, self.filter_period_s, self.idle_timeout_s,
                self.agent_idle_s):
            raise ValueError(f"timeouts: {problem}")

    @property
    def aging_period_s(self) -> float:
        return self.aging_interval_s or max(1.0, self.idle_timeout_s / 4)

    @classmethod
    def from_testbed(cls, tb, service, **params) -> "SwitchPlan":
        """The plan for a service on a testbed (hosts.testbed.EmulatedTestbed or alike).

        Back-end index i is service.backends[i]; its service port is its
        cluster's.  The pipeline goes on the switch ports of the testbed's hosts.
        """
        frontends = [Endpoint(name=h.name, ip=str(h.address), mac=h.mac,
                              switch_port=h.switch_port)
                     for h in tb.by_role("frontend")]
        params.setdefault("netns", tb.switch.netns)
        params.setdefault("ports", testbed_ports(tb))
        return cls(vips=testbed_vips(tb, service), backends=testbed_backends(tb, service),
                   frontends=frontends, **params)


# -------------------------------------------------------------- flow table

@dataclass
class FlowTableStats:
    adds: int = 0
    deletes: int = 0
    del_missing: int = 0
    refused_full: int = 0
    refused_invalid: int = 0
    aged: int = 0
    syscalls: int = 0       # map operations issued, to show what batching buys


class FlowTable:
    """The merged flow table as the control plane sees it.

    Adds and deletes go in batches: one bpf_map_update_batch per run of
    consecutive adds, one delete_batch per run of deletes (order is kept, so
    an add after a delete of the same key wins).  A batch stops at its first
    failure; E2BIG there means a new key met a full table: that entry is
    refused and the rest of the run continues (replacing existing entries
    still works in a full table).

    Occupancy is counted from the map (`occupancy()`), not inferred: batch
    updates cannot say whether an entry was new or replaced (the kernel
    takes no BPF_NOEXIST in batches), and aging deletes entries too.
    """

    def __init__(self, m: bpf.Map, capacity: int, valid_backends: Iterable[int],
                 valid_vips: Iterable[int], clock):
        self.map = m
        self.capacity = capacity
        self.valid_backends = frozenset(valid_backends)
        self.valid_vips = frozenset(valid_vips)
        self._clock = clock
        self.stats = FlowTableStats()
        self.lock = threading.Lock()

    def occupancy(self) -> int:
        return self.map.count_batch()

    def _valid_add(self, op: FlowOp) -> bool:
        return op.backend_idx in self.valid_backends and op.vip_idx in self.valid_vips

    def apply(self, ops: list[FlowOp]) -> ApplyResult:
        res = ApplyResult()
        with self.lock:
            i = 0
            while i < len(ops):
                kind = ops[i].op
                j = i
                while j < len(ops) and ops[j].op == kind:
                    j += 1
                if kind == CtlOp.ADD:
                    self._add_run(ops, range(i, j), res)
                elif kind == CtlOp.DEL:
                    self._del_run(ops[i:j], res)
                else:
                    res.refused_invalid += j - i
                    res.refused_idx += range(i, j)
                i = j
            st = self.stats
            st.adds += res.added
            st.deletes += res.deleted
            st.del_missing += res.del_missing
            st.refused_full += res.refused_full
            st.refused_invalid += res.refused_invalid
        return res

    def _add_run(self, ops: list[FlowOp], run: range, res: ApplyResult) -> None:
        now = self._clock()
        keys, values, at = [], [], []
        for i in run:
            op = ops[i]
            if not self._valid_add(op):
                res.refused_invalid += 1
                res.refused_idx.append(i)
                continue
            keys.append(layouts.FlowKey(op.client_ip_be, op.client_port_be))
            values.append(layouts.Flow(op.backend_idx, op.vip_idx, 0, now))
            at.append(i)
        while keys:
            done, err = self.map.try_update_batch(keys, values)
            self.stats.syscalls += 1
            res.added += done
            if err == 0:
                break
            if err != errno.E2BIG:
                raise bpf.BpfError(err, f"flow table add: {os.strerror(err)}")
            res.refused_full += 1
            res.refused_idx.append(at[done])
            keys, values, at = keys[done + 1:], values[done + 1:], at[done + 1:]

    def _del_run(self, run: list[FlowOp], res: ApplyResult) -> None:
        keys = [layouts.FlowKey(op.client_ip_be, op.client_port_be) for op in run]
        n = self.map.delete_batch(keys)
        # delete_batch skips missing keys with one syscall per gap.
        self.stats.syscalls += 1 + (len(keys) - n)
        res.deleted += n
        res.del_missing += len(keys) - n

    def age(self, idle_s: int) -> int:
        """Delete entries whose last_seen is `idle_s` or more behind the clock.

        Each candidate is looked up again just before it is deleted, so a
        flow that woke up during the sweep keeps its entry (the window left is
        one syscall wide; a flow that loses its entry anyway falls back to the
        front-end, which still holds its state).
        """
        now = self._clock()
        ksz = ctypes.sizeof(layouts.FlowKey)
        stale = []
        # Scan undecoded: 143,360 ctypes objects per sweep would cost more
        # than the syscalls that fetch them.
        for kb, vb, _ in self.map.lookup_batch_raw():
            for i, (_, _, seen) in enumerate(layouts.Flow.FORMAT.iter_unpack(vb)):
                if (now - seen) & 0xFFFFFFFF >= idle_s:
                    stale.append(layouts.FlowKey.from_buffer_copy(kb, i * ksz))
        removed = 0
        with self.lock:
            for k in stale:
                v = self.map.lookup(k)
                if v is None or (now - v.last_seen_s) & 0xFFFFFFFF < idle_s:
                    continue
                if self.map.delete(k):
                    removed += 1
            self.stats.aged += removed
        return removed

    def entries(self) -> dict[tuple[str, int], layouts.Flow]:
        return {(ip_str(k.client_ip_be), port_host(k.client_port_be)): v
                for k, v in self.map.lookup_batch()}


# ------------------------------------------------------- data-plane table

_IDLE_MS_MAX = 0xFFFFFFFF


def dp_now_ticks() -> int:
    """The data-plane table's clock now: bpf_ktime_get_ns() is CLOCK_MONOTONIC."""
    return ((time.monotonic_ns() >> layouts.DP_TICK_SHIFT) & 0xFFFFFFFF) or 1


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class DataplaneTable:
    """The data-plane table (switch.bpf.c, "data-plane table") as the control plane sees it.

    The pipeline writes it, from INSTALL marks, and clears it, from REMOVE
    marks; the control plane reads it (liveness, occupancy), clears slots
    for the channel's DEL, the front-end's fallback when no packet can carry
    a REMOVE (`remove`), and clears aged ones at leisure (`age`: lazy aging
    already treats them as empty; clearing keeps a slot's 32-bit stamp from
    wrapping into "young" after 2^31 ticks).  Geometry, seeds and timeout
    come from the switch's config, read once: they do not change after load.
    Times are ticks of the data plane's clock: `clock` (dp_now_ticks(), or a
    clock a test holds) unless a `now` is given.
    """

    def __init__(self, m: bpf.Map, cfg: layouts.SwitchConfig,
                 clock: Callable[[], int] = dp_now_ticks):
        self.map = m
        self.clock = clock
        self.slots_log2 = cfg.dp_slots_log2
        self.ways = cfg.dp_ways
        self.seed = (cfg.dp_seed.k0, cfg.dp_seed.k1)
        self.idle_ticks = cfg.dp_idle_ticks
        self.lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.slots_log2)

    @property
    def slots(self) -> int:
        return self.ways << self.slots_log2 if self.enabled else 0

    def _live(self, slot: layouts.DpSlot, now: int) -> bool:
        return (slot.client_ip_be != 0 and slot.last_seen != 0
                and _s32(now - slot.last_seen) < self.idle_ticks)

    def slots_of(self, ip_be: int, port_be: int) -> list[tuple[int, layouts.DpSlot]]:
        """(index, slot) of every way of the key whose slot holds it, live or not."""
        if not self.enabled:
            return []
        out = []
        for way in range(self.ways):
            i = layouts.dp_slot_index(self.seed, ip_be, port_be, way, self.slots_log2)
            slot = self.map.lookup(u32(i))
            if slot is not None and (slot.client_ip_be, slot.client_port_be) == (ip_be, port_be):
                out.append((i, slot))
        return out

    def find(self, ip_be: int, port_be: int, now: int | None = None) -> layouts.DpSlot | None:
        """The live slot holding (client IP, client port), as the pipeline's lookup sees it."""
        now = self.clock() if now is None else now
        for _, slot in self.slots_of(ip_be, port_be):
            if self._live(slot, now):
                return slot
        return None

    def liveness(self, ip_be: int, port_be: int, now: int | None = None) -> Liveness:
        now = self.clock() if now is None else now
        slot = self.find(ip_be, port_be, now)
        if slot is None:
            return ABSENT
        idle_ns = max(0, _s32(now - slot.last_seen)) << layouts.DP_TICK_SHIFT
        return Liveness(True, slot.backend_idx, min(idle_ns // 1_000_000, _IDLE_MS_MAX))

    def remove(self, keys: Iterable[tuple[int, int]]) -> int:
        """Clear every slot holding one of the (client IP, client port) keys, as a
        REMOVE mark would; returns how many slots were cleared."""
        cleared = 0
        with self.lock:
            for ip_be, port_be in keys:
                for i, _ in self.slots_of(ip_be, port_be):
                    self.map.update(u32(i), layouts.DpSlot())
                    cleared += 1
        return cleared

    def _scan(self):
        """(index, client IP, client port, back-end, VIP, last seen) of every
        non-empty slot.  Empty slots are skipped on the raw words (the table is
        mostly empty and may hold millions of slots); only the others are
        decoded."""
        vsz = ctypes.sizeof(layouts.DpSlot)
        head = layouts.DpSlot.FORMAT  # client IP, port, back-end, VIP, last seen
        assert vsz % 4 == 0
        step = vsz // 4
        ip_at = layouts.DpSlot.client_ip_be.offset // 4
        seen_at = layouts.DpSlot.last_seen.offset // 4
        for kb, vb, _ in self.map.lookup_batch_raw():
            words = memoryview(vb).cast("I")
            for j, (ip, seen) in enumerate(zip(words[ip_at::step], words[seen_at::step])):
                if ip and seen:
                    _, port, be, vip, _ = head.unpack_from(vb, j * vsz)
                    yield struct.unpack_from("=I", kb, j * 4)[0], ip, port, be, vip, seen

    def occupancy(self, now: int | None = None) -> int:
        """Live slots (an aged slot counts as empty, as it does in the pipeline)."""
        if not self.enabled:
            return 0
        now = self.clock() if now is None else now
        return sum(1 for *_, seen in self._scan()
                   if _s32(now - seen) < self.idle_ticks)

    def age(self, now: int | None = None) -> int:
        """Clear slots idle past the timeout; returns how many.  Each is read again
        just before it is cleared, so a slot the pipeline reused meanwhile stays
        (the window left is one syscall wide; a flow that loses its slot anyway
        falls back to the front-end, the safe direction)."""
        if not self.enabled:
            return 0
        clock = self.clock if now is None else (lambda: now)
        t = clock()
        stale = [(i, ip, port) for i, ip, port, _, _, seen in self._scan()
                 if _s32(t - seen) >= self.idle_ticks]
        cleared = 0
        with self.lock:
            for i, ip, port in stale:
                slot = self.map.lookup(u32(i))
                if (slot is None or (slot.client_ip_be, slot.client_port_be) != (ip, port)
                        or self._live(slot, clock())):
                    continue
                self.map.update(u32(i), layouts.DpSlot())
                cleared += 1
        return cleared

    def entries(self, now: int | None = None) -> dict[tuple[str, int], layouts.DpSlot]:
        """Live slots by (client IP, client port)."""
        now = self.clock() if now is None else now
        out = {}
        for i, ip, port, be, vip, seen in self._scan():
            if _s32(now - seen) < self.idle_ticks:
                out[(ip_str(ip), port_host(port))] = layouts.DpSlot(ip, port, be, vip, seen)
        return out


# ------------------------------------------------------------ the switch

class MiresgaSwitch(Pipeline):
    """The pipeline loaded on a switch and programmed from a SwitchPlan.

        with MiresgaSwitch(plan).load() as sw:
            sw.apply([FlowOp(CtlOp.ADD, ip_be("10.0.1.2"), port_be(40000), 0)])
            sw.rotate_cookie_secret()
            print(sw.counters())
    """

    name = "miresga"
    plan_type = SwitchPlan
    object_name = "switch.bpf.o"
    prog_name = "miresga_switch"
    maps = MAPS
    counter_names = SwitchCounter
    config_type = layouts.SwitchConfig

    def __init__(self, plan: SwitchPlan, *args, dp_clock: Callable[[], int] = dp_now_ticks,
                 **kwargs):
        self.filter_words = ((1 << plan.filter_bits_log2) // 64 if plan.filter_bits_log2
                             else 1)
        super().__init__(plan, *args, **kwargs)
        self.flows: FlowTable | None = None
        self.dataplane: DataplaneTable | None = None
        self._dp_clock = dp_clock
        # (monotonic, table stats) the rates are measured from; the stats file
        # and a `stats` command may ask at once.
        self._rates_at: tuple[float, dict] | None = None
        self._rates = {"adds_per_s": 0.0, "deletes_per_s": 0.0, "refusals_per_s": 0.0}
        self._rates_lock = threading.Lock()
        self.dp_removed = 0     # data-plane slots cleared by a channel DEL
        self.dp_aged = 0        # ... by the aging tick
        self.fe_states: dict[str, str] = {frontend_id(f): "active" for f in plan.frontends}
        # Which front-ends are alive (their control connection) and in service
        # (the operator's word); it rewrites the selection through
        # set_frontend_states.
        self.fe_liveness = FrontendLiveness([frontend_id(f) for f in plan.frontends],
                                            self.set_frontend_states,
                                            lambda name, what: self.notify_peer(name, what))

    def capacities(self) -> dict[str, int]:
        return {"flow_table": self.plan.flow_capacity, "seen_filter": 2 * self.filter_words,
                "dp_table": max(1, self.plan.dp_slots), "fe_select": self.plan.fe_slots}

    def load(self) -> "MiresgaSwitch":
        super().load()
        self.flows = FlowTable(self.map("flow_table"), self.plan.flow_capacity,
                               range(len(self.plan.backends)), range(len(self.plan.vips)),
                               self.now_s)
        self.dataplane = DataplaneTable(self.map("dp_table"), self.config(), self._dp_clock)
        return self

    # --------------------------------------------------------------- tables

    def program_tables(self) -> None:
        """The shared tables, then the front-end and port tables."""
        super().program_tables()
        p = self.plan
        fe_table, port_table = self.map("frontend_table"), self.map("port_table")
        for idx, f in enumerate(p.frontends):
            port = self.port(f.switch_port)
            val = layouts.Frontend()
            val.ip_be, val.ifindex = ip_be(f.ip), port.ifindex
            val.mac[:] = mac_bytes(f.mac)
            val.src_mac[:] = port.mac
            fe_table.update(u32(idx), val)
            # Marks from this port are a front-end's (INSTALL, REMOVE, fused SYNs).
            port_table.update(u32(port.ifindex), layouts.Port(layouts.PORT_FRONTEND))

        self.set_frontend_states({})

    # ---------------------------------------------------- front-end selection

    def set_frontend_states(self, changes: dict[str, str]) -> dict[str, str]:
        """Set front-ends' states (FE_STATES) by name and rewrite the selection
        table; returns every front-end's state.  A slot is written whole, so a
        packet sees the old or the new choice, never half of each."""
        ids = [frontend_id(f) for f in self.plan.frontends]
        for name, state in changes.items():
            if name not in self.fe_states:
                raise ValueError(f"front-end {name!r}: not in the plan ({', '.join(ids)})")
            if state not in FE_STATES:
                raise ValueError(f"front-end {name!r}: state {state!r} is not one of "
                                 f"{', '.join(FE_STATES)}")
        with self.config_lock:
            states = {**self.fe_states, **changes}
            m = self.plan.fe_slots
            sel = frontend_selection(ids, states, m)
            n = self.map("fe_select").update_batch(
                [u32(i) for i in range(m)], [layouts.FeSlot(a, st) for a, st in sel])
            if n != m:
                raise bpf.BpfError(errno.EIO, f"fe_select: {n} of {m} slots written")
            self.fe_states = states

            def slots(cfg):
                cfg.fe_slots = m
            self.update_config(slots)
            return dict(states)

    def frontend_of(self, client_ip_be: int, client_port_be: int, new: bool = True) -> str | None:
        """The front-end the pipeline picks for a client's new (or, `new`
        false, established and not moved) connection, from the map itself."""
        slot = self.map("fe_select").lookup(
            u32(client_slot(client_ip_be, client_port_be, self.plan.fe_slots)))
        idx = slot.active if new else slot.stable
        return None if idx == layouts.FE_NONE else frontend_id(self.plan.frontends[idx])

    # --------------------------------------------------------------- config

    def init_config(self, cfg: layouts.SwitchConfig) -> None:
        p = self.plan
        for k in cfg.keys:
            k.k0, k.k1 = secrets.randbits(32), secrets.randbits(32)
        # Epoch 1, so that "the previous epoch" (0) exists from the start and
        # the first rotation behaves like every other.
        cfg.epoch = 1
        cfg.fe_slots = 0  # no front-end until the selection table is written
        cfg.mss, cfg.window, cfg.wscale = p.mss, p.window, p.wscale
        cfg.filter_key.k0, cfg.filter_key.k1 = secrets.randbits(32), secrets.randbits(32)
        cfg.filter_gen = 0
        cfg.filter_bits_log2 = p.filter_bits_log2
        if p.dp_slots:
            cfg.dp_slots_log2 = (p.dp_slots // p.dp_ways).bit_length() - 1
            cfg.dp_ways = p.dp_ways
            cfg.dp_idle_ticks = max(1, round(p.dp_idle_timeout_s / _DP_TICK_S))
            cfg.dp_seed.k0, cfg.dp_seed.k1 = secrets.randbits(32), secrets.randbits(32)

    def rotate_cookie_secret(self) -> int:
        """Start a new cookie epoch with a fresh secret; returns the new epoch.

        keys[epoch & 1] is current and keys[(epoch - 1) & 1] the previous one,
        so the new secret overwrites the key of epoch - 1: cookies from two
        epochs ago stop validating now, those from the last epoch still do.

        Two writes, key first: a map update copies the whole value while the
        data path may be reading it, so one update that changed the epoch and
        the key it selects could be read half done (the new epoch with a
        half-written key: SYN-ACKs with cookies nobody can validate).  The
        first write changes only the slot the current epoch does not use
        (what it tears is the previous epoch's key, retired anyway); the
        second changes only the epoch, once its key is in place.
        """
        with self.config_lock:
            cfg = self.config()
            epoch = (cfg.epoch + 1) & 0xFFFFFFFF
            key = cfg.keys[epoch & 1]
            key.k0, key.k1 = secrets.randbits(32), secrets.randbits(32)
            self.write_config(cfg)
            cfg.epoch = epoch
            self.write_config(cfg)
            return epoch

    def set_cookie_secret(self, epoch: int, keys: tuple[tuple[int, int], tuple[int, int]]) -> None:
        """Set epoch and both keys explicitly (tests; replaying a known state)."""
        def set_keys(cfg):
            cfg.epoch = epoch
            for slot, (k0, k1) in enumerate(keys):
                cfg.keys[slot].k0, cfg.keys[slot].k1 = k0, k1
        self.update_config(set_keys)

    def rotate_filter(self) -> int:
        """Start a new seen-filter generation; returns it.

        The generation about to become current is the oldest: it is cleared
        first, then made current.  A connection is therefore remembered for at
        least one period after its last client packet, at most two.
        """
        if not self.plan.filter_bits_log2:
            return 0
        with self.config_lock:
            cfg = self.config()
            new_gen = (cfg.filter_gen + 1) & 0xFFFFFFFF
            w = self.filter_words
            base = (new_gen & 1) * w
            m = self.map("seen_filter")
            chunk = 65536
            for start in range(0, w, chunk):
                n = min(chunk, w - start)
                m.update_batch([u32(base + start + i) for i in range(n)], [u64(0)] * n)
            cfg.filter_gen = new_gen
            self.write_config(cfg)
            return new_gen

    # ---------------------------------------------- what the daemon asks of it

    def apply(self, ops: list[FlowOp]) -> ApplyResult:
        """The batch on the exact-match table; a DEL also clears the key's
        data-plane slot: the front-end's fallback for a REMOVE no packet could
        carry (the pipeline acts on REMOVE marks itself)."""
        res = self.flows.apply(ops)
        dels = [(o.client_ip_be, o.client_port_be) for o in ops if o.op == CtlOp.DEL]
        if dels and self.dataplane.enabled:
            self.dp_removed += self.dataplane.remove(dels)
        return res

    def liveness(self, keys: Iterable[tuple[int, int, int | None]],
                 now_ticks: int | None = None) -> list[Liveness]:
        """For each (client IP, client port, VIP index or None) key, in network
        order as ip_be()/port_be() give them (a QUERY's FlowKey is one): is the
        flow carried by the switch, by which back-end, idle for how many
        milliseconds.

        The tables are asked as the pipeline asks them: the exact-match table
        first, the data-plane table only if that has no entry for the key; an
        entry for another VIP is no entry.  Idle time comes from the table's own
        last-seen stamp: whole seconds of the control plane's clock for the
        exact-match table, ~1 ms ticks of the data plane's for the other.
        """
        out = []
        now_s = self.now_s()
        now_ticks = self.dataplane.clock() if now_ticks is None else now_ticks
        for ip, port, vip in keys:
            fl = self.flows.map.lookup(layouts.FlowKey(ip, port))
            if fl is not None:
                if vip is not None and fl.vip_idx != vip:
                    out.append(ABSENT)
                else:
                    idle_ms = ((now_s - fl.last_seen_s) & 0xFFFFFFFF) * 1000
                    out.append(Liveness(True, fl.backend_idx, min(idle_ms, _IDLE_MS_MAX)))
                continue
            slot = self.dataplane.find(ip, port, now_ticks)
            if slot is None or (vip is not None and slot.vip_idx != vip):
                out.append(ABSENT)
            else:
                out.append(self.dataplane.liveness(ip, port, now_ticks))
        return out

    def age(self, now_ticks: int | None = None) -> int:
        """The aging tick: idle entries of the exact-match table deleted, aged
        slots of the data-plane table cleared; how many in all."""
        aged = self.flows.age(int(self.plan.idle_timeout_s))
        dp_aged = self.dataplane.age(now_ticks)
        self.dp_aged += dp_aged
        return aged + dp_aged

    def periodic(self):
        p = self.plan
        return [(p.cookie_epoch_s, self.rotate_cookie_secret),
                (p.filter_period_s, self.rotate_filter),
                (p.aging_period_s, self.age)]

    def commands(self):
        return {"fill": lambda req: self.fill(CtlOp.ADD, req),
                "drain": lambda req: self.fill(CtlOp.DEL, req),
                "frontends": lambda req: self.fe_liveness.snapshot(),
                "drain-frontend": lambda req: self._frontend_admin(req, "drain"),
                "resume-frontend": lambda req: self._frontend_admin(req, "in")}

    def _frontend_admin(self, req: dict, admin: str) -> dict:
        name = req.get("name")
        require(isinstance(name, str) and bool(name), "name", "the front-end's name is required")
        self.fe_liveness.set_admin(name, admin)
        return self.fe_liveness.snapshot()

    def peer(self, frontend: str, connected: bool) -> str | None:
        """A front-end's control connection is its heartbeat (fe_liveness.py)."""
        return self.fe_liveness.peer(frontend, connected)

    def fill(self, op: int, req: dict) -> dict:
        """Add (or delete) `count` entries for synthetic clients, the same ones every
        time: the flow-table-full fault.  A fault, not a front-end: it bypasses
        the install budget, as a table filled by connections long before would."""
        count, backend = int(req.get("count", 0)), int(req.get("backend", 0))
        require(0 <= count <= 1 << 24, "count", "0 to 16777216")
        base = ipaddress.IPv4Address(FILL_NET)
        out = ApplyResult()
        for start in range(0, count, layouts.CTL_MAX_BATCH):
            ops = [FlowOp(op, ip_be(base + i // FILL_PORTS), port_be(1 + i % FILL_PORTS), backend)
                   for i in range(start, min(count, start + layouts.CTL_MAX_BATCH))]
            out.merge(self.flows.apply(ops), start)
        return {"added": out.added, "deleted": out.deleted, "refused": out.refused}

    def stats(self) -> dict:
        snap = dict(vars(self.flows.stats))
        now = time.monotonic()
        with self._rates_lock:
            if self._rates_at is None:
                self._rates_at = (now, snap)
            t0, prev = self._rates_at
            if now - t0 >= 0.5:
                refused = lambda s: s["refused_full"] + s["refused_invalid"]  # noqa: E731
                dt = now - t0
                self._rates = {
                    "adds_per_s": (snap["adds"] - prev["adds"]) / dt,
                    "deletes_per_s": (snap["deletes"] + snap["aged"] - prev["deletes"]
                                      - prev["aged"]) / dt,
                    "refusals_per_s": (refused(snap) - refused(prev)) / dt,
                }
                self._rates_at = (now, snap)
            rates = dict(self._rates)
        cfg = self.config()
        return {
            "flow_table": {"capacity": self.plan.flow_capacity,
                           "occupancy": self.flows.occupancy(), **snap},
            "rates": rates,
            "dp_table": {"slots": self.dataplane.slots,
                         "occupancy": self.dataplane.occupancy(),
                         "removed_by_del": self.dp_removed, "aged": self.dp_aged},
            "counters": self.counters(),
            "cookie_epoch": cfg.epoch,
            "frontends": self.fe_liveness.snapshot(),
            "filter_gen": cfg.filter_gen,
            "clock_s": cfg.now_s,
        }

    @classmethod
    def read_pins(cls, pin_dir: str) -> dict:
        """Counters, flow-table occupancy and capacity, data-plane table occupancy
        and slots of a running switch, from its pins: what the bench reads at the
        edges of a measured window (the daemon's stats file may be up to one
        interval old)."""
        names = ("counters", "flow_table", "dp_table", "config")
        with PinnedMaps(pin_dir, [m for m in MAPS if m.name in names]) as maps:
            dp = DataplaneTable(maps["dp_table"], maps["config"].lookup(u32(0)))
            return {"counters": read_counters(maps["counters"], SwitchCounter),
                    "occupancy": maps["flow_table"].count_batch(),
                    "capacity": maps["flow_table"].max_entries,
                    "dp_occupancy": dp.occupancy(), "dp_slots": dp.slots}
