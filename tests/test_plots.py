"""Figures and report from result files alone (committed fixtures), nothing run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.claims import claims
from analysis.results import read_result, result_files, tidy, tidy_row
from bench.plotting import FIGURES, draw_all

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
STEMS = ["fig4a_latency_vs_size", "fig4b_throughput_vs_size", "fig4c_latency_mix",
         "fig4d_throughput_mix", "fig_frontend_cost"]


@pytest.fixture
def results(tmp_path) -> Path:
    """The fixtures, plus a 2nd repetition, a second target that failed integrity, a failed point."""
    root = tmp_path / "results"
    for f in result_files(FIXTURES):
        doc = read_result(f)
        rel = f.relative_to(FIXTURES)
        _write(root / rel, doc)
        rep2 = _scaled(doc, 0.9, repetition=2)
        _write(root / str(rel).replace("rep1", "rep2"), rep2)
        other = _scaled(doc, 0.5, target="haproxy")
        other["integrity"] = {**(doc["integrity"] or {}), "passed": False}
        # An L7 target with a front-end that burns CPU in proportion to bytes.
        other["target"] = {**(doc.get("target") or {}), "name": "haproxy", "layer7": True}
        if other.get("metrics"):
            cpu = other["metrics"].setdefault("cpu", {}).setdefault("per_role_s", {})
            cpu["frontend"] = 1e-9 * (other["parameters"].get("size_bytes") or 1024) * \
                other["metrics"]["load"]["requests"]
        _write(root / str(rel).replace("direct/", "haproxy/"), other)
    failed = copy.deepcopy(read_result(next(iter(result_files(FIXTURES)))))
    failed.update(status="failed", error="load: wrk exited with 1: boom", metrics=None)
    failed["parameters"]["repetition"] = 3
    failed["point_id"] = failed["point_id"].replace("rep1", "rep3")
    _write(root / "quick" / "direct" / "failed-rep3.json", failed)
    return root


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _scaled(doc: dict, k: float, repetition: int | None = None, target: str | None = None) -> dict:
    d = copy.deepcopy(doc)
    load = d["metrics"]["load"]
    for key in ("requests_per_s", "bytes_per_s", "goodput_bytes_per_s"):
        load[key] *= k
    for p, v in load["latency_us"]["percentiles"].items():
        load["latency_us"]["percentiles"][p] = v / k
    if repetition:
        d["parameters"]["repetition"] = repetition
        d["point_id"] = d["point_id"].replace("rep1", f"rep{repetition}")
    if target:
        d["parameters"]["target"] = d["parameters"]["target_name"] = target
        d["point_id"] = d["point_id"].replace("direct/", f"{target}/")
    return d


def test_tidy_table_has_every_parameter_on_every_row(results):
    """One row per result file; every row carries every parameter; failed rows have no numbers."""
    df = tidy(results)
    assert len(df) == 16 * 3 + 1
    for col in ("layer7", "frontend_cpu_s_per_kreq", "target", "workload", "conn_mode", "connections", "threads", "duration_s",
                "warmup_s", "repetition", "seed", "size_bytes", "mix", "integrity_passed",
                "requests_per_s", "goodput_gbps", "lat_p99_us", "probe_lat_p99_us",
                "cpu_client_s", "cpu_backend_s", "cpu_softirq_s", "git_revision"):
        assert col in df.columns, col
    assert df[["target", "workload", "conn_mode", "connections", "repetition"]].notna().all().all()
    failed = df[df["status"] == "failed"]
    assert len(failed) == 1 and failed["requests_per_s"].isna().all()
    mixes = df[(df["workload_kind"] == "mix") & (df["status"] == "ok")]
    assert mixes["probe_lat_p99_us"].notna().all()


def test_all_four_figures_and_the_report_render(results, tmp_path):
    """Figure 4 (a)-(d) as PNG and PDF, the report with ratios vs direct, integrity flagged."""
    out = tmp_path / "figures"
    written = draw_all(results, out)
    for stem in STEMS:
        for ext in ("png", "pdf"):
            f = out / f"{stem}.{ext}"
            assert f in written and f.stat().st_size > 5000, f
    assert (out / "fig4a_latency_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "fig4a_latency_vs_size.pdf").read_bytes()[:5] == b"%PDF-"
    report = (out / "report.md").read_text()
    assert "HAProxy **FAILED**" in report  # integrity, stated up front
    assert "HAProxy [integrity FAILED]" in report  # and on every row of that target
    assert "wrk exited with 1: boom" in report
    assert "0.53x" in report  # haproxy: 0.5 of rep 1, direct: mean of 1.0 and 0.9
    assert "| No LB (direct) | Traffic 3 | 2 |" in report
    assert len(FIGURES) == 5


def test_frontend_busy_time_per_thousand_requests(results):
    """A polling front-end's busy time: the counter's growth over the point, per 1,000
    requests served; empty when the target has no such counter."""
    path = next(p for p in result_files(results) if "/haproxy/" in str(p))
    doc = copy.deepcopy(read_result(path))
    assert tidy_row(doc)["frontend_busy_s_per_kreq"] is None
    doc["target"]["stats"] = {"before": {"summary": {"frontend_busy_s": 1.5}},
                              "after": {"summary": {"frontend_busy_s": 2.0}}}
    row = tidy_row(doc)
    served = row["requests"] + (row["probe_requests"] or 0)
    assert row["frontend_busy_s_per_kreq"] == pytest.approx(0.5 / served * 1000)


def test_frontend_cost_is_per_thousand_requests(results):
    """CPU s per 1,000 requests on the front-end, for L7 targets only."""
    df = tidy(results)
    l7 = df[(df["layer7"] == True) & (df["status"] == "ok")]  # noqa: E712
    assert set(l7["target"]) == {"haproxy"}
    row = l7[l7["workload"] == "10MB"].iloc[0]
    served = row["requests"] + (row["probe_requests"] if row["probe_requests"] == row["probe_requests"] else 0)
    assert row["frontend_cpu_s_per_kreq"] == pytest.approx(row["cpu_frontend_s"] / served * 1000)
    assert df[df["target"] == "direct"]["layer7"].eq(False).all()


def test_plots_cli_draws_from_a_results_directory(results, tmp_path):
    """`python -m bench plots DIR --out OUT` works in a fresh process, from files alone."""
    out = tmp_path / "cli"
    p = subprocess.run([sys.executable, "-m", "bench", "plots", str(results / "quick"),
                        "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert p.returncode == 0, p.stderr
    assert {f.name for f in out.iterdir()} >= {f"{s}.png" for s in STEMS} | {"report.md",
                                                                               "tidy.csv"}


def test_one_figure_script_runs_alone(results, tmp_path):
    """Each figure has its own script: python -m plots.fig4d_throughput_mix RESULTS OUT."""
    p = subprocess.run([sys.executable, "-m", "plots.fig4d_throughput_mix", str(results),
                        str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "fig4d_throughput_mix.pdf").exists()


def test_no_results_is_an_error_not_an_empty_figure(tmp_path):
    p = subprocess.run([sys.executable, "-m", "bench", "plots", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and "no result files" in p.stderr


def test_claims_are_ratios_within_one_run(results, tmp_path):
    """The claims table divides targets of the same run; absent targets are n/a."""
    for f in result_files(FIXTURES):
        doc = _scaled(read_result(f), 2.0, target="miresga")
        doc["target"] = {"name": "miresga", "layer7": True}
        _write(results / str(f.relative_to(FIXTURES)).replace("direct/", "miresga/"), doc)
    text = claims(results)
    # haproxy is 0.5x direct and miresga 2x direct (rep 1 only; direct has 2 reps: 1 and 0.9)
    assert "Miresga / HAProxy: 4.00x (keep-alive), 4.00x (close)" in text
    assert "Miresga / nginx: n/a" in text
    assert "64 vs 512 bits (8.0x less)" in text
    assert "haproxy: FAILED" in text  # its integrity, in the fixtures
    assert (tmp_path / "x").mkdir() is None
    draw_all(results, tmp_path / "x")
    assert (tmp_path / "x" / "claims.md").read_text() == text


def test_a_target_that_never_came_up_is_not_reported_as_failing_integrity(results, tmp_path):
    """Its points are failed with no integrity check at all: report.md says it was not
    checked, not that it FAILED a check that never ran."""
    doc = copy.deepcopy(read_result(next(iter(result_files(FIXTURES)))))
    doc.update(status="failed", error="target nginx failed to come up: TargetError: no",
               metrics=None, integrity=None)
    doc["parameters"]["target"] = doc["parameters"]["target_name"] = "nginx"
    doc["point_id"] = doc["point_id"].replace("direct/", "nginx/")
    _write(results / "quick" / "nginx" / "down-rep1.json", doc)
    draw_all(results, tmp_path / "figures")
    report = (tmp_path / "figures" / "report.md").read_text()
    assert "nginx not checked (the target never came up)" in report
    assert "HAProxy **FAILED**" in report and "nginx **FAILED**" not in report
