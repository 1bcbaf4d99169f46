// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Miresga switch pipeline, as a tc (clsact ingress) program on every
 * port of the switch.
 *
 * It is written as the executable model of a Tofino ingress pipeline: every
 * table is a map looked up by exact match, each packet makes one pass
 * through a fixed sequence of lookups, and there are no loops over state.
 * The only loop walks the 40 option bytes of a SYN, as a parser's state
 * machine does.  What a P4 program keeps in registers (the seen filter, the
 * data-plane table) are array maps written with atomics.
 *
 * Branches (docs/design.md section 3, steps 1, 2 and 7; the hand-off's marks,
 * miresga.h "marks"):
 *
 *   client -> VIP
 *     SYN                         answer in place: SYN-ACK from the VIP,
 *                                 seq = keyed cookie, bounced out the
 *                                 ingress port; nothing is stored
 *     pure ACK, entry             rewrite VIP -> back-end, DSCP cleared,
 *                                 redirect to its port
 *     payload/FIN/RST, entry      to the front-end (it parses every request)
 *     no entry                    to the front-end if the connection is in
 *                                 the seen filter or carries a valid cookie
 *                                 (seq - 1 = c, ack - 1 = s); else dropped
 *     every packet to a front-end carries DSCP ADMIT if it has ACK, no
 *                                 SYN/RST and a valid cookie, else KNOWN;
 *                                 which front-end: "front-end selection"
 *   back-end -> client (from a back-end's service address, marked MIRESGA
 *   by its agent, on that back-end's own port; the mark is cleared)
 *     entry for this back-end,
 *     not SYN/FIN/RST             rewrite back-end -> VIP, route to the client
 *     otherwise                   to the front-end
 *   from a front-end port
 *     INSTALL mark                write a data-plane entry (client IP, port)
 *                                 -> the destination's back-end, VIP index
 *                                 from the IP ID; forwarded, mark cleared
 *     REMOVE mark                 clear the slot holding exactly that key;
 *                                 forwarded, mark cleared
 *     REMOVE_CTL mark             the same, then dropped (a control packet)
 *   fused SYN (SYN, no ACK, ack field != 0) to a back-end's service
 *   address from any other port   dropped
 *   anything else                 normal forwarding (the kernel's,
 *                                 TC_ACT_OK), any Miresga mark cleared
 *
 * "Entry" is the exact-match flow table's (written by the control plane in
 * hand-off modes `async` and `confirmed`) or, if that table has none for the
 * key, the data-plane table's (written by INSTALL marks in mode `dataplane`).
 * The exact-match table goes first because the control plane is the one
 * writer it has: an entry there is the control plane's decision, and in
 * `dataplane` mode, where the channel only deletes, it has none.
 *
 * No list of clients.  A packet is Miresga's reply because its back-end's
 * agent marked it and it came in on that back-end's port, not because of
 * where it is going: a client at any address is served, and a back-end's
 * other traffic (health checks, the bench's probes) is plain forwarding.
 *
 * Why a seen filter.  A cookie can only be checked on a client's first
 * packets: the check needs the client ISN, which is seq - 1 only until the
 * client sends data, and s = ack - 1 only until the server does.  Later
 * packets of a connection that has no flow entry (not offloaded yet, refused
 * for a full table, kept on the front-end by a rule) must still reach the
 * front-end, while forged ones must not.  The switch therefore remembers the
 * connections it has validated in a Bloom filter (SmartCookie keeps a
 * similar allow-list in registers), refreshed by every packet of the
 * connection and rotated by the control plane: a connection is remembered
 * for at least one filter period after its last client packet.  The filter
 * is a first-level filter, not proof: a packet it admits is marked KNOWN,
 * and the front-end creates flow state only from an ADMIT packet.
 *
 * The verdict of a redirect also lands in skb->cb[0] (egress ifindex), the
 * model of a Tofino's bridged metadata; BPF_PROG_TEST_RUN returns it to the
 * packet tests.
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
#include "mg_fwd.h"
#include "mg_pkt.h"
#include "mg_vip_dispatch.h"
#include "switch_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ------------------------------------------------------------- counters */

static __always_inline void count(__u32 idx, __u64 n)
{
	mg_count(&counters, idx, n);
}

/* route_out() counts bytes in the counter after the packet counter. */
_Static_assert(MG_SW_TO_FRONTEND_BYTES == MG_SW_TO_FRONTEND + 1 &&
		       MG_SW_OFFLOAD_FWD_BYTES == MG_SW_OFFLOAD_FWD + 1 &&
		       MG_SW_OFFLOAD_REV_BYTES == MG_SW_OFFLOAD_REV + 1 &&
		       MG_SW_REV_TO_FRONTEND_BYTES == MG_SW_REV_TO_FRONTEND + 1,
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

/* --------------------------------------------------------------- hashing */

/* Which front-end serves a client.  Only (client IP, client port), so both
 * directions of a connection, keyed from either end, pick the same one.
 * Arguments are network-order values, hashed as the raw words. */
static __always_inline __u32 client_hash(__be32 ip, __be16 port)
{
	return mg_mix32(ip ^ mg_mix32((__u32)port));
}

/* --------------------------------------------------------- seen filter */

/*
 * Test (and refresh, or insert) the client->VIP connection of `p` in the
 * seen filter.  Returns 1 if the connection was known.  A connection is
 * known if both of its bits are set in the current generation or in the
 * previous one; either way its bits are (re)set in the current generation,
 * which is what carries it across rotations.
 *
 * Indices come from HalfSipHash keyed by a control-plane secret, so an
 * attacker cannot aim forged packets at bits that are already set.
 */
static __always_inline int filter_test(const struct mg_switch_config *cfg, __u32 a, __u32 b,
				       __u32 ports, __u32 salt, int insert)
{
	__u32 bits = cfg->filter_bits_log2;

	if (bits < 6 || bits > 30)
		return 0; /* filter disabled: only cookies admit packets */

	__u32 words = 1u << (bits - 6);
	__u32 mask = (1u << bits) - 1;
	__u32 h = mg_halfsiphash5(&cfg->filter_key, a, b, ports, salt, 0);
	__u32 b1 = h & mask;
	__u32 b2 = mg_mix32(h ^ cfg->filter_key.k1) & mask;
	__u64 m1 = 1ull << (b1 & 63);
	__u64 m2 = 1ull << (b2 & 63);
	__u32 cur = cfg->filter_gen & 1;
	__u32 i;

	i = cur * words + (b1 >> 6);
	__u64 *c1 = bpf_map_lookup_elem(&seen_filter, &i);
	i = cur * words + (b2 >> 6);
	__u64 *c2 = bpf_map_lookup_elem(&seen_filter, &i);
	if (!c1 || !c2)
		return 0; /* config and map size disagree: behave as disabled */
	if ((*c1 & m1) && (*c2 & m2))
		return 1;

	i = (cur ^ 1) * words + (b1 >> 6);
	__u64 *p1 = bpf_map_lookup_elem(&seen_filter, &i);
	i = (cur ^ 1) * words + (b2 >> 6);
	__u64 *p2 = bpf_map_lookup_elem(&seen_filter, &i);
	int known = p1 && p2 && (*p1 & m1) && (*p2 & m2);

	if (known || insert) {
		/* Test before the atomic: most packets find the bit set, and a
		 * read does not bounce the cache line between CPUs. */
		if (!(*c1 & m1))
			__sync_fetch_and_or(c1, m1);
		if (!(*c2 & m2))
			__sync_fetch_and_or(c2, m2);
	}
	return known;
}

static __always_inline int seen_filter_test(const struct mg_switch_config *cfg,
					    const struct mg_pkt *p, int insert)
{
	return filter_test(cfg, p->saddr, p->daddr, ((__u32)p->sport << 16) | p->dport, 0, insert);
}

/* The same bits, keyed by (client IP, client port) under another salt:
 * "this client's connection was admitted by its active front-end while its
 * stable one was draining" (see "front-end selection"). */
#define MG_FE_MOVED_SALT 0x6d6f7665u

static __always_inline int moved_filter_test(const struct mg_switch_config *cfg,
					     __be32 client_ip, __be16 client_port, int insert)
{
	return filter_test(cfg, client_ip, 0, client_port, MG_FE_MOVED_SALT, insert);
}

/* ------------------------------------------------------------------ marks */

/* Set the DSCP a packet leaves with (its ECN bits kept); p->tos follows, so
 * that a FIB lookup afterwards asks about the packet as it will leave. */
static __always_inline int set_dscp(struct __sk_buff *skb, struct mg_pkt *p, __u8 dscp)
{
	__u8 tos = mg_tos_with_dscp(p->tos, dscp);

	if (mg_set_tos(skb, p, tos))
		return -1;
	p->tos = tos;
	return 0;
}

/* Normal forwarding.  A Miresga mark is cleared first: the switch forwards
 * no mark it did not set (an F -> S mark from the wrong port, an S -> F mark
 * the front-end copied into a packet for a back-end, a client's forgery). */
static __always_inline int clear_mark(struct __sk_buff *skb, struct mg_pkt *p)
{
	if (!mg_dscp_is_mark(mg_tos_dscp(p->tos)))
		return 0;
	if (set_dscp(skb, p, MG_DSCP_NONE))
		return -1; /* allocation failure */
	count(MG_SW_MARK_CLEARED, 1);
	return 0;
}

static __always_inline int pass_clean(struct __sk_buff *skb, struct mg_pkt *p, __u32 why)
{
	if (clear_mark(skb, p))
		return TC_ACT_SHOT;
	return pass(why);
}

/* ------------------------------------------------------------- forwarding */

static __always_inline void touch(struct mg_flow *fl, const struct mg_switch_config *cfg)
{
	/* Write only when the second changes: keeps the entry's cache line
	 * clean on the fast path.  A Tofino's idle-timeout bit does this. */
	if (fl->last_seen_s != cfg->now_s)
		fl->last_seen_s = cfg->now_s;
}

/*
 * Route a packet out of `ifindex` towards `dmac`, as an L3 switch does:
 * decrement the TTL, rewrite the MACs, redirect.  A packet whose TTL would
 * expire goes to the kernel instead, which answers with ICMP time exceeded.
 */
static __always_inline int route_out(struct __sk_buff *skb, const struct mg_pkt *p,
				     const __u8 *dmac, const __u8 *smac, __u32 ifindex,
				     __u32 cnt)
{
	if (p->ttl <= 1)
		return pass(MG_SW_TTL_EXCEEDED);
	int verdict = mg_l3_redirect(skb, p, dmac, smac, ifindex);
	if (verdict == TC_ACT_SHOT)
		return verdict; /* only on allocation failure */
	/* Every "packets" counter is followed by its "bytes" counter. */
	count(cnt, 1);
	count(cnt + 1, skb->len);
	return verdict;
}

/*
 * Front-end selection.  One lookup in a table of fe_slots slots (a prime)
 * at hash(client IP, client port): a Maglev table, so that adding or
 * removing one of n front-ends moves about 1/n of the clients and nearly no
 * others.  A connection's packets reach the front-end that holds its state
 * only while its client keeps the same slot value, so every change is a
 * cost: the connections of moved clients that a front-end still holds are
 * refused cleanly by their new front-end (no state, not ADMIT: a RST).
 *
 * A drain avoids that cost for the front-end being drained.  Each slot has
 * two columns: `active` (the Maglev table of the front-ends in service) and
 * `stable` (the table that still includes the draining front-ends).  A new
 * connection -- a packet with a valid cookie that may prove it, the one
 * that makes its front-end create state -- goes to `active`; any other
 * packet goes to `stable`, where the draining front-end still holds its
 * connections.  Where the two differ (the draining front-end's own slots),
 * the switch has to tell a new connection's later packets (to `active`)
 * from an old one's (to `stable`): it marks the new connection "moved" in
 * the seen filter's bit arrays, under a salt of its own and keyed by
 * (client IP, client port) so that a back-end's packets find it too, and
 * every later packet that finds the mark refreshes it, as the seen filter
 * does.  Rotations forget a mark one to two filter periods after the
 * connection's last packet, as they forget a seen connection.  A false
 * positive sends an old connection's packet to the new front-end, which
 * refuses it (a RST): the cost of a hard failover, at the filter's rate.
 * A connection that completes its handshake on the draining front-end
 * but sends its first request after the drain started has a cookie-valid
 * request: it is re-admitted by the active front-end (the old one's
 * handshake-only state idles out).
 *
 * The marks live in the seen filter's arrays: with the filter disabled
 * (filter_bits_log2 = 0) nothing is marked and a drain moves a new
 * connection's later packets back to the draining front-end (which refuses
 * them); draining needs the filter.
 *
 * Outside a drain both columns are equal and the marks are never touched.
 * On a Tofino: one exact-match (or indexed) table of fe_slots entries whose
 * action data is the two 4-bit indices, then the front-end table.
 */
static __always_inline const struct mg_frontend *
select_frontend(const struct mg_switch_config *cfg, __be32 client_ip, __be16 client_port,
		int new_conn)
{
	__u32 m = cfg->fe_slots;

	if (m == 0 || m > MG_FE_SLOTS_MAX)
		return NULL;
	__u32 slot = client_hash(client_ip, client_port) % m;
	const struct mg_fe_slot *sel = bpf_map_lookup_elem(&fe_select, &slot);
	if (!sel)
		return NULL;
	__u32 idx = sel->stable;
	if (sel->active != sel->stable) {
		if (new_conn) {
			idx = sel->active;
			if (idx != MG_FE_NONE) {
				moved_filter_test(cfg, client_ip, client_port, 1);
				count(MG_SW_FE_MOVED, 1);
			}
		} else if (moved_filter_test(cfg, client_ip, client_port, 0)) {
			idx = sel->active;
		} else {
			count(MG_SW_FE_DRAINING, 1);
		}
	}
	if (idx >= MG_MAX_FRONTENDS)
		return NULL;
	return bpf_map_lookup_elem(&frontend_table, &idx);
}

/* Hand a packet to the front-end that serves (client_ip, client_port),
 * with DSCP `dscp`: what the switch tells the front-end about it.
 * `new_conn`: the packet opens a connection on its front-end (ADMIT). */
static __always_inline int to_frontend(struct __sk_buff *skb, struct mg_pkt *p,
				       const struct mg_switch_config *cfg, __be32 client_ip,
				       __be16 client_port, __u32 cnt, __u8 dscp)
{
	const struct mg_frontend *fe =
		select_frontend(cfg, client_ip, client_port, dscp == MG_DSCP_ADMIT);
	if (!fe || !fe->ifindex)
		return drop(MG_SW_NO_FRONTEND);
	if (set_dscp(skb, p, dscp))
		return TC_ACT_SHOT;
	return route_out(skb, p, fe->mac, fe->src_mac, fe->ifindex, cnt);
}

/* -------------------------------------------------------- data-plane table */

/*
 * The data-plane table, for hand-off mode `dataplane` (docs/design.md
 * section 4.3).
 *
 * The front-end marks its handshake ACK to the back-end INSTALL and sends
 * the request right behind it; the switch writes the entry as the ACK
 * passes, so the entry exists before the back-end has the request and every
 * response byte takes the direct path.  No control-plane insert per
 * connection.  This is what a Tofino can write from its data plane: register
 * arrays, not a match table, so here an array map (never a BPF hash-map
 * insert from the packet path).
 *
 * Semantics.  dp_ways ways (one or two) of 2^dp_slots_log2 slots; way w of
 * key (client IP, client port) is slot dp_hash(w) of its way.  A slot holds
 * {client IP, client port, back-end index, VIP index, last seen}.
 *   lookup   compare the key in each way; a slot whose last_seen is
 *            dp_idle_ticks old counts as empty (lazy aging: no sweep);
 *            a hit refreshes last_seen
 *   INSTALL  the way holding this key if any (a re-route: rewritten), else
 *            the first way that is empty or aged; if every way holds
 *            another live key the install is refused and counted: that
 *            flow stays on the front-end, which sees all its packets (one
 *            path either way)
 *   REMOVE   clear every way holding exactly this key; a different key in
 *            the slot is left alone
 * Key and value are one 64-bit word, written with a compare-and-swap from
 * what the install read, so two CPUs installing into one slot cannot leave
 * a torn entry (the loser is refused, counted) and a reader always sees a
 * key with its own back-end.  A Tofino has no such race: one pipeline
 * orders the packets that touch a register.
 *
 * Clock: bpf_ktime_get_ns() >> MG_DP_TICK_SHIFT (about 1 ms) in 32 bits;
 * age is compared signed, so a slot stamped by another CPU a tick ahead is
 * young, and a slot untouched for 2^31 ticks (about 26 days) would look
 * young again: the control plane clears aged slots at leisure
 * (DataplaneTable.age()) long before that.
 *
 * A Tofino's layout (per way, so two ways are two pairs of stages):
 *   stage A  register array of 64-bit pairs {lo: client IP 32,
 *            hi: client port 16 | back-end index 8 | VIP index 8}: one
 *            stateful ALU compares lo and hi[31:16] with the packet's key
 *            and returns hi on a match (lookup) or writes the pair (install,
 *            remove)
 *   stage B  register array of 32-bit last-seen stamps, read-and-refresh by
 *            a stateful ALU when A matched (the global timestamp, shifted)
 * A slot is 96 bits, wider than one register pair, hence two arrays.  An
 * install must know B (is the slot aged?) before it writes A, the reverse of
 * the lookup's order, so an install takes a second pass (recirculation),
 * once per connection.  SWITCHAROO (Caiazzi, Scazzariello, Chiesa, "Millions
 * of Low-latency State Insertions on ASIC Switches", PACMNET 1(CoNEXT3),
 * 2023, doi:10.1145/3629144) builds key-value tables with millions of
 * data-plane insertions per second on Tofino with limited recirculation;
 * this table is the simplest instance of the idea (no cuckoo moves: a
 * collision is refused, not relocated).
 */

static __always_inline int dp_enabled(const struct mg_switch_config *cfg)
{
	return cfg->dp_slots_log2 && cfg->dp_slots_log2 <= MG_DP_SLOTS_LOG2_MAX &&
	       (cfg->dp_ways == 1 || cfg->dp_ways == 2);
}

static __always_inline __u32 dp_now(void)
{
	__u32 t = bpf_ktime_get_ns() >> MG_DP_TICK_SHIFT;

	return t ? t : 1; /* 0 marks an empty slot */
}

/* Slot of (client IP, client port) in a way: mg_dp_hash() seeded by the
 * control plane, as a Tofino's CRC hash units are configured. */
static __always_inline struct mg_dp_slot *dp_slot(const struct mg_switch_config *cfg, __u32 way,
						  __be32 ip, __be16 port)
{
	__u32 log2 = cfg->dp_slots_log2 & 31;
	__u32 i = (way << log2) | (mg_dp_hash(&cfg->dp_seed, ip, port, way) & ((1u << log2) - 1));

	return bpf_map_lookup_elem(&dp_table, &i);
}

/* A slot's key and value, read as the one word they are written as. */
static __always_inline __u64 dp_read(const struct mg_dp_slot *s)
{
	return *(volatile const __u64 *)s;
}

static __always_inline __u64 dp_word(__be32 ip, __be16 port, __u8 backend_idx, __u8 vip_idx)
{
	struct mg_dp_slot e = {.client_ip_be = ip, .client_port_be = port,
			       .backend_idx = backend_idx, .vip_idx = vip_idx};
	__u64 w;

	__builtin_memcpy(&w, &e, sizeof(w));
	return w;
}

static __always_inline struct mg_dp_slot dp_entry(__u64 w)
{
	struct mg_dp_slot e = {};

	__builtin_memcpy(&e, &w, sizeof(w));
	return e;
}

static __always_inline int dp_holds(__u64 w, __be32 ip, __be16 port)
{
	struct mg_dp_slot e = dp_entry(w);

	return e.client_ip_be == ip && e.client_port_be == port;
}

static __always_inline int dp_live(const struct mg_switch_config *cfg, __u32 seen, __u32 now)
{
	return seen && (__s32)(now - seen) < (__s32)cfg->dp_idle_ticks;
}

/* The live slot holding (ip, port), with its entry in *e; NULL if none. */
static __always_inline struct mg_dp_slot *dp_find(const struct mg_switch_config *cfg, __be32 ip,
						  __be16 port, __u32 now, struct mg_dp_slot *e)
{
	for (__u32 way = 0; way < 2; way++) { /* unrolled: two stages */
		if (way >= cfg->dp_ways)
			break;
		struct mg_dp_slot *s = dp_slot(cfg, way, ip, port);
		if (!s)
			continue;
		__u64 w = dp_read(s);
		if (!dp_holds(w, ip, port))
			continue;
		if (!dp_live(cfg, *(volatile __u32 *)&s->last_seen, now)) {
			count(MG_SW_DP_EXPIRED, 1);
			continue;
		}
		*e = dp_entry(w);
		count(MG_SW_DP_HIT, 1);
		return s;
	}
	return NULL;
}

/* Install (ip, port) -> (backend_idx, vip_idx).  Returns the counter of
 * the outcome. */
static __always_inline __u32 dp_install(const struct mg_switch_config *cfg, __be32 ip,
					__be16 port, __u8 backend_idx, __u8 vip_idx)
{
	__u32 now = dp_now();
	struct mg_dp_slot *s0 = dp_slot(cfg, 0, ip, port);
	struct mg_dp_slot *s1 = cfg->dp_ways == 2 ? dp_slot(cfg, 1, ip, port) : NULL;
	struct mg_dp_slot *target;
	__u64 w0 = 0, w1 = 0, old;
	__u32 outcome;

	if (!s0)
		return MG_SW_DP_INSTALL_BAD; /* config and map size disagree */
	w0 = dp_read(s0);
	if (s1)
		w1 = dp_read(s1);

	if (dp_holds(w0, ip, port)) {
		target = s0, old = w0, outcome = MG_SW_DP_REINSTALL;
	} else if (s1 && dp_holds(w1, ip, port)) {
		target = s1, old = w1, outcome = MG_SW_DP_REINSTALL;
	} else if (!dp_entry(w0).client_ip_be ||
		   !dp_live(cfg, *(volatile __u32 *)&s0->last_seen, now)) {
		target = s0, old = w0, outcome = MG_SW_DP_INSTALL;
	} else if (s1 && (!dp_entry(w1).client_ip_be ||
			  !dp_live(cfg, *(volatile __u32 *)&s1->last_seen, now))) {
		target = s1, old = w1, outcome = MG_SW_DP_INSTALL;
	} else {
		return MG_SW_DP_COLLISION;
	}
	if (__sync_val_compare_and_swap((__u64 *)target, old,
					dp_word(ip, port, backend_idx, vip_idx)) != old)
		return MG_SW_DP_INSTALL_RACE;
	*(volatile __u32 *)&target->last_seen = now;
	return outcome;
}

/* Clear every slot holding exactly (ip, port).  Returns the counter of the
 * outcome. */
static __always_inline __u32 dp_remove(const struct mg_switch_config *cfg, __be32 ip, __be16 port)
{
	int removed = 0;

	if (!dp_enabled(cfg))
		return MG_SW_DP_REMOVE_MISS;
	for (__u32 way = 0; way < 2; way++) {
		if (way >= cfg->dp_ways)
			break;
		struct mg_dp_slot *s = dp_slot(cfg, way, ip, port);
		if (!s)
			continue;
		__u64 w = dp_read(s);
		if (!dp_holds(w, ip, port))
			continue;
		/* Time first: once it is 0 the slot reads as empty, so an
		 * install racing in takes it and our swap below loses, as it
		 * should. */
		*(volatile __u32 *)&s->last_seen = 0;
		if (__sync_val_compare_and_swap((__u64 *)s, w, 0) == w)
			removed = 1;
	}
	return removed ? MG_SW_DP_REMOVE : MG_SW_DP_REMOVE_MISS;
}

/* ------------------------------------------------------------ flow entries */

/* What a packet's key found: an exact-match entry or a data-plane slot. */
struct hit {
	struct mg_flow *fl;
	struct mg_dp_slot *slot;
	__u32 now;              /* data-plane clock, for a slot */
	__u8 backend_idx;
	__u8 vip_idx;
};

/* Look (client IP, client port) up: the exact-match table first, the
 * data-plane table only if that has no entry for the key. */
static __always_inline int find_entry(const struct mg_switch_config *cfg, __be32 ip, __be16 port,
				      struct hit *h)
{
	struct mg_flow_key key = {.client_ip_be = ip, .client_port_be = port};
	struct mg_flow *fl = bpf_map_lookup_elem(&flow_table, &key);

	if (fl) {
		h->fl = fl;
		h->backend_idx = fl->backend_idx;
		h->vip_idx = fl->vip_idx;
		return 1;
	}
	if (!dp_enabled(cfg))
		return 0;

	struct mg_dp_slot e;
	h->now = dp_now();
	h->slot = dp_find(cfg, ip, port, h->now, &e);
	if (!h->slot)
		return 0;
	h->backend_idx = e.backend_idx;
	h->vip_idx = e.vip_idx;
	return 1;
}

static __always_inline void touch_hit(const struct hit *h, const struct mg_switch_config *cfg)
{
	if (h->fl)
		touch(h->fl, cfg);
	else if (h->slot && *(volatile __u32 *)&h->slot->last_seen != h->now)
		*(volatile __u32 *)&h->slot->last_seen = h->now;
}

/* ----------------------------------------------------------- the SYN-ACK */

/* The SYN-ACK's IP and TCP headers, built on the stack and written over
 * the SYN in one store. */
struct synack {
	struct iphdr ip;
	struct tcphdr tcp;
	__u8 opts[24];  /* MSS, NOP NOP SACK-permitted, NOP NOP timestamps, NOP WS */
};

/* Write a 32-bit value in network order at p (any alignment). */
static __always_inline void put_be32(__u8 *p, __u32 v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/*
 * Answer a client's SYN with a cookie SYN-ACK, in place.
 *
 * Options: MSS always; SACK-permitted, timestamps and window scale W only if
 * the client offered them, because RFC 2018 and RFC 7323 forbid them in a
 * SYN-ACK otherwise.  The cookie's low byte records what the client offered
 * of MSS, SACK and window scale, so the front-end knows both what to replay
 * to the back-end and what the switch advertised; timestamps it sees on the
 * client's packets themselves.  Any data on the SYN (TCP Fast Open) is
 * dropped and not acknowledged; the client sends it again after the
 * handshake.
 *
 * Timestamps.  The SYN-ACK's TSval is the cookie (any value will do: the
 * client only echoes it), its TSecr the client's TSval.  The client echoes
 * the TSval in its TSecr, the front-end hands that to the back-end in the
 * TSecr of its SYN, and the agent shifts the back-end's timestamps onto it,
 * as it shifts sequence numbers onto s.  Declining timestamps, as the
 * prototype did, costs more than PAWS protection and RTT samples: on the
 * emulated testbed a Linux back-end that declines them serves Linux clients
 * 22% fewer 1 MB responses per second than one that takes them (measured
 * with the `direct` target), and that was most of Miresga's gap to `direct`.
 */
static __always_inline int syn_answer(struct __sk_buff *skb, const struct mg_pkt *p,
				      const struct mg_switch_config *cfg)
{
	struct mg_syn_opts o;
	struct synack h = {};
	__u8 macs[12], swapped[12];

	if (mg_parse_syn_opts(skb, p->doff, &o) < 0)
		return drop(MG_SW_SYN_BAD_OPTIONS);

	__u32 epoch = cfg->epoch;
	__u32 low = mg_cookie_low_byte(mg_mss_class(o.mss),
				       o.has_wscale ? o.wscale : MG_COOKIE_NO_WSCALE, o.sack_ok,
				       epoch);
	__u32 cookie = mg_cookie_make(&cfg->keys[epoch & 1], p->saddr, p->daddr, p->sport,
				      p->dport, p->seq, epoch, low);
	__u16 mss = cfg->mss ? cfg->mss : 1460;
	__u32 optlen = 4;

	h.opts[0] = MG_TCPOPT_MSS;
	h.opts[1] = 4;
	h.opts[2] = mss >> 8;
	h.opts[3] = mss & 0xff;
	if (o.sack_ok) {
		h.opts[4] = MG_TCPOPT_NOP;
		h.opts[5] = MG_TCPOPT_NOP;
		h.opts[6] = MG_TCPOPT_SACK_PERM;
		h.opts[7] = 2;
		optlen = 8;
	}
	if (o.has_ts) {
		__u8 *t = optlen == 8 ? &h.opts[8] : &h.opts[4];
		t[0] = MG_TCPOPT_NOP;
		t[1] = MG_TCPOPT_NOP;
		t[2] = MG_TCPOPT_TIMESTAMP;
		t[3] = 10;
		put_be32(t + 4, cookie);
		put_be32(t + 8, o.tsval);
		optlen += 12;
	}
	if (o.has_wscale) {
		/* Constant offsets, one per layout, for the verifier. */
		__u8 *w = optlen == 20 ? &h.opts[20] : optlen == 16 ? &h.opts[16] :
			  optlen == 8 ? &h.opts[8] : &h.opts[4];
		w[0] = MG_TCPOPT_NOP;
		w[1] = MG_TCPOPT_WSCALE;
		w[2] = 3;
		w[3] = cfg->wscale > 14 ? 14 : cfg->wscale;
		optlen += 4;
	}
	__u32 tcp_len = sizeof(struct tcphdr) + optlen;

	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tot_len = bpf_htons(sizeof(struct iphdr) + tcp_len);
	h.ip.frag_off = bpf_htons(0x4000); /* DF, as Linux sets on TCP */
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_TCP;
	h.ip.saddr = p->daddr;
	h.ip.daddr = p->saddr;
	h.ip.check = mg_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&h.ip, sizeof(h.ip), 0));

	h.tcp.source = p->dport;
	h.tcp.dest = p->sport;
	h.tcp.seq = bpf_htonl(cookie);
	h.tcp.ack_seq = bpf_htonl(p->seq + 1);
	h.tcp.doff = tcp_len / 4;
	h.tcp.syn = 1;
	h.tcp.ack = 1;
	h.tcp.window = bpf_htons(cfg->window ? cfg->window : 65535);

	/* Resize to exactly the SYN-ACK, then make it linear and writable. */
	__u32 new_len = MG_ETH_HLEN + sizeof(struct iphdr) + tcp_len;
	if (bpf_skb_change_tail(skb, new_len, 0) || bpf_skb_pull_data(skb, new_len))
		return TC_ACT_SHOT; /* allocation failure; the client retries */

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return TC_ACT_SHOT;
	__builtin_memcpy(swapped, macs + 6, 6);
	__builtin_memcpy(swapped + 6, macs, 6);
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0))
		return TC_ACT_SHOT;
	if (tcp_len > sizeof(struct tcphdr) + sizeof(h.opts))
		return TC_ACT_SHOT; /* cannot happen; bounds the store for the verifier */
	if (bpf_skb_store_bytes(skb, MG_L3_OFF, &h, sizeof(struct iphdr) + tcp_len, 0))
		return TC_ACT_SHOT;

	/*
	 * The TCP checksum.  The field is zero now.  A CHECKSUM_PARTIAL skb
	 * (the client's stack left the sum to a device) must carry only the
	 * folded pseudo-header sum; any other skb the full sum.  tc cannot see
	 * which it has, but bpf_l4_csum_replace() can: a diff flagged
	 * BPF_F_PSEUDO_HDR is applied in both cases, an unflagged one only when
	 * the skb is not PARTIAL.  So add the pseudo header flagged and the
	 * header bytes unflagged.
	 */
	struct {
		__be32 saddr;
		__be32 daddr;
		__u8 zero;
		__u8 proto;
		__be16 len;
	} ph = {
		.saddr = h.ip.saddr,
		.daddr = h.ip.daddr,
		.proto = IPPROTO_TCP,
		.len = bpf_htons(tcp_len),
	};
	__s64 ph_sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
	__s64 tcp_sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.tcp, tcp_len, 0);
	if (ph_sum < 0 || tcp_sum < 0)
		return TC_ACT_SHOT;
	if (bpf_l4_csum_replace(skb, MG_TCP_CSUM_OFF, 0, ph_sum, BPF_F_PSEUDO_HDR) ||
	    bpf_l4_csum_replace(skb, MG_TCP_CSUM_OFF, 0, tcp_sum, 0))
		return TC_ACT_SHOT;

	count(MG_SW_SYN_COOKIE, 1);
	skb->cb[0] = skb->ifindex;
	return bpf_redirect(skb->ifindex, 0);
}

