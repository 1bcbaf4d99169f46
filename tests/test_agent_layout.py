"""The agent's counter map and config as the kernel and the loader see them.

(The layouts themselves are generated from agent.h's BTF and held to it, and
to the BTF of build/bpf/agent.bpf.o, by tests/test_layouts_btf.py.)
"""

from __future__ import annotations

import pytest

from miresga.control import agent as ag


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
