"""The Markdown report beside the figures: the cells' numbers with intervals, ratios against `direct`.

Per cell (target x workload x connection mode, analysis/cells.py): means over
repetitions, latency percentiles of the merged histograms, 95% confidence
intervals in brackets (analysis/stats.py), and ratios of this target over
`direct` for the same workload and mode, paired by repetition when the
campaign interleaved the targets.  Before any number: whether the results
are a smoke test or not one run (analysis/conditions.py), then failed points
and failed integrity checks, so they cannot be missed; after the numbers,
the conditions each target was measured in (load average, CPU steal).
"""

from __future__ import annotations

from pathlib import Path

from analysis import cells, conditions, stats
from analysis.results import NOT_APPLICABLE
from plots import common, style

STEM = "report"


def _fmt(v, digits=2) -> str:
    if v is None or v != v:  # None or NaN
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _ci(iv: stats.Interval, scale: float = 1.0, unit: str = "") -> str:
    return iv.scaled(scale).fmt(2, unit) if iv.ok else "-"


def _table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _section(d, kind: str, x: str, metrics: list[tuple[str, str, float, bool]],
             ratios: list[tuple[str, str]]) -> str:
    """One table per connection mode: rows target x workload.  metrics: (column, heading,
    scale, with interval); ratios: (column, heading) over direct's same cell."""
    parts = []
    for mode in common.mode_order(d):
        m = d[d["mode"] == mode]
        rows = []
        for t in style.target_order(m["target"].unique()):
            mt = m[m["target"] == t]
            for xv in sorted(mt[x].dropna().unique()):
                rs = mt[mt[x] == xv]
                row = [rs["target_label"].iloc[0], rs["workload_label"].iloc[0], len(rs)]
                for col, _, scale, with_ci in metrics:
                    if with_ci:
                        row.append(_ci(cells.estimate(rs, col), scale))
                    else:
                        v = cells.value(rs, col)
                        row.append(_fmt(v * scale if v is not None else None))
                base = m[(m["target"] == "direct") & (m[x] == xv)]
                for col, _ in ratios:
                    row.append("-" if t == "direct" or base.empty else
                               _ci(cells.ratio(rs, base, col), unit="x"))
                rows.append(row)
        headers = ["target", kind, "reps"] + [h for _, h, _, _ in metrics] + \
                  [f"{h} vs direct" for _, h in ratios]
        parts.append(f"**{mode}**\n\n" + _table(headers, rows))
    return "\n\n".join(parts)


def _reroute(df, d) -> list[str]:
    """The re-route workload: throughput and what the counters say about the L7 decisions,
    per target, and which targets it does not apply to and why."""
    rr = d[d["workload_kind"] == "reroute"] if not d.empty else d
    na = df[(df["status"] == NOT_APPLICABLE)]
    if rr.empty and na.empty:
        return []
    out = ["## Re-routing on every request (L7)", "",
           "Every request of a kept-alive connection goes to the other cluster than the one "
           "before it, one request at a time (bench/reroute.py; one wrk thread per "
           "connection). Re-routed: the re-routes Miresga's "
           "front-end counted (a request for another cluster than its connection's back-end; "
           "HAProxy and nginx keep no such count) per request of the load. Less-loaded cluster: its share of the "
           "requests the back-ends answered (nginx stub_status; 0.50 is an even split)."
           + (f" Load: {common.wrk_load(rr)}" if not rr.empty else ""), ""]
    if not rr.empty:
        out += [_section(rr, "workload", "workload_label",
                         [("requests_per_s", "req/s", 1, True),
                          ("lat_p50_us", "p50 ms", 1e-3, False),
                          ("lat_p99_us", "p99 ms", 1e-3, True),
                          ("reroute_rate", "re-routed", 1, False),
                          ("cluster_min_share", "less-loaded cluster", 1, False)], []), ""]
    if not na.empty:
        out += ["Not applicable (recorded, not run):", ""]
        for (target, why), rows in na.groupby(["target", "error"], dropna=False):
            out.append(f"- {style.label(target)}, {', '.join(sorted(rows['workload'].unique()))}"
                       f" ({', '.join(sorted(rows['conn_mode'].unique()))}): {why}")
        out.append("")
    return out


