/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The splice state machine: steps 2, 3, 6, 7 and 8 of the packet walk in
 * DESIGN.md section 3, for one packet or one timer at a time.
 *
 * Names: c = client ISN, s = switch cookie ISN.  Every sequence number here
 * is in the client's view.  Client->server bytes keep the client's numbers
 * end to end; server->client bytes are shifted by the back-end's agent onto
 * the numbers the switch's cookie started (s+1 is the first response byte),
 * so the front-end forwards without translating anything.  The one place it
 * chooses numbers is a back-end SYN: seq = (first request byte) - 1 and, in
 * the ack field with the ACK flag off, (first response byte the client
 * expects) - 1.  For a new connection that is seq c, ack field s; when a
 * keep-alive connection moves to another back-end it is the current numbers,
 * so the new back-end's bytes continue the client's stream seamlessly.
 *
 * The front-end never acknowledges client data itself (the back-end does,
 * once the request reaches it) and never retransmits forwarded data: it
 * holds a request header until it can route it, and drops segments that
 * arrive out of order while it holds or parses, so the client's own
 * retransmission fills the gap.  The only bytes it originates are its error
 * answers, which it retransmits until acknowledged.
 */
#include <stdio.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_hash.h>
#include <rte_malloc.h>
#include <rte_tcp.h>

#include "fe_lcore.h"
#include "fe_pkt.h"

#define SEQ_LT(a, b) ((int32_t)((a) - (b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((a) - (b)) <= 0)
#define SEQ_GT(a, b) ((int32_t)((a) - (b)) > 0)

#define F_FIN RTE_TCP_FIN_FLAG
#define F_SYN RTE_TCP_SYN_FLAG
#define F_RST RTE_TCP_RST_FLAG
#define F_PSH RTE_TCP_PSH_FLAG
#define F_ACK RTE_TCP_ACK_FLAG

static void progress(struct fe_lcore *lc, struct fe_flow *f);

/* ------------------------------------------------------------- addresses */

static inline struct fe_tuple to_backend(const struct fe_lcore *lc, const struct fe_flow *f)
{
	const struct fe_backend_cfg *b = &lc->cfg->backends[f->backend];
	struct fe_tuple t = {
		.saddr = f->key.client_ip_be, .daddr = b->ip_be,
		.sport = f->key.client_port_be, .dport = b->port_be,
	};
	return t;
}

static inline struct fe_tuple to_client(const struct fe_lcore *lc, const struct fe_flow *f)
{
	struct fe_tuple t = {
		.saddr = lc->cfg->vip_be, .daddr = f->key.client_ip_be,
		.sport = lc->cfg->vip_port_be, .dport = f->key.client_port_be,
	};
	return t;
}

/* ---------------------------------------------------------- sending helpers */

static int send_segment(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq, uint32_t ack,
			uint8_t flags, uint16_t win, const uint8_t *opt, uint8_t optlen,
			const void *payload, uint16_t len)
{
	struct rte_mbuf *m = fe_pkt_new(lc, payload, len);

	if (!m) {
		lc->stats.err.no_mbuf++;
		return -1;
	}
	if (fe_pkt_push_tcp(lc, m, t, seq, ack, flags, win, opt, optlen)) {
		rte_pktmbuf_free(m);
		lc->stats.err.no_mbuf++;
		return -1;
	}
	fe_tx(lc, m);
	return 0;
}

/*
 * The timestamp option of a segment the front-end writes itself for a flow
 * whose client uses timestamps (RFC 7323 expects one on every segment).
 * Toward the back-end it speaks as the client: the client's latest TSval,
 * and as TSecr the server clock the client last echoed (the agent shifts it
 * onto the back-end's clock).  Toward the client it speaks as the server:
 * that same echoed value as TSval (the client's PAWS check wants no less),
 * and the client's TSval as TSecr.  Returns the option length, 0 if none.
 */
static uint8_t ts_option(const struct fe_flow *f, int to_client, uint8_t *opt)
{
	if (!f->ts_ok)
		return 0;
	return to_client ? fe_ts_option(opt, f->cli_tsecr, f->cli_tsval)
			 : fe_ts_option(opt, f->cli_tsval, f->cli_tsecr);
}

static void send_rst(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq)
{
	if (send_segment(lc, t, seq, 0, F_RST, 0, NULL, 0, NULL, 0) == 0)
		lc->stats.pkt.rst_sent++;
}

/* The window the front-end advertises in its own answers, in the client's
 * units: the switch's SYN-ACK set the scale if the client offered one. */
static inline uint16_t answer_window(const struct fe_lcore *lc, const struct fe_flow *f)
{
	if (mg_cookie_wscale(f->s_isn) == MG_COOKIE_NO_WSCALE)
		return 65535;
	return (uint16_t)(65535u >> lc->cfg->vip_wscale);
}

/* --------------------------------------------------------- offload entries */

static void offload_queue(struct fe_lcore *lc, struct fe_flow *f, uint8_t op)
{
	if (!lc->offload || !lc->offload->enabled)
		return;
	if (fe_offload_push(lc->offload, op, &f->key, f->backend, lc->cfg->vip_idx)) {
		lc->stats.offload.ring_full++;
		return;
	}
	if (op == MG_CTL_ADD) {
		lc->stats.offload.queued_add++;
		f->installed = 1;
	} else {
		lc->stats.offload.queued_del++;
		f->installed = 0;
	}
}

