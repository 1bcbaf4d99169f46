"""How much switch SRAM a connection costs: Miresga's tables vs a naive layout.

    python -m miresga.control.memory_model [--entries 143360] [--dp-slots 131072]
        [--conn-rate 1000] [--filter-period 120] [--json]

The model is a Tofino's SRAM: blocks of 1024 words of 128 bits.  Every field
the pipeline matches on or reads is counted, at the width the pipeline needs.

Exact-match tables (entries hold their full match key, their action data
and a few overhead bits (valid/version); small entries are packed several to
a word, wide ones span several words):

- Miresga (merged): one entry serves both directions of a connection, keyed
  by (client IP, client port) -- 48 bits -- plus the VIP index the pipeline
  checks the entry against (4 bits number MG_MAX_VIPS = 16 VIPs), with an
  8-bit back-end index as action data; the back-end's IP, port and MACs sit
  once per back-end in a 256-entry table, and the seq/ack translation lives
  in the back-end agent, not in the switch.
- naive: two entries per connection (one per direction), each keyed by the
  full 5-tuple -- 104 bits -- with an IP and port to rewrite to as action data
  (the back-end's going in, the VIP's coming back).

Both are charged the same overhead per entry and store full keys (no
ghost-bit savings, which would help either layout alike), so the ratio is
the layouts', not the accounting's.  Not counted for either: the idle-timeout
state a Tofino keeps per entry in separate map RAM (a few bits), and the
hash-table headroom a cuckoo table needs to reach high occupancy (a load
factor, same for both).

The data-plane table (hand-off mode `dataplane`, switch.bpf.c "data-plane
table") is register arrays, not a match table: per slot a 64-bit register
pair {client IP; client port, back-end index, VIP index} and a 32-bit
last-seen register, no overhead bits (an empty slot is client IP 0 or time
0).  Its cost per live connection depends on how full it may run: a new flow
is refused when every way holds another live key (`dp_refusal`), so it is
sized for the live connections at a refusal rate.

The front-end selection table (switch.bpf.c, "front-end selection"): a
table indexed by hash(client IP, client port) mod fe_slots (a prime) whose
action data is two 4-bit front-end indices (active, stable: 16 front-ends),
no key stored (the index is the hash); its size is independent of the
number of connections.

The seen filter (register arrays too): two generations of 2^bits bits; its
false-positive rate follows from the connection rate and the rotation period,
and during a drain from the "moved" marks the switch keeps in the same bits
(`filter_false_positive_rate`).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
from dataclasses import dataclass

from common import miresga_defaults as defaults
from switchhost import layouts

WORD_BITS = 128
# The drain the report models: one of two front-ends, the largest share one
# front-end of several holds.
DRAINING_SHARE = 0.5
BLOCK_WORDS = 1024
OVERHEAD_BITS = 4  # valid/version bits per entry in a Tofino exact-match RAM word
MB_BITS = 8 * 1024 * 1024

# Widths the pipeline needs, from the limits in miresga.h.
VIP_IDX_BITS = math.ceil(math.log2(layouts.MAX_VIPS))           # 4
BACKEND_IDX_BITS = math.ceil(math.log2(layouts.MAX_BACKENDS))   # 8
FRONTEND_IDX_BITS = math.ceil(math.log2(layouts.MAX_FRONTENDS)) # 4
CLIENT_KEY_BITS = 32 + 16                                        # client IP, client port


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


def merged_layout(vip_idx_bits: int = VIP_IDX_BITS) -> Layout:
    return Layout(f"Miresga merged: (client IP, port, {vip_idx_bits}-bit VIP) -> "
                  f"{BACKEND_IDX_BITS}-bit back-end",
                  key_bits=CLIENT_KEY_BITS + vip_idx_bits, action_bits=BACKEND_IDX_BITS,
                  entries_per_conn=1)


MIRESGA = merged_layout()
NAIVE = Layout("naive: 2 entries, 5-tuple -> IP + port to rewrite",
               key_bits=32 + 32 + 16 + 16 + 8, action_bits=32 + 16, entries_per_conn=2)


# ----------------------------------------------------------- data-plane table

# Register arrays of one slot (switch.bpf.c, "data-plane table"): the fields,
# their widths, and the register that holds them.
DP_FIELDS = [
    ("client IP", 32, "entry pair, lo"),
    ("client port", 16, "entry pair, hi"),
    ("back-end index", BACKEND_IDX_BITS, "entry pair, hi"),
    ("VIP index", VIP_IDX_BITS, "entry pair, hi (8 bits reserved)"),
    ("last seen", 32, "time register"),
]
DP_ENTRY_REGISTER_BITS = 64   # one register pair
DP_TIME_REGISTER_BITS = 32


def dp_blocks(slots: int) -> int:
    """SRAM blocks of the data-plane table's register arrays (both ways)."""
    per_array = lambda width: math.ceil(slots * width / WORD_BITS / BLOCK_WORDS)  # noqa: E731
    return per_array(DP_ENTRY_REGISTER_BITS) + per_array(DP_TIME_REGISTER_BITS)


