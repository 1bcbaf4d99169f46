"""The Python mirror of miresga.h agrees with the C compiler, byte for byte."""

from __future__ import annotations

import ctypes
import json
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from switchhost import layouts as L

PROBE = Path(__file__).resolve().parent.parent / "build" / "layout-probe"

MIRROR = {
    "mg_vip_key": L.VipKey, "mg_vip": L.Vip, "mg_flow_key": L.FlowKey, "mg_flow": L.Flow,
    "mg_backend": L.Backend, "mg_frontend": L.Frontend, "mg_cookie_key": L.CookieKey,
    "mg_switch_config": L.SwitchConfig, "mg_backend_key": L.BackendKey,
    "mg_port": L.Port, "mg_dp_slot": L.DpSlot, "mg_fe_slot": L.FeSlot,
}
WIRE = {"mg_ctl_hdr": L.CTL_HDR, "mg_ctl_entry": L.CTL_ENTRY, "mg_ctl_ack": L.CTL_ACK,
        "mg_ctl_key": L.CTL_KEY, "mg_ctl_liveness": L.CTL_LIVENESS}


@pytest.fixture(scope="module")
def probe() -> dict:
    return json.loads(subprocess.run([str(PROBE)], check=True, capture_output=True,
                                     text=True).stdout)


@pytest.mark.parametrize("name", sorted(MIRROR))
def test_struct_matches_c(probe, name):
    """Size and every field offset of the ctypes mirror equal the C layout."""
    c, py = probe[name], MIRROR[name]
    assert ctypes.sizeof(py) == c["size"]
    for field, off in c["fields"].items():
        assert getattr(py, field).offset == off, f"{name}.{field}"


@pytest.mark.parametrize("name", sorted(WIRE))
def test_wire_format_matches_c(probe, name):
    assert WIRE[name].size == probe[name]["size"]


def test_constants_match(probe):
    assert probe["MG_SW__MAX"] == L.SWITCH_COUNTER_MAX
    assert probe["MG_FLOW_CAPACITY_DEFAULT"] == L.FLOW_CAPACITY_DEFAULT
    assert probe["ctl"] == {name: getattr(L, f"CTL_{name}") for name in probe["ctl"]}


def test_control_message_lengths_match_c(probe):
    """mg_ctl_body_len() and its mirror agree on every type and on the counts at
    the edges of what each type allows (-1 / None: malformed)."""
    for typ, count, length in probe["ctl_body_len"]:
        assert L.ctl_body_len(typ, count) == (None if length < 0 else length), (typ, count)


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


def test_marks_and_data_plane_constants_match_c(probe):
    """The DSCP marks, the data-plane clock and limits: one value on both sides."""
    assert probe["dscp"] == {"none": L.DSCP_NONE, "admit": L.DSCP_ADMIT, "known": L.DSCP_KNOWN,
                             "install": L.DSCP_INSTALL, "remove": L.DSCP_REMOVE,
                             "remove_ctl": L.DSCP_REMOVE_CTL, "miresga": L.DSCP_MIRESGA}
    assert set(probe["dscp"].values()) - {0} == L.DSCP_MARKS
    # RFC 2474 pool 2 (xxxx11): no standard code point is taken.
    assert all(v & 3 == 3 for v in L.DSCP_MARKS)
    assert (probe["MG_DP_TICK_SHIFT"], probe["MG_MAX_PORTS"], probe["MG_DP_SLOTS_LOG2_MAX"],
            probe["MG_DP_SLOTS_DEFAULT"], probe["MG_DP_WAYS_DEFAULT"]) == \
        (L.DP_TICK_SHIFT, L.MAX_PORTS, L.DP_SLOTS_LOG2_MAX, L.DP_SLOTS_DEFAULT, L.DP_WAYS_DEFAULT)
    assert (probe["MG_FE_SLOTS_DEFAULT"], probe["MG_FE_SLOTS_MAX"], probe["MG_FE_NONE"]) == \
        (L.FE_SLOTS_DEFAULT, L.FE_SLOTS_MAX, L.FE_NONE)


def test_data_plane_hash_matches_c(probe):
    """The control plane finds a flow's slot where the pipeline put it."""
    ip_be = struct.unpack("=I", socket.inet_aton("10.10.1.2"))[0]
    port_be = struct.unpack("=H", struct.pack("!H", 40000))[0]
    key = (0x03020100, 0x07060504)
    assert [L.dp_hash(key, ip_be, port_be, w) for w in (0, 1)] == probe["dp_hash"]
