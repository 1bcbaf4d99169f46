// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Miresga back-end agent: splices the back-end's TCP sequence space onto the
 * one the switch started with the client (docs/design.md section 3, steps 4,
 * 5, 8).
 *
 * The switch answered the client's SYN itself with ISN s (a cookie).  The
 * front-end later opens the back-end connection with a SYN that carries the
 * client's ISN c as its seq and s in its ack field (ACK flag off): the "fused"
 * SYN.  The back-end picks its own ISN b.  From then on every byte the
 * back-end sends must appear to the client at the sequence number the switch
 * implied, so with d = b - s:
 *
 *   egress  (back-end -> client): seq -= d
 *   ingress (client -> back-end): ack += d, and each SACK block edge += d
 *                                 (SACK blocks name back-end bytes as the
 *                                 client numbers them)
 *
 * Client sequence numbers (ingress seq, egress ack, egress SACK blocks) are
 * never touched: the front-end replays c unchanged.
 *
 * Every packet the back-end sends on a connection in the map (its SYN-ACK
 * and everything after) leaves marked MIRESGA in its DSCP field (miresga.h,
 * "marks"): the switch takes a packet from a back-end's service address for
 * Miresga's only with that mark and only on that back-end's own port, so no
 * list of client addresses is needed, and the back-end's other traffic from
 * the same port (health checks, say) is plain forwarding.
 *
 * Why tc (clsact) and not XDP: the egress half has no XDP hook at all, and
 * both halves rewrite header fields covered by the TCP checksum.  On
 * transmit, TCP's skbs are CHECKSUM_PARTIAL (the check field holds the
 * pseudo-header sum, the NIC or skb_checksum_help() finishes it after the
 * qdisc); only skb-aware helpers (bpf_l4_csum_replace) update such a packet
 * correctly, see mg_skb_csum.h.  tc egress also runs before GSO
 * segmentation, so one rewrite of a TSO super-packet's seq covers all the
 * segments cut from it; and bpf_skb_store_bytes() unclones the header first,
 * so the copy TCP keeps for retransmission is never rewritten (a rewritten
 * retransmission queue would be translated twice).
 *
 * Programs return TC_ACT_UNSPEC: the agent never decides a packet's fate, it
 * only rewrites, and lower-priority filters on the same hook still run.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "miresga.h"
#include "mg_pkt.h"
#include "mg_tcp_opts.h"
#include "mg_skb_csum.h"
#include "agent.h"

#define CLOCK_MONOTONIC 1
#define EBUSY 16

/* ------------------------------------------------------------------- maps */

/*
 * A plain hash: when it is full a new connection is refused (its fused SYN
 * dropped and counted, MG_AG_MAP_FAIL; the front-end tries another back-end
 * or answers 503), never a live one's translation evicted.  An LRU map
 * evicted live entries once churn outran it (about 6,500 connections/s per
 * back-end at the default size and grace), and their next packets passed
 * untranslated.  Entries go when their connection is over (the sweeper);
 * max_entries is set by the loader.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_AGENT_CONNS_DEFAULT);
	__type(key, struct mg_agent_key);
	__type(value, struct mg_agent_conn);
} mg_agent_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_agent_config);
} mg_agent_config SEC(".maps");

/* Service ports (network order) whose connections may be Miresga's. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_AGENT_MAX_PORTS);
	__type(key, __be16);
	__type(value, __u8);
} mg_agent_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MG_AG__MAX);
	__type(key, __u32);
	__type(value, __u64);
} mg_agent_stats SEC(".maps");

/* ---------------------------------------------------------------- helpers */

/* Per-CPU, so a plain increment: tc programs and timer callbacks run with
 * bottom halves off and never interleave on one CPU. */
static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&mg_agent_stats, &idx);

	if (c)
		*c += 1;
}

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&mg_agent_stats, &idx);

	if (c)
		*c += n;
}

/* The parser sorts what it cannot parse: another protocol, or a later
 * fragment, is foreign; a header shorter than it claims is truncated. */
