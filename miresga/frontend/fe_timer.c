/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What each timer does when it fires (fe_flow.h has the queues): a header
 * that took too long (408), a SYN without answer (again, then the next
 * back-end), an answer not acknowledged (resent), the end of a grace period,
 * a spliced flow nothing passed through (ask the switch if it carries it,
 * else close), a switch that did not confirm an entry (release anyway),
 * bytes we acknowledged that the back-end did not (resent), a response that
 * may be over (fe_drain.c), and a close we started that did not end.
 */
#include "fe_splice.h"

static void on_timer(struct fe_lcore *lc, struct fe_flow *f, enum fe_timer kind)
{
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
		/* Nothing passed through us for idle_timeout.  If the switch may
		 * carry the flow, its view counts: ask, and look again one idle
		 * timeout later unless the answer says it is idle. */
		if (f->entry != FE_ENTRY_NONE && !f->query_pending && fe_entry_query(lc, f) == 0) {
			fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
			break;
		}
		if (f->query_pending)
			lc->stats.offload.query_unanswered++;
		fe_idle_close(lc, f);
		break;
	case FE_TIMER_CONFIRM:
		/* No answer from the switch: release the request and keep the
		 * flow here; a DEL makes sure a late ADD does not stay. */
		lc->stats.offload.confirm_timeout++;
		fe_entry_remove(lc, f);
		f->pinned = 1;
		fe_confirm_release(lc, f);
		break;
	case FE_TIMER_RTX:
		fe_rtx_timer(lc, f);
		break;
	case FE_TIMER_DRAIN:
		fe_drain_timer(lc, f);
		break;
	case FE_TIMER_CLOSE:
		if (f->fe_fin && !f->fin_again && f->has_backend && !f->reset) {
			/* The back-end's answer to our FIN may have gone the
			 * switch's way, the entry's DEL still on its way: once
			 * more, now that the answer comes here
			 * (fe_server.c, refused_our_fin()). */
			f->fin_again = 1;
			lc->stats.pkt.fin_again++;
			fe_our_fin_again(lc, f);
			fe_timer_arm(&lc->ft, f, FE_TIMER_CLOSE, lc->now_us);
			break;
		}
		lc->stats.err.close_timeout++;
		fe_reset_both(lc, f);
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

/* Answers of the switch that the channel thread has for this lcore. */
unsigned int fe_results_run(struct fe_lcore *lc)
{
	struct fe_offload_result r[32];
	unsigned int n, total = 0;

	if (!lc->offload || !lc->offload->enabled)
		return 0;
	fe_drain_notice(lc);
	fe_del_backlog_run(lc);
	while ((n = fe_offload_results(lc->offload, r, 32))) {
		for (unsigned int i = 0; i < n; i++)
			fe_result_input(lc, &r[i]);
		total += n;
	}
	return total;
}