def dp_refusal(live: int, slots: int, ways: int) -> float:
    """Share of installs refused with `live` live flows in `slots` slots (all ways).

    One way: the new key's slot is taken with probability x = live / slots.
    Two ways, first free way wins: way 0 fills to a0 and way 1 only with what
    way 0 refuses, a1 ~ a0^2 (steady state), a0 + a1 = x per way; an install
    is refused when both are taken, a0 * a1 = a0^3.  Within a few percent of a
    simulation of churning flows (tests/test_memory_model.py).
    """
    per_way = slots // ways
    x = live / per_way
    if ways == 1:
        return min(1.0, x)
    a0 = (-1 + math.sqrt(1 + 4 * x)) / 2
    return min(1.0, a0 ** 3)


def dp_model(slots: int, ways: int, live: int) -> dict:
    slot_bits = DP_ENTRY_REGISTER_BITS + DP_TIME_REGISTER_BITS
    return {
        "slots": slots, "ways": ways,
        "fields": [{"field": f, "bits": b, "register": r} for f, b, r in DP_FIELDS],
        "field_bits": sum(b for _, b, _ in DP_FIELDS), "slot_bits": slot_bits,
        "blocks": dp_blocks(slots), "live_connections": live,
        "refusal": dp_refusal(live, slots, ways),
        "bits_per_live_conn": slots * slot_bits / live if live else None,
    }


# ---------------------------------------------------- front-end selection

FE_SELECT_FIELDS = [("active front-end", FRONTEND_IDX_BITS),
                    ("stable front-end", FRONTEND_IDX_BITS)]


def fe_select_model(slots: int = layouts.FE_SLOTS_DEFAULT) -> dict:
    slot_bits = sum(b for _, b in FE_SELECT_FIELDS)
    return {"slots": slots,
            "fields": [{"field": f, "bits": b} for f, b in FE_SELECT_FIELDS],
            "slot_bits": slot_bits,
            "blocks": math.ceil(slots * slot_bits / WORD_BITS / BLOCK_WORDS),
            # Maglev's own imbalance: a front-end owns floor or ceil of slots/n.
            "max_share_error": layouts.MAX_FRONTENDS / slots}


# ------------------------------------------------------------- seen filter

def filter_blocks(bits_log2: int) -> int:
    """SRAM blocks of the seen filter's two generations."""
    return math.ceil(2 * (1 << bits_log2) / WORD_BITS / BLOCK_WORDS) if bits_log2 else 0


def filter_false_positive(bits_log2: int, conns: int) -> float:
    """Chance a forged packet passes one generation holding `conns` connections (k = 2)."""
    if not bits_log2:
        return 0.0
    return (1 - math.exp(-2 * conns / (1 << bits_log2))) ** 2


def filter_marks(conn_rate: float, period_s: float, active: int = 0,
                 draining_share: float = 0.0) -> int:
    """Marks one generation collects: a connection's seen bits, and during a drain
    the "moved" mark of each connection whose client's slot a draining front-end
    holds (switch.bpf.c, "front-end selection": the same arrays under another
    salt, set when the connection is admitted and refreshed by its packets)."""
    if not 0.0 <= draining_share <= 1.0:
        raise ValueError(f"draining_share {draining_share}: a share of clients, 0 to 1")
    return math.ceil((conn_rate * period_s + active) * (1 + draining_share))


def filter_false_positive_rate(bits_log2: int, conn_rate: float, period_s: float,
                               active: int = 0, draining_share: float = 0.0) -> float:
    """Chance a forged packet passes the filter, at worst (just before a rotation).

    A generation collects, over one period, every new connection validated in
    it (conn_rate x period_s) and every connection with a client packet in it
    (`active` long-lived ones refresh their bits each period); while a
    front-end drains, the connections of its clients (`draining_share` of
    them: 1/n when one of n front-ends drains) also mark "moved" in the same
    bits.  The switch admits a packet whose two bits are set in the current
    generation OR the previous one, so with both generations that full:
    p = 1 - (1 - f)^2, f = (1 - e^(-2n/m))^2, n = filter_marks(...).  A false
    "moved" during a drain has the same chance: it sends one of the draining
    front-end's connections to its active one, which refuses it (a RST).
    """
    if not bits_log2:
        return 0.0
    f = filter_false_positive(bits_log2, filter_marks(conn_rate, period_s, active,
                                                      draining_share))
    return 1 - (1 - f) ** 2


