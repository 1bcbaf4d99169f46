/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The back-end agent's maps, shared by its eBPF programs (agent.bpf.c) and
 * the loader (miresga/control/agent.py), which uses the Python layouts
 * generated from this header's BTF (miresga/control/agent_layouts_gen.py:
 * miresga/include/layouts.bpf.c says what Python gets).  tests/test_layouts_btf.py
 * also holds them to the BTF of agent.bpf.o, the layout the kernel uses.
 *
 * Byte order: fields named *_be are network order, everything else is host
 * order.  Padding is explicit, as in miresga.h.
 */
#ifndef MG_AGENT_H
#define MG_AGENT_H

#include "miresga.h"

#ifdef __BPF__
#include <linux/bpf.h>
#else
typedef int8_t __s8;
#endif

/* Default size of the connection map; the loader sets the real one. */
#define MG_AGENT_CONNS_DEFAULT 65536
#define MG_AGENT_MAX_PORTS 64

/*
 * One connection, as the back-end sees it: the client endpoint (the front-end
 * spoofs the client's address, so the back-end's peer *is* the client) and
 * the local service port.  The back-end address is left out on purpose: the
 * program runs on one back-end interface, and the switch's flow table is keyed
 * on the client endpoint alone as well.
 */
struct mg_agent_key {
	__be32 client_ip_be;
	__be16 client_port_be;
	__be16 local_port_be;
};

enum mg_agent_state {
	MG_AGENT_SYN_SEEN = 1,   /* fused SYN stored, back-end's SYN-ACK not seen yet */
	MG_AGENT_ESTABLISHED,    /* offset known: rewriting both directions */
	MG_AGENT_CLOSING,        /* established, then RST or both FINs: rewriting until grace ends */
};

/* mg_agent_conn.flags */
#define MG_AGENT_FIN_IN 0x1      /* client (or front-end) sent FIN */
#define MG_AGENT_FIN_OUT 0x2     /* back-end sent FIN */
#define MG_AGENT_RST 0x4         /* either side sent RST */
#define MG_AGENT_TS 0x8          /* timestamps are on: TSval/TSecr are translated too */

struct mg_agent_conn {
	__u32 switch_isn;       /* s: the switch's cookie ISN, from the fused SYN's ack field */
	__u32 client_isn;       /* c: seq of the fused SYN (tells a retransmission from re-use) */
	__u32 backend_isn;      /* b: seq of the back-end's SYN-ACK */
	__u32 delta;            /* d = b - s; egress seq -= d, ingress ack += d */
	__u64 last_seen_ns;     /* bpf_ktime_get_ns() of the last packet: idle aging */
	__u64 close_ns;         /* when RST or the second FIN was seen; 0 while open */
	__u8 state;             /* enum mg_agent_state */
	__u8 flags;             /* MG_AGENT_FIN_IN | MG_AGENT_FIN_OUT | MG_AGENT_RST */
	__u8 client_wscale;     /* from the fused SYN; MG_COOKIE_NO_WSCALE if absent */
	__u8 backend_wscale;    /* from the SYN-ACK; MG_COOKIE_NO_WSCALE if absent */
	/*
	 * Window rescaling (see agent.bpf.c, "Window scale"):
	 *   egress  window' = window << egress_shift  (>> -egress_shift if negative)
	 *   ingress window' = window << ingress_shift
	 */
	__s8 egress_shift;
	__u8 ingress_shift;
	__u8 _pad[2];
	/*
	 * Timestamps (RFC 7323), when MG_AGENT_TS: the switch's SYN-ACK started
	 * the client's view of the server's clock at ts_base (the fused SYN's
	 * TSecr); the back-end's clock is ts_delta ahead of that view.  Egress
	 * TSval -= ts_delta, ingress TSecr += ts_delta.
	 */
	__u32 ts_base;
	__u32 ts_delta;         /* set by the first SYN-ACK */
	/* No timer per entry: one sweeper timer ages the map (agent.bpf.c, "aging"). */
};

