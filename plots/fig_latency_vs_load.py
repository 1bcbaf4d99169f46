"""Latency versus offered load (open loop), one line per target and percentile.

x: the offered rate in requests/s (all clients together, the same rates for
every target); y: latency in ms (log scale) from each request's intended send
time (bench/openloop.py), p50 solid, p99 dashed, p99.9 dotted, each the
percentile of the merged histogram of every client's streams and every
repetition (analysis/cells.py), with its 95% bootstrap interval as a band.
One panel per workload and connection mode; under a mix, the latency of the
1 KB probe beside the load (open loop too).  Where latency leaves its flat
part is the target's knee.  A point whose target completed less than
`claims.CARRIED` of the offered requests in the window is drawn hollow: past
its capacity, the target sets the rate, not the generator.
"""

from __future__ import annotations

from analysis import cells
from analysis.claims import CARRIED
from plots import common

STEM = "fig_latency_vs_load"
TITLE = "Latency vs offered load (open loop)"
SERIES = (("p50", "-", "50"), ("p99", "--", "99"), ("p99.9", ":", "999"))


def _panels(d) -> list[tuple[str, str, str]]:
    """(workload, workload label, connection mode label) of every panel, fixed sizes first."""
    out = []
    order = d.sort_values(["workload_kind", "mean_size_bytes"], kind="stable")
    for w in dict.fromkeys(order["workload"]):
        dw = d[d["workload"] == w]
        for mode in common.mode_order(dw):
            out.append((w, dw["workload_label"].iloc[0], mode))
    return out


def draw(df, out_dir):
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    d = common.prepare(df, load="open")
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful open-loop runs")
    panels = _panels(d)
    order, colours, markers = common.palette(d)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels) + 1.6, 3.4),
                             squeeze=False)
    for ax, (w, wlabel, mode) in zip(axes[0], panels):
        dw = d[(d["workload"] == w) & (d["mode"] == mode)]
        mix = (dw["workload_kind"] == "mix").any()
        prefix = "probe_lat" if mix else "lat"
        cols = [f"{prefix}_p{k}_us" for _, _, k in SERIES]
        summary = cells.summarize(dw, cols + ["achieved_ratio"],
                                  by=["target", "target_label", "offered_rate"])
        for label in order:
            s = summary[summary["target_label"] == label].sort_values("offered_rate")
            if s.empty:
                continue
            xs = s["offered_rate"].astype(float).to_numpy()
            carried = (s["achieved_ratio"].astype(float) >= CARRIED).to_numpy()
            for (_, dash, _), col in zip(SERIES, cols):
                ys = s[col].astype(float).to_numpy() / 1000
                if not np.isfinite(ys).any():
                    continue
                ax.plot(xs, ys, color=colours[label], linestyle=dash, linewidth=1.2)
                ax.scatter(xs[carried], ys[carried], color=colours[label],
                           marker=markers[label], s=16, zorder=3)
                ax.scatter(xs[~carried], ys[~carried], facecolors="none",
                           edgecolors=colours[label], marker=markers[label], s=16, zorder=3)
                common._band(ax, xs, s[f"{col}_lo"].astype(float) / 1000,
                             s[f"{col}_hi"].astype(float) / 1000, colours[label])
        ax.set_yscale("log")
        ax.set_xlabel("offered load (requests/s)")
        ax.set_title(f"{wlabel}, {mode}" + (" (1 KB probe)" if mix else ""), fontsize=10)
    axes[0, 0].set_ylabel("latency (ms)")
    handles = [Line2D([], [], color=colours[lab], marker=markers[lab], label=lab)
               for lab in order]
    handles += [Line2D([], [], color="black", linestyle=dash, label=name)
                for name, dash, _ in SERIES]
    handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="none",
                          linestyle="", label=f"completed < {CARRIED:.0%} of offered"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=8)
    fig.tight_layout()
    finish_caption(fig, d)
    return common.save(fig, out_dir, STEM)


