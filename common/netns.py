"""Run a piece of Python inside a network namespace.

`setns(2)` moves only the calling thread, and only its network namespace: the
mount namespace stays, so bpffs pins and files look the same inside and out.
That is what a netlink call (tc attach), an ifindex lookup, a socket or a
/proc/sys/net write needs, without spawning `ip netns exec`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netns_path(name: str) -> str:
    return name if name.startswith("/") else os.path.join(NETNS_RUN_DIR, name)


@contextlib.contextmanager
def netns(name: str | None):
    """`with netns("tb-switch"): ...` runs the block in that namespace.

    None means "stay where we are", so callers can pass a host's namespace
    whether or not the host has one (a real host reached over SSH does not).
    """
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def write_sysctl(ns: str | None, key: str, value: str | int) -> None:
    """Write net.* sysctls of a namespace; /proc/sys/net follows the writer's netns."""
    path = "/proc/sys/" + key.replace(".", "/")
    with netns(ns):
        with open(path, "w") as f:
            f.write(str(value))


def ifindex(ns: str | None, ifname: str) -> int:
    # libc's if_nametoindex asks a socket it opens in the calling thread's netns.
    with netns(ns):
        return socket.if_nametoindex(ifname)
