"""A pipeline: one eBPF switch program loaded on a switch, and what its daemon asks of it.

Every pipeline of this repository (Miresga's, switchhost/pipelines/miresga.py;
the l4switch baseline's, switchhost/pipelines/l4switch.py) is a subclass of
`Pipeline`.  The base does what they share:

- load the object through `EbpfSwitch` (map sizes, pins, every port), write
  the config, program the tables, and only then attach, so that no packet
  ever meets an empty table;
- program the tables every pipeline has (miresga/include/mg_vip_maps.h): the
  VIPs, and the back-ends with the MAC of the port each hangs off;
- keep the data plane's coarse clock (`config.now_s`, which both programs
  stamp entries with) and read the per-branch counters.

What the daemon (switchhost/daemon.py) and its protocol (switchhost/server.py)
ask of a pipeline, each with a default for a pipeline that lacks the thing:
`apply()` a batch of flow entries, answer `liveness()` queries, `commands()`
for the management ops, `peer()` news of authenticated peers, `periodic()`
tasks, `start()`/`stop()` background work, `stats()`.
"""

from __future__ import annotations

import ctypes
import enum
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from common.netns import ifindex as netns_ifindex
from common.paths import BUILD_DIR
from switchhost import bpf, layouts
from switchhost.addresses import iface_mac, ip_be, mac_bytes, port_be
from switchhost.ebpf_switch import EbpfSwitch, MapSpec, PinnedMaps, read_counters
from switchhost.plan import Plan

u32 = ctypes.c_uint32

# The tables every pipeline has, with the layouts of miresga.h.
SHARED_MAPS = [
    MapSpec("vip_table", layouts.VipKey, layouts.Vip),
    MapSpec("vip_addrs", u32, layouts.Vip),
    MapSpec("vip_by_idx", u32, layouts.VipKey),
    MapSpec("backend_table", u32, layouts.Backend),
    MapSpec("backend_addrs", layouts.BackendKey, u32),
]


# ------------------------------------------------------- flow entries, queries

@dataclass(frozen=True)
class FlowOp:
    """One entry of a BATCH, decoded: add or delete (client IP, port)."""

    op: int                 # layouts.CtlOp value; anything else is refused
    client_ip_be: int
    client_port_be: int
    backend_idx: int = 0
    vip_idx: int = 0


@dataclass
class ApplyResult:
    added: int = 0          # entries installed (new, or replacing one: a re-routed flow)
    deleted: int = 0
    del_missing: int = 0    # deletes of entries that were not there
    refused_full: int = 0
    refused_invalid: int = 0
    refused_budget: int = 0  # over the switch's install budget (switchhost/budget.py)
    refused_idx: list[int] = field(default_factory=list)   # positions in the batch

    @property
    def refused(self) -> int:
        return self.refused_full + self.refused_invalid + self.refused_budget

    def merge(self, other: "ApplyResult", offset: int) -> None:
        """Add the result of entries [offset, ...) of the same batch."""
        self.added += other.added
        self.deleted += other.deleted
        self.del_missing += other.del_missing
        self.refused_full += other.refused_full
        self.refused_invalid += other.refused_invalid
        self.refused_budget += other.refused_budget
        self.refused_idx += [offset + i for i in other.refused_idx]


class FlowKey(NamedTuple):
    """One key of a QUERY."""

    client_ip_be: int
    client_port_be: int
    vip_idx: int


class Liveness(NamedTuple):
    """The answer to one key: is there an entry, to which back-end, idle how long."""

    present: bool
    backend_idx: int = 0
    idle_ms: int = 0


ABSENT = Liveness(False)


@dataclass
class PortFacts:
    ifindex: int
    mac: bytes


# ---------------------------------------------------------------- the base

