"""Requests at the front-end's largest limits, through the real state machine.

`max_header_bytes` may be 1 MiB, so every length the parser and the rules
derive from a header (method, target, path, host, field names and values, the
whole header) can pass 65,535.  Each test sends one such request, a segment
of 1,400 bytes at a time, at max_header_bytes = 1 MiB and the largest hold
limit, and checks where it goes: a length kept in 16 bits wraps, and the
request is then routed by a truncated path or host, or crashes the parser.
Each runs against the plain and the sanitized build of the harness.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from common.service import Cluster, Rule, Service

from fe_harness import (BACKENDS, Client, Harness, backend_pkt, config_text,  # noqa: F401
                        harness_binary, payload)

MIB = 1 << 20
SEGMENT = 1400
HOLD_MAX = 16 << 20             # the largest hold_limit_bytes fe_config.c accepts

# /api and Host img.example go to "api" (be3, port 8080); the rest to "static".
BIG_SERVICE = Service(
    vip="10.10.0.100", port=80,
    clusters=[Cluster(name="static", backends=["be1", "be2"]),
              Cluster(name="api", backends=["be3"], port=8080)],
    rules=[Rule(cluster="api", path_prefix="/api"),
           Rule(cluster="api", path_prefix="/", host="img.example")],
    default_cluster="static",
    max_header_bytes=MIB, request_timeout_s=5.0,
)


@pytest.fixture
def big(harness_binary):
    conf = config_text(BIG_SERVICE, hold_limit_bytes=HOLD_MAX, mbufs=16383)
    with Harness(conf, binary=harness_binary) as h:
        yield h


def send_all(h: Harness, c: Client, data: bytes, fin: bool = False) -> list:
    """The client's handshake ACK, then `data` in full segments; every frame sent back."""
    out = c.send(h)
    for i in range(0, len(data), SEGMENT):
        last = i + SEGMENT >= len(data)
        out += c.send(h, data[i:i + SEGMENT], ("FPA" if fin else "PA") if last else "A")
    return out


def syn_to(frames, backend: str, port: int = 80) -> None:
    syns = [f for f in frames if "S" in f[TCP].flags]
    assert len(syns) == 1, [f.summary() for f in frames]
    assert syns[0][IP].dst == BACKENDS[backend] and syns[0][TCP].dport == port, syns[0].summary()


def syn_to_static(frames) -> None:
    syns = [f for f in frames if "S" in f[TCP].flags]
    assert len(syns) == 1, [f.summary() for f in frames]
    assert syns[0][IP].dst in (BACKENDS["be1"], BACKENDS["be2"]), syns[0].summary()
    assert syns[0][TCP].dport == 80


def answer(frames, c: Client) -> bytes:
    ans = [f for f in frames if f[IP].dst == c.ip and "F" in f[TCP].flags]
    assert len(ans) == 1, [f.summary() for f in frames]
    return payload(ans[0])


def pad(prefix: bytes, total: int, fill: bytes = b"a") -> bytes:
    assert len(prefix) <= total
    return prefix + fill * (total - len(prefix))


@pytest.mark.parametrize("target_len", [65535, 65536, 65537, 131072 + 4])
def test_absolute_form_target_over_16_bits_routes_by_its_authority(big, target_len):
    """The reported crash: a 65,536-byte absolute-form target; its host picks the cluster."""
    target = pad(b"http://img.example/x/", target_len)
    c = Client(port=44000 + target_len % 1000)
    syn_to(send_all(big, c, b"GET " + target + b" HTTP/1.1\r\nHost: other\r\n\r\n"), "be3", 8080)


@pytest.mark.parametrize("path_len", [65535, 65536, 65537, 196608])
def test_path_over_16_bits_matches_its_prefix(big, path_len):
    """An origin-form path starting /api goes to api whatever its length."""
    c = Client(port=44100 + path_len % 1000)
    syn_to(send_all(big, c, b"GET " + pad(b"/api/", path_len) + b" HTTP/1.1\r\nHost: h\r\n\r\n"),
           "be3", 8080)


