"""One MiresgaConfig: every component's configuration is derived from it.

A value set once in the model must arrive in the switch's plan (as the
daemon reads it back from JSON), in the agent's configuration (as its
command line parses), in the front-end's config file and in the daemon's
command line; the timeouts' nesting is refused by the model and, on what
they are given, by the components run by hand.  Pure Python: no root.
"""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from common import miresga_defaults as defaults
from common.service import Cluster, Service
from miresga.config import FrontendLimits, MiresgaConfig
from miresga.control import agent
from miresga.control.frontend import LIMIT_DEFAULTS, FrontendFacts, render_config
from switchhost import daemon
from switchhost.plan import Endpoint, VipSpec
from switchhost.pipelines.miresga import SwitchPlan
from targets.miresga import MiresgaParams

SERVICE = Service(vip="10.10.0.100", clusters=[Cluster(name="all", backends=["backend1"])])
FACTS = FrontendFacts(vip="10.10.0.100", vip_port=80, backend_addresses={"backend1": "10.10.1.2"},
                      nexthop_mac="02:00:00:00:00:01")


def switch_plan(config: MiresgaConfig) -> SwitchPlan:
    """The plan built from `config`, as the daemon reads it from its JSON file."""
    plan = SwitchPlan(vips=[VipSpec("10.10.0.100")],
                      backends=[Endpoint("10.10.1.2", "02:00:00:00:01:02", "sw-b1")],
                      frontends=[Endpoint("10.10.2.2", "02:00:00:00:02:02", "sw-f1")],
                      **config.switch_plan_params())
    return SwitchPlan.from_json(plan.to_json())


def agent_config(config: MiresgaConfig) -> agent.AgentConfig:
    """The agent's configuration as `python -m miresga.control.agent attach` parses it."""
    args = agent._parser().parse_args(["attach", "--iface", "eth0", *config.agent_args()])
    return agent.attach_config(args)


def frontend_file(config: MiresgaConfig) -> dict[str, str]:
    """The front-end's config file's one-value directives, as rendered for `config`."""
    text = render_config(SERVICE, FACTS, limits=config.frontend_directives())
    lines = [ln.split("#")[0].split() for ln in text.splitlines()]
    return {ln[0]: ln[1] for ln in lines if len(ln) == 2}


def daemon_args(config: MiresgaConfig):
    """The daemon's options as `python -m switchhost` parses them."""
    return daemon.parser().parse_args(["--pipeline", "miresga", "--plan", "plan.json",
                                       *config.daemon_args()])


# (field, a changed value, where it must arrive: component -> what to read there)
CHANGES = [
    ("wscale", 9, {
        "plan": lambda p: p.wscale, "agent": lambda a: a.wscale,
        "frontend": lambda f: int(f["vip_wscale"])}),
    ("frontend_idle_s", 45.0, {
        "plan": lambda p: p.frontend_idle_s,
        "frontend": lambda f: int(f["idle_timeout_ms"]) / 1000}),
    ("switch_idle_s", 150.0, {
        "plan": lambda p: p.idle_timeout_s if p.idle_timeout_s == p.dp_idle_timeout_s else None,
        "frontend": lambda f: int(f["switch_idle_ms"]) / 1000}),
    ("filter_period_s", 100.0, {
        "plan": lambda p: p.filter_period_s,
        "frontend": lambda f: int(f["filter_period_ms"]) / 1000}),
    ("agent_idle_s", 500.0, {
        "plan": lambda p: p.agent_idle_s, "agent": lambda a: a.idle_timeout_s,
        "frontend": lambda f: int(f["agent_idle_ms"]) / 1000}),
    ("agent_close_grace_s", 3.0, {"agent": lambda a: a.close_grace_s}),
    ("agent_max_conns", 4096, {"agent": lambda a: a.max_conns}),
    ("cookie_epoch_s", 30.0, {"plan": lambda p: p.cookie_epoch_s}),
    ("flow_capacity", 1000, {"plan": lambda p: p.flow_capacity}),
    ("dp_slots", 1024, {"plan": lambda p: p.dp_slots}),
    ("dp_ways", 1, {"plan": lambda p: p.dp_ways}),
    ("frontend_grace_ms", 500, {"frontend": lambda f: int(f["grace_ms"])}),
    ("offload_after_bytes", 4096, {"frontend": lambda f: int(f["offload_after_bytes"])}),
    ("rate", 250, {"daemon": lambda d: d.rate}),
    ("batch_latency_ms", 2.5, {"daemon": lambda d: d.batch_latency_ms}),
]

READ = {"plan": switch_plan, "agent": agent_config, "frontend": frontend_file,
        "daemon": daemon_args}


