/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Waiting for a back-end's response to end, where telling the back-end
 * anything sooner would cut it: nginx aborts a response when it reads the
 * client's EOF while a write of it is blocked (ngx_http_test_reading,
 * "client prematurely closed connection"), which plain nginx does to a
 * client that half-closes too.  HAProxy shields the server from the
 * client's FIN until the response is done; so does this.
 *
 *   A client's FIN (CLOSING, FIN deferred): not forwarded; the flow's entry
 *   goes, so the rest of the response comes this way; the FIN goes on once
 *   the response is over.  The client's later segments reach the back-end
 *   without the FIN and at its sequence number; the FIN it sends again is
 *   absorbed.
 *
 *   A pipelined request for another cluster (DRAIN): held; the entry goes;
 *   once the old back-end's response is over, it gets a FIN at the request's
 *   first byte (no more requests for it), its own FIN is swallowed at F_end,
 *   the end of its stream, and once the client has acknowledged F_end the
 *   front-end acknowledges that FIN as the client would and opens the new
 *   back-end with seq = request - 1 and ack field = F_end - 1, so the new
 *   back-end's first byte follows the old stream exactly.  Bounded by
 *   request_timeout without progress: then the old back-end is reset and the
 *   client gets a 503 at F_end if it has all of the old response, else RST.
 *
 * Over: the back-end sent its FIN; or everything it sent is acknowledged by
 * the client, it sent something since the last request went out, the
 * client's window is open, and it sent nothing for drain_quiet.  With every
 * byte acknowledged and the window open the back-end's socket buffer is
 * empty: a back-end with more to write would be sending.  Checked when the
 * DRAIN timer fires; every packet either way re-arms it.
 */
#include <string.h>

#include <rte_hash.h>

#include "fe_splice.h"

static int response_over(const struct fe_flow *f)
{
	uint32_t seen;

	if (f->be_fin)
		return 1;
	seen = SEQ_GT(f->be_next, f->cli_ack) ? f->be_next : f->cli_ack;
	return SEQ_GEQ(f->cli_ack, f->be_next) && SEQ_GT(seen, f->resp_mark) && f->cli_win;
}

/* Pass the client's FIN on: the response is over. */
static void fin_release(struct fe_lcore *lc, struct fe_flow *f)
{
	struct fe_tuple t = fe_to_backend(lc, f);
	uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);

	if (fe_send_closing(lc, f, &t, f->cli_fin_seq, f->cli_ack, F_ACK | F_FIN, f->cli_win, opt,
			    optlen) == 0) {
		lc->stats.pkt.fin_released++;
		lc->stats.pkt.fin_sent++;
	}
	f->cli_fin_sent = 1;
	fe_fin_seen(lc, f);
	if (f->state == FE_FS_CLOSING)
		fe_timer_default(lc, f);
}

/* The client closed its side (cli_fin; nothing forwarded it). */
void fe_fin_defer(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->be_fin) {
		fin_release(lc, f);
		return;
	}
	lc->stats.pkt.fin_deferred++;
	fe_entry_remove(lc, f);
	fe_flow_set_state(&lc->ft, f, FE_FS_CLOSING);
	f->drain_polls = 0;
	if (f->timer != FE_TIMER_RTX)
		fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
}

/* The request just dispatched goes to another cluster (next_cluster). */
void fe_drain_start(struct fe_lcore *lc, struct fe_flow *f)
{
	fe_entry_remove(lc, f);
	f->drain_fin = 0;
	f->drain_polls = 0;
	fe_flow_set_state(&lc->ft, f, FE_FS_DRAIN);
	if (f->timer != FE_TIMER_RTX)
		fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
}

/* DRAIN: the old stream ended (be_fin) and the client has all of it: move. */
void fe_drain_progress(struct fe_lcore *lc, struct fe_flow *f)
{
	if (!f->be_fin || SEQ_LT(f->cli_ack, f->be_next))
		return;
	if (f->has_backend) {
		/* Acknowledge its FIN as the client would (it reset instead
		 * when has_backend is already gone). */
		struct fe_tuple t = fe_to_backend(lc, f);
		uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);

		if (fe_send_segment(lc, &t, fe_backend_rcv_next(f), f->be_next + 1, F_ACK, f->cli_win,
				    opt, optlen, NULL, 0) == 0)
			lc->stats.pkt.ack_sent++;
		fe_backend_release(lc, f);
	}
	f->cluster = f->next_cluster;
	f->offload = f->next_offload;
	f->tries = 0;
	fe_backend_open(lc, f);
}