def _budget(df) -> list[str]:
    """The points with a front-end CPU budget, one table per budget and connection mode."""
    b = common.prepare(df, budgeted=True)
    b = b[b["workload_kind"] == "fixed"] if not b.empty else b
    if b.empty:
        return []
    lines = ["## Equal front-end budget (the budget figure)", "",
             "Every front-end host capped at the budget by a CFS quota on its cgroup "
             "(bench/budget.py). `throttled`: the share of the measured run's periods in which "
             "the quota ran out; near 0, the budget did not limit the point (the rest of the "
             f"machine did). Load: {common.wrk_load(b)}", ""]
    for cores in sorted(b["frontend_cpu_cores"].astype(float).unique()):
        at = b[b["frontend_cpu_cores"].astype(float) == cores]
        lines += [f"### {cores:g} core", "",
                  _section(at, "size", "size_bytes",
                           [("requests_per_s", "req/s", 1, True),
                            ("lat_p99_us", "p99 ms", 1e-3, True),
                            ("frontend_throttled_share", "throttled", 1, False)], []), ""]
    return lines


def _integrity(passed) -> str:
    ok = conditions.integrity(passed)
    if ok is None:
        return "not checked (the target never came up)"
    return "passed" if ok else "**FAILED**"


def _bodies(df) -> list[str]:
    """Bodies sampled during the points (bench/bodies.py), per target; results written
    before the check have none."""
    if "bodies_checked" not in df or df["bodies_checked"].isna().all():
        return []
    parts = []
    for t, g in df.groupby("target"):
        checked = g["bodies_checked"].dropna().astype(int)
        bad = int(g["bodies_mismatched"].dropna().astype(int).sum())
        parts.append(f"{style.label(t)} {int(checked.sum())} checked in {len(checked)} points"
                     + (f", **{bad} MISMATCHED**" if bad else ", all intact"))
    return ["Bodies under load (a checksumming client beside the load, keep-alive and one "
            "connection per request, sha256 against the manifest): " + "; ".join(parts)
            + ".", ""]


def _conditions(df) -> list[str]:
    rows = conditions.table(df)
    if not rows:
        return []
    out = ["## Conditions", "",
           "What else the machines did while each target was measured: the 1-minute load "
           "average at the end of each measured window (median and highest), against the "
           "machine's CPUs, and the highest share of CPU time stolen by the hypervisor "
           "during a window (/proc/stat `steal`).", ""]
    table = []
    for r in sorted(rows, key=lambda r: style.target_order([r["target"]])):
        span = (f"{r['first']:%Y-%m-%d %H:%M}-{r['last']:%H:%M} UTC"
                if r["first"] is not None else "-")
        table.append([style.label(r["target"]), r["points"], span,
                      r["cpus"] if r["cpus"] is not None else "-",
                      _fmt(r["load1_median"]), _fmt(r["load1_max"]),
                      f"{r['steal_share_max']:.1%}" if r["steal_share_max"] is not None
                      else "-"])
    out.append(_table(["target", "points", "measured", "CPUs", "load1 median", "load1 max",
                       "steal max"], table))
    if all(r["load1_max"] is None for r in rows):
        out += ["", "These results predate the load average and steal columns."]
    return out + [""]


