"""The front-end's compiled defaults against the Python that renders its config.

`miresga-frontend --print-defaults` prints every directive with the default a
config file that leaves it out gets, in the file's units.  Every directive
fe_config.c accepts must be there, so a new knob cannot be left out; and the
Python side must state the same numbers (LIMIT_DEFAULTS and FrontendFacts in
miresga/control/frontend.py, the request limits and port of Service), so a
default changed in one language and not the other fails here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess

import pytest

from fe_harness import BINARY, REPO
from miresga.control.frontend import LIMIT_DEFAULTS, FrontendFacts
from common.service import Service

CONFIG_C = REPO / "miresga" / "frontend" / "fe_config.c"


def accepted_directives() -> set[str]:
    """The directive names fe_config.c's parser matches: its scalar table, then the rest."""
    src = CONFIG_C.read_text()
    scalars = re.findall(r'\bSC\("(\w+)"', src)
    others = re.findall(r'!strcmp\(d, "(\w+)"\)', src)
    assert scalars and others, f"{CONFIG_C} no longer declares directives as this test reads them"
    return set(scalars) | set(others)


def python_defaults() -> dict[str, int | str]:
    """Every number the Python side fills in when a caller gives none."""
    service = Service.model_fields
    facts = {f.name: f.default for f in dataclasses.fields(FrontendFacts)}
    return {
        **LIMIT_DEFAULTS,
        "max_header_bytes": service["max_header_bytes"].default,
        "request_timeout_ms": round(service["request_timeout_s"].default * 1000),
        "vip_index": facts["vip_index"],
        "vip_wscale": facts["vip_wscale"],
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


def test_the_handoff_mode_default_is_stated_on_both_sides(defaults):
    """`handoff` is a word, not a number: the same default on both sides."""
    assert defaults["handoff"] == python_defaults()["handoff"] == "async"


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