/* ------------------------------------------------------------ branches */

static __always_inline int is_pure_ack(const struct mg_pkt *p)
{
	return (p->tcp_flags & (MG_TCP_ACK | MG_TCP_SYN | MG_TCP_FIN | MG_TCP_RST)) ==
		       MG_TCP_ACK &&
	       p->payload_len == 0;
}

/* Does the packet carry a valid cookie (ACK set, seq - 1 = c, ack - 1 = s)? */
static __always_inline int cookie_valid(const struct mg_switch_config *cfg, const struct mg_pkt *p)
{
	return (p->tcp_flags & MG_TCP_ACK) &&
	       mg_cookie_check(cfg, p->saddr, p->daddr, p->sport, p->dport, p->seq - 1,
			       p->ack_seq - 1);
}

/* May the packet prove a connection (ACK, no SYN, no RST)?  SYNs never
 * get here; a RST ends what it would prove. */
static __always_inline int may_admit(const struct mg_pkt *p)
{
	return (p->tcp_flags & (MG_TCP_ACK | MG_TCP_RST)) == MG_TCP_ACK;
}

/* A client packet to its front-end, marked ADMIT (it carried a valid
 * cookie) or KNOWN (admitted by an entry or the seen filter). */
static __always_inline int client_to_frontend(struct __sk_buff *skb, struct mg_pkt *p,
					      const struct mg_switch_config *cfg, int admit)
{
	int verdict = to_frontend(skb, p, cfg, p->saddr, p->sport, MG_SW_TO_FRONTEND,
				  admit ? MG_DSCP_ADMIT : MG_DSCP_KNOWN);

	if (verdict == TC_ACT_REDIRECT)
		count(admit ? MG_SW_FE_ADMIT : MG_SW_FE_KNOWN, 1);
	return verdict;
}

