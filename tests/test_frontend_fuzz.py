"""Fuzzing the front-end's request handling with generated bad input.

Tens of thousands of requests (valid ones, mutated ones, truncated ones,
oversized ones, binary garbage) go through the real C state machine as client
connections, each whole, one byte per segment, and cut in two at every byte
boundary (miresga-frontend-test fuzz).  Every connection must end with exactly
the answer tests/http_oracle.py predicts, with the right sequence numbers,
and leave no flow and no mbuf behind.

A second run does the same at the largest limits the front-end accepts
(max_header_bytes 1 MiB, hold_limit_bytes 16 MiB) with requests at and around
every limit: the whole header, each length the parser keeps (method, target,
path, host, field name and value) at 64 KiB +- 1, numbers at their digit
limits, and bodies at the hold limit.  Those go in full-size segments,
shifted, in random sizes, and one byte at a time around each limit.

Both runs use fixed seeds (reproducible in CI) and run against the plain and
the sanitized (ASan + UBSan) harness; a sanitizer report fails them.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

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
         b"/img/1.png", b"/a/b/c?q=%20&r=/api", b"/statics", b"/API",
         # matched by their normal form, or refused (tests/fixtures/uri_paths.toml)
         b"/static/../api/x", b"/api/%2e%2e/private", b"//api", b"/%61pi/x", b"/./static/",
         b"/x/..//../api", b"/api%2Fx", b"/../api", b"/static/%zz", b"/a%5cb", b"/%00"]
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
    assert syntax(b"GET /a#b HTTP/1.1\r\n", LIMIT) == ("bad", 0)
    assert verdict(b"GET /x/../api HTTP/1.1\r\nHost: a\r\n\r\n", LIMIT, False, s) == 503
    assert verdict(b"GET /api/../x HTTP/1.1\r\nHost: a\r\n\r\n", LIMIT, False, s) == 404
    assert verdict(b"GET /api/%2fx HTTP/1.1\r\nHost: a\r\n\r\n", LIMIT, False, s) == 400


def run_fuzz(binary: Path, service: Service, cases: list[tuple[int, bool, bytes]], seed: int,
             tmp_path: Path, **limits) -> dict:
    """Replay `cases` through `binary`; the runner's summary, checked for every failure kind."""
    path = tmp_path / "cases.bin"
    with path.open("wb") as f:
        for expect, fin, data in cases:
            f.write(b"%d %s %d\n" % (expect, b"fin" if fin else b"nofin", len(data)))
            f.write(data + b"\n")
    conf = tmp_path / "fuzz.conf"
    conf.write_text(render_config(
        service,
        FrontendFacts(vip=VIP, vip_port=80, backend_addresses=BACKENDS, nexthop_mac=SWITCH_MAC),
        "", {"syn_timeout_ms": 100, "grace_ms": 100, "answer_rto_ms": 50, "mbufs": 8191,
             "flow_capacity": 64, **limits}))
    started = time.monotonic()
    p = subprocess.run([str(binary), "fuzz", str(conf), str(path), str(seed)],
                       capture_output=True, text=True, timeout=1500, env=harness_env())
    report = sanitizer_report(p.stderr)
    assert report is None, report
    assert p.stdout, p.stderr
    summary = json.loads(p.stdout)
    # What a CI log should show: how much ran and how long it took.
    print(f"{binary.name}: {summary} in {time.monotonic() - started:.1f} s")
    assert p.returncode == 0, f"{summary}\n{p.stderr}"
    assert summary["cases"] == len(cases)
    assert summary["mismatches"] == 0 and summary["bad_answers"] == 0
    assert summary["bad_syns"] == 0 and summary["leaks"] == 0 and summary["mbufs_leaked"] == 0
    assert summary["segments_unbuilt"] == 0
    return summary


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
    summary = run_fuzz(harness_binary, FUZZ_SERVICE, cases, 12345, tmp_path)
    assert summary["variants"] > 10 * len(cases)


# ------------------------------------------------------ the largest limits

