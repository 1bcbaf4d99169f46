"""Faults during a run: the prober's bins, the analysis, real faults against HAProxy, and
Miresga's front-end kill on the two-front-end testbed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from analysis.results import (FORMAT, FORMAT_VERSION, fault_rows, read_result, write_result,
                              write_tidy)
from bench.faults import FaultsSpec, NotApplicable, analyse, inject, undo
from plots.fig_faults import report_lines
from hosts.backends import BackendServers, ObjectStore
from switchhost.server import PEER_SILENCE_S
from targets.base import make_target
from workloads.model import load_workloads

from fe_harness import SERVICE, SWITCH_MAC, VIP

REPO = Path(__file__).resolve().parent.parent


def probe(ok, failed, corrupt=None, bin_s=1.0) -> dict:
    corrupt = corrupt or [0] * len(ok)
    return {"bin_s": bin_s, "ok": ok, "failed": failed, "corrupt": corrupt,
            "totals": {"ok": sum(ok), "failed": sum(failed), "corrupt": sum(corrupt)},
            "errors": {}}


def test_no_failure_means_zero_recovery():
    o = analyse(probe([5] * 10, [0] * 10), inject_at_s=3.0)
    assert o["recovery_s"] == 0.0 and o["recovered"] and o["kept_serving"] and o["intact"]


def test_recovery_runs_to_the_end_of_the_last_failing_bin():
    o = analyse(probe([5, 5, 5, 2, 0, 3, 5, 5], [0, 0, 0, 1, 4, 1, 0, 0]), inject_at_s=3.5)
    assert o["recovery_s"] == pytest.approx(6.0 - 3.5)
    assert o["failed_after_fault"] == 6 and o["failed_before_fault"] == 0


def test_failing_to_the_end_is_not_recovered_and_no_success_is_stuck():
    o = analyse(probe([5, 5, 0, 0, 0], [0, 0, 3, 3, 3]), inject_at_s=2.0)
    assert o["recovery_s"] is None and not o["recovered"] and not o["kept_serving"]


def test_a_corrupt_response_is_not_intact_and_counts_as_a_failure():
    o = analyse(probe([5, 5, 5, 5], [0, 0, 0, 0], corrupt=[0, 0, 1, 0]), inject_at_s=1.0)
    assert not o["intact"] and o["responses_corrupt"] == 1 and o["recovery_s"] == 2.0


def test_the_report_names_what_refused_each_attack(tmp_path):
    """An attack's row carries the counters that moved: the report names the target's
    own (Miresga's cookie check), else the kernel's answers (HAProxy's host's RSTs),
    and says what the attack is."""
    base = analyse(probe([5] * 4, [0] * 4), inject_at_s=1.0)
    runs = {"miresga": {"counters": {"switch.counters.cookie_bad": 1350},
                        "kernel": {"frontend": {"OutRsts": 0}}},
            "haproxy": {"counters": {}, "kernel": {"frontend": {"OutRsts": 40},
                                                   "backend": {"OutRsts": 0}}}}
    for target, refusals in runs.items():
        write_result(tmp_path / target / "faults" / "forged_ack" / "rep1.json", {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": "fault",
            "status": "ok", "parameters": {"target": target, "fault": "forged_ack",
                                           "repetition": 1},
            "fault": {"at_s": 1.0}, "outcome": {**base, "refusals": refusals}})
    rows = {r["target"]: r for r in fault_rows(tmp_path)}
    assert json.loads(rows["haproxy"]["refusal_counters"])["target"] == {}
    text = "\n".join(report_lines(tmp_path))
    assert "| cookie_bad 1350 |" in text
    assert "| kernel OutRsts 40 (frontend) |" in text
    assert "- forged_ack: ACKs carrying a request" in text


def test_a_fault_row_keeps_what_the_fault_recorded_and_the_errors_by_kind(tmp_path):
    """The kill's removal time and victim, and the prober's errors by kind, reach
    faults.csv and come back from it (a committed reference has only the table);
    lists and dicts the fault recorded stay in the result file."""
    base = analyse({**probe([5] * 4, [0, 1, 0, 0]), "errors": {"timeout": 1}},
                   inject_at_s=1.0)
    write_result(tmp_path / "res" / "miresga-2fe" / "faults" / "frontend_killed" / "rep1.json", {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": "fault", "status": "ok",
        "parameters": {"target": "miresga-2fe", "fault": "frontend_killed", "repetition": 1},
        "fault": {"name": "frontend_killed", "at_s": 1.0, "frontend": "frontend2",
                  "signal": "SIGKILL", "removed_from_selection_s": 0.036,
                  "result": {"sent": 3}, "frontends": ["frontend2"]},
        "outcome": base})
    write_tidy(tmp_path / "res")
    (tmp_path / "ref").mkdir()
    shutil.copy(tmp_path / "res" / "faults.csv", tmp_path / "ref" / "faults.csv")
    for rows in (fault_rows(tmp_path / "res"), fault_rows(tmp_path / "ref")):
        (row,) = rows
        assert row["fault_frontend"] == "frontend2" and row["fault_signal"] == "SIGKILL"
        assert row["fault_removed_from_selection_s"] == 0.036
        assert json.loads(row["errors"]) == {"timeout": 1}
        assert row["requests_failed"] == 1 and row["at_s"] == 1.0
        assert not {"fault_name", "fault_at_s", "fault_result", "fault_frontends"} & set(row)


def _testbed(frontends: list[str]):
    """The facts a target reads when it is made, for front-end hosts `frontends`."""
    def run(cmd, check=True, **kw):
        return SimpleNamespace(ok=True, stdout="1024\n", stderr="")
    fes = [SimpleNamespace(name=n, workdir="/nonexistent", cpus="1", switch_mac=SWITCH_MAC,
                           iface="eth0", gateway="10.10.2.1", run=run) for n in frontends]
    return SimpleNamespace(frontends=fes, switch=SimpleNamespace(workdir="/nonexistent"),
                           vip=VIP, backends=[], bpf_dir=Path("/nonexistent"))


@pytest.mark.parametrize("name, frontends, params", [
    ("haproxy", ["frontend1", "frontend2"], {}),
    ("nginx", ["frontend1", "frontend2"], {}),
    ("miresga", ["frontend1"], {}),
    ("miresga", ["frontend1", "frontend2"], {"frontend_hosts": ["frontend1"]}),
])
def test_killing_a_front_end_does_not_apply_without_a_second_one(name, frontends, params):
    """frontend_killed needs a front-end to take over from the killed one: HAProxy
    and nginx run one process on the front-end host, Miresga on one front-end
    host has no other.  The fault is not applicable (recorded, never failed) and
    its undo touches nothing."""
    target = make_target(name, _testbed(frontends), SERVICE, params)
    with pytest.raises(NotApplicable, match=f"target {name} has no second front-end"):
        inject("frontend_killed", None, target, FaultsSpec(run=["frontend_killed"]))
    undo("frontend_killed", SimpleNamespace(fault_procs=[]), target)


@pytest.mark.testbed
def test_the_prober_checks_every_body(module_testbed, tmp_path):
    """httpprobe against one back-end: right bodies pass, a wrong sha256 is counted corrupt."""
    tb = module_testbed
    store = ObjectStore(load_workloads().objects)
    servers = BackendServers(tb, store)
    servers.start()
    try:
        m = store.manifest()
        paths = sorted(p for p in m if m[p]["size"] <= 10240)[:4]
        lines = [f"{p} {m[p]['size']} {m[p]['sha256']}" for p in paths]
        lines[0] = lines[0][:-4] + "0000"  # one wrong digest
        client = tb.clients[0]
        client.put_text("\n".join(lines) + "\n", f"{client.workdir}/p.txt")
        r = client.run(f"{sys.executable} {REPO}/workloads/probe/httpprobe.py --base "
                       f"http://{tb.host('backend1').address}:80 --paths {client.workdir}/p.txt "
                       f"--duration 1 --concurrency 2")
        out = json.loads(r.stdout)
    finally:
        servers.stop()
    assert out["totals"]["ok"] > 0 and out["totals"]["corrupt"] > 0
    assert out["totals"]["failed"] == 0
    assert abs(out["totals"]["corrupt"] * 4 - (out["totals"]["ok"] + out["totals"]["corrupt"])) \
        <= 8  # one object in four


EXPERIMENT = """
[campaign]
name = "faults-smoke"
workloads = "workloads.toml"
repetitions = 1

[[target]]
name = "haproxy"

[parameters]
workload = ["1KB"]
connections = 4
threads = 1
duration_s = 1
warmup_s = 0

[faults]
run = ["backend_killed", "frontend_restarted", "table_full", "syn_flood", "forged_ack",
       "spoofed_syn", "small_segments"]
duration_s = 8
at_s = 2
concurrency = 3
flood_pps = 2000
attack_pps = 200
"""

WORKLOADS = """
[objects]
sizes = ["1KB", "1MB"]
per_size = 2
seed = 5

[[workload]]
name = "1KB"
size = "1KB"
"""


@pytest.mark.testbed
def test_haproxy_survives_every_fault(tmp_path):
    """A killed back-end, a restarted HAProxy, a SYN flood and the attacks: it keeps
    serving, every completed response is intact; the switch-table fault does not apply
    to it.  The forged ACKs are answered by its host's kernel (RSTs), which the row
    records, having no counter of HAProxy's own."""
    (tmp_path / "workloads.toml").write_text(WORKLOADS)
    (tmp_path / "exp.toml").write_text(EXPERIMENT)
    r = subprocess.run([sys.executable, "-m", "bench", "run", str(tmp_path / "exp.toml"),
                        "--results", str(tmp_path / "res")], capture_output=True, text=True,
                       cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["fault"]: row for row in fault_rows(tmp_path / "res" / "faults-smoke")}
    attacks = {"forged_ack", "spoofed_syn", "small_segments"}
    assert set(rows) == {"backend_killed", "frontend_restarted", "table_full",
                         "syn_flood"} | attacks
    assert rows["table_full"]["status"] == "not_applicable"
    for name in {"backend_killed", "frontend_restarted", "syn_flood"} | attacks:
        row = rows[name]
        assert row["status"] == "ok", row
        assert row["kept_serving"] and row["intact"], row
        assert row["recovered"], row
        assert row["requests_ok"] > 0
    # The attacks ran (the attacker's own counts), and the kernel of HAProxy's host
    # answered the forged ACKs.
    faults_dir = tmp_path / "res" / "faults-smoke" / "haproxy" / "faults"
    docs = {d["parameters"]["fault"]: d for d in map(read_result, faults_dir.rglob("*.json"))}
    for name in attacks:
        assert docs[name]["fault"]["result"].get("error") is None, docs[name]["fault"]
    assert docs["forged_ack"]["fault"]["result"]["sent"] > 0
    assert docs["small_segments"]["fault"]["result"]["bytes"] > 0
    refusals = json.loads(rows["forged_ack"]["refusal_counters"])
    assert refusals["target"] == {}  # HAProxy has no counter of its own for them
    kernel = refusals["kernel"]["frontend"]
    assert kernel["OutRsts"] + kernel["SyncookiesFailed"] > 0, kernel
    assert (tmp_path / "res" / "faults-smoke" / "faults.csv").exists()


MIRESGA = EXPERIMENT.replace('name = "haproxy"', 'name = "miresga"').replace(
    'run = ["backend_killed", "frontend_restarted", "table_full", "syn_flood", "forged_ack",\n'
    '       "spoofed_syn", "small_segments"]',
    'run = ["forged_ack", "spoofed_syn", "small_segments"]')


@pytest.mark.testbed
def test_miresga_refuses_the_attacks_and_keeps_serving(tmp_path):
    """Forged ACKs, SYNs spoofed into the back-ends' live flows and 1-byte segments
    against Miresga while the prober runs: nothing fails, every response is intact,
    and the counters of the component that refuses each attack moved (the switch's
    cookie check, its fused-SYN check and the agents, the front-end's coalescing)."""
    (tmp_path / "workloads.toml").write_text(WORKLOADS)
    (tmp_path / "exp.toml").write_text(MIRESGA)
    assert 'run = ["forged_ack"' in MIRESGA
    r = subprocess.run([sys.executable, "-m", "bench", "run", str(tmp_path / "exp.toml"),
                        "--results", str(tmp_path / "res")], capture_output=True, text=True,
                       cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["fault"]: row for row in fault_rows(tmp_path / "res" / "faults-smoke")}
    assert set(rows) == {"forged_ack", "spoofed_syn", "small_segments"}
    for name, row in rows.items():
        assert row["status"] == "ok", row
        assert row["kept_serving"] and row["intact"] and row["recovered"], row
    counters = {name: json.loads(row["refusal_counters"])["target"]
                for name, row in rows.items()}
    assert counters["forged_ack"]["switch.counters.cookie_bad"] > 0
    assert counters["spoofed_syn"]["switch.counters.fused_syn_forged"] > 0
    assert counters["small_segments"]["frontends.*.packets.coalesced"] > 0


TWO_FRONTENDS = f"""
[campaign]
name = "faults-smoke"
workloads = "workloads.toml"
topology = "{REPO / 'testbeds' / 'two-frontends.toml'}"
repetitions = 1

[[target]]
name = "miresga"
label = "miresga-2fe"
params = {{ frontend_hosts = ["frontend1", "frontend2"] }}

[parameters]
workload = ["1KB"]
connections = 4
threads = 1
duration_s = 1
warmup_s = 0

[faults]
run = ["frontend_killed"]
duration_s = 8
at_s = 2
concurrency = 3
"""


@pytest.mark.testbed
@pytest.mark.slow
def test_a_killed_front_end_is_recorded_in_faults_csv(tmp_path):
    """frontend_killed on the two-front-end testbed through `bench run`: frontend2
    is killed mid-run, the other takes its clients; faults.csv's row carries the
    requests that failed, the recovery, every body intact, and how long the
    switch took to take frontend2 out of the selection (within the README's
    bound)."""
    (tmp_path / "workloads.toml").write_text(WORKLOADS)
    (tmp_path / "exp.toml").write_text(TWO_FRONTENDS)
    r = subprocess.run([sys.executable, "-m", "bench", "run", str(tmp_path / "exp.toml"),
                        "--results", str(tmp_path / "res")], capture_output=True, text=True,
                       cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    # From the table alone, as a committed reference is read.
    (tmp_path / "ref").mkdir()
    shutil.copy(tmp_path / "res" / "faults-smoke" / "faults.csv", tmp_path / "ref")
    (row,) = fault_rows(tmp_path / "ref")
    assert row["fault"] == "frontend_killed" and row["status"] == "ok", row
    assert row["fault_frontend"] == "frontend2" and row["fault_signal"] == "SIGKILL"
    assert 0 <= row["fault_removed_from_selection_s"] <= PEER_SILENCE_S, row
    assert row["kept_serving"] and row["intact"] and row["requests_ok"] > 0, row
    # Every failed request is counted by kind (a kill leaves those in flight on it).
    assert sum(json.loads(row["errors"]).values()) == row["requests_failed"] >= 0, row
    assert row["recovered"] and row["recovery_s"] >= 0, row