static __always_inline int count_parse_failure(int rc)
{
	count(rc == MG_PKT_IPV4_BAD || rc == MG_PKT_TCP_BAD ? MG_AG_TRUNCATED : MG_AG_FOREIGN);
	return TC_ACT_UNSPEC;
}

/*
 * Copy the options into the walk's buffer and walk them.  A header that
 * claims more options than the packet holds is reported as truncated.
 */
static __always_inline int load_opts(struct __sk_buff *skb, const struct mg_pkt *p,
				     struct mg_tcp_opts_walk *w)
{
	__u32 len = mg_tcp_opt_len(p);

	if (len > MG_TCP_OPTS_MAX)  /* cannot happen with doff <= 15; tells the verifier */
		len = MG_TCP_OPTS_MAX;
	mg_tcp_opts_init(w, len);
	if (len == 0)
		return MG_OPTS_OK;
	if (bpf_skb_load_bytes(skb, p->l4_off + sizeof(struct tcphdr), w->buf, len)) {
		w->o.status = MG_OPTS_TRUNCATED;
		return w->o.status;
	}
	return mg_tcp_opts_walk(w);
}

static __always_inline __u32 opt_be32(const __u8 *buf, __u32 off)
{
	return ((__u32)buf[off & (MG_TCP_OPTS_BUF - 1)] << 24) |
	       ((__u32)buf[(off + 1) & (MG_TCP_OPTS_BUF - 1)] << 16) |
	       ((__u32)buf[(off + 2) & (MG_TCP_OPTS_BUF - 1)] << 8) |
	       (__u32)buf[(off + 3) & (MG_TCP_OPTS_BUF - 1)];
}

static __always_inline int is_service_port(__be16 port)
{
	return bpf_map_lookup_elem(&mg_agent_ports, &port) != NULL;
}

static __always_inline struct mg_agent_config *config(void)
{
	__u32 zero = 0;
	struct mg_agent_config *cfg = bpf_map_lookup_elem(&mg_agent_config, &zero);

	return cfg && cfg->enabled ? cfg : NULL;
}

/* ----------------------------------------------------------------- aging */

/*
 * One sweeper timer for the whole map, not one timer per entry.
 *
 * A bpf_timer's memory is allocated by bpf_timer_init(), in the datapath
 * and without sleeping.  On the bench machine's kernel (6.18) that
 * allocation fails with -ENOMEM once the cache it draws from is empty: on a
 * back-end taking thousands of new connections per second, a per-entry timer
 * failed for all but the first few dozen entries (measured: 67 of 6,946 under
 * one-connection-per-request load), and an entry that cannot be aged cannot
 * be kept.  So entries carry only timestamps, and
 * one timer, armed lazily from the datapath (and again after every reload of
 * the programs, see mg_agent_config.generation), walks the map every sweep_ns
 * and deletes what is past its deadline.  Its single allocation is retried on
 * every fused SYN until it succeeds.
 *
 * The walk costs one visit per hash bucket (max_conns of them) per period:
 * about a millisecond for 65,536 at the default period of one second, off
 * the packet path (a softirq of its own).
 */
struct mg_agent_sweeper {
	struct bpf_timer timer;
	__u32 generation;       /* config generation whose program armed the timer */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_agent_sweeper);
} mg_agent_sweep SEC(".maps");

struct sweep_ctx {
	__u64 now;
	__u64 idle_ns;
	__u64 grace_ns;
};

/* Signed: the datapath may stamp an entry after the sweep read the clock. */
static __always_inline int past(__u64 now, __u64 t, __u64 span)
{
	return (__s64)(now - t) >= (__s64)span;
}

static long sweep_one(void *map, struct mg_agent_key *key, struct mg_agent_conn *conn,
		      struct sweep_ctx *ctx)
{
	__u32 why;

