/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Held bytes: a request the front-end cannot route yet (its header is not
 * complete, or no back-end has joined) stays here as a chain of payload-only
 * mbufs, neither acknowledged nor forwarded.  Bytes are scanned for the end
 * of the header as they arrive, so a header is parsed once, when complete.
 * Only in-order bytes are taken: a gap is the client's to fill.
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
void fe_hold_mbuf(struct fe_lcore *lc, struct fe_flow *f, struct rte_mbuf *m)
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
