"""The wrk mix sampler, run under LuaJIT (the LuaJIT wrk links): proportions, reproducibility."""

from __future__ import annotations

import subprocess

import pytest

from bench.wrk import LUA_DIR, lua_literal
from workloads.model import DEFAULT_WORKLOADS, load_workloads

# chi-square critical values at p = 0.001, by degrees of freedom: a correct
# sampler fails one check in a thousand runs.
CHI2_CRIT = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}
DRAWS = 400_000


def run_sampler(classes: list[dict], seed: int, stream: int, draws: int) -> dict:
    """Draw with sampler.lua under luajit; counts per class and per (class, object)."""
    driver = f"""
local classes = {lua_literal(classes)}
local s = sampler_new(classes, {seed}, {stream})
local by_class, by_object, first = {{}}, {{}}, {{}}
for i = 1, {draws} do
  local ci, pi = sampler_draw(s)
  by_class[ci] = (by_class[ci] or 0) + 1
  local k = ci .. ":" .. pi
  by_object[k] = (by_object[k] or 0) + 1
  if i <= 20 then first[#first + 1] = k end
end
for ci = 1, #classes do io.write("class ", ci, " ", by_class[ci] or 0, "\\n") end
for k, n in pairs(by_object) do io.write("object ", k, " ", n, "\\n") end
io.write("first ", table.concat(first, ","), "\\n")
"""
    script = (LUA_DIR / "sampler.lua").read_text() + "\n" + driver
    p = subprocess.run(["luajit", "-"], input=script, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = {"class": {}, "object": {}, "first": None}
    for line in p.stdout.splitlines():
        kind, *rest = line.split()
        if kind == "class":
            out["class"][int(rest[0])] = int(rest[1])
        elif kind == "object":
            out["object"][rest[0]] = int(rest[1])
        else:
            out["first"] = rest[0]
    return out


def classes_of(name: str) -> list[dict]:
    wl = load_workloads(DEFAULT_WORKLOADS)
    return [{"name": label, "weight": w, "paths": wl.objects.paths(label)}
            for label, w in wl.get(name).classes()]


def chi2(observed: list[int], expected: list[float]) -> float:
    return sum((o - e) ** 2 / e for o, e in zip(observed, expected))


@pytest.mark.parametrize("workload", ["traffic1", "traffic2", "traffic3"])
def test_mix_proportions_match_the_definition(workload):
    """Class frequencies over many draws fit the mix's weights (chi-square, p = 0.001)."""
    classes = classes_of(workload)
    out = run_sampler(classes, seed=7, stream=1, draws=DRAWS)
    total = sum(c["weight"] for c in classes)
    observed = [out["class"][i + 1] for i in range(len(classes))]
    assert sum(observed) == DRAWS
    if len(classes) == 1:
        assert observed == [DRAWS]
        return
    expected = [DRAWS * c["weight"] / total for c in classes]
    stat = chi2(observed, expected)
    assert stat < CHI2_CRIT[len(classes) - 1], (workload, observed, expected, stat)
    # And the shares read as the seed's percentages, to a tenth of a point.
    for c, o in zip(classes, observed):
        assert abs(o / DRAWS * 100 - c["weight"] / 100) < 0.25, (c["name"], o / DRAWS)


def test_objects_within_a_class_are_uniform():
    """Every object of a class is drawn equally often (chi-square over the objects)."""
    classes = classes_of("traffic3")
    out = run_sampler(classes, seed=11, stream=2, draws=DRAWS)
    for ci, c in enumerate(classes, start=1):
        counts = [out["object"].get(f"{ci}:{pi}", 0) for pi in range(1, len(c["paths"]) + 1)]
        mean = sum(counts) / len(counts)
        assert chi2(counts, [mean] * len(counts)) < CHI2_CRIT[len(counts) - 1], (c["name"], counts)


def test_same_seed_same_draws_other_stream_other_draws():
    """A run is reproducible, and two wrk threads (streams) do not draw the same sequence."""
    classes = classes_of("traffic2")
    a = run_sampler(classes, seed=3, stream=1, draws=1000)
    b = run_sampler(classes, seed=3, stream=1, draws=1000)
    c = run_sampler(classes, seed=3, stream=2, draws=1000)
    assert a["first"] == b["first"] and a["class"] == b["class"]
    assert a["first"] != c["first"]
