"""The Miresga switch pipeline, packet by packet, through BPF_PROG_TEST_RUN.

Katran/PTF style: a table of (description, input packet built with scapy,
expected verdict, expected output packet, counter that must move, port the
packet must leave by), then one test per behaviour that needs a sequence of
packets (the cookie round trip, expiry, the seen filter, the data-plane
table).  Back-end packets carry the agent's MIRESGA mark unless a case says
otherwise; every packet handed to a front-end carries the DSCP the switch
set (ADMIT, KNOWN, or none for a back-end's).

The program runs in a scratch namespace standing in for the switch: real
veth ports (their ifindex and MAC go into the back-end and front-end tables)
and a FIB with a permanent neighbour for the client, so that the reverse
path's bpf_fib_lookup() finds a next hop.  Every packet the program changes
or redirects has its IP and TCP checksums checked by scapy; expected packets
are built by scapy with checksums computed, and compared byte for byte.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import pytest
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, IPOption_Router_Alert, IPv6, Raw, raw

from common.netns import ifindex, netns
from common.scratch_ns import ScratchNs
from switchhost import bpf, layouts
from switchhost.addresses import ip_be, port_be
from switchhost.layouts import SwitchCounter as C
from switchhost.layouts import (DSCP_ADMIT, DSCP_BACKEND, DSCP_INSTALL, DSCP_KNOWN, DSCP_MIRESGA,
                                DSCP_NONE, DSCP_REMOVE, DSCP_REMOVE_CTL, M32, mix32)
from switchhost.pipeline import FlowOp, Liveness
from switchhost.pipelines.maglev import maglev_table
from switchhost.pipelines.miresga import MiresgaSwitch, SwitchPlan, dp_now_ticks
from switchhost.plan import Endpoint, VipSpec

from packets import assert_checksums, routed
from tc_rig import TcRig

pytestmark = pytest.mark.root  # the pipeline runs through BPF_PROG_TEST_RUN in a scratch namespace

VIP = "10.9.100.1"
CLIENT, CLIENT_MAC = "10.9.0.10", "02:00:00:00:00:10"
CLIENT_NO_NEIGH = "10.9.0.99"           # on the client network, no neighbour entry
ELSEWHERE = "10.9.77.5"                 # a host behind c0 that no table names
SMALL_CLIENT, SMALL_CLIENT_MAC = "10.9.60.10", "02:00:00:00:60:10"  # behind c1, MTU 1280
PORT_MAC = {"c0": "02:5e:00:00:00:c0", "c1": "02:5e:00:00:00:c1",
            "f0": "02:5e:00:00:00:f0", "f1": "02:5e:00:00:00:f1",
            "b1": "02:5e:00:00:00:b1", "b2": "02:5e:00:00:00:b2"}
FE = [("10.9.2.2", "02:00:00:00:02:02", "f0"), ("10.9.3.2", "02:00:00:00:03:02", "f1")]
BE = [("10.9.11.2", 80, "02:00:00:00:11:02", "b1"), ("10.9.12.2", 8080, "02:00:00:00:12:02", "b2")]
KEYS = ((0x01234567, 0x89ABCDEF), (0x0BADF00D, 0xDEADBEEF))
EPOCH = 7
MSS, WSCALE, WINDOW = 1460, 7, 65535
CPORT = 40000
DP_SLOTS, DP_IDLE_S = 64, 30.0   # small, so that keys sharing slots are easy to find


# ----------------------------------------------------------------- oracles

def frontend_of(client: str, port: int) -> int:
    """Which front-end the pipeline's client_hash() and selection table pick
    (switch.bpf.c, "front-end selection"), every front-end active."""
    slot = mix32(ip_be(client) ^ mix32(port_be(port))) % layouts.FE_SLOTS_DEFAULT
    return maglev_table([ip for ip, _, _ in FE], layouts.FE_SLOTS_DEFAULT)[slot]


def cookie(client=CLIENT, cport=CPORT, isn=1000, epoch=EPOCH, mss=MSS, ws=7, sack=True,
           keys=KEYS) -> int:
    low = layouts.cookie_low_byte(layouts.mss_class(mss), ws, sack, epoch)
    return layouts.cookie_make(keys[epoch & 1], client, VIP, cport, 80, isn, epoch, low)


# --------------------------------------------------------------------- rig

class Rig(TcRig):
    def __init__(self, ns: ScratchNs, sw: MiresgaSwitch):
        super().__init__(ns, sw, PORT_MAC)

    def reset(self) -> None:
        self.sw.map("flow_table").clear()
        self.sw.map("dp_table").update_batch([ctypes.c_uint32(i) for i in range(DP_SLOTS)],
                                             [layouts.DpSlot()] * DP_SLOTS)
        self.sw.rotate_filter()
        self.sw.rotate_filter()  # both generations now empty
        self.sw.set_cookie_secret(EPOCH, KEYS)
        self.sw.set_frontend_states({ip: "active" for ip, _, _ in FE})

    def add_flow(self, client=CLIENT, cport=CPORT, backend=0, vip=0) -> None:
        res = self.sw.flows.apply([FlowOp(layouts.CtlOp.ADD, ip_be(client), port_be(cport),
                                          backend, vip)])
        assert res.added == 1


@pytest.fixture(scope="module")
def rig():
    with ScratchNs() as ns:
        ns.add_port("c0", "10.9.0.1/24", mac=PORT_MAC["c0"], neighbours={CLIENT: CLIENT_MAC})
        ns.add_port("c1", "10.9.60.1/24", mac=PORT_MAC["c1"], mtu=1280,
                    neighbours={SMALL_CLIENT: SMALL_CLIENT_MAC})
        for ip, mac, port in FE:
            ns.add_port(port, ip.rsplit(".", 1)[0] + ".1/24", mac=PORT_MAC[port])
        for ip, _, mac, port in BE:
            ns.add_port(port, ip.rsplit(".", 1)[0] + ".1/24", mac=PORT_MAC[port])
        plan = SwitchPlan(
            netns=ns.name, ports=list(PORT_MAC), vips=[VipSpec(ip=VIP, port=80)],
            backends=[Endpoint(ip=ip, port=p, mac=mac, switch_port=sp) for ip, p, mac, sp in BE],
            frontends=[Endpoint(ip=ip, mac=mac, switch_port=sp) for ip, mac, sp in FE],
            flow_capacity=1024, filter_bits_log2=12, mss=MSS, wscale=WSCALE, window=WINDOW,
            dp_slots=DP_SLOTS, dp_ways=2, dp_idle_timeout_s=DP_IDLE_S)
        # Not attached: BPF_PROG_TEST_RUN needs only the program and its maps.
        with MiresgaSwitch(plan, attach=False).load() as sw:
            yield Rig(ns, sw)


@pytest.fixture
def r(rig) -> Rig:
    rig.reset()
    return rig


# ---------------------------------------------------------------- packets

def from_client(flags="A", seq=1001, ack=None, payload=b"", sport=CPORT, dst=VIP, dport=80,
                src=CLIENT, ttl=64, options=None, **ip) -> Ether:
    """A client's packet, by default the handshake ACK carrying a valid cookie."""
    ack = cookie() + 1 if ack is None else ack
    tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=502,
              options=options or [])
    p = Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=src, dst=dst, ttl=ttl, **ip) / tcp
    return p / Raw(payload) if payload else p