/* Client pure ACK with an entry: VIP -> back-end. */
static __always_inline int offload_forward(struct __sk_buff *skb, struct mg_pkt *p,
					   const struct mg_switch_config *cfg,
					   const struct hit *h)
{
	__u32 idx = h->backend_idx;
	const struct mg_backend *be = bpf_map_lookup_elem(&backend_table, &idx);

	if (!be || !be->ifindex)
		/* An entry naming a back-end the control plane has since
		 * removed: the front-end still knows the connection. */
		return client_to_frontend(skb, p, cfg, 0);
	if (p->ttl <= 1)
		return pass(MG_SW_TTL_EXCEEDED);
	if (set_dscp(skb, p, MG_DSCP_NONE) ||
	    mg_set_ipv4_addr(skb, MG_IP_DADDR_OFF, p->daddr, be->ip_be) ||
	    mg_set_tcp_port(skb, MG_TCP_DPORT_OFF, p->dport, be->port_be))
		return TC_ACT_SHOT;
	return route_out(skb, p, be->mac, be->src_mac, be->ifindex, MG_SW_OFFLOAD_FWD);
}

/*
 * Back-end packet with an entry: back-end -> VIP, then route to the client.
 *
 * Clients are in no table of ours, so the next hop comes from the kernel's
 * FIB (bpf_fib_lookup), which plays the switch's L3 table; the redirect then
 * skips the kernel's forwarding path, which matters because this branch
 * carries every response byte.  If the FIB has no complete answer yet (no
 * ARP entry for the client, say), the rewritten packet takes the kernel
 * path, which resolves the neighbour; later packets find it.  A packet too
 * big for the client's link goes to the kernel with its addresses
 * unrewritten, so that the ICMP "fragmentation needed" it triggers reaches
 * the back-end, whose path MTU it is, rather than the VIP.
 */
