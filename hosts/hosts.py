"""One host interface, two transports.

Everything the bench does on a host goes through `Host`: `run` a command,
`start` one in the background (a `Process` with stop, wait and logs), `put`
and `get` files.  `NetnsHost` is a network namespace on this machine;
`SshHost` is a machine reached over SSH with fabric.  Targets, workloads and
the runner only see `Host`, so an experiment runs unchanged on either.

Commands are shell strings on both transports (SSH always runs a shell).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import HostError
from common.netns import netns_path
from common.paths import REPO_ROOT


@dataclass
class Result:
    cmd: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def _fail(host: "Host", r: Result) -> HostError:
    tail = (r.stderr or r.stdout).strip()[-2000:]
    return HostError(f"{host.name}: `{r.cmd}` exited with {r.rc}" + (f":\n{tail}" if tail else ""))


@dataclass
class LinkFacts:
    """What the data plane needs to know about a host's link to the switch."""

    iface: str | None = None                # the host's data-plane interface
    mac: str | None = None                  # its MAC
    gateway: ipaddress.IPv4Address | None = None  # the switch's address on the link
    switch_port: str | None = None          # the switch's interface on the link
    switch_mac: str | None = None           # that interface's MAC


class Process(ABC):
    """A command running in the background on a host."""

    def __init__(self, host: "Host", name: str, cmd: str, log_path: str):
        self.host = host
        self.name = name
        self.cmd = cmd
        self.log_path = log_path

    @property
    @abstractmethod
    def pid(self) -> int: ...

    @abstractmethod
    def running(self) -> bool: ...

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Exit code, or None if still running when `timeout` passed."""

    @abstractmethod
    def _signal_group(self, sig: int) -> None: ...

    def signal(self, sig: int) -> None:
        """Send a signal to the whole process group (SIGKILL models a crash)."""
        self._signal_group(sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after `timeout`; returns the exit code."""
        if not self.running():
            return self.wait(0)
        self._signal_group(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None and self.running():
            self._signal_group(signal.SIGKILL)
            rc = self.wait(timeout)
        return rc

    def logs(self) -> str:
        return self.host.read_text(self.log_path, missing_ok=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host.name}:{self.name} pid={self.pid}>"


class Host(ABC):
    """A machine of the testbed, whatever the transport."""

    def __init__(self, name: str, role: str, address: ipaddress.IPv4Address | None,
                 workdir: str, link: LinkFacts | None = None, cpus: str = ""):
        self.name = name
        self.role = role
        self.address = address
        self.workdir = workdir
        self.link = link or LinkFacts()
        self.cpus = cpus
        self._processes: list[Process] = []
        self._lock = threading.Lock()

    # Link facts read as host attributes: host.iface, host.mac, ...
    iface = property(lambda self: self.link.iface)
    mac = property(lambda self: self.link.mac)
    gateway = property(lambda self: self.link.gateway)
    switch_port = property(lambda self: self.link.switch_port)
    switch_mac = property(lambda self: self.link.switch_mac)

    netns: str | None = None
    #: where this repository is on the host (host-side tools run from here)
    repo_dir: str = str(REPO_ROOT)
    #: the Python that runs host-side tools (agent loader, switch daemon);
    #: they use the standard library only, so a bare python3 does
    python: str = sys.executable

    def tool(self, module: str, args: str = "") -> str:
        """A shell command running `python -m module args` from the repo on this host."""
        # exec: the tool replaces the shell, so Process.stop() signals the tool
        # itself and its exit code is the tool's.
        return (f"cd {shlex.quote(self.repo_dir)} && "
                f"exec {self.python} -m {module} {args}").rstrip()

    def _wrap(self, cmd: str) -> str:
        # Pin what runs on a host to the host's CPUs, so roles do not steal
        # each other's cores when the topology says they should not.
        if self.cpus:
            return f"taskset -c {self.cpus} sh -c {shlex.quote(cmd)}"
        return cmd

    @abstractmethod
    def _run(self, cmd: str, timeout: float | None, env: dict | None,
             stdin: str | None) -> Result: ...

    def run(self, cmd: str, check: bool = True, timeout: float | None = 120,
            env: dict | None = None, stdin: str | None = None) -> Result:
        r = self._run(self._wrap(cmd), timeout, env, stdin)
        r.cmd = cmd
        if check and not r.ok:
            raise _fail(self, r)
        return r

    @abstractmethod
    def _start(self, cmd: str, name: str, log_path: str, env: dict | None) -> Process: ...

    def start(self, cmd: str, name: str | None = None, env: dict | None = None) -> Process:
        """Run `cmd` in the background in its own process group; output goes to a log."""
        name = name or shlex.split(cmd)[0].rsplit("/", 1)[-1]
        log_path = f"{self.workdir}/logs/{name}.log"
        self.run(f"mkdir -p {shlex.quote(self.workdir)}/logs")
        p = self._start(self._wrap(cmd), name, log_path, env)
        with self._lock:
            self._processes.append(p)
        return p

    def processes(self) -> list[Process]:
        """The processes this object started and has not stopped yet."""
        with self._lock:
            return list(self._processes)

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every process this object started (not others on the host)."""
        with self._lock:
            procs, self._processes = self._processes, []
        for p in reversed(procs):
            try:
                p.stop(timeout)
            except HostError:
                pass

    @abstractmethod
    def put(self, local: str | Path, remote: str) -> None: ...

    @abstractmethod
    def get(self, remote: str, local: str | Path) -> None: ...

    def put_text(self, text: str, remote: str, mode: int | None = None) -> None:
        self.run(f"mkdir -p {shlex.quote(os.path.dirname(remote) or '.')}")
        self._put_text(text, remote)
        if mode is not None:
            self.run(f"chmod {mode:o} {shlex.quote(remote)}")

    @abstractmethod
    def _put_text(self, text: str, remote: str) -> None: ...

    def put_secret(self, text: str, remote: str) -> None:
        """Write a file readable by its owner only, from its creation on (umask
        077, then an atomic rename): a key is never on the host with wider modes."""
        d, tmp = os.path.dirname(remote) or ".", f"{remote}.tmp"
        self.run(f"umask 077 && mkdir -p {shlex.quote(d)} && cat > {shlex.quote(tmp)} && "
                 f"chmod 600 {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(remote)}",
                 stdin=text)

    def read_text(self, remote: str, missing_ok: bool = False) -> str:
        r = self.run(f"cat {shlex.quote(remote)}", check=not missing_ok)
        return r.stdout if r.ok else ""

    def cpu_ns(self) -> int | None:
        """CPU time of the host's processes in ns, where the transport can tell."""
        return None

    #: ethtool -k names of the link features the bench reads and sets, by -K name
    OFFLOADS = {"tx": "tx-checksumming", "tso": "tcp-segmentation-offload",
                "gso": "generic-segmentation-offload", "gro": "generic-receive-offload"}

    def offloads(self, dev: str | None = None) -> dict[str, bool]:
        """What ethtool reports of OFFLOADS on `dev` (default: the data-plane interface)."""
        r = self.run(f"ethtool -k {shlex.quote(dev or self.iface)}")
        feats = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
        return {k: feats.get(v, "").strip().startswith("on") for k, v in self.OFFLOADS.items()}

    def set_offloads(self, dev: str | None, features: dict[str, bool]) -> None:
        args = " ".join(f"{k} {'on' if v else 'off'}" for k, v in features.items())
        self.run(f"ethtool -K {shlex.quote(dev or self.iface)} {args}")

    def close(self) -> None:
        self.stop_all()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.role}) {self.address}>"


