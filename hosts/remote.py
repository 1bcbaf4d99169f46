"""A testbed of real hosts reached over SSH, from an inventory file.

    tb = RemoteTestbed(load_inventory("testbeds/lab.toml"))
    tb.up()        # connect to every host, clean up after earlier sessions,
                   # check prerequisites: all problems of all hosts, or none
    tb.deploy()    # ship this checkout, install packages, build each role's parts
    ...            # the same targets and runner as on the emulated testbed
    tb.down()      # stop what this session started, detach, close

    tb.reach(); tb.check_prerequisites(); tb.close()   # look, change nothing

The prerequisite checks only read (docs/remote.md lists them with the fix
for each); cleaning up is `clean()`, which `up()` and a campaign's session do
first and `python -m bench remote check` never does.

It offers the same surface as EmulatedTestbed (hosts by role, the VIP, link
facts, workdirs, bpf_dir), so targets and the runner do not know which one
they drive.  Work that is independent across hosts (connect, check, deploy,
clean up) runs in parallel with one progress view.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from common.errors import HostError, TestbedError
from common.paths import BPF_ROOT, REPO_ROOT
from hosts.hosts import LinkFacts, SshHost
from hosts.inventory import Inventory, SwitchKind
from hosts.parallel import for_each_host
from hosts.sshd import dial_from
from hosts.topology import Role

HUGEPAGE_MOUNT = "/mnt/miresga-hugepages"
#: The commands a host of each role runs (scripts/setup-system.sh installs them all, and
#: `remote deploy` runs it); hosts that build eBPF or C parts also need clang and make.
ROLE_TOOLS = {"client": ["wrk", "curl"], "backend": ["nginx", "tc"],
              "frontend": ["haproxy", "nginx", "pkg-config"], "switch": ["tc", "ip"],
              # the fault runs' SYN flood
              "extra": ["hping3"]}
#: Python modules beyond the standard library that a role's host-side tools import under
#: the host's Python (the inventory's `python`), with the Debian package that provides
#: each: the attacks of the fault runs (workloads/attack/attack.py) forge their packets
#: with scapy.
ROLE_MODULES = {"extra": {"scapy": "python3-scapy"}}
MIN_KERNEL = (5, 15)
DPDK_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio", "mlx5_core")


def _int(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0


def _cpu_list(text: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5]."""
    out: list[int] = []
    for part in filter(None, text.replace(" ", "").split(",")):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


@dataclass
class HostReport:
    host: str
    problems: list[str] = field(default_factory=list)   # nothing starts until they are fixed
    warnings: list[str] = field(default_factory=list)   # measurements may suffer
    facts: dict = field(default_factory=dict)


def parallel(hosts: list, fn: Callable, what: str, progress: bool = True) -> dict:
    return for_each_host(hosts, fn, what, progress)


