"""The front-end's launcher and config: what Python renders is what C reads.

`miresga-frontend --check-config` prints the configuration as the C parser
understood it; these tests hold it to the Service it was rendered from.
Also here: the C unit tests of the HTTP scanner, parser and body tracker.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from common.errors import ConfigError
from fe_harness import BACKENDS, BINARY, SERVICE, SWITCH_MAC, TEST_BINARY, VIP, facts
from common.service import Cluster, Rule, Service
from miresga.control.frontend import (LIMIT_DEFAULTS, FrontendFacts, backend_index,
                                      render_config)


def check_config(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "fe.conf"
    path.write_text(text)
    return subprocess.run([str(BINARY), "--check-config", str(path)], capture_output=True,
                          text=True, timeout=30)


def test_c_parser_unit_tests_pass():
    """Table-driven tests of the scanner, parser and body tracker, in C."""
    p = subprocess.run([str(TEST_BINARY), "parser"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().startswith("ok:") and " 0 failures" in p.stdout


def test_backend_index_is_position_in_service_backends():
    assert backend_index(SERVICE) == {"be1": 0, "be2": 1, "be3": 2}


def test_rendered_config_is_what_the_binary_reads(tmp_path):
    """Every back-end, cluster, rule and limit survives the trip into C."""
    text = render_config(SERVICE, facts(("10.10.2.1", 7000)), "/tmp/fe-test.sock",
                         {"flow_capacity": 4096})
    p = check_config(tmp_path, text)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["vip"] == VIP and got["port"] == 80 and got["vip_index"] == 0
    want_backends = []
    for c_i, c in enumerate(SERVICE.clusters):
        for name in c.backends:
            want_backends.append({"index": SERVICE.backends.index(name), "ip": BACKENDS[name],
                                  "port": c.port, "cluster": c_i})
    assert sorted(got["backends"], key=lambda b: b["index"]) == want_backends
    assert got["clusters"] == [
        {"name": c.name, "policy": c.policy.value,
         "backends": [SERVICE.backends.index(b) for b in c.backends]} for c in SERVICE.clusters]
    names = [c.name for c in SERVICE.clusters]
    assert got["rules"] == [
        {"cluster": names.index(r.cluster), "offload": r.offload, "prefix": r.path_prefix,
         "host": r.host.lower() if r.host else None} for r in SERVICE.rules]
    assert got["default_cluster"] == names.index(SERVICE.default_cluster)
    assert got["max_header_bytes"] == SERVICE.max_header_bytes
    assert got["request_timeout_ms"] == SERVICE.request_timeout_s * 1000
    assert got["control"] == "10.10.2.1:7000" and got["control_key"] == "ctl.key"
    assert got["stats_socket"] == "/tmp/fe-test.sock" and got["flow_capacity"] == 4096


def test_policies_and_no_default_cluster(tmp_path):
    svc = Service(vip=VIP, clusters=[
        Cluster(name="a", backends=["be1"], policy="least-connections"),
        Cluster(name="b", backends=["be2", "be3"], policy="hash")],
        rules=[Rule(cluster="b", path_prefix="/b", host="Shop.Example")])
    p = check_config(tmp_path, render_config(svc, facts(None)))
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert [c["policy"] for c in got["clusters"]] == ["least-connections", "hash"]
    assert got["default_cluster"] == -1 and got["control"] == ":0"
    assert got["rules"][0]["host"] == "shop.example"


@pytest.mark.parametrize("rule,match", [
    (Rule(cluster="all", path_prefix="/a b"), "path prefix"),
    (Rule(cluster="all", path_prefix="/a#b"), "path prefix"),
    (Rule(cluster="all", path_prefix="/", host="a b"), "host"),
])
def test_values_the_format_cannot_carry_are_refused(rule, match):
    svc = Service(vip=VIP, clusters=[Cluster(name="all", backends=["be1"])], rules=[rule])
    with pytest.raises(ConfigError, match=match):
        render_config(svc, facts())


def test_unknown_backend_and_unknown_limit_are_refused():
    svc = Service(vip=VIP, clusters=[Cluster(name="all", backends=["nowhere"])])
    with pytest.raises(ConfigError, match="nowhere"):
        render_config(svc, facts())
    with pytest.raises(ConfigError, match="unknown"):
        render_config(SERVICE, facts(), limits={"no_such_knob": 1})


def test_limit_defaults_match_the_c_defaults(tmp_path):
    """LIMIT_DEFAULTS restates fe_config_defaults(): a file without them reads the same."""
    lines = [line for line in render_config(SERVICE, facts()).splitlines()
             if line.split(" ")[0] not in LIMIT_DEFAULTS]
    bare = check_config(tmp_path, "\n".join(lines) + "\n")
    full = check_config(tmp_path, render_config(SERVICE, facts()))
    assert bare.returncode == 0 and full.returncode == 0
    assert json.loads(bare.stdout) == json.loads(full.stdout)


@pytest.mark.parametrize("line,message", [
    ("bogus 1", "line 3: unknown directive 'bogus'"),
    ("backend 300 10.0.0.1 80", "line 3: backend: expected INDEX(0-255) IPV4 PORT"),
    ("cluster 0 x round-robin 7", "line 3: cluster: '7' is not a back-end defined above"),
    ("rule cluster=0 prefix=nope", "line 3: rule: prefix must start with /"),
    ("max_header_bytes 10", "line 3: max_header_bytes: expected one integer in [256, 1048576]"),
])
def test_config_errors_name_their_line(tmp_path, line, message):
    text = f"vip {VIP} 80\nnexthop_mac {SWITCH_MAC}\n{line}\nbackend 0 10.0.0.1 80\n" \
           f"cluster 0 all round-robin 0\n"
    p = check_config(tmp_path, text)
    assert p.returncode == 2
    assert message in p.stderr


def test_facts_from_the_service_vip_win(tmp_path):
    f = FrontendFacts(vip="10.99.0.1", vip_port=80, backend_addresses=BACKENDS,
                      nexthop_mac=SWITCH_MAC)
    assert f"vip {VIP} 80" in render_config(SERVICE, f)
