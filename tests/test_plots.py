"""Figures and report from result files alone (committed fixtures), nothing run."""

from __future__ import annotations

import copy
import json
import random
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from analysis import cells, conditions, latency
from analysis.claims import claims, claims_of
from analysis.compare import compare
from analysis.results import load_table, read_result, result_files, tidy, tidy_row, write_tidy
from bench import netstat
from bench.netstat import NetstatSampler
from bench.plotting import FIGURES, draw_all
from plots import fig4b_throughput_vs_size, fig_mechanism, report, style

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
    # Every figure module is registered (the fault figure is drawn from faults.csv apart).
    modules = {f.stem for f in (REPO / "plots").glob("fig*.py")} - {"fig_faults"}
    assert {f.__name__.rsplit(".", 1)[-1] for f in FIGURES} == modules


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
    claims = (tmp_path / "figures" / "claims.md").read_text()
    assert "nginx: not checked" in claims and "nginx: FAILED" not in claims


def test_a_point_not_applicable_to_a_target_does_not_fail_its_integrity(results, tmp_path):
    """`direct` cannot route by path: its re-route point is recorded as not applicable,
    never ran and has no check; its other points passed, so the claims and the report
    say passed."""
    doc = copy.deepcopy(read_result(next(iter(result_files(FIXTURES)))))
    assert doc["parameters"]["target"] == "direct" and doc["integrity"]["passed"] is True
    doc.update(status="not_applicable", error="direct cannot route by path or Host",
               metrics=None, integrity=None)
    doc["point_id"] = doc["point_id"] + "-na"
    _write(results / "quick" / "direct" / "na-rep1.json", doc)
    draw_all(results, tmp_path / "figures")
    claims = (tmp_path / "figures" / "claims.md").read_text()
    assert "direct: passed" in claims and "direct: FAILED" not in claims
    assert "No LB (direct) passed" in (tmp_path / "figures" / "report.md").read_text()


# ------------------------------------------------------------ honest measurement

def _with_histograms(doc: dict, seed: int) -> dict:
    """A format-2 document: latency histograms of synthetic samples (lognormal around the
    run's own median), latency_us derived from them as bench/wrk.py does."""
    d = copy.deepcopy(doc)
    d["format_version"] = 2
    rng = random.Random(seed)
    for part in ("load", "probe"):
        m = (d.get("metrics") or {}).get(part)
        if not m:
            continue
        median = m["latency_us"]["percentiles"]["50"] or 100
        h = latency.from_counts((max(1, int(rng.lognormvariate(0, 0.8) * median)), 1)
                                for _ in range(400))
        m["histogram"] = latency.encode(h)
        m["latency_us"] = latency.summary(h)
    return d


def _copy_fixtures(root: Path, k: float = 1.0, reps=(1.0,), histograms: bool = False,
                   **changes) -> Path:
    """The fixture campaign under root, every metric scaled by k, one repetition per
    factor in reps (scaled by it too); changes: parameters to override."""
    for f in result_files(FIXTURES):
        base = read_result(f)
        for i, r in enumerate(reps, start=1):
            doc = _scaled(base, k * r, repetition=i if i > 1 else None)
            doc["parameters"].update(changes)
            if histograms:
                doc = _with_histograms(doc, seed=zlib.crc32(f"{f}:{i}".encode()))
            rel = str(f.relative_to(FIXTURES)).replace("rep1", f"rep{i}")
            _write(root / rel, doc)
    return root / "quick"


def test_a_cells_latency_is_the_percentile_of_its_merged_histograms(tmp_path):
    """p99 of a cell = p99 of all its repetitions' samples together, with an interval;
    the tidy row of each point keeps its own p99 from its own histogram."""
    src = _copy_fixtures(tmp_path / "r", reps=(1.0, 0.9, 1.1), histograms=True)
    df = tidy(src)
    rows = cells.select(df, target="direct", workload="1MB", conn_mode="keep-alive")
    assert len(rows) == 3 and rows["lat_hist"].notna().all()
    merged = latency.merge(rows["lat_hist"])
    iv = cells.estimate(rows, "lat_p99_us")
    assert iv.value == merged.get_value_at_percentile(99)
    assert iv.low <= iv.value <= iv.high
    for _, r in rows.iterrows():
        assert r["lat_p99_us"] == latency.decode(r["lat_hist"]).get_value_at_percentile(99)
    assert iv.value != pytest.approx(rows["lat_p99_us"].mean(), rel=1e-3)


