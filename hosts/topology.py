"""Topology files: the hosts of a testbed, their roles, addresses and links.

Every host but the switch has one link, to the switch; the switch routes
between them and is every host's gateway.  A topology is validated completely
before anything is created, and every error names its field:

    testbeds/bad.toml: host[3].role: Input should be 'client', 'switch', ...

See testbeds/emulated.toml for a documented example.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import ConfigError, format_validation_error
from common.paths import REPO_ROOT

# Interface names are at most 15 bytes (IFNAMSIZ - 1) and the switch names its
# port after the host, so host names must fit.
HOST_NAME = r"^[a-z][a-z0-9-]{0,14}$"
PREFIX = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class Role(str, Enum):
    CLIENT = "client"      # load generators
    SWITCH = "switch"      # the L3 gateway of every host; eBPF pipelines attach here
    FRONTEND = "frontend"  # L7 load balancers: HAProxy, nginx, the Miresga front-end
    BACKEND = "backend"    # web servers
    EXTRA = "extra"        # used by no target: fault injection, attackers, probes


class Offloads(BaseModel):
    """ethtool features of both ends of a link.

    Off unless the topology says otherwise; testbeds/emulated.toml turns TX
    checksum, TSO and GSO on, as real NICs have them.  The one link that
    cannot take them is an af_packet DPDK port's (partial checksums,
    super-packets): the miresga target turns them off on its front-end's
    link while it runs (miresga.control.frontend.quiet_afpacket_link).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    tx: bool = False   # TX checksum offload
    tso: bool = False
    gso: bool = False
    gro: bool = False

    def merged(self, override: "OffloadsOverride | None") -> "Offloads":
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))

    def ethtool_args(self) -> list[str]:
        onoff = {True: "on", False: "off"}
        return ["tx", onoff[self.tx], "tso", onoff[self.tso], "gso", onoff[self.gso],
                "gro", onoff[self.gro]]


class OffloadsOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tx: bool | None = None
    tso: bool | None = None
    gso: bool | None = None
    gro: bool | None = None


class HostSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(pattern=HOST_NAME)]
    role: Role
    # Host side of the link, with its prefix length; the switch side is the
    # gateway.  The switch itself has no address of its own.
    address: ipaddress.IPv4Interface | None = None
    gateway: ipaddress.IPv4Address | None = None
    mtu: int | None = Field(default=None, ge=576, le=9000)
    offloads: OffloadsOverride | None = None
    # CPUs the host's processes are pinned to ("0", "1", "0-1"); empty = any.
    cpus: Annotated[str, Field(pattern=r"^$|^\d+(-\d+)?(,\d+(-\d+)?)*$")] = ""

    @model_validator(mode="after")
    def _address(self) -> "HostSpec":
        if self.role == Role.SWITCH:
            if self.address is not None or self.gateway is not None:
                raise ValueError("the switch has no address of its own: its ports take "
                                 "each host's gateway address")
            return self
        if self.address is None:
            raise ValueError("address: missing required field (e.g. \"10.10.1.2/24\")")
        net = self.address.network
        if net.prefixlen > 30:
            raise ValueError(f"address: {self.address} leaves no room for a gateway")
        if self.address.ip in (net.network_address, net.broadcast_address):
            raise ValueError(f"address: {self.address.ip} is not a host address of {net}")
        if self.gateway is not None:
            if self.gateway not in net:
                raise ValueError(f"gateway: {self.gateway} is outside the subnet {net} "
                                 f"of address {self.address}")
            if self.gateway == self.address.ip:
                raise ValueError(f"gateway: {self.gateway} is the host's own address")
        return self

    @property
    def gateway_address(self) -> ipaddress.IPv4Address:
        """The switch's address on this host's link: given, or the subnet's first."""
        if self.gateway is not None:
            return self.gateway
        first = next(self.address.network.hosts())
        if first == self.address.ip:
            first = first + 1
        return first

    @property
    def cpu_list(self) -> list[int]:
        out: list[int] = []
        for part in filter(None, self.cpus.split(",")):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
        return out


class TestbedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(pattern=PREFIX.pattern)]
    vip: ipaddress.IPv4Address
    vip_port: int = Field(default=80, ge=1, le=65535)
    mtu: int = Field(default=1500, ge=576, le=9000)
    # TCP congestion control of every host's route to the others.  Named, not
    # inherited: a namespace takes the machine's default, and on a machine set
    # to bbr one connection per request at 1 MB measured `direct` at 1,208 req/s
    # against 2,179 with cubic (results/reference/congestion): the numbers
    # followed the machine, not the targets.  cubic is the kernel's own default.
    congestion_control: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,15}$")] = "cubic"


class Topology(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    testbed: TestbedSpec
    offloads: Offloads = Offloads()
    host: list[HostSpec] = Field(min_length=2)
    source: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> "Topology":
        names: dict[str, int] = {}
        for i, h in enumerate(self.host):
            if h.name in names:
                raise ValueError(f"host[{i}].name: {h.name!r} is already host[{names[h.name]}]")
            names[h.name] = i
        switches = [i for i, h in enumerate(self.host) if h.role == Role.SWITCH]
        if len(switches) != 1:
            raise ValueError(f"host: a testbed has exactly one host with role 'switch', "
                             f"this one has {len(switches)}")
        if not any(h.role == Role.CLIENT for h in self.host):
            raise ValueError("host: a testbed needs at least one host with role 'client'")
        # Every address on the testbed is distinct: host addresses, the
        # switch's port addresses and the VIP.
        owners: dict[ipaddress.IPv4Address, str] = {self.testbed.vip: "testbed.vip"}
        nets: list[tuple[ipaddress.IPv4Network, int]] = []
        for i, h in enumerate(self.host):
            if h.role == Role.SWITCH:
                continue
            if h.address.ip in owners:
                raise ValueError(f"host[{i}].address: {h.address.ip} is also "
                                 f"{owners[h.address.ip]}")
            for net, j in nets:
                if net.overlaps(h.address.network):
                    raise ValueError(f"host[{i}].address: subnet {h.address.network} overlaps "
                                     f"the subnet of host[{j}] ({self.host[j].name}); every "
                                     f"link has a subnet of its own")
            for field, addr in (("address", h.address.ip), ("gateway", h.gateway_address)):
                if addr in owners:
                    raise ValueError(f"host[{i}].{field}: {addr} is also {owners[addr]}")
                owners[addr] = f"host[{i}].{field}"
            nets.append((h.address.network, i))
            if self.testbed.vip in h.address.network:
                raise ValueError(f"testbed.vip: {self.testbed.vip} is inside the subnet "
                                 f"{h.address.network} of host[{i}] ({h.name}); the VIP "
                                 f"must be routed, not on a link")
        return self

    # ------------------------------------------------------------ queries
    @property
    def switch(self) -> HostSpec:
        return next(h for h in self.host if h.role == Role.SWITCH)

    def hosts(self, role: Role | str | None = None) -> list[HostSpec]:
        if role is None:
            return list(self.host)
        role = Role(role)
        return [h for h in self.host if h.role == role]

    def get(self, name: str) -> HostSpec:
        for h in self.host:
            if h.name == name:
                return h
        raise KeyError(f"no host named {name!r} in testbed {self.testbed.name!r}")

    def link_offloads(self, h: HostSpec) -> Offloads:
        return self.offloads.merged(h.offloads)

    def link_mtu(self, h: HostSpec) -> int:
        return h.mtu or self.testbed.mtu


def parse_topology(data: dict, source: str = "topology") -> Topology:
    try:
        topo = Topology.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    return topo.model_copy(update={"source": source})


def load_topology(path: str | Path) -> Topology:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read topology: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_topology(data, source=str(path))


DEFAULT_TOPOLOGY = REPO_ROOT / "testbeds" / "emulated.toml"
