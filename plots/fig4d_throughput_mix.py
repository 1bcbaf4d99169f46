"""Figure 4 (d): throughput under the heavy-tailed Traffic 1-3, one bar per target.

y: goodput of the background load in Gbit/s (response bodies); columns:
connection mode.  Bars are the mean over repetitions, whiskers their range.
"""

from __future__ import annotations

from plots import common

STEM = "fig4d_throughput_mix"
TITLE = "Figure 4 (d): throughput under heavy-tailed traffic"


def draw(df, out_dir):
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import seaborn as sns

    d = common.prepare(df)
    d = d[d["workload_kind"] == "mix"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful mix runs")
    order, colours, _ = common.palette(d)
    workloads = sorted(d["workload_label"].unique())
    g = sns.catplot(data=d, x="workload_label", order=workloads, y="goodput_gbps",
                    hue="target_label", hue_order=order, palette=colours, col="mode",
                    col_order=common.mode_order(d), kind="bar", errorbar=("pi", 100),
                    capsize=0.1, height=3.2, aspect=1.2)
    g.set_axis_labels("", "goodput (Gbit/s)")
    g.set_titles("{col_name}")
    g.legend.set_title("")
    g.figure.suptitle(TITLE, y=1.03)
    return common.save(g.figure, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
