"""The Miresga switch: its pipeline loaded on the switch, and the tables it needs.

`SwitchPlan` is everything the switch must know, as data: the VIPs, the
back-ends in service order (a back-end's index in the switch is its position
in `Service.backends`), the front-ends, the hand-off mode and the load-time
parameters.  No list of clients: the pipeline serves a client at any address.  It is built from a Service and the testbed's facts
(`SwitchPlan.from_testbed`) and serialises to JSON, so that the switch daemon
(miresga.control.switchd) can run on a real switch host from a file.

`MiresgaSwitch` loads build/bpf/switch.bpf.o through the generic
`EbpfSwitch` driver, programs the tables, owns the cookie secrets and the
seen filter's generations, and offers the flow table to the offload channel
through `FlowTable`, which installs and deletes entries with batched map
operations and counts occupancy from the map itself, and the data-plane
table to the daemon through `DataplaneTable` (read, cleared, aged, counted;
written only by the pipeline, from INSTALL marks).  `MiresgaSwitch.liveness()`
answers "is this flow carried, by which back-end, idle how long" from either
table, for the front-ends' liveness queries.

Time.  The data plane stamps flow entries with `config.now_s`, a coarse
clock the control plane advances (`tick()`, once a second under switchd);
aging compares against the same clock, so the two never disagree about what
"idle for 60 s" means, and tests can move time by hand.  The data-plane table
keeps the data plane's own clock (bpf_ktime_get_ns(), CLOCK_MONOTONIC here
too), because it ages slots lazily without the control plane.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import json
import os
import secrets
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from common.maglev import is_prime, maglev_table
from common.netns import ifindex as netns_ifindex
from common.netns import netns
from common.paths import BUILD_DIR
from miresga.control import bpf, layouts
from miresga.control.ebpf_switch import EbpfSwitch, MapSpec, PinnedMaps, read_counters
from miresga.control.layouts import CtlOp, SwitchCounter

SWITCH_OBJ = BUILD_DIR / "bpf" / "switch.bpf.o"
SWITCH_PROG = "miresga_switch"

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64

# One tick of the data-plane table's clock, in seconds.
_DP_TICK_S = (1 << layouts.DP_TICK_SHIFT) / 1e9

MAPS = [
    MapSpec("vip_table", layouts.VipKey, layouts.Vip),
    MapSpec("vip_addrs", u32, layouts.Vip),
    MapSpec("vip_by_idx", u32, layouts.VipKey),
    MapSpec("flow_table", layouts.FlowKey, layouts.Flow),
    MapSpec("backend_table", u32, layouts.Backend),
    MapSpec("backend_addrs", layouts.BackendKey, u32),
    MapSpec("frontend_table", u32, layouts.Frontend),
    MapSpec("fe_select", u32, layouts.FeSlot),
    MapSpec("port_table", u32, layouts.Port),
    MapSpec("dp_table", u32, layouts.DpSlot),
    MapSpec("config", u32, layouts.SwitchConfig),
    MapSpec("seen_filter", u32, u64),
    MapSpec("counters", u32, u64),
]


# ------------------------------------------------------------ byte helpers

def ip_be(ip: str | ipaddress.IPv4Address) -> int:
    """An IPv4 address as the u32 a C struct holds in network order."""
    return struct.unpack("=I", socket.inet_aton(str(ip)))[0]


def port_be(port: int) -> int:
    return struct.unpack("=H", struct.pack("!H", port))[0]


def ip_str(be: int) -> str:
    return socket.inet_ntoa(struct.pack("=I", be))


def port_host(be: int) -> int:
    return struct.unpack("!H", struct.pack("=H", be))[0]


def mac_bytes(mac: str) -> bytes:
    b = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(b) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return b


def iface_mac(ns: str | None, ifname: str) -> str:
    """The MAC address of an interface in a namespace (SIOCGIFHWADDR)."""
    import fcntl

    with netns(ns):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            info = fcntl.ioctl(s.fileno(), 0x8927, struct.pack("256s", ifname.encode()[:15]))
    return ":".join(f"{b:02x}" for b in info[18:24])


# -------------------------------------------------------------------- plan
#
# Plain dataclasses, not pydantic: the switch daemon runs on a real switch
# host with whatever python3 is there (hosts.hosts.Host.python), so it and
# everything it imports use the standard library only.

def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{where}: {msg}")


@dataclass(frozen=True)
class Endpoint:
    """A host as the switch sees it: address, MAC, and the switch port it hangs off."""

    ip: str
    mac: str
    switch_port: str        # interface name on the switch
    port: int = 80          # service port (back-ends)
    name: str = ""

    def check(self, where: str) -> None:
        try:
            ipaddress.IPv4Address(self.ip)
        except ValueError:
            raise ValueError(f"{where}.ip: not an IPv4 address: {self.ip!r}") from None
        try:
            mac_bytes(self.mac)
        except ValueError as e:
            raise ValueError(f"{where}.mac: {e}") from None
        _require(bool(self.switch_port), f"{where}.switch_port", "missing")
        _require(1 <= self.port <= 65535, f"{where}.port", f"{self.port} out of range")


@dataclass(frozen=True)
class VipSpec:
    ip: str
    port: int = 80


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


# Hand-off modes (HANDOFF.md section 2): how a flow's entry reaches the switch.
#   async      ADD over the channel at join; the front-end forwards until it lands
#   confirmed  ADD over the channel; the front-end holds the request until it lands
#   dataplane  the front-end's INSTALL mark writes the data-plane table
HANDOFF_MODES = ("async", "confirmed", "dataplane")


@dataclass(frozen=True)
class SwitchPlan:
    """Everything the switch pipeline is programmed with, as data."""

    vips: list[VipSpec]
    backends: list[Endpoint]          # index in the switch = position here
    frontends: list[Endpoint]
    netns: str | None = None          # None: this host's own interfaces
    ports: list[str] | None = None    # None: every non-loopback interface
    handoff: str = "async"
    flow_capacity: int = layouts.FLOW_CAPACITY_DEFAULT
    # The data-plane table (switch.bpf.c, "data-plane table"): dp_slots slots
    # in all (a power of two, 0: none), split evenly over dp_ways ways (1 or
    # 2); a slot idle for dp_idle_timeout_s counts as empty.  The default,
    # 2 x 65,536 slots, refuses about 0.25% of installs with 10,000 live
    # flows and 13% with 50,000 (memory_model.dp_refusal), in 96 SRAM blocks.
    dp_slots: int = layouts.DP_SLOTS_DEFAULT
    dp_ways: int = layouts.DP_WAYS_DEFAULT
    dp_idle_timeout_s: float = 60.0
    mss: int = 1460
    wscale: int = 7
    window: int = 65535
    # Seen filter: bits per generation = 2^filter_bits_log2; 0 disables it.
    filter_bits_log2: int = 22
    # Front-end selection table slots (a prime; switch.bpf.c "front-end selection").
    fe_slots: int = layouts.FE_SLOTS_DEFAULT

    def __post_init__(self):
        _require(1 <= len(self.vips) <= layouts.MAX_VIPS, "vips", "1 to 16 VIPs")
        _require(1 <= len(self.backends) <= layouts.MAX_BACKENDS, "backends", "1 to 256 back-ends")
        _require(1 <= len(self.frontends) <= layouts.MAX_FRONTENDS, "frontends",
                 "1 to 16 front-ends")
        seen = set()
        for i, v in enumerate(self.vips):
            ipaddress.IPv4Address(v.ip)
            _require((v.ip, v.port) not in seen, f"vips[{i}]", f"{v.ip}:{v.port} listed twice")
            seen.add((v.ip, v.port))
        seen = set()
        for i, b in enumerate(self.backends):
            b.check(f"backends[{i}]")
            _require((b.ip, b.port) not in seen, f"backends[{i}]",
                     f"{b.ip}:{b.port} is listed twice")
            seen.add((b.ip, b.port))
        seen = set()
        for i, f in enumerate(self.frontends):
            f.check(f"frontends[{i}]")
            _require(frontend_id(f) not in seen, f"frontends[{i}]",
                     f"{frontend_id(f)} is listed twice")
            seen.add(frontend_id(f))
        _require(is_prime(self.fe_slots) and 7 <= self.fe_slots <= layouts.FE_SLOTS_MAX,
                 "fe_slots", f"{self.fe_slots} is not a prime from 7 to {layouts.FE_SLOTS_MAX}")
        _require(self.handoff in HANDOFF_MODES, "handoff",
                 f"{self.handoff!r} is not one of {', '.join(HANDOFF_MODES)}")
        _require(self.dp_ways in (1, 2), "dp_ways", "1 or 2")
        _require(self.dp_slots == 0 or (
            self.dp_slots & (self.dp_slots - 1) == 0
            and self.dp_ways <= self.dp_slots <= self.dp_ways << layouts.DP_SLOTS_LOG2_MAX),
            "dp_slots", f"0 (none) or a power of two from dp_ways to "
                        f"dp_ways x 2^{layouts.DP_SLOTS_LOG2_MAX}")
        _require(self.handoff != "dataplane" or self.dp_slots, "dp_slots",
                 "handoff 'dataplane' needs a data-plane table")
        _require(0.01 <= self.dp_idle_timeout_s <= (1 << 31) * _DP_TICK_S / 2,
                 "dp_idle_timeout_s", "0.01 to about 13 days")
        _require(1 <= self.flow_capacity <= 1 << 24, "flow_capacity", "1 to 16777216")
        _require(536 <= self.mss <= 65535, "mss", "536 to 65535")
        _require(0 <= self.wscale <= 14, "wscale", "0 to 14 (RFC 7323)")
        _require(1 <= self.window <= 65535, "window", "1 to 65535")
        _require(self.filter_bits_log2 == 0 or 6 <= self.filter_bits_log2 <= 30,
                 "filter_bits_log2", "0 (disabled) or 6 to 30")

    @classmethod
    def from_testbed(cls, tb, service, **params) -> "SwitchPlan":
        """The plan for a service on a testbed (hosts.testbed.EmulatedTestbed or alike).

        Back-end index i is service.backends[i]; its service port is its
        cluster's.  The pipeline goes on the switch ports of the testbed's hosts.
        """
        vip = service.vip or tb.vip
        backends = []
        for c in service.clusters:
            for name in c.backends:
                h = tb.host(name)
                backends.append(Endpoint(name=name, ip=str(h.address), mac=h.mac,
                                         switch_port=h.switch_port, port=c.port))
        frontends = [Endpoint(name=h.name, ip=str(h.address), mac=h.mac,
                              switch_port=h.switch_port)
                     for h in tb.by_role("frontend")]
        params.setdefault("netns", tb.switch.netns)
        # The ports the testbed's hosts hang off, named: on a real router host
        # "every interface" would include its management NIC.
        params.setdefault("ports", sorted({h.switch_port for h in tb.hosts.values()
                                           if h.switch_port}))
        return cls(vips=[VipSpec(ip=str(vip), port=service.port)], backends=backends,
                   frontends=frontends, **params)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "SwitchPlan":
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        _require(not unknown, "plan", f"unknown field(s) {', '.join(unknown)}")
        for name in ("vips", "backends", "frontends"):
            _require(name in d, name, "missing required field")
        try:
            d["vips"] = [VipSpec(**v) for v in d["vips"]]
            d["backends"] = [Endpoint(**b) for b in d["backends"]]
            d["frontends"] = [Endpoint(**f) for f in d["frontends"]]
        except TypeError as e:
            raise ValueError(f"plan: {e}") from None
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "SwitchPlan":
        return cls.from_dict(json.loads(text))


# -------------------------------------------------------------- flow table

@dataclass
class ApplyResult:
    added: int = 0          # entries installed (new, or replacing one: a re-routed flow)
    deleted: int = 0
    del_missing: int = 0    # deletes of entries that were not there
    refused_full: int = 0
    refused_invalid: int = 0

    @property
    def refused(self) -> int:
        return self.refused_full + self.refused_invalid

    def __iadd__(self, other: "ApplyResult") -> "ApplyResult":
        for f in self.__dataclass_fields__:
            setattr(self, f, getattr(self, f) + getattr(other, f))
        return self


@dataclass(frozen=True)
class FlowOp:
    """One offload-channel entry, decoded: add or delete (client IP, port)."""

    op: int                 # layouts.CtlOp value; anything else is refused
    client_ip_be: int
    client_port_be: int
    backend_idx: int = 0
    vip_idx: int = 0


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
                run = ops[i:j]
                if kind == CtlOp.ADD:
                    self._add_run(run, res)
                elif kind == CtlOp.DEL:
                    self._del_run(run, res)
                else:
                    res.refused_invalid += len(run)
                i = j
            st = self.stats
            st.adds += res.added
            st.deletes += res.deleted
            st.del_missing += res.del_missing
            st.refused_full += res.refused_full
            st.refused_invalid += res.refused_invalid
        return res

    def _add_run(self, run: list[FlowOp], res: ApplyResult) -> None:
        now = self._clock()
        keys, values = [], []
        for op in run:
            if not self._valid_add(op):
                res.refused_invalid += 1
                continue
            keys.append(layouts.FlowKey(op.client_ip_be, op.client_port_be))
            values.append(layouts.Flow(op.backend_idx, op.vip_idx, 0, now))
        while keys:
            done, err = self.map.try_update_batch(keys, values)
            self.stats.syscalls += 1
            res.added += done
            if err == 0:
                break
            if err != errno.E2BIG:
                raise bpf.BpfError(err, f"flow table add: {os.strerror(err)}")
            res.refused_full += 1
            keys, values = keys[done + 1:], values[done + 1:]

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
        last_seen = struct.Struct("=4xI")  # mg_flow: u8 backend, u8 vip, u16 pad, u32 last_seen_s
        assert last_seen.size == ctypes.sizeof(layouts.Flow)
        stale = []
        # Scan undecoded: 143,360 ctypes objects per sweep would cost more
        # than the syscalls that fetch them.
        for kb, vb, _ in self.map.lookup_batch_raw():
            for i, (seen,) in enumerate(last_seen.iter_unpack(vb)):
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

@dataclass(frozen=True)
class Liveness:
    """What the switch knows of a flow: carried or not, by which back-end, idle how long."""

    present: bool
    backend_idx: int = 0
    idle_ms: int = 0        # saturates at 2^32 - 1


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
    for the channel's DEL fallback (`remove`), and clears aged ones at
    leisure (`age`: lazy aging already treats them as empty; clearing keeps
    a slot's 32-bit stamp from wrapping into "young" after 2^31 ticks).
    Geometry, seeds and timeout come from the switch's config, read once:
    they do not change after load.
    """

    def __init__(self, m: bpf.Map, cfg: layouts.SwitchConfig):
        self.map = m
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
        now = dp_now_ticks() if now is None else now
        for _, slot in self.slots_of(ip_be, port_be):
            if self._live(slot, now):
                return slot
        return None

    def liveness(self, ip_be: int, port_be: int, now: int | None = None) -> Liveness:
        now = dp_now_ticks() if now is None else now
        slot = self.find(ip_be, port_be, now)
        if slot is None:
            return Liveness(False)
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
        head = struct.Struct("=IHBBI4x")  # mg_dp_slot
        assert head.size == vsz and vsz % 4 == 0
        step = vsz // 4
        for kb, vb, _ in self.map.lookup_batch_raw():
            words = memoryview(vb).cast("I")
            for j, (ip, seen) in enumerate(zip(words[0::step], words[2::step])):
                if ip and seen:
                    _, port, be, vip, _ = head.unpack_from(vb, j * vsz)
                    yield struct.unpack_from("=I", kb, j * 4)[0], ip, port, be, vip, seen

    def occupancy(self) -> int:
        """Live slots (an aged slot counts as empty, as it does in the pipeline)."""
        if not self.enabled:
            return 0
        now = dp_now_ticks()
        return sum(1 for *_, seen in self._scan()
                   if _s32(now - seen) < self.idle_ticks)

    def age(self) -> int:
        """Clear slots idle past the timeout; returns how many.  Each is read again
        just before it is cleared, so a slot the pipeline reused meanwhile stays
        (the window left is one syscall wide; a flow that loses its slot anyway
        falls back to the front-end, the safe direction)."""
        if not self.enabled:
            return 0
        now = dp_now_ticks()
        stale = [(i, ip, port) for i, ip, port, _, _, seen in self._scan()
                 if _s32(now - seen) >= self.idle_ticks]
        cleared = 0
        with self.lock:
            for i, ip, port in stale:
                slot = self.map.lookup(u32(i))
                if (slot is None or (slot.client_ip_be, slot.client_port_be) != (ip, port)
                        or self._live(slot, dp_now_ticks())):
                    continue
                self.map.update(u32(i), layouts.DpSlot())
                cleared += 1
        return cleared

    def entries(self) -> dict[tuple[str, int], layouts.DpSlot]:
        """Live slots by (client IP, client port)."""
        now = dp_now_ticks()
        out = {}
        for i, ip, port, be, vip, seen in self._scan():
            if _s32(now - seen) < self.idle_ticks:
                out[(ip_str(ip), port_host(port))] = layouts.DpSlot(ip, port, be, vip, seen)
        return out