static __always_inline int offload_reverse(struct __sk_buff *skb, struct mg_pkt *p,
					   const struct mg_switch_config *cfg, const struct hit *h)
{
	__u32 vidx = h->vip_idx;
	const struct mg_vip_key *vip = bpf_map_lookup_elem(&vip_by_idx, &vidx);

	if (!vip || !vip->ip_be)
		return to_frontend(skb, p, cfg, p->daddr, p->dport, MG_SW_REV_TO_FRONTEND,
				   MG_DSCP_BACKEND);
	if (p->ttl <= 1)
		return pass(MG_SW_TTL_EXCEEDED); /* ICMP goes to the back-end */

	/* Looked up before the rewrite it describes (see mg_fib_next_hop). */
	struct bpf_fib_lookup fib;
	long rc = mg_fib_next_hop(skb, p, vip->ip_be, vip->port_be, &fib);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return pass(MG_SW_FIB_MISS);

	touch_hit(h, cfg);
	if (mg_set_ipv4_addr(skb, MG_IP_SADDR_OFF, p->saddr, vip->ip_be) ||
	    mg_set_tcp_port(skb, MG_TCP_SPORT_OFF, p->sport, vip->port_be))
		return TC_ACT_SHOT;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		count(MG_SW_OFFLOAD_REV, 1);
		count(MG_SW_OFFLOAD_REV_BYTES, skb->len);
		return pass(MG_SW_FIB_MISS);
	}
	return route_out(skb, p, fib.dmac, fib.smac, fib.ifindex, MG_SW_OFFLOAD_REV);
}