def from_backend(b=0, flags="A", payload=b"", dst=CLIENT, dport=CPORT, seq=5000, ack=1001,
                 mark=True, tos=None):
    """A back-end's packet, marked MIRESGA by its agent unless `mark` is false."""
    ip, port, mac, sp = BE[b]
    tos = (DSCP_MIRESGA << 2 if mark else 0) if tos is None else tos
    p = (Ether(src=mac, dst=PORT_MAC[sp]) / IP(src=ip, dst=dst, tos=tos)
         / TCP(sport=port, dport=dport, flags=flags, seq=seq, ack=ack, window=1000))
    return p / Raw(payload) if payload else p


def from_frontend(dst_backend=0, dscp=DSCP_INSTALL, ip_id=0, flags="A", client=CLIENT,
                  cport=CPORT, fe=0, payload=b"", seq=1001, ack=7001, dst=None) -> Ether:
    """A front-end's packet to a back-end (or to `dst`, (IP, port)) on the client's
    behalf, DSCP `dscp`, IP ID `ip_id` (an INSTALL's VIP index): by default its
    handshake ACK, marked INSTALL."""
    ip, port = dst or BE[dst_backend][:2]
    _, mac, sp = FE[fe]
    p = (Ether(src=mac, dst=PORT_MAC[sp])
         / IP(src=client, dst=ip, tos=dscp << 2, id=ip_id, flags="DF")
         / TCP(sport=cport, dport=port, flags=flags, seq=seq, ack=ack, window=502))
    return p / Raw(payload) if payload else p


def with_dscp(p: Ether, dscp: int) -> Ether:
    """`p` with its DSCP set (ECN kept), the IP checksum recomputed; nothing else."""
    q = p.copy()
    q[IP].tos = (dscp << 2) | (q[IP].tos & 3)
    del q[IP].chksum
    return Ether(raw(q))


def rewritten(p: Ether, **fields) -> Ether:
    """`p` with IP/TCP fields replaced and checksums recomputed; MACs and TTL kept."""
    q = p.copy()
    for k, v in fields.items():
        setattr(q[TCP] if k in ("sport", "dport") else q[IP], k, v)
    del q[IP].chksum
    del q[TCP].chksum
    return Ether(raw(q))


def to_frontend(p: Ether, dscp: int, client=CLIENT, cport=CPORT) -> tuple[Ether, str]:
    """`p` as the switch hands it to the client's front-end, with DSCP `dscp`."""
    ip, mac, port = FE[frontend_of(client, cport)]
    return routed(p, mac, PORT_MAC[port], tos=(dscp << 2) | (p[IP].tos & 3)), port


def synack(isn=1000, mss=MSS, ws=7, sack=True, cport=CPORT, client_mss=MSS,
           ts: int | None = None) -> Ether:
    """The switch's SYN-ACK; `ts`: the client's TSval, if it offered timestamps
    (the SYN-ACK's TSval is then the cookie, its TSecr the client's TSval)."""
    c = cookie(cport=cport, isn=isn, mss=client_mss, ws=ws, sack=sack)
    opts = [("MSS", mss)]
    if sack:
        opts += [("NOP", None), ("NOP", None), ("SAckOK", b"")]
    if ts is not None:
        opts += [("NOP", None), ("NOP", None), ("Timestamp", (c, ts))]
    if ws is not None:
        opts += [("NOP", None), ("WScale", WSCALE)]
    return Ether(raw(Ether(dst=CLIENT_MAC, src=PORT_MAC["c0"])
                     / IP(src=VIP, dst=CLIENT, id=0, flags="DF", ttl=64)
                     / TCP(sport=80, dport=cport, flags="SA", seq=c, ack=isn + 1, window=WINDOW,
                           options=opts)))


LINUX_SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None),
                  ("WScale", 7)]
SHOT, OK, REDIRECT = bpf.TC_ACT_SHOT, bpf.TC_ACT_OK, bpf.TC_ACT_REDIRECT


# -------------------------------------------------------------- the table

@dataclass
class Case:
    desc: str
    pkt: Ether
    verdict: int
    counter: C | None
    expect: Ether | None = None     # output packet; None: unchanged (OK) or n/a (SHOT)
    egress: str | None = None
    port: str = "c0"                # where the packet comes in
    flows: list = field(default_factory=list)  # (client, cport, backend_idx)


def _fe(p, dscp, client=CLIENT, cport=CPORT):
    return to_frontend(p, dscp, client, cport)


def _to_backend(p, b=0):
    """A client packet as the switch offloads it to back-end b: DSCP cleared."""
    return routed(p, BE[b][2], PORT_MAC[BE[b][3]], dst=BE[b][0], dport=BE[b][1],
                  tos=p[IP].tos & 3)


def _to_client(p, mac=CLIENT_MAC, port="c0"):
    """A back-end packet as the switch sends it to the client: from the VIP, mark cleared."""
    return routed(p, mac, PORT_MAC[port], src=VIP, sport=80, tos=p[IP].tos & 3)


