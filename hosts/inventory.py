"""Inventory files: a testbed of real hosts reached over SSH.

An inventory maps the same roles as a topology file (client, switch,
frontend, backend, extra) to machines: how to reach each over SSH, its
data-plane interface, address and MAC, the switch port it is cabled to, and
for DPDK front-ends the PCI address of the NIC.  The switch is a Linux host
routing between its ports (the eBPF switch, as on the emulated testbed);
docs/remote.md says how to set one up.  A hardware switch (`kind =
"tofino"`) is refused: no pipeline for one exists here.

The same experiment runs on an emulated testbed or on an inventory; only the
`--inventory` option changes.  See testbeds/inventory.example.toml.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)

from common.errors import ConfigError, format_validation_error
from hosts.hosts import REMOTE_PYTHON, SshTarget
from hosts.topology import HOST_NAME, PREFIX, Offloads, Role

MAC = r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"
PCI = r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$"
#: A command found on the login PATH, or an absolute path: it goes into shell commands as is.
_INTERPRETER = re.compile(r"[\w.+-]+|(/[\w.+-]+)+")


def _interpreter(value: str) -> str:
    if not _INTERPRETER.fullmatch(value):
        raise ValueError(f"{value!r} is neither a command name (python3) nor an absolute "
                         f"path (/usr/bin/python3)")
    return value


#: The Python a host runs the bench's host-side tools and the attacks under.
Interpreter = Annotated[str, AfterValidator(_interpreter)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ssh(_Strict):
    """How to reach a host; unset fields come from [defaults.ssh]."""

    host: str | None = None
    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    key: str | None = None
    jump: str | None = None            # user@host[:port] of a jump host
    proxy_command: str | None = None   # an OpenSSH ProxyCommand, %h and %p expanded
    sudo: bool | None = None           # run commands through `sudo -n`
    connect_timeout: float | None = Field(default=None, gt=0)


class SwitchKind(str, Enum):
    LINUX = "linux"    # a Linux host routes between its ports; the eBPF pipelines attach


#: Why a hardware switch is refused, in the words a person reads.
NO_HARDWARE_PIPELINE = (
    "'tofino' is not supported: this repository has no pipeline for a hardware switch "
    "(no P4 program, no driver), so nothing would run on one.  What exists is the switch "
    "pipeline in eBPF on a Linux host that routes between its ports: kind = \"linux\", "
    "set up as docs/remote.md describes")


class SwitchSpec(_Strict):
    kind: SwitchKind = SwitchKind.LINUX

    @field_validator("kind", mode="before")
    @classmethod
    def _no_hardware(cls, v):
        if isinstance(v, str) and v.lower() == "tofino":
            raise ValueError(NO_HARDWARE_PIPELINE)
        return v


class InvHost(_Strict):
    name: Annotated[str, Field(pattern=HOST_NAME)]
    role: Role
    ssh: Ssh = Ssh()
    # Data plane.  The switch host of a Linux switch has no address of its
    # own on the data plane: its ports carry each host's gateway.
    address: ipaddress.IPv4Interface | None = None
    gateway: ipaddress.IPv4Address | None = None
    iface: str | None = None           # data-plane interface on this host
    mac: Annotated[str, Field(pattern=MAC)] | None = None
    switch_port: str | None = None     # the switch host's interface toward this host
    switch_mac: Annotated[str, Field(pattern=MAC)] | None = None
    pci: Annotated[str, Field(pattern=PCI)] | None = None  # DPDK NIC of a front-end
    cpus: Annotated[str, Field(pattern=r"^$|^\d+(-\d+)?(,\d+(-\d+)?)*$")] = ""
    workdir: str | None = None
    python: Interpreter | None = None

    @model_validator(mode="after")
    def _data_plane(self) -> "InvHost":
        if self.role == Role.SWITCH:
            return self
        missing = [f for f in ("address", "iface") if getattr(self, f) is None]
        if missing:
            raise ValueError(f"{missing[0]}: missing required field (the data plane of a "
                             f"{self.role.value} host)")
        if self.gateway is not None and self.gateway not in self.address.network:
            raise ValueError(f"gateway: {self.gateway} is outside the subnet "
                             f"{self.address.network} of address {self.address}")
        return self

    @property
    def gateway_address(self) -> ipaddress.IPv4Address:
        if self.gateway is not None:
            return self.gateway
        first = next(self.address.network.hosts())
        return first + 1 if first == self.address.ip else first


class Defaults(_Strict):
    ssh: Ssh = Ssh()
    workdir: str = "/tmp/miresga-bench"
    # Name the interpreter where the login PATH's python3 is not the one with the
    # packages setup-system.sh installs (a pyenv or conda shim first on root's PATH):
    # the extra host's attacks import scapy under it.
    python: Interpreter = REMOTE_PYTHON


class TestbedInfo(_Strict):
    __test__ = False
    name: Annotated[str, Field(pattern=PREFIX.pattern)]
    vip: ipaddress.IPv4Address
    vip_port: int = Field(default=80, ge=1, le=65535)
    mtu: int = Field(default=1500, ge=576, le=9000)


class Inventory(_Strict):
    testbed: TestbedInfo
    switch: SwitchSpec = SwitchSpec()
    defaults: Defaults = Defaults()
    offloads: Offloads = Offloads()
    host: list[InvHost] = Field(min_length=2)
    source: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> "Inventory":
        seen: dict[str, int] = {}
        addrs: dict = {self.testbed.vip: "testbed.vip"}
        for i, h in enumerate(self.host):
            if h.name in seen:
                raise ValueError(f"host[{i}].name: {h.name!r} is already host[{seen[h.name]}]")
            seen[h.name] = i
            if h.address is not None:
                if h.address.ip in addrs:
                    raise ValueError(f"host[{i}].address: {h.address.ip} is also "
                                     f"{addrs[h.address.ip]}")
                addrs[h.address.ip] = f"host[{i}].address"
            if self.resolve_ssh(h).host is None:
                raise ValueError(f"host[{i}].ssh.host: missing required field (how to reach "
                                 f"{h.name})")
        switches = [h for h in self.host if h.role == Role.SWITCH]
        if len(switches) != 1:
            raise ValueError(f"host: exactly one host with role 'switch' (the Linux host "
                             f"that is the switch), found {len(switches)}")
        if not any(h.role == Role.CLIENT for h in self.host):
            raise ValueError("host: at least one host with role 'client' is needed")
        if self.switch.kind == SwitchKind.LINUX:
            for i, h in enumerate(self.host):
                if h.role != Role.SWITCH and h.switch_port is None:
                    raise ValueError(f"host[{i}].switch_port: missing required field (the "
                                     f"Linux switch's interface toward {h.name})")
        return self

    def resolve_ssh(self, h: InvHost) -> Ssh:
        d = self.defaults.ssh
        return Ssh(**{f: getattr(h.ssh, f) if getattr(h.ssh, f) is not None else getattr(d, f)
                      for f in Ssh.model_fields})

    def ssh_target(self, h: InvHost) -> SshTarget:
        s = self.resolve_ssh(h)
        jump = None
        if s.jump:
            user, _, rest = s.jump.rpartition("@")
            host, _, port = rest.partition(":")
            jump = SshTarget(host=host, user=user or s.user or "root", port=int(port or 22),
                             key=s.key)
        return SshTarget(host=s.host, user=s.user or "root", port=s.port or 22, key=s.key,
                         proxy_command=s.proxy_command, jump=jump, sudo=bool(s.sudo),
                         connect_timeout=s.connect_timeout or 10.0)

    def workdir(self, h: InvHost) -> str:
        return h.workdir or f"{self.defaults.workdir}/{h.name}"

    def python(self, h: InvHost) -> str:
        return h.python or self.defaults.python

    def hosts(self, role: Role | str | None = None) -> list[InvHost]:
        return [h for h in self.host if role is None or h.role == Role(role)]

    def redacted(self) -> dict:
        """The inventory as result metadata: no key paths or proxy commands."""
        data = self.model_dump(mode="json")
        for h in data["host"]:
            h.pop("ssh", None)
        data["defaults"].pop("ssh", None)
        return data


def parse_inventory(data: dict, source: str = "inventory") -> Inventory:
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    return inv.model_copy(update={"source": source})


def load_inventory(path: str | Path) -> Inventory:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read inventory: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_inventory(data, source=str(path))
