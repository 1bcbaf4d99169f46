"""Shared fixtures: unique testbed prefixes, emulated testbeds that always come down,
back-ends serving the default objects; which tests need root.

Tests that need root (network namespaces, eBPF, DPDK, cgroups) are marked
`root`, or `testbed`, which implies it; everything else runs as any user.
As a user other than root, deselect them (`-m "not root"`): a run that
selects one is refused, never skipped.
"""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest

from hosts.backends import BackendServers, ObjectStore
from hosts.testbed import EmulatedTestbed
from hosts.topology import DEFAULT_TOPOLOGY, load_topology
from workloads.model import load_workloads


# A shell without job control starts a background command with SIGINT ignored,
# and an ignored signal stays ignored across exec: the tests that interrupt a
# bench or a testbed owner with SIGINT would then test nothing.  Python's own
# handler here means SIG_DFL in every child, as in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption("--fail-on-skip", action="store_true",
                     help="fail the run if any test is skipped (a skipped test is a failing test)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # A testbed is network namespaces: its tests need root like the rest.
    # tryfirst: before -m deselects by marker.
    for item in items:
        if item.get_closest_marker("testbed"):
            item.add_marker(pytest.mark.root)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    if os.geteuid() == 0:
        return
    need = [item.nodeid for item in session.items if item.get_closest_marker("root")]
    if need:
        raise pytest.UsageError(
            f"{len(need)} selected tests need root (network namespaces, eBPF, DPDK), e.g. "
            f"{need[0]}: run as root, or deselect them with -m 'not root'")


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if (session.config.getoption("--fail-on-skip") and reporter is not None
            and reporter.stats.get("skipped")):
        reporter.write_line(f"{len(reporter.stats['skipped'])} tests skipped: --fail-on-skip",
                            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def unique_prefix(kind: str = "t") -> str:
    """A prefix no other test run on this machine uses: names never collide."""
    return kind + secrets.token_hex(3)


def wait_for(cond, what: str, timeout: float = 60.0):
    """Poll `cond` until it is true (returns its value) or fail after a generous
    deadline: the machine is shared, so the deadline is a bound on a hang, not a
    measurement."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what} (last: {v!r})")
        time.sleep(0.05)


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def topology():
    return load_topology(DEFAULT_TOPOLOGY)


@pytest.fixture
def testbed(topology, prefix):
    """The default emulated testbed, up for one test."""
    with EmulatedTestbed(topology, prefix=prefix) as tb:
        yield tb


@pytest.fixture(scope="module")
def module_testbed():
    """The default emulated testbed, shared by the tests of one module."""
    with EmulatedTestbed(load_topology(DEFAULT_TOPOLOGY), prefix=unique_prefix("m")) as tb:
        yield tb


@pytest.fixture(scope="module")
def served(module_testbed):
    """The module's testbed with nginx serving the default objects on every back-end."""
    store = ObjectStore(load_workloads().objects)
    servers = BackendServers(module_testbed, store)
    servers.start()
    yield module_testbed, store, servers
    servers.stop()
