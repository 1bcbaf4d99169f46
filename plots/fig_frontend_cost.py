"""Front-end cost: CPU seconds on the front-end host per 1,000 requests, by response size.

One series per L7 target (the ones with a front-end: HAProxy, nginx, Miresga);
one panel per connection mode.  A software L7 load balancer relays every
response byte, so its cost grows with the response; Miresga's front-end only
sees requests, so the point of the design is that its line stays flat.
Line: mean over repetitions; band: their range.
"""

from __future__ import annotations

from plots import common

STEM = "fig_frontend_cost"
TITLE = "Front-end CPU per 1,000 requests vs response size"


def draw(df, out_dir):
    import seaborn as sns

    d = common.prepare(df)
    if not d.empty:
        d = d[(d["workload_kind"] == "fixed") & (d["layer7"] == True)  # noqa: E712
              & d["frontend_cpu_s_per_kreq"].notna()]
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful fixed-size runs of an L7 target")
    order, colours, markers = common.palette(d)
    g = sns.relplot(data=d, x="size_bytes", y="frontend_cpu_s_per_kreq", hue="target_label",
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
    g.set_axis_labels("response size", "front-end CPU s / 1,000 requests")
    g.set_titles("{col_name}")
    g.legend.set_title("")
    g.figure.suptitle(TITLE, y=1.03)
    return common.save(g.figure, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
