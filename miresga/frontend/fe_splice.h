/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The splice state machine: steps 2, 3, 6, 7 and 8 of the packet walk in
 * docs/design.md section 3, for one packet, one timer or one answer of the
 * switch at a time.
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
 * Admission.  A flow is created only from a client packet the switch marked
 * ADMIT (its cookie checked out: miresga.h, data-plane marks).  A KNOWN
 * packet without a flow (an old connection after a restart) gets one RST, so
 * its client reconnects at once; any other packet without a flow is dropped.
 *
 * Holding and acknowledging.  The front-end holds a request until it can
 * route it, and drops segments that arrive out of order meanwhile (the
 * client's retransmission fills the gap).  While a header is incomplete it
 * acknowledges the held bytes as a receiver would (every second segment, and
 * at once a segment sent again), with the window the hold limit leaves: a
 * client whose window or congestion window is full would otherwise wait
 * forever.  A request that needed those ACKs pins its connection to the
 * front-end (the switch never carries it again): the client will not send
 * those bytes again, so the front-end keeps a copy of each until the
 * back-end acknowledges it and retransmits on its own timer (fe_ack.c), and
 * it must see the back-end's ACKs for that.  Apart from these and its error
 * answers, retransmission stays with the end hosts.
 *
 * The hand-off (config `handoff`).  A response byte takes one path: through
 * the front-end or through the switch, never both.  Moving a flow from the
 * switch to the front-end is always safe (later bytes take the slower path);
 * the other way only before the back-end has the request.
 *   async      ADD over the channel when the back-end joins; forward until
 *              it lands (the paper's; early response bytes may take both
 *              paths)
 *   confirmed  ADD with a result when the back-end joins, the request held
 *              (CONFIRMING) until the switch says ADDED; released anyway,
 *              with a DEL and the flow staying here, on REFUSED or after
 *              confirm_timeout
 *   dataplane  the handshake ACK to the back-end carries an INSTALL mark and
 *              the request follows in the same burst; the entry goes with a
 *              REMOVE mark on the flow's last packet to the back-end, or a
 *              REMOVE_CTL control packet, or a channel DEL when no packet
 *              can carry it
 * A flow whose client closed before the back-end joined stays here.  Whenever
 * the front-end must see the rest of a response, the entry goes first.
 *
 * The end of a response (fe_drain.c).  nginx aborts a response when it reads
 * the client's EOF while a write is blocked; so the client's FIN waits here
 * (CLOSING, FIN deferred) until the back-end's response is over, and a
 * pipelined request for another cluster waits (DRAIN) until the previous
 * one's response is over, then the old back-end gets a FIN, its FIN is
 * swallowed and the new back-end starts exactly where the old stream ended.
 * Over means: the back-end sent its FIN; or everything it sent is
 * acknowledged by the client, something was sent since the last request went
 * out, the client's window is open, and the back-end sent nothing for
 * drain_quiet.  With everything acknowledged and the window open the
 * back-end's socket buffer is empty, so a back-end with more to say would be
 * sending; the quiet period covers its application's reaction time.
 *
 * Liveness.  A flow with an entry is idle only if the switch says so: when
 * its idle timer fires the front-end asks (fe_offload_query) and re-arms;
 * an answer that the entry is busy leaves it armed, one that it is idle or
 * gone, or no answer by the next expiry, closes the flow.  An idle flow is
 * closed as its client would (a FIN to the back-end), with a hard deadline.
 *
 * One file per concern, as in l3fwd and dperf:
 *
 *   fe_lcore.c          the entry (sort a packet to the client or back-end
 *                       side) and the lcore's set-up and tear-down
 *   fe_client.c         the client side's state machine
 *   fe_server.c         the back-end side's state machine
 *   fe_dispatch.c       request boundaries, routing, releasing held bytes
 *   fe_hold.c           the request bytes held until they can be routed
 *   fe_ack.c            held bytes the front-end acknowledges itself
 *   fe_backend.c        the back-end connection: SYN, retries, join, abort
 *   fe_drain.c          waiting for a response to end: deferred FIN, re-route
 *   fe_answer.c         the front-end's own answers (errors, a bare close)
 *   fe_close.c          how a flow ends: FINs, idle, the grace period, freeing
 *   fe_timer.c          what each timer does when it fires
 *   fe_emit.c           segments the front-end writes, cuts or marks itself
 *   fe_entry.c          the flow's switch entry: channel, marks, answers
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
#define SEQ_GEQ(a, b) ((int32_t)((a) - (b)) >= 0)

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
	/* The switch's BACKEND mark is for us: it does not go on to the client
	 * (the switch would clear it, and count a mark it did not set). */
	fe_pkt_clear_mark(p);
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
/* A segment without payload carrying a data-plane mark (0: none). */
int fe_send_marked(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq, uint32_t ack,
		   uint8_t flags, uint16_t win, const uint8_t *opt, uint8_t optlen, uint8_t dscp);
void fe_send_rst(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq);
void fe_mark(const struct fe_lcore *lc, struct rte_ipv4_hdr *ip, uint8_t dscp);
void fe_trim_segment(struct fe_pkt *p, uint16_t keep);
struct rte_mbuf *fe_split_segment(struct fe_lcore *lc, struct fe_pkt *p, uint16_t keep);
void fe_strip_fin(struct fe_pkt *p);
void fe_set_seq(struct fe_pkt *p, uint32_t seq);
void fe_set_ack(struct fe_pkt *p, uint32_t ack);

/* ----------------------------------------- the switch entry (fe_entry.c) */

void fe_offload_queue(struct fe_lcore *lc, struct fe_flow *f, uint8_t op);
int fe_del_backlog_init(struct fe_lcore *lc);
void fe_del_backlog_free(struct fe_lcore *lc);
void fe_del_backlog_run(struct fe_lcore *lc);
int fe_entry_at_join(struct fe_lcore *lc, struct fe_flow *f, uint8_t *mark);
uint8_t fe_entry_take(struct fe_lcore *lc, struct fe_flow *f);
void fe_entry_remove(struct fe_lcore *lc, struct fe_flow *f);
void fe_entry_remove_with(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p);
int fe_send_closing(struct fe_lcore *lc, struct fe_flow *f, const struct fe_tuple *t, uint32_t seq,
		    uint32_t ack, uint8_t flags, uint16_t win, const uint8_t *opt, uint8_t optlen);
int fe_entry_query(struct fe_lcore *lc, struct fe_flow *f);
void fe_confirm_release(struct fe_lcore *lc, struct fe_flow *f);

/*
 * async hand-off: make the switch entry follow what the current rule says.
 * With offload_after_bytes, a flow is handed over only once that many
 * response bytes have passed through us: a response that small is over
 * before an entry could be installed, so offloading it would only cost the
 * switch's control plane an ADD and a DEL (its insertion rate is the scarce
 * resource of a hardware switch; ~10^4 entries/s on a Tofino).  The other
 * modes hand a flow over only when its back-end joins (fe_entry_at_join);
 * here they only take an entry away from a request whose rule forbids it.
 * Inline: the back-end side runs it on every response segment until the
 * flow is installed.
 */
static inline void fe_offload_apply(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->entry == FE_ENTRY_NONE) {
		if (lc->cfg->handoff == FE_HANDOFF_ASYNC && f->offload && !f->pinned &&
		    f->has_backend && f->be_bytes >= lc->cfg->offload_after_bytes)
			fe_offload_queue(lc, f, MG_CTL_ADD);
	} else if (!f->offload) {
		fe_entry_remove(lc, f);
	}
}

