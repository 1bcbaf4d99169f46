#!/usr/bin/env python3
"""Generates the Python layouts of the C headers from the BTF of build/bpf/layouts.bpf.o.

    python3 scripts/gen_layouts.py OBJECT STRUCT=MODULE.py [STRUCT=MODULE.py ...]

Each STRUCT is a struct of the object (miresga/include/layouts.bpf.c says
which header it gathers and what each kind of member becomes); its members'
types become MODULE.py: ctypes Structures with the offsets and sizes BTF
gives (and, for a flat one, a host-order struct.Struct FORMAT for raw batch
scans), enum.IntEnums with BTF's enumerators, network-order struct.Struct
message formats, and constants.  Exit 2, naming the struct and member, when
the BTF holds what Python cannot express exactly (a bit-field, say).
`--check` writes nothing and exits 1 if a module is not what the object says
(a header changed and `make build` was not run, or a module was edited by
hand).

Reads the BTF with `bpftool -j btf dump file`, the tool the build already
needs; standard library only.  The output depends on nothing but the BTF, so
a module regenerated from an unchanged header is byte for byte the same.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

# The typedefs that mean network byte order (for wire formats).
BIG_ENDIAN_TYPEDEFS = {"__be16", "__be32", "__be64"}
CTYPES_INT = {(1, False): "ctypes.c_uint8", (2, False): "ctypes.c_uint16",
              (4, False): "ctypes.c_uint32", (8, False): "ctypes.c_uint64",
              (1, True): "ctypes.c_int8", (2, True): "ctypes.c_int16",
              (4, True): "ctypes.c_int32", (8, True): "ctypes.c_int64"}
STRUCT_INT = {1: "B", 2: "H", 4: "I", 8: "Q"}
CONST_MARK = "__py__"


class LayoutError(Exception):
    """BTF the generator cannot express in Python, named by type and member."""


def load_btf(obj: Path) -> dict[int, dict]:
    r = subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(obj)],
                       capture_output=True, text=True)
    if r.returncode:
        raise LayoutError(f"{obj}: bpftool btf dump: {(r.stderr or r.stdout).strip()}")
    return {t["id"]: t for t in json.loads(r.stdout)["types"]}


def camel(cname: str) -> str:
    """mg_switch_config -> SwitchConfig, l4_conn_key -> ConnKey: the C name
    without its project prefix (everything up to the first underscore)."""
    return "".join(w.capitalize() for w in cname.split("_", 1)[1].split("_"))


def enum_value(t: dict, v: dict) -> int:
    # bpftool prints a 32-bit enumerator sign-extended to 64 bits; BTF's
    # encoding says how to read it.
    bits = 8 * t["size"]
    val = v["val"] & ((1 << bits) - 1)
    if t.get("encoding") == "SIGNED" and val >> (bits - 1):
        val -= 1 << bits
    return val


class Module:
    """One generated module: the types a struct of layouts.bpf.o gathers."""

    def __init__(self, types: dict[int, dict], root: str, path: str) -> None:
        self.types = types
        self.root = root
        self.path = path
        self.blocks: list[tuple[list[str], bool]] = []
        self.emitted: dict[int, str] = {}
        # class name -> (size, {field: offset}), as BTF has them
        self.expected: dict[str, tuple[int, dict[str, int]]] = {}
        self.uses_struct = False
        self.uses_enum = False
        self.uses_ctypes = False

    # -------------------------------------------------------------- types

    def strip(self, tid: int) -> tuple[dict, set[str]]:
        """The type behind typedefs and qualifiers, and the typedef names on the way."""
        names: set[str] = set()
        t = self.types[tid]
        while t["kind"] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            if t["kind"] == "TYPEDEF":
                names.add(t["name"])
            t = self.types[t["type_id"]]
        return t, names

    def size_of(self, t: dict) -> int:
        if t["kind"] == "ARRAY":
            return t["nr_elems"] * self.size_of(self.strip(t["type_id"])[0])
        return t["size"]

    def ctype(self, tid: int, where: str) -> str:
        t, _ = self.strip(tid)
        if t["kind"] == "INT":
            if t["nr_bits"] != 8 * t["size"]:
                raise LayoutError(f"{where}: {t['nr_bits']}-bit integer")
            return CTYPES_INT[(t["size"], t["encoding"] == "SIGNED")]
        if t["kind"] in ("ENUM", "ENUM64"):
            return CTYPES_INT[(t["size"], t.get("encoding") == "SIGNED")]
        if t["kind"] == "ARRAY":
            return f"{self.ctype(t['type_id'], where)} * {t['nr_elems']}"
        if t["kind"] == "STRUCT":
            return self.structure(t)
        raise LayoutError(f"{where}: {t['kind']} has no ctypes form")

    # ------------------------------------------------------------ emitters

    def add(self, lines: list[str], one_liner: bool = False) -> None:
        """A top-level block; consecutive one-liners share a block."""
        if one_liner and self.blocks and self.blocks[-1][1]:
            self.blocks[-1][0].extend(lines)
        else:
            self.blocks.append((lines, one_liner))

    def structure(self, t: dict) -> str:
        """A ctypes Structure for struct t (and, first, the structs it holds)."""
        if t["id"] in self.emitted:
            return self.emitted[t["id"]]
        name = camel(t["name"])
        fields = []
        for m in t["members"]:
            where = f"struct {t['name']}.{m['name']}"
            if m.get("bitfield_size"):
                raise LayoutError(f"{where}: bit-fields have no stable ctypes layout")
            fields.append((m["name"], self.ctype(m["type_id"], where), m["bits_offset"] // 8))
        self.uses_ctypes = True
        lines = [f"class {name}(ctypes.Structure):",
                 f'    """struct {t["name"]}: {t["size"]} bytes."""', ""]
        fmt = self.native_format(t)
        if fmt:
            # For scans of raw map batches, where a ctypes object per entry costs too much.
            self.uses_struct = True
            lines += [f'    FORMAT = struct.Struct("{fmt}")  # its fields, padding skipped', ""]
        self.add(lines + ["    _fields_ = ["]
                 + [f'        ("{f}", {ct}),  # offset {off}' for f, ct, off in fields]
                 + ["    ]"])
        self.emitted[t["id"]] = name
        self.expected[name] = (t["size"], {f: off for f, _, off in fields})
        return name

    def native_format(self, t: dict) -> str | None:
        """A struct format in host order for a struct of integers and byte
        arrays (None for one that holds a struct): _pad members and gaps are
        skipped, so unpack gives the other members in order."""
        fmt, at = "=", 0
        for m in t["members"]:
            off = m["bits_offset"] // 8
            mt, _ = self.strip(m["type_id"])
            size = self.size_of(mt)
            if off > at:
                fmt += f"{off - at}x"
            if m["name"].startswith("_pad"):
                fmt += f"{size}x"
            elif mt["kind"] == "INT":
                code = STRUCT_INT[size]
                fmt += code.lower() if mt["encoding"] == "SIGNED" else code
            elif mt["kind"] == "ARRAY" and self.strip(mt["type_id"])[0].get("size") == 1:
                fmt += f"{size}s"
            else:
                return None
            at = off + size
        if t["size"] > at:
            fmt += f"{t['size'] - at}x"
        if struct.calcsize(fmt) != t["size"]:
            raise LayoutError(f"struct {t['name']}: format {fmt} is not {t['size']} bytes")
        return fmt

    def wire(self, t: dict) -> None:
        """A struct.Struct in network order with BTF's offsets; gaps and _pad
        members are pad bytes, and a 4-byte *ip_be is the address's raw bytes
        (what socket.inet_aton gives)."""
        fmt, at = "!", 0
        for m in t["members"]:
            where = f"struct {t['name']}.{m['name']}"
            off = m["bits_offset"] // 8
            mt, typedefs = self.strip(m["type_id"])
            size = self.size_of(mt)
            if off > at:
                fmt += f"{off - at}x"
            if m["name"].startswith("_pad"):
                fmt += f"{size}x"
            elif m["name"].endswith("ip_be") and size == 4:
                fmt += "4s"
            elif mt["kind"] == "INT":
                if size > 1 and not typedefs & BIG_ENDIAN_TYPEDEFS:
                    raise LayoutError(f"{where}: a wire field wider than a byte must be __be*")
                code = STRUCT_INT[size]
                fmt += code.lower() if mt["encoding"] == "SIGNED" else code
            else:
                raise LayoutError(f"{where}: {mt['kind']} in a wire format")
            at = off + size
        if t["size"] > at:
            fmt += f"{t['size'] - at}x"
        if struct.calcsize(fmt) != t["size"]:
            raise LayoutError(f"struct {t['name']}: format {fmt} is not {t['size']} bytes")
        self.uses_struct = True
        name = t["name"].split("_", 1)[1].upper()
        self.add([f'{name} = struct.Struct("{fmt}")  # struct {t["name"]}'], one_liner=True)

    def enum(self, t: dict) -> None:
        values = {v["name"]: enum_value(t, v) for v in t["values"]}
        if any(CONST_MARK in n for n in values):
            # Masks and magic numbers read best in hex, sizes in decimal.
            self.add([f"# enum {t['name']}: the macros of the same names"]
                     + [f"{n.split(CONST_MARK, 1)[1]} = {v:#x}" if v >= 1 << 28 else
                        f"{n.split(CONST_MARK, 1)[1]} = {v}" for n, v in values.items()])
            return
        if len(values) < 2:
            raise LayoutError(f"enum {t['name']}: one enumerator gives no common prefix")
        prefix = os.path.commonprefix(list(values))
        prefix = prefix[:prefix.rfind("_") + 1]
        lines = [f"class {camel(t['name'])}(enum.IntEnum):", f'    """enum {t["name"]}."""', ""]
        count = None
        for n, v in values.items():
            member = n[len(prefix):]
            if member == "_MAX":
                count = v
                continue
            if not member.isidentifier() or member[0] == "_":
                raise LayoutError(f"enum {t['name']}: {n} makes no Python name")
            lines.append(f"    {member} = {v}")
        self.uses_enum = True
        self.add(lines)
        if count is not None:
            if count != len(values) - 1:
                raise LayoutError(f"enum {t['name']}: {prefix}_MAX is {count}, "
                                  f"not the {len(values) - 1} enumerators before it")
            self.add([f"{t['name'].split('_', 1)[1].upper()}_MAX = {count}  # {prefix}_MAX"])

    def render(self, source: str) -> str:
        roots = [t for t in self.types.values()
                 if t["kind"] == "STRUCT" and t.get("name") == self.root]
        if not roots:
            raise LayoutError(f"struct {self.root} is not in {source}")
        for m in roots[0]["members"]:
            t, _ = self.strip(m["type_id"])
            if m["name"].startswith("wire_"):
                self.wire(t)
            elif t["kind"] == "STRUCT":
                self.structure(t)
            elif t["kind"] in ("ENUM", "ENUM64"):
                self.enum(t)
            else:
                raise LayoutError(f"struct {self.root}.{m['name']}: {t['kind']}")
        head = [f'"""Generated by scripts/gen_layouts.py from struct {self.root} of {source}.',
                "", "Do not edit: change the C header and run `make build`.", '"""', "",
                "from __future__ import annotations", ""]
        head += [f"import {m}" for m, used in (("ctypes", self.uses_ctypes),
                                               ("enum", self.uses_enum),
                                               ("struct", self.uses_struct)) if used]
        return "\n\n\n".join(["\n".join(head)] + ["\n".join(b) for b, _ in self.blocks]) + "\n"


