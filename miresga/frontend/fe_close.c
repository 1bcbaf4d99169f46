/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * How a flow ends: a FIN each way (or an RST, or our answer acknowledged)
 * puts it in TIME_WAIT, where it waits out a grace period for the last ACKs
 * and resent FINs; then, or on a timeout, it is freed with everything it
 * holds: held bytes, its switch entry (a DEL), its back-end's slot.
 */
#include "fe_splice.h"

void fe_flow_free(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_hold_free(lc, f);
	if (f->installed)
		fe_offload_queue(lc, f, MG_CTL_DEL);
	fe_backend_release(lc, f);
	fe_flow_destroy(&lc->ft, f);
}

void fe_enter_time_wait(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_hold_free(lc, f);
	/* The connection is over: take its switch entry away now, not when the
	 * grace period ends.  What is left of it (the last ACK, a resent FIN)
	 * comes to us anyway (the seen filter admits it without an entry), while
	 * a stale entry would send the handshake ACK of a client that reuses the
	 * port within the grace period to the old back-end's TIME_WAIT socket. */
	if (f->installed)
		fe_offload_queue(lc, f, MG_CTL_DEL);
	fe_flow_set_state(&lc->ft, f, FE_FS_TIME_WAIT);
	fe_timer_arm(&lc->ft, f, FE_TIMER_GRACE, lc->now_us);
}

/* A FIN went one way: note it and see whether both ways are closed. */
void fe_fin_seen(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->cli_fin_sent && f->be_fin)
		fe_enter_time_wait(lc, f);
	else if (f->state == FE_FS_SPLICED)
		fe_flow_set_state(&lc->ft, f, FE_FS_CLOSING);
}
