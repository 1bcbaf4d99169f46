"""`bench up TARGET` leaves one target running for one's own tools; `bench down` removes
everything it started; `bench status` shows it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.session import read_session, remove_session_files, session_file
from common.paths import WORK_ROOT
from hosts.backends import ObjectStore
from hosts.testbed import namespace_pids, teardown
from workloads.model import load_workloads

from conftest import unique_prefix
from testbed_checks import leftovers

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.testbed


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


#: A counter of each target's stats that every request through it moves.
REQUESTS = {"haproxy": lambda stats: stats["frontend"]["frontend1"]["requests"],
            "miresga": lambda stats: stats["summary"]["frontend_requests"]}


def status_counters(prefix: str) -> dict:
    """The target's counters as `bench status` prints them (healthy, or the test fails)."""
    st = bench("status", "--prefix", prefix)
    assert st.returncode == 0, st.stdout + st.stderr
    assert "healthy, up" in st.stdout, st.stdout
    return json.loads(re.search(r"^  counters (.*)", st.stdout, re.M | re.S).group(1))


def clean_up(prefix: str) -> None:
    s = read_session(prefix)
    if s is not None and alive(s["pid"]):
        os.kill(s["pid"], signal.SIGKILL)
    teardown(prefix)
    remove_session_files(prefix)


@pytest.mark.parametrize("target", ["haproxy", "miresga"])
def test_up_serves_through_the_vip_and_down_leaves_nothing(target):
    """Up: the VIP answers from the client namespace with the manifest's bytes, by the
    command `up` printed; status shows the target healthy with its counters; a second
    `up` on the same testbed is refused; down: no namespace, process, pin, file or
    session left."""
    prefix = unique_prefix("up")
    manifest = ObjectStore(load_workloads().objects).manifest()
    try:
        r = bench("up", target, "--prefix", prefix)
        assert r.returncode == 0, r.stderr[-3000:]
        out = r.stdout
        assert f"{target} is up on testbed {prefix!r}; integrity passed" in out, out
        assert "http://10.10.0.100:80" in out
        session = read_session(prefix)
        assert session["state"] == "up" and alive(session["pid"])
        for path in session["logs"].values():
            assert Path(path).exists(), path

        before = REQUESTS[target](status_counters(prefix))
        # The printed command, run as printed, with another object.
        cmd = re.search(r"client\s+(ip netns exec \S+ curl .*)", out).group(1)
        cmd = cmd.replace("/obj/1KB/0.bin", "/obj/1MB/2.bin")
        got = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60)
        assert got.stdout.split()[0] == manifest["/obj/1MB/2.bin"]["sha256"], got
        # The testbed's own command runner, through the VIP too.
        ex = subprocess.run([sys.executable, "-m", "bench", "testbed", "exec", "client",
                             "--prefix", prefix, "--", "curl", "-s", "--max-time", "20",
                             "http://10.10.0.100/obj/10KB/1.bin"], capture_output=True,
                            cwd=REPO, timeout=60)
        assert hashlib.sha256(ex.stdout).hexdigest() == manifest["/obj/10KB/1.bin"]["sha256"]

        # The two fetches (and the health check of each status) went through the target.
        assert REQUESTS[target](status_counters(prefix)) >= before + 2
        again = bench("up", target, "--prefix", prefix)
        assert again.returncode == 2 and "already up" in again.stderr, again.stderr

        down = bench("down", "--prefix", prefix)
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"{target} and testbed {prefix!r} are down" in down.stdout
        assert not alive(session["pid"])
        assert leftovers(prefix) == []
        assert not session_file(prefix).exists()
        assert not (WORK_ROOT / prefix).exists()
        assert bench("status", "--prefix", prefix).returncode == 1
    finally:
        clean_up(prefix)


#: One cluster of two back-ends, every path to it: what `up --service` reads.
PAIR_SERVICE = """
default_cluster = "pair"

[[cluster]]
name = "pair"
backends = ["backend2", "backend3"]

[[rule]]
path_prefix = "/obj/"
cluster = "pair"
"""


