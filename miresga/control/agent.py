"""Loader, stats and CLI of the Miresga back-end agent (miresga/agent/agent.bpf.c).

The agent runs on every back-end: a tc ingress and a tc egress program on the
interface that faces the switch, and five maps (connections, config, service
ports, counters, the aging sweeper's timer).  The maps' layouts, counters and
constants are miresga/control/agent_layouts_gen.py, generated from the BTF of
miresga/agent/agent.h (scripts/gen_layouts.py).

Attached state lives in the kernel, not in a process: tc holds the programs,
bpffs holds the maps under a pin directory, and a timer in a map (armed by the
programs themselves) ages entries out.  So `attach` is a one-shot command (on a real testbed it
runs on the back-end over SSH and exits), and `stats`/`detach` find everything
again from the pin directory:

    python -m miresga.control.agent attach --netns tb-backend1 --iface eth0 --wscale 7
    python -m miresga.control.agent stats  --netns tb-backend1 --iface eth0
    python -m miresga.control.agent detach --netns tb-backend1 --iface eth0

From Python:

    agent = Agent("eth0", netns="tb-backend1")
    agent.attach(AgentConfig(ports=(80,), wscale=7, max_conns=65536))
    agent.stats()["rewrite_out"]
    agent.detach()
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import errno
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import time

from common.netns import netns_path
from common.paths import BPF_ROOT, BUILD_DIR
from miresga.control import agent_layouts_gen
from miresga.control.agent_layouts_gen import (  # noqa: F401  (re-exported)
    FIN_IN,
    FIN_OUT,
    RST,
    TS,
    AgentConn,
)
from miresga.control.agent_layouts_gen import AGENT_COUNTER_MAX as COUNTER_MAX
# The Python names predate the generated ones (AgentConfig is the loader's
# settings below; the map's value is the raw struct).
from miresga.control.agent_layouts_gen import AgentConfig as AgentConfigRaw
from miresga.control.agent_layouts_gen import AgentCounter as Counter
from miresga.control.agent_layouts_gen import AgentState as ConnState
from switchhost import bpf
from switchhost.layouts import COOKIE_NO_WSCALE

OBJECT_DEFAULT = BUILD_DIR / "bpf" / "agent.bpf.o"
PIN_ROOT_DEFAULT = str(BPF_ROOT / "agent")

PROG_INGRESS = "agent_ingress"
PROG_EGRESS = "agent_egress"
MAP_CONNS = "mg_agent_conns"
MAP_CONFIG = "mg_agent_config"
MAP_PORTS = "mg_agent_ports"
MAP_STATS = "mg_agent_stats"
# The sweeper's timer lives in this one; pinned like the others, because a
# map holding a timer must stay referenced from user space (or bpffs).
MAP_SWEEP = "mg_agent_sweep"
MAPS = (MAP_CONNS, MAP_CONFIG, MAP_PORTS, MAP_STATS, MAP_SWEEP)

# Where on the clsact hooks the agent sits: an unusual (priority, handle) so it
# neither replaces nor is replaced by a tool that uses the default 1/1.
TC_PRIORITY = 0x4D47  # "MG"
TC_HANDLE = 0x4D47

CONNS_DEFAULT = 65536
MAX_PORTS = 64


# ------------------------------------------------------------ the layouts

class AgentKey(agent_layouts_gen.AgentKey):
    """struct mg_agent_key, with the conversions to and from an endpoint."""

    @classmethod
    def of(cls, client_ip: str, client_port: int, local_port: int) -> "AgentKey":
        return cls(struct.unpack("=I", socket.inet_aton(client_ip))[0],
                   socket.htons(client_port), socket.htons(local_port))

    def endpoint(self) -> tuple[str, int, int]:
        return (socket.inet_ntoa(struct.pack("=I", self.client_ip_be)),
                socket.ntohs(self.client_port_be), socket.ntohs(self.local_port_be))


def summarize(counters: dict[str, int]) -> dict[str, int]:
    """The headline numbers of the issue, folded from the raw counters."""
    return {
        "connections": counters["conn_new"] + counters["conn_reuse"],
        "rewrites": counters["rewrite_in"] + counters["rewrite_out"],
        "sack_rewrites": counters["sack_rewrite"],
        "window_fixes": counters["window_fix"] + counters["wscale_opt_fix"],
        "timestamp_rewrites": counters["ts_rewrite"],
        "cleanups": counters["cleanup_closed"] + counters["cleanup_idle"],
        "misses": counters["miss_in"] + counters["miss_out"],
    }


# ------------------------------------------------------------ the config

@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Every knob of the agent.  `wscale` must be the W the switch advertises."""

    ports: tuple[int, ...] = (80,)
    wscale: int = 7
    max_conns: int = CONNS_DEFAULT
    # Must exceed the back-end's HTTP keep-alive timeout (nginx: 75 s): an
    # entry aged out under a live connection breaks it.
    idle_timeout_s: float = 300.0
    close_grace_s: float = 10.0

    def validate(self) -> None:
        if not self.ports or len(self.ports) > MAX_PORTS:
            raise ValueError(f"between 1 and {MAX_PORTS} service ports, got {len(self.ports)}")
        for p in self.ports:
            if not 0 < p < 65536:
                raise ValueError(f"bad port {p}")
        if not 0 <= self.wscale <= 14:
            raise ValueError(f"window scale must be 0..14 (RFC 7323), got {self.wscale}")
        if self.max_conns < 1:
            raise ValueError("max_conns must be positive")
        if self.idle_timeout_s <= 0 or self.close_grace_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.close_grace_s > self.idle_timeout_s:
            raise ValueError("close grace longer than the idle timeout makes no sense")

    @property
    def sweep_s(self) -> float:
        """How often the aging sweeper walks the map: a quarter of the shorter
        deadline, between 10 ms and 1 s, so an entry outlives its deadline by
        at most a quarter (or one second)."""
        return min(1.0, max(0.01, min(self.close_grace_s, self.idle_timeout_s) / 4))

    def raw(self, generation: int = 1) -> AgentConfigRaw:
        return AgentConfigRaw(idle_timeout_ns=int(self.idle_timeout_s * 1e9),
                              close_grace_ns=int(self.close_grace_s * 1e9),
                              wscale=self.wscale, enabled=1,
                              sweep_ns=int(self.sweep_s * 1e9), generation=generation)


