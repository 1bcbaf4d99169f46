"""`python -m bench plots|claims|compare`: figures, report, claims and comparisons, from results alone.

    python -m bench plots                    # the last campaign run (results/latest)
    python -m bench plots results/quick      # any directory of result files
    python -m bench plots results/quick --out /tmp/figs
    python -m bench plots results/reference/default   # a directory with only tidy.csv
    python -m bench claims [RESULTS_DIR]     # the claims table (analysis/claims.py), to stdout
    python -m bench compare A B              # A / B per point, with intervals (analysis/compare.py)

Writes Figure 4 (a)-(d), the front-end cost, mechanism, re-route, latency-versus-offered-load
(open loop), budget and fault figures as
PNG and PDF, the tidy table (tidy.csv) and report.md into
RESULTS_DIR/figures/ (or --out).  Nothing is run: everything is redrawn from
the JSON result files, or, where there are none (a committed reference),
from RESULTS_DIR/tidy.csv and faults.csv, with the scripts under plots/.

`claims` exits 1 when there is nothing to claim (no successful point, or no
ratio the claims need), saying why on stderr; `compare` exits 1 when the two
share no point.  Both exit 2 when a directory holds no results at all.
"""

from __future__ import annotations

from pathlib import Path

import sys

from analysis.claims import claims_of
from analysis.compare import compare
from analysis.results import load_table
from common.errors import Error
from common.paths import REPO_ROOT, RESULTS_ROOT
from plots import (fig4a_latency_vs_size, fig4b_throughput_vs_size, fig4c_latency_mix,
                   fig4d_throughput_mix, fig_budget, fig_faults, fig_frontend_cost,
                   fig_latency_vs_load, fig_mechanism, fig_reroute, report, style)

LATEST = RESULTS_ROOT / "latest"
FIGURES = (fig4a_latency_vs_size, fig4b_throughput_vs_size, fig4c_latency_mix,
           fig4d_throughput_mix, fig_frontend_cost, fig_mechanism, fig_reroute,
           fig_latency_vs_load, fig_budget)


def add_parser(sub) -> None:
    """The `plots` and `claims` subcommands."""
    p = sub.add_parser("plots", help="draw the figures and the report from result files")
    p.add_argument("results", nargs="?", default=None,
                   help="directory of result files (default: results/latest, the last campaign)")
    p.add_argument("--out", default=None, help="output directory (default RESULTS/figures)")
    p.set_defaults(func=_plots)
    c = sub.add_parser("claims", help="the claims table (Markdown) from result files")
    c.add_argument("results", nargs="?", default=None,
                   help="directory of result files (default: results/latest)")
    c.set_defaults(func=_claims)
    k = sub.add_parser("compare", help="A / B point by point, with confidence intervals")
    k.add_argument("a", help="results directory (or tidy.csv) A")
    k.add_argument("b", help="results directory (or tidy.csv) B")
    k.set_defaults(func=_compare)


def shown(results: Path) -> str:
    """A results directory as the report names it: relative to the checkout when it
    is inside it, so that a committed report names no machine's paths."""
    try:
        return str(Path(results).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(results)


def draw_all(results: Path, out: Path) -> list[Path]:
    style.apply_theme()
    df = _table(results)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    df.to_csv(out / "tidy.csv", index=False)
    written.append(out / "tidy.csv")
    figures: list[Path] = []
    for fig in FIGURES:
        figures += fig.draw(df, out)
    figures += fig_faults.draw_faults(results, out)
    written += figures
    written.append(report.write(df, out, figures, source=shown(results),
                                extra=fig_latency_vs_load.report_lines(df)
                                + fig_faults.report_lines(results)))
    (out / "claims.md").write_text(claims_of(results).text)
    written.append(out / "claims.md")
    return written


def _table(results: Path):
    try:
        df = load_table(results)
    except ValueError as e:
        raise Error(str(e)) from None
    if df.empty:
        raise Error(f"no result files under {results} (and no {results}/tidy.csv)")
    return df


def _plots(args) -> int:
    results = Path(args.results) if args.results else LATEST
    if not results.exists():
        raise Error(f"{results}: no such directory" + (
            "; run a campaign first (make bench) or name a results directory"
            if args.results is None else ""))
    results = results.resolve()  # results/latest -> results/<campaign>
    out = Path(args.out) if args.out else results / "figures"
    for p in draw_all(results, out):
        print(p)
    return 0


def _claims(args) -> int:
    results = Path(args.results) if args.results else LATEST.resolve()
    if not results.exists():
        raise Error(f"{results}: no such directory")
    _table(results)  # no results at all: an error (exit 2)
    c = claims_of(results)
    print(c.text, end="")
    if c.measured == 0:
        print(f"nothing to claim: {c.reason}", file=sys.stderr)
        return 1
    return 0


def _compare(args) -> int:
    for p in (args.a, args.b):
        if not Path(p).exists():
            raise Error(f"{p}: no such file or directory")
    try:
        c = compare(Path(args.a), Path(args.b))
    except ValueError as e:
        raise Error(str(e)) from None
    print(c.text, end="")
    if c.matched == 0:
        print(f"no point in common: {c.only_a} cells only in {args.a}, {c.only_b} only in "
              f"{args.b} (cells match on target, workload, mode and load parameters)",
              file=sys.stderr)
        return 1
    return 0
