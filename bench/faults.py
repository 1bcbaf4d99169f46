"""Faults during a run: does the load balancer keep serving, and is every byte intact?

An experiment's `[faults]` table adds, for each listed target, one fault run
per (fault, repetition) after the target's measurement points, on the same
deployment:

    [faults]
    run = ["backend_killed", "frontend_restarted", "table_full", "syn_flood",
           "forged_ack", "spoofed_syn", "small_segments"]
    targets = ["haproxy", "nginx", "l4switch", "miresga"]   # default: every L7 target
    duration_s = 20      # the prober's run
    at_s = 6             # when the fault strikes
    conn_mode = "close"  # one connection per request: every request crosses setup

A fault run drives the time-resolved prober (workloads/probe/httpprobe.py) at
the target's endpoint, injects the fault at `at_s`, and records per 100 ms bin
how many requests succeeded, failed or came back corrupt (every response is
checked against the manifest's sha256), then derives: requests failed, the
time from the fault until requests stopped failing (recovery), whether the
target kept serving (some request succeeded after the fault; degraded is
fine, stuck is not), and whether every completed response was intact.

Faults:
- backend_killed: SIGKILL to one back-end's web server (the last back-end of
  the service); restarted after the run.
- frontend_restarted: the target restarts its front-end process(es)
  (Target.restart_frontend); targets without a front-end: not applicable.
- frontend_killed: SIGKILL to one of several front-ends (Target.kill_frontend,
  the last one); the others must take its clients; restarted after the run.
  Targets with fewer than two front-ends: not applicable.
- table_full: the target fills its switch flow table (Target.fill_flow_table),
  so new connections cannot be offloaded; drained after the run.
- syn_flood: hping3 on an `extra` host floods the VIP with spoofed SYNs at
  `flood_pps` for the rest of the run.

The attacks of issue 14, from the `extra` host (workloads/attack/attack.py)
for the rest of the run:
- forged_ack: ACKs carrying a request with made-up sequence and
  acknowledgement numbers (no handshake, no valid SYN cookie) to the VIP at
  `attack_pps`.  Miresga: the switch's cookie check drops them (counter
  cookie_bad); nothing reaches a front-end or a back-end.  HAProxy, nginx:
  the load balancer host's kernel has no socket for them and answers each
  with a RST (its Tcp OutRsts).  l4switch: forwarded to a back-end by the
  hash, whose kernel answers the RST.
- spoofed_syn: SYNs from the client side of live flows (the peers of the
  back-ends' established connections, refreshed every half second) to the
  back-ends' service port, plain (ack 0) and fused (no ACK flag, ack != 0),
  at `attack_pps`.  Miresga: the switch drops fused SYNs not from a
  front-end port (fused_syn_forged), the agents leave live entries alone
  (syn_plain_kept, syn_live_kept).  Other targets: their back-end
  connections are ordinary sockets; the back-end's kernel answers a SYN on
  an established connection with a challenge ACK (TcpExt TCPChallengeACK,
  RFC 5961), which the spoofed peer never sees.
- small_segments: `slow_connections` connections send a request header one
  byte a segment and never finish it, reconnecting when closed.  Miresga:
  the front-end copies small segments together (coalesced) and bounds what
  it holds per flow and in all (hold_full, evicted_for_mbufs), then answers
  408.  HAProxy, nginx: the kernel coalesces the bytes in the socket buffer,
  the request times out (HAProxy's request errors).  l4switch: the bytes go
  to a back-end's nginx, which times the request out.

Each fault run also records the counters with which a target refuses the
fault (`refusals`: the target's own, where it has them, and the kernel's TCP
counters of the front-end and back-end hosts), before and after.
"""

from __future__ import annotations

import json
import random
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench.netstat import parse as parse_netstat
from common.paths import REPO_ROOT
from hosts.backends import PORT as BACKEND_PORT

PROBER = REPO_ROOT / "workloads" / "probe" / "httpprobe.py"
ATTACKER = REPO_ROOT / "workloads" / "attack" / "attack.py"
FaultName = Literal["backend_killed", "frontend_restarted", "frontend_killed", "table_full",
                    "syn_flood", "forged_ack", "spoofed_syn", "small_segments"]
FAULTS: tuple[str, ...] = FaultName.__args__  # type: ignore[attr-defined]


class NotApplicable(Exception):
    """The fault does not exist for this target (e.g. no front-end to restart)."""


class FaultsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    run: list[FaultName] = Field(min_length=1)
    targets: list[str] | None = None
    repetitions: int = Field(default=1, ge=1, le=100)
    duration_s: Annotated[float, Field(gt=2, le=3600)] = 20.0
    at_s: Annotated[float, Field(gt=0)] = 6.0
    concurrency: int = Field(default=4, ge=1, le=256)
    conn_mode: Literal["keep-alive", "close"] = "close"
    timeout_s: float = Field(default=3.0, gt=0, le=60)
    flood_pps: int = Field(default=20000, ge=1, le=10_000_000)
    # Raw packets from a Python sender: hundreds a second, not a flood.
    attack_pps: int = Field(default=500, ge=1, le=20000)
    slow_connections: int = Field(default=6, ge=1, le=1000)
    bin_ms: float = Field(default=100.0, ge=10, le=10000)

    def model_post_init(self, _ctx) -> None:
        if self.at_s >= self.duration_s:
            raise ValueError(f"faults.at_s: {self.at_s} must be before the end of the run "
                             f"(duration_s = {self.duration_s})")


@dataclass(frozen=True)
class FaultPoint:
    """One fault run: a target, a fault, a repetition."""

    index: int
    target: Any          # experiment.TargetSpec
    fault: str
    repetition: int
    spec: FaultsSpec
    kind: str = "fault"

    @property
    def id(self) -> str:
        return f"{self.target.key}/faults/{self.fault}/rep{self.repetition}"

    @property
    def relpath(self) -> str:
        return self.id + ".json"

    @property
    def workload(self) -> str:  # for the progress line
        return f"fault:{self.fault}"


# ------------------------------------------------------------------ analysis

def analyse(probe: dict, inject_at_s: float, undone_at_s: float | None = None) -> dict:
    """Outcome of a fault run from the prober's bins.

    recovery_s: from the fault to the end of the last bin with a failure (0
    if nothing failed after the fault); None if requests were still failing
    in the last bin (not recovered within the run).
    """
    b = probe["bin_s"]
    ok, failed, corrupt = probe["ok"], probe["failed"], probe["corrupt"]
    first = int(inject_at_s / b)
    bad_bins = [i for i in range(first, len(ok)) if failed[i] or corrupt[i]]
    still_failing = bool(bad_bins) and bad_bins[-1] >= len(ok) - 1
    recovery = None if still_failing else (
        max(0.0, (bad_bins[-1] + 1) * b - inject_at_s) if bad_bins else 0.0)
    after_ok = sum(ok[first:])
    before = slice(0, first)
    return {
        "requests_ok": probe["totals"]["ok"],
        "requests_failed": probe["totals"]["failed"],
        "responses_corrupt": probe["totals"]["corrupt"],
        "failed_before_fault": sum(failed[before]) + sum(corrupt[before]),
        "failed_after_fault": sum(failed[first:]) + sum(corrupt[first:]),
        "ok_per_s_before": sum(ok[before]) / max(first * b, b),
        "ok_per_s_after": after_ok / max((len(ok) - first) * b, b),
        "recovery_s": recovery,
        "recovered": recovery is not None,
        "kept_serving": after_ok > 0,
        "intact": probe["totals"]["corrupt"] == 0,
        "errors": probe.get("errors", {}),
    }


# ------------------------------------------------------------------ injection

def _victim_backend(ctx) -> str:
    return ctx.service.backends[-1]


def inject(fault: str, ctx, target, spec: FaultsSpec) -> dict:
    """Strike; returns what was done (recorded in the result) and how to undo it."""
    if fault == "backend_killed":
        name = _victim_backend(ctx)
        proc = ctx.backends.processes.get(name)
        if proc is None:
            raise NotApplicable(f"no web server process on {name}")
        proc.signal(9)  # SIGKILL: a crash, not a clean shutdown
        return {"backend": name, "signal": "SIGKILL"}
    if fault == "frontend_restarted":
        try:
            return {"restarted": target.restart_frontend() or True}
        except NotImplementedError:
            raise NotApplicable(f"target {target.name} has no front-end process") from None
    if fault == "frontend_killed":
        try:
            return target.kill_frontend() or {}
        except NotImplementedError:
            raise NotApplicable(f"target {target.name} has no second front-end to take over "
                                f"from a killed one") from None
    if fault == "table_full":
        try:
            return target.fill_flow_table() or {}
        except NotImplementedError:
            raise NotApplicable(f"target {target.name} has no switch flow table") from None
    if fault == "syn_flood":
        extra = ctx.tb.by_role("extra")
        if not extra:
            raise NotApplicable("the testbed has no host with role 'extra' to flood from")
        h = extra[0]
        interval_us = max(1, int(1e6 / spec.flood_pps))
        proc = h.start(f"exec hping3 -q -S -p {ctx.tb.vip_port} -i u{interval_us} --rand-source "
                       f"{ctx.tb.vip}", name="syn-flood")
        ctx.fault_procs.append(proc)
        return {"from": h.name, "pps": spec.flood_pps, "tool": "hping3 --rand-source"}
    if fault in ATTACKS:
        armed = [p for p in ctx.fault_procs if isinstance(p, _Attack)]
        if not armed:
            raise RuntimeError(f"{fault}: no attacker was armed before the run")
        return armed[-1].strike()
    raise ValueError(f"unknown fault {fault!r}")