@dataclasses.dataclass
class Connection:
    """One entry of the connection map, decoded."""

    client_ip: str
    client_port: int
    local_port: int
    state: str
    switch_isn: int
    client_isn: int
    backend_isn: int
    delta: int
    flags: int
    client_wscale: int | None
    backend_wscale: int | None
    egress_shift: int
    ingress_shift: int
    ts_base: int
    ts_delta: int
    idle_s: float
    closing_for_s: float | None

    @classmethod
    def decode(cls, key: AgentKey, v: AgentConn, now_ns: int) -> "Connection":
        ip, cport, lport = key.endpoint()
        try:
            state = ConnState(v.state).name.lower()
        except ValueError:
            state = f"unknown({v.state})"
        return cls(
            client_ip=ip, client_port=cport, local_port=lport, state=state,
            switch_isn=v.switch_isn, client_isn=v.client_isn, backend_isn=v.backend_isn,
            delta=v.delta, flags=v.flags,
            client_wscale=None if v.client_wscale == COOKIE_NO_WSCALE else v.client_wscale,
            backend_wscale=None if v.backend_wscale == COOKIE_NO_WSCALE else v.backend_wscale,
            egress_shift=v.egress_shift, ingress_shift=v.ingress_shift,
            ts_base=v.ts_base, ts_delta=v.ts_delta,
            idle_s=max(0, now_ns - v.last_seen_ns) / 1e9,
            closing_for_s=max(0, now_ns - v.close_ns) / 1e9 if v.close_ns else None,
        )


def _monotonic_ns() -> int:
    # bpf_ktime_get_ns() is CLOCK_MONOTONIC.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# --------------------------------------------------------- loaded object