class RemoteTestbed:
    kind = "remote"

    def __init__(self, inventory: Inventory, progress: bool = True):
        self.inventory = inventory
        self.prefix = inventory.testbed.name
        self.progress = progress
        self.hosts: dict[str, SshHost] = {}
        for h in inventory.host:
            link = None
            if h.role != Role.SWITCH:
                link = LinkFacts(iface=h.iface, mac=h.mac, gateway=h.gateway_address,
                                 switch_port=h.switch_port, switch_mac=h.switch_mac)
            host = SshHost(h.name, h.role.value, h.address.ip if h.address else None,
                           inventory.workdir(h), inventory.ssh_target(h), link=link,
                           cpus=h.cpus, python=inventory.python(h))
            host.pci = h.pci
            self.hosts[h.name] = host

    # ---------------------------------------------- the testbed surface
    def host(self, name: str) -> SshHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise TestbedError(f"no host {name!r} in inventory {self.prefix!r}") from None

    def by_role(self, role) -> list[SshHost]:
        role = Role(role).value
        return [h for h in self.hosts.values() if h.role == role]

    switch = property(lambda self: self.by_role(Role.SWITCH)[0])
    clients = property(lambda self: self.by_role(Role.CLIENT))
    frontends = property(lambda self: self.by_role(Role.FRONTEND))
    backends = property(lambda self: self.by_role(Role.BACKEND))
    vip = property(lambda self: self.inventory.testbed.vip)
    vip_port = property(lambda self: self.inventory.testbed.vip_port)
    bpf_dir = property(lambda self: BPF_ROOT / self.prefix)

    @property
    def topology(self):
        return self.inventory

    def link_offloads(self) -> dict[str, dict]:
        """What ethtool reports on each host's data-plane interface (not what we wish)."""
        out = {}
        for h in self.hosts.values():
            if h.iface is None:
                continue
            try:
                out[h.name] = h.offloads()
            except HostError:
                out[h.name] = {k: False for k in h.OFFLOADS}
        return out

    # ------------------------------------------------------------ life
    def up(self) -> "RemoteTestbed":
        """Reach every host, clean up after earlier sessions, check prerequisites.

        Raises TestbedError naming every host that is unreachable or lacks
        something, before anything is started anywhere.
        """
        self.connect()
        self.require_prerequisites()
        return self

    def connect(self) -> None:
        """Open every host's connection and remove what earlier sessions left."""
        self.reach()
        self.clean()

    def reach(self) -> None:
        """Open every host's connection; change nothing on any host."""
        hosts = list(self.hosts.values())
        reached = parallel(hosts, lambda h: h.check(), "connecting", self.progress)
        down = {n: r for n, r in reached.items() if isinstance(r, Exception)}
        if down:
            raise TestbedError("unreachable hosts, nothing was started:\n" + "\n".join(
                f"  {n}: {e}" for n, e in sorted(down.items())))

    def clean(self) -> dict[str, list[str] | Exception]:
        """Remove what earlier sessions left on every host: {host: what was stopped}."""
        return parallel(list(self.hosts.values()), self._cleanup_host,
                        "cleaning up earlier sessions", self.progress)

    def close(self) -> None:
        """Drop every connection, stopping nothing (nothing was started)."""
        for h in self.hosts.values():
            h.disconnect()

    def require_prerequisites(self) -> None:
        reports = self.check_prerequisites()
        bad = [r for r in reports.values() if r.problems]
        if bad:
            raise TestbedError("hosts are missing prerequisites, nothing was started:\n" +
                               "\n".join(f"  {r.host}: {p}" for r in bad for p in r.problems))

    @contextlib.contextmanager
    def session(self, deploy: bool = True):
        """A campaign's use of the testbed: connect, clean, deploy what changed,
        check, then always stop and clean up, also on Ctrl-C or an error."""
        self.connect()
        try:
            if deploy:
                self.deploy(only_if_changed=True)
            self.require_prerequisites()
            yield self
        finally:
            self.down()

    def down(self) -> None:
        hosts = list(self.hosts.values())
        parallel(hosts, lambda h: h.stop_all(timeout=5), "stopping", self.progress)
        parallel(hosts, self._cleanup_host, "cleaning up", self.progress)
        for h in hosts:
            h.close()

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def _cleanup_host(self, h: SshHost) -> list[str]:
        """Leave nothing of ours on a host: processes, eBPF attachments, pins, hugepages.

        Runs at `up` too, so a run that died (Ctrl-C, lost connection) is
        cleaned up when the next session reconnects.
        """
        done = h.cleanup_leftovers()
        script = [f"rm -rf {BPF_ROOT}/{self.prefix}"]
        ifaces = [h.iface] if h.iface else []
        if h.role == Role.SWITCH.value:
            ifaces = [x.switch_port for x in self.hosts.values() if x.switch_port]
        for dev in ifaces:
            # Our programs sit on the clsact qdisc and in the XDP slot of the
            # data-plane interfaces, which the bench owns on its hosts.
            script.append(f"tc qdisc del dev {shlex.quote(dev)} clsact 2>/dev/null")
            script.append(f"ip link set dev {shlex.quote(dev)} xdp off 2>/dev/null")
        script.append(f"mountpoint -q {HUGEPAGE_MOUNT} && umount {HUGEPAGE_MOUNT}")
        h.run("; ".join(script) + "; true", check=False)
        return done

    # ----------------------------------------------------- prerequisites
    def check_prerequisites(self) -> dict[str, HostReport]:
        results = parallel(list(self.hosts.values()), self._check_host, "checking prerequisites",
                           self.progress)
        out = {}
        for name, r in results.items():
            out[name] = r if isinstance(r, HostReport) else HostReport(name, [f"check failed: {r}"])
        return out

    def _check_host(self, h: SshHost) -> HostReport:
        """What `h` lacks for its role.  Reads only: runs nothing that changes the host."""
        rep = HostReport(h.name)
        role = Role(h.role)
        probe = h.run("uname -r; uname -m; nproc; "
                      "(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); "
                      f"({h.python} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' "
                      "2>/dev/null || echo none)", check=False)
        lines = probe.stdout.splitlines() + [""] * 5
        rep.facts = {"kernel": lines[0], "arch": lines[1], "cpus": lines[2],
                     "cpu_model": lines[3].strip(), "python": lines[4]}
        try:
            major, minor = (int(x) for x in lines[0].split(".")[:2])
            if (major, minor) < MIN_KERNEL:
                rep.problems.append(f"kernel {lines[0]} is older than "
                                    f"{'.'.join(map(str, MIN_KERNEL))}")
        except ValueError:
            rep.problems.append(f"cannot read the kernel version ({lines[0]!r})")
        if lines[4] == "none" or tuple(map(int, lines[4].split("."))) < (3, 11):
            rep.problems.append(f"{h.python} >= 3.11 is needed (found {lines[4]})")
        if h.ssh.sudo and not h.run("sudo -n true", check=False).ok:
            rep.problems.append("sudo without a password is not allowed for "
                                f"{h.ssh.user} (`sudo -n true` failed)")
        elif not h.ssh.sudo and h.run("id -u", check=False).stdout.strip() != "0":
            rep.problems.append(f"{h.ssh.user} is not root and the inventory does not "
                                f"say sudo = true")
        self._check_tools(h, role, rep)
        if getattr(h, "pci", None):
            self._check_dpdk(h, rep)
        elif h.iface:
            self._check_link(h, rep)
        if role == Role.SWITCH and self.inventory.switch.kind == SwitchKind.LINUX:
            self._check_switch(h, rep)
        self._check_irqs(h, rep)
        return rep

    def _check_tools(self, h: SshHost, role: Role, rep: HostReport) -> None:
        need = list(ROLE_TOOLS[role.value])
        if role in (Role.BACKEND, Role.SWITCH, Role.FRONTEND):
            need += ["clang", "make"]
        for tool in need:
            if not h.run(f"command -v {tool} >/dev/null", check=False).ok:
                rep.problems.append(f"{tool} is not installed (run `python -m bench remote "
                                    f"deploy`, or install it)")
        for module, package in ROLE_MODULES.get(role.value, {}).items():
            if not h.run(f"{h.python} -c 'import {module}'", check=False).ok:
                rep.problems.append(f"{h.python} cannot import {module} (run `python -m bench "
                                    f"remote deploy`, or install {package})")

    def _link(self, h: SshHost, dev: str) -> dict | None:
        """`ip -d -j link show dev` of one interface, or None if it does not exist."""
        r = h.run(f"ip -d -j link show dev {shlex.quote(dev)}", check=False)
        try:
            return json.loads(r.stdout)[0] if r.ok else None
        except (ValueError, IndexError):
            return None

    def _check_link(self, h: SshHost, rep: HostReport) -> None:
        """A host's data-plane interface: there, up, the testbed's MTU, its address,
        and every other host and the VIP reached through the switch."""
        link = self._link(h, h.iface)
        if link is None:
            rep.problems.append(f"data-plane interface {h.iface} does not exist")
            return
        if "UP" not in link.get("flags", []):
            rep.problems.append(f"{h.iface} is down (ip link set dev {h.iface} up)")
        mtu = self.inventory.testbed.mtu
        if link.get("mtu") != mtu:
            rep.problems.append(f"{h.iface} has MTU {link.get('mtu')}, the inventory's "
                                f"testbed.mtu is {mtu} (ip link set dev {h.iface} mtu {mtu})")
        if h.mac and (link.get("address") or "").lower() != h.mac.lower():
            rep.problems.append(f"{h.iface} has MAC {link.get('address')}, the inventory says "
                                f"mac = {h.mac!r} (the switch pipeline addresses frames to it)")
        if h.address is not None:
            r = h.run(f"ip -4 -o addr show dev {shlex.quote(h.iface)}", check=False)
            if f" {h.address}/" not in r.stdout:
                rep.problems.append(f"{h.iface} does not carry the address {h.address}")
        dests = {str(self.inventory.testbed.vip): "the VIP"}
        dests.update({str(o.address): o.name for o in self.hosts.values()
                      if o.address is not None and o is not h})
        script = "; ".join(f"echo \"$(ip -4 -o route get {a} 2>&1)\"" for a in dests)
        routes = h.run(script, check=False).stdout.splitlines()
        for (addr, name), route in zip(dests.items(), routes):
            want = f"via {h.gateway} dev {h.iface}"
            if want not in route:
                rep.problems.append(f"traffic to {addr} ({name}) does not go through the switch "
                                    f"({want}): `ip route get {addr}` says {route.strip()!r}")

    def _check_dpdk(self, h: SshHost, rep: HostReport) -> None:
        """A DPDK front-end's NIC: the library, hugepages mounted and reserved, the
        NIC bound to a DPDK driver (its kernel interface is then gone: not checked)."""
        if not h.run("pkg-config --exists libdpdk", check=False).ok:
            rep.problems.append("DPDK (libdpdk-dev) is not installed")
        huge = h.run("awk '/HugePages_Total/ {print $2}' /proc/meminfo", check=False)
        if huge.stdout.strip() in ("", "0"):
            rep.problems.append("no hugepages reserved (echo 1024 > /proc/sys/vm/nr_hugepages)")
        if not h.run("grep -q ' hugetlbfs ' /proc/mounts", check=False).ok:
            rep.problems.append("no hugetlbfs is mounted (mount -t hugetlbfs nodev "
                                "/dev/hugepages)")
        drv = h.run(f"basename $(readlink /sys/bus/pci/devices/{h.pci}/driver) 2>/dev/null",
                    check=False).stdout.strip()
        if drv not in DPDK_DRIVERS:
            rep.problems.append(f"NIC {h.pci} is bound to {drv or 'no driver'}, not to a "
                                f"DPDK driver (dpdk-devbind.py -b vfio-pci {h.pci})")

    def _check_switch(self, h: SshHost, rep: HostReport) -> None:
        """The Linux switch: forwarding on, no strict reverse-path filter, and every
        port (an interface, or a VLAN sub-interface of one NIC) up, with the
        gateway address of its host and an MTU its host's frames fit."""
        def sysctl(key: str) -> str:
            return h.run(f"sysctl -n {shlex.quote(key)}", check=False).stdout.strip()

        if sysctl("net.ipv4.ip_forward") != "1":
            rep.problems.append("IPv4 forwarding is off (sysctl -w net.ipv4.ip_forward=1)")
        rp_all = sysctl("net.ipv4.conf.all.rp_filter")
        redirects_all = sysctl("net.ipv4.conf.all.send_redirects")
        mtu = self.inventory.testbed.mtu
        for other in self.hosts.values():
            port = other.switch_port
            if not port:
                continue
            link = self._link(h, port)
            if link is None:
                rep.problems.append(f"switch port {port} (toward {other.name}) does not exist")
                continue
            if "UP" not in link.get("flags", []):
                rep.problems.append(f"switch port {port} (toward {other.name}) is down")
            if (link.get("mtu") or 0) < mtu:
                rep.problems.append(f"switch port {port} has MTU {link.get('mtu')}, below the "
                                    f"testbed's {mtu}")
            kind = (link.get("linkinfo") or {}).get("info_kind")
            if kind == "vlan" and link.get("link"):
                parent = self._link(h, link["link"])
                # (Its MTU cannot exceed the NIC's: Linux clamps it, and the port's
                # MTU check above sees the result.)
                if parent is None or "UP" not in parent.get("flags", []):
                    rep.problems.append(f"switch port {port} is a VLAN of {link['link']}, "
                                        f"which is down or missing")
            if other.switch_mac and (link.get("address") or "").lower() != other.switch_mac.lower():
                rep.problems.append(f"switch port {port} has MAC {link.get('address')}, the "
                                    f"inventory says {other.name}'s switch_mac = "
                                    f"{other.switch_mac!r}")
            if other.gateway is not None:
                r = h.run(f"ip -4 -o addr show dev {shlex.quote(port)}", check=False)
                if f" {other.gateway}/" not in r.stdout:
                    rep.problems.append(f"switch port {port} does not carry {other.name}'s "
                                        f"gateway address {other.gateway}")
            if other.address is not None:
                r = h.run(f"ip neigh show {other.address} dev {shlex.quote(port)}", check=False)
                if not any(state in r.stdout for state in ("PERMANENT", "REACHABLE", "STALE",
                                                          "DELAY", "PROBE")):
                    rep.warnings.append(f"no neighbour entry for {other.name} ({other.address}) "
                                        f"on {port}: the pipeline's FIB lookups fail until ARP "
                                        f"resolves it (ip neigh replace {other.address} lladdr "
                                        f"{other.mac or 'MAC'} dev {port} nud permanent)")
            # Slashes: an interface name may hold dots (a VLAN's, ens1f0.11).
            rp = max(_int(rp_all), _int(sysctl(f"net/ipv4/conf/{port}/rp_filter")))
            if rp == 1:
                rep.problems.append(f"strict reverse-path filtering on {port}: the Miresga "
                                    f"front-end sends with the client's address and it would "
                                    f"be dropped (sysctl -w net/ipv4/conf/all/rp_filter=0 "
                                    f"net/ipv4/conf/{port}/rp_filter=0)")
            if _int(redirects_all) or _int(sysctl(f"net/ipv4/conf/{port}/send_redirects")):
                rep.warnings.append(f"{port} sends ICMP redirects (sysctl -w "
                                    f"net/ipv4/conf/all/send_redirects=0 "
                                    f"net/ipv4/conf/{port}/send_redirects=0)")

    def _check_irqs(self, h: SshHost, rep: HostReport) -> None:
        """Interrupts: irqbalance moves them during a run; a host given `cpus` should
        take its NICs' interrupts on those cores, where its role's cost is counted."""
        if h.run("pgrep -x irqbalance >/dev/null", check=False).ok:
            rep.warnings.append("irqbalance is running: it moves the NICs' interrupts during "
                                "a run (systemctl stop irqbalance; pin them, docs/remote.md)")
        devs = [h.iface] if h.iface and not getattr(h, "pci", None) else []
        if h.role == Role.SWITCH.value:
            devs = sorted({o.switch_port for o in self.hosts.values() if o.switch_port})
        if not devs:
            return
        pattern = "|".join(devs)
        r = h.run(f"for i in $(grep -E '({pattern})' /proc/interrupts | cut -d: -f1); do "
                  f"echo \"$i $(cat /proc/irq/$i/smp_affinity_list 2>/dev/null)\"; done",
                  check=False)
        irqs = dict(line.split(" ", 1) for line in r.stdout.split("\n") if " " in line)
        rep.facts["irq_cpus"] = {k.strip(): v.strip() for k, v in irqs.items()}
        mine = set(_cpu_list(h.cpus))
        if mine:
            outside = sorted(k for k, v in irqs.items() if not set(_cpu_list(v)) <= mine)
            if outside:
                rep.warnings.append(f"interrupts {', '.join(outside[:8])} of {', '.join(devs)} "
                                    f"may run on CPUs other than the host's cpus ({h.cpus})")

    # ------------------------------------------------------------ deploy
    def deploy(self, install_packages: bool = True, only_if_changed: bool = False) -> dict[str, str]:
        """Ship this checkout to every host, install packages, build the role's parts.

        With only_if_changed, hosts that already hold exactly this checkout
        (same content digest) are left as they are.
        """
        tarball, digest = make_source_tarball()
        hosts = list(self.hosts.values())
        if only_if_changed:
            have = parallel(hosts, lambda h: h.read_text(f"{h.repo_dir}/.revision",
                                                          missing_ok=True).strip(),
                            "comparing deployed revisions", self.progress)
            hosts = [h for h in hosts if not (isinstance(have[h.name], str)
                                              and have[h.name].endswith(digest))]
        try:
            results = parallel(hosts, lambda h: self._deploy_host(h, tarball, install_packages),
                               "deploying", self.progress) if hosts else {}
        finally:
            os.unlink(tarball)
        failed = {n: r for n, r in results.items() if isinstance(r, Exception)}
        if failed:
            raise TestbedError("deploy failed:\n" + "\n".join(
                f"  {n}: {e}" for n, e in sorted(failed.items())))
        return results

    def _deploy_host(self, h: SshHost, tarball: str, install_packages: bool) -> str:
        repo = h.repo_dir
        staged = f"{h.workdir}/repo.tar.gz"
        h.run(f"mkdir -p {shlex.quote(h.workdir)}")
        h.put(tarball, staged)
        h.run(f"rm -rf {shlex.quote(repo)} && mkdir -p {shlex.quote(repo)} && "
              f"tar -xzf {shlex.quote(staged)} -C {shlex.quote(repo)} && rm -f {shlex.quote(staged)}")
        if install_packages:
            h.run(f"bash {shlex.quote(repo)}/scripts/setup-system.sh", timeout=1800)
        h.run(f"make -C {shlex.quote(repo)} -s host-{h.role}", timeout=1800)
        return h.run(f"cat {shlex.quote(repo)}/.revision", check=False).stdout.strip()


