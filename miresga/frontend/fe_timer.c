/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What each timer does when it fires (fe_flow.h has the queues): a header
 * that took too long (408), a SYN without answer (again, then the next
 * back-end), an answer not acknowledged (resent), the end of a grace period,
 * and a spliced flow nothing passed through (RST both ends).
 */
#include "fe_splice.h"

static void on_timer(struct fe_lcore *lc, struct fe_flow *f, enum fe_timer kind)
{
	struct fe_tuple t;

	switch (kind) {
	case FE_TIMER_REQUEST:
		fe_answer(lc, f, 408);
		break;
	case FE_TIMER_SYN:
		/* A SYN lost on the way, or dropped by a full accept queue: try
		 * the same back-end again before giving up on it. */
		if (f->syns <= lc->cfg->syn_retries) {
			fe_backend_syn(lc, f);
			break;
		}
		lc->stats.err.syn_timeout++;
		fe_backend_failed(lc, f);
		break;
	case FE_TIMER_ANSWER:
		if (f->retries) {
			f->retries--;
			fe_answer_send(lc, f);
			fe_timer_arm(&lc->ft, f, FE_TIMER_ANSWER, lc->now_us);
		} else {
			fe_flow_free(lc, f);
		}
		break;
	case FE_TIMER_IDLE:
		/* Nothing passed through us for idle_timeout: tell both ends, so
		 * neither keeps a connection that no longer has a splice. */
		lc->stats.err.idle_timeout++;
		if (f->has_backend) {
			t = fe_to_backend(lc, f);
			fe_send_rst(lc, &t, f->cli_next);
		}
		t = fe_to_client(lc, f);
		fe_send_rst(lc, &t, f->cli_ack);
		fe_flow_free(lc, f);
		break;
	default:
		fe_flow_free(lc, f);
		break;
	}
}

unsigned int fe_timers_run(struct fe_lcore *lc)
{
	enum fe_timer kind;
	struct fe_flow *f;
	unsigned int n = 0;

	while ((f = fe_timer_next_expired(&lc->ft, lc->now_us, &kind))) {
		on_timer(lc, f, kind);
		n++;
	}
	return n;
}
