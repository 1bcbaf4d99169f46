"""The Python layouts are what the BTF of the C headers says, and follow it.

scripts/gen_layouts.py generates switchhost/layouts_gen.py,
miresga/control/agent_layouts_gen.py and
switchhost/pipelines/l4switch_layouts_gen.py from build/bpf/layouts.bpf.o
(miresga/include/layouts.bpf.c).  These tests hold the committed modules to
that object, the object to the programs the kernel loads, and show that a
change in a header reaches Python.
"""

from __future__ import annotations

import ctypes
import enum
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from miresga.control import agent as ag
from miresga.control import agent_layouts_gen as AG
from switchhost import layouts as L
from switchhost import layouts_gen as SW
from switchhost.pipelines import l4switch_layouts as L4
from switchhost.pipelines import l4switch_layouts_gen as L4G

REPO = Path(__file__).resolve().parent.parent
OBJECT = REPO / "build" / "bpf" / "layouts.bpf.o"
GENERATOR = REPO / "scripts" / "gen_layouts.py"
# struct of layouts.bpf.c -> (generated module, its path), as the Makefile has them.
MODULES = {
    "mg_py_switch": (SW, "switchhost/layouts_gen.py"),
    "mg_py_agent": (AG, "miresga/control/agent_layouts_gen.py"),
    "mg_py_l4switch": (L4G, "switchhost/pipelines/l4switch_layouts_gen.py"),
}
# The programs the kernel loads: their maps' types must be the generated ones.
PROGRAMS = ["switch.bpf.o", "agent.bpf.o", "l4switch.bpf.o"]


def btf_types(obj: Path) -> list[dict]:
    assert obj.exists(), f"{obj} missing: run `make build`"
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["types"]


