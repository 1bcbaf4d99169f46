"""miresga/include/mg_tcp_opts.h as plain C (the front-end's use), compiled here.

The eBPF programs drive the same step function through bpf_loop() and are
tested packet by packet in test_agent_packets.py; this checks the walk's
results field by field, for well-formed and malformed option lists.
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ABSENT = 0xFF
OK, TRUNCATED, BAD_LEN, DUPLICATE = 0, 1, 2, 3


class TcpOpts(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint8) for n in ("status", "mss_off", "wscale_off", "wscale",
                                              "sack_perm", "sack_off", "sack_blocks",
                                              "timestamps", "ts_off")] + [("mss", ctypes.c_uint16)]


@pytest.fixture(scope="module")
def parse(tmp_path_factory):
    d = tmp_path_factory.mktemp("opts")
    src = d / "opts.c"
    src.write_text('#include "mg_tcp_opts.h"\n'
                   "int parse(const __u8 *b, __u32 len, struct mg_tcp_opts *o)\n"
                   "{ return mg_tcp_opts_parse(b, len, o); }\n")
    lib = d / "libopts.so"
    # The project's host flags: the header must build warning-free for the front-end.
    subprocess.run(["gcc", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    "-I", str(ROOT / "miresga" / "include"), str(src), "-o", str(lib)],
                   check=True, capture_output=True, text=True)
    so = ctypes.CDLL(str(lib))
    so.parse.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(TcpOpts)]

    def run(raw: bytes) -> TcpOpts:
        o = TcpOpts()
        rc = so.parse(raw, len(raw), ctypes.byref(o))
        assert rc == o.status
        return o
    return run


CASES = [
    # what, options, expected fields
    ("Linux SYN: MSS, SACK-perm, TS, NOP, WS",
     bytes.fromhex("020405b4" "0402" "080a0000000100000000" "01" "030307"),
     dict(status=OK, mss=1460, mss_off=2, sack_perm=1, timestamps=1, ts_off=8, wscale=7,
          wscale_off=19, sack_off=ABSENT)),
    ("Miresga replay: MSS, SACK-perm, NOP, WS",
     bytes.fromhex("020405b4" "0402" "01" "030309"),
     dict(status=OK, mss=1460, sack_perm=1, wscale=9, wscale_off=9, timestamps=0,
          ts_off=ABSENT)),
    ("NOP NOP SACK x2",
     bytes.fromhex("0101" "0512") + bytes(range(16)),
     dict(status=OK, sack_off=4, sack_blocks=2, mss_off=ABSENT, wscale_off=ABSENT)),
    ("EOL ends the list; garbage after it is not read",
     bytes.fromhex("0101" "00" "ff00ff"),
     dict(status=OK, sack_off=ABSENT)),
    ("empty", b"", dict(status=OK, sack_off=ABSENT, wscale_off=ABSENT, mss_off=ABSENT)),
    ("unknown kind skipped by its length",
     bytes.fromhex("1e06aabbccdd" "0101" "050a") + bytes(8),
     dict(status=OK, sack_off=10, sack_blocks=1)),
    ("length 0 (a naive walk spins)", bytes.fromhex("0101" "0800") + bytes(8),
     dict(status=BAD_LEN)),
    ("length 1", bytes.fromhex("1301"), dict(status=BAD_LEN)),
    ("SACK runs past the end", bytes.fromhex("0101" "0512") + bytes(8),
     dict(status=TRUNCATED, sack_off=ABSENT)),
    ("kind byte without length at the end", bytes.fromhex("010101" "05"), dict(status=TRUNCATED)),
    ("SACK length not 2 + 8n", bytes.fromhex("0101" "050b") + bytes(9), dict(status=BAD_LEN)),
    ("WS with length 4", bytes.fromhex("03040700"), dict(status=BAD_LEN, wscale_off=ABSENT)),
    ("two WS options", bytes.fromhex("030307" "030309" "0101"),
     dict(status=DUPLICATE, wscale=7, wscale_off=2)),
    ("Linux data segment: NOP NOP TS (TSval at 4)", bytes.fromhex("0101" "080a" "00000005" "00000007"),
     dict(status=OK, timestamps=1, ts_off=4, sack_off=ABSENT)),
    ("two TS options", bytes.fromhex("080a" + "00" * 8 + "080a" + "00" * 8),
     dict(status=DUPLICATE, timestamps=1, ts_off=2)),
    ("fields parsed before an error are kept (as the kernel does)",
     bytes.fromhex("020405b4" "0303"), dict(status=TRUNCATED, mss=1460, wscale_off=ABSENT)),
    ("40 NOPs: the bound is reached exactly", b"\x01" * 40, dict(status=OK)),
    ("more than 40 bytes: only 40 are looked at", b"\x01" * 40 + bytes.fromhex("0800"),
     dict(status=OK)),
]


@pytest.mark.parametrize("what,raw,want", CASES, ids=[c[0] for c in CASES])
def test_option_walk(parse, what, raw, want):
    """Each list gives exactly the listed fields (others as in an empty list)."""
    o = parse(raw)
    for field, value in want.items():
        assert getattr(o, field) == value, f"{what}: {field}"
