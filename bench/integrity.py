"""The integrity verifier: every object of the manifest, fetched through a target, byte for byte.

    report = verify(client_host, "http://10.10.0.100:80", store.manifest(), rounds=4)
    report.passed, report.failures

It runs on the client host (curl and sha256sum, through the host interface,
so an SSH client host works the same) and compares each response's status,
length and sha256 with the manifest.  `rounds` fetches every object that many
times, so a load balancer that spreads requests over N back-ends is checked
on each of them.  A target that fails here is marked failed in every result
and figure; the bench never silently plots it.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass, field

from hosts.hosts import Host

# Prints "<path> <http code> <bytes> <sha256>" per fetch.  A fetch that fails
# at the transport level prints code 000.
_SCRIPT = r"""
set -u
base="$1"; list="$2"; rounds="$3"; tmp="$4"
r=0
while [ "$r" -lt "$rounds" ]; do
  while read -r path; do
    rm -f "$tmp"
    meta=$(curl -s --max-time 60 -o "$tmp" -w '%{http_code} %{size_download}' "$base$path")
    [ -n "$meta" ] || meta="000 0"
    if [ -f "$tmp" ]; then sum=$(sha256sum < "$tmp" | cut -d' ' -f1); else sum=-; fi
    echo "$path $meta $sum"
  done < "$list"
  r=$((r + 1))
done
rm -f "$tmp"
"""


@dataclass
class IntegrityReport:
    passed: bool
    endpoint: str
    objects: int
    fetches: int
    failures: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if self.passed:
            return f"integrity passed: {self.fetches} fetches of {self.objects} objects"
        if self.error:
            return f"integrity FAILED: {self.error}"
        first = self.failures[0]
        return (f"integrity FAILED: {len(self.failures)} of {self.fetches} fetches wrong, e.g. "
                f"{first['path']}: {first['problem']}")


def verify(client: Host, base_url: str, manifest: dict[str, dict], rounds: int = 1,
           timeout: float = 600) -> IntegrityReport:
    t0 = time.monotonic()
    work = f"{client.workdir}/integrity"
    client.put_text("\n".join(sorted(manifest)) + "\n", f"{work}/paths.txt")
    client.put_text(_SCRIPT, f"{work}/fetch.sh")
    r = client.run(f"sh {work}/fetch.sh {shlex.quote(base_url)} {work}/paths.txt {int(rounds)} "
                   f"{work}/body", check=False, timeout=timeout)
    report = IntegrityReport(False, base_url, len(manifest), 0)
    if not r.ok:
        report.error = f"verifier exited with {r.rc}: {(r.stderr or r.stdout).strip()[-500:]}"
        report.elapsed_s = time.monotonic() - t0
        return report
    seen: dict[str, int] = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        path, code, size, digest = parts
        report.fetches += 1
        seen[path] = seen.get(path, 0) + 1
        want = manifest.get(path)
        problem = None
        if want is None:
            problem = "not in the manifest"
        elif code != "200":
            problem = f"HTTP status {code}"
        elif int(float(size)) != want["size"]:
            problem = f"{size} bytes, expected {want['size']}"
        elif digest != want["sha256"]:
            problem = f"sha256 {digest[:16]}..., expected {want['sha256'][:16]}..."
        if problem:
            report.failures.append({"path": path, "problem": problem, "status": code,
                                    "bytes": int(float(size)), "sha256": digest})
    for path in manifest:
        if seen.get(path, 0) < rounds:
            report.failures.append({"path": path, "problem": "not fetched", "status": None,
                                    "bytes": None, "sha256": None})
    report.passed = not report.failures and report.fetches == len(manifest) * rounds
    report.elapsed_s = time.monotonic() - t0
    return report
