"""CPU accounting per role during a measured window.

Two sources, both read through the host interface so that a remote (SSH)
testbed supplies the same numbers:

* **per host**: `host.cpu_ns()`, the CPU time of everything that ever ran on
  the host (on an emulated host, its cgroup; every command joins it).
  Deltas are summed per role: client, switch, frontend, backend, extra.
* **per machine**: /proc/stat of each distinct machine (told apart by its
  boot id), as deltas of user, system, softirq, irq, ... in seconds.  On the
  emulated testbed all hosts share one machine, and the kernel's packet path
  (veth, forwarding in the switch namespace, eBPF programs) runs in softirq,
  which no cgroup is charged for: that is where the `switch` role's work
  shows up.  On a real testbed each host is a machine of its own.  Its
  `steal` is time the hypervisor gave this machine's CPUs to someone else,
  and its load average (/proc/loadavg, at both ends of the window) says how
  busy it was around the window: the conditions a point was measured in.

When a host cannot tell its CPU time (an SSH host without a cgroup of its
own), its role takes the busy time of its machine if no other host shares it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hosts.hosts import Host

PROC_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
ROLES = ("client", "switch", "frontend", "backend", "extra")


@dataclass
class Snapshot:
    wall: float
    hosts: dict[str, int | None]
    machines: dict[str, dict[str, int]]   # boot id -> /proc/stat "cpu" line, in ticks
    loadavg: dict[str, list[float]] = field(default_factory=dict)  # boot id -> 1, 5, 15 min


class CpuSampler:
    def __init__(self, hosts: list[Host]):
        self.hosts = list(hosts)
        self.machine_of: dict[str, str] = {}
        self.machine_facts: dict[str, dict] = {}
        self._reader: dict[str, Host] = {}
        for h in self.hosts:
            r = h.run("cat /proc/sys/kernel/random/boot_id; getconf CLK_TCK; nproc --all",
                      check=False)
            lines = r.stdout.split()
            boot = lines[0] if r.ok and lines else f"unknown-{h.name}"
            self.machine_of[h.name] = boot
            if boot not in self._reader:
                self._reader[boot] = h
                hz = int(lines[1]) if r.ok and len(lines) > 1 else 100
                cpus = int(lines[2]) if r.ok and len(lines) > 2 else None
                self.machine_facts[boot] = {"clk_tck": hz, "cpus": cpus, "hosts": []}
            self.machine_facts[boot]["hosts"].append(h.name)

    def _proc_stat(self, host: Host) -> tuple[dict[str, int], list[float]]:
        """The "cpu" line of /proc/stat in ticks, and the load average (1, 5, 15 min)."""
        r = host.run("head -1 /proc/stat; cat /proc/loadavg", check=False)
        lines = r.stdout.splitlines()
        parts = lines[0].split() if lines else []
        if not r.ok or not parts or parts[0] != "cpu":
            return {}, []
        load = lines[1].split()[:3] if len(lines) > 1 else []
        return ({k: int(v) for k, v in zip(PROC_STAT_FIELDS, parts[1:])},
                [float(x) for x in load] if len(load) == 3 else [])

    def snapshot(self) -> Snapshot:
        hosts = {h.name: h.cpu_ns() for h in self.hosts}
        read = {boot: self._proc_stat(h) for boot, h in self._reader.items()}
        return Snapshot(time.monotonic(), hosts, {b: r[0] for b, r in read.items()},
                        {b: r[1] for b, r in read.items()})

    def delta(self, a: Snapshot, b: Snapshot) -> dict:
        """CPU seconds of the window between two snapshots, per host, role and machine."""
        window = b.wall - a.wall
        machines = {}
        for boot, facts in self.machine_facts.items():
            sa, sb = a.machines.get(boot, {}), b.machines.get(boot, {})
            hz = facts["clk_tck"]
            d = {k: (sb[k] - sa[k]) / hz for k in PROC_STAT_FIELDS if k in sa and k in sb}
            busy = sum(v for k, v in d.items() if k not in ("idle", "iowait"))
            machines[boot] = {"hosts": facts["hosts"], "cpus": facts["cpus"], "seconds": d,
                              "busy_s": busy if d else None,
                              "loadavg_start": a.loadavg.get(boot) or None,
                              "loadavg_end": b.loadavg.get(boot) or None}
        per_host: dict[str, float | None] = {}
        source: dict[str, str] = {}
        for h in self.hosts:
            x, y = a.hosts.get(h.name), b.hosts.get(h.name)
            if x is not None and y is not None:
                per_host[h.name] = (y - x) / 1e9
                source[h.name] = "host"
            else:
                m = machines.get(self.machine_of[h.name], {})
                if len(m.get("hosts", [])) == 1 and m.get("busy_s") is not None:
                    per_host[h.name] = m["busy_s"]
                    source[h.name] = "machine"
                else:
                    per_host[h.name] = None
                    source[h.name] = "unknown"
        per_role: dict[str, float | None] = {}
        for h in self.hosts:
            v = per_host[h.name]
            if h.role not in per_role:
                per_role[h.role] = 0.0
            if v is None or per_role[h.role] is None:
                per_role[h.role] = None
            else:
                per_role[h.role] += v
        softirq = sum(m["seconds"].get("softirq", 0.0) for m in machines.values())
        system = sum(m["seconds"].get("system", 0.0) for m in machines.values())
        steal = sum(m["seconds"].get("steal", 0.0) for m in machines.values())
        return {"window_s": window, "per_host_s": per_host, "per_host_source": source,
                "per_role_s": per_role, "softirq_s": softirq, "system_s": system,
                "steal_s": steal, "machines": machines}