static __always_inline int client_packet(struct __sk_buff *skb, struct mg_pkt *p,
					 const struct mg_switch_config *cfg,
					 const struct mg_vip *vip)
{
	__u8 flags = p->tcp_flags;
	struct hit h = {};

	if (flags & MG_TCP_SYN) {
		/* SYN+ACK, SYN+RST, SYN+FIN sent to a VIP are not openings. */
		if (flags & (MG_TCP_ACK | MG_TCP_RST | MG_TCP_FIN))
			return drop(MG_SW_VIP_MALFORMED);
		return syn_answer(skb, p, cfg);
	}
	/* Every branch below sets the DSCP the packet leaves with; a client
	 * that sent one of our marks is counted. */
	if (mg_dscp_is_mark(mg_tos_dscp(p->tos)))
		count(MG_SW_MARK_CLEARED, 1);

	int known = 0;
	if (find_entry(cfg, p->saddr, p->sport, &h) && h.vip_idx == vip->vip_idx) {
		touch_hit(&h, cfg);
		/* Keep the connection in the seen filter while it has an entry,
		 * so that it is still admitted if the entry goes (aged, or
		 * replaced when the front-end moves it to another back-end). */
		seen_filter_test(cfg, p, 1);
		if (is_pure_ack(p))
			return offload_forward(skb, p, cfg, &h); /* pays no cookie check */
		known = 1;
	} else if (seen_filter_test(cfg, p, 0)) {
		count(MG_SW_CONN_KNOWN, 1);
		known = 1;
	}

	/* One cookie check, whatever admitted the packet: it decides admission
	 * when nothing else did, and ADMIT for every packet that may prove a
	 * connection (a first data segment can meet a stale entry or filter
	 * bits, and the front-end creates state only from an ADMIT). */
	int cookie = (!known || may_admit(p)) && cookie_valid(cfg, p);
	if (!known) {
		if (!cookie)
			return drop(MG_SW_COOKIE_BAD);
		count(MG_SW_COOKIE_OK, 1);
		seen_filter_test(cfg, p, 1);
	}
	return client_to_frontend(skb, p, cfg, cookie && may_admit(p));
}

