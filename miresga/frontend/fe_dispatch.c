/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Requests on a connection: where one ends (header bytes, then body bytes,
 * fe_request_track in fe_splice.h), parsing and routing a complete header to
 * a cluster, and releasing the held bytes of a routed request to the joined
 * back-end.  The front-end decides again for every request of a kept-alive
 * connection: the same back-end if the cluster is the same, a new back-end
 * connection with the current sequence numbers otherwise, once the old
 * back-end's response is over (fe_drain.c).
 */
#include "fe_splice.h"

/* Start holding a new request on a joined connection, at seq. */
void fe_next_request(struct fe_lcore *lc, struct fe_flow *f, uint32_t seq)
{
	f->req_seq = seq;
	f->held_segs = 0;
	http_scan_init(&f->scan);
	f->scan_result = HTTP_SCAN_MORE;
	fe_flow_set_state(&lc->ft, f, FE_FS_NEXT_HEADER);
	fe_timer_arm(&lc->ft, f, FE_TIMER_REQUEST, lc->now_us);
}

/* A complete header is held: parse, route, and act on the decision. */
static void dispatch(struct fe_lcore *lc, struct fe_flow *f)
{
	struct http_request req;
	uint32_t hdr_len = f->scan.pos;
	int offload = 1, cluster;
	int want;

	fe_hold_linearize(lc, f, hdr_len);
	if (http_parse(lc->scratch, hdr_len, &req)) {
		if (req.path_refused)
			lc->stats.err.path_refused++;
		fe_answer(lc, f, 400);
		return;
	}
	lc->stats.requests++;
	f->requests++;
	cluster = fe_route(lc->cfg, &req, &offload);
	if (cluster < 0) {
		fe_answer(lc, f, 404);
		return;
	}
	http_body_init(&f->body, &req);
	f->hdr_left = hdr_len;
	/* Past an Upgrade the bytes are another protocol: forward blindly. */
	if (req.upgrade) {
		f->opaque = 1;
		lc->stats.decision.opaque++;
	}
	if (!offload)
		lc->stats.decision.no_offload++;
	want = offload && lc->offload && lc->offload->enabled && !f->drain_close;
	/* Bytes held from now on are this request's body: not scanned. */
	http_scan_init(&f->scan);
	f->scan_result = HTTP_SCAN_MORE;
	if (f->drain_close && !f->pipelined) {
		/* Draining: its response comes through us and says Connection:
		 * close (fe_close_header()), unless the client has sent more than
		 * this request already (pipelined): that would go unanswered, and
		 * the next response we see might be an earlier request's.  Such a
		 * connection ends at a quiet moment instead. */
		uint64_t mine = hdr_len + (f->body.mode == HTTP_BODY_LENGTH ? f->body.left : 0);

		f->pipelined = f->body.mode == HTTP_BODY_CHUNKED || f->held_len > mine;
		f->close_response = !f->pipelined;
		f->close_hdr_done = 0;
	}

	if (f->state == FE_FS_HEADER) {
		lc->stats.decision.first++;
		f->cluster = (uint8_t)cluster;
		f->offload = (uint8_t)want;
		f->tries = 0;
		fe_backend_open(lc, f);
		return;
	}
	if (f->has_backend && cluster == f->cluster) {
		lc->stats.decision.same_backend++;
		f->offload = (uint8_t)want;
		/* Where the response stream stands as this request goes out. */
		f->resp_mark = SEQ_GT(f->be_next, f->cli_ack) ? f->be_next : f->cli_ack;
		fe_flow_set_state(&lc->ft, f, FE_FS_SPLICED);
		if (f->timer != FE_TIMER_RTX)
			fe_timer_spliced(lc, f);
		fe_offload_apply(lc, f);
		return;
	}
	/* Another cluster: once the old back-end's response is over, end its
	 * connection after the requests it has and open one to the new cluster
	 * with the numbers where the old stream ended. */
	lc->stats.decision.other_backend++;
	f->next_cluster = (uint8_t)cluster;
	f->next_offload = (uint8_t)want;
	if (f->has_backend) {
		fe_drain_start(lc, f);
		return;
	}
	f->cluster = (uint8_t)cluster;
	f->offload = (uint8_t)want;
	f->tries = 0;
	fe_backend_open(lc, f);
}

/*
 * Send a held payload-only mbuf m (its first byte at seq) to the back-end.
 * Bytes we acknowledged ourselves go as a copy: m stays, until the back-end
 * acknowledges it (fe_ack.c).
 */
