"""How much switch SRAM a connection costs: Miresga's merged entry vs a naive layout.

    python -m miresga.control.memory_model [--entries 143360] [--json]

The model is a Tofino exact-match table: entries live in SRAM blocks of 1024
words of 128 bits; an entry holds its full match key, its action data and a
few overhead bits (valid/version), and small entries are packed several to a
word, wide ones span several words.  What is compared:

- Miresga (merged): one entry serves both directions of a connection, keyed
  by (client IP, client port) -- 48 bits -- with an 8-bit back-end index as
  action data; the back-end's IP, port and MACs sit once per back-end in a
  256-entry table, and the seq/ack translation lives in the back-end agent,
  not in the switch.
- naive: two entries per connection (one per direction), each keyed by the
  full 5-tuple -- 104 bits -- with an IP and port to rewrite to as action data
  (the back-end's going in, the VIP's coming back).

Both are charged the same overhead per entry and store full keys (no
ghost-bit savings, which would help either layout alike), so the ratio is
the layouts', not the accounting's.  Not counted for either: the idle-timeout
state a Tofino keeps per entry in separate map RAM (a few bits), and the
hash-table headroom a cuckoo table needs to reach high occupancy (a load
factor, same for both).

The seen-connection filter of the eBPF pipeline (register arrays, see
miresga/switch/switch.bpf.c) is listed separately: its size is a parameter,
independent of the flow table's.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
from dataclasses import dataclass

from switchhost import layouts

WORD_BITS = 128
BLOCK_WORDS = 1024
OVERHEAD_BITS = 4  # valid/version bits per entry in a Tofino exact-match RAM word
MB_BITS = 8 * 1024 * 1024


@dataclass(frozen=True)
class Layout:
    name: str
    key_bits: int
    action_bits: int
    entries_per_conn: int

    @property
    def entry_bits(self) -> int:
        return self.key_bits + self.action_bits + OVERHEAD_BITS

    @property
    def entries_per_word(self) -> int:
        """Entries packed into one RAM word (0 if an entry spans several)."""
        return WORD_BITS // self.entry_bits

    @property
    def words_per_entry(self) -> int:
        return math.ceil(self.entry_bits / WORD_BITS)

    @property
    def packed_entry_bits(self) -> float:
        """SRAM bits an entry really occupies once packed into words."""
        if self.entries_per_word >= 1:
            return WORD_BITS / self.entries_per_word
        return self.words_per_entry * WORD_BITS

    @property
    def raw_bits_per_conn(self) -> int:
        return self.entry_bits * self.entries_per_conn

    @property
    def bits_per_conn(self) -> float:
        return self.packed_entry_bits * self.entries_per_conn

    @property
    def conns_per_mb(self) -> int:
        return int(MB_BITS // self.bits_per_conn)

    def blocks_for(self, conns: int) -> int:
        words = math.ceil(conns * self.bits_per_conn / WORD_BITS)
        return math.ceil(words / BLOCK_WORDS)


MIRESGA = Layout("Miresga merged: (client IP, port) -> 8-bit back-end index",
                 key_bits=32 + 16, action_bits=8, entries_per_conn=1)
NAIVE = Layout("naive: 2 entries, 5-tuple -> IP + port to rewrite",
               key_bits=32 + 32 + 16 + 16 + 8, action_bits=32 + 16, entries_per_conn=2)


def filter_blocks(bits_log2: int) -> int:
    """SRAM blocks of the seen filter's two generations."""
    return math.ceil(2 * (1 << bits_log2) / WORD_BITS / BLOCK_WORDS) if bits_log2 else 0


def filter_false_positive(bits_log2: int, conns: int) -> float:
    """Chance a forged packet passes a generation holding `conns` connections (k = 2)."""
    if not bits_log2:
        return 0.0
    return (1 - math.exp(-2 * conns / (1 << bits_log2))) ** 2