	if (conn->close_ns) {
		if (!past(ctx->now, conn->close_ns, ctx->grace_ns))
			return 0;
		why = MG_AG_CLEANUP_CLOSED;
	} else {
		if (!past(ctx->now, conn->last_seen_ns, ctx->idle_ns))
			return 0;
		why = MG_AG_CLEANUP_IDLE;
	}
	/* Deleting the element being visited is allowed for hash maps. */
	if (bpf_map_delete_elem(&mg_agent_conns, key) == 0)
		count(why);
	return 0;
}

static int sweep_fired(void *map, __u32 *key, struct mg_agent_sweeper *sw)
{
	struct mg_agent_config *cfg = config();
	struct sweep_ctx ctx;

	if (!cfg) {
		/* Disabled: stop; the next fused SYN after it is enabled re-arms. */
		sw->generation = 0;
		return 0;
	}
	ctx.now = bpf_ktime_get_ns();
	ctx.idle_ns = cfg->idle_timeout_ns;
	ctx.grace_ns = cfg->close_grace_ns;
	bpf_for_each_map_elem(&mg_agent_conns, sweep_one, &ctx, 0);
	count(MG_AG_SWEEPS);
	bpf_timer_start(&sw->timer, cfg->sweep_ns ? cfg->sweep_ns : 1000000000ull, 0);
	return 0;
}

/* Arm the sweeper if this program (this config generation) has not yet. */
static __always_inline void sweeper_ensure(const struct mg_agent_config *cfg)
{
	__u32 zero = 0;
	struct mg_agent_sweeper *sw = bpf_map_lookup_elem(&mg_agent_sweep, &zero);
	long rc;

	if (!sw || sw->generation == cfg->generation)
		return;
	rc = bpf_timer_init(&sw->timer, &mg_agent_sweep, CLOCK_MONOTONIC);
	/* -EBUSY: initialised by an earlier program or another CPU; the
	 * callback below replaces the old program's. */
	if ((rc && rc != -EBUSY) || bpf_timer_set_callback(&sw->timer, sweep_fired) ||
	    bpf_timer_start(&sw->timer, cfg->sweep_ns ? cfg->sweep_ns : 1000000000ull, 0)) {
		count(MG_AG_SWEEP_ARM_FAIL);
		return;
	}
	sw->generation = cfg->generation;
}

/* RST, or FINs both ways: keep rewriting for a grace period (retransmitted
 * FINs, the last ACK, a RST that crosses a FIN), then let the sweeper go. */
static __always_inline void note_close(struct mg_agent_conn *conn,
				       const struct mg_agent_config *cfg, __u64 now)
{
	int both_fins = (conn->flags & (MG_AGENT_FIN_IN | MG_AGENT_FIN_OUT)) ==
			(MG_AGENT_FIN_IN | MG_AGENT_FIN_OUT);

	if (conn->close_ns || !((conn->flags & MG_AGENT_RST) || both_fins))
		return;
	conn->close_ns = now;
	/* An entry whose SYN-ACK never came stays SYN_SEEN: d is unknown, and
	 * nothing may be translated with it during the grace period either. */
	if (conn->state == MG_AGENT_ESTABLISHED)
		conn->state = MG_AGENT_CLOSING;
	count(conn->flags & MG_AGENT_RST ? MG_AG_CLOSE_RST : MG_AG_CLOSE_FIN);
}

/*
 * Is the connection over, as the agent saw it: a RST or both FINs passed, or
 * no packet for the idle timeout?  `dead` asks the stricter question of the
 * sweeper: past the grace period too.
 */
static __always_inline int conn_over(const struct mg_agent_conn *conn,
				     const struct mg_agent_config *cfg, __u64 now)
{
	return conn->close_ns || past(now, conn->last_seen_ns, cfg->idle_timeout_ns);
}

static __always_inline int conn_dead(const struct mg_agent_conn *conn,
				     const struct mg_agent_config *cfg, __u64 now)
{
	if (conn->close_ns)
		return past(now, conn->close_ns, cfg->close_grace_ns);
	return past(now, conn->last_seen_ns, cfg->idle_timeout_ns);
}

