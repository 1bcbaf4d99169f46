"""The mechanism: where the bytes went, per target, against response size.

Rows, each from a column of the tidy table:

* offloaded byte share (`offloaded_byte_share`): bytes the switch moved
  alone over all bytes of the point, from Miresga's own counters;
* front-end packets per connection (`frontend_pkts_per_conn`);
* client duplicates per 1,000 connections (`client_dup_per_kconn`: PAWS drops
  and duplicate SACKs counted by the client's kernel), the cost of bytes that
  arrive twice when a response takes two paths (docs/design.md section 9);
* client out-of-order segments per 1,000 connections (`client_ofo_per_kconn`).

The client counters are the deltas of the client hosts' kernel TCP
counters over the measured window (bench/netstat.py, `metrics.netstat`), per
connection the clients opened (their ActiveOpens).

One column per connection mode; line: mean over repetitions, band: 95%
confidence interval.  A row whose column the results do not have (results
written before the runner kept the client counters) says so instead of
drawing nothing.
"""

from __future__ import annotations

from plots import common

STEM = "fig_mechanism"
TITLE = "Mechanism: offload, front-end packets and duplicates (closed loop, saturated)"
ROWS = [
    ("offloaded_byte_share", "offloaded byte share", False),
    ("frontend_pkts_per_conn", "front-end packets / connection", True),
    ("client_dup_per_kconn", "client duplicates / 1,000 conn.\n(PAWS drops + DSACKs)", True),
    ("client_ofo_per_kconn", "client out-of-order / 1,000 conn.", True),
]


def missing(df) -> list[str]:
    """The columns of the figure for which the table has no value at all."""
    return [c for c, _, _ in ROWS if c not in df.columns or not df[c].notna().any()]


def draw(df, out_dir):
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    d = common.prepare(df)
    d = d[d["workload_kind"] == "fixed"] if not d.empty else d
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE, "no successful fixed-size runs")
    present = [c for c, _, _ in ROWS if c in d and d[c].notna().any()]
    summary = common.summarize(d, present, "size_bytes") if present else None
    order, colours, markers = common.palette(d)
    modes = common.mode_order(d)
    fig, axes = plt.subplots(len(ROWS), len(modes), figsize=(3.6 * len(modes) + 1.6,
                                                             2.3 * len(ROWS)),
                             squeeze=False, sharex=True)
    for r, (col, ylabel, logy) in enumerate(ROWS):
        for c, mode in enumerate(modes):
            ax = axes[r, c]
            common.size_axis(ax, d)
            if c == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            if r == 0:
                ax.set_title(mode, fontsize=10)
            if col not in present:
                why = ("not in these results: column\n" if col not in df else
                       "no values in these results: column\n") + f"`{col}`"
                ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=8,
                        transform=ax.transAxes, color="0.35")
                ax.set_yticks([])
                continue
            if not common.lines_vs_size(ax, summary, col, mode, order, colours, markers):
                ax.text(0.5, 0.5, "no target reports it", ha="center", va="center",
                        fontsize=8, transform=ax.transAxes, color="0.35")
            if logy:
                ax.set_yscale("symlog", linthresh=1)
            else:
                ax.set_ylim(-0.02, 1.02)
        axes[-1, 0].set_xlabel("response size")
    handles = [Line2D([], [], color=colours[lab], marker=markers[lab], label=lab)
               for lab in order]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=8)
    fig.tight_layout()
    caption = (f"Per point, from counter deltas over the measured run. Offloaded share: "
               f"Miresga's switch counters (offloaded bytes / (offloaded + handed to a "
               f"front-end)); front-end packets: the same counters' packets handed to a front-end; "
               f"other targets have no such counters. Duplicates and out-of-order: the client "
               f"hosts' kernel TCP counters, per connection they opened. {common.wrk_load(d)} "
               f"{common.interval_note(d)} {common.provenance(d)}")
    common.finish(fig, TITLE, caption)
    return common.save(fig, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
