"""The kernel's TCP counters of the client hosts over a point's measured window.

What the clients' kernels saw says how the responses arrived, whatever
delivered them: a response that takes two paths (the switch and a
front-end, docs/design.md section 9) can deliver bytes twice or out of order,
and the client's TCP counts both.  Read from /proc/net/netstat and
/proc/net/snmp (what `nstat` reads) on each client host, so per network
namespace on the emulated testbed; on an SSH host, for the whole machine,
so other traffic on it counts too.

Kept per point (`metrics.netstat`), the deltas of:

* `ActiveOpens`: connections the clients opened, the denominator of every
  "per connection" number;
* `InSegs`, `RetransSegs`: segments received, and sent again;
* `PAWSEstab`: segments dropped as old by PAWS (a duplicate of one already
  received, with an older timestamp);
* `TCPDSACKOldSent`, `TCPDSACKOfoSent`: duplicate SACKs the clients sent,
  that is data they received twice;
* `TCPOFOQueue`: segments that arrived out of order and were queued.
"""

from __future__ import annotations

from hosts.hosts import Host

COUNTERS = ("ActiveOpens", "InSegs", "RetransSegs", "PAWSEstab", "TCPDSACKOldSent",
            "TCPDSACKOfoSent", "TCPOFOQueue")


def parse(text: str, wanted: tuple[str, ...] = COUNTERS) -> dict[str, int]:
    """The counters `wanted` of /proc/net/netstat and /proc/net/snmp: pairs of lines,
    names then values, each starting with its group (`TcpExt:`, `Tcp:`)."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for names, values in zip(lines, lines[1:]):
        n, v = names.split(), values.split()
        if len(n) < 2 or len(n) != len(v) or n[0] != v[0] or not n[0].endswith(":"):
            continue
        try:
            nums = [int(x) for x in v[1:]]
        except ValueError:
            continue  # a names line followed by the next group's names line
        for name, num in zip(n[1:], nums):
            if name in wanted:
                out[name] = num
    return out


class NetstatSampler:
    """Snapshots of the counters of some hosts (the clients), and their deltas."""

    def __init__(self, hosts: list[Host]):
        self.hosts = list(hosts)

    def snapshot(self) -> dict[str, dict[str, int]]:
        out = {}
        for h in self.hosts:
            r = h.run("cat /proc/net/netstat /proc/net/snmp", check=False)
            out[h.name] = parse(r.stdout) if r.ok else {}
        return out

    @staticmethod
    def delta(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict:
        """Per host and summed over the hosts: the counters' growth over the window.
        A counter some host could not read is left out of the sum."""
        per_host = {name: {k: b[name][k] - a[name][k] for k in COUNTERS
                           if k in a.get(name, {}) and k in b.get(name, {})}
                    for name in b}
        total = {k: sum(d[k] for d in per_host.values())
                 for k in COUNTERS if per_host and all(k in d for d in per_host.values())}
        return {"hosts": per_host, "total": total}
