/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The splice state machine: steps 2, 3, 6, 7 and 8 of the packet walk in
 * DESIGN.md section 3, for one packet or one timer at a time.
 *
 * Names: c = client ISN, s = switch cookie ISN.  Every sequence number here
 * is in the client's view.  Client->server bytes keep the client's numbers
 * end to end; server->client bytes are shifted by the back-end's agent onto
 * the numbers the switch's cookie started (s+1 is the first response byte),
 * so the front-end forwards without translating anything.  The one place it
 * chooses numbers is a back-end SYN: seq = (first request byte) - 1 and, in
 * the ack field with the ACK flag off, (first response byte the client
 * expects) - 1.  For a new connection that is seq c, ack field s; when a
 * keep-alive connection moves to another back-end it is the current numbers,
 * so the new back-end's bytes continue the client's stream seamlessly.
 *
 * The front-end never acknowledges client data itself (the back-end does,
 * once the request reaches it) and never retransmits forwarded data: it
 * holds a request header until it can route it, and drops segments that
 * arrive out of order while it holds or parses, so the client's own
 * retransmission fills the gap.  The only bytes it originates are its error
 * answers, which it retransmits until acknowledged.
 *
 * One file per concern, as in l3fwd and dperf:
 *
 *   fe_lcore.c          the entry (sort a packet to the client or back-end
 *                       side) and the lcore's set-up and tear-down
 *   fe_client.c         the client side's state machine
 *   fe_server.c         the back-end side's state machine
 *   fe_dispatch.c       request boundaries, routing, releasing held bytes
 *   fe_hold.c           the request bytes held until they can be routed
 *   fe_backend.c        the back-end connection: SYN, retries, join, abort
 *   fe_answer.c         the front-end's own answers (errors, a bare close)
 *   fe_close.c          how a flow ends: FINs, the grace period, freeing
 *   fe_timer.c          what each timer does when it fires
 *   fe_emit.c           segments the front-end writes or cuts itself
 *   fe_offload_queue.c  switch entries that follow the routing decision
 *
 * This header is what they share.  The helpers every forwarded packet runs
 * through stay inline here; the rest are plain functions named fe_*.
 */
#ifndef FE_SPLICE_H
#define FE_SPLICE_H

#include <stdint.h>

#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "fe_lcore.h"
#include "fe_pkt.h"

#define SEQ_LT(a, b) ((int32_t)((a) - (b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((a) - (b)) <= 0)
#define SEQ_GT(a, b) ((int32_t)((a) - (b)) > 0)

#define F_FIN RTE_TCP_FIN_FLAG
#define F_SYN RTE_TCP_SYN_FLAG
#define F_RST RTE_TCP_RST_FLAG
#define F_PSH RTE_TCP_PSH_FLAG
#define F_ACK RTE_TCP_ACK_FLAG

/* ------------------------------------------------------------- addresses */

static inline struct fe_tuple fe_to_backend(const struct fe_lcore *lc, const struct fe_flow *f)
{
	const struct fe_backend_cfg *b = &lc->cfg->backends[f->backend];
	struct fe_tuple t = {
		.saddr = f->key.client_ip_be, .daddr = b->ip_be,
		.sport = f->key.client_port_be, .dport = b->port_be,
	};
	return t;
}

static inline struct fe_tuple fe_to_client(const struct fe_lcore *lc, const struct fe_flow *f)
{
	struct fe_tuple t = {
		.saddr = lc->cfg->vip_be, .daddr = f->key.client_ip_be,
		.sport = lc->cfg->vip_port_be, .dport = f->key.client_port_be,
	};
	return t;
}

/* ------------------------------------------------------------ forwarding */

static inline void fe_forward_to_backend(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	const struct fe_backend_cfg *b = &lc->cfg->backends[f->backend];

	fe_pkt_set_macs(lc, p->eth);
	fe_pkt_rewrite_dst(p, b->ip_be, b->port_be);
	lc->stats.pkt.to_backend++;
	fe_tx(lc, p->m);
}

static inline void fe_forward_to_client(struct fe_lcore *lc, struct fe_pkt *p)
{
	fe_pkt_set_macs(lc, p->eth);
	fe_pkt_rewrite_src(p, lc->cfg->vip_be, lc->cfg->vip_port_be);
	lc->stats.pkt.to_client++;
	fe_tx(lc, p->m);
}

/* -------------------------------------------- segments we write (fe_emit.c) */

/*
 * The timestamp option of a segment the front-end writes itself for a flow
 * whose client uses timestamps (RFC 7323 expects one on every segment).
 * Toward the back-end it speaks as the client: the client's latest TSval,
 * and as TSecr the server clock the client last echoed (the agent shifts it
 * onto the back-end's clock).  Toward the client it speaks as the server:
 * that same echoed value as TSval (the client's PAWS check wants no less),
 * and the client's TSval as TSecr.  Returns the option length, 0 if none.
 */
static inline uint8_t fe_ts_opt(const struct fe_flow *f, int to_client, uint8_t *opt)
{
	if (!f->ts_ok)
		return 0;
	return to_client ? fe_ts_option(opt, f->cli_tsecr, f->cli_tsval)
			 : fe_ts_option(opt, f->cli_tsval, f->cli_tsecr);
}

