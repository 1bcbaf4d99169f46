/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The client side of the state machine: every packet from a client to the
 * VIP.  Only a packet the switch admitted with its cookie starts a flow;
 * after that the flow's state says what a segment means: request bytes to
 * hold while the front-end parses or waits for a back-end (acknowledged
 * here while the header is incomplete), bytes to forward (cut at a request
 * boundary) once spliced, the client's half of the close (held back until
 * the response is over), or an answer the front-end owes.
 */
#include "fe_splice.h"

/* The client closed (a FIN at `end`, on p): the FIN waits for the response. */
static void client_fin(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p, uint32_t end)
{
	f->cli_fin = 1;
	f->cli_fin_seq = end;
	fe_strip_fin(p);
	fe_forward_to_backend(lc, f, p);
	fe_fin_defer(lc, f);
}

/* Is the flow holding a header that is not complete yet? */
static int header_incomplete(const struct fe_flow *f)
{
	return (f->state == FE_FS_HEADER || f->state == FE_FS_NEXT_HEADER) &&
	       f->scan_result == HTTP_SCAN_MORE && !f->cli_fin;
}

/* A client segment on a joined connection (SPLICED). */
static void client_spliced(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	uint32_t end = p->seq + p->len;
	uint32_t off, k;
	struct rte_mbuf *tail;

	if (!p->len && !(p->flags & F_FIN)) {
		fe_forward_to_backend(lc, f, p);
		return;
	}
	if (SEQ_GT(p->seq, f->cli_next)) {
		/* A gap: the request tracker cannot skip it; the client resends. */
		lc->stats.pkt.out_of_order++;
		rte_pktmbuf_free(p->m);
		return;
	}
	if (SEQ_LT(end, f->cli_next) || (end == f->cli_next && (!(p->flags & F_FIN) || f->cli_fin))) {
		/* Already forwarded once: the back-end may have lost it. */
		lc->stats.pkt.retransmit_fwd++;
		fe_forward_to_backend(lc, f, p);
		return;
	}
	off = f->cli_next - p->seq;
	f->cli_next = end;
	k = off + fe_request_track(lc, f, p->data + off, p->len - off);
	if (k == p->len) {
		if (p->flags & F_FIN) {
			client_fin(lc, f, p, end);
			return;
		}
		fe_forward_to_backend(lc, f, p);
		return;
	}
	/* The current request ended at payload byte k: the rest is a new one. */
	if (p->flags & F_FIN) {
		f->cli_fin = 1;
		f->cli_fin_seq = end;
	}
	if (k == 0) {
		fe_next_request(lc, f, p->seq);
		rte_pktmbuf_adj(p->m, p->hdr_len);
		lc->stats.pkt.held++;
		fe_hold_mbuf(lc, f, p->m);
	} else {
		tail = fe_split_segment(lc, p, (uint16_t)k);
		if (!tail) {
			/* No mbuf to cut with: keep the connection on this back-end
			 * and stop routing its requests. */
			lc->stats.err.no_mbuf++;
			f->opaque = 1;
			if (p->flags & F_FIN) {
				client_fin(lc, f, p, end);
				return;
			}
			fe_forward_to_backend(lc, f, p);
			return;
		}
		fe_forward_to_backend(lc, f, p);
		fe_next_request(lc, f, p->seq + k);
		lc->stats.pkt.held++;
		fe_hold_mbuf(lc, f, tail);
	}
	fe_progress(lc, f);
	if (header_incomplete(f))
		f->held_segs = 1;   /* the first held segment of the next request */
}

/*
 * A client segment while a request is held (HEADER, SYN_SENT, CONFIRMING,
 * NEXT_HEADER, DRAIN).  `acked`: the segment acknowledged more of the
 * response than the client had before.
 */
