/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Held bytes: a request the front-end cannot route yet (its header is not
 * complete, or no back-end has joined) stays here as a chain of payload-only
 * mbufs, neither acknowledged nor forwarded.  Bytes are scanned for the end
 * of the header as they arrive, so a header is parsed once, when complete.
 * Only in-order bytes are taken: a gap is the client's to fill.
 *
 * The mbufs come from the pool the port receives into, and a client chooses
 * how many bytes each one carries: 8 KB of header sent one byte a segment
 * would pin 8,192 mbufs, and three such clients the whole pool.  So past a
 * flow's first few mbufs a segment is copied into the tail mbuf when the two
 * together are no longer than one segment the client could send (the
 * longest it sent, at least 536 bytes): no two mbufs in a row then hold
 * less than that, so a flow parks at most two mbufs per 536 bytes of its
 * byte limit, whatever its segments; and all flows together park at most
 * hold_budget (a share of the pool; the rest is RX's and TX's).  At that budget the flow that has
 * waited longest for its first header gives its mbufs back (reset), as in a
 * full flow table (fe_close.c); a segment that still finds no room is
 * dropped unacknowledged, and its client sends it again.
 */
#include <string.h>

#include "fe_splice.h"

void fe_hold_free(struct fe_lcore *lc, struct fe_flow *f)
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
	f->held_mbufs = 0;
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

/* Segments of a flow held as they came, before small ones are copied: a
 * request in a few segments costs no copy and is released as its client
 * cut it. */
#define HOLD_UNCOPIED 4

/* The most payload a copied-together mbuf carries: it is released as one
 * segment, which must pass every link a segment of this client passed: no
 * longer than the longest one it sent, or than IPv4's minimum MSS. */
#define HOLD_SEG_MIN 536

/* Can n more bytes be copied into the last held mbuf?  Only into a buffer
 * that is the chain's alone (a direct mbuf nobody else references). */
static int tail_takes(const struct fe_flow *f, uint32_t n)
{
	const struct rte_mbuf *t = f->held_tail;
	uint32_t cap = f->seg_max > HOLD_SEG_MIN ? f->seg_max : HOLD_SEG_MIN;

	return f->held_mbufs >= HOLD_UNCOPIED && t && RTE_MBUF_DIRECT(t) &&
	       rte_mbuf_refcnt_read(t) == 1 && rte_pktmbuf_tailroom(t) >= n &&
	       t->data_len + n <= cap;
}

/* Append a payload-only mbuf to the held bytes (consumes m: it may be
 * copied into the tail and freed). */
void fe_hold_mbuf(struct fe_lcore *lc, struct fe_flow *f, struct rte_mbuf *m)
{
	uint16_t n = m->data_len;

	scan_bytes(lc, f, rte_pktmbuf_mtod(m, const uint8_t *), n);
	f->held_len += n;
	if (n > f->seg_max)
		f->seg_max = n;
	if (tail_takes(f, n)) {
		struct rte_mbuf *t = f->held_tail;

		memcpy(rte_pktmbuf_mtod_offset(t, uint8_t *, t->data_len),
		       rte_pktmbuf_mtod(m, const uint8_t *), n);
		t->data_len += n;
		t->pkt_len += n;
		lc->stats.pkt.coalesced++;
		rte_pktmbuf_free_seg(m);
		return;
	}
	m->next = NULL;
	m->nb_segs = 1;
	m->pkt_len = n;
	if (f->held_tail)
		f->held_tail->next = m;
	else
		f->held = m;
	f->held_tail = m;
	f->held_mbufs++;
	lc->stats.held_mbufs++;
}

/* May f park one more mbuf?  At the budget, the longest wait for a first
 * header (another flow, holding mbufs) is given up for it. */
static int mbuf_room(struct fe_lcore *lc, struct fe_flow *f)
{
	if (lc->stats.held_mbufs < lc->hold_budget)
		return 1;
	if (fe_evict_waiting(lc, f, 1)) {
		lc->stats.err.evicted_for_mbufs++;
		return 1;
	}
	lc->stats.pkt.hold_pool_full++;
	return 0;
}

/* Copy the first n held bytes into lc->scratch (n <= max_header_bytes). */
void fe_hold_linearize(struct fe_lcore *lc, const struct fe_flow *f, uint32_t n)
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
int fe_hold_segment(struct fe_lcore *lc, struct fe_flow *f, struct fe_pkt *p, uint32_t off)
{
	uint32_t fresh = p->len - off;

	if (fresh && f->held_len + fresh > lc->cfg->hold_limit_bytes) {
		lc->stats.pkt.hold_full++;
		rte_pktmbuf_free(p->m);
		return -1;
	}
	if (fresh && !tail_takes(f, fresh) && !mbuf_room(lc, f)) {
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
	fe_hold_mbuf(lc, f, p->m);
	return 0;
}