/* Single element of an array map, written by the loader before it attaches. */
struct mg_agent_config {
	__u64 idle_timeout_ns;  /* an open entry with no packet for this long is dropped */
	__u64 close_grace_ns;   /* an entry lives this long after RST or both FINs */
	__u8 wscale;            /* W, the window scale the switch advertises to clients */
	__u8 enabled;           /* 0: pass everything untouched (config not written yet) */
	__u8 _pad[6];
	__u64 sweep_ns;         /* period of the sweeper that deletes expired entries */
	/* Non-zero, new at every load: a reloaded program re-arms the sweeper
	 * timer with its own callback when it sees a generation not its own. */
	__u32 generation;
	__u32 _pad2;
};

/* Counters (per-CPU array, index = enum). */
enum mg_agent_counter {
	MG_AG_IN_PKTS = 0,      /* every packet the ingress program saw */
	MG_AG_OUT_PKTS,         /* every packet the egress program saw */
	MG_AG_FOREIGN,          /* not IPv4/TCP, not a service port, or a later IP fragment */
	MG_AG_TRUNCATED,        /* headers shorter than they claim: passed untouched */
	MG_AG_NO_CONFIG,        /* the loader has not written the config: passed */
	MG_AG_CONN_NEW,         /* fused SYN for a new key: entry created */
	MG_AG_CONN_REUSE,       /* fused SYN with new ISNs for a key in the map: entry replaced */
	MG_AG_SYN_RETRANS,      /* the same fused SYN again */
	MG_AG_SYN_PLAIN,        /* SYN with a zero ack field: not Miresga's, passed */
	MG_AG_STALE_REMOVED,    /* an entry of a connection that was over removed by a new one */
	MG_AG_SYNACK,           /* SYN-ACK seen: offset d computed, seq rewritten to s */
	MG_AG_REWRITE_IN,       /* ingress ack rewritten */
	MG_AG_REWRITE_OUT,      /* egress seq rewritten */
	MG_AG_SACK_REWRITE,     /* ingress packets whose SACK blocks were translated */
	MG_AG_SACK_BLOCKS,      /* SACK blocks translated */
	MG_AG_WINDOW_FIX,       /* window field rescaled */
	MG_AG_WINDOW_CAPPED,    /* ... and clipped to 65535 */
	MG_AG_WSCALE_OPT_FIX,   /* SYN-ACK window-scale option rewritten to W */
	MG_AG_CLOSE_RST,        /* RST seen: grace period started */
	MG_AG_CLOSE_FIN,        /* second FIN seen: grace period started */
	MG_AG_CLEANUP_CLOSED,   /* entry removed at the end of its grace period */
	MG_AG_CLEANUP_IDLE,     /* entry removed after idle_timeout_ns without a packet */
	MG_AG_MISS_IN,          /* ingress non-SYN to a service port, no entry: passed */
	MG_AG_MISS_OUT,         /* egress from a service port, no entry: passed */
	MG_AG_NOT_ESTABLISHED,  /* packet for an entry whose SYN-ACK was not seen: passed */
	MG_AG_BAD_OPTIONS,      /* option list truncated or malformed: options untouched */
	MG_AG_MAP_FAIL,         /* entry could not be stored (map full): fused SYN dropped */
	MG_AG_SWEEPS,           /* sweeps of the map by the aging timer */
	MG_AG_SWEEP_ARM_FAIL,   /* the sweeper timer could not be armed (retried at the next SYN) */
	MG_AG_TS_REWRITE,       /* packets whose TSval (egress) or TSecr (ingress) was translated */
	MG_AG_MARKED,           /* egress packets that left marked MIRESGA (miresga.h, marks) */
	MG_AG_SYN_PLAIN_KEPT,   /* plain SYN on a key whose connection is not over: entry kept */
	MG_AG_SYN_LIVE_KEPT,    /* fused SYN with new ISNs on a live connection's key: refused */
	MG_AG_SYNACK_FOREIGN,   /* SYN-ACK answering another SYN than the fused one: untouched */
	MG_AG__MAX,
};

#endif /* MG_AGENT_H */
