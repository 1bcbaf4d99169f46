"""Figure 4 (d): throughput under the heavy-tailed Traffic 1-3, one dot per target.

y: goodput of the background load in Gbit/s (response bodies), on a log
scale: Traffic 1 is all 1 KB responses and moves two orders of magnitude
fewer bytes than Traffic 3, which a linear axis would flatten to zero; a
second row gives requests/s, the natural unit for Traffic 1.  Columns:
connection mode.  Dots: mean over repetitions; error bars: 95% confidence
intervals.  The background load is wrk's, closed loop and saturating.
"""

from __future__ import annotations

from plots import common

STEM = "fig4d_throughput_mix"
TITLE = "Figure 4 (d): throughput under heavy-tailed traffic (closed loop, saturated)"


def draw(df, out_dir):
    d = common.prepare(df)
    d = d[d["workload_kind"] == "mix"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful mix runs")
    d = d.assign(krequests_per_s=d["requests_per_s"] / 1000)
    caption = (f"Top: goodput (response bodies per second); bottom: thousands of requests "
               f"per second; both log scale. {common.wrk_load(d)} "
               f"{common.interval_note(d, 'Error bars')} {common.provenance(d)}")
    return common.dot_panels(d, [("goodput_gbps", "goodput (Gbit/s)"),
                                 ("krequests_per_s", "1,000 requests/s")],
                             "", TITLE, caption, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
