"""Latency versus offered load without a testbed: the [openloop] table, its points and
filters, several clients' runs merged, the tidy rows, the figure and the equal-load claim."""

from __future__ import annotations

import functools
import json
import random
import textwrap
from pathlib import Path

import pytest

from analysis import cells, latency
from analysis.claims import CARRIED, claims_of, equal_load
from analysis.results import closed_loop, open_loop, tidy
from bench import clients
from bench.experiment import load_experiment
from bench.loadcurve import OpenLoopPoint
from bench.openloop import OpenLoopJob, OpenLoopOutput
from bench.runner import Campaign, Selection
from bench.wrk import WrkJob, WrkOutput
from common.errors import ConfigError
from plots import fig_latency_vs_load
from workloads.model import DEFAULT_WORKLOADS

EXPERIMENT = """
[campaign]
name = "ol"
workloads = "{workloads}"
repetitions = 2
interleave = true

[[target]]
name = "direct"

[[target]]
name = "haproxy"

[parameters]
workload = ["1KB"]
connections = 8
threads = 2
duration_s = 1

[openloop]
workload = ["1KB", "traffic3"]
rates = {rates}
duration_s = 2
warmup_s = 1
{extra}
"""


def experiment(tmp_path: Path, rates: str = "[2000, 500]", extra: str = "") -> Path:
    p = tmp_path / "ol.toml"
    p.write_text(textwrap.dedent(EXPERIMENT).replace("{workloads}", str(DEFAULT_WORKLOADS))
                 .replace("{rates}", rates).replace("{extra}", extra))
    return p


# ------------------------------------------------------------------ experiment

def test_open_loop_points_follow_each_targets_closed_points_rates_rising(tmp_path):
    """Per (repetition, target): its wrk points, then workload x mode x rising rate;
    a plain list of rates is every workload's."""
    exp = load_experiment(experiment(tmp_path))
    ids = [p.id for p in exp.points()]
    assert ids[:5] == ["direct/1KB/keep-alive-c8-t2/rep1",
                       "direct/1KB/open-keep-alive-r500/rep1",
                       "direct/1KB/open-keep-alive-r2000/rep1",
                       "direct/traffic3/open-keep-alive-r500/rep1",
                       "direct/traffic3/open-keep-alive-r2000/rep1"]
    assert ids[5] == "haproxy/1KB/keep-alive-c8-t2/rep1"
    assert len(ids) == 2 * 2 * 5 and len(set(ids)) == len(ids)
    assert [p.index for p in exp.points()] == list(range(len(ids)))


def test_rates_per_workload_and_targets_subset(tmp_path):
    exp = load_experiment(experiment(tmp_path, '{ "1KB" = [4000], "traffic3" = [300, 100] }',
                                     'targets = ["haproxy"]'))
    ol = [p for p in exp.points() if isinstance(p, OpenLoopPoint)]
    assert {p.target.key for p in ol} == {"haproxy"}
    assert [(p.workload, p.rate) for p in ol if p.repetition == 1] == [
        ("1KB", 4000), ("traffic3", 100), ("traffic3", 300)]


@pytest.mark.parametrize("rates,extra,needle", [
    ('{ "1KB" = [4000] }', "", "rates: no rates for traffic3"),
    ('{ "1KB" = [1], "traffic3" = [1], "10KB" = [1] }', "", "rates.10KB: not a workload"),
    ("[100, 100]", "", "repeats a rate"),
    ("[0]", "", "openloop.rates"),
    ("[100]", 'targets = ["nginx"]', "openloop.targets[0]: 'nginx' is not a target"),
    ("[100]", "burst = 3", "openloop.burst"),
])
def test_bad_open_loop_tables_are_refused_naming_the_field(tmp_path, rates, extra, needle):
    with pytest.raises(ConfigError) as e:
        load_experiment(experiment(tmp_path, rates, extra))
    assert needle in str(e.value) and "ol.toml" in str(e.value)