static void release_one(struct fe_lcore *lc, struct fe_flow *f, struct rte_mbuf *m, uint32_t seq,
			uint8_t flags, const struct fe_tuple *t, const uint8_t *opt, uint8_t optlen)
{
	if (f->own_acked && SEQ_LT(seq, f->own_ack)) {
		struct rte_mbuf *copy = fe_pkt_new(lc, rte_pktmbuf_mtod(m, void *), m->data_len);

		if (copy) {
			fe_rtx_keep(lc, f, m, seq);
			m = copy;
		} else {
			lc->stats.err.no_mbuf++;
		}
	}
	if (fe_pkt_push_tcp(lc, m, t, seq, f->cli_ack, flags, f->cli_win, opt, optlen) == 0) {
		lc->stats.pkt.released++;
		fe_tx(lc, m);
	} else {
		rte_pktmbuf_free(m);
	}
}

/*
 * Forward held bytes to the joined back-end, with fresh headers, as far as
 * the current request goes; a following request's bytes stay held and are
 * scanned as a new header.
 */
static void release_held(struct fe_lcore *lc, struct fe_flow *f)
{
	struct rte_mbuf *m = f->held;
	uint32_t seq = f->req_seq;
	struct fe_tuple t = fe_to_backend(lc, f);
	uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);

	f->held = f->held_tail = NULL;
	f->held_len = 0;
	f->held_mbufs = 0;
	while (m) {
		struct rte_mbuf *next = m->next;
		uint16_t len = m->data_len;
		uint32_t k;

		m->next = NULL;
		m->nb_segs = 1;
		lc->stats.held_mbufs--;
		k = fe_request_track(lc, f, rte_pktmbuf_mtod(m, const uint8_t *), len);
		if (k < len) {
			/* The request ends inside this segment: its head goes now,
			 * the rest starts the next request. */
			struct rte_mbuf *head = k ? fe_pkt_new(lc, rte_pktmbuf_mtod(m, void *),
							       (uint16_t)k) : NULL;

			if (k && !head) {
				/* No mbuf to cut with: keep the connection on this
				 * back-end and stop routing its requests. */
				lc->stats.err.no_mbuf++;
				f->opaque = 1;
				goto send_whole;
			}
			if (head) {
				rte_pktmbuf_adj(m, (uint16_t)k);
				lc->stats.pkt.split++;
				release_one(lc, f, head, seq, F_ACK | F_PSH, &t, opt, optlen);
			}
			fe_next_request(lc, f, seq + k);
			fe_hold_mbuf(lc, f, m);
			while (next) {
				struct rte_mbuf *n2 = next->next;

				lc->stats.held_mbufs--; /* hold_mbuf counts it again */
				fe_hold_mbuf(lc, f, next);
				next = n2;
			}
			return;
		}
send_whole:
		release_one(lc, f, m, seq, F_ACK | (next ? 0 : F_PSH), &t, opt, optlen);
		seq += len;
		m = next;
	}
}

/*
 * Move a flow as far as its held bytes allow: dispatch complete headers,
 * release bytes to a joined back-end, start the wait of a client's FIN
 * that came behind them (fe_drain.c), answer what cannot be served.  A loop, not recursion: pipelined
 * requests can chain dispatch -> release -> dispatch many times.
 */
void fe_progress(struct fe_lcore *lc, struct fe_flow *f)
{
	for (;;) {
		switch (f->state) {
		case FE_FS_HEADER:
		case FE_FS_NEXT_HEADER:
			if (f->scan_result == HTTP_SCAN_BAD) {
				fe_answer(lc, f, 400);
				return;
			}
			if (f->scan_result == HTTP_SCAN_TOO_LARGE) {
				fe_answer(lc, f, 431);
				return;
			}
			if (f->scan_result == HTTP_SCAN_DONE) {
				dispatch(lc, f);
				continue;
			}
			if (f->cli_fin) {
				/* The client closed inside a header: truncated. A client
				 * that connected and closed without a byte just gets FIN. */
				fe_answer(lc, f, (f->state == FE_FS_HEADER && !f->held_len) ? 0 : 400);
			}
			return;
		case FE_FS_SPLICED:
			if (f->held) {
				release_held(lc, f);
				continue;
			}
			if (f->cli_fin && !f->cli_fin_sent)
				fe_fin_defer(lc, f);
			return;
		default:
			return;
		}
	}
}