/* ------------------------------------------------------------ drain close */

/*
 * The operator drains this front-end (NOTICE DRAIN from the switch host;
 * docs/design.md section 7.3): the switch gives it no new connections, and
 * it ends the kept-alive ones it has, each at the end of a response, so that
 * the drain converges instead of waiting for every client to leave:
 *
 *   A request that comes on such a connection is served without the switch
 *   (no entry: its bytes come through here) and its response's
 *   "Connection: keep-alive" becomes "Connection: close" in place, the same
 *   length, so no sequence number moves (fe_close_header()).  The client
 *   reads the response and closes; the connection ends FIN by FIN, the
 *   client's FIN held until the response is over as always.  A client's next
 *   request can never race a close it did not see coming.
 *
 *   A connection with no request under way is closed as an idle one is
 *   (fe_close_as_client(): a FIN to the back-end in the client's name; the
 *   back-end's FIN goes on to the client) once it is quiet: nothing through
 *   us for drain_quiet, everything the back-end sent acknowledged, and, if
 *   the switch carries it, nothing through the switch's entry for
 *   DRAIN_SWITCH_QUIET_MS (asked with a liveness query).  A request that
 *   crosses that FIN on the wire is the race every server that closes idle
 *   connections has (HTTP/1.1 lets the client retry it); counted as
 *   idle_close_race.
 *
 * RESUME stops this for connections not closing yet.
 */

/* The switch's entry stamps count whole seconds: an entry idle this long
 * carried nothing for at least a second. */
#define DRAIN_SWITCH_QUIET_MS 2000

static void drain_close_start(struct fe_lcore *lc, struct fe_flow *f)
{
	if (f->state == FE_FS_SPLICED && f->timer != FE_TIMER_RTX)
		fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
}

static void drain_close_now(struct fe_lcore *lc, struct fe_flow *f)
{
	lc->stats.pkt.drain_close++;
	fe_close_as_client(lc, f);
}

/* FE_TIMER_DRAIN of a spliced flow that the drain closes: nothing passed
 * through us for drain_quiet. */
static void drain_close_poll(struct fe_lcore *lc, struct fe_flow *f)
{
	if ((f->close_response && !f->close_hdr_done && !SEQ_GT(f->cli_ack, f->resp_mark)) ||
	    f->held) {
		/* A response to come (none of it acknowledged yet: all of it may
		 * have gone the switch's way before its entry went), or a request
		 * being held: not now. */
		fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
		return;
	}
	if (f->entry != FE_ENTRY_NONE) {
		/* Its bytes may pass the switch without us: ask (the answer
		 * comes to fe_drain_close_liveness()). */
		if (!f->query_pending)
			fe_entry_query(lc, f);
		fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
		return;
	}
	if (response_over(f)) {
		drain_close_now(lc, f);
		return;
	}
	fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
}

void fe_drain_close_liveness(struct fe_lcore *lc, struct fe_flow *f, int present,
			     uint32_t idle_ms)
{
	if (present && idle_ms < DRAIN_SWITCH_QUIET_MS) {
		lc->stats.offload.entry_busy++;
		return;     /* the DRAIN timer asks again */
	}
	if (present)
		lc->stats.offload.entry_idle++;
	else
		lc->stats.offload.entry_gone++;
	drain_close_now(lc, f);
}

void fe_drain_notice(struct fe_lcore *lc)
{
	uint8_t on = (uint8_t)__atomic_load_n(&lc->offload->c.draining, __ATOMIC_ACQUIRE);
	const void *key;
	void *data;
	uint32_t iter = 0;
	int32_t pos;

	if (on == lc->draining)
		return;
	lc->draining = on;
	/* Nothing here frees a flow: the table can be walked as it is. */
	while ((pos = rte_hash_iterate(lc->ft.hash, &key, &data, &iter)) >= 0) {
		struct fe_flow *f = &lc->ft.flows[pos];

		f->drain_close = on;
		if (on)
			drain_close_start(lc, f);
		else if (f->state == FE_FS_SPLICED && f->timer == FE_TIMER_DRAIN)
			fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
	}
}

/* Case-insensitive: does the header line at `at` read "connection: keep-alive"? */
static int keep_alive_line(const uint8_t *at, uint32_t left)
{
	static const char want[] = "connection: keep-alive\r\n";

	if (left < sizeof(want) - 1)
		return 0;
	for (uint32_t i = 0; i < sizeof(want) - 1; i++) {
		uint8_t c = at[i];

		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c + 'a' - 'A');
		if (c != (uint8_t)want[i])
			return 0;
	}
	return 1;
}