_ack = from_client()
_data = from_client(flags="PA", payload=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
_fin = from_client(flags="FA", seq=2000, ack=99999)
_rst = from_client(flags="R", seq=2000, ack=0)
_late_ack = from_client(seq=5001, ack=777777)          # a later pure ACK, not a cookie
_later = from_client(flags="PA", seq=9001, ack=777777, payload=b"GET /next HTTP/1.1\r\n\r\n")
_be_data = from_backend(payload=b"HTTP/1.1 200 OK\r\n\r\nhello")
_fe_to_client = (Ether(src=FE[0][1], dst=PORT_MAC["f0"]) / IP(src=VIP, dst=CLIENT)
                 / TCP(sport=80, dport=CPORT, flags="PA", seq=9, ack=9) / Raw(b"HTTP/1.1 200"))
_fe_to_backend = (Ether(src=FE[0][1], dst=PORT_MAC["f0"]) / IP(src=CLIENT, dst=BE[0][0])
                  / TCP(sport=CPORT, dport=80, flags="S", seq=1000, ack=cookie()))

CASES = [
    # --- client SYN: answered by the switch itself
    Case("SYN with Linux options: cookie SYN-ACK with MSS, SACK-permitted, timestamps "
         "(TSval = cookie, TSecr = the client's TSval), window scale",
         from_client("S", seq=1000, ack=0, options=LINUX_SYN_OPTS), REDIRECT, C.SYN_COOKIE,
         synack(ts=12345), "c0"),
    Case("SYN with timestamps only: MSS and timestamps",
         from_client("S", seq=1000, ack=0, options=[("Timestamp", (0xFEDCBA98, 0))]), REDIRECT,
         C.SYN_COOKIE, synack(ws=None, sack=False, client_mss=536, ts=0xFEDCBA98), "c0"),
    Case("SYN with a timestamp option of the wrong length: ignored, as Linux does",
         from_client("S", seq=1000, ack=0, options=[("MSS", 1460), (8, b"\x00" * 6)]),
         REDIRECT, C.SYN_COOKIE, synack(ws=None, sack=False), "c0"),
    Case("SYN without options: SYN-ACK with MSS only; cookie records MSS 536, no WS, no SACK",
         from_client("S", seq=1000, ack=0), REDIRECT, C.SYN_COOKIE,
         synack(ws=None, sack=False, client_mss=536), "c0"),
    Case("SYN with MSS 1300 and WS 9, no SACK: MSS class 1220, wscale 9 in the cookie",
         from_client("S", seq=1000, ack=0, options=[("MSS", 1300), ("WScale", 9)]), REDIRECT,
         C.SYN_COOKIE, synack(ws=9, sack=False, client_mss=1300), "c0"),
    Case("SYN with window scale 15: clamped to 14 (RFC 7323)",
         from_client("S", seq=1000, ack=0, options=[("MSS", 1460), ("WScale", 15)]), REDIRECT,
         C.SYN_COOKIE, synack(ws=14, sack=False), "c0"),
    Case("SYN with MSS 0: ignored like Linux does, default 536",
         from_client("S", seq=1000, ack=0, options=[("MSS", 0)]), REDIRECT, C.SYN_COOKIE,
         synack(ws=None, sack=False, client_mss=536), "c0"),
    Case("SYN with data (Fast Open): data dropped, not acknowledged",
         from_client("S", seq=1000, ack=0, options=LINUX_SYN_OPTS, payload=b"x" * 333),
         REDIRECT, C.SYN_COOKIE, synack(ts=12345), "c0"),
    Case("SYN with EOL then garbage: options end at EOL",
         from_client("S", seq=1000, ack=0, options=[("MSS", 1460), ("EOL", None),
                                                    ("NOP", None), ("NOP", None), ("NOP", None)]),
         REDIRECT, C.SYN_COOKIE, synack(ws=None, sack=False), "c0"),
    Case("SYN with TTL 1 still answered: the switch is the endpoint",
         from_client("S", seq=1000, ack=0, ttl=1, options=LINUX_SYN_OPTS), REDIRECT,
         C.SYN_COOKIE, synack(ts=12345), "c0"),
    Case("SYN whose option length is 0 (would loop): dropped",
         from_client("S", seq=1000, ack=0), SHOT, C.SYN_BAD_OPTIONS),
    Case("SYN whose option length is 1: dropped",
         from_client("S", seq=1000, ack=0), SHOT, C.SYN_BAD_OPTIONS),
    Case("SYN whose option runs past the header: dropped",
         from_client("S", seq=1000, ack=0), SHOT, C.SYN_BAD_OPTIONS),
    Case("SYN with an MSS option of length 3: dropped",
         from_client("S", seq=1000, ack=0), SHOT, C.SYN_BAD_OPTIONS),
    Case("SYN+ACK sent to the VIP: not an opening, dropped",
         from_client("SA", seq=1000, ack=5), SHOT, C.VIP_MALFORMED),
    Case("SYN+RST sent to the VIP: dropped",
         from_client("SR", seq=1000, ack=0), SHOT, C.VIP_MALFORMED),
    # --- client packets without an entry
    Case("handshake ACK with a valid cookie: to the front-end chosen by hash, marked ADMIT",
         _ack, REDIRECT, C.COOKIE_OK, *_fe(_ack, DSCP_ADMIT)),
    Case("first request segment with a valid cookie (ACK lost): to the front-end, ADMIT",
         _data, REDIRECT, C.FE_ADMIT, *_fe(_data, DSCP_ADMIT)),
    Case("RST+ACK with a valid cookie: to the front-end, but a RST proves nothing: KNOWN",
         from_client(flags="RA"), REDIRECT, C.FE_KNOWN, *_fe(from_client(flags="RA"), DSCP_KNOWN)),
    Case("a client's own ADMIT mark on a forged cookie: dropped, the mark counted",
         from_client(ack=0x12345678, tos=DSCP_ADMIT << 2), SHOT, C.MARK_CLEARED),
    Case("a client's KNOWN mark on a valid cookie: rewritten ADMIT",
         from_client(tos=DSCP_KNOWN << 2), REDIRECT, C.FE_ADMIT,
         *_fe(from_client(tos=DSCP_KNOWN << 2), DSCP_ADMIT)),
    Case("ECN bits of a client packet survive the mark",
         from_client(tos=0x02), REDIRECT, C.FE_ADMIT, *_fe(from_client(tos=0x02), DSCP_ADMIT)),
    Case("ACK with a forged cookie: dropped", from_client(ack=0x12345678), SHOT, C.COOKIE_BAD),
    Case("packet without ACK flag or entry: nothing to validate, dropped",
         from_client(flags="P", ack=0, payload=b"x"), SHOT, C.COOKIE_BAD),
    Case("later ACK of an unknown connection: dropped", _late_ack, SHOT, C.COOKIE_BAD),
    # --- client packets with an entry
    Case("pure ACK with an entry: VIP -> back-end 0, redirected to its port",
         _ack, REDIRECT, C.OFFLOAD_FWD, _to_backend(_ack), "b1", flows=[(CLIENT, CPORT, 0)]),
    Case("pure ACK with an entry for back-end 1: port 80 -> 8080 too",
         _late_ack, REDIRECT, C.OFFLOAD_FWD, _to_backend(_late_ack, 1), "b2",
         flows=[(CLIENT, CPORT, 1)]),
    Case("pure ACK with an entry carrying an ADMIT mark: offloaded with the mark cleared",
         from_client(seq=5001, ack=777777, tos=(DSCP_ADMIT << 2) | 1), REDIRECT, C.MARK_CLEARED,
         _to_backend(from_client(seq=5001, ack=777777, tos=(DSCP_ADMIT << 2) | 1)), "b1",
         flows=[(CLIENT, CPORT, 0)]),
    Case("pure ACK padded to 60 bytes with an entry: padding is not payload",
         Ether(raw(from_client()) + b"\0" * 6), REDIRECT, C.OFFLOAD_FWD,
         Ether(raw(routed(from_client(), BE[0][2], PORT_MAC["b1"], dst=BE[0][0],
                          dport=BE[0][1])) + b"\0" * 6), "b1",
         flows=[(CLIENT, CPORT, 0)]),
    Case("first request with a valid cookie meets a (stale) entry: to the front-end, ADMIT",
         _data, REDIRECT, C.FE_ADMIT, *_fe(_data, DSCP_ADMIT), flows=[(CLIENT, CPORT, 0)]),
    Case("later request with an entry: to the front-end, KNOWN",
         _later, REDIRECT, C.FE_KNOWN, *_fe(_later, DSCP_KNOWN), flows=[(CLIENT, CPORT, 0)]),
    Case("later request with an entry, carrying a forged ADMIT: rewritten KNOWN",
         with_dscp(_later, DSCP_ADMIT), REDIRECT, C.FE_KNOWN, *_fe(_later, DSCP_KNOWN),
         flows=[(CLIENT, CPORT, 0)]),
    Case("FIN with an entry: to the front-end, KNOWN", _fin, REDIRECT, C.FE_KNOWN,
         *_fe(_fin, DSCP_KNOWN), flows=[(CLIENT, CPORT, 0)]),
    Case("RST with an entry: to the front-end, KNOWN", _rst, REDIRECT, C.FE_KNOWN,
         *_fe(_rst, DSCP_KNOWN), flows=[(CLIENT, CPORT, 0)]),
    Case("pure ACK with TTL 1 and an entry: kernel path (ICMP time exceeded)",
         from_client(ttl=1), OK, C.TTL_EXCEEDED, flows=[(CLIENT, CPORT, 0)]),
    # --- back-end packets
    Case("back-end data with an entry: back-end -> VIP, routed to the client by the FIB",
         _be_data, REDIRECT, C.OFFLOAD_REV, _to_client(_be_data), "c0", port="b1",
         flows=[(CLIENT, CPORT, 0)]),
    Case("back-end 1 (port 8080) data with an entry: source port back to 80",
         from_backend(1), REDIRECT, C.OFFLOAD_REV, _to_client(from_backend(1)), "c0",
         port="b2", flows=[(CLIENT, CPORT, 1)]),
    Case("back-end data with an entry and ECN CE: the mark goes, CE stays",
         from_backend(tos=(DSCP_MIRESGA << 2) | 3), REDIRECT, C.OFFLOAD_REV,
         _to_client(from_backend(tos=(DSCP_MIRESGA << 2) | 3)), "c0", port="b1",
         flows=[(CLIENT, CPORT, 0)]),
    Case("back-end data without an entry: to the client's front-end, marked BACKEND",
         _be_data, REDIRECT, C.REV_TO_FRONTEND, *_fe(_be_data, DSCP_BACKEND), port="b1"),
    Case("back-end SYN-ACK (agent-translated) without an entry: to the front-end",
         from_backend(flags="SA"), REDIRECT, C.REV_TO_FRONTEND,
         *_fe(from_backend(flags="SA"), DSCP_BACKEND), port="b1"),
    Case("back-end SYN-ACK with a stale entry: still to the front-end",
         from_backend(flags="SA"), REDIRECT, C.REV_TO_FRONTEND,
         *_fe(from_backend(flags="SA"), DSCP_BACKEND), port="b1", flows=[(CLIENT, CPORT, 0)]),
    Case("back-end FIN with an entry: to the front-end",
         from_backend(flags="FA"), REDIRECT, C.REV_TO_FRONTEND,
         *_fe(from_backend(flags="FA"), DSCP_BACKEND), port="b1", flows=[(CLIENT, CPORT, 0)]),
    Case("back-end RST with an entry: to the front-end",
         from_backend(flags="R"), REDIRECT, C.REV_TO_FRONTEND,
         *_fe(from_backend(flags="R"), DSCP_BACKEND), port="b1", flows=[(CLIENT, CPORT, 0)]),
    Case("back-end 0 data for a flow moved to back-end 1: to the front-end",
         _be_data, REDIRECT, C.REV_TO_FRONTEND, *_fe(_be_data, DSCP_BACKEND), port="b1",
         flows=[(CLIENT, CPORT, 1)]),
    Case("back-end data with an entry but no neighbour for the client: rewritten, kernel path",
         from_backend(dst=CLIENT_NO_NEIGH), OK, C.FIB_MISS,
         rewritten(from_backend(dst=CLIENT_NO_NEIGH), src=VIP, sport=80, tos=0), None,
         port="b1", flows=[(CLIENT_NO_NEIGH, CPORT, 0)]),
    Case("back-end data to a client behind a 1280-byte link, fits: redirected there",
         from_backend(dst=SMALL_CLIENT, payload=b"s" * 1000), REDIRECT, C.OFFLOAD_REV,
         _to_client(from_backend(dst=SMALL_CLIENT, payload=b"s" * 1000), SMALL_CLIENT_MAC,
                    "c1"), "c1", port="b1", flows=[(SMALL_CLIENT, CPORT, 0)]),
    Case("back-end data too big for the client's link: kernel path, addresses unrewritten "
         "(ICMP to the back-end)", from_backend(dst=SMALL_CLIENT, payload=b"s" * 1300), OK,
         C.FIB_MISS, with_dscp(from_backend(dst=SMALL_CLIENT, payload=b"s" * 1300), DSCP_NONE),
         port="b1", flows=[(SMALL_CLIENT, CPORT, 0)]),
    Case("back-end data to a client address no table names: served like any client",
         from_backend(dst=ELSEWHERE), REDIRECT, C.REV_TO_FRONTEND,
         *_fe(from_backend(dst=ELSEWHERE), DSCP_BACKEND, ELSEWHERE), port="b1"),
    Case("unmarked back-end answer (a health check): normal forwarding, untouched",
         from_backend(dst=FE[0][0], mark=False), OK, C.BE_UNMARKED, port="b1"),
    Case("unmarked back-end data with an entry: not Miresga's, normal forwarding",
         from_backend(mark=False), OK, C.BE_UNMARKED, port="b1", flows=[(CLIENT, CPORT, 0)]),
    Case("marked back-end source from a client port (spoofed): mark cleared, forwarded as is",
         from_backend(), OK, C.BE_WRONG_PORT, with_dscp(from_backend(), DSCP_NONE), port="c0",
         flows=[(CLIENT, CPORT, 0)]),
    Case("back-end 0's address and mark from back-end 1's port: not back-end 0's",
         from_backend(), OK, C.BE_WRONG_PORT, with_dscp(from_backend(), DSCP_NONE), port="b2",
         flows=[(CLIENT, CPORT, 0)]),
    Case("a back-end's INSTALL mark: not a front-end's, cleared and counted",
         from_backend(tos=DSCP_INSTALL << 2), OK, C.MARK_UNTRUSTED,
         with_dscp(from_backend(), DSCP_NONE), port="b1"),
    # --- marks from a front-end port (the data-plane table's own tests are below)
    Case("INSTALL on the front-end's handshake ACK: slot written, forwarded, mark cleared",
         from_frontend(), OK, C.DP_INSTALL, with_dscp(from_frontend(), DSCP_NONE), port="f0"),
    Case("INSTALL to an address that is no back-end: refused",
         from_frontend(dst=(ELSEWHERE, 80)), OK, C.DP_INSTALL_BAD,
         with_dscp(from_frontend(dst=(ELSEWHERE, 80)), DSCP_NONE), port="f0"),
    Case("INSTALL to a back-end's address but another port: refused",
         from_frontend(dst=(BE[0][0], 8443)), OK, C.DP_INSTALL_BAD,
         with_dscp(from_frontend(dst=(BE[0][0], 8443)), DSCP_NONE), port="f0"),
    Case("INSTALL naming a VIP index that does not exist (IP ID 9): refused",
         from_frontend(ip_id=9), OK, C.DP_INSTALL_BAD,
         with_dscp(from_frontend(ip_id=9), DSCP_NONE), port="f0"),
    Case("REMOVE on the front-end's RST to the back-end: no slot, forwarded, mark cleared",
         from_frontend(dscp=DSCP_REMOVE, flags="R"), OK, C.DP_REMOVE_MISS,
         with_dscp(from_frontend(dscp=DSCP_REMOVE, flags="R"), DSCP_NONE), port="f0"),
    Case("standalone REMOVE (REMOVE_CTL): consumed", from_frontend(dscp=DSCP_REMOVE_CTL), SHOT,
         C.CTL_CONSUMED, port="f0"),
    Case("INSTALL from a client port: cleared, counted, nothing written",
         from_frontend(), OK, C.MARK_UNTRUSTED, with_dscp(from_frontend(), DSCP_NONE)),
    Case("REMOVE from a client port: cleared, counted",
         from_frontend(dscp=DSCP_REMOVE), OK, C.MARK_UNTRUSTED,
         with_dscp(from_frontend(), DSCP_NONE)),
    Case("REMOVE_CTL from a back-end port: not consumed, cleared, forwarded",
         from_frontend(dscp=DSCP_REMOVE_CTL), OK, C.MARK_UNTRUSTED,
         with_dscp(from_frontend(), DSCP_NONE), port="b2"),
    Case("the front-end's forwarded request still carrying the ADMIT it got: cleared",
         from_frontend(dscp=DSCP_ADMIT, flags="PA", payload=b"GET / HTTP/1.1\r\n\r\n"), OK,
         C.MARK_CLEARED, with_dscp(from_frontend(flags="PA", payload=b"GET / HTTP/1.1\r\n\r\n"),
                                   DSCP_NONE), port="f0"),
    # --- fused SYNs (SYN, no ACK, ack field = the switch's ISN) to a back-end
    Case("fused SYN from a front-end port: normal forwarding",
         _fe_to_backend, OK, C.PASS, port="f0"),
    Case("fused SYN from a client port (forged): dropped",
         _fe_to_backend, SHOT, C.FUSED_SYN_FORGED, port="c0"),
    Case("fused SYN from a back-end port (forged): dropped",
         _fe_to_backend, SHOT, C.FUSED_SYN_FORGED, port="b2"),
    Case("plain SYN (ack field 0) from a client port to a back-end: normal forwarding",
         from_frontend(dscp=0, flags="S", ack=0), OK, C.PASS),
    Case("fused-looking SYN to a host that is no back-end: normal forwarding",
         from_client("S", seq=1000, ack=5, dst=ELSEWHERE), OK, C.PASS),
    # --- traffic that is not Miresga's
    Case("front-end -> client with source VIP:80: normal forwarding, untouched",
         _fe_to_client, OK, C.PASS, port="f0"),
    Case("client -> another host: normal forwarding", from_client(dst=BE[0][0]), OK, C.PASS),
    Case("client -> another host with DSCP EF: forwarded, the DSCP is the client's to keep",
         from_client(dst=ELSEWHERE, tos=46 << 2), OK, C.PASS),
    Case("client -> another host with a MIRESGA mark: cleared",
         from_client(dst=ELSEWHERE, tos=DSCP_MIRESGA << 2), OK, C.MARK_CLEARED,
         with_dscp(from_client(dst=ELSEWHERE), DSCP_NONE)),
    Case("UDP between hosts with a KNOWN mark: cleared",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=ELSEWHERE,
                                                        tos=DSCP_KNOWN << 2) / UDP(dport=53),
         OK, C.MARK_CLEARED,
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=ELSEWHERE) / UDP(dport=53)),
    Case("TCP to another port of the VIP address: normal forwarding",
         from_client(dport=443), OK, C.PASS),
    Case("TCP to another port of the VIP address with an ADMIT mark: forwarded, mark cleared",
         from_client(dport=443, tos=DSCP_ADMIT << 2), OK, C.MARK_CLEARED,
         with_dscp(from_client(dport=443), DSCP_NONE)),
    Case("ARP: normal forwarding",
         Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff")
         / ARP(hwsrc=CLIENT_MAC, psrc=CLIENT, pdst="10.9.0.1"),
         OK, C.PASS),
    Case("IPv6: normal forwarding",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IPv6() / TCP(), OK, C.PASS),
    # --- malformed and non-TCP
    Case("UDP to the VIP: dropped",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=VIP) / UDP(dport=80),
         SHOT, C.VIP_NOT_TCP),
    Case("ICMP echo to the VIP: dropped",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=VIP) / ICMP(),
         SHOT, C.VIP_NOT_TCP),
    Case("TCP to the VIP with IP options: dropped",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"])
         / IP(src=CLIENT, dst=VIP, options=[IPOption_Router_Alert()])
         / TCP(sport=CPORT, dport=80, flags="A", seq=1001, ack=cookie() + 1),
         SHOT, C.VIP_MALFORMED),
    Case("TCP fragment (MF) to the VIP: dropped",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=VIP, flags="MF")
         / TCP(sport=CPORT, dport=80, flags="A"), SHOT, C.VIP_MALFORMED),
    Case("non-first fragment to the VIP: dropped",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=VIP, frag=100, proto=6)
         / Raw(b"x" * 40), SHOT, C.VIP_MALFORMED),
    Case("TCP header cut short (IP length says more than the frame has) to the VIP: dropped",
         Ether(raw(from_client())[:14 + 20 + 10]), SHOT, C.VIP_MALFORMED),
    Case("TCP data offset below 5 to the VIP: dropped",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=VIP)
         / TCP(sport=CPORT, dport=80, dataofs=3, flags="A"), SHOT, C.VIP_MALFORMED),
    Case("TCP data offset past the IP length to the VIP: dropped",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=VIP)
         / TCP(sport=CPORT, dport=80, dataofs=15, flags="A"), SHOT, C.VIP_MALFORMED),
    # (A frame too short for an IPv4 header cannot be fed in: BPF_PROG_TEST_RUN
    # itself refuses IPv4 frames under 34 bytes.  These reach the same branch.)
    Case("IPv4 total length shorter than its header: forwarded untouched",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=BE[0][0], len=12)
         / TCP(), OK, C.MALFORMED),
    Case("IPv4 total length shorter than its header, to the VIP: dropped",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=VIP, len=12) / TCP(),
         SHOT, C.VIP_MALFORMED),
    Case("EtherType IPv4 carrying version 6: forwarded untouched",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=BE[0][0], version=6)
         / TCP(), OK, C.MALFORMED),
    Case("IPv4 with IHL 4: forwarded untouched",
         Ether(src=CLIENT_MAC, dst=PORT_MAC["c0"]) / IP(src=CLIENT, dst=BE[0][0], ihl=4) / TCP(),
         OK, C.MALFORMED),
    Case("truncated TCP between other hosts: forwarded untouched",
         Ether(raw(from_client(dst=BE[0][0]))[:14 + 20 + 10]), OK, C.MALFORMED),
]