/*
 * Make the switch entry follow what the current rule says.  With
 * offload_after_bytes, a flow is handed over only once that many response
 * bytes have passed through us: a response that small is over before an
 * entry could be installed, so offloading it would only cost the switch's
 * control plane an ADD and a DEL (its insertion rate is the scarce resource
 * of a hardware switch; ~10^4 entries/s on a Tofino).
 */
static void offload_apply(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->offload && !f->installed && f->has_backend &&
	    f->be_bytes >= lc->cfg->offload_after_bytes)
		offload_queue(lc, f, MG_CTL_ADD);
	else if (!f->offload && f->installed)
		offload_queue(lc, f, MG_CTL_DEL);
}

/* ------------------------------------------------------------ held bytes */

static void hold_free(struct fe_lcore *lc, struct fe_flow *f)
{
	struct rte_mbuf *m = f->held;

	while (m) {
		struct rte_mbuf *next = m->next;

		m->next = NULL;
		m->nb_segs = 1;
		rte_pktmbuf_free_seg(m);
		lc->stats.held_mbufs--;
		m = next;
	}
	f->held = f->held_tail = NULL;
	f->held_len = 0;
}

/* Scan newly held bytes if the flow is waiting for a header to complete. */
static void scan_bytes(struct fe_lcore *lc, struct fe_flow *f, const uint8_t *p, uint32_t n)
{
	uint32_t used;

	if (f->scan_result != HTTP_SCAN_MORE ||
	    (f->state != FE_FS_HEADER && f->state != FE_FS_NEXT_HEADER))
		return;
	f->scan_result = (uint8_t)http_scan(&f->scan, p, n, lc->cfg->max_header_bytes, &used);
}

/* Append a payload-only mbuf to the held bytes. */
static void hold_mbuf(struct fe_lcore *lc, struct fe_flow *f, struct rte_mbuf *m)
{
	m->next = NULL;
	m->nb_segs = 1;
	m->pkt_len = m->data_len;
	if (f->held_tail)
		f->held_tail->next = m;
	else
		f->held = m;
	f->held_tail = m;
	f->held_len += m->data_len;
	lc->stats.held_mbufs++;
	scan_bytes(lc, f, rte_pktmbuf_mtod(m, const uint8_t *), m->data_len);
}

/* Copy the first n held bytes into lc->scratch (n <= max_header_bytes). */
static void hold_linearize(struct fe_lcore *lc, const struct fe_flow *f, uint32_t n)
{
	uint32_t off = 0;

	for (const struct rte_mbuf *m = f->held; m && off < n; m = m->next) {
		uint32_t take = m->data_len < n - off ? m->data_len : n - off;

		memcpy(lc->scratch + off, rte_pktmbuf_mtod(m, const uint8_t *), take);
		off += take;
	}
}

/*
 * Take an in-order client segment (or its new tail, `off` bytes in) into the
 * held bytes; the caller has checked it starts at or before cli_next.
 * Consumes p->m.  Returns -1 if the segment was dropped (hold limit).
 */
static int hold_segment(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p, uint32_t off)
{
	uint32_t fresh = p->len - off;

	if (fresh && f->held_len + fresh > lc->cfg->hold_limit_bytes) {
		lc->stats.pkt.hold_full++;
		rte_pktmbuf_free(p->m);
		return -1;
	}
	f->cli_next = p->seq + p->len;
	if ((p->flags & F_FIN) && !f->cli_fin) {
		f->cli_fin = 1;
		f->cli_fin_seq = f->cli_next;
	}
	if (!fresh) {
		rte_pktmbuf_free(p->m);
		return 0;
	}
	rte_pktmbuf_adj(p->m, (uint16_t)(p->hdr_len + off));
	lc->stats.pkt.held++;
	hold_mbuf(lc, f, p->m);
	return 0;
}

/* ----------------------------------------------------------- back-end side */

static void backend_release(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->has_backend) {
		fe_lb_detach(&lc->lb, f->backend);
		f->has_backend = 0;
	}
}

/* End our back-end connection; seq is the next byte it expects from us. */
static void backend_abort(struct fe_lcore *lc, struct fe_flow *f, uint32_t seq)
{
	struct fe_tuple t;

	if (!f->has_backend)
		return;
	t = to_backend(lc, f);
	send_rst(lc, &t, seq);
	if (f->installed)
		offload_queue(lc, f, MG_CTL_DEL);
	backend_release(lc, f);
}

/* SYN options replayed from the cookie's low byte: what the client offered
 * the switch, so the back-end negotiates exactly what the client expects;
 * and timestamps if the client's segments carry them (the agent takes the
 * TSecr as the base of the back-end's clock in the client's view). */
static uint8_t syn_options(const struct fe_flow *f, uint8_t *opt)
{
	uint32_t cookie = f->s_isn;
	uint16_t mss = mg_cookie_mss(cookie);
	uint32_t ws = mg_cookie_wscale(cookie);
	uint8_t n = 0;

	opt[n++] = 2;   /* MSS */
	opt[n++] = 4;
	opt[n++] = (uint8_t)(mss >> 8);
	opt[n++] = (uint8_t)mss;
	if (mg_cookie_sack(cookie)) {
		opt[n++] = 1;
		opt[n++] = 1;
		opt[n++] = 4; /* SACK permitted */
		opt[n++] = 2;
	}
	if (f->ts_ok)
		n = (uint8_t)(n + fe_ts_option(opt + n, f->cli_tsval, f->cli_tsecr));
	if (ws != MG_COOKIE_NO_WSCALE) {
		opt[n++] = 1;
		opt[n++] = 3; /* window scale */
		opt[n++] = 3;
		opt[n++] = (uint8_t)ws;
	}
	return n;
}

