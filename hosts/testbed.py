"""The emulated testbed: one network namespace per host, a veth pair per link.

    with EmulatedTestbed(load_topology("testbeds/emulated.toml"), prefix="t1") as tb:
        tb.host("client").run("curl -s http://10.10.11.2/")

Names: every namespace is `<prefix>-<host>`; inside it the host's end of its
link is `eth0` and the switch's end, in the switch namespace, is named after
the host.  Links are created directly inside their namespaces, so nothing of
a testbed ever appears in the root namespace and two testbeds with different
prefixes never collide, even with the same addresses.

Teardown is idempotent and reaches what a crash leaves: every process inside
the testbed's namespaces (found by namespace, not by name), pinned BPF objects
under /sys/fs/bpf/miresga/<prefix>, work directories, the namespaces.  A state
file under /run/miresga/testbeds records a testbed as soon as its first
namespace exists, and a guard process tears the testbed down if the process
that owns it dies without doing so (SIGKILL, a crashed test).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from common.errors import ConfigError, TestbedError
from common.netns import write_sysctl
from common.paths import BPF_ROOT, REPO_ROOT, STATE_DIR, WORK_ROOT
from hosts.cgroups import HostCgroup, remove_testbed_cgroups
from hosts.hosts import LinkFacts, NetnsHost
from hosts.topology import PREFIX, HostSpec, Role, Topology, parse_topology

SWITCH_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    # The Miresga front-end sends toward back-ends with the client's source
    # address: strict reverse-path filtering in the switch would drop it.
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
}
HOST_SYSCTLS = {
    # One connection per request at tens of thousands per second would run a
    # client out of ephemeral ports with the defaults.
    "net.ipv4.ip_local_port_range": "1024 65000",
    "net.ipv4.tcp_tw_reuse": 1,
    "net.core.somaxconn": 8192,
    "net.ipv4.tcp_max_syn_backlog": 8192,
}

AVAILABLE_CC = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")


def require_congestion_control(topo: Topology) -> None:
    """The topology's congestion control is in this kernel, or the run is
    refused before anything is built.  A module is not loaded for it: that
    changes the machine, which is its operator's to do."""
    name = topo.testbed.congestion_control
    available = AVAILABLE_CC.read_text().split()
    if name not in available:
        raise ConfigError(
            f"{topo.source or 'topology'}: testbed.congestion_control: {name!r} is not "
            f"in this kernel (available: {', '.join(available)}; a module may provide it: "
            f"modprobe tcp_{name})")


def host_mac(index: int) -> str:
    return f"02:4d:47:00:{index:02x}:02"


def switch_port_mac(index: int) -> str:
    return f"02:4d:47:00:{index:02x}:01"


def _ip_batch(commands: list[str], netns: str | None = None, force: bool = False) -> None:
    if not commands:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
    p = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if p.returncode != 0 and not force:
        raise TestbedError(f"ip {'-n ' + netns + ' ' if netns else ''}-batch failed: "
                           f"{p.stderr.strip()}")


def existing_namespaces() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def check_prefix(prefix: str, given_as: str | None = None) -> None:
    """A prefix a new emulated testbed can take, checked before anything is created: its
    form, and no testbed up under it (a state file or a namespace `<prefix>-*`).

    given_as says where the prefix came from, for the message (default `--prefix P`).
    """
    given_as = given_as or f"--prefix {prefix}"
    if not PREFIX.match(prefix):
        raise ConfigError(f"{given_as}: 1-8 lowercase letters and digits, starting with a "
                          f"letter")
    clash = sorted(ns for ns in existing_namespaces() if ns.startswith(prefix + "-"))
    if (STATE_DIR / f"{prefix}.json").exists() or clash:
        raise TestbedError(f"{given_as}: testbed {prefix!r} is already up"
                           + (f" (namespaces {', '.join(clash)})" if clash else "")
                           + f"; take it down first (python -m bench testbed down --prefix "
                             f"{prefix}) or give another --prefix")


def namespace_pids(ns: str) -> list[int]:
    p = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split()] if p.returncode == 0 else []


