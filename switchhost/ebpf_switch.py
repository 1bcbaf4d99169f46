"""An eBPF "switch": one tc program on every port of a switch, and its maps.

This is the plumbing any switch-resident eBPF data plane needs, kept apart
from what the program does so that the Miresga pipeline and the l4switch
baseline share it:

- load an object, sizing maps first (a table's capacity is a load-time
  parameter, as it is when a P4 program is compiled for a Tofino);
- attach its tc program on the ingress of every port of the switch: the
  interfaces of a network namespace (emulated testbed) or of this host (a
  Linux router on a real testbed, where the driver runs on the switch host);
- pin its maps under /sys/fs/bpf/<unique dir>/ so that other processes (the
  bench collecting counters, a test) can open them by path;
- give typed access to the maps (switchhost.bpf.Map, batch operations
  included) and sum per-CPU counters into a dict;
- detach and unpin idempotently, leaving the interfaces as they were.

    sw = EbpfSwitch("build/bpf/switch.bpf.o", "miresga_switch", MAPS,
                    netns="sw1234-switch", capacities={"flow_table": 143360})
    with sw:
        sw.map("vip_table").update(key, value)
        print(sw.counters("counters", SwitchCounter))

A crashed owner can leave pins and filters behind; `EbpfSwitch.cleanup()`
removes them given the pin directory, namespace and ports.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import logging
import os
import secrets
import shutil
import socket
from dataclasses import dataclass

from common.netns import netns
from switchhost import bpf

log = logging.getLogger("miresga.ebpf_switch")

BPFFS = "/sys/fs/bpf"


@dataclass(frozen=True)
class MapSpec:
    """A map of the object: its name, ctypes key and value types."""

    name: str
    key: type
    value: type


def list_ports(ns: str | None) -> list[str]:
    """Every interface of a namespace (or of this host) except loopback."""
    with netns(ns):
        return sorted(name for _, name in socket.if_nameindex() if name != "lo")


def unique_pin_dir(prefix: str = "sw") -> str:
    """A fresh directory name on bpffs, e.g. /sys/fs/bpf/sw3f9a1c."""
    return os.path.join(BPFFS, f"{prefix}{secrets.token_hex(3)}")


class EbpfSwitch:
    """A tc program attached on every port of a switch, with pinned maps."""

    def __init__(self, obj_path: str, prog_name: str, maps: list[MapSpec], *,
                 netns: str | None = None, ports: list[str] | None = None,
                 capacities: dict[str, int] | None = None, pin_dir: str | None = None,
                 pin_prefix: str = "sw", tc_priority: int = 1, tc_handle: int = 1):
        self.obj_path = obj_path
        self.prog_name = prog_name
        self.specs = {m.name: m for m in maps}
        self.netns = netns
        self.ports = list(ports) if ports is not None else None
        self.capacities = dict(capacities or {})
        self.pin_dir = pin_dir or unique_pin_dir(pin_prefix)
        self.tc_priority = tc_priority
        self.tc_handle = tc_handle
        self._obj: bpf.BpfObject | None = None
        self._maps: dict[str, bpf.Map] = {}
        self._attached: list[str] = []
        self._created_clsact: list[str] = []

    # ------------------------------------------------------------ lifecycle

    def load(self, attach: bool = True) -> "EbpfSwitch":
        """Open, size, load and pin; then attach on every port (unless told not to).

        On any failure everything done so far is undone, so a failed load
        leaves neither pins nor filters.
        """
        if self._obj is not None:
            raise RuntimeError(f"{self.obj_path} is already loaded")
        try:
            self._obj = bpf.BpfObject(self.obj_path)
            for name, n in self.capacities.items():
                self._obj.set_max_entries(name, n)
            self._obj.load()
            os.makedirs(self.pin_dir, exist_ok=False)
            for spec in self.specs.values():
                self._obj.pin_map(spec.name, os.path.join(self.pin_dir, spec.name))
                self._maps[spec.name] = self._obj.map(spec.name, spec.key, spec.value)
            if attach:
                self.attach()
        except BaseException:
            self.close()
            raise
        return self

    def attach(self, ports: list[str] | None = None) -> list[str]:
        """Attach the program on the ingress of each port (default: all of them)."""
        if self._obj is None:
            raise RuntimeError("load() first")
        ports = ports if ports is not None else (self.ports or list_ports(self.netns))
        if not ports:
            raise bpf.BpfError(errno.ENODEV, f"no ports to attach to in netns {self.netns!r}")
        fd = self._obj.program_fd(self.prog_name)
        for port in ports:
            if port in self._attached:
                continue
            if bpf.tc_clsact_create(self.netns, port):
                self._created_clsact.append(port)
            bpf.tc_attach(self.netns, port, fd, bpf.TC_INGRESS, self.tc_priority,
                          self.tc_handle)
            self._attached.append(port)
        self.ports = list(self._attached)
        return self.ports

    def detach(self) -> None:
        """Detach from every port; remove the clsact qdiscs this driver added."""
        for port in list(self._attached):
            try:
                bpf.tc_detach(self.netns, port, bpf.TC_INGRESS, self.tc_priority,
                              self.tc_handle)
                if port in self._created_clsact:
                    bpf.tc_clsact_destroy(self.netns, port)
                    self._created_clsact.remove(port)
            except OSError as e:  # the namespace or port may be gone already
                log.debug("detach %s: %s", port, e)
            self._attached.remove(port)

    def close(self) -> None:
        """Detach, unpin, release.  Safe to call twice, or after a failed load."""
        self.detach()
        for m in self._maps.values():
            m.close()
        self._maps.clear()
        if self._obj is not None:
            self._obj.close()
            self._obj = None
        unpin_dir(self.pin_dir)

    def __enter__(self) -> "EbpfSwitch":
        if self._obj is None:
            self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def cleanup(pin_dir: str, netns_name: str | None = None, ports: list[str] | None = None,
                tc_priority: int = 1, tc_handle: int = 1) -> None:
        """Remove what a crashed owner left: filters at (priority, handle), pins."""
        if ports is None:
            try:
                ports = list_ports(netns_name)
            except OSError:
                ports = []
        for port in ports:
            try:
                bpf.tc_detach(netns_name, port, bpf.TC_INGRESS, tc_priority, tc_handle)
            except OSError:
                pass
        unpin_dir(pin_dir)

    # ---------------------------------------------------------------- maps

    @property
    def loaded(self) -> bool:
        return self._obj is not None

    def map(self, name: str) -> bpf.Map:
        return self._maps[name]

    def program_fd(self) -> int:
        if self._obj is None:
            raise RuntimeError("load() first")
        return self._obj.program_fd(self.prog_name)

    def counters(self, map_name: str, names: type[enum.IntEnum]) -> dict[str, int]:
        return read_counters(self._maps[map_name], names)


def read_counters(m: bpf.Map, names: type[enum.IntEnum]) -> dict[str, int]:
    """Sum a per-CPU u64 array over CPUs; keys are the enum's lower-case names."""
    out = {}
    for member in names:
        out[member.name.lower()] = m.sum_percpu(ctypes.c_uint32(int(member)))
    return out


def unpin_dir(pin_dir: str) -> None:
    """Remove a pin directory and every pin in it; nothing if it is absent."""
    if not pin_dir.startswith(BPFFS + "/") or pin_dir.rstrip("/") == BPFFS:
        raise ValueError(f"refusing to remove {pin_dir!r}: not a directory under {BPFFS}")
    if os.path.isdir(pin_dir):
        # bpffs allows unlink/rmdir; pins hold no data of their own.
        shutil.rmtree(pin_dir, ignore_errors=True)


class PinnedMaps:
    """The maps of a switch loaded by another process, opened through their pins.

        with PinnedMaps("/sys/fs/bpf/sw3f9a1c", MAPS) as maps:
            read_counters(maps["counters"], SwitchCounter)
    """

    def __init__(self, pin_dir: str, maps: list[MapSpec]):
        self.pin_dir = pin_dir
        self._maps: dict[str, bpf.Map] = {}
        try:
            for spec in maps:
                self._maps[spec.name] = bpf.Map.from_pin(os.path.join(pin_dir, spec.name),
                                                         spec.key, spec.value)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> bpf.Map:
        return self._maps[name]

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
