// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * l4switch: a Layer-4 load balancer in the switch, the baseline Miresga is
 * compared against (docs/design.md section 1.3), in the style of SilkRoad and
 * Katran.  A tc (clsact ingress) program on every port of the switch.
 *
 * It balances connections, not requests: the back-end of a connection is
 * chosen from its first packet (the client's address and port), and every
 * request on that connection goes to the same back-end.  It never sees a URL,
 * so it cannot route by path or Host; that is the point of the comparison.
 *
 *   client -> VIP
 *     entry in the connection table    rewrite VIP -> that back-end, redirect
 *     no entry (or a SYN on a closing  back-end = Maglev[VIP][hash(4-tuple) % M];
 *     entry: the client port reused)   add forward and reverse entries; rewrite
 *     RST without an entry             rewrite to the Maglev back-end, add nothing
 *     FIN / RST                        recorded in both entries (closing state)
 *     last ACK (pure ACK after FIN     forwarded, then both entries removed
 *     both ways), either direction
 *   back-end -> client, reverse entry  rewrite back-end -> VIP, FIB next hop,
 *                                      redirect: responses come back through
 *                                      the switch, never through a front-end
 *   anything else                      normal forwarding (TC_ACT_OK)
 *
 * The connection table is what keeps an established connection on its
 * back-end when the pool changes: the control plane swaps the Maglev table
 * (new connections follow the new pool at once) and leaves entries alone.  A
 * connection whose entry is lost (evicted, expired) is balanced again by
 * Maglev, which gives the same back-end unless the pool changed since: Maglev
 * moves few slots between back-ends that stay (see switchhost/pipelines/maglev.py).
 *
 * Parsing, the entry that sorts out packets to a VIP, header rewrites with
 * incremental checksums, and forwarding (TTL, MACs, FIB, redirect) are the
 * Miresga switch's own helpers (mg_pkt.h, mg_vip_dispatch.h, mg_fwd.h), so
 * both switch programs refuse and move packets the same way.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "l4switch.h"
#include "mg_fwd.h"
#include "mg_pkt.h"
#include "mg_vip_dispatch.h"
#include "l4switch_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void count(__u32 idx, __u64 n)
{
	mg_count(&counters, idx, n);
}

_Static_assert(L4_FWD_BYTES == L4_FWD + 1 && L4_REV_BYTES == L4_REV + 1,
	       "each packet counter is followed by its byte counter");

static __always_inline int pass(__u32 why)
{
	count(why, 1);
	return TC_ACT_OK;
}

static __always_inline int drop(__u32 why)
{
	count(why, 1);
	return TC_ACT_SHOT;
}

static __always_inline int is_pure_ack(const struct mg_pkt *p)
{
	return (p->tcp_flags & (MG_TCP_ACK | MG_TCP_SYN | MG_TCP_FIN | MG_TCP_RST)) ==
		       MG_TCP_ACK &&
	       p->payload_len == 0;
}

static __always_inline void touch(struct l4_conn *c, const struct l4_config *cfg)
{
	/* Write only when the second changes: the entry's cache line stays
	 * clean on the fast path. */
	if (c->last_seen_s != cfg->now_s)
		c->last_seen_s = cfg->now_s;
}

/* The back-end Maglev gives a new connection of VIP `vip_idx`. */
static __always_inline __u32 maglev_pick(const struct l4_config *cfg, const struct mg_pkt *p,
					 __u32 vip_idx)
{
	__u32 m = cfg->maglev_size;

	if (m == 0)
		return L4_BACKEND_NONE;
	__u32 slot = l4_flow_hash(cfg->hash_seed, p->saddr, p->sport, p->daddr, p->dport) % m;
	__u32 key = ((cfg->maglev_gen & 1) * cfg->vip_capacity + vip_idx) * m + slot;
	const __u32 *b = bpf_map_lookup_elem(&maglev_table, &key);

	return b ? *b : L4_BACKEND_NONE;
}

/* Record FIN/RST in both entries of a connection.  Atomic OR: the two
 * directions run on different CPUs and each sets its own bit. */
static __always_inline void mark(const struct l4_conn_key *fwd, const struct l4_conn_key *rev,
				 __u8 tcp_flags, __u32 fin_bit)
{
	__u32 bits = 0;

	if (tcp_flags & MG_TCP_RST) {
		bits |= L4_CONN_RST;
		count(L4_RST, 1);
	}
	if (tcp_flags & MG_TCP_FIN) {
		bits |= fin_bit;
		count(L4_FIN, 1);
	}
	if (!bits)
		return;
	struct l4_conn *c = bpf_map_lookup_elem(&conn_table, fwd);
	if (c)
		__sync_fetch_and_or(&c->flags, bits);
	c = bpf_map_lookup_elem(&conn_table, rev);
	if (c)
		__sync_fetch_and_or(&c->flags, bits);
}

/* Remove both entries of a connection that is over.  Map values are not
 * touched after this. */
static __always_inline void conn_done(const struct l4_conn_key *fwd, const struct l4_conn_key *rev)
{
	bpf_map_delete_elem(&conn_table, fwd);
	bpf_map_delete_elem(&conn_table, rev);
	count(L4_CONN_DONE, 1);
}

/* ---------------------------------------------------------- client -> VIP */

static __always_inline int client_packet(struct __sk_buff *skb, const struct mg_pkt *p,
					 const struct l4_config *cfg, __u32 vip_idx)
{
	__u8 flags = p->tcp_flags;
	int opening = (flags & (MG_TCP_SYN | MG_TCP_ACK | MG_TCP_RST)) == MG_TCP_SYN;
	struct l4_conn_key fwd = {
		.client_ip_be = p->saddr,
		.peer_ip_be = p->daddr,
		.client_port_be = p->sport,
		.peer_port_be = p->dport,
	};
	const struct mg_backend *be;
	__u32 bidx;
	int last_ack = 0;

	/* Before any state changes: a packet about to expire creates none. */
	if (p->ttl <= 1)
		return pass(L4_TTL_EXCEEDED);
	struct l4_conn *c = bpf_map_lookup_elem(&conn_table, &fwd);
	if (c && !(opening && l4_conn_closing(c->flags))) {
		/* Established (or opening: a retransmitted SYN keeps its
		 * back-end).  The entry wins over the Maglev table. */
		count(L4_CONN_HIT, 1);
		touch(c, cfg);
		bidx = c->idx;
		/* A pure ACK after FIN both ways acknowledges the last FIN: the
		 * connection is over once it is delivered. */
		last_ack = is_pure_ack(p) && l4_conn_closing(c->flags);
		be = bpf_map_lookup_elem(&backend_table, &bidx);
		if (!be || !be->ifindex)
			return drop(L4_NO_BACKEND);
	} else {
		bidx = maglev_pick(cfg, p, vip_idx);
		if (bidx == L4_BACKEND_NONE)
			return drop(L4_NO_BACKEND);
		be = bpf_map_lookup_elem(&backend_table, &bidx);
		if (!be || !be->ifindex)
			return drop(L4_NO_BACKEND);
		if (!c && (flags & MG_TCP_RST)) {
			/* A RST for a connection we do not know: let the
			 * back-end Maglev names see it, but remember nothing. */
			count(L4_RST_NO_CONN, 1);
		} else {
			struct l4_conn_key rev = {
				.client_ip_be = p->saddr,
				.peer_ip_be = be->ip_be,
				.client_port_be = p->sport,
				.peer_port_be = be->port_be,
			};
			struct l4_conn fv = {.idx = bidx, .last_seen_s = cfg->now_s};
			struct l4_conn rv = {.idx = vip_idx, .flags = L4_CONN_REVERSE,
					     .last_seen_s = cfg->now_s};
			count(c ? L4_CONN_REOPENED : opening ? L4_CONN_NEW : L4_CONN_MISS, 1);
			if (bpf_map_update_elem(&conn_table, &fwd, &fv, BPF_ANY) ||
			    bpf_map_update_elem(&conn_table, &rev, &rv, BPF_ANY))
				count(L4_CONN_ADD_FAILED, 1);
		}
	}

	struct l4_conn_key rev = {
		.client_ip_be = p->saddr,
		.peer_ip_be = be->ip_be,
		.client_port_be = p->sport,
		.peer_port_be = be->port_be,
	};
	if (flags & (MG_TCP_FIN | MG_TCP_RST))
		mark(&fwd, &rev, flags, L4_CONN_FIN_CLIENT);

	if (mg_set_ipv4_addr(skb, MG_IP_DADDR_OFF, p->daddr, be->ip_be) ||
	    mg_set_tcp_port(skb, MG_TCP_DPORT_OFF, p->dport, be->port_be))
		return TC_ACT_SHOT; /* only on allocation failure */
	int verdict = mg_l3_redirect(skb, p, be->mac, be->src_mac, be->ifindex);
	if (verdict != TC_ACT_SHOT) {
		count(L4_FWD, 1);
		count(L4_FWD_BYTES, skb->len);
	}
	if (last_ack)
		conn_done(&fwd, &rev);
	return verdict;
}

/* ------------------------------------------------------- back-end -> client */

static __always_inline int backend_packet(struct __sk_buff *skb, const struct mg_pkt *p,
					  const struct l4_config *cfg)
{
	struct l4_conn_key rev = {
		.client_ip_be = p->daddr,
		.peer_ip_be = p->saddr,
		.client_port_be = p->dport,
		.peer_port_be = p->sport,
	};
	struct l4_conn *c = bpf_map_lookup_elem(&conn_table, &rev);

	/* No entry: the back-end talks to someone directly (a health check from
	 * the switch, the bench's own probes), not through the VIP. */
	if (!c || !(c->flags & L4_CONN_REVERSE))
		return pass(L4_REV_NO_CONN);
	__u32 vidx = c->idx;
	const struct mg_vip_key *vip = bpf_map_lookup_elem(&vip_by_idx, &vidx);
	if (!vip || !vip->ip_be)
		return pass(L4_REV_NO_CONN);
	if (p->ttl <= 1)
		return pass(L4_TTL_EXCEEDED); /* ICMP goes to the back-end */

	struct bpf_fib_lookup fib;
	long rc = mg_fib_next_hop(skb, p, vip->ip_be, vip->port_be, &fib);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return pass(L4_FRAG_NEEDED);

	touch(c, cfg);
	int last_ack = is_pure_ack(p) && l4_conn_closing(c->flags);
	struct l4_conn_key fwd = {
		.client_ip_be = p->daddr,
		.peer_ip_be = vip->ip_be,
		.client_port_be = p->dport,
		.peer_port_be = vip->port_be,
	};
	if (p->tcp_flags & (MG_TCP_FIN | MG_TCP_RST))
		mark(&fwd, &rev, p->tcp_flags, L4_CONN_FIN_BACKEND);
	if (mg_set_ipv4_addr(skb, MG_IP_SADDR_OFF, p->saddr, vip->ip_be) ||
	    mg_set_tcp_port(skb, MG_TCP_SPORT_OFF, p->sport, vip->port_be))
		return TC_ACT_SHOT;
	int verdict;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		/* No neighbour yet, say: the kernel forwards the rewritten
		 * packet and resolves the next hop for the ones after it. */
		count(L4_REV, 1);
		count(L4_REV_BYTES, skb->len);
		verdict = pass(L4_FIB_MISS);
	} else {
		verdict = mg_l3_redirect(skb, p, fib.dmac, fib.smac, fib.ifindex);
		if (verdict != TC_ACT_SHOT) {
			count(L4_REV, 1);
			count(L4_REV_BYTES, skb->len);
		}
	}
	if (last_ack)
		conn_done(&fwd, &rev);
	return verdict;
}