def model(entries: int = layouts.FLOW_CAPACITY_DEFAULT, filter_bits_log2: int = 22,
          filter_conns: int = 240_000) -> dict:
    rows = []
    for lay in (MIRESGA, NAIVE):
        rows.append({
            "layout": lay.name, "key_bits": lay.key_bits, "action_bits": lay.action_bits,
            "entry_bits": lay.entry_bits, "entries_per_conn": lay.entries_per_conn,
            "entries_per_word": lay.entries_per_word, "words_per_entry": lay.words_per_entry,
            "raw_bits_per_conn": lay.raw_bits_per_conn, "bits_per_conn": lay.bits_per_conn,
            "conns_per_mb": lay.conns_per_mb, "blocks": lay.blocks_for(entries),
        })
    return {
        "assumptions": {"word_bits": WORD_BITS, "block_words": BLOCK_WORDS,
                        "overhead_bits_per_entry": OVERHEAD_BITS, "connections": entries},
        "layouts": rows,
        "ratio_bits_per_conn": NAIVE.bits_per_conn / MIRESGA.bits_per_conn,
        "ratio_raw_bits_per_conn": NAIVE.raw_bits_per_conn / MIRESGA.raw_bits_per_conn,
        "seen_filter": {"bits_log2": filter_bits_log2, "blocks": filter_blocks(filter_bits_log2),
                        "connections_per_generation": filter_conns,
                        "false_positive": filter_false_positive(filter_bits_log2, filter_conns)},
        # The eBPF model's own entry: padded to 32-bit words, and with the
        # last-seen stamp a Tofino keeps in idle-timeout RAM instead.
        "ebpf_entry_bytes": {"flow_key": ctypes.sizeof(layouts.FlowKey),
                             "flow_value": ctypes.sizeof(layouts.Flow)},
    }


def render(m: dict) -> str:
    a = m["assumptions"]
    n = a["connections"]
    out = [f"Switch SRAM per connection (Tofino exact match: {a['word_bits']}-bit words, "
           f"{a['block_words']} words per block, {a['overhead_bits_per_entry']} overhead bits "
           f"per entry)", ""]
    hdr = (f"{'layout':<58} {'key':>4} {'act':>4} {'entry':>5} {'bits/conn':>9} "
           f"{'bits/conn':>9} {'conns/MB':>9} {'blocks for':>10}")
    sub = (f"{'':<58} {'bits':>4} {'bits':>4} {'bits':>5} {'(raw)':>9} "
           f"{'(packed)':>9} {'(packed)':>9} {n:>10,}")
    out += [hdr, sub, "-" * len(hdr)]
    for r in m["layouts"]:
        out.append(f"{r['layout']:<58} {r['key_bits']:>4} {r['action_bits']:>4} "
                   f"{r['entry_bits']:>5} {r['raw_bits_per_conn']:>9} "
                   f"{r['bits_per_conn']:>9g} {r['conns_per_mb']:>9,} {r['blocks']:>10}")
    out.append(f"{'naive / Miresga':<58} {'':>4} {'':>4} {'':>5} "
               f"{m['ratio_raw_bits_per_conn']:>8.1f}x {m['ratio_bits_per_conn']:>8.1f}x")
    f = m["seen_filter"]
    if f["bits_log2"]:
        out += ["", f"Seen filter (register arrays, 2 generations x 2^{f['bits_log2']} bits): "
                    f"{f['blocks']} blocks; with {f['connections_per_generation']:,} "
                    f"connections per generation a forged packet passes with p = "
                    f"{f['false_positive']:.3f}"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m miresga.control.memory_model",
                                 description="Bits per connection: Miresga's merged flow entry "
                                             "vs a naive two-entry 5-tuple layout.")
    ap.add_argument("--entries", type=int, default=layouts.FLOW_CAPACITY_DEFAULT,
                    help="connections to size the table for (default: the prototype's 143,360)")
    ap.add_argument("--filter-bits-log2", type=int, default=22,
                    help="seen filter size per generation, as the switch plan's default (0: none)")
    ap.add_argument("--filter-conns", type=int, default=240_000,
                    help="connections a filter generation holds (e.g. 1000/s x 240 s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    m = model(args.entries, args.filter_bits_log2, args.filter_conns)
    print(json.dumps(m, indent=1) if args.json else render(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
