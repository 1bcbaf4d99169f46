"""l4switchd: the l4switch's control plane as a long-lived process on the switch host.

It loads the program on every switch port, programs its tables from a plan,
and keeps them current:

    every second              advance the clock connection entries are stamped with,
                              and remove entries past their idle/closing timeout
    every health interval     check each back-end's web server (HealthChecker):
                              a dead one leaves the pool, a recovered one returns
    on request (control       set a VIP's pool, report the pools, the connection
    socket)                   table, the counters

On a real testbed it runs on the switch's host over SSH; on the emulated one
inside the switch namespace.  The bench talks to it through the same program
run as a client on that host (`ctl`), so nothing but the host interface is
needed.  Standard library only.

    python -m targets.l4switch.l4switchd run --plan plan.json --ctl ctl.sock [--pin-dir DIR]
    python -m targets.l4switch.l4switchd ctl ctl.sock ping|stats|pool|conns
    python -m targets.l4switch.l4switchd ctl ctl.sock set-pool backend1 backend3 [--vip 0]
    python -m targets.l4switch.l4switchd cleanup --pin-dir DIR [--netns NS] [--ports a,b] [--ctl SOCK]

The plan of a running emulated testbed comes from the bench:
`python -m bench testbed plan l4switch [--service svc.toml] > plan.json`.

`run` prints `l4switchd ready {...}` once the program is attached and the
control socket listens.  SIGTERM or SIGINT detach the program, unpin its maps,
remove the socket and exit 0.  `cleanup` removes what a killed daemon left
(its tc filters, by handle, its pins and its socket); it is idempotent.

The control protocol is one JSON object per line on a Unix stream socket,
request {"op": ..., ...} -> reply {"ok": true, ...} or {"error": "..."}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

from common.netns import _setns, netns_path

log = logging.getLogger("l4switchd")


# ------------------------------------------------------------------ daemon

class Daemon:
    def __init__(self, plan, ctl_path: str, pin_dir: str | None = None,
                 obj_path: str | None = None, aging_interval_s: float = 1.0):
        # The driver (and libbpf) only where the program is loaded: `ctl`, which
        # the bench runs for every health check and stats read, needs neither.
        from switchhost.pipelines.l4switch import HealthChecker, L4Switch

        self.plan = plan
        self.ctl_path = ctl_path
        self.aging_interval_s = aging_interval_s
        self.switch = L4Switch(plan, obj_path=obj_path, pin_dir=pin_dir)
        self.health = HealthChecker(self.switch)
        self.server: socketserver.ThreadingUnixStreamServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = time.monotonic()
        self.aged = 0

    def start(self) -> "Daemon":
        self.switch.load()
        try:
            self.health.start()
            self._serve()
            t = threading.Thread(target=self._clock, name="clock", daemon=True)
            t.start()
            self._threads.append(t)
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self) -> None:
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline(1 << 20)
                try:
                    reply = daemon.handle(json.loads(line))
                except Exception as e:  # noqa: BLE001 - every error goes back to the caller
                    reply = {"error": f"{type(e).__name__}: {e}"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        try:
            os.unlink(self.ctl_path)   # a socket left by a killed daemon
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(self.ctl_path) or ".", exist_ok=True)
        self.server = socketserver.ThreadingUnixStreamServer(self.ctl_path, Handler)
        self.server.daemon_threads = True
        os.chmod(self.ctl_path, 0o600)
        t = threading.Thread(target=self.server.serve_forever, name="ctl", daemon=True)
        t.start()
        self._threads.append(t)

    def _clock(self) -> None:
        last_age = time.monotonic()
        while not self._stop.wait(1.0):
            try:
                # An absolute clock, not +1 per wake-up, so a stalled thread
                # does not make time run slow for aging.
                now = 1 + int(time.monotonic() - self._started)
                cur = self.switch.now_s()
                if now != cur:
                    self.switch.tick((now - cur) & 0xFFFFFFFF)
                if time.monotonic() - last_age >= self.aging_interval_s:
                    last_age = time.monotonic()
                    self.aged += self.switch.age()
            except Exception:  # one failed sweep must not end the daemon
                log.exception("l4switchd: clock/aging")

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "pin_dir": self.switch.pin_dir,
                    "ports": self.switch.sw.ports}
        if op == "stats":
            return {"ok": True, **self.switch.stats(), "health": self.health.stats(),
                    "aged": self.aged, "uptime_s": time.monotonic() - self._started}
        if op == "pool":
            with self.switch.lock:
                return {"ok": True, "pools": [
                    {"configured": st.configured, "effective": st.effective}
                    for st in self.switch.pools], "backend_healthy": dict(self.switch.healthy)}
        if op == "set_pool":
            eff = self.switch.set_pool(list(req["backends"]), int(req.get("vip", 0)))
            return {"ok": True, "effective": eff}
        if op == "conns":
            return {"ok": True, "conns": self.switch.entries()}
        return {"error": f"unknown op {op!r}"}

    def stop(self) -> None:
        self._stop.set()
        self.health.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            try:
                os.unlink(self.ctl_path)
            except FileNotFoundError:
                pass
        for t in self._threads:
            t.join(5)
        self._threads.clear()
        self.switch.close()


# ------------------------------------------------------------------ client

def call(ctl_path: str, req: dict, timeout: float = 30.0) -> dict:
    """One request to a running l4switchd; its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(ctl_path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


# --------------------------------------------------------------------- CLI

def _enter_netns(ns: str | None) -> None:
    if ns:
        # The whole process moves, so every thread it starts is there too.
        fd = os.open(netns_path(ns), os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)


def _load_plan(path: str):
    from switchhost.pipelines.l4switch import L4Plan  # the driver only where needed (see Daemon)

    return L4Plan.from_json(Path(path).read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m targets.l4switch.l4switchd",
                                 description="l4switch control plane")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="load the program and serve until SIGTERM")
    r.add_argument("--plan", required=True, help="L4Plan as JSON (L4Plan.to_json)")
    r.add_argument("--ctl", required=True, help="control socket path")
    r.add_argument("--pin-dir", help="pin maps here (default /sys/fs/bpf/l4<random>)")
    r.add_argument("--obj", help="program object (default build/bpf/l4switch.bpf.o)")
    r.add_argument("--log-level", default="INFO")
    c = sub.add_parser("ctl", help="ask a running daemon")
    c.add_argument("socket")
    c.add_argument("op", choices=["ping", "stats", "pool", "conns", "set-pool"])
    c.add_argument("backends", nargs="*", help="set-pool: back-end names")
    c.add_argument("--vip", type=int, default=0)
    k = sub.add_parser("cleanup", help="remove what a killed daemon left")
    k.add_argument("--pin-dir", required=True)
    k.add_argument("--netns", help="the switch's namespace (default: this one)")
    k.add_argument("--ports", help="comma-separated switch ports (default: every one)")
    k.add_argument("--ctl", help="the daemon's control socket, removed if left behind")
    args = ap.parse_args(argv)

    if args.cmd == "ctl":
        req = {"op": args.op.replace("-", "_")}
        if args.op == "set-pool":
            req.update(backends=args.backends, vip=args.vip)
        try:
            reply = call(args.socket, req)
        except (OSError, ValueError) as e:
            print(json.dumps({"error": f"l4switchd at {args.socket}: {e}"}))
            return 1
        print(json.dumps(reply))
        return 0 if "error" not in reply else 1

    if args.cmd == "cleanup":
        # No plan needed: a cleanup must work whatever state the plan file is in.
        from switchhost.pipelines.l4switch import L4Switch  # the driver only where needed (see Daemon)

        L4Switch.cleanup(args.pin_dir, args.netns,
                         args.ports.split(",") if args.ports else None)
        if args.ctl:
            try:
                os.unlink(args.ctl)
            except FileNotFoundError:
                pass
        return 0

    try:
        plan = _load_plan(args.plan)
    except (OSError, ValueError) as e:
        print(f"l4switchd: {args.plan}: {e}", file=sys.stderr)
        return 2

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s l4switchd %(levelname)s %(message)s")
    _enter_netns(plan.netns)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        daemon = Daemon(plan, args.ctl, pin_dir=args.pin_dir, obj_path=args.obj).start()
    except Exception as e:  # noqa: BLE001
        print(f"l4switchd: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    try:
        print("l4switchd ready " + json.dumps({"pin_dir": daemon.switch.pin_dir,
                                               "ports": daemon.switch.sw.ports,
                                               "ctl": args.ctl}), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