def test_a_directory_with_only_the_tidy_table_redraws_and_claims(tmp_path):
    """A committed reference holds tidy.csv and faults.csv, no result files: `bench plots`
    and `bench claims` work on it and say exactly what they say from the result files."""
    src = _copy_fixtures(tmp_path / "r", reps=(1.0, 0.95, 1.05), histograms=True)
    for f in result_files(FIXTURES):
        other = _with_histograms(_scaled(read_result(f), 0.5, target="haproxy"), seed=3)
        other["target"] = {"name": "haproxy", "layer7": True}
        other["metrics"].setdefault("cpu", {}).setdefault("per_role_s", {})["frontend"] = 1.0
        _write(src / str(f.relative_to(FIXTURES / "quick")).replace("direct/", "haproxy/"),
               other)
    write_tidy(src)
    only = tmp_path / "reference"
    only.mkdir()
    (only / "tidy.csv").write_bytes((src / "tidy.csv").read_bytes())
    assert claims_of(only).text == claims_of(src).text
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "bench", "plots", str(only), "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    assert {f"{s}.pdf" for s in STEMS} <= {f.name for f in out.iterdir()}
    report_only = (out / "report.md").read_text()
    report_files = report.write(load_table(src), tmp_path / "from-files").read_text()

    def numbers(text):
        return text[text.index("## Fixed response sizes"):text.index("## Conditions")]

    assert numbers(report_only) == numbers(report_files)
    assert "merged histogram" in report_only
    c = subprocess.run([sys.executable, "-m", "bench", "claims", str(only)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert c.returncode == 0, c.stderr
    assert c.stdout == claims_of(src).text
    # Fixed sizes have no probe, so no probe histogram: the mixes' probes have theirs.
    assert "latency ratios are of percentiles of the merged histograms" in c.stdout


def test_claims_exit_non_zero_when_there_is_nothing_to_claim(tmp_path):
    """No results: exit 2 naming the directory; results without a single ratio the claims
    need (only `direct`): exit 1, the table printed, the reason on stderr."""
    empty = tmp_path / "empty"
    empty.mkdir()
    p = subprocess.run([sys.executable, "-m", "bench", "claims", str(empty)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and "no result files" in p.stderr and str(empty) in p.stderr
    only_direct = _copy_fixtures(tmp_path / "r")
    p = subprocess.run([sys.executable, "-m", "bench", "claims", str(only_direct)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "nothing to claim" in p.stderr and "targets here: direct" in p.stderr
    assert "| claim |" in p.stdout


def test_compare_two_runs_point_by_point(tmp_path):
    """A has twice B's throughput and half its load latency in every cell: compare prints
    2.00x and 0.50x with intervals for each of the 16 cells; runs with other load
    parameters share no cell: exit 1."""
    a = _copy_fixtures(tmp_path / "a", k=1.0, reps=(1.0, 0.97, 1.03))
    b = _copy_fixtures(tmp_path / "b", k=0.5, reps=(1.0, 1.02, 0.98))
    p = subprocess.run([sys.executable, "-m", "bench", "compare", str(a), str(b)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [line for line in p.stdout.splitlines() if line.startswith("| direct |")]
    assert len(rows) == 16
    for row in rows:
        assert "| 2.00x [" in row, row
        # _scaled leaves the probe's latency alone: 1.00x under the mixes.
        assert ("0.50x [" if "traffic" not in row else "| 1.00x [") in row, row
    assert "16 cells in both; 0 only in A, 0 only in B" in p.stdout
    assert "smoke test" in p.stdout  # the fixtures are the quick profile
    other = _copy_fixtures(tmp_path / "c", connections=64)
    p = subprocess.run([sys.executable, "-m", "bench", "compare", str(a), str(other)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 1 and "no point in common" in p.stderr
    # A tidy table works as one side.
    write_tidy(b)
    assert compare(a, b / "tidy.csv").text == compare(a, b).text.replace(str(b), str(b / "tidy.csv"))


def test_report_and_claims_say_when_results_are_not_one_run(results, tmp_path):
    """Two revisions, a dirty tree and an hour's pause: the report and the claims say so
    before any number; one clean campaign of the quick profile is labelled a smoke test
    and not "not one run"."""
    clean = load_table(results)
    assert conditions.warnings(clean) == []
    assert "quick profile" in conditions.smoke_test(clean)
    assert "Not one run" not in claims_of(results).text
    assert claims_of(results).text.startswith("**Smoke test**")
    for f in result_files(results):
        doc = read_result(f)
        if doc["parameters"]["target"] == "haproxy":
            doc["metadata"] = {**doc["metadata"], "git": {**doc["metadata"]["git"],
                                                          "revision": "f" * 40, "dirty": True}}
            doc["started_at"] = "2026-11-26T11:37:34+0000"
            _write(f, doc)
    text = claims_of(results).text
    assert "**Not one run**" in text and "NOT one run: see above)" in text
    assert "2 git revisions" in text and "ffffffffffff (haproxy)" in text
    assert "uncommitted changes" in text
    assert "separate time windows" in text
    report.write(load_table(results), tmp_path)
    head = (tmp_path / "report.md").read_text().split("## Fixed")[0]
    assert "2 git revisions" in head and "separate time windows" in head
    assert "ffffffffffff+dirty" in head


def test_interleaved_series_are_paired_and_others_not():
    """Repetition k of both series before any repetition k + 1: paired.  One series run
    after the other, or start times missing: not paired."""
    import pandas as pd

    def rows(starts):
        return pd.DataFrame({"repetition": [1, 2, 3],
                             "started_at": [f"2026-11-26T10:{m:02d}:00+0000" for m in starts]})

    assert conditions.interleaved(rows([0, 10, 20]), rows([5, 15, 25]))
    assert not conditions.interleaved(rows([0, 2, 4]), rows([30, 32, 34]))
    missing = rows([5, 15, 25]).assign(started_at=None)
    assert not conditions.interleaved(rows([0, 10, 20]), missing)


def test_point_conditions_and_offload_share_in_the_tidy_row():
    """Load average and steal from the CPU sampler, offloaded byte share from Miresga's
    counters before and after the point."""
    doc = copy.deepcopy(read_result(next(iter(result_files(FIXTURES)))))
    doc["metrics"]["cpu"]["machines"] = {
        "boot-a": {"cpus": 2, "seconds": {"steal": 0.3}, "loadavg_end": [1.5, 1.0, 0.5]},
        "boot-b": {"cpus": 2, "seconds": {"steal": 0.1}, "loadavg_end": [0.5, 2.0, 0.25]}}
    doc["metrics"]["cpu"]["window_s"] = 10.0
    doc["target"]["stats"] = {"before": {"summary": {"offloaded_bytes": 100,
                                                     "frontend_bytes": 50}},
                              "after": {"summary": {"offloaded_bytes": 900,
                                                    "frontend_bytes": 250}}}
    row = tidy_row(doc)
    assert (row["load1"], row["load5"], row["load15"]) == (1.5, 2.0, 0.5)
    assert row["cpu_steal_s"] == pytest.approx(0.4)
    assert row["cpu_steal_share"] == pytest.approx(0.4 / (10.0 * 4))
    assert row["offloaded_byte_share"] == pytest.approx(800 / 1000)
    assert tidy_row(read_result(next(iter(result_files(FIXTURES)))))["load1"] is None


def test_mechanism_columns_from_the_clients_counters_and_the_switchs():
    """Per connection the clients opened: packets the switch handed to a front-end, and
    per 1,000 the segments received twice (PAWS drops, DSACKs sent) and out of order."""
    doc = copy.deepcopy(read_result(next(iter(result_files(FIXTURES)))))
    assert tidy_row(doc)["client_conns"] is None  # results before the counters were kept
    doc["metrics"]["netstat"] = NetstatSampler.delta(
        {"c1": {"ActiveOpens": 10, "PAWSEstab": 1, "TCPDSACKOldSent": 0,
                "TCPDSACKOfoSent": 0, "TCPOFOQueue": 5},
         "c2": {"ActiveOpens": 0, "PAWSEstab": 0, "TCPDSACKOldSent": 0,
                "TCPDSACKOfoSent": 0, "TCPOFOQueue": 0}},
        {"c1": {"ActiveOpens": 1010, "PAWSEstab": 3, "TCPDSACKOldSent": 4,
                "TCPDSACKOfoSent": 1, "TCPOFOQueue": 25},
         "c2": {"ActiveOpens": 1000, "PAWSEstab": 2, "TCPDSACKOldSent": 0,
                "TCPDSACKOfoSent": 0, "TCPOFOQueue": 0}})
    doc["target"]["stats"] = {"before": {"summary": {"frontend_packets": 100}},
                              "after": {"summary": {"frontend_packets": 12100}}}
    row = tidy_row(doc)
    assert row["client_conns"] == 2000
    assert row["frontend_pkts_per_conn"] == pytest.approx(12000 / 2000)
    assert row["client_dup_per_kconn"] == pytest.approx(1000 * (2 + 4 + 1 + 2) / 2000)
    assert row["client_ofo_per_kconn"] == pytest.approx(1000 * 20 / 2000)
    doc["target"]["stats"] = {}  # a target without Miresga's counters
    assert tidy_row(doc)["frontend_pkts_per_conn"] is None


def test_netstat_reads_the_kernels_counter_tables():
    """/proc/net/netstat and /proc/net/snmp: name lines then value lines, per group."""
    text = ("TcpExt: SyncookiesSent PAWSEstab TCPDSACKOldSent TCPOFOQueue\n"
            "TcpExt: 0 7 3 11\n"
            "IpExt: InNoRoutes InOctets\n"
            "IpExt: 0 123\n"
            "Ip: Forwarding DefaultTTL\n"
            "Ip: 1 64\n"
            "Tcp: RtoAlgorithm MaxConn ActiveOpens InSegs\n"
            "Tcp: 1 -1 42 900\n")
    assert netstat.parse(text) == {"PAWSEstab": 7, "TCPDSACKOldSent": 3, "TCPOFOQueue": 11,
                                   "ActiveOpens": 42, "InSegs": 900}
    real = netstat.parse(Path("/proc/net/netstat").read_text()
                         + Path("/proc/net/snmp").read_text())
    assert set(real) == set(netstat.COUNTERS)


def test_pdf_figures_embed_truetype_fonts(results, tmp_path):
    """Type 42 (TrueType) fonts in every PDF, no Type 3: what paper submission systems
    require.  Read from the PDF's font dictionaries."""
    style.apply_theme()
    df = load_table(results)
    pdfs = [p for p in fig4b_throughput_vs_size.draw(df, tmp_path) if p.suffix == ".pdf"]
    pdfs += [p for p in fig_mechanism.draw(df, tmp_path) if p.suffix == ".pdf"]
    for pdf in pdfs:
        raw = pdf.read_bytes()
        subtypes = set(re.findall(rb"/Subtype\s*/(Type3|TrueType|Type1|Type0|CIDFontType\d)",
                                  raw))
        assert b"TrueType" in subtypes or b"CIDFontType2" in subtypes, (pdf, subtypes)
        assert b"Type3" not in subtypes, pdf


def test_mechanism_figure_names_the_columns_it_lacks(results, tmp_path):
    """Without the client counters (results before the runner kept them, as the
    fixtures) the figure says which columns are empty; with them it draws them
    (front-end packets per connection, duplicates and out-of-order per 1,000)."""
    df = load_table(results)
    assert fig_mechanism.missing(df) == ["offloaded_byte_share", "frontend_pkts_per_conn",
                                         "client_dup_per_kconn", "client_ofo_per_kconn"]
    full = df.assign(offloaded_byte_share=0.9, frontend_pkts_per_conn=3.0,
                     client_dup_per_kconn=0.5, client_ofo_per_kconn=1.5)
    assert fig_mechanism.missing(full) == []
    paths = fig_mechanism.draw(full, tmp_path)
    assert {p.name for p in paths} == {"fig_mechanism.png", "fig_mechanism.pdf"}


def test_one_repetition_with_histograms_draws_every_figure(tmp_path):
    """`make bench PROFILE=quick`: one repetition, latency histograms, so no interval
    anywhere: every figure is drawn (dots without bars), none fails."""
    src = _copy_fixtures(tmp_path / "r", reps=(1.0,), histograms=True)
    figs = draw_all(src, tmp_path / "figures")
    assert {f"{s}.pdf" for s in STEMS} <= {Path(f).name for f in figs}


def test_the_reroute_workload_in_figure_report_and_claims(tmp_path):
    """Re-route points of three L7 targets, with their counters, and an l4switch point that
    is not applicable: the figure draws the three and marks l4switch "not applicable", the
    report lists it with its reason (neither failed nor left out), the claims carry the
    Miresga / HAProxy ratio and Miresga's re-routed share."""
    base = read_result(FIXTURES / "quick" / "direct" / "1KB" / "keep-alive-c32-t2" / "rep1.json")
    root = tmp_path / "results"
    for target, k, rate in (("haproxy", 1.0, None), ("nginx", 0.9, None), ("miresga", 2.0, 0.98)):
        doc = _scaled(base, k, target=target)
        doc["point_id"] = doc["point_id"].replace("/1KB/", "/reroute-1KB/")
        doc["parameters"].update(workload="reroute-1KB", workload_label="Re-route 1 KB",
                                 workload_kind="reroute")
        doc["target"] = {"name": target, "layer7": True}
        doc["metrics"]["l7"] = {"rate": rate, "cluster_requests": {"small": 500, "big": 510}}
        _write(root / f"{doc['point_id']}.json", doc)
    na = copy.deepcopy(base)
    na.update(status="not_applicable", metrics=None, point_id=na["point_id"].replace(
        "direct/1KB/", "l4switch/reroute-1KB/"),
        error="l4switch cannot route by path or Host: the re-route workload needs an L7 "
              "decision for every request", target={"name": "l4switch", "layer7": False})
    na["parameters"].update(target="l4switch", target_name="l4switch", workload="reroute-1KB",
                            workload_kind="reroute")
    _write(root / f"{na['point_id']}.json", na)

    out = tmp_path / "figures"
    written = draw_all(root, out)
    assert out / "fig_reroute.png" in written and (out / "fig_reroute.pdf").stat().st_size > 5000
    report_md = (out / "report.md").read_text()
    assert "4 run points: 3 ok, 0 failed, 1 not applicable (not run)" in report_md
    assert "## Re-routing on every request (L7)" in report_md
    assert "l4switch cannot route by path or Host" in report_md
    assert "## Failed points" not in report_md
    assert re.search(r"\| Miresga \| Re-route 1 KB \| 1 \|.*\| 0\.98 \| 0\.50 \|", report_md)
    text = claims(root)
    assert "Miresga / haproxy: 2.00x" in text and "Miresga re-routed 98% of the load's requests" in text
    assert "not applicable: l4switch" in text
    row = tidy(root).set_index("target").loc["l4switch"]
    assert row["status"] == "not_applicable" and row["requests_per_s"] != row["requests_per_s"]


def test_budget_points_get_their_figure_and_claim_and_stay_out_of_the_others(results, tmp_path):
    """Points with a front-end budget (HAProxy and Miresga, 1 KB and 1 MB, 0.25 and 1 core,
    two repetitions) draw the budget figure and the claim at the least budget, with its
    interval; Figure 4 and the other claims still see only the points without a budget."""
    for f in result_files(FIXTURES):
        doc = read_result(f)
        if doc["parameters"]["workload"] not in ("1KB", "1MB"):
            continue
        for target, k in (("haproxy", 1.0), ("miresga", 3.0)):
            for cores in (0.25, 1.0):
                for rep in (1, 2):
                    d = _scaled(doc, k * cores * (1 if rep == 1 else 0.9), repetition=rep,
                                target=target)
                    d["target"] = {"name": target, "layer7": True}
                    d["parameters"]["frontend_cpu_cores"] = cores
                    d["point_id"] = d["point_id"].replace(f"/rep{rep}", f"-fe{cores:g}/rep{rep}")
                    _write(results / "budget" / f"{d['point_id']}.json", d)
    df = tidy(results)
    assert set(df["frontend_cpu_cores"].dropna()) == {0.25, 1.0}
    text = claims(results)
    assert ("Throughput at an equal front-end budget (0.25 core) | budget figure" in text)
    assert re.search(r"1KB: 3\.00x \[[\d.]+, [\d.]+\] \(keep-alive\), 3\.00x \[[\d.]+, "
                     r"[\d.]+\] \(close\); 1MB: 3\.00x \[", text)
    # Figure 4's claims: Miresga has only budgeted points, so no ratio without a budget.
    assert "Miresga / direct: n/a" in text
    out = tmp_path / "figures"
    written = draw_all(results, out)
    assert out / "fig_budget.png" in written and (out / "fig_budget.png").stat().st_size > 5000
    report_md = (out / "report.md").read_text()
    assert "## Equal front-end budget" in report_md and "### 0.25 core" in report_md
    rows = fig4b_throughput_vs_size.common.prepare(df)
    assert rows["frontend_cpu_cores"].isna().all() and set(rows["target"]) == {"direct",
                                                                                "haproxy"}


def test_the_report_names_a_results_directory_of_the_checkout_relative_to_it(tmp_path):
    """A committed report must not carry the path of the machine that drew it."""
    from bench.plotting import shown
    from common.paths import REPO_ROOT

    assert shown(REPO_ROOT / "results" / "reference" / "default") == "results/reference/default"
    assert shown(tmp_path) == str(tmp_path)
