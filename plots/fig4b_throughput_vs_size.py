"""Figure 4 (b): throughput vs response size, one series per target.

x: the fixed response size (log scale); y: goodput in Gbit/s (response
bodies, headers excluded; log scale); one panel per connection mode.  Line:
the mean over repetitions; band: its 95% confidence interval.  The load is
wrk's, closed loop and saturating: this is the most each target delivered.
"""

from __future__ import annotations

from plots import common

STEM = "fig4b_throughput_vs_size"
TITLE = "Figure 4 (b): throughput vs message size (closed loop, saturated)"


def draw(df, out_dir):
    d = common.prepare(df)
    d = d[d["workload_kind"] == "fixed"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful fixed-size runs")
    caption = (f"Goodput: response bodies delivered per second, mean over repetitions. "
               f"{common.wrk_load(d)} {common.interval_note(d)} {common.provenance(d)}")
    return common.line_panels(d, [("goodput_gbps", "goodput", "-")], "goodput (Gbit/s)",
                              TITLE, caption, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
