"""Bodies under load: a checksumming client beside the load generator, during every point.

    check = BodyCheck(client, url, manifest, paths, duration_s=20, timeout_s=5).start()
    load = runner.run(...)               # the measured load
    out = check.finish()                 # {"checked": n, "mismatched": m, ...}

wrk counts bytes, it does not read them; the integrity verifier
(bench/integrity.py) fetches every object once, serially, before a target's
points.  Neither sees a body that goes wrong under load: a hand-off that
loses a segment at 40,000 requests/s, a re-route that splices two back-ends'
bytes.  So for the point's duration two prober processes
(workloads/probe/httpprobe.py) run on the client host beside wrk, over the
objects the point's workload draws: one on a kept-alive connection (its
requests cross the service's clusters when the workload's objects do, so
re-routes are checked too), one with a connection per request, each checking
every response's length and sha256 against the back-ends' manifest.  Each pauses between requests: the check is
a sample of the bodies the load gets, not a load of its own.

A body that arrives with status 200 and other bytes than the manifest's is a
mismatch, and fails the point (bench/runner.py).  A request that fails (a
timeout under overload, a reset) is counted, not a mismatch: wrk's error
counts already say how the load went.  A checker that printed no result is
an error, which fails the point too: an unchecked point is not a clean one.
"""

from __future__ import annotations

import json
import random
import shlex

from common.paths import REPO_ROOT

PROBER = REPO_ROOT / "workloads" / "probe" / "httpprobe.py"
#: Pause after each checked response, per connection: at most about 200 checks
#: a second per mode, whatever the load's rate.
PAUSE_MS = 5.0
#: Objects a point's check cycles through, spread over the workload's list.
MAX_OBJECTS = 64
MODES = ("keep_alive", "close")


def sample(paths: list[str], n: int = MAX_OBJECTS) -> list[str]:
    """At most n of the paths, evenly spread (every size of a mix keeps its share)."""
    paths = sorted(set(paths))
    if len(paths) <= n:
        return paths
    step = len(paths) / n
    return [paths[int(i * step)] for i in range(n)]


class BodyCheck:
    """The two checking clients of one point, on the client host."""

    def __init__(self, client, url: str, manifest: dict[str, dict], paths: list[str],
                 duration_s: float, timeout_s: float):
        self.client, self.url = client, url
        self.duration_s, self.timeout_s = duration_s, timeout_s
        self.work = f"{client.workdir}/bodies"
        chosen = [p for p in sample(paths) if p in manifest]
        # Sizes interleaved, not in runs: on a service whose clusters split the
        # objects, the kept-alive connection then moves between clusters (a
        # re-route) from one request to the next.
        random.Random(0).shuffle(chosen)
        self.objects = len(chosen)
        self.lines = "".join(f"{p} {manifest[p]['size']} {manifest[p]['sha256']}\n"
                             for p in chosen)
        self.procs: dict = {}

    def start(self) -> "BodyCheck":
        if not self.lines:
            return self
        self.client.put_text(self.lines, f"{self.work}/paths.txt")
        self.client.put(PROBER, f"{self.work}/httpprobe.py")
        for mode in MODES:
            self.client.run(f"rm -f {self.work}/{mode}.json")
            # One bin for the whole point: the counts are what matters here.
            cmd = (f"exec {self.client.python} {self.work}/httpprobe.py "
                   f"--base {shlex.quote(self.url)} --paths {self.work}/paths.txt "
                   f"--duration {self.duration_s} --concurrency 1 --timeout {self.timeout_s} "
                   f"--bin-ms {self.duration_s * 1000} --pause-ms {PAUSE_MS}"
                   + (" --close" if mode == "close" else ""))
            self.procs[mode] = self.client.start(f"{cmd} > {self.work}/{mode}.json",
                                                 name=f"bodies-{mode}")
        return self

    def abort(self) -> None:
        for p in self.procs.values():
            p.stop()

    def finish(self) -> dict:
        """Wait for both checkers; their counts, summed, and the first mismatches."""
        out: dict = {"objects": self.objects, "checked": 0, "mismatched": 0, "failed": 0,
                     "error": None}
        if not self.lines:
            out["error"] = "no object of the point's workload is in the manifest"
            return out
        errors = []
        for mode, proc in self.procs.items():
            if proc.wait(self.timeout_s + 30) is None:
                proc.stop()
            text = self.client.read_text(f"{self.work}/{mode}.json", missing_ok=True)
            try:
                probe = json.loads(text)
            except (json.JSONDecodeError, TypeError):
                errors.append(f"the {mode} checker printed no result: {proc.logs()[-500:]}")
                continue
            t = probe["totals"]
            part = {"checked": t["ok"] + t["corrupt"], "mismatched": t["corrupt"],
                    "failed": t["failed"], "errors": probe.get("errors", {}),
                    "mismatches": [s for s in probe.get("samples", [])
                                   if s["outcome"] == "corrupt"][:5]}
            out[mode] = part
            for k in ("checked", "mismatched", "failed"):
                out[k] += part[k]
        out["error"] = "; ".join(errors) or None
        return out


def problem(out: dict | None) -> str | None:
    """Why a point's bodies fail it, or None."""
    if out is None:
        return None
    if out["mismatched"]:
        return (f"{out['mismatched']} of {out['checked']} bodies checked during the point "
                f"did not match the manifest")
    return out["error"]