static void answer(struct fe_lcore *lc, struct fe_flow *f, int status);

/* The SYN to the current back-end; a retransmission is the same SYN, which
 * the agent recognises by its (seq, ack field) pair. */
static void backend_syn(struct fe_lcore *lc, struct fe_flow *f)
{
	uint32_t ws = mg_cookie_wscale(f->s_isn);
	uint32_t win = f->cli_win;
	uint8_t opt[24], optlen;
	struct fe_tuple t = to_backend(lc, f);

	/* A SYN's window is never scaled: give the client's real window. */
	if (ws != MG_COOKIE_NO_WSCALE)
		win <<= ws;
	if (win > 65535)
		win = 65535;
	optlen = syn_options(f, opt);
	if (send_segment(lc, &t, f->req_seq - 1, f->syn_ack, F_SYN, (uint16_t)win, opt, optlen,
			 NULL, 0) == 0) {
		if (f->syns++)
			lc->stats.pkt.syn_retransmit++;
		else
			lc->stats.pkt.syn_sent++;
	}
	fe_timer_arm(&lc->ft, f, FE_TIMER_SYN, lc->now_us);
}

/* Open a connection for the current request to the next back-end to try. */
static void backend_open(struct fe_lcore *lc, struct fe_flow *f)
{
	const struct fe_cluster_cfg *c = &lc->cfg->clusters[f->cluster];

	if (f->tries == 0)
		f->first_pick = (uint8_t)fe_lb_first(&lc->lb, f->cluster, f->key.client_ip_be,
						     lc->now_us);
	f->backend = (uint8_t)c->backends[(f->first_pick + f->tries) % c->n_backends];
	f->has_backend = 1;
	f->be_fin = 0;
	f->syns = 0;
	f->tw_reset = 0;
	fe_lb_attach(&lc->lb, f->backend);
	/* Everything below cli_ack reached the client; the new back-end's first
	 * byte must be cli_ack, so its ISN (after the agent) is cli_ack - 1. */
	f->syn_ack = f->cli_ack - 1;
	fe_flow_set_state(&lc->ft, f, FE_FS_SYN_SENT);
	backend_syn(lc, f);
}

/* The back-end did not take the SYN: try the cluster's next one, or 503. */
static void backend_failed(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_lb_failed(&lc->lb, f->backend, lc->now_us);
	backend_release(lc, f);
	if (++f->tries < lc->cfg->clusters[f->cluster].n_backends)
		backend_open(lc, f);
	else
		answer(lc, f, 503);
}

/* The back-end's SYN-ACK checked out: complete its handshake and splice. */
static void backend_joined(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t = to_backend(lc, f);
	uint8_t opt[12], optlen = ts_option(f, 0, opt);

	fe_lb_answered(&lc->lb, f->backend);
	if (send_segment(lc, &t, f->req_seq, f->syn_ack + 1, F_ACK, f->cli_win, opt, optlen, NULL,
			 0) == 0)
		lc->stats.pkt.ack_sent++;
	fe_flow_set_state(&lc->ft, f, FE_FS_SPLICED);
	fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
	offload_apply(lc, f);
	progress(lc, f);
}

/* ----------------------------------------------------------- our answers */

static void answer_send(struct fe_lcore *lc, struct fe_flow *f)
{
	char body[320];
	int len = 0;
	struct fe_tuple t = to_client(lc, f);
	uint32_t ack = f->cli_fin ? f->cli_fin_seq + 1 : f->cli_next;
	uint8_t opt[12], optlen = ts_option(f, 1, opt);

	if (f->status)
		len = http_error_response(f->status, body, sizeof(body));
	f->answer_len = (uint16_t)len;
	if (send_segment(lc, &t, f->answer_seq, ack, F_ACK | F_FIN | (len ? F_PSH : 0),
			 answer_window(lc, f), opt, optlen, body, (uint16_t)len) == 0) {
		lc->stats.pkt.answer_sent++;
		lc->stats.pkt.fin_sent++;
	}
}

static inline uint32_t answer_end(const struct fe_flow *f)
{
	return f->answer_seq + f->answer_len + 1; /* + our FIN */
}

/*
 * Answer the client ourselves (status 0: just close) and close.  The
 * response starts at cli_ack, the next byte the client expects from "the
 * server": s+1 on a fresh connection, after the last response otherwise.
 */
static void answer(struct fe_lcore *lc, struct fe_flow *f, int status)
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
	backend_abort(lc, f, f->req_seq);
	hold_free(lc, f);
	f->status = (uint16_t)status;
	f->answered = 1;
	f->answer_seq = f->cli_ack;
	f->retries = (uint8_t)lc->cfg->answer_retries;
	fe_flow_set_state(&lc->ft, f, FE_FS_ANSWERED);
	answer_send(lc, f);
	fe_timer_arm(&lc->ft, f, FE_TIMER_ANSWER, lc->now_us);
}

/* ------------------------------------------------------------- life cycle */