/* Mark an egress packet Miresga's, in the IP header's DSCP (ECN kept); the
 * IP checksum is patched incrementally.  tc egress runs before GSO, so a
 * TSO super-packet is marked once and its segments inherit the header. */
static __always_inline void mark_miresga(struct __sk_buff *skb, const struct mg_pkt *p)
{
	__u8 tos = mg_tos_with_dscp(p->tos, MG_DSCP_MIRESGA);

	if (mg_set_tos(skb, p, tos) == 0)
		count(MG_AG_MARKED);
}

/* ---------------------------------------------------------- window scale */

/*
 * The client negotiated window scaling with the switch, which offered W; the
 * back-end negotiated it with the front-end's replay of the client's SYN and
 * answered with its own Wb.  The client reads every window field from the
 * back-end as field << W, the back-end wrote it as window >> Wb, so:
 *
 *   client offered no scaling:  nobody scales; nothing to do.
 *   back-end answered Wb:       egress field' = field << (Wb - W).  Widening
 *                               (Wb > W) is capped at 65535, narrowing
 *                               (Wb < W) rounds down: both advertise at most
 *                               what the back-end can take, never more.  The
 *                               SYN-ACK's option is rewritten to W so the
 *                               front-end sees the scale the windows now have.
 *   back-end answered none:     the client scales by W, the back-end by 0:
 *                               egress field' = field >> W; and the back-end
 *                               reads the client's windows unscaled while the
 *                               client writes them >> Wc: ingress
 *                               field' = min(field << Wc, 65535).
 *
 * Rewriting rather than refusing at load time: Linux picks Wb per socket
 * (from tcp_rmem, rmem_max and SO_RCVBUF), so no load-time check can promise
 * that every connection's Wb equals W.  The SYN-ACK's own window field is
 * never scaled (RFC 7323) and is left alone.
 */
static __always_inline void window_rescale(struct __sk_buff *skb, const struct mg_pkt *p, int shift)
{
	__u32 w = p->window, nw;

	if (shift == 0)
		return;
	if (shift > 0) {
		nw = w << (shift & 15);
		if (nw > 0xffff) {
			nw = 0xffff;
			count(MG_AG_WINDOW_CAPPED);
		}
	} else {
		nw = w >> ((-shift) & 15);
	}
	if (nw != w && mg_tcp_store16(skb, p->l4_off, 14, w, nw) == 0)
		count(MG_AG_WINDOW_FIX);
}

/* --------------------------------------------------------------- ingress */

/*
 * A SYN to a service port: fused (ack field = s) or somebody else's.
 *
 * A SYN never takes the entry of a connection that is still going:
 *   plain SYN (ack field 0)     removes the entry only if its connection is
 *                               dead (what the sweeper would remove);
 *                               otherwise it passes untouched and the kernel
 *                               decides: a live socket answers a challenge
 *                               ACK; a TIME_WAIT socket may accept it, and
 *                               then its SYN-ACK answers an ISN that is not
 *                               the entry's, which removes the entry
 *                               (egress_synack)
 *   fused SYN, same (seq, ack)  the front-end's retransmission: kept
 *   fused SYN, new (seq, ack)   replaces the entry only if its connection
 *                               is over: a RST or both FINs passed, or it
 *                               has been idle for the idle timeout.  Else it
 *                               is refused: the entry stays, the SYN goes to
 *                               the kernel (ack field zeroed), whose live
 *                               socket answers with a challenge ACK that is
 *                               translated as usual.
 * Why this is sound for the front-end: it re-opens a 4-tuple only after it
 * has ended the back-end connection that held it (a RST, or its FIN and the
 * back-end's, when it re-routes, drains or resets a TIME_WAIT), and all of
 * those pass this agent; if that RST was lost, its SYN is refused, the
 * challenge ACK reaches it, and it resets and retries.  A spoofed SYN, plain
 * or fused (the switch drops fused SYNs from anywhere but a front-end port),
 * cannot take a live connection's entry.
 */