def test_up_with_a_service_file_routes_by_it(tmp_path):
    """`up --service FILE`: the target serves the file's one cluster, not the campaigns'
    two; an object fetched through the VIP by the file's route has the manifest's bytes,
    and only the cluster's back-ends answered."""
    service = tmp_path / "pair.toml"
    service.write_text(PAIR_SERVICE)
    prefix = unique_prefix("up")
    manifest = ObjectStore(load_workloads().objects).manifest()
    try:
        r = bench("up", "haproxy", "--prefix", prefix, "--service", str(service))
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"haproxy is up on testbed {prefix!r}; integrity passed" in r.stdout, r.stdout
        assert read_session(prefix)["service"] == str(service.resolve())
        got = subprocess.run(["ip", "netns", "exec", f"{prefix}-client", "curl", "-s",
                              "--max-time", "20", "http://10.10.0.100/obj/100KB/3.bin"],
                             capture_output=True, timeout=60)
        assert hashlib.sha256(got.stdout).hexdigest() == manifest["/obj/100KB/3.bin"]["sha256"]
        served = status_counters(prefix)["backends"]
        assert set(served) == {"backend2", "backend3"}, served
        assert all(b["requests"] > 0 for b in served.values()), served
    finally:
        clean_up(prefix)


def test_a_killed_session_is_cleaned_up_by_its_guard_and_down():
    """The session process dies (SIGKILL): the testbed's guard removes the testbed;
    status says the session is gone; down removes the rest."""
    prefix = unique_prefix("up")
    try:
        r = bench("up", "direct", "--prefix", prefix)
        assert r.returncode == 0, r.stderr[-3000:]
        state = read_session(prefix)
        assert set(state["logs"]) == {f"nginx-backend on backend{i}" for i in range(1, 5)}
        assert all(path in r.stdout for path in state["logs"].values())
        pid = state["pid"]
        nginx = [p for ns in (f"{prefix}-backend1",) for p in namespace_pids(ns)]
        assert nginx
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not leftovers(prefix), 30, "the guard removes the testbed")
        assert not any(alive(p) for p in nginx)
        st = bench("status", "--prefix", prefix)
        assert st.returncode == 1 and "is gone" in st.stdout, st.stdout
        down = bench("down", "--prefix", prefix)
        assert down.returncode == 0 and not session_file(prefix).exists()
    finally:
        clean_up(prefix)


def test_up_refuses_before_creating_anything(tmp_path):
    """A target the topology cannot carry, a bad parameter, a service naming a back-end
    the topology lacks: named, and nothing made."""
    text = (REPO / "testbeds" / "emulated.toml").read_text()
    topo = tmp_path / "nofe.toml"
    topo.write_text(text.replace('[[host]]\nname = "frontend1"\nrole = "frontend"\n'
                                 'address = "10.10.2.2/24"\n', ""))
    service = tmp_path / "b9.toml"
    service.write_text(PAIR_SERVICE.replace('"backend3"', '"backend9"'))
    prefix = unique_prefix("up")
    cases = [
        (["haproxy", "--topology", str(topo)],
         f"target haproxy: needs a host with role 'frontend', and the testbed has none "
         f"(testbed {topo})"),
        (["miresga", "--param", "wscale=99"], "bench up miresga: --param wscale: Input should "
                                              "be less than or equal to 14"),
        (["miresga", "--param", "offload_after_bytes=lots"],
         "--param offload_after_bytes: Input should be a valid integer"),
        (["direct", "--param", "backend=backend9"],
         "target direct params.backend: 'backend9' is not a host with role 'backend'"),
        (["nosuch"], "unknown target 'nosuch'"),
        (["haproxy", "--service", str(service)],
         f"{service}: clusters: back-end 'backend9' is not a host with role 'backend' of "
         f"{REPO / 'testbeds' / 'emulated.toml'}"),
    ]
    try:
        for args, expect in cases:
            r = bench("up", *args, "--prefix", prefix)
            assert r.returncode == 2 and expect in r.stderr, (args, r.stderr)
            assert leftovers(prefix) == [] and not session_file(prefix).exists()
    finally:
        clean_up(prefix)

