"""What every figure script shares: loading the tidy table and saving PNG + PDF.

Figures are drawn from result files alone (through analysis.results.tidy), never
by running anything.  Only successful points are plotted; a target whose
integrity check failed is plotted with "[integrity FAILED]" in its label, so
it can never pass for a good one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from analysis.results import tidy
from plots import style


def load(results_dir: str | Path):
    return tidy(Path(results_dir))


def prepare(df):
    """Successful rows, with display columns: target label (marked), conn mode label."""
    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return ok
    bad = set(df.loc[df["integrity_passed"] == False, "target"])  # noqa: E712
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


def size_axes(g, d) -> None:
    """Log-log axes with one tick per response size, labelled as the workloads name it."""
    sizes = sorted(d["size_bytes"].unique())
    labels = {int(s): lab for s, lab in zip(d["size_bytes"], d["size_label"])}
    for ax in g.axes.flat:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([labels[int(s)] for s in sizes])
        ax.minorticks_off()


def per_target_vs_size(d, y: str, ylabel: str, title: str, out_dir, stem: str):
    """One line per target of `y` against response size, a panel per connection mode;
    line: mean over repetitions, band: their range."""
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import seaborn as sns

    order, colours, markers = palette(d)
    g = sns.relplot(data=d, x="size_bytes", y=y, hue="target_label", hue_order=order,
                    palette=colours, style="target_label", markers=markers, dashes=False,
                    col="mode", col_order=mode_order(d), kind="line", errorbar=("pi", 100),
                    height=3.4, aspect=1.15)
    size_axes(g, d)
    g.set_axis_labels("response size", ylabel)
    g.set_titles("{col_name}")
    g.legend.set_title("")
    g.figure.suptitle(title, y=1.03)
    return save(g.figure, out_dir, stem)


def mode_order(df) -> list[str]:
    return [v for k, v in style.CONN_MODES.items() if k in set(df["conn_mode"])]


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
