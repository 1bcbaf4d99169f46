"""libbpf from Python: load objects, program maps, attach to tc, test-run programs.

A thin ctypes layer over the system's libbpf.so.1 (Debian's libbpf1), shared
by every eBPF component: the Miresga switch pipeline, the back-end agent and
the l4switch baseline.  Maps are programmed through libbpf's map calls,
batched where the kernel offers it, never through a loop of bpftool
processes: a control plane that installs thousands of entries per second
cannot afford a fork per entry.

Keys and values are ctypes structures (see layouts.py), so the byte layout is
the one the C compiler uses.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import logging
import os
import platform
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Iterator

from common.netns import ifindex as netns_ifindex
from common.netns import netns

_lib = ctypes.CDLL("libbpf.so.1", use_errno=True)


class BpfError(OSError):
    pass


def _check(rc: int, what: str) -> int:
    # libbpf >= 1.0 returns -errno and also sets errno.
    if rc < 0:
        err = -rc if rc != -1 else ctypes.get_errno()
        raise BpfError(err, f"{what}: {os.strerror(err)}")
    return rc


def _ptr_check(ptr, what: str):
    if not ptr:
        err = ctypes.get_errno() or errno.EINVAL
        raise BpfError(err, f"{what}: {os.strerror(err)}")
    return ptr


# ------------------------------------------------------------- prototypes

def _proto(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_open_file = _proto("bpf_object__open_file", c_void_p, c_char_p, c_void_p)
_obj_load = _proto("bpf_object__load", c_int, c_void_p)
_obj_close = _proto("bpf_object__close", None, c_void_p)
_find_map = _proto("bpf_object__find_map_by_name", c_void_p, c_void_p, c_char_p)
_find_prog = _proto("bpf_object__find_program_by_name", c_void_p, c_void_p, c_char_p)
_map_set_max = _proto("bpf_map__set_max_entries", c_int, c_void_p, c_uint32)
_map_fd = _proto("bpf_map__fd", c_int, c_void_p)
_map_pin = _proto("bpf_map__pin", c_int, c_void_p, c_char_p)
_map_set_pin_path = _proto("bpf_map__set_pin_path", c_int, c_void_p, c_char_p)
_prog_fd = _proto("bpf_program__fd", c_int, c_void_p)
_obj_get = _proto("bpf_obj_get", c_int, c_char_p)
_obj_pin = _proto("bpf_obj_pin", c_int, c_int, c_char_p)
_update = _proto("bpf_map_update_elem", c_int, c_int, c_void_p, c_void_p, c_uint64)
_lookup = _proto("bpf_map_lookup_elem", c_int, c_int, c_void_p, c_void_p)
_delete = _proto("bpf_map_delete_elem", c_int, c_int, c_void_p)
_next_key = _proto("bpf_map_get_next_key", c_int, c_int, c_void_p, c_void_p)
_update_batch = _proto("bpf_map_update_batch", c_int, c_int, c_void_p, c_void_p,
                       POINTER(c_uint32), c_void_p)
_delete_batch = _proto("bpf_map_delete_batch", c_int, c_int, c_void_p, POINTER(c_uint32),
                       c_void_p)
_lookup_batch = _proto("bpf_map_lookup_batch", c_int, c_int, c_void_p, c_void_p, c_void_p,
                       c_void_p, POINTER(c_uint32), c_void_p)
_info_by_fd = _proto("bpf_obj_get_info_by_fd", c_int, c_int, c_void_p, POINTER(c_uint32))
_num_cpus = _proto("libbpf_num_possible_cpus", c_int)
_test_run = _proto("bpf_prog_test_run_opts", c_int, c_int, c_void_p)
_tc_hook_create = _proto("bpf_tc_hook_create", c_int, c_void_p)
_tc_hook_destroy = _proto("bpf_tc_hook_destroy", c_int, c_void_p)
_tc_attach = _proto("bpf_tc_attach", c_int, c_void_p, c_void_p)
_tc_detach = _proto("bpf_tc_detach", c_int, c_void_p, c_void_p)
_tc_query = _proto("bpf_tc_query", c_int, c_void_p, c_void_p)


# libbpf prints through a callback; route it to logging, and keep the recent
# lines so that a failed load can carry the verifier's log in its exception.
log = logging.getLogger("miresga.bpf")
_recent: collections.deque[str] = collections.deque(maxlen=400)
_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_libc = ctypes.CDLL(None)
_libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]


def _print(level: int, fmt: bytes, va_list: int) -> int:
    buf = ctypes.create_string_buffer(4096)
    _libc.vsnprintf(buf, len(buf), fmt, va_list)
    for line in buf.value.decode(errors="replace").rstrip("\n").splitlines():
        _recent.append(line)
        # 0 = warn, 1 = info, 2 = debug.  Kernel extack chatter from probing
        # an absent qdisc is expected and not worth a warning.
        if level == 0 and "Kernel error message" not in line:
            log.warning("libbpf: %s", line)
        else:
            log.debug("libbpf: %s", line)
    return 0


if platform.machine() == "x86_64":
    # On x86-64 a va_list argument is a pointer, which vsnprintf can take back;
    # elsewhere keep libbpf's own printing to stderr.
    _print_cb = _PRINT_FN(_print)
    _proto("libbpf_set_print", c_void_p, _PRINT_FN)(_print_cb)


class _MapBatchOpts(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("elem_flags", c_uint64), ("flags", c_uint64)]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t), ("data_in", c_void_p), ("data_out", c_void_p),
        ("data_size_in", c_uint32), ("data_size_out", c_uint32),
        ("ctx_in", c_void_p), ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32), ("ctx_size_out", c_uint32),
        ("retval", c_uint32), ("repeat", c_int), ("duration", c_uint32),
        ("flags", c_uint32), ("cpu", c_uint32), ("batch_size", c_uint32),
    ]


class _TcHook(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("ifindex", c_int), ("attach_point", c_int),
                ("parent", c_uint32), ("_end", c_uint32)]


class _TcOpts(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("prog_fd", c_int), ("flags", c_uint32),
                ("prog_id", c_uint32), ("handle", c_uint32), ("priority", c_uint32),
                ("_end", c_uint32)]


class _MapInfo(ctypes.Structure):
    # The head of struct bpf_map_info; the kernel fills what fits.
    _fields_ = [("type", c_uint32), ("id", c_uint32), ("key_size", c_uint32),
                ("value_size", c_uint32), ("max_entries", c_uint32), ("map_flags", c_uint32),
                ("name", ctypes.c_char * 16)]


BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH = 5, 6, 10
TC_INGRESS, TC_EGRESS = 1, 2
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7


def num_possible_cpus() -> int:
    return _check(_num_cpus(), "libbpf_num_possible_cpus")


# ------------------------------------------------------------------- maps

class Map:
    """A BPF map seen through ctypes key and value types.

    Per-CPU maps return a list with one value per possible CPU from lookup();
    `sum_percpu()` folds counters.
    """

    def __init__(self, fd: int, key_type, value_type, name: str = "", owns_fd: bool = True):
        self.fd = fd
        self.key_type = key_type
        self.value_type = value_type
        self.name = name
        self._owns_fd = owns_fd
        info = _MapInfo()
        size = c_uint32(ctypes.sizeof(info))
        _check(_info_by_fd(fd, byref(info), byref(size)), f"map info {name}")
        self.map_type = info.type
        self.max_entries = info.max_entries
        self.percpu = info.type in (BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                                    BPF_MAP_TYPE_LRU_PERCPU_HASH)
        if info.key_size != ctypes.sizeof(key_type):
            raise BpfError(errno.EINVAL, f"map {name}: key is {info.key_size} bytes in the "
                           f"kernel, {ctypes.sizeof(key_type)} in Python")
        if info.value_size != ctypes.sizeof(value_type):
            raise BpfError(errno.EINVAL, f"map {name}: value is {info.value_size} bytes in "
                           f"the kernel, {ctypes.sizeof(value_type)} in Python")
        self._ncpu = num_possible_cpus() if self.percpu else 1
        # Per-CPU values are copied out as an array of 8-byte aligned slots.
        self._slot = (ctypes.sizeof(value_type) + 7) & ~7

    @classmethod
    def from_pin(cls, path: str, key_type, value_type) -> "Map":
        fd = _check(_obj_get(path.encode()), f"open pinned map {path}")
        return cls(fd, key_type, value_type, name=os.path.basename(path))

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _value_buf(self):
        return ctypes.create_string_buffer(self._slot * self._ncpu)

    def _unpack(self, buf):
        if not self.percpu:
            return self.value_type.from_buffer_copy(buf.raw[: ctypes.sizeof(self.value_type)])
        return [self.value_type.from_buffer_copy(buf.raw[i * self._slot:
                                                         i * self._slot + ctypes.sizeof(self.value_type)])
                for i in range(self._ncpu)]

    def lookup(self, key):
        buf = self._value_buf()
        rc = _lookup(self.fd, byref(key), buf)
        if rc < 0:
            if -rc == errno.ENOENT or ctypes.get_errno() == errno.ENOENT:
                return None
            _check(rc, f"lookup in {self.name}")
        return self._unpack(buf)

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        if self.percpu:
            values = value if isinstance(value, (list, tuple)) else [value] * self._ncpu
            buf = self._value_buf()
            for i, v in enumerate(values):
                ctypes.memmove(ctypes.addressof(buf) + i * self._slot, byref(v), ctypes.sizeof(v))
            _check(_update(self.fd, byref(key), buf, flags), f"update {self.name}")
        else:
            _check(_update(self.fd, byref(key), byref(value), flags), f"update {self.name}")

    def delete(self, key) -> bool:
        rc = _delete(self.fd, byref(key))
        if rc < 0:
            if -rc == errno.ENOENT:
                return False
            _check(rc, f"delete from {self.name}")
        return True

    def keys(self) -> Iterator:
        key = self.key_type()
        nxt = self.key_type()
        rc = _next_key(self.fd, None, byref(nxt))
        while rc == 0:
            yield self.key_type.from_buffer_copy(nxt)
            ctypes.memmove(byref(key), byref(nxt), ctypes.sizeof(key))
            rc = _next_key(self.fd, byref(key), byref(nxt))
        if -rc not in (errno.ENOENT,):
            _check(rc, f"iterate {self.name}")

    def items(self) -> Iterator:
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:  # an entry may go while we walk
                yield k, v

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def update_batch(self, keys: list, values: list, flags: int = BPF_ANY) -> int:
        """Install many entries in one syscall; returns how many went in.

        Stops at the first failure (e.g. E2BIG when the table is full): the
        count tells how many of the leading entries were installed.
        """
        n = len(keys)
        if n == 0:
            return 0
        karr = (self.key_type * n)(*keys)
        varr = (self.value_type * n)(*values)
        count = c_uint32(n)
        opts = _MapBatchOpts(ctypes.sizeof(_MapBatchOpts), flags, 0)
        rc = _update_batch(self.fd, karr, varr, byref(count), byref(opts))
        if rc < 0 and count.value == n:
            _check(rc, f"batch update {self.name}")
        return count.value

    def try_update_batch(self, keys: list, values: list, flags: int = BPF_ANY) -> tuple[int, int]:
        """Like update_batch, but never raises: returns (installed, errno).

        The kernel applies entries in order and stops at the first failure;
        `installed` leading entries went in and entry `installed` failed with
        `errno` (0 if all went in), e.g. E2BIG for a new key in a full hash
        table.  Note that batch updates take BPF_ANY (or BPF_F_LOCK) only:
        the kernel rejects BPF_NOEXIST / BPF_EXIST with EINVAL.
        """
        n = len(keys)
        if n == 0:
            return 0, 0
        karr = (self.key_type * n)(*keys)
        varr = (self.value_type * n)(*values)
        count = c_uint32(n)
        opts = _MapBatchOpts(ctypes.sizeof(_MapBatchOpts), flags, 0)
        rc = _update_batch(self.fd, karr, varr, byref(count), byref(opts))
        if rc >= 0:
            return n, 0
        err = -rc if rc != -1 else ctypes.get_errno()
        # An error found before the first entry (bad flags, say) leaves the
        # count as we set it; one at entry i sets it to i < n.
        return (count.value if count.value < n else 0), err

    def lookup_batch_raw(self, chunk: int = 8192) -> Iterator[tuple[bytes, bytes, int]]:
        """The map's contents through BPF_MAP_LOOKUP_BATCH, undecoded.

        Yields (keys, values, n): n packed keys and n values as bytes, one
        tuple per syscall.  For scans of big tables, where building a ctypes
        object per entry would cost more than the syscalls; not for per-CPU
        maps.
        """
        if self.percpu:
            raise BpfError(errno.EINVAL, f"lookup_batch on per-CPU map {self.name}")
        ksz, vsz = ctypes.sizeof(self.key_type), ctypes.sizeof(self.value_type)
        karr = ctypes.create_string_buffer(ksz * chunk)
        varr = ctypes.create_string_buffer(vsz * chunk)
        # The batch cursor is opaque: a bucket index for hash maps, a key
        # for arrays.  Give it room for either.
        tok_size = max(8, ksz)
        in_tok = ctypes.create_string_buffer(tok_size)
        out_tok = ctypes.create_string_buffer(tok_size)
        opts = _MapBatchOpts(ctypes.sizeof(_MapBatchOpts), 0, 0)
        first = True
        while True:
            count = c_uint32(chunk)
            rc = _lookup_batch(self.fd, None if first else in_tok, out_tok, karr, varr,
                               byref(count), byref(opts))
            err = 0 if rc >= 0 else (-rc if rc != -1 else ctypes.get_errno())
            if err not in (0, errno.ENOENT):
                _check(-err, f"batch lookup in {self.name}")
            n = count.value
            if n:
                yield karr.raw[:n * ksz], varr.raw[:n * vsz], n
            if err == errno.ENOENT:
                return
            ctypes.memmove(in_tok, out_tok, tok_size)
            first = False

    def lookup_batch(self, chunk: int = 4096) -> Iterator[tuple]:
        """Every (key, value) through BPF_MAP_LOOKUP_BATCH, `chunk` per syscall.

        Far cheaper than keys() + lookup() for a full table; not for per-CPU
        maps.
        """
        ksz, vsz = ctypes.sizeof(self.key_type), ctypes.sizeof(self.value_type)
        for kb, vb, n in self.lookup_batch_raw(chunk):
            for i in range(n):
                yield (self.key_type.from_buffer_copy(kb, i * ksz),
                       self.value_type.from_buffer_copy(vb, i * vsz))

    def count_batch(self, chunk: int = 8192) -> int:
        """How many entries the map holds (the kernel keeps no count it would tell)."""
        return sum(n for _, _, n in self.lookup_batch_raw(chunk))

    def delete_batch(self, keys: list) -> int:
        """Delete many keys in as few syscalls as possible; returns how many existed.

        The kernel's batch stops at the first missing key and reports how many
        it deleted before it; skip that key and go on with the rest.
        """
        done = 0
        opts = _MapBatchOpts(ctypes.sizeof(_MapBatchOpts), 0, 0)
        while keys:
            n = len(keys)
            karr = (self.key_type * n)(*keys)
            count = c_uint32(n)
            rc = _delete_batch(self.fd, karr, byref(count), byref(opts))
            done += count.value
            if rc >= 0:
                break
            if -rc != errno.ENOENT:
                _check(rc, f"batch delete {self.name}")
            keys = keys[count.value + 1:]
        return done

    def clear(self) -> int:
        keys = list(self.keys())
        for k in keys:
            self.delete(k)
        return len(keys)

    def sum_percpu(self, key, fields: tuple[str, ...] | None = None):
        """Sum a per-CPU value over CPUs (counters); a plain int for integer values."""
        vals = self.lookup(key)
        if vals is None:
            return 0
        if not self.percpu:
            vals = [vals]
        if isinstance(vals[0], (ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int64)):
            return sum(v.value for v in vals)
        names = fields or [f[0] for f in self.value_type._fields_ if not f[0].startswith("_")]
        return {f: sum(getattr(v, f) for v in vals) for f in names}


# ---------------------------------------------------------------- objects

class BpfObject:
    """One compiled eBPF object file: open, size its maps, load, pin.

        with BpfObject("build/bpf/switch.bpf.o") as obj:
            obj.set_max_entries("flows", 143360)
            obj.load()
            obj.pin_maps("/sys/fs/bpf/tb-switch")
            fd = obj.program_fd("switch_ingress")
    """

    def __init__(self, path: str):
        self.path = path
        self._obj = _ptr_check(_open_file(path.encode(), None), f"open {path}")
        self._loaded = False

    def _map_ptr(self, name: str):
        return _ptr_check(_find_map(self._obj, name.encode()), f"{self.path}: no map {name!r}")

    def set_max_entries(self, map_name: str, n: int) -> None:
        _check(_map_set_max(self._map_ptr(map_name), n), f"set max_entries of {map_name}")

    def set_pin_path(self, map_name: str, path: str) -> None:
        """Reuse the map pinned at `path` if there is one, else pin it there on load."""
        _check(_map_set_pin_path(self._map_ptr(map_name), path.encode()), f"pin path {map_name}")

    def load(self) -> None:
        _recent.clear()
        rc = _obj_load(self._obj)
        if rc < 0:
            err = -rc
            tail = "\n".join(list(_recent)[-60:])
            raise BpfError(err, f"load {self.path}: {os.strerror(err)}\n{tail}")
        self._loaded = True

    def program_fd(self, name: str) -> int:
        prog = _ptr_check(_find_prog(self._obj, name.encode()), f"{self.path}: no program {name!r}")
        return _check(_prog_fd(prog), f"fd of program {name}")

    def map(self, name: str, key_type, value_type) -> Map:
        # The object owns this fd; the Map must not close it.
        return Map(_check(_map_fd(self._map_ptr(name)), f"fd of map {name}"), key_type,
                   value_type, name=name, owns_fd=False)

    def map_fd(self, name: str) -> int:
        return _check(_map_fd(self._map_ptr(name)), f"fd of map {name}")

    def pin_map(self, name: str, path: str) -> None:
        _check(_map_pin(self._map_ptr(name), path.encode()), f"pin map {name} at {path}")

    def close(self) -> None:
        if self._obj:
            _obj_close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def pin_fd(fd: int, path: str) -> None:
    _check(_obj_pin(fd, path.encode()), f"pin at {path}")


def open_pinned_fd(path: str) -> int:
    return _check(_obj_get(path.encode()), f"open pinned object {path}")


# ------------------------------------------------------------- test runs

@dataclass
class TestRun:
    retval: int
    data: bytes
    ctx: bytes | None
    duration_ns: int


def prog_test_run(prog_fd: int, data: bytes, ctx: bytes | None = None, repeat: int = 1,
                  out_size: int | None = None) -> TestRun:
    """BPF_PROG_TEST_RUN: run a program once on a frame and return its verdict and output.

    `ctx` is a raw struct __sk_buff (tc) or xdp_md (XDP) to set ifindex, mark etc.
    """
    out = ctypes.create_string_buffer(out_size or max(len(data) * 2, 256) + 256)
    inbuf = ctypes.create_string_buffer(data, len(data))
    opts = _TestRunOpts()
    opts.sz = ctypes.sizeof(_TestRunOpts)
    opts.data_in = ctypes.cast(inbuf, c_void_p)
    opts.data_size_in = len(data)
    opts.data_out = ctypes.cast(out, c_void_p)
    opts.data_size_out = len(out)
    opts.repeat = repeat
    ctx_out = None
    if ctx is not None:
        ctx_in = ctypes.create_string_buffer(ctx, len(ctx))
        # The kernel copies back its whole context struct (struct __sk_buff
        # is 192 bytes on 6.x) and fails with ENOSPC if ctx_out is shorter,
        # even when the caller passed only a prefix of it.
        ctx_out = ctypes.create_string_buffer(max(len(ctx), 1024))
        opts.ctx_in = ctypes.cast(ctx_in, c_void_p)
        opts.ctx_size_in = len(ctx)
        opts.ctx_out = ctypes.cast(ctx_out, c_void_p)
        opts.ctx_size_out = len(ctx_out)
    _check(_test_run(prog_fd, byref(opts)), "BPF_PROG_TEST_RUN")
    return TestRun(retval=opts.retval, data=out.raw[: opts.data_size_out],
                   ctx=ctx_out.raw[: opts.ctx_size_out] if ctx_out is not None else None,
                   duration_ns=opts.duration)


# ---------------------------------------------------------------- tc hooks

def _hook(ifidx: int, direction: int) -> _TcHook:
    h = _TcHook()
    h.sz = ctypes.sizeof(_TcHook)
    h.ifindex = ifidx
    h.attach_point = direction
    return h


def tc_attach(ns: str | None, ifname: str, prog_fd: int, direction: int = TC_INGRESS,
              priority: int = 1, handle: int = 1) -> None:
    """Attach a tc (clsact, direct-action) program to an interface of a namespace.

    Replaces whatever sits at (priority, handle), so attaching twice is safe.
    """
    with netns(ns):
        ifidx = netns_ifindex(None, ifname)
        hook = _hook(ifidx, direction)
        opts = _TcOpts()
        opts.sz = ctypes.sizeof(_TcOpts)
        opts.prog_fd = prog_fd
        opts.flags = 1  # BPF_TC_F_REPLACE
        opts.handle = handle
        opts.priority = priority
        # Try first, create the clsact qdisc only if it is missing: creating
        # an existing one makes libbpf print a kernel error to stderr.
        if _tc_attach(byref(hook), byref(opts)) < 0:
            rc = _tc_hook_create(byref(hook))
            if rc < 0 and -rc != errno.EEXIST:
                _check(rc, f"create clsact on {ifname}")
            _check(_tc_attach(byref(hook), byref(opts)), f"attach to {ifname}")


def tc_clsact_create(ns: str | None, ifname: str) -> bool:
    """Add a clsact qdisc to an interface; True if this call created it.

    A loader that remembers whether it created the qdisc can remove it again
    on unload and leave the interface as it found it.
    """
    with netns(ns):
        hook = _hook(netns_ifindex(None, ifname), TC_INGRESS)
        rc = _tc_hook_create(byref(hook))
        if rc < 0 and -rc == errno.EEXIST:
            return False
        _check(rc, f"create clsact on {ifname}")
        return True


def tc_clsact_destroy(ns: str | None, ifname: str) -> bool:
    """Remove the clsact qdisc (and every tc filter on it); False if absent."""
    with netns(ns):
        try:
            ifidx = netns_ifindex(None, ifname)
        except OSError:
            return False
        # Both attach points at once means "the qdisc itself" to libbpf.
        hook = _hook(ifidx, TC_INGRESS | TC_EGRESS)
        rc = _tc_hook_destroy(byref(hook))
        if rc < 0 and -rc in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
            return False
        _check(rc, f"destroy clsact on {ifname}")
        return True


def tc_detach(ns: str | None, ifname: str, direction: int = TC_INGRESS, priority: int = 1,
              handle: int = 1) -> bool:
    """Detach what tc_attach put there; False if nothing was attached (idempotent)."""
    with netns(ns):
        try:
            ifidx = netns_ifindex(None, ifname)
        except OSError:
            return False  # the interface is gone, and with it the filter
        if tc_attached_prog_id(None, ifname, direction, priority, handle) is None:
            return False
        hook = _hook(ifidx, direction)
        opts = _TcOpts()
        opts.sz = ctypes.sizeof(_TcOpts)
        opts.handle = handle
        opts.priority = priority
        rc = _tc_detach(byref(hook), byref(opts))
        if rc < 0 and -rc in (errno.ENOENT, errno.EINVAL):
            return False
        _check(rc, f"detach from {ifname}")
        return True


def tc_attached_prog_id(ns: str | None, ifname: str, direction: int = TC_INGRESS,
                        priority: int = 1, handle: int = 1) -> int | None:
    """The id of the program at (priority, handle), or None."""
    with netns(ns):
        try:
            ifidx = netns_ifindex(None, ifname)
        except OSError:
            return None
        hook = _hook(ifidx, direction)
        opts = _TcOpts()
        opts.sz = ctypes.sizeof(_TcOpts)
        opts.handle = handle
        opts.priority = priority
        rc = _tc_query(byref(hook), byref(opts))
        if rc < 0:
            return None
        return opts.prog_id


@contextlib.contextmanager
def loaded(path: str):
    obj = BpfObject(path)
    try:
        yield obj
    finally:
        obj.close()
