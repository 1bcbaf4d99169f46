"""Figure 4 (c): 1 KB latency under the heavy-tailed Traffic 1-3, one dot per target.

The latency is the 1 KB probe's (a paced low-rate wrk beside the background
load), as in the paper, which measures only 1 KB messages under these mixes.
Rows: p50 and p99 of the merged histogram of the probe's requests over all
repetitions; columns: connection mode; log scale, since the targets differ by
orders of magnitude.  Error bars: 95% confidence intervals.
"""

from __future__ import annotations

from plots import common

STEM = "fig4c_latency_mix"
TITLE = "Figure 4 (c): 1 KB latency under heavy-tailed traffic (saturating background load)"


def draw(df, out_dir):
    d = common.prepare(df)
    d = d[d["workload_kind"] == "mix"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful mix runs")
    caption = (f"Latency of a 1 KB probe (wrk, {common.values(d, 'probe_connections')} "
               f"connections, each pausing {common.values(d, 'probe_interval_ms')} ms before "
               f"every request: paced, not saturating) beside the background load of the mix. "
               f"Background: {common.wrk_load(d)} Percentiles of the probe's requests "
               f"{common.merged(d, 'probe_lat_p99_us')}. {common.interval_note(d, 'Error bars')} "
               f"{common.provenance(d)}")
    return common.dot_panels(d, [("probe_lat_p50_us", "1 KB p50"),
                                 ("probe_lat_p99_us", "1 KB p99")],
                             "latency (ms)", TITLE, caption, out_dir, STEM, scale=1e-3)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
