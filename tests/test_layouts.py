"""The functions of switchhost/layouts.py give what miresga.h's give.

build/miresga-vectors prints what the C functions give for fixed inputs.
(The layouts and constants are generated from the header's BTF and held to
it by tests/test_layouts_btf.py.)
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from switchhost import layouts as L

PROBE = Path(__file__).resolve().parent.parent / "build" / "miresga-vectors"


@pytest.fixture(scope="module")
def probe() -> dict:
    return json.loads(subprocess.run([str(PROBE)], check=True, capture_output=True,
                                     text=True).stdout)


def test_control_message_lengths_match_c(probe):
    """mg_ctl_body_len() and its mirror agree on every type and on the counts at
    the edges of what each type allows (-1 / None: malformed)."""
    for typ, count, length in probe["ctl_body_len"]:
        assert L.ctl_body_len(typ, count) == (None if length < 0 else length), (typ, count)


def test_mss_classes_match_c(probe):
    assert list(L.MSS_CLASSES) == probe["mss_classes"]


def test_cookie_matches_c(probe):
    """The same inputs give the same cookie in C and in Python."""
    low = L.cookie_low_byte(L.mss_class(1460), 7, True, 5)
    assert low == probe["cookie"]["low"]
    assert L.cookie_make((0x03020100, 0x07060504), "10.10.1.2", "10.10.0.100", 40000, 80,
                         12345, 5, low) == probe["cookie"]["value"]


def test_cookie_is_never_zero_in_c_and_python(probe):
    """Inputs whose hash bits are all zero with a zero low byte would make cookie 0,
    which an agent reads as "no fused ISN": C and Python both give 1 << 8 instead,
    and the switch's check accepts what it made."""
    z = probe["cookie_zero_hash"]
    low = L.cookie_low_byte(0, 0, False, 2)
    assert low == 0
    # The hash really is zero in its cookie bits for these inputs.
    key = (0x03020100, 0x07060504)
    assert L.halfsiphash24(*key, [L._be32_as_host("10.10.1.2"), L._be32_as_host("10.10.0.100"),
                                  (L._be16_as_host(40000) << 16) | L._be16_as_host(80),
                                  z["isn"], (2 << 8) | low]) & L.COOKIE_HASH_MASK == 0
    assert z["value"] == 1 << 8 and z["check"] == 1
    assert L.cookie_make(key, "10.10.1.2", "10.10.0.100", 40000, 80, z["isn"], 2, low) == 1 << 8


def test_halfsiphash_reference_vectors():
    """HalfSipHash-2-4 (32-bit) against the reference implementation's vectors_hsip32."""
    k0, k1 = 0x03020100, 0x07060504
    assert L.halfsiphash24(k0, k1, []) == 0x5B9F35A9
    assert L.halfsiphash24(k0, k1, [0x03020100]) == 0x89466E2A


def test_cookie_fields_round_trip():
    for mss, ws, sack in [(1460, 7, True), (536, None, False), (1440, 14, True), (1300, 0, False)]:
        low = L.cookie_low_byte(L.mss_class(mss), ws, sack, 3)
        cookie = L.cookie_make((1, 2), "1.2.3.4", "5.6.7.8", 1234, 80, 99, 3, low)
        f = L.cookie_fields(cookie)
        assert f["wscale"] == ws and f["sack"] == sack and f["epoch_bit"] == 1
        assert f["mss"] == max(c for c in L.MSS_CLASSES if c <= max(mss, 536))


def test_data_plane_hash_matches_c(probe):
    """The control plane finds a flow's slot where the pipeline put it."""
    ip_be = struct.unpack("=I", socket.inet_aton("10.10.1.2"))[0]
    port_be = struct.unpack("=H", struct.pack("!H", 40000))[0]
    key = (0x03020100, 0x07060504)
    assert [L.dp_hash(key, ip_be, port_be, w) for w in (0, 1)] == probe["dp_hash"]
