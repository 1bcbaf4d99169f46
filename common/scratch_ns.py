"""A throwaway network namespace with named ports, for packet tests and benchmarks.

The switch driver needs real interfaces (ifindex, MAC) to program its
back-end and front-end tables, and the reverse path needs a FIB with routes
and neighbours; BPF_PROG_TEST_RUN runs the program in the caller's
namespace.  This builds just that, without the full testbed: each port is a
veth whose peer stays in the same namespace (nothing is ever sent through
it), optionally with an address, routes and permanent neighbour entries.

    with ScratchNs() as ns:
        ns.add_port("c0", "10.9.0.1/24", neighbours={"10.9.0.10": "02:00:00:00:00:10"})
        ...

Names carry the `sw` prefix plus random hex; the namespace is deleted on
exit, taking its interfaces with it.
"""

from __future__ import annotations

import secrets
import subprocess

from common.netns import write_sysctl


def _ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


class ScratchNs:
    def __init__(self, prefix: str = "sw"):
        self.name = f"{prefix}{secrets.token_hex(3)}-scratch"
        self.ports: list[str] = []

    def __enter__(self) -> "ScratchNs":
        _ip("netns", "add", self.name)
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
            # The switch routes: bpf_fib_lookup() refuses otherwise.
            write_sysctl(self.name, "net.ipv4.ip_forward", 1)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def add_port(self, name: str, address: str | None = None, mac: str | None = None,
                 neighbours: dict[str, str] | None = None,
                 routes: dict[str, str] | None = None, mtu: int | None = None) -> None:
        """A port `name` (veth, peer `name`p); `neighbours` ip -> MAC, `routes` net -> via."""
        ns = self.name
        _ip("-n", ns, "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
        if mac:
            _ip("-n", ns, "link", "set", name, "address", mac)
        if mtu:
            _ip("-n", ns, "link", "set", name, "mtu", str(mtu))
            _ip("-n", ns, "link", "set", f"{name}p", "mtu", str(mtu))
        _ip("-n", ns, "link", "set", name, "up")
        _ip("-n", ns, "link", "set", f"{name}p", "up")
        write_sysctl(ns, f"net.ipv4.conf.{name}.forwarding", 1)
        if address:
            _ip("-n", ns, "addr", "add", address, "dev", name)
        for ip, lladdr in (neighbours or {}).items():
            _ip("-n", ns, "neigh", "replace", ip, "lladdr", lladdr, "dev", name,
                "nud", "permanent")
        for net, via in (routes or {}).items():
            _ip("-n", ns, "route", "replace", net, "via", via, "dev", name)
        self.ports.append(name)
