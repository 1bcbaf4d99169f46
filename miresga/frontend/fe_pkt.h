/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing and building, the hot path's small inline helpers.
 *
 * Only untagged Ethernet/IPv4/TCP in one segment is Miresga's: everything
 * else that reaches the front-end's port (ARP, the kernel's own traffic on
 * the same link, IPv6) is counted and dropped.  IP fragments are dropped too:
 * the switch never fragments and a front-end cannot reassemble them cheaply.
 */
#ifndef FE_PKT_H
#define FE_PKT_H

#include <netinet/in.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "fe_csum.h"
#include "fe_lcore.h"

#define FE_HDR_MIN (RTE_ETHER_HDR_LEN + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_tcp_hdr))

enum fe_pkt_verdict {
	FE_PKT_OK,
	FE_PKT_NOT_OURS,
	FE_PKT_MALFORMED,
	FE_PKT_FRAGMENT,
	FE_PKT_BAD_CSUM,
};

struct fe_pkt {
	struct rte_mbuf *m;
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;
	struct rte_tcp_hdr *tcp;
	uint8_t *data;          /* TCP payload */
	uint32_t seq;
	uint32_t ack;
	uint16_t len;           /* payload bytes */
	uint16_t hdr_len;       /* Ethernet + IP + TCP */
	uint16_t win;
	uint8_t flags;
};

/* Addresses of a packet the front-end writes, network order. */
struct fe_tuple {
	uint32_t saddr;
	uint32_t daddr;
	uint16_t sport;
	uint16_t dport;
};