/* The window the front-end advertises in its own answers, in the client's
 * units: the switch's SYN-ACK set the scale if the client offered one. */
static inline uint16_t fe_answer_window(const struct fe_lcore *lc, const struct fe_flow *f)
{
	if (mg_cookie_wscale(f->s_isn) == MG_COOKIE_NO_WSCALE)
		return 65535;
	return (uint16_t)(65535u >> lc->cfg->vip_wscale);
}

int fe_send_segment(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq, uint32_t ack,
		    uint8_t flags, uint16_t win, const uint8_t *opt, uint8_t optlen,
		    const void *payload, uint16_t len);
void fe_send_rst(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq);
void fe_trim_segment(struct fe_pkt *p, uint16_t keep);
struct rte_mbuf *fe_split_segment(struct fe_lcore *lc, struct fe_pkt *p, uint16_t keep);

/* ------------------------------------ switch entries (fe_offload_queue.c) */

void fe_offload_queue(struct fe_lcore *lc, struct fe_flow *f, uint8_t op);

/*
 * Make the switch entry follow what the current rule says.  With
 * offload_after_bytes, a flow is handed over only once that many response
 * bytes have passed through us: a response that small is over before an
 * entry could be installed, so offloading it would only cost the switch's
 * control plane an ADD and a DEL (its insertion rate is the scarce resource
 * of a hardware switch; ~10^4 entries/s on a Tofino).  Inline: the back-end
 * side runs it on every response segment until the flow is installed.
 */
static inline void fe_offload_apply(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->offload && !f->installed && f->has_backend &&
	    f->be_bytes >= lc->cfg->offload_after_bytes)
		fe_offload_queue(lc, f, MG_CTL_ADD);
	else if (!f->offload && f->installed)
		fe_offload_queue(lc, f, MG_CTL_DEL);
}

/* ------------------------------------------------- held bytes (fe_hold.c) */

void fe_hold_free(struct fe_lcore *lc, struct fe_flow *f);
void fe_hold_mbuf(struct fe_lcore *lc, struct fe_flow *f, struct rte_mbuf *m);
void fe_hold_linearize(struct fe_lcore *lc, const struct fe_flow *f, uint32_t n);
int fe_hold_segment(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p, uint32_t off);

/* ------------------------------------- the back-end connection (fe_backend.c) */

void fe_backend_release(struct fe_lcore *lc, struct fe_flow *f);
void fe_backend_abort(struct fe_lcore *lc, struct fe_flow *f, uint32_t seq);
void fe_backend_syn(struct fe_lcore *lc, struct fe_flow *f);
void fe_backend_open(struct fe_lcore *lc, struct fe_flow *f);
void fe_backend_failed(struct fe_lcore *lc, struct fe_flow *f);
void fe_backend_joined(struct fe_lcore *lc, struct fe_flow *f);

/* ------------------------------------------------ our answers (fe_answer.c) */

static inline uint32_t fe_answer_end(const struct fe_flow *f)
{
	return f->answer_seq + f->answer_len + 1; /* + our FIN */
}

void fe_answer(struct fe_lcore *lc, struct fe_flow *f, int status);
void fe_answer_send(struct fe_lcore *lc, struct fe_flow *f);
void fe_client_answered(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p);

/* -------------------------------------------------- the end (fe_close.c) */

void fe_flow_free(struct fe_lcore *lc, struct fe_flow *f);
void fe_enter_time_wait(struct fe_lcore *lc, struct fe_flow *f);
void fe_fin_seen(struct fe_lcore *lc, struct fe_flow *f);

/* ------------------------------------------ request routing (fe_dispatch.c) */

/* Header bytes, then body bytes: how many of these n belong to the current
 * request.  Fewer than n means it ended and the rest starts the next one.
 * Inline: every client data segment of a spliced flow goes through it. */
static inline uint32_t fe_request_track(struct fe_lcore *lc, struct fe_flow *f, const uint8_t *p,
					uint32_t n)
{
	uint32_t used = 0;

	if (f->opaque)
		return n;
	if (f->hdr_left) {
		used = f->hdr_left < n ? f->hdr_left : n;
		f->hdr_left -= used;
	}
	if (used < n && !f->body.done) {
		int64_t r = http_body_feed(&f->body, p + used, n - used);

		if (r < 0) {
			/* The back-end has the header and will answer the bad body
			 * itself; we can no longer tell where requests start. */
			lc->stats.err.body_framing++;
			f->opaque = 1;
			return n;
		}
		used += (uint32_t)r;
	}
	return used;
}

void fe_next_request(struct fe_lcore *lc, struct fe_flow *f, uint32_t seq);
void fe_progress(struct fe_lcore *lc, struct fe_flow *f);

/* ------------------------------------------------ the two sides' inputs */

void fe_client_input(struct fe_lcore *lc, struct fe_pkt *p);
void fe_server_input(struct fe_lcore *lc, struct fe_pkt *p, int b);

#endif /* FE_SPLICE_H */