def make_source_tarball() -> tuple[str, str]:
    """This checkout as it is now: tracked and untracked-not-ignored files,
    plus a .revision file naming the commit, whether the tree was dirty, and
    a digest of the content, by which a host's copy is known to be current.
    Returns (path of the tarball, digest)."""
    root = REPO_ROOT
    try:
        files = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], check=True,
                               capture_output=True).stdout.decode().split("\0")
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                     "--untracked-files=no"], capture_output=True,
                                    text=True).stdout.strip())
    except (subprocess.CalledProcessError, FileNotFoundError):
        files = [str(p.relative_to(root)) for p in root.rglob("*")
                 if p.is_file() and not any(part in (".venv", "build", "results", ".git")
                                            for part in p.relative_to(root).parts)]
        rev, dirty = "unknown", True
    files = sorted(f for f in files if f and (root / f).is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode() + b"\0" + (root / f).read_bytes() + b"\0")
    digest = "sha256:" + h.hexdigest()[:32]
    fd, path = tempfile.mkstemp(suffix=".tar.gz")
    os.close(fd)
    with tarfile.open(path, "w:gz") as tar:
        for f in files:
            tar.add(str(root / f), arcname=f)
        info = tarfile.TarInfo(".revision")
        text = f"{rev}{' dirty' if dirty else ''} {digest}\n".encode()
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return path, digest


