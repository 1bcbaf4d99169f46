"""The claims table: each claim of the paper -> experiment -> what these results measured.

    python -m bench claims [RESULTS_DIR]        # Markdown to stdout (bench/plotting.py)
    (also written as claims.md beside the figures by `python -m bench plots`)

Every number is a ratio between targets measured in the same results, so the
table says how Miresga compares here, not how fast this machine is, and
each ratio carries its 95% confidence interval (analysis/stats.py: bootstrap
over repetitions, paired when the campaign interleaved the targets; latency
ratios are of percentiles of merged histograms).  The paper's own numbers
(WWW '25) and the project's goals stand beside them.  Missing targets or
workloads give "n/a", never a guess.

Above the table: why these results may be less than one run (several
revisions, uncommitted changes, separate time windows) and whether they
are a smoke test (analysis/conditions.py).  A table without a single
measured ratio is "nothing to claim": `Claims.measured` is 0 and
`bench claims` exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis import cells, conditions, stats
from analysis.results import NOT_APPLICABLE, closed_loop, fault_rows, load_table, open_loop
from miresga.control.memory_model import model

PAPER_THROUGHPUT = 3.9   # x software L7 load balancing
PAPER_LATENCY = 0.4      # x software L7 load balancing
MODES = ("keep-alive", "close")
#: An open-loop cell "carried" its offered load when it completed at least this
#: share of it in the window: equal offered load means something only then.
CARRIED = 0.95

BUDGET_WORKLOADS = ("1KB", "1MB")


@dataclass
class Claims:
    text: str
    measured: int          # ratios with a value
    reason: str | None     # why there is nothing to claim, when measured == 0


def _ratio(df, a: str, b: str, workload: str, mode: str, col: str) -> stats.Interval:
    x = cells.select(df, target=a, workload=workload, conn_mode=mode)
    y = cells.select(df, target=b, workload=workload, conn_mode=mode)
    return cells.ratio(x, y, col)


def _fmt(iv: stats.Interval) -> str:
    return iv.fmt(2, "x") if iv.ok else "n/a"


class _Counter:
    def __init__(self):
        self.measured = 0

    def per_mode(self, df, a, b, workload, col) -> str:
        modes = [m for m in MODES if (df["conn_mode"] == m).any()]
        parts = []
        for m in modes:
            iv = _ratio(df, a, b, workload, m, col)
            self.measured += iv.ok
            parts.append(f"{_fmt(iv)} ({m})")
        return ", ".join(parts) or "n/a"

    def growth(self, df, target, big, small, col) -> str:
        modes = [m for m in MODES if (df["conn_mode"] == m).any()]
        parts = []
        for m in modes:
            iv = cells.ratio(cells.select(df, target=target, workload=big, conn_mode=m),
                             cells.select(df, target=target, workload=small, conn_mode=m), col)
            self.measured += iv.ok
            parts.append(f"{_fmt(iv)} ({m})")
        return ", ".join(parts) or "n/a"


def _fixed(df):
    return df[(df["workload_kind"] == "fixed") & (df["status"] == "ok")]


def _largest_fixed(df) -> str | None:
    d = _fixed(df)
    return None if d.empty else d.loc[d["size_bytes"].astype(float).idxmax(), "workload"]


def _smallest_fixed(df) -> str | None:
    d = _fixed(df)
    return None if d.empty else d.loc[d["size_bytes"].astype(float).idxmin(), "workload"]


def _reroute(df, c: _Counter) -> list[tuple[str, str, str, str]]:
    """The L7 claim: throughput when every request of a kept-alive connection changes
    cluster (bench/reroute.py), Miresga over the software L7 load balancers, with the share
    its front-end re-routed; and the targets the workload does not apply to."""
    rr = df[df["workload_kind"] == "reroute"] if "workload_kind" in df else df.iloc[0:0]
    if rr.empty:
        return []
    wl = sorted(rr["workload"].unique())[0]
    ka = "keep-alive"
    parts = []
    for other in ("haproxy", "nginx"):
        iv = _ratio(df, "miresga", other, wl, ka, "requests_per_s")
        c.measured += iv.ok
        parts.append(f"Miresga / {other}: {_fmt(iv)}")
    mine = cells.select(df, target="miresga", workload=wl, conn_mode=ka)
    rate = cells.value(mine, "reroute_rate")
    if rate is not None and rate == rate:
        parts.append(f"Miresga re-routed {rate:.0%} of the load's requests")
    na = rr[(rr["status"] == NOT_APPLICABLE) & (rr["conn_mode"] == ka)]
    if not na.empty:
        parts.append("not applicable: " + ", ".join(sorted(na["target"].unique())))
    return [("L7 decisions: re-routing on every request of a kept-alive connection",
             f"re-route figure, {wl}, requests/s", "; ".join(parts),
             "every request re-routed; no paper figure")]


def _carried(rows) -> bool:
    v = cells.value(rows, "achieved_ratio")
    return v is not None and v >= CARRIED


def equal_load(df, a: str, b: str, workload: str, mode: str, col: str
               ) -> tuple[float | None, stats.Interval]:
    """(rate, a / b of `col`) of open-loop cells at the highest offered rate both
    targets carried (CARRIED), or (None, no value) when there is none."""
    d = open_loop(df)
    if d.empty:
        return None, stats.Interval(None)
    x = cells.select(d, target=a, workload=workload, conn_mode=mode)
    y = cells.select(d, target=b, workload=workload, conn_mode=mode)
    rates = sorted(set(x["offered_rate"]) & set(y["offered_rate"]), reverse=True)
    for r in rates:
        xr, yr = x[x["offered_rate"] == r], y[y["offered_rate"] == r]
        if _carried(xr) and _carried(yr):
            return float(r), cells.ratio(xr, yr, col)
    return None, stats.Interval(None)


def _budgeted(df):
    """The points measured with a front-end CPU budget (bench/budget.py); the other
    claims are of the points without one."""
    if "frontend_cpu_cores" not in df:
        return df.iloc[0:0]
    return df[df["frontend_cpu_cores"].notna()]


def build(df, faults: list[dict]) -> Claims:
    """The claims of a tidy table (and its fault rows)."""
    if df.empty or not (df["status"] == "ok").any():
        why = "no result files" if df.empty else "no successful run point"
        return Claims(f"Nothing to claim: {why}.\n", 0, why)
    everything, budgeted = df, _budgeted(df)
    if "frontend_cpu_cores" in df:
        df = df[df["frontend_cpu_cores"].isna()]
    c = _Counter()
    opened = open_loop(df)
    df = closed_loop(df)
    big, small = _largest_fixed(df), _smallest_fixed(df)
    mb = "1MB" if (df["workload"] == "1MB").any() else big
    t3 = "traffic3"
    smoke = conditions.smoke_test(everything)
    cmd = "`make bench PROFILE=quick`" if smoke and "quick" in smoke else "`make bench`"
    rows = [
        ("Throughput vs software L7 LB at 1 MB", f"Fig. 4 (b), {mb}",
         f"Miresga / HAProxy: {c.per_mode(df, 'miresga', 'haproxy', mb, 'goodput_gbps')}; "
         f"Miresga / nginx: {c.per_mode(df, 'miresga', 'nginx', mb, 'goodput_gbps')}",
         f"paper {PAPER_THROUGHPUT}x; goal >= 4x HAProxy"),
        ("Throughput vs software L7 LB, heavy-tailed (Traffic 3)", "Fig. 4 (d), Traffic 3",
         f"Miresga / HAProxy: {c.per_mode(df, 'miresga', 'haproxy', t3, 'goodput_gbps')}; "
         f"Miresga / nginx: {c.per_mode(df, 'miresga', 'nginx', t3, 'goodput_gbps')}",
         f"paper {PAPER_THROUGHPUT}x"),
        ("Close to no load balancer at 1 MB", f"Fig. 4 (b), {mb}",
         f"Miresga / direct: {c.per_mode(df, 'miresga', 'direct', mb, 'goodput_gbps')}",
         "goal >= 0.9x"),
        ("1 KB latency under heavy-tailed load", "Fig. 4 (c), Traffic 3, 1 KB probe p99",
         f"Miresga / HAProxy: {c.per_mode(df, 'miresga', 'haproxy', t3, 'probe_lat_p99_us')}; "
         f"Miresga / nginx: {c.per_mode(df, 'miresga', 'nginx', t3, 'probe_lat_p99_us')}",
         f"paper {PAPER_LATENCY}x; goal <= 0.4x HAProxy"),
    ]
    if not opened.empty:
        rows += _equal_load_rows(opened, c, t3)
    if big and small and big != small:
        col = "frontend_cpu_s_per_kreq"
        busy = ""
        if "frontend_busy_s_per_kreq" in df and df["frontend_busy_s_per_kreq"].notna().any():
            busy = (f"; Miresga's busy loop time (without idle polls) "
                    f"{c.growth(df, 'miresga', big, small, 'frontend_busy_s_per_kreq')}")
        rows.append(("Front-end CPU flat in response size",
                     f"front-end cost figure, {small} -> {big}",
                     f"CPU per 1,000 requests grows by Miresga "
                     f"{c.growth(df, 'miresga', big, small, col)}; HAProxy "
                     f"{c.growth(df, 'haproxy', big, small, col)}; nginx "
                     f"{c.growth(df, 'nginx', big, small, col)}{busy}",
                     "design: ~1x for Miresga"))
    rows += _reroute(df, c)
    if not budgeted.empty:
        least = float(budgeted["frontend_cpu_cores"].astype(float).min())
        at = budgeted[budgeted["frontend_cpu_cores"].astype(float) == least]
        parts = [f"{w}: {c.per_mode(at, 'miresga', 'haproxy', w, 'requests_per_s')}"
                 for w in BUDGET_WORKLOADS if (at["workload"] == w).any()]
        rows.append((f"Throughput at an equal front-end budget ({least:g} core)",
                     "budget figure, experiments/budget.toml",
                     "Miresga / HAProxy, requests/s: " + ("; ".join(parts) or "n/a"),
                     f"paper {PAPER_THROUGHPUT}x; goal >= 3x at 1 KB, >= 4x at 1 MB"))
    m = model()
    mir, naive = m["layouts"]
    rows.append(("Switch memory per connection", "memory model (miresga/control/memory_model.py)",
                 f"{mir['bits_per_conn']:g} vs {naive['bits_per_conn']:g} bits "
                 f"({m['ratio_bits_per_conn']:.1f}x less); {mir['blocks']} SRAM blocks for "
                 f"{m['assumptions']['connections']:,} connections",
                 "paper: merged entry, 8-bit index, 143,360 entries"))
    integ = everything.groupby("target")["integrity_passed"].agg(conditions.integrity)
    word = {True: "passed", False: "FAILED", None: "not checked"}
    rows.append(("Every byte intact", "integrity check before each target",
                 ", ".join(f"{t}: {word[ok]}" for t, ok in integ.items()),
                 "all pass"))
    mine = [r for r in faults if r["target"] == "miresga"]
    if mine:
        ran = [r for r in mine if r["status"] == "ok"]
        kept = sum(1 for r in ran if conditions.truthy(r["kept_serving"]))
        intact = all(conditions.truthy(r["intact"]) for r in ran)
        recs = [float(r["recovery_s"]) for r in ran if conditions.truthy(r["recovered"])]
        rows.append(("Miresga keeps serving under faults", "fault runs",
                     f"kept serving in {kept}/{len(ran)} runs; responses "
                     f"{'all intact' if intact else 'CORRUPT in some'}; slowest recovery "
                     f"{max(recs):.2f} s" if recs else f"kept serving in {kept}/{len(ran)} runs",
                     "degraded is fine, stuck is not"))
    warns = conditions.warnings(everything)
    reps = cells.ok_rows(everything).groupby(cells.keys(everything), dropna=False).size()
    out = []
    if smoke:
        out += [f"**Smoke test** ({smoke}): these numbers say the bench runs, not how the "
                "targets compare.", ""]
    if warns:
        out += ["**Not one run**:", ""] + [f"- {w}" for w in warns] + [""]
    heading = "measured here (" + ("smoke test, " if smoke else "") + \
        ("NOT one run: see above" if warns else "one run") + ")"
    out += [f"| claim | experiment | {heading} | paper / goal |", "|---|---|---|---|"]
    out += [f"| {claim} | {e} ({cmd}) | {v} | {p} |" for claim, e, v, p in rows]
    n = f"{reps.min()}" if reps.min() == reps.max() else f"{reps.min()}-{reps.max()}"
    latency = ("latency ratios are of percentiles of the merged histograms"
               if cells.has_histograms(cells.ok_rows(everything), "probe_lat_p99_us") else
               "these results carry no latency histograms: latency ratios are of means of "
               "per-run percentiles (wrk's own, with its coordinated-omission correction)")
    out += ["", f"Ratios: estimate [{stats.LEVEL:.0%} confidence interval], {stats.METHOD} "
                f"({n} per point; paired by repetition where the targets were interleaved); "
                f"{latency}. See analysis/stats.py."]
    reason = None
    if c.measured == 0:
        present = ", ".join(sorted(everything["target"].dropna().unique()))
        reason = (f"no ratio between the claimed targets and workloads could be computed "
                  f"(targets here: {present}; the claims divide miresga by haproxy, nginx and "
                  f"direct at {mb or '1MB'} and traffic3)")
    return Claims("\n".join(out) + "\n", c.measured, reason)


def _equal_load_rows(d, c: _Counter, t3: str) -> list[tuple[str, str, str, str]]:
    """Fig. 4 (a) and (c) again at an equal offered load (open loop): the highest rate
    both Miresga and HAProxy carried, per connection mode."""
    small = "1KB" if (d["workload"] == "1KB").any() else None
    out = []
    for workload, col, claim, fig in (
            (small, "lat_p99_us", "1 KB latency at an equal offered load",
             "latency vs offered load, 1 KB p99"),
            (t3, "probe_lat_p99_us", "1 KB latency under heavy-tailed load at an equal "
             "offered load", "latency vs offered load, Traffic 3, 1 KB probe p99")):
        if workload is None or not (d["workload"] == workload).any():
            continue
        parts = []
        for m in [m for m in MODES if (d["conn_mode"] == m).any()]:
            rate, iv = equal_load(d, "miresga", "haproxy", workload, m, col)
            c.measured += iv.ok
            at = (f" at {rate:,.0f} req/s" if rate is not None
                  else ", no rate both carried")
            parts.append(f"{_fmt(iv)} ({m}{at})")
        out.append((claim, f"{fig}, open loop", f"Miresga / HAProxy: {', '.join(parts)}",
                    f"paper {PAPER_LATENCY}x; goal <= 0.4x HAProxy"))
    return out


def claims_of(results: Path) -> Claims:
    """The claims of a results directory (result files, or its tidy.csv and faults.csv)."""
    return build(load_table(results), fault_rows(Path(results)))


def claims(results: Path) -> str:
    """The claims table of a results directory, as Markdown."""
    return claims_of(results).text
