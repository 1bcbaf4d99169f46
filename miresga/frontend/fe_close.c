/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * How a flow ends: a FIN each way (or an RST, or our answer acknowledged)
 * puts it in TIME_WAIT, where it waits out a grace period for the last ACKs
 * and resent FINs; then, or on a timeout, it is freed with everything it
 * holds: held bytes and copies, its switch entry, its back-end's slot.  An
 * idle flow is closed as its client would close it, with a deadline; one
 * that cannot be closed so is reset at both ends.
 */
#include "fe_splice.h"

void fe_flow_free(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_hold_free(lc, f);
	fe_rtx_free(lc, f);
	fe_entry_remove(lc, f);
	fe_backend_release(lc, f);
	fe_flow_destroy(&lc->ft, f);
}

void fe_enter_time_wait(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_hold_free(lc, f);
	fe_rtx_free(lc, f);
	/* The connection is over: take its switch entry away now, not when the
	 * grace period ends (if the packet that ended it did not carry it
	 * away).  What is left of it (the last ACK, a resent FIN) comes to us
	 * anyway (the seen filter admits it without an entry), while a stale
	 * entry would send the handshake ACK of a client that reuses the port
	 * within the grace period to the old back-end's TIME_WAIT socket. */
	fe_entry_remove(lc, f);
	fe_flow_set_state(&lc->ft, f, FE_FS_TIME_WAIT);
	fe_timer_arm(&lc->ft, f, FE_TIMER_GRACE, lc->now_us);
}

/* How far down the request timer's queue an eviction looks. */
#define EVICT_SCAN 64

/*
 * Room for a new flow, or for another flow's held bytes: the flow that has
 * waited longest for its first request header (a completed handshake with
 * no request, or a header still arriving) is reset and freed.  It has no
 * back-end yet, so only its client sees the RST.  The request timer's queue
 * is in arrival order (one fixed timeout), so its head is the oldest; only
 * the first EVICT_SCAN entries are looked at (next-request headers of
 * joined connections queue there too and are not taken).  An honest client
 * sends its request right behind the handshake, so it would be evicted only
 * if every waiting flow older than it had been already: an attacker would
 * have to open the whole table's worth of connections within that round
 * trip.  `holding`: only a flow that parks mbufs helps.  Returns 1 if one
 * was freed; the caller counts why.
 */
int fe_evict_waiting(struct fe_lcore *lc, const struct fe_flow *keep, int holding)
{
	struct fe_flow *f;
	unsigned int looked = 0;

	TAILQ_FOREACH(f, &lc->ft.timers[FE_TIMER_REQUEST], tlink) {
		if (++looked > EVICT_SCAN)
			break;
		if (f == keep || f->state != FE_FS_HEADER || f->has_backend ||
		    (holding && !f->held_mbufs))
			continue;
		fe_reset_both(lc, f);
		return 1;
	}
	return 0;
}

/* A FIN went one way: note it and see whether both ways are closed. */
void fe_fin_seen(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->cli_fin_sent && f->be_fin)
		fe_enter_time_wait(lc, f);
	else if (f->state == FE_FS_SPLICED)
		fe_flow_set_state(&lc->ft, f, FE_FS_CLOSING);
}

/* The next byte the back-end connection expects from the client. */
static uint32_t backend_rcv_next(const struct fe_flow *f)
{
	switch (f->state) {
	case FE_FS_SYN_SENT:
	case FE_FS_CONFIRMING:
	case FE_FS_NEXT_HEADER:
	case FE_FS_DRAIN:
		return fe_backend_rcv_next(f);
	default:
		return f->cli_fin_sent ? f->cli_fin_seq + 1 : f->cli_next;
	}
}

/* Tell both ends the connection is gone, and free it. */
void fe_reset_both(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t;

	if (f->has_backend && !f->reset) {
		t = fe_to_backend(lc, f);
		if (fe_send_closing(lc, f, &t, backend_rcv_next(f), 0, F_RST, 0, NULL, 0) == 0)
			lc->stats.pkt.rst_sent++;
	}
	t = fe_to_client(lc, f);
	if (fe_send_closing(lc, f, &t, f->cli_ack, 0, F_RST, 0, NULL, 0) == 0)
		lc->stats.pkt.rst_sent++;
	fe_flow_free(lc, f);
}

/*
 * Nothing passed for idle_timeout (and the switch, if it carries the flow,
 * agrees).  A kept-alive connection is closed as its client would close it:
 * a FIN to the back-end at cli_next, which takes the entry with it; the
 * back-end closes, and its FIN reaches the client the usual way.  If that
 * does not end within a grace period, the FIN goes once more; within
 * another, both ends are reset.  A connection
 * that cannot be closed so (our FIN is out already, or the client's) is
 * reset at once.
 */
void fe_idle_close(struct fe_lcore *lc, struct fe_flow *f)
{
	lc->stats.err.idle_timeout++;
	fe_close_as_client(lc, f);
}

/* fe_idle_close() without the count: a drain closes so too (fe_drain.c). */
void fe_close_as_client(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t;
	uint8_t opt[12], optlen;

	if (!f->has_backend || f->reset || f->cli_fin ||
	    !(f->state == FE_FS_SPLICED || f->state == FE_FS_CLOSING)) {
		fe_reset_both(lc, f);
		return;
	}
	t = fe_to_backend(lc, f);
	optlen = fe_ts_opt(f, 0, opt);
	if (fe_send_closing(lc, f, &t, f->cli_next, f->cli_ack, F_ACK | F_FIN, f->cli_win, opt,
			    optlen) == 0) {
		lc->stats.pkt.idle_fin++;
		lc->stats.pkt.fin_sent++;
	}
	f->cli_fin = 1;
	f->cli_fin_seq = f->cli_next;
	f->cli_fin_sent = 1;
	f->fe_fin = 1;
	fe_fin_seen(lc, f);
	if (f->state == FE_FS_CLOSING)
		fe_timer_arm(&lc->ft, f, FE_TIMER_CLOSE, lc->now_us);
}

/*
 * Our FIN in the client's name once more, with the client's numbers as the
 * front-end knows them now (fe_server.c, refused_our_fin(); FE_TIMER_CLOSE).
 */
int fe_our_fin_again(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t = fe_to_backend(lc, f);
	uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);

	if (fe_send_closing(lc, f, &t, f->cli_fin_seq, f->cli_ack, F_ACK | F_FIN, f->cli_win, opt,
			    optlen) != 0)
		return -1;
	lc->stats.pkt.fin_sent++;
	return 0;
}

/* The timer of a flow in its state when it waits for nothing in particular. */
void fe_timer_default(struct fe_lcore *lc, struct fe_flow *f)
{
	enum fe_timer t;

	switch (f->state) {
	case FE_FS_SPLICED:
		t = f->drain_close ? FE_TIMER_DRAIN : FE_TIMER_IDLE;
		break;
	case FE_FS_CLOSING:
		t = f->cli_fin && !f->cli_fin_sent ? FE_TIMER_DRAIN
		    : f->fe_fin ? FE_TIMER_CLOSE : FE_TIMER_IDLE;
		break;
	case FE_FS_DRAIN:
		t = FE_TIMER_DRAIN;
		break;
	default:
		return;
	}
	fe_timer_arm(&lc->ft, f, t, lc->now_us);
}
