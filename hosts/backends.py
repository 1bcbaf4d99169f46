"""The back-end web servers every target shares: nginx serving the workload objects.

    objects = ObjectStore(load_workloads().objects)
    servers = BackendServers(testbed, objects)
    servers.start()          # generate once locally, put to each host, start nginx
    ... every target of the campaign ...
    servers.stop()

Objects are generated once on the machine that runs the bench, in a cache
keyed by their definition, and put on each back-end host through the host
interface (on an emulated testbed the work directories happen to share one
filesystem; nothing here relies on it).  nginx is tuned so that it is not the
bottleneck: sendfile, unlimited keep-alive, no access log, one worker per CPU
the host has (as `nproc` counts them on that host, so CPU pinning counts).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import time
from pathlib import Path

from common.errors import Error
from common.paths import BUILD_DIR
from hosts.hosts import Host, Process
from hosts.parallel import for_each_host, raise_first
from workloads.model import Objects

CACHE_DIR = BUILD_DIR / "objects"
HEALTH_PATH = "/health"
HEALTH_BODY = "ok\n"
STATUS_PATH = "/.status"
# Every object again under this prefix, each answered DELAYED_S after the one
# before it on this back-end (nginx's limit_req queues the excess): a request
# that waits for its response, for the tests of what a front-end holding it does
# when it dies.  Nothing else asks for it.
DELAYED_PREFIX = "/delayed/"
DELAYED_S = 20
PORT = 80


class BackendError(Error):
    pass


def object_bytes(seed: int, path: str, size: int) -> bytes:
    """The content of an object: depends on its path, so a misrouted response is caught."""
    return hashlib.shake_256(f"miresga-bench:{seed}:{path}".encode()).digest(size)


class ObjectStore:
    """The objects of a workloads file, generated reproducibly, with a sha256 manifest."""

    def __init__(self, objects: Objects, cache_dir: Path = CACHE_DIR):
        self.objects = objects
        spec = json.dumps(objects.model_dump(), sort_keys=True)
        self.key = hashlib.sha256(spec.encode()).hexdigest()[:16]
        self.root = Path(cache_dir) / self.key

    @property
    def www(self) -> Path:
        return self.root / "www"

    def manifest(self) -> dict[str, dict]:
        """path -> {"size", "sha256"}, for every object (not the health object)."""
        return json.loads((self.root / "manifest.json").read_text())

    def generate(self) -> Path:
        """Write www/ and manifest.json once; later calls reuse them."""
        if (self.root / "manifest.json").exists():
            return self.root
        tmp = self.root.with_name(self.root.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        manifest = {}
        for path, size in self.objects.all_paths():
            data = object_bytes(self.objects.seed, path, size)
            f = tmp / "www" / path.lstrip("/")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
            manifest[path] = {"size": size, "sha256": hashlib.sha256(data).hexdigest()}
        (tmp / "www" / HEALTH_PATH.lstrip("/")).write_text(HEALTH_BODY)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        (tmp / "objects.json").write_text(json.dumps(self.objects.model_dump(), indent=1))
        try:
            tmp.rename(self.root)
        except OSError:  # another process finished first: theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
        return self.root


def nginx_config(host: Host, workers: int, root: str) -> str:
    w = host.workdir + "/nginx"
    return f"""# nginx back-end of the Miresga bench on {host.name}; rendered by hosts/backends.py
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 200000;
pid {w}/nginx.pid;
error_log {w}/error.log warn;