def _patch_bad_options() -> None:
    """Hand-made option bytes scapy would refuse to build."""
    base = from_client("S", seq=1000, ack=0)

    def with_opts(opt: bytes) -> Ether:
        p = base.copy()
        p[TCP].dataofs = 5 + len(opt) // 4
        p[TCP].options = []
        q = Ether(raw(p)[:14 + 20 + 20] + opt)
        q[IP].len = 20 + 20 + len(opt)
        del q[IP].chksum
        del q[TCP].chksum
        return Ether(raw(q))

    bad = {
        "SYN whose option length is 0 (would loop): dropped": b"\x02\x00\x05\xb4",
        "SYN whose option length is 1: dropped": b"\x01\x01\x03\x01",
        "SYN whose option runs past the header: dropped": b"\x01\x01\x02\x04\x05\xb4\x01\x08",
        "SYN with an MSS option of length 3: dropped": b"\x02\x03\x05\x00",
    }
    for case in CASES:
        if case.desc in bad:
            case.pkt = with_opts(bad[case.desc])


_patch_bad_options()


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_pipeline_table(r, case: Case):
    """One packet through the pipeline: verdict, output bytes, counter, egress port."""
    for client, cport, backend in case.flows:
        r.add_flow(client, cport, backend)
    out = r.run(case.pkt, case.port)
    assert out.retval == case.verdict
    assert out.delta.get("pkts") == 1
    if case.counter is not None:
        assert out.delta.get(case.counter.name.lower(), 0) == 1, out.delta
    if case.verdict == REDIRECT:
        assert out.egress == case.egress
    else:
        assert out.egress is None
    if case.expect is not None:
        assert out.pkt.show2(dump=True) == case.expect.show2(dump=True)
        assert out.data == raw(case.expect)
    elif case.verdict == OK:
        assert out.data == raw(case.pkt), "a packet passed to the kernel must be untouched"