@pytest.mark.parametrize("field,value,arrives", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_value_changed_in_the_model_arrives_in_every_component(field, value, arrives):
    """Set once in MiresgaConfig, the value is what each component is configured with,
    and the default was something else (so the test would see it not arrive)."""
    assert MiresgaConfig.model_fields[field].default != value
    config = MiresgaConfig(**{field: value})
    for component, read in arrives.items():
        assert read(READ[component](config)) == pytest.approx(value), component


def test_every_field_is_checked_for_arrival():
    """A new field of the model needs a row in CHANGES (or here, with why)."""
    not_derived = {
        "control_port",      # the target's daemon and front-end addresses (targets/switchd.py)
        "frontend_limits",   # checked knob by knob below
    }
    assert set(MiresgaConfig.model_fields) == {c[0] for c in CHANGES} | not_derived


@pytest.mark.parametrize("knob", [k for k in FrontendLimits.model_fields if k != "handoff"])
def test_a_front_end_knob_changed_in_the_model_arrives_in_its_file(knob):
    field = FrontendLimits.model_fields[knob]
    value = field.default + 1 if knob not in ("verify_checksums", "require_admit") else 0
    if knob == "offload_ring_size":
        value = field.default * 2
    config = MiresgaConfig(frontend_limits={knob: value})
    assert int(frontend_file(config)[knob]) == value


@pytest.mark.parametrize("mode", defaults.HANDOFF_MODES)
def test_the_handoff_mode_arrives_in_the_plan_and_the_front_end(mode):
    config = MiresgaConfig(frontend_limits={"handoff": mode})
    assert switch_plan(config).handoff == frontend_file(config)["handoff"] == mode


def test_the_defaults_are_the_components_defaults():
    """What a component run by hand without options gets is the model's default."""
    config = MiresgaConfig()
    plan = switch_plan(config)
    bare_plan = dataclasses.replace(plan, frontend_idle_s=None, agent_idle_s=None)
    for f in ("wscale", "idle_timeout_s", "dp_idle_timeout_s", "cookie_epoch_s",
              "filter_period_s", "flow_capacity", "dp_slots", "dp_ways", "handoff"):
        assert getattr(bare_plan, f) == SwitchPlan.__dataclass_fields__[f].default, f
    assert agent_config(config) == agent.attach_config(
        agent._parser().parse_args(["attach", "--iface", "eth0"]))
    assert LIMIT_DEFAULTS == config.frontend_directives()
    # The daemon alone installs as fast as its switch takes entries (no --rate): on
    # a real switch the driver is the budget; the model's rate emulates one.
    assert daemon_args(MiresgaConfig(rate=0)).rate is None


def test_the_target_parameters_are_the_model():
    """targets/miresga.py restates no default: its parameters are a MiresgaConfig."""
    assert issubclass(MiresgaParams, MiresgaConfig)
    assert MiresgaParams().config() == MiresgaConfig()
    assert MiresgaParams(wscale=3).config() == MiresgaConfig(wscale=3)


@pytest.mark.parametrize("values,problem", [
    ({"frontend_idle_s": 200.0}, "filter_period_s must exceed frontend_idle_s"),
    ({"frontend_idle_s": 110.0, "switch_idle_s": 100.0},
     "switch_idle_s must be at least frontend_idle_s"),
    ({"agent_idle_s": 100.0}, "agent_idle_s must exceed"),
    ({"agent_close_grace_s": 400.0}, "agent_close_grace_s must not exceed agent_idle_s"),
])
def test_timeouts_that_do_not_nest_are_refused_by_the_model(values, problem):
    with pytest.raises(ValidationError, match=problem):
        MiresgaConfig(**values)


def test_the_daemon_refuses_a_plan_whose_timeouts_do_not_nest():
    """A plan written by hand for `python -m switchhost` gets the model's rules."""
    plan = switch_plan(MiresgaConfig()).to_dict()
    with pytest.raises(ValueError, match="timeouts: filter_period_s must exceed"):
        SwitchPlan.from_dict({**plan, "frontend_idle_s": 130.0})
    with pytest.raises(ValueError, match="timeouts: agent_idle_s must exceed"):
        SwitchPlan.from_dict({**plan, "agent_idle_s": 100.0})
    # Unstated, the others' timeouts are not checked (a plan of the switch alone).
    SwitchPlan.from_dict({**plan, "frontend_idle_s": None, "agent_idle_s": None,
                          "idle_timeout_s": 10.0})


def test_the_agent_loader_refuses_an_idle_timeout_that_does_not_nest():
    """`python -m miresga.control.agent attach` checks the timeouts it is told of."""
    args = agent._parser().parse_args(["attach", "--iface", "eth0", "--idle-timeout", "60",
                                       "--switch-idle-timeout", "120"])
    with pytest.raises(ValueError, match="timeouts: agent_idle_s must exceed"):
        agent.attach_config(args)
    assert agent.main(["attach", "--iface", "eth0", "--idle-timeout", "60",
                       "--frontend-idle-timeout", "90"]) == 1


def test_unknown_front_end_knobs_and_modes_are_refused():
    with pytest.raises(ValidationError, match="unknown front-end knob 'syn_timeout'"):
        MiresgaConfig(frontend_limits={"syn_timeout": 5})
    with pytest.raises(ValidationError, match="handoff 'eventually' is not one of async"):
        MiresgaConfig(frontend_limits={"handoff": "eventually"})
    with pytest.raises(ValidationError, match="not a power of two"):
        MiresgaConfig(frontend_limits={"offload_ring_size": 1000})