@pytest.mark.parametrize("query_len", [65536, 70000])
def test_query_over_16_bits_is_not_path(big, query_len):
    """A long query after /api: still /api; after /x: still static."""
    c = Client(port=44200)
    q = pad(b"?q=", query_len)
    syn_to(send_all(big, c, b"GET /api" + q + b" HTTP/1.1\r\nHost: h\r\n\r\n"), "be3", 8080)
    c2 = Client(port=44201)
    syn_to_static(send_all(big, c2, b"GET /x" + q + b" HTTP/1.1\r\nHost: h\r\n\r\n"))


@pytest.mark.parametrize("extra", [65536 - len(b"img.example"), 65536, 65537])
def test_host_over_16_bits_is_not_a_shorter_host(big, extra):
    """Host img.example followed by 64 KiB more is another host: static, not api."""
    host = b"img.example" + b"x" * extra
    c = Client(port=44300 + extra % 100)
    syn_to_static(send_all(big, c, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"))
    c2 = Client(port=44400 + extra % 100)
    syn_to(send_all(big, c2, b"GET http://img.example" + b":" + b"8" * extra +
                    b"/ HTTP/1.1\r\nHost: h\r\n\r\n"), "be3", 8080)


@pytest.mark.parametrize("name_len,value_len", [(65536, 1), (1, 65536), (70000, 70000)])
def test_field_name_and_value_over_16_bits(big, name_len, value_len):
    """Long field lines are fields like any other: the request routes by its path."""
    field = b"X" * name_len + b": " + b"v" * value_len
    c = Client(port=44500 + name_len % 100)
    syn_to(send_all(big, c, b"GET /api HTTP/1.1\r\nHost: h\r\n" + field + b"\r\n\r\n"),
           "be3", 8080)


def test_method_over_16_bits_is_not_options(big):
    """A method that starts with OPTIONS and is 65,543 bytes long is not OPTIONS: '*' is 400."""
    c = Client(port=44600)
    request = b"OPTIONS" + b"S" * 65536 + b" * HTTP/1.1\r\nHost: h\r\n\r\n"
    text = answer(send_all(big, c, request), c)
    assert text.startswith(b"HTTP/1.1 400 "), text
    assert big.stats()["errors"]["400"] == 1


def test_header_of_exactly_the_limit_passes_and_one_more_byte_is_431(big):
    """1 MiB of header routes; 1 MiB + 1 gets 431, at that byte."""
    head = b"GET /api HTTP/1.1\r\nHost: h\r\nX: "
    exact = head + b"p" * (MIB - len(head) - 4) + b"\r\n\r\n"
    assert len(exact) == MIB
    c = Client(port=44700)
    syn_to(send_all(big, c, exact), "be3", 8080)
    over = head + b"p" * (MIB - len(head) - 3) + b"\r\n\r\n"
    c2 = Client(port=44701)
    text = answer(send_all(big, c2, over), c2)
    assert text.startswith(b"HTTP/1.1 431 "), text


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_body_over_16_bits_ends_where_it_says(big, framing):
    """A chunk (or Content-Length) of 65,537 bytes: the next request is found after it."""
    n = 65537
    if framing == "chunked":
        head = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = b"%x\r\n" % n + b"b" * n + b"\r\n0\r\n\r\n"
    else:
        head = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % n
        body = b"b" * n
    c = Client(port=44800)
    syns = [f for f in send_all(big, c, head) if "S" in f[TCP].flags]
    assert len(syns) == 1
    backend = next(b for b, a in BACKENDS.items() if a == syns[0][IP].dst)
    out = big.send(backend_pkt(c, backend, c.s, c.c + 1, "SA"))
    assert payload(out[-1]) == head
    sent = b""
    for i in range(0, len(body), SEGMENT):
        frames = c.send(big, body[i:i + SEGMENT], "PA")
        assert len(frames) == 1 and frames[0][IP].dst == BACKENDS[backend]
        sent += payload(frames[0])
    assert sent == body
    # The bytes after the body are a new request, for the api cluster: it moves
    # once the old back-end's response is over (held until then).
    out = c.send(big, b"GET /api HTTP/1.1\r\nHost: h\r\n\r\n", "PA")
    assert out == [], [f.summary() for f in out]
    st = big.stats()
    assert st["requests"] == 2 and st["decisions"]["other_backend"] == 1
    assert st["flows_by_state"]["drain"] == 1
