"""Tears a testbed down when the process that owns it dies without doing so.

    python -m hosts.guard STATE_FILE OWNER_PID

Started by EmulatedTestbed.up() in a session of its own.  It waits on a pidfd
of the owner (no polling); when the owner exits and the state file still
names it as owner, the owner did not clean up (SIGKILL, a crash), so the
guard does.  The owner terminates the guard after a normal teardown.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys

from hosts.testbed import teardown


def main(argv: list[str]) -> int:
    state_file, owner = argv[0], int(argv[1])
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        fd = None  # already gone: clean up at once
    if fd is not None:
        select.select([fd], [], [])
        os.close(fd)
    try:
        with open(state_file) as f:
            state = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return 0  # the owner cleaned up
    if state.get("owner_pid") != owner:
        return 0
    teardown(state["prefix"], state["namespaces"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