static void flow_free(struct fe_lcore *lc, struct fe_flow *f)
{
	hold_free(lc, f);
	if (f->installed)
		offload_queue(lc, f, MG_CTL_DEL);
	backend_release(lc, f);
	fe_flow_destroy(&lc->ft, f);
}

static void enter_time_wait(struct fe_lcore *lc, struct fe_flow *f)
{
	hold_free(lc, f);
	/* The connection is over: take its switch entry away now, not when the
	 * grace period ends.  What is left of it (the last ACK, a resent FIN)
	 * comes to us anyway (the seen filter admits it without an entry), while
	 * a stale entry would send the handshake ACK of a client that reuses the
	 * port within the grace period to the old back-end's TIME_WAIT socket. */
	if (f->installed)
		offload_queue(lc, f, MG_CTL_DEL);
	fe_flow_set_state(&lc->ft, f, FE_FS_TIME_WAIT);
	fe_timer_arm(&lc->ft, f, FE_TIMER_GRACE, lc->now_us);
}

/* A FIN went one way: note it and see whether both ways are closed. */
static void fin_seen(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->cli_fin_sent && f->be_fin)
		enter_time_wait(lc, f);
	else if (f->state == FE_FS_SPLICED)
		fe_flow_set_state(&lc->ft, f, FE_FS_CLOSING);
}

/* -------------------------------------------------------- request routing */

/* Header bytes, then body bytes: how many of these n belong to the current
 * request.  Fewer than n means it ended and the rest starts the next one. */
static uint32_t request_track(struct fe_lcore *lc, struct fe_flow *f, const uint8_t *p, uint32_t n)
{
	uint32_t used = 0;

	if (f->opaque)
		return n;
	if (f->hdr_left) {
		used = f->hdr_left < n ? f->hdr_left : n;
		f->hdr_left -= used;
	}
	if (used < n && !f->body.done) {
		int64_t r = http_body_feed(&f->body, p + used, n - used);

		if (r < 0) {
			/* The back-end has the header and will answer the bad body
			 * itself; we can no longer tell where requests start. */
			lc->stats.err.body_framing++;
			f->opaque = 1;
			return n;
		}
		used += (uint32_t)r;
	}
	return used;
}

/* Start holding a new request on a joined connection, at seq. */
static void next_request(struct fe_lcore *lc, struct fe_flow *f, uint32_t seq)
{
	f->req_seq = seq;
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

	hold_linearize(lc, f, hdr_len);
	if (http_parse(lc->scratch, hdr_len, &req)) {
		answer(lc, f, 400);
		return;
	}
	lc->stats.requests++;
	f->requests++;
	cluster = fe_route(lc->cfg, &req, &offload);
	if (cluster < 0) {
		answer(lc, f, 404);
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
	want = offload && lc->offload && lc->offload->enabled;
	/* Bytes held from now on are this request's body: not scanned. */
	http_scan_init(&f->scan);
	f->scan_result = HTTP_SCAN_MORE;

	if (f->state == FE_FS_HEADER) {
		lc->stats.decision.first++;
		f->cluster = (uint8_t)cluster;
		f->offload = (uint8_t)want;
		f->tries = 0;
		backend_open(lc, f);
		return;
	}
	if (f->has_backend && cluster == f->cluster) {
		lc->stats.decision.same_backend++;
		f->offload = (uint8_t)want;
		fe_flow_set_state(&lc->ft, f, FE_FS_SPLICED);
		fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
		offload_apply(lc, f);
		return;
	}
	/* Another cluster: end the old back-end connection where this request
	 * starts and open one to the new cluster with the current numbers. */
	lc->stats.decision.other_backend++;
	backend_abort(lc, f, f->req_seq);
	f->cluster = (uint8_t)cluster;
	f->offload = (uint8_t)want;
	f->tries = 0;
	backend_open(lc, f);
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
	struct fe_tuple t = to_backend(lc, f);
	uint8_t opt[12], optlen = ts_option(f, 0, opt);

	f->held = f->held_tail = NULL;
	f->held_len = 0;
	while (m) {
		struct rte_mbuf *next = m->next;
		uint16_t len = m->data_len;
		uint32_t k;

		m->next = NULL;
		m->nb_segs = 1;
		lc->stats.held_mbufs--;
		k = request_track(lc, f, rte_pktmbuf_mtod(m, const uint8_t *), len);
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
				if (fe_pkt_push_tcp(lc, head, &t, seq, f->cli_ack, F_ACK | F_PSH,
						    f->cli_win, opt, optlen) == 0) {
					lc->stats.pkt.released++;
					lc->stats.pkt.split++;
					fe_tx(lc, head);
				} else {
					rte_pktmbuf_free(head);
				}
			}
			next_request(lc, f, seq + k);
			hold_mbuf(lc, f, m);
			while (next) {
				struct rte_mbuf *n2 = next->next;

				lc->stats.held_mbufs--; /* hold_mbuf counts it again */
				hold_mbuf(lc, f, next);
				next = n2;
			}
			return;
		}
send_whole:
		if (fe_pkt_push_tcp(lc, m, &t, seq, f->cli_ack, F_ACK | (next ? 0 : F_PSH), f->cli_win,
				    opt, optlen) == 0) {
			lc->stats.pkt.released++;
			fe_tx(lc, m);
		} else {
			rte_pktmbuf_free(m);
		}
		seq += len;
		m = next;
	}
}

