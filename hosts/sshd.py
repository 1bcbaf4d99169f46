"""A real sshd on an emulated host, so the SSH transport is exercised for real.

Used by the tests and by the emulated "remote" testbed: each namespace host
runs its own OpenSSH daemon on its own address, with keys generated for the
occasion, and the bench reaches it with fabric exactly as it would a server.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from common.errors import HostError
from hosts.hosts import NetnsHost, Process, SshTarget

SSHD = "/usr/sbin/sshd"


@dataclass
class Keys:
    dir: Path
    host_key: Path
    client_key: Path
    authorized_keys: Path


def make_keys(directory: str | Path) -> Keys:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    keys = Keys(d, d / "ssh_host_ed25519_key", d / "id_ed25519", d / "authorized_keys")
    for path in (keys.host_key, keys.client_key):
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                           check=True)
    keys.authorized_keys.write_text((d / "id_ed25519.pub").read_text())
    keys.authorized_keys.chmod(0o600)
    return keys


def start_sshd(host: NetnsHost, keys: Keys, port: int = 22, timeout: float = 10.0,
               address: str | None = None, private_mounts: bool = False) -> Process:
    """Start sshd in the foreground on the host's address; returns once it listens.

    private_mounts: in a mount namespace of its own, so that what its sessions mount
    stays theirs (an emulated host otherwise shares the machine's mounts: a hugepage
    mount made over SSH would be every test's and every testbed's).
    """
    address = address or str(host.address)
    conf = Path(host.workdir) / f"sshd-{port}" / "sshd_config"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("\n".join([
        f"Port {port}",
        f"ListenAddress {address}",
        f"HostKey {keys.host_key}",
        f"PidFile {conf.parent / 'sshd.pid'}",
        f"AuthorizedKeysFile {keys.authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # The keys live in a shared temporary directory, not in ~/.ssh.
        "StrictModes no",
        "Subsystem sftp internal-sftp",
        "MaxStartups 100:30:200",
        "MaxSessions 100",
        "",
    ]))
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    unshare = "unshare --mount --propagation private " if private_mounts else ""
    proc = host.start(f"{unshare}{SSHD} -D -e -f {shlex.quote(str(conf))}", name=f"sshd-{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running():
            raise HostError(f"{host.name}: sshd exited: {proc.logs()[-1000:]}")
        if host.run(f"ss -Hltn 'sport = :{port}' | grep -q .", check=False).ok:
            return proc
        time.sleep(0.05)
    proc.stop()
    raise HostError(f"{host.name}: sshd did not listen on port {port} within {timeout}s")


def dial_from(netns: str) -> str:
    """A ProxyCommand that opens the TCP connection from inside a namespace.

    The root namespace has no route into an emulated testbed (on purpose: two
    testbeds may use the same addresses), so SSH to an emulated host starts
    its TCP connection inside one of the testbed's namespaces, like a
    connection through a jump host.
    """
    return f"nsenter --net=/run/netns/{netns} nc %h %p"


def target_for(host: NetnsHost, keys: Keys, via_netns: str, port: int = 22) -> SshTarget:
    return SshTarget(host=str(host.address), user="root", port=port, key=str(keys.client_key),
                     proxy_command=dial_from(via_netns))
