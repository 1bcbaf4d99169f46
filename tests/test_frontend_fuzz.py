"""Fuzzing the front-end's request handling with generated bad input.

Tens of thousands of requests (valid ones, mutated ones, truncated ones,
oversized ones, binary garbage) go through the real C state machine as client
connections, each whole, one byte per segment, and cut in two at every byte
boundary (miresga-frontend-test fuzz).  Every connection must end with exactly
the answer tests/http_oracle.py predicts, with the right sequence numbers,
and leave no flow and no mbuf behind.  It runs against the plain and the
sanitized (ASan + UBSan) harness; a sanitizer report fails it.
"""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from fe_harness import (BACKENDS, SWITCH_MAC, VIP, harness_binary, harness_env,  # noqa: F401
                        sanitizer_report)
from http_oracle import syntax, verdict
from common.service import Cluster, Rule, Service
from miresga.control.frontend import FrontendFacts, render_config

LIMIT = 1024

# No default cluster, so that unmatched requests get 404.
FUZZ_SERVICE = Service(
    vip=VIP, port=80,
    clusters=[Cluster(name="static", backends=["be1", "be2"]),
              Cluster(name="api", backends=["be3"], port=8080)],
    rules=[Rule(cluster="api", path_prefix="/api"),
           Rule(cluster="static", path_prefix="/static"),
           Rule(cluster="static", path_prefix="/private", offload=False),
           Rule(cluster="static", path_prefix="/", host="img.example")],
    max_header_bytes=LIMIT, request_timeout_s=5.0,
)

METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"X-CUSTOM"]
PATHS = [b"/", b"/api", b"/api/v1/items?id=3", b"/static/a.css", b"/private/x", b"/other",
         b"/img/1.png", b"/a/b/c?q=%20&r=/api", b"/statics", b"/API"]
HOSTS = [b"img.example", b"IMG.Example:8080", b"other.example", b"10.10.0.100", b"",
         b"[::1]:80", b"img.example.com"]
NAMES = [b"Accept", b"User-Agent", b"X-Forwarded-For", b"Cookie", b"Connection", b"Upgrade",
         b"Content-Type", b"Expect", b"X-A"]
VALUES = [b"*/*", b"curl/7.88.1", b"10.1.2.3", b"a=b; c=d", b"keep-alive", b"close",
          b"websocket", b"text/plain; charset=utf-8", b"100-continue", b"caf\xc3\xa9", b""]


def valid_request(rng: random.Random) -> bytes:
    method = rng.choice(METHODS)
    form = rng.random()
    if form < 0.1:
        host = rng.choice(HOSTS[:4])
        target = rng.choice([b"http://", b"HTTPS://", b"Http://"]) + host + rng.choice(PATHS + [b""])
    elif form < 0.13:
        method, target = b"OPTIONS", b"*"
    else:
        target = rng.choice(PATHS)
    minor = 1 if rng.random() < 0.85 else 0
    lines = [method + b" " + target + b" HTTP/1." + str(minor).encode()]
    fields = []
    if minor == 1 or rng.random() < 0.5:
        fields.append(rng.choice([b"Host", b"host", b"HOST"]) + b": " + rng.choice(HOSTS))
    for _ in range(rng.randrange(0, 5)):
        fields.append(rng.choice(NAMES) + b":" + rng.choice([b" ", b"", b"\t", b"  "]) +
                      rng.choice(VALUES) + rng.choice([b"", b" ", b"\t"]))
    framing = rng.random()
    if framing < 0.15:
        fields.append(b"Content-Length: " + str(rng.randrange(0, 100000)).encode())
    elif framing < 0.25 and minor == 1:
        fields.append(b"Transfer-Encoding: " + rng.choice([b"chunked", b"gzip, chunked",
                                                           b"Chunked"]))
    rng.shuffle(fields)
    return b"\r\n".join(lines + fields) + b"\r\n\r\n"


def structural(rng: random.Random, req: bytes) -> bytes:
    """A targeted break of one rule."""
    head = req[:-4]
    kind = rng.randrange(14)
    if kind == 0:
        return head + b"\r\nHost: dup.example\r\n\r\n"
    if kind == 1:
        return head + b"\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"
    if kind == 2:
        return head + b"\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
    if kind == 3:
        return head + b"\r\nX-Folded: a\r\n  b\r\n\r\n"
    if kind == 4:
        return head + b"\r\nBad Name: x\r\n\r\n"
    if kind == 5:
        return head.replace(b"\r\n", b"\n", 1) + b"\r\n\r\n"
    if kind == 6:
        return head.replace(b"HTTP/1.", b"HTTP/2.", 1) + b"\r\n\r\n"
    if kind == 7:
        return head + b"\r\nContent-Length: -1\r\n\r\n"
    if kind == 8:
        return head + b"\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
    if kind == 9:
        return head + b"\r\nX-Nul: a\x00b\r\n\r\n"
    if kind == 10:
        return head + b"\r\n: empty-name\r\n\r\n"
    if kind == 11:
        return head + b"\r\nHost: bad/host\r\n\r\n"
    if kind == 12:
        return b" " + req
    return head + b"\r\nContent-Length: 99999999999999999999\r\n\r\n"


