/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Segments the front-end puts on the wire itself, as opposed to the ones it
 * forwards: the SYN, ACK, FIN and RST of its half of both connections, its
 * error answers, the two halves of a client segment it cuts at a request
 * boundary, the marks it puts on packets for the switch, and the few header
 * fields it changes on a forwarded segment (a FIN it holds back, a sequence
 * number the other end must see).  Everything else it sends is a client's or
 * a back-end's segment with rewritten addresses (fe_forward_to_* in
 * fe_splice.h).
 */
#include <string.h>

#include <rte_ip.h>

#include "fe_splice.h"

/*
 * Put a data-plane mark on a packet the front-end sends: the DSCP, and the
 * VIP index in IP ID (where INSTALL and REMOVE name the VIP; the ID of a DF
 * packet carries nothing else).  ECN bits stay.
 */
void fe_mark(const struct fe_lcore *lc, struct rte_ipv4_hdr *ip, uint8_t dscp)
{
	ip->type_of_service = mg_tos_with_dscp(ip->type_of_service, dscp);
	ip->packet_id = rte_cpu_to_be_16(lc->cfg->vip_idx);
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
}

static int send_segment(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq, uint32_t ack,
			uint8_t flags, uint16_t win, const uint8_t *opt, uint8_t optlen,
			const void *payload, uint16_t len, uint8_t dscp)
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
	if (dscp)
		fe_mark(lc, rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, RTE_ETHER_HDR_LEN), dscp);
	fe_tx(lc, m);
	return 0;
}

int fe_send_segment(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq, uint32_t ack,
		    uint8_t flags, uint16_t win, const uint8_t *opt, uint8_t optlen,
		    const void *payload, uint16_t len)
{
	return send_segment(lc, t, seq, ack, flags, win, opt, optlen, payload, len, 0);
}

int fe_send_marked(struct fe_lcore *lc, const struct fe_tuple *t, uint32_t seq, uint32_t ack,
		   uint8_t flags, uint16_t win, const uint8_t *opt, uint8_t optlen, uint8_t dscp)
{
	return send_segment(lc, t, seq, ack, flags, win, opt, optlen, NULL, 0, dscp);
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

/* The TCP header's data offset and flags, as the 16-bit word the checksum sees. */
static uint16_t flags_word(const struct rte_tcp_hdr *tcp)
{
	uint16_t w;

	memcpy(&w, &tcp->data_off, sizeof(w));
	return w;
}

/* Forward a live segment without its FIN (the FIN waits, fe_drain.c). */
void fe_strip_fin(struct fe_pkt *p)
{
	uint16_t before = flags_word(p->tcp);

	p->tcp->tcp_flags &= (uint8_t)~F_FIN;
	p->tcp->cksum = fe_csum_replace2(p->tcp->cksum, before, flags_word(p->tcp));
	p->flags = p->tcp->tcp_flags;
}

void fe_set_seq(struct fe_pkt *p, uint32_t seq)
{
	uint32_t be = rte_cpu_to_be_32(seq);

	p->tcp->cksum = fe_csum_replace4(p->tcp->cksum, p->tcp->sent_seq, be);
	p->tcp->sent_seq = be;
	p->seq = seq;
}

void fe_set_ack(struct fe_pkt *p, uint32_t ack)
{
	uint32_t be = rte_cpu_to_be_32(ack);

	p->tcp->cksum = fe_csum_replace4(p->tcp->cksum, p->tcp->recv_ack, be);
	p->tcp->recv_ack = be;
	p->ack = ack;
}
