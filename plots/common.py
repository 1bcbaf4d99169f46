"""What every figure script shares: the table, cells with intervals, panels, captions, saving.

Figures are drawn from results alone (result files, or a directory's tidy.csv:
analysis.results.load_table), never by running anything.  Only successful
points are plotted; a target whose integrity check failed is plotted with
"[integrity FAILED]" in its label, so it can never pass for a good one.

Every number drawn is a cell's (analysis/cells.py): the mean over
repetitions, or for latency the percentile of their merged histogram, with
its 95% confidence interval as a band or an error bar (analysis/stats.py).
Every figure says so in its caption, and says what load produced it: wrk
runs closed loop and saturates the target.
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

from analysis import cells, conditions, stats
from analysis.results import closed_loop, load_table, open_loop
from plots import style

CI = (f"{stats.LEVEL:.0%} confidence interval ({stats.METHOD})")


def load(results_dir: str | Path):
    return load_table(Path(results_dir))


def prepare(df, load: str = "closed", budgeted: bool = False):
    """Successful rows of one load (closed: wrk's points, open: the open-loop points),
    with display columns: target label (marked), conn mode label.  Only the points
    without a front-end CPU budget, or (budgeted) only those with one: a figure that
    does not draw the budget must not average over it."""
    ok = df[df["status"] == "ok"]
    ok = (closed_loop(ok) if load == "closed" else open_loop(ok)).copy()
    if "frontend_cpu_cores" in ok:
        has = ok["frontend_cpu_cores"].notna()
        ok = ok[has if budgeted else ~has]
    elif budgeted:
        ok = ok.iloc[0:0]
    if ok.empty:
        return ok
    bad = set(df.loc[[v is False or (isinstance(v, str) and v == "False") or v == 0
                      for v in df["integrity_passed"]], "target"])
    ok["target_label"] = [style.label(t) + (style.INTEGRITY_MARK if t in bad else "")
                          for t in ok["target"]]
    ok["mode"] = [style.CONN_MODES.get(m, m) for m in ok["conn_mode"]]
    return ok


def palette(df) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """hue order, colour per label and marker per label, in the style's target order."""
    names = style.target_order(df["target"].unique())
    labels = {t: df.loc[df["target"] == t, "target_label"].iloc[0] for t in names}
    order = [labels[t] for t in names]
    colours = {labels[t]: style.colour(t, i) for i, t in enumerate(names)}
    markers = {labels[t]: style.marker(t) for t in names}
    return order, colours, markers


def mode_order(df) -> list[str]:
    return [v for k, v in style.CONN_MODES.items() if k in set(df["conn_mode"])]


def summarize(d, cols: list[str], x: str):
    """One row per (target, connection mode, x): each column's value and interval."""
    return cells.summarize(d, cols, by=["target", "target_label", "mode", x])


# ------------------------------------------------------------------ captions

def values(d, col: str) -> str:
    vals = sorted({v for v in d[col].dropna()}) if col in d else []
    return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals) or "?"


def reps(d) -> str:
    n = cells.ok_rows(d).groupby(cells.keys(d), dropna=False).size()
    if n.empty:
        return "no repetitions"
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} repetition{'s' if hi > 1 else ''}" if lo == hi else f"{lo}-{hi} repetitions"


def wrk_load(d) -> str:
    """What load wrk applied: closed loop, saturating."""
    return (f"wrk, closed loop and saturated: {values(d, 'connections')} connections on "
            f"{values(d, 'threads')} threads, each sending its next request as soon as the "
            f"previous response has arrived; {values(d, 'duration_s')} s measured after a "
            f"{values(d, 'warmup_s')} s warm-up; {reps(d)} per point.")


def merged(d, col: str) -> str:
    """How a latency percentile was obtained, for a caption."""
    if cells.has_histograms(d, col):
        return "of all repetitions' requests together (merged histograms)"
    return ("averaged over repetitions (these results carry no latency histograms; "
            "wrk's per-run percentiles, with its coordinated-omission correction)")


def interval_note(d, what: str = "Bands") -> str:
    note = f"{what}: {CI}."
    if reps(d).startswith("1 repetition"):
        note += " One repetition: no interval."
    return note


def provenance(d) -> str:
    """Smoke test and not-one-run warnings, for the caption (short)."""
    out = []
    smoke = conditions.smoke_test(d)
    if smoke:
        out.append(f"SMOKE TEST ({smoke}).")
    if len(conditions.revisions(d)) > 1 or conditions.gaps(d):
        out.append("NOT ONE RUN: several revisions or time windows (see report.md).")
    return " ".join(out)


def finish(fig, title: str, caption: str) -> None:
    """Title above, caption below (wrapped to the figure's width)."""
    fig.suptitle(title, y=1.04, fontsize=11)
    width = max(60, int(fig.get_figwidth() * 15))
    fig.text(0.0, -0.01, textwrap.fill(caption, width), ha="left", va="top", fontsize=7.5)


# ---------------------------------------------------------------- panels

def _band(ax, xs, lo, hi, colour):
    import numpy as np

    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.fill_between(np.asarray(xs, dtype=float)[ok], lo[ok], hi[ok], color=colour,
                        alpha=0.18, linewidth=0)


def size_axis(ax, d) -> None:
    """Log x with one tick per response size, labelled as the workloads name it."""
    sizes = sorted(d["size_bytes"].dropna().astype(float).unique())
    labels = {float(s): lab for s, lab in zip(d["size_bytes"].astype(float), d["size_label"])}
    ax.set_xscale("log")
    if sizes:
        ax.set_xlim(sizes[0] / 1.6, sizes[-1] * 1.6)
    ax.set_xticks(sizes)
    ax.set_xticklabels([labels[s] for s in sizes])
    ax.minorticks_off()


