"""The switch memory model: the numbers the README quotes, and its CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from miresga.control import memory_model as mm


def test_miresga_entry_packs_two_per_word_and_naive_spans_two_words():
    """48-bit key + 8-bit index + 4 overhead bits = 60 bits, two per 128-bit word;
    the naive 104 + 48 + 4 = 156-bit entry needs two words, twice per connection."""
    assert (mm.MIRESGA.entry_bits, mm.MIRESGA.entries_per_word) == (60, 2)
    assert (mm.NAIVE.entry_bits, mm.NAIVE.words_per_entry) == (156, 2)
    m = mm.model(143_360)
    mir, naive = m["layouts"]
    assert (mir["raw_bits_per_conn"], mir["bits_per_conn"]) == (60, 64)
    assert (naive["raw_bits_per_conn"], naive["bits_per_conn"]) == (312, 512)
    assert (mir["conns_per_mb"], naive["conns_per_mb"]) == (131_072, 16_384)
    # 143,360 = 140 x 1024: 70 blocks merged and packed, 560 naive.
    assert (mir["blocks"], naive["blocks"]) == (70, 560)
    assert m["ratio_bits_per_conn"] == 8.0


def test_seen_filter_cost():
    assert mm.filter_blocks(22) == 64 and mm.filter_blocks(0) == 0
    assert 0.01 < mm.filter_false_positive(22, 240_000) < 0.015


def test_cli_prints_the_table_and_json():
    out = subprocess.run([sys.executable, "-m", "miresga.control.memory_model"],
                         capture_output=True, text=True, check=True).stdout
    assert "131,072" in out and "8.0x" in out and "560" in out
    out = subprocess.run([sys.executable, "-m", "miresga.control.memory_model", "--json",
                          "--entries", "1024"], capture_output=True, text=True, check=True).stdout
    m = json.loads(out)
    assert m["layouts"][0]["blocks"] == 1 and m["ebpf_entry_bytes"] == {"flow_key": 8,
                                                                        "flow_value": 8}