def arm(fault: str, ctx, spec: FaultsSpec) -> None:
    """Before the prober starts: an attack's attacker, started and ready to strike
    (loading scapy takes seconds on a busy host, which must not eat into the run)."""
    if fault not in ATTACKS:
        return
    extra = ctx.tb.by_role("extra")
    if not extra:
        raise NotApplicable("the testbed has no host with role 'extra' to attack from")
    attack = _Attack(ctx.tb, extra[0], fault, spec)
    ctx.fault_procs.append(attack)
    attack.arm()


#: The attacks' ops in workloads/attack/attack.py.
ATTACKS = {"forged_ack": "forged_ack", "spoofed_syn": "spoofed_syn", "small_segments": "tiny"}


class _Attack:
    """One attack from the extra host, running until stop(); its summary lands in the
    dict strike() returned (recorded with the fault)."""

    #: How often the spoofed SYNs' list of live flows is read again.
    REFRESH_S = 0.5
    #: Flows a round of spoofed SYNs aims at (a random choice of the live ones).
    MAX_VICTIMS = 32
    #: How long the attacker may take to get under way (a bound on a hang).
    READY_S = 60.0

    def __init__(self, tb, host, fault: str, spec: FaultsSpec):
        self.tb, self.host, self.fault = tb, host, fault
        w = f"{host.workdir}/faults/attack-{fault}"
        self.files = {k: f"{w}.{k}" for k in ("py", "stop", "progress", "victims", "out",
                                              "ready", "go")}
        self.spec: dict = {"op": ATTACKS[fault], "host": str(tb.vip), "port": tb.vip_port,
                           **{k: self.files[k] for k in ("stop", "progress", "ready", "go")}}
        if fault == "forged_ack":
            self.spec["pps"] = spec.attack_pps
        elif fault == "spoofed_syn":
            self.spec.update(pps=spec.attack_pps, port=BACKEND_PORT,
                             victims_file=self.files["victims"])
        else:
            self.spec.update(conns=spec.slow_connections, reconnect=True)
        self.record: dict = {"from": host.name, "attack": ATTACKS[fault],
                             **{k: v for k, v in self.spec.items()
                                if k in ("pps", "conns")}}
        self._done = threading.Event()
        self._refresher: threading.Thread | None = None
        self.proc = None

    def arm(self) -> None:
        """Start the attacker; return once it is ready to strike."""
        h = self.host
        h.run("rm -f " + " ".join(self.files[k] for k in ("stop", "progress", "out", "ready",
                                                           "go")))
        h.put(ATTACKER, self.files["py"])
        self.proc = h.start(f"exec {h.python} {self.files['py']} "
                            f"{shlex.quote(json.dumps(self.spec))} > {self.files['out']}",
                            name=f"attack-{self.fault}")
        self._wait_for("ready", "get ready")

    def strike(self) -> dict:
        """Go; returns the record of the attack once it is under way (`struck_at`: when)."""
        if self.fault == "spoofed_syn":
            self._write_victims()
            self._refresher = threading.Thread(target=self._refresh, daemon=True)
            self._refresher.start()
        self.host.put_text("", self.files["go"])
        self._wait_for("progress", "strike")
        self.record["struck_at"] = time.time()
        return self.record

    def _wait_for(self, name: str, what: str) -> None:
        deadline = time.monotonic() + self.READY_S
        while not self.host.run(f"test -e {self.files[name]}", check=False).ok:
            if not self.proc.running() or time.monotonic() > deadline:
                raise RuntimeError(f"the attacker on {self.host.name} did not {what} within "
                                   f"{self.READY_S:.0f}s: {self.proc.logs()[-500:]}")
            time.sleep(0.02)

    def _live_flows(self) -> list[list]:
        """[client address, client port, back-end address] of the back-ends' established
        connections on the service port: the flows a spoofed SYN would hit."""
        flows = []
        for b in self.tb.backends:
            r = b.run(f"ss -Htn state established '( sport = :{BACKEND_PORT} )'", check=False)
            for line in r.stdout.splitlines():
                cols = line.split()
                if len(cols) < 4:
                    continue
                local, peer = cols[2].rpartition(":"), cols[3].rpartition(":")
                flows.append([peer[0].strip("[]"), int(peer[2]), local[0].strip("[]")])
        random.shuffle(flows)
        return flows[: self.MAX_VICTIMS]

    def _write_victims(self) -> None:
        flows = self._live_flows()
        self.record["victim_flows_seen"] = self.record.get("victim_flows_seen", 0) + len(flows)
        self.host.put_text(json.dumps(flows), self.files["victims"] + ".tmp")
        self.host.run(f"mv {self.files['victims']}.tmp {self.files['victims']}")

    def _refresh(self) -> None:
        while not self._done.wait(self.REFRESH_S):
            try:
                self._write_victims()
            except Exception:  # noqa: BLE001 - a missed refresh keeps the last list
                pass

    def stop(self, timeout: float = 3) -> None:
        self._done.set()
        if self._refresher is not None:
            self._refresher.join(10)
        if self.proc is None:
            return
        self.host.put_text("", self.files["stop"])
        rc = self.proc.wait(timeout + 10)
        if rc is None:
            self.proc.stop(timeout)
        text = self.host.read_text(self.files["out"], missing_ok=True) or ""
        try:
            self.record["result"] = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.record["result"] = {"error": f"the attacker printed no result (exit {rc}): "
                                              f"{self.proc.logs()[-500:]}"}