def test_unknown_open_loop_workload_is_refused(tmp_path):
    p = experiment(tmp_path)
    p.write_text(p.read_text().replace('workload = ["1KB", "traffic3"]',
                                       'workload = ["1KB", "9KB"]'))
    with pytest.raises(ConfigError, match=r"openloop.workload\[1\]: unknown workload '9KB'"):
        load_experiment(p)


def test_only_load_and_rate_select_open_loop_points(tmp_path):
    exp = load_experiment(experiment(tmp_path))

    def chosen(*only, workloads=()):
        sel = Selection.parse(exp, [], list(workloads), list(only))
        return [p.id for p in exp.points() if sel(p)]

    opened = chosen("load=open")
    assert opened and all("/open-" in i for i in opened)
    assert all("/open-" not in i for i in chosen("load=closed"))
    assert chosen("rate=500", "repetition=1") == ["direct/1KB/open-keep-alive-r500/rep1",
                                                  "direct/traffic3/open-keep-alive-r500/rep1",
                                                  "haproxy/1KB/open-keep-alive-r500/rep1",
                                                  "haproxy/traffic3/open-keep-alive-r500/rep1"]
    # A wrk parameter leaves the open-loop points out, a workload filter keeps them.
    assert all("/open-" not in i for i in chosen("connections=8"))
    assert len(chosen(workloads=["traffic3"])) == 2 * 2 * 2
    with pytest.raises(ConfigError, match="runs open-loop rates 500, 2000"):
        chosen("rate=700")
    with pytest.raises(ConfigError, match="load is open or closed"):
        chosen("load=half")


def test_dry_run_parameters_and_estimate_of_open_loop_points(tmp_path):
    """Parameters: the workload's description, the load and the rate; the estimate counts
    each point's warm-up and measured seconds."""
    from bench.estimate import estimate

    c = Campaign(load_experiment(experiment(tmp_path)), tmp_path / "res",
                 select=Selection.parse(load_experiment(experiment(tmp_path)), [], [],
                                        ["load=open"]))
    p = c.points[0]
    par = c.parameters(p)
    assert par["load"] == "open" and par["rate"] == 500 and par["workload"] == "1KB"
    assert par["duration_s"] == 2 and par["probe_rate"] is None
    mix = next(q for q in c.points if q.workload == "traffic3")
    assert c.parameters(mix)["probe_size"] == "1KB" and c.parameters(mix)["probe_rate"] == 100
    est = estimate(c, c.points)
    assert est.points == len(c.points) == 16 and est.load_s == 16 * 3


# ------------------------------------------------------------------- clients

def test_connections_are_shared_out_over_the_clients():
    assert clients.shares(64, 2) == [32, 32] and clients.shares(5, 2) == [3, 2]
    jobs = clients.wrk_jobs(WrkJob(url="http://x", classes=[], threads=2, connections=3), 2)
    assert [(j.connections, j.threads) for j in jobs] == [(2, 2), (1, 1)]


def test_open_loop_jobs_split_the_schedule_and_start_together():
    job = OpenLoopJob(url="http://x:80", classes=[], rate=900, processes=2)
    jobs = clients.open_jobs(job, 3, start_at=1000.0)
    assert [(j.first_stream, j.total_streams) for j in jobs] == [(0, 6), (2, 6), (4, 6)]
    assert {j.start_at for j in jobs} == {1000.0} and {j.rate for j in jobs} == {900}
    assert clients.open_jobs(job, 1) == [job]


def _hist(values) -> str:
    return latency.encode(latency.from_counts((v, 1) for v in values))


def _wrk(host_values, rps, errors=None) -> WrkOutput:
    h = _hist(host_values)
    data = {"requests": len(host_values), "requests_per_s": rps, "bytes": 10 * len(host_values),
            "bytes_per_s": 10 * rps, "duration_us": 1_000_000, "errors": errors or {"read": 1},
            "drawn": {"1KB": len(host_values)}, "histogram": h, "histogram_error": None,
            "latency_us": latency.summary(latency.decode(h)), "latency_us_wrk": {}}
    return WrkOutput("load", "wrk ...", 0, "out", "", data, None, {"connections": 4})


