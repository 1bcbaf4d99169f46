"""Figure 4 (a): latency vs response size, one series per target.

x: the fixed response size (log scale); y: request latency in ms (log scale),
p50 solid and p99 dashed; one panel per connection mode.  The line is the
mean over repetitions and the band their range (min to max).
"""

from __future__ import annotations

from plots import common

STEM = "fig4a_latency_vs_size"
TITLE = "Figure 4 (a): latency vs message size"


def draw(df, out_dir):
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import pandas as pd
    import seaborn as sns

    d = common.prepare(df)
    d = d[d["workload_kind"] == "fixed"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful fixed-size runs")
    long = pd.melt(d, id_vars=["target_label", "mode", "size_bytes", "repetition"],
                   value_vars=["lat_p50_us", "lat_p99_us"], var_name="percentile",
                   value_name="latency_us")
    long["percentile"] = long["percentile"].map({"lat_p50_us": "p50", "lat_p99_us": "p99"})
    long["latency_ms"] = long["latency_us"] / 1000
    long = long.rename(columns={"target_label": "target"})
    order, colours, markers = common.palette(d)
    g = sns.relplot(data=long, x="size_bytes", y="latency_ms", hue="target",
                    hue_order=order, palette=colours, style="percentile",
                    style_order=["p50", "p99"], markers=True, dashes={"p50": "", "p99": (4, 2)},
                    col="mode", col_order=common.mode_order(d), kind="line",
                    errorbar=("pi", 100), height=3.4, aspect=1.15, facet_kws={"sharey": True})
    common.size_axes(g, d)
    g.set_axis_labels("response size", "latency (ms)")
    g.set_titles("{col_name}")
    g.figure.suptitle(TITLE, y=1.03)
    return common.save(g.figure, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
