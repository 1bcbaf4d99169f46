"""Faults during a run: the prober's bins, the analysis, and real faults against HAProxy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.results import fault_rows
from bench.faults import analyse
from hosts.backends import BackendServers, ObjectStore
from workloads.model import load_workloads

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
run = ["backend_killed", "frontend_restarted", "table_full", "syn_flood"]
duration_s = 8
at_s = 2
concurrency = 3
flood_pps = 2000
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
    """A killed back-end, a restarted HAProxy and a SYN flood: it keeps serving, every
    completed response is intact; the switch-table fault does not apply to it."""
    (tmp_path / "workloads.toml").write_text(WORKLOADS)
    (tmp_path / "exp.toml").write_text(EXPERIMENT)
    r = subprocess.run([sys.executable, "-m", "bench", "run", str(tmp_path / "exp.toml"),
                        "--results", str(tmp_path / "res")], capture_output=True, text=True,
                       cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["fault"]: row for row in fault_rows(tmp_path / "res" / "faults-smoke")}
    assert set(rows) == {"backend_killed", "frontend_restarted", "table_full", "syn_flood"}
    assert rows["table_full"]["status"] == "not_applicable"
    for name in ("backend_killed", "frontend_restarted", "syn_flood"):
        row = rows[name]
        assert row["status"] == "ok", row
        assert row["kept_serving"] and row["intact"], row
        assert row["recovered"], row
        assert row["requests_ok"] > 0
    # The restart makes requests fail for a moment; they stop failing.
    assert (tmp_path / "res" / "faults-smoke" / "faults.csv").exists()
