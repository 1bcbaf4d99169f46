"""The l4switch's control plane: load the program on the switch, program its tables.

`L4Plan` is everything the switch must know, as data (the VIPs, every
back-end it may send to, each VIP's pool, the table sizes and timeouts); it
is built from a Service and a testbed (`L4Plan.from_testbed`) and goes to the
switch host as JSON.  `L4Switch` is the pipeline (switchhost/pipeline.py)
that loads build/bpf/l4switch.bpf.o and programs its maps through libbpf:
the VIP and back-end tables once, the Maglev table in one batch per pool
change, the clock once a second.  `HealthChecker` takes a back-end whose web
server stops answering out of the pool, and puts it back when it answers
again.  The switch host's daemon runs it (`python -m switchhost --pipeline
l4switch`): the management ops `pool`, `set-pool` and `conns` reach it
through the daemon's control protocol.

Pools.  A VIP's *configured* pool is what `set_pool()` was last given (the
plan's at first).  Its *effective* pool, the one the Maglev table is built
from, is the configured back-ends that pass their health checks; if none
does, the configured pool itself (failing open: a check that is wrong about
every back-end must not take the service down).  A change of either
recomputes the table and swaps it in: the new table is written into the
Maglev generation not in use, in one batch, then one config update flips the
generation.  Connection-table entries are never touched by a pool change, so
an established connection stays on its back-end, even one that left the pool.

Time.  Entries are stamped with `config.now_s`, a coarse clock the control
plane advances (`tick()`, once a second under the daemon); `age()` compares
against the same clock.  The data plane removes a connection's entries
itself at its last ACK (after FIN both ways); `age()` removes entries idle
for `idle_timeout_s`, and closing ones (RST, or FIN both ways whose last ACK
was lost) after `closing_timeout_s`; the LRU table also evicts the least
recently used entry when a new connection finds it full.  A connection whose entry is gone is balanced again by Maglev on its
next packet, which gives it the same back-end unless the pool has changed.

Standard library only (ctypes libbpf): it runs on a switch host with a bare
python3, in the daemon, and in-process in the tests.
"""

from __future__ import annotations

import ctypes
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

from common.netns import netns
from switchhost import bpf
from switchhost.addresses import ip_be, ip_str, port_be, port_host
from switchhost.ebpf_switch import MapSpec, PinnedMaps, read_counters
from switchhost.pipeline import SHARED_MAPS, Pipeline
from switchhost.pipelines import l4switch_layouts as L
from switchhost.pipelines.maglev import is_prime, maglev_table
from switchhost.plan import Endpoint, Plan, require, testbed_backends, testbed_ports, testbed_vips

log = logging.getLogger("l4switch")

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64

MAPS = SHARED_MAPS + [
    MapSpec("maglev_table", u32, u32),
    MapSpec("conn_table", L.ConnKey, L.Conn),
    MapSpec("config", u32, L.Config),
    MapSpec("counters", u32, u64),
]
# Forward entries a `conns` reply carries at most: one RESULT is at most 64 KiB.
CONNS_PAGE = 200


# -------------------------------------------------------------------- plan

