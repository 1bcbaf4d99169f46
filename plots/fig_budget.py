"""Equal front-end budget: throughput and p99 against the CPU every front-end host may use.

x: the budget in cores (`frontend_cpu_cores`, a CFS quota on the front-end
host's cgroup: bench/budget.py); one column of panels per response size and
connection mode; top row requests/s, bottom row p99 latency.  Line: the mean
over repetitions (p99: of their merged histograms); band: its 95% confidence
interval.  This is where the paper's 3.9x (load-balancer capacity per server
budget) is tested: every L7 target's front-end gets the same CPUs, while
the switch, the back-ends and the client share the rest of the machine.
"""

from __future__ import annotations

from analysis import cells
from plots import common

STEM = "fig_budget"
TITLE = "Throughput and p99 at an equal front-end CPU budget (closed loop, saturated)"
ROWS = (("requests_per_s", "requests/s", 1.0), ("lat_p99_us", "p99 latency (ms)", 1e-3))


def draw(df, out_dir):
    d = common.prepare(df, budgeted=True)
    if not d.empty:
        d = d[d["workload_kind"] == "fixed"]
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE,
                                  "no successful fixed-size runs with a front-end budget "
                                  "(experiments/budget.toml)")
    # heavy: imported when a figure is made, so `python -m bench` starts fast
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    summary = cells.summarize(d, [c for c, _, _ in ROWS],
                                     by=["target", "target_label", "mode", "size_bytes",
                                         "frontend_cpu_cores"])
    order, colours, markers = common.palette(d)
    sizes = sorted(d["size_bytes"].astype(float).unique())
    size_label = {float(s): lab for s, lab in zip(d["size_bytes"].astype(float), d["size_label"])}
    columns = [(s, m) for s in sizes for m in common.mode_order(d)]
    budgets = sorted(d["frontend_cpu_cores"].astype(float).unique())
    fig, axes = plt.subplots(len(ROWS), len(columns), figsize=(2.9 * len(columns) + 1.4, 5.4),
                             squeeze=False)
    for c, (size, mode) in enumerate(columns):
        for r, (col, ylabel, scale) in enumerate(ROWS):
            ax = axes[r, c]
            for label in order:
                s = summary[(summary["target_label"] == label) & (summary["mode"] == mode)
                            & (summary["size_bytes"].astype(float) == size)]
                s = s.sort_values("frontend_cpu_cores")
                if s.empty or not np.isfinite(s[col].astype(float)).any():
                    continue
                xs = s["frontend_cpu_cores"].astype(float)
                ax.plot(xs, s[col].astype(float) * scale, color=colours[label],
                        marker=markers[label], markersize=4, linewidth=1.3)
                common._band(ax, xs, s[f"{col}_lo"].astype(float) * scale,
                             s[f"{col}_hi"].astype(float) * scale, colours[label])
            ax.set_xscale("log", base=2)
            ax.set_xticks(budgets)
            ax.set_xticklabels([f"{b:g}" for b in budgets])
            ax.minorticks_off()
            ax.set_yscale("log")
            if r == 0:
                ax.set_title(f"{size_label[size]}, {mode}", fontsize=9)
            if r == len(ROWS) - 1:
                ax.set_xlabel("front-end budget (cores)")
            if c == 0:
                ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=colours[lab], marker=markers[lab], label=lab)
               for lab in order]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=8)
    fig.tight_layout()
    caption = (f"Every front-end host (HAProxy's, nginx's, the Miresga front-end's) capped at "
               f"the budget by a CFS quota on its cgroup; the switch, back-ends and client are "
               f"not capped. Throughput: mean over repetitions; p99: "
               f"{common.merged(d, 'lat_p99_us')}. {common.wrk_load(d)} "
               f"{common.interval_note(d)} {common.provenance(d)}")
    common.finish(fig, TITLE, caption)
    return common.save(fig, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
