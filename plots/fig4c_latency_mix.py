"""Figure 4 (c): 1 KB latency under the heavy-tailed Traffic 1-3, one bar per target.

The latency is the 1 KB probe's (a paced low-rate wrk beside the background
load), as in the paper, which measures only 1 KB messages under these mixes.
Rows: p50 and p99; columns: connection mode.  Bars are the mean over
repetitions, whiskers their range.
"""

from __future__ import annotations

from plots import common

STEM = "fig4c_latency_mix"
TITLE = "Figure 4 (c): 1 KB latency under heavy-tailed traffic"


def draw(df, out_dir):
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import pandas as pd
    import seaborn as sns

    d = common.prepare(df)
    d = d[d["workload_kind"] == "mix"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful mix runs")
    long = pd.melt(d, id_vars=["target_label", "mode", "workload_label", "repetition"],
                   value_vars=["probe_lat_p50_us", "probe_lat_p99_us"], var_name="percentile",
                   value_name="latency_us")
    long["percentile"] = long["percentile"].map({"probe_lat_p50_us": "1 KB p50",
                                                 "probe_lat_p99_us": "1 KB p99"})
    long["latency_ms"] = long["latency_us"] / 1000
    order, colours, _ = common.palette(d)
    workloads = sorted(d["workload_label"].unique())
    g = sns.catplot(data=long, x="workload_label", order=workloads, y="latency_ms",
                    hue="target_label", hue_order=order, palette=colours, row="percentile",
                    row_order=["1 KB p50", "1 KB p99"], col="mode",
                    col_order=common.mode_order(d), kind="bar", errorbar=("pi", 100),
                    capsize=0.1, height=2.8, aspect=1.3, sharey="row")
    g.set_axis_labels("", "latency (ms)")
    g.set_titles("{row_name}, {col_name}")
    g.legend.set_title("")
    g.figure.suptitle(TITLE, y=1.03)
    return common.save(g.figure, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