def generate(obj: Path, out_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """The generator as the Makefile runs it, writing into out_dir."""
    specs = [f"{root}={out_dir / Path(path).name}" for root, (_, path) in MODULES.items()]
    return subprocess.run([sys.executable, str(GENERATOR), "--source", "build/bpf/layouts.bpf.o",
                           *extra, str(obj), *specs], capture_output=True, text=True)


@pytest.fixture(scope="module")
def btf() -> dict[int, dict]:
    return {t["id"]: t for t in btf_types(OBJECT)}


def resolve(types: dict[int, dict], tid: int) -> dict:
    t = types[tid]
    while t["kind"] in ("TYPEDEF", "CONST", "VOLATILE"):
        t = types[t["type_id"]]
    return t


def exported(types: dict[int, dict], root: str) -> list[tuple[str, dict]]:
    """(member name, type) of every member of layouts.bpf.c's struct `root`."""
    r, = [t for t in types.values() if t["kind"] == "STRUCT" and t.get("name") == root]
    return [(m["name"], resolve(types, m["type_id"])) for m in r["members"]]


def python_name(cname: str) -> str:
    return "".join(w.capitalize() for w in cname.split("_", 1)[1].split("_"))


def cases(kind: str) -> list[tuple[str, str]]:
    types = {t["id"]: t for t in btf_types(OBJECT)} if OBJECT.exists() else {}
    out = []
    for root in MODULES:
        for member, t in (exported(types, root) if types else []):
            if kind == "wire" and member.startswith("wire_"):
                out.append((root, t["name"]))
            elif kind == "struct" and t["kind"] == "STRUCT" and not member.startswith("wire_"):
                out.append((root, t["name"]))
            elif kind == "enum" and t["kind"] == "ENUM":
                out.append((root, t["name"]))
    return out or [("missing", f"{OBJECT} missing: run `make build`")]


def by_name(btf: dict[int, dict], name: str) -> dict:
    found = [t for t in btf.values() if t.get("name") == name and t["kind"] in ("STRUCT", "ENUM")]
    assert found, f"{name} not in {OBJECT.name}"
    return found[0]


# ============================================================ current

def test_committed_modules_are_what_the_object_says(tmp_path):
    """The generator with --check finds nothing to change: a header edited
    without `make build`, or a module edited by hand, fails here."""
    specs = [f"{root}={path}" for root, (_, path) in MODULES.items()]
    r = subprocess.run([sys.executable, str(GENERATOR), "--check", "--source",
                        "build/bpf/layouts.bpf.o", str(OBJECT), *specs],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ============================================== the modules against BTF

@pytest.mark.parametrize("root,cname", cases("struct"))
def test_struct_has_btf_size_names_and_offsets(btf, root, cname):
    """Every member, in order, at BTF's offset, with BTF's size, and the
    nested arrays and structs as big as BTF says."""
    module = MODULES[root][0]
    t = by_name(btf, cname)
    py = getattr(module, python_name(cname))
    assert ctypes.sizeof(py) == t["size"]
    assert [f[0] for f in py._fields_] == [m["name"] for m in t["members"]]
    for m in t["members"]:
        assert getattr(py, m["name"]).offset * 8 == m["bits_offset"], m["name"]
        mt = resolve(btf, m["type_id"])
        size = (mt["nr_elems"] * resolve(btf, mt["type_id"])["size"]
                if mt["kind"] == "ARRAY" else mt["size"])
        assert getattr(py, m["name"]).size == size, m["name"]


@pytest.mark.parametrize("root,cname", cases("struct"))
def test_struct_format_reads_what_ctypes_wrote(btf, root, cname):
    """A flat struct's FORMAT (for raw batch scans) unpacks the bytes of a
    ctypes object to its members' values, padding skipped."""
    py = getattr(MODULES[root][0], python_name(cname))
    if not hasattr(py, "FORMAT"):
        assert any(issubclass(ct, (ctypes.Structure, ctypes.Array)) and
                   issubclass(getattr(ct, "_type_", ctypes.Structure), ctypes.Structure)
                   for _, ct in py._fields_), f"{cname}: a flat struct without FORMAT"
        return
    obj, want = py(), []
    for i, (field, ct) in enumerate(py._fields_):
        if field.startswith("_pad"):
            continue
        if issubclass(ct, ctypes.Array):
            value = bytes(range(i, i + ct._length_))
            getattr(obj, field)[:] = list(value)
        else:
            value = (0x5A + i) % 0x80    # fits every width and sign
            setattr(obj, field, value)
        want.append(value)
    assert list(py.FORMAT.unpack(bytes(obj))) == want


@pytest.mark.parametrize("root,cname", cases("wire"))
def test_wire_format_has_btf_size_and_fields(btf, root, cname):
    """A message's format packs to BTF's size, one value per member that is not padding."""
    module = MODULES[root][0]
    t = by_name(btf, cname)
    fmt = getattr(module, cname.split("_", 1)[1].upper())
    assert isinstance(fmt, struct.Struct) and fmt.format.startswith("!")
    assert fmt.size == t["size"]
    assert len(fmt.unpack(bytes(fmt.size))) == sum(
        1 for m in t["members"] if not m["name"].startswith("_pad"))


@pytest.mark.parametrize("root,cname", cases("enum"))
def test_enum_or_constants_have_btf_names_and_values(btf, root, cname):
    module = MODULES[root][0]
    t = by_name(btf, cname)
    # bpftool prints 32-bit enumerators sign-extended; the generator reads them as BTF's encoding.
    c = {v["name"]: v["val"] & 0xFFFFFFFF for v in t["values"]}
    if cname.startswith("mg_py_"):
        assert {n.split("__py__")[1]: getattr(module, n.split("__py__")[1]) for n in c} == \
            {n.split("__py__")[1]: v for n, v in c.items()}
        return
    py = getattr(module, python_name(cname))
    assert issubclass(py, enum.IntEnum)
    count = {n: v for n, v in c.items() if n.endswith("__MAX")}
    members = {n: v for n, v in c.items() if n not in count}
    # Each C enumerator is the Python member of its value with one prefix
    # (MG_SW_, MG_AG_, L4_...) in front of its name.
    assert sorted(members.values()) == sorted(m.value for m in py)
    prefix = next(n[:-len(py(v).name)] for n, v in members.items())
    assert members == {prefix + m.name: m.value for m in py}
    for n, v in count.items():
        assert v == len(py) == getattr(module, f"{cname.split('_', 1)[1].upper()}_MAX")


def test_the_public_modules_are_the_generated_ones():
    """The names the rest of the code imports are the generated objects, not copies."""
    assert (L.VipKey, L.SwitchConfig, L.SwitchCounter, L.CtlType, L.CTL_HDR, L.CTL_MAGIC) == \
        (SW.VipKey, SW.SwitchConfig, SW.SwitchCounter, SW.CtlType, SW.CTL_HDR, SW.CTL_MAGIC)
    assert L.SWITCH_COUNTER_MAX == len(L.SwitchCounter)
    assert (ag.AgentConn, ag.AgentConfigRaw, ag.Counter, ag.ConnState, ag.COUNTER_MAX) == \
        (AG.AgentConn, AG.AgentConfig, AG.AgentCounter, AG.AgentState, AG.AGENT_COUNTER_MAX)
    assert issubclass(ag.AgentKey, AG.AgentKey) and ag.AgentKey._fields_ == AG.AgentKey._fields_
    assert (L4.ConnKey, L4.Conn, L4.Config, L4.Counter, L4.COUNTER_MAX) == \
        (L4G.ConnKey, L4G.Conn, L4G.Config, L4G.Counter, L4G.COUNTER_MAX)


def test_the_agent_loaders_limits_are_the_ones_c_compiles_in():
    """The loader states its map size and port limit as configuration; agent.h
    compiles the same numbers into agent.bpf.o's map definitions."""
    assert (ag.CONNS_DEFAULT, ag.MAX_PORTS) == (AG.CONNS_DEFAULT, AG.MAX_PORTS)


def test_marks_are_from_the_local_use_pool():
    # RFC 2474 pool 2 (xxxx11): no standard code point is taken.
    assert L.DSCP_MARKS == {L.DSCP_ADMIT, L.DSCP_KNOWN, L.DSCP_INSTALL, L.DSCP_REMOVE,
                            L.DSCP_REMOVE_CTL, L.DSCP_MIRESGA, L.DSCP_BACKEND}
    assert all(v & 3 == 3 for v in L.DSCP_MARKS) and L.DSCP_NONE == 0


# ================================================= the programs' BTF

@pytest.mark.parametrize("program", PROGRAMS)
def test_programs_use_the_generated_layouts(btf, program):
    """Every struct a loaded program has in its BTF and Python has too is the
    same size with the same members at the same offsets: the kernel's layout
    is the generated one, not only layouts.bpf.o's."""
    ours = {t["name"]: t for t in btf.values() if t["kind"] == "STRUCT" and t.get("name")}
    theirs = {t["name"]: t for t in btf_types(REPO / "build" / "bpf" / program)
              if t["kind"] == "STRUCT" and t.get("name") in ours}
    shared = [n for n in theirs if not n.startswith("mg_py_")]
    assert shared, f"{program} shares no struct with Python"
    for name in shared:
        def shape(t):
            return t["size"], [(m["name"], m["bits_offset"]) for m in t["members"]]
        assert shape(theirs[name]) == shape(ours[name]), f"{program}: struct {name}"


# ========================================================= drift

BPF_CFLAGS = ["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-D__BPF__"]


def test_a_header_change_reaches_python_and_fails_the_check(tmp_path):
    """In a copy of the headers: a field added to struct mg_agent_conn and a
    counter to enum mg_agent_counter.  The generator puts both in Python, at
    the offset and value C gives them, and --check refuses the committed
    modules, naming the one that no longer matches."""
    src = tmp_path / "src"
    for d in ("miresga/include", "miresga/agent", "targets/l4switch"):
        shutil.copytree(REPO / d, src / d)
    header = src / "miresga/agent/agent.h"
    text = header.read_text()
    text = text.replace("\t__u32 ts_delta;", "\t__u32 ts_delta;\n\t__u16 drift_field;", 1)
    text = text.replace("\tMG_AG__MAX,", "\tMG_AG_DRIFT_COUNTER,\n\tMG_AG__MAX,", 1)
    header.write_text(text)
    triplet = subprocess.run(["gcc", "-dumpmachine"], check=True, capture_output=True,
                             text=True).stdout.strip()
    obj = tmp_path / "layouts.bpf.o"
    subprocess.run(["clang", *BPF_CFLAGS, "-I", src / "miresga/include",
                    "-I", f"/usr/include/{triplet}", "-I", src / "miresga/agent",
                    "-I", src / "targets/l4switch", "-c", src / "miresga/include/layouts.bpf.c",
                    "-o", obj], check=True)

    r = subprocess.run([sys.executable, str(GENERATOR), "--check", "--source",
                        "build/bpf/layouts.bpf.o", str(obj),
                        *[f"{root}={path}" for root, (_, path) in MODULES.items()]],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1
    assert "miresga/control/agent_layouts_gen.py" in r.stderr
    assert "switchhost/layouts_gen.py" not in r.stderr

    out = tmp_path / "out"
    out.mkdir()
    r = generate(obj, out)
    assert r.returncode == 0, r.stderr
    ns: dict = {}
    exec((out / "agent_layouts_gen.py").read_text(), ns)
    conn, counter = ns["AgentConn"], ns["AgentCounter"]
    assert conn.drift_field.offset == AG.AgentConn.ts_delta.offset + 4
    assert ctypes.sizeof(conn) == ctypes.sizeof(AG.AgentConn) + 8   # 50 bytes, 8-aligned
    assert counter.DRIFT_COUNTER == AG.AGENT_COUNTER_MAX
    assert ns["AGENT_COUNTER_MAX"] == AG.AGENT_COUNTER_MAX + 1
    # The other headers did not change: neither did their modules.
    assert (out / "layouts_gen.py").read_text() == (REPO / MODULES["mg_py_switch"][1]).read_text()


def test_a_layout_python_cannot_express_is_refused_by_name(tmp_path):
    """A bit-field has no layout ctypes promises to match: the generator stops
    and names the struct and member rather than emit a guess."""
    src = tmp_path / "bits.bpf.c"
    src.write_text("struct mg_bits { unsigned int a : 3; unsigned int b : 5; };\n"
                   "struct mg_py_bits { struct mg_bits bits; };\n"
                   "struct mg_py_bits mg_py_bits __attribute__((used));\n")
    obj = tmp_path / "bits.bpf.o"
    subprocess.run(["clang", *BPF_CFLAGS, "-c", src, "-o", obj], check=True)
    r = subprocess.run([sys.executable, str(GENERATOR), str(obj),
                        f"mg_py_bits={tmp_path / 'bits.py'}"], capture_output=True, text=True)
    assert r.returncode == 2 and "struct mg_bits.a" in r.stderr
    assert not (tmp_path / "bits.py").exists()
