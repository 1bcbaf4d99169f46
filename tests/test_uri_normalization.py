"""Rules match the path the back-ends serve, not the bytes on the wire.

`/static/../private/x`, `/static/%2e%2e/private/x` and `//private/x` are
/private/x to nginx; a rule that matched the raw path would send them to the
/static cluster (whose nginx then serves /private/x) or past a rule that keeps
/private on the front-end.  The front-end (C, fe_http.c) and Service.route()
(Python) both match the normal form of the path and refuse, with 400, paths
that have none.  tests/fixtures/uri_paths.toml is the table both are held to;
here it is also held against a running nginx (Debian 12's 1.22, the
back-ends' web server), and the two implementations against each other on
random paths.  The front-end's state machine answers the refused ones with
400 and counts them (path_refused).  Through each L7 target end to end:
tests/test_uri_normalization_e2e.py.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tomllib

import pytest
from pydantic import ValidationError
from scapy.layers.inet import IP, TCP

from common.scratch_ns import ScratchNs
from common.service import PathRefused, Rule, normalize_path

from fe_harness import (BACKENDS, REPO, Client, Harness, backend_pkt, harness_binary,  # noqa: F401
                        harness_env, payload, sanitizer_report)

VECTORS = tomllib.loads((REPO / "tests" / "fixtures" / "uri_paths.toml").read_text())["path"]
REFUSE = "refuse"


def python_normal(raw: str) -> str:
    try:
        return normalize_path(raw)
    except PathRefused:
        return REFUSE


def c_normal(binary, raws: list[str]) -> list[str]:
    """The C parser's path for each raw path ("refuse", or "bad" for any other 400)."""
    p = subprocess.run([str(binary), "paths"], input="".join(r + "\n" for r in raws).encode("latin-1"),
                       capture_output=True, timeout=300, env=harness_env())
    err = p.stderr.decode("latin-1")
    assert sanitizer_report(err) is None, err
    assert p.returncode == 0, err
    out = p.stdout.decode("latin-1").splitlines()
    assert len(out) == len(raws)
    return out


# ------------------------------------------------------------ the table

def test_the_table_covers_every_form():
    """Each form the front-end normalises or refuses has a case."""
    raws = [v["raw"] for v in VECTORS]
    assert len(set(raws)) == len(raws), "a case twice"
    for needle in ("/../", "%2e%2e", "%2E%2E", ".%2e", "//", "/./", "%70", "%7e", "%c3", "%zz",
                   "%00", "%2f", "%2F", "%5c", "\\", "%252e", "..;"):
        assert any(needle in r for r in raws), needle
    assert {v["normal"] for v in VECTORS} >= {REFUSE, "/private/x", "/"}


@pytest.mark.parametrize("case", VECTORS, ids=[v["raw"] for v in VECTORS])
def test_python_normal_form_is_the_tables(case):
    assert python_normal(case["raw"]) == case["normal"], case["why"]


def test_c_normal_form_is_the_tables(harness_binary):
    """The parser's path for `GET RAW HTTP/1.1`, plain and sanitized builds."""
    got = c_normal(harness_binary, [v["raw"] for v in VECTORS])
    wrong = [(v["raw"], g, v["normal"]) for v, g in zip(VECTORS, got) if g != v["normal"]]
    assert not wrong, wrong


def random_path(rng: random.Random) -> str:
    pieces = ["/", "/", "/", ".", "..", "a", "B", "%2e", "%2E", "%41", "%7e", "%7E", "%c3", ";",
              "~", "-", "%25", "%3f", "//", "/./", "/../", "x.y", "%2e%2e", "/.%2E/", "%62"]
    refused = ["%2f", "%zz", "%", "%4", "%00", "%5c", "\\"]
    return "/" + "".join(rng.choice(refused if rng.random() < 0.04 else pieces)
                         for _ in range(rng.randrange(0, 12)))