static __always_inline int ingress_syn(struct __sk_buff *skb, const struct mg_pkt *p,
				       const struct mg_agent_key *key,
				       const struct mg_agent_config *cfg)
{
	__u32 seq = p->seq;
	__u32 ack = p->ack_seq;
	struct mg_tcp_opts_walk w = {};
	struct mg_agent_conn fresh = {};
	struct mg_agent_conn *conn;
	__u64 now = bpf_ktime_get_ns();
	__u32 tsecr = 0;
	int reuse, bad;

	conn = bpf_map_lookup_elem(&mg_agent_conns, key);
	if (ack == 0) {
		count(MG_AG_SYN_PLAIN);
		if (!conn)
			return TC_ACT_UNSPEC;
		if (!conn_dead(conn, cfg, now))
			count(MG_AG_SYN_PLAIN_KEPT);
		else if (bpf_map_delete_elem(&mg_agent_conns, key) == 0)
			count(MG_AG_STALE_REMOVED); /* a dead entry must not translate it */
		return TC_ACT_UNSPEC;
	}
	/* Malformed options: the kernel keeps what it parsed before the
	 * error, and so does the walk. */
	bad = load_opts(skb, p, &w) != MG_OPTS_OK;
	if (w.o.ts_off != MG_OPT_ABSENT)
		tsecr = opt_be32(w.buf, w.o.ts_off + 4);
	if (conn && conn->switch_isn == ack && conn->client_isn == seq) {
		/* The front-end retransmitted its SYN: same connection.  If
		 * the handshake had not completed, a RST before it (the
		 * front-end ending the back-end's TIME_WAIT of this 4-tuple)
		 * closed nothing: the attempt goes on. */
		count(MG_AG_SYN_RETRANS);
		conn->last_seen_ns = now;
		if (conn->state == MG_AGENT_SYN_SEEN) {
			conn->flags &= ~(MG_AGENT_RST | MG_AGENT_FIN_IN | MG_AGENT_FIN_OUT);
			conn->close_ns = 0;
		}
		goto zero_ack;
	}
	if (conn && !conn_over(conn, cfg, now)) {
		count(MG_AG_SYN_LIVE_KEPT);
		goto zero_ack;
	}
	reuse = conn != NULL;
	if (bad)
		count(MG_AG_BAD_OPTIONS);

	fresh.switch_isn = ack;
	fresh.client_isn = seq;
	fresh.state = MG_AGENT_SYN_SEEN;
	fresh.last_seen_ns = now;
	fresh.client_wscale = MG_COOKIE_NO_WSCALE;
	fresh.backend_wscale = MG_COOKIE_NO_WSCALE;
	if (w.o.wscale_off != MG_OPT_ABSENT)
		fresh.client_wscale = w.o.wscale > 14 ? 14 : w.o.wscale;  /* RFC 7323 2.3 */
	if (w.o.ts_off != MG_OPT_ABSENT) {
		/* The fused SYN's TSecr carries the server clock the client has
		 * seen (the switch's SYN-ACK TSval, or later the translated one):
		 * the back-end's timestamps are shifted onto it. */
		fresh.flags |= MG_AGENT_TS;
		fresh.ts_base = tsecr;
	}

	/* Re-use (the front-end reset the old back-end connection and opens a
	 * new one for the same client endpoint): a whole new entry. */
	if (bpf_map_update_elem(&mg_agent_conns, key, &fresh, BPF_ANY)) {
		/* Full: refused.  Passed on, the SYN would open a back-end socket
		 * whose packets nothing translates. */
		count(MG_AG_MAP_FAIL);
		return TC_ACT_SHOT;
	}
	sweeper_ensure(cfg);
	count(reuse ? MG_AG_CONN_REUSE : MG_AG_CONN_NEW);

zero_ack:
	/* The kernel ignores the ack field of a SYN without ACK, and a SYN's
	 * TSecr, but non-zero ones are protocol oddities we should not hand to
	 * the stack. */
	mg_tcp_store32(skb, p->l4_off, 8, ack, 0);
	if (w.o.ts_off != MG_OPT_ABSENT && tsecr)
		mg_tcp_store32(skb, p->l4_off, 20 + w.o.ts_off + 4, tsecr, 0);
	return TC_ACT_UNSPEC;
}

