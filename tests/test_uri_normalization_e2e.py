"""Rules on normalised paths through every L7 target, on the emulated testbed.

Two clusters: `private` (backend1, backend2) for /private/ (no offload:
Miresga keeps those flows on the front-end), `public` (backend3, backend4) for
/static/ and everything else.  Every back-end serves /static/x, /private/x
and /PRIVATE/x with its own name as the content, so a response says which
back-end served it.  Each form of path below goes raw, as a client may send it, through
miresga, haproxy and nginx: it must land in the cluster its normal form
selects (tests/fixtures/uri_paths.toml), be served the object nginx resolves
there, or be answered 400 by all three.  Miresga counts its refusals
(errors.path_refused).
"""

from __future__ import annotations

import json

import pytest

from common.service import parse_service

from target_rig import running

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

PRIVATE = {"backend1", "backend2"}
PUBLIC = {"backend3", "backend4"}

# (raw request target, where it must land: "private", "public" or 400)
FORMS = [
    ("/static/x", "public"),
    ("/private/x", "private"),
    ("/static/../private/x", "private"),
    ("/static/%2e%2e/private/x", "private"),
    ("/static/.%2E/private/x", "private"),
    ("//private/x", "private"),
    ("/static//../private/x", "private"),
    ("/./private/x", "private"),
    ("/%70rivate/x", "private"),
    ("/priv%61te/./x", "private"),
    ("/private/../static/x", "public"),
    ("/private/%2E%2E/static/x", "public"),
    ("/PRIVATE/x", "public"),                   # paths are case-sensitive
    ("http://{vip}/static/../private/x", "private"),
    ("/static/%2F..%2Fprivate/x", 400),
    ("/static/%5c..%5cprivate/x", 400),
    ("/static\\..\\private/x", 400),
    ("/static/x%00", 400),
    ("/../private/x", 400),
    ("/static/../../private/x", 400),
    ("/static/%zz", 400),
    ("/static/%4", 400),
    ("/static#/../private/x", 400),
]

# Sends each request of argv[1] (JSON list of hex) on its own connection and
# prints [status, body] for each.  Standard library only (the client host).
RAW_CLIENT = r"""
import json, socket, sys
out = []
for payload in json.loads(sys.argv[1]):
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10)
    s.sendall(bytes.fromhex(payload))
    d = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        d += b
    s.close()
    head, _, body = d.partition(b"\r\n\r\n")
    out.append([int(head.split(b" ")[1]) if head else 0, body.decode("latin-1")])
print(json.dumps(out))
"""


def service_for(tb):
    return parse_service({
        "vip": str(tb.vip),
        "cluster": [{"name": "private", "backends": sorted(PRIVATE)},
                    {"name": "public", "backends": sorted(PUBLIC)}],
        "rule": [{"path_prefix": "/private/", "cluster": "private", "offload": False},
                 {"path_prefix": "/static/", "cluster": "public"}],
        "default_cluster": "public",
        "request_timeout_s": 2.0,
    })


@pytest.fixture(scope="module")
def named(served):
    """The served testbed, with /static/x and /private/x naming their back-end."""
    tb, _, servers = served
    for b in tb.backends:
        for d in ("static", "private", "PRIVATE"):
            b.put_text(b.name, f"{servers.www_dir(b)}/{d}/x")
    return tb


@pytest.fixture(scope="module", params=["miresga", "haproxy", "nginx"])
def target(request, named):
    tb = named
    params = {"frontend_grace_ms": 500} if request.param == "miresga" else {}
    t = running(request.param, tb, service_for(tb), **params)
    try:
        yield tb, t
    finally:
        t.stop()


def send(tb, targets: list[str]) -> list[tuple[int, str]]:
    client = tb.clients[0]
    script = f"{client.workdir}/uri_client.py"
    client.put_text(RAW_CLIENT, script)
    # Host is the VIP: HAProxy refuses an absolute-form target whose authority
    # differs from Host (the front-end and nginx take the target's, RFC 9112 3.2.2).
    reqs = [(f"GET {t} HTTP/1.1\r\nHost: {tb.vip}\r\nConnection: close\r\n\r\n")
            .encode("latin-1").hex() for t in targets]
    r = client.run(f"{client.python} {script} '{json.dumps(reqs)}' {tb.vip} {tb.vip_port}",
                   timeout=120)
    return [tuple(x) for x in json.loads(r.stdout)]


@pytest.mark.parametrize("raw,lands", FORMS, ids=[f[0] for f in FORMS])
def test_each_form_lands_in_the_cluster_of_its_normal_form(target, raw, lands):
    """Served by a back-end of the right cluster, or 400; Miresga counts its refusals."""
    tb, t = target
    raw = raw.format(vip=tb.vip)
    before = t.frontends[0].stats()["errors"] if t.name == "miresga" else None
    [(status, body)] = send(tb, [raw])
    if lands == 400:
        assert status == 400, (status, body)
    else:
        assert status == 200, (status, body)
        assert body in (PRIVATE if lands == "private" else PUBLIC), body
    if before is not None:
        after = t.frontends[0].stats()["errors"]
        refused = after["path_refused"] - before["path_refused"]
        # '#' is refused by the scanner as a syntax error, not as a path.
        assert refused == (1 if lands == 400 and "#" not in raw else 0), (before, after)
        assert after["400"] - before["400"] == (1 if lands == 400 else 0)
