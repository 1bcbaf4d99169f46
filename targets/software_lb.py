"""What the two software L7 load balancers (HAProxy, nginx) share.

Both run on the front-end host(s) as real daemons from Debian, in the
foreground under the bench's process control, with the VIP on the front-end's
loopback and a route for it in the switch (an ECMP route over several
front-ends).  Their configuration is rendered from the `Service`, the same
one Miresga's front-end reads.
"""

from __future__ import annotations

import os
import shlex
from abc import abstractmethod

from typing import Annotated

from pydantic import Field

from hosts.backends import HEALTH_PATH
from hosts.hosts import Host, Process
from targets.base import Endpoint, Target, TargetError, TargetParams


def default_workers(host: Host) -> int:
    """One worker per core the front-end role is given (all cores if unpinned)."""
    cpus = getattr(host, "cpus", "")
    if cpus:
        n = 0
        for part in cpus.split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n
    r = host.run("nproc", check=False)
    return int(r.stdout.strip()) if r.ok and r.stdout.strip().isdigit() else os.cpu_count() or 1


def fd_limit(host: Host) -> int:
    """The hard RLIMIT_NOFILE on the host: the most descriptors a daemon can get."""
    r = host.run("ulimit -Hn", check=False)
    text = r.stdout.strip()
    return 1 << 20 if text == "unlimited" else int(text) if text.isdigit() else 1024


def backend_address(testbed, name: str) -> str:
    return str(testbed.host(name).address)


class VipRoute:
    """The VIP as a local address of each front-end, routed to them by the switch."""

    def __init__(self, testbed, frontends: list[Host]):
        self.testbed = testbed
        self.frontends = frontends
        self.vip = str(testbed.vip)

    def install(self) -> None:
        for fe in self.frontends:
            fe.run(f"ip addr replace {self.vip}/32 dev lo")
        hops = " ".join(f"nexthop via {fe.address} dev {fe.switch_port}" for fe in self.frontends)
        self.testbed.switch.run(f"ip route replace {self.vip}/32 {hops}")

    def remove(self) -> None:
        self.testbed.switch.run(f"ip route del {self.vip}/32", check=False)
        for fe in self.frontends:
            fe.run(f"ip addr del {self.vip}/32 dev lo", check=False)


class SoftwareLBParams(TargetParams):
    #: worker threads or processes per front-end host; 0 = one per core the host has
    workers: Annotated[int, Field(ge=0, le=1024)] = 0


class SoftwareLB(Target):
    """A software L7 load balancer daemon on every front-end host."""

    binary: str = ""
    config_name: str = ""
    Params = SoftwareLBParams
    required_roles = {"client": 1, "switch": 1, "frontend": 1, "backend": 1}

    def __init__(self, testbed, service, params=None):
        super().__init__(testbed, service, params)
        if not testbed.frontends:
            raise TargetError(f"target {self.name} needs a host with role 'frontend'")
        self._procs: list[Process] = []
        self._vip = VipRoute(testbed, testbed.frontends)
        self.workers = self.params["workers"] or default_workers(testbed.frontends[0])
        # Raise the soft limit to the hard one; size connection limits to fit.
        self.fd_limit = fd_limit(testbed.frontends[0])

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(str(self.testbed.vip), self.service.port)

    def config_path(self, host: Host) -> str:
        return f"{host.workdir}/{self.name}/{self.config_name}"

    @abstractmethod
    def render(self, host: Host) -> str:
        """The daemon's configuration for one front-end host."""

    @abstractmethod
    def command(self, host: Host) -> str: ...

    def deploy(self) -> None:
        # The VIP must be local before a config check can bind it.
        self._vip.install()
        for fe in self.testbed.frontends:
            fe.put_text(self.render(fe), self.config_path(fe))
            r = fe.run(self.check_command(fe), check=False)
            if not r.ok:
                raise TargetError(f"{self.name}: configuration rejected on {fe.name}:\n"
                                  f"{r.stdout}{r.stderr}", logs={"config": self.render(fe)})

    @abstractmethod
    def check_command(self, host: Host) -> str: ...

    def start(self) -> None:
        self._vip.install()
        for fe in self.testbed.frontends:
            cmd = f"ulimit -n {self.fd_limit}; exec {self.command(fe)}"
            self._procs.append(fe.start(cmd, name=self.name))

    def healthy(self) -> bool:
        for p in self._procs:
            if not p.running():
                raise TargetError(f"{self.name} exited on {p.host.name}",
                                  logs=self.logs())
        client = self.testbed.clients[0]
        r = client.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 "
                       f"{self.endpoint.url}{HEALTH_PATH}", check=False)
        return r.stdout.strip() == "200" and self.backends_up() == len(self.service.backends)

    @abstractmethod
    def backends_up(self) -> int:
        """How many back-ends the load balancer considers up right now."""

    def restart_frontend(self) -> dict:
        """The daemon stops (SIGTERM, as a restart does) and starts again at once."""
        for i, p in enumerate(self._procs):
            p.stop(timeout=5)
            self._procs[i] = p.host.start(f"ulimit -n {self.fd_limit}; exec "
                                          f"{self.command(p.host)}", name=self.name)
        return {"processes": len(self._procs)}

    def stop(self) -> None:
        for p in self._procs:
            p.stop(timeout=5)
        self._procs.clear()
        self._vip.remove()

    def logs(self) -> dict[str, str]:
        out = {}
        for p in self._procs:
            out[f"{p.host.name}/{p.name}"] = p.logs()[-20000:]
        return out

    def quote(self, s: str) -> str:
        return shlex.quote(s)