# ------------------------------------------------------------ namespaces

class NetnsProcess(Process):
    def __init__(self, host, name, cmd, log_path, popen: subprocess.Popen):
        super().__init__(host, name, cmd, log_path)
        self._p = popen

    @property
    def pid(self) -> int:
        return self._p.pid

    def running(self) -> bool:
        return self._p.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._p.pid, sig)
        except ProcessLookupError:
            pass


class NetnsHost(Host):
    """A host that is a network namespace of this machine.

    Commands enter only the network namespace (nsenter --net), not a mount
    namespace as `ip netns exec` does: bpffs pins, /tmp and the repository
    look the same on every emulated host, as a shared filesystem would.
    """

    def __init__(self, name, role, address, workdir, netns: str, link=None, cpus="",
                 cgroup=None):
        super().__init__(name, role, address, workdir, link, cpus)
        self.netns = netns
        self.cgroup = cgroup
        self._enter = ["nsenter", f"--net={netns_path(netns)}", "--"]

    def _sh(self, cmd: str) -> list[str]:
        # Join the host's cgroup first, so its CPU counter sees everything.
        join = self.cgroup.join_snippet() if self.cgroup is not None else ""
        return self._enter + ["sh", "-c", join + cmd]

    def argv(self, cmd: str) -> list[str]:
        """The argv that runs a shell command on this host, for callers that spawn."""
        return self._sh(self._wrap(cmd))

    def cpu_ns(self) -> int | None:
        """CPU time used by every process this host ever ran, in nanoseconds."""
        return self.cgroup.usage_ns() if self.cgroup is not None else None

    def _run(self, cmd, timeout, env, stdin):
        try:
            p = subprocess.run(self._sh(cmd), capture_output=True, text=True,
                               timeout=timeout, env=_env(env), input=stdin,
                               errors="replace")
        except subprocess.TimeoutExpired as e:
            return Result(cmd, 124, _s(e.stdout), _s(e.stderr) + f"\ntimed out after {timeout}s")
        return Result(cmd, p.returncode, p.stdout, p.stderr)

    def _start(self, cmd, name, log_path, env):
        log = open(log_path, "ab")
        try:
            popen = subprocess.Popen(self._sh(cmd), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=_env(env), start_new_session=True)
        finally:
            log.close()
        return NetnsProcess(self, name, cmd, log_path, popen)

    def put(self, local, remote):
        os.makedirs(os.path.dirname(remote) or ".", exist_ok=True)
        if Path(local).is_dir():
            shutil.copytree(local, remote, dirs_exist_ok=True)
        else:
            shutil.copyfile(local, remote)

    def get(self, remote, local):
        os.makedirs(os.path.dirname(str(local)) or ".", exist_ok=True)
        if Path(remote).is_dir():
            shutil.copytree(remote, local, dirs_exist_ok=True)
        else:
            shutil.copyfile(remote, local)

    def _put_text(self, text, remote):
        Path(remote).write_text(text)


