"""The front-end's buffers under clients that choose their segment sizes (issue 14.5).

Held request bytes sit in mbufs of the pool the port receives into.  A
client sending its header one byte a segment used to pin one mbuf per byte;
now small segments are copied into the held chain's last mbuf, a flow parks
at most hold_flow_mbufs, and all flows together at most hold_pool_percent of
the pool, the longest wait for a first header giving its mbufs back when the
budget is reached.  Played against the real state machine (tests/fe_harness.py),
both builds of the harness.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from switchhost import layouts
from fe_harness import (GET, Client, Harness, backend_pkt, config_text,  # noqa: F401
                        harness_binary, only, payload, splice, to_backend)

#: The harness's pool (config_text's mbufs).
POOL = 4095
#: Segments a flow holds as they came before small ones are copied (fe_hold.c).
UNCOPIED = 4


def test_one_byte_segments_share_one_mbuf_and_arrive_intact(harness_binary):
    """A header sent a byte at a time parks a few mbufs, and reaches the back-end whole."""
    request = b"GET /index.html HTTP/1.1\r\nHost: www.example\r\nX-Pad: " + b"p" * 700 + b"\r\n\r\n"
    with Harness(config_text(), binary=harness_binary) as h:
        c = Client(port=47001)
        c.send(h)
        for i in range(len(request) - 1):
            c.send(h, request[i:i + 1], "PA")
        st = h.stats()
        # Four as they came, then 536-byte mbufs (IPv4's minimum MSS: the
        # longest segment it sent was one byte).
        assert st["held_mbufs"] == UNCOPIED + 1
        assert st["packets"]["coalesced"] == len(request) - 1 - (UNCOPIED + 1)
        syn = only(c.send(h, request[-1:], "PA"))
        assert to_backend(syn, "be1") and syn[TCP].flags == "S"
        out = h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA"))
        data = [f for f in out if payload(f)]
        assert b"".join(payload(f) for f in data) == request
        assert data[0][TCP].seq == c.c + 1
        # The front-end acknowledged those bytes itself: it keeps their copy
        # (as held) until the back-end has them.
        assert h.stats()["held_mbufs"] == UNCOPIED + 1
        assert max(len(payload(f)) for f in data) == 536
        h.send(backend_pkt(c, "be1", c.s + 1, c.seq, "A"))
        assert h.stats()["held_mbufs"] == 0


@pytest.mark.parametrize("sizes", [(1,), (1, 990), (990,), (991, 1), (700, 700, 1)],
                         ids=lambda s: "-".join(map(str, s)))
def test_a_flow_parks_a_bounded_number_of_mbufs_whatever_its_segments(harness_binary, sizes):
    """Segment sizes chosen to defeat the copying (each one just too big for the room
    left): a flow still parks at most two mbufs per segment's worth of bytes (plus the
    few it keeps as they came), no released segment is longer than the client's
    longest, and the body reaches the back-end intact."""
    body_len = 60000
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % body_len
    body = bytes(i % 251 for i in range(body_len))
    with Harness(config_text(), binary=harness_binary) as h:
        c = Client(port=47002)
        c.send(h)
        assert only(c.send(h, head, "PA"))[TCP].flags == "S"
        off, k = 0, 0
        while off < body_len:
            n = min(sizes[k % len(sizes)], body_len - off)
            assert c.send(h, body[off:off + n], "PA") == []
            off, k = off + n, k + 1
        st = h.stats()
        # Two mbufs in a row hold more than one segment the client could send
        # (its longest, at least 536 bytes): copied-together mbufs go out as
        # one segment each and must pass every link the client's did.
        seg = max(536, *sizes, len(head))
        assert st["held_mbufs"] <= 2 * (len(head) + body_len) // seg + UNCOPIED + 1, st["held_mbufs"]
        out = h.send(backend_pkt(c, "be1", c.s, c.c + 1, "SA"))
        assert b"".join(payload(f) for f in out if payload(f)) == head + body
        assert max(len(payload(f)) for f in out if payload(f)) <= seg
        assert h.stats()["held_mbufs"] == 0


def test_the_pool_budget_evicts_the_longest_waiting_header(harness_binary):
    """All flows together park at most hold_pool_percent of the pool: at the budget the
    flow that has waited longest for its header is reset, and the new request served."""
    budget = POOL * 1 // 100
    with Harness(config_text(hold_pool_percent=1), binary=harness_binary) as h:
        slow = [Client(port=48000 + i) for i in range(budget)]
        for c in slow:
            c.send(h)
            assert c.send(h, b"G", "PA") == []
        assert h.stats()["held_mbufs"] == budget
        c = Client(port=47999)
        c.send(h)
        out = c.send(h, GET, "PA")
        rst = next(f for f in out if f[TCP].flags == "R")
        assert rst[IP].dst == slow[0].ip and rst[TCP].dport == slow[0].port
        assert any(to_backend(f, "be1") and f[TCP].flags == "S" for f in out)
        st = h.stats()
        assert st["errors"]["evicted_for_mbufs"] == 1 and st["held_mbufs"] == budget
        assert st["flows"] == budget


def test_the_pool_budget_refuses_when_no_header_waits(harness_binary):
    """Budget reached by requests in progress (nothing to evict): the new segment is
    dropped unacknowledged and counted; the flows holding mbufs are untouched."""
    budget = POOL * 1 // 100
    with Harness(config_text(hold_pool_percent=1), binary=harness_binary) as h:
        for i in range(budget):
            c = Client(port=49000 + i)
            c.send(h)
            assert only(c.send(h, GET, "PA"))[TCP].flags == "S"
        assert h.stats()["held_mbufs"] == budget
        c = Client(port=48999)
        c.send(h)
        assert c.send(h, b"G", "PA") == []
        st = h.stats()
        assert st["packets"]["hold_pool_full"] == 1 and st["errors"]["evicted_for_mbufs"] == 0
        assert st["held_mbufs"] == budget and st["flows_by_state"]["syn_sent"] == budget


def test_dels_the_offload_ring_refuses_wait_and_none_is_lost(harness_binary):
    """The offload ring is full of ADDs when 40 flows end: the DELs it refuses wait in
    the front-end's backlog and go, in order, once the ring has room; every flow's
    DEL reaches the channel exactly once."""
    with Harness(config_text(offload_ring_size=64), binary=harness_binary) as h:
        first = [Client(port=50000 + i) for i in range(40)]
        for i, c in enumerate(first):
            splice(h, c, backend=("be1", "be2")[i % 2])     # round-robin
        assert len(h.offload()) == 40
        for i in range(40):
            splice(h, Client(port=51000 + i), backend=("be1", "be2")[i % 2])  # ADDs left in the ring
        for c in first:
            c.send(h, flags="R")
        st = h.stats()["offload"]
        assert st["del_deferred"] > 0 and st["del_lost"] == 0
        dels = [e for e in h.offload() if e["op"] == layouts.CtlOp.DEL]
        h.advance(0)                                # a turn of the loop: the backlog goes
        dels += [e for e in h.offload() if e["op"] == layouts.CtlOp.DEL]
        assert [e["port"] for e in dels] == [c.port for c in first]
        st = h.stats()["offload"]
        assert st["del_retried"] == st["del_deferred"] and st["queued_del"] == 40