/*
 * Move a flow as far as its held bytes allow: dispatch complete headers,
 * release bytes to a joined back-end, pass on a FIN that waited behind
 * them, answer what cannot be served.  A loop, not recursion: pipelined
 * requests can chain dispatch -> release -> dispatch many times.
 */
static void progress(struct fe_lcore *lc, struct fe_flow *f)
{
	for (;;) {
		switch (f->state) {
		case FE_FS_HEADER:
		case FE_FS_NEXT_HEADER:
			if (f->scan_result == HTTP_SCAN_BAD) {
				answer(lc, f, 400);
				return;
			}
			if (f->scan_result == HTTP_SCAN_TOO_LARGE) {
				answer(lc, f, 431);
				return;
			}
			if (f->scan_result == HTTP_SCAN_DONE) {
				dispatch(lc, f);
				continue;
			}
			if (f->cli_fin) {
				/* The client closed inside a header: truncated. A client
				 * that connected and closed without a byte just gets FIN. */
				answer(lc, f, (f->state == FE_FS_HEADER && !f->held_len) ? 0 : 400);
			}
			return;
		case FE_FS_SPLICED:
			if (f->held) {
				release_held(lc, f);
				continue;
			}
			if (f->cli_fin && !f->cli_fin_sent) {
				struct fe_tuple t = to_backend(lc, f);
				uint8_t opt[12], optlen = ts_option(f, 0, opt);

				if (send_segment(lc, &t, f->cli_fin_seq, f->cli_ack, F_ACK | F_FIN,
						 f->cli_win, opt, optlen, NULL, 0) == 0)
					lc->stats.pkt.fin_sent++;
				f->cli_fin_sent = 1;
				fin_seen(lc, f);
			}
			return;
		default:
			return;
		}
	}
}

/* ------------------------------------------------------------ forwarding */

static void forward_to_backend(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	const struct fe_backend_cfg *b = &lc->cfg->backends[f->backend];

	fe_pkt_set_macs(lc, p->eth);
	fe_pkt_rewrite_dst(p, b->ip_be, b->port_be);
	lc->stats.pkt.to_backend++;
	fe_tx(lc, p->m);
}

static void forward_to_client(struct fe_lcore *lc, struct fe_pkt *p)
{
	fe_pkt_set_macs(lc, p->eth);
	fe_pkt_rewrite_src(p, lc->cfg->vip_be, lc->cfg->vip_port_be);
	lc->stats.pkt.to_client++;
	fe_tx(lc, p->m);
}

/* Shorten a live segment to its first `keep` payload bytes, in place. */
static void trim_segment(struct fe_pkt *p, uint16_t keep)
{
	uint16_t ihl = rte_ipv4_hdr_len(p->ip);

	rte_pktmbuf_trim(p->m, (uint16_t)(p->len - keep));
	p->len = keep;
	p->ip->total_length = rte_cpu_to_be_16((uint16_t)(p->hdr_len - RTE_ETHER_HDR_LEN + keep));
	p->ip->hdr_checksum = 0;
	p->ip->hdr_checksum = rte_ipv4_cksum(p->ip);
	p->tcp->tcp_flags &= (uint8_t)~F_FIN;   /* a FIN ends what was cut off */
	p->flags = p->tcp->tcp_flags;
	p->tcp->cksum = 0;
	p->tcp->cksum = fe_tcp_csum(p->ip, p->tcp, (uint16_t)(p->hdr_len - RTE_ETHER_HDR_LEN - ihl + keep));
}

/*
 * Cut a live client segment after `keep` payload bytes: the tail is copied
 * to a new payload-only mbuf (returned), the head keeps the client's headers
 * and gets its lengths and checksums redone.  NULL if no mbuf was free.
 */
static struct rte_mbuf *split_segment(struct fe_lcore *lc, struct fe_pkt *p, uint16_t keep)
{
	struct rte_mbuf *tail = fe_pkt_new(lc, p->data + keep, (uint16_t)(p->len - keep));

	if (!tail)
		return NULL;
	trim_segment(p, keep);
	lc->stats.pkt.split++;
	return tail;
}

/* A client segment on a joined connection (SPLICED). */
static void client_spliced(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	uint32_t end = p->seq + p->len;
	uint32_t off, k;
	struct rte_mbuf *tail;

	if (!p->len && !(p->flags & F_FIN)) {
		forward_to_backend(lc, f, p);
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
		forward_to_backend(lc, f, p);
		return;
	}
	off = f->cli_next - p->seq;
	f->cli_next = end;
	k = off + request_track(lc, f, p->data + off, p->len - off);
	if (k == p->len) {
		if (p->flags & F_FIN) {
			f->cli_fin = 1;
			f->cli_fin_seq = end;
			f->cli_fin_sent = 1;
			forward_to_backend(lc, f, p);
			fin_seen(lc, f);
			return;
		}
		forward_to_backend(lc, f, p);
		return;
	}
	/* The current request ended at payload byte k: the rest is a new one. */
	if (p->flags & F_FIN) {
		f->cli_fin = 1;
		f->cli_fin_seq = end;
	}
	if (k == 0) {
		next_request(lc, f, p->seq);
		rte_pktmbuf_adj(p->m, p->hdr_len);
		lc->stats.pkt.held++;
		hold_mbuf(lc, f, p->m);
	} else {
		tail = split_segment(lc, p, (uint16_t)k);
		if (!tail) {
			/* No mbuf to cut with: keep the connection on this back-end
			 * and stop routing its requests. */
			lc->stats.err.no_mbuf++;
			f->opaque = 1;
			if (p->flags & F_FIN)
				f->cli_fin_sent = 1;
			forward_to_backend(lc, f, p);
			if (p->flags & F_FIN)
				fin_seen(lc, f);
			return;
		}
		forward_to_backend(lc, f, p);
		next_request(lc, f, p->seq + k);
		lc->stats.pkt.held++;
		hold_mbuf(lc, f, tail);
	}
	progress(lc, f);
}