def write(df, out_dir, figures: list[Path] | None = None, source: str = "",
          extra: list[str] | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    campaigns = ", ".join(sorted(df["campaign"].dropna().unique())) if not df.empty else ""
    lines = [f"# Results{': ' + campaigns if campaigns else ''}", ""]
    if source:
        lines += [f"From `{source}` (redraw: `python -m bench plots {source}`).", ""]
    if df.empty:
        lines += ["No result files.", ""]
        path = out / f"{STEM}.md"
        path.write_text("\n".join(lines))
        return path
    smoke = conditions.smoke_test(df)
    if smoke:
        lines += [f"**Smoke test** ({smoke}): these numbers say the bench runs, not how the "
                  "targets compare.", ""]
    warns = conditions.warnings(df)
    if warns:
        lines += ["**Not one run**:", ""] + [f"- {w}" for w in warns] + [""]
    n_ok = int((df["status"] == "ok").sum())
    n_na = int((df["status"] == NOT_APPLICABLE).sum())
    lines += [f"{len(df)} run points: {n_ok} ok, {len(df) - n_ok - n_na} failed"
              + (f", {n_na} not applicable (not run)" if n_na else "") + ". Revision: "
              f"{', '.join(conditions.revisions(df)) or 'unknown'}.", ""]
    integ = df.groupby("target")["integrity_passed"].agg(_integrity)
    lines += ["Integrity (every object fetched through the target, sha256 against the manifest): "
              + ", ".join(f"{style.label(t)} {word}" for t, word in integ.items()) + ".", ""]
    lines += _bodies(df)
    failed = df[~df["status"].isin(["ok", NOT_APPLICABLE])]
    if not failed.empty:
        lines += ["## Failed points", ""]
        lines += [f"- `{r.point_id}`: {r.error}" for r in failed.itertuples()]
        lines += [""]
    d = common.prepare(df)
    if d.empty or cells.has_histograms(d, "lat_p99_us"):
        latency = "latency percentiles of the merged histogram of all repetitions' requests"
    else:
        latency = ("latency percentiles are means of per-run percentiles, since these "
                   "results carry no latency histograms (written before result format 2), and "
                   "the per-run percentiles are wrk's own, which include the samples its "
                   "coordinated-omission correction adds (bench/wrk.py)")
    lines += [f"Numbers: the mean over repetitions; {latency}; in brackets the {common.CI}; "
              "ratios vs direct are paired by repetition when the campaign interleaved the "
              "targets.", ""]
    fixed = d[d["workload_kind"] == "fixed"] if not d.empty else d
    mix = d[d["workload_kind"] == "mix"] if not d.empty else d
    if not fixed.empty:
        lines += ["## Fixed response sizes (Figure 4 a, b)", "",
                  f"Latency of every request of the load. Load: {common.wrk_load(fixed)} "
                  "See docs/results-format.md for what the latency includes.", "",
                  _section(fixed, "size", "size_bytes",
                           [("requests_per_s", "req/s", 1, False),
                            ("goodput_gbps", "Gbit/s", 1, True),
                            ("lat_p50_us", "p50 ms", 1e-3, False),
                            ("lat_p99_us", "p99 ms", 1e-3, True),
                            ("lat_p999_us", "p99.9 ms", 1e-3, False)],
                           [("goodput_gbps", "Gbit/s"), ("lat_p99_us", "p99")]), ""]
    if not mix.empty:
        lines += ["## Heavy-tailed mixes (Figure 4 c, d)", "",
                  "Throughput of the background load; latency of the 1 KB probe beside it "
                  f"(paced, not saturating). Background load: {common.wrk_load(mix)}", "",
                  _section(mix, "traffic", "workload_label",
                           [("requests_per_s", "req/s", 1, False),
                            ("goodput_gbps", "Gbit/s", 1, True),
                            ("probe_lat_p50_us", "1KB p50 ms", 1e-3, False),
                            ("probe_lat_p99_us", "1KB p99 ms", 1e-3, True),
                            ("probe_lat_p999_us", "1KB p99.9 ms", 1e-3, False)],
                           [("goodput_gbps", "Gbit/s"), ("probe_lat_p99_us", "1KB p99")]), ""]
    lines += _reroute(df, d)
    lines += _budget(df)
    if not d.empty:
        lines += ["## CPU seconds per second of measurement, per role", "",
                  "Role CPU from each host's cgroup; softirq (the kernel's packet path, where "
                  "the emulated switch forwards) is machine-wide, and on a shared machine "
                  "includes other work. Means over repetitions.", ""]
        c = d.copy()
        for col in ("cpu_client_s", "cpu_switch_s", "cpu_frontend_s", "cpu_backend_s",
                    "cpu_softirq_s"):
            c[col] = c[col].astype(float) / c["cpu_window_s"].astype(float)
        lines += [_section(c, "workload", "mean_size_bytes",
                           [("cpu_client_s", "client", 1, False),
                            ("cpu_switch_s", "switch", 1, False),
                            ("cpu_frontend_s", "front-end", 1, False),
                            ("cpu_backend_s", "back-ends", 1, False),
                            ("cpu_softirq_s", "softirq", 1, False)], []), ""]
    lines += _conditions(df)
    lines += extra or []
    if figures:
        lines += ["## Figures", ""]
        lines += [f"- [{p.name}]({p.name})" for p in figures if p.suffix == ".png"]
        lines += [""]
    path = out / f"{STEM}.md"
    path.write_text("\n".join(lines))
    return path
