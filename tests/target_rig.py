"""A target brought up on a testbed for a test, the way the runner does it."""

from __future__ import annotations

from common.service import parse_service
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
    """The end-to-end tests' service: /obj/1KB/ on backend1-2 ("small"), every other
    object and /health on backend3-4 ("big"), so a keep-alive connection can change
    cluster; `extra`: more service fields."""
    return parse_service({
        "vip": str(tb.vip),
        "cluster": [{"name": "small", "backends": ["backend1", "backend2"]},
                    {"name": "big", "backends": ["backend3", "backend4"]}],
        "rule": [{"path_prefix": "/obj/1KB/", "cluster": "small"},
                 {"path_prefix": "/obj/", "cluster": "big"},
                 {"path_prefix": "/health", "cluster": "big"}],
        "request_timeout_s": request_timeout_s,
        **extra,
    })
