/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The front-end's own answers: an HTTP error (400, 404, 408, 431, 503) or,
 * for a client that connected and closed without a byte, just a FIN.  These
 * are the only bytes it originates, so they are the only ones it
 * retransmits (fe_timer.c) until the client acknowledges them; and the
 * client's last packets of such a flow are answered here too.
 */
#include "fe_splice.h"

void fe_answer_send(struct fe_lcore *lc, struct fe_flow *f)
{
	char body[320];
	int len = 0;
	struct fe_tuple t = fe_to_client(lc, f);
	uint32_t ack = f->cli_fin ? f->cli_fin_seq + 1 : f->cli_next;
	uint8_t opt[12], optlen = fe_ts_opt(f, 1, opt);

	if (f->status)
		len = http_error_response(f->status, body, sizeof(body));
	f->answer_len = (uint16_t)len;
	if (fe_send_segment(lc, &t, f->answer_seq, ack, F_ACK | F_FIN | (len ? F_PSH : 0),
			    fe_answer_window(lc, f), opt, optlen, body, (uint16_t)len) == 0) {
		lc->stats.pkt.answer_sent++;
		lc->stats.pkt.fin_sent++;
	}
}

/*
 * Answer the client ourselves (status 0: just close) and close.  The
 * response starts at cli_ack, the next byte the client expects from "the
 * server": s+1 on a fresh connection, after the last response otherwise.
 */
void fe_answer(struct fe_lcore *lc, struct fe_flow *f, int status)
{
	switch (status) {
	case 400: lc->stats.err.e400++; break;
	case 404: lc->stats.err.e404++; break;
	case 408: lc->stats.err.e408++; break;
	case 431: lc->stats.err.e431++; break;
	case 503: lc->stats.err.e503++; break;
	default: lc->stats.decision.empty_close++; break;
	}
	/* What the back-end got ends where the held request starts. */
	fe_backend_abort(lc, f, fe_backend_rcv_next(f));
	fe_hold_free(lc, f);
	f->status = (uint16_t)status;
	f->answered = 1;
	f->answer_seq = f->cli_ack;
	f->retries = (uint8_t)lc->cfg->answer_retries;
	fe_flow_set_state(&lc->ft, f, FE_FS_ANSWERED);
	fe_answer_send(lc, f);
	fe_timer_arm(&lc->ft, f, FE_TIMER_ANSWER, lc->now_us);
}

/* A client packet for a flow the front-end answered itself. */
void fe_client_answered(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	struct fe_tuple t = fe_to_client(lc, f);

	if ((p->flags & F_FIN) && !f->cli_fin) {
		f->cli_fin = 1;
		f->cli_fin_seq = p->seq + p->len;
	}
	if (f->cli_fin && (p->flags & F_FIN)) {
		/* Acknowledge the client's FIN (again, if it was resent). */
		uint8_t opt[12], optlen = fe_ts_opt(f, 1, opt);

		if (fe_send_segment(lc, &t, fe_answer_end(f), f->cli_fin_seq + 1, F_ACK,
				    fe_answer_window(lc, f), opt, optlen, NULL, 0) == 0)
			lc->stats.pkt.ack_sent++;
	}
	rte_pktmbuf_free(p->m);
	if (f->state == FE_FS_ANSWERED && SEQ_LEQ(fe_answer_end(f), f->cli_ack))
		fe_enter_time_wait(lc, f);
}
