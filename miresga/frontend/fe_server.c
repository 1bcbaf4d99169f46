/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The back-end side of the state machine: every packet from a back-end to a
 * client that the switch hands the front-end.  The SYN-ACK to our SYN (with
 * the sequence number the agent must have put there), then the response
 * bytes and the close, forwarded with the VIP as source while the switch
 * does not carry the flow; the end of an old back-end's stream when a
 * connection moves (DRAIN); a back-end talking about a connection the
 * front-end no longer splices is reset, and so is its client if no flow here
 * knows the connection at all (orphan_reset()).
 */
#include "fe_splice.h"

/* The old back-end of a connection that moves (DRAIN): its stream ends here. */
static void server_draining(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	if (p->flags & F_RST) {
		/* Ended, if less politely: nothing more to acknowledge. */
		f->be_fin = 1;
		rte_pktmbuf_free(p->m);
		fe_backend_release(lc, f);
		fe_drain_progress(lc, f);
		return;
	}
	if ((p->flags & F_FIN) && !f->be_fin) {
		/* F_end: swallowed, the client's stream goes on with the next
		 * back-end's bytes.  Data it carries still goes. */
		f->be_fin = 1;
		lc->stats.pkt.fin_swallowed++;
		if (p->len) {
			fe_strip_fin(p);
			fe_forward_to_client(lc, p);
		} else {
			rte_pktmbuf_free(p->m);
		}
		fe_drain_progress(lc, f);
		return;
	}
	if (!f->drain_fin || (p->len && !f->be_fin)) {
		/* After our FIN its ACK field counts that FIN, a byte the client
		 * never sent: the client must not see it. */
		if (f->drain_fin && SEQ_GT(p->ack, f->req_seq))
			fe_set_ack(p, f->req_seq);
		fe_forward_to_client(lc, p);
		return;
	}
	rte_pktmbuf_free(p->m);
}

/*
 * A back-end's packet for a connection no flow here knows: it was held by a
 * front-end that died (or restarted), or freed here while the back-end still
 * talked.  The back-end gets its RST above; the client would otherwise wait
 * in silence for a response that will never come (its next packet would be
 * reset, but a client waiting for a response sends none).  The agent put the
 * packet in the client's numbering, so its seq is where the client's stream
 * stands: the RST lands exactly there (one past a SYN-ACK's ISN).  Only for a
 * packet the switch marked BACKEND, one that its agent marked on that
 * back-end's own port: a packet anyone could forge (a back-end's source
 * address sent from elsewhere) must not make us reset a client's connection.
 */
static void orphan_reset(struct fe_lcore *lc, const struct fe_pkt *p)
{
	struct fe_tuple t = {.saddr = lc->cfg->vip_be, .daddr = p->ip->dst_addr,
			     .sport = lc->cfg->vip_port_be, .dport = p->tcp->dst_port};

	if (mg_tos_dscp(p->ip->type_of_service) != MG_DSCP_BACKEND)
		return;
	lc->stats.pkt.orphan_reset++;
	fe_send_rst(lc, &t, p->seq + ((p->flags & F_SYN) ? 1 : 0));
}

/*
 * After the FIN the front-end sent in the client's name (an idle or a drain
 * close, fe_close_as_client()) the back-end's ACK field counts that FIN, a
 * byte the client never sent.  A client drops a segment that acknowledges
 * what it has not sent (RFC 793 3.9; Linux: "ack of unsent data"), and with
 * it the back-end's FIN: it would never see the close, and the back-end's
 * resent FINs would outlive the flow here and end in a reset.  The client
 * sees the ACK field stop at its own last byte.
 */
static void hide_our_fin(const struct fe_flow *f, struct fe_pkt *p)
{
	if (f->fe_fin && (p->flags & F_ACK) && SEQ_GT(p->ack, f->cli_fin_seq))
		fe_set_ack(p, f->cli_fin_seq);
}

/*
 * Our FIN in the client's name (fe_close_as_client()) carries the client's
 * numbers as the front-end last saw them.  While the switch carried the
 * flow, the client's later segments reached the back-end without us: its
 * TSval and acknowledgment there are newer than ours, and the back-end drops
 * a FIN whose TSval is older than the last it saw (PAWS, RFC 7323) or whose
 * acknowledgment lags too far (RFC 5961), answering with an ACK that does not
 * take it.  That ACK says what it expects: its TSecr is the client's latest
 * TSval, its TSval the back-end's clock, its seq everything the back-end
 * sent (which a connection quiet enough to be closed has had acknowledged).
 * Our FIN goes again with those, for each answer that teaches something
 * new; the answer itself is not the client's.  Returns 1 if it was that.
 */
static int refused_our_fin(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	uint32_t tsval, tsecr;
	int newer = 0;

	if (!f->fe_fin || f->be_fin || p->len || (p->flags & (F_SYN | F_FIN | F_RST)) ||
	    !(p->flags & F_ACK) || p->ack != f->cli_fin_seq)
		return 0;
	if (SEQ_GT(p->seq, f->cli_ack)) {
		f->cli_ack = p->seq;
		newer = 1;
	}
	if (f->ts_ok && fe_pkt_timestamps(p, &tsval, &tsecr) && SEQ_GT(tsecr, f->cli_tsval)) {
		f->cli_tsval = tsecr;
		f->cli_tsecr = tsval;
		newer = 1;
	}
	if (!newer)
		return 0;
	lc->stats.pkt.fin_refreshed++;
	fe_our_fin_again(lc, f);
	rte_pktmbuf_free(p->m);
	return 1;
}