def test_wrk_runs_of_several_clients_add_up_and_their_histograms_merge_exactly():
    a, b = list(range(100, 200)), list(range(1000, 1050))
    m = clients.merge_wrk("load", [("client", _wrk(a, 100.0)), ("client2", _wrk(b, 50.0))],
                          connections=[3, 2])
    assert m.ok and m.data["requests"] == 150 and m.data["requests_per_s"] == 150.0
    assert m.data["errors"] == {"read": 2} and m.data["drawn"] == {"1KB": 150}
    whole = latency.from_counts((v, 1) for v in a + b)
    assert m.data["latency_us"] == latency.summary(whole)
    assert [(c["host"], c["connections"]) for c in m.data["clients"]] == [("client", 3),
                                                                          ("client2", 2)]
    assert "==== client2" in m.raw()["stdout"] and len(m.raw()["clients"]) == 2


def test_a_client_without_histogram_or_failed_makes_the_merge_say_so():
    bad = _wrk([5, 6], 2.0)
    bad.data["histogram"], bad.data["histogram_error"] = None, "wrk printed no histogram"
    m = clients.merge_wrk("load", [("client", _wrk([1, 2], 2.0)), ("client2", bad)])
    assert m.ok and m.data["histogram"] is None
    assert "client2: wrk printed no histogram" in m.data["histogram_error"]
    failed = _wrk([1], 1.0)
    failed.error = "load: wrk exited with 1"
    m = clients.merge_wrk("load", [("client", _wrk([1, 2], 2.0)), ("client2", failed)])
    assert not m.ok and "client2: load: wrk exited with 1" in m.error
    assert m.data["requests"] == 3  # merged anyway, so a warm-up's errors can be read


# ----------------------------------------------------- tidy, figure, claims

@functools.lru_cache(maxsize=None)
def _samples_hist(median_us: float, rep: int) -> str:
    """Synthetic latencies around a median, one set per repetition (encoding is slow:
    shared by the points that have the same)."""
    rng = random.Random(f"{median_us}:{rep}")
    return _hist([max(1, int(rng.lognormvariate(0, 0.6) * median_us)) for _ in range(300)])


def _open_doc(target: str, workload: str, rate: float, rep: int, median_us: float,
              achieved: float = 1.0) -> dict:
    h = _samples_hist(median_us, rep)
    load = {"rate": rate, "requests": int(rate * 2), "requests_per_s": rate * achieved,
            "achieved_ratio": achieved, "late": 3, "late_share": 3 / (rate * 2),
            "waited_for_connection": 1, "failed": 0, "errors": {},
            "bytes_per_s": 1024 * rate, "goodput_bytes_per_s": 1024 * rate,
            "latency_us": latency.summary(latency.decode(h)), "histogram": h,
            "send_lag_us": {"percentiles": {"99": 250}}, "offered_rate": rate,
            "clients": [{"host": "client"}, {"host": "client2"}]}
    mix = workload == "traffic3"
    pid = f"{target}/{workload}/open-keep-alive-r{rate:g}/rep{rep}"
    return {"format": "miresga-bench-result", "format_version": 2, "kind": "openloop",
            "campaign": "ol", "point_id": pid, "status": "ok", "error": None,
            "parameters": {"campaign": "ol", "point_id": pid, "target": target,
                           "target_name": target, "repetition": rep, "workload": workload,
                           "workload_label": "Traffic 3" if mix else "1KB",
                           "workload_kind": "mix" if mix else "fixed",
                           "size_bytes": None if mix else 1024, "size_label": None if mix
                           else "1KB", "mean_size_bytes": 1024, "load": "open",
                           "conn_mode": "keep-alive", "rate": rate, "duration_s": 2,
                           "warmup_s": 1, "timeout_s": 10, "late_ms": 1.0,
                           "probe_size": "1KB" if mix else None, "seed": 1},
            "integrity": {"passed": True}, "target": {"layer7": target != "direct"},
            "metrics": {"load": load, "probe": dict(load) if mix else None, "cpu": {}},
            "started_at": f"2026-11-27T16:{rep:02d}:00+0000", "metadata": {}}


