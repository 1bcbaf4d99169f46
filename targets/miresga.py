"""`miresga`: the switch pipeline, the back-end agents and the DPDK front-end, together.

Deployed from the same `Service` as every baseline, on the hosts of the
testbed's roles:

    switch      the switch host's daemon (python -m switchhost --pipeline
                miresga, targets/switchd.py): the pipeline on every switch
                port, its tables from a SwitchPlan, the control protocol on
                port 7470 of the switch's address on each front-end's link and
                of 127.0.0.1, the install budget of a hardware switch
    backendN    the agent (python -m miresga.control.agent attach ...) on the
                interface that faces the switch, one-shot: tc and bpffs hold it
    frontendN   build/miresga-frontend on the host's link (an af_packet or
                af_xdp port here: `frontend_port`; a real host's NIC by its
                PCI address), its config rendered from the service and the
                testbed's facts; one per front-end host (`frontend_hosts`:
                a subset), the switch spreading clients over them

Every host-side step goes through the host interface (`run`, `start`,
`put_text`, `put_secret`, `tool`), so on a real testbed the same code drives
SSH hosts with a bare python3: the tools it calls use the standard library
only.  Each deployment makes fresh control keys, written readable by root
only: the daemon's on the switch host, which the bench's tools prove, and
one per front-end, on its host and on the switch host, which that front-end
proves on every connection and which tells the daemon which front-end is
alive, from whatever address it connects (targets/switchd.py).

Consistency.  Every component's configuration is derived from one
MiresgaConfig (miresga/config.py): the switch's plan, the agents' options,
the front-ends' config files and the daemon's options, so one number means
the same thing everywhere:

- back-end index = position in `service.backends` (switch back-end table,
  front-end config, offload entries);
- W, the window scale of the switch's SYN-ACK = the agent's `--wscale` =
  the front-end's `vip_wscale` (the agent rescales the back-end's windows;
  the front-end does not);
- timeouts nest (common/miresga_defaults.py, checked by the model and again
  by each component on what it is given): the front-end forgets an idle
  spliced flow after `frontend_idle_s`; the switch's seen filter remembers a
  connection for at least one `filter_period_s` after its last client
  packet, so it must be longer; switch entries age out after
  `switch_idle_s`, no sooner than the front-end would have dropped the flow;
  the agent's idle timeout is the longest, so a back-end connection never
  loses its offset under a live flow.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import shlex
import signal
import time
from typing import Annotated, Any

from pydantic import Field, field_validator

from common.errors import Error
from hosts.backends import HEALTH_BODY, HEALTH_PATH
from miresga.config import MiresgaConfig
from miresga.control.frontend import (PORT_DEFAULT, PORTS, Frontend, FrontendFacts,
                                      quiet_afpacket_link, restore_links)
from switchhost.pipelines.miresga import SwitchPlan
from targets.base import Endpoint, Target, TargetError, TargetParams, register
from targets.switchd import LOCAL, Switchd


class MiresgaParams(TargetParams, MiresgaConfig):
    """The deployment's knobs: a MiresgaConfig (miresga/config.py: every
    default, range and the timeouts' nesting), plus what only the bench needs.
    Field names are the experiment files'."""

    # Where front-ends reach switchd ("": the switch's address on each
    # front-end's link).  On real hosts whose data NIC DPDK owns, give an
    # address the front-end's kernel can reach (a management network).
    control_address: str = ""
    # The front-end's port on a testbed link: af_packet or af_xdp (native
    # XDP in the link's driver; refused where only generic XDP exists).
    frontend_port: str = PORT_DEFAULT
    # The front-end hosts to run on, by name ([]: every front-end host).
    frontend_hosts: list[str] = []
    # drain_frontend(): how long a draining front-end's connections may take.
    drain_timeout_s: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("control_address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v:
            ipaddress.IPv4Address(v)
        return v

    @field_validator("frontend_port")
    @classmethod
    def _port(cls, v: str) -> str:
        if v not in PORTS:
            raise ValueError(f"{v!r}: known ports are {', '.join(PORTS)}")
        return v

    def config(self) -> MiresgaConfig:
        """The deployment's configuration alone, without the bench's fields."""
        fields = set(MiresgaConfig.model_fields)
        return MiresgaConfig.model_validate(self.model_dump(include=fields))


def frontend_hosts_problem(names: list[str], known: list[str]) -> str | None:
    """Why `frontend_hosts` does not fit a testbed whose front-end hosts are `known`."""
    if any(n not in known for n in names) or len(set(names)) != len(names):
        return (f"{list(names)}: the testbed's front-end hosts are "
                f"{', '.join(known) or 'none'}, each named once")
    return None


@register
class Miresga(Target):
    name = "miresga"
    Params = MiresgaParams
    required_roles = {"client": 1, "switch": 1, "frontend": 1, "backend": 1}
    health_timeout_s = 40.0

    @classmethod
    def testbed_problems(cls, params, hosts):
        out = super().testbed_problems(params, hosts)
        problem = frontend_hosts_problem(params.frontend_hosts, hosts.get("frontend", []))
        if problem:
            out.append(("params.frontend_hosts", problem))
        return out

    def __init__(self, testbed, service, params=None):
        super().__init__(testbed, service, params)
        if not testbed.frontends:
            raise TargetError("target miresga needs a host with role 'frontend'")
        names = self.params["frontend_hosts"]
        problem = frontend_hosts_problem(names, [h.name for h in testbed.frontends])
        if problem:
            raise TargetError(f"target miresga: frontend_hosts {problem}")
        self.fe_hosts = ([h for n in names for h in testbed.frontends if h.name == n]
                         if names else list(testbed.frontends))
        self.switch = testbed.switch
        self.config = MiresgaParams.model_validate(self.params).config()
        self.vip = str(service.vip or testbed.vip)
        self.switchd = Switchd(testbed, "miresga", int(self.params["control_port"]))
        self.frontends: list[Frontend] = []
        self._attached: list = []      # back-end hosts with an agent
        self._quieted: list = []       # af_packet links whose offloads deploy() turned off

    def frontend_hosts(self) -> list:
        return list(self.fe_hosts)

    # ------------------------------------------------------------- layout
    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.vip, self.service.port)

    def agent_pin_dir(self, host) -> str:
        return str(self.testbed.bpf_dir / f"agent-{host.name}")

    def backend_ports(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for c in self.service.clusters:
            for b in c.backends:
                out.setdefault(b, []).append(c.port)
        return out

    def plan(self) -> SwitchPlan:
        # netns None: the daemon runs *on* the switch host (inside its
        # namespace here), so the plan names that host's own interfaces.
        plan = SwitchPlan.from_testbed(self.testbed, self.service, netns=None,
                                       **self.config.switch_plan_params())
        names = {h.name for h in self.fe_hosts}
        return dataclasses.replace(plan, frontends=[f for f in plan.frontends if f.name in names])

    def control_address(self, fe) -> str:
        """Where a front-end reaches the daemon: the switch's address on its link."""
        return self.params["control_address"] or str(fe.gateway)

    def control_key_path(self, fe) -> str:
        return f"{fe.workdir}/miresga/ctl.key"

    def make_frontend(self, fe) -> Frontend:
        facts = FrontendFacts(
            vip=self.vip, vip_port=self.service.port,
            backend_addresses={h.name: str(h.address) for h in self.testbed.backends},
            nexthop_mac=fe.switch_mac, iface=fe.iface,
            control=(self.control_address(fe), int(self.params["control_port"])),
            control_key=self.control_key_path(fe), vip_index=0)
        f = Frontend(fe, self.service, facts, limits=self.config.frontend_directives(),
                     port=self.params["frontend_port"])
        pci = getattr(fe, "pci", None)
        if pci and self.params["frontend_port"] != PORT_DEFAULT:
            raise TargetError(f"target miresga: frontend_port {self.params['frontend_port']!r} "
                              f"is for testbed links; {fe.name} has a NIC (pci {pci}), which "
                              f"DPDK drives itself")
        if pci:
            # A real front-end (inventory): its NIC by PCI address, hugepages;
            # one lcore, the host's first pinned CPU or its last one.
            cpus = getattr(fe, "cpus", "")
            core = (cpus.split(",")[0].split("-")[0] if cpus
                    else str(int(fe.run("nproc").stdout.strip() or 1) - 1))
            f.eal = ["-a", pci, "-l", core, "--file-prefix", f.file_prefix, "--no-telemetry",
                     "--log-level=*:warning"]
        return f

    # -------------------------------------------------------- life cycle
    def deploy(self) -> None:
        self.switchd.deploy(self.plan(), [(fe, self.control_key_path(fe))
                                          for fe in self.fe_hosts])
        self.frontends = [self.make_frontend(fe) for fe in self.fe_hosts]
        for fe in self.frontends:
            if fe.eal is None:  # a testbed link (a real NIC: eal names its PCI address)
                self._quieted += quiet_afpacket_link(fe.host, self.switch)

    def start(self) -> None:
        try:
            # The control addresses only: each front-end's way in, and the
            # switch host's own tools.
            listen = [self.control_address(fe) for fe in self.fe_hosts] + [LOCAL]
            self.switchd.start(listen, shlex.join(self.config.daemon_args()))
            self._attach_agents()
            for fe in self.frontends:
                fe.start()
            for fe in self.frontends:
                fe.wait_healthy(20)
        except Error as e:
            logs = self.logs()
            self.stop()
            raise TargetError(f"miresga: {e}", logs=logs) from None

    def _agent(self, host, cmd: str, check: bool = True):
        args = f"{cmd} --iface {host.iface} --pin-dir {shlex.quote(self.agent_pin_dir(host))}"
        return host.run(host.tool("miresga.control.agent", args), check=check)

    def _attach_agents(self) -> None:
        ports = self.backend_ports()
        for name in self.service.backends:
            host = self.testbed.host(name)
            port_args = " ".join(f"--port {x}" for x in sorted(set(ports[name])))
            self._attached.append(host)
            self._agent(host, f"attach {port_args} {shlex.join(self.config.agent_args())}")

    def healthy(self) -> bool:
        if not self.switchd.running():
            raise TargetError("switchd is not running", logs=self.logs())
        for fe in self.frontends:
            if fe.process is None or not fe.process.running():
                raise TargetError(f"the front-end on {fe.host.name} exited", logs=self.logs())
            fe.stats()  # the stats socket answers (raises otherwise)
        for host in self._attached:
            st = self.agent_stats(host)
            if st is None:
                raise TargetError(f"no agent attached on {host.name}")
        client = self.testbed.clients[0]
        r = client.run(f"curl -s --max-time 2 {self.endpoint.url}{HEALTH_PATH}", check=False,
                       timeout=10)
        return r.ok and r.stdout == HEALTH_BODY

    def stop(self) -> None:
        """Front-ends first (they delete their switch entries), then agents, then switchd."""
        for fe in self.frontends:
            try:
                fe.stop()
            except Error:
                pass
        for host in self._attached:
            self._agent(host, "detach", check=False)
        self._attached = []
        try:
            self.switchd.stop()
        finally:
            restore_links(self._quieted)
        self._quieted = []

    # ------------------------------------------------------------- faults
    def restart_frontend(self) -> dict:
        """Stop every front-end (it deletes its switch entries on the way out)
        and start it again, as an operator's restart would."""
        for fe in self.frontends:
            fe.stop()
            fe.start()
        for fe in self.frontends:
            fe.wait_healthy(20)
        return {"frontends": [fe.host.name for fe in self.frontends]}

    # ------------------------------------------------- several front-ends
    def frontend_states(self) -> dict[str, str]:
        """Each front-end's state in the switch's selection (active, draining, down)."""
        return {n: f["state"] for n, f in self.switchd.ctl("frontends")["frontends"].items()}

    def wait_frontend_state(self, name: str, state: str, timeout: float) -> float:
        """Poll the daemon until front-end `name` is in `state`; the seconds it took."""
        t0 = time.monotonic()
        while True:
            now = self.frontend_states().get(name)
            if now == state:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TargetError(f"front-end {name}: still {now!r}, not {state!r}, "
                                  f"after {timeout:.0f}s", logs=self.logs())
            time.sleep(0.05)

    def _frontend(self, name: str) -> Frontend:
        for fe in self.frontends:
            if fe.host.name == name:
                return fe
        raise TargetError(f"no front-end on {name!r} (running on: "
                          f"{', '.join(f.host.name for f in self.frontends)})")

    def drain_frontend(self, name: str, timeout_s: float | None = None) -> dict:
        """Take a front-end out gracefully: the switch stops selecting it for new
        connections, its own keep flowing through it until it holds none (or
        `timeout_s`, default `drain_timeout_s`, passes: the rest are cut when
        it stops), then it stops."""
        fe = self._frontend(name)
        timeout_s = float(self.params["drain_timeout_s"] if timeout_s is None else timeout_s)
        requests0 = fe.stats().get("requests", 0)
        self.switchd.ctl("drain-frontend", name=name)
        t0 = time.monotonic()
        while True:
            st = fe.stats()
            if st.get("flows", 0) == 0 or time.monotonic() - t0 > timeout_s:
                break
            time.sleep(0.1)
        drained_s = time.monotonic() - t0
        fe.stop()
        self.wait_frontend_state(name, "down", 10)
        return {"frontend": name, "drained": st.get("flows", 0) == 0,
                "flows_left": st.get("flows", 0), "drain_s": round(drained_s, 3),
                "requests_while_draining": st.get("requests", 0) - requests0}

    def resume_frontend(self, name: str) -> None:
        """Start a drained (or stopped) front-end again and put it back in service."""
        fe = self._frontend(name)
        fe.start()
        fe.wait_healthy(20)
        self.switchd.ctl("resume-frontend", name=name)
        self.wait_frontend_state(name, "active", 10)

    def kill_frontend(self) -> dict:
        """SIGKILL the last front-end: the switch must take it out of the selection.
        NotImplementedError where it runs on one front-end host (nobody would take over)."""
        if len(self.fe_hosts) < 2:
            raise NotImplementedError
        fe = self.frontends[-1]
        killed = time.time()
        fe.process.signal(signal.SIGKILL)
        self.wait_frontend_state(fe.host.name, "down", 10)
        # The daemon's own clock of the change, not our polling's (same host
        # clock on the emulated testbed; NTP-close on real hosts).
        events = self.switchd.ctl("frontends")["events"]
        removed = max(e["time"] for e in events
                      if e["frontend"] == fe.host.name and e["state"] == "down")
        return {"frontend": fe.host.name, "signal": "SIGKILL",
                "removed_from_selection_s": round(removed - killed, 3)}

    def revive_frontend(self) -> None:
        if len(self.fe_hosts) < 2:
            raise NotImplementedError
        fe = self.frontends[-1]
        if fe.process is not None and fe.process.running():
            return
        fe.stop()  # clears what the kill left (DPDK runtime, an XDP program)
        fe.start()
        fe.wait_healthy(20)
        self.wait_frontend_state(fe.host.name, "active", 10)

    def fill_flow_table(self) -> dict:
        """Fill the switch's flow table with entries for synthetic clients (a
        management op of the daemon): new flows are then refused and stay on
        the front-end."""
        return self.switchd.ctl("fill", count=int(self.params["flow_capacity"]))

    def drain_flow_table(self) -> None:
        self.switchd.ctl("drain", count=int(self.params["flow_capacity"]))

    # ------------------------------------------------------------- stats
    def agent_stats(self, host) -> dict | None:
        r = self._agent(host, "stats --json", check=False)
        if not r.ok:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def switch_stats(self) -> dict:
        """Counters and occupancy read from the pins now; the control plane's own
        numbers (adds, deletes, refusals, channel, install budget) from its last
        stats file."""
        out: dict[str, Any] = dict(self.switchd.read_pins() or {})
        d = self.switchd.stats_file()
        if d:
            out["control"] = {k: d.get(k) for k in ("flow_table", "rates", "channel", "budget",
                                                     "frontends", "time")}
        return out

    def stats(self) -> dict:
        sw = self.switch_stats()
        c = sw.get("counters", {})
        fes = {}
        for fe in self.frontends:
            try:
                fes[fe.host.name] = fe.stats()
            except (OSError, ValueError, Error) as e:
                fes[fe.host.name] = {"error": str(e)}
        agents = {h.name: self.agent_stats(h) for h in self._attached}
        offload_pkts = c.get("offload_fwd", 0) + c.get("offload_rev", 0)
        offload_bytes = c.get("offload_fwd_bytes", 0) + c.get("offload_rev_bytes", 0)
        fe_pkts = c.get("to_frontend", 0) + c.get("rev_to_frontend", 0)
        fe_bytes = c.get("to_frontend_bytes", 0) + c.get("rev_to_frontend_bytes", 0)
        summary = {
            "offloaded_packets": offload_pkts, "frontend_packets": fe_pkts,
            "offloaded_bytes": offload_bytes, "frontend_bytes": fe_bytes,
            "offloaded_packet_share": offload_pkts / (offload_pkts + fe_pkts)
            if offload_pkts + fe_pkts else None,
            "offloaded_byte_share": offload_bytes / (offload_bytes + fe_bytes)
            if offload_bytes + fe_bytes else None,
            "switch_table_occupancy": sw.get("occupancy"),
            "switch_table_capacity": sw.get("capacity"),
        }
        ctl = (sw.get("control") or {}).get("flow_table") or {}
        for k in ("adds", "deletes", "aged", "refused_full", "refused_invalid"):
            summary[f"switch_{k}"] = ctl.get(k)
        summary["frontend_flows"] = sum(f.get("flows", 0) for f in fes.values())
        summary["frontend_requests"] = sum(f.get("requests", 0) for f in fes.values())
        # Seconds of loop turns that had work: a polling front-end is 100%
        # busy to the OS, so its process CPU also counts the idle polls.
        summary["frontend_busy_s"] = sum(f.get("busy_s", 0.0) for f in fes.values())
        summary["frontend_errors"] = sum(
            v for f in fes.values() for k, v in (f.get("errors") or {}).items())
        decisions: dict[str, int] = {}
        for f in fes.values():
            for k, v in (f.get("decisions") or {}).items():
                decisions[k] = decisions.get(k, 0) + v
        summary["frontend_decisions"] = decisions
        summary["frontend_tx_bytes"] = sum((f.get("packets") or {}).get("tx_bytes", 0)
                                           for f in fes.values())
        summary["agent_rewrites"] = sum((a or {}).get("rewrites", 0) for a in agents.values())
        summary["agent_misses"] = sum((a or {}).get("misses", 0) for a in agents.values())
        summary["agent_entries"] = sum((a or {}).get("entries", 0) for a in agents.values())
        return {"summary": summary, "switch": sw, "frontends": fes, "agents": agents}

    def logs(self) -> dict[str, str]:
        out = dict(self.switchd.logs())
        for fe in self.frontends:
            out[f"{fe.host.name}/miresga-frontend"] = fe.logs()[-20000:]
        return out

    def describe(self) -> dict:
        return {**super().describe(), "frontends": [h.name for h in self.fe_hosts],
                "backend_index": {b: i for i, b in enumerate(self.service.backends)}}
