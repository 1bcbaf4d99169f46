"""The switch host's daemon as a target deploys it (python -m switchhost).

The `miresga` and `l4switch` targets both run the one daemon, with their
pipeline, through the host interface only (`run`, `start`, `put_text`,
`put_secret`, `tool`), so a real switch host over SSH works the same as the
emulated switch namespace:

    deploy()   the plan (JSON) and fresh control keys: the daemon's own on the
               switch host (its tools prove it), and one for each front-end
               (Miresga's), on its host and on the switch host, which names the
               front-end when its connection proves it (its liveness,
               switchhost/server.py); fresh per deployment, readable by root only
    start()    the daemon, listening on the control addresses the target names
               (never all of them); returns once it printed its ready line
    ctl()      a management op over the authenticated protocol, from a client
               run on the switch host (python -m switchhost.ctl)
    stop()     stop it (it detaches and unpins), then remove whatever a killed
               daemon left (python -m switchhost --cleanup), so nothing stays
               attached or pinned
"""

from __future__ import annotations

import json
import secrets
import shlex
import time

from switchhost.layouts import CTL_PORT_DEFAULT
from switchhost.protocol import new_key
from targets.base import TargetError

READY_LINE = "switchd ready "
LOCAL = "127.0.0.1"


class Switchd:
    def __init__(self, testbed, pipeline: str, port: int = CTL_PORT_DEFAULT):
        self.host = testbed.switch
        self.pipeline = pipeline
        self.port = port
        self.dir = f"{self.host.workdir}/{pipeline}"
        self.plan_path = f"{self.dir}/plan.json"
        self.key_path = f"{self.dir}/ctl.key"
        self.stats_path = f"{self.dir}/switchd-stats.json"
        self.pin_dir = str(testbed.bpf_dir / f"switchd-{pipeline}")
        self.plan = None
        # front-end name -> its key's path on the switch host (--frontend-key)
        self.frontend_keys: dict[str, str] = {}
        self.process = None
        self.ready: dict | None = None

    def _tool(self, module: str, args: str) -> str:
        return self.host.tool(module, args)

    def deploy(self, plan, frontends: list[tuple] = ()) -> None:
        """The plan on the switch host, a fresh key of the daemon's there, and one
        for each (front-end host, path): at `path` on it and beside the daemon's.
        The host's name is the front-end's in the plan."""
        self.plan = plan
        self.host.put_text(plan.to_json(), self.plan_path)
        self.host.put_secret(new_key() + "\n", self.key_path)
        self.frontend_keys = {}
        for host, path in frontends:
            key = new_key() + "\n"
            host.put_secret(key, path)
            mine = f"{self.dir}/frontend-{host.name}.key"
            self.host.put_secret(key, mine)
            self.frontend_keys[host.name] = mine

    def start(self, listen: list[str], args: str = "", timeout: float = 30.0) -> dict:
        """Run the daemon on `listen` (addresses; the port is ours); its ready line."""
        # Pins a killed daemon left would make it refuse to start (its pin
        # directory must be new); the tc filters it left are replaced on attach.
        self.host.run(f"rm -rf {shlex.quote(self.pin_dir)} {shlex.quote(self.stats_path)}")
        addrs = " ".join(f"--listen {a}:{self.port}" for a in dict.fromkeys(listen))
        keys = "".join(f" --frontend-key {shlex.quote(f'{name}={path}')}"
                       for name, path in self.frontend_keys.items())
        self.process = self.host.start(self._tool("switchhost", (
            f"--pipeline {self.pipeline} --plan {shlex.quote(self.plan_path)} "
            f"--key {shlex.quote(self.key_path)}{keys} {addrs} "
            f"--pin-dir {shlex.quote(self.pin_dir)} "
            f"--stats-file {shlex.quote(self.stats_path)} --log-level WARNING {args}")),
            # A log of its own: a host may append to an old one, ready line included.
            name=f"switchd-{self.pipeline}-{secrets.token_hex(3)}")
        deadline = time.monotonic() + timeout
        while True:
            text = self.process.logs()
            line = next((ln for ln in text.splitlines() if ln.startswith(READY_LINE)), None)
            if line is not None:
                self.ready = json.loads(line[len(READY_LINE):])
                return self.ready
            if not self.process.running():
                raise TargetError(f"switchd exited on {self.host.name}: {text[-3000:]}",
                                  logs=self.logs())
            if time.monotonic() > deadline:
                raise TargetError(f"switchd not ready within {timeout:.0f} s: {text[-3000:]}",
                                  logs=self.logs())
            time.sleep(0.05)

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def ctl(self, op: str, timeout: float = 300, **fields) -> dict:
        """One management op over the control protocol, from the switch host itself."""
        args = " ".join(shlex.quote(f"{k}={json.dumps(v)}") for k, v in fields.items())
        r = self.host.run(self._tool("switchhost.ctl", (
            f"--connect {LOCAL}:{self.port} --key {shlex.quote(self.key_path)} "
            f"--timeout {timeout} {shlex.quote(op)} {args}")), check=False, timeout=timeout + 30)
        try:
            reply = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise TargetError(f"switchd {op}: {(r.stderr or r.stdout).strip()[-1000:]}",
                              logs=self.logs()) from None
        if "error" in reply:
            raise TargetError(f"switchd {op}: {reply['error']}", logs=self.logs())
        return reply

    def read_pins(self) -> dict | None:
        """Counters and occupancy read from the pins now (None if nothing is pinned)."""
        r = self.host.run(self._tool("switchhost", f"--pipeline {self.pipeline} --read-pins "
                                                   f"{shlex.quote(self.pin_dir)}"), check=False)
        return json.loads(r.stdout) if r.ok else None

    def stats_file(self) -> dict | None:
        """The daemon's own numbers, from its last stats file (up to one interval old)."""
        text = self.host.read_text(self.stats_path, missing_ok=True)
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)
            self.process = None
        self.ready = None
        if self.plan is None:
            return
        args = f"--pipeline {self.pipeline} --cleanup {shlex.quote(self.pin_dir)}"
        if self.plan.netns:
            args += f" --netns {shlex.quote(self.plan.netns)}"
        if self.plan.ports:
            args += f" --ports {shlex.quote(','.join(self.plan.ports))}"
        r = self.host.run(self._tool("switchhost", args), check=False, timeout=60)
        if not r.ok:
            raise TargetError(f"switchd cleanup on {self.host.name} failed: "
                              f"{(r.stderr or r.stdout).strip()[-1000:]}")

    def logs(self) -> dict[str, str]:
        if self.process is None:
            return {}
        return {f"{self.host.name}/switchd-{self.pipeline}": self.process.logs()[-20000:]}
