"""Every C type that Python mirrors is in one BTF: build/bpf/layouts.bpf.o.

A generator of the Python layouts reads that object (`bpftool -j btf dump
file`); these tests keep it complete, and hold the Python enums to the C
enumerators by name and value, not only by count.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
from pathlib import Path

import pytest

from miresga.control import agent as ag
from switchhost import layouts as L
from switchhost.pipelines import l4switch_layouts as L4

OBJECT = Path(__file__).resolve().parent.parent / "build" / "bpf" / "layouts.bpf.o"

STRUCTS = {
    "mg_vip_key": L.VipKey, "mg_vip": L.Vip, "mg_flow_key": L.FlowKey, "mg_flow": L.Flow,
    "mg_backend_key": L.BackendKey, "mg_port": L.Port, "mg_dp_slot": L.DpSlot,
    "mg_fe_slot": L.FeSlot,
    "mg_backend": L.Backend,
    "mg_frontend": L.Frontend, "mg_cookie_key": L.CookieKey, "mg_switch_config": L.SwitchConfig,
    "mg_ctl_hdr": L.CTL_HDR, "mg_ctl_entry": L.CTL_ENTRY, "mg_ctl_ack": L.CTL_ACK,
    "mg_ctl_key": L.CTL_KEY, "mg_ctl_liveness": L.CTL_LIVENESS,
    "mg_agent_key": ag.AgentKey, "mg_agent_conn": ag.AgentConn,
    "mg_agent_config": ag.AgentConfigRaw,
    "l4_conn_key": L4.ConnKey, "l4_conn": L4.Conn, "l4_config": L4.Config,
}
# C enum -> (Python mirror, the prefix C puts before its member names).
ENUMS = {
    "mg_switch_counter": (L.SwitchCounter, "MG_SW_"),
    "mg_ctl_type": (L.CtlType, "MG_CTL_"),
    "mg_ctl_op": (L.CtlOp, "MG_CTL_"),
    "mg_agent_state": (ag.ConnState, "MG_AGENT_"),
    "mg_agent_counter": (ag.Counter, "MG_AG_"),
    "l4_counter": (L4.Counter, "L4_"),
}


@pytest.fixture(scope="module")
def btf() -> dict[str, dict]:
    assert OBJECT.exists(), f"{OBJECT} missing: run `make build`"
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(OBJECT)], check=True,
                         capture_output=True, text=True)
    return {t["name"]: t for t in json.loads(out.stdout)["types"]
            if t.get("kind") in ("STRUCT", "ENUM") and t.get("name")}


@pytest.mark.parametrize("cname", sorted(STRUCTS))
def test_struct_is_in_the_btf_with_the_mirror_size(btf, cname):
    mirror = STRUCTS[cname]
    assert btf.get(cname, {}).get("kind") == "STRUCT", f"struct {cname} not in {OBJECT.name}"
    # The control protocol's messages are mirrored as wire formats (struct.Struct).
    size = mirror.size if hasattr(mirror, "unpack") else ctypes.sizeof(mirror)
    assert btf[cname]["size"] == size


@pytest.mark.parametrize("cname", sorted(ENUMS))
def test_enum_members_match_by_name_and_value(btf, cname):
    """Each Python member is the C enumerator of the same name and value, and the
    C enum has no member Python lacks (a trailing __MAX count aside)."""
    mirror, prefix = ENUMS[cname]
    assert btf.get(cname, {}).get("kind") == "ENUM", f"enum {cname} not in {OBJECT.name}"
    c = {v["name"]: v["val"] for v in btf[cname]["values"]}
    count = c.pop(f"{prefix}_MAX", None)
    assert c == {f"{prefix}{m.name}": m.value for m in mirror}
    if count is not None:
        assert count == len(mirror)
