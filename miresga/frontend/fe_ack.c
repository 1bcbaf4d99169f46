/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Request bytes the front-end acknowledges itself.  While it holds an
 * incomplete header nobody else can acknowledge them, and a client whose
 * window or congestion window is full stops sending: 13 segments of 7 bytes
 * are more than an initial window of 10, a 7 KB cookie more than one of 3.
 * So the front-end acknowledges held header bytes as a receiver would:
 * every second segment, and at once a segment the client sent again (its
 * ACK was lost, or the client is waiting with one segment in flight).
 *
 * The client never sends an acknowledged byte again, so the front-end keeps
 * a copy of each one it releases to the back-end until the back-end
 * acknowledges it, and retransmits the copies itself (answer_rto, doubling,
 * answer_retries times, then both ends are reset).  It must see the
 * back-end's ACKs for that: a request that needed the front-end's ACKs pins
 * its connection here, and a kept-alive connection the switch was carrying
 * has its entry taken away first (switch -> front-end is always safe).
 * Single-segment requests, the common case, never need any of this.
 */
#include "fe_splice.h"

/* The window of our ACK: what the hold limit still takes, in the client's
 * units (the switch's SYN-ACK set the scale if the client offered one). */
static uint16_t hold_window(const struct fe_lcore *lc, const struct fe_flow *f)
{
	uint32_t room = lc->cfg->hold_limit_bytes > f->held_len
				? lc->cfg->hold_limit_bytes - f->held_len : 0;

	if (mg_cookie_wscale(f->s_isn) != MG_COOKIE_NO_WSCALE)
		room >>= lc->cfg->vip_wscale;
	return room > 65535 ? 65535 : (uint16_t)room;
}

/*
 * Acknowledge the held bytes: seq = the client's latest ack field (the
 * server's next byte as the client knows it, which a receiver's window check
 * accepts), ack = the next byte the front-end expects.  The first ACK a
 * connection needs pins it to the front-end.
 */
void fe_ack_held(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t = fe_to_client(lc, f);
	uint8_t opt[12], optlen = fe_ts_opt(f, 1, opt);

	if (f->state == FE_FS_HEADER || f->state == FE_FS_NEXT_HEADER) {
		if (!f->pinned) {
			lc->stats.decision.pinned++;
			f->pinned = 1;
		}
		fe_entry_remove(lc, f);
		f->own_ack = f->cli_next;
		f->own_acked = 1;
	} else if (!f->own_acked) {
		return;     /* a complete header: the back-end will acknowledge it */
	}
	f->held_segs = 0;
	if (fe_send_segment(lc, &t, f->cli_ack, f->own_ack, F_ACK, hold_window(lc, f), opt, optlen,
			    NULL, 0) == 0)
		lc->stats.pkt.own_ack++;
}

void fe_rtx_free(struct fe_lcore *lc, struct fe_flow *f)
{
	struct rte_mbuf *m = f->rtx;

	if (!m)
		return;     /* the common case: nothing kept, no RTX timer */
	while (m) {
		struct rte_mbuf *next = m->next;

		m->next = NULL;
		m->nb_segs = 1;
		rte_pktmbuf_free_seg(m);
		lc->stats.held_mbufs--;
		m = next;
	}
	f->rtx = NULL;
	f->rtx_tries = 0;
	if (f->timer == FE_TIMER_RTX)
		fe_timer_default(lc, f);
}

/* Keep m (payload only, seq its first byte) until the back-end acknowledges it. */
void fe_rtx_keep(struct fe_lcore *lc, struct fe_flow *f, struct rte_mbuf *m, uint32_t seq)
{
	struct rte_mbuf *last = f->rtx;

	m->next = NULL;
	m->nb_segs = 1;
	m->pkt_len = m->data_len;
	lc->stats.held_mbufs++;
	if (!last) {
		f->rtx = m;
		f->rtx_seq = seq;
		f->rtx_tries = 0;
		fe_timer_arm_after(&lc->ft, f, FE_TIMER_RTX, lc->now_us, lc->cfg->answer_rto_us);
		return;
	}
	while (last->next)
		last = last->next;
	last->next = m;
}

/* The back-end acknowledged up to ack: drop the copies it has. */
void fe_rtx_acked(struct fe_lcore *lc, struct fe_flow *f, uint32_t ack)
{
	int progress = 0;

	while (f->rtx && SEQ_LEQ(f->rtx_seq + f->rtx->data_len, ack)) {
		struct rte_mbuf *m = f->rtx;

		f->rtx = m->next;
		f->rtx_seq += m->data_len;
		m->next = NULL;
		rte_pktmbuf_free_seg(m);
		lc->stats.held_mbufs--;
		progress = 1;
	}
	if (!progress)
		return;
	if (!f->rtx) {
		/* All there: back to the state's own timer. */
		f->rtx_tries = 0;
		if (f->timer == FE_TIMER_RTX)
			fe_timer_default(lc, f);
		return;
	}
	/* A new ACK: a fresh timeout, no back-off (RFC 6298 5.3). */
	f->rtx_tries = 0;
	fe_timer_arm_after(&lc->ft, f, FE_TIMER_RTX, lc->now_us, lc->cfg->answer_rto_us);
}

/* The copies were not acknowledged in time: send them again, or give up. */
void fe_rtx_timer(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t;
	uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);
	uint32_t seq = f->rtx_seq;

	if (f->rtx_tries >= lc->cfg->answer_retries || !f->has_backend) {
		lc->stats.err.rtx_timeout++;
		fe_reset_both(lc, f);
		return;
	}
	t = fe_to_backend(lc, f);
	for (struct rte_mbuf *m = f->rtx; m; m = m->next) {
		if (fe_send_segment(lc, &t, seq, f->cli_ack, F_ACK | (m->next ? 0 : F_PSH), f->cli_win,
				    opt, optlen, rte_pktmbuf_mtod(m, const void *), m->data_len) == 0)
			lc->stats.pkt.rtx++;
		seq += m->data_len;
	}
	f->rtx_tries++;
	fe_timer_arm_after(&lc->ft, f, FE_TIMER_RTX, lc->now_us,
			   lc->cfg->answer_rto_us << f->rtx_tries);
}