def filter_bits_for(conn_rate: float, period_s: float, bound: float, active: int = 0) -> int:
    """The smallest filter (bits_log2, 6..30) whose false-positive rate is below `bound`."""
    for bits in range(6, 31):
        if filter_false_positive_rate(bits, conn_rate, period_s, active) < bound:
            return bits
    raise ValueError(f"no seen filter up to 2^30 bits keeps false positives below {bound} "
                     f"at {conn_rate}/s over {period_s} s")


# ------------------------------------------------------------------ report

def model(entries: int = layouts.FLOW_CAPACITY_DEFAULT,
          filter_bits_log2: int = defaults.FILTER_BITS_LOG2, conn_rate: float = 1000.0,
          filter_period_s: float = defaults.FILTER_PERIOD_S, active_conns: int = 0,
          dp_slots: int = layouts.DP_SLOTS_DEFAULT,
          dp_ways: int = layouts.DP_WAYS_DEFAULT, dp_live: int = 10_000,
          vip_idx_bits: int = VIP_IDX_BITS, fe_slots: int = layouts.FE_SLOTS_DEFAULT,
          draining_share: float = DRAINING_SHARE) -> dict:
    merged = merged_layout(vip_idx_bits)
    rows = []
    for lay in (merged, NAIVE):
        rows.append({
            "layout": lay.name, "key_bits": lay.key_bits, "action_bits": lay.action_bits,
            "entry_bits": lay.entry_bits, "entries_per_conn": lay.entries_per_conn,
            "entries_per_word": lay.entries_per_word, "words_per_entry": lay.words_per_entry,
            "raw_bits_per_conn": lay.raw_bits_per_conn, "bits_per_conn": lay.bits_per_conn,
            "conns_per_mb": lay.conns_per_mb, "blocks": lay.blocks_for(entries),
        })
    per_gen = math.ceil(conn_rate * filter_period_s) + active_conns
    return {
        "assumptions": {"word_bits": WORD_BITS, "block_words": BLOCK_WORDS,
                        "overhead_bits_per_entry": OVERHEAD_BITS, "connections": entries,
                        "vip_idx_bits": vip_idx_bits, "backend_idx_bits": BACKEND_IDX_BITS},
        "layouts": rows,
        "ratio_bits_per_conn": NAIVE.bits_per_conn / merged.bits_per_conn,
        "ratio_raw_bits_per_conn": NAIVE.raw_bits_per_conn / merged.raw_bits_per_conn,
        "dataplane_table": dp_model(dp_slots, dp_ways, dp_live),
        "frontend_selection": fe_select_model(fe_slots),
        "seen_filter": {"bits_log2": filter_bits_log2, "blocks": filter_blocks(filter_bits_log2),
                        "conn_rate": conn_rate, "period_s": filter_period_s,
                        "active_connections": active_conns,
                        "connections_per_generation": per_gen,
                        "false_positive_per_generation":
                            filter_false_positive(filter_bits_log2, per_gen),
                        "false_positive": filter_false_positive_rate(
                            filter_bits_log2, conn_rate, filter_period_s, active_conns),
                        "draining_share": draining_share,
                        "false_positive_draining": filter_false_positive_rate(
                            filter_bits_log2, conn_rate, filter_period_s, active_conns,
                            draining_share)},
        # The eBPF model's own entries: padded to 32-bit words, and with the
        # last-seen stamp a Tofino keeps in idle-timeout RAM instead.
        "ebpf_entry_bytes": {"flow_key": ctypes.sizeof(layouts.FlowKey),
                             "flow_value": ctypes.sizeof(layouts.Flow),
                             "dp_slot": ctypes.sizeof(layouts.DpSlot)},
    }


