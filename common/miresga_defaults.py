"""Miresga's deployment-wide defaults and the rules its timeouts obey, standard library only.

The switch host's daemon (`python -m switchhost`) and the agent loader
(`python -m miresga.control.agent`) run on real hosts with a bare python3, so
what they need of the configuration lives here rather than in the pydantic
model (common/miresga_config.py), which takes its defaults from this module
and checks the same rules.  The front-end states its own defaults in C
(fe_config.c's directive table) and prints them (`--print-defaults`); a test
compares them with the model's field by field.

Units are in the names.  Each number is stated here once; every component
takes it from here (or, in C, is checked against it by a test).
"""

from __future__ import annotations

# W, the window scale of the switch's SYN-ACK (RFC 7323).  The agent rescales
# the back-end's windows to it; the front-end's `vip_wscale` is the same W.
WSCALE = 7

# The front-end forgets a spliced flow that sent no packet through it this long.
FRONTEND_IDLE_S = 90.0
# State of a closed flow kept on the front-end (late retransmissions).
FRONTEND_GRACE_MS = 2000
# The switch's seen filter rotates each period; a connection is remembered
# one to two periods after its last client packet.
FILTER_PERIOD_S = 120.0
# The seen filter's bits per generation, as a power of two (0: no filter).
FILTER_BITS_LOG2 = 22
# Switch flow entries (and data-plane slots) idle this long age out.
SWITCH_IDLE_S = 120.0
# The switch's cookie secret rotates each epoch (a cookie is valid for one or two).
COOKIE_EPOCH_S = 60.0
# The agent's entry for an idle back-end connection.  Must also exceed the
# back-ends' HTTP keep-alive timeout (nginx: 75 s): an entry aged out under a
# live connection breaks it.
AGENT_IDLE_S = 300.0
# The agent keeps an entry this long after an RST or both FINs.
AGENT_CLOSE_GRACE_S = 10.0
# The agent's connection map size.
AGENT_MAX_CONNS = 65536
# Response bytes through the front-end before a flow is handed to the switch
# (0: as soon as the back-end joins, the paper's design).
OFFLOAD_AFTER_BYTES = 0
# How the front-end hands a flow to the switch (miresga/frontend/fe_splice.h),
# and the mode the front-end and the switch agree on by default: `dataplane`,
# the fastest of the three in every cell of results/reference/handoff-modes and
# the only one without a control round trip or a response on two paths;
# `async` is the paper's.
HANDOFF_MODES = ("async", "confirmed", "dataplane")
HANDOFF = "dataplane"


def timeout_nesting_problems(frontend_idle_s: float | None, filter_period_s: float | None,
                             switch_idle_s: float | None,
                             agent_idle_s: float | None) -> list[str]:
    """Why these timeouts do not nest (empty if they do), one sentence per broken rule.

    The front-end forgets an idle flow first; the switch's seen filter must
    still remember it (else a late client packet is taken for a new
    connection), and the switch must not age out an entry before the
    front-end would have dropped the flow; the agent's timeout is the
    longest, so a back-end connection never loses its offset under a flow
    that the switch or the front-end still carries.

    A component run by hand knows its own timeouts and those the operator
    states of the others: a rule with a term that is None is not checked.
    The configurations derived from one MiresgaConfig state all four.
    """
    def known(*values):
        return all(v is not None for v in values)

    out = []
    if known(filter_period_s, frontend_idle_s) and not filter_period_s > frontend_idle_s:
        out.append(f"filter_period_s must exceed frontend_idle_s ({filter_period_s:g} s, "
                   f"{frontend_idle_s:g} s): the switch must remember a connection as long "
                   f"as the front-end keeps it")
    if known(switch_idle_s, frontend_idle_s) and not switch_idle_s >= frontend_idle_s:
        out.append(f"switch_idle_s must be at least frontend_idle_s ({switch_idle_s:g} s, "
                   f"{frontend_idle_s:g} s): the switch must not drop a flow the front-end "
                   f"still keeps")
    others = [v for v in (frontend_idle_s, switch_idle_s) if v is not None]
    if agent_idle_s is not None and others and not agent_idle_s > max(others):
        out.append(f"agent_idle_s must exceed the front-end's and the switch's idle "
                   f"timeouts ({agent_idle_s:g} s; {', '.join(f'{v:g} s' for v in others)})")
    return out
