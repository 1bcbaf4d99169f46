"""HAProxy as the software L7 load balancer baseline.

Tuned the way an operator would run it for throughput: one process with one
thread per front-end core, no logging in the data path, keep-alive and
connection reuse toward the back-ends, 256 KB buffers, limits high enough
that the bench and not a default is the bottleneck, and active health checks
so a dead back-end stops receiving new requests within about a second.

Buffers.  With HAProxy's default 16 KB buffers a 1 MB response costs about
64 recv/send pairs per direction, and on this testbed HAProxy reached only
about half of nginx's 1 MB throughput (nginx streams through 64 x 16 KB
proxy buffers).  `tune.bufsize 262144` brings it level with nginx (about
2.5x the default's 1 MB throughput on the 2-core emulated testbed, 1 KB
unchanged); memory is allocated per active connection (2 buffers each), not
per maxconn.  `option splice-auto` stays on but, in HTTP mode on HAProxy 2.6,
its heuristics never chose to splice here (TotalSplicedBytesOut stayed 0);
forcing `option splice-response` doubled throughput at 16 KB buffers but was
slower than 256 KB buffers without it.

Paths.  Rules match the normal form of the request's path, as Miresga's
front-end and Service.route() do (common/service.py,
normalize_path): `http-request normalize-uri` merges slashes, decodes the
escapes of unreserved characters, upper-cases the others and removes dot
segments, in the order nginx applies them, and what has no normal form is
refused with 400 as the front-end refuses it.  HAProxy forwards the
normalised request; the back-ends resolve it the same way.
"""

from __future__ import annotations

import csv
import io

from typing import Annotated

from pydantic import Field, field_validator

from common.service import Policy
from hosts.hosts import Host
from targets.base import TargetError, register
from targets.software_lb import HEALTH_PATH, SoftwareLB, SoftwareLBParams, backend_address

BALANCE = {
    Policy.ROUND_ROBIN: "roundrobin",
    Policy.LEAST_CONNECTIONS: "leastconn",
    Policy.HASH: "source",
}


# The normal form of the path before the rules look at it (see the module
# docstring).  Slashes are merged before dot-segments go, as nginx does
# (`/a//../b` is `/b`).  path-strip-dotdot leaves a '..' that would climb above
# the root at the start, and percent-decode-unreserved leaves invalid escapes
# (`strict` would also refuse them in the query, which nothing else does):
# both are refused, with %00, %2F, %5C and a raw '\' (fe_http.c says why).  A
# '#' in the target HAProxy 2.6 refuses by itself.
PATH_NORMALIZATION = [
    "    http-request normalize-uri path-merge-slashes",
    "    http-request normalize-uri percent-decode-unreserved",
    "    http-request normalize-uri percent-to-uppercase",
    "    http-request normalize-uri path-strip-dot",
    "    http-request normalize-uri path-strip-dotdot",
    "    acl path_unsafe_escape path -m reg -i %(00|2f|5c)",
    "    acl path_backslash path -m sub '\\'",
    "    acl path_bad_escape path -m reg %([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)",
    "    acl path_above_root path -m reg ^/[.][.](/|$)",
    "    http-request deny deny_status 400 if path_unsafe_escape || path_backslash || "
    "path_bad_escape || path_above_root",
]


class HAProxyParams(SoftwareLBParams):
    #: connections at once, capped by what the host's descriptor limit allows
    maxconn: Annotated[int, Field(ge=256, le=10_000_000)] = 200_000
    #: zero-copy response bodies (Linux splice)
    splice: bool = True
    #: active health checks of every back-end
    check_interval_ms: Annotated[int, Field(ge=10, le=60_000)] = 500
    #: tune.bufsize; 0 = HAProxy's default (16384); see the module docstring
    bufsize_bytes: Annotated[int, Field(ge=0, le=1 << 26)] = 262144

    @field_validator("bufsize_bytes")
    @classmethod
    def _bufsize(cls, v: int) -> int:
        if 0 < v < 1024:
            raise ValueError(f"{v} is too small for a request header; 0 (HAProxy's default) "
                             f"or at least 1024")
        return v