# ------------------------------------------------------------------ refusals

#: Per fault, the target's counters that count it refused, as paths into
#: Target.stats() (`*`: every key at that level, summed).  Miresga's names;
#: HAProxy's request errors for the slow requests.
REFUSAL_COUNTERS: dict[str, tuple[str, ...]] = {
    "forged_ack": ("switch.counters.cookie_bad",),
    "spoofed_syn": ("switch.counters.fused_syn_forged", "agents.*.counters.syn_plain_kept",
                    "agents.*.counters.syn_live_kept"),
    "small_segments": ("frontends.*.packets.coalesced", "frontends.*.packets.hold_full",
                       "frontends.*.errors.408", "frontends.*.errors.evicted_for_mbufs",
                       "frontend.*.errors"),
}
#: The kernel's TCP counters of the front-end and back-end hosts that answer an
#: attack on a target without counters of its own (a RST, a challenge ACK).
KERNEL_COUNTERS = ("OutRsts", "SyncookiesFailed", "TCPChallengeACK")


def _lookup(stats, path: str) -> int | None:
    """The sum of the numbers at a dotted path (`*` any key), None if there is none."""
    nodes = [stats]
    for part in path.split("."):
        nxt = []
        for n in nodes:
            if isinstance(n, dict):
                nxt += list(n.values()) if part == "*" else ([n[part]] if part in n else [])
        nodes = nxt
    nums = [n for n in nodes if isinstance(n, (int, float)) and not isinstance(n, bool)]
    return sum(nums) if nums else None


def refusal_counters(fault: str, stats: dict) -> dict[str, int]:
    out = {}
    for path in REFUSAL_COUNTERS.get(fault, ()):
        v = _lookup(stats, path)
        if v is not None:
            out[path] = v
    return out


def kernel_counters(tb) -> dict[str, dict[str, int]]:
    """Per role (frontend, backend), KERNEL_COUNTERS summed over its hosts."""
    out = {}
    for role, hosts in (("frontend", tb.frontends), ("backend", tb.backends)):
        total = dict.fromkeys(KERNEL_COUNTERS, 0)
        for h in hosts:
            r = h.run("cat /proc/net/netstat /proc/net/snmp", check=False)
            got = parse_netstat(r.stdout, KERNEL_COUNTERS) if r.ok else {}
            for k in KERNEL_COUNTERS:
                total[k] += got.get(k, 0)
        out[role] = total
    return out


def refusals(fault: str, before: dict, after: dict, kernel_before: dict,
             kernel_after: dict) -> dict:
    """What refused the fault, as deltas over the run: the target's own counters
    (empty where it has none), and the kernel's of its hosts."""
    a, b = refusal_counters(fault, before), refusal_counters(fault, after)
    own = {k: b[k] - a[k] for k in b if k in a}
    kernel = {role: {k: kernel_after[role][k] - kernel_before[role][k] for k in KERNEL_COUNTERS}
              for role in kernel_after if role in kernel_before}
    return {"counters": own, "kernel": kernel}


