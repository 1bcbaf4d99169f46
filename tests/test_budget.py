"""The front-end CPU budget: a CFS quota on a host's cgroup, applied, enforced, lifted,
and recorded in every point of a campaign that sets `frontend_cpu_cores`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from analysis.results import read_result, tidy
from bench.budget import check_supported
from bench.experiment import load_experiment
from bench.runner import Campaign
from common.errors import ConfigError
from hosts.cgroups import CPU_PERIOD_US, CgroupError, HostCgroup, remove_testbed_cgroups

from conftest import unique_prefix, wait_for
from runner_rig import WORKLOADS, quiet
from testbed_checks import leftovers

# This interpreter, not `python3` from PATH: a pyenv shim there runs a tree of
# short-lived processes first, which is not what the test is about.
BUSY_LOOP = f"exec {sys.executable} -c 'while True: pass'"


def _start(cg: HostCgroup, cmd: str) -> subprocess.Popen:
    """A process started as a NetnsHost starts one: its shell joins the cgroup(s) first."""
    return subprocess.Popen(["sh", "-c", cg.join_snippet() + cmd])


def _stop(procs) -> None:
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.root
def test_a_quota_caps_a_busy_loop_and_the_kernel_throttles_it():
    """0.25 core on a host: the quota reads back, a process already running and one
    started later both land in the capped cgroup, the throttling counter moves, and the
    host's CPU time stays within the quota of the periods that passed; lifted, the quota
    reads back as none and the processes stay where they are."""
    prefix = unique_prefix("bg")
    cg = HostCgroup(prefix, "frontend1")
    cg.create()
    procs = []
    try:
        procs.append(_start(cg, BUSY_LOOP))        # before the budget: moved into it
        wait_for(lambda: procs[0].pid in cg.pids(), "the first loop in the host's cgroup")
        held = cg.set_cpu_quota(0.25)
        assert held == {"cores": 0.25, "quota_us": CPU_PERIOD_US // 4, "period_us": CPU_PERIOD_US}
        procs.append(_start(cg, BUSY_LOOP))        # after: joins it as it starts
        wait_for(lambda: {p.pid for p in procs} <= set(cg._cpu_pids()),
                 "both loops in the capped cgroup")
        t0, u0 = cg.cpu_throttling(), cg.usage_ns()
        # Two loops want two CPUs; the quota gives them a quarter of one.
        t1 = wait_for(lambda: (lambda t: t if t["nr_throttled"] - t0["nr_throttled"] >= 20
                               else None)(cg.cpu_throttling()),
                      "the kernel to throttle the host 20 times")
        used_ns = cg.usage_ns() - u0
        periods = t1["nr_periods"] - t0["nr_periods"]
        assert t1["throttled_s"] > t0["throttled_s"]
        # CFS bandwidth: at most the quota per period (two periods' slack for the
        # counters being read a moment apart), however busy the machine is.
        assert used_ns <= (periods + 2) * CPU_PERIOD_US // 4 * 1000
        lifted = cg.set_cpu_quota(None)
        assert lifted["cores"] is None and lifted["quota_us"] is None
    finally:
        _stop(procs)
        remove_testbed_cgroups(prefix)
    assert not leftovers(prefix)


@pytest.mark.root
def test_a_host_without_a_budget_gets_no_cpu_cgroup_and_a_bad_budget_is_refused():
    """Lifting a cap never set creates nothing (hosts without a budget are scheduled as
    before); a quota below the kernel's least is refused naming the number."""
    prefix = unique_prefix("bg")
    cg = HostCgroup(prefix, "frontend1")
    cg.create()
    try:
        assert cg.set_cpu_quota(None)["cores"] is None
        if not cg.v2:
            assert not cg.cpu_path.exists()
        with pytest.raises(CgroupError, match="0.001 cores"):
            cg.set_cpu_quota(0.001)
    finally:
        remove_testbed_cgroups(prefix)
    assert not leftovers(prefix)


def _experiment(tmp_path, target="haproxy", cores="[0.25]", extra=""):
    (tmp_path / "wl.toml").write_text(WORKLOADS)
    p = tmp_path / "exp.toml"
    p.write_text(textwrap.dedent(f"""
        [campaign]
        name = "b"
        workloads = "wl.toml"

        [[target]]
        name = "{target}"

        [parameters]
        workload = ["1KB"]
        connections = 16
        threads = 1
        duration_s = 2
        warmup_s = 0
        frontend_cpu_cores = {cores}
        {extra}
    """))
    return p


def test_budget_sweep_points_and_their_parameters(tmp_path):
    """A swept budget is one point per value, named for it; without a budget a point's
    parameters are those of points measured before budgets existed."""
    exp = load_experiment(_experiment(tmp_path, cores="[0.25, 1]"))
    ids = [p.id for p in exp.points()]
    assert ids == ["haproxy/1KB/keep-alive-c16-t1-fe0.25/rep1",
                   "haproxy/1KB/keep-alive-c16-t1-fe1/rep1"]
    assert [p.params["frontend_cpu_cores"] for p in exp.points()] == [0.25, 1.0]
    (tmp_path / "exp.toml").write_text((tmp_path / "exp.toml").read_text()
                                       .replace("frontend_cpu_cores = [0.25, 1]", ""))
    plain = load_experiment(tmp_path / "exp.toml").points()
    assert [p.id for p in plain] == ["haproxy/1KB/keep-alive-c16-t1/rep1"]
    assert "frontend_cpu_cores" not in plain[0].params


def test_a_budget_too_small_or_on_ssh_hosts_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="frontend_cpu_cores"):
        load_experiment(_experiment(tmp_path, cores="0.001"))
    exp = load_experiment(_experiment(tmp_path))
    with pytest.raises(ConfigError, match="inventory"):
        check_supported(exp.points(), inventory=object())


@pytest.mark.testbed
def test_a_campaign_caps_the_front_end_and_records_the_budget(tmp_path):
    """HAProxy at 0.25 core under a saturating load: the point records the quota the
    kernel held on the front-end host, and that it throttled; the tidy table carries the
    budget; the testbed leaves no cgroup behind."""
    exp = load_experiment(_experiment(tmp_path))
    prefix = unique_prefix("bg")
    s = Campaign(exp, tmp_path / "results", prefix=prefix, console=quiet()).run()
    assert (s["ok"], s["failed"]) == (1, 0)
    doc = read_result(next((tmp_path / "results" / "b").rglob("rep1.json")))
    assert doc["parameters"]["frontend_cpu_cores"] == 0.25
    budget = doc["metrics"]["frontend_budget"]
    host = budget["hosts"]["frontend1"]
    assert (budget["cores"], host["cores"], host["quota_us"]) == (0.25, 0.25, 25000)
    assert host["throttling"]["nr_periods"] > 0 and host["throttling"]["nr_throttled"] > 0
    assert budget["throttled_share"] > 0
    table = tidy(tmp_path / "results" / "b")
    assert list(table["frontend_cpu_cores"]) == [0.25]
    assert table["frontend_throttled_share"].iloc[0] > 0
    assert not leftovers(prefix)