static inline enum fe_pkt_verdict fe_pkt_parse(struct fe_pkt *p, struct rte_mbuf *m, int verify)
{
	uint16_t avail = rte_pktmbuf_data_len(m);
	uint8_t *b = rte_pktmbuf_mtod(m, uint8_t *);
	uint16_t ihl, doff, tot;

	if (avail < RTE_ETHER_HDR_LEN)
		return FE_PKT_MALFORMED;
	p->m = m;
	p->eth = (struct rte_ether_hdr *)b;
	if (p->eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return FE_PKT_NOT_OURS;
	if (avail < RTE_ETHER_HDR_LEN + sizeof(struct rte_ipv4_hdr))
		return FE_PKT_MALFORMED;
	p->ip = (struct rte_ipv4_hdr *)(b + RTE_ETHER_HDR_LEN);
	if ((p->ip->version_ihl >> 4) != 4)
		return FE_PKT_MALFORMED;
	if (p->ip->next_proto_id != IPPROTO_TCP)
		return FE_PKT_NOT_OURS;
	ihl = rte_ipv4_hdr_len(p->ip);
	tot = rte_be_to_cpu_16(p->ip->total_length);
	if (ihl < sizeof(struct rte_ipv4_hdr) || tot < ihl + sizeof(struct rte_tcp_hdr) ||
	    RTE_ETHER_HDR_LEN + tot > avail)
		return FE_PKT_MALFORMED;
	if (p->ip->fragment_offset &
	    rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
		return FE_PKT_FRAGMENT;
	p->tcp = (struct rte_tcp_hdr *)((uint8_t *)p->ip + ihl);
	doff = (uint16_t)((p->tcp->data_off >> 4) * 4);
	if (doff < sizeof(struct rte_tcp_hdr) || ihl + doff > tot)
		return FE_PKT_MALFORMED;
	if (verify && (!fe_ip_csum_ok(p->ip) || !fe_tcp_csum_ok(p->ip, p->tcp, tot - ihl)))
		return FE_PKT_BAD_CSUM;
	/* Ethernet padding of short frames is not payload. */
	if (RTE_ETHER_HDR_LEN + tot < avail)
		rte_pktmbuf_trim(m, avail - RTE_ETHER_HDR_LEN - tot);
	p->hdr_len = RTE_ETHER_HDR_LEN + ihl + doff;
	p->data = b + p->hdr_len;
	p->len = tot - ihl - doff;
	p->seq = rte_be_to_cpu_32(p->tcp->sent_seq);
	p->ack = rte_be_to_cpu_32(p->tcp->recv_ack);
	p->win = rte_be_to_cpu_16(p->tcp->rx_win);
	p->flags = p->tcp->tcp_flags;
	return FE_PKT_OK;
}

/*
 * The timestamp option of a parsed segment (RFC 7323), if it has one: a
 * bounded walk over at most 40 option bytes, Linux's NOP NOP TS first.
 */
static inline int fe_pkt_timestamps(const struct fe_pkt *p, uint32_t *tsval, uint32_t *tsecr)
{
	const uint8_t *o = (const uint8_t *)(p->tcp + 1);
	uint32_t n = (uint32_t)((p->tcp->data_off >> 4) * 4) - sizeof(struct rte_tcp_hdr);
	uint32_t i = 0, v;

	while (i < n) {
		uint8_t kind = o[i], len;

		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= n)
			break;
		len = o[i + 1];
		if (len < 2 || i + len > n)
			break;
		if (kind == 8 && len == 10) {
			memcpy(&v, o + i + 2, 4);
			*tsval = rte_be_to_cpu_32(v);
			memcpy(&v, o + i + 6, 4);
			*tsecr = rte_be_to_cpu_32(v);
			return 1;
		}
		i += len;
	}
	return 0;
}

/* NOP NOP TS(tsval, tsecr): the 12 option bytes Linux puts on every segment. */
static inline uint8_t fe_ts_option(uint8_t *opt, uint32_t tsval, uint32_t tsecr)
{
	uint32_t v;

	opt[0] = 1;
	opt[1] = 1;
	opt[2] = 8;
	opt[3] = 10;
	v = rte_cpu_to_be_32(tsval);
	memcpy(opt + 4, &v, 4);
	v = rte_cpu_to_be_32(tsecr);
	memcpy(opt + 8, &v, 4);
	return 12;
}

static inline void fe_pkt_set_macs(const struct fe_lcore *lc, struct rte_ether_hdr *eth)
{
	memcpy(&eth->src_addr, lc->mac, RTE_ETHER_ADDR_LEN);
	memcpy(&eth->dst_addr, lc->cfg->nexthop_mac, RTE_ETHER_ADDR_LEN);
}

/* The packet's DSCP back to none (its ECN bits kept), checksum patched. */
static inline void fe_pkt_clear_mark(struct fe_pkt *p)
{
	uint16_t before, after;

	if (!(p->ip->type_of_service >> 2))
		return;
	memcpy(&before, &p->ip->version_ihl, 2);
	p->ip->type_of_service &= 3;
	memcpy(&after, &p->ip->version_ihl, 2);
	p->ip->hdr_checksum = fe_csum_replace2(p->ip->hdr_checksum, before, after);
}

/* Forward to a back-end: VIP:port -> back-end address:port. */
static inline void fe_pkt_rewrite_dst(struct fe_pkt *p, uint32_t ip_be, uint16_t port_be)
{
	uint16_t tcp_csum = fe_csum_replace4(p->tcp->cksum, p->ip->dst_addr, ip_be);

	p->ip->hdr_checksum = fe_csum_replace4(p->ip->hdr_checksum, p->ip->dst_addr, ip_be);
	p->tcp->cksum = fe_csum_replace2(tcp_csum, p->tcp->dst_port, port_be);
	p->ip->dst_addr = ip_be;
	p->tcp->dst_port = port_be;
}

/* Forward to a client: back-end address:port -> VIP:port. */
static inline void fe_pkt_rewrite_src(struct fe_pkt *p, uint32_t ip_be, uint16_t port_be)
{
	uint16_t tcp_csum = fe_csum_replace4(p->tcp->cksum, p->ip->src_addr, ip_be);

	p->ip->hdr_checksum = fe_csum_replace4(p->ip->hdr_checksum, p->ip->src_addr, ip_be);
	p->tcp->cksum = fe_csum_replace2(tcp_csum, p->tcp->src_port, port_be);
	p->ip->src_addr = ip_be;
	p->tcp->src_port = port_be;
}

/*
 * Put Ethernet, IPv4 and TCP headers (with `optlen` bytes of options, a
 * multiple of 4) in front of the payload-only mbuf m, and sum both
 * checksums in full.  Returns -1 if m lacks headroom.
 */
static inline int fe_pkt_push_tcp(struct fe_lcore *lc, struct rte_mbuf *m, const struct fe_tuple *t,
				  uint32_t seq, uint32_t ack, uint8_t flags, uint16_t win,
				  const uint8_t *opt, uint8_t optlen)
{
	uint16_t payload = rte_pktmbuf_data_len(m);
	uint16_t l4 = (uint16_t)(sizeof(struct rte_tcp_hdr) + optlen);
	uint8_t *b;
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;
	struct rte_tcp_hdr *tcp;

	/* A payload cut at an odd offset (a request boundary, an overlap
	 * trimmed off) would put the headers at an odd address: move it back
	 * a byte first (rare, and only the cut segment). */
	if ((m->data_off & 1) && rte_pktmbuf_headroom(m) > 0) {
		memmove(rte_pktmbuf_mtod(m, uint8_t *) - 1, rte_pktmbuf_mtod(m, uint8_t *), payload);
		m->data_off--;
	}
	b = (uint8_t *)rte_pktmbuf_prepend(m, (uint16_t)(RTE_ETHER_HDR_LEN +
							 sizeof(struct rte_ipv4_hdr) + l4));
	eth = (struct rte_ether_hdr *)b;
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	tcp = (struct rte_tcp_hdr *)(ip + 1);
	if (!b)
		return -1;
	fe_pkt_set_macs(lc, eth);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + l4 + payload));
	ip->packet_id = rte_cpu_to_be_16(lc->ip_id++);
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_TCP;
	ip->hdr_checksum = 0;
	ip->src_addr = t->saddr;
	ip->dst_addr = t->daddr;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	tcp->src_port = t->sport;
	tcp->dst_port = t->dport;
	tcp->sent_seq = rte_cpu_to_be_32(seq);
	tcp->recv_ack = rte_cpu_to_be_32(ack);
	tcp->data_off = (uint8_t)((l4 / 4) << 4);
	tcp->tcp_flags = flags;
	tcp->rx_win = rte_cpu_to_be_16(win);
	tcp->cksum = 0;
	tcp->tcp_urp = 0;
	if (optlen)
		memcpy(tcp + 1, opt, optlen);
	tcp->cksum = fe_tcp_csum(ip, tcp, (uint16_t)(l4 + payload));
	return 0;
}

/* A fresh payload-only mbuf holding a copy of `len` bytes; NULL if none left. */
static inline struct rte_mbuf *fe_pkt_new(struct fe_lcore *lc, const void *data, uint16_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(lc->pool);
	char *d;

	if (!m)
		return NULL;
	if (len) {
		d = rte_pktmbuf_append(m, len);
		if (!d) {
			rte_pktmbuf_free(m);
			return NULL;
		}
		memcpy(d, data, len);
	}
	return m;
}

#endif /* FE_PKT_H */
