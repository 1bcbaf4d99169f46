"""Cells: the repetitions of one point, and the numbers they give together, with intervals.

A cell is every successful run point of one target, workload, connection
mode and load parameters (`CELL_KEYS`); its rows differ only in repetition
(and seed).  What a cell reports:

* throughput, CPU and the other per-run numbers: the mean over repetitions;
* latency percentiles (`lat_p99_us`, `probe_lat_p50_us`, ...): the percentile
  of the merged histogram of its repetitions (analysis/latency.py), never a
  mean of per-run percentiles.  Results written before histograms were
  recorded (format 1, or a tidy table without `lat_hist`) have only per-run
  percentiles: their cells fall back to the mean of those, and
  `has_histograms()` says so, for the report to state.

Each comes with its 95% interval (analysis/stats.py), and so do ratios
between two cells, paired by repetition when the two were measured
interleaved (analysis/conditions.py).
"""

from __future__ import annotations

import re

from analysis import conditions, stats
from analysis.latency import CountTable

# What makes two run points repetitions of one another.
# An open-loop point (load "open") has no wrk parameters and an offered rate; a
# point measured at a front-end CPU budget (bench/budget.py) is its own cell.
CELL_KEYS = ["target", "workload", "conn_mode", "load", "offered_rate", "connections",
             "threads", "duration_s", "warmup_s", "timeout_s", "probe_connections",
             "probe_interval_ms", "frontend_cpu_cores"]

_LATENCY = re.compile(r"^(probe_)?lat_p(50|90|99|999)_us$")
_PERCENTILE = {"50": 50.0, "90": 90.0, "99": 99.0, "999": 99.9}


def latency_column(col: str) -> tuple[str, float] | None:
    """`lat_p99_us` -> (`lat_hist`, 99.0): the histogram column and percentile, or None."""
    m = _LATENCY.match(col)
    if not m:
        return None
    return f"{m.group(1) or ''}lat_hist", _PERCENTILE[m.group(2)]


def keys(df) -> list[str]:
    return [k for k in CELL_KEYS if k in df.columns]


def ok_rows(df):
    return df[df["status"] == "ok"]


def has_histograms(rows, col: str) -> bool:
    """Whether every row with a value of `col` (a latency percentile) has the histogram it
    comes from: rows without one (a fixed size has no probe) need none."""
    lat = latency_column(col)
    if lat is None or lat[0] not in rows:
        return False
    if col in rows:
        rows = rows[rows[col].notna()]
    if rows.empty:
        return False
    return bool(rows[lat[0]].map(lambda v: isinstance(v, str) and len(v) > 0).all())


def _table(rows, col: str) -> CountTable | None:
    lat = latency_column(col)
    if lat is None or not has_histograms(rows, col):
        return None
    try:
        return CountTable(list(rows[lat[0]]))
    except ValueError:
        return None


def _key(rows, col: str, what: str = "") -> str:
    """A stable name for the random stream of this interval (analysis/stats.py)."""
    ids = ",".join(sorted(str(p) for p in rows["point_id"])) if "point_id" in rows else ""
    return f"{what}{col}:{ids}"


def value(rows, col: str) -> float | None:
    """The cell's value of `col` without an interval (cheaper: no resampling)."""
    if rows.empty or col not in rows:
        return None
    table = _table(rows, col)
    if table is not None:
        return table.percentile(latency_column(col)[1])
    v = rows[col].astype(float).dropna()
    return float(v.mean()) if len(v) else None


def estimate(rows, col: str) -> stats.Interval:
    """The cell's value of `col` with its interval (rows: one cell's successful rows)."""
    if rows.empty or col not in rows:
        return stats.Interval(None)
    table = _table(rows, col)
    if table is not None:
        return stats.percentile(table, latency_column(col)[1], _key(rows, col))
    return stats.mean(rows[col].astype(float), _key(rows, col))


def ratio(a, b, col: str, paired: bool | None = None) -> stats.Interval:
    """`col` of cell a over cell b with its interval; paired by repetition when the two
    were measured interleaved (or as told)."""
    if a.empty or b.empty or col not in a or col not in b:
        return stats.Interval(None)
    if paired is None:
        paired = conditions.interleaved(a, b)
    if paired:
        a, b = a.sort_values("repetition"), b.sort_values("repetition")
    key = _key(a, col, "ratio:") + "/" + _key(b, col)
    ta, tb = _table(a, col), _table(b, col)
    if ta is not None and tb is not None:
        return stats.ratio_of_percentiles(ta, tb, latency_column(col)[1], key, paired=paired)
    return stats.ratio_of_means(a[col].astype(float).values, b[col].astype(float).values, key,
                                paired=paired)


def select(df, **match):
    """The successful rows whose columns equal `match` (None matches a missing value)."""
    d = ok_rows(df)
    for k, v in match.items():
        if k not in d:
            return d.iloc[0:0]
        d = d[d[k].isna()] if v is None else d[d[k] == v]
    return d


def summarize(df, cols: list[str], by: list[str] | None = None):
    """One row per cell (or per group of `by`): the keys, `n` (repetitions), and for
    every column c of `cols`: c, c_lo, c_hi (NaN without an interval)."""
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import pandas as pd

    d = ok_rows(df)
    by = by or keys(d)
    out = []
    for k, rows in d.groupby(by, sort=False, dropna=False):
        row = dict(zip(by, k if isinstance(k, tuple) else (k,)))
        row["n"] = len(rows)
        for c in cols:
            iv = estimate(rows, c)
            row[c] = iv.value
            row[f"{c}_lo"] = iv.low
            row[f"{c}_hi"] = iv.high
        for extra in ("target_label", "mode", "workload_label", "size_bytes", "size_label",
                      "workload_kind", "layer7"):
            if extra in rows and extra not in row:
                row[extra] = rows[extra].iloc[0]
        out.append(row)
    return pd.DataFrame(out)
