"""`python -m bench plots [RESULTS_DIR]`: the paper's figures and a report, from result files alone.

    python -m bench plots                    # the last campaign run (results/latest)
    python -m bench plots results/quick      # any directory of result files
    python -m bench plots results/quick --out /tmp/figs
    python -m bench claims [RESULTS_DIR]     # the claims table (analysis/claims.py), to stdout

Writes Figure 4 (a)-(d) as PNG and PDF, the tidy table (tidy.csv) and
report.md into RESULTS_DIR/figures/ (or --out).  Nothing is run: the figures
are redrawn from the JSON result files, with the scripts under plots/.
"""

from __future__ import annotations

from pathlib import Path

from analysis.claims import claims
from analysis.results import tidy
from common.errors import Error
from common.paths import RESULTS_ROOT
from plots import (fig4a_latency_vs_size, fig4b_throughput_vs_size, fig4c_latency_mix,
                   fig4d_throughput_mix, fig_faults, fig_frontend_cost, report, style)

LATEST = RESULTS_ROOT / "latest"
FIGURES = (fig4a_latency_vs_size, fig4b_throughput_vs_size, fig4c_latency_mix,
           fig4d_throughput_mix, fig_frontend_cost)


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


def draw_all(results: Path, out: Path) -> list[Path]:
    style.apply_theme()
    df = tidy(results)
    if df.empty:
        raise Error(f"no result files under {results}")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    df.to_csv(out / "tidy.csv", index=False)
    written.append(out / "tidy.csv")
    figures: list[Path] = []
    for fig in FIGURES:
        figures += fig.draw(df, out)
    figures += fig_faults.draw_faults(results, out)
    written += figures
    written.append(report.write(df, out, figures, source=str(results),
                                extra=fig_faults.report_lines(results)))
    (out / "claims.md").write_text(claims(results))
    written.append(out / "claims.md")
    return written


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
    print(claims(Path(args.results) if args.results else LATEST.resolve()), end="")
    return 0
