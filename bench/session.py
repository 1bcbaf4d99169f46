"""`python -m bench up TARGET`, `status`, `down`: one target left running for one's own tools.

    python -m bench up haproxy [--topology FILE] [--prefix P] [--service FILE]
                               [--workloads FILE] [--param NAME=VALUE]...
    python -m bench status [--prefix P]
    python -m bench down [--prefix P]

`up` checks everything first (the topology, the target's parameters and the
roles it needs, the service and the workloads), then builds the emulated
testbed, starts nginx on every back-end with the workload objects, deploys
and starts the target, waits until it is healthy, fetches every object
through it (sha256 against the manifest), prints the VIP, how to run a
command on the client host (curl, tcpdump, one's own load generator) and
where the target's logs are, and returns.

What it started keeps running, owned by a session process (`python -m
bench.session serve`, started in a session of its own): `status` asks it for
the target's health and counters over a Unix socket; `down` asks it to stop
the target, the back-ends and the testbed, and removes whatever is left if
it is gone.  If the session process dies, the testbed's guard removes the
testbed (hosts/guard.py) and `down` removes the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from bench.integrity import verify
from bench.runner import testbed_hosts
from common.errors import ConfigError, Error
from common.paths import REPO_ROOT, SESSION_DIR, STATE_DIR, WORK_ROOT
from common.service import bench_service, load_service
from hosts.backends import BackendServers, ObjectStore
from hosts.testbed import EmulatedTestbed, check_prefix, running_testbeds, teardown
from hosts.topology import DEFAULT_TOPOLOGY, load_topology
from targets.base import available, make_target
from workloads.model import DEFAULT_WORKLOADS, load_workloads

#: How long `down` waits for the session process to take everything down.
STOP_TIMEOUT_S = 60.0


def add_parser(sub) -> None:
    up = sub.add_parser("up", help="bring one target up on the emulated testbed and leave it "
                                   "running (for curl, tcpdump, one's own load)")
    up.add_argument("target", help="a target: " + ", ".join(sorted(available())))
    up.add_argument("--topology", "-t", default=str(DEFAULT_TOPOLOGY))
    up.add_argument("--prefix", "-p", default=None,
                    help="namespace prefix (default: the topology's name)")
    up.add_argument("--service", help="service definition (TOML); default: the campaigns' "
                                      "two clusters by path and Host (common/service.py)")
    up.add_argument("--workloads", default=str(DEFAULT_WORKLOADS),
                    help="the objects the back-ends serve: a workloads file's [objects]")
    up.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a parameter of the target (a TOML value: wscale=9, "
                         "control_address=\"10.0.0.1\"); repeat for several")
    up.set_defaults(func=_up)
    for action, text in (("status", "what `bench up` left running: health, counters, logs"),
                         ("down", "stop what `bench up` started and remove the testbed")):
        a = sub.add_parser(action, help=text)
        a.add_argument("--prefix", "-p", default=None,
                       help="the testbed's prefix (default: the only session up)")
        a.set_defaults(func=_status if action == "status" else _down)


# ------------------------------------------------------------------ paths

def session_file(prefix: str) -> Path:
    return SESSION_DIR / f"{prefix}.json"


def socket_path(prefix: str) -> Path:
    return SESSION_DIR / f"{prefix}.sock"


def log_path(prefix: str) -> Path:
    return SESSION_DIR / f"{prefix}.log"


def sessions() -> list[str]:
    try:
        return sorted(p.stem for p in SESSION_DIR.glob("*.json"))
    except FileNotFoundError:
        return []


def read_session(prefix: str) -> dict | None:
    try:
        return json.loads(session_file(prefix).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------- checks

def parse_params(items: list[str]) -> dict:
    """NAME=VALUE pairs; VALUE is read as TOML (9, 1.5, true, "x"), else as a string."""
    out = {}
    for item in items:
        name, eq, text = item.partition("=")
        if not eq or not name:
            raise ConfigError(f"--param {item}: give NAME=VALUE (e.g. wscale=9)")
        try:
            out[name] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            out[name] = text
    return out


def plan_session(args) -> dict:
    """Everything `up` needs, checked: the config the session process runs from."""
    topo = load_topology(args.topology)
    prefix = args.prefix or topo.testbed.name
    known = available()
    if args.target not in known:
        raise ConfigError(f"unknown target {args.target!r}; known: {', '.join(sorted(known))}")
    cls = known[args.target]
    try:
        params = cls.check_params(parse_params(args.param), f"bench up {args.target}", "--param")
    except ConfigError as e:
        raise ConfigError(str(e).replace(": --param.", ": --param ")) from None
    hosts = testbed_hosts(topo)
    problems = [f"target {args.target}" + (f" {field}" if field else "") + f": {p} "
                f"(testbed {topo.source})" for field, p in cls.testbed_problems(params, hosts)]
    if args.service:
        service = load_service(args.service)
        for b in service.backends:
            if b not in hosts["backend"]:
                problems.append(f"{args.service}: clusters: back-end {b!r} is not a host with "
                                f"role 'backend' of {topo.source} ({', '.join(hosts['backend'])})")
    load_workloads(args.workloads)
    if problems:
        raise ConfigError("\n".join(problems))
    if read_session(prefix) is not None:
        raise Error(f"{args.target}: a target is already up on testbed {prefix!r}; "
                    f"python -m bench down --prefix {prefix}")
    check_prefix(prefix, None if args.prefix else f"{topo.source}: testbed.name {prefix!r}")
    return {"target": args.target, "params": params.model_dump(),
            "topology": str(Path(args.topology).resolve()), "prefix": prefix,
            "service": str(Path(args.service).resolve()) if args.service else None,
            "workloads": str(Path(args.workloads).resolve())}


# ------------------------------------------------------------ up (front)

def _up(args) -> int:
    cfg = plan_session(args)
    prefix = cfg["prefix"]
    SESSION_DIR.mkdir(parents=True, exist_ok=True)
    rfd, wfd = os.pipe()
    with open(log_path(prefix), "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.session", "serve", "--config", json.dumps(cfg),
             "--report-fd", str(wfd)],
            cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(wfd,), start_new_session=True)
    os.close(wfd)
    ready = None
    error = None
    try:
        with os.fdopen(rfd) as reports:
            for line in reports:
                kind, _, text = line.rstrip("\n").partition(" ")
                if kind == "step":
                    print(f"  {text}", file=sys.stderr, flush=True)
                elif kind == "ready":
                    ready = json.loads(text)
                elif kind == "error":
                    error = text.replace("\\n", "\n")
    except KeyboardInterrupt:
        # The session process has a session of its own: Ctrl-C did not reach it.
        proc.send_signal(signal.SIGTERM)
        proc.wait(STOP_TIMEOUT_S)
        raise
    if ready is None:
        proc.wait(STOP_TIMEOUT_S)
        tail = log_path(prefix).read_text(errors="replace")[-2000:]
        remove_session_files(prefix)
        raise Error(f"{cfg['target']} did not come up (everything it started is down): "
                    f"{error or 'the session process exited: ' + tail}")
    print_session(ready)
    return 0


def print_session(s: dict) -> None:
    p = s["prefix"]
    client = s["netns"][s["client"]]
    sample = s["objects"][0] if s["objects"] else "/health"
    print(f"{s['target']} is up on testbed {p!r}; {s['integrity']}")
    rows = [
        ("VIP", f"{s['url']}   (objects {s['objects'][0]} ... {s['objects'][-1]}, /health)"
         if s["objects"] else s["url"]),
        ("client", f"ip netns exec {client} curl -s {s['url']}{sample} | sha256sum"),
        ("", f"python -m bench testbed exec {s['client']} --prefix {p} -- COMMAND..."),
        ("capture", f"ip netns exec {s['netns'][s['switch']]} tcpdump -ni {s['client']}   "
                    f"(the switch's port toward {s['client']}; one port per host)"),
    ]
    rows += [("logs" if i == 0 else "", f"{path}   ({what})")
             for i, (what, path) in enumerate(sorted(s["logs"].items()))]
    rows += [("stats", f"python -m bench status --prefix {p}"),
             ("stop", f"python -m bench down --prefix {p}")]
    for label, text in rows:
        print(f"  {label:<9}{text}")


# ------------------------------------------------------- status and down

def _pick(prefix: str | None) -> str:
    if prefix:
        return prefix
    up = sessions()
    if len(up) == 1:
        return up[0]
    raise Error("no target is up (python -m bench up TARGET)" if not up else
                f"several sessions are up ({', '.join(up)}): give --prefix")


def ask(prefix: str, request: str, timeout: float = 30.0) -> dict:
    """One request to a session process: a line out, a JSON line back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path(prefix)))
        s.sendall(request.encode() + b"\n")
        chunks = []
        while (b := s.recv(65536)):
            chunks.append(b)
    return json.loads(b"".join(chunks))


