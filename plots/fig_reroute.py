"""Re-routing per request: throughput when every request of a kept-alive connection goes to
the other cluster, one bar per target.

The re-route workload (bench/reroute.py) sends a kept-alive connection's
requests to one cluster and the other in turn, one at a time, so every
request after a connection's first changes cluster.  Left: thousands of requests per second (mean over
repetitions, error bar: the interval).  Right: what the counters say about
the L7 decisions: Miresga's share of requests its front-end re-routed
(decisions.other_backend) per request of the load, and for every target the share of the requests
the less-loaded cluster's back-ends answered (0.5: an even split).  Targets
that cannot route by path or Host are drawn as "not applicable", not left
out, so the figure says why they have no bar.
"""

from __future__ import annotations

from analysis import cells
from plots import common, style

STEM = "fig_reroute"
TITLE = "Re-routing on every request (kept-alive connections, closed loop, saturated)"


def _not_applicable(df, kind_rows) -> dict[str, str]:
    na = df[(df["status"] == "not_applicable") & (df["workload_kind"] == "reroute")]
    if "conn_mode" in na:
        na = na[na["conn_mode"] == "keep-alive"]
    measured = set(kind_rows["target"]) if not kind_rows.empty else set()
    return {t: str(na.loc[na["target"] == t, "error"].iloc[0])
            for t in na["target"].unique() if t not in measured}


def draw(df, out_dir):
    d = common.prepare(df)
    d = d[(d["workload_kind"] == "reroute") & (d["conn_mode"] == "keep-alive")] \
        if not d.empty else d
    na = _not_applicable(df, d) if not df.empty and "workload_kind" in df else {}
    if d.empty:
        why = "no successful re-route runs"
        if na:
            why += "; not applicable: " + ", ".join(style.label(t) for t in na)
        return common.placeholder(out_dir, STEM, TITLE, why)
    import matplotlib.pyplot as plt
    import numpy as np

    targets = style.target_order(list(d["target"].unique()) + list(na))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.2))
    xs = np.arange(len(targets))
    for i, t in enumerate(targets):
        colour = style.colour(t, i)
        rows = d[d["target"] == t]
        if rows.empty:
            for ax in (left, right):
                ax.text(i, 0.02, "not\napplicable", ha="center", va="bottom", fontsize=7,
                        transform=ax.get_xaxis_transform(), color="0.35")
            continue
        iv = cells.estimate(rows, "requests_per_s").scaled(1e-3)
        if not iv.ok:
            continue
        # One repetition has no interval: a bar without an error bar.
        lo = iv.value - iv.low if iv.has_interval else 0.0
        hi = iv.high - iv.value if iv.has_interval else 0.0
        left.bar(i, iv.value, color=colour, yerr=[[lo], [hi]], capsize=3)
        share = cells.value(rows, "cluster_min_share")
        rate = cells.value(rows, "reroute_rate")
        if share is not None and share == share:
            right.bar(i - 0.2, share, width=0.4, color=colour, alpha=0.5, hatch="//")
        if rate is not None and rate == rate:
            right.bar(i + 0.2, rate, width=0.4, color=colour)
    for ax in (left, right):
        ax.set_xticks(xs)
        ax.set_xticklabels([style.label(t) for t in targets], fontsize=8)
    left.set_ylabel("1,000 requests/s")
    left.set_title("throughput", fontsize=10)
    right.set_ylim(0, 1.05)
    right.set_ylabel("share of requests")
    right.set_title("hatched: less-loaded cluster; solid: re-routed", fontsize=9)
    workload = d["workload_label"].iloc[0]
    reasons = "; ".join(f"{style.label(t)}: {why}" for t, why in na.items())
    caption = (f"{workload}: every request after a connection's first goes to the other "
               f"cluster, one request at a time (one wrk thread per connection). "
               f"{common.wrk_load(d)} Re-routed: Miresga's front-end counter "
               f"(decisions.other_backend) per request of the load; HAProxy and nginx keep "
               f"no such count. "
               f"Cluster split: requests the back-ends of each cluster answered (nginx "
               f"stub_status). {common.interval_note(d, 'Error bars')}"
               + (f" Not applicable: {reasons}." if reasons else "")
               + f" {common.provenance(d)}")
    fig.tight_layout()
    common.finish(fig, TITLE, caption)
    return common.save(fig, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
