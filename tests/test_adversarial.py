"""Miresga against hostile clients, on the emulated testbed (issue 14, items 1-9).

Each test runs one attack from the testbed's `attacker` host (role `extra`,
an address no plan names) with raw packets (scapy) or ordinary sockets,
while an honest client on the client host fetches objects one connection per
request and checks every body against the manifest (sha256).  Every honest
request made during the attack must succeed byte for byte, and the counters
of the component that refused the attack must have moved.  Tests wait on
state (counters, files written by the clients), never on a fixed sleep.

Service: cluster `small` (backend1, backend2) for /obj/1KB/, cluster `big`
(backend3, backend4) for every other object and /health.  The front-end's
flow table and the agents' connection maps are small, so that the
exhaustion attacks need hundreds of connections, not tens of thousands.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time

import pytest

from common.paths import REPO_ROOT

from target_rig import running, two_cluster_service

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

FLOW_CAPACITY = 512         # the front-end's flow table
AGENT_MAX_CONNS = 192       # each agent's connection map
PARAMS = {
    "frontend_grace_ms": 500,
    "agent_close_grace_s": 1.0,
    "agent_max_conns": AGENT_MAX_CONNS,
    # Idle timeouts longer than any attack takes on a loaded machine: the churn
    # test's kept-alive connection waits, idle, while the attack runs, and the
    # front-end rightly closes a connection idle for frontend_idle_s.
    "filter_period_s": 400.0,
    "switch_idle_s": 400.0,
    "agent_idle_s": 600.0,
    "frontend_idle_s": 300.0,
    "frontend_limits": {"flow_capacity": FLOW_CAPACITY},
}

# The honest client: one connection per request, round-robin over the paths,
# every body checked; `progress` holds the number of good responses so far,
# and the summary goes to `result` once `stop` exists.  A short pause between
# requests keeps its own connections well below the agents' maps.
HONEST = r"""
import hashlib, http.client, json, os, sys, time
spec = json.loads(sys.argv[1])
ok, failed, corrupt, i = 0, [], [], 0
while not os.path.exists(spec["stop"]):
    path, digest = spec["paths"][i % len(spec["paths"])]
    i += 1
    try:
        c = http.client.HTTPConnection(spec["host"], spec["port"], timeout=10)
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status != 200:
            failed.append([path, r.status])
        elif hashlib.sha256(body).hexdigest() != digest:
            corrupt.append(path)
        else:
            ok += 1
    except Exception as e:
        failed.append([path, repr(e)])
    with open(spec["progress"] + ".tmp", "w") as f:
        f.write(str(ok))
    os.replace(spec["progress"] + ".tmp", spec["progress"])
    time.sleep(0.03)
with open(spec["result"], "w") as f:
    json.dump({"ok": ok, "failed": failed, "corrupt": corrupt}, f)
