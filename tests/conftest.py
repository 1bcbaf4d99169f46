"""Shared fixtures: unique testbed prefixes and emulated testbeds that always come down."""

from __future__ import annotations

import os
import secrets

import pytest

from hosts.testbed import EmulatedTestbed
from hosts.topology import DEFAULT_TOPOLOGY, load_topology


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the tests build network namespaces and load eBPF: run as root")


def unique_prefix(kind: str = "t") -> str:
    """A prefix no other test run on this machine uses: names never collide."""
    return kind + secrets.token_hex(3)


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
