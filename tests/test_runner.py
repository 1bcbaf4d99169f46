"""The runner end to end: resume, failed points recorded with their output, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from analysis.results import read_result, tidy
from bench.experiment import load_experiment
from bench.runner import Campaign
from hosts.testbed import teardown
from targets.base import _REGISTRY, Endpoint, Target, register
from targets.direct import Direct

from conftest import unique_prefix
from runner_rig import WORKLOADS, quiet
from testbed_checks import leftovers

REPO = Path(__file__).resolve().parent.parent


def experiment(tmp_path: Path, workloads: str, duration: int = 1, warmup: int = 0,
               reps: int = 1) -> Path:
    (tmp_path / "wl.toml").write_text(WORKLOADS)
    p = tmp_path / "exp.toml"
    p.write_text(textwrap.dedent(f"""
        [campaign]
        name = "t"
        workloads = "wl.toml"
        repetitions = {reps}

        [[target]]
        name = "direct"

        [parameters]
        workload = {workloads}
        connections = 4
        threads = 1
        duration_s = {duration}
        warmup_s = {warmup}
        probe_connections = 1
        probe_interval_ms = 20
    """))
    return p


@pytest.mark.testbed
def test_a_campaign_writes_results_and_resume_skips_done_points(tmp_path):
    """Run, run again (nothing runs, no testbed), lose one file (only it runs); --force runs all."""
    exp = load_experiment(experiment(tmp_path, '["1KB", "mix"]', warmup=1))
    results = tmp_path / "results"
    s = Campaign(exp, results, prefix=unique_prefix("wl"), console=quiet()).run()
    assert (s["ok"], s["failed"], s["skipped"]) == (2, 0, 0)
    files = sorted((results / "t").rglob("rep1.json"))
    assert len(files) == 2
    docs = {d["point_id"]: d for d in map(read_result, files)}
    mix = docs["direct/mix/keep-alive-c4-t1/rep1"]
    assert mix["status"] == "ok" and mix["integrity"]["passed"]
    assert mix["metrics"]["probe"]["requests"] > 0
    assert mix["raw"]["load"]["stdout"] and mix["raw"]["warmup"]["stdout"]
    assert mix["metadata"]["tools"]["wrk"].startswith("wrk")
    assert mix["metadata"]["git"]["revision"]
    assert mix["metadata"]["testbed"]["link_offloads"]["client"] == {
        "tx": True, "tso": True, "gso": True, "gro": False}
    assert mix["metrics"]["cpu"]["per_role_s"]["backend"] > 0
    # Latency histograms of the load and of the probe, for merging repetitions.
    assert mix["format_version"] == 2
    for part in ("load", "probe"):
        assert mix["metrics"][part]["histogram"] and mix["metrics"][part]["histogram_error"] is None
    table = tidy(results / "t")
    assert len(table) == 2 and set(table["conn_mode"]) == {"keep-alive"}
    assert table["lat_hist"].notna().all() and table["load1"].notna().all()
    # The client's kernel counted the connections wrk opened (and those of the probe).
    assert (table["client_conns"] >= mix["parameters"]["connections"]).all()
    assert (results / "t" / "tidy.csv").exists()
    assert (results / "latest").resolve() == (results / "t").resolve()

    mtimes = {f: f.stat().st_mtime_ns for f in files}
    again = Campaign(exp, results, prefix="wlnever", console=quiet())
    s = again.run()
    assert (s["ok"], s["skipped"]) == (0, 2)
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    assert not Path("/run/miresga/testbeds/wlnever.json").exists()

    files[0].unlink()
    s = Campaign(exp, results, prefix=unique_prefix("wl"), console=quiet()).run()
    assert (s["ok"], s["skipped"]) == (1, 1)
    assert files[0].exists() and files[1].stat().st_mtime_ns == mtimes[files[1]]
    assert len(Campaign(exp, results, force=True, console=quiet()).todo()) == 2


@pytest.mark.testbed
def test_a_point_that_needs_an_l7_decision_is_not_applicable_to_direct(tmp_path):
    """direct cannot route by path or Host: its re-route point is recorded as not
    applicable (not run, not failed, and done for the next run); its 1 KB point runs, and
    the back-ends' counters put every request of it in the cluster of direct's back-end."""
    exp = load_experiment(experiment(tmp_path, '["rr", "1KB"]'))
    results = tmp_path / "results"
    s = Campaign(exp, results, prefix=unique_prefix("wl"), console=quiet()).run()
    assert (s["ok"], s["failed"]) == (2, 0)
    docs = {d["point_id"]: d for d in map(read_result, (results / "t").rglob("rep1.json"))}
    na = docs["direct/rr/keep-alive-c4-t1/rep1"]
    assert na["status"] == "not_applicable" and "cannot route by path or Host" in na["error"]
    assert na["metrics"] is None and na["raw"] == {}
    ok = docs["direct/1KB/keep-alive-c4-t1/rep1"]
    served = ok["metrics"]["l7"]["cluster_requests"]
    assert served["small"] >= ok["metrics"]["load"]["requests"] > 0 and served["big"] == 0
    assert set(tidy(results / "t")["status"]) == {"ok", "not_applicable"}
    assert Campaign(exp, results, console=quiet()).todo() == []


def test_changed_parameters_are_not_taken_for_done(tmp_path):
    """A result file from other parameters (here another duration) is re-run, not reused."""
    results = tmp_path / "results"
    exp1 = load_experiment(experiment(tmp_path, '["1KB"]', duration=1))
    target = results / "t" / exp1.points()[0].relpath
    target.parent.mkdir(parents=True)
    doc = {"format": "miresga-bench-result", "format_version": 1, "status": "ok",
           "parameters": Campaign(exp1, results, console=quiet()).parameters(exp1.points()[0])}
    target.write_text(json.dumps(doc))
    assert Campaign(exp1, results, console=quiet()).todo() == []
    exp2 = load_experiment(experiment(tmp_path, '["1KB"]', duration=2))
    assert len(Campaign(exp2, results, console=quiet()).todo()) == 1


@pytest.mark.testbed
def test_a_failing_wrk_is_a_failed_point_and_the_campaign_goes_on(tmp_path):
    """wrk exiting 1, then wrk printing nothing: two failed points with their output, no zeros."""
    fake = tmp_path / "fake-wrk"
    count = tmp_path / "calls"
    fake.write_text(f"#!/bin/sh\nn=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}\n"
                    f"if [ $n -eq 0 ]; then echo 'boom: no such luck'; exit 1; fi\nexit 0\n")
    fake.chmod(0o755)
    exp = load_experiment(experiment(tmp_path, '["1KB", "10KB"]'))
    results = tmp_path / "results"
    s = Campaign(exp, results, prefix=unique_prefix("wl"), console=quiet(),
                 wrk_binary=str(fake)).run()
    assert (s["ok"], s["failed"]) == (0, 2)
    docs = [read_result(f) for f in sorted((results / "t").rglob("rep1.json"))]
    by = {d["parameters"]["workload"]: d for d in docs}
    first, second = by["1KB"], by["10KB"]
    assert first["status"] == "failed" and "exited with 1" in first["error"]
    assert "boom: no such luck" in first["raw"]["load"]["stdout"]
    assert second["status"] == "failed" and "printed nothing" in second["error"]
    assert first["metrics"] is None and second["metrics"] is None
    assert "backend1" in " ".join(first["logs"])  # the back-ends' logs are attached
    table = tidy(results / "t")
    assert list(table["status"]) == ["failed", "failed"]
    assert table["requests_per_s"].isna().all()
    # Failed points are not done: the next invocation runs them again.
    assert len(Campaign(exp, results, console=quiet()).todo()) == 2


@pytest.mark.testbed
def test_ctrl_c_keeps_finished_points_and_leaves_no_namespaces(tmp_path):
    """SIGINT after the first point: it stays, the rest are not written, the testbed is gone."""
    prefix = unique_prefix("wl")
    exp = experiment(tmp_path, '["1KB", "10KB", "mix"]', duration=2)
    results = tmp_path / "results"
    p = subprocess.Popen([sys.executable, "-m", "bench", "run", str(exp), "--results",
                          str(results), "--prefix", prefix], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((results / "t").rglob("rep1.json")):
            assert p.poll() is None, p.stdout.read()
            assert time.monotonic() < deadline, "no point finished in 60 s"
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, out
    assert "interrupted" in out
    done = list((results / "t").rglob("rep1.json"))
    assert 1 <= len(done) < 3
    assert all(read_result(f)["status"] == "ok" for f in done)
    assert not list((results / "t").rglob(".*tmp*"))
    left = leftovers(prefix)
    if left:
        teardown(prefix)
    assert left == []


@pytest.mark.testbed
def test_a_target_that_never_becomes_healthy_fails_its_points_and_the_next_target_runs(tmp_path):
    """Unhealthy target: its points are failed results with its logs; the next target is measured."""
    @register
    class NeverHealthy(Target):
        name = "test-never-healthy"
        health_timeout_s = 1.0

        @property
        def endpoint(self):
            return Endpoint("10.10.2.2", 80)

        def deploy(self):
            pass

        def start(self):
            pass

        def healthy(self):
            return False

        def stop(self):
            pass

        def logs(self):
            return {"never-healthy": "listening on nothing, on purpose"}

    try:
        p = experiment(tmp_path, '["1KB"]')
        p.write_text(p.read_text().replace('name = "direct"',
                                           'name = "test-never-healthy"\n\n[[target]]\nname = "direct"'))
        exp = load_experiment(p)
        results = tmp_path / "results"
        s = Campaign(exp, results, prefix=unique_prefix("wl"), console=quiet()).run()
        assert (s["ok"], s["failed"]) == (1, 1)
        bad = read_result(results / "t" / "test-never-healthy" / "1KB" / "keep-alive-c4-t1" /
                          "rep1.json")
        assert bad["status"] == "failed" and "not healthy within 1s" in bad["error"]
        assert bad["logs"]["never-healthy"] == "listening on nothing, on purpose"
        good = read_result(results / "t" / "direct" / "1KB" / "keep-alive-c4-t1" / "rep1.json")
        assert good["status"] == "ok"
    finally:
        _REGISTRY.pop("test-never-healthy", None)


@pytest.mark.testbed
def test_interleaved_campaign_deploys_every_target_once_per_repetition(tmp_path, monkeypatch):
    """interleave = true: deployments go direct, direct-b2, direct, direct-b2, and
    every point runs on the deployment of its own repetition."""
    p = experiment(tmp_path, '["1KB"]', reps=2)
    text = p.read_text().replace("repetitions = 2", "repetitions = 2\ninterleave = true")
    text = text.replace('name = "direct"\n',
                        'name = "direct"\n\n[[target]]\nname = "direct"\nlabel = "direct-b2"\n'
                        'params = { backend = "backend2" }\n')
    p.write_text(text)
    deployed = []
    orig = Direct.deploy
    monkeypatch.setattr(Direct, "deploy",
                        lambda self: (deployed.append(self.backend.name), orig(self))[1])
    results = tmp_path / "results"
    s = Campaign(load_experiment(p), results, prefix=unique_prefix("wl"), console=quiet()).run()
    assert (s["ok"], s["failed"]) == (4, 0)
    assert deployed == ["backend1", "backend2", "backend1", "backend2"]
    docs = [read_result(f) for f in sorted((results / "t").rglob("*.json"))]
    assert sorted(d["point_id"].split("/")[0] for d in docs) == ["direct"] * 2 + ["direct-b2"] * 2
