"""Median time to build and remove the default emulated testbed.

    python -m bench.benchmarks.testbed_updown [--runs 10] [--topology FILE]

1 client, 1 switch, 1 front-end and 4 back-ends by default; the target on a
2-core machine is under 3 s for up + down.  A benchmark, not a test: the
machine is shared and timings are noisy, so it prints, it does not assert.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from hosts.testbed import EmulatedTestbed
from hosts.topology import DEFAULT_TOPOLOGY, load_topology


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    ap.add_argument("--with-extra", action="store_true",
                    help="keep hosts with role 'extra' (the fault runs' attacker)")
    args = ap.parse_args()
    topo = load_topology(args.topology)
    if not args.with_extra:
        # The reference testbed: client, switch, front-end, 4 back-ends.
        topo = topo.model_copy(update={"host": [h for h in topo.host if h.role.value != "extra"]})
    ups, downs = [], []
    for _ in range(args.runs):
        tb = EmulatedTestbed(topo, prefix="bu" + secrets.token_hex(3))
        t0 = time.perf_counter()
        tb.up()
        t1 = time.perf_counter()
        tb.down()
        t2 = time.perf_counter()
        ups.append(t1 - t0)
        downs.append(t2 - t1)
    total = [u + d for u, d in zip(ups, downs)]
    print(f"hosts: {len(topo.host)} ({', '.join(h.name for h in topo.host)}); runs: {args.runs}")
    print(f"up    median {statistics.median(ups):.3f} s  (min {min(ups):.3f}, max {max(ups):.3f})")
    print(f"down  median {statistics.median(downs):.3f} s  (min {min(downs):.3f}, max {max(downs):.3f})")
    print(f"total median {statistics.median(total):.3f} s  (target < 3 s)")


if __name__ == "__main__":
    main()