@dataclass(frozen=True, kw_only=True)
class L4Plan(Plan):
    """Everything the l4switch is programmed with, as data."""

    # backends: names unique.  pools[i]: back-end names VIP i balances over
    # (default: every back-end).
    pools: list[list[str]] | None = None
    maglev_size: int = L.MAGLEV_SIZE_DEFAULT
    conn_capacity: int = L.CONN_CAPACITY_DEFAULT   # connections (two entries each)
    idle_timeout_s: int = 300
    closing_timeout_s: int = 4
    aging_interval_s: float = 1.0
    hash_seed: int | None = None      # None: random at load
    health_path: str = "/health"
    health_interval_ms: int = 500     # 0: no health checks
    health_timeout_ms: int = 1000
    health_fall: int = 2              # failed checks in a row that take a back-end out
    health_rise: int = 2              # passed checks in a row that bring it back

    def check(self) -> None:
        super().check()
        require(not self.frontends, "frontends", "the l4switch has no front-ends")
        names: set = set()
        for i, b in enumerate(self.backends):
            require(bool(b.name), f"backends[{i}].name", "missing")
            require(b.name not in names, f"backends[{i}].name", f"{b.name!r} listed twice")
            require(b.ip not in {v.ip for v in self.vips}, f"backends[{i}].ip",
                    f"{b.ip} is a VIP")
            names.add(b.name)
        if self.pools is not None:
            require(len(self.pools) == len(self.vips), "pools", "one pool per VIP")
            for i, pool in enumerate(self.pools):
                for name in pool:
                    require(name in names, f"pools[{i}]", f"no back-end named {name!r}")
                require(len(set(pool)) == len(pool), f"pools[{i}]", "a back-end listed twice")
        require(is_prime(self.maglev_size) and self.maglev_size >= 7, "maglev_size",
                f"{self.maglev_size} is not a prime >= 7")
        require(2 * len(self.vips) * self.maglev_size <= 1 << 26, "maglev_size",
                "table too big (2 generations x VIPs x size > 2^26 slots)")
        require(1 <= self.conn_capacity <= 1 << 23, "conn_capacity", "1 to 8388608")
        require(self.idle_timeout_s >= 1, "idle_timeout_s", "at least 1")
        require(self.closing_timeout_s >= 1, "closing_timeout_s", "at least 1")
        require(self.aging_interval_s > 0, "aging_interval_s", "must be positive")
        require(self.hash_seed is None or 0 <= self.hash_seed <= 0xFFFFFFFF, "hash_seed",
                "a 32-bit value")
        require(self.health_path.startswith("/"), "health_path", "must start with /")
        require(self.health_interval_ms >= 0, "health_interval_ms", "0 (off) or more")
        require(self.health_timeout_ms >= 1, "health_timeout_ms", "at least 1")
        require(self.health_fall >= 1 and self.health_rise >= 1, "health_fall/rise",
                "at least 1")

    def pool(self, vip_idx: int) -> list[str]:
        return list(self.pools[vip_idx]) if self.pools else [b.name for b in self.backends]

    @classmethod
    def from_testbed(cls, tb, service, **params) -> "L4Plan":
        """The plan for a service on a testbed (emulated or remote).

        Every back-end of every cluster is known to the switch, with its
        cluster's port; the VIP's pool is the service's default cluster, or
        every back-end if it has none.  An L4 switch cannot honour the
        service's path rules: it never sees a request.
        """
        backends = testbed_backends(tb, service, once=True)
        default = next((c for c in service.clusters if c.name == service.default_cluster), None)
        pool = list(default.backends) if default else [b.name for b in backends]
        params.setdefault("netns", tb.switch.netns)
        params.setdefault("ports", testbed_ports(tb))
        return cls(vips=testbed_vips(tb, service), backends=backends, pools=[pool], **params)


# ----------------------------------------------------------------- the switch

@dataclass
class PoolState:
    configured: list[str]
    effective: list[str] = field(default_factory=list)
    table: list[int] = field(default_factory=list)   # slot -> back-end index
    changes: int = 0                                 # tables swapped in


