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
from fe_harness import (BACKENDS, BINARY, SANITIZED_TEST_BINARY, SERVICE, SWITCH_MAC,  # noqa: F401
                        TEST_BINARY, VIP, facts, harness_binary, harness_env, sanitizer_report)
from common.service import Cluster, Rule, Service
from miresga.control.frontend import (LIMIT_DEFAULTS, PORT_DEFAULT, PORTS, XSK_OBJECT,
                                      Frontend, FrontendFacts, backend_index, render_config)


def check_config(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "fe.conf"
    path.write_text(text)
    return subprocess.run([str(BINARY), "--check-config", str(path)], capture_output=True,
                          text=True, timeout=30)


def test_c_parser_unit_tests_pass(harness_binary):
    """Table-driven tests of the scanner, parser and body tracker, in C."""
    p = subprocess.run([str(harness_binary), "parser"], capture_output=True, text=True,
                       timeout=60, env=harness_env())
    assert sanitizer_report(p.stderr) is None, p.stderr
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().startswith("ok:") and " 0 failures" in p.stdout


@pytest.mark.parametrize("kind,mark", [("asan", "heap-buffer-overflow"),
                                       ("ubsan", "signed integer overflow")])
def test_sanitized_harness_reports_a_bug_and_fails(kind, mark):
    """The sanitized build is sanitized: a planted bug gives a report and a failing exit."""
    p = subprocess.run([str(SANITIZED_TEST_BINARY), "canary", kind], capture_output=True,
                       text=True, timeout=60, env=harness_env())
    assert p.returncode != 0
    report = sanitizer_report(p.stderr)
    assert report is not None and mark in report, p.stderr
    plain = subprocess.run([str(TEST_BINARY), "canary", kind], capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 3, "the plain build has no sanitizer to plant a bug for"


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


@pytest.mark.parametrize("mode", ["async", "confirmed", "dataplane"])
def test_handoff_mode_is_rendered_and_read(tmp_path, mode):
    p = check_config(tmp_path, render_config(SERVICE, facts(), limits={"handoff": mode}))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["handoff"] == mode


def test_unknown_handoff_mode_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="handoff 'sometimes'"):
        render_config(SERVICE, facts(), limits={"handoff": "sometimes"})
    text = render_config(SERVICE, facts()) + "handoff sometimes\n"
    p = check_config(tmp_path, text)
    assert p.returncode == 2 and "handoff: expected async, confirmed or dataplane" in p.stderr


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
    (Rule(cluster="all", path_prefix="/", host="a b"), "host"),
    (Rule(cluster="all", path_prefix="/", host="a#b"), "host"),
])
def test_values_the_format_cannot_carry_are_refused(rule, match):
    svc = Service(vip=VIP, clusters=[Cluster(name="all", backends=["be1"])], rules=[rule])
    with pytest.raises(ConfigError, match=match):
        render_config(svc, facts())


@pytest.mark.parametrize("prefix,why", [
    ("/a%2Fb", "may hold only"), ("/caf%C3%A9", "may hold only"), ("/a;b", "may hold only"),
    ("/a\\b", "may hold only"), ("//a", "'//'"),
    ("/a/../b", "segment"), ("/a/./b", "segment"),
])
def test_a_prefix_no_normalised_path_starts_with_is_refused_by_c(tmp_path, prefix, why):
    """Rules match normalised paths: the C config refuses a prefix none can start with."""
    lines = render_config(SERVICE, facts()).splitlines()
    at = lines.index("rule cluster=1 offload=1 prefix=/api")
    lines[at] = f"rule cluster=1 offload=1 prefix={prefix}"
    p = check_config(tmp_path, "\n".join(lines) + "\n")
    assert p.returncode != 0
    assert f"line {at + 1}: rule: prefix '{prefix}'" in p.stderr and why in p.stderr, p.stderr