# ------------------------------------------------------- sequences of packets

def test_cookie_round_trip(r):
    """A cookie encoded in the SYN-ACK validates on the client's ACK, with any keys."""
    r.sw.rotate_cookie_secret()  # fresh random keys: nothing precomputed
    syn = from_client("S", seq=31337, ack=0, options=LINUX_SYN_OPTS)
    out = r.run(syn)
    assert out.retval == REDIRECT and out.egress == "c0"
    s = out.pkt[TCP].seq
    f = layouts.cookie_fields(s)
    assert (f["mss"], f["wscale"], f["sack"]) == (1460, 7, True)
    assert f["epoch_bit"] == r.sw.config().epoch & 1
    ack = from_client(seq=31338, ack=s + 1)
    out = r.run(ack)
    assert out.retval == REDIRECT and out.delta.get("cookie_ok") == 1
    expect, port = to_frontend(ack, DSCP_ADMIT)
    assert out.data == raw(expect) and out.egress == port


def test_cookie_is_never_zero(r):
    """A SYN whose cookie would be 0 (hash bits 0, and a zero low byte: MSS class
    0, window scale 0, no SACK, even epoch) gets ISN 1 << 8 instead:
    a fused SYN with ack field 0 is a plain SYN to the agent.  The handshake ACK
    for that ISN validates."""
    r.sw.set_cookie_secret(8, KEYS)
    isn = 17048754  # found by search: HalfSipHash bits 31..8 are 0 for these inputs
    syn = from_client("S", seq=isn, ack=0, options=[("MSS", 536), ("WScale", 0)])
    out = r.run(syn)
    assert out.retval == REDIRECT and out.pkt[TCP].seq == 1 << 8
    assert_checksums(out.pkt)
    out = r.run(from_client(seq=isn + 1, ack=(1 << 8) + 1))
    assert out.retval == REDIRECT and out.delta.get("cookie_ok") == 1


