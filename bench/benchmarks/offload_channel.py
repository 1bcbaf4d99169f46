"""Entries installed per second through the offload channel, next to raw map updates.

    python -m bench.benchmarks.offload_channel [--entries 100000] [--batch 512]
        [--window 8] [--rate 0]

The switch host's daemon (python -m switchhost --pipeline miresga) runs as its
own process in a scratch namespace, as it would on a switch host; this process
plays a front-end and speaks the control protocol (authenticated, every
message MAC'd).  In the
same run, on the same pinned flow table, it times what the channel is built
on: bpf_map_update_elem one entry per syscall, and bpf_map_update_batch.
Each phase starts from an empty table.  The gap between the two tells what
the channel (TCP, parsing, validation, Python) costs over the map updates
themselves.  A benchmark, not a test: the machine is shared, so it prints
and does not assert.
"""

from __future__ import annotations

import argparse
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.netns import netns
from common.paths import REPO_ROOT
from common.scratch_ns import ScratchNs
from switchhost import layouts
from switchhost.addresses import ip_be, port_be
from switchhost.client import ControlClient
from switchhost.ebpf_switch import PinnedMaps
from switchhost.layouts import CTL_MAX_BATCH, CtlOp
from switchhost.pipelines.miresga import MAPS, SwitchPlan
from switchhost.plan import Endpoint, VipSpec
from switchhost.protocol import Entry, new_key

PORTS = {"c0": "10.7.0.1/16", "f0": "10.6.2.1/24", "b1": "10.6.11.1/24"}
LISTEN = ("10.6.2.1", 7470)


def flows(n: int) -> list[tuple[str, int]]:
    """n distinct (client IP, port) pairs from 10.7.0.0/16."""
    return [(f"10.7.{(i // 60000) // 250}.{1 + (i // 60000) % 250}", 1024 + i % 60000)
            for i in range(n)]


def raw_single(m, keys, values) -> float:
    t0 = time.perf_counter()
    for k, v in zip(keys, values):
        m.update(k, v)
    return len(keys) / (time.perf_counter() - t0)


def raw_batched(m, keys, values, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(keys), batch):
        m.update_batch(keys[i:i + batch], values[i:i + batch])
    return len(keys) / (time.perf_counter() - t0)


def channel(c: ControlClient, entries: list[Entry], batch: int, window: int) -> tuple[float, int]:
    """Entries/s through the channel with up to `window` batches in flight."""
    t0 = time.perf_counter()
    in_flight, done, applied = 0, 0, 0
    for i in range(0, len(entries), batch):
        c.send_batch(entries[i:i + batch])
        in_flight += 1
        if in_flight == window:
            a = c.recv_ack()
            applied += a.added + a.deleted
            in_flight -= 1
    while in_flight:
        a = c.recv_ack()
        applied += a.added + a.deleted
        in_flight -= 1
    done = len(entries)
    return done / (time.perf_counter() - t0), applied


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=CTL_MAX_BATCH,
                    help=f"entries per channel message and per batch syscall (max {CTL_MAX_BATCH})")
    ap.add_argument("--window", type=int, default=8, help="channel batches in flight")
    ap.add_argument("--rate", type=float, default=0,
                    help="also measure with the daemon's install budget at this rate")
    args = ap.parse_args()
    n = min(args.entries, layouts.FLOW_CAPACITY_DEFAULT)

    pairs = flows(n)
    keys = [layouts.FlowKey(ip_be(ip), port_be(p)) for ip, p in pairs]
    values = [layouts.Flow(0, 0, 0, 1) for _ in pairs]
    adds = [Entry(ip, p, CtlOp.ADD, 0) for ip, p in pairs]
    dels = [Entry(ip, p, CtlOp.DEL) for ip, p in pairs]

    with ScratchNs("sw") as ns, tempfile.TemporaryDirectory(prefix="swbench") as tmp:
        for port, addr in PORTS.items():
            ns.add_port(port, addr)
        plan = SwitchPlan(netns=ns.name, ports=list(PORTS), vips=[VipSpec(ip="10.6.100.1")],
                          backends=[Endpoint(ip="10.6.11.2", mac="02:00:00:00:11:02",
                                             switch_port="b1")],
                          frontends=[Endpoint(ip="10.6.2.2", mac="02:00:00:00:02:02",
                                              switch_port="f0")])
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(plan.to_json())
        key = new_key()
        key_path = Path(tmp) / "ctl.key"
        key_path.write_text(key + "\n")
        key_path.chmod(0o600)
        results = []

        def connect() -> ControlClient:
            with netns(ns.name):
                return ControlClient(*LISTEN, key=bytes.fromhex(key))

        def run_daemon(rate: float | None):
            pin_dir = f"/sys/fs/bpf/sw{secrets.token_hex(3)}"
            argv = [sys.executable, "-m", "switchhost", "--pipeline", "miresga",
                    "--plan", str(plan_path), "--key", str(key_path),
                    "--listen", f"{LISTEN[0]}:{LISTEN[1]}", "--pin-dir", pin_dir,
                    "--log-level", "WARNING"]
            if rate:
                # Every entry waits its turn: this measures the rate, not refusals.
                argv += ["--rate", str(rate), "--max-wait-ms", "600000"]
            p = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
            ready, _, _ = select.select([p.stdout], [], [], 30)
            line = p.stdout.readline() if ready else ""
            if not line.startswith("switchd ready"):
                p.kill()
                raise SystemExit(f"switchd did not start: {line}")
            return p, pin_dir

        def stop(p):
            p.send_signal(signal.SIGTERM)
            p.wait(30)

        p, pin_dir = run_daemon(None)
        try:
            with PinnedMaps(pin_dir, [m for m in MAPS if m.name == "flow_table"]) as maps:
                m = maps["flow_table"]
                r1 = raw_single(m, keys, values)
                m.delete_batch(keys)
                r2 = raw_batched(m, keys, values, args.batch)
                m.delete_batch(keys)
                with connect() as c:
                    r3, applied = channel(c, adds, args.batch, args.window)
                    assert applied == n and m.count_batch() == n, (applied, m.count_batch())
                    r4, _ = channel(c, dels, args.batch, args.window)
                    assert m.count_batch() == 0
                    few = adds[: min(n, 5000)]
                    r5, _ = channel(c, few, 1, 1)
                    channel(c, dels[: len(few)], args.batch, args.window)
        finally:
            stop(p)
        results += [
            ("raw map update, 1 entry per syscall", r1),
            (f"raw map update, batched ({args.batch} per syscall)", r2),
            (f"offload channel, adds, {args.batch}/message, {args.window} in flight", r3),
            (f"offload channel, deletes, {args.batch}/message, {args.window} in flight", r4),
            ("offload channel, 1 entry per message, synchronous", r5),
        ]
        if args.rate:
            p, pin_dir = run_daemon(args.rate)
            try:
                with connect() as c:
                    few = adds[: min(n, int(args.rate * 2))]
                    r6, _ = channel(c, few, args.batch, args.window)
            finally:
                stop(p)
            results.append((f"offload channel, --rate {args.rate:g}", r6))

    print(f"{n:,} flow entries into a {layouts.FLOW_CAPACITY_DEFAULT:,}-entry table, "
          f"{os.cpu_count()} CPUs, one run")
    width = max(len(k) for k, _ in results)
    for name, rate in results:
        print(f"  {name:<{width}}  {rate:>12,.0f} entries/s")


if __name__ == "__main__":
    main()
