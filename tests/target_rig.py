"""A target brought up on a testbed for a test, the way the runner does it."""

from __future__ import annotations

from common.service import bench_service
from targets.base import make_target


def running(name: str, tb, service, **params):
    """Target `name` deployed, started and healthy; stopped again if it never gets healthy."""
    t = make_target(name, tb, service, params)
    t.deploy()
    t.start()
    try:
        t.wait_healthy(t.health_timeout_s)
    except Exception:
        t.stop()
        raise
    return t


def two_cluster_service(tb, request_timeout_s: float = 2.0, **extra):
    """The campaign's service (common/service.py, bench_service) on this testbed: /obj/1KB/
    on backend1-2 ("small"), every other object and /health on backend3-4 ("big"), and
    either by Host, so a keep-alive connection can change cluster; `extra`: more service
    fields."""
    return bench_service([h.name for h in tb.backends], vip=str(tb.vip), port=tb.vip_port,
                         request_timeout_s=request_timeout_s, **extra)