@pytest.fixture(scope="module")
def curve(tmp_path_factory) -> Path:
    """haproxy's latency climbs past 2,000 req/s (where it carries 80%), miresga's stays low."""
    root = tmp_path_factory.mktemp("curve") / "ol"
    for rep in (1, 2, 3):
        for w in ("1KB", "traffic3"):
            for rate in (500, 1000, 2000):
                for target, median, achieved in (
                        ("haproxy", 200 * (20 if rate == 2000 else 1), 0.8 if rate == 2000
                         else 1.0), ("miresga", 100, 1.0), ("direct", 80, 1.0)):
                    doc = _open_doc(target, w, rate, rep, median, achieved)
                    path = root / (doc["point_id"] + ".json")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(doc))
    return root


def test_open_loop_rows_in_the_tidy_table(curve):
    df = tidy(curve)
    assert len(df) == 54 and set(df["load"]) == {"open"} and closed_loop(df).empty
    r = df[df["point_id"] == "haproxy/1KB/open-keep-alive-r2000/rep1"].iloc[0]
    assert r["offered_rate"] == 2000 and r["requests_per_s"] == 1600
    assert r["achieved_ratio"] == 0.8 and r["late"] == 3 and r["send_lag_p99_us"] == 250
    assert r["clients"] == 2 and isinstance(r["lat_hist"], str)
    # Repetitions of one rate are one cell; rates are cells of their own.
    cell = cells.select(df, target="haproxy", workload="1KB", offered_rate=2000)
    assert len(cell) == 3
    assert cells.value(cell, "lat_p99_us") == latency.merge(cell["lat_hist"]) \
        .get_value_at_percentile(99)
    assert len(open_loop(df).groupby(cells.keys(df), dropna=False)) == 18


def test_equal_load_claim_is_at_the_highest_rate_both_carried(curve):
    df = tidy(curve)
    rate, iv = equal_load(df, "miresga", "haproxy", "traffic3", "keep-alive", "probe_lat_p99_us")
    assert rate == 1000 and iv.ok and iv.value < 1 and iv.low <= iv.value <= iv.high
    assert CARRIED > 0.8  # haproxy's 2,000 req/s point does not count as carried
    text = claims_of(curve).text
    assert "1 KB latency under heavy-tailed load at an equal offered load" in text
    assert "keep-alive at 1,000 req/s" in text


def test_short_open_loop_points_do_not_make_a_campaign_a_smoke_test(curve):
    """An open-loop point of a few seconds is a full sample at its rate (the default
    campaign's are 3 s): only a closed-loop run shorter than MIN_DURATION_S is one."""
    from analysis import conditions

    df = tidy(curve)
    assert df["duration_s"].max() < conditions.MIN_DURATION_S
    assert conditions.smoke_test(df) is None
    short = df.assign(load="closed")
    assert "measured runs of 2 s" in conditions.smoke_test(short)


def test_latency_vs_load_figure_draws_every_target(curve, tmp_path):
    paths = fig_latency_vs_load.draw(tidy(curve), tmp_path / "f")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 5000 for p in paths)


def test_closed_loop_figures_ignore_open_loop_rows(curve, tmp_path):
    from plots import common

    assert common.prepare(tidy(curve)).empty
    assert len(common.prepare(tidy(curve), load="open")) == 54


def test_merge_of_open_loop_hosts_fails_when_a_host_reported_nothing():
    broken = OpenLoopOutput("load", "cmd", 1, "", None, "load: exited with 1")
    m = clients.merge_open("load", [("client", broken)])
    assert not m.ok and m.error == "client: load: exited with 1" and m.data is None
