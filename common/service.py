"""The service definition: one model of what is load balanced, shared by every target.

Miresga's front-end, HAProxy, nginx and the l4switch all render their
configuration from a `Service`, so a comparison between them is a comparison
of systems, not of configurations.  A service is a VIP and port, clusters of
back-ends with a selection policy, and L7 rules (optional Host, path prefix ->
cluster) tried in order, then a default cluster.

Back-ends are named by testbed host; `resolve()` turns names into addresses
with the testbed's topology, so a service file does not repeat addresses.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.errors import ConfigError, format_validation_error


class PathRefused(ValueError):
    """A request path with no single meaning: every L7 target answers it 400."""


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# What a rule's path prefix may hold: see normalize_path().
PREFIX_CHARS = re.compile(r"/[A-Za-z0-9._~/-]*")


def normalize_path(path: str) -> str:
    """The path rules match: RFC 3986's normal form, as the back-ends (nginx) resolve it.

    The front-end does the same in C (http_normalize_path() in
    miresga/frontend/fe_http.c, where the reasons are written out), and
    tests/fixtures/uri_paths.toml holds the cases both are held to.  In short:
    escapes of unreserved characters are decoded, other escapes upper-cased,
    runs of '/' merged, then "." and ".." segments removed.  Refused
    (PathRefused): a ".." above the root, an invalid escape, %00, %2F, %5C,
    a raw '\\' or '#'.  `path` is the path of the request target (no query);
    "*" (OPTIONS *) is returned as it is.
    """
    if path == "*":
        return path
    try:
        raw = path.encode("latin-1")
    except UnicodeEncodeError:
        raise PathRefused(f"{path!r}: not bytes of an HTTP request") from None
    if not raw.startswith(b"/"):
        raise PathRefused(f"{path!r}: a path starts with '/'")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c in b"\\#?":
            raise PathRefused(f"{path!r}: {chr(c)!r} in the path")
        if c != ord("%"):
            out.append(c)
            i += 1
            continue
        digits = raw[i + 1:i + 3]
        if len(digits) < 2 or not set(digits) <= _HEX:
            raise PathRefused(f"{path!r}: invalid escape at {i}")
        v = int(digits, 16)
        if v in (0, ord("/"), ord("\\")):
            raise PathRefused(f"{path!r}: %{v:02X} has no meaning every back-end shares")
        out += bytes([v]) if v in _UNRESERVED else b"%%%02X" % v
        i += 3
    # Then the segments: empty ones (merged slashes) and "." go, ".." takes
    # the one before; a path that ends on one of those ends with a slash.
    segments: list[bytes] = []
    parts = bytes(out).split(b"/")[1:]
    trailing = False
    for k, seg in enumerate(parts):
        trailing = k == len(parts) - 1
        if seg == b"..":
            if not segments:
                raise PathRefused(f"{path!r}: '..' above the root")
            segments.pop()
        elif seg not in (b"", b"."):
            segments.append(seg)
            trailing = False
    norm = b"/" + b"/".join(segments)
    if trailing and segments:
        norm += b"/"
    return norm.decode("latin-1")


class Policy(str, Enum):
    ROUND_ROBIN = "round-robin"
    LEAST_CONNECTIONS = "least-connections"
    HASH = "hash"  # hash of the client address: a client sticks to a back-end


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cluster(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    backends: list[str] = Field(min_length=1)
    policy: Policy = Policy.ROUND_ROBIN
    port: int = Field(default=80, ge=1, le=65535)

    @field_validator("backends")
    @classmethod
    def _no_duplicates(cls, v: list[str]) -> list[str]:
        seen = set()
        for b in v:
            if b in seen:
                raise ValueError(f"back-end {b!r} is listed twice")
            seen.add(b)
        return v


class Rule(_Strict):
    cluster: str
    path_prefix: Annotated[str, Field(pattern=r"^/")] = "/"
    host: str | None = None
    # Miresga only: False keeps the flow on the front-end (no switch entry),
    # e.g. for paths whose responses must be inspected.  Baselines ignore it.
    offload: bool = True

    @field_validator("path_prefix")
    @classmethod
    def _normal_prefix(cls, v: str) -> str:
        # Requests are matched in normal form (normalize_path), so a prefix
        # must be something a normalised path can start with.  Only
        # unreserved characters and '/': where a path holds anything else,
        # its normal form (escaped) and nginx's (decoded) differ, and a
        # prefix that stops short of it matches both the same way.
        if not PREFIX_CHARS.fullmatch(v):
            raise ValueError(f"{v!r} may hold only letters, digits, '-', '.', '_', '~' and '/'")
        if "//" in v or "/./" in v or "/../" in v:
            try:
                would_be = f"it would be {normalize_path(v)!r}"
            except PathRefused:
                would_be = "it climbs above the root"
            raise ValueError(f"{v!r} is not a normalised path's start ({would_be})")
        return v


class Service(_Strict):
    """What every target load balances.  `vip` may come from the topology."""

    vip: ipaddress.IPv4Address | None = None
    port: int = Field(default=80, ge=1, le=65535)
    clusters: list[Cluster] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    default_cluster: str | None = None
    # Front-end request limits, shared so that every L7 target enforces the same.
    max_header_bytes: int = Field(default=8192, ge=256, le=1 << 20)
    request_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _references(self) -> "Service":
        names = [c.name for c in self.clusters]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"clusters: name {sorted(dup)[0]!r} is used twice")
        for i, rule in enumerate(self.rules):
            if rule.cluster not in names:
                raise ValueError(f"rules[{i}].cluster: no cluster named {rule.cluster!r}")
        if self.default_cluster is not None and self.default_cluster not in names:
            raise ValueError(f"default_cluster: no cluster named {self.default_cluster!r}")
        seen: dict[str, str] = {}
        for c in self.clusters:
            for b in c.backends:
                if b in seen and seen[b] != c.name:
                    # One back-end in two clusters would make per-cluster
                    # counts and health ambiguous; refuse rather than guess.
                    raise ValueError(
                        f"clusters[{c.name}].backends: {b!r} is already in cluster {seen[b]!r}")
                seen[b] = c.name
        return self

    @property
    def backends(self) -> list[str]:
        """Every back-end host, in cluster order, each once."""
        return [b for c in self.clusters for b in c.backends]

    def cluster(self, name: str) -> Cluster:
        return next(c for c in self.clusters if c.name == name)

    def route(self, path: str, host: str | None = None) -> Rule | None:
        """The rule a request matches, or None for the default cluster.

        This is the reference semantics every target implements: first
        matching rule in file order, by the normal form of the path
        (normalize_path(); PathRefused if it has none: a 400 everywhere); a
        rule with a host matches only that Host header (case-insensitive,
        port ignored).
        """
        path = normalize_path(path)
        h = host.split(":")[0].lower() if host else None
        for rule in self.rules:
            if rule.host is not None and rule.host.lower() != h:
                continue
            if path.startswith(rule.path_prefix):
                return rule
        return None

    def cluster_for(self, path: str, host: str | None = None) -> Cluster | None:
        rule = self.route(path, host)
        if rule is not None:
            return self.cluster(rule.cluster)
        return self.cluster(self.default_cluster) if self.default_cluster else None


def default_service(backends: list[str], vip: str | None = None, port: int = 80) -> Service:
    """One cluster of all back-ends, round robin, every path: for tests where routing is
    not the point.  Campaigns use bench_service()."""
    return Service(
        vip=vip, port=port,
        clusters=[Cluster(name="all", backends=backends)],
        default_cluster="all",
    )


#: The Host headers that send a request to bench_service()'s "small" or "big" cluster
#: whatever its path: the re-route workload alternates them on every connection.
#: Names under .test (RFC 2606), which no resolver answers.
SMALL_CLUSTER_HOST = "small.bench.test"
BIG_CLUSTER_HOST = "big.bench.test"
#: The path prefix bench_service() gives the "small" cluster unless told otherwise: the
#: smallest objects of workloads/default.toml (workloads/model.py, Objects.prefix).
SMALL_PREFIX = "/obj/1KB/"


def bench_service(backends: list[str], vip: str | None = None, port: int = 80,
                  small_prefix: str = SMALL_PREFIX, **extra) -> Service:
    """The bench's service: two clusters, every request routed by its Host and path.

    "small" (the first half of the back-ends) serves `small_prefix`; "big" (the
    rest) every other object and /health.  A request whose Host is
    SMALL_CLUSTER_HOST or BIG_CLUSTER_HOST goes to that cluster whatever its
    path.  So each request an L7 target answers
    makes a rule decision, a mix spreads over both clusters, and a kept-alive
    connection can change cluster from one request to the next (the re-route
    workload).  Every back-end serves every object (hosts/backends.py), so
    targets that cannot route by path (l4switch, direct) still serve the fixed
    sizes and mixes; bench/reroute.py says where they cannot take part.  With a
    single back-end both names' rules lead to one cluster.  `extra`: more
    Service fields (request limits).
    """
    half = len(backends) // 2
    if half:
        clusters = [Cluster(name="small", backends=backends[:half]),
                    Cluster(name="big", backends=backends[half:])]
        small, big = "small", "big"
    else:
        clusters = [Cluster(name="all", backends=backends)]
        small = big = "all"
    return Service(
        vip=vip, port=port, clusters=clusters,
        rules=[Rule(host=SMALL_CLUSTER_HOST, path_prefix="/", cluster=small),
               Rule(host=BIG_CLUSTER_HOST, path_prefix="/", cluster=big),
               Rule(path_prefix=small_prefix, cluster=small),
               Rule(path_prefix="/obj/", cluster=big),
               Rule(path_prefix="/health", cluster=big)],
        **extra,
    )


def load_service(path: str | Path) -> Service:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_service(data, source=str(path))


def parse_service(data: dict, source: str = "service") -> Service:
    from pydantic import ValidationError

    # The file says [[cluster]] / [[rule]] (singular, one table each); the
    # model's fields are plural.
    data = dict(data)
    for singular, plural in (("cluster", "clusters"), ("rule", "rules")):
        if singular in data:
            data[plural] = data.pop(singular)
    try:
        return Service.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