def _status(args) -> int:
    try:
        prefix = _pick(args.prefix)
    except Error as e:
        print(str(e))
        return 1
    s = read_session(prefix)
    if s is None:
        print(f"no target is up on testbed {prefix!r}"
              + (f"; testbeds up: {', '.join(running_testbeds())}" if running_testbeds() else ""))
        return 1
    if not _alive(s["pid"]):
        print(f"the session of testbed {prefix!r} is gone (process {s['pid']}); "
              f"python -m bench down --prefix {prefix} removes what is left")
        return 1
    if s.get("state") != "up":
        print(f"{s['target']} on testbed {prefix!r} is still coming up (process {s['pid']})")
        return 1
    try:
        reply = ask(prefix, "status")
    except (OSError, ValueError) as e:
        raise Error(f"the session of testbed {prefix!r} did not answer: {e}") from None
    print_session(s)
    health = "healthy" if reply.get("healthy") is True else f"NOT healthy: {reply.get('healthy')}"
    print(f"  {'health':<9}{health}, up {time.time() - s['started']:.0f} s")
    print(f"  {'counters':<9}" + json.dumps(reply.get("stats"), indent=1).replace(
        "\n", "\n" + " " * 11))
    return 0 if reply.get("healthy") is True else 1


def _down(args) -> int:
    try:
        prefix = _pick(args.prefix)
    except Error as e:
        print(str(e))
        return 1
    s = read_session(prefix)
    if s is None:
        print(f"no target is up on testbed {prefix!r}"
              + ("; python -m bench testbed down removes the testbed"
                 if (STATE_DIR / f"{prefix}.json").exists() else ""))
        return 1
    pid = s["pid"]
    if _alive(pid):
        try:
            ask(prefix, "stop", timeout=5)
        except (OSError, ValueError):
            os.kill(pid, signal.SIGTERM)  # still coming up, or not answering
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    # Whatever a session that died left: the testbed, the session's files.
    teardown(prefix)
    remove_session_files(prefix)
    print(f"{s['target']} and testbed {prefix!r} are down")
    return 0