events {{
    worker_connections 65536;
    multi_accept on;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    # One connection per request and keep-alive are both workload parameters:
    # nginx must never be the one that closes a keep-alive connection.
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    open_file_cache max=10000 inactive=300s;
    open_file_cache_valid 300s;
    default_type application/octet-stream;
    server_tokens off;
    client_body_temp_path {w}/tmp/body;
    proxy_temp_path {w}/tmp/proxy;
    fastcgi_temp_path {w}/tmp/fastcgi;
    uwsgi_temp_path {w}/tmp/uwsgi;
    scgi_temp_path {w}/tmp/scgi;

    limit_req_zone $server_port zone=delayed:64k rate={60 // DELAYED_S}r/m;

    server {{
        listen {host.address}:{PORT} backlog=8192 reuseport;
        root {root};
        location / {{ }}
        location {DELAYED_PREFIX} {{
            limit_req zone=delayed burst=1000;
            alias {root}/;
        }}
        # Per back-end request counts, whatever load balancer is in front:
        # the tests check spread and routing with them.
        location = {STATUS_PATH} {{ stub_status; }}
    }}
}}
"""


class BackendServers:
    """nginx on every back-end host of a testbed, serving the same objects."""

    def __init__(self, testbed, store: ObjectStore, nginx: str = "nginx"):
        self.testbed = testbed
        self.store = store
        self.nginx = nginx
        self.processes: dict[str, Process] = {}
        # Status requests asked of each nginx since it started: stub_status
        # counts them too, requests_served() takes them off.
        self._status_requests: dict[str, int] = {}

    @property
    def hosts(self) -> list[Host]:
        return list(self.testbed.backends)

    def www_dir(self, host: Host) -> str:
        return f"{host.workdir}/www"

    def start(self, timeout: float = 20.0) -> None:
        local = self.store.generate()
        # Hosts are independent: put objects and start nginx on all at once.
        started = raise_first(for_each_host(self.hosts, lambda h: self._start_one(h, local)))
        self.processes.update(started)
        self.wait_serving(timeout)

    def restart(self, name: str, timeout: float = 20.0) -> None:
        """Start one back-end's web server again (after a fault killed it)."""
        host = self.testbed.host(name)
        old = self.processes.pop(name, None)
        if old is not None:
            old.stop(2)
        self.processes[name] = self._start_one(host, self.store.generate())
        deadline = time.monotonic() + timeout
        while not self.healthy(host):
            if time.monotonic() > deadline:
                raise BackendError(f"{name}: nginx not serving again within {timeout:.0f}s")
            time.sleep(0.1)

    def _start_one(self, host: Host, local: Path) -> Process:
        www = self.www_dir(host)
        host.run(f"rm -rf {shlex.quote(www)}")
        host.put(local / "www", www)
        workers = int(host.run("nproc").stdout.strip() or 1)
        conf = f"{host.workdir}/nginx/nginx.conf"
        host.put_text(nginx_config(host, workers, www), conf)
        host.run(f"mkdir -p {host.workdir}/nginx/tmp")
        t = host.run(f"{self.nginx} -t -q -e {host.workdir}/nginx/error.log -c {conf}",
                     check=False)
        if not t.ok:
            raise BackendError(f"{host.name}: nginx refused its configuration:\n"
                               f"{t.stderr.strip()}")
        self._status_requests[host.name] = 0
        return host.start(f"exec {self.nginx} -e {host.workdir}/nginx/error.log -c {conf}",
                          name="nginx-backend")

    def healthy(self, host: Host) -> bool:
        """The health object, fetched on the host itself (not through the switch)."""
        r = host.run(f"curl -s --max-time 2 http://{host.address}:{PORT}{HEALTH_PATH}",
                     check=False, timeout=10)
        return r.ok and r.stdout == HEALTH_BODY

    def requests_served(self) -> dict[str, int]:
        """Requests each back-end has answered since it started (nginx stub_status),
        not counting the status requests themselves.  Asked of every back-end at once:
        the runner reads it around every point, and over SSH each is a round trip."""
        served = raise_first(for_each_host(self.hosts, self._served))
        return {h.name: served[h.name] for h in self.hosts}

    def _served(self, host: Host) -> int:
        r = host.run(f"curl -s --max-time 2 http://{host.address}:{PORT}{STATUS_PATH}",
                     check=False, timeout=10)
        self._status_requests[host.name] = self._status_requests.get(host.name, 0) + 1
        # "... server accepts handled requests\n 1 1 7 \n..."
        lines = r.stdout.splitlines()
        i = next((k for k, line in enumerate(lines) if "requests" in line), None)
        if not r.ok or i is None or i + 1 >= len(lines):
            raise BackendError(f"{host.name}: no stub_status answer: {r.stdout or r.stderr}")
        # stub_status counts every status request too, this one included.
        return int(lines[i + 1].split()[2]) - self._status_requests[host.name]

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for host in self.hosts:
            while not self.healthy(host):
                p = self.processes.get(host.name)
                if p is not None and not p.running():
                    raise BackendError(f"{host.name}: nginx exited: {self.logs().get(host.name)}")
                if time.monotonic() > deadline:
                    raise BackendError(f"{host.name}: nginx not serving {HEALTH_PATH} within "
                                       f"{timeout:.0f}s: {self.logs().get(host.name)}")
                time.sleep(0.1)

    def stop(self) -> None:
        for p in self.processes.values():
            p.stop(5)
        self.processes.clear()

    def logs(self) -> dict[str, str]:
        out = {}
        for host in self.hosts:
            text = host.read_text(f"{host.workdir}/nginx/error.log", missing_ok=True)
            p = self.processes.get(host.name)
            if p is not None:
                text += p.logs()
            out[host.name] = text[-4000:]
        return out

    def version(self) -> str:
        if not self.hosts:
            return ""
        r = self.hosts[0].run(f"{self.nginx} -v", check=False)
        return (r.stderr or r.stdout).strip()
