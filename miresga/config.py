"""MiresgaConfig: one deployment's configuration, from which every component's is derived.

    config = MiresgaConfig(frontend_idle_s=60, frontend_limits={"handoff": "dataplane"})
    SwitchPlan.from_testbed(tb, service, **config.switch_plan_params())
    config.agent_args()          # python -m miresga.control.agent attach ...
    config.frontend_directives() # the front-end's config file (render_config)
    config.daemon_args()         # python -m switchhost --pipeline miresga ...

Units are in the field names.  The defaults the host-side tools need too
(the switch host's daemon and the agent loader run with a bare python3) are
stated in common/miresga_defaults.py, the switch's table sizes and control
port with its layouts (switchhost/layouts.py), the front-end's own knobs and
the switch's install budget here; the
front-end's compiled defaults (`miresga-frontend --print-defaults`) are
compared with these by tests/test_frontend_defaults.py.  The timeout-nesting
rules are miresga_defaults.timeout_nesting_problems(), which the daemon, the
agent loader and the front-end (fe_config.c) check on what they are given.

The field names are also the experiment files' (`params` of target
`miresga`): targets/miresga.py's parameters are this model plus what only
the bench needs.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common import miresga_defaults as defaults
from switchhost import layouts

# The install budget of a hardware switch's control plane (switchhost/budget.py):
# entries per second its driver writes into the flow table over PCIe.  Why it
# is limited, in the words of SWITCHAROO (Caiazzi, Scazzariello, Chiesa,
# "Millions of Low-latency State Insertions on ASIC Switches", PACMNET
# 1(CoNEXT3), 2023, abstract): "today's implementations are ill-suited for
# stateful packet processing as they support only a limited amount of
# flow-state insertions per second into these data structures."  The number,
# 10^4 entries per second, is the published hardware figure: SwitchKV (Li et
# al., NSDI'16, Table 1) gives a rule update rate "<10K/s in switch hardware",
# and section 3.2 "some switches can now achieve 12K updates per second" (a
# vendor's figure; the authors measured 400 rules/s on a Pica8 P-3922 holding
# 10K rules).  Those are OpenFlow switches.  For a Tofino, SilkRoad (Miao et
# al., SIGCOMM'17, section 5.2) expects 200K connection insertions per second
# from an optimised multi-core driver (its single-core prototype was
# CPU-bound; the measured rate is not given) and simulates with it (section
# 6).  The default is the conservative published figure; 200_000 is the
# optimistic one.  Override it per campaign (`rate`, 0: unlimited).
INSTALL_RATE_PER_S = 10_000


class FrontendLimits(BaseModel):
    """The front-end's knobs that neither the service nor the rest of the
    deployment sets, named as its config file's directives (fe_config.c,
    whose table bounds each the same way)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    syn_timeout_ms: Annotated[int, Field(ge=1, le=600_000)] = 1000
    syn_retries: Annotated[int, Field(ge=0, le=8)] = 1   # same SYN again before the next back-end
    answer_rto_ms: Annotated[int, Field(ge=1, le=60_000)] = 200
    answer_retries: Annotated[int, Field(ge=0, le=16)] = 3
    backend_down_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 2000
    # request bytes held per flow while no back-end is joined
    hold_limit_bytes: Annotated[int, Field(ge=256, le=16 << 20)] = 8192 + 65536
    # Held bytes live in mbufs of the pool RX uses: small segments are copied
    # together (a flow parks about one mbuf per KB it holds), and all flows
    # together park at most this share of the pool, so that 1-byte segments
    # cannot starve the port.
    hold_pool_percent: Annotated[int, Field(ge=1, le=90)] = 50
    flow_capacity: Annotated[int, Field(ge=1, le=1 << 24)] = 65536
    mbufs: Annotated[int, Field(ge=1023, le=1 << 22)] = 16383
    idle_sleep_max_us: Annotated[int, Field(ge=0, le=1_000_000)] = 500   # 0: busy poll
    # The packet loop not turning for this long, like the port's link going
    # down, closes the front-end's control connection: the switch takes it out
    # of the selection until it serves again.  Well above any turn a busy,
    # shared core takes, so that a healthy front-end is never taken out.
    watchdog_ms: Annotated[int, Field(ge=10, le=600_000)] = 2000
    offload_ring_size: Annotated[int, Field(ge=64, le=1 << 24)] = 65536  # a power of two
    verify_checksums: Annotated[int, Field(ge=0, le=1)] = 1
    # The hand-off: the mode (fe_splice.h; the switch's plan is told the
    # same); how long `confirmed` holds a request for the switch's answer;
    # how long a back-end must be quiet, with everything it sent
    # acknowledged, for its response to count as over (a client's FIN waits
    # for that, and so does a pipelined request for another cluster); 0
    # lets any ACK start a flow, for a switch that does not mark the packets
    # whose cookie it checked (ADMIT).
    handoff: str = defaults.HANDOFF
    confirm_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 100
    drain_quiet_ms: Annotated[int, Field(ge=1, le=10_000)] = 50
    require_admit: Annotated[int, Field(ge=0, le=1)] = 1

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(f"unknown front-end knob {key!r}; known: "
                                     f"{', '.join(cls.model_fields)}")
        return data

    @field_validator("handoff")
    @classmethod
    def _handoff(cls, v: str) -> str:
        if v not in defaults.HANDOFF_MODES:
            raise ValueError(f"handoff {v!r} is not one of {', '.join(defaults.HANDOFF_MODES)}")
        return v

    @field_validator("offload_ring_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"{v} is not a power of two")
        return v


class MiresgaConfig(BaseModel):
    """Every knob of one Miresga deployment: the switch, the agents, the front-ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # W of the switch's SYN-ACK (RFC 7323) = the agent's --wscale = the
    # front-end's vip_wscale
    wscale: Annotated[int, Field(ge=0, le=14)] = defaults.WSCALE
    # the switch's flow table (entries)
    flow_capacity: Annotated[int, Field(ge=1, le=1 << 24)] = layouts.FLOW_CAPACITY_DEFAULT
    # the switch's install budget: entries per second (0: unlimited), and a
    # fixed delay per batch (the driver's round trip): INSTALL_RATE_PER_S
    rate: Annotated[int, Field(ge=0)] = INSTALL_RATE_PER_S
    batch_latency_ms: Annotated[float, Field(ge=0)] = 0.0
    control_port: Annotated[int, Field(ge=1, le=65535)] = layouts.CTL_PORT_DEFAULT
    # The timeouts, which nest (miresga_defaults.timeout_nesting_problems).
    frontend_idle_s: Annotated[float, Field(gt=0)] = defaults.FRONTEND_IDLE_S
    filter_period_s: Annotated[float, Field(gt=0)] = defaults.FILTER_PERIOD_S
    switch_idle_s: Annotated[float, Field(ge=1)] = defaults.SWITCH_IDLE_S
    cookie_epoch_s: Annotated[float, Field(gt=0)] = defaults.COOKIE_EPOCH_S
    agent_idle_s: Annotated[float, Field(gt=0)] = defaults.AGENT_IDLE_S
    agent_close_grace_s: Annotated[float, Field(gt=0)] = defaults.AGENT_CLOSE_GRACE_S
    frontend_grace_ms: Annotated[int, Field(ge=1, le=600_000)] = defaults.FRONTEND_GRACE_MS
    agent_max_conns: Annotated[int, Field(ge=1, le=1 << 24)] = defaults.AGENT_MAX_CONNS
    # Hand a flow to the switch only after this many response bytes went
    # through the front-end (0: as soon as the back-end joins, the paper's
    # design); spares the switch's control plane an ADD and a DEL for
    # every response too short to outlive the installation.
    offload_after_bytes: Annotated[int, Field(ge=0, le=1 << 30)] = defaults.OFFLOAD_AFTER_BYTES
    # the front-end's other knobs, the hand-off's mode among them
    frontend_limits: FrontendLimits = FrontendLimits()
    # The data-plane table (`dataplane` mode): slots over all ways, and ways;
    # its slots age out after switch_idle_s, as entries do.
    dp_slots: Annotated[int, Field(ge=0, le=1 << 24)] = layouts.DP_SLOTS_DEFAULT
    dp_ways: Annotated[int, Field(ge=1, le=2)] = layouts.DP_WAYS_DEFAULT

    @model_validator(mode="after")
    def _nested_timeouts(self) -> "MiresgaConfig":
        problems = defaults.timeout_nesting_problems(self.frontend_idle_s, self.filter_period_s,
                                                     self.switch_idle_s, self.agent_idle_s)
        if problems:
            raise ValueError("; ".join(problems))
        if self.agent_close_grace_s > self.agent_idle_s:
            raise ValueError("agent_close_grace_s must not exceed agent_idle_s")
        return self

    # ------------------------------------------------ derived configurations
    def switch_plan_params(self) -> dict[str, Any]:
        """SwitchPlan's fields this configuration sets (the plan adds the testbed's hosts)."""
        return {"flow_capacity": self.flow_capacity, "wscale": self.wscale,
                "idle_timeout_s": self.switch_idle_s, "handoff": self.frontend_limits.handoff,
                "dp_slots": self.dp_slots, "dp_ways": self.dp_ways,
                "dp_idle_timeout_s": self.switch_idle_s, "cookie_epoch_s": self.cookie_epoch_s,
                "filter_period_s": self.filter_period_s,
                "frontend_idle_s": self.frontend_idle_s, "agent_idle_s": self.agent_idle_s}

    def agent_args(self) -> list[str]:
        """`python -m miresga.control.agent attach` options (the ports and the interface aside)."""
        return ["--wscale", str(self.wscale), "--max-conns", str(self.agent_max_conns),
                "--idle-timeout", f"{self.agent_idle_s:g}",
                "--close-grace", f"{self.agent_close_grace_s:g}",
                "--frontend-idle-timeout", f"{self.frontend_idle_s:g}",
                "--switch-idle-timeout", f"{self.switch_idle_s:g}"]

    def frontend_directives(self) -> dict[str, int | str]:
        """The front-end config file's directives this configuration sets, in its units
        (the service and the testbed's facts add the rest: miresga/control/frontend.py)."""
        return {"vip_wscale": self.wscale,
                "idle_timeout_ms": round(self.frontend_idle_s * 1000),
                "grace_ms": self.frontend_grace_ms,
                "offload_after_bytes": self.offload_after_bytes,
                **self.frontend_limits.model_dump(),
                # the others' timeouts, which the front-end's must nest with
                "filter_period_ms": round(self.filter_period_s * 1000),
                "switch_idle_ms": round(self.switch_idle_s * 1000),
                "agent_idle_ms": round(self.agent_idle_s * 1000)}

    def daemon_args(self) -> list[str]:
        """`python -m switchhost` options (the pipeline, plan, key and addresses aside)."""
        args = []
        if self.rate:
            args += ["--rate", f"{float(self.rate):g}"]
        if self.batch_latency_ms:
            args += ["--batch-latency-ms", f"{float(self.batch_latency_ms):g}"]
        return args
