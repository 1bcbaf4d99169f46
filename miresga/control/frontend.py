"""Launching the Miresga front-end: config rendering, start, health, stats, stop.

The front-end's configuration comes from two places: the `Service` (VIP,
clusters, rules, request limits: the same model HAProxy and nginx are
configured from) and facts about the testbed (back-end addresses, the MAC of
the switch port, where the switch host's daemon listens and the key to prove).  `render_config`
joins them into the line format miresga/frontend/fe_config.h documents.

Back-end indices are positions in `service.backends` (cluster order): the
switch's back-end table uses the same numbering, so an offload entry's index
means the same back-end on both sides.

    fe = Frontend(tb.host("frontend1"), service, facts_from_testbed(tb, "frontend1",
                  control=("10.10.2.1", 7470), control_key="/run/fe/ctl.key"))
    fe.start(); fe.wait_healthy(10)
    print(fe.stats()["flows"])
    fe.stop()

On a testbed link the front-end's port is a DPDK vdev on the host's
interface, `port="af_packet"` (a packet socket) or `port="af_xdp"` (an AF_XDP
socket fed by an XDP program in the link's driver); on a real NIC, `eal`
names it by PCI address and `port` is not used.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import time
from dataclasses import dataclass, field

from common.errors import ConfigError, Error
from common.paths import BUILD_DIR
from common import miresga_defaults as defaults
from common.service import Service
from miresga.config import MiresgaConfig

BINARY = BUILD_DIR / "miresga-frontend"
#: The af_xdp port's XDP program (miresga/frontend/fe_xsk.bpf.c).
XSK_OBJECT = BUILD_DIR / "bpf" / "fe_xsk.bpf.o"

#: The front-end's directives that the service and the testbed's facts do not
#: set (`vip_wscale`, the W the switch advertises, among them), with their
#: defaults: MiresgaConfig's (tests/test_frontend_defaults.py
#: compares them with the ones the binary was compiled with).
LIMIT_DEFAULTS: dict[str, int | str] = MiresgaConfig().frontend_directives()


#: Frames of the af_packet RX and TX rings.  DPDK's default, 512, is less than
#: the segments of a few responses the switch's port cuts from the back-ends'
#: 64 KB super-packets while the loop sleeps (idle back-off): the kernel then
#: drops them and the back-end waits out a retransmission timeout.  Measured
#: on the emulated testbed, 10 KB one connection per request: p99 206 ms with
#: 512 frames, 9.7 ms with 4,096.
AFPACKET_FRAMES = 4096

#: The ports a front-end can have on a testbed link (a DPDK vdev on its interface).
PORTS = ("af_packet", "af_xdp")
PORT_DEFAULT = "af_packet"

#: af_xdp: the kernel's XDP modes as `ip -j link` numbers them (XDP_ATTACHED_*).
XDP_MODES = {1: "native", 2: "generic", 3: "offloaded", 4: "several"}

#: af_xdp: the largest MTU the port receives whole.  The PMD puts the kernel's
#: frames straight into the front-end's mbufs (RTE_MBUF_DEFAULT_BUF_SIZE, 2,176
#: bytes) behind DPDK's headroom (128) and XDP's (256): 1,792 bytes of frame,
#: an MTU of 1,778.  A longer frame is dropped by the kernel (the port's imissed).
AFXDP_MAX_MTU = 2176 - 128 - 256 - 14

#: af_xdp: the PMD's busy polling (SO_PREFER_BUSY_POLL with this budget, a
#: recvfrom() on every empty poll).  Off: the loop sleeps when idle, so the
#: kernel's softirq fills the ring by itself anyway (nothing defers it to a
#: busy poller on a veth).  Measured against a budget of 64 (1 KB, 4
#: interleaved repetitions): keep-alive, busy polling served 0.69x the
#: requests (0.47-1.28) for 1.47x the front-end's CPU per request; one
#: connection per request, 0.98x for 1.07x.
AFXDP_BUSY_BUDGET = 0


class FrontendError(Error):
    """The front-end would not start, answer, or stop; `logs` holds its output."""

    def __init__(self, message: str, logs: str = ""):
        super().__init__(message + (f"\n--- front-end log ---\n{logs[-3000:]}" if logs else ""))
        self.logs = logs


@dataclass(frozen=True)
class FrontendFacts:
    """What the testbed knows that the service does not."""

    vip: str                                 # service address (the service's own wins)
    vip_port: int
    backend_addresses: dict[str, str]        # back-end host name -> IPv4 address
    nexthop_mac: str                         # MAC of the switch port facing the front-end
    iface: str = "eth0"                      # the front-end's data-plane interface
    control: tuple[str, int] | None = None   # the switch host's control protocol
    control_key: str = ""                    # its key file on the front-end's host
    vip_index: int = 0


def facts_from_testbed(testbed, frontend: str, control: tuple[str, int] | None = None,
                       control_key: str = "") -> FrontendFacts:
    """Facts of an emulated (or inventory) testbed for one front-end host."""
    host = testbed.host(frontend)
    return FrontendFacts(
        vip=str(testbed.vip), vip_port=testbed.vip_port,
        backend_addresses={h.name: str(h.address) for h in testbed.backends},
        nexthop_mac=host.switch_mac, iface=host.iface, control=control,
        control_key=control_key)


def backend_index(service: Service) -> dict[str, int]:
    """Back-end host name -> index, as the switch's back-end table numbers them."""
    return {name: i for i, name in enumerate(service.backends)}


