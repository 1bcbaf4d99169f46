"""The layouts of targets/l4switch/l4switch.h, and its functions Python needs.

The VIP and back-end tables use Miresga's layouts (switchhost.layouts:
VipKey, Vip, BackendKey, Backend); the l4switch's own structs, counters and
constants come from switchhost/pipelines/l4switch_layouts_gen.py, generated
from the BTF of the compiled header (scripts/gen_layouts.py).  What is written
here is what BTF cannot carry: the functions, the flow hash held to C's by
tests/test_l4switch.py.  Standard library only: the pipeline runs on a switch
host with a bare python3.
"""

from __future__ import annotations

from switchhost.addresses import ip_be, port_be
from switchhost.layouts import M32, mix32
from switchhost.pipelines.l4switch_layouts_gen import (  # noqa: F401  (re-exported)
    BACKEND_NONE,
    CONN_CAPACITY_DEFAULT,
    CONN_FIN_BACKEND,
    CONN_FIN_CLIENT,
    CONN_REVERSE,
    CONN_RST,
    COUNTER_MAX,
    MAGLEV_SIZE_DEFAULT,
    Config,
    Conn,
    ConnKey,
    Counter,
)



def conn_closing(flags: int) -> bool:
    """l4_conn_closing(): a RST was seen, or a FIN from both sides."""
    both = CONN_FIN_CLIENT | CONN_FIN_BACKEND
    return bool(flags & CONN_RST) or (flags & both) == both


# ------------------------------------------------------------- flow hash

def flow_hash(seed: int, client: str, client_port: int, vip: str, vip_port: int) -> int:
    """l4_flow_hash(): which Maglev slot (hash % M) a connection takes."""
    # The C code hashes the raw network-order words, read as host-order
    # integers on this (little-endian) machine: what ip_be/port_be give.
    h = mix32((seed ^ ip_be(client)) & M32)
    h = mix32(h ^ ip_be(vip))
    return mix32(h ^ ((port_be(client_port) << 16) | port_be(vip_port)))