/* A back-end's packet that its agent marked, on its own port. */
static __always_inline int backend_packet(struct __sk_buff *skb, struct mg_pkt *p,
					  const struct mg_switch_config *cfg, __u32 backend_idx)
{
	struct hit h = {};

	/* The agent's mark ends here, whichever way the packet goes on. */
	if (set_dscp(skb, p, MG_DSCP_NONE))
		return TC_ACT_SHOT;
	/* A back-end's SYN-ACK always belongs to the front-end's handshake,
	 * even if a stale entry for a reused client port is still there; and
	 * an entry for another back-end means the front-end has moved the
	 * connection, so the old back-end's stragglers are its business. */
	if (!(p->tcp_flags & (MG_TCP_SYN | MG_TCP_FIN | MG_TCP_RST)) &&
	    find_entry(cfg, p->daddr, p->dport, &h) && h.backend_idx == backend_idx)
		return offload_reverse(skb, p, cfg, &h);
	/* BACKEND: the front-end may answer it for the client (section 7.3 of
	 * docs/design.md: the reset of a flow no front-end holds). */
	return to_frontend(skb, p, cfg, p->daddr, p->dport, MG_SW_REV_TO_FRONTEND, MG_DSCP_BACKEND);
}

/* An INSTALL from a front-end: the back-end is the packet's destination,
 * the VIP index its IP ID.  Returns the counter of the outcome. */
