"""Latency histograms: HdrHistograms of microseconds, merged, never averaged.

Every latency percentile of a cell (target, workload, connection mode) comes
from one histogram holding every sample of its repetitions and client hosts:
adding HdrHistograms of one shape is exact, the sum is the histogram a single
recorder would have filled.  A mean of per-run p99s is not a p99 of anything.

The shape (1 us to 1 h, 3 significant digits, so a value is stored within
0.1%) is the open-loop generator's, defined once in workloads/openloop/loadgen.py;
wrk's histograms (bench/wrk.py) are converted to it.

`CountTable` holds the bucket counts of several histograms as one numpy
matrix, so that the bootstrap (analysis/stats.py) can merge thousands of
resampled sets of repetitions and read their percentiles without decoding
anything again.  Its percentiles follow HdrHistogram's own rule (the highest
value equivalent to the first bucket whose cumulative count reaches
round(p% of the total)), so a table and `HdrHistogram.get_value_at_percentile`
agree to the microsecond.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from hdrh.histogram import HdrHistogram

from workloads.openloop.loadgen import new_histogram

PERCENTILES = (50, 90, 99, 99.9, 99.99)


def decode(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded)


def encode(h: HdrHistogram) -> str:
    return h.encode().decode()


def from_counts(counts: Iterable[tuple[int, int]]) -> HdrHistogram:
    """A histogram of (value in us, count) pairs."""
    h = new_histogram()
    for value, count in counts:
        if count:
            h.record_value(int(value), int(count))
    return h


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every sample of the encoded ones (streams, hosts, repetitions)."""
    total = new_histogram()
    for e in encoded:
        total.add(decode(e))
    return total


def summary(h: HdrHistogram) -> dict:
    """wrk's latency_us layout, from a histogram (microseconds)."""
    if h.get_total_count() == 0:
        return {"count": 0, "min": None, "max": None, "mean": None, "stdev": None,
                "percentiles": {_key(p): None for p in PERCENTILES}}
    return {"count": h.get_total_count(), "min": h.get_min_value(), "max": h.get_max_value(),
            "mean": h.get_mean_value(), "stdev": h.get_stddev(),
            "percentiles": {_key(p): v for p, v in
                            h.get_percentile_to_value_dict(list(PERCENTILES)).items()}}


def _key(p: float) -> str:
    """50 -> "50", 99.9 -> "99.9": the keys wrk's documents use."""
    return f"{p:g}"


@lru_cache(maxsize=1)
def _bucket_values():
    """Per bucket index: the highest value it stands for (what a percentile reports)."""
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import numpy as np

    h = new_histogram()
    return np.array([h.get_highest_equivalent_value(h.get_value_from_index(i))
                     for i in range(h.counts_len)], dtype=np.float64)


class CountTable:
    """The bucket counts of n histograms of the shared shape, as an (n, buckets) matrix
    restricted to the buckets any of them uses."""

    def __init__(self, encoded: list[str]):
        import numpy as np

        if not encoded:
            raise ValueError("a CountTable needs at least one histogram")
        rows = []
        for e in encoded:
            h = decode(e)
            if h.counts_len != len(_bucket_values()):
                raise ValueError("histogram of another shape than new_histogram()'s "
                                 f"({h.counts_len} buckets)")
            rows.append(np.ctypeslib.as_array(h.counts)[:h.counts_len].astype(np.float64))
        full = np.vstack(rows)
        used = full.sum(axis=0) > 0
        if not used.any():
            raise ValueError("a CountTable of empty histograms")
        self.counts = full[:, used]
        self.values = _bucket_values()[used]

    @property
    def n(self) -> int:
        return self.counts.shape[0]

    def percentiles(self, weights, p: float):
        """The p-th percentile of the histogram sum(weights[i] * histogram i), one per row
        of `weights` (shape (k, n): how many times each histogram is taken)."""
        import numpy as np

        w = np.asarray(weights, dtype=np.float64)
        # A bootstrap of n repetitions draws few distinct sets (126 for n = 5): each
        # is merged once, a block at a time so that memory stays small.
        sets, inverse = np.unique(w, axis=0, return_inverse=True)
        out = np.empty(len(sets))
        for start in range(0, len(sets), 256):
            cum = np.cumsum(sets[start:start + 256] @ self.counts, axis=1)
            total = cum[:, -1]
            target = np.maximum(np.floor(min(p, 100.0) * total / 100 + 0.5), 1)
            idx = np.argmax(cum >= target[:, None], axis=1)
            out[start:start + 256] = np.where(total > 0, self.values[idx], np.nan)
        return out[inverse.ravel()]

    def percentile(self, p: float) -> float:
        """The p-th percentile of all histograms merged."""
        import numpy as np

        return float(self.percentiles(np.ones((1, self.n)), p)[0])