class L4Switch(Pipeline):
    """The l4switch program loaded on a switch and programmed from an L4Plan.

        with L4Switch(plan).load() as sw:
            sw.set_pool(["backend1", "backend3"])
            print(sw.counters(), sw.connections())
    """

    name = "l4switch"
    plan_type = L4Plan
    object_name = "l4switch.bpf.o"
    prog_name = "l4switch"
    maps = MAPS
    counter_names = L.Counter
    config_type = L.Config
    pin_prefix = "l4"
    tc_priority, tc_handle = 1, 0x4C34

    def __init__(self, plan: L4Plan, *args, **kwargs):
        super().__init__(plan, *args, **kwargs)
        self.index = {b.name: i for i, b in enumerate(plan.backends)}
        self.pools = [PoolState(plan.pool(v)) for v in range(len(plan.vips))]
        self.healthy: dict[str, bool] = {b.name: True for b in plan.backends}
        self.lock = self.config_lock
        self.health = HealthChecker(self)
        self.aged = 0

    def capacities(self) -> dict[str, int]:
        return {"maglev_table": 2 * len(self.plan.vips) * self.plan.maglev_size,
                "conn_table": 2 * self.plan.conn_capacity}

    # --------------------------------------------------------------- tables

    def init_config(self, cfg: L.Config) -> None:
        cfg.maglev_size = self.plan.maglev_size
        cfg.vip_capacity = len(self.plan.vips)
        cfg.maglev_gen = 0
        seed = self.plan.hash_seed
        cfg.hash_seed = secrets.randbits(32) if seed is None else seed

    def program_tables(self) -> None:
        """The shared tables, then every VIP's Maglev table."""
        super().program_tables()
        with self.lock:
            self._install(force=True)

    # ---------------------------------------------------------------- pools

    def set_pool(self, backends: list[str], vip: int = 0) -> list[str]:
        """Balance new connections of VIP `vip` over `backends` (names); returns the
        effective pool.  Established connections keep their back-end."""
        for name in backends:
            if name not in self.index:
                raise ValueError(f"set_pool: no back-end named {name!r} (known: "
                                 f"{', '.join(self.index)})")
        if len(set(backends)) != len(backends):
            raise ValueError(f"set_pool: a back-end listed twice: {backends}")
        if not 0 <= vip < len(self.pools):
            raise ValueError(f"set_pool: no VIP {vip}")
        with self.lock:
            self.pools[vip].configured = list(backends)
            self._install()
            return list(self.pools[vip].effective)

    def set_health(self, name: str, up: bool) -> None:
        """What the health checker found; the pools follow."""
        with self.lock:
            if self.healthy.get(name) == up:
                return
            self.healthy[name] = up
            log.warning("back-end %s is %s", name, "up" if up else "DOWN")
            self._install()

    def pool(self, vip: int = 0) -> list[str]:
        with self.lock:
            return list(self.pools[vip].effective)

    def _effective(self, configured: list[str]) -> list[str]:
        up = [n for n in configured if self.healthy.get(n, True)]
        return up or list(configured)   # fail open, see the module docstring

    def _install(self, force: bool = False) -> None:
        """Rebuild the tables whose effective pool changed; swap them in at once."""
        changed = False
        for st in self.pools:
            eff = self._effective(st.configured)
            if force or sorted(eff) != sorted(st.effective):
                st.effective = eff
                st.table = [self.index[eff[i]] for i in maglev_table(eff, self.plan.maglev_size)]
                st.changes += 1
                changed = True
        if not changed:
            return
        m = self.plan.maglev_size
        nv = len(self.pools)
        cfg = self.config()
        gen = (cfg.maglev_gen ^ 1) if not force else 0
        base = gen * nv * m
        keys, values = [], []
        for v, st in enumerate(self.pools):
            keys.extend(range(base + v * m, base + (v + 1) * m))
            values.extend(st.table if st.table else [L.BACKEND_NONE] * m)
        n = self.map("maglev_table").update_batch(keys, values)
        if n != len(keys):
            raise bpf.BpfError(5, f"maglev table: {n} of {len(keys)} slots written")

        def flip(cfg):
            cfg.maglev_gen = gen
        self.update_config(flip)

    def maglev_backend(self, client: str, client_port: int, vip: int = 0) -> str | None:
        """The back-end a new connection from (client, port) to VIP `vip` gets now."""
        with self.lock:
            st = self.pools[vip]
            if not st.table:
                return None
            v = self.plan.vips[vip]
            h = L.flow_hash(self.config().hash_seed, client, client_port, v.ip, v.port)
            return self.plan.backends[st.table[h % self.plan.maglev_size]].name

    # ----------------------------------------------------------- connections

    def _scan(self):
        """(key bytes, idx, flags, last_seen) of every entry, undecoded keys."""
        ksz = ctypes.sizeof(L.ConnKey)
        for kb, vb, _ in self.map("conn_table").lookup_batch_raw():
            for i, (idx, flags, seen) in enumerate(L.Conn.FORMAT.iter_unpack(vb)):
                yield kb[i * ksz:(i + 1) * ksz], idx, flags, seen

    _KEY = L.ConnKey.FORMAT    # client IP, peer IP, client port, peer port

    def _partner(self, key: bytes, idx: int, flags: int) -> bytes | None:
        """The key of the other entry of the same connection."""
        client_ip, _, client_port, _ = self._KEY.unpack(key)
        if flags & L.CONN_REVERSE:
            if idx >= len(self.plan.vips):
                return None
            v = self.plan.vips[idx]
            return self._KEY.pack(client_ip, ip_be(v.ip), client_port, port_be(v.port))
        if idx >= len(self.plan.backends):
            return None
        b = self.plan.backends[idx]
        return self._KEY.pack(client_ip, ip_be(b.ip), client_port, port_be(b.port))

    def age(self, idle_s: int | None = None, closing_s: int | None = None) -> int:
        """Delete entries idle for their timeout; returns how many went.

        The two entries of a connection age together: each direction's packets
        refresh only their own entry (a download refreshes the forward entry
        with ACKs and the reverse one with data, but a connection idle one way
        is not idle), so an entry counts as seen when its partner was.  A
        reverse entry whose forward entry now names another back-end (the
        client port was reused) has no partner and ages alone.  Each
        candidate is looked up again just before it is deleted, so an entry a
        packet touched during the sweep stays.
        """
        idle_s = self.plan.idle_timeout_s if idle_s is None else idle_s
        closing_s = self.plan.closing_timeout_s if closing_s is None else closing_s
        now = self.now_s()
        entries = {kb: (idx, flags, seen) for kb, idx, flags, seen in self._scan()}

        def pair_seen(kb: bytes, idx: int, flags: int, seen: int) -> int:
            pk = self._partner(kb, idx, flags)
            other = entries.get(pk) if pk is not None else None
            if other is None or self._partner(pk, other[0], other[1]) != kb:
                return seen
            # The later of the two, on a clock that wraps.
            return seen if (seen - other[2]) & 0xFFFFFFFF < 1 << 31 else other[2]

        def stale(flags: int, seen: int) -> bool:
            limit = closing_s if L.conn_closing(flags) else idle_s
            return (now - seen) & 0xFFFFFFFF >= limit

        candidates = [kb for kb, (idx, flags, seen) in entries.items()
                      if stale(flags, pair_seen(kb, idx, flags, seen))]
        m = self.map("conn_table")
        removed = 0
        for kb in candidates:
            k = L.ConnKey.from_buffer_copy(kb)
            v = m.lookup(k)
            if v is None:
                continue
            pk = self._partner(kb, v.idx, v.flags)
            pv = m.lookup(L.ConnKey.from_buffer_copy(pk)) if pk is not None else None
            seen = v.last_seen_s
            if pv is not None and self._partner(pk, pv.idx, pv.flags) == kb:
                seen = seen if (seen - pv.last_seen_s) & 0xFFFFFFFF < 1 << 31 else pv.last_seen_s
            if stale(v.flags, seen) and m.delete(k):
                removed += 1
        return removed

    def connections(self) -> dict:
        """Occupancy of the connection table, counted from the map."""
        out = {"connections": 0, "reverse_entries": 0, "closing": 0,
               "capacity": self.plan.conn_capacity}
        for _, _, flags, _ in self._scan():
            if flags & L.CONN_REVERSE:
                out["reverse_entries"] += 1
                continue
            out["connections"] += 1
            if L.conn_closing(flags):
                out["closing"] += 1
        return out

    def entries(self) -> list[dict]:
        """Every forward entry, decoded (tests, debugging)."""
        out = []
        vips = {(ip_be(v.ip), port_be(v.port)): i for i, v in enumerate(self.plan.vips)}
        for kb, idx, flags, seen in self._scan():
            if flags & L.CONN_REVERSE:
                continue
            k = L.ConnKey.from_buffer_copy(kb)
            b = self.plan.backends[idx] if idx < len(self.plan.backends) else None
            out.append({"client": ip_str(k.client_ip_be),
                        "client_port": port_host(k.client_port_be),
                        "vip": vips.get((k.peer_ip_be, k.peer_port_be)),
                        "backend": b.name if b else None, "flags": flags,
                        "closing": L.conn_closing(flags), "last_seen_s": seen})
        return out

    # ---------------------------------------------- what the daemon asks of it

    def _age_all(self) -> int:
        n = self.age()
        self.aged += n
        return n

    def periodic(self):
        return [(self.plan.aging_interval_s, self._age_all)]

    def start(self) -> None:
        self.health.start()

    def stop(self) -> None:
        self.health.stop()

    def commands(self):
        return {"pool": self._cmd_pool, "set-pool": self._cmd_set_pool, "conns": self._cmd_conns}

    def _cmd_pool(self, req: dict) -> dict:
        with self.lock:
            return {"pools": [{"configured": st.configured, "effective": st.effective}
                              for st in self.pools],
                    "backend_healthy": dict(self.healthy)}

    def _cmd_set_pool(self, req: dict) -> dict:
        backends = req.get("backends")
        require(isinstance(backends, list), "backends", "expected a list of back-end names")
        return {"effective": self.set_pool([str(b) for b in backends], int(req.get("vip", 0)))}

    def _cmd_conns(self, req: dict) -> dict:
        """A page of the forward entries: `next` is the offset of the next page."""
        offset = int(req.get("offset", 0))
        conns = self.entries()
        page = conns[offset:offset + CONNS_PAGE]
        more = offset + CONNS_PAGE < len(conns)
        return {"conns": page, "next": offset + CONNS_PAGE if more else None}

    def stats(self) -> dict:
        """Everything worth recording about the switch, as one dict."""
        with self.lock:
            pools = [{"vip": f"{v.ip}:{v.port}", "configured": list(st.configured),
                      "effective": list(st.effective), "table_swaps": st.changes}
                     for v, st in zip(self.plan.vips, self.pools)]
            healthy = dict(self.healthy)
        cfg = self.config()
        return {"counters": self.counters(), "conn_table": self.connections(),
                "pools": pools, "backend_healthy": healthy, "health": self.health.stats(),
                "aged": self.aged,
                "maglev": {"size": self.plan.maglev_size, "generation": cfg.maglev_gen},
                "clock_s": cfg.now_s, "pin_dir": self.pin_dir, "ports": self.sw.ports}

    @classmethod
    def read_pins(cls, pin_dir: str) -> dict:
        with PinnedMaps(pin_dir, [m for m in MAPS if m.name in ("counters", "conn_table")]) as maps:
            return {"counters": read_counters(maps["counters"], L.Counter),
                    "conn_entries": maps["conn_table"].count_batch()}


