/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A flow's switch entry, from the packet path: asking for one when the
 * back-end joins (an ADD on the channel, with or without a result, or an
 * INSTALL mark on the handshake ACK: config `handoff`), taking it away (a
 * DEL, or a REMOVE mark on the packet to the back-end that ends the flow, or
 * a REMOVE_CTL control packet), the switch's answers (ADDED, REFUSED, an
 * entry's liveness), and the flow's `entry` field that says which of these
 * it asked for last.  The channel itself (rings, thread, TCP) is fe_offload.c.
 *
 * The switch takes the key of an INSTALL or REMOVE from the packet's source:
 * only a packet to a back-end (the client's address as source) carries one.
 * Taking the entry away with a packet to the client, the front-end sends a
 * REMOVE_CTL control packet beside it.
 */
#include "fe_splice.h"

/*
 * The back-end has joined: ask for an entry as the hand-off mode says.
 * Returns 1 if the request must wait for the switch's answer (confirmed);
 * *mark is the mark for the handshake ACK (INSTALL), or left 0.
 */
int fe_entry_at_join(struct fe_lcore *lc, struct fe_flow *f, uint8_t *mark)
{
	if (!f->offload || f->pinned)
		return 0;
	if (f->cli_fin) {
		/* The client closed before the back-end had its request: the
		 * front-end must see the response end to pass the FIN on, so the
		 * whole response comes this way. */
		lc->stats.decision.half_closed++;
		return 0;
	}
	switch (lc->cfg->handoff) {
	case FE_HANDOFF_DATAPLANE:
		*mark = MG_DSCP_INSTALL;
		f->entry = FE_ENTRY_DATAPLANE;
		lc->stats.pkt.install_sent++;
		return 0;
	case FE_HANDOFF_CONFIRMED:
		if (fe_offload_push(lc->offload, MG_CTL_ADD, &f->key, f->backend, lc->cfg->vip_idx, 1)) {
			lc->stats.offload.ring_full++;
			f->pinned = 1;
			return 0;
		}
		lc->stats.offload.queued_add++;
		f->entry = FE_ENTRY_PENDING;
		return 1;
	default:
		fe_offload_apply(lc, f);
		return 0;
	}
}

/*
 * The flow's entry goes with the packet the caller sends next: returns the
 * mark to put on it (REMOVE for a data-plane entry, else 0: a channel entry
 * is deleted over the channel here).
 */
uint8_t fe_entry_take(struct fe_lcore *lc, struct fe_flow *f)
{
	uint8_t e = f->entry;

	f->query_pending = 0;
	switch (e) {
	case FE_ENTRY_DATAPLANE:
		f->entry = FE_ENTRY_NONE;
		return MG_DSCP_REMOVE;
	case FE_ENTRY_CHANNEL:
	case FE_ENTRY_PENDING:
		fe_offload_queue(lc, f, MG_CTL_DEL);
		f->entry = FE_ENTRY_NONE;  /* ring full: the switch ages it out */
		return 0;
	default:
		return 0;
	}
}

/* A REMOVE that no packet carries: the channel, if there is no mbuf. */
static void remove_lost(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_offload_queue(lc, f, MG_CTL_DEL);
	f->entry = FE_ENTRY_NONE;
}

/*
 * Take the entry away now; a data-plane one with a REMOVE_CTL control
 * packet: from the client's address and port to the back-end's, no TCP flag
 * and no payload (a back-end that got one anyway would drop it: no ACK).
 */
void fe_entry_remove(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t;

	if (fe_entry_take(lc, f) != MG_DSCP_REMOVE)
		return;
	t = f->has_backend ? fe_to_backend(lc, f)
			   : (struct fe_tuple){.saddr = f->key.client_ip_be, .daddr = lc->cfg->vip_be,
					       .sport = f->key.client_port_be,
					       .dport = lc->cfg->vip_port_be};
	if (fe_send_marked(lc, &t, 0, 0, 0, 0, NULL, 0, MG_DSCP_REMOVE_CTL) == 0)
		lc->stats.pkt.remove_sent++;
	else
		remove_lost(lc, f);
}

/* Take the entry away with the client segment p, forwarded to the back-end
 * next (the flow's last packet). */
void fe_entry_remove_with(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	if (fe_entry_take(lc, f) == MG_DSCP_REMOVE) {
		fe_mark(lc, p->ip, MG_DSCP_REMOVE);
		lc->stats.pkt.remove_marked++;
	}
}

/* A segment of ours that ends the flow toward one end; the entry goes with
 * it (a REMOVE mark toward the back-end, a control packet beside it toward
 * the client). */
int fe_send_closing(struct fe_lcore *lc, struct fe_flow *f, const struct fe_tuple *t, uint32_t seq,
		    uint32_t ack, uint8_t flags, uint16_t win, const uint8_t *opt, uint8_t optlen)
{
	uint8_t mark;
	int rc;

	if (t->daddr == f->key.client_ip_be && t->dport == f->key.client_port_be) {
		fe_entry_remove(lc, f);
		return fe_send_segment(lc, t, seq, ack, flags, win, opt, optlen, NULL, 0);
	}
	mark = fe_entry_take(lc, f);
	rc = fe_send_marked(lc, t, seq, ack, flags, win, opt, optlen, mark);

	if (mark && rc)
		remove_lost(lc, f);
	else if (mark)
		lc->stats.pkt.remove_marked++;
	return rc;
}

/* Ask the switch whether the flow's entry carried anything lately. */
int fe_entry_query(struct fe_lcore *lc, struct fe_flow *f)
{
	if (!lc->offload || !lc->offload->enabled)
		return -1;
	if (fe_offload_query(lc->offload, &f->key, lc->cfg->vip_idx)) {
		lc->stats.offload.ring_full++;
		return -1;
	}
	lc->stats.offload.queued_query++;
	f->query_pending = 1;
	return 0;
}

/* confirmed: the request held for the switch's answer goes to the back-end. */
void fe_confirm_release(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_flow_set_state(&lc->ft, f, FE_FS_SPLICED);
	fe_timer_spliced(lc, f);
	fe_progress(lc, f);
}

/* An answer of the switch's, through the channel thread. */
void fe_result_input(struct fe_lcore *lc, const struct fe_offload_result *r)
{
	struct fe_flow *f = fe_flow_lookup(&lc->ft, &r->key);

	switch (r->kind) {
	case FE_OFFLOAD_ADDED:
	case FE_OFFLOAD_REFUSED:
		if (!f || f->entry != FE_ENTRY_PENDING || r->backend_idx != f->backend) {
			/* Too late: the flow timed out (and sent a DEL) or ended (a
			 * new connection on the port may be waiting for its own). */
			lc->stats.offload.late_results++;
			return;
		}
		if (r->kind == FE_OFFLOAD_ADDED) {
			lc->stats.offload.confirmed++;
			f->entry = FE_ENTRY_CHANNEL;
		} else {
			/* Refused (table full, collision): nothing to delete; the
			 * flow stays here, and is not offered again. */
			lc->stats.offload.confirm_refused++;
			f->entry = FE_ENTRY_NONE;
			f->pinned = 1;
		}
		if (f->state == FE_FS_CONFIRMING)
			fe_confirm_release(lc, f);
		return;
	case FE_OFFLOAD_LIVENESS:
		if (!f || !f->query_pending) {
			lc->stats.offload.late_results++;
			return;
		}
		f->query_pending = 0;
		if (f->drain_close && f->state == FE_FS_SPLICED) {
			fe_drain_close_liveness(lc, f, r->present, r->idle_ms);
			return;
		}
		if (r->present && (uint64_t)r->idle_ms * 1000 < lc->cfg->idle_timeout_us) {
			/* The switch carries it: the idle timer armed with the
			 * query looks again one idle timeout from then. */
			lc->stats.offload.entry_busy++;
			return;
		}
		if (r->present)
			lc->stats.offload.entry_idle++;
		else
			lc->stats.offload.entry_gone++;
		fe_idle_close(lc, f);
		return;
	default:
		lc->stats.offload.late_results++;
	}
}