@register
class HAProxy(SoftwareLB):
    name = "haproxy"
    binary = "haproxy"
    config_name = "haproxy.cfg"
    Params = HAProxyParams

    @property
    def maxconn(self) -> int:
        # Two descriptors per proxied connection, plus splice pipes (maxpipes
        # defaults to maxconn/4, two descriptors each), plus a margin.
        return max(256, min(self.params["maxconn"], (self.fd_limit - 1024) // 3))

    def socket_path(self, host: Host) -> str:
        return f"{host.workdir}/{self.name}/admin.sock"

    def render(self, host: Host) -> str:
        svc, p = self.service, self.params
        lines = [
            "global",
            # normalize-uri is marked experimental in HAProxy 2.6.
            "    expose-experimental-directives",
            f"    nbthread {self.workers}",
            f"    maxconn {self.maxconn}",
            *([f"    tune.bufsize {p['bufsize_bytes']}"] if p["bufsize_bytes"] else []),
            f"    stats socket {self.socket_path(host)} mode 600 level admin",
            "    # no `log`: logging stays out of the data path",
            "",
            "defaults",
            "    mode http",
            "    option http-keep-alive",
            "    http-reuse always",
            f"    maxconn {self.maxconn}",
            "    timeout connect 2s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    timeout http-request 10s",
            "    timeout http-keep-alive 30s",
            "    retries 2",
            "    option redispatch",
        ]
        if p["splice"]:
            lines.append("    option splice-auto")
        lines += ["", "frontend vip",
                  f"    bind {self.testbed.vip}:{svc.port} backlog 8192",
                  f"    maxconn {self.maxconn}"]
        lines += PATH_NORMALIZATION
        # Rules in file order, first match wins: the reference semantics of
        # Service.route().  HAProxy evaluates use_backend lines in order.
        for i, rule in enumerate(svc.rules):
            conds = [f"r{i}_path"]
            lines.append(f"    acl r{i}_path path_beg {rule.path_prefix}")
            if rule.host is not None:
                lines.append(f"    acl r{i}_host hdr(host),field(1,:) -i {rule.host}")
                conds.append(f"r{i}_host")
            lines.append(f"    use_backend c_{rule.cluster} if {' '.join(conds)}")
        # No rule matched and no default cluster: 404, as every target answers.
        lines.append(f"    default_backend {'c_' + svc.default_cluster if svc.default_cluster else 'no_match'}")
        if not svc.default_cluster:
            lines += ["", "backend no_match", "    http-request return status 404"]
        for cluster in svc.clusters:
            lines += ["", f"backend c_{cluster.name}",
                      f"    balance {BALANCE[cluster.policy]}",
                      f"    option httpchk GET {HEALTH_PATH}",
                      "    http-check expect status 200",
                      f"    default-server check inter {p['check_interval_ms']} fall 2 rise 1"]
            for b in cluster.backends:
                lines.append(f"    server {b} {backend_address(self.testbed, b)}:{cluster.port}")
        return "\n".join(lines) + "\n"

    def check_command(self, host: Host) -> str:
        return f"haproxy -c -q -f {self.config_path(host)}"

    def command(self, host: Host) -> str:
        return f"haproxy -db -f {self.config_path(host)}"

    def _stat(self, host: Host) -> list[dict]:
        r = host.run(f"echo 'show stat' | nc -U -N {self.socket_path(host)}", check=False)
        if not r.ok or not r.stdout.startswith("# "):
            raise TargetError(f"haproxy stats socket on {host.name}: {r.stderr or r.stdout}")
        return list(csv.DictReader(io.StringIO(r.stdout[2:])))

    def backends_up(self) -> int:
        up = set()
        for fe in self.testbed.frontends:
            for row in self._stat(fe):
                if row["svname"] not in ("FRONTEND", "BACKEND") and row["status"].startswith("UP"):
                    up.add(row["svname"])
        return len(up)

    def stats(self) -> dict:
        out: dict = {"backends": {}, "frontend": {}}
        for fe in self.testbed.frontends:
            for row in self._stat(fe):
                name = row["svname"]
                if name == "FRONTEND":
                    f = out["frontend"].setdefault(fe.name, {})
                    f.update(requests=int(row["req_tot"] or 0), bytes_out=int(row["bout"] or 0),
                             errors=int(row["ereq"] or 0))
                elif name != "BACKEND":
                    b = out["backends"].setdefault(name, {"requests": 0, "status": row["status"]})
                    b["requests"] += int(row["stot"] or 0)
        return out
