"""A short campaign on a "remote" testbed: namespace hosts with real sshd, reached only
over SSH, driven by the same runner, experiment and targets as an emulated run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from analysis import latency
from hosts.remote import emulated_inventory
from hosts.sshd import make_keys, start_sshd
from hosts.testbed import EmulatedTestbed
from hosts.topology import load_topology

from conftest import unique_prefix
from inventory_rig import toml_dump

pytestmark = pytest.mark.testbed

REPO = Path(__file__).resolve().parent.parent
# Every target that exists and runs over SSH; the list grows with the targets.
TARGETS = ["direct", "haproxy", "nginx", "l4switch", "miresga"]

WORKLOADS = """
[objects]
sizes = ["1KB", "100KB"]
per_size = 2
seed = 7

[[workload]]
name = "1KB"
size = "1KB"

[[workload]]
name = "mix"
mix = { "1KB" = 80, "100KB" = 20 }
"""


def experiment(tmp: Path) -> Path:
    (tmp / "workloads.toml").write_text(WORKLOADS)
    targets = "".join(f'\n[[target]]\nname = "{t}"\n' for t in TARGETS)
    exp = tmp / "remote-smoke.toml"
    exp.write_text(f"""
[campaign]
name = "remote-smoke"
workloads = "workloads.toml"
repetitions = 1
seed = 3
{targets}
[parameters]
workload = ["1KB", "mix"]
conn_mode = "keep-alive"
connections = 8
threads = 1
duration_s = 1
warmup_s = 0
timeout_s = 5
probe_connections = 1
probe_interval_ms = 20
""")
    return exp


@contextmanager
def ssh_lab(tb, tmp: Path):
    """An inventory file (tmp/lab.toml) for an emulated testbed, every host running
    its own sshd; yields the inventory."""
    keys = make_keys(tmp / "keys")
    procs = []
    try:
        for h in tb.hosts.values():
            procs.append(start_sshd(h, keys, address=str(h.address or
                                                          tb.host("client").gateway)))
        inv = emulated_inventory(tb, keys, workroot=f"/tmp/miresga-remote-{tb.prefix}")
        (tmp / "lab.toml").write_text(toml_dump(inv))
        yield inv
    finally:
        for p in procs:
            p.stop()
        subprocess.run(["rm", "-rf", f"/tmp/miresga-remote-{tb.prefix}"])


@pytest.fixture(scope="module")
def remote_lab(module_testbed, tmp_path_factory):
    """An inventory file for the module's testbed, every host running its own sshd."""
    tmp = tmp_path_factory.mktemp("lab")
    with ssh_lab(module_testbed, tmp) as inv:
        yield module_testbed, tmp, inv


def assert_nothing_left_running(tb) -> None:
    """No process of a session left on the hosts: no pid file under the work
    directories, and only the fixture's sshd in each namespace."""
    left = tb.switch.run(f"find /tmp/miresga-remote-{tb.prefix} -path '*/pids/*' -type f",
                         check=False).stdout.split()
    assert left == []
    for h in tb.hosts.values():
        procs = h.run("ps -o comm= -p $(ip netns pids " + h.netns + " | tr '\\n' ' ') "
                      "2>/dev/null | sort -u", check=False).stdout.split()
        assert set(procs) <= {"sshd", "ps", "sh", "sort"}, (h.name, procs)


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=1800)


def shape(doc, depth: int = 2, prefix: str = "") -> set[str]:
    """The key paths of a result document, to compare form, not values."""
    out = set()
    if isinstance(doc, dict) and depth > 0:
        for k, v in doc.items():
            out.add(prefix + k)
            out |= shape(v, depth - 1, prefix + k + ".")
    return out