def test_cookie_from_previous_epoch_valid_two_rotations_expire(r):
    """A cookie stays valid across one rotation and is rejected after two."""
    syn = lambda port: from_client("S", seq=500, ack=0, sport=port, options=LINUX_SYN_OPTS)
    s1 = r.run(syn(41001)).pkt[TCP].seq
    s2 = r.run(syn(41002)).pkt[TCP].seq
    r.sw.rotate_cookie_secret()
    out = r.run(from_client(seq=501, ack=s1 + 1, sport=41001))
    assert out.retval == REDIRECT and out.delta.get("cookie_ok") == 1
    r.sw.rotate_cookie_secret()
    out = r.run(from_client(seq=501, ack=s2 + 1, sport=41002))
    assert out.retval == SHOT and out.delta.get("cookie_bad") == 1


def test_key_rotation_writes_the_key_before_the_epoch_that_selects_it(r, monkeypatch):
    """Rotation never shows the data path an epoch whose key is not written yet: the
    first write puts the new key in the slot the current epoch does not use, the
    second flips the epoch and changes nothing else."""
    before = r.sw.config()
    old_epoch = before.epoch
    old_keys = [(k.k0, k.k1) for k in before.keys]
    writes = []
    real = r.sw.write_config

    def record(cfg):
        writes.append((cfg.epoch, [(k.k0, k.k1) for k in cfg.keys]))
        real(cfg)

    monkeypatch.setattr(r.sw, "write_config", record)
    new_epoch = r.sw.rotate_cookie_secret()
    slot = new_epoch & 1
    assert new_epoch == old_epoch + 1 and len(writes) == 2
    (e1, k1), (e2, k2) = writes
    assert e1 == old_epoch and k1[1 - slot] == old_keys[1 - slot] and k1[slot] != old_keys[slot]
    assert e2 == new_epoch and k2 == k1


def test_cookie_is_bound_to_the_connection_and_its_options(r):
    """A valid cookie replayed by another client port, with another ISN, or with
    its low byte edited (claiming other options) is rejected."""
    s = r.run(from_client("S", seq=700, ack=0, options=LINUX_SYN_OPTS)).pkt[TCP].seq
    for pkt in (from_client(seq=701, ack=s + 1, sport=CPORT + 1),
                from_client(seq=702, ack=s + 1),
                from_client(seq=701, ack=((s ^ 0x40) + 1) & M32),
                from_client(seq=701, ack=s + 1, src="10.9.0.11")):
        out = r.run(pkt)
        assert out.retval == SHOT and out.delta.get("cookie_bad") == 1
    assert r.run(from_client(seq=701, ack=s + 1)).delta.get("cookie_ok") == 1


def test_seen_filter_admits_later_packets_of_a_validated_connection(r):
    """After its cookie ACK, a connection's later packets (request segments, ACKs of
    response data the front-end forwarded) reach the front-end without a cookie."""
    r.run(from_client())  # the handshake ACK: cookie valid
    later = [from_client(flags="PA", seq=1001 + 1400, ack=cookie() + 1, payload=b"y" * 100),
             from_client(seq=5000, ack=cookie() + 1 + 90000),
             from_client(flags="FA", seq=6000, ack=cookie() + 99999)]
    for p in later:
        out = r.run(p)
        assert out.retval == REDIRECT and out.delta.get("conn_known") == 1, out.delta
        assert out.data == raw(to_frontend(p, DSCP_KNOWN)[0])
    # Another connection of the same client is not admitted by this one.
    out = r.run(from_client(seq=5000, ack=424242, sport=CPORT + 7))
    assert out.retval == SHOT and out.delta.get("cookie_bad") == 1


def test_seen_filter_remembers_active_and_forgets_idle_connections(r):
    """A connection with a client packet every period survives any number of
    rotations; one silent for two periods is forgotten."""
    r.run(from_client())                                  # active one, port CPORT
    r.run(from_client(sport=CPORT + 1, ack=cookie(cport=CPORT + 1) + 1))  # idle one
    later = lambda port: from_client(seq=9000, ack=123456, sport=port)
    for _ in range(4):
        r.sw.rotate_filter()
        assert r.run(later(CPORT)).delta.get("conn_known") == 1
    assert r.run(later(CPORT + 1)).delta.get("cookie_bad") == 1


def test_seen_filter_kept_fresh_by_offloaded_packets(r):
    """Packets that take the offload path refresh the filter, so a connection whose
    entry disappears later (aged, re-routed) is still admitted."""
    r.run(from_client())
    r.add_flow()
    for _ in range(3):
        r.sw.rotate_filter()
        assert r.run(from_client(seq=9000, ack=555)).delta.get("offload_fwd") == 1
    r.sw.map("flow_table").clear()
    assert r.run(from_client(seq=9001, ack=556)).delta.get("conn_known") == 1


def test_seen_filter_disabled_means_cookies_only(r):
    """With the filter off, only packets carrying a valid cookie are admitted."""
    cfg = r.sw.config()
    cfg.filter_bits_log2 = 0
    r.sw.map("config").update(ctypes.c_uint32(0), cfg)
    try:
        assert r.run(from_client()).delta.get("cookie_ok") == 1
        assert r.run(from_client(seq=5000, ack=cookie() + 500)).delta.get("cookie_bad") == 1
    finally:
        cfg.filter_bits_log2 = 12
        r.sw.map("config").update(ctypes.c_uint32(0), cfg)


def test_frontends_share_clients_by_hash(r):
    """Clients spread over both front-ends, each always to the one the hash names,
    and a back-end's packets for a client go to that client's front-end."""
    seen = {"f0": 0, "f1": 0}
    for port in range(42000, 42064):
        out = r.run(from_client(sport=port, ack=cookie(cport=port) + 1))
        assert out.egress == FE[frontend_of(CLIENT, port)][2]
        seen[out.egress] += 1
        back = r.run(from_backend(dport=port), port="b1")
        assert back.egress == out.egress
    assert min(seen.values()) >= 16, seen


