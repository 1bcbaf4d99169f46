"""Addresses as the switch's tables hold them, and as people write them.

Keys and values of the maps carry addresses and ports as the raw
network-order words a C struct holds (`*_be` fields of miresga.h); these
helpers convert both ways, and read a port's MAC address.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from common.netns import netns


def ip_be(ip: str | ipaddress.IPv4Address) -> int:
    """An IPv4 address as the u32 a C struct holds in network order."""
    return struct.unpack("=I", socket.inet_aton(str(ip)))[0]


def port_be(port: int) -> int:
    return struct.unpack("=H", struct.pack("!H", port))[0]


def ip_str(be: int) -> str:
    return socket.inet_ntoa(struct.pack("=I", be))


def port_host(be: int) -> int:
    return struct.unpack("!H", struct.pack("=H", be))[0]


def mac_bytes(mac: str) -> bytes:
    b = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(b) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return b


def iface_mac(ns: str | None, ifname: str) -> str:
    """The MAC address of an interface in a namespace (SIOCGIFHWADDR)."""
    import fcntl

    with netns(ns):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            info = fcntl.ioctl(s.fileno(), 0x8927, struct.pack("256s", ifname.encode()[:15]))
    return ":".join(f"{b:02x}" for b in info[18:24])