def remove_session_files(prefix: str) -> None:
    for p in (session_file(prefix), socket_path(prefix), log_path(prefix)):
        p.unlink(missing_ok=True)


# ------------------------------------------------- the session process

class Session:
    """The process that owns a target brought up by `bench up`, until `down`."""

    def __init__(self, cfg: dict, report):
        self.cfg = cfg
        self.report = report
        self.prefix = cfg["prefix"]
        self.tb = self.backends = self.target = None

    def write_state(self, **extra) -> None:
        state = {"prefix": self.prefix, "pid": os.getpid(), "target": self.cfg["target"],
                 "started": time.time(), "state": "starting", **extra}
        tmp = session_file(self.prefix).with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(session_file(self.prefix))

    def bring_up(self) -> dict:
        cfg = self.cfg
        self.write_state()
        topo = load_topology(cfg["topology"])
        self.report("step", f"testbed {self.prefix!r} (namespaces {self.prefix}-*)")
        # The guard takes the testbed down if this process dies without doing so.
        self.tb = EmulatedTestbed(topo, prefix=self.prefix, guard=True).up()
        store = ObjectStore(load_workloads(cfg["workloads"]).objects)
        self.report("step", f"nginx on {len(self.tb.backends)} back-ends, serving "
                            f"{len(store.objects.all_paths())} objects")
        self.backends = BackendServers(self.tb, store)
        self.backends.start()
        objs = store.objects
        service = (load_service(cfg["service"]) if cfg["service"] else
                   bench_service([h.name for h in self.tb.backends], vip=str(self.tb.vip),
                                 port=self.tb.vip_port, small_prefix=objs.prefix(
                                     min(objs.sizes, key=objs.size_bytes))))
        self.report("step", f"{cfg['target']}: deploy, start, wait until healthy")
        self.target = make_target(cfg["target"], self.tb, service, cfg["params"])
        self.target.deploy()
        self.target.start()
        self.target.wait_healthy(self.target.health_timeout_s)
        self.report("step", f"{cfg['target']}: fetching every object through it")
        rep = verify(self.tb.clients[0], self.target.endpoint.url, store.manifest(),
                     rounds=self.target.integrity_rounds)
        client, switch = self.tb.clients[0], self.tb.switch
        info = {
            "prefix": self.prefix, "target": cfg["target"], "params": self.target.params,
            "url": self.target.endpoint.url, "vip": self.target.endpoint.address,
            "port": self.target.endpoint.port, "client": client.name, "switch": switch.name,
            "netns": {h.name: h.netns for h in self.tb.hosts.values()},
            "objects": [path for path, _ in sorted(store.manifest().items(),
                                                   key=lambda kv: (kv[1]["size"], kv[0]))],
            "integrity": rep.summary(),
            "logs": {f"{p.name} on {h.name}": p.log_path
                     for h in self.tb.hosts.values() for p in h.processes()},
            "workdir": str(WORK_ROOT / self.prefix), "topology": cfg["topology"],
            "service": cfg["service"],
        }
        self.write_state(**info, state="up")
        return info

    def serve(self) -> None:
        """Answer `status` and `stop` until stopped (a request, SIGTERM or SIGINT)."""
        path = socket_path(self.prefix)
        path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
            srv.bind(str(path))
            os.chmod(path, 0o600)
            srv.listen(4)
            while True:
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(10)
                    request = conn.makefile("r").readline().strip()
                    if request == "stop":
                        conn.sendall(b'{"ok": true}\n')
                        return
                    conn.sendall(json.dumps(self.status(request)).encode() + b"\n")

    def status(self, request: str) -> dict:
        if request != "status":
            return {"error": f"unknown request {request!r}"}
        try:
            healthy: bool | str = bool(self.target.healthy()) or "the health check failed"
        except Error as e:
            healthy = str(e)
        try:
            stats = self.target.stats()
        except Exception as e:  # noqa: BLE001 - counters must not end the session
            stats = {"error": f"{type(e).__name__}: {e}"}
        return {"healthy": healthy, "stats": stats}

    def take_down(self) -> None:
        for step in (lambda: self.target and self.target.stop(),
                     lambda: self.backends and self.backends.stop(),
                     lambda: self.tb and self.tb.down()):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - take down the rest regardless
                print(f"take down: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        teardown(self.prefix)
        for p in (session_file(self.prefix), socket_path(self.prefix)):
            p.unlink(missing_ok=True)


def _serve_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.session")
    ap.add_argument("action", choices=["serve"])
    ap.add_argument("--config", required=True)
    ap.add_argument("--report-fd", type=int, required=True)
    args = ap.parse_args(argv)
    out = os.fdopen(args.report_fd, "w", buffering=1)

    def report(kind: str, text: str) -> None:
        try:
            out.write(f"{kind} {text}\n")
        except OSError:
            pass  # the front process is gone; the session goes on

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    session = Session(json.loads(args.config), report)
    try:
        try:
            info = session.bring_up()
        except KeyboardInterrupt:
            session.take_down()
            report("error", "interrupted while coming up; everything is down")
            return 130
        except Exception as e:  # noqa: BLE001 - reported to the front, then cleaned up
            session.take_down()
            logs = getattr(e, "logs", None) or {}
            text = f"{type(e).__name__}: {e}" + "".join(
                f"\n--- {k} ---\n{v[-1500:]}" for k, v in logs.items())
            report("error", text.replace("\n", "\\n"))
            return 2
        report("ready", json.dumps(info))
        out.close()
        try:
            session.serve()
        except KeyboardInterrupt:
            pass
        session.take_down()
        return 0
    finally:
        print(f"session {session.prefix} ends", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(_serve_main(sys.argv[1:]))
