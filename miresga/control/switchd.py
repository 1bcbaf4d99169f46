"""switchd: the Miresga switch's control plane as a long-lived process.

It loads the pipeline on every switch port, programs its tables from a plan,
serves the offload channel, and keeps time for the data plane:

    every second            advance the clock flow entries are stamped with
    every cookie epoch      rotate the cookie secret (cookies live 1-2 epochs)
    every filter period     rotate the seen filter (connections are remembered
                            1-2 periods after their last client packet)
    every aging interval    delete flow entries idle for the idle timeout
    every stats interval    write stats (JSON) for the bench to collect

and watches the front-ends: one whose offload channel closes (its process
exited) or goes silent (its host) leaves the selection; the operator drains
one or puts it back through the management socket (fe_liveness.py):

    python -m miresga.control.switchd --manage SOCKET frontends
    python -m miresga.control.switchd --manage SOCKET drain frontend2
    python -m miresga.control.switchd --manage SOCKET resume frontend2

On a real testbed it runs on the switch's host over SSH; on the emulated one
inside the switch namespace.  It uses the standard library only.

    python -m miresga.control.switchd --plan plan.json [--listen 0.0.0.0:7470]
        [--rate 20000] [--idle-timeout 60] [--stats-file stats.json] [--pin-dir DIR]
        [--manage-socket SOCKET]
    python -m miresga.control.switchd --read-pins PIN_DIR     # counters, occupancy (JSON)

The plan of a running emulated testbed comes from the bench:
`python -m bench testbed plan miresga [--service svc.toml] > plan.json`.

SIGTERM or SIGINT detach the pipeline, unpin its maps and exit 0.  When
ready it prints one line, `switchd ready {...}`, with the pin directory and
the channel's address.

From Python (tests), the same daemon runs in a thread:

    with SwitchDaemon(plan, listen=("127.0.0.1", 0)) as d:
        ChannelClient("127.0.0.1", d.port).batch([...])
        d.call(d.switch.rotate_cookie_secret)
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

from common.netns import _setns, netns, netns_path
from miresga.control.fe_liveness import FrontendLiveness
from miresga.control.layouts import CTL_PORT_DEFAULT
from miresga.control.miresga_switch import MiresgaSwitch, SwitchPlan, read_pinned_state
from miresga.control.offload_channel import ChannelServer

log = logging.getLogger("miresga.switchd")


class SwitchDaemon:
    def __init__(self, plan: SwitchPlan, *, listen: tuple[str, int] = ("0.0.0.0", CTL_PORT_DEFAULT),
                 rate: float | None = None, burst: float | None = None,
                 idle_timeout_s: float = 60.0, aging_interval_s: float | None = None,
                 cookie_epoch_s: float = 60.0, filter_period_s: float = 120.0,
                 stats_file: str | None = None, stats_interval_s: float = 1.0,
                 pin_dir: str | None = None, obj_path: str | None = None,
                 attach: bool = True, run_clock: bool = True,
                 manage_socket: str | None = None):
        self.plan = plan
        self.listen = listen
        self.rate, self.burst = rate, burst
        self.idle_timeout_s = idle_timeout_s
        self.aging_interval_s = aging_interval_s or max(1.0, idle_timeout_s / 4)
        self.cookie_epoch_s = cookie_epoch_s
        self.filter_period_s = filter_period_s
        self.stats_file = stats_file
        self.stats_interval_s = stats_interval_s
        self.run_clock = run_clock
        self.switch = MiresgaSwitch(plan, obj_path=obj_path, pin_dir=pin_dir, attach=attach)
        self.liveness = FrontendLiveness(self.switch)
        self.manage_socket = manage_socket
        self.server: ChannelServer | None = None
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._last = None  # (monotonic, table stats snapshot) for rates
        self._rates = {"adds_per_s": 0.0, "deletes_per_s": 0.0, "refusals_per_s": 0.0}

    # ---------------------------------------------------------- life cycle

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: list[asyncio.Task] = []
        manage = None
        try:
            self.switch.load()
            self.server = ChannelServer(self.switch.flows, *self.listen, rate=self.rate,
                                        burst=self.burst)
            self.server.on_peer = self.liveness.peer
            # The listening socket belongs in the switch's namespace, where
            # the front-ends can reach it, whichever namespace we run in.
            with netns(self.plan.netns):
                sock = socket.create_server(self.listen, reuse_port=False)
            await self._start_server(sock)
            if self.manage_socket:
                manage = await asyncio.start_unix_server(self._manage, path=self.manage_socket)
            self._last = (time.monotonic(), self._table_snapshot())
            periodic = [(self.cookie_epoch_s, self.switch.rotate_cookie_secret),
                        (self.filter_period_s, self.switch.rotate_filter),
                        (self.aging_interval_s, lambda: self.switch.flows.age(
                            int(self.idle_timeout_s)))]
            if self.run_clock:
                periodic.append((1.0, self._tick))
            if self.stats_file:
                periodic.append((self.stats_interval_s, self.write_stats))
            tasks = [asyncio.create_task(self._every(p, fn)) for p, fn in periodic if p > 0]
            if self.stats_file:
                self.write_stats()
            self._ready.set()
            await self._stop.wait()
        except BaseException as e:
            self._error = e
            self._ready.set()
            raise
        finally:
            for t in tasks:
                t.cancel()
            if manage is not None:
                manage.close()
                Path(self.manage_socket).unlink(missing_ok=True)
            if self.server is not None:
                await self.server.stop()
            if self.stats_file and self.switch.flows is not None:
                try:
                    self.write_stats()
                except OSError:
                    pass
            self.switch.close()

    def manage(self, words: list[str]) -> dict:
        """One management command: `frontends`, `drain NAME`, `resume NAME`."""
        if words == ["frontends"]:
            return self.liveness.snapshot()
        if len(words) == 2 and words[0] in ("drain", "resume"):
            self.liveness.set_admin(words[1], "drain" if words[0] == "drain" else "in")
            return self.liveness.snapshot()
        raise ValueError(f"unknown command {' '.join(words)!r}: frontends, drain NAME, "
                         f"resume NAME")

    async def _manage(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One JSON line in ({"command": [...]}), one out ({"ok": ..., ...}).
        try:
            line = await reader.readline()
            try:
                out = {"ok": True, **self.manage(list(json.loads(line)["command"]))}
            except (ValueError, KeyError, TypeError) as e:
                out = {"ok": False, "error": str(e)}
            writer.write(json.dumps(out).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    async def _start_server(self, sock: socket.socket) -> None:
        srv = self.server
        srv._server = await asyncio.start_server(srv._serve, sock=sock)
        srv.port = sock.getsockname()[1]
        self.port = srv.port

    async def _every(self, period: float, fn) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                fn()
            except Exception:  # one failed sweep must not end the daemon
                log.exception("switchd: periodic %s failed", getattr(fn, "__name__", fn))

    def _tick(self) -> None:
        # An absolute clock, not +1 per call, so a stalled loop does not
        # make time run slow for aging.
        now = 1 + int(time.monotonic() - self._started)
        cfg_now = self.switch.now_s()
        if now != cfg_now:
            self.switch.tick((now - cfg_now) & 0xFFFFFFFF)

    def start(self, timeout: float = 30.0) -> "SwitchDaemon":
        """Run in a background thread; return once the channel is listening."""
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

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop is already gone
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

    # --------------------------------------------------------------- stats

    def _table_snapshot(self) -> dict:
        return dict(vars(self.switch.flows.stats))

    def stats(self) -> dict:
        """Everything worth recording about the switch, as one dict."""
        now = time.monotonic()
        snap = self._table_snapshot()
        if self._last is not None:
            t0, prev = self._last
            dt = now - t0
            if dt >= 0.5:
                refused = lambda s: s["refused_full"] + s["refused_invalid"]  # noqa: E731
                self._rates = {
                    "adds_per_s": (snap["adds"] - prev["adds"]) / dt,
                    "deletes_per_s": (snap["deletes"] + snap["aged"] - prev["deletes"]
                                      - prev["aged"]) / dt,
                    "refusals_per_s": (refused(snap) - refused(prev)) / dt,
                }
                self._last = (now, snap)
        cfg = self.switch.config()
        return {
            "time": time.time(),
            "uptime_s": now - self._started,
            "pin_dir": self.switch.pin_dir,
            "listen": [self.listen[0], self.port],
            "flow_table": {"capacity": self.plan.flow_capacity,
                           "occupancy": self.switch.flows.occupancy(), **snap},
            "rates": dict(self._rates),
            "channel": self.server.snapshot() if self.server else {},
            "counters": self.switch.counters(),
            "cookie_epoch": cfg.epoch,
            "frontends": self.liveness.snapshot(),
            "filter_gen": cfg.filter_gen,
            "clock_s": cfg.now_s,
        }

    def write_stats(self) -> None:
        path = Path(self.stats_file)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.stats(), indent=1))
        tmp.replace(path)  # readers never see half a file


# ------------------------------------------------------------------- CLI

def manage_command(path: str, words: list[str], timeout: float = 10.0) -> dict:
    """Send one command to a running switchd's management socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"command": words}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            b = s.recv(65536)
            if not b:
                break
            buf += b
    return json.loads(buf)


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m miresga.control.switchd",
                                 description="Miresga switch control plane: load the pipeline, "
                                             "serve the offload channel.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--plan", help="switch plan (JSON, SwitchPlan.to_json; for a running "
                                    "emulated testbed: python -m bench testbed plan miresga)")
    src.add_argument("--manage", metavar="SOCKET",
                     help="send a command to a running switchd's management socket and print "
                          "its answer (JSON): frontends | drain NAME | resume NAME")
    src.add_argument("--read-pins", metavar="PIN_DIR",
                     help="print the counters and flow-table occupancy of a running switchd "
                          "(JSON, from its pins) and exit")
    ap.add_argument("--print-plan", action="store_true",
                    help="print the plan (JSON) and exit: copy it to a real switch host")
    ap.add_argument("--netns", help="run in this network namespace (default: the plan's, "
                                    "else the current one)")
    ap.add_argument("--listen", type=_hostport, default=("0.0.0.0", CTL_PORT_DEFAULT),
                    metavar="HOST:PORT", help=f"offload channel (default 0.0.0.0:{CTL_PORT_DEFAULT})")
    ap.add_argument("--rate", type=float, help="install at most this many entries per second "
                                               "(emulates a hardware switch's control plane)")
    ap.add_argument("--burst", type=float, help="token bucket depth (default: rate / 20)")
    ap.add_argument("--capacity", type=int, help="flow table capacity (overrides the plan)")
    ap.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                    help="age out flow entries idle this long (default 60)")
    ap.add_argument("--cookie-epoch", type=float, default=60.0, metavar="S",
                    help="cookie secret rotation period (default 60)")
    ap.add_argument("--filter-period", type=float, default=120.0, metavar="S",
                    help="seen-filter rotation period; keep it above the front-end's idle "
                         "timeout (default 120)")
    ap.add_argument("--stats-file", help="write stats here (JSON, atomically)")
    ap.add_argument("--stats-interval", type=float, default=1.0, metavar="S")
    ap.add_argument("--pin-dir", help="pin maps here (default /sys/fs/bpf/sw<random>)")
    ap.add_argument("--obj", help="pipeline object (default build/bpf/switch.bpf.o)")
    ap.add_argument("--manage-socket", metavar="SOCKET",
                    help="listen for management commands on this unix socket")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("command", nargs="*", help="with --manage: the command")
    args = ap.parse_args(argv)
    if args.command and not args.manage:
        ap.error("a command needs --manage SOCKET")

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s switchd %(levelname)s %(message)s")
    if args.manage:
        try:
            out = manage_command(args.manage, args.command or ["frontends"])
        except OSError as e:
            print(f"switchd: {args.manage}: {e}", file=sys.stderr)
            return 1
        print(json.dumps(out))
        return 0 if out.get("ok") else 2
    if args.read_pins:
        try:
            state = read_pinned_state(args.read_pins)
        except OSError as e:
            print(f"switchd: {args.read_pins}: {e}", file=sys.stderr)
            return 1
        print(json.dumps(state))
        return 0
    try:
        plan_dict = json.loads(Path(args.plan).read_text())
        if args.capacity:
            plan_dict["flow_capacity"] = args.capacity
        plan = SwitchPlan.from_dict(plan_dict)
    except (OSError, ValueError) as e:
        print(f"switchd: {args.plan}: {e}", file=sys.stderr)
        return 2
    if args.print_plan:
        print(plan.to_json())
        return 0
    ns = args.netns or plan.netns
    if ns:
        # The whole process moves, so every thread it starts is there too.
        fd = os.open(netns_path(ns), os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    daemon = SwitchDaemon(plan, listen=args.listen, rate=args.rate, burst=args.burst,
                          idle_timeout_s=args.idle_timeout, cookie_epoch_s=args.cookie_epoch,
                          filter_period_s=args.filter_period, stats_file=args.stats_file,
                          stats_interval_s=args.stats_interval, pin_dir=args.pin_dir,
                          obj_path=args.obj, manage_socket=args.manage_socket)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        main_task = asyncio.create_task(daemon._main())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: daemon._stop and daemon._stop.set())
        while not daemon._ready.is_set() and not main_task.done():
            await asyncio.sleep(0.02)
        if daemon._error is None and not main_task.done():
            print("switchd ready " + json.dumps({"pin_dir": daemon.switch.pin_dir,
                                                 "listen": [args.listen[0], daemon.port],
                                                 "ports": daemon.switch.sw.ports}), flush=True)
        await main_task

    try:
        asyncio.run(run())
    except Exception as e:
        print(f"switchd: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
