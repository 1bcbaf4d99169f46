"""`l4switch`: a Layer-4 load balancer in the switch (SilkRoad/Katran style).

It routes by connection, not by URL.  The switch picks a back-end for each
new TCP connection from the connection's addresses alone (Maglev consistent
hashing of client IP and port and the VIP), pins it in a connection table,
and rewrites addresses in both directions: VIP -> back-end on the client's
packets, back-end -> VIP on the responses, which come back through the switch
and never through a front-end host.  Every request on a connection goes to
the same back-end, and the service's path and Host rules are not applied: an
L4 switch never sees a request.  That is what Miresga is compared against.

Pieces: the program (`l4switch.bpf.c`, `l4switch.h`, `l4switch_maps.h` in
this directory), its control code (switchhost/pipelines/l4switch.py:
`L4Plan`, `L4Switch`, `HealthChecker`; `l4switch_layouts.py`, `maglev.py`),
run by the switch host's one daemon (`python -m switchhost --pipeline
l4switch`), and this file, the bench target.

Life cycle on a testbed (targets/switchd.py): `deploy()` writes the plan
(JSON) and a fresh control key to the switch host; `start()` runs the daemon
there, listening on 127.0.0.1 only (it loads, programs and attaches the
program, checks back-ends and ages connections); `stop()` stops it (it
detaches and unpins) and then runs its cleanup, so nothing stays attached or
pinned even if the daemon was killed.  The bench reaches the daemon only
through the host interface (`python -m switchhost.ctl` on the switch host,
over the authenticated control protocol), so a real switch host over SSH
works the same as the emulated switch namespace.

Health.  The daemon checks every back-end's `/health` from the switch every
`health_interval_ms` (default 500 ms); `health_fall` (2) failures in a row
take it out of the pool, so a dead back-end stops receiving *new*
connections about a second after it dies; `health_rise` (2) successes bring
it back.  Connections already on it are not moved (an L4 switch cannot move
a TCP connection), and new connections that Maglev sent it before the checks
noticed fail: unlike HAProxy or nginx, an L4 switch cannot retry a request
elsewhere.  `health_interval_ms = 0` turns checks off.
"""

from __future__ import annotations

import shlex
from typing import Annotated

from pydantic import Field, field_validator

from hosts.backends import HEALTH_BODY, HEALTH_PATH
from switchhost.layouts import CTL_PORT_DEFAULT
from switchhost.pipelines.l4switch import L4Plan
from switchhost.pipelines.maglev import is_prime
from targets.base import Endpoint, Target, TargetError, TargetParams, register
from targets.switchd import LOCAL, Switchd


class L4SwitchParams(TargetParams):
    #: slots per VIP of the Maglev table, a prime (see maglev.py)
    maglev_size: Annotated[int, Field(ge=7, le=1 << 25)] = 65537
    #: connections the LRU connection table holds
    conn_capacity: Annotated[int, Field(ge=1, le=1 << 23)] = 262144
    #: established entries idle this long are removed
    idle_timeout_s: Annotated[int, Field(ge=1, le=86400)] = 300
    #: entries after RST or FIN both ways
    closing_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 4
    #: Maglev flow hash seed; -1 = random per start
    hash_seed: Annotated[int, Field(ge=-1, le=0xFFFFFFFF)] = -1
    #: health checks of every back-end from the switch; 0 = none
    health_interval_ms: Annotated[int, Field(ge=0, le=60_000)] = 500
    health_fall: Annotated[int, Field(ge=1, le=100)] = 2
    health_rise: Annotated[int, Field(ge=1, le=100)] = 2
    #: the daemon's, on 127.0.0.1 of the switch host
    control_port: Annotated[int, Field(ge=1, le=65535)] = CTL_PORT_DEFAULT

    @field_validator("maglev_size")
    @classmethod
    def _prime(cls, v: int) -> int:
        if not is_prime(v):
            raise ValueError(f"{v} is not a prime (Maglev's table size must be one)")
        return v