/* Translate the TSval (egress, -ts_delta) or TSecr (ingress, +ts_delta) of a
 * packet whose options have been walked. */
static __always_inline void translate_ts(struct __sk_buff *skb, const struct mg_pkt *p,
					 const struct mg_tcp_opts_walk *w,
					 const struct mg_agent_conn *conn, int egress)
{
	__u32 off, v;

	if (!(conn->flags & MG_AGENT_TS) || w->o.ts_off == MG_OPT_ABSENT)
		return;
	off = w->o.ts_off + (egress ? 0 : 4);
	v = opt_be32(w->buf, off);
	if (mg_tcp_store32(skb, p->l4_off, 20 + off, v,
			   egress ? v - conn->ts_delta : v + conn->ts_delta) == 0)
		count(MG_AG_TS_REWRITE);
}

/* Translate each SACK block edge by d: bounded by the 4 blocks that fit;
 * and the TSecr.  One walk of the options for both. */
static __always_inline void ingress_sack(struct __sk_buff *skb, const struct mg_pkt *p,
					 const struct mg_agent_conn *conn)
{
	struct mg_tcp_opts_walk w = {};
	__u32 done = 0;
	int i;

	if (load_opts(skb, p, &w) != MG_OPTS_OK) {
		count(MG_AG_BAD_OPTIONS);
		return;
	}
	translate_ts(skb, p, &w, conn, 0);
	if (w.o.sack_off == MG_OPT_ABSENT)
		return;
	for (i = 0; i < 4; i++) {
		__u32 off = w.o.sack_off + i * 8;   /* within the options */
		__u32 left, right;

		if (i >= w.o.sack_blocks)
			break;
		left = opt_be32(w.buf, off);
		right = opt_be32(w.buf, off + 4);
		if (mg_tcp_store32(skb, p->l4_off, 20 + off, left, left + conn->delta) ||
		    mg_tcp_store32(skb, p->l4_off, 20 + off + 4, right, right + conn->delta))
			break;
		done++;
	}
	if (done) {
		count(MG_AG_SACK_REWRITE);
		count_n(MG_AG_SACK_BLOCKS, done);
	}
}

SEC("tc")
int agent_ingress(struct __sk_buff *skb)
{
	struct mg_agent_config *cfg;
	struct mg_agent_conn *conn;
	struct mg_agent_key key = {};
	struct mg_pkt p;
	__u32 ack;
	int rc;

	count(MG_AG_IN_PKTS);
	cfg = config();
	if (!cfg) {
		count(MG_AG_NO_CONFIG);
		return TC_ACT_UNSPEC;
	}
	rc = mg_parse_copy(skb, &p);
	if (rc != MG_PKT_TCP)
		return count_parse_failure(rc);
	if (!is_service_port(p.dport)) {
		count(MG_AG_FOREIGN);
		return TC_ACT_UNSPEC;
	}
	key.client_ip_be = p.saddr;
	key.client_port_be = p.sport;
	key.local_port_be = p.dport;

	if (p.tcp_flags & MG_TCP_SYN) {
		if (p.tcp_flags & MG_TCP_ACK) {
			/* A SYN-ACK *to* our service port: we are not the server. */
			count(MG_AG_FOREIGN);
			return TC_ACT_UNSPEC;
		}
		return ingress_syn(skb, &p, &key, cfg);
	}

	conn = bpf_map_lookup_elem(&mg_agent_conns, &key);
	if (!conn) {
		count(MG_AG_MISS_IN);
		return TC_ACT_UNSPEC;
	}
	if (conn->state == MG_AGENT_SYN_SEEN) {
		/* d is not known before the SYN-ACK; nothing can be translated. */
		count(MG_AG_NOT_ESTABLISHED);
		if (p.tcp_flags & MG_TCP_RST) {
			conn->flags |= MG_AGENT_RST;
			note_close(conn, cfg, bpf_ktime_get_ns());
		}
		return TC_ACT_UNSPEC;
	}
	conn->last_seen_ns = bpf_ktime_get_ns();

	if (p.tcp_flags & MG_TCP_ACK) {
		ack = p.ack_seq;
		if (mg_tcp_store32(skb, p.l4_off, 8, ack, ack + conn->delta) == 0)
			count(MG_AG_REWRITE_IN);
	}
	if (mg_tcp_opt_len(&p))
		ingress_sack(skb, &p, conn);
	if (conn->ingress_shift)
		window_rescale(skb, &p, conn->ingress_shift);

	if (p.tcp_flags & MG_TCP_FIN)
		conn->flags |= MG_AGENT_FIN_IN;
	if (p.tcp_flags & MG_TCP_RST)
		conn->flags |= MG_AGENT_RST;
	note_close(conn, cfg, conn->last_seen_ns);
	return TC_ACT_UNSPEC;
}

