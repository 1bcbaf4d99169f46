"""Metadata of a campaign: what ran, where, with which versions.

Collected once per campaign (the testbed does not change within one) and
copied into every result file, so a result file stands alone.  Host facts
are read through the host interface, so a remote testbed reports its own
machines' kernels and CPUs.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path

from common.paths import REPO_ROOT
from hosts.parallel import for_each_host, raise_first

PYTHON_LIBS = ("pandas", "numpy", "seaborn", "matplotlib", "pydantic", "rich", "fabric",
               "paramiko")


def git_info(repo: Path = REPO_ROOT) -> dict:
    def git(*args: str) -> str | None:
        p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(status) if status is not None else None,
            "describe": git("describe", "--always", "--dirty")}


def python_libs() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PYTHON_LIBS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _first_line(host, cmd: str) -> str | None:
    r = host.run(cmd, check=False, timeout=20)
    text = (r.stdout.strip() or r.stderr.strip())
    return text.splitlines()[0] if r.ok and text else None


def host_facts(host, toward: str) -> dict:
    """Kernel, CPU model and count, boot id of the machine a host runs on, and
    the TCP congestion control of its connections into the testbed (per-request
    rates follow it): the one the route toward `toward` names, as the emulated
    testbed's do, else the host's default."""
    r = host.run("uname -r; nproc; nproc --all; cat /proc/sys/kernel/random/boot_id; "
                 "{ grep -m1 'model name' /proc/cpuinfo || echo :; } | cut -d: -f2-; "
                 f"ip route get {toward} | grep -o 'congctl [a-z0-9_ ]*' | awk '{{print $NF}}' "
                 "| grep . || cat /proc/sys/net/ipv4/tcp_congestion_control",
                 check=False, timeout=20)
    lines = [x.strip() for x in r.stdout.splitlines()]
    lines += [""] * (6 - len(lines))
    facts = {"kernel": lines[0] or None,
             "cpus_usable": int(lines[1]) if lines[1].isdigit() else None,
             "cpus": int(lines[2]) if lines[2].isdigit() else None, "boot_id": lines[3] or None,
             "cpu_model": lines[4] or None, "tcp_congestion_control": lines[5] or None}
    if getattr(host, "iface", None):
        # The data-plane NIC: driver, firmware, bus (veth on an emulated testbed).
        r = host.run(f"ethtool -i {host.iface}", check=False, timeout=20)
        info = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
        facts["nic"] = {"iface": host.iface, "driver": info.get("driver"),
                        "version": info.get("version"), "firmware": info.get("firmware-version"),
                        "bus": info.get("bus-info"), "pci": getattr(host, "pci", None)}
    return facts


def tool_versions(testbed) -> dict:
    """Versions of the programs each role runs, asked on a host of that role."""
    def on(role_hosts, cmd):
        return _first_line(role_hosts[0], cmd) if role_hosts else None

    return {
        "wrk": on(testbed.clients, "wrk -v 2>&1 | head -1"),
        "curl": on(testbed.clients, "curl --version | head -1"),
        "nginx": on(testbed.backends, "nginx -v 2>&1"),
        "haproxy": on(testbed.frontends or testbed.backends, "haproxy -v 2>&1 | head -1"),
        "luajit": on(testbed.clients, "luajit -v 2>&1"),
    }


def collect(testbed) -> dict:
    facts = raise_first(for_each_host(list(testbed.hosts.values()),
                                      lambda h: host_facts(h, str(testbed.vip))))
    hosts = {}
    for name, h in testbed.hosts.items():
        hosts[name] = {"role": h.role, "address": str(h.address) if h.address else None,
                       "transport": type(h).__name__, "cpus_pinned": h.cpus or None,
                       **facts[name]}
    machines: dict[str, dict] = {}
    for name, f in hosts.items():
        m = machines.setdefault(f["boot_id"] or name, {
            "kernel": f["kernel"], "cpus": f["cpus"], "cpu_model": f["cpu_model"], "hosts": []})
        m["hosts"].append(name)
    topo = testbed.topology
    return {
        "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_info(),
        "python_libs": python_libs(),
        "tools": tool_versions(testbed),
        "controller": {"hostname": platform.node(), "kernel": platform.release(),
                       "python": sys.version.split()[0]},
        "testbed": {"kind": getattr(testbed, "kind", type(testbed).__name__),
                    "prefix": getattr(testbed, "prefix", None),
                    "topology_source": getattr(topo, "source", None),
                    # An inventory's SSH details (keys, jump hosts) stay out of results.
                    "topology": (topo.redacted() if hasattr(topo, "redacted")
                                 else topo.model_dump(mode="json")),
                    "link_offloads": testbed.link_offloads()},
        "hosts": hosts,
        "machines": machines,
    }