@register
class L4SwitchTarget(Target):
    name = "l4switch"
    layer7 = False
    Params = L4SwitchParams
    health_timeout_s = 30.0

    def __init__(self, testbed, service, params=None):
        super().__init__(testbed, service, params)
        self.switchd = Switchd(testbed, "l4switch", int(self.params["control_port"]))
        self.plan = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(str(self.service.vip or self.testbed.vip), self.service.port)

    @property
    def pin_dir(self) -> str:
        return self.switchd.pin_dir

    # ----------------------------------------------------------- life cycle

    def deploy(self) -> None:
        p = self.params
        try:
            self.plan = L4Plan.from_testbed(
                self.testbed, self.service, maglev_size=int(p["maglev_size"]),
                conn_capacity=int(p["conn_capacity"]), idle_timeout_s=int(p["idle_timeout_s"]),
                closing_timeout_s=int(p["closing_timeout_s"]),
                hash_seed=None if int(p["hash_seed"]) < 0 else int(p["hash_seed"]),
                health_interval_ms=int(p["health_interval_ms"]),
                health_fall=int(p["health_fall"]), health_rise=int(p["health_rise"]))
        except (ValueError, TypeError) as e:
            raise TargetError(f"target l4switch: {e}") from None
        sw = self.switchd.host
        obj = f"{sw.repo_dir}/build/bpf/l4switch.bpf.o"
        if not sw.run(f"test -r {shlex.quote(obj)}", check=False).ok:
            raise TargetError(f"target l4switch: {obj} missing on {sw.name}: run `make build` "
                              f"(or `make host-switch` on a real switch host)")
        self.switchd.deploy(self.plan)

    def start(self) -> None:
        if not self.switchd.running():
            self.switchd.start([LOCAL])

    def ctl(self, op: str, **fields) -> dict:
        """One management op to the running daemon (through the switch host)."""
        return self.switchd.ctl(op, **fields)

    def healthy(self) -> bool:
        if not self.switchd.running():
            raise TargetError(f"switchd exited on {self.switchd.host.name}", logs=self.logs())
        pools = self.ctl("pool")
        # Every configured back-end up, as the software LBs' health requires.
        if any(not up for up in pools["backend_healthy"].values()):
            return False
        client = self.testbed.clients[0]
        r = client.run(f"curl -s --max-time 2 {self.endpoint.url}{HEALTH_PATH}", check=False,
                       timeout=10)
        return r.ok and r.stdout == HEALTH_BODY

    def stop(self) -> None:
        self.switchd.stop()

    # ------------------------------------------------------------- control

    def set_pool(self, backends: list[str]) -> list[str]:
        """Balance new connections over `backends`; returns the effective pool."""
        return self.ctl("set-pool", backends=list(backends))["effective"]

    def pool(self) -> list[str]:
        return self.ctl("pool")["pools"][0]["effective"]

    def connections(self) -> list[dict]:
        """Forward entries of the connection table, decoded."""
        return self.ctl("conns")["conns"]

    def stats(self) -> dict:
        """Switch counters (packets/bytes each way, connection events), connection
        table occupancy, pools and health checks."""
        if not self.switchd.running():
            return {}
        reply = self.ctl("stats")
        reply.pop("ok", None)
        return reply

    def logs(self) -> dict[str, str]:
        return self.switchd.logs()

    def frontend_hosts(self) -> list:
        # No front-end: the switch does the work (in softirq, counted as the
        # switch's and the machine's CPU).
        return []

    @property
    def integrity_rounds(self) -> int:
        # A connection's back-end is a hash of its random client port, so N
        # rounds do not visit every back-end with every object.  2N rounds
        # fetch each object 2N times; all back-ends serve the same bytes, and
        # every back-end serves many of the fetches (tests check it).
        return 2 * max(1, len(self.service.backends))

    def describe(self) -> dict:
        d = super().describe()
        if self.plan is not None:
            d["pool"] = self.plan.pool(0)
            d["maglev_size"] = self.plan.maglev_size
            d["rules_ignored"] = len(self.service.rules)
        return d