/* A client segment while a request is held (HEADER, NEXT_HEADER, SYN_SENT). */
static void client_holding(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	uint32_t end = p->seq + p->len;

	if (!p->len && !(p->flags & F_FIN)) {
		/* A pure ACK.  Once joined, it may acknowledge response bytes the
		 * back-end is waiting on; before that nobody needs it. */
		if (f->state == FE_FS_NEXT_HEADER)
			forward_to_backend(lc, f, p);
		else
			rte_pktmbuf_free(p->m);
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
				trim_segment(p, (uint16_t)(f->req_seq - p->seq));
			lc->stats.pkt.retransmit_fwd++;
			forward_to_backend(lc, f, p);
			return;
		}
		lc->stats.pkt.duplicate++;
		rte_pktmbuf_free(p->m);
		return;
	}
	if (hold_segment(lc, f, p, f->cli_next - p->seq))
		return;
	progress(lc, f);
}

/* A client packet for a flow the front-end answered itself. */
static void client_answered(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	struct fe_tuple t = to_client(lc, f);

	if ((p->flags & F_FIN) && !f->cli_fin) {
		f->cli_fin = 1;
		f->cli_fin_seq = p->seq + p->len;
	}
	if (f->cli_fin && (p->flags & F_FIN)) {
		/* Acknowledge the client's FIN (again, if it was resent). */
		uint8_t opt[12], optlen = ts_option(f, 1, opt);

		if (send_segment(lc, &t, answer_end(f), f->cli_fin_seq + 1, F_ACK, answer_window(lc, f),
				 opt, optlen, NULL, 0) == 0)
			lc->stats.pkt.ack_sent++;
	}
	rte_pktmbuf_free(p->m);
	if (f->state == FE_FS_ANSWERED && SEQ_LEQ(answer_end(f), f->cli_ack))
		enter_time_wait(lc, f);
}

/*
 * Is this client packet the start of a new connection on the key of a flow
 * that is over (TIME_WAIT)?  TCP's own rule for a TIME_WAIT socket (RFC 1122
 * 4.2.2.13, Linux tcp_timewait_state_process): a sequence number after the
 * end of the old connection's stream.  A client that reuses a port picks a
 * clock-driven ISN (RFC 6528) that is far after the old one, and the switch
 * has already checked the packet's cookie or its place in the seen filter.
 * Only an ACK without SYN/RST can start a flow here, as in client_input.
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

static void client_input(struct fe_lcore *lc, struct fe_pkt *p)
{
	struct mg_flow_key key = {
		.client_ip_be = p->ip->src_addr,
		.client_port_be = p->tcp->src_port,
	};
	struct fe_flow *f = fe_flow_lookup(&lc->ft, &key);
	struct fe_tuple t;

	lc->stats.pkt.from_client++;
	if (f && new_incarnation(f, p)) {
		/* The client reused the port of a connection we still hold in its
		 * grace period: forget the old one (and its switch entry) and take
		 * this packet as the first of a new connection. */
		lc->stats.pkt.reincarnation++;
		flow_free(lc, f);
		f = NULL;
	}
	if (!f) {
		t = (struct fe_tuple){.saddr = lc->cfg->vip_be, .daddr = key.client_ip_be,
				      .sport = lc->cfg->vip_port_be, .dport = key.client_port_be};
		/* The switch answers SYNs; an ACK (the handshake's last packet, or
		 * request data if that was lost) is all that starts a flow here.
		 * It passed the switch's cookie check, so ack - 1 is s. */
		if ((p->flags & (F_SYN | F_RST)) || !(p->flags & F_ACK) ||
		    ((p->flags & F_FIN) && !p->len)) {
			if (p->flags & F_SYN)
				lc->stats.pkt.unexpected++;
			else
				lc->stats.pkt.no_flow++;
			if (!(p->flags & F_RST) && (p->flags & F_ACK))
				send_rst(lc, &t, p->ack);
			rte_pktmbuf_free(p->m);
			return;
		}
		f = fe_flow_create(&lc->ft, &key, FE_FS_HEADER);
		if (!f) {
			lc->stats.err.flow_table_full++;
			send_rst(lc, &t, p->ack);
			rte_pktmbuf_free(p->m);
			return;
		}
		f->s_isn = p->ack - 1;
		f->cli_next = p->seq;
		f->cli_ack = p->ack;
		f->req_seq = p->seq;
		f->cli_win = p->win;
		/* The client's first segment after the handshake tells whether
		 * it agreed to timestamps with the switch. */
		f->ts_ok = (uint8_t)fe_pkt_timestamps(p, &f->cli_tsval, &f->cli_tsecr);
		http_scan_init(&f->scan);
		f->scan_result = HTTP_SCAN_MORE;
		fe_timer_arm(&lc->ft, f, FE_TIMER_REQUEST, lc->now_us);
	}

	if ((p->flags & F_ACK) && SEQ_GT(p->ack, f->cli_ack))
		f->cli_ack = p->ack;
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
				flow_free(lc, f);
			return;
		}
		lc->stats.err.client_reset++;
		f->reset = 1;
		if (f->state == FE_FS_SYN_SENT || f->state == FE_FS_NEXT_HEADER) {
			/* The back-end has bytes up to req_seq; an RST elsewhere in
			 * its window would only earn a challenge ACK (RFC 5961). */
			backend_abort(lc, f, f->req_seq);
			rte_pktmbuf_free(p->m);
		} else if (f->has_backend) {
			forward_to_backend(lc, f, p);
		} else {
			rte_pktmbuf_free(p->m);
		}
		enter_time_wait(lc, f);
		return;
	}
	if (p->flags & F_SYN) {
		lc->stats.pkt.unexpected++;
		rte_pktmbuf_free(p->m);
		return;
	}

	switch (f->state) {
	case FE_FS_HEADER:
	case FE_FS_NEXT_HEADER:
	case FE_FS_SYN_SENT:
		client_holding(lc, f, p);
		break;
	case FE_FS_SPLICED:
		fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
		client_spliced(lc, f, p);
		break;
	case FE_FS_CLOSING:
		fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
		if ((p->flags & F_FIN) && !f->cli_fin) {
			f->cli_fin = 1;
			f->cli_fin_seq = p->seq + p->len;
			f->cli_fin_sent = 1;
			forward_to_backend(lc, f, p);
			fin_seen(lc, f);
			break;
		}
		forward_to_backend(lc, f, p);
		break;
	case FE_FS_TIME_WAIT:
		if (f->answered)
			client_answered(lc, f, p);
		else if (f->has_backend && !f->reset)
			/* The last ACK of the close still has to reach the back-end. */
			forward_to_backend(lc, f, p);
		else
			rte_pktmbuf_free(p->m);
		break;
	case FE_FS_ANSWERED:
		client_answered(lc, f, p);
		break;
	default:
		rte_pktmbuf_free(p->m);
	}
}