def lines_vs_size(ax, summary, col: str, mode: str, order, colours, markers, dash="-",
                  scale: float = 1.0) -> int:
    """One line per target of `col` against size, with its band; how many were drawn."""
    import numpy as np

    drawn = 0
    for label in order:
        s = summary[(summary["mode"] == mode) & (summary["target_label"] == label)]
        s = s.sort_values("size_bytes")
        if s.empty or not np.isfinite(s[col].astype(float)).any():
            continue
        xs = s["size_bytes"].astype(float)
        ax.plot(xs, s[col].astype(float) * scale, color=colours[label], marker=markers[label],
                markersize=4, linewidth=1.3, linestyle=dash)
        _band(ax, xs, s[f"{col}_lo"].astype(float) * scale,
              s[f"{col}_hi"].astype(float) * scale, colours[label])
        drawn += 1
    return drawn


def line_panels(d, series: list[tuple[str, str, object]], ylabel: str, title: str,
                caption: str, out_dir, stem: str, logy: bool = True, scale: float = 1.0):
    """Against response size, one panel per connection mode, one colour per target and one
    line style per series (col, label, dash); band: the interval."""
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    summary = summarize(d, [c for c, _, _ in series], "size_bytes")
    order, colours, markers = palette(d)
    modes = mode_order(d)
    fig, axes = plt.subplots(1, len(modes), figsize=(3.6 * len(modes) + 1.4, 3.3),
                             squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes):
        for col, _, dash in series:
            lines_vs_size(ax, summary, col, mode, order, colours, markers, dash, scale)
        size_axis(ax, d)
        if logy:
            ax.set_yscale("log")
        ax.set_title(mode, fontsize=10)
        ax.set_xlabel("response size")
    axes[0, 0].set_ylabel(ylabel)
    handles = [Line2D([], [], color=colours[lab], marker=markers[lab], label=lab)
               for lab in order]
    if len(series) > 1:
        handles += [Line2D([], [], color="black", linestyle=dash, label=lab)
                    for _, lab, dash in series]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=8)
    fig.tight_layout()
    finish(fig, title, caption)
    return save(fig, out_dir, stem)


def _bound(v) -> float | None:
    """An interval's end as a number, None where there is none (one repetition)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def dot_panels(d, rows: list[tuple[str, str]], ylabel: str, title: str, caption: str,
               out_dir, stem: str, logy: bool = True, scale: float = 1.0):
    """Per mix (x), one dot per target with its interval as an error bar; one row of
    panels per metric (col, row title), one column per connection mode."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    summary = summarize(d, [c for c, _ in rows], "workload_label")
    order, colours, markers = palette(d)
    modes = mode_order(d)
    mixes = sorted(d["workload_label"].unique())
    fig, axes = plt.subplots(len(rows), len(modes), figsize=(3.8 * len(modes) + 1.4,
                                                             2.7 * len(rows)),
                             squeeze=False, sharey="row")
    width = 0.7
    step = width / max(1, len(order))
    for r, (col, row_title) in enumerate(rows):
        for c, mode in enumerate(modes):
            ax = axes[r, c]
            for i, label in enumerate(order):
                s = summary[(summary["mode"] == mode) & (summary["target_label"] == label)]
                xs, ys, lo, hi = [], [], [], []
                for j, mix in enumerate(mixes):
                    v = s[s["workload_label"] == mix]
                    if v.empty or not np.isfinite(float(v[col].iloc[0])):
                        continue
                    xs.append(j - width / 2 + step * (i + 0.5))
                    y = float(v[col].iloc[0]) * scale
                    ys.append(y)
                    low, high = _bound(v[f"{col}_lo"].iloc[0]), _bound(v[f"{col}_hi"].iloc[0])
                    # One repetition has no interval: a dot without a bar.
                    lo.append(y - low * scale if low is not None else 0.0)
                    hi.append(high * scale - y if high is not None else 0.0)
                if xs:
                    ax.errorbar(xs, ys, yerr=[lo, hi], fmt=markers[label], color=colours[label],
                                markersize=5, capsize=2.5, linewidth=1.1)
            ax.set_xticks(range(len(mixes)))
            ax.set_xticklabels(mixes)
            ax.set_xlim(-0.6, len(mixes) - 0.4)
            if logy:
                ax.set_yscale("log")
            ax.set_title(f"{row_title}, {mode}" if row_title else mode, fontsize=10)
        axes[r, 0].set_ylabel(ylabel)
    handles = [Line2D([], [], color=colours[lab], marker=markers[lab], linestyle="",
                      label=lab) for lab in order]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=8)
    fig.tight_layout()
    finish(fig, title, caption)
    return save(fig, out_dir, stem)


# ------------------------------------------------------------------ output

def save(fig, out_dir: str | Path, stem: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def placeholder(out_dir, stem: str, title: str, why: str) -> list[Path]:
    """A figure that says why it is empty, rather than no file at all."""
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"{title}\n\n{why}", ha="center", va="center", wrap=True)
    return save(fig, out_dir, stem)


def main(draw, argv=None) -> int:
    """`python -m plots.figX RESULTS_DIR [OUT_DIR]` for one figure script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(f"usage: python -m {draw.__module__} RESULTS_DIR [OUT_DIR]", file=sys.stderr)
        return 2
    style.apply_theme()
    results = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else results / "figures"
    for p in draw(load(results), out):
        print(p)
    return 0
