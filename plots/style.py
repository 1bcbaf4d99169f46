"""Target labels, colours and markers: the one place every figure and report takes them from.

Later targets need no change here to be plotted (they get a fallback colour),
but their entry here gives them a stable label and colour across figures.
"""

from __future__ import annotations

# name -> (label in legends and tables, colour, marker); in legend order.
TARGETS: dict[str, tuple[str, str, str]] = {
    "direct": ("No LB (direct)", "#4d4d4d", "o"),
    "haproxy": ("HAProxy", "#1f77b4", "s"),
    "nginx": ("nginx", "#2ca02c", "^"),
    "l4switch": ("L4 switch LB", "#9467bd", "D"),
    "miresga": ("Miresga", "#d62728", "*"),
}
_FALLBACK = ["#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]

CONN_MODES = {"keep-alive": "keep-alive", "close": "one connection per request"}
PERCENTILES = {"p50": "p50", "p99": "p99", "p999": "p99.9"}
INTEGRITY_MARK = " [integrity FAILED]"


def target_order(names) -> list[str]:
    known = [t for t in TARGETS if t in set(names)]
    return known + sorted(set(names) - set(TARGETS))


def label(name: str) -> str:
    return TARGETS[name][0] if name in TARGETS else name


def colour(name: str, i: int = 0) -> str:
    return TARGETS[name][1] if name in TARGETS else _FALLBACK[i % len(_FALLBACK)]


def marker(name: str) -> str:
    return TARGETS[name][2] if name in TARGETS else "X"


def apply_theme() -> None:
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    # TrueType (Type 42) fonts in PDF and PostScript, not Type 3: what paper
    # submission systems (IEEE PDF eXpress, ACM TAPS) require, and text stays
    # text (searchable, editable) in the figure.
    matplotlib.rcParams["pdf.fonttype"] = 42
    matplotlib.rcParams["ps.fonttype"] = 42