static void backend_input(struct fe_lcore *lc, struct fe_pkt *p, int b)
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
			send_rst(lc, &t, (p->flags & F_ACK) ? p->ack : 0);
		rte_pktmbuf_free(p->m);
		return;
	}

	switch (f->state) {
	case FE_FS_SYN_SENT:
		if (p->flags & F_RST) {
			lc->stats.err.backend_refused++;
			rte_pktmbuf_free(p->m);
			backend_failed(lc, f);
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
			send_rst(lc, &t, p->ack);
			rte_pktmbuf_free(p->m);
			backend_syn(lc, f);
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
			send_rst(lc, &t, f->req_seq);
			backend_failed(lc, f);
			return;
		}
		backend_joined(lc, f);
		return;
	case FE_FS_SPLICED:
	case FE_FS_NEXT_HEADER:
	case FE_FS_CLOSING:
		if (p->flags & F_SYN) {
			/* Our handshake ACK was lost: say it again. */
			uint32_t seq = f->state == FE_FS_NEXT_HEADER ? f->req_seq : f->cli_next;

			rte_pktmbuf_free(p->m);
			uint8_t opt[12], optlen = ts_option(f, 0, opt);

			if (p->seq == f->syn_ack &&
			    send_segment(lc, &t, seq, f->syn_ack + 1, F_ACK, f->cli_win, opt, optlen,
					 NULL, 0) == 0)
				lc->stats.pkt.ack_sent++;
			return;
		}
		if (p->flags & F_RST) {
			lc->stats.err.backend_reset++;
			f->reset = 1;
			forward_to_client(lc, p);
			enter_time_wait(lc, f);
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
				offload_apply(lc, f);
		}
		if ((p->flags & F_FIN) && !f->be_fin) {
			f->be_fin = 1;
			forward_to_client(lc, p);
			fin_seen(lc, f);
			return;
		}
		forward_to_client(lc, p);
		return;
	case FE_FS_TIME_WAIT:
		if (f->reset) {
			rte_pktmbuf_free(p->m);
			return;
		}
		forward_to_client(lc, p);
		return;
	default:
		lc->stats.pkt.unexpected++;
		rte_pktmbuf_free(p->m);
	}
}

/* --------------------------------------------------------------- entries */