static __always_inline __u32 install_from_mark(const struct mg_switch_config *cfg,
					       const struct mg_pkt *p)
{
	struct mg_backend_key bk = {.ip_be = p->daddr, .port_be = p->dport};
	const __u32 *bidx = bpf_map_lookup_elem(&backend_addrs, &bk);
	__u32 vidx = p->ip_id;

	if (!dp_enabled(cfg) || !bidx || *bidx >= MG_MAX_BACKENDS || vidx >= MG_MAX_VIPS)
		return MG_SW_DP_INSTALL_BAD;
	const struct mg_vip_key *vip = bpf_map_lookup_elem(&vip_by_idx, &vidx);
	if (!vip || !vip->ip_be)
		return MG_SW_DP_INSTALL_BAD;
	return dp_install(cfg, p->saddr, p->sport, *bidx, vidx);
}

/* Did the packet come in on a front-end's port?  Asked only of packets
 * whose fate depends on it (F -> S marks, SYNs), not of the response path. */
static __always_inline int from_frontend_port(const struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	const struct mg_port *port = bpf_map_lookup_elem(&port_table, &ifindex);

	return port && (port->flags & MG_PORT_FRONTEND);
}

/* TCP not addressed to a VIP: the marks, the back-ends' replies, forged
 * fused SYNs; everything else is forwarded as a router would. */