def emulated_inventory(testbed, keys, workroot: str, dial_from_host: str = "client") -> dict:
    """An inventory whose hosts are the namespaces of an emulated testbed, each
    running its own sshd (hosts.sshd), reached only over SSH.

    The tests use it to drive the remote path for real on one machine; the
    switch is reached on its port toward the client.
    """
    via = testbed.host(dial_from_host).netns
    hosts = []
    for spec in testbed.topology.host:
        h = testbed.host(spec.name)
        entry = {"name": h.name, "role": h.role,
                 "workdir": f"{workroot}/{h.name}",
                 "ssh": {"host": str(h.address or testbed.host(dial_from_host).gateway)}}
        if h.role != "switch":
            entry.update(address=str(spec.address), iface=h.iface, mac=h.mac,
                         gateway=str(h.gateway), switch_port=h.switch_port,
                         switch_mac=h.switch_mac)
        if spec.cpus:
            entry["cpus"] = spec.cpus
        hosts.append(entry)
    return {
        "testbed": {"name": testbed.prefix, "vip": str(testbed.vip),
                    "vip_port": testbed.vip_port},
        # The namespace hosts share this machine's files: their Python is the Debian one
        # setup-system.sh installs scapy for, not whatever a root login's PATH finds first.
        "defaults": {"ssh": {"user": "root", "key": str(keys.client_key),
                             "proxy_command": dial_from(via), "connect_timeout": 5},
                     "python": "/usr/bin/python3"},
        "offloads": testbed.topology.offloads.model_dump(),
        "host": hosts,
    }


__all__ = ["RemoteTestbed", "HostReport", "make_source_tarball", "emulated_inventory"]

