"""Figure 4 (b): throughput vs response size, one series per target.

x: the fixed response size (log scale); y: goodput in Gbit/s (response
bodies, headers excluded); one panel per connection mode.  The line is the
mean over repetitions and the band their range (min to max).
"""

from __future__ import annotations

from plots import common

STEM = "fig4b_throughput_vs_size"
TITLE = "Figure 4 (b): throughput vs message size"


def draw(df, out_dir):
    import seaborn as sns

    d = common.prepare(df)
    d = d[d["workload_kind"] == "fixed"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful fixed-size runs")
    order, colours, markers = common.palette(d)
    g = sns.relplot(data=d, x="size_bytes", y="goodput_gbps", hue="target_label",
                    hue_order=order, palette=colours, style="target_label", markers=markers,
                    dashes=False, col="mode", col_order=common.mode_order(d), kind="line",
                    errorbar=("pi", 100), height=3.4, aspect=1.15)
    sizes = sorted(d["size_bytes"].unique())
    labels = {int(s): lab for s, lab in zip(d["size_bytes"], d["size_label"])}
    for ax in g.axes.flat:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([labels[int(s)] for s in sizes])
        ax.minorticks_off()
    g.set_axis_labels("response size", "goodput (Gbit/s)")
    g.set_titles("{col_name}")
    g.legend.set_title("")
    g.figure.suptitle(TITLE, y=1.03)
    return common.save(g.figure, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