static void client_holding(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p, int acked)
{
	uint32_t end = p->seq + p->len;
	int joined = f->state != FE_FS_HEADER && f->state != FE_FS_SYN_SENT;

	if (!p->len && !(p->flags & F_FIN)) {
		/* A pure ACK.  Once joined, it may acknowledge response bytes the
		 * back-end is waiting on; before that nobody needs it. */
		if (joined) {
			if (f->state == FE_FS_DRAIN) {
				fe_touch(lc, f);
				fe_client_fixup(f, p);
			}
			fe_forward_to_backend(lc, f, p);
			if (f->state == FE_FS_DRAIN && acked)
				fe_drain_progress(lc, f);
		} else {
			rte_pktmbuf_free(p->m);
		}
		return;
	}
	if (SEQ_GT(p->seq, f->cli_next)) {
		lc->stats.pkt.out_of_order++;
		rte_pktmbuf_free(p->m);
		return;
	}
	if (SEQ_LT(end, f->cli_next) || (end == f->cli_next && (!(p->flags & F_FIN) || f->cli_fin))) {
		/* Bytes before the held request were forwarded already and the
		 * back-end may have lost them: pass that part on again.  Bytes we
		 * hold go when we release them. */
		if (f->state == FE_FS_NEXT_HEADER && SEQ_LT(p->seq, f->req_seq)) {
			if (SEQ_GT(end, f->req_seq))
				fe_trim_segment(p, (uint16_t)(f->req_seq - p->seq));
			lc->stats.pkt.retransmit_fwd++;
			fe_forward_to_backend(lc, f, p);
			return;
		}
		lc->stats.pkt.duplicate++;
		rte_pktmbuf_free(p->m);
		/* Sent again: the client waits for an ACK only we can give. */
		if (header_incomplete(f) || f->own_acked)
			fe_ack_held(lc, f);
		return;
	}
	if (fe_hold_segment(lc, f, p, f->cli_next - p->seq)) {
		if (f->own_acked)
			fe_ack_held(lc, f);     /* the window we gave is full: say so again */
		return;
	}
	if (f->state == FE_FS_DRAIN && acked) {
		/* The held segment's ACK is news for the old back-end. */
		struct fe_tuple t = fe_to_backend(lc, f);
		uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);

		fe_touch(lc, f);
		if (fe_send_segment(lc, &t, fe_backend_rcv_next(f), f->cli_ack, F_ACK, f->cli_win, opt,
				    optlen, NULL, 0) == 0)
			lc->stats.pkt.ack_sent++;
		fe_drain_progress(lc, f);
		return;
	}
	fe_progress(lc, f);
	if (header_incomplete(f) && ++f->held_segs >= 2)
		fe_ack_held(lc, f);
}

/*
 * Is this client packet the start of a new connection on the key of a flow
 * that is over (TIME_WAIT)?  TCP's own rule for a TIME_WAIT socket (RFC 1122
 * 4.2.2.13, Linux tcp_timewait_state_process): a sequence number after the
 * end of the old connection's stream.  A client that reuses a port picks a
 * clock-driven ISN (RFC 6528) that is far after the old one, and the switch
 * has checked the packet's cookie (ADMIT).  Only an ACK without SYN/RST can
 * start a flow here, as in fe_client_input.
 */
static int new_incarnation(const struct fe_flow *f, const struct fe_pkt *p)
{
	uint32_t end;

	if (f->state != FE_FS_TIME_WAIT || (p->flags & (F_SYN | F_RST)) || !(p->flags & F_ACK))
		return 0;
	/* The old stream ended after the client's FIN, or where we last saw it. */
	end = f->cli_fin ? f->cli_fin_seq + 1 : f->cli_next;
	return SEQ_GT(p->seq, end);
}

/*
 * A client segment after the front-end closed an idle connection in the
 * client's name (our FIN is at cli_fin_seq).  The client's own FIN is
 * acknowledged here, as the back-end would have; new data is too late (the
 * back-end is closing): both ends are reset; the rest goes on, one past our FIN.
 * A client that closes as soon as it reads the back-end's FIN acknowledges
 * that FIN in its own FIN's segment: the acknowledgement goes on without the
 * FIN, or the back-end would send its FIN again until it gave up, after this
 * flow is gone (a front-end without the flow then resets the client).
 * `acked`: the segment acknowledged more of the back-end's stream.
 */
static void client_after_our_fin(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p,
				 int acked)
{
	struct fe_tuple t = fe_to_client(lc, f);

	if (p->len && SEQ_GT(p->seq + p->len, f->cli_fin_seq)) {
		lc->stats.err.idle_close_race++;
		rte_pktmbuf_free(p->m);
		fe_reset_both(lc, f);
		return;
	}
	if (p->flags & F_FIN) {
		uint8_t opt[12], optlen = fe_ts_opt(f, 1, opt);

		lc->stats.pkt.fin_absorbed++;
		if (fe_send_segment(lc, &t, p->ack, f->cli_fin_seq + 1, F_ACK, fe_answer_window(lc, f),
				    opt, optlen, NULL, 0) == 0)
			lc->stats.pkt.ack_sent++;
		if (!acked) {
			rte_pktmbuf_free(p->m);
			return;
		}
		fe_strip_fin(p);
	}
	if (!f->has_backend || f->reset) {
		rte_pktmbuf_free(p->m);
		return;
	}
	fe_client_fixup(f, p);
	fe_forward_to_backend(lc, f, p);
}

