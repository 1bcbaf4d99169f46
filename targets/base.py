"""The interface every system under test implements.

A target is deployed on a testbed that already runs the back-end web servers
(the same for every target), configured from the one `Service` every target
shares, and driven through its life cycle by the runner:

    target = make_target("haproxy", testbed, service, params)
    target.deploy()            # render configs, put files on hosts, load programs
    target.start()
    target.wait_healthy(30)    # raises TargetError with the logs attached
    ... measure against target.endpoint ...
    stats = target.stats()     # counters of the target's own components
    target.stop()              # idempotent; leaves no process, program or pin

Targets are plug-ins: a module under targets/ that calls `register` is found
by name, so a new load balancer is one file.

Parameters.  Every target declares its parameters as a pydantic model
(`Params`, a TargetParams): each field typed, its unit in its name, its range
and default stated there once, cross-field rules as validators.  Experiment
files set them under `[[target]] params`, and they are checked when the file
is loaded (`check_params`), long before a testbed exists; so are the roles a
target needs on the testbed (`required_roles`, `testbed_problems`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import ConfigError, Error, format_validation_error


class TargetError(Error):
    """A target failed to deploy, start or become healthy; `logs` says why."""

    def __init__(self, message: str, logs: dict[str, str] | None = None):
        super().__init__(message)
        self.logs = logs or {}


@dataclass(frozen=True)
class Endpoint:
    """Where clients send requests: the VIP, or a back-end for `direct`."""

    address: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


class TargetParams(BaseModel):
    """A target's parameters.  Subclasses add the fields; none are allowed besides."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(ABC):
    #: registry name, used in experiment files and result rows
    name: str = ""
    #: does the target route by URL (L7)?  The l4switch does not.
    layer7: bool = True
    #: the parameters the target accepts: types, ranges, defaults
    Params: ClassVar[type[TargetParams]] = TargetParams
    #: roles the target needs on the testbed, and how many hosts of each at least
    required_roles: ClassVar[dict[str, int]] = {"client": 1, "switch": 1, "backend": 1}
    #: how long the runner waits for the target to become healthy after start()
    health_timeout_s: float = 30.0

    def __init__(self, testbed, service, params: dict[str, Any] | TargetParams | None = None):
        self.testbed = testbed
        self.service = service
        if not isinstance(params, self.Params):
            try:
                params = self.check_params(params or {}, f"target {self.name}", "params")
            except ConfigError as e:
                raise TargetError(str(e)) from None
        #: the validated parameters, every default filled in, as result files record them
        self.params: dict[str, Any] = params.model_dump()

    @classmethod
    def check_params(cls, params: dict[str, Any], source: str, at: str) -> TargetParams:
        """The parameters as the target's model, or ConfigError naming each bad field
        (`source: at.FIELD: problem`), an unknown one with the fields that exist."""
        try:
            return cls.Params.model_validate(params)
        except ValidationError as e:
            lines = []
            for err in e.errors():
                if err["type"] == "extra_forbidden":
                    field = ".".join(str(p) for p in err["loc"])
                    lines.append(f"{source}: {at}.{field}: unknown parameter of target "
                                 f"{cls.name!r}; known: "
                                 f"{', '.join(cls.Params.model_fields) or 'none'}")
            others = [err for err in e.errors() if err["type"] != "extra_forbidden"]
            if others:
                lines.append(format_validation_error(others, source, at))
            raise ConfigError("\n".join(lines)) from None

    @classmethod
    def testbed_problems(cls, params: TargetParams,
                         hosts: dict[str, list[str]]) -> list[tuple[str, str]]:
        """What the testbed lacks for this target: `hosts` maps each role to its host
        names.  (field, problem) pairs; field is "" or the parameter that asks for it
        (`params.backend`); the caller names the file and the target."""
        out = []
        for role, least in cls.required_roles.items():
            have = len(hosts.get(role, []))
            if have < least:
                out.append(("", f"needs {'a host' if least == 1 else f'{least} hosts'} with "
                                 f"role {role!r}, and the testbed has "
                                 f"{'none' if have == 0 else have}"))
        return out

    @property
    @abstractmethod
    def endpoint(self) -> Endpoint: ...

    @abstractmethod
    def deploy(self) -> None:
        """Render configuration and put it on the hosts; load programs."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def healthy(self) -> bool:
        """One cheap check that the target serves requests."""

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if self.healthy():
                    return
            except Error as e:
                last = e
            time.sleep(0.1)
        raise TargetError(f"target {self.name} not healthy within {timeout:.0f}s"
                          + (f": {last}" if last else ""), logs=self.logs())

    @abstractmethod
    def stop(self) -> None:
        """Stop everything the target started; safe to call twice or after a failure."""

    def stats(self) -> dict[str, Any]:
        """Counters of the target's own components (switch, front-end, agents)."""
        return {}

    def logs(self) -> dict[str, str]:
        """Logs of the target's processes, attached to a failed run point."""
        return {}

    def frontend_hosts(self) -> list:
        """Hosts whose CPU is the load balancer's cost (the front-end role)."""
        return list(self.testbed.frontends)

    @property
    def integrity_rounds(self) -> int:
        """How often the verifier fetches each object: enough to reach every back-end."""
        return self.integrity_rounds_for(len(self.service.backends))

    # Faults (bench/faults.py) that need the target's help.  A target without
    # the part in question leaves them raising NotImplementedError: the fault
    # is then recorded as not applicable.
    def restart_frontend(self) -> dict | None:
        """Stop and start the front-end process(es), as an operator or a crash would."""
        raise NotImplementedError

    def kill_frontend(self) -> dict | None:
        """SIGKILL one of several front-ends (a crash); the others must carry on.
        NotImplementedError where there is no second front-end to carry on."""
        raise NotImplementedError

    def revive_frontend(self) -> None:
        """Undo kill_frontend."""
        raise NotImplementedError

    def fill_flow_table(self) -> dict | None:
        """Fill the switch's flow table, so that no new connection can be offloaded."""
        raise NotImplementedError

    def drain_flow_table(self) -> None:
        """Undo fill_flow_table."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "layer7": self.layer7, "params": dict(self.params)}

    @classmethod
    def integrity_rounds_for(cls, backends: int) -> int:
        """integrity_rounds for a service of `backends` back-ends, before one exists
        (the dry run's estimate)."""
        return max(1, backends)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


_REGISTRY: dict[str, type[Target]] = {}
_PLUGINS = ("targets.direct", "targets.haproxy", "targets.nginx", "targets.l4switch.target",
            "targets.miresga")


def register(cls: type[Target]) -> type[Target]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> dict[str, type[Target]]:
    """Every target whose plug-in module exists, by name."""
    # The plug-in mechanism: target modules are loaded by name, so a new
    # target is one file and nothing above targets/ imports one directly.
    import importlib

    for mod in _PLUGINS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    return dict(_REGISTRY)


def make_target(name: str, testbed, service, params: dict | None = None) -> Target:
    targets = available()
    if name not in targets:
        raise TargetError(f"unknown target {name!r}; known: {', '.join(sorted(targets))}")
    return targets[name](testbed, service, params)