# ------------------------------------------------------------ health checks

def http_check(ip: str, port: int, path: str, timeout_s: float, ns: str | None = None) -> bool:
    """GET `path` from ip:port; True on a 200.  The socket is made in `ns`."""
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout_s)
        s.connect((ip, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {ip}\r\nUser-Agent: l4switch-health\r\n"
                  f"Connection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        parts = head.split(b"\r\n", 1)[0].split()
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1] == b"200"
    except OSError:
        return False
    finally:
        s.close()


class HealthChecker:
    """Active HTTP checks of every back-end the switch knows, one thread each.

    A back-end that fails `health_fall` checks in a row leaves every pool
    (new connections stop going to it); one that passes `health_rise` in a
    row comes back.  Checks run from the switch (its namespace on the
    emulated testbed): the switch reaches every back-end's address directly,
    and the program leaves that traffic alone (no connection entry).
    Established connections are not touched: an L4 switch cannot move a
    connection, so whatever was in flight on a dead back-end fails.
    """

    def __init__(self, switch: L4Switch, check=http_check):
        self.switch = switch
        self.plan = switch.plan
        self._check = check
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.checks: dict[str, int] = {b.name: 0 for b in self.plan.backends}
        self.failures: dict[str, int] = {b.name: 0 for b in self.plan.backends}

    def start(self) -> "HealthChecker":
        if self.plan.health_interval_ms <= 0:
            return self
        for b in self.plan.backends:
            t = threading.Thread(target=self._run, args=(b,), name=f"health-{b.name}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self, b: Endpoint) -> None:
        interval = self.plan.health_interval_ms / 1000
        timeout = self.plan.health_timeout_ms / 1000
        ok_run = fail_run = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            ok = self._check(b.ip, b.port, self.plan.health_path, timeout, self.plan.netns)
            self.checks[b.name] += 1
            if ok:
                ok_run, fail_run = ok_run + 1, 0
                if ok_run >= self.plan.health_rise:
                    self.switch.set_health(b.name, True)
            else:
                self.failures[b.name] += 1
                ok_run, fail_run = 0, fail_run + 1
                if fail_run >= self.plan.health_fall:
                    self.switch.set_health(b.name, False)
            self._stop.wait(max(0.0, interval - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._threads.clear()

    def stats(self) -> dict:
        return {"checks": dict(self.checks), "failures": dict(self.failures),
                "interval_ms": self.plan.health_interval_ms}
