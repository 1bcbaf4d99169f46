"""Experiment and workload files: validation naming the problem, and the run list."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.experiment import load_experiment
from common.errors import ConfigError
from workloads.model import DEFAULT_WORKLOADS, load_workloads, parse_size

REPO = Path(__file__).resolve().parent.parent

GOOD = """
[campaign]
name = "t"
workloads = "{workloads}"
repetitions = 2

[[target]]
name = "direct"

[parameters]
workload = ["1KB", "traffic2"]
conn_mode = ["keep-alive", "close"]
connections = 8
threads = 2
duration_s = 1
"""


def write(tmp_path: Path, text: str, workloads: Path = DEFAULT_WORKLOADS) -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(textwrap.dedent(text).replace("{workloads}", str(workloads)))
    return p


def test_the_shipped_experiments_and_workloads_are_valid():
    """experiments/*.toml and workloads/default.toml load, with the seed's mixes exactly."""
    for f in sorted((REPO / "experiments").glob("*.toml")):
        assert load_experiment(f).points()
    wl = load_workloads(DEFAULT_WORKLOADS)
    assert wl.get("traffic1").mix_percent() == {"1KB": 100}
    assert wl.get("traffic2").mix_percent() == {"1KB": 70, "10KB": 20, "1MB": 8, "10MB": 2}
    assert wl.get("traffic3").mix_percent() == {"1KB": 50, "10KB": 30, "1MB": 15, "10MB": 5}
    assert [parse_size(s) for s in wl.objects.sizes] == [1024, 10240, 102400, 1 << 20, 10 << 20]


def test_points_are_deterministic_and_grouped_by_target(tmp_path):
    """The run list is the same every time: target, repetition, workload, then parameters."""
    exp = load_experiment(write(tmp_path, GOOD))
    ids = [p.id for p in exp.points()]
    assert ids == [p.id for p in load_experiment(write(tmp_path, GOOD)).points()]
    assert len(ids) == 2 * 2 * 2 and len(set(ids)) == len(ids)
    assert ids[:4] == ["direct/1KB/keep-alive-c8-t2/rep1", "direct/1KB/close-c8-t2/rep1",
                       "direct/traffic2/keep-alive-c8-t2/rep1", "direct/traffic2/close-c8-t2/rep1"]
    assert ids[4].endswith("rep2")


def test_interleave_runs_every_target_once_per_repetition(tmp_path):
    """interleave = true: repetition first, then target, so a slow stretch of a
    shared machine hits one repetition of every target, not one target."""
    text = GOOD.replace("repetitions = 2", "repetitions = 2\ninterleave = true").replace(
        '[[target]]\nname = "direct"\n',
        '[[target]]\nname = "direct"\n\n[[target]]\nname = "l4switch"\n')
    ids = [p.id for p in load_experiment(write(tmp_path, text)).points()]
    assert len(ids) == 2 * 2 * 2 * 2
    heads = [(i.split("/")[0], i.rsplit("/", 1)[1]) for i in ids[::4]]
    assert heads == [("direct", "rep1"), ("l4switch", "rep1"), ("direct", "rep2"),
                     ("l4switch", "rep2")]


@pytest.mark.parametrize("change,expect", [
    (("name = \"direct\"", "name = \"nosuch\""), "target[0].name: unknown target 'nosuch'"),
    (("[\"1KB\", \"traffic2\"]", "[\"1KB\", \"traffic9\"]"),
     "parameters.workload[1]: unknown workload 'traffic9'"),
    (("threads = 2", "threads = 2\nconections = 8"), "parameters.conections: unknown field"),
    (("repetitions = 2", "repetitions = 2\nrepetition = 3"), "campaign.repetition: unknown field"),
    (("conn_mode = [\"keep-alive\", \"close\"]", "conn_mode = [\"keep-alive\", \"closed\"]"),
     "parameters.conn_mode[1]"),
    (("threads = 2", "threads = 16"), "connections: 8 is fewer than threads = 16"),
    (("duration_s = 1", "duration_s = 0"), "parameters.duration_s[0]"),
    (("name = \"direct\"", "name = \"direct\"\nparams = { bakend = \"backend2\" }"),
     "target[0].params.bakend: unknown parameter"),
])
def test_a_bad_experiment_is_refused_naming_the_field(tmp_path, change, expect):
    """Unknown target, workload, field or value: refused before anything starts, field named."""
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfigError) as e:
        load_experiment(write(tmp_path, text))
    assert expect in str(e.value), str(e.value)
    assert "exp.toml" in str(e.value)


@pytest.mark.parametrize("mix,expect", [
    ('{ "1KB" = 70, "10KB" = 20 }', "workload[0]: mix: weights sum to 90%, not 100%"),
    ('{ "1KB" = 90, "3MB" = 10 }', "size 3MB is not in objects.sizes"),
    ('{ "1KB" = 100.5, "10KB" = -0.5 }', "weight -0.5 must be positive"),
    ('{ "1KB" = 100, "10 parsecs" = 0 }', "not a size"),
])
def test_mix_weights_must_sum_to_100(tmp_path, mix, expect):
    """A workloads file whose mix is not 100% (or names a size it does not serve) is refused."""
    wl = tmp_path / "wl.toml"
    wl.write_text(f'[objects]\nsizes = ["1KB", "10KB"]\n\n[[workload]]\nname = "m"\nmix = {mix}\n')
    with pytest.raises(ConfigError) as e:
        load_workloads(wl)
    assert expect in str(e.value) and "wl.toml" in str(e.value), str(e.value)


def test_cli_refuses_a_bad_experiment_before_the_testbed(tmp_path):
    """`bench run` exits 2 naming the problem, and builds no testbed."""
    exp = write(tmp_path, GOOD.replace("name = \"direct\"", "name = \"nosuch\""))
    p = subprocess.run([sys.executable, "-m", "bench", "run", str(exp), "--results",
                        str(tmp_path / "r"), "--prefix", "wlbad"], capture_output=True,
                       text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2
    assert "unknown target 'nosuch'" in p.stderr
    assert not (tmp_path / "r").exists()
    assert not Path("/run/miresga/testbeds/wlbad.json").exists()
