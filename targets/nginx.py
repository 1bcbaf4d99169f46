"""nginx as the second software L7 load balancer baseline.

Tuned for throughput: one worker per front-end core, epoll, no access log,
keep-alive upstream connection pools, sendfile-free proxying with buffers
large enough for the bench's objects to stream without temp files, and limits
well above the bench's connection counts.

Open-source nginx only has passive health checks: a back-end that fails a
connection is taken out for `fail_timeout` and the request is retried on the
next one (`proxy_next_upstream`), so clients do not see the failure.

Routing follows Service.route() exactly (first matching rule in file order,
optionally by Host): nginx's own location matching is longest-prefix, so the
rules are compiled into an ordered regex `map` instead.  The map reads $uri,
which nginx has already normalised as Service.route() does before it matches
(slashes merged, dot-segments removed, a '..' above the root, an invalid
escape and %00 answered 400 by nginx itself).  nginx decodes every escape
where the normal form keeps all but the unreserved ones escaped; that cannot
change which rule matches, since prefixes hold only unreserved characters and
'/'.  What the front-end refuses and nginx would decode or keep (%2F, %5C, a
raw '\\', '#') is refused here too.  Paths match case-sensitively, as
everywhere ($host is lower case already).
"""

from __future__ import annotations

import re

from typing import Annotated

from pydantic import Field

from common.service import Policy
from hosts.hosts import Host
from targets.base import register
from targets.software_lb import SoftwareLB, SoftwareLBParams, backend_address

BALANCE = {
    Policy.ROUND_ROBIN: "",
    Policy.LEAST_CONNECTIONS: "least_conn;",
    Policy.HASH: "hash $remote_addr consistent;",
}


class NginxParams(SoftwareLBParams):
    #: connections per worker, capped by half the host's descriptor limit
    worker_connections: Annotated[int, Field(ge=64, le=10_000_000)] = 65536
    #: idle connections to the back-ends kept per worker and cluster
    upstream_keepalive: Annotated[int, Field(ge=1, le=1_000_000)] = 512
    #: how long a back-end that failed a request is left out (passive health check)
    fail_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 2


@register
class Nginx(SoftwareLB):
    name = "nginx"
    binary = "nginx"
    config_name = "nginx.conf"
    Params = NginxParams

    def render(self, host: Host) -> str:
        svc, p = self.service, self.params
        wd = f"{host.workdir}/{self.name}"
        out = [
            f"worker_processes {self.workers};",
            f"worker_rlimit_nofile {self.fd_limit};",
            f"pid {wd}/nginx.pid;",
            f"error_log {wd}/error.log warn;",
            "events {",
            f"    worker_connections {min(p['worker_connections'], self.fd_limit // 2)};",
            "    use epoll;",
            "    multi_accept on;",
            "}",
            "http {",
            "    access_log off;",
            "    keepalive_requests 1000000;",
            "    keepalive_timeout 60s;",
            f"    client_body_temp_path {wd}/body;",
            f"    proxy_temp_path {wd}/proxy;",
            f"    fastcgi_temp_path {wd}/fastcgi;",
            f"    uwsgi_temp_path {wd}/uwsgi;",
            f"    scgi_temp_path {wd}/scgi;",
            # Stream responses through memory, never through temp files.
            "    proxy_buffering on;",
            "    proxy_buffer_size 16k;",
            "    proxy_buffers 64 16k;",
            "    proxy_max_temp_file_size 0;",
            "    proxy_http_version 1.1;",
            "    proxy_set_header Connection \"\";",
            "    proxy_set_header Host $host;",
            "    proxy_connect_timeout 2s;",
            "    proxy_next_upstream error timeout http_502 http_503;",
            "",
        ]
        for c in svc.clusters:
            out.append(f"    upstream c_{c.name} {{")
            if BALANCE[c.policy]:
                out.append(f"        {BALANCE[c.policy]}")
            for b in c.backends:
                out.append(f"        server {backend_address(self.testbed, b)}:{c.port} "
                           f"max_fails=1 fail_timeout={p['fail_timeout_s']}s;")
            out += [f"        keepalive {p['upstream_keepalive']};", "    }", ""]
        # "$host:$uri" against ordered regexes: the first that matches wins.
        out.append("    map \"$host:$uri\" $cluster {")
        for rule in svc.rules:
            host_re = re.escape(rule.host.lower()) if rule.host else "[^:]*"
            out.append(f"        \"~^{host_re}:{re.escape(rule.path_prefix)}\" c_{rule.cluster};")
        default = f"c_{svc.default_cluster}" if svc.default_cluster else '""'
        out.append(f"        default {default};")
        out += [
            "    }",
            "    server {",
            f"        listen {self.testbed.vip}:{svc.port} reuseport backlog=8192;",
            # Paths with no normal form, as the front-end and HAProxy refuse them.
            '        if ($request_uri ~* "^[^?]*(%2f|%5c|\\x5c)") { return 400; }',
            '        if ($request_uri ~ "#") { return 400; }',
            "        location / {",
            "            if ($cluster = \"\") { return 404; }",
            "            proxy_pass http://$cluster;",
            "        }",
            "    }",
            "}",
        ]
        return "\n".join(out) + "\n"

    def check_command(self, host: Host) -> str:
        return f"nginx -t -q -c {self.config_path(host)}"

    def command(self, host: Host) -> str:
        return f"nginx -c {self.config_path(host)} -g 'daemon off;'"

    def backends_up(self) -> int:
        # Passive checks only: nginx has no view of health before it fails a
        # request; every configured back-end counts as up until then.
        return len(self.service.backends)

    def stats(self) -> dict:
        errors = 0
        for fe in self.testbed.frontends:
            text = fe.read_text(f"{fe.workdir}/{self.name}/error.log", missing_ok=True)
            errors += sum(1 for line in text.splitlines() if "[error]" in line)
        return {"error_log_errors": errors}

    def deploy(self) -> None:
        for fe in self.testbed.frontends:
            fe.run(f"mkdir -p {fe.workdir}/{self.name}")
        super().deploy()
