"""Bodies under load: every point samples the bodies beside the load, and a wrong one fails it."""

from __future__ import annotations

import os
import textwrap

import pytest

from analysis.results import read_result, tidy
from bench.bodies import BodyCheck, problem, sample
from bench.experiment import load_experiment
from bench.runner import Campaign

from conftest import unique_prefix

WORKLOADS = """
[objects]
sizes = ["1KB", "10KB"]
per_size = 3
seed = 5

[[workload]]
name = "1KB"
size = "1KB"

[[workload]]
name = "10KB"
size = "10KB"
"""

# Flip every bit of one byte of a file, in place: same length, other bytes.
CORRUPT = "import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); " \
          "b[100] ^= 0xff; open(p, 'r+b').write(b)"


def test_the_sample_is_spread_over_the_list_and_bounded():
    paths = [f"/obj/{i:03d}" for i in range(200)]
    got = sample(paths, 10)
    assert len(got) == 10 and got[0] == "/obj/000" and got[-1] == "/obj/180"
    assert sample(paths[:5], 10) == paths[:5]


def test_a_mismatch_or_a_missing_result_is_a_problem():
    clean = {"checked": 40, "mismatched": 0, "failed": 2, "error": None}
    assert problem(clean) is None and problem(None) is None
    assert "1 of 40 bodies" in problem({**clean, "mismatched": 1})
    assert problem({**clean, "checked": 0, "error": "the close checker printed no result"})


def test_no_object_of_the_workload_in_the_manifest_is_an_error():
    check = BodyCheck(client=type("H", (), {"workdir": "/nonexistent"})(), url="http://x",
                      manifest={}, paths=["/obj/1KB/a"], duration_s=1, timeout_s=1)
    assert problem(check.start().finish()) == \
        "no object of the point's workload is in the manifest"


@pytest.mark.testbed
def test_a_body_changed_on_the_backends_fails_the_point_and_a_clean_one_is_checked(
        tmp_path, monkeypatch):
    """Two points through HAProxy; before the 10KB point (after the target's integrity
    check) the 10KB objects change on every back-end, same length, one byte flipped:
    that point fails on its bodies, the 1KB point passes with bodies checked on both
    kinds of connection."""
    (tmp_path / "wl.toml").write_text(WORKLOADS)
    exp = tmp_path / "exp.toml"
    exp.write_text(textwrap.dedent("""
        [campaign]
        name = "b"
        workloads = "wl.toml"
        repetitions = 1

        [[target]]
        name = "haproxy"

        [parameters]
        workload = ["1KB", "10KB"]
        connections = 4
        threads = 1
        duration_s = 2
        warmup_s = 0
    """))
    original = Campaign._run_point
    corrupted = []

    def run_point(self, ctx, target, point, integrity):
        if point.workload == "10KB":
            for host in ctx.backends.hosts:
                for path in ctx.store.objects.paths("10KB"):
                    host.run(f"{host.python} -c {CORRUPT!r} {ctx.backends.www_dir(host)}{path}")
                    corrupted.append((host.name, path))
        return original(self, ctx, target, point, integrity)

    monkeypatch.setattr(Campaign, "_run_point", run_point)
    results = tmp_path / "results"
    s = Campaign(load_experiment(exp), results, prefix=unique_prefix("bd"),
                 console=quiet()).run()
    assert corrupted and (s["ok"], s["failed"]) == (1, 1)
    docs = {d["parameters"]["workload"]: d
            for d in map(read_result, sorted((results / "b").rglob("rep1.json")))}
    clean, bad = docs["1KB"], docs["10KB"]
    assert clean["status"] == "ok", clean["error"]
    assert clean["bodies"]["mismatched"] == 0 and clean["bodies"]["error"] is None
    for mode in ("keep_alive", "close"):
        assert clean["bodies"][mode]["checked"] > 0, clean["bodies"]
    assert bad["status"] == "failed"
    assert bad["bodies"]["mismatched"] > 0
    assert "did not match the manifest" in bad["error"]
    assert bad["bodies"]["keep_alive"]["mismatches"][0]["path"].startswith("/obj/10KB/")
    table = tidy(results / "b").set_index("workload")
    assert table.loc["1KB", "bodies_checked"] > 0 and table.loc["1KB", "bodies_mismatched"] == 0
    assert table.loc["10KB", "status"] == "failed" and table.loc["10KB", "bodies_mismatched"] > 0


def quiet():
    from rich.console import Console

    return Console(file=open(os.devnull, "w"))

