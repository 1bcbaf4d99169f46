"""Inventory files: a testbed of real hosts reached over SSH.

An inventory maps the same roles as a topology file (client, switch,
frontend, backend, extra) to machines: how to reach each over SSH, its
data-plane interface, address and MAC, the switch port it is cabled to, and
for DPDK front-ends the PCI address of the NIC.  The switch is either a Linux
host routing between its ports (the eBPF switch, as on the emulated testbed)
or a Tofino, for which the inventory records what a P4 driver will need.

The same experiment runs on an emulated testbed or on an inventory; only the
`--inventory` option changes.  See testbeds/inventory.example.toml.
"""

from __future__ import annotations

import ipaddress
import tomllib
from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import ConfigError, format_validation_error
from hosts.hosts import SshTarget
from hosts.topology import HOST_NAME, PREFIX, Offloads, Role

MAC = r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"
PCI = r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$"


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
    TOFINO = "tofino"  # a Tofino switch; needs the P4 driver (not part of this release)


class Tofino(_Strict):
    """What a P4 (TNA) driver for Miresga's switch needs to know; recorded, not yet used."""

    bfrt_grpc: str                     # host:port of the BF Runtime gRPC server
    p4_program: str = "miresga"
    device_id: int = 0
    pipe: int = 0
    # front-panel port -> dev_port per host, e.g. backend1 = "1/0"
    ports: dict[str, str] = Field(default_factory=dict)
    ssh: Ssh | None = None             # the switch's CPU, to run the control plane there


class SwitchSpec(_Strict):
    kind: SwitchKind = SwitchKind.LINUX
    tofino: Tofino | None = None

    @model_validator(mode="after")
    def _tofino(self) -> "SwitchSpec":
        if self.kind == SwitchKind.TOFINO and self.tofino is None:
            raise ValueError("tofino: a [switch.tofino] table is required when kind = 'tofino'")
        return self


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
    switch_port: str | None = None     # the switch's interface (Linux) or port (Tofino)
    switch_mac: Annotated[str, Field(pattern=MAC)] | None = None
    pci: Annotated[str, Field(pattern=PCI)] | None = None  # DPDK NIC of a front-end
    cpus: Annotated[str, Field(pattern=r"^$|^\d+(-\d+)?(,\d+(-\d+)?)*$")] = ""
    workdir: str | None = None

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
            raise ValueError(f"host: exactly one host with role 'switch' (the Linux switch, "
                             f"or the Tofino's CPU), found {len(switches)}")
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
