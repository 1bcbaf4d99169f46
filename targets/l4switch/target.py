"""`l4switch`: a Layer-4 load balancer in the switch (SilkRoad/Katran style).

It routes by connection, not by URL.  The switch picks a back-end for each
new TCP connection from the connection's addresses alone (Maglev consistent
hashing of client IP and port and the VIP), pins it in a connection table,
and rewrites addresses in both directions: VIP -> back-end on the client's
packets, back-end -> VIP on the responses, which come back through the switch
and never through a front-end host.  Every request on a connection goes to
the same back-end, and the service's path and Host rules are not applied: an
L4 switch never sees a request.  That is what Miresga is compared against.

Pieces (one directory, the libbpf-bootstrap triad plus its control plane):

| file | what |
| --- | --- |
| `l4switch.bpf.c` | the tc program on every switch port (`build/bpf/l4switch.bpf.o`) |
| `l4switch.h`, `l4switch_maps.h` | layouts shared with Python, and the tables |
| `layouts.py` | the ctypes mirror of `l4switch.h` |
| `common/maglev.py` | the Maglev table (shared with the Miresga switch's front-end selection): size, balance and disruption properties |
| `driver.py` | `L4Plan`, `L4Switch` (tables through libbpf), `HealthChecker` |
| `l4switchd.py` | the control plane as a process on the switch host, and its client |
| `target.py` | the bench target `l4switch` (this file) |

Life cycle on a testbed: `deploy()` writes the plan (JSON) to the switch
host; `start()` runs `l4switchd` there (it loads, programs and attaches the
program, checks back-ends and ages connections); `stop()` stops it (it
detaches and unpins) and then runs `l4switchd cleanup`, so nothing stays
attached or pinned even if the daemon was killed.  The bench reaches the
daemon only through the host interface (`l4switchd ctl`), so a real switch
host over SSH works the same as the emulated switch namespace.

Health.  `l4switchd` checks every back-end's `/health` from the switch every
`health_interval_ms` (default 500 ms); `health_fall` (2) failures in a row
take it out of the pool, so a dead back-end stops receiving *new*
connections about a second after it dies; `health_rise` (2) successes bring
it back.  Connections already on it are not moved (an L4 switch cannot move
a TCP connection), and new connections that Maglev sent it before the checks
noticed fail: unlike HAProxy or nginx, an L4 switch cannot retry a request
elsewhere.  `health_interval_ms = 0` turns checks off.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from hosts.backends import HEALTH_BODY, HEALTH_PATH
from targets.base import Endpoint, Target, TargetError, register
from targets.l4switch.driver import L4Plan


@register
class L4SwitchTarget(Target):
    name = "l4switch"
    layer7 = False
    defaults: dict[str, Any] = {
        "maglev_size": 65537,          # slots per VIP, prime (see common/maglev.py)
        "conn_capacity": 262144,       # connections in the LRU connection table
        "idle_timeout_s": 300,         # established entries idle this long are removed
        "closing_timeout_s": 4,        # entries after RST or FIN both ways
        "hash_seed": -1,               # Maglev flow hash seed; -1 = random per start
        "health_interval_ms": 500,     # 0 = no health checks
        "health_fall": 2,
        "health_rise": 2,
    }
    health_timeout_s = 30.0

    def __init__(self, testbed, service, params=None):
        super().__init__(testbed, service, params)
        self.switch_host = testbed.switch
        self.dir = f"{self.switch_host.workdir}/l4switch"
        self.plan_path = f"{self.dir}/plan.json"
        self.ctl_path = f"{self.dir}/ctl.sock"
        self.pin_dir = f"{testbed.bpf_dir}/l4switch"
        self._proc = None
        self.plan = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(str(self.service.vip or self.testbed.vip), self.service.port)

    def _tool(self, args: str) -> str:
        return self.switch_host.tool("targets.l4switch.l4switchd", args)

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
        sw = self.switch_host
        obj = f"{sw.repo_dir}/build/bpf/l4switch.bpf.o"
        if not sw.run(f"test -r {shlex.quote(obj)}", check=False).ok:
            raise TargetError(f"target l4switch: {obj} missing on {sw.name}: run `make build` "
                              f"(or `make host-switch` on a real switch host)")
        sw.put_text(self.plan.to_json(), self.plan_path)

    def start(self) -> None:
        if self._proc is not None and self._proc.running():
            return
        self._proc = self.switch_host.start(
            self._tool(f"run --plan {shlex.quote(self.plan_path)} "
                       f"--ctl {shlex.quote(self.ctl_path)} --pin-dir {shlex.quote(self.pin_dir)}"),
            name="l4switchd")

    def ctl(self, op: str, *args: str) -> dict:
        """One request to the running l4switchd (through the switch host)."""
        r = self.switch_host.run(self._tool(f"ctl {shlex.quote(self.ctl_path)} {op} "
                                            + " ".join(shlex.quote(a) for a in args)),
                                 check=False, timeout=60)
        try:
            reply = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise TargetError(f"l4switchd ctl {op}: {(r.stderr or r.stdout).strip()[-1000:]}",
                              logs=self.logs()) from None
        if "error" in reply:
            raise TargetError(f"l4switchd ctl {op}: {reply['error']}", logs=self.logs())
        return reply

    def healthy(self) -> bool:
        if self._proc is None:
            return False
        if not self._proc.running():
            raise TargetError(f"l4switchd exited on {self.switch_host.name}", logs=self.logs())
        if "l4switchd ready" not in self._proc.logs():
            return False
        pools = self.ctl("pool")
        # Every configured back-end up, as the software LBs' health requires.
        if any(not up for up in pools["backend_healthy"].values()):
            return False
        client = self.testbed.clients[0]
        r = client.run(f"curl -s --max-time 2 {self.endpoint.url}{HEALTH_PATH}", check=False,
                       timeout=10)
        return r.ok and r.stdout == HEALTH_BODY

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=10)
            self._proc = None
        if self.plan is not None:
            # Whatever a killed daemon left: its filters and pins.
            args = (f"cleanup --pin-dir {shlex.quote(self.pin_dir)} "
                    f"--ctl {shlex.quote(self.ctl_path)}")
            if self.plan.netns:
                args += f" --netns {shlex.quote(self.plan.netns)}"
            if self.plan.ports:
                args += f" --ports {shlex.quote(','.join(self.plan.ports))}"
            r = self.switch_host.run(self._tool(args), check=False, timeout=60)
            if not r.ok:
                raise TargetError(f"l4switchd cleanup on {self.switch_host.name} failed: "
                                  f"{(r.stderr or r.stdout).strip()[-1000:]}")

    # ------------------------------------------------------------- control

    def set_pool(self, backends: list[str]) -> list[str]:
        """Balance new connections over `backends`; returns the effective pool."""
        return self.ctl("set-pool", *backends)["effective"]

    def pool(self) -> list[str]:
        return self.ctl("pool")["pools"][0]["effective"]

    def connections(self) -> list[dict]:
        """Forward entries of the connection table, decoded."""
        return self.ctl("conns")["conns"]

    def stats(self) -> dict:
        """Switch counters (packets/bytes each way, connection events), connection
        table occupancy, pools and health checks."""
        if self._proc is None or not self._proc.running():
            return {}
        reply = self.ctl("stats")
        reply.pop("ok", None)
        return reply

    def logs(self) -> dict[str, str]:
        return {"l4switchd": self._proc.logs()[-20000:]} if self._proc is not None else {}

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
