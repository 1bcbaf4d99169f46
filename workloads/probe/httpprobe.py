"""A time-resolved HTTP prober that checks every response it gets, for fault runs.

    python3 httpprobe.py --base http://10.10.0.100:80 --paths paths.txt \
        --duration 20 --concurrency 4 [--close] [--bin-ms 100] [--pause-ms 0]

wrk reports aggregates; a fault run needs to know *when* requests failed and
whether every response that did complete was intact.  Each worker thread
loops: pick the next object (round robin over the list, offset per worker),
GET it, compare status, length and sha256 with the manifest line, record the
outcome in a time bin.  At the end one JSON document goes to stdout: per-bin
counts (ok, failed, corrupt), totals, errors by kind and the first failures.

Standard library only: it runs on a client host of a real testbed with a
bare python3.  `paths` has one "<path> <size> <sha256>" line per object.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import socket
import sys
import threading
import time
from urllib.parse import urlsplit


class Bins:
    def __init__(self, bin_s: float, duration: float):
        self.bin_s = bin_s
        n = int(duration / bin_s) + 2
        self.ok = [0] * n
        self.failed = [0] * n
        self.corrupt = [0] * n
        self.lock = threading.Lock()
        self.errors: dict[str, int] = {}
        self.samples: list[dict] = []

    def add(self, t: float, outcome: str, detail: str | None = None, path: str | None = None):
        i = min(int(t / self.bin_s), len(self.ok) - 1)
        with self.lock:
            getattr(self, outcome)[i] += 1
            if detail is not None:
                self.errors[detail] = self.errors.get(detail, 0) + 1
                if len(self.samples) < 50:
                    self.samples.append({"t": round(t, 3), "path": path, "outcome": outcome,
                                         "detail": detail})


def worker(k: int, args, objects: list[tuple[str, int, str]], bins: Bins, t0: float,
           stop: threading.Event) -> None:
    u = urlsplit(args.base)
    host, port = u.hostname, u.port or 80
    conn = None
    i = k
    while not stop.is_set():
        path, size, digest = objects[i % len(objects)]
        i += 1
        start = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
            headers = {"Connection": "close"} if args.close else {}
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if args.close or resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()
                conn = None
            kind = type(e).__name__
            if isinstance(e, socket.timeout):
                kind = "timeout"
            bins.add(start - t0, "failed", kind, path)
            # A refused or reset connection fails fast: do not spin on it.
            time.sleep(0.01)
            continue
        t = start - t0
        if resp.status != 200:
            bins.add(t, "failed", f"status {resp.status}", path)
        elif len(body) != size or hashlib.sha256(body).hexdigest() != digest:
            bins.add(t, "corrupt", f"body {len(body)} bytes, sha256 mismatch", path)
        else:
            bins.add(t, "ok")
        if args.pause_ms:
            stop.wait(args.pause_ms / 1000)
    if conn is not None:
        conn.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="http://host:port")
    ap.add_argument("--paths", required=True, help="file of '<path> <size> <sha256>' lines")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--bin-ms", type=float, default=100.0)
    ap.add_argument("--close", action="store_true", help="one connection per request")
    ap.add_argument("--pause-ms", type=float, default=0.0,
                    help="pause after each response (a sample beside a load, not a load)")
    args = ap.parse_args(argv)

    objects = []
    with open(args.paths) as f:
        for line in f:
            if line.strip():
                p, s, d = line.split()
                objects.append((p, int(s), d))
    bins = Bins(args.bin_ms / 1000, args.duration)
    stop = threading.Event()
    t0 = time.monotonic()
    wall0 = time.time()
    threads = [threading.Thread(target=worker, args=(k, args, objects, bins, t0, stop),
                                daemon=True) for k in range(args.concurrency)]
    for t in threads:
        t.start()
    time.sleep(args.duration)
    stop.set()
    for t in threads:
        t.join(args.timeout + 5)
    # Whole bins only: a last, partial bin would read as a drop in throughput.
    n = max(1, int(round(args.duration / bins.bin_s)))
    json.dump({
        "started_at": wall0, "duration_s": args.duration, "bin_s": bins.bin_s,
        "concurrency": args.concurrency, "close": args.close,
        "ok": bins.ok[:n], "failed": bins.failed[:n], "corrupt": bins.corrupt[:n],
        "totals": {"ok": sum(bins.ok), "failed": sum(bins.failed),
                   "corrupt": sum(bins.corrupt)},
        "errors": bins.errors, "samples": bins.samples,
    }, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