def _token(what: str, value: str) -> str:
    # The config format splits on whitespace and treats '#' as a comment.
    if not value or any(c.isspace() for c in value) or "#" in value:
        raise ConfigError(f"front-end config: {what} {value!r} cannot be written "
                          f"(empty, whitespace or '#')")
    return value


def render_config(service: Service, facts: FrontendFacts, stats_socket: str = "",
                  limits: dict[str, int] | None = None) -> str:
    """The front-end's config file for `service` on a testbed described by `facts`."""
    limits = {**LIMIT_DEFAULTS, **(limits or {})}
    unknown = set(limits) - set(LIMIT_DEFAULTS)
    if unknown:
        raise ConfigError(f"front-end limits: unknown {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(LIMIT_DEFAULTS)})")
    vip = str(service.vip) if service.vip is not None else facts.vip
    index = backend_index(service)
    if len(index) > 256:
        raise ConfigError("front-end config: more than 256 back-ends (the index is 8 bits)")
    lines = [
        "# Miresga front-end, rendered by miresga/control/frontend.py; format in",
        "# miresga/frontend/fe_config.h.",
        f"vip {vip} {service.port}",
        f"vip_index {facts.vip_index}",
        f"nexthop_mac {facts.nexthop_mac}",
    ]
    for c in service.clusters:
        for name in c.backends:
            try:
                addr = facts.backend_addresses[name]
            except KeyError:
                raise ConfigError(f"front-end config: cluster {c.name!r} names back-end "
                                  f"{name!r}, which the testbed does not have") from None
            lines.append(f"backend {index[name]} {addr} {c.port}  # {name}")
    cluster_index = {c.name: i for i, c in enumerate(service.clusters)}
    for i, c in enumerate(service.clusters):
        members = " ".join(str(index[b]) for b in c.backends)
        lines.append(f"cluster {i} {_token('cluster name', c.name)} {c.policy.value} {members}")
    for r in service.rules:
        rule = (f"rule cluster={cluster_index[r.cluster]} offload={int(r.offload)} "
                f"prefix={_token('path prefix', r.path_prefix)}")
        if r.host is not None:
            rule += f" host={_token('host', r.host.lower())}"
        lines.append(rule)
    if service.default_cluster is not None:
        lines.append(f"default_cluster {cluster_index[service.default_cluster]}")
    lines.append(f"max_header_bytes {service.max_header_bytes}")
    lines.append(f"request_timeout_ms {max(1, round(service.request_timeout_s * 1000))}")
    if facts.control is not None:
        lines.append(f"control {facts.control[0]} {facts.control[1]}")
        lines.append(f"control_key {_token('control key', facts.control_key)}")
    if stats_socket:
        lines.append(f"stats_socket {_token('stats socket', stats_socket)}")
    for key, value in limits.items():
        if key == "handoff":
            if value not in defaults.HANDOFF_MODES:
                raise ConfigError(f"front-end limits: handoff {value!r} is not one of "
                                  f"{', '.join(defaults.HANDOFF_MODES)}")
            lines.append(f"handoff {value}")
        else:
            lines.append(f"{key} {int(value)}")
    return "\n".join(lines) + "\n"