"""

# The attacker (its ops are described in the script).
ATTACK = REPO_ROOT / "workloads" / "attack" / "attack.py"


def service_for(tb):
    # Room for a 65,536-byte request target (item 7).
    return two_cluster_service(tb, request_timeout_s=5.0, max_header_bytes=131072)


@pytest.fixture(scope="module")
def mg(served):
    tb, store, servers = served
    t = running("miresga", tb, service_for(tb), **PARAMS)
    try:
        yield tb, store, t
    finally:
        t.stop()


def wait_until(what: str, fn, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s (last: {v!r})")
        time.sleep(interval)


def attacker(tb):
    return tb.by_role("extra")[0]


def read_int(host, path: str) -> int:
    text = host.read_text(path, missing_ok=True)
    return int(text) if text else 0


def fe_stats(t) -> dict:
    return t.frontends[0].stats()


def sw_counter(t, name: str) -> int:
    return t.switch_stats()["counters"][name]


def agent_counter(t, host_name: str, name: str) -> int:
    return t.agent_stats(t.testbed.host(host_name))["counters"][name]


def paths(store, size: str) -> list[str]:
    return sorted(p for p in store.manifest() if p.startswith(f"/obj/{size}/"))


class Honest:
    """The honest client, running on the client host while an attack runs."""

    def __init__(self, tb, store, sizes=("1KB", "10KB", "100KB")):
        self.host = tb.clients[0]
        w = f"{self.host.workdir}/honest-{time.monotonic_ns()}"
        self.files = {k: f"{w}.{k}" for k in ("py", "stop", "progress", "result")}
        manifest = store.manifest()
        chosen = [p for s in sizes for p in paths(store, s)[:3]]
        spec = {"host": str(tb.vip), "port": tb.vip_port,
                "paths": [[p, manifest[p]["sha256"]] for p in chosen],
                **{k: self.files[k] for k in ("stop", "progress", "result")}}
        self.host.put_text(HONEST, self.files["py"])
        self.proc = self.host.start(f"{self.host.python} {self.files['py']} "
                                    f"{shlex.quote(json.dumps(spec))}", name="honest")

    def good(self) -> int:
        return read_int(self.host, self.files["progress"])

    def stop(self) -> dict:
        self.host.put_text("", self.files["stop"])
        text = wait_until("the honest client's summary",
                          lambda: self.host.read_text(self.files["result"], missing_ok=True),
                          timeout=30)
        self.proc.stop()
        return json.loads(text)


@contextlib.contextmanager
def honest_client(tb, store, during: int = 10, **kw):
    """The honest client; on leaving, at least `during` more requests succeed
    (the attack is still on), then every request it made must have succeeded
    byte for byte."""
    h = Honest(tb, store, **kw)
    try:
        wait_until("honest requests before the attack", lambda: h.good() >= 3)
        yield h
        start = h.good()
        wait_until("honest requests during the attack", lambda: h.good() >= start + during)
    finally:
        summary = h.stop()
    assert summary["failed"] == [] and summary["corrupt"] == [], summary
    assert summary["ok"] >= 3 + during


class Attack:
    """One run of the ATTACK script on the attacker host (a daemon until `stop`)."""

    def __init__(self, tb, spec: dict):
        self.host = attacker(tb)
        w = f"{self.host.workdir}/attack-{time.monotonic_ns()}"
        self.files = {k: f"{w}.{k}" for k in ("py", "stop", "progress")}
        self.spec = {"host": str(tb.vip), "port": tb.vip_port, **spec,
                     "stop": self.files["stop"], "progress": self.files["progress"]}
        self.host.put(ATTACK, self.files["py"])
        self.cmd = f"{self.host.python} {self.files['py']} {shlex.quote(json.dumps(self.spec))}"

    def payload(self, data: bytes) -> "Attack":
        """The bytes of a `request`, in a file (a command line is too short for them)."""
        path = self.spec["progress"] + ".payload"
        self.host.put_text(data.hex(), path)
        self.spec["payload_file"] = path
        self.cmd = f"{self.host.python} {self.files['py']} {shlex.quote(json.dumps(self.spec))}"
        return self

    def run(self, timeout: float = 120) -> dict:
        return json.loads(self.host.run(self.cmd, timeout=timeout).stdout)

    def start(self):
        self.proc = self.host.start(self.cmd, name=f"attack-{self.spec['op']}")
        return self

    def progress(self) -> int:
        return read_int(self.host, self.files["progress"])

    def stop(self) -> str:
        self.host.put_text("", self.files["stop"])
        wait_until("the attacker to stop", lambda: not self.proc.running(), timeout=30)
        return self.proc.logs()


# ---------------------------------------------------------------- 1. admission

def test_forged_acks_open_nothing(mg):
    """ACKs with a request and made-up numbers (no handshake): the switch's cookie
    check drops them; no back-end connection is opened, no front-end flow made."""
    tb, store, t = mg
    bad, admit = sw_counter(t, "cookie_bad"), sw_counter(t, "fe_admit")
    fe_before = fe_stats(t)
    with honest_client(tb, store, sizes=("1KB",)):
        out = Attack(tb, {"op": "forged_ack", "count": 500}).run()
        assert out["sent"] == 500
        wait_until("the switch to refuse the forged ACKs",
                   lambda: sw_counter(t, "cookie_bad") - bad >= 500)
    fe_after = fe_stats(t)
    # Every flow the front-end made came from an admitted (cookie-checked) packet:
    # the honest client's, none of the attacker's 500.
    made = fe_after["flows_created"] - fe_before["flows_created"]
    assert 0 < made <= sw_counter(t, "fe_admit") - admit
    assert fe_after["packets"]["syn_sent"] - fe_before["packets"]["syn_sent"] <= made + 5


# ---------------------------------------------------------------- 2. restart

def test_connections_across_a_frontend_restart_are_reset_cleanly(mg):
    """Kept-alive connections from the attacker host across a front-end restart:
    each gets a clean RST on its next request (no state rebuilt from a guessed
    cookie), while new connections are served."""
    tb, store, t = mg
    host = attacker(tb)
    path = paths(store, "1KB")[0]
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    script = f"{host.workdir}/kept.py"
    ready, go = f"{host.workdir}/kept.ready", f"{host.workdir}/kept.go"
    host.run(f"rm -f {ready} {go}")
    host.put_text(KEPT, script)
    spec = {"host": str(tb.vip), "port": tb.vip_port, "payload": req.hex(), "count": 8,
            "ready": ready, "go": go}
    proc = host.start(f"{host.python} {script} {shlex.quote(json.dumps(spec))}", name="kept")
    try:
        wait_until("kept-alive connections", lambda: host.read_text(ready, missing_ok=True) != "")
        t.restart_frontend()
        before = fe_stats(t)
        with honest_client(tb, store, sizes=("1KB", "10KB")):
            host.put_text("", go)
            text = wait_until("the kept-alive connections' fate",
                              lambda: not proc.running() and proc.logs())
        out = json.loads(text.strip().splitlines()[-1])
        assert out["first"] == [True] * 8
        assert out["after"] == ["reset"] * 8, out
        assert fe_stats(t)["packets"]["known_reset"] - before["packets"]["known_reset"] >= 8
    finally:
        proc.stop()


KEPT = r"""
import json, os, socket, sys, time
spec = json.loads(sys.argv[1])
req = bytes.fromhex(spec["payload"])
conns, first = [], []
for _ in range(spec["count"]):
    s = socket.create_connection((spec["host"], spec["port"]), timeout=10)
    s.sendall(req)
    first.append(s.recv(65536).startswith(b"HTTP/1.1 200"))
    conns.append(s)