class Pipeline:
    """One program on every port of a switch, programmed from a plan."""

    name = ""                               # what --pipeline calls it
    plan_type: type[Plan] = Plan
    object_name = ""                        # build/bpf/<object_name>
    prog_name = ""
    maps: list[MapSpec] = []
    counter_names: type[enum.IntEnum]
    config_type: type[ctypes.Structure]     # one element of the `config` array map
    pin_prefix = "sw"
    # Each program its own tc handle: cleanup after a crash removes this
    # program and nothing another program attached.
    tc_priority, tc_handle = 1, 1

    def __init__(self, plan: Plan, obj_path: str | Path | None = None,
                 pin_dir: str | None = None, attach: bool = True):
        self.plan = plan
        self.attach = attach
        self.sw = EbpfSwitch(str(obj_path or BUILD_DIR / "bpf" / self.object_name),
                             self.prog_name, self.maps, netns=plan.netns, ports=plan.ports,
                             pin_dir=pin_dir, pin_prefix=self.pin_prefix,
                             tc_priority=self.tc_priority, tc_handle=self.tc_handle,
                             capacities=self.capacities())
        self.config_lock = threading.RLock()
        self._port_facts: dict[str, PortFacts] = {}

    def capacities(self) -> dict[str, int]:
        """Map sizes set at load, by map name."""
        return {}

    @property
    def pin_dir(self) -> str:
        return self.sw.pin_dir

    # ------------------------------------------------------------ lifecycle

    def load(self):
        """Load, write the config, program every table, then attach."""
        try:
            self.sw.load(attach=False)
            cfg = self.config_type()
            cfg.now_s = 1
            self.init_config(cfg)
            self.write_config(cfg)
            self.program_tables()
            if self.attach:
                self.sw.attach()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Detach from every port, unpin, release.  Safe to call twice."""
        self.sw.close()

    def __enter__(self):
        if not self.sw.loaded:
            self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def program_fd(self) -> int:
        return self.sw.program_fd()

    def map(self, name: str) -> bpf.Map:
        return self.sw.map(name)

    @classmethod
    def cleanup(cls, pin_dir: str, netns_name: str | None = None,
                ports: list[str] | None = None) -> None:
        """Remove what a killed daemon left: its tc filters (by handle) and pins."""
        EbpfSwitch.cleanup(pin_dir, netns_name, ports, cls.tc_priority, cls.tc_handle)

    # --------------------------------------------------------------- tables

    def port(self, ifname: str) -> PortFacts:
        """ifindex and MAC of a switch port (looked up once)."""
        if ifname not in self._port_facts:
            self._port_facts[ifname] = PortFacts(
                ifindex=netns_ifindex(self.plan.netns, ifname),
                mac=mac_bytes(iface_mac(self.plan.netns, ifname)))
        return self._port_facts[ifname]

    def program_tables(self) -> None:
        """The VIP and back-end tables from the plan; a pipeline adds its own."""
        vip_table, vip_addrs, vip_by_idx = (self.map("vip_table"), self.map("vip_addrs"),
                                            self.map("vip_by_idx"))
        for idx, v in enumerate(self.plan.vips):
            key = layouts.VipKey(ip_be(v.ip), port_be(v.port))
            vip_table.update(key, layouts.Vip(idx))
            addr = u32(ip_be(v.ip))
            if vip_addrs.lookup(addr) is None:  # the first VIP on an address names it
                vip_addrs.update(addr, layouts.Vip(idx))
            vip_by_idx.update(u32(idx), key)
        be_table, be_addrs = self.map("backend_table"), self.map("backend_addrs")
        for idx, b in enumerate(self.plan.backends):
            port = self.port(b.switch_port)
            val = layouts.Backend()
            val.ip_be, val.port_be, val.ifindex = ip_be(b.ip), port_be(b.port), port.ifindex
            val.mac[:] = mac_bytes(b.mac)
            val.src_mac[:] = port.mac
            be_table.update(u32(idx), val)
            be_addrs.update(layouts.BackendKey(ip_be(b.ip), port_be(b.port)), u32(idx))

    # ----------------------------------------------------- config and clock

    def init_config(self, cfg) -> None:
        """Fill the config written at load (now_s is set already)."""

    def config(self):
        return self.map("config").lookup(u32(0))

    def write_config(self, cfg) -> None:
        self.map("config").update(u32(0), cfg)

    def update_config(self, change: Callable) -> object:
        """Read the config, change(cfg), write it back: one map update, under the lock."""
        with self.config_lock:
            cfg = self.config()
            change(cfg)
            self.write_config(cfg)
            return cfg

    def now_s(self) -> int:
        return self.config().now_s

    def tick(self, seconds: int = 1) -> int:
        """Advance the coarse clock the data plane stamps entries with."""
        def advance(cfg):
            cfg.now_s = (cfg.now_s + seconds) & 0xFFFFFFFF
        return self.update_config(advance).now_s

    def counters(self) -> dict[str, int]:
        return self.sw.counters("counters", self.counter_names)

    @classmethod
    def read_pins(cls, pin_dir: str) -> dict:
        """What another process (the bench) reads of a running daemon's switch, from
        its pins: the counters; a pipeline adds its tables' occupancy."""
        with PinnedMaps(pin_dir, [m for m in cls.maps if m.name == "counters"]) as maps:
            return {"counters": read_counters(maps["counters"], cls.counter_names)}

    # ---------------------------------------------- what the daemon asks of it

    def apply(self, ops: list[FlowOp]) -> ApplyResult:
        """Install a batch of flow entries; a pipeline without a flow table refuses them."""
        return ApplyResult(refused_invalid=len(ops), refused_idx=list(range(len(ops))))

    def liveness(self, keys: list[FlowKey]) -> list[Liveness]:
        """(present, back-end index, idle ms) of each key's entry."""
        return [ABSENT] * len(keys)

    def commands(self) -> dict[str, Callable[[dict], dict]]:
        """Management ops (CMD) beyond the daemon's own, by name."""
        return {}

    def peer(self, frontend: str, connected: bool) -> str | None:
        """Front-end `frontend` authenticated (connected: it proved its own key,
        server.py) or that connection closed; a pipeline that watches its
        front-ends counts them.  Returns a NOTICE for the new connection alone
        (protocol.NOTICES), or None."""
        return None

    @staticmethod
    def notify_peer(frontend: str, what: str) -> None:
        """Tell front-end `frontend`, unasked, `what` (a NOTICE: "drain", "resume",
        protocol.NOTICES) on every connection that proved its key.  The control
        server replaces this with its own when it serves the pipeline; callable
        from any thread."""

    def periodic(self) -> list[tuple[float, Callable[[], object]]]:
        """(period in seconds, task) the daemon runs besides the clock."""
        return []

    def start(self) -> None:
        """Background work that runs while the daemon serves."""

    def stop(self) -> None:
        pass

    def stats(self) -> dict:
        """Everything worth recording about the pipeline, as one dict."""
        return {"counters": self.counters(), "clock_s": self.now_s()}