def oversized(rng: random.Random, req: bytes) -> bytes:
    pad = b"X-Pad: " + b"p" * (LIMIT + rng.randrange(-40, 200))
    return req[:-2] + pad + b"\r\n\r\n"


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(3)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes([rng.choice([0, 9, 10, 13, 32, 58, 127, 255, rng.randrange(256)])])
        elif b:
            del b[min(pos, len(b) - 1)]
    return bytes(b)


def generate(n: int, seed: int) -> list[tuple[int, bool, bytes]]:
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        r = rng.random()
        req = valid_request(rng)
        if r < 0.12:
            data = req
        elif r < 0.35:
            data = mutate(rng, req)
        elif r < 0.55:
            data = structural(rng, req)
        elif r < 0.68:
            data = req[:rng.randrange(0, len(req) - 1)]          # truncated
        elif r < 0.70:
            data = b""                                           # connects, sends nothing
        elif r < 0.75:
            data = oversized(rng, req)
        elif r < 0.88:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        else:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100))) + b"\r\n\r\n"
        fin = rng.random() < 0.4
        cases.append((verdict(data, LIMIT, fin, FUZZ_SERVICE), fin, data))
    return cases


def test_oracle_agrees_with_hand_written_cases():
    """The oracle itself: a few verdicts worked out by hand."""
    s = FUZZ_SERVICE
    assert verdict(b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", LIMIT, False, s) == 503
    assert verdict(b"GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n", LIMIT, False, s) == 404
    assert verdict(b"GET / HTTP/1.1\r\nHost: IMG.example:80\r\n\r\n", LIMIT, False, s) == 503
    assert verdict(b"GET / HTTP/1.1\r\nHost: a", LIMIT, False, s) == 408
    assert verdict(b"GET / HTTP/1.1\r\nHost: a", LIMIT, True, s) == 400
    assert verdict(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", LIMIT, False, s) == 400
    assert verdict(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * LIMIT, LIMIT, False, s) == 431
    assert verdict(b"", LIMIT, True, s) == 0
    assert verdict(b"", LIMIT, False, s) == 408
    assert syntax(b"GET http", LIMIT) == ("more", 0)
    assert syntax(b"GET https:/", LIMIT) == ("more", 0)
    assert syntax(b"GET httpx", LIMIT) == ("bad", 0)


@pytest.mark.slow
def test_fuzz_requests_get_the_right_answer_and_leave_nothing(tmp_path, harness_binary):
    """>= 10,000 generated requests, every split: right answer, no flow or mbuf left."""
    cases = generate(12000, seed=20251126)
    counts: dict[int, int] = {}
    for expect, _, _ in cases:
        counts[expect] = counts.get(expect, 0) + 1
    # The generator must exercise every answer, or the test proves little.
    for status in (0, 400, 404, 408, 431, 503):
        assert counts.get(status, 0) >= 50, f"generator produced few {status}: {counts}"
    path = tmp_path / "cases.txt"
    path.write_text("".join(f"{e} {'fin' if f else 'nofin'} {d.hex()}\n" for e, f, d in cases))
    conf = tmp_path / "fuzz.conf"
    conf.write_text(render_config(
        FUZZ_SERVICE,
        FrontendFacts(vip=VIP, vip_port=80, backend_addresses=BACKENDS, nexthop_mac=SWITCH_MAC),
        "", {"syn_timeout_ms": 100, "grace_ms": 100, "answer_rto_ms": 50, "mbufs": 8191,
             "flow_capacity": 64}))
    p = subprocess.run([str(harness_binary), "fuzz", str(conf), str(path), "12345"],
                       capture_output=True, text=True, timeout=1500, env=harness_env())
    report = sanitizer_report(p.stderr)
    assert report is None, report
    assert p.stdout, p.stderr
    summary = json.loads(p.stdout)
    print(summary)
    assert p.returncode == 0, f"{summary}\n{p.stderr}"
    assert summary["cases"] == len(cases)
    assert summary["mismatches"] == 0 and summary["bad_answers"] == 0
    assert summary["bad_syns"] == 0 and summary["leaks"] == 0 and summary["mbufs_leaked"] == 0
    assert summary["variants"] > 10 * len(cases)