BIG_LIMIT = 1 << 20                  # the largest max_header_bytes (Service and fe_config.c)
BIG_HOLD = 16 << 20                  # the largest hold_limit_bytes (fe_config.c)
BIG_SERVICE = FUZZ_SERVICE.model_copy(update={"max_header_bytes": BIG_LIMIT})
WRAP = 1 << 16                       # where a 16-bit length wraps


def _fill(rng: random.Random, n: int, alphabet: bytes) -> bytes:
    """n bytes from `alphabet`: a short seeded pattern repeated (cheap at 1 MiB)."""
    unit = bytes(rng.choice(alphabet) for _ in range(61))
    return (unit * (n // len(unit) + 1))[:n]


TOKEN = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!#$&'*+^`|"
PATH = b"abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
HOSTC = b"abcdefghijklmnopqrstuvwxyz0123456789-."
VALUE = b"abcdefghijklmnopqrstuvwxyz0123456789 \t!\"#$%&'()*+,-./:;<=>?@[]^_`{|}~\x80\xff"


def shaped(rng: random.Random, shape: str, n: int) -> bytes:
    """A valid request whose `shape` part is n bytes long."""
    host = b"Host: h\r\n"
    if shape == "method":
        return _fill(rng, n, TOKEN[:52]) + b" /api HTTP/1.1\r\n" + host + b"\r\n"
    if shape == "path":
        base = rng.choice([b"/api/", b"/static/", b"/x/", b"/private/"])
        return b"GET " + base + _fill(rng, n - len(base), PATH) + b" HTTP/1.1\r\n" + host + b"\r\n"
    if shape == "query":
        return b"GET /api?" + _fill(rng, n, PATH + b"?") + b" HTTP/1.1\r\n" + host + b"\r\n"
    if shape == "target":
        auth = rng.choice([b"http://img.example/", b"HTTP://api.example:80/api/", b"https://h/"])
        return (b"GET " + auth + _fill(rng, n - len(auth), PATH) + b" HTTP/1.1\r\n" + host +
                b"\r\n")
    if shape == "authority":
        auth = b"http://" + rng.choice([b"img.example", b"other"])
        return b"GET " + auth + _fill(rng, n, HOSTC) + b"/ HTTP/1.1\r\n" + host + b"\r\n"
    if shape == "host":
        return (b"GET / HTTP/1.1\r\nHost: " + rng.choice([b"img.example", b"img.example:"]) +
                _fill(rng, n, HOSTC if rng.random() < 0.5 else b"0123456789") + b"\r\n\r\n")
    if shape == "name":
        return b"GET /api HTTP/1.1\r\n" + host + _fill(rng, n, TOKEN) + b": v\r\n\r\n"
    if shape == "value":
        return b"GET /api HTTP/1.1\r\n" + host + b"X: " + _fill(rng, n, VALUE) + b"\r\n\r\n"
    if shape == "fields":             # many short fields, n bytes in all
        line = b"X-%d: %s\r\n" % (rng.randrange(100), _fill(rng, rng.randrange(0, 40), VALUE))
        head = b"GET /static/x HTTP/1.1\r\n" + host
        lines = max(0, (n - len(head) - 2 - 16) // len(line))
        return to_length(rng, head + line * lines + b"\r\n", n)
    raise ValueError(shape)


SHAPES = ["method", "path", "query", "target", "authority", "host", "name", "value", "fields"]


def to_length(rng: random.Random, req: bytes, total: int) -> bytes:
    """req, grown to `total` bytes with a padding field (if it is shorter)."""
    if len(req) >= total:
        return req[:total] if len(req) > total else req
    pad = b"X-Pad: " + _fill(rng, total - len(req) - 9, VALUE) + b"\r\n"
    assert len(req) + 9 <= total, (len(req), total)
    return req[:-2] + pad + b"\r\n"


def generate_near_limits(seed: int) -> list[tuple[int, bool, bytes]]:
    """Requests at and around every limit of the front-end at its largest settings."""
    rng = random.Random(seed)
    raw: list[tuple[bool, bytes]] = []
    # Each length the parser keeps, across the 16-bit wrap.
    for shape in SHAPES:
        for n in (WRAP - 1, WRAP, WRAP + 1):
            raw.append((rng.random() < 0.3, shaped(rng, shape, n)))
    # The whole header at the limit: one below, at, one and two above.
    for shape in ("value", "path", "target", "host", "fields", "name"):
        for total in (BIG_LIMIT - 1, BIG_LIMIT, BIG_LIMIT + 1, BIG_LIMIT + 2):
            req = shaped(rng, shape, 1000)
            raw.append((rng.random() < 0.3, to_length(rng, req, total)))
    # Numbers at their digit limits (Content-Length up to 18 digits).
    for digits in ("9" * 18, "0" * 17 + "7", "1" + "0" * 18):
        raw.append((True, b"POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: " +
                    digits.encode() + b"\r\n\r\n"))
    # Near-limit requests broken: a byte changed, inserted or removed
    # anywhere or in the last 64 bytes, or cut short (with and without FIN).
    bases = [data for _, data in raw]
    for _ in range(24):
        data = rng.choice(bases)
        if rng.random() < 0.5:
            cut = rng.randrange(max(0, len(data) - 64), len(data))
            data = data[:cut] + mutate(rng, data[cut:cut + 8]) + data[cut + 8:]
        else:
            data = mutate(rng, data)
        raw.append((rng.random() < 0.4, data))
    fitting = [data for data in bases if len(data) <= BIG_LIMIT]
    for i in range(8):
        data = rng.choice(fitting)
        raw.append((i % 2 == 0, data[:rng.choice([len(data) - 1, len(data) - 3,
                                                  rng.randrange(1, len(data))])]))
    # A bad byte exactly at the limit's last byte and one past it.
    for at in (BIG_LIMIT - 1, BIG_LIMIT):
        data = bytearray(to_length(rng, shaped(rng, "value", 1000), BIG_LIMIT + 8))
        data[at] = 0
        raw.append((False, bytes(data)))
    # Bodies held while the back-end is being opened, up to the hold limit and
    # past it: the segment that would pass it is dropped, nothing leaks.
    head = b"POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % BIG_HOLD
    for total in (BIG_HOLD, BIG_HOLD + 1):
        raw.append((rng.random() < 0.5, head + _fill(rng, total - len(head), VALUE)))
    return [(verdict(data, BIG_LIMIT, fin, BIG_SERVICE), fin, data) for fin, data in raw]


def test_near_limit_generator_reaches_every_limit():
    """The big-limit cases are what they claim: lengths across 64 KiB, headers across 1 MiB."""
    cases = generate_near_limits(seed=20251127)
    lengths = {len(d) for _, _, d in cases}
    assert {BIG_LIMIT - 1, BIG_LIMIT, BIG_LIMIT + 1} <= lengths
    assert {BIG_HOLD, BIG_HOLD + 1} <= lengths
    for shape in SHAPES:
        r = random.Random(1)
        assert WRAP + 1 <= len(shaped(r, shape, WRAP + 1)) < WRAP + 200, shape
    assert len(shaped(random.Random(1), "fields", BIG_LIMIT)) == BIG_LIMIT
    counts: dict[int, int] = {}
    for expect, _, _ in cases:
        counts[expect] = counts.get(expect, 0) + 1
    for status in (400, 408, 431, 503):
        assert counts.get(status, 0) >= 3, f"few {status}: {counts}"
    assert generate_near_limits(seed=20251127) == cases, "not deterministic"


@pytest.mark.slow
def test_fuzz_at_the_largest_limits(tmp_path, harness_binary):
    """max_header_bytes 1 MiB, hold_limit_bytes 16 MiB, requests at every limit: right
    answers, the hold limit enforced, no flow or mbuf left."""
    cases = generate_near_limits(seed=20251127)
    # A pool, and a share of it for held bytes, that a 16 MiB hold fits in:
    # the hold limit, not the pool budget (fe_hold.c), is what is tested.
    summary = run_fuzz(harness_binary, BIG_SERVICE, cases, 777, tmp_path,
                       hold_limit_bytes=BIG_HOLD, mbufs=32767, hold_pool_percent=90)
    assert summary["max_bytes"] == BIG_HOLD + 1
    assert summary["hold_full"] > 0, "the body past the hold limit was not refused"
    assert summary["parsed_exact"] >= len(SHAPES) * 3
