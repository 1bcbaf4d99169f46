"""The Python mirror of miresga/agent/agent.h against the C compiler and the BTF.

Two references: build/agent-layout-probe (the host compiler's offsets and
the enums' values) and the BTF of build/bpf/agent.bpf.o (the layout the
kernel actually uses when the loader writes and reads the maps).
"""

from __future__ import annotations

import ctypes
import json
import subprocess
from pathlib import Path

import pytest

from miresga.control import agent as ag
from switchhost.layouts import COOKIE_NO_WSCALE

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "build" / "agent-layout-probe"
OBJECT = ROOT / "build" / "bpf" / "agent.bpf.o"

MIRROR = {
    "mg_agent_key": ag.AgentKey,
    "mg_agent_conn": ag.AgentConn,
    "mg_agent_config": ag.AgentConfigRaw,
}


def _built(path: Path) -> Path:
    assert path.exists(), f"{path} missing: run `make build`"
    return path


@pytest.fixture(scope="module")
def probe() -> dict:
    out = subprocess.run([str(_built(PROBE))], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def btf() -> dict:
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(_built(OBJECT))],
                         check=True, capture_output=True, text=True)
    return {t["name"]: t for t in json.loads(out.stdout)["types"]
            if t.get("kind") == "STRUCT" and t.get("name")}


@pytest.mark.parametrize("cname", sorted(MIRROR))
def test_struct_matches_c_compiler(probe, cname):
    """Size and every field offset of the ctypes mirror equal the host compiler's."""
    py = MIRROR[cname]
    c = probe["structs"][cname]
    assert ctypes.sizeof(py) == c["size"]
    for field, off in c["fields"].items():
        assert getattr(py, field).offset == off, field


@pytest.mark.parametrize("cname", sorted(MIRROR))
def test_struct_matches_object_btf(btf, cname):
    """Size and every named member offset equal the BTF of the compiled eBPF object."""
    py = MIRROR[cname]
    t = btf[cname]
    assert ctypes.sizeof(py) == t["size"]
    names = [m["name"] for m in t["members"]]
    assert names == [f[0] for f in py._fields_], "fields differ in name or order"
    for m in t["members"]:
        assert getattr(py, m["name"]).offset * 8 == m["bits_offset"], m["name"]


def test_enums_match(probe):
    """Counters, states and flags have the C values, and nothing is missing."""
    e = probe["enums"]
    for c in ag.Counter:
        assert e[f"MG_AG_{c.name}"] == c.value, c.name
    assert e["MG_AG__MAX"] == ag.COUNTER_MAX
    assert {k for k in e if k.startswith("MG_AG_") and k != "MG_AG__MAX"} == \
        {f"MG_AG_{c.name}" for c in ag.Counter}
    for s in ag.ConnState:
        assert e[f"MG_AGENT_{s.name}"] == s.value
    assert (e["MG_AGENT_FIN_IN"], e["MG_AGENT_FIN_OUT"], e["MG_AGENT_RST"], e["MG_AGENT_TS"]) == \
        (ag.FIN_IN, ag.FIN_OUT, ag.RST, ag.TS)
    assert e["MG_AGENT_CONNS_DEFAULT"] == ag.CONNS_DEFAULT
    assert e["MG_AGENT_MAX_PORTS"] == ag.MAX_PORTS
    assert e["MG_COOKIE_NO_WSCALE"] == COOKIE_NO_WSCALE


@pytest.mark.root
def test_counter_map_has_one_slot_per_counter():
    """The stats map the kernel created holds exactly the counters Python names."""
    with ag.LoadedAgent(ag.AgentConfig(max_conns=16)) as loaded:
        assert loaded.stats_map.max_entries == ag.COUNTER_MAX
        assert loaded.conns.max_entries == 16
        assert set(loaded.counters()) == {c.name.lower() for c in ag.Counter}


def test_config_is_validated():
    """Out-of-range knobs are refused before anything is loaded."""
    for bad in [dict(wscale=15), dict(ports=()), dict(ports=(0,)), dict(max_conns=0),
                dict(idle_timeout_s=0), dict(close_grace_s=100, idle_timeout_s=10)]:
        with pytest.raises(ValueError):
            ag.AgentConfig(**bad).validate()