def render(m: dict) -> str:
    a = m["assumptions"]
    n = a["connections"]
    out = [f"Switch SRAM per connection (Tofino exact match: {a['word_bits']}-bit words, "
           f"{a['block_words']} words per block, {a['overhead_bits_per_entry']} overhead bits "
           f"per entry)", ""]
    hdr = (f"{'layout':<62} {'key':>4} {'act':>4} {'entry':>5} {'bits/conn':>9} "
           f"{'bits/conn':>9} {'conns/MB':>9} {'blocks for':>10}")
    sub = (f"{'':<62} {'bits':>4} {'bits':>4} {'bits':>5} {'(raw)':>9} "
           f"{'(packed)':>9} {'(packed)':>9} {n:>10,}")
    out += [hdr, sub, "-" * len(hdr)]
    for r in m["layouts"]:
        out.append(f"{r['layout']:<62} {r['key_bits']:>4} {r['action_bits']:>4} "
                   f"{r['entry_bits']:>5} {r['raw_bits_per_conn']:>9} "
                   f"{r['bits_per_conn']:>9g} {r['conns_per_mb']:>9,} {r['blocks']:>10}")
    out.append(f"{'naive / Miresga':<62} {'':>4} {'':>4} {'':>5} "
               f"{m['ratio_raw_bits_per_conn']:>8.1f}x {m['ratio_bits_per_conn']:>8.1f}x")
    d = m["dataplane_table"]
    fields = ", ".join(f"{f['field']} {f['bits']}" for f in d["fields"])
    out += ["", f"Data-plane table (register arrays, {d['ways']} way(s), {d['slots']:,} slots): "
                f"{fields} = {d['field_bits']} bits in a {d['slot_bits']}-bit slot "
                f"(64-bit register pair + 32-bit time); {d['blocks']} blocks; with "
                f"{d['live_connections']:,} live connections {d['refusal']:.2%} of installs "
                f"refused, {d['bits_per_live_conn']:,.0f} bits per live connection"]
    s = m["frontend_selection"]
    out += ["", f"Front-end selection (indexed by hash mod {s['slots']:,}): "
                + ", ".join(f"{f['field']} {f['bits']}" for f in s["fields"])
                + f" = {s['slot_bits']} bits a slot; {s['blocks']} block(s); at most "
                  f"{s['max_share_error']:.1%} of a share off balance"]
    f = m["seen_filter"]
    if f["bits_log2"]:
        out += ["", f"Seen filter (register arrays, 2 generations x 2^{f['bits_log2']} bits): "
                    f"{f['blocks']} blocks; at {f['conn_rate']:,g} connections/s, period "
                    f"{f['period_s']:g} s ({f['connections_per_generation']:,} per generation) "
                    f"a forged packet passes with p = {f['false_positive']:.4f} "
                    f"(both generations ORed); while front-ends holding "
                    f"{f['draining_share']:.0%} of the clients drain, their moved marks "
                    f"in the same bits make it {f['false_positive_draining']:.4f}"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m miresga.control.memory_model",
                                 description="Bits per connection: Miresga's merged flow entry "
                                             "vs a naive two-entry 5-tuple layout; the "
                                             "data-plane table; the seen filter.")
    ap.add_argument("--entries", type=int, default=layouts.FLOW_CAPACITY_DEFAULT,
                    help="connections to size the table for (default: the prototype's 143,360)")
    ap.add_argument("--vip-idx-bits", type=int, default=VIP_IDX_BITS,
                    help=f"width of the VIP index (default {VIP_IDX_BITS}: "
                         f"{layouts.MAX_VIPS} VIPs)")
    ap.add_argument("--dp-slots", type=int, default=layouts.DP_SLOTS_DEFAULT,
                    help=f"data-plane table slots, all ways (default {layouts.DP_SLOTS_DEFAULT:,})")
    ap.add_argument("--dp-ways", type=int, default=layouts.DP_WAYS_DEFAULT, choices=(1, 2))
    ap.add_argument("--dp-live", type=int, default=10_000,
                    help="live connections in the data-plane table (refusal rate)")
    ap.add_argument("--filter-bits-log2", type=int, default=defaults.FILTER_BITS_LOG2,
                    help="seen filter size per generation, as the switch plan's default (0: none)")
    ap.add_argument("--conn-rate", type=float, default=1000.0,
                    help="new connections per second the seen filter sees")
    ap.add_argument("--filter-period", type=float, default=defaults.FILTER_PERIOD_S,
                    help="seen filter rotation period, s (the switch plan's default)")
    ap.add_argument("--active-conns", type=int, default=0,
                    help="long-lived connections refreshing the filter every period")
    ap.add_argument("--fe-slots", type=int, default=layouts.FE_SLOTS_DEFAULT,
                    help="front-end selection table slots, a prime "
                         f"(default {layouts.FE_SLOTS_DEFAULT:,})")
    ap.add_argument("--draining-share", type=float, default=DRAINING_SHARE,
                    help="share of the clients whose front-end drains (their connections "
                         f"also mark the seen filter; default {DRAINING_SHARE:g}: one of two)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    m = model(args.entries, args.filter_bits_log2, args.conn_rate, args.filter_period,
              args.active_conns, args.dp_slots, args.dp_ways, args.dp_live, args.vip_idx_bits,
              args.fe_slots, args.draining_share)
    print(json.dumps(m, indent=1) if args.json else render(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