def test_entries_last_seen_follows_the_clock(r):
    """Offloaded packets in either direction stamp the entry with the switch clock."""
    r.add_flow()
    key = layouts.FlowKey(ip_be(CLIENT), port_be(CPORT))
    t0 = r.sw.map("flow_table").lookup(key).last_seen_s
    now = r.sw.tick(30)
    r.run(from_backend(), port="b1")
    assert r.sw.map("flow_table").lookup(key).last_seen_s == now != t0
    now = r.sw.tick(30)
    r.run(from_client(seq=9000, ack=1))
    assert r.sw.map("flow_table").lookup(key).last_seen_s == now


def test_without_frontends_client_packets_are_dropped_and_counted(r):
    """No front-end configured: nothing to hand the packet to, so it is dropped."""
    cfg = r.sw.config()
    cfg.fe_slots = 0
    r.sw.map("config").update(ctypes.c_uint32(0), cfg)
    out = r.run(from_client())
    assert out.retval == SHOT and out.delta.get("no_frontend") == 1


def test_counters_count_bytes(r):
    """Byte counters advance by the frame length of what each branch moved."""
    r.add_flow()
    p = from_backend(payload=b"z" * 1000)
    out = r.run(p, port="b1")
    assert out.delta["offload_rev"] == 1 and out.delta["offload_rev_bytes"] == len(raw(p))


def test_gro_merged_response_is_offloaded_not_taken_for_too_big(r):
    """A GRO-merged back-end response (a GSO skb of 2 x 1200 bytes) toward a client
    behind a 1280-byte link is rewritten and redirected: it will be segmented on
    the way out.  Only a packet that is really too big goes to the kernel."""
    r.add_flow(SMALL_CLIENT)
    big = from_backend(dst=SMALL_CLIENT, payload=b"g" * 2400)
    out = r.run(big, port="b1", gso_size=1200)
    assert out.retval == REDIRECT and out.egress == "c1", out.delta
    assert out.data == raw(_to_client(big, SMALL_CLIENT_MAC, "c1"))
    out = r.run(big, port="b1")
    assert out.retval == OK and out.delta.get("fib_miss") == 1
    assert out.data == raw(with_dscp(big, DSCP_NONE))


# ------------------------------------------------------------- admission

def test_first_data_admitted_by_the_filter_is_still_marked_admit(r):
    """The cookie is checked on a packet the seen filter admits too: the first request
    segment after the handshake ACK (seq - 1 = c, ack - 1 = s) is ADMIT, a later one
    KNOWN."""
    assert r.run(_ack).delta.get("fe_admit") == 1
    out = r.run(_data)
    assert out.delta.get("conn_known") == 1 and out.delta.get("fe_admit") == 1
    assert out.data == raw(to_frontend(_data, DSCP_ADMIT)[0])
    out = r.run(_later)
    assert out.delta.get("conn_known") == 1 and out.delta.get("fe_known") == 1
    assert out.data == raw(to_frontend(_later, DSCP_KNOWN)[0])


# ------------------------------------------------------- data-plane table

def key_of(client=CLIENT, cport=CPORT) -> tuple[int, int]:
    return ip_be(client), port_be(cport)


def install(r, client=CLIENT, cport=CPORT, backend=0, vip=0, fe=0):
    """The front-end's INSTALL-marked handshake ACK, from its port."""
    return r.run(from_frontend(backend, ip_id=vip, client=client, cport=cport, fe=fe),
                 FE[fe][2])


def sharing_slots(r, n: int, ways: int, client=CLIENT, cport=CPORT) -> list[int]:
    """n client ports whose first `ways` slots are those of (client, cport)."""
    dp = r.sw.dataplane
    want = [layouts.dp_slot_index(dp.seed, *key_of(client, cport), w, dp.slots_log2)
            for w in range(ways)]
    found = []
    for port in range(1024, 65536):
        if port != cport and [layouts.dp_slot_index(dp.seed, *key_of(client, port), w,
                                                    dp.slots_log2)
                              for w in range(ways)] == want:
            found.append(port)
            if len(found) == n:
                return found
    raise AssertionError("no client ports share these slots")