static __always_inline int other_tcp(struct __sk_buff *skb, struct mg_pkt *p,
				     const struct mg_switch_config *cfg)
{
	__u32 ifindex = skb->ifindex;
	__u8 dscp = mg_tos_dscp(p->tos);

	if (dscp == MG_DSCP_INSTALL || dscp == MG_DSCP_REMOVE || dscp == MG_DSCP_REMOVE_CTL) {
		if (!from_frontend_port(skb)) {
			count(MG_SW_MARK_UNTRUSTED, 1); /* and cleared on its way out */
		} else if (dscp == MG_DSCP_INSTALL) {
			count(install_from_mark(cfg, p), 1);
		} else {
			count(dp_remove(cfg, p->saddr, p->sport), 1);
			if (dscp == MG_DSCP_REMOVE_CTL)
				return drop(MG_SW_CTL_CONSUMED);
		}
	}

	/* From a back-end's service address?  Miresga's only if its agent
	 * marked it and it came in on that back-end's own port: neither a
	 * spoofed source nor a forged mark from elsewhere is enough. */
	struct mg_backend_key bk = {.ip_be = p->saddr, .port_be = p->sport};
	const __u32 *bidx = bpf_map_lookup_elem(&backend_addrs, &bk);
	if (bidx) {
		if (dscp != MG_DSCP_MIRESGA) {
			count(MG_SW_BE_UNMARKED, 1);
			return pass_clean(skb, p, MG_SW_PASS);
		}
		__u32 idx = *bidx;
		const struct mg_backend *be = bpf_map_lookup_elem(&backend_table, &idx);
		if (be && be->ifindex && be->ifindex == ifindex)
			return backend_packet(skb, p, cfg, idx);
		count(MG_SW_BE_WRONG_PORT, 1);
		return pass_clean(skb, p, MG_SW_PASS);
	}

	/* The fused SYN (SYN, no ACK, the switch's ISN in the ack field) is the
	 * front-ends' alone: from anywhere else it could plant an agent entry. */
	if ((p->tcp_flags & (MG_TCP_SYN | MG_TCP_ACK)) == MG_TCP_SYN && p->ack_seq &&
	    !from_frontend_port(skb)) {
		struct mg_backend_key dk = {.ip_be = p->daddr, .port_be = p->dport};
		if (bpf_map_lookup_elem(&backend_addrs, &dk))
			return drop(MG_SW_FUSED_SYN_FORGED);
	}
	return pass_clean(skb, p, MG_SW_PASS);
}

/* ------------------------------------------------------------- pipeline */

SEC("tc")
int miresga_switch(struct __sk_buff *skb)
{
	const struct mg_vip_counters vip_counters = {
		.pass = MG_SW_PASS,
		.vip_malformed = MG_SW_VIP_MALFORMED,
		.vip_not_tcp = MG_SW_VIP_NOT_TCP,
	};
	const __u32 zero = 0;
	const struct mg_vip *vip = NULL;
	struct mg_pkt p = {};
	int r, verdict;

	count(MG_SW_PKTS, 1);
	const struct mg_switch_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return pass(MG_SW_PASS);

	switch (mg_vip_dispatch(skb, &p, &counters, vip_counters, &r, &vip, &verdict)) {
	case MG_VD_DONE:
		/* Forwarded as is (another port of a VIP address): as is but
		 * for a mark, like every packet the switch forwards. */
		if (verdict == TC_ACT_OK && r >= MG_PKT_IPV4 && clear_mark(skb, &p))
			return TC_ACT_SHOT;
		return verdict;
	case MG_VD_VIP:
		return client_packet(skb, &p, cfg, vip);
	case MG_VD_NOT_VIP:
		break;
	}

	if (r == MG_PKT_IPV4_BAD)
		return pass(MG_SW_MALFORMED); /* not ours to judge, nor to write */
	if (r == MG_PKT_TCP_BAD)
		return pass_clean(skb, &p, MG_SW_MALFORMED);
	if (r != MG_PKT_TCP)
		return pass_clean(skb, &p, MG_SW_PASS);
	return other_tcp(skb, &p, cfg);
}
