"""A run that cannot be right is refused before it starts: `bench run` names the file and the
field, and leaves no campaign directory, no moved results/latest and no namespace."""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from bench import runner
from bench.experiment import load_experiment, topology_path
from bench.runner import Campaign, RunRefused, Selection
from common.errors import ConfigError, HostError
from hosts.testbed import existing_namespaces

from conftest import unique_prefix

REPO = Path(__file__).resolve().parent.parent

EXPERIMENT = """
[campaign]
name = "t"
workloads = "workloads/default.toml"

[[target]]
name = "direct"

[[target]]
name = "{second}"
{params}

[parameters]
workload = ["1KB", "traffic1"]
conn_mode = ["keep-alive", "close"]
connections = 4
threads = 1
duration_s = 1
warmup_s = 0
"""


def write_experiment(tmp: Path, second: str = "haproxy", params: str = "",
                     name: str = "exp.toml") -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(EXPERIMENT).format(second=second, params=params))
    return p


def bench(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.fixture
def results(tmp_path) -> Path:
    """A results root whose `latest` points at an earlier campaign, as after any run."""
    root = tmp_path / "results"
    (root / "earlier").mkdir(parents=True)
    (root / "latest").symlink_to("earlier")
    return root


def assert_refused(r: subprocess.CompletedProcess, results: Path, prefix: str,
                   *expect: str, campaign_dir_existed: bool = False,
                   namespaces: tuple[str, ...] = ()) -> None:
    """Exit 2, the message names what is wrong, and nothing was created or moved
    (the namespaces under the prefix are those the test made, if any)."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    for text in expect:
        assert text in r.stderr, (text, r.stderr)
    assert os.readlink(results / "latest") == "earlier"
    if not campaign_dir_existed:
        assert sorted(p.name for p in results.iterdir()) == ["earlier", "latest"]
    assert sorted(ns for ns in existing_namespaces() if ns.startswith(prefix + "-")) == sorted(
        namespaces)


@pytest.mark.parametrize("second,params,field,problem", [
    ("miresga", "params = { wscale = 99 }", "target[1].params.wscale",
     "less than or equal to 14"),
    ("miresga", 'params = { offload_after_bytes = "lots" }',
     "target[1].params.offload_after_bytes", "valid integer"),
    ("miresga", "params = { frontend_idle_s = 200.0 }", "target[1].params",
     "filter_period_s must exceed frontend_idle_s"),
    ("miresga", "params = { frontend_limits = { syn_timeout = 5 } }",
     "target[1].params.frontend_limits", "unknown front-end knob 'syn_timeout'"),
    ("miresga", "params = { frontend_limits = { handoff = \"eventually\" } }",
     "target[1].params.frontend_limits.handoff", "handoff 'eventually' is not one of async, "),
    ("miresga", "params = { frontend_port = \"xdp\" }", "target[1].params.frontend_port",
     "'xdp': known ports are af_packet, af_xdp"),
    ("haproxy", "params = { bufsize_bytes = 100 }", "target[1].params.bufsize_bytes",
     "too small"),
    ("haproxy", "params = { bufsize = 65536 }", "target[1].params.bufsize",
     "unknown parameter of target 'haproxy'; known: workers, maxconn"),
    ("l4switch", "params = { maglev_size = 65536 }", "target[1].params.maglev_size",
     "not a prime"),
    ("nginx", "params = { workers = -1 }", "target[1].params.workers",
     "greater than or equal to 0"),
])
def test_bad_target_parameters_are_refused_before_the_dry_run(tmp_path, results, second, params,
                                                              field, problem):
    """Target parameters are typed and ranged: a bad one is named with its file and field,
    by the dry run too, long before a point would have failed on it."""
    exp = write_experiment(tmp_path, second, params)
    prefix = unique_prefix("rf")
    for extra in (["--dry-run"], []):
        r = bench("run", str(exp), "--results", str(results), "--prefix", prefix, *extra)
        assert_refused(r, results, prefix, f"{exp}: {field}: ", problem)


def test_a_missing_topology_is_refused_by_the_dry_run(tmp_path, results):
    exp = write_experiment(tmp_path)
    prefix = unique_prefix("rf")
    r = bench("run", str(exp), "--dry-run", "--topology", str(tmp_path / "nosuch.toml"),
              "--results", str(results), "--prefix", prefix)
    assert_refused(r, results, prefix, f"{tmp_path / 'nosuch.toml'}: cannot read topology")


def no_frontend_topology(tmp: Path) -> Path:
    text = (REPO / "testbeds" / "emulated.toml").read_text()
    host = '[[host]]\nname = "frontend1"\nrole = "frontend"\naddress = "10.10.2.2/24"\n'
    assert host in text
    p = tmp / "nofe.toml"
    p.write_text(text.replace(host, ""))
    return p


def test_a_target_whose_roles_the_topology_lacks_is_refused(tmp_path, results):
    """HAProxy needs a front-end host: a topology without one is refused before `direct`
    runs for minutes and HAProxy fails (and the report blames its integrity)."""
    exp = write_experiment(tmp_path, "haproxy")
    topo = no_frontend_topology(tmp_path)
    prefix = unique_prefix("rf")
    for extra in (["--dry-run"], []):
        r = bench("run", str(exp), "--topology", str(topo), "--results", str(results),
                  "--prefix", prefix, *extra)
        assert_refused(r, results, prefix,
                       f"{exp}: target[1] (haproxy): needs a host with role 'frontend', and "
                       f"the testbed has none (testbed {topo})")
    # The slice that needs no front-end is fine.
    ok = bench("run", str(exp), "--topology", str(topo), "--dry-run", "--target", "direct")
    assert ok.returncode == 0, ok.stderr


def test_a_congestion_control_the_kernel_lacks_is_refused_by_the_dry_run(tmp_path, results):
    """The testbed names its hosts' TCP congestion control; one this kernel lacks is
    refused with the file and field before a campaign directory exists."""
    text = (REPO / "testbeds" / "emulated.toml").read_text()
    topo = tmp_path / "cc.toml"
    topo.write_text(text.replace("[testbed]\n", '[testbed]\ncongestion_control = "nosuchcc"\n', 1))
    exp = write_experiment(tmp_path)
    prefix = unique_prefix("rf")
    for extra in (["--dry-run"], []):
        r = bench("run", str(exp), "--topology", str(topo), "--results", str(results),
                  "--prefix", prefix, *extra)
        assert_refused(r, results, prefix,
                       f"{topo}: testbed.congestion_control: 'nosuchcc' is not in this kernel")


def test_direct_to_a_backend_the_topology_lacks_is_refused(tmp_path, results):
    exp = write_experiment(tmp_path, "direct", 'label = "b9"\nparams = { backend = "backend9" }')
    prefix = unique_prefix("rf")
    r = bench("run", str(exp), "--dry-run", "--results", str(results), "--prefix", prefix)
    assert_refused(r, results, prefix, f"{exp}: target[1].params.backend: 'backend9' is not a "
                                       f"host with role 'backend'")


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments").glob("*.toml")))
def test_an_experiment_copied_elsewhere_finds_the_same_files(tmp_path, name):
    """The shipped experiments name their workloads and topology from the checkout: a copy
    anywhere resolves them to the same files, and its dry run passes."""
    shipped = REPO / "experiments" / name
    copy = tmp_path / "elsewhere" / name
    copy.parent.mkdir()
    shutil.copy(shipped, copy)
    here, there = load_experiment(shipped), load_experiment(copy)
    assert there.workloads_path.resolve() == here.workloads_path.resolve()
    assert here.workloads_path.resolve().is_relative_to(REPO)
    topology = topology_path(here)
    assert topology_path(there) == topology if topology is None else (
        topology_path(there).resolve() == topology.resolve())
    r = bench("run", str(copy), "--dry-run", "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "r").exists()


def test_a_workloads_path_that_names_two_files_is_refused(tmp_path, results):
    """`workloads/default.toml` beside the experiment and in the checkout, two different
    files: which one a run read would depend on where the experiment is."""
    exp = write_experiment(tmp_path)
    (tmp_path / "workloads").mkdir()
    (tmp_path / "workloads" / "default.toml").write_text(
        '[objects]\nsizes = ["1KB"]\n\n[[workload]]\nname = "1KB"\nsize = "1KB"\n')
    prefix = unique_prefix("rf")
    r = bench("run", str(exp), "--dry-run", "--results", str(results), "--prefix", prefix)
    assert_refused(r, results, prefix, f"{exp}: campaign.workloads: 'workloads/default.toml' "
                                       f"names two files")


def test_a_file_relative_path_that_is_missing_is_refused(tmp_path, results):
    exp = write_experiment(tmp_path)
    exp.write_text(exp.read_text().replace('"workloads/default.toml"',
                                           '"../workloads/default.toml"'))
    prefix = unique_prefix("rf")
    r = bench("run", str(exp), "--dry-run", "--results", str(results), "--prefix", prefix)
    assert_refused(r, results, prefix, f"{exp}: campaign.workloads: no file")


def done_point(exp_path: Path, results: Path, **change) -> Path:
    """A finished result of the experiment's first point, as a run writes it."""
    exp = load_experiment(exp_path)
    c = Campaign(exp, results)
    point = c.points[0]
    params = {**c.parameters(point), **change}
    path = results / exp.name / point.relpath
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": "miresga-bench-result", "format_version": 1,
                                "status": "ok", "parameters": params}))
    return path


