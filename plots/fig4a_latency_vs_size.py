"""Figure 4 (a): latency vs response size, one series per target.

x: the fixed response size (log scale); y: request latency in ms (log scale),
p50 solid and p99 dashed, each the percentile of the merged histogram of the
repetitions (analysis/cells.py); one panel per connection mode.  Band: the
95% confidence interval of that percentile (bootstrap over repetitions).
The load is wrk's, closed loop: every connection always has one request
outstanding, so these are latencies of a saturated target.
"""

from __future__ import annotations

from plots import common

STEM = "fig4a_latency_vs_size"
TITLE = "Figure 4 (a): latency vs message size (closed loop, saturated)"


def draw(df, out_dir):
    d = common.prepare(df)
    d = d[d["workload_kind"] == "fixed"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful fixed-size runs")
    caption = (f"Latency of every request of the load, from writing the request to its "
               f"last byte: p50 (solid) and p99 (dashed) {common.merged(d, 'lat_p99_us')}. "
               f"{common.wrk_load(d)} "
               f"{common.interval_note(d)} {common.provenance(d)}")
    return common.line_panels(d, [("lat_p50_us", "p50", "-"), ("lat_p99_us", "p99", "--")],
                              "latency (ms)", TITLE, caption, out_dir, STEM, scale=1e-3)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