/* A client segment after one side closed (CLOSING); `acked` as in client_holding. */
static void client_closing(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p, int acked)
{
	if (f->fe_fin) {
		client_after_our_fin(lc, f, p, acked);
		return;
	}
	if (f->cli_fin && !f->cli_fin_sent) {
		/* The client's FIN waits: its ACKs of the rest of the response go
		 * on without it; its FIN sent again with nothing new is absorbed
		 * (passed on, it would be a duplicate ACK to a back-end that may
		 * be sending). */
		if (p->flags & F_FIN) {
			lc->stats.pkt.fin_absorbed++;
			if (!p->len && !acked) {
				rte_pktmbuf_free(p->m);
				return;
			}
		}
		fe_client_fixup(f, p);
		fe_forward_to_backend(lc, f, p);
		return;
	}
	if ((p->flags & F_FIN) && !f->cli_fin) {
		if (!f->be_fin) {
			client_fin(lc, f, p, p->seq + p->len);
			return;
		}
		/* The back-end closed first: this FIN ends the connection. */
		f->cli_fin = 1;
		f->cli_fin_seq = p->seq + p->len;
		f->cli_fin_sent = 1;
		fe_entry_remove_with(lc, f, p);
		fe_forward_to_backend(lc, f, p);
		fe_fin_seen(lc, f);
		return;
	}
	fe_forward_to_backend(lc, f, p);
}

/* No flow for this packet: create one if the switch admitted it. */
static struct fe_flow *client_new_flow(struct fe_lcore *lc, struct fe_pkt *p,
				       const struct mg_flow_key *key)
{
	struct fe_tuple t = {.saddr = lc->cfg->vip_be, .daddr = key->client_ip_be,
			     .sport = lc->cfg->vip_port_be, .dport = key->client_port_be};
	uint8_t mark = mg_tos_dscp(p->ip->type_of_service);
	struct fe_flow *f;

	if (p->flags & F_SYN) {
		/* The switch answers SYNs. */
		lc->stats.pkt.unexpected++;
		rte_pktmbuf_free(p->m);
		return NULL;
	}
	if (lc->cfg->require_admit && mark != MG_DSCP_ADMIT) {
		/* No proof: never state.  A connection the switch knows (after a
		 * restart of ours) gets one RST, so its client starts over; the
		 * options it negotiated are lost with its cookie. */
		if (mark == MG_DSCP_KNOWN && (p->flags & F_ACK) && !(p->flags & F_RST)) {
			lc->stats.pkt.known_reset++;
			fe_send_rst(lc, &t, p->ack);
		} else {
			lc->stats.pkt.unadmitted++;
		}
		rte_pktmbuf_free(p->m);
		return NULL;
	}
	/* An ACK (the handshake's last packet, or request data if that was
	 * lost) is all that starts a flow here.  It passed the switch's cookie
	 * check, so ack - 1 is s. */
	if ((p->flags & F_RST) || !(p->flags & F_ACK) || ((p->flags & F_FIN) && !p->len)) {
		lc->stats.pkt.no_flow++;
		if (!(p->flags & F_RST) && (p->flags & F_ACK))
			fe_send_rst(lc, &t, p->ack);
		rte_pktmbuf_free(p->m);
		return NULL;
	}
	f = fe_flow_create(&lc->ft, key, FE_FS_HEADER);
	if (!f && fe_evict_waiting(lc, NULL, 0)) {
		/* Full of connections that never asked for anything. */
		lc->stats.err.evicted_for_flow++;
		f = fe_flow_create(&lc->ft, key, FE_FS_HEADER);
	}
	if (!f) {
		lc->stats.err.flow_table_full++;
		fe_send_rst(lc, &t, p->ack);
		rte_pktmbuf_free(p->m);
		return NULL;
	}
	f->s_isn = p->ack - 1;
	f->drain_close = lc->draining;
	f->cli_next = p->seq;
	f->cli_ack = p->ack;
	f->req_seq = p->seq;
	f->cli_win = p->win;
	/* The client's first segment after the handshake tells whether it
	 * agreed to timestamps with the switch. */
	f->ts_ok = (uint8_t)fe_pkt_timestamps(p, &f->cli_tsval, &f->cli_tsecr);
	http_scan_init(&f->scan);
	f->scan_result = HTTP_SCAN_MORE;
	fe_timer_arm(&lc->ft, f, FE_TIMER_REQUEST, lc->now_us);
	return f;
}

