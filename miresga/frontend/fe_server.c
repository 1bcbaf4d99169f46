/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The back-end side of the state machine: every packet from a back-end to a
 * client that the switch hands the front-end.  The SYN-ACK to our SYN (with
 * the sequence number the agent must have put there), then the response
 * bytes and the close, forwarded with the VIP as source until the switch
 * carries the flow; a back-end talking about a connection the front-end no
 * longer splices is reset.
 */
#include "fe_splice.h"

void fe_server_input(struct fe_lcore *lc, struct fe_pkt *p, int b)
{
	struct mg_flow_key key = {
		.client_ip_be = p->ip->dst_addr,
		.client_port_be = p->tcp->dst_port,
	};
	struct fe_flow *f = fe_flow_lookup(&lc->ft, &key);
	struct fe_tuple t = {.saddr = key.client_ip_be, .daddr = p->ip->src_addr,
			     .sport = key.client_port_be, .dport = p->tcp->src_port};

	lc->stats.pkt.from_backend++;
	if (!f || !f->has_backend || f->backend != b) {
		/* A back-end talking about a connection we do not splice (any
		 * more): a late SYN-ACK after a timeout, or after a move to another
		 * cluster.  Reset it so it does not linger. */
		if (f)
			lc->stats.pkt.stale_backend++;
		else
			lc->stats.pkt.no_flow++;
		if (!(p->flags & F_RST))
			fe_send_rst(lc, &t, (p->flags & F_ACK) ? p->ack : 0);
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
	case FE_FS_SPLICED:
	case FE_FS_NEXT_HEADER:
	case FE_FS_CLOSING:
		if (p->flags & F_SYN) {
			/* Our handshake ACK was lost: say it again. */
			uint32_t seq = f->state == FE_FS_NEXT_HEADER ? f->req_seq : f->cli_next;

			rte_pktmbuf_free(p->m);
			uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);

			if (p->seq == f->syn_ack &&
			    fe_send_segment(lc, &t, seq, f->syn_ack + 1, F_ACK, f->cli_win, opt, optlen,
					    NULL, 0) == 0)
				lc->stats.pkt.ack_sent++;
			return;
		}
		if (p->flags & F_RST) {
			lc->stats.err.backend_reset++;
			f->reset = 1;
			fe_forward_to_client(lc, p);
			fe_enter_time_wait(lc, f);
			return;
		}
		if (f->state != FE_FS_NEXT_HEADER)
			fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
		if (p->len && !f->installed) {
			/* Response bytes still come through us: hand the flow over
			 * once there are enough of them (offload_after_bytes). */
			f->be_bytes = p->len < UINT32_MAX - f->be_bytes ? f->be_bytes + p->len
								       : UINT32_MAX;
			if (f->state != FE_FS_NEXT_HEADER)
				fe_offload_apply(lc, f);
		}
		if ((p->flags & F_FIN) && !f->be_fin) {
			f->be_fin = 1;
			fe_forward_to_client(lc, p);
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
		fe_forward_to_client(lc, p);
		return;
	default:
		lc->stats.pkt.unexpected++;
		rte_pktmbuf_free(p->m);
	}
}
