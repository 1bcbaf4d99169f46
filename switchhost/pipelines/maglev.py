"""Maglev consistent hashing (Eisenbud et al., NSDI 2016), computed in Python.

The l4switch's data plane looks a new connection's back-end up in a table of
M slots per VIP, at slot hash(4-tuple) % M; this module fills that table.
The Miresga switch picks a client's front-end the same way, from a table of
front-ends (switchhost/pipelines/miresga.py, `frontend_selection`).
Each back-end has a permutation of the slots, offset + j * skip (mod M), from
two hashes of its *name* (not its position), and the back-ends take turns
claiming their next free slot until the table is full.

Properties, for M = 65537 (the default, the paper's and Katran's size; M
must be prime so that every permutation visits every slot):

- balance: each of N back-ends owns floor(M/N) or ceil(M/N) slots, so the
  table itself adds less than 1/M to the imbalance of hashing connections;
- disruption: removing one of 4 back-ends moves its 25% of the slots and
  about 0.06% of the others' (37 slots of 65,537); adding a fifth moves 20%
  of the slots to it and about 0.16% between the others.  Measured by
  tests/test_l4switch.py (test_maglev_*).  Only connections that *start*
  after a change see it: established ones keep their connection-table entry.

Building a table for a handful of back-ends takes tens of milliseconds.
"""

from __future__ import annotations

import hashlib


def _hash64(name: str, salt: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, person=salt).digest(),
                          "little")


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def maglev_table(names: list[str], size: int) -> list[int]:
    """Slot -> index into `names`; [] for no back-ends.

    Deterministic: the same names give the same table in any order of
    `names` up to the indices (a slot's back-end is decided by names alone).
    """
    if not is_prime(size):
        raise ValueError(f"Maglev table size {size} is not prime")
    if len(set(names)) != len(names):
        raise ValueError(f"back-end listed twice: {names}")
    n = len(names)
    if n == 0:
        return []
    if n > size:
        raise ValueError(f"{n} back-ends for a Maglev table of {size} slots")
    # Claim order by name, so that a table depends on the set of names only.
    order = sorted(range(n), key=lambda i: names[i])
    offset = [_hash64(names[i], b"l4-maglev-offset") % size for i in order]
    skip = [_hash64(names[i], b"l4-maglev-skip") % (size - 1) + 1 for i in order]
    nxt = [0] * n
    table = [-1] * size
    filled = 0
    while True:
        for k in range(n):
            o, s, j = offset[k], skip[k], nxt[k]
            c = (o + j * s) % size
            while table[c] >= 0:
                j += 1
                c = (o + j * s) % size
            table[c] = order[k]
            nxt[k] = j + 1
            filled += 1
            if filled == size:
                return table