/* ------------------------------------------------------------- pipeline */

SEC("tc")
int l4switch(struct __sk_buff *skb)
{
	const struct mg_vip_counters vip_counters = {
		.pass = L4_PASS,
		.vip_malformed = L4_VIP_MALFORMED,
		.vip_not_tcp = L4_VIP_NOT_TCP,
	};
	const __u32 zero = 0;
	const struct mg_vip *vip = NULL;
	struct mg_pkt p = {};
	int r, verdict;

	count(L4_PKTS, 1);
	const struct l4_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return pass(L4_PASS);

	switch (mg_vip_dispatch(skb, &p, &counters, vip_counters, &r, &vip, &verdict)) {
	case MG_VD_DONE:
		return verdict;
	case MG_VD_VIP:
		return client_packet(skb, &p, cfg, vip->vip_idx);
	case MG_VD_NOT_VIP:
		break;
	}
	if (r != MG_PKT_TCP)
		return pass(L4_PASS);

	/* From a back-end's service address?  Then maybe a balanced connection. */
	struct mg_backend_key bk = {.ip_be = p.saddr, .port_be = p.sport};
	if (bpf_map_lookup_elem(&backend_addrs, &bk))
		return backend_packet(skb, &p, cfg);
	return pass(L4_PASS);
}