/* ---------------------------------------------------------------- egress */

/* The back-end's SYN-ACK: d = b - s from now on; the SYN-ACK leaves as seq s. */
static __always_inline int egress_synack(struct __sk_buff *skb, const struct mg_pkt *p,
					 const struct mg_agent_key *key, struct mg_agent_conn *conn,
					 const struct mg_agent_config *cfg)
{
	__u32 b = p->seq;
	struct mg_tcp_opts_walk walk = {};
	struct mg_tcp_opts *opts = &walk.o;
	int w = cfg->wscale;

	if (p->ack_seq != conn->client_isn + 1) {
		/* It answers another SYN than the fused one: the kernel took a
		 * new connection on this 4-tuple (a plain SYN to a TIME_WAIT
		 * socket), so the entry's connection is over and the new one is
		 * not Miresga's.  Untouched, unmarked; the entry goes. */
		count(MG_AG_SYNACK_FOREIGN);
		if (bpf_map_delete_elem(&mg_agent_conns, key) == 0)
			count(MG_AG_STALE_REMOVED);
		return TC_ACT_UNSPEC;
	}

	int bad = load_opts(skb, p, &walk) != MG_OPTS_OK;

	/* Every SYN-ACK redefines d: a retransmission has the same b, and a
	 * SYN-ACK always answers the latest SYN, whose s the entry holds. */
	conn->backend_isn = b;
	conn->delta = b - conn->switch_isn;
	if (conn->flags & MG_AGENT_TS) {
		if (bad || opts->ts_off == MG_OPT_ABSENT) {
			/* The back-end declined timestamps: nothing to translate. */
			conn->flags &= ~MG_AGENT_TS;
		} else {
			__u32 tsval = opt_be32(walk.buf, opts->ts_off);

			/* Only the first SYN-ACK sets the clock offset: a resent
			 * one carries a later TSval, and the client may have seen
			 * translated timestamps of this connection already. */
			if (conn->state == MG_AGENT_SYN_SEEN)
				conn->ts_delta = tsval - conn->ts_base;
			if (mg_tcp_store32(skb, p->l4_off, 20 + opts->ts_off, tsval,
					   tsval - conn->ts_delta) == 0)
				count(MG_AG_TS_REWRITE);
		}
	}
	if (conn->state == MG_AGENT_SYN_SEEN)
		conn->state = conn->close_ns ? MG_AGENT_CLOSING : MG_AGENT_ESTABLISHED;
	conn->last_seen_ns = bpf_ktime_get_ns();
	conn->backend_wscale = MG_COOKIE_NO_WSCALE;
	conn->egress_shift = 0;
	conn->ingress_shift = 0;

	if (bad) {
		/* Not from a Linux back-end; assume Wb == W rather than guess. */
		count(MG_AG_BAD_OPTIONS);
	} else if (opts->wscale_off != MG_OPT_ABSENT) {
		conn->backend_wscale = opts->wscale > 14 ? 14 : opts->wscale;
		if (conn->client_wscale != MG_COOKIE_NO_WSCALE) {
			conn->egress_shift = (int)conn->backend_wscale - w;
			if (opts->wscale != w &&
			    mg_tcp_store8(skb, p->l4_off, 20 + opts->wscale_off, opts->wscale, w) == 0)
				count(MG_AG_WSCALE_OPT_FIX);
		}
	} else if (conn->client_wscale != MG_COOKIE_NO_WSCALE) {
		conn->egress_shift = -w;
		conn->ingress_shift = conn->client_wscale;
	}

	if (mg_tcp_store32(skb, p->l4_off, 4, b, conn->switch_isn) == 0)
		count(MG_AG_SYNACK);
	mark_miresga(skb, p);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int agent_egress(struct __sk_buff *skb)
{
	struct mg_agent_config *cfg;
	struct mg_agent_conn *conn;
	struct mg_agent_key key = {};
	struct mg_pkt p;
	__u32 seq;
	int rc;

	count(MG_AG_OUT_PKTS);
	cfg = config();
	if (!cfg) {
		count(MG_AG_NO_CONFIG);
		return TC_ACT_UNSPEC;
	}
	rc = mg_parse_copy(skb, &p);
	if (rc != MG_PKT_TCP)
		return count_parse_failure(rc);
	if (!is_service_port(p.sport)) {
		count(MG_AG_FOREIGN);
		return TC_ACT_UNSPEC;
	}
	key.client_ip_be = p.daddr;
	key.client_port_be = p.dport;
	key.local_port_be = p.sport;

	conn = bpf_map_lookup_elem(&mg_agent_conns, &key);
	if (!conn) {
		count(MG_AG_MISS_OUT);
		return TC_ACT_UNSPEC;
	}
	if (p.tcp_flags & MG_TCP_SYN) {
		if (p.tcp_flags & MG_TCP_ACK)
			return egress_synack(skb, &p, &key, conn, cfg);
		count(MG_AG_FOREIGN);  /* a SYN *from* the service port */
		return TC_ACT_UNSPEC;
	}
	/* Everything else of the connection is Miresga's, translated or not
	 * (a RST or TIME_WAIT ACK answering the fused SYN goes to the front-end
	 * too). */
	mark_miresga(skb, &p);
	if (conn->state == MG_AGENT_SYN_SEEN) {
		/* E.g. a RST answering the fused SYN (no listener, backlog
		 * full): it carries no back-end sequence number to translate. */
		count(MG_AG_NOT_ESTABLISHED);
		if (p.tcp_flags & MG_TCP_RST) {
			conn->flags |= MG_AGENT_RST;
			note_close(conn, cfg, bpf_ktime_get_ns());
		}
		return TC_ACT_UNSPEC;
	}
	conn->last_seen_ns = bpf_ktime_get_ns();

	seq = p.seq;
	if (mg_tcp_store32(skb, p.l4_off, 4, seq, seq - conn->delta) == 0)
		count(MG_AG_REWRITE_OUT);
	if (conn->egress_shift)
		window_rescale(skb, &p, conn->egress_shift);
	if ((conn->flags & MG_AGENT_TS) && mg_tcp_opt_len(&p)) {
		/* Once per skb, and egress skbs are TSO/GSO super-packets: the
		 * segments cut from one share its timestamp. */
		struct mg_tcp_opts_walk w = {};

		if (load_opts(skb, &p, &w) == MG_OPTS_OK)
			translate_ts(skb, &p, &w, conn, 1);
		else
			count(MG_AG_BAD_OPTIONS);
	}

	if (p.tcp_flags & MG_TCP_FIN)
		conn->flags |= MG_AGENT_FIN_OUT;
	if (p.tcp_flags & MG_TCP_RST)
		conn->flags |= MG_AGENT_RST;
	note_close(conn, cfg, conn->last_seen_ns);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
