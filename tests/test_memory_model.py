"""The switch memory model: the numbers the README quotes, and its CLI."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest

from switchhost import layouts
from miresga.control import memory_model as mm


def test_miresga_entry_counts_the_vip_index_and_still_packs_two_per_word():
    """48-bit key + the 4-bit VIP index the pipeline checks (16 VIPs) + 8-bit index +
    4 overhead bits = 64 bits, two per 128-bit word; the naive 104 + 48 + 4 = 156-bit
    entry needs two words, twice per connection."""
    assert mm.VIP_IDX_BITS == 4 and layouts.MAX_VIPS == 16
    assert (mm.MIRESGA.key_bits, mm.MIRESGA.entry_bits, mm.MIRESGA.entries_per_word) == (52, 64, 2)
    assert (mm.NAIVE.entry_bits, mm.NAIVE.words_per_entry) == (156, 2)
    m = mm.model(143_360)
    mir, naive = m["layouts"]
    assert (mir["raw_bits_per_conn"], mir["bits_per_conn"]) == (64, 64)
    assert (naive["raw_bits_per_conn"], naive["bits_per_conn"]) == (312, 512)
    assert (mir["conns_per_mb"], naive["conns_per_mb"]) == (131_072, 16_384)
    # 143,360 = 140 x 1024: 70 blocks merged and packed, 560 naive.
    assert (mir["blocks"], naive["blocks"]) == (70, 560)
    assert m["ratio_bits_per_conn"] == 8.0


def test_an_8_bit_vip_index_no_longer_packs_two_per_word():
    """With 256 VIPs the entry is 68 bits: one per word, twice the SRAM."""
    lay = mm.merged_layout(8)
    assert (lay.entry_bits, lay.entries_per_word, lay.bits_per_conn) == (68, 1, 128)
    assert mm.model(143_360, vip_idx_bits=8)["ratio_bits_per_conn"] == 4.0


def test_data_plane_table_counts_every_field():
    """A slot holds client IP 32, port 16, back-end 8, VIP 4 (in an 8-bit field) and a
    32-bit last-seen: a 64-bit register pair and a 32-bit register, 96 bits; the
    default 131,072 slots take 64 + 32 blocks."""
    d = mm.dp_model(layouts.DP_SLOTS_DEFAULT, layouts.DP_WAYS_DEFAULT, 10_000)
    assert [(f["field"], f["bits"]) for f in d["fields"]] == [
        ("client IP", 32), ("client port", 16), ("back-end index", 8), ("VIP index", 4),
        ("last seen", 32)]
    assert (d["field_bits"], d["slot_bits"], d["blocks"]) == (92, 96, 96)
    assert d["bits_per_live_conn"] == pytest.approx(131_072 * 96 / 10_000)
    # The eBPF slot is the same two words (key and value in one, time in the other).
    assert mm.model()["ebpf_entry_bytes"]["dp_slot"] == 16


def _simulate_refusals(live: int, per_way: int, ways: int, churn: int, seed: int = 7) -> float:
    """Flows come and go (one leaves, one arrives), each hashing to a random slot per
    way and taking the first free one: the share of arrivals refused."""
    assert live < per_way * ways, "more flows than slots: nothing would ever leave room"
    rnd = random.Random(seed)
    taken = [set() for _ in range(ways)]
    flows: list[tuple[int, int]] = []
    refused = arrivals = 0

    def arrive() -> bool:
        nonlocal refused, arrivals
        arrivals += 1
        for w in range(ways):
            s = rnd.randrange(per_way)
            if s not in taken[w]:
                taken[w].add(s)
                flows.append((w, s))
                return True
        refused += 1
        return False

    while len(flows) < live:
        arrive()
    refused = arrivals = 0
    for _ in range(churn):
        i = rnd.randrange(len(flows))
        w, s = flows[i]
        flows[i] = flows[-1]
        flows.pop()
        taken[w].discard(s)
        while not arrive():
            pass
    return refused / arrivals


@pytest.mark.parametrize("live,ways", [(10_000, 2), (30_000, 2), (10_000, 1)])
def test_refusal_model_agrees_with_a_simulation(live, ways):
    """dp_refusal() within 15% (relative) of a seeded simulation of churning flows."""
    slots = 1 << 16
    sim = _simulate_refusals(live, slots // ways, ways, churn=40_000)
    assert mm.dp_refusal(live, slots, ways) == pytest.approx(sim, rel=0.15)


def test_seen_filter_cost_and_false_positives():
    """Two generations of 2^22 bits are 64 blocks.  At 1,000 new connections per
    second and a 120 s period a generation holds 120,000; a forged packet passes one
    with f = (1 - e^(-2n/m))^2 and the filter (either generation) with 1 - (1 - f)^2."""
    assert mm.filter_blocks(22) == 64 and mm.filter_blocks(0) == 0
    assert 0.01 < mm.filter_false_positive(22, 240_000) < 0.015
    f = (1 - math.exp(-2 * 120_000 / (1 << 22))) ** 2
    assert mm.filter_false_positive_rate(22, 1000, 120) == pytest.approx(1 - (1 - f) ** 2)
    assert 0.006 < mm.filter_false_positive_rate(22, 1000, 120) < 0.0065
    # Long-lived connections refresh their bits every period: they count too.
    assert mm.filter_false_positive_rate(22, 1000, 120, active=100_000) > \
        mm.filter_false_positive_rate(22, 1000, 120)
    assert mm.filter_false_positive_rate(0, 1000, 120) == 0.0


def test_a_drain_s_moved_marks_fill_the_seen_filter_too():
    """While front-ends holding a share of the clients drain, each of those clients'
    connections also sets a "moved" mark in the filter's bits: that many more marks
    per generation, and a higher false-positive rate."""
    assert mm.filter_marks(1000, 120, active=100) == 120_100
    assert mm.filter_marks(1000, 120, active=100, draining_share=0.5) == 180_150
    f = mm.filter_false_positive(22, 180_150)
    assert mm.filter_false_positive_rate(22, 1000, 120, 100, draining_share=0.5) == \
        pytest.approx(1 - (1 - f) ** 2)
    assert mm.filter_false_positive_rate(22, 1000, 120, draining_share=0.5) > \
        mm.filter_false_positive_rate(22, 1000, 120)
    m = mm.model(conn_rate=1000, filter_period_s=120, draining_share=0.5)["seen_filter"]
    assert m["false_positive_draining"] > m["false_positive"]
    with pytest.raises(ValueError, match="draining_share 1.5: a share of clients"):
        mm.filter_marks(1000, 120, draining_share=1.5)


def test_filter_bits_for_a_bound():
    """The smallest filter below a bound, and nothing smaller would do."""
    bits = mm.filter_bits_for(5000, 120, 0.01)
    assert mm.filter_false_positive_rate(bits, 5000, 120) < 0.01
    assert mm.filter_false_positive_rate(bits - 1, 5000, 120) >= 0.01
    with pytest.raises(ValueError, match="no seen filter"):
        mm.filter_bits_for(1e9, 1e6, 1e-9)


def test_cli_prints_the_table_and_json():
    out = subprocess.run([sys.executable, "-m", "miresga.control.memory_model"],
                         capture_output=True, text=True, check=True).stdout
    assert "131,072" in out and "8.0x" in out and "560" in out
    assert "Data-plane table" in out and "96 blocks" in out and "p = 0.0062" in out
    out = subprocess.run([sys.executable, "-m", "miresga.control.memory_model", "--json",
                          "--entries", "1024", "--dp-slots", "1024", "--dp-ways", "1",
                          "--dp-live", "256", "--conn-rate", "10", "--filter-period", "60"],
                         capture_output=True, text=True, check=True).stdout
    m = json.loads(out)
    assert m["layouts"][0]["blocks"] == 1 and m["ebpf_entry_bytes"] == {
        "flow_key": 8, "flow_value": 8, "dp_slot": 16}
    assert m["dataplane_table"]["refusal"] == 0.25
    assert m["seen_filter"]["connections_per_generation"] == 600


def test_front_end_selection_is_counted():
    """The selection table holds two 4-bit front-end indices per slot (active and
    stable, 16 front-ends) and no key: the default 1,021 slots fit one block,
    and the CLI prints it."""
    s = mm.model()["frontend_selection"]
    assert [(f["field"], f["bits"]) for f in s["fields"]] == [
        ("active front-end", 4), ("stable front-end", 4)]
    assert (s["slots"], s["slot_bits"], s["blocks"]) == (layouts.FE_SLOTS_DEFAULT, 8, 1)
    assert mm.fe_select_model(65537)["blocks"] == 5
    out = subprocess.run([sys.executable, "-m", "miresga.control.memory_model",
                          "--fe-slots", "65537"], capture_output=True, text=True,
                         check=True).stdout
    assert "Front-end selection (indexed by hash mod 65,537)" in out and "5 block(s)" in out