open(spec["ready"], "w").write("1")
while not os.path.exists(spec["go"]):
    time.sleep(0.05)
after = []
for s in conns:
    try:
        s.sendall(req)
        s.settimeout(10)
        b = s.recv(65536)
        after.append("eof" if not b else "response")
    except ConnectionResetError:
        after.append("reset")
    except OSError as e:
        after.append(repr(e))
print(json.dumps({"first": first, "after": after}))
"""


# ---------------------------------------------------------------- 3. channel

def test_offload_channel_refuses_a_peer_from_the_attacker_host(mg):
    """The attacker plays a front-end with a key of its own: the daemon does not
    listen on the attacker's gateway, and on the front-end link's address, which
    the attacker can route to, it fails the key proof: nothing is added, the
    refusal is counted, the honest client is served throughout."""
    tb, store, t = mg
    host = attacker(tb)
    port = int(t.params["control_port"])
    occupancy = t.switch_stats().get("occupancy")
    failures = t.switchd.ctl("stats")["channel"]["auth_failures"]
    guess = f"{host.workdir}/guessed.key"
    host.run(f"umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \\n' > {guess}")
    results = {}
    with honest_client(tb, store, sizes=("1KB",)):
        for name, addr in (("own_gateway", host.gateway),
                           ("frontend_link", t.control_address(tb.frontends[0]))):
            r = host.run(host.tool("switchhost.ctl", f"--connect {addr}:{port} --key {guess} "
                                                     f"--timeout 20 stats"),
                         check=False, timeout=60)
            results[name] = (r.ok, (r.stdout + r.stderr).strip()[-300:])
    assert not any(ok for ok, _ in results.values()), results
    assert t.switchd.ctl("stats")["channel"]["auth_failures"] == failures + 1, results
    assert t.switch_stats().get("occupancy") == occupancy


# ---------------------------------------------------------------- 4. spoofed SYNs

def test_spoofed_syns_do_not_touch_a_live_download(mg):
    """A 10 MB download from the client host, and the attacker sends SYNs from the
    client's address and port to every back-end's service port, plain (ack 0) and
    fused (ack != 0): the fused ones are dropped by the switch, the plain ones
    leave the agent's entry alone; the download arrives intact."""
    tb, store, t = mg
    client = tb.clients[0]
    big = sorted(p for p, m in store.manifest().items() if m["size"] >= 10 << 20)[0]
    out = f"{client.workdir}/spoof.out"
    dl = client.start(f"curl -s --limit-rate 2M -o {out} -w '%{{local_port}}' "
                      f"http://{tb.vip}:{tb.vip_port}{big}", name="download")
    try:
        port = wait_until("the download's connection", lambda: _local_port(client, tb))
        forged = sw_counter(t, "fused_syn_forged")
        with honest_client(tb, store, sizes=("1KB",)):
            backends = [str(tb.host(n).address) for n in ("backend1", "backend2",
                                                          "backend3", "backend4")]
            Attack(tb, {"op": "spoofed_syn", "victim_ip": str(client.address),
                        "victim_port": port, "backends": backends, "count": 5}).run()
            wait_until("the switch to drop the fused SYNs",
                       lambda: sw_counter(t, "fused_syn_forged") - forged >= 20)
        wait_until("the download to end", lambda: not dl.running(), timeout=120)
        digest = client.run(f"sha256sum {out}").stdout.split()[0]
        assert digest == store.manifest()[big]["sha256"]
    finally:
        dl.stop()


