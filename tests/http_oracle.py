"""What the front-end must answer to a request, restated in Python for the fuzzer.

The C front-end scans a header byte by byte (miresga/frontend/fe_http.c); this
oracle says the same thing another way, with regular expressions over CRLF-
delimited lines, so the two can check each other:

- the header is the bytes up to and including the first empty line;
- the first byte that cannot continue a valid header gives 400;
- no end within `limit` bytes (and no bad byte before) gives 431;
- a complete header breaking a whole-header rule gives 400;
- incomplete: 400 if the client closed (FIN), 408 when the timer fires;
- nothing sent at all and FIN: 0 (the front-end just closes);
- otherwise the request is routed with Service.route(), by the normal form
  of its path: 400 if the path has none (PathRefused), 404 without a
  cluster, else it goes to a back-end (the fuzz harness has none that
  answers, so the final answer there is 503).
"""

from __future__ import annotations

import re

from common.service import PathRefused, Service

TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# A request target's characters: visible ASCII but '#' (no fragment in a target).
TARGETCHAR = rb"[\x21\x22\x24-\x7e]"
HCHAR = rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]"
FCHAR = rb"[\t\x20-\x7e\x80-\xff]"
SCHEME = rb"[hH][tT][tT][pP][sS]?://"
TARGET = rb"(?:/" + TARGETCHAR + rb"*|\*" + TARGETCHAR + rb"*|" + SCHEME + HCHAR + rb"+(?:[/?]" + \
    TARGETCHAR + rb"*)?)"
VERSION = rb"HTTP/1\.[01]"

REQUEST_LINE = re.compile(rb"(" + TCHAR + rb"+) (" + TARGET + rb") HTTP/1\.([01])")
FIELD_LINE = re.compile(rb"(" + TCHAR + rb"+):(" + FCHAR + rb"*)")


def _prefixes(literal: bytes, case_insensitive: bool = False) -> bytes:
    """A regex matching every prefix of `literal`, the empty one included."""
    def esc(b: bytes) -> bytes:
        if not case_insensitive:
            return re.escape(b)
        return b"".join(b"[" + bytes([c]).lower() + bytes([c]).upper() + b"]" if chr(c).isalpha()
                        else re.escape(bytes([c])) for c in b)
    return b"(?:" + b"|".join(esc(literal[:i]) for i in range(len(literal) + 1)) + b")"


# Every prefix of a valid request line (what may stand before its CRLF arrives).
_SCHEME_P = (rb"(?:" + _prefixes(b"http", True) + rb"|[hH][tT][tT][pP]" +
             rb"(?:[sS]?" + _prefixes(b"://") + rb"))")
_TARGET_P = (rb"(?:/" + TARGETCHAR + rb"*|\*" + TARGETCHAR + rb"*|" + _SCHEME_P + rb"|" + SCHEME +
             HCHAR + rb"*|" + SCHEME + HCHAR + rb"+[/?]" + TARGETCHAR + rb"*)")
REQUEST_PREFIX = re.compile(
    rb"(?:" + TCHAR + rb"*|" + TCHAR + rb"+ " + _TARGET_P + rb"|" + TCHAR + rb"+ " + TARGET +
    rb" " + _prefixes(b"HTTP/1.") + rb"|" + TCHAR + rb"+ " + TARGET + rb" " + VERSION +
    rb"\r?)")
FIELD_PREFIX = re.compile(rb"(?:" + TCHAR + rb"*|" + TCHAR + rb"+:" + FCHAR + rb"*\r?|\r)")

HOST_VALUE = re.compile(HCHAR + rb"*")
LENGTH_VALUE = re.compile(rb"[0-9]{1,18}")


def syntax(data: bytes, limit: int) -> tuple[str, int]:
    """("done", header length) | ("bad", 0) | ("too_large", 0) | ("more", 0)."""
    head = data[:limit]
    lines = head.split(b"\r\n")
    offset = 0
    for i, line in enumerate(lines[:-1]):       # complete lines
        if i == 0:
            if not REQUEST_LINE.fullmatch(line):
                return "bad", 0
        elif line == b"":
            return "done", offset + 2
        elif not FIELD_LINE.fullmatch(line):
            return "bad", 0
        offset += len(line) + 2
    tail = lines[-1]                            # the line still open
    pattern = REQUEST_PREFIX if len(lines) == 1 else FIELD_PREFIX
    if not pattern.fullmatch(tail):
        return "bad", 0
    return ("too_large", 0) if len(data) >= limit else ("more", 0)


def parse(header: bytes) -> dict | None:
    """The whole-header rules; None for 400, else what routing needs."""
    lines = header.split(b"\r\n")
    m = REQUEST_LINE.fullmatch(lines[0])
    method, target, minor = m.group(1), m.group(2), int(m.group(3))
    host = None
    if target.startswith(b"*"):
        if target != b"*" or method != b"OPTIONS":
            return None
        path = b"*"
    elif target.startswith(b"/"):
        path = target.split(b"?", 1)[0]
    else:
        rest = target.split(b"://", 1)[1]
        cut = min([i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0] or [len(rest)])
        host, after = rest[:cut], rest[cut:]
        path = after.split(b"?", 1)[0] if after.startswith(b"/") else b"/"
    fields = []
    for line in lines[1:]:
        if not line:
            break
        name, value = line.split(b":", 1)
        fields.append((name.lower(), value.strip(b" \t")))
    hosts = [v for n, v in fields if n == b"host"]
    lengths = [v for n, v in fields if n == b"content-length"]
    codings = [v for n, v in fields if n == b"transfer-encoding"]
    if len(hosts) > 1 or any(not HOST_VALUE.fullmatch(h) for h in hosts):
        return None
    if any(not LENGTH_VALUE.fullmatch(v) for v in lengths) or len({int(v) for v in lengths}) > 1:
        return None
    if len(codings) > 1:
        return None
    if codings and codings[0].split(b",")[-1].strip(b" \t").lower() != b"chunked":
        return None
    if minor == 1 and not hosts:
        return None
    if codings and (lengths or minor == 0):
        return None
    if host is None and hosts:
        host = hosts[0]
    return {"path": path.decode("latin-1"),
            "host": host.decode("latin-1") if host is not None else None}


def verdict(data: bytes, limit: int, fin: bool, service: Service) -> int:
    """The front-end's final answer to a client that sends `data` (then FIN if `fin`).

    503 stands for "routed to a back-end" (none answers in the fuzz harness).
    """
    if not data:
        return 0 if fin else 408
    state, length = syntax(data, limit)
    if state == "bad":
        return 400
    if state == "too_large":
        return 431
    if state == "more":
        return 400 if fin else 408
    req = parse(data[:length])
    if req is None:
        return 400
    try:
        cluster = service.cluster_for(req["path"], req["host"])
    except PathRefused:
        return 400
    return 404 if cluster is None else 503
