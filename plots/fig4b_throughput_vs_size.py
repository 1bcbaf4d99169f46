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
    d = common.prepare(df)
    d = d[d["workload_kind"] == "fixed"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful fixed-size runs")
    return common.per_target_vs_size(d, "goodput_gbps", "goodput (Gbit/s)", TITLE, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