def _local_port(client, tb) -> int | None:
    r = client.run(f"ss -Htn state established dst {tb.vip}", check=False)
    for line in r.stdout.splitlines():
        local = line.split()[2]
        return int(local.rpartition(":")[2])
    return None


# ---------------------------------------------------------------- 5. 1-byte segments

def test_one_byte_segments_do_not_starve_the_frontend(mg):
    """Connections from the attacker send their headers one byte a segment: the
    front-end copies small segments together and bounds what each flow and all
    flows park; the mbufs held stay few and the honest client is served."""
    tb, store, t = mg
    before = fe_stats(t)
    conns = 6
    attack = Attack(tb, {"op": "tiny", "conns": conns}).start()
    try:
        with honest_client(tb, store, during=20):
            wait_until("a thousand 1-byte segments", lambda: attack.progress() >= 1000)
            st = fe_stats(t)
            assert st["packets"]["coalesced"] - before["packets"]["coalesced"] >= 500
            # Each attacking flow parks at most a few mbufs (fe_hold.c), not one a byte.
            assert st["held_mbufs"] <= conns * 8 + 64, st["held_mbufs"]
    finally:
        attack.stop()


# ---------------------------------------------------------------- 6. flow table

def test_idle_handshakes_cannot_fill_the_flow_table(mg):
    """The attacker completes more handshakes than the front-end's flow table holds
    and never sends a request: the oldest are evicted, new clients are served."""
    tb, store, t = mg
    before = fe_stats(t)
    attack = Attack(tb, {"op": "idle", "conns": FLOW_CAPACITY + 200}).start()
    try:
        with honest_client(tb, store, during=20):
            wait_until("the attacker's handshakes", lambda: attack.progress() >= FLOW_CAPACITY + 200)
            wait_until("evictions", lambda: fe_stats(t)["errors"]["evicted_for_flow"]
                       - before["errors"]["evicted_for_flow"] >= 100)
    finally:
        attack.stop()
    assert fe_stats(t)["errors"]["flow_table_full"] == before["errors"]["flow_table_full"]


# ---------------------------------------------------------------- 7. parser limits