void fe_client_input(struct fe_lcore *lc, struct fe_pkt *p)
{
	struct mg_flow_key key = {
		.client_ip_be = p->ip->src_addr,
		.client_port_be = p->tcp->src_port,
	};
	struct fe_flow *f = fe_flow_lookup(&lc->ft, &key);
	int acked = 0;

	lc->stats.pkt.from_client++;
	if (f && new_incarnation(f, p) &&
	    (!lc->cfg->require_admit || mg_tos_dscp(p->ip->type_of_service) == MG_DSCP_ADMIT)) {
		/* The client reused the port of a connection we still hold in its
		 * grace period: forget the old one (and its switch entry) and take
		 * this packet as the first of a new connection. */
		lc->stats.pkt.reincarnation++;
		fe_flow_free(lc, f);
		f = NULL;
	}
	if (!f && !(f = client_new_flow(lc, p, &key)))
		return;

	if ((p->flags & F_ACK) && SEQ_GT(p->ack, f->cli_ack)) {
		f->cli_ack = p->ack;
		acked = 1;
	}
	f->cli_win = p->win;
	if (f->ts_ok) {
		uint32_t tsval, tsecr;

		if (fe_pkt_timestamps(p, &tsval, &tsecr)) {
			f->cli_tsval = tsval;
			f->cli_tsecr = tsecr;
		}
	}

	if (p->flags & F_RST) {
		if (f->reset || f->state == FE_FS_ANSWERED || f->state == FE_FS_TIME_WAIT) {
			rte_pktmbuf_free(p->m);
			if (f->state == FE_FS_ANSWERED)
				fe_flow_free(lc, f);
			return;
		}
		lc->stats.err.client_reset++;
		f->reset = 1;
		if (f->state == FE_FS_SYN_SENT || f->state == FE_FS_CONFIRMING ||
		    f->state == FE_FS_NEXT_HEADER || f->state == FE_FS_DRAIN) {
			/* The back-end has bytes up to req_seq; an RST elsewhere in
			 * its window would only earn a challenge ACK (RFC 5961). */
			fe_backend_abort(lc, f, fe_backend_rcv_next(f));
			rte_pktmbuf_free(p->m);
		} else if (f->has_backend) {
			if (f->fe_fin || (f->cli_fin && !f->cli_fin_sent))
				fe_client_fixup(f, p);
			fe_entry_remove_with(lc, f, p);
			fe_forward_to_backend(lc, f, p);
		} else {
			rte_pktmbuf_free(p->m);
		}
		fe_enter_time_wait(lc, f);
		return;
	}
	if (p->flags & F_SYN) {
		lc->stats.pkt.unexpected++;
		rte_pktmbuf_free(p->m);
		return;
	}

	switch (f->state) {
	case FE_FS_HEADER:
	case FE_FS_SYN_SENT:
	case FE_FS_CONFIRMING:
	case FE_FS_NEXT_HEADER:
	case FE_FS_DRAIN:
		client_holding(lc, f, p, acked);
		break;
	case FE_FS_SPLICED:
		fe_touch(lc, f);
		client_spliced(lc, f, p);
		break;
	case FE_FS_CLOSING:
		fe_touch(lc, f);
		client_closing(lc, f, p, acked);
		break;
	case FE_FS_TIME_WAIT:
		if (f->answered)
			fe_client_answered(lc, f, p);
		else if (f->fe_fin)
			client_after_our_fin(lc, f, p, acked);
		else if (f->has_backend && !f->reset)
			/* The last ACK of the close still has to reach the back-end. */
			fe_forward_to_backend(lc, f, p);
		else
			rte_pktmbuf_free(p->m);
		break;
	case FE_FS_ANSWERED:
		fe_client_answered(lc, f, p);
		break;
	default:
		rte_pktmbuf_free(p->m);
	}
}
