/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Segments the front-end puts on the wire itself, as opposed to the ones it
 * forwards: the SYN, ACK, FIN and RST of its half of both connections, its
 * error answers, and the two halves of a client segment it cuts at a request
 * boundary.  Everything else it sends is a client's or a back-end's segment
 * with rewritten addresses (fe_forward_to_* in fe_splice.h).
 */
#include <rte_ip.h>

#include "fe_splice.h"

int fe_send_segment(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq, uint32_t ack,
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

void fe_send_rst(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq)
{
	if (fe_send_segment(lc, t, seq, 0, F_RST, 0, NULL, 0, NULL, 0) == 0)
		lc->stats.pkt.rst_sent++;
}

/* Shorten a live segment to its first `keep` payload bytes, in place. */
void fe_trim_segment(struct fe_pkt *p, uint16_t keep)
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
struct rte_mbuf *fe_split_segment(struct fe_lcore *lc, struct fe_pkt *p, uint16_t keep)
{
	struct rte_mbuf *tail = fe_pkt_new(lc, p->data + keep, (uint16_t)(p->len - keep));

	if (!tail)
		return NULL;
	fe_trim_segment(p, keep);
	lc->stats.pkt.split++;
	return tail;
}