class LoadedAgent:
    """The agent's object loaded into the kernel, with typed maps; not attached.

    Tests run its programs through BPF_PROG_TEST_RUN; Agent.attach() uses it
    and hands the program fds to tc.  With `pin_dir`, maps already pinned
    there are reused (connection state survives a reload) and new ones are
    pinned there.
    """

    def __init__(self, config: AgentConfig, object_path: str | os.PathLike | None = None,
                 pin_dir: str | None = None):
        config.validate()
        path = str(object_path or OBJECT_DEFAULT)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: build it with `make build`")
        self.config = config
        self.obj = bpf.BpfObject(path)
        try:
            self.obj.set_max_entries(MAP_CONNS, config.max_conns)
            if pin_dir:
                for name in MAPS:
                    self.obj.set_pin_path(name, os.path.join(pin_dir, name))
            try:
                self.obj.load()
            except bpf.BpfError as e:
                if pin_dir and e.errno == errno.EINVAL and "reuse" in str(e).lower():
                    raise bpf.BpfError(errno.EINVAL, (
                        f"maps pinned in {pin_dir} do not match this object or config "
                        f"(max_conns={config.max_conns}?): detach first to change them\n"
                        f"{e}")) from e
                raise
            self.conns = self.obj.map(MAP_CONNS, AgentKey, AgentConn)
            self.config_map = self.obj.map(MAP_CONFIG, ctypes.c_uint32, AgentConfigRaw)
            self.ports = self.obj.map(MAP_PORTS, ctypes.c_uint16, ctypes.c_uint8)
            self.stats_map = self.obj.map(MAP_STATS, ctypes.c_uint32, ctypes.c_uint64)
            if self.conns.max_entries != config.max_conns:
                raise bpf.BpfError(errno.EINVAL, (
                    f"pinned connection map holds {self.conns.max_entries} entries, asked "
                    f"for {config.max_conns}: detach first to resize"))
            self.write_config(config)
            self.ingress_fd = self.obj.program_fd(PROG_INGRESS)
            self.egress_fd = self.obj.program_fd(PROG_EGRESS)
        except BaseException:
            self.obj.close()
            raise

    def write_config(self, config: AgentConfig) -> None:
        """Ports first, then the config that enables the programs."""
        config.validate()
        wanted = {socket.htons(p) for p in config.ports}
        for k in list(self.ports.keys()):
            if k.value not in wanted:
                self.ports.delete(k)
        for p in wanted:
            self.ports.update(ctypes.c_uint16(p), ctypes.c_uint8(1))
        # A new generation at every load: the freshly loaded program then
        # re-arms the (pinned, shared) sweeper timer with its own callback.
        old = self.config_map.lookup(ctypes.c_uint32(0))
        gen = (secrets.randbits(32) or 1)
        while old is not None and gen == old.generation:
            gen = secrets.randbits(32) or 1
        self.config_map.update(ctypes.c_uint32(0), config.raw(gen))
        self.config = config

    def counters(self) -> dict[str, int]:
        return read_counters(self.stats_map)

    def connections(self) -> list[Connection]:
        return read_connections(self.conns)

    def close(self) -> None:
        self.obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_counters(stats: bpf.Map) -> dict[str, int]:
    return {c.name.lower(): stats.sum_percpu(ctypes.c_uint32(c)) for c in Counter}


def read_connections(conns: bpf.Map) -> list[Connection]:
    now = _monotonic_ns()
    return [Connection.decode(k, v, now) for k, v in conns.items()]


# ---------------------------------------------------------- the attachment

