/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Layouts of the l4switch baseline that the eBPF program and the Python
 * driver share (generated for Python from this header's BTF into
 * switchhost/pipelines/l4switch_layouts_gen.py: miresga/include/layouts.bpf.c
 * says what Python gets, scripts/gen_layouts.py generates it).  The VIP and
 * back-end tables reuse Miresga's layouts (miresga.h: mg_vip_key, mg_vip,
 * mg_backend_key, mg_backend), so both switch programs read a back-end the
 * same way.
 *
 * Byte order: fields named *_be are network order, everything else is host
 * order.
 */
#ifndef L4SWITCH_H
#define L4SWITCH_H

#include "miresga.h"

/* Maglev lookup table size per VIP: a prime, as Maglev requires, so every
 * back-end's permutation (offset + j * skip mod M) visits every slot.  65537
 * is the Maglev paper's (and Katran's) production size: with N back-ends each
 * owns M/N slots to within one, so the table adds < 0.01% to the imbalance
 * that hashing a finite number of connections has anyway. */
#define L4_MAGLEV_SIZE_DEFAULT 65537
/* Connections in the connection table (each takes two entries, see below). */
#define L4_CONN_CAPACITY_DEFAULT 262144
/* A Maglev slot of a VIP without any back-end. */
#define L4_BACKEND_NONE 0xffffffffu

/*
 * Connection table key.  One LRU hash holds two entries per connection:
 *   forward  (client IP, client port, VIP, VIP port)         -> back-end index
 *   reverse  (client IP, client port, back-end IP, its port) -> VIP index
 * The forward entry pins an established connection to its back-end whatever
 * the Maglev table says later; the reverse entry is how a back-end's packet is
 * recognised as part of a balanced connection and which VIP it is rewritten
 * back to.  VIP and back-end addresses never overlap, so the two kinds of key
 * cannot collide.  Both entries are referenced by every packet of a live TCP
 * connection (data one way, ACKs the other), so LRU eviction under pressure
 * takes idle or closed connections first.
 */
struct l4_conn_key {
	__be32 client_ip_be;
	__be32 peer_ip_be;      /* the VIP (forward) or the back-end (reverse) */
	__be16 client_port_be;
	__be16 peer_port_be;
};

/* Flags of a connection entry.  FIN and RST are recorded in both entries of
 * the connection, whichever direction carried them. */
#define L4_CONN_REVERSE 0x1u     /* reverse entry: idx is a VIP index */
#define L4_CONN_FIN_CLIENT 0x2u  /* the client sent a FIN */
#define L4_CONN_FIN_BACKEND 0x4u /* the back-end sent a FIN */
#define L4_CONN_RST 0x8u         /* either side sent a RST */

/* A connection is closing once a RST was seen or both sides sent a FIN.  The
 * data plane removes both entries when it forwards the last ACK (a pure ACK
 * after FIN both ways); the control plane removes what is left (RST, a lost
 * last ACK) after a short timeout; and a new SYN from the same client port on
 * a closing entry is a new connection (balanced afresh). */
MG_INLINE int l4_conn_closing(__u32 flags)
{
	return (flags & L4_CONN_RST) ||
	       (flags & (L4_CONN_FIN_CLIENT | L4_CONN_FIN_BACKEND)) ==
		       (L4_CONN_FIN_CLIENT | L4_CONN_FIN_BACKEND);
}

struct l4_conn {
	__u32 idx;          /* forward: back-end index; reverse: VIP index */
	__u32 flags;        /* L4_CONN_*; 32 bits so the data plane can atomic-OR them */
	__u32 last_seen_s;  /* the config clock at the last packet (idle expiry) */
};

/*
 * Configuration, one element of an array map, written by the control plane.
 *
 * The Maglev table (maglev_table) holds two generations of every VIP's
 * lookup table: slot s of VIP v in generation g is element
 * (g * vip_capacity + v) * maglev_size + s.  The control plane writes a new
 * table into the generation not in use (one batch), then flips maglev_gen in
 * one config update: packets see the old table or the new one, never a mix.
 */
struct l4_config {
	__u32 now_s;         /* coarse clock, advanced by the control plane */
	__u32 maglev_size;   /* M, prime */
	__u32 vip_capacity;  /* VIPs per Maglev generation */
	__u32 maglev_gen;    /* generation in use (0 or 1) */
	__u32 hash_seed;     /* mixed into the connection hash */
	__u32 _pad;
};

/* Flow hash that picks a Maglev slot: the connection's 4-tuple, seeded.
 * Arguments are network-order values, hashed as the raw words (the Python
 * mirror, layouts.flow_hash, does the same). */
MG_INLINE __u32 l4_flow_hash(__u32 seed, __be32 client_ip, __be16 client_port, __be32 vip,
				 __be16 vip_port)
{
	__u32 h = seed;

	h = mg_mix32(h ^ client_ip);
	h = mg_mix32(h ^ vip);
	h = mg_mix32(h ^ (((__u32)client_port << 16) | vip_port));
	return h;
}

/* Per-CPU counters, index = enum l4_counter.  Every "packets" counter that
 * has a "bytes" twin is followed by it. */
enum l4_counter {
	L4_PKTS = 0,          /* every packet the program saw */
	L4_PASS,              /* not ours: normal forwarding */
	L4_FWD,               /* client -> VIP, rewritten to a back-end */
	L4_FWD_BYTES,
	L4_REV,               /* back-end -> client, rewritten to the VIP */
	L4_REV_BYTES,
	L4_CONN_NEW,          /* SYN without an entry: back-end from Maglev, entries added */
	L4_CONN_REOPENED,     /* SYN on a closing entry (client port reused): balanced afresh */
	L4_CONN_MISS,         /* non-SYN without an entry (evicted, expired): Maglev, entries added */
	L4_CONN_HIT,          /* client packet with an entry */
	L4_FIN,               /* FIN seen (either direction) */
	L4_RST,               /* RST seen (either direction) */
	L4_RST_NO_CONN,       /* client RST without an entry: forwarded by Maglev, nothing added */
	L4_NO_BACKEND,        /* VIP without back-ends (or a bad table): dropped */
	L4_VIP_NOT_TCP,       /* non-TCP to a VIP address: dropped */
	L4_VIP_MALFORMED,     /* to a VIP: truncated, fragment, IP options: dropped */
	L4_REV_NO_CONN,       /* from a back-end's service address, no entry: forwarded as is */
	L4_FIB_MISS,          /* rewritten, but no FIB next hop yet: kernel path */
	L4_FRAG_NEEDED,       /* response too big for the client link: kernel, unrewritten */
	L4_TTL_EXCEEDED,      /* TTL would expire: kernel path (ICMP) */
	L4_CONN_ADD_FAILED,   /* the connection table refused an entry (allocation) */
	L4_CONN_DONE,         /* last ACK after FIN both ways: both entries removed */
	L4__MAX,
};

#endif /* L4SWITCH_H */