def test_c_and_python_agree_on_random_paths(harness_binary):
    """20,000 seeded random paths of dots, slashes and escapes: the same normal form or refusal."""
    rng = random.Random(20251128)
    raws = [random_path(rng) for _ in range(20000)]
    got = c_normal(harness_binary, raws)
    want = [python_normal(r) for r in raws]
    wrong = [(r, g, w) for r, g, w in zip(raws, got, want) if g != w]
    assert not wrong, wrong[:20]
    assert 2000 < want.count(REFUSE) < 12000 and len(set(want)) > 5000, \
        "the generator proves little"


# ------------------------------------------------------ against nginx

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:80;
        # As the back-ends: merge_slashes at its default (on).
        location / {{ return 200 "$uri"; }}
    }}
}}
"""

# Sends each target of argv[1] (JSON) as a request; prints [status, body] for
# each, body as Latin-1.  Waits for the server to listen first.
NGINX_CLIENT = r"""
import json, socket, sys, time
deadline = time.monotonic() + 10
while True:
    try:
        socket.create_connection(("127.0.0.1", 80), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
out = []
for t in json.loads(sys.argv[1]):
    s = socket.create_connection(("127.0.0.1", 80), timeout=5)
    s.sendall(b"GET " + t.encode("latin-1") + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    d = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        d += b
    s.close()
    head, _, body = d.partition(b"\r\n\r\n")
    out.append([int(head.split(b" ")[1]), body.decode("latin-1")])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def nginx_answers(tmp_path_factory):
    """What a real nginx answers for every raw path of the table: status, $uri."""
    d = tmp_path_factory.mktemp("nginx")
    (d / "nginx.conf").write_text(NGINX_CONF.format(d=d))
    with ScratchNs(prefix="un") as ns:
        proc = subprocess.Popen(["ip", "netns", "exec", ns.name, shutil.which("nginx"), "-c",
                                 str(d / "nginx.conf"), "-e", str(d / "error.log")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            r = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c",
                                NGINX_CLIENT, json.dumps([v["raw"] for v in VECTORS])],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr + (d / "error.log").read_text()
        finally:
            proc.terminate()
            proc.wait(10)
    return {v["raw"]: tuple(a) for v, a in zip(VECTORS, json.loads(r.stdout))}


@pytest.mark.root  # nginx runs in a network namespace of its own
@pytest.mark.parametrize("case", VECTORS, ids=[v["raw"] for v in VECTORS])
def test_nginx_resolves_what_the_table_says(nginx_answers, case):
    """The table's `nginx` column is what nginx 1.22 does, not what we believe it does."""
    status, uri = nginx_answers[case["raw"]]
    assert (str(status) if status != 200 else uri) == case["nginx"]


def may_be_a_rule_prefix(p: str) -> bool:
    try:
        Rule(cluster="c", path_prefix=p)
        return True
    except ValidationError:
        return False


@pytest.mark.root  # nginx runs in a network namespace of its own
@pytest.mark.parametrize("case", VECTORS, ids=[v["raw"] for v in VECTORS])
def test_rules_pick_the_cluster_of_the_path_nginx_serves(nginx_answers, case):
    """Wherever nginx serves a path, every rule prefix matches the normal form exactly when
    it matches nginx's path; where nginx refuses (400), so do we.  The only paths we refuse
    and nginx serves are those with %2F, %5C or '\\' (their meaning is the back-end's)."""
    status, uri = nginx_answers[case["raw"]]
    normal = case["normal"]
    if normal == REFUSE:
        back_end_specific = any(s in case["raw"].lower() for s in ("%2f", "%5c", "\\"))
        assert status == 400 or back_end_specific, (status, uri)
        return
    assert status == 200, (status, uri)
    candidates = {normal[:i] for i in range(1, len(normal) + 1)} | \
        {uri[:i] for i in range(1, len(uri) + 1)} | \
        {"/", "/static", "/static/", "/private", "/private/", "/static/x", "/a", "/~", "/."}
    for prefix in filter(may_be_a_rule_prefix, candidates):
        assert normal.startswith(prefix) == uri.startswith(prefix), (prefix, normal, uri)


@pytest.mark.parametrize("prefix", ["/a b", "/a#b", "/a%2Fb", "/caf%C3%A9", "/a;b", "//a",
                                    "/a/../b", "/a/./b", "/a//b"])
def test_a_prefix_no_normalised_path_starts_with_is_refused(prefix):
    with pytest.raises(ValidationError, match="path_prefix"):
        Rule(cluster="c", path_prefix=prefix)


# ------------------------------------------- the front-end's state machine

@pytest.mark.parametrize("raw", ["/static/%2fx", "/../private/x", "/api/%zz", "/a%00",
                                 "/static%5c..%5capi", "/a/..//../api"])
def test_refused_path_is_answered_400_and_counted(harness_binary, raw):
    """No back-end is opened; the answer is 400; errors.400 and errors.path_refused move."""
    with Harness(binary=harness_binary) as h:
        c = Client(port=45000)
        c.send(h)
        out = c.send(h, f"GET {raw} HTTP/1.1\r\nHost: h\r\n\r\n".encode(), "PA")
        assert not [f for f in out if "S" in f[TCP].flags], "a back-end was opened"
        ans = [f for f in out if f[IP].dst == c.ip and "F" in f[TCP].flags]
        assert len(ans) == 1 and payload(ans[0]).startswith(b"HTTP/1.1 400 "), out
        errors = h.stats()["errors"]
        assert errors["400"] == 1 and errors["path_refused"] == 1


def test_other_400s_are_not_counted_as_refused_paths(harness_binary):
    """A header broken elsewhere (two Hosts) with a refused path is a plain 400."""
    with Harness(binary=harness_binary) as h:
        c = Client(port=45001)
        c.send(h)
        c.send(h, b"GET /../x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "PA")
        errors = h.stats()["errors"]
        assert errors["400"] == 1 and errors["path_refused"] == 0


@pytest.mark.parametrize("raw,backend,port", [
    ("/static/../api/x", "be3", 8080),          # /api -> api
    ("/static/%2e%2e/api/x", "be3", 8080),
    ("//api/x", "be3", 8080),
    ("/%61pi/x", "be3", 8080),
    ("/./api", "be3", 8080),
    ("/api/../x", "be1", 80),                   # -> the default cluster, static
    ("/api/..", "be1", 80),
    ("/apix/%2e%2e/static", "be1", 80),
])
def test_rules_match_the_normalised_path_and_the_raw_request_goes_on(harness_binary, raw, backend,
                                                                     port):
    """The cluster is the normalised path's; the back-end receives the bytes the client sent."""
    request = f"GET {raw}?q=/../api HTTP/1.1\r\nHost: h\r\n\r\n".encode()
    with Harness(binary=harness_binary) as h:
        c = Client(port=45100)
        c.send(h)
        syn = c.send(h, request, "PA")
        assert len(syn) == 1 and syn[0][IP].dst == BACKENDS[backend] and syn[0][TCP].dport == port
        out = h.send(backend_pkt(c, backend, c.s, c.c + 1, "SA", port=port))
        assert b"".join(payload(f) for f in out) == request


def test_a_no_offload_rule_cannot_be_bypassed_by_a_raw_path(harness_binary):
    """/x/../private/y is /private/y: the rule that keeps /private on the front-end applies."""
    with Harness(binary=harness_binary) as h:
        c = Client(port=45200)
        c.send(h)
        c.send(h, b"GET /x/../private/y HTTP/1.1\r\nHost: h\r\n\r\n", "PA")
        h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA"))
        assert h.offload() == [], "the flow was offered to the switch"
        assert h.stats()["decisions"]["no_offload"] == 1
