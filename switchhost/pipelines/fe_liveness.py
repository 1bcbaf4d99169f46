"""Which front-ends the Miresga switch selects: the operator's word and their heartbeat.

A front-end's heartbeat is its control connection (protocol v2,
switchhost/server.py).  Every front-end keeps one authenticated connection
to the switch host's daemon open from its start to its exit (and reconnects
if it drops), so:

- its process exits, crashes or is killed: its kernel closes the connection
  and the daemon sees it at once (the bound is the daemon's loop, milliseconds);
- its host or link goes silent: TCP keepalive and the user timeout on the
  connection (server.PEER_SILENCE_S, 3 s) close it.

Only an authenticated connection counts, and a front-end is known by the key
it proves: each front-end has a key of its own (the daemon's
`--frontend-key NAME=PATH`, server.py), so its connection names it whatever
address it comes from (its link to the switch, or a management network,
`control_address`, when DPDK owns its NIC).  A peer that fails the proof, or
that proves the daemon's own key (a tool on the switch host), keeps no
front-end alive.

A front-end with no authenticated connection is `down`: the selection table
stops naming it and its clients go to the others (switch.bpf.c, "front-end
selection").  It is `active` again when it authenticates.  Unless no
front-end is alive: then none is taken out (a lone front-end that restarts
keeps its clients, as it did before there were several).  A front-end that
has never connected is presumed alive, so that a switch without front-end
connections (tests, a replay, front-ends given no key of their own) selects
them all.

The operator drains a front-end (`drain-frontend name=NAME`): it stays in
the `stable` column and keeps its connections, gets no new ones, and is
`down` once it stops; `resume-frontend name=NAME` puts it back in service.
The front-end hears of both (a NOTICE on every control connection that proved
its key, and on any it opens while drained), so that it closes its kept-alive connections as
their responses end instead of holding them until it is stopped.
Both are management ops of the Miresga pipeline (python -m switchhost.ctl).

Connections open and close on the daemon's loop, management ops run in
worker threads: one lock orders them, and the selection is rewritten under it.
Standard library only: this runs inside the daemon on the switch host.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("switchhost.frontends")

ADMIN_STATES = ("in", "drain")


class FrontendLiveness:
    """`frontends`: the plan's front-ends by name; `set_states(changes)` rewrites
    the selection for front-ends whose state (FE_STATES) changed."""

    EVENTS_KEPT = 100

    def __init__(self, frontends: list[str],
                 set_states: Callable[[dict[str, str]], object],
                 notify: Callable[[str, str], object] = lambda name, what: None):
        self.set_states = set_states
        self.notify = notify    # (name, "drain" | "resume"): a NOTICE to its connections
        names = list(frontends)
        self.connections = dict.fromkeys(names, 0)
        self.alive = dict.fromkeys(names, True)
        self.admin = dict.fromkeys(names, "in")
        self.changed_at = dict.fromkeys(names, time.time())
        self.events: list[dict] = []  # the last EVENTS_KEPT state changes
        self._lock = threading.Lock()
        self._states = self._wanted()

    def _wanted(self) -> dict[str, str]:
        # Fail open: with no front-end alive, taking them out gains nothing
        # (no one would get their clients) and costs the packets of every
        # flow that is still fine (the last front-end's connection dropped and
        # is reconnecting; it is restarting): keep them all in.
        alive = self.alive if any(self.alive.values()) else dict.fromkeys(self.alive, True)
        return {n: ("down" if not alive[n] else
                    "draining" if self.admin[n] == "drain" else "active")
                for n in self.alive}

    def states(self) -> dict[str, str]:
        """The states the selection table holds now."""
        with self._lock:
            return dict(self._states)

    def _apply(self, why: str) -> None:
        after = self._wanted()
        changes = {n: s for n, s in after.items() if self._states[n] != s}
        if not changes:
            return
        self.set_states(changes)
        self._states = after
        now = time.time()
        for n, s in changes.items():
            self.changed_at[n] = now
            self.events.append({"time": now, "frontend": n, "state": s, "why": why})
            log.warning("front-end %s: %s (%s)", n, s, why)
        del self.events[:-self.EVENTS_KEPT]

    def peer(self, name: str, connected: bool) -> str | None:
        """Front-end `name`'s authenticated connection opened or closed
        (Pipeline.peer); a NOTICE for the new connection, or None."""
        if name not in self.connections:
            # The daemon checks its front-end keys against the plan: not reached.
            log.error("front-end %s: a key but not in the plan (%s)", name,
                      ", ".join(self.connections))
            return None
        with self._lock:
            self.connections[name] = max(0, self.connections[name] + (1 if connected else -1))
            self.alive[name] = self.connections[name] > 0
            self._apply("connection authenticated" if connected else "connection closed")
            # A connection opened while drained hears it too, alone.
            return "drain" if connected and self.admin[name] == "drain" else None

    def set_admin(self, name: str, admin: str) -> dict[str, str]:
        """The operator's word: `in` (in service) or `drain`."""
        if name not in self.admin:
            raise ValueError(f"front-end {name!r}: not in the plan "
                             f"({', '.join(self.admin)})")
        if admin not in ADMIN_STATES:
            raise ValueError(f"front-end {name!r}: {admin!r} is not one of "
                             f"{', '.join(ADMIN_STATES)}")
        with self._lock:
            self.admin[name] = admin
            self._apply("operator: " + ("drain" if admin == "drain" else "resume"))
            self.notify(name, "drain" if admin == "drain" else "resume")
            return dict(self._states)

    def snapshot(self) -> dict:
        with self._lock:
            return {"frontends": {n: {"state": s, "admin": self.admin[n],
                                      "connections": self.connections[n],
                                      "since": self.changed_at[n]}
                                  for n, s in self._states.items()},
                    "events": list(self.events)}
