"""The front-end's compiled defaults against the model its config is derived from.

`miresga-frontend --print-defaults` prints every directive with the default a
config file that leaves it out gets, in the file's units (fe_config.c states
each scalar's once, in its directive table).  Every directive fe_config.c
accepts must be there, so a new knob cannot be left out; and the Python side
must state the same numbers, field by field: MiresgaConfig's
(miresga/config.py, through frontend_directives()), the request limits and
port of Service, the VIP index of FrontendFacts.  So a default changed in one
language and not the other fails here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess

import pytest

from fe_harness import BINARY, REPO
from common.service import Service
from miresga.config import MiresgaConfig
from miresga.control.frontend import LIMIT_DEFAULTS, FrontendFacts

CONFIG_C = REPO / "miresga" / "frontend" / "fe_config.c"

#: The deployment's other timeouts: the front-end checks its own against them
#: when the file states them (the launcher always does); left out, unchecked.
UNSTATED = {"filter_period_ms", "switch_idle_ms", "agent_idle_ms"}


def accepted_directives() -> set[str]:
    """The directive names fe_config.c's parser matches: its scalar table, then the rest."""
    src = CONFIG_C.read_text()
    scalars = re.findall(r'\bSC(?:_UNSTATED)?\("(\w+)"', src)
    others = re.findall(r'!strcmp\(d, "(\w+)"\)', src)
    assert scalars and others, f"{CONFIG_C} no longer declares directives as this test reads them"
    return set(scalars) | set(others)


def python_defaults() -> dict[str, int | str]:
    """Every number the Python side fills in when a caller gives none."""
    service = Service.model_fields
    facts = {f.name: f.default for f in dataclasses.fields(FrontendFacts)}
    directives = MiresgaConfig().frontend_directives()
    return {
        **{k: v for k, v in directives.items() if k not in UNSTATED},
        "max_header_bytes": service["max_header_bytes"].default,
        "request_timeout_ms": round(service["request_timeout_s"].default * 1000),
        "vip_index": facts["vip_index"],
    }


@pytest.fixture(scope="module")
def defaults() -> dict:
    # No EAL options: the flag is answered before DPDK starts.
    p = subprocess.run([str(BINARY), "--print-defaults"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_every_directive_is_printed(defaults):
    """The printed keys are exactly the directives the parser accepts."""
    assert set(defaults) == accepted_directives()


def test_every_numeric_knob_has_a_python_default(defaults):
    """Each one-number directive is stated on the Python side, and nothing more."""
    numeric = {k for k, v in defaults.items() if isinstance(v, int)}
    assert numeric == {k for k, v in python_defaults().items() if isinstance(v, int)}


def test_the_launcher_renders_the_model_defaults():
    """LIMIT_DEFAULTS, what the launcher writes when told nothing, is the model's."""
    assert LIMIT_DEFAULTS == MiresgaConfig().frontend_directives()


def test_the_others_timeouts_have_no_compiled_default(defaults):
    """The front-end cannot know the switch's and the agent's timeouts: left out of a
    file written by hand they are unchecked (null); the model always states them."""
    assert {k for k, v in defaults.items() if v is None} >= UNSTATED
    assert UNSTATED <= set(MiresgaConfig().frontend_directives())


def test_the_handoff_mode_default_is_stated_on_both_sides(defaults):
    """`handoff` is a word, not a number: the same default on both sides."""
    assert defaults["handoff"] == python_defaults()["handoff"] == "dataplane"


@pytest.mark.parametrize("knob", sorted(python_defaults()))
def test_python_default_equals_the_c_default(defaults, knob):
    assert python_defaults()[knob] == defaults[knob]


def test_directives_without_a_number(defaults):
    """Required settings and lists have no default; the service port is Service's."""
    assert defaults["vip"] == {"ip": None, "port": Service.model_fields["port"].default}
    assert defaults["nexthop_mac"] is None
    assert defaults["backend"] == defaults["cluster"] == defaults["rule"] == []
    # Absent means: unmatched requests get 404, no offload channel, no stats socket.
    assert defaults["default_cluster"] is None
    assert defaults["control"] is None and defaults["stats_socket"] is None
    assert defaults["control_key"] is None