/*
 * A packet passed through a spliced flow: it is not idle (a liveness query
 * out for it no longer matters), and a back-end that is being watched for
 * the end of its response was not quiet.  Other timers are left alone.
 */
/* The timer of a spliced flow between packets: idle, or a drain's close. */
static inline void fe_timer_spliced(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_timer_arm(&lc->ft, f, f->drain_close ? FE_TIMER_DRAIN : FE_TIMER_IDLE, lc->now_us);
}

static inline void fe_touch(struct fe_lcore *lc, struct fe_flow *f)
{
	f->query_pending = 0;
	if (f->timer == FE_TIMER_IDLE) {
		fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
	} else if (f->timer == FE_TIMER_DRAIN) {
		f->drain_polls = 0;
		fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
	}
}

/* ------------------------------------------------- held bytes (fe_hold.c) */

void fe_hold_free(struct fe_lcore *lc, struct fe_flow *f);
void fe_hold_mbuf(struct fe_lcore *lc, struct fe_flow *f, struct rte_mbuf *m);
void fe_hold_linearize(struct fe_lcore *lc, const struct fe_flow *f, uint32_t n);
int fe_hold_segment(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p, uint32_t off);

/* --------------------------------- bytes we acknowledge ourselves (fe_ack.c) */

void fe_ack_held(struct fe_lcore *lc, struct fe_flow *f);
void fe_rtx_keep(struct fe_lcore *lc, struct fe_flow *f, struct rte_mbuf *m, uint32_t seq);
void fe_rtx_acked(struct fe_lcore *lc, struct fe_flow *f, uint32_t ack);
void fe_rtx_timer(struct fe_lcore *lc, struct fe_flow *f);
void fe_rtx_free(struct fe_lcore *lc, struct fe_flow *f);