# Two campaigns of five targets, each deployed on nine hosts over SSH: past the
# default 600 s on a busy 2-vCPU machine.
@pytest.mark.timeout(1800)
def test_remote_campaign_has_the_form_of_an_emulated_one(remote_lab, tmp_path):
    """Every target (direct, haproxy, nginx, l4switch, miresga) over SSH: every point ok,
    integrity passed, and the result files and tidy table have exactly the fields of an
    emulated run.  Both client hosts drive every point's load (wrk's connections shared
    out), their histograms merged."""
    tb, lab, _ = remote_lab
    exp = experiment(tmp_path)
    remote = bench("run", str(exp), "--inventory", str(lab / "lab.toml"),
                   "--results", str(tmp_path / "remote"))
    assert remote.returncode == 0, remote.stderr[-3000:]
    emulated = bench("run", str(exp), "--results", str(tmp_path / "emulated"))
    assert emulated.returncode == 0, emulated.stderr[-3000:]

    docs = {}
    for kind in ("remote", "emulated"):
        files = sorted((tmp_path / kind / "remote-smoke").rglob("rep*.json"))
        assert len(files) == 2 * len(TARGETS), files
        docs[kind] = [json.loads(f.read_text()) for f in files]
        for d in docs[kind]:
            assert d["status"] == "ok", (kind, d.get("error"))
            assert d["integrity"]["passed"], d["integrity"]
            load = d["metrics"]["load"]
            assert [c["host"] for c in load["clients"]] == ["client", "client2"], load["clients"]
            assert [c["connections"] for c in load["clients"]] == [4, 4]
            assert sum(c["requests_per_s"] for c in load["clients"]) == \
                pytest.approx(load["requests_per_s"])
            assert latency.decode(load["histogram"]).get_total_count() == \
                load["latency_us"]["count"] > 0
    r, e = docs["remote"][0], docs["emulated"][0]
    assert r["point_id"] == e["point_id"]
    assert r["metadata"]["testbed"]["kind"] == "remote"
    assert e["metadata"]["testbed"]["kind"] == "emulated"
    assert shape(r) == shape(e)
    assert all(h["transport"] == "SshHost" for h in r["metadata"]["hosts"].values())
    # No SSH secrets in results.
    assert "proxy_command" not in json.dumps(r["metadata"])
    cols = {}
    for kind in ("remote", "emulated"):
        with open(tmp_path / kind / "remote-smoke" / "tidy.csv") as f:
            cols[kind] = next(csv.reader(f))
    assert cols["remote"] == cols["emulated"]
    assert_nothing_left_running(tb)


def test_unreachable_host_is_reported_before_the_campaign(remote_lab, tmp_path):
    """An inventory host whose sshd is down: named with its cause, no point runs."""
    _, lab, inv = remote_lab
    import copy

    bad = copy.deepcopy(inv)
    for h in bad["host"]:
        if h["name"] == "backend3":
            h["ssh"]["port"] = 2222
    (tmp_path / "bad.toml").write_text(toml_dump(bad))
    results = tmp_path / "res"
    (results / "earlier").mkdir(parents=True)
    (results / "latest").symlink_to("earlier")
    r = bench("run", str(experiment(tmp_path)), "--inventory", str(tmp_path / "bad.toml"),
              "--results", str(results))
    assert r.returncode != 0
    assert "backend3" in r.stderr and "cannot reach" in r.stderr, r.stderr[-2000:]
    # Refused before the campaign: no directory made, results/latest where it was.
    assert sorted(p.name for p in results.iterdir()) == ["earlier", "latest"]
    assert (results / "latest").readlink() == Path("earlier")


TWO_FRONTENDS = """
[campaign]
name = "remote-2fe"
workloads = "workloads.toml"
repetitions = 1
seed = 3

[[target]]
name = "miresga"
label = "miresga-2fe"
params = { frontend_hosts = ["frontend1", "frontend2"] }

[parameters]
workload = ["1KB"]
conn_mode = "close"
connections = 16
threads = 1
duration_s = 2
warmup_s = 0
timeout_s = 5
"""


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_miresga_on_two_front_ends_over_ssh(tmp_path):
    """The miresga target on both front-end hosts of a two-front-end lab reached
    only over SSH: the point is ok, integrity passed, both front-ends served
    requests of it, the switch host's daemon knew each by its own key (one
    connection each, both active), and nothing is left running."""
    tb_dir = tmp_path / "lab"
    tb_dir.mkdir()
    topology = load_topology(REPO / "testbeds" / "two-frontends.toml")
    with EmulatedTestbed(topology, prefix=unique_prefix("r")) as tb, ssh_lab(tb, tb_dir):
        assert [h.name for h in tb.frontends] == ["frontend1", "frontend2"]
        (tmp_path / "workloads.toml").write_text(WORKLOADS)
        (tmp_path / "exp.toml").write_text(TWO_FRONTENDS)
        r = bench("run", str(tmp_path / "exp.toml"), "--inventory", str(tb_dir / "lab.toml"),
                  "--results", str(tmp_path / "res"))
        assert r.returncode == 0, r.stderr[-3000:]
        (f,) = sorted((tmp_path / "res" / "remote-2fe").rglob("rep*.json"))
        doc = json.loads(f.read_text())
        assert doc["status"] == "ok", doc.get("error")
        assert doc["integrity"]["passed"], doc["integrity"]
        assert doc["metadata"]["testbed"]["kind"] == "remote"
        assert doc["target"]["frontends"] == ["frontend1", "frontend2"]
        stats = doc["target"]["stats"]
        for name in ("frontend1", "frontend2"):
            served = (stats["after"]["frontends"][name]["requests"]
                      - stats["before"]["frontends"][name]["requests"])
            assert served > 0, (name, served)
        watched = stats["after"]["switch"]["control"]["frontends"]["frontends"]
        assert {n: (w["state"], w["connections"]) for n, w in watched.items()} == {
            "frontend1": ("active", 1), "frontend2": ("active", 1)}
        assert_nothing_left_running(tb)
