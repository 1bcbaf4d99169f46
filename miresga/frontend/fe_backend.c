/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The back-end connection of a flow: the SYN the front-end sends in the
 * client's name (the client's sequence numbers and options, replayed from
 * the switch's cookie), its retransmission, moving on to the cluster's next
 * back-end when one does not answer, the handshake's last ACK once the
 * SYN-ACK checks out, and the RST that ends it when the flow moves or fails.
 * What the back-end sends is handled in fe_server.c.
 */
#include "fe_splice.h"

void fe_backend_release(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_rtx_free(lc, f);     /* copies for this back-end only */
	if (f->has_backend) {
		fe_lb_detach(&lc->lb, f->backend);
		f->has_backend = 0;
	}
}

/* End our back-end connection; seq is the next byte it expects from us. */
void fe_backend_abort(struct fe_lcore *lc, struct fe_flow *f, uint32_t seq)
{
	struct fe_tuple t;

	if (!f->has_backend)
		return;
	t = fe_to_backend(lc, f);
	if (fe_send_closing(lc, f, &t, seq, 0, F_RST, 0, NULL, 0) == 0)
		lc->stats.pkt.rst_sent++;
	fe_backend_release(lc, f);
}

/* SYN options replayed from the cookie's low byte: what the client offered
 * the switch, so the back-end negotiates exactly what the client expects;
 * and timestamps if the client's segments carry them (the agent takes the
 * TSecr as the base of the back-end's clock in the client's view). */
static uint8_t syn_options(const struct fe_flow *f, uint8_t *opt)
{
	uint32_t cookie = f->s_isn;
	uint16_t mss = mg_cookie_mss(cookie);
	uint32_t ws = mg_cookie_wscale(cookie);
	uint8_t n = 0;

	opt[n++] = 2;   /* MSS */
	opt[n++] = 4;
	opt[n++] = (uint8_t)(mss >> 8);
	opt[n++] = (uint8_t)mss;
	if (mg_cookie_sack(cookie)) {
		opt[n++] = 1;
		opt[n++] = 1;
		opt[n++] = 4; /* SACK permitted */
		opt[n++] = 2;
	}
	if (f->ts_ok)
		n = (uint8_t)(n + fe_ts_option(opt + n, f->cli_tsval, f->cli_tsecr));
	if (ws != MG_COOKIE_NO_WSCALE) {
		opt[n++] = 1;
		opt[n++] = 3; /* window scale */
		opt[n++] = 3;
		opt[n++] = (uint8_t)ws;
	}
	return n;
}

/* The SYN to the current back-end; a retransmission is the same SYN, which
 * the agent recognises by its (seq, ack field) pair. */
void fe_backend_syn(struct fe_lcore *lc, struct fe_flow *f)
{
	uint32_t ws = mg_cookie_wscale(f->s_isn);
	uint32_t win = f->cli_win;
	uint8_t opt[24], optlen;
	struct fe_tuple t = fe_to_backend(lc, f);

	/* A SYN's window is never scaled: give the client's real window. */
	if (ws != MG_COOKIE_NO_WSCALE)
		win <<= ws;
	if (win > 65535)
		win = 65535;
	optlen = syn_options(f, opt);
	if (fe_send_segment(lc, &t, f->req_seq - 1, f->syn_ack, F_SYN, (uint16_t)win, opt, optlen,
			    NULL, 0) == 0) {
		if (f->syns++)
			lc->stats.pkt.syn_retransmit++;
		else
			lc->stats.pkt.syn_sent++;
	}
	fe_timer_arm(&lc->ft, f, FE_TIMER_SYN, lc->now_us);
}

/* Open a connection for the current request to the next back-end to try. */
void fe_backend_open(struct fe_lcore *lc, struct fe_flow *f)
{
	const struct fe_cluster_cfg *c = &lc->cfg->clusters[f->cluster];

	if (f->tries == 0)
		f->first_pick = (uint8_t)fe_lb_first(&lc->lb, f->cluster, f->key.client_ip_be,
						     lc->now_us);
	f->backend = (uint8_t)c->backends[(f->first_pick + f->tries) % c->n_backends];
	f->has_backend = 1;
	f->be_fin = 0;
	f->drain_fin = 0;
	f->syns = 0;
	f->tw_reset = 0;
	fe_lb_attach(&lc->lb, f->backend);
	/* Everything below cli_ack reached the client; the new back-end's first
	 * byte must be cli_ack, so its ISN (after the agent) is cli_ack - 1. */
	f->syn_ack = f->cli_ack - 1;
	fe_flow_set_state(&lc->ft, f, FE_FS_SYN_SENT);
	fe_backend_syn(lc, f);
}

/* The back-end did not take the SYN: try the cluster's next one, or 503. */
void fe_backend_failed(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_lb_failed(&lc->lb, f->backend, lc->now_us);
	fe_backend_release(lc, f);
	if (++f->tries < lc->cfg->clusters[f->cluster].n_backends)
		fe_backend_open(lc, f);
	else
		fe_answer(lc, f, 503);
}

/*
 * The back-end's SYN-ACK checked out: complete its handshake and splice.
 * The hand-off starts here (fe_entry_at_join): the ACK may carry an INSTALL
 * mark with the request right behind it, or the request may wait for the
 * switch's confirmation.
 */
void fe_backend_joined(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t = fe_to_backend(lc, f);
	uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt), mark = 0;
	int wait;

	fe_lb_answered(&lc->lb, f->backend);
	/* Nothing of this back-end's stream yet: its first byte is syn_ack + 1. */
	f->be_next = f->resp_mark = f->syn_ack + 1;
	wait = fe_entry_at_join(lc, f, &mark);
	if (fe_send_marked(lc, &t, f->req_seq, f->syn_ack + 1, F_ACK, f->cli_win, opt, optlen,
			   mark) == 0)
		lc->stats.pkt.ack_sent++;
	if (wait) {
		fe_flow_set_state(&lc->ft, f, FE_FS_CONFIRMING);
		fe_timer_arm(&lc->ft, f, FE_TIMER_CONFIRM, lc->now_us);
		return;
	}
	fe_flow_set_state(&lc->ft, f, FE_FS_SPLICED);
	fe_timer_spliced(lc, f);
	fe_progress(lc, f);
}
