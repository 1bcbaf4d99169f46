"""A target brought up on a testbed for a test, the way the runner does it."""

from __future__ import annotations

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