def undo(fault: str, ctx, target) -> None:
    """Put things back for the next run (idempotent)."""
    for p in ctx.fault_procs:
        p.stop(timeout=3)
    ctx.fault_procs.clear()
    if fault == "backend_killed":
        name = _victim_backend(ctx)
        proc = ctx.backends.processes.get(name)
        if proc is not None and not proc.running():
            ctx.backends.restart(name)
    elif fault == "table_full":
        try:
            target.drain_flow_table()
        except NotImplementedError:
            pass
    elif fault == "frontend_killed":
        try:
            target.revive_frontend()
        except NotImplementedError:
            pass


# ------------------------------------------------------------------ a run

def run_fault(ctx, target, point: FaultPoint) -> dict:
    """Prober + fault; returns the fault part of a result document."""
    spec = point.spec
    client = ctx.tb.clients[0]
    work = f"{client.workdir}/faults"
    manifest = ctx.store.manifest()
    # Mostly small objects with some large ones: enough requests per bin to
    # see an outage, and large bodies to check for corruption mid-stream.
    small = sorted(p for p, m in manifest.items() if m["size"] <= 16 << 10)
    large = sorted(p for p, m in manifest.items() if (1 << 20) <= m["size"] <= (1 << 20) * 2)
    chosen = (small * 9 + large)[: max(10, len(small) * 9 + len(large))] or sorted(manifest)
    lines = "".join(f"{p} {manifest[p]['size']} {manifest[p]['sha256']}\n" for p in chosen)
    client.put_text(lines, f"{work}/paths.txt")
    client.put(PROBER, f"{work}/httpprobe.py")
    cmd = (f"exec {client.python} {work}/httpprobe.py --base {shlex.quote(target.endpoint.url)} "
           f"--paths {work}/paths.txt --duration {spec.duration_s} "
           f"--concurrency {spec.concurrency} --timeout {spec.timeout_s} --bin-ms {spec.bin_ms}"
           + (" --close" if spec.conn_mode == "close" else ""))
    try:
        arm(point.fault, ctx, spec)
    except NotApplicable as e:
        return {"status": "not_applicable", "error": str(e)}
    except BaseException:
        undo(point.fault, ctx, target)
        raise
    stats_before = _stats(target)
    kernel_before = kernel_counters(ctx.tb) if point.fault in ATTACKS else None
    t_start = time.time()
    prober = client.start(f"{cmd} > {work}/probe.json", name=f"probe-{point.fault}")
    injected: dict = {}
    error = None
    inject_wall = None
    try:
        time.sleep(max(0.0, spec.at_s - (time.time() - t_start)))
        inject_wall = time.time()
        try:
            injected = inject(point.fault, ctx, target, spec)
        except NotApplicable as e:
            prober.stop()
            return {"status": "not_applicable", "error": str(e)}
        inject_wall = injected.pop("struck_at", inject_wall)
        rc = prober.wait(spec.duration_s + spec.timeout_s + 30)
        if rc is None:
            prober.stop()
            error = "the prober did not finish in time"
    finally:
        stats_after = _stats(target)
        kernel_after = kernel_counters(ctx.tb) if point.fault in ATTACKS else None
        undo(point.fault, ctx, target)
    text = client.read_text(f"{work}/probe.json", missing_ok=True)
    try:
        probe = json.loads(text)
    except json.JSONDecodeError:
        return {"status": "failed", "error": error or f"the prober printed no result: "
                f"{prober.logs()[-1000:]}"}
    # The prober's clock starts when it starts; align the fault to it.
    inject_at = inject_wall - probe["started_at"]
    if inject_at >= probe["duration_s"] and error is None:
        error = (f"the fault struck {inject_at:.1f} s after the prober started, after its "
                 f"run of {probe['duration_s']} s: nothing measured it")
    outcome = analyse(probe, inject_at)
    if point.fault in ATTACKS:
        outcome["refusals"] = refusals(point.fault, stats_before, stats_after, kernel_before,
                                       kernel_after)
    return {
        "status": "ok" if error is None else "failed", "error": error,
        "fault": {"name": point.fault, "at_s": round(inject_at, 3), **injected},
        "outcome": outcome, "probe": probe,
        "target_stats": {"before": stats_before, "after": stats_after},
    }


def _stats(target) -> dict:
    try:
        return target.stats()
    except Exception as e:  # noqa: BLE001 - stats must not sink a fault run
        return {"error": f"{type(e).__name__}: {e}"}

