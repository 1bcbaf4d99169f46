"""The integrity verifier: every object of the manifest, fetched through a target, byte for byte.

    report = verify(client_host, "http://10.10.0.100:80", store.manifest(), rounds=4)
    report.passed, report.failures

It runs on the client host (curl and sha256sum, through the host interface,
so an SSH client host works the same) and compares each response's status,
length and sha256 with the manifest.  `rounds` fetches every object that many
times, so a load balancer that spreads requests over N back-ends is checked
on each of them.  `alternate` (header sets, e.g. one Host per cluster) adds
one more round on a single kept-alive connection (one curl, `--next` between
the objects), each request taking the next header set in turn, so an L7 load
balancer re-routes that connection on every request and every re-routed
response is checked too; the report says how many connections curl needed
for it (1 if the target kept the connection).  A target that fails here is marked failed in every result
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


# One connection, every object in turn, each with the next header set of
# $hostlist ("Name: value" lines); prints the same lines as _SCRIPT, then
# "connections <n>": the connections curl opened for the round.
_ALTERNATE = r"""
set -u
base="$1"; list="$2"; hostlist="$3"; tmp="$4"
nh=$(wc -l < "$hostlist")
set --
i=0
while read -r path; do
  h=$(sed -n "$((i % nh + 1))p" "$hostlist")
  [ "$i" -gt 0 ] && set -- "$@" --next
  set -- "$@" -s --max-time 60 -H "$h" -o "$tmp.$i" -w '%{http_code} %{size_download} %{num_connects}\n' "$base$path"
  i=$((i + 1))
done < "$list"
curl "$@" > "$tmp.meta" || true
i=0; conns=0
while read -r path; do
  meta=$(sed -n "$((i + 1))p" "$tmp.meta")
  [ -n "$meta" ] || meta="000 0 0"
  set -- $meta
  if [ -f "$tmp.$i" ]; then sum=$(sha256sum < "$tmp.$i" | cut -d' ' -f1); else sum=-; fi
  echo "$path $1 $2 $sum"
  conns=$((conns + $3))
  rm -f "$tmp.$i"
  i=$((i + 1))
done < "$list"
rm -f "$tmp.meta"
echo "connections $conns"
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
    #: the alternating round: fetches, and the connections curl opened for them
    alternate_fetches: int = 0
    alternate_connections: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if self.passed:
            alt = (f", {self.alternate_fetches} of them alternating clusters on "
                   f"{self.alternate_connections} connection(s)" if self.alternate_fetches else "")
            return f"integrity passed: {self.fetches} fetches of {self.objects} objects{alt}"
        if self.error:
            return f"integrity FAILED: {self.error}"
        first = self.failures[0]
        return (f"integrity FAILED: {len(self.failures)} of {self.fetches} fetches wrong, e.g. "
                f"{first['path']}: {first['problem']}")


def verify(client: Host, base_url: str, manifest: dict[str, dict], rounds: int = 1,
           timeout: float = 600,
           alternate: list[dict[str, str]] | None = None) -> IntegrityReport:
    t0 = time.monotonic()
    work = f"{client.workdir}/integrity"
    client.put_text("\n".join(sorted(manifest)) + "\n", f"{work}/paths.txt")
    client.put_text(_SCRIPT, f"{work}/fetch.sh")
    r = client.run(f"sh {work}/fetch.sh {shlex.quote(base_url)} {work}/paths.txt {int(rounds)} "
                   f"{work}/body", check=False, timeout=timeout)
    report = IntegrityReport(False, base_url, len(manifest), 0)
    if r.ok and alternate:
        client.put_text(_ALTERNATE, f"{work}/alternate.sh")
        client.put_text("".join(f"{k}: {v}\n" for h in alternate for k, v in h.items()),
                        f"{work}/headers.txt")
        a = client.run(f"sh {work}/alternate.sh {shlex.quote(base_url)} {work}/paths.txt "
                       f"{work}/headers.txt {work}/alt", check=False, timeout=timeout)
        if not a.ok:
            r = a
        else:
            report.alternate_fetches = len(manifest)
            for line in a.stdout.splitlines():
                if line.startswith("connections "):
                    report.alternate_connections = int(line.split()[1])
            r.stdout += a.stdout
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
    report.passed = (not report.failures
                     and report.fetches == len(manifest) * rounds + report.alternate_fetches)
    report.elapsed_s = time.monotonic() - t0
    return report