class Agent:
    """The agent on one interface of one host (a namespace, or None for here)."""

    def __init__(self, iface: str, netns: str | None = None, pin_dir: str | None = None,
                 object_path: str | os.PathLike | None = None):
        self.iface = iface
        self.netns = netns
        self.pin_dir = pin_dir or default_pin_dir(netns, iface)
        self.object_path = object_path

    # -- attach / detach

    def attach(self, config: AgentConfig | None = None) -> None:
        """Load, configure and attach; on an attached interface, reload in place.

        Maps pinned by an earlier attach are reused, so live connections keep
        their offsets, and tc replaces the programs atomically
        (BPF_TC_F_REPLACE at the agent's priority and handle).
        """
        config = config or AgentConfig()
        config.validate()
        created = not os.path.isdir(self.pin_dir)
        os.makedirs(self.pin_dir, exist_ok=True)
        try:
            with LoadedAgent(config, self.object_path, self.pin_dir) as loaded:
                bpf.tc_attach(self.netns, self.iface, loaded.ingress_fd, bpf.TC_INGRESS,
                              priority=TC_PRIORITY, handle=TC_HANDLE)
                bpf.tc_attach(self.netns, self.iface, loaded.egress_fd, bpf.TC_EGRESS,
                              priority=TC_PRIORITY, handle=TC_HANDLE)
        except BaseException:
            if created:
                # A failed first attach leaves nothing behind either.
                self.detach()
            raise

    def detach(self) -> bool:
        """Remove both programs, the clsact qdisc if nothing else uses it, and
        every pin.  Returns whether anything was there; safe to repeat."""
        found = False
        for direction in (bpf.TC_INGRESS, bpf.TC_EGRESS):
            found |= bpf.tc_detach(self.netns, self.iface, direction,
                                   priority=TC_PRIORITY, handle=TC_HANDLE)
        _remove_clsact_if_empty(self.netns, self.iface)
        if os.path.isdir(self.pin_dir):
            found = True
            for name in os.listdir(self.pin_dir):
                os.unlink(os.path.join(self.pin_dir, name))
            os.rmdir(self.pin_dir)
            # The default root is the agent's own; leave it only if others use it.
            if os.path.dirname(self.pin_dir) == PIN_ROOT_DEFAULT:
                try:
                    os.rmdir(PIN_ROOT_DEFAULT)
                except OSError:
                    pass
        return found

    def attached(self) -> dict[str, int | None]:
        """Program ids on the two hooks (None where nothing is attached)."""
        return {
            "ingress": bpf.tc_attached_prog_id(self.netns, self.iface, bpf.TC_INGRESS,
                                               TC_PRIORITY, TC_HANDLE),
            "egress": bpf.tc_attached_prog_id(self.netns, self.iface, bpf.TC_EGRESS,
                                              TC_PRIORITY, TC_HANDLE),
        }

    # -- reading state

    def _pinned(self, name, key_type, value_type) -> bpf.Map:
        path = os.path.join(self.pin_dir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: agent not attached on {self.netns or 'host'}"
                                    f"/{self.iface}")
        return bpf.Map.from_pin(path, key_type, value_type)

    def counters(self) -> dict[str, int]:
        with self._pinned(MAP_STATS, ctypes.c_uint32, ctypes.c_uint64) as m:
            return read_counters(m)

    def stats(self) -> dict:
        """Raw counters, the summary of the issue and the live entry count."""
        counters = self.counters()
        with self._pinned(MAP_CONNS, AgentKey, AgentConn) as conns:
            live, capacity = len(conns), conns.max_entries
        with self._pinned(MAP_CONFIG, ctypes.c_uint32, AgentConfigRaw) as cfg_map:
            cfg = cfg_map.lookup(ctypes.c_uint32(0))
        return {
            **summarize(counters),
            "entries": live,
            "capacity": capacity,
            "wscale": cfg.wscale if cfg is not None else None,
            "counters": counters,
        }

    def connections(self) -> list[Connection]:
        with self._pinned(MAP_CONNS, AgentKey, AgentConn) as conns:
            return read_connections(conns)


def default_pin_dir(netns: str | None, iface: str) -> str:
    ns = os.path.basename(netns) if netns else "host"
    return f"{PIN_ROOT_DEFAULT}/{ns}-{iface}"


