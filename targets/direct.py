"""`direct`: no load balancer.  The client talks to one back-end through the switch.

The switch forwards with the kernel (plain IP routing in its namespace), so
this is the ceiling of every target on the same testbed: the same client,
links, switch and back-end web server, with nothing in between.  It is
layer7 = False in the sense that nothing routes by URL: one back-end serves
every request, which is why the integrity check fetches each object once.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from common.errors import Error
from hosts.backends import HEALTH_BODY, HEALTH_PATH
from hosts.topology import HOST_NAME
from targets.base import Endpoint, Target, TargetError, TargetParams, register


class DirectParams(TargetParams):
    #: the back-end host to talk to ("" = the first of the service)
    backend: Annotated[str, Field(pattern=f"^$|{HOST_NAME}")] = ""


@register
class Direct(Target):
    name = "direct"
    layer7 = False
    Params = DirectParams

    @classmethod
    def testbed_problems(cls, params, hosts):
        out = super().testbed_problems(params, hosts)
        if params.backend and params.backend not in hosts.get("backend", []):
            out.append(("params.backend", f"{params.backend!r} is not a host with role 'backend' "
                                          f"of the testbed (back-ends: "
                                          f"{', '.join(hosts.get('backend', [])) or 'none'})"))
        return out

    def __init__(self, testbed, service, params=None):
        super().__init__(testbed, service, params)
        name = self.params["backend"] or service.backends[0]
        try:
            self.backend = testbed.host(name)
        except Error as e:
            raise TargetError(f"target direct: {e}") from None
        if self.backend.role != "backend":
            raise TargetError(f"target direct: host {name!r} is a {self.backend.role}, "
                              f"not a back-end")
        self.port = next((c.port for c in service.clusters if name in c.backends), 80)
        self._started = False

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(str(self.backend.address), self.port)

    def deploy(self) -> None:
        # Nothing to deploy: the back-ends' web servers belong to the testbed.
        pass

    def start(self) -> None:
        self._started = True

    def healthy(self) -> bool:
        client = self.testbed.clients[0]
        r = client.run(f"curl -s --max-time 2 {self.endpoint.url}{HEALTH_PATH}", check=False,
                       timeout=10)
        return r.ok and r.stdout == HEALTH_BODY

    def stop(self) -> None:
        self._started = False

    def stats(self) -> dict:
        """Packets and bytes the switch forwarded toward and from the back-end."""
        # ip, not /sys/class/net: sysfs shows the namespace it was mounted in.
        import json

        port = self.backend.switch_port
        r = self.testbed.switch.run(f"ip -s -j link show dev {port}", check=False)
        try:
            st = json.loads(r.stdout)[0]["stats64"]
        except (ValueError, LookupError, TypeError):
            return {}
        return {"switch_port": port,
                "to_backend_packets": st["tx"]["packets"], "to_backend_bytes": st["tx"]["bytes"],
                "from_backend_packets": st["rx"]["packets"],
                "from_backend_bytes": st["rx"]["bytes"]}

    def frontend_hosts(self) -> list:
        return []  # no load balancer: no front-end cost

    @classmethod
    def integrity_rounds_for(cls, backends: int) -> int:
        return 1  # one back-end serves every request

    def describe(self) -> dict:
        return {**super().describe(), "backend": self.backend.name}