@pytest.mark.parametrize("prefix", ["/", "/api", "/static/", "/~user/", "/.well-known/", "/a/.",
                                    "/a/..", "/v1.2_x-y"])
def test_a_prefix_a_normalised_path_can_start_with_is_accepted_by_c(tmp_path, prefix):
    text = render_config(SERVICE, facts()).replace("prefix=/api\n", f"prefix={prefix}\n", 1)
    assert f"prefix={prefix}\n" in text
    p = check_config(tmp_path, text)
    assert p.returncode == 0, p.stderr
    assert prefix in [r["prefix"] for r in json.loads(p.stdout)["rules"]]


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


@pytest.mark.parametrize("timeouts,message", [
    ({"filter_period_ms": 60_000}, "filter_period_ms must exceed idle_timeout_ms"),
    ({"switch_idle_ms": 60_000}, "switch_idle_ms must be at least idle_timeout_ms"),
    ({"agent_idle_ms": 100_000}, "agent_idle_ms must exceed idle_timeout_ms and switch_idle_ms"),
])
def test_the_front_end_refuses_timeouts_that_do_not_nest(tmp_path, timeouts, message):
    """The binary run by hand gets the model's nesting rules on the timeouts its file
    states; the launcher's file (the model's defaults) nests."""
    assert check_config(tmp_path, render_config(SERVICE, facts())).returncode == 0
    r = check_config(tmp_path, render_config(SERVICE, facts(), limits=timeouts))
    assert r.returncode == 2 and message in r.stderr, r.stderr


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


# ------------------------------------------------------------------ ports

class _Host:
    name, cpus = "frontend1", "1"

    def __init__(self, workdir):
        self.workdir = str(workdir)


def test_port_selects_the_vdev(tmp_path):
    """af_packet (the default) with its 4,096-frame rings; af_xdp with the
    front-end's own XDP program and no busy polling; a NIC's EAL options win."""
    vdevs = {}
    for port in PORTS:
        fe = Frontend(_Host(tmp_path), SERVICE, facts(), port=port)
        vdevs[port] = [a for a in fe.eal_args() if a.startswith("--vdev=")]
    assert PORT_DEFAULT == "af_packet"
    assert vdevs["af_packet"] == ["--vdev=net_af_packet0,iface=eth0,framecnt=4096"]
    assert vdevs["af_xdp"] == [f"--vdev=net_af_xdp0,iface=eth0,xdp_prog={XSK_OBJECT},"
                               f"busy_budget=0"]
    nic = Frontend(_Host(tmp_path), SERVICE, facts(), port="af_xdp", eal=["-a", "0000:3b:00.0"])
    assert nic.eal_args() == ["-a", "0000:3b:00.0"] and not nic.uses_xdp()


def test_unknown_port_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="front-end port 'dpdk': known ports are "
                                          "af_packet, af_xdp"):
        Frontend(_Host(tmp_path), SERVICE, facts(), port="dpdk")


def test_miresga_target_takes_the_port_from_its_parameters(tmp_path):
    """frontend_port reaches the launcher; an unknown port names the parameter."""
    from types import SimpleNamespace

    from targets.base import TargetError, make_target

    fe_host = SimpleNamespace(name="frontend1", workdir=str(tmp_path), cpus="1",
                              switch_mac=SWITCH_MAC, iface="eth0", gateway="10.10.2.1")
    tb = SimpleNamespace(frontends=[fe_host], switch=SimpleNamespace(workdir=str(tmp_path)),
                         vip=VIP, backends=[], bpf_dir=tmp_path)
    t = make_target("miresga", tb, SERVICE, {"frontend_port": "af_xdp"})
    assert t.make_frontend(fe_host).port == "af_xdp"
    assert make_target("miresga", tb, SERVICE).make_frontend(fe_host).port == PORT_DEFAULT
    with pytest.raises(TargetError, match="params.frontend_port: 'xdp': known ports are"):
        make_target("miresga", tb, SERVICE, {"frontend_port": "xdp"})
