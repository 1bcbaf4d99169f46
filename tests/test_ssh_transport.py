"""The SSH transport, for real: sshd in namespace hosts, driven through fabric."""

from __future__ import annotations

import hashlib
import os

import pytest

from common.errors import HostError
from hosts.hosts import SshHost
from hosts.sshd import make_keys, start_sshd, target_for

pytestmark = pytest.mark.testbed


@pytest.fixture(scope="module")
def ssh_hosts(module_testbed, tmp_path_factory):
    """backend3 running a real sshd, and an SshHost that reaches it from the client's side."""
    tb = module_testbed
    keys = make_keys(tmp_path_factory.mktemp("keys"))
    be = tb.host("backend3")
    sshd = start_sshd(be, keys)
    remote = SshHost("backend3", "backend", be.address, "/tmp/miresga-ssh-test",
                     target_for(be, keys, via_netns=tb.host("client").netns))
    yield tb, remote, sshd
    remote.close()
    sshd.stop()


def test_runs_a_command_on_the_remote_host(ssh_hosts):
    """The command runs inside backend3's network namespace, reached over SSH."""
    tb, remote, _ = ssh_hosts
    r = remote.run("ip -br addr show eth0")
    assert str(tb.host("backend3").address) in r.stdout
    r = remote.run("exit 3", check=False)
    assert r.rc == 3
    with pytest.raises(HostError, match="exited with 3"):
        remote.run("echo oops >&2; exit 3")


def test_copies_files_both_ways(ssh_hosts, tmp_path):
    """put then get 1 MiB of random bytes: the sha256 survives both trips."""
    _, remote, _ = ssh_hosts
    data = os.urandom(1 << 20)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    remote.put(src, "/tmp/miresga-ssh-test/sub/up.bin")
    r = remote.run("sha256sum /tmp/miresga-ssh-test/sub/up.bin")
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back.bin"
    remote.get("/tmp/miresga-ssh-test/sub/up.bin", back)
    assert back.read_bytes() == data


def test_copies_a_directory(ssh_hosts, tmp_path):
    _, remote, _ = ssh_hosts
    (tmp_path / "tree" / "a").mkdir(parents=True)
    (tmp_path / "tree" / "a" / "f.txt").write_text("hello")
    remote.put(tmp_path / "tree", "/tmp/miresga-ssh-test/tree")
    assert remote.read_text("/tmp/miresga-ssh-test/tree/a/f.txt") == "hello"


def test_background_process_stop_wait_logs(ssh_hosts):
    """start() returns a process that runs detached, logs, and stops with its group."""
    _, remote, _ = ssh_hosts
    p = remote.start("echo started; sleep 600", name="sleeper")
    assert p.running()
    for _ in range(50):
        if "started" in p.logs():
            break
    assert "started" in p.logs()
    p.stop(timeout=5)
    assert not p.running()
    assert remote.run(f"ps -o pid= -g {p.pid}", check=False).stdout.strip() == ""
    q = remote.start("exit 7", name="quick")
    assert q.wait(10) == 7


def test_unreachable_host_names_host_and_cause(module_testbed, tmp_path):
    """A host whose sshd is not running fails on check(), naming host and cause."""
    tb = module_testbed
    keys = make_keys(tmp_path / "keys")
    be = tb.host("backend4")  # no sshd here
    remote = SshHost("backend4", "backend", be.address, "/tmp/x",
                     target_for(be, keys, via_netns=tb.host("client").netns))
    remote.ssh.connect_timeout = 3
    with pytest.raises(HostError) as e:
        remote.check()
    assert "backend4" in str(e.value) and "cannot reach" in str(e.value)