def _tc(netns: str | None, *args: str) -> subprocess.CompletedProcess:
    # nsenter --net, not `ip netns exec`: no private mount namespace needed.
    cmd = (["nsenter", f"--net={netns_path(netns)}", "--"] if netns else []) + ["tc", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def _remove_clsact_if_empty(netns: str | None, iface: str) -> None:
    """tc_attach created clsact if it was missing; drop it once it holds no
    filter of anyone's, so detach leaves the interface as it found it."""
    if netns and not os.path.exists(netns_path(netns)):
        return  # the namespace is gone, and its qdiscs with it
    qd = _tc(netns, "-j", "qdisc", "show", "dev", iface)
    if qd.returncode != 0 or '"clsact"' not in qd.stdout:
        return
    for direction in ("ingress", "egress"):
        f = _tc(netns, "-j", "filter", "show", "dev", iface, direction)
        if f.returncode != 0 or json.loads(f.stdout or "[]"):
            return
    _tc(netns, "qdisc", "del", "dev", iface, "clsact")


# ------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m miresga.control.agent",
                                description="Load, inspect and unload the Miresga back-end agent.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--iface", required=True, help="interface facing the switch, e.g. eth0")
        sp.add_argument("--netns", help="network namespace (omit on a real host)")
        sp.add_argument("--pin-dir", help=f"bpffs directory (default {PIN_ROOT_DEFAULT}/NS-IFACE)")

    a = sub.add_parser("attach", help="load and attach (reloads in place if attached)")
    common(a)
    a.add_argument("--object", default=str(OBJECT_DEFAULT), help="compiled agent.bpf.o")
    a.add_argument("--port", type=int, action="append", dest="ports",
                   help="service port (repeatable; default 80)")
    a.add_argument("--wscale", type=int, default=7, help="window scale W the switch advertises")
    a.add_argument("--max-conns", type=int, default=CONNS_DEFAULT, help="connection map size")
    a.add_argument("--idle-timeout", type=float, default=300.0, help="seconds")
    a.add_argument("--close-grace", type=float, default=10.0, help="seconds")

    d = sub.add_parser("detach", help="detach and unpin everything (idempotent)")
    common(d)
    s = sub.add_parser("stats", help="counters and entry count")
    common(s)
    s.add_argument("--json", action="store_true")
    c = sub.add_parser("conns", help="list connection entries")
    common(c)
    c.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    agent = Agent(args.iface, netns=args.netns, pin_dir=args.pin_dir,
                  object_path=getattr(args, "object", None))
    try:
        if args.cmd == "attach":
            cfg = AgentConfig(ports=tuple(args.ports or (80,)), wscale=args.wscale,
                              max_conns=args.max_conns, idle_timeout_s=args.idle_timeout,
                              close_grace_s=args.close_grace)
            agent.attach(cfg)
            ids = agent.attached()
            print(f"agent attached on {args.netns or 'host'}/{args.iface}: "
                  f"ingress prog {ids['ingress']}, egress prog {ids['egress']}, "
                  f"maps in {agent.pin_dir}")
        elif args.cmd == "detach":
            found = agent.detach()
            print("agent detached" if found else "agent was not attached")
        elif args.cmd == "stats":
            st = agent.stats()
            if args.json:
                json.dump(st, sys.stdout, indent=2)
                print()
            else:
                counters = st.pop("counters")
                for k, v in st.items():
                    print(f"{k:16} {v}")
                print()
                for k, v in counters.items():
                    print(f"{k:16} {v}")
        elif args.cmd == "conns":
            conns = agent.connections()
            if args.json:
                json.dump([dataclasses.asdict(c) for c in conns], sys.stdout, indent=2)
                print()
            else:
                for c in conns:
                    print(f"{c.client_ip}:{c.client_port} -> :{c.local_port} {c.state:11} "
                          f"s={c.switch_isn:#010x} b={c.backend_isn:#010x} d={c.delta:#010x} "
                          f"wscale c={c.client_wscale} b={c.backend_wscale} "
                          f"idle={c.idle_s:.1f}s")
    except (OSError, ValueError) as e:
        print(f"agent {args.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
