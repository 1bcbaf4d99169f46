"""L7 decisions in a campaign: where a point needs one, the re-route workload's requests,
and how the requests spread over the service's clusters.

The campaign's service (common/service.py, bench_service) has two clusters,
chosen by path and by Host, so every request an L7 target answers makes a
rule decision.  The re-route workload (`reroute = true` in a workloads file)
sends every request of a kept-alive connection to the other cluster than the
one before it:

- Requests name their cluster by Host (SMALL_CLUSTER_HOST, BIG_CLUSTER_HOST)
  in turn, on objects of the workload's size, so the response size stays
  the workload's and every back-end can answer.
- wrk's Lua knows no connection (request() is called for whichever
  connection of the thread is ready), only its thread, so the load runs one
  wrk thread per connection: then a thread's turns are its connection's, and
  each connection asks small, big, small, big, ... one request at a time
  (each sent when the response before it is complete, as a browser would,
  never pipelined).  The point's `threads` parameter records that.

Where such a point has no meaning it is recorded with status
"not_applicable" and the reason, never run and never failed: a target that
cannot route by path or Host (l4switch, direct), one connection per request
(nothing to re-route), a service with one cluster.

The integrity check of every L7 target (bench/integrity.py) ends with one
round on a single kept-alive connection whose requests alternate clusters
the same way, every response checked against the manifest.

Re-route rate: re-routes (requests that went to another cluster than the one
before on their connection) per request of the load.  Miresga's front-end
counts them itself (decisions.other_backend: a request whose rule picked
another cluster than the connection's back-end), over every request it saw,
the body checker's beside the load (bench/bodies.py) included: `rate` is that
over the front-end's requests, `per_load_request` over wrk's (the checker's
kept-alive requests stay on one cluster under the re-route workload, so
there it is the load's own share); HAProxy and nginx keep no such count, so for
every target the result also holds the requests each cluster's back-ends
answered over the measured run (nginx stub_status, hosts/backends.py) and,
for HAProxy, its own per-server counts (stats socket), which show both
clusters carrying the load.
"""

from __future__ import annotations

from typing import Any

from analysis.results import NOT_APPLICABLE
from common.service import BIG_CLUSTER_HOST, SMALL_CLUSTER_HOST, PathRefused, Service


def not_applicable(workload, conn_mode: str, layer7: bool, target: str,
                   service: Service | None = None) -> str | None:
    """Why the point (workload, mode) cannot be measured on this target, or None."""
    if workload.kind != "reroute":
        return None
    if not layer7:
        return (f"{target} cannot route by path or Host: the re-route workload needs an L7 "
                f"decision for every request")
    if conn_mode != "keep-alive":
        return ("re-routing happens on a kept-alive connection; with one request per "
                "connection there is nothing to re-route")
    if service is not None and len(service.clusters) < 2:
        return "the service has one cluster: there is no other cluster to re-route to"
    return None


def alternating_headers(service: Service, path: str) -> list[dict[str, str]]:
    """The headers a connection's requests take in turn: one set per cluster, checked
    against the service's own routing (Service.cluster_for), so a service that would send
    both to one cluster is refused here rather than measured as a re-route."""
    turns = [{"Host": SMALL_CLUSTER_HOST}, {"Host": BIG_CLUSTER_HOST}]
    try:
        clusters = [service.cluster_for(path, h["Host"]) for h in turns]
    except PathRefused as e:
        raise ValueError(f"re-route workload: {e}") from None
    names = [c.name if c is not None else None for c in clusters]
    if None in names or names[0] == names[1]:
        raise ValueError(f"re-route workload: the service sends {path} with Host "
                         f"{SMALL_CLUSTER_HOST} to {names[0]} and with {BIG_CLUSTER_HOST} to "
                         f"{names[1]}: not two clusters")
    return turns


def integrity_alternation(service: Service, layer7: bool) -> list[dict[str, str]] | None:
    """The header sets for the integrity check's round on one connection (bench/integrity.py),
    for a target that routes by Host to a service of two clusters; None elsewhere."""
    if not layer7 or len(service.clusters) < 2:
        return None
    return alternating_headers(service, "/")


def load_threads(workload, threads: int, connections: int) -> int:
    """wrk threads of a point's load: one per connection under the re-route workload."""
    return connections if workload.kind == "reroute" else threads


def cluster_requests(service: Service, before: dict[str, int] | None,
                     after: dict[str, int] | None) -> dict[str, int] | None:
    """Requests each cluster's back-ends answered between two BackendServers.requests_served()."""
    if before is None or after is None:
        return None
    return {c.name: sum(after.get(b, 0) - before.get(b, 0) for b in c.backends)
            for c in service.clusters}


def _delta(before: dict | None, after: dict | None, *keys) -> int | None:
    a, b = before, after
    for k in keys:
        a = a.get(k) if isinstance(a, dict) else None
        b = b.get(k) if isinstance(b, dict) else None
    return b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None


def target_cluster_requests(service: Service, before: dict | None,
                            after: dict | None) -> dict[str, int] | None:
    """Requests per cluster from the target's own per-server counters (HAProxy's stats
    socket: stats()["backends"][server]["requests"]), or None where it has none."""
    if not (isinstance(after, dict) and isinstance(after.get("backends"), dict)):
        return None
    out = {}
    for c in service.clusters:
        n = [_delta(before, after, "backends", b, "requests") for b in c.backends]
        if None in n:
            return None
        out[c.name] = sum(n)
    return out


def reroute_metrics(service: Service, stats_before: dict | None, stats_after: dict | None,
                    served_before: dict | None, served_after: dict | None,
                    load_requests: int | None = None) -> dict[str, Any]:
    """What a point's counters say about its L7 decisions (see the module docstring)."""
    out: dict[str, Any] = {
        "cluster_requests": cluster_requests(service, served_before, served_after),
        "target_cluster_requests": target_cluster_requests(service, stats_before, stats_after),
        "rate": None, "rerouted": None, "requests": None, "source": None,
        "per_load_request": None,
    }
    other = _delta(stats_before, stats_after, "summary", "frontend_decisions", "other_backend")
    requests = _delta(stats_before, stats_after, "summary", "frontend_requests")
    if other is not None and requests:
        out.update(rate=other / requests, rerouted=other, requests=requests,
                   source="front-end decisions.other_backend / requests",
                   per_load_request=other / load_requests if load_requests else None)
    return out


__all__ = ["NOT_APPLICABLE", "alternating_headers", "integrity_alternation", "load_threads",
           "not_applicable", "reroute_metrics"]