/* ------------------------------------- the back-end connection (fe_backend.c) */

void fe_backend_release(struct fe_lcore *lc, struct fe_flow *f);
void fe_backend_abort(struct fe_lcore *lc, struct fe_flow *f, uint32_t seq);
void fe_backend_syn(struct fe_lcore *lc, struct fe_flow *f);
void fe_backend_open(struct fe_lcore *lc, struct fe_flow *f);
void fe_backend_failed(struct fe_lcore *lc, struct fe_flow *f);
void fe_backend_joined(struct fe_lcore *lc, struct fe_flow *f);

/* The next byte our back-end connection expects from the client while a
 * request is held: where it starts, or one after our FIN to an old back-end. */
static inline uint32_t fe_backend_rcv_next(const struct fe_flow *f)
{
	return f->req_seq + f->drain_fin;
}

/* -------------------------------------- the end of a response (fe_drain.c) */

void fe_fin_defer(struct fe_lcore *lc, struct fe_flow *f);
void fe_drain_start(struct fe_lcore *lc, struct fe_flow *f);
void fe_drain_progress(struct fe_lcore *lc, struct fe_flow *f);
void fe_drain_timer(struct fe_lcore *lc, struct fe_flow *f);
void fe_client_fixup(const struct fe_flow *f, struct fe_pkt *p);
/* The front-end drains (NOTICE DRAIN) or is back in service: every turn, from
 * fe_results_run(). */
void fe_drain_notice(struct fe_lcore *lc);
/* The switch's liveness answer for a flow the drain waits to close. */
void fe_drain_close_liveness(struct fe_lcore *lc, struct fe_flow *f, int present,
			     uint32_t idle_ms);
/* A response segment of a request that came while draining. */
void fe_close_header(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p);

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
int fe_evict_waiting(struct fe_lcore *lc, const struct fe_flow *keep, int holding);
void fe_enter_time_wait(struct fe_lcore *lc, struct fe_flow *f);
void fe_fin_seen(struct fe_lcore *lc, struct fe_flow *f);
void fe_reset_both(struct fe_lcore *lc, struct fe_flow *f);
void fe_idle_close(struct fe_lcore *lc, struct fe_flow *f);
void fe_close_as_client(struct fe_lcore *lc, struct fe_flow *f);
int fe_our_fin_again(struct fe_lcore *lc, struct fe_flow *f);
void fe_timer_default(struct fe_lcore *lc, struct fe_flow *f);

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
void fe_result_input(struct fe_lcore *lc, const struct fe_offload_result *r);

#endif /* FE_SPLICE_H */
