"""Two runs, point by point: the ratio A / B of every cell they share, with intervals.

    python -m bench compare A B        # A, B: results directories or tidy.csv files

A cell of A matches a cell of B when every load parameter is equal
(analysis/cells.py CELL_KEYS: target, workload, connection mode,
connections, threads, durations, timeout, probe); the campaign, the seeds
and the repetition numbers may differ.  For each match: throughput (goodput
and requests/s) as a ratio of means, and latency (p99 of the load for fixed
sizes, of the 1 KB probe for mixes) as a ratio of the merged histograms'
percentiles, each with its 95% interval.  Two runs are never interleaved with
each other, so nothing is paired: the interval covers the run-to-run
variation of both.

What each side is (revisions, time windows, smoke test) is stated above the
table; cells found on one side only are counted below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis import cells, conditions, stats
from analysis.results import load_table

# (column, heading, applies to workload kinds)
METRICS = [
    ("goodput_gbps", "goodput", ("fixed", "mix", "reroute")),
    ("requests_per_s", "req/s", ("fixed", "mix", "reroute")),
    ("lat_p99_us", "p99", ("fixed", "reroute")),
    ("probe_lat_p99_us", "1KB probe p99", ("mix",)),
]


@dataclass
class Comparison:
    text: str
    matched: int
    only_a: int
    only_b: int


def _describe(name: str, source: Path, df) -> list[str]:
    revs = conditions.revisions(df)
    ok = cells.ok_rows(df)
    out = [f"- **{name}**: `{source}`: {len(ok)} successful points of "
           f"{', '.join(sorted(df['campaign'].dropna().unique())) or '?'}, revision "
           f"{', '.join(revs) or 'unknown'}"]
    smoke = conditions.smoke_test(df)
    if smoke:
        out.append(f"  - smoke test: {smoke}")
    out += [f"  - {w}" for w in conditions.warnings(df)]
    return out


def compare(a_source: Path, b_source: Path) -> Comparison:
    a, b = load_table(Path(a_source)), load_table(Path(b_source))
    for name, src, df in (("A", a_source, a), ("B", b_source, b)):
        if df.empty:
            raise ValueError(f"{name}: {src}: no result files and no tidy.csv")
    ka, kb = cells.keys(a), cells.keys(b)
    by = [k for k in ka if k in kb]
    ga = {k: rows for k, rows in cells.ok_rows(a).groupby(by, sort=False, dropna=False)}
    gb = {k: rows for k, rows in cells.ok_rows(b).groupby(by, sort=False, dropna=False)}
    common = [k for k in ga if _in(k, gb)]
    lines = ["# A / B, point by point", ""]
    lines += _describe("A", a_source, a) + _describe("B", b_source, b) + [""]
    headers = ["target", "workload", "mode", "params", "reps A", "reps B"] + \
              [f"{h} A/B" for _, h, _ in METRICS]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for k in common:
        ra, rb = ga[k], _get(gb, k)
        kind = ra["workload_kind"].iloc[0] if "workload_kind" in ra else None
        key = dict(zip(by, k))
        params = f"c{key.get('connections')} t{key.get('threads')} {key.get('duration_s')}s"
        if key.get("load") == "open":
            params = f"open loop {key.get('offered_rate'):g} req/s {key.get('duration_s')}s"
        cellv = []
        for col, _, kinds in METRICS:
            if kind is not None and kind not in kinds:
                cellv.append("")
                continue
            iv = cells.ratio(ra, rb, col, paired=False)
            cellv.append(iv.fmt(2, "x") if iv.ok else "n/a")
        lines.append("| " + " | ".join([str(key.get("target")), str(key.get("workload")),
                                         str(key.get("conn_mode")), params, str(len(ra)),
                                         str(len(rb))] + cellv) + " |")
    only_a = len([k for k in ga if not _in(k, gb)])
    only_b = len([k for k in gb if not _in(k, ga)])
    lines += ["", f"{len(common)} cells in both; {only_a} only in A, {only_b} only in B. "
                  f"Ratio [{stats.LEVEL:.0%} confidence interval], {stats.METHOD}, "
                  "the two sides resampled independently; latency: percentiles of the "
                  "merged histograms."]
    if any(not cells.has_histograms(ga[k], "lat_p99_us") for k in common):
        lines.append("Some cells carry no latency histograms (results before format 2): "
                     "their latency is the mean of per-run percentiles.")
    return Comparison("\n".join(lines) + "\n", len(common), only_a, only_b)


def _same(x, y) -> bool:
    return x == y or (x != x and y != y)  # NaN == NaN for keys


def _in(k, groups) -> bool:
    return _get(groups, k) is not None


def _get(groups, k):
    if k in groups:
        return groups[k]
    for other, rows in groups.items():
        if all(_same(x, y) for x, y in zip(k, other)):
            return rows
    return None
