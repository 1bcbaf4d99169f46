"""The Markdown report beside the figures: the tidy numbers, and ratios against `direct`.

Means over repetitions (with the number of repetitions); ratios are this
target's mean over `direct`'s mean for the same workload and connection mode
from the same results.  Failed points and failed integrity checks are listed
first, so they cannot be missed.
"""

from __future__ import annotations

from pathlib import Path

from plots import common, style

STEM = "report"


def _fmt(v, digits=2) -> str:
    if v is None or v != v:  # None or NaN
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _section(d, kind: str, x: str, metrics: list[tuple[str, str, float]],
             ratios: list[tuple[str, str]]) -> str:
    """One table per connection mode: rows target x workload, means over repetitions."""
    parts = []
    cols = [m for m, _, _ in metrics]
    keys = list(dict.fromkeys(["mode", "target", "target_label", x, "workload_label"]))
    g = d.groupby(keys, sort=False)
    agg = g[cols].mean()
    agg["reps"] = g.size()
    agg = agg.reset_index()
    for mode in common.mode_order(d):
        a = agg[agg["mode"] == mode]
        base = a[a["target"] == "direct"].set_index(x)
        rows = []
        for t in style.target_order(a["target"].unique()):
            at = a[a["target"] == t].sort_values(x)
            for _, r in at.iterrows():
                row = [r["target_label"], r["workload_label"], int(r["reps"])]
                row += [_fmt(r[m] * scale) for m, _, scale in metrics]
                for m, _ in ratios:
                    b = base[m].get(r[x]) if m in base else None
                    row.append(_fmt(r[m] / b) + "x" if b else "-")
                rows.append(row)
        headers = ["target", kind, "reps"] + [h for _, h, _ in metrics] + \
                  [f"{h} vs direct" for _, h in ratios]
        parts.append(f"**{mode}**\n\n" + _table(headers, rows))
    return "\n\n".join(parts)


def _integrity(passed) -> str:
    """A target's integrity over its points: a point whose target never came up
    has no check (None), which is not a failed one."""
    checked = passed.dropna()
    if checked.empty:
        return "not checked (the target never came up)"
    return "passed" if bool(checked.all()) else "**FAILED**"


def write(df, out_dir, figures: list[Path] | None = None, source: str = "",
          extra: list[str] | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Results{': ' + ', '.join(sorted(df['campaign'].dropna().unique())) if not df.empty else ''}", ""]
    if source:
        lines += [f"From the result files under `{source}` (redraw: `python -m bench plots {source}`).", ""]
    if df.empty:
        lines += ["No result files.", ""]
        path = out / f"{STEM}.md"
        path.write_text("\n".join(lines))
        return path
    n_ok = int((df["status"] == "ok").sum())
    revs = sorted({str(r)[:12] + ("+dirty" if dirty else "")
                   for r, dirty in zip(df["git_revision"], df["git_dirty"]) if r == r and r})
    lines += [f"{len(df)} run points: {n_ok} ok, {len(df) - n_ok} failed. Revision: "
              f"{', '.join(revs) or 'unknown'}.", ""]
    integ = df.groupby("target")["integrity_passed"].agg(_integrity)
    lines += ["Integrity (every object fetched through the target, sha256 against the manifest): "
              + ", ".join(f"{style.label(t)} {word}" for t, word in integ.items()) + ".", ""]
    failed = df[df["status"] != "ok"]
    if not failed.empty:
        lines += ["## Failed points", ""]
        lines += [f"- `{r.point_id}`: {r.error}" for r in failed.itertuples()]
        lines += [""]
    d = common.prepare(df)
    fixed = d[d["workload_kind"] == "fixed"]
    mix = d[d["workload_kind"] == "mix"]
    if not fixed.empty:
        lines += ["## Fixed response sizes (Figure 4 a, b)", "",
                  "Latency of every request of the load (wrk, closed loop; see "
                  "docs/results-format.md for what it includes).", "",
                  _section(fixed, "size", "size_bytes",
                           [("requests_per_s", "req/s", 1), ("goodput_gbps", "Gbit/s", 1),
                            ("lat_p50_us", "p50 ms", 1e-3), ("lat_p99_us", "p99 ms", 1e-3),
                            ("lat_p999_us", "p99.9 ms", 1e-3)],
                           [("goodput_gbps", "Gbit/s"), ("lat_p99_us", "p99")]), ""]
    if not mix.empty:
        lines += ["## Heavy-tailed mixes (Figure 4 c, d)", "",
                  "Throughput of the background load; latency of the 1 KB probe beside it.", "",
                  _section(mix, "traffic", "workload_label",
                           [("requests_per_s", "req/s", 1), ("goodput_gbps", "Gbit/s", 1),
                            ("probe_lat_p50_us", "1KB p50 ms", 1e-3),
                            ("probe_lat_p99_us", "1KB p99 ms", 1e-3),
                            ("probe_lat_p999_us", "1KB p99.9 ms", 1e-3)],
                           [("goodput_gbps", "Gbit/s"), ("probe_lat_p99_us", "1KB p99")]), ""]
    if not d.empty:
        lines += ["## CPU seconds per second of measurement, per role", "",
                  "Role CPU from each host's cgroup; softirq (the kernel's packet path, where "
                  "the emulated switch forwards) is machine-wide, and on a shared machine "
                  "includes other work.", ""]
        c = d.copy()
        for col in ("cpu_client_s", "cpu_switch_s", "cpu_frontend_s", "cpu_backend_s",
                    "cpu_softirq_s"):
            c[col] = c[col] / c["cpu_window_s"]
        lines += [_section(c, "workload", "mean_size_bytes",
                           [("cpu_client_s", "client", 1), ("cpu_switch_s", "switch", 1),
                            ("cpu_frontend_s", "front-end", 1), ("cpu_backend_s", "back-ends", 1),
                            ("cpu_softirq_s", "softirq", 1)], []), ""]
    lines += extra or []
    if figures:
        lines += ["## Figures", ""]
        lines += [f"- [{p.name}]({p.name})" for p in figures if p.suffix == ".png"]
        lines += [""]
    path = out / f"{STEM}.md"
    path.write_text("\n".join(lines))
    return path