void fe_input(struct fe_lcore *lc, struct rte_mbuf *m)
{
	struct fe_pkt p;
	int b;

	lc->stats.pkt.rx++;
	lc->stats.pkt.rx_bytes += m->pkt_len;
	if (m->nb_segs != 1) {
		lc->stats.pkt.multi_segment++;
		rte_pktmbuf_free(m);
		return;
	}
	switch (fe_pkt_parse(&p, m, lc->cfg->verify_checksums)) {
	case FE_PKT_OK:
		break;
	case FE_PKT_NOT_OURS:
		lc->stats.pkt.not_ours++;
		rte_pktmbuf_free(m);
		return;
	case FE_PKT_FRAGMENT:
		lc->stats.pkt.fragment++;
		rte_pktmbuf_free(m);
		return;
	case FE_PKT_BAD_CSUM:
		lc->stats.pkt.bad_checksum++;
		rte_pktmbuf_free(m);
		return;
	default:
		lc->stats.pkt.malformed++;
		rte_pktmbuf_free(m);
		return;
	}
	/* af_packet also shows us what this host itself sends on the link. */
	if (!memcmp(&p.eth->src_addr, lc->mac, RTE_ETHER_ADDR_LEN)) {
		lc->stats.pkt.own++;
		rte_pktmbuf_free(m);
		return;
	}
	if (memcmp(&p.eth->dst_addr, lc->mac, RTE_ETHER_ADDR_LEN)) {
		lc->stats.pkt.not_ours++;
		rte_pktmbuf_free(m);
		return;
	}
	if (p.ip->dst_addr == lc->cfg->vip_be && p.tcp->dst_port == lc->cfg->vip_port_be) {
		client_input(lc, &p);
		return;
	}
	b = fe_lb_find(&lc->lb, p.ip->src_addr, p.tcp->src_port);
	if (b >= 0) {
		backend_input(lc, &p, b);
		return;
	}
	lc->stats.pkt.not_ours++;
	rte_pktmbuf_free(m);
}

static void on_timer(struct fe_lcore *lc, struct fe_flow *f, enum fe_timer kind)
{
	struct fe_tuple t;

	switch (kind) {
	case FE_TIMER_REQUEST:
		answer(lc, f, 408);
		break;
	case FE_TIMER_SYN:
		/* A SYN lost on the way, or dropped by a full accept queue: try
		 * the same back-end again before giving up on it. */
		if (f->syns <= lc->cfg->syn_retries) {
			backend_syn(lc, f);
			break;
		}
		lc->stats.err.syn_timeout++;
		backend_failed(lc, f);
		break;
	case FE_TIMER_ANSWER:
		if (f->retries) {
			f->retries--;
			answer_send(lc, f);
			fe_timer_arm(&lc->ft, f, FE_TIMER_ANSWER, lc->now_us);
		} else {
			flow_free(lc, f);
		}
		break;
	case FE_TIMER_IDLE:
		/* Nothing passed through us for idle_timeout: tell both ends, so
		 * neither keeps a connection that no longer has a splice. */
		lc->stats.err.idle_timeout++;
		if (f->has_backend) {
			t = to_backend(lc, f);
			send_rst(lc, &t, f->cli_next);
		}
		t = to_client(lc, f);
		send_rst(lc, &t, f->cli_ack);
		flow_free(lc, f);
		break;
	default:
		flow_free(lc, f);
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

/* ------------------------------------------------------------ the lcore */

static void port_sink(struct fe_lcore *lc, struct rte_mbuf **pkts, uint16_t n)
{
	uint16_t sent = rte_eth_tx_burst(lc->port_id, lc->queue_id, pkts, n);

	if (sent < n) {
		lc->stats.pkt.tx_dropped += n - sent;
		rte_pktmbuf_free_bulk(pkts + sent, n - sent);
	}
}

int fe_lcore_init(struct fe_lcore *lc, const struct fe_config *cfg, struct rte_mempool *pool,
		  uint16_t port_id, const uint8_t mac[6], struct fe_offload *offload,
		  fe_tx_sink_t sink, unsigned int lcore_id)
{
	char name[RTE_HASH_NAMESIZE];

	memset(lc, 0, sizeof(*lc));
	lc->cfg = cfg;
	lc->pool = pool;
	lc->port_id = port_id;
	memcpy(lc->mac, mac, 6);
	lc->offload = offload;
	lc->tx_sink = sink ? sink : port_sink;
	snprintf(name, sizeof(name), "fe_flows_%u", lcore_id);
	if (fe_flow_table_init(&lc->ft, name, cfg->flow_capacity, (int)rte_socket_id()))
		return -1;
	lc->ft.timer_us[FE_TIMER_REQUEST] = cfg->request_timeout_us;
	lc->ft.timer_us[FE_TIMER_SYN] = cfg->syn_timeout_us;
	lc->ft.timer_us[FE_TIMER_ANSWER] = cfg->answer_rto_us;
	lc->ft.timer_us[FE_TIMER_GRACE] = cfg->grace_us;
	lc->ft.timer_us[FE_TIMER_IDLE] = cfg->idle_timeout_us;
	fe_lb_init(&lc->lb, cfg);
	lc->scratch = rte_malloc("fe_scratch", cfg->max_header_bytes, 64);
	if (!lc->scratch) {
		fe_flow_table_free(&lc->ft);
		return -1;
	}
	return 0;
}

void fe_lcore_fini(struct fe_lcore *lc)
{
	const void *key;
	void *data;
	uint32_t iter = 0, n = 0;
	int32_t pos;
	int32_t *live = rte_malloc("fe_fini", sizeof(int32_t) * (lc->ft.count + 1), 0);

	/* An rte_hash must not change while iterated: collect, then free. */
	while (live && n < lc->ft.count &&
	       (pos = rte_hash_iterate(lc->ft.hash, &key, &data, &iter)) >= 0)
		live[n++] = pos;
	for (uint32_t i = 0; i < n; i++)
		flow_free(lc, &lc->ft.flows[live[i]]);
	rte_free(live);
	fe_tx_flush(lc);
	rte_free(lc->scratch);
	fe_flow_table_free(&lc->ft);
}