def _env(extra: dict | None):
    if not extra:
        return None
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _s(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


# ------------------------------------------------------------------- SSH

@dataclass
class SshTarget:
    """How to reach a host over SSH (an inventory entry's `ssh` table)."""

    host: str
    user: str = "root"
    port: int = 22
    key: str | None = None
    # A ProxyCommand ("ssh -W %h:%p jump", or on an emulated "remote"
    # testbed "nsenter --net=/run/netns/X nc %h %p"), or a jump host name.
    proxy_command: str | None = None
    jump: "SshTarget | None" = None
    sudo: bool = False              # prefix commands with `sudo -n`
    connect_timeout: float = 10.0
    extra: dict = field(default_factory=dict)


class SshProcess(Process):
    def __init__(self, host: "SshHost", name, cmd, log_path, pid: int, rc_path: str):
        super().__init__(host, name, cmd, log_path)
        self._pid = pid
        self._rc_path = rc_path
        self._rc: int | None = None

    @property
    def pid(self) -> int:
        return self._pid

    def running(self) -> bool:
        if self._rc is not None:
            return False
        return self.host.run(f"kill -0 {self._pid} 2>/dev/null", check=False).ok

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._rc is not None:
                return self._rc
            if not self.running():
                text = self.host.read_text(self._rc_path, missing_ok=True).strip()
                # No rc file: the wrapper shell was killed with the group.
                self._rc = int(text) if text.lstrip("-").isdigit() else -signal.SIGKILL
                return self._rc
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        self.host.run(f"kill -{int(sig)} -- -{self._pid} 2>/dev/null", check=False)

    def stop(self, timeout: float = 5.0) -> int | None:
        rc = super().stop(timeout)
        self.host.run(f"rm -f {self.host.pid_dir}/{self._pid}", check=False)
        return rc


#: The interpreter host-side tools (and the extra host's attacks) run under on an SSH
#: host whose inventory names none: the first python3 on the login PATH.
REMOTE_PYTHON = "python3"


class SshHost(Host):
    """A host reached over SSH with fabric (paramiko underneath)."""

    def __init__(self, name, role, address, workdir, ssh: SshTarget, link=None, cpus="",
                 python: str = REMOTE_PYTHON):
        super().__init__(name, role, address, workdir, link, cpus)
        self.ssh = ssh
        self.python = python
        self._conn = None
        self.repo_dir = f"{workdir}/repo"  # where `deploy` ships the repository

    @property
    def conn(self):
        if self._conn is None:
            self._conn = self._connect(self.ssh)
        return self._conn

    @staticmethod
    def _connect(t: SshTarget):
        from fabric import Connection  # heavy (paramiko): only where SSH is used

        kwargs = {"banner_timeout": t.connect_timeout,
                  "auth_timeout": t.connect_timeout, "look_for_keys": t.key is None,
                  "allow_agent": t.key is None}
        if t.key:
            kwargs["key_filename"] = [os.path.expanduser(t.key)]
        gateway = None
        if t.proxy_command:
            # Expand the tokens here: fabric's own expansion does not know
            # this connection's port and would put 22 for %p.
            gateway = (t.proxy_command.replace("%h", t.host).replace("%p", str(t.port))
                       .replace("%r", t.user))
        elif t.jump is not None:
            gateway = SshHost._connect(t.jump)
        return Connection(host=t.host, user=t.user, port=t.port, connect_kwargs=kwargs,
                          gateway=gateway, connect_timeout=t.connect_timeout)

    def check(self) -> None:
        """Open the connection now, so an unreachable host fails before a run.

        Through a jump host, the jump host is reached first and its failure is
        named as its own: the host behind it was then never tried.
        """
        conn = self.conn
        jump = self.ssh.jump
        if jump is not None:
            try:
                conn.gateway.open()
            except Exception as e:  # paramiko raises many types; name the cause
                self._conn = None
                raise HostError(f"{self.name}: the jump host {jump.user}@{jump.host}:{jump.port} "
                                f"cannot be reached ({type(e).__name__}: {e}); {self.name} "
                                f"itself was not tried") from None
        try:
            conn.open()
        except Exception as e:
            self._conn = None
            via = (f" through the jump host {jump.user}@{jump.host}:{jump.port}, which was "
                   f"reached" if jump is not None else "")
            raise HostError(f"{self.name}: cannot reach {self.ssh.user}@{self.ssh.host}:"
                            f"{self.ssh.port}{via}: {type(e).__name__}: {e}") from None

    def _sudo(self, cmd: str) -> str:
        return f"sudo -n sh -c {shlex.quote(cmd)}" if self.ssh.sudo else cmd

    def _run(self, cmd, timeout, env, stdin):
        from io import StringIO

        full = self._sudo(cmd)
        if env:
            full = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + " " + full
        with self._lock:
            try:
                r = self.conn.run(full, hide=True, warn=True, timeout=timeout, pty=False,
                                  in_stream=StringIO(stdin) if stdin is not None else False)
            except Exception as e:
                self._conn = None
                from invoke.exceptions import CommandTimedOut

                if isinstance(e, CommandTimedOut):
                    return Result(cmd, 124, "", f"timed out after {timeout}s")
                raise HostError(f"{self.name}: `{cmd}` could not run over SSH: "
                                f"{type(e).__name__}: {e}") from None
        return Result(cmd, r.exited, r.stdout, r.stderr)

    def _start(self, cmd, name, log_path, env):
        rc_path = f"{log_path}.rc"
        # The command runs in a shell of its own so that an `exit` in it
        # still lets the wrapper record the exit code.
        inner = f"sh -c {shlex.quote(cmd)}; echo $? > {shlex.quote(rc_path)}"
        if env:
            inner = " ".join(f"export {k}={shlex.quote(str(v))};" for k, v in env.items()) + inner
        # setsid: a session of its own, so the process outlives this SSH
        # session and `kill -- -PID` reaches everything it started.
        launch = (f"rm -f {shlex.quote(rc_path)}; setsid sh -c {shlex.quote(self._sudo(inner))} "
                  f"> {shlex.quote(log_path)} 2>&1 < /dev/null & echo $!")
        pid = int(self.run(launch).stdout.strip())
        # Recorded on the host, so that a later session can clean up after a
        # run whose controller died or lost its connection (cleanup_leftovers).
        self.run(f"mkdir -p {self.pid_dir} && echo {shlex.quote(name)} > {self.pid_dir}/{pid}")
        return SshProcess(self, name, cmd, log_path, pid, rc_path)

    @property
    def pid_dir(self) -> str:
        return f"{self.workdir}/pids"

    def cleanup_leftovers(self, grace: float = 2.0) -> list[str]:
        """Kill the process groups a previous session started here and did not stop."""
        d = shlex.quote(self.pid_dir)
        script = (
            f"d={d}; [ -d $d ] || exit 0; killed=''; "
            f"for f in $d/*; do [ -f \"$f\" ] || continue; p=${{f##*/}}; "
            f"if kill -TERM -- -$p 2>/dev/null; then echo \"$(cat $f) (pid $p)\"; "
            f"killed=\"$killed $p\"; fi; done; "
            f"if [ -n \"$killed\" ]; then sleep {grace}; "
            f"for p in $killed; do kill -KILL -- -$p 2>/dev/null; done; fi; rm -f $d/*")
        return self.run(script, check=False).stdout.splitlines()

    def put(self, local, remote):
        local = Path(local)
        self.run(f"mkdir -p {shlex.quote(os.path.dirname(remote) or '.')}")
        if local.is_dir():
            self._put_tree(local, remote)
            return
        with self._lock:
            self.conn.put(str(local), remote)

    def _put_tree(self, local: Path, remote: str) -> None:
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as tmp:
            with tarfile.open(tmp.name, "w:gz") as tar:
                tar.add(str(local), arcname=".")
            staged = f"/tmp/.bench-put-{os.getpid()}-{threading.get_ident()}.tar.gz"
            with self._lock:
                self.conn.put(tmp.name, staged)
            self.run(f"mkdir -p {shlex.quote(remote)} && tar -xzf {staged} -C "
                     f"{shlex.quote(remote)} && rm -f {staged}")

    def get(self, remote, local):
        os.makedirs(os.path.dirname(str(local)) or ".", exist_ok=True)
        with self._lock:
            self.conn.get(remote, str(local))

    def _put_text(self, text, remote):
        from io import BytesIO

        with self._lock:
            self.conn.put(BytesIO(text.encode()), remote)

    def disconnect(self) -> None:
        """Drop the connection, leaving processes running (as a lost connection does)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        super().close()
        self.disconnect()