def test_a_point_measured_with_other_parameters_is_refused_without_force(tmp_path, results):
    """Resuming after changing duration_s would overwrite the earlier point at the same
    path: refused naming the file and what differs; --force overwrites."""
    exp = write_experiment(tmp_path)
    point = done_point(exp, results, duration_s=5)
    before = point.read_bytes()
    prefix = unique_prefix("rf")
    r = bench("run", str(exp), "--results", str(results), "--prefix", prefix)
    assert_refused(r, results, prefix, f"{point}: duration_s = 5 there, 1 here", "--force",
                   campaign_dir_existed=True)
    assert point.read_bytes() == before
    assert not (results / "t" / ".lock").exists()
    dry = bench("run", str(exp), "--dry-run", "--results", str(results))
    assert dry.returncode == 0 and dry.stdout.startswith("changed direct/1KB/"), dry.stdout
    assert "would be refused without --force" in dry.stderr
    forced = Campaign(load_experiment(exp), results, force=True)
    forced.refuse_changed()  # does not raise
    assert forced.points[0] in forced.todo()


def test_a_second_run_of_a_campaign_is_refused_while_the_first_holds_it(tmp_path, results):
    """Two runs of one campaign would write the same files: the second is refused, naming
    the directory and the first run's pid."""
    exp = write_experiment(tmp_path)
    campaign = Campaign(load_experiment(exp), results)
    with campaign.lock():
        prefix = unique_prefix("rf")
        r = bench("run", str(exp), "--results", str(results), "--prefix", prefix)
        assert_refused(r, results, prefix, f"{results / 't'} is in use by another run "
                                           f"(pid {os.getpid()})", campaign_dir_existed=True)
        with pytest.raises(RunRefused):
            Campaign(load_experiment(exp), results).run()
    # Released with the first run: the lock file is free again.
    fd = os.open(results / "t" / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_a_testbed_that_does_not_come_up_leaves_no_campaign_directory(tmp_path, results,
                                                                     monkeypatch):
    """The hosts of an inventory cannot be reached (or a testbed does not build): the run
    fails before its first point, so it makes no directory and leaves latest where it was.
    tests/test_remote_campaign.py has a real unreachable host."""
    def unreachable(*args, **kwargs):
        raise HostError("backend3: cannot reach 10.0.0.3:2222 over SSH")

    monkeypatch.setattr(runner, "open_testbed", unreachable)
    campaign = Campaign(load_experiment(write_experiment(tmp_path)), results,
                        console=Console(file=io.StringIO()))
    with pytest.raises(HostError, match="cannot reach"):
        campaign.run()
    assert sorted(p.name for p in results.iterdir()) == ["earlier", "latest"]
    assert os.readlink(results / "latest") == "earlier"


@pytest.mark.parametrize("args,expect", [
    (["--no-deploy"], "--no-deploy: only with --inventory"),
    (["--inventory", "testbeds/inventory.example.toml", "--prefix", "x1"],
     "--prefix: only for an emulated testbed"),
    (["--inventory", "testbeds/inventory.example.toml", "--topology", "testbeds/emulated.toml"],
     "give --topology (emulated testbed) or --inventory (real hosts), not both"),
    (["--target", "nosuch"], "--target nosuch: not a target of"),
    (["--workload", "10KB"], "--workload 10KB: not a workload of"),
    (["--only", "conections=4"], "--only conections=4: 'conections' is not a parameter"),
    (["--only", "connections=8"], "runs connections = 4"),
    (["--only", "conn_mode=closed"], "--only conn_mode=closed: Input should be"),
    (["--only", "repetition=2"], "has repetitions 1 to 1"),
])
def test_options_that_would_do_nothing_are_refused(tmp_path, results, args, expect):
    exp = write_experiment(tmp_path)
    prefix = unique_prefix("rf")
    r = bench("run", str(exp), "--results", str(results), *args,
              *([] if "--inventory" in args else ["--prefix", prefix]))
    assert_refused(r, results, prefix, expect)


def test_filters_select_a_slice(tmp_path):
    exp = load_experiment(write_experiment(tmp_path))
    ids = lambda sel: [p.id for p in Campaign(exp, tmp_path / "r", select=sel).points]  # noqa: E731
    everything = ids(None)
    assert len(everything) == 2 * 2 * 2
    assert ids(Selection.parse(exp, ["haproxy"], [], [])) == [
        i for i in everything if i.startswith("haproxy/")]
    assert ids(Selection.parse(exp, [], ["traffic1"], ["conn_mode=close"])) == [
        "direct/traffic1/close-c4-t1/rep1", "haproxy/traffic1/close-c4-t1/rep1"]
    assert ids(Selection.parse(exp, ["direct", "haproxy"], [], ["connections=4"])) == everything


def test_the_dry_run_lists_the_slice_and_estimates_its_length(tmp_path):
    exp = write_experiment(tmp_path)
    r = bench("run", str(exp), "--dry-run", "--results", str(tmp_path / "r"),
              "--target", "haproxy", "--only", "conn_mode=close")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["todo    haproxy/1KB/close-c4-t1/rep1",
                                     "todo    haproxy/traffic1/close-c4-t1/rep1"]
    assert "2 points: 0 done, 2 to run" in r.stderr
    assert "estimated duration:" in r.stderr and "1 deployments" in r.stderr
    assert not (tmp_path / "r").exists()


def test_a_closed_pipe_ends_the_dry_run_without_a_traceback():
    """`bench run ... --dry-run | head -1`: the reader leaves early, as readers do.  Here it
    has left before the first line (its end of the pipe is closed before the bench starts),
    so every run meets the closed pipe, whatever the timing."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "bench", "run", "experiments/default.toml",
                            "--dry-run"], stdout=w, stderr=subprocess.PIPE, text=True, cwd=REPO,
                           timeout=120)
    finally:
        os.close(w)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
    assert p.returncode == 141  # as a process that SIGPIPE ended


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_prefix_of_the_wrong_form_is_refused_before_the_campaign(tmp_path, results, dry_run):
    """Named with the option before the campaign directory is made or latest moves (the
    testbed refused it, after both)."""
    exp = write_experiment(tmp_path)
    r = bench("run", str(exp), "--results", str(results), "--prefix", "Bad",
              *(["--dry-run"] if dry_run else []))
    assert_refused(r, results, "Bad", "--prefix Bad: 1-8 lowercase letters and digits")


@pytest.mark.root
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_prefix_whose_testbed_is_up_is_refused_before_the_campaign(tmp_path, results, dry_run):
    """A namespace of the prefix's testbed exists: refused naming the option and the
    namespace, and the namespace is left alone."""
    exp = write_experiment(tmp_path)
    prefix = unique_prefix("rf")
    taken = f"{prefix}-client"
    subprocess.run(["ip", "netns", "add", taken], check=True)
    try:
        r = bench("run", str(exp), "--results", str(results), "--prefix", prefix,
                  *(["--dry-run"] if dry_run else []))
        assert_refused(r, results, prefix, f"--prefix {prefix}: testbed {prefix!r} is already "
                                           f"up (namespaces {taken})", namespaces=(taken,))
    finally:
        subprocess.run(["ip", "netns", "delete", taken], check=True)


def test_make_refuses_an_unknown_role():
    """`make host-nosuch` built nothing and said it had built the parts."""
    r = subprocess.run(["make", "-s", "host-nosuch"], capture_output=True, text=True, cwd=REPO,
                       timeout=60)
    assert r.returncode != 0
    assert "no role 'nosuch'; the roles are client switch frontend backend extra" in r.stderr
    assert "built" not in r.stdout


def test_the_client_role_builds_the_generator_venv_and_only_it():
    """The open-loop generator's venv is a client's part: other roles do not build it."""
    def plan(role: str) -> str:
        r = subprocess.run(["make", "-n", "-B", f"host-{role}"], capture_output=True,
                           text=True, cwd=REPO, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "scripts/loadgen-venv.sh" in plan("client")
    for role in ("switch", "frontend", "backend", "extra"):
        assert "loadgen-venv" not in plan(role), role
    assert "loadgen" not in (REPO / "scripts" / "setup-system.sh").read_text()


def test_the_campaign_refuses_a_filter_that_selects_nothing(tmp_path):
    exp = load_experiment(write_experiment(tmp_path))
    with pytest.raises(ConfigError, match="the filters select no point"):
        Campaign(exp, tmp_path / "r", select=lambda p: False)
