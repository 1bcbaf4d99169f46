"""switchd: the switch host's one daemon, for either pipeline.

It loads a pipeline (Miresga's or the l4switch's, switchhost/pipelines/) on
every switch port, programs its tables from a plan, serves the control
protocol (switchhost/server.py) on the control addresses, and keeps time:

    every second          advance the clock entries are stamped with
    the pipeline's tasks  Miresga: rotate the cookie secret and the seen filter,
                          age flow entries; l4switch: age connection entries
    every stats interval  write stats (JSON) for the bench to collect
    while it serves       the pipeline's background work (l4switch: health checks)
    as peers come and go  tell the pipeline of each front-end's authenticated
                          connection (Miresga: a front-end is selected while
                          its is up)

On a real testbed it runs on the switch's host over SSH; on the emulated one
inside the switch namespace.  Standard library only.

    python -m switchhost --pipeline miresga --plan plan.json --key ctl.key
        [--frontend-key frontend1=fe1.key ...]
        [--listen 10.10.2.1:7470 --listen 127.0.0.1:7470] [--rate 20000]
        [--batch-latency-ms 1] [--stats-file stats.json] [--pin-dir DIR]
    python -m switchhost --pipeline miresga --read-pins PIN_DIR   # counters, occupancy (JSON)
    python -m switchhost --pipeline l4switch --cleanup PIN_DIR [--netns NS] [--ports a,b]

It listens only where it is told (default 127.0.0.1:7470, for tools on the
switch host), never on every address: the switch's address on each
front-end's link is the front-ends' way in.  Every peer must prove a key:
the daemon's own (`--key`, a file readable by root only: the switch host's
tools) or a front-end's (`--frontend-key NAME=PATH`, one per front-end of
the plan, the same key its front-end holds), which names the front-end
whose liveness the connection carries (server.py).  `--rate`, `--burst`,
`--batch-latency-ms` and `--max-wait-ms` are the install budget
(switchhost/budget.py), which emulates a hardware switch's table updates.

The plan of a running emulated testbed comes from the bench:
`python -m bench testbed plan miresga|l4switch [--service svc.toml] > plan.json`.

SIGTERM or SIGINT detach the pipeline, unpin its maps and exit 0.  When
ready it prints one line, `switchd ready {...}`, with the pin directory, the
control addresses and the ports it attached to.  `--cleanup` removes what a
killed daemon left (its tc filters, by handle, and its pins); it is
idempotent.

From Python (tests), the same daemon runs in a thread:

    with SwitchDaemon(MiresgaSwitch(plan), key=key, listen=[("127.0.0.1", 0)]) as d:
        ControlClient("127.0.0.1", d.port, key=key).batch([...])
        d.call(d.pipeline.rotate_cookie_secret)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from common.netns import _setns, netns, netns_path
from switchhost.budget import MAX_WAIT_S_DEFAULT, InstallBudget
from switchhost.layouts import CTL_PORT_DEFAULT
from switchhost.pipeline import Pipeline
from switchhost.pipelines.l4switch import L4Switch
from switchhost.pipelines.miresga import MiresgaSwitch, frontend_id
from switchhost.protocol import read_key
from switchhost.server import ControlServer

log = logging.getLogger("switchhost.daemon")

PIPELINES: dict[str, type[Pipeline]] = {p.name: p for p in (MiresgaSwitch, L4Switch)}
READY_LINE = "switchd ready "
LISTEN_DEFAULT = ("127.0.0.1", CTL_PORT_DEFAULT)


class SwitchDaemon:
    def __init__(self, pipeline: Pipeline, *, key: bytes,
                 frontend_keys: dict[str, bytes] | None = None,
                 listen: list[tuple[str, int]] | None = None,
                 budget: InstallBudget | None = None,
                 stats_file: str | None = None, stats_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, run_clock: bool = True):
        self.pipeline = pipeline
        self.key = key
        self.frontend_keys = dict(frontend_keys or {})
        self.listen = list(listen or [LISTEN_DEFAULT])
        self.budget = budget or InstallBudget()
        self.stats_file = stats_file
        self.stats_interval_s = stats_interval_s
        self.clock = clock
        self.run_clock = run_clock
        self.server: ControlServer | None = None
        self.ports: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._started = clock()

    @property
    def port(self) -> int:
        """The port of the first control address (tests listen on port 0)."""
        return self.ports[0]

    # ---------------------------------------------------------- life cycle

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: list[asyncio.Task] = []
        p = self.pipeline
        started = False
        try:
            p.load()
            self.server = ControlServer(self.key, p, self.budget, self.commands(),
                                        frontend_keys=self.frontend_keys)
            # The listening sockets belong in the switch's namespace, where the
            # front-ends reach them, whichever namespace we run in.
            with netns(p.plan.netns):
                socks = [socket.create_server(addr) for addr in self.listen]
            self.ports = [s.getsockname()[1] for s in socks]
            await self.server.listen(socks)
            p.start()
            started = True
            periodic = list(p.periodic())
            if self.run_clock:
                periodic.append((1.0, self._tick))
            if self.stats_file:
                periodic.append((self.stats_interval_s, self.write_stats))
                self.write_stats()
            tasks = [asyncio.create_task(self._every(period, fn)) for period, fn in periodic
                     if period > 0]
            self._ready.set()
            await self._stop.wait()
        except BaseException as e:
            self._error = e
            self._ready.set()
            raise
        finally:
            for t in tasks:
                t.cancel()
            if self.server is not None:
                await self.server.stop()
            if started:
                p.stop()
            if self.stats_file and started:
                try:
                    self.write_stats()
                except OSError:
                    pass
            p.close()

    async def _every(self, period: float, fn) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                # Off the loop: a sweep of a big table must not stall the protocol.
                await asyncio.to_thread(fn)
            except Exception:  # one failed sweep must not end the daemon
                log.exception("switchd: periodic %s failed", getattr(fn, "__name__", fn))

    def _tick(self) -> None:
        # An absolute clock, not +1 per call, so a stalled loop does not
        # make time run slow for aging.
        now = 1 + int(self.clock() - self._started)
        cur = self.pipeline.now_s()
        if now != cur:
            self.pipeline.tick((now - cur) & 0xFFFFFFFF)

    def start(self, timeout: float = 30.0) -> "SwitchDaemon":
        """Run in a background thread; return once the protocol is served."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._quiet_main()),
                                        name="switchd", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("switchd did not become ready")
        if self._error is not None:
            self._thread.join(5)
            raise self._error
        return self

    async def _quiet_main(self) -> None:
        try:
            await self._main()
        except BaseException:
            pass  # re-raised by start() from self._error

    def request_stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop is already gone

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def __enter__(self) -> "SwitchDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, fn, *args, timeout: float = 30.0):
        """Run fn(*args) on the daemon's loop thread and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    # ------------------------------------------------------------ commands

    def commands(self) -> dict[str, Callable[[dict], dict]]:
        own = {"ping": lambda req: {"pid": os.getpid(), "pipeline": self.pipeline.name,
                                    "pin_dir": self.pipeline.pin_dir,
                                    "ports": self.pipeline.sw.ports},
               "stats": lambda req: self.stats()}
        return {**own, **self.pipeline.commands()}

    # --------------------------------------------------------------- stats

    def stats(self) -> dict:
        """Everything worth recording about the switch host, as one dict."""
        return {
            "time": time.time(),
            "uptime_s": self.clock() - self._started,
            "pipeline": self.pipeline.name,
            "pin_dir": self.pipeline.pin_dir,
            "listen": [[host, port] for (host, _), port in zip(self.listen, self.ports)],
            "channel": self.server.snapshot() if self.server else {},
            "budget": self.budget.snapshot(),
            **self.pipeline.stats(),
        }

    def write_stats(self) -> None:
        path = Path(self.stats_file)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.stats(), indent=1))
        tmp.replace(path)  # readers never see half a file


# ------------------------------------------------------------------- CLI

def hostport(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{s!r}: expected HOST:PORT")
    return host, int(port)


def name_path(s: str) -> tuple[str, str]:
    name, sep, path = s.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{s!r}: expected NAME=PATH")
    return name, path


def frontend_keys(plan, given: list[tuple[str, str]],
                  daemon_key: bytes | None = None) -> dict[str, bytes]:
    """--frontend-key NAME=PATH, read; ValueError for a name that is no front-end of
    the plan, one given twice, a key file read_key refuses, or a key that is
    another front-end's or the daemon's (it would not say who proved it)."""
    known = [frontend_id(f) for f in getattr(plan, "frontends", [])]
    out: dict[str, bytes] = {}
    for name, path in given:
        if name not in known:
            raise ValueError(f"--frontend-key {name}: not a front-end of the plan "
                             f"({', '.join(known) or 'none'})")
        if name in out:
            raise ValueError(f"--frontend-key {name}: given twice")
        key = read_key(path)
        if key in out.values() or key == daemon_key:
            raise ValueError(f"--frontend-key {name}: every front-end needs a key of its "
                             f"own, and none the daemon's (--key)")
        out[name] = key
    return out


def _enter_netns(ns: str | None) -> None:
    if ns:
        # The whole process moves, so every thread it starts is there too.
        fd = os.open(netns_path(ns), os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m switchhost",
                                 description="The switch host's daemon: load a pipeline on "
                                             "every switch port, serve the control protocol.")
    ap.add_argument("--pipeline", required=True, choices=sorted(PIPELINES))
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--plan", help="the pipeline's plan (JSON; for a running emulated "
                                     "testbed: python -m bench testbed plan PIPELINE)")
    mode.add_argument("--read-pins", metavar="PIN_DIR",
                      help="print the counters and table occupancy of a running daemon "
                           "(JSON, from its pins) and exit")
    mode.add_argument("--cleanup", metavar="PIN_DIR",
                      help="remove what a killed daemon left (tc filters, pins) and exit")
    ap.add_argument("--print-plan", action="store_true",
                    help="print the plan (JSON) and exit: copy it to a real switch host")
    ap.add_argument("--key", help="the daemon's control key (hex, mode 0600): the switch "
                                  "host's tools prove it")
    ap.add_argument("--frontend-key", type=name_path, action="append", default=[],
                    metavar="NAME=PATH",
                    help="front-end NAME's own control key (repeatable): its connection "
                         "proves it, which is how the daemon knows the front-end is alive")
    ap.add_argument("--listen", type=hostport, action="append", metavar="HOST:PORT",
                    help=f"a control address (repeatable; default "
                         f"{LISTEN_DEFAULT[0]}:{LISTEN_DEFAULT[1]})")
    ap.add_argument("--rate", type=float,
                    help="install at most this many flow entries per second (emulates a "
                         "hardware switch's table updates; default: unlimited)")
    ap.add_argument("--burst", type=float, help="token bucket depth (default: rate / 20)")
    ap.add_argument("--batch-latency-ms", type=float, default=0.0, metavar="MS",
                    help="a fixed delay per batch: the driver's round trip (default 0)")
    ap.add_argument("--max-wait-ms", type=float, default=MAX_WAIT_S_DEFAULT * 1000, metavar="MS",
                    help="refuse an ADD that would wait longer than this for the budget "
                         f"(default {MAX_WAIT_S_DEFAULT * 1000:g})")
    ap.add_argument("--netns", help="run in this network namespace (default: the plan's, "
                                    "else the current one); with --cleanup, the switch's")
    ap.add_argument("--ports", help="--cleanup: comma-separated switch ports (default: all)")
    ap.add_argument("--stats-file", help="write stats here (JSON, atomically)")
    ap.add_argument("--stats-interval", type=float, default=1.0, metavar="S")
    ap.add_argument("--pin-dir", help="pin maps here (default /sys/fs/bpf/<pipeline prefix>"
                                      "<random>)")
    ap.add_argument("--obj", help="pipeline object (default build/bpf/<pipeline's>.bpf.o)")
    ap.add_argument("--log-level", default="INFO")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s switchd %(levelname)s %(message)s")
    kind = PIPELINES[args.pipeline]
    if args.read_pins:
        try:
            state = kind.read_pins(args.read_pins)
        except OSError as e:
            print(f"switchd: {args.read_pins}: {e}", file=sys.stderr)
            return 1
        print(json.dumps(state))
        return 0
    if args.cleanup:
        kind.cleanup(args.cleanup, args.netns, args.ports.split(",") if args.ports else None)
        return 0
    try:
        plan = kind.plan_type.from_file(args.plan)
    except ValueError as e:
        print(f"switchd: {e}", file=sys.stderr)
        return 2
    if args.print_plan:
        print(plan.to_json())
        return 0
    if not args.key:
        print("switchd: --key is required: every peer of the control protocol proves it",
              file=sys.stderr)
        return 2
    try:
        key = read_key(args.key)
        fe_keys = frontend_keys(plan, args.frontend_key, key)
        budget = InstallBudget(rate=args.rate, burst=args.burst,
                               batch_latency_s=args.batch_latency_ms / 1000,
                               max_wait_s=args.max_wait_ms / 1000)
    except ValueError as e:
        print(f"switchd: {e}", file=sys.stderr)
        return 2
    _enter_netns(args.netns or plan.netns)

    daemon = SwitchDaemon(kind(plan, obj_path=args.obj, pin_dir=args.pin_dir), key=key,
                          frontend_keys=fe_keys, listen=args.listen, budget=budget,
                          stats_file=args.stats_file, stats_interval_s=args.stats_interval)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        main_task = asyncio.create_task(daemon._main())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: daemon._stop and daemon._stop.set())
        while not daemon._ready.is_set() and not main_task.done():
            await asyncio.sleep(0.02)
        if daemon._error is None and not main_task.done():
            print(READY_LINE + json.dumps({
                "pipeline": args.pipeline, "pin_dir": daemon.pipeline.pin_dir,
                "listen": [[h, p] for (h, _), p in zip(daemon.listen, daemon.ports)],
                "ports": daemon.pipeline.sw.ports}), flush=True)
        await main_task

    try:
        asyncio.run(run())
    except Exception as e:
        print(f"switchd: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0