def test_a_65536_byte_request_target_is_answered(mg):
    """An absolute-form target of 65,536 bytes (a 16-bit length would wrap): the
    front-end answers it and keeps running."""
    tb, store, t = mg
    pid = t.frontends[0].process.pid if hasattr(t.frontends[0].process, "pid") else None
    before = fe_stats(t)
    req = (b"GET http://x/" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    with honest_client(tb, store, sizes=("1KB",)):
        out = Attack(tb, {"op": "request"}).payload(req).run()
    assert isinstance(out["status"], int) and out["status"] in (404, 414, 400, 431), out
    assert t.frontends[0].process.running()
    if pid is not None:
        assert t.frontends[0].process.pid == pid
    assert fe_stats(t)["requests"] >= before["requests"]


# ---------------------------------------------------------------- 8. raw paths

@pytest.mark.parametrize("target,status", [
    ("/obj/1KB/../10KB/{f10}", 200),         # normalised into the other cluster
    ("/obj/1KB/%2e%2e/10KB/{f10}", 200),
    ("/obj/1KB/%2F..%2F10KB/{f10}", 400),    # an encoded slash: refused
    ("/obj/../../etc/passwd", 400),          # above the root: refused
])
def test_paths_are_normalised_before_routing(mg, target, status):
    """Dot segments and escapes are resolved before the rules see the path (the
    object served is the normal form's), and forms a back-end could read
    otherwise are refused and counted."""
    tb, store, t = mg
    f10 = paths(store, "10KB")[0].rsplit("/", 1)[1]
    target = target.format(f10=f10)
    before = fe_stats(t)
    req = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with honest_client(tb, store, sizes=("1KB",), during=3):
        out = Attack(tb, {"op": "request"}).payload(req).run()
    assert out["status"] == status, out
    after = fe_stats(t)
    if status == 400:
        assert after["errors"]["path_refused"] - before["errors"]["path_refused"] == 1
    else:
        assert after["decisions"]["first"] > before["decisions"]["first"]


# ---------------------------------------------------------------- 9. churn

def test_churn_beyond_the_agent_map_keeps_live_connections(mg):
    """A kept-alive connection to the big cluster, then the attacker opens more
    connections to that cluster than the agents' maps hold and keeps them: the
    new ones beyond the map are refused and counted, the live connection's next
    request is answered byte for byte."""
    tb, store, t = mg
    host = tb.clients[0]
    obj = paths(store, "10KB")[0]
    script = f"{host.workdir}/keep.py"
    ready, go = f"{host.workdir}/keep.ready", f"{host.workdir}/keep.go"
    host.run(f"rm -f {ready} {go}")
    host.put_text(KEEP_ONE, script)
    spec = {"host": str(tb.vip), "port": tb.vip_port, "path": obj, "ready": ready, "go": go}
    proc = host.start(f"{host.python} {script} {shlex.quote(json.dumps(spec))}", name="keep")
    full = {n: agent_counter(t, n, "map_fail") for n in ("backend3", "backend4")}
    attack = None
    try:
        wait_until("the kept-alive connection", lambda: host.read_text(ready, missing_ok=True))
        with honest_client(tb, store, sizes=("1KB",)):
            attack = Attack(tb, {"op": "churn", "conns": CHURN, "path": obj}).start()
            wait_until("the churn", lambda: attack.progress() >= CHURN, timeout=300)
            assert sum(agent_counter(t, n, "map_fail") - full[n] for n in full) > 0
            host.put_text("1", go)
            text = wait_until("the kept-alive request", lambda: not proc.running() and proc.logs())
        out = json.loads(text.strip().splitlines()[-1])
        assert out == {"first": store.manifest()[obj]["sha256"],
                       "second": store.manifest()[obj]["sha256"]}, out
    finally:
        proc.stop()
        if attack is not None:
            attack.stop()


#: Connections the churn keeps open to the big cluster: more than its two agents' maps.
CHURN = 16 * ((2 * AGENT_MAX_CONNS + 64) // 16)

KEEP_ONE = r"""
import hashlib, http.client, json, os, sys, time
spec = json.loads(sys.argv[1])
c = http.client.HTTPConnection(spec["host"], spec["port"], timeout=20)
def get():
    c.request("GET", spec["path"])
    r = c.getresponse()
    return hashlib.sha256(r.read()).hexdigest() if r.status == 200 else r.status
out = {"first": get()}
open(spec["ready"], "w").write("1")
while not os.path.exists(spec["go"]):
    time.sleep(0.05)
try:
    out["second"] = get()
except Exception as e:
    out["second"] = repr(e)
print(json.dumps(out))
"""
