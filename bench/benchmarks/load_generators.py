"""Which constant-rate load generator holds which rate here, at what CPU cost, and
whether its latency counts a server stall: h2load, httperf, hey and bench/openloop.py.

    apt-get install nghttp2-client httperf hey    # the tools compared
    python -m bench.benchmarks.load_generators [--reps 3] [--duration 10]
        [--rates 2500,5000,10000,20000] [--openloop-rates 1000,2000,4000,6000,8000]
        [--stall] [--stall-rate 2000]

On an emulated testbed, from the client against the direct target (nginx on
a back-end), 1 KB objects.  Each tool runs at a constant target rate for
`duration` seconds, keep-alive and one connection per request:
  h2load --h1 --rps (per client; 64 clients) keep-alive, and -r/--rate-period
    (connections per 1 ms period, one request each, "Connection: close");
  httperf --rate with --num-calls 1 (close) or 10 (keep-alive: the calls on a
    connection go back to back);
  hey -q (queries per second per worker; 50 workers), -disable-keepalive;
  the open-loop generator, uvloop, 1 and 2 processes, and asyncio, 1 process.
A rate is held when the requests completed over the measured time are within
1% of it.  Repetitions are interleaved: in each, rates rise, the tools run in
a shuffled order at each rate, and a tool that missed a rate is not tried at
the higher ones.  CPU is the tool's user + system time (its rusage; the
open-loop processes' own CPU time) per 1,000 requests.

--stall: each tool at --stall-rate, keep-alive (httperf: close), with the
back-end's nginx workers stopped (SIGSTOP) for 500 ms in the middle of the
run.  About rate x 0.5 s requests were due during the stall; a generator
that measures from the intended send time counts them all as delayed, a
closed-loop one only those in flight when it began (coordinated omission).

A benchmark, not a test: the machine is shared, so it prints the numbers of
each repetition and their spread, and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shlex
import signal
import subprocess
import threading
import time
from collections import defaultdict

from hdrh.histogram import HdrHistogram

from bench.openloop import OpenLoopJob, OpenLoopRunner
from common.service import default_service
from hosts.backends import BackendServers, ObjectStore
from hosts.testbed import EmulatedTestbed
from hosts.topology import DEFAULT_TOPOLOGY, load_topology
from targets.base import make_target
from workloads.model import Objects

OBJECTS = Objects(sizes=["1KB"], per_size=4, seed=1)
PATH = "/obj/1KB/0.bin"
STALL_S = 0.5
LATENCY_DEFINITION = {
    "h2load": "from submitting the request to the end of the response; --rps paces requests "
              "per client on a timer of max(10 ms, 1/rps) and a request due while the client's "
              "one HTTP/1.1 stream is busy waits unmeasured (coordinated omission); -r paces "
              "connection starts per period and drops periods it runs late for",
    "httperf": "connection lifetime from its connect() (average, median, 1 ms histogram "
               "with -v -v); connection starts are open-loop with catch-up bursts, but how "
               "late a start was is not measured; calls on one connection are closed-loop",
    "hey": "from the request's actual start; each worker waits on a Go ticker (-q), which "
           "drops ticks while the worker is busy, so delayed requests are never sent "
           "(coordinated omission)",
    "openloop": "from the request's due time t0 + i/rate to its last byte, whatever delayed "
                "it (busy connections, the generator, the server); start lag kept apart",
}


class Bench:
    def __init__(self, tb: EmulatedTestbed, url: str, duration: float):
        self.tb = tb
        self.client = tb.clients[0]
        self.url = url
        self.duration = duration

    def spawn(self, argv: list[str]) -> tuple[str, float]:
        """Run a tool on the client; (output, CPU seconds of it and its children)."""
        cmd = " ".join(shlex.quote(a) for a in argv)
        p = subprocess.Popen(self.client.argv(cmd), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        out = p.stdout.read().decode(errors="replace")
        _, _, ru = os.wait4(p.pid, 0)
        return out, ru.ru_utime + ru.ru_stime

    # ---------------------------------------------------------- the tools
    def h2load(self, rate: float, mode: str, extra: list[str] = ()) -> dict:
        if mode == "keepalive":
            c = 64
            argv = ["h2load", "--h1", "-t", "1", "-c", str(c), f"--rps={rate / c}",
                    "-D", f"{self.duration:g}", "--warm-up-time=2", *extra, self.url + PATH]
        else:
            n = int(rate * self.duration)
            argv = ["h2load", "--h1", "-t", "1", "-r", str(max(1, round(rate / 1000))),
                    "--rate-period=1ms", "-c", str(n), "-n", str(n), "-H",
                    "Connection: close", *extra, self.url + PATH]
        out, cpu = self.spawn(argv)
        m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
        done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
        return {"achieved": float(m.group(1)) if m else 0.0,
                "ok": int(done.group(1)) if done else 0, "cpu_s": cpu}

    def httperf(self, rate: float, mode: str, verbose: bool = False) -> dict:
        calls = 1 if mode == "close" else 10
        host = self.url.split("://")[1].split(":")[0]
        argv = ["httperf", "--hog", "--server", host, "--port", "80", "--uri", PATH,
                "--rate", str(rate / calls),
                "--num-conns", str(int(rate * self.duration / calls)),
                "--num-calls", str(calls), "--timeout", "5"] + (["-v", "-v"] if verbose else [])
        out, cpu = self.spawn(argv)
        tot = re.search(r"Total: connections \d+ requests \d+ replies (\d+) test-duration "
                        r"([\d.]+) s", out)
        replies, dur = (int(tot.group(1)), float(tot.group(2))) if tot else (0, 1.0)
        return {"achieved": replies / dur, "ok": replies, "cpu_s": cpu, "out": out}

    def hey(self, rate: float, mode: str, csv: bool = False) -> dict:
        c = 50
        argv = ["hey", "-z", f"{self.duration:g}s", "-c", str(c),
                "-q", str(max(1, round(rate / c))), "-t", "5"]
        argv += ["-disable-keepalive"] if mode == "close" else []
        argv += (["-o", "csv"] if csv else []) + [self.url + PATH]
        out, cpu = self.spawn(argv)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        ok = re.search(r"\[200\]\s+(\d+) responses", out)
        return {"achieved": float(m.group(1)) if m else 0.0, "ok": int(ok.group(1)) if ok else 0,
                "cpu_s": cpu, "out": out}

    def openloop(self, rate: float, mode: str, processes: int = 1, uvloop: bool = True,
                 warmup_s: float = 2) -> dict:
        job = OpenLoopJob(url=self.url, classes=[{"name": "1KB", "weight": 10000,
                                                  "paths": OBJECTS.paths("1KB")}],
                          rate=rate, duration_s=self.duration, warmup_s=warmup_s,
                          processes=processes, close=mode == "close", uvloop=uvloop)
        out = OpenLoopRunner(self.client).run(job)
        d = out.data or {}
        return {"achieved": d.get("requests_per_s", 0.0), "ok": d.get("ok", 0),
                "cpu_s": d.get("generator_cpu_s", 0.0), "data": d, "error": out.error}

    def tools(self) -> dict:
        return {
            "h2load": self.h2load, "httperf": self.httperf, "hey": self.hey,
            "openloop-uvloop": self.openloop,
            "openloop-uvloop-2proc": lambda r, m: self.openloop(r, m, processes=2),
            "openloop-asyncio": lambda r, m: self.openloop(r, m, uvloop=False),
        }

    # ---------------------------------------------------------- the stall
    def stall(self, tool: str, rate: float) -> dict:
        """Run `tool` at `rate` with the back-end stopped for STALL_S at mid-run;
        how many requests its latency shows as delayed more than 100 ms."""
        workers = self.backend_workers()
        start = time.time() + (1.0 if tool.startswith("openloop") else 0.0)

        def stop_then_continue():
            time.sleep(max(0.0, start + self.duration / 2 - time.time()))
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(STALL_S)
            for pid in workers:
                os.kill(pid, signal.SIGCONT)

        th = threading.Thread(target=stop_then_continue)
        th.start()
        try:
            if tool == "h2load":
                log = f"{self.client.workdir}/h2load-stall.log"
                self.client.run(f"rm -f {log}")
                self.h2load(rate, "keepalive", [f"--log-file={log}"])
                lat_ms = [int(line.split()[2]) / 1e3
                          for line in self.client.read_text(log).splitlines() if line.strip()]
            elif tool == "hey":
                out = self.hey(rate, "keepalive", csv=True)["out"]
                lat_ms = [float(line.split(",")[0]) * 1e3 for line in out.splitlines()
                          if line[:1].isdigit()]
            elif tool == "httperf":
                lat_ms = httperf_lifetimes(self.httperf(rate, "close", verbose=True)["out"])
            else:
                r = self.openloop(rate, "keepalive", warmup_s=0)
                h = HdrHistogram.decode(r["data"]["histogram"])
                lat_ms = [v / 1e3 for v in expand(h)]
        finally:
            th.join()
        lat_ms.sort()
        n = len(lat_ms)
        return {"tool": tool, "requests": n, "over_100ms": sum(v > 100 for v in lat_ms),
                "p99_ms": round(lat_ms[int(0.99 * (n - 1))], 1) if n else None,
                "max_ms": round(lat_ms[-1], 1) if n else None}

    def backend_workers(self) -> list[int]:
        """The nginx workers of the direct target's back-end (this testbed's own)."""
        ns = self.tb.host("backend1").netns
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split()
        workers = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().startswith(b"nginx: worker"):
                        workers.append(int(pid))
            except FileNotFoundError:
                pass
        if not workers:
            raise SystemExit("no nginx worker found on backend1")
        return workers


def httperf_lifetimes(out: str) -> list[float]:
    lat, inside = [], False
    for line in out.splitlines():
        if line.startswith("Connection lifetime histogram"):
            inside = True
            continue
        if inside:
            m = re.match(r"\s+([\d.]+) (\d+)$", line)
            if m:
                lat += [float(m.group(1))] * int(m.group(2))
            elif line.strip() and line.strip() != ":":
                inside = False
    return lat


def expand(h: HdrHistogram) -> list[int]:
    out = []
    for item in h.get_recorded_iterator():
        out += [item.value_iterated_to] * item.count_added_in_this_iter_step
    return out


def sweep(bench: Bench, args) -> list[dict]:
    rng = random.Random(args.seed)
    configs = [(tool, mode) for tool in bench.tools() for mode in ("keepalive", "close")
               if not (tool == "openloop-asyncio" and mode == "close")]
    rows = []
    for rep in range(args.reps):
        missed: set = set()
        for level in range(max(len(args.rates), len(args.openloop_rates))):
            order = [c for c in configs if c not in missed]
            rng.shuffle(order)
            for tool, mode in order:
                grid = args.openloop_rates if tool.startswith("openloop") else args.rates
                if level >= len(grid):
                    continue
                rate = grid[level]
                load = os.getloadavg()[0]
                r = bench.tools()[tool](rate, mode)
                held = abs(r["achieved"] - rate) <= 0.01 * rate
                if not held:
                    missed.add((tool, mode))
                row = {"rep": rep, "tool": tool, "mode": mode, "rate": rate,
                       "achieved": round(r["achieved"], 1), "held": held,
                       "cpu_ms_per_kreq": round(r["cpu_s"] / max(1, r["ok"]) * 1e6, 1),
                       "load1": round(load, 1)}
                if "data" in r and r["data"]:
                    d = r["data"]
                    row.update(late=d["late"], failed=d["failed"],
                               send_lag_p99_us=d["send_lag_us"]["percentiles"]["99"])
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def summary(rows: list[dict]) -> None:
    by = defaultdict(list)
    for r in rows:
        by[(r["tool"], r["mode"])].append(r)
    print(f"\n{'tool':24} {'mode':10} {'highest rate held, per repetition':36} "
          f"CPU ms per 1,000 requests where held (min-max)")
    for (tool, mode), rs in sorted(by.items()):
        highest = []
        for rep in sorted({r["rep"] for r in rs}):
            held = [r["rate"] for r in rs if r["rep"] == rep and r["held"]]
            highest.append(max(held) if held else 0)
        cpu = defaultdict(list)
        for r in rs:
            if r["held"]:
                cpu[r["rate"]].append(r["cpu_ms_per_kreq"])
        cpus = ", ".join(f"{k:g}/s: {min(v):.0f}-{max(v):.0f}" for k, v in sorted(cpu.items()))
        print(f"{tool:24} {mode:10} {str(highest):36} {cpus}")
    print()
    for tool, text in LATENCY_DEFINITION.items():
        print(f"{tool}: latency {text}")


def parse_rates(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x]


#: the Debian package of each tool compared, which the bench does not install
PACKAGES = {"h2load": "nghttp2-client", "httperf": "httperf", "hey": "hey"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--rates", type=parse_rates, default=parse_rates("2500,5000,10000,20000"))
    ap.add_argument("--openloop-rates", type=parse_rates,
                    default=parse_rates("1000,2000,4000,6000,8000"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stall", action="store_true", help="run the stall comparison only")
    ap.add_argument("--stall-rate", type=float, default=2000)
    args = ap.parse_args()
    missing = [pkg for tool, pkg in PACKAGES.items()
               if subprocess.run(["sh", "-c", f"command -v {tool}"],
                                 capture_output=True).returncode]
    if missing:
        raise SystemExit(f"not installed: apt-get install {' '.join(missing)}")
    topology = load_topology(DEFAULT_TOPOLOGY)
    with EmulatedTestbed(topology, prefix="lg" + secrets.token_hex(3)) as tb:
        store = ObjectStore(OBJECTS)
        servers = BackendServers(tb, store)
        servers.start()
        target = make_target("direct", tb, default_service([h.name for h in tb.backends]),
                             {"backend": "backend1"})
        target.deploy()
        target.start()
        target.wait_healthy(10)
        bench = Bench(tb, target.endpoint.url, args.duration)
        try:
            if args.stall:
                for rep in range(args.reps):
                    for tool in random.Random(args.seed + rep).sample(
                            ["h2load", "hey", "httperf", "openloop-uvloop"], 4):
                        print(json.dumps({"rep": rep, **bench.stall(tool, args.stall_rate)}),
                              flush=True)
            else:
                summary(sweep(bench, args))
        finally:
            servers.stop()


if __name__ == "__main__":
    main()