void fe_server_input(struct fe_lcore *lc, struct fe_pkt *p, int b)
{
	struct mg_flow_key key = {
		.client_ip_be = p->ip->dst_addr,
		.client_port_be = p->tcp->dst_port,
	};
	struct fe_flow *f = fe_flow_lookup(&lc->ft, &key);
	struct fe_tuple t = {.saddr = key.client_ip_be, .daddr = p->ip->src_addr,
			     .sport = key.client_port_be, .dport = p->tcp->src_port};
	uint32_t end;

	lc->stats.pkt.from_backend++;
	if (!f || !f->has_backend || f->backend != b) {
		/* A back-end talking about a connection we do not splice (any
		 * more): a late SYN-ACK after a timeout, or after a move to another
		 * cluster.  Reset it so it does not linger. */
		if (f)
			lc->stats.pkt.stale_backend++;
		else
			lc->stats.pkt.no_flow++;
		if (!(p->flags & F_RST)) {
			fe_send_rst(lc, &t, (p->flags & F_ACK) ? p->ack : 0);
			if (!f)
				orphan_reset(lc, p);
		}
		rte_pktmbuf_free(p->m);
		return;
	}

	switch (f->state) {
	case FE_FS_SYN_SENT:
		if (p->flags & F_RST) {
			lc->stats.err.backend_refused++;
			rte_pktmbuf_free(p->m);
			fe_backend_failed(lc, f);
			return;
		}
		if ((p->flags & (F_SYN | F_ACK)) == F_ACK && !f->tw_reset) {
			/*
			 * A bare ACK for our SYN: the back-end holds this 4-tuple
			 * in TIME_WAIT and found the SYN not newer (RFC 7323
			 * PAWS: e.g. the client reached that back-end directly
			 * before, with another timestamp clock).  As RFC 793
			 * says, reset with the sequence number it acknowledges,
			 * which ends the TIME_WAIT, and send the SYN again now
			 * instead of after a retransmission timeout.  Once per
			 * flow, so a back-end that keeps answering so cannot
			 * make us loop.
			 */
			f->tw_reset = 1;
			lc->stats.pkt.time_wait_reset++;
			fe_send_rst(lc, &t, p->ack);
			rte_pktmbuf_free(p->m);
			fe_backend_syn(lc, f);
			return;
		}
		if ((p->flags & (F_SYN | F_ACK)) != (F_SYN | F_ACK) || p->ack != f->req_seq) {
			lc->stats.pkt.unexpected++;
			rte_pktmbuf_free(p->m);
			return;
		}
		rte_pktmbuf_free(p->m);
		if (p->seq != f->syn_ack) {
			/* No agent (or a broken one) on this back-end: its bytes
			 * would not line up with the client's view.  Refuse it. */
			lc->stats.err.agent_mismatch++;
			fe_send_rst(lc, &t, f->req_seq);
			fe_backend_failed(lc, f);
			return;
		}
		fe_backend_joined(lc, f);
		return;
	case FE_FS_CONFIRMING:
	case FE_FS_SPLICED:
	case FE_FS_NEXT_HEADER:
	case FE_FS_DRAIN:
	case FE_FS_CLOSING:
		if (p->flags & F_SYN) {
			/* Our handshake ACK was lost: say it again. */
			uint32_t seq = f->state == FE_FS_NEXT_HEADER || f->state == FE_FS_CONFIRMING ||
				       f->state == FE_FS_DRAIN ? fe_backend_rcv_next(f) : f->cli_next;

			rte_pktmbuf_free(p->m);
			uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);

			if (p->seq == f->syn_ack &&
			    fe_send_segment(lc, &t, seq, f->syn_ack + 1, F_ACK, f->cli_win, opt, optlen,
					    NULL, 0) == 0)
				lc->stats.pkt.ack_sent++;
			return;
		}
		fe_touch(lc, f);
		if (f->rtx && (p->flags & F_ACK))
			fe_rtx_acked(lc, f, p->ack);
		end = p->seq + p->len;
		if (SEQ_GT(end, f->be_next))
			f->be_next = end;
		if (f->state == FE_FS_DRAIN) {
			server_draining(lc, f, p);
			return;
		}
		if (refused_our_fin(lc, f, p))
			return;
		hide_our_fin(f, p);
		if (f->close_response && !f->close_hdr_done && p->len)
			fe_close_header(lc, f, p);
		if (p->flags & F_RST) {
			lc->stats.err.backend_reset++;
			f->reset = 1;
			fe_entry_remove(lc, f);
			fe_forward_to_client(lc, p);
			fe_enter_time_wait(lc, f);
			return;
		}
		if (p->len && f->entry == FE_ENTRY_NONE) {
			/* Response bytes still come through us: hand the flow over
			 * once there are enough of them (offload_after_bytes). */
			f->be_bytes = p->len < UINT32_MAX - f->be_bytes ? f->be_bytes + p->len
								       : UINT32_MAX;
			if (f->state == FE_FS_SPLICED)
				fe_offload_apply(lc, f);
		}
		if ((p->flags & F_FIN) && !f->be_fin) {
			f->be_fin = 1;
			fe_forward_to_client(lc, p);
			if (f->cli_fin && !f->cli_fin_sent)
				fe_fin_defer(lc, f);    /* the response is over: the client's FIN goes */
			else
				fe_fin_seen(lc, f);
			return;
		}
		fe_forward_to_client(lc, p);
		return;
	case FE_FS_TIME_WAIT:
		if (f->reset) {
			rte_pktmbuf_free(p->m);
			return;
		}
		hide_our_fin(f, p);
		fe_forward_to_client(lc, p);
		return;
	default:
		lc->stats.pkt.unexpected++;
		rte_pktmbuf_free(p->m);
	}
}