# ------------------------------------------------------------ the switch

@dataclass
class _PortFacts:
    ifindex: int
    mac: bytes


class MiresgaSwitch:
    """The pipeline loaded on a switch and programmed from a SwitchPlan.

        with MiresgaSwitch(plan).load() as sw:
            sw.flows.apply([FlowOp(CtlOp.ADD, ip_be("10.0.1.2"), port_be(40000), 0)])
            sw.rotate_cookie_secret()
            print(sw.counters())
    """

    def __init__(self, plan: SwitchPlan, obj_path: str | Path | None = None,
                 pin_dir: str | None = None, pin_prefix: str = "sw", attach: bool = True):
        self.plan = plan
        self.attach = attach
        words = (1 << plan.filter_bits_log2) // 64 if plan.filter_bits_log2 else 1
        self.filter_words = words
        self.sw = EbpfSwitch(str(obj_path or SWITCH_OBJ), SWITCH_PROG, MAPS, netns=plan.netns,
                             ports=plan.ports, pin_dir=pin_dir, pin_prefix=pin_prefix,
                             capacities={"flow_table": plan.flow_capacity,
                                         "seen_filter": 2 * words,
                                         "dp_table": max(1, plan.dp_slots),
                                         "fe_select": plan.fe_slots})
        self._cfg_lock = threading.Lock()
        self.flows: FlowTable | None = None
        self.dataplane: DataplaneTable | None = None
        self._port_facts: dict[str, _PortFacts] = {}
        self.fe_states: dict[str, str] = {frontend_id(f): "active" for f in plan.frontends}

    @property
    def pin_dir(self) -> str:
        return self.sw.pin_dir

    # ------------------------------------------------------------ lifecycle

    def load(self) -> "MiresgaSwitch":
        """Load, program every table, then attach: no packet ever meets an empty table."""
        try:
            self.sw.load(attach=False)
            self._init_config()
            self.program_tables()
            self.flows = FlowTable(self.sw.map("flow_table"), self.plan.flow_capacity,
                                   range(len(self.plan.backends)), range(len(self.plan.vips)),
                                   self.now_s)
            self.dataplane = DataplaneTable(self.sw.map("dp_table"), self.config())
            if self.attach:
                self.sw.attach()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.sw.close()

    def __enter__(self) -> "MiresgaSwitch":
        if not self.sw.loaded:
            self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def program_fd(self) -> int:
        return self.sw.program_fd()

    def map(self, name: str) -> bpf.Map:
        return self.sw.map(name)

    # --------------------------------------------------------------- tables

    def _port(self, ifname: str) -> _PortFacts:
        if ifname not in self._port_facts:
            self._port_facts[ifname] = _PortFacts(
                ifindex=netns_ifindex(self.plan.netns, ifname),
                mac=mac_bytes(iface_mac(self.plan.netns, ifname)))
        return self._port_facts[ifname]

    def program_tables(self) -> None:
        """Write the VIP, back-end, front-end and port tables from the plan."""
        p = self.plan
        vip_table, vip_addrs, vip_by_idx = (self.map("vip_table"), self.map("vip_addrs"),
                                            self.map("vip_by_idx"))
        for idx, v in enumerate(p.vips):
            key = layouts.VipKey(ip_be(v.ip), port_be(v.port))
            vip_table.update(key, layouts.Vip(idx))
            addr = u32(ip_be(v.ip))
            if vip_addrs.lookup(addr) is None:  # first VIP on an address names it
                vip_addrs.update(addr, layouts.Vip(idx))
            vip_by_idx.update(u32(idx), key)

        be_table, be_addrs = self.map("backend_table"), self.map("backend_addrs")
        for idx, b in enumerate(p.backends):
            port = self._port(b.switch_port)
            val = layouts.Backend()
            val.ip_be, val.port_be, val.ifindex = ip_be(b.ip), port_be(b.port), port.ifindex
            val.mac[:] = mac_bytes(b.mac)
            val.src_mac[:] = port.mac
            be_table.update(u32(idx), val)
            be_addrs.update(layouts.BackendKey(ip_be(b.ip), port_be(b.port)), u32(idx))

        fe_table, port_table = self.map("frontend_table"), self.map("port_table")
        for idx, f in enumerate(p.frontends):
            port = self._port(f.switch_port)
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
        with self._cfg_lock:
            states = {**self.fe_states, **changes}
            m = self.plan.fe_slots
            sel = frontend_selection(ids, states, m)
            n = self.map("fe_select").update_batch(
                [u32(i) for i in range(m)], [layouts.FeSlot(a, st) for a, st in sel])
            if n != m:
                raise bpf.BpfError(errno.EIO, f"fe_select: {n} of {m} slots written")
            self.fe_states = states
            cfg = self.config()
            cfg.fe_slots = m
            self._write_config(cfg)
            return dict(states)

    def frontend_of(self, client_ip_be: int, client_port_be: int, new: bool = True) -> str | None:
        """The front-end the pipeline picks for a client's new (or, `new`
        false, established and not moved) connection, from the map itself."""
        slot = self.map("fe_select").lookup(
            u32(client_slot(client_ip_be, client_port_be, self.plan.fe_slots)))
        idx = slot.active if new else slot.stable
        return None if idx == layouts.FE_NONE else frontend_id(self.plan.frontends[idx])

    # --------------------------------------------------------------- config

    def config(self) -> layouts.SwitchConfig:
        return self.map("config").lookup(u32(0))

    def _write_config(self, cfg: layouts.SwitchConfig) -> None:
        self.map("config").update(u32(0), cfg)

    def _init_config(self) -> None:
        p = self.plan
        cfg = layouts.SwitchConfig()
        for k in cfg.keys:
            k.k0, k.k1 = secrets.randbits(32), secrets.randbits(32)
        # Epoch 1, so that "the previous epoch" (0) exists from the start and
        # the first rotation behaves like every other.
        cfg.epoch = 1
        cfg.fe_slots = 0  # no front-end until the selection table is written
        cfg.mss, cfg.window, cfg.wscale = p.mss, p.window, p.wscale
        cfg.now_s = 1
        cfg.filter_key.k0, cfg.filter_key.k1 = secrets.randbits(32), secrets.randbits(32)
        cfg.filter_gen = 0
        cfg.filter_bits_log2 = p.filter_bits_log2
        if p.dp_slots:
            cfg.dp_slots_log2 = (p.dp_slots // p.dp_ways).bit_length() - 1
            cfg.dp_ways = p.dp_ways
            cfg.dp_idle_ticks = max(1, round(p.dp_idle_timeout_s / _DP_TICK_S))
            cfg.dp_seed.k0, cfg.dp_seed.k1 = secrets.randbits(32), secrets.randbits(32)
        self._write_config(cfg)

    def now_s(self) -> int:
        return self.config().now_s

    def tick(self, seconds: int = 1) -> int:
        """Advance the coarse clock the data plane stamps entries with."""
        with self._cfg_lock:
            cfg = self.config()
            cfg.now_s = (cfg.now_s + seconds) & 0xFFFFFFFF
            self._write_config(cfg)
            return cfg.now_s

    def rotate_cookie_secret(self) -> int:
        """Start a new cookie epoch with a fresh secret; returns the new epoch.

        keys[epoch & 1] is current and keys[(epoch - 1) & 1] the previous one,
        so the new secret overwrites the key of epoch - 1: cookies from two
        epochs ago stop validating now, those from the last epoch still do.
        One map update writes epoch and key together.
        """
        with self._cfg_lock:
            cfg = self.config()
            cfg.epoch = (cfg.epoch + 1) & 0xFFFFFFFF
            key = cfg.keys[cfg.epoch & 1]
            key.k0, key.k1 = secrets.randbits(32), secrets.randbits(32)
            self._write_config(cfg)
            return cfg.epoch

    def set_cookie_secret(self, epoch: int, keys: tuple[tuple[int, int], tuple[int, int]]) -> None:
        """Set epoch and both keys explicitly (tests; replaying a known state)."""
        with self._cfg_lock:
            cfg = self.config()
            cfg.epoch = epoch
            for slot, (k0, k1) in enumerate(keys):
                cfg.keys[slot].k0, cfg.keys[slot].k1 = k0, k1
            self._write_config(cfg)

    def rotate_filter(self) -> int:
        """Start a new seen-filter generation; returns it.

        The generation about to become current is the oldest: it is cleared
        first, then made current.  A connection is therefore remembered for at
        least one period after its last client packet, at most two.
        """
        if not self.plan.filter_bits_log2:
            return 0
        with self._cfg_lock:
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
            self._write_config(cfg)
            return new_gen

    # ------------------------------------------------------------- liveness

    def liveness(self, keys: Iterable[tuple[int, int, int | None]]) -> list[Liveness]:
        """For each (client IP, client port, VIP index or None) key, in network
        order as ip_be()/port_be() give them: is the flow carried by the switch,
        by which back-end, idle for how many milliseconds.

        The tables are asked as the pipeline asks them: the exact-match table
        first, the data-plane table only if that has no entry for the key; an
        entry for another VIP is no entry.  Idle time comes from the table's own
        last-seen stamp: whole seconds of the control plane's clock for the
        exact-match table, ~1 ms ticks of the data plane's for the other.
        """
        out = []
        now_s, now_ticks = self.now_s(), dp_now_ticks()
        for ip, port, vip in keys:
            fl = self.flows.map.lookup(layouts.FlowKey(ip, port))
            if fl is not None:
                if vip is not None and fl.vip_idx != vip:
                    out.append(Liveness(False))
                else:
                    idle_ms = ((now_s - fl.last_seen_s) & 0xFFFFFFFF) * 1000
                    out.append(Liveness(True, fl.backend_idx, min(idle_ms, _IDLE_MS_MAX)))
                continue
            slot = self.dataplane.find(ip, port, now_ticks)
            if slot is None or (vip is not None and slot.vip_idx != vip):
                out.append(Liveness(False))
            else:
                out.append(self.dataplane.liveness(ip, port, now_ticks))
        return out

    # ------------------------------------------------------------- counters

    def counters(self) -> dict[str, int]:
        return self.sw.counters("counters", SwitchCounter)


def read_pinned_counters(pin_dir: str) -> dict[str, int]:
    """Counters of a switch another process (switchd) loaded, from its pins."""
    with PinnedMaps(pin_dir, [m for m in MAPS if m.name == "counters"]) as maps:
        return read_counters(maps["counters"], SwitchCounter)


def read_pinned_state(pin_dir: str) -> dict:
    """Counters, flow-table occupancy and capacity, data-plane table occupancy and
    slots of a running switch, from its pins: what the bench reads at the edges of
    a measured window (switchd's stats file may be up to one interval old)."""
    names = ("counters", "flow_table", "dp_table", "config")
    with PinnedMaps(pin_dir, [m for m in MAPS if m.name in names]) as maps:
        dp = DataplaneTable(maps["dp_table"], maps["config"].lookup(u32(0)))
        return {"counters": read_counters(maps["counters"], SwitchCounter),
                "occupancy": maps["flow_table"].count_batch(),
                "capacity": maps["flow_table"].max_entries,
                "dp_occupancy": dp.occupancy(), "dp_slots": dp.slots}