def kill_namespace_processes(namespaces: list[str], grace: float = 2.0) -> int:
    """SIGTERM, then SIGKILL, every process inside the given namespaces."""
    me = os.getpid()
    pids = {pid for ns in namespaces for pid in namespace_pids(ns) if pid != me}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = {pid for pid in pids if _alive(pid)}
        if pids:
            time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class EmulatedTestbed:
    kind = "emulated"

    def __init__(self, topology: Topology, prefix: str | None = None, guard: bool = True):
        self.topology = topology
        self.prefix = prefix or topology.testbed.name
        if not PREFIX.match(self.prefix):
            raise TestbedError(f"prefix {self.prefix!r}: 1-8 lowercase letters and digits, "
                               f"starting with a letter")
        self.guard = guard
        self._guard_proc: subprocess.Popen | None = None
        self._is_up = False
        self.hosts: dict[str, NetnsHost] = {}
        for i, spec in enumerate(topology.host):
            self.hosts[spec.name] = self._make_host(i, spec)

    # --------------------------------------------------------------- names
    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    @property
    def namespaces(self) -> list[str]:
        return [self.ns(h.name) for h in self.topology.host]

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.prefix}.json"

    @property
    def workdir(self) -> Path:
        return WORK_ROOT / self.prefix

    @property
    def bpf_dir(self) -> Path:
        """Where this testbed's eBPF components pin their maps."""
        return BPF_ROOT / self.prefix

    def _make_host(self, index: int, spec: HostSpec) -> NetnsHost:
        link = None
        if spec.role != Role.SWITCH:
            link = LinkFacts(iface="eth0", mac=host_mac(index), gateway=spec.gateway_address,
                             switch_port=spec.name, switch_mac=switch_port_mac(index))
        return NetnsHost(spec.name, spec.role.value,
                         spec.address.ip if spec.address else None,
                         str(WORK_ROOT / self.prefix / spec.name), netns=self.ns(spec.name),
                         link=link, cpus=spec.cpus, cgroup=HostCgroup(self.prefix, spec.name))

    # ------------------------------------------------------------- queries
    def host(self, name: str) -> NetnsHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise TestbedError(f"no host {name!r} in testbed {self.prefix!r} (hosts: "
                               f"{', '.join(self.hosts)})") from None

    def by_role(self, role: Role | str) -> list[NetnsHost]:
        role = Role(role).value
        return [h for h in self.hosts.values() if h.role == role]

    @property
    def switch(self) -> NetnsHost:
        return self.by_role(Role.SWITCH)[0]

    @property
    def clients(self) -> list[NetnsHost]:
        return self.by_role(Role.CLIENT)

    @property
    def frontends(self) -> list[NetnsHost]:
        return self.by_role(Role.FRONTEND)

    @property
    def backends(self) -> list[NetnsHost]:
        return self.by_role(Role.BACKEND)

    @property
    def vip(self):
        return self.topology.testbed.vip

    @property
    def vip_port(self) -> int:
        return self.topology.testbed.vip_port

    def link_offloads(self) -> dict[str, dict]:
        return {h.name: self.topology.link_offloads(h).model_dump()
                for h in self.topology.host if h.role != Role.SWITCH}

    # ------------------------------------------------------------- build
    def up(self) -> "EmulatedTestbed":
        if self._is_up:
            return self
        clash = sorted(set(self.namespaces) & existing_namespaces())
        if self.state_file.exists() or clash:
            raise TestbedError(
                f"testbed {self.prefix!r} is already up"
                + (f" (namespaces {', '.join(clash)})" if clash else "")
                + f"; take it down first: python -m bench testbed down --prefix {self.prefix}")
        require_congestion_control(self.topology)
        # Record the testbed before creating anything, so a crash half-way
        # leaves something `down` and the guard can find.
        self._write_state("building")
        self._is_up = True
        try:
            if self.guard:
                self._start_guard()
            self._build()
        except BaseException:
            self.down()
            raise
        self._write_state("up")
        return self

    def _build(self) -> None:
        topo = self.topology
        sw = self.ns(topo.switch.name)
        _ip_batch([f"netns add {ns}" for ns in self.namespaces])
        for ns in self.namespaces:
            # IPv4 only: no router solicitations or MLD reports on the links,
            # which would otherwise reach the DPDK front-end and the counters.
            write_sysctl(ns, "net.ipv6.conf.all.disable_ipv6", 1)
            write_sysctl(ns, "net.ipv6.conf.default.disable_ipv6", 1)
        for key, value in SWITCH_SYSCTLS.items():
            write_sysctl(sw, key, value)
        for h in topo.host:
            if h.role != Role.SWITCH:
                for key, value in HOST_SYSCTLS.items():
                    write_sysctl(self.ns(h.name), key, value)
        links, per_ns = [], {ns: ["link set lo up"] for ns in self.namespaces}
        for i, h in enumerate(topo.host):
            if h.role == Role.SWITCH:
                continue
            ns, mtu = self.ns(h.name), topo.link_mtu(h)
            gw, plen = h.gateway_address, h.address.network.prefixlen
            links.append(f"link add eth0 netns {ns} address {host_mac(i)} mtu {mtu} type veth "
                         f"peer name {h.name} netns {sw} address {switch_port_mac(i)} mtu {mtu}")
            per_ns[ns] += [
                f"addr add {h.address} dev eth0", "link set eth0 up",
                # A route metric, because a namespace may make its default only
                # of what the machine allows (tcp_allowed_congestion_control);
                # a route may name any the kernel has.
                f"route add default via {gw} dev eth0 congctl {topo.testbed.congestion_control}",
                # Static neighbours: the eBPF pipelines' FIB lookups need a
                # resolved next hop, and ARP is not what is being measured.
                f"neigh replace {gw} lladdr {switch_port_mac(i)} dev eth0 nud permanent",
            ]
            per_ns[sw] += [
                f"addr add {gw}/{plen} dev {h.name}", f"link set {h.name} up",
                f"neigh replace {h.address.ip} lladdr {host_mac(i)} dev {h.name} nud permanent",
            ]
        _ip_batch(links)
        for ns, cmds in per_ns.items():
            _ip_batch(cmds, netns=ns)
        for h in topo.host:
            if h.role == Role.SWITCH:
                continue
            write_sysctl(sw, f"net.ipv4.conf.{h.name}.rp_filter", 0)
            write_sysctl(sw, f"net.ipv4.conf.{h.name}.send_redirects", 0)
            args = topo.link_offloads(h).ethtool_args()
            for ns, dev in ((self.ns(h.name), "eth0"), (sw, h.name)):
                p = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "ethtool", "-K", dev,
                                    *args], capture_output=True, text=True)
                if p.returncode != 0:
                    raise TestbedError(f"ethtool -K {dev} in {ns}: {p.stderr.strip()}")
        for host in self.hosts.values():
            os.makedirs(host.workdir, exist_ok=True)
            host.cgroup.create()

    # ---------------------------------------------------------- teardown
    def down(self) -> None:
        """Remove everything of this testbed; safe to call any number of times."""
        for host in self.hosts.values():
            host.stop_all(timeout=2.0)
        teardown(self.prefix, self.namespaces)
        self._is_up = False
        if self._guard_proc is not None:
            try:
                self._guard_proc.terminate()
                self._guard_proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            self._guard_proc = None

    def __enter__(self) -> "EmulatedTestbed":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # ------------------------------------------------------------- state
    def _write_state(self, status: str) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "prefix": self.prefix, "status": status, "kind": self.kind,
            "namespaces": self.namespaces, "owner_pid": os.getpid() if self.guard else None,
            "created": time.time(), "topology_source": self.topology.source,
            "topology": self.topology.model_dump(mode="json"),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def _start_guard(self) -> None:
        # Its own session: a Ctrl-C in the terminal must not kill the guard
        # before the owner has had its chance to clean up.
        self._guard_proc = subprocess.Popen(
            [sys.executable, "-m", "hosts.guard", str(self.state_file), str(os.getpid())],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=str(REPO_ROOT))

    @classmethod
    def from_state(cls, prefix: str) -> "EmulatedTestbed":
        """The testbed of a running `testbed up`, for exec, status and down."""
        path = STATE_DIR / f"{prefix}.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise TestbedError(f"no testbed {prefix!r} is up (no {path})") from None
        topo = parse_topology(state["topology"], source=state.get("topology_source") or "state")
        tb = cls(topo, prefix=prefix, guard=False)
        tb._is_up = True
        return tb

    def status(self) -> dict:
        present = existing_namespaces()
        out = {"prefix": self.prefix, "hosts": {}}
        if self.state_file.exists():
            out["state"] = json.loads(self.state_file.read_text())["status"]
        else:
            out["state"] = "down"
        for h in self.topology.host:
            ns = self.ns(h.name)
            out["hosts"][h.name] = {
                "role": h.role.value, "netns": ns, "present": ns in present,
                "address": str(h.address) if h.address else None,
                "processes": len(namespace_pids(ns)) if ns in present else 0,
            }
        return out


def teardown(prefix: str, namespaces: list[str] | None = None) -> None:
    """Remove a testbed's processes, pins, files and namespaces (idempotent)."""
    present = existing_namespaces()
    if namespaces is None:
        namespaces = sorted(n for n in present if n.startswith(prefix + "-"))
    live = [ns for ns in namespaces if ns in present]
    kill_namespace_processes(live)
    remove_testbed_cgroups(prefix)
    shutil.rmtree(BPF_ROOT / prefix, ignore_errors=True)
    _ip_batch([f"netns del {ns}" for ns in live], force=True)
    shutil.rmtree(WORK_ROOT / prefix, ignore_errors=True)
    try:
        (STATE_DIR / f"{prefix}.json").unlink()
    except FileNotFoundError:
        pass


def running_testbeds() -> list[str]:
    try:
        return sorted(p.stem for p in STATE_DIR.glob("*.json"))
    except FileNotFoundError:
        return []
