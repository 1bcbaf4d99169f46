"""A switch's plan: everything a pipeline is programmed with, as data.

Every pipeline's plan shares this base: the VIPs, the back-ends in index
order, the front-ends (Miresga's; the l4switch has none), the switch's
namespace and ports.  A plan is built from a Service and a testbed by the
bench and goes to the switch host as JSON, where the daemon reads it
(`Plan.from_file`).  Bad input gets a ValueError naming the field.

Plain dataclasses, not pydantic: the daemon runs on a real switch host with
whatever python3 is there, so everything it imports is standard library.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from switchhost import layouts
from switchhost.addresses import mac_bytes


def require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{where}: {msg}")


@dataclass(frozen=True)
class Endpoint:
    """A host as the switch sees it: address, MAC, and the switch port it hangs off."""

    ip: str
    mac: str
    switch_port: str        # interface name on the switch
    port: int = 80          # service port (back-ends)
    name: str = ""

    def check(self, where: str) -> None:
        try:
            ipaddress.IPv4Address(self.ip)
        except ValueError:
            raise ValueError(f"{where}.ip: not an IPv4 address: {self.ip!r}") from None
        try:
            mac_bytes(self.mac)
        except ValueError as e:
            raise ValueError(f"{where}.mac: {e}") from None
        require(bool(self.switch_port), f"{where}.switch_port", "missing")
        require(1 <= self.port <= 65535, f"{where}.port", f"{self.port} out of range")


@dataclass(frozen=True)
class VipSpec:
    ip: str
    port: int = 80


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The part of a plan every pipeline has."""

    vips: list[VipSpec]
    backends: list[Endpoint]          # index in the switch = position here
    frontends: list[Endpoint] = field(default_factory=list)
    netns: str | None = None          # None: this host's own interfaces
    ports: list[str] | None = None    # None: every non-loopback interface

    # Fields whose items are dataclasses, for from_dict.
    _NESTED = {"vips": VipSpec, "backends": Endpoint, "frontends": Endpoint}

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        require(1 <= len(self.vips) <= layouts.MAX_VIPS, "vips",
                f"1 to {layouts.MAX_VIPS} VIPs")
        require(1 <= len(self.backends) <= layouts.MAX_BACKENDS, "backends",
                f"1 to {layouts.MAX_BACKENDS} back-ends")
        require(len(self.frontends) <= layouts.MAX_FRONTENDS, "frontends",
                f"at most {layouts.MAX_FRONTENDS} front-ends")
        seen: set = set()
        for i, v in enumerate(self.vips):
            try:
                ipaddress.IPv4Address(v.ip)
            except ValueError:
                raise ValueError(f"vips[{i}].ip: not an IPv4 address: {v.ip!r}") from None
            require((v.ip, v.port) not in seen, f"vips[{i}]", f"{v.ip}:{v.port} listed twice")
            seen.add((v.ip, v.port))
        seen = set()
        for i, b in enumerate(self.backends):
            b.check(f"backends[{i}]")
            require((b.ip, b.port) not in seen, f"backends[{i}]",
                    f"{b.ip}:{b.port} is listed twice")
            seen.add((b.ip, b.port))
        for i, f in enumerate(self.frontends):
            f.check(f"frontends[{i}]")

    # ------------------------------------------------------------- JSON

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise ValueError(f"plan: expected a JSON object, not {type(d).__name__}")
        d = dict(d)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        require(not unknown, "plan", f"unknown field(s) {', '.join(unknown)}")
        for name, f in fields.items():
            if (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                    and name not in d):
                raise ValueError(f"{name}: missing required field")
        for name, kind in cls._NESTED.items():
            if name not in d:
                continue
            require(isinstance(d[name], list), name, "expected a list")
            items = []
            for i, item in enumerate(d[name]):
                try:
                    items.append(kind(**item))
                except TypeError as e:
                    raise ValueError(f"{name}[{i}]: {e}") from None
            d[name] = items
        return cls(**d)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_file(cls, path: str | Path):
        """The plan in a JSON file; a ValueError names the file and the field."""
        try:
            return cls.from_json(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


# ------------------------------------------------------------ from a testbed

def testbed_vips(tb, service) -> list[VipSpec]:
    return [VipSpec(ip=str(service.vip or tb.vip), port=service.port)]


def testbed_backends(tb, service, once: bool = False) -> list[Endpoint]:
    """Every back-end of every cluster, with its cluster's port, in service order;
    `once`: a back-end in several clusters only with its first."""
    out, seen = [], set()
    for c in service.clusters:
        for name in c.backends:
            if once and name in seen:
                continue
            seen.add(name)
            h = tb.host(name)
            out.append(Endpoint(name=name, ip=str(h.address), mac=h.mac,
                                switch_port=h.switch_port, port=c.port))
    return out


def testbed_ports(tb) -> list[str]:
    """The switch ports the testbed's hosts hang off, named: on a real router host
    "every interface" would include its management NIC."""
    return sorted({h.switch_port for h in tb.hosts.values() if h.switch_port})
