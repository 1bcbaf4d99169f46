"""Which front-ends the switch selects: the operator's word and their heartbeat.

A front-end's heartbeat is its offload channel.  Every front-end keeps one
TCP connection to switchd open from its start to its exit (and reconnects
if it drops), so:

- its process exits, crashes or is killed: its kernel closes the connection
  and switchd sees it at once (the bound is switchd's loop, milliseconds);
- its host or link goes silent: TCP keepalive and the user timeout on the
  connection (offload_channel.PEER_SILENCE_S, 3 s) close it.

A front-end with no open channel is `down`: the selection table stops
naming it and its clients go to the others (switch.bpf.c, "front-end
selection").  It is `active` again when it connects.  Unless no front-end is
alive: then none is taken out (a lone front-end that restarts keeps its
clients, as it did before there were several).  Front-ends are known by
their connection's source address, which is their address on the switch's
link (the plan's); one that has never connected is presumed alive, so that
a switch without front-end channels (tests, a replay) selects them all.

The operator drains a front-end (`drain`): it stays in the `stable` column
and keeps its connections, gets no new ones, and is `down` once it stops;
`resume` puts it back in service.  Both by name, through switchd's
management socket (switchd.py).

Standard library only: this runs inside switchd on the switch host.
"""

from __future__ import annotations

import logging
import time

from miresga.control.miresga_switch import MiresgaSwitch, frontend_id

log = logging.getLogger("miresga.switchd")

ADMIN_STATES = ("in", "drain")


class FrontendLiveness:
    def __init__(self, switch: MiresgaSwitch):
        self.switch = switch
        names = [frontend_id(f) for f in switch.plan.frontends]
        self.by_ip = {f.ip: frontend_id(f) for f in switch.plan.frontends}
        self.channels = dict.fromkeys(names, 0)
        self.alive = dict.fromkeys(names, True)
        self.admin = dict.fromkeys(names, "in")
        self.changed_at = dict.fromkeys(names, time.time())
        self.events: list[dict] = []  # the last EVENTS_KEPT state changes
        self._states = self._wanted()

    EVENTS_KEPT = 100

    def _wanted(self) -> dict[str, str]:
        # Fail open: with no front-end alive, taking them out gains nothing
        # (no one would get their clients) and costs the packets of every
        # flow that is still fine (the last front-end's channel dropped and
        # is reconnecting; it is restarting): keep them all in.
        alive = self.alive if any(self.alive.values()) else dict.fromkeys(self.alive, True)
        return {n: ("down" if not alive[n] else
                    "draining" if self.admin[n] == "drain" else "active")
                for n in self.alive}

    def states(self) -> dict[str, str]:
        """The states the selection table holds now."""
        return dict(self._states)

    def _apply(self, before: dict[str, str], why: str) -> None:
        after = self._wanted()
        changes = {n: s for n, s in after.items() if before[n] != s}
        if not changes:
            return
        self.switch.set_frontend_states(changes)
        self._states = after
        now = time.time()
        for n, s in changes.items():
            self.changed_at[n] = now
            self.events.append({"time": now, "frontend": n, "state": s, "why": why})
            log.warning("front-end %s: %s (%s)", n, s, why)
        del self.events[:-self.EVENTS_KEPT]

    def peer(self, ip: str, connected: bool) -> None:
        """A channel connection from `ip` opened or closed (ChannelServer.on_peer)."""
        name = self.by_ip.get(ip)
        if name is None:
            return  # not a front-end's address (a tool, the bench's table filler)
        before = self.states()
        self.channels[name] = max(0, self.channels[name] + (1 if connected else -1))
        self.alive[name] = self.channels[name] > 0
        self._apply(before, "channel connected" if connected else "channel closed")

    def set_admin(self, name: str, admin: str) -> dict[str, str]:
        """The operator's word: `in` (in service) or `drain`."""
        if name not in self.admin:
            raise ValueError(f"front-end {name!r}: not in the plan "
                             f"({', '.join(self.admin)})")
        if admin not in ADMIN_STATES:
            raise ValueError(f"front-end {name!r}: {admin!r} is not one of "
                             f"{', '.join(ADMIN_STATES)}")
        before = self.states()
        self.admin[name] = admin
        self._apply(before, "operator: " + ("drain" if admin == "drain" else "resume"))
        return self.states()

    def snapshot(self) -> dict:
        states = self.states()
        return {"frontends": {n: {"state": states[n], "admin": self.admin[n],
                                  "channels": self.channels[n], "since": self.changed_at[n]}
                              for n in states},
                "events": list(self.events)}