def finish_caption(fig, d) -> None:
    # Late without having waited for a connection: the generator behind its own
    # schedule, at points the target carried (past its capacity every request waits).
    carried = d[d["achieved_ratio"].astype(float) >= CARRIED]
    behind = ((carried["late"].astype(float) - carried["waited_for_connection"].astype(float))
              .clip(lower=0) / carried["requests"].astype(float))
    worst = behind.max() if behind.notna().any() else None
    caption = (
        f"Open loop: requests sent at a constant rate (the offered load, the same for "
        f"every target, from {common.values(d, 'clients')} client host(s) together), each "
        f"request's latency counted from its intended send time to its last byte, so "
        f"queueing is not hidden (no coordinated omission). p50 (solid), p99 (dashed), "
        f"p99.9 (dotted) {common.merged(d, 'lat_p99_us')} and of every client's streams. "
        f"Under a mix: the 1 KB probe sent open loop beside the load. "
        f"{common.values(d, 'duration_s')} s measured after a {common.values(d, 'warmup_s')} "
        f"s warm-up; {common.reps(d)} per point. "
        + (f"Generator behind its schedule (a request sent > {common.values(d, 'late_ms')} "
           f"ms after its due time with a connection free): at most {worst:.1%} of the "
           f"requests of a point the target carried. " if worst is not None else "")
        + f"{common.interval_note(d)} {common.provenance(d)}")
    common.finish(fig, TITLE, caption)


def report_lines(df) -> list[str]:
    """The open-loop section of report.md: per workload and mode, one row per target and
    offered rate (empty without open-loop points)."""
    d = common.prepare(df, load="open")
    if d.empty:
        return []
    out = ["## Latency versus offered load (open loop)", "",
           "Every request's latency from its intended send time (no coordinated omission), "
           "percentiles of the merged histogram of every client and repetition, p99 with its "
           f"{common.CI}. Offered: the rate sent, the same for every target; achieved: "
           "responses completed per second in the measured window; late: requests sent more "
           "than late_ms after their due time; waited: requests that found every connection "
           "busy (past a target's capacity, most are both: the target, not the generator, "
           "is behind). "
           "See fig_latency_vs_load.", ""]
    for w, wlabel, mode in _panels(d):
        dw = d[(d["workload"] == w) & (d["mode"] == mode)]
        mix = (dw["workload_kind"] == "mix").any()
        prefix = "probe_lat" if mix else "lat"
        cols = [f"{prefix}_p50_us", f"{prefix}_p99_us", f"{prefix}_p999_us", "requests_per_s"]
        summary = cells.summarize(dw, cols, by=["target", "target_label", "offered_rate"])
        what = "1 KB probe" if mix else "latency"
        out += [f"### {wlabel}, {mode}", "",
                f"| target | offered req/s | achieved req/s | {what} p50 ms | p99 ms | "
                f"p99.9 ms | late | waited | reps |", "|---|---|---|---|---|---|---|---|---|"]
        for label in common.palette(dw)[0]:
            s = summary[summary["target_label"] == label].sort_values("offered_rate")
            for r in s.itertuples():
                rows = dw[(dw["target_label"] == label) & (dw["offered_rate"] == r.offered_rate)]
                p99 = getattr(r, f"{prefix}_p99_us")
                lo, hi = getattr(r, f"{prefix}_p99_us_lo"), getattr(r, f"{prefix}_p99_us_hi")
                lo, hi = common._bound(lo), common._bound(hi)
                ci = f" [{lo / 1000:.2f}, {hi / 1000:.2f}]" if None not in (lo, hi) else ""
                out.append(f"| {label} | {r.offered_rate:,.0f} | {r.requests_per_s:,.0f} | "
                           f"{getattr(r, f'{prefix}_p50_us') / 1000:.2f} | {p99 / 1000:.2f}{ci} "
                           f"| {getattr(r, f'{prefix}_p999_us') / 1000:.2f} | "
                           f"{int(rows['late'].astype(float).sum()):,} | "
                           f"{int(rows['waited_for_connection'].astype(float).sum()):,} | "
                           f"{r.n} |")
        out.append("")
    return out


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