def read_stats_socket(path: str, timeout: float = 2.0) -> dict:
    """One JSON object from the front-end's stats socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return json.loads(b"".join(chunks))


# Run on a host that does not share our filesystem (SSH): same as above.
_STATS_SNIPPET = ("import socket,sys;s=socket.socket(socket.AF_UNIX);s.settimeout(2);"
                  "s.connect(sys.argv[1]);d=b''\nwhile 1:\n b=s.recv(65536)\n if not b:break\n"
                  " d+=b\nsys.stdout.write(d.decode())")


@dataclass
class Frontend:
    """The front-end on one host: files, process, health, stats.

    EAL options default to the emulated testbed (`port` on the host's link,
    no hugepages); pass `eal` to run on a real NIC, e.g.
    ["-a", "0000:3b:00.0", "-l", "2", "--file-prefix", "fe1"].
    """

    host: object
    service: Service
    facts: FrontendFacts
    limits: dict[str, int] = field(default_factory=dict)
    binary: str = str(BINARY)
    core: int | None = None
    memory_mb: int = 256
    eal: list[str] | None = None
    port: str = PORT_DEFAULT
    xsk_object: str = str(XSK_OBJECT)

    def __post_init__(self):
        if self.port not in PORTS:
            raise ConfigError(f"front-end port {self.port!r}: known ports are "
                              f"{', '.join(PORTS)}")
        self.file_prefix = "fe" + secrets.token_hex(4)
        self.workdir = f"{self.host.workdir}/{self.file_prefix}"
        self.config_path = f"{self.workdir}/frontend.conf"
        self.stats_socket = f"{self.workdir}/stats.sock"
        self.process = None

    # ------------------------------------------------------------- config
    def config_text(self) -> str:
        return render_config(self.service, self.facts, self.stats_socket, self.limits)

    def eal_args(self) -> list[str]:
        if self.eal is not None:
            return list(self.eal)
        core = self.core
        if core is None:
            cpus = getattr(self.host, "cpus", "")
            core = int(cpus.split(",")[0].split("-")[0]) if cpus else (os.cpu_count() or 1) - 1
        return ["--no-huge", "-m", str(self.memory_mb), "--no-pci", "--no-telemetry",
                "--file-prefix", self.file_prefix, self.vdev(),
                "-l", str(core), "--log-level=*:warning"]

    def vdev(self) -> str:
        iface = self.facts.iface
        if self.port == "af_xdp":
            # Ring sizes are the PMD's own (fe_port.c takes a driver's
            # preferred size); the UMEM is the mbuf pool itself, which
            # --no-huge allocates as one virtually contiguous area, as the
            # PMD needs.  Our XDP program, not libxdp's: the kernel keeps the
            # frames that are not the front-end's (fe_xsk.bpf.c).
            return (f"--vdev=net_af_xdp0,iface={iface},xdp_prog={self.xsk_object},"
                    f"busy_budget={AFXDP_BUSY_BUDGET}")
        return f"--vdev=net_af_packet0,iface={iface},framecnt={AFPACKET_FRAMES}"

    def uses_xdp(self) -> bool:
        return self.eal is None and self.port == "af_xdp"

    def command(self) -> str:
        argv = [self.binary, *self.eal_args(), "--", "--config", self.config_path]
        # exec: the front-end itself gets the stop signal and its exit code is
        # the one reported, not that of the shell the host wraps it in.
        return "exec " + " ".join(shlex.quote(a) for a in argv)

    # --------------------------------------------------------- life cycle
    def start(self) -> None:
        if self.process is not None and self.process.running():
            return
        self.host.put_text(self.config_text(), self.config_path)
        check = self.host.run(f"{shlex.quote(self.binary)} --check-config "
                              f"{shlex.quote(self.config_path)}", check=False)
        if not check.ok:
            raise FrontendError(f"{self.host.name}: the front-end refuses its config: "
                                f"{check.stderr.strip()}")
        if self.uses_xdp():
            self._check_xdp_link()
        self.process = self.host.start(self.command(), name="miresga-frontend-" + self.file_prefix)

    def logs(self) -> str:
        return self.process.logs() if self.process is not None else ""

    # ------------------------------------------------------- af_xdp link
    def link(self) -> dict:
        """`ip -j link` of the front-end's interface."""
        r = self.host.run(f"ip -j link show dev {shlex.quote(self.facts.iface)}", check=False)
        if not r.ok:
            raise FrontendError(f"{self.host.name}: {self.facts.iface}: {r.stderr.strip()}")
        return json.loads(r.stdout)[0]

    def xdp_program(self, link: dict | None = None) -> dict | None:
        """The XDP program on the front-end's interface: name, id, mode; None if none."""
        xdp = (link or self.link()).get("xdp")
        if not xdp:
            return None
        prog = xdp.get("prog") or {}
        return {"name": prog.get("name"), "id": prog.get("id"),
                "mode": XDP_MODES.get(xdp.get("mode"), str(xdp.get("mode")))}

    def _check_xdp_link(self) -> None:
        """What an af_xdp port on this link needs, checked before it starts."""
        iface, link = self.facts.iface, self.link()
        prog = self.xdp_program(link)
        if prog is not None:
            raise FrontendError(f"{self.host.name}: {iface} already has an XDP program "
                                f"({prog['name']}, id {prog['id']}, {prog['mode']} mode); the "
                                f"af_xdp port attaches its own (remove it: ip link set dev "
                                f"{iface} xdp off)")
        if link["mtu"] > AFXDP_MAX_MTU:
            raise FrontendError(f"{self.host.name}: {iface}: MTU {link['mtu']} is above "
                                f"{AFXDP_MAX_MTU}, the longest frame an af_xdp port's mbufs hold")
        # The PMD binds one socket, to queue 0: in any other queue the XDP
        # program finds no socket in its map and passes frames to the kernel.
        queues = self._rx_queues()
        if queues > 1:
            raise FrontendError(f"{self.host.name}: {iface} has {queues} receive queues; the "
                                f"af_xdp port reads queue 0 only (ethtool -L {iface} rx 1)")

    def _rx_queues(self) -> int:
        """Receive queues in use on the interface (RX + combined channels);
        0 where the driver does not say (ethtool -l unsupported)."""
        r = self.host.run(f"ethtool -l {shlex.quote(self.facts.iface)}", check=False)
        current = r.stdout.partition("Current hardware settings:")[2]
        counts = dict(ln.split(":", 1) for ln in current.splitlines() if ":" in ln)
        values = (counts.get(k, "").strip() for k in ("RX", "Combined"))
        return sum(int(v) for v in values if v.isdigit())

    def _check_xdp_native(self) -> None:
        """The port's program must run in the driver: in generic mode every
        frame becomes an skb first, the cost af_xdp is there to avoid."""
        prog = self.xdp_program()
        if prog is not None and prog["mode"] == "native":
            return
        logs = self.logs()
        self.stop()
        iface = self.facts.iface
        if prog is None:
            raise FrontendError(f"{self.host.name}: the af_xdp port started but {iface} has no "
                                f"XDP program", logs)
        driver = self.host.run(f"ethtool -i {shlex.quote(iface)}", check=False).stdout
        driver = next((ln.split(":", 1)[1].strip() for ln in driver.splitlines()
                       if ln.startswith("driver:")), "unknown")
        raise FrontendError(f"{self.host.name}: the kernel attached the af_xdp port's XDP "
                            f"program to {iface} in {prog['mode']} mode: its driver ({driver}) "
                            f"has no native XDP, and the af_xdp port needs native mode", logs)

    def restore_link(self) -> None:
        """Detach the af_xdp port's XDP program if it is still there: a killed
        front-end leaves it on the link (attached by netlink, it outlives the
        process; its socket leaves the map with the process, and the
        program then drops the front-end's frames)."""
        prog = self.xdp_program()
        if prog is None:
            return
        mode = {"native": "xdpdrv", "generic": "xdpgeneric"}.get(prog["mode"], "xdp")
        iface = shlex.quote(self.facts.iface)
        r = self.host.run(f"ip link set dev {iface} {mode} off", check=False)
        if self.xdp_program() is not None:
            raise FrontendError(f"{self.host.name}: cannot detach XDP program {prog['name']} "
                                f"from {self.facts.iface}: {r.stderr.strip()}")

    def healthy(self) -> bool:
        try:
            self.stats()
            return True
        except (OSError, ValueError, Error):
            return False

    def wait_healthy(self, timeout: float = 15.0) -> dict:
        """Wait until the stats socket answers; returns the first stats."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or not self.process.running():
                logs = self.logs()
                self.stop()  # an af_xdp port may have left its program
                raise FrontendError(f"{self.host.name}: the front-end exited before it was "
                                    f"healthy", logs)
            try:
                stats = self.stats()
            except (OSError, ValueError, Error):
                pass
            else:
                if self.uses_xdp():
                    self._check_xdp_native()
                return stats
            if time.monotonic() >= deadline:
                raise FrontendError(f"{self.host.name}: no answer on {self.stats_socket} "
                                    f"after {timeout:.0f}s", self.logs())
            time.sleep(0.1)

    def stats(self, through_host: bool = False) -> dict:
        """The front-end's counters (see miresga/frontend/fe_stats.h for the fields)."""
        if getattr(self.host, "netns", None) is not None and not through_host:
            # A namespace host shares our filesystem: read the socket directly.
            return read_stats_socket(self.stats_socket)
        # Elsewhere (SSH) the socket is on the host: read it there.
        r = self.host.run(f"{self.host.python} -c {shlex.quote(_STATS_SNIPPET)} "
                          f"{shlex.quote(self.stats_socket)}", check=False, timeout=10)
        if not r.ok:
            raise FrontendError(f"{self.host.name}: stats socket: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the front-end (it deletes its switch entries on the way out)."""
        rc = None
        if self.process is not None:
            rc = self.process.stop(timeout)
        # A killed EAL leaves its runtime directory; ours is named by our prefix.
        self.host.run(f"rm -rf /var/run/dpdk/{self.file_prefix}", check=False)
        if self.uses_xdp() and self.process is not None:
            self.restore_link()
        return rc

    def __enter__(self) -> "Frontend":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------- af_packet links
#: the link features an af_packet port cannot take (ethtool -K names)
AFPACKET_OFF = ("tx", "tso", "gso")


def quiet_afpacket_link(fe_host, switch_host) -> list[tuple]:
    """Turn checksum and segmentation offloads off on both ends of an af_packet
    (or af_xdp) front-end's link; returns what restore_links() puts back.

    A front-end on an af_packet port reads frames as the kernel hands them
    over: with TX checksum offload on either end they carry partial
    checksums, with TSO/GSO they are super-packets of up to 64 KB.  With both
    ends off, the switch's port completes checksums and cuts segments before
    the front-end sees them.  An af_xdp port needs the same: while an XDP
    program is attached to a veth the kernel turns TSO off on its peer, but
    not checksum offload, and XDP hands frames over as they are.  Only this
    link: the testbed's other links keep the offloads a real NIC has, which
    the baselines (and the back-ends' responses through the switch) use.  A real front-end's NIC belongs to
    DPDK and has no kernel offloads to turn off.
    """
    ends = [(fe_host, fe_host.iface)]
    if fe_host.switch_port:
        ends.append((switch_host, fe_host.switch_port))
    saved = []
    for host, dev in ends:
        before = {k: v for k, v in host.offloads(dev).items() if k in AFPACKET_OFF}
        saved.append((host, dev, before))
        if any(before.values()):
            host.set_offloads(dev, {k: False for k in AFPACKET_OFF})
    return saved


def restore_links(saved: list[tuple]) -> None:
    for host, dev, before in saved:
        try:
            host.set_offloads(dev, before)
        except Error:
            pass  # the host is gone (testbed torn down): nothing to restore
