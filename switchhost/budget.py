"""The install budget: how fast a hardware switch's control plane takes table entries.

A Tofino's flow table is written by its driver over PCIe; a front-end's ADD
waits for that.  The eBPF switch installs a batch in microseconds, so the
daemon emulates the hardware with two knobs:

- `rate`: entries per second, a token bucket shared by every connection (up
  to `burst` banked).  A batch is installed in slices as tokens arrive; its
  ACK leaves when its last slice is in.
- `batch_latency_s`: a fixed delay per batch, the driver's round trip.

Batches are installed one at a time, as one driver would.  An ADD that would
wait longer than `max_wait_s` from its batch's arrival is refused instead
(its bit set in the ACK): the flow stays on the front-end, which is correct,
only slower, and the channel stays responsive.  DELs are never refused: a
lost DEL would leave an entry for a flow the front-end has let go.

Time comes from `clock` and waiting from `sleep`, so a test can run the
budget on a virtual clock and assert what it did, not how long it took.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Awaitable, Callable

from switchhost.layouts import CtlOp
from switchhost.pipeline import ApplyResult, FlowOp

MAX_WAIT_S_DEFAULT = 0.5


@dataclass
class BudgetStats:
    batches: int = 0
    entries: int = 0
    queued: int = 0          # entries that waited for tokens
    refused: int = 0         # ADDs refused: they would have waited longer than max_wait_s
    slices: int = 0          # installs (one per wake-up)
    waited_s: float = 0.0    # time spent waiting for tokens and round trips


class InstallBudget:
    def __init__(self, rate: float | None = None, burst: float | None = None,
                 batch_latency_s: float = 0.0, max_wait_s: float = MAX_WAIT_S_DEFAULT,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable] = asyncio.sleep):
        if rate is not None and rate <= 0:
            raise ValueError("rate: must be positive (or None: unlimited)")
        if batch_latency_s < 0 or max_wait_s <= 0:
            raise ValueError("batch_latency_s must be >= 0 and max_wait_s > 0")
        self.rate = float(rate) if rate else None
        # Default burst: 50 ms worth.  Slices much smaller than the event
        # loop's timer jitter would make the real rate fall short.
        self.burst = float(burst) if burst else max(1.0, (self.rate or 0) / 20)
        self.batch_latency_s = batch_latency_s
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.stamp = clock()
        self.stats = BudgetStats()
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = self.clock()
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def _wait(self, seconds: float) -> None:
        t0 = self.clock()
        await self.sleep(seconds)
        self.stats.waited_s += self.clock() - t0

    def _admit(self, ops: list[FlowOp], arrived: float) -> list[int]:
        """Positions of the entries to install now; the rest are refused."""
        if not self.rate:
            return list(range(len(ops)))
        self._refill()
        late = self.clock() - arrived
        admitted, need = [], 0.0
        for i, op in enumerate(ops):
            wait = max(0.0, (need + 1 - self.tokens) / self.rate)
            if op.op == CtlOp.ADD and late + wait > self.max_wait_s:
                continue
            admitted.append(i)
            need += 1
        return admitted

    async def install(self, ops: list[FlowOp], apply: Callable[[list[FlowOp]], ApplyResult],
                      arrived: float | None = None) -> ApplyResult:
        """Apply a batch within the budget; the result covers every entry of it."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        arrived = self.clock() if arrived is None else arrived
        async with self._lock:
            admitted = self._admit(ops, arrived)
            refused = sorted(set(range(len(ops))) - set(admitted))
            res = ApplyResult(refused_budget=len(refused), refused_idx=list(refused))
            self.stats.batches += 1
            self.stats.entries += len(ops)
            self.stats.refused += len(refused)
            done = 0
            while done < len(admitted):
                n = len(admitted) - done
                if self.rate:
                    # A slice of at most `burst` entries per wake-up; the bucket
                    # may go a hair below zero when a timer fires early, which
                    # the next refill pays back.
                    self._refill()
                    n = max(1, min(n, int(self.burst)))
                    if self.tokens < n:
                        await self._wait((n - self.tokens) / self.rate)
                        self._refill()
                        self.stats.queued += n
                    self.tokens -= n
                chunk = admitted[done:done + n]
                part = apply([ops[i] for i in chunk])
                part.refused_idx = [chunk[i] for i in part.refused_idx]
                res.merge(part, 0)
                self.stats.slices += 1
                done += n
            if self.batch_latency_s:
                await self._wait(self.batch_latency_s)
            return res

    def snapshot(self) -> dict:
        return {**asdict(self.stats), "rate": self.rate, "burst": self.burst,
                "batch_latency_s": self.batch_latency_s, "max_wait_s": self.max_wait_s}