def age_slot(r, client=CLIENT, cport=CPORT, by_s: float = DP_IDLE_S + 1) -> None:
    """Make the slot of (client, cport) look idle for by_s seconds."""
    (i, slot), = r.sw.dataplane.slots_of(*key_of(client, cport))
    slot.last_seen = (dp_now_ticks() - int(by_s * 1e9) // (1 << layouts.DP_TICK_SHIFT)) & M32
    r.sw.map("dp_table").update(ctypes.c_uint32(i), slot)


def test_install_mark_offloads_both_directions(r):
    """An INSTALL from a front-end port writes (client IP, port) -> the back-end the
    ACK is addressed to, with the VIP index from its IP ID; from then on the client's
    pure ACKs go to that back-end and its marked replies to the client, each a hit in
    the data-plane table.  Nothing went through the control plane."""
    out = install(r, backend=1)
    assert out.retval == OK and out.delta.get("dp_install") == 1
    assert out.data == raw(with_dscp(from_frontend(1), DSCP_NONE))
    slot = r.sw.dataplane.find(*key_of())
    assert (slot.backend_idx, slot.vip_idx) == (1, 0)
    assert len(r.sw.map("flow_table")) == 0
    out = r.run(_late_ack)
    assert out.retval == REDIRECT and out.egress == "b2"
    assert out.delta.get("offload_fwd") == 1 and out.delta.get("dp_hit") == 1
    assert out.data == raw(_to_backend(_late_ack, 1))
    back = from_backend(1, payload=b"response")
    out = r.run(back, port="b2")
    assert out.retval == REDIRECT and out.egress == "c0" and out.delta.get("dp_hit") == 1
    assert out.data == raw(_to_client(back))
    # Back-end 0 has no say over the flow: its packet goes to the front-end.
    out = r.run(from_backend(0), port="b1")
    assert out.delta.get("rev_to_frontend") == 1


def test_install_from_either_frontend_port(r):
    """Both front-end ports are trusted, each the port its front-end hangs off."""
    assert install(r, fe=1, cport=CPORT + 1).delta.get("dp_install") == 1
    assert r.sw.dataplane.find(*key_of(cport=CPORT + 1)) is not None


def test_reinstall_moves_the_flow_to_another_backend(r):
    """A second INSTALL for the same key (the front-end re-routed the flow) rewrites
    its slot in place: one slot, the new back-end."""
    install(r, backend=0)
    out = install(r, backend=1)
    assert out.delta.get("dp_reinstall") == 1
    assert [s.backend_idx for _, s in r.sw.dataplane.slots_of(*key_of())] == [1]
    assert r.run(_late_ack).egress == "b2"


def test_remove_clears_only_its_own_key(r):
    """REMOVE of another key, even one sharing both slots, leaves the entry; REMOVE of
    the key clears it and the flow's packets go to the front-end again."""
    other, = sharing_slots(r, 1, 2)
    install(r)
    out = r.run(from_frontend(dscp=DSCP_REMOVE, flags="R", cport=other), "f0")
    assert out.delta.get("dp_remove_miss") == 1 and out.retval == OK
    assert r.sw.dataplane.find(*key_of()) is not None
    out = r.run(from_frontend(dscp=DSCP_REMOVE, flags="FA"), "f0")
    assert out.delta.get("dp_remove") == 1 and out.retval == OK
    assert out.data == raw(with_dscp(from_frontend(flags="FA"), DSCP_NONE))
    assert r.sw.dataplane.find(*key_of()) is None
    out = r.run(_late_ack)  # no entry, not in the filter, no cookie: dropped
    assert "offload_fwd" not in out.delta and out.delta.get("cookie_bad") == 1


def test_standalone_remove_acts_then_is_consumed(r):
    """REMOVE_CTL: the slot is cleared and the packet goes no further."""
    install(r)
    out = r.run(from_frontend(dscp=DSCP_REMOVE_CTL, flags=""), "f0")
    assert out.retval == SHOT and out.delta.get("dp_remove") == 1
    assert out.delta.get("ctl_consumed") == 1
    assert r.sw.dataplane.find(*key_of()) is None


def test_marks_from_other_ports_write_nothing(r):
    """INSTALL from a client port and from a back-end port, REMOVE and REMOVE_CTL
    from a client port: no slot written or cleared."""
    assert r.run(from_frontend()).delta.get("mark_untrusted") == 1
    assert r.run(from_frontend(), "b1").delta.get("mark_untrusted") == 1
    assert r.sw.dataplane.entries() == {}
    install(r)
    for dscp in (DSCP_REMOVE, DSCP_REMOVE_CTL):
        out = r.run(from_frontend(dscp=dscp))
        assert out.retval == OK and out.delta.get("mark_untrusted") == 1
        assert "dp_remove" not in out.delta
    assert r.sw.dataplane.find(*key_of()) is not None


def test_collision_with_live_keys_is_refused_and_counted(r):
    """Three keys sharing both of their slots: the first two take a way each, the
    third is refused (its flow stays on the front-end), the first two keep theirs."""
    k2, k3 = sharing_slots(r, 2, 2)
    assert install(r).delta.get("dp_install") == 1
    assert install(r, cport=k2, backend=1).delta.get("dp_install") == 1
    out = install(r, cport=k3)
    assert out.delta.get("dp_collision") == 1 and out.retval == OK
    assert r.sw.dataplane.find(*key_of(cport=k3)) is None
    assert r.run(_late_ack).egress == "b1"
    assert r.run(from_client(seq=5001, ack=777777, sport=k2)).egress == "b2"
    out = r.run(from_client(ack=cookie(cport=k3) + 1, sport=k3))
    assert out.egress in ("f0", "f1") and out.delta.get("cookie_ok") == 1


def test_one_way_table_refuses_the_second_key_of_a_slot(r):
    """With one way, two keys sharing a slot: the second is refused."""
    cfg = r.sw.config()
    cfg.dp_ways = 1
    r.sw.map("config").update(ctypes.c_uint32(0), cfg)
    try:
        dp = r.sw.dataplane
        other = next(p for p in range(1024, 65536) if p != CPORT and
                     layouts.dp_slot_index(dp.seed, *key_of(cport=p), 0, dp.slots_log2) ==
                     layouts.dp_slot_index(dp.seed, *key_of(), 0, dp.slots_log2))
        assert install(r).delta.get("dp_install") == 1
        assert install(r, cport=other).delta.get("dp_collision") == 1
    finally:
        cfg.dp_ways = 2
        r.sw.map("config").update(ctypes.c_uint32(0), cfg)


def test_aged_slot_counts_as_empty(r):
    """Lazy aging: a slot idle past the timeout is a miss for its own key (counted)
    and free for a key that shares it; no sweep was needed."""
    k2, = sharing_slots(r, 1, 1)
    install(r)
    age_slot(r)
    out = r.run(_late_ack)
    assert out.delta.get("dp_expired") == 1 and "offload_fwd" not in out.delta
    assert r.sw.liveness([(*key_of(), None)]) == [Liveness(False)]
    out = install(r, cport=k2, backend=1)
    assert out.delta.get("dp_install") == 1
    (i, slot), = r.sw.dataplane.slots_of(*key_of(cport=k2))
    assert i < DP_SLOTS // 2, "took way 0, the aged slot"
    assert r.sw.dataplane.slots_of(*key_of()) == []


def test_a_slot_in_use_stays_young(r):
    """Packets in either direction refresh the slot's last-seen, so a busy flow
    never ages out however long it lives."""
    install(r)
    age_slot(r, by_s=DP_IDLE_S - 5)
    r.run(from_backend(0), port="b1")
    assert r.sw.liveness([(*key_of(), 0)])[0].idle_ms < 5000
    age_slot(r, by_s=DP_IDLE_S - 5)
    r.run(_late_ack)
    assert r.sw.liveness([(*key_of(), 0)])[0].idle_ms < 5000


def test_exact_match_table_goes_first(r):
    """A key in both tables follows the exact-match (control-plane) entry."""
    r.add_flow(backend=0)
    install(r, backend=1)
    out = r.run(_late_ack)
    assert out.egress == "b1" and "dp_hit" not in out.delta
    assert r.sw.liveness([(*key_of(), None)])[0].backend_idx == 0


def test_install_with_no_data_plane_table_is_refused(r):
    """dp_slots 0 in the plan (here: in the config): INSTALL is refused, counted."""
    cfg = r.sw.config()
    log2 = cfg.dp_slots_log2
    cfg.dp_slots_log2 = 0
    r.sw.map("config").update(ctypes.c_uint32(0), cfg)
    try:
        assert install(r).delta.get("dp_install_bad") == 1
        assert r.run(from_frontend(dscp=DSCP_REMOVE), "f0").delta.get("dp_remove_miss") == 1
    finally:
        cfg.dp_slots_log2 = log2
        r.sw.map("config").update(ctypes.c_uint32(0), cfg)


def test_liveness_answers_from_either_table(r):
    """liveness(): present, back-end and idle time from the exact-match table (whole
    seconds of the control clock) or the data-plane table (~1 ms ticks); an entry for
    another VIP and a key in neither table are not present."""
    r.add_flow(cport=CPORT, backend=1)
    r.sw.tick(5)
    install(r, cport=CPORT + 1, backend=0)
    before = dp_now_ticks()
    age_slot(r, cport=CPORT + 1, by_s=2.0)
    (_, slot), = r.sw.dataplane.slots_of(*key_of(cport=CPORT + 1))
    flow, dp, missing, wrong_vip = r.sw.liveness([
        (*key_of(), 0), (*key_of(cport=CPORT + 1), None), (*key_of(cport=CPORT + 2), None),
        (*key_of(), 3)])
    after = dp_now_ticks()
    assert flow == Liveness(True, 1, 5000)
    tick_ms = (1 << layouts.DP_TICK_SHIFT) / 1e6
    assert dp.present and dp.backend_idx == 0
    assert int((before - slot.last_seen) * tick_ms) <= dp.idle_ms <= (after - slot.last_seen) * tick_ms
    assert missing == Liveness(False) and wrong_vip == Liveness(False)


def test_occupancy_removal_and_aging_from_the_control_plane(r):
    """occupancy() counts live slots (an aged one is empty), remove() clears a key's
    slot as a REMOVE mark would (the channel's DEL fallback), age() clears aged slots;
    MiresgaSwitch.read_pins() reports the same from the pins."""
    for port in (CPORT, CPORT + 1, CPORT + 2):
        install(r, cport=port)
    age_slot(r, cport=CPORT + 2)
    assert r.sw.dataplane.occupancy() == 2
    state = MiresgaSwitch.read_pins(r.sw.pin_dir)
    assert (state["dp_occupancy"], state["dp_slots"]) == (2, DP_SLOTS)
    assert r.sw.dataplane.remove([key_of(cport=CPORT + 1)]) == 1
    assert r.sw.dataplane.find(*key_of(cport=CPORT + 1)) is None
    assert r.sw.dataplane.age() == 1
    assert r.sw.dataplane.slots_of(*key_of(cport=CPORT + 2)) == []
    assert set(r.sw.dataplane.entries()) == {(CLIENT, CPORT)}