def check_layouts(module: Module, text: str) -> None:
    """ctypes lays the generated structures out as BTF says (natural
    alignment is the C ABI's, but a packed or over-aligned struct would not
    be): executes the module and compares every size and offset."""
    ns: dict = {}
    exec(compile(text, module.path, "exec"), ns)
    for name, (size, offsets) in module.expected.items():
        cls = ns[name]
        got = (ctypes.sizeof(cls), {f: getattr(cls, f).offset for f in offsets})
        if got != (size, offsets):
            raise LayoutError(f"{module.path}: {name} is {got} in ctypes, {(size, offsets)} in BTF")


def generate(obj: Path, root: str, path: str, source: str | None = None) -> str:
    module = Module(load_btf(obj), root, path)
    text = module.render(source or str(obj))
    check_layouts(module, text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("object", type=Path)
    ap.add_argument("modules", nargs="+", metavar="STRUCT=MODULE.py")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a module differs from what the object says")
    ap.add_argument("--source", help="the object's name in the modules' docstrings")
    args = ap.parse_args(argv)
    stale = []
    for spec in args.modules:
        root, _, path = spec.partition("=")
        try:
            text = generate(args.object, root, path, args.source)
        except LayoutError as e:
            print(f"gen_layouts: {e}", file=sys.stderr)
            return 2
        current = Path(path).read_text() if Path(path).exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            Path(path).write_text(text)
            print(f"  GEN     {path}")
    if stale:
        print(f"gen_layouts: not what {args.object} says: {', '.join(stale)} "
              "(run `make build` and commit them)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