void fe_close_header(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p)
{
	static const char value[] = "close     ";     /* as long as "keep-alive" */
	uint32_t end = p->len;

	f->close_hdr_done = 1;
	if (p->len < 16 || memcmp(p->data, "HTTP/1.", 7)) {
		lc->stats.pkt.close_unmarked++;
		return;
	}
	/* The header lines of this segment: up to the blank line, if it is here. */
	for (uint32_t i = 0; i + 4 <= p->len; i++) {
		if (!memcmp(p->data + i, "\r\n\r\n", 4)) {
			end = i + 2;
			break;
		}
	}
	for (uint32_t i = 0; i + 2 <= end; i++) {
		uint16_t ihl = rte_ipv4_hdr_len(p->ip);

		if (p->data[i] != '\r' || p->data[i + 1] != '\n' ||
		    !keep_alive_line(p->data + i + 2, end - i - 2))
			continue;
		memcpy(p->data + i + 2 + sizeof("connection: ") - 1, value, sizeof(value) - 1);
		p->tcp->cksum = 0;
		p->tcp->cksum = fe_tcp_csum(p->ip, p->tcp,
					    (uint16_t)(p->hdr_len - RTE_ETHER_HDR_LEN - ihl + p->len));
		lc->stats.pkt.close_marked++;
		return;
	}
	/* No such line here: the quiet close will end the connection. */
	lc->stats.pkt.close_unmarked++;
}

static void drain_timeout(struct fe_lcore *lc, struct fe_flow *f)
{
	lc->stats.err.drain_timeout++;
	if (SEQ_GEQ(f->cli_ack, f->be_next))
		fe_answer(lc, f, 503);
	else
		fe_reset_both(lc, f);
}

void fe_drain_timer(struct fe_lcore *lc, struct fe_flow *f)
{
	uint64_t limit;

	if (f->state == FE_FS_SPLICED) {
		if (f->drain_close)
			drain_close_poll(lc, f);
		else
			fe_timer_arm(&lc->ft, f, FE_TIMER_IDLE, lc->now_us);
		return;
	}
	if (f->state == FE_FS_CLOSING) {
		if (response_over(f)) {
			fin_release(lc, f);
			return;
		}
		limit = lc->cfg->idle_timeout_us;
	} else {
		if (!f->drain_fin && response_over(f)) {
			struct fe_tuple t = fe_to_backend(lc, f);
			uint8_t opt[12], optlen = fe_ts_opt(f, 0, opt);

			if (fe_send_segment(lc, &t, f->req_seq, f->cli_ack, F_ACK | F_FIN, f->cli_win, opt,
					    optlen, NULL, 0) == 0)
				lc->stats.pkt.drain_fin++;
			f->drain_fin = 1;
			f->drain_polls = 0;
			fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
			return;
		}
		limit = lc->cfg->request_timeout_us;
	}
	if ((uint64_t)++f->drain_polls * lc->cfg->drain_quiet_us < limit) {
		fe_timer_arm(&lc->ft, f, FE_TIMER_DRAIN, lc->now_us);
		return;
	}
	if (f->state == FE_FS_CLOSING) {
		/* The response never ended: as an idle flow that would not close. */
		lc->stats.err.idle_timeout++;
		fe_reset_both(lc, f);
	} else {
		drain_timeout(lc, f);
	}
}

/*
 * A client segment on its way to the back-end, whose view of the client's
 * stream differs from the client's own: while the client's FIN is deferred
 * the FIN comes off and a later segment moves back onto the FIN's sequence
 * number; in DRAIN a pure ACK moves back onto the held request's first byte
 * (or one after our FIN); after a FIN the front-end sent in the client's name
 * (idle close) a segment moves one past it.
 */
void fe_client_fixup(const struct fe_flow *f, struct fe_pkt *p)
{
	if (f->fe_fin) {
		if (SEQ_LEQ(p->seq, f->cli_fin_seq))
			fe_set_seq(p, f->cli_fin_seq + 1);
		return;
	}
	if (f->state == FE_FS_DRAIN) {
		if (SEQ_GT(p->seq, fe_backend_rcv_next(f)))
			fe_set_seq(p, fe_backend_rcv_next(f));
		return;
	}
	if (f->cli_fin && !f->cli_fin_sent) {
		if (p->flags & F_FIN)
			fe_strip_fin(p);
		if (SEQ_GT(p->seq, f->cli_fin_seq))
			fe_set_seq(p, f->cli_fin_seq);
	}
}
