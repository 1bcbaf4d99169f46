/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet helpers for tc (struct __sk_buff) eBPF programs: two IPv4/TCP
 * parsers into one struct mg_pkt (a switch's fixed parser, mg_parse(), and a
 * host's, mg_parse_copy()), SYN option parsing, and header rewrites with
 * incremental checksums.  Shared by the Miresga switch pipeline, the
 * back-end agent and the l4switch baseline; nothing here knows about
 * Miresga's tables.
 *
 * Two rules hold throughout:
 *  - Fields are read once, through the parser, into a struct mg_pkt; every
 *    write goes through an offset-based helper (bpf_skb_store_bytes,
 *    bpf_l3/l4_csum_replace).  Those helpers may move the packet, which
 *    invalidates packet pointers, so none are kept across a write.
 *  - Checksums are patched incrementally by the kernel helpers, never
 *    recomputed by hand, because only the helpers know the skb's checksum
 *    state.  On a CHECKSUM_PARTIAL skb (sent by a local stack or a veth peer
 *    with TX offload on) the TCP checksum field holds just the pseudo-header
 *    sum and a device finishes it later: bpf_l4_csum_replace() then applies
 *    pseudo-header changes (flag BPF_F_PSEUDO_HDR) and ignores the rest,
 *    which is exactly right.  On CHECKSUM_COMPLETE skbs it keeps skb->csum
 *    in step.
 */
#ifndef MG_PKT_H
#define MG_PKT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MG_ETH_HLEN 14
#define MG_L3_OFF MG_ETH_HLEN
/* Only IPv4 without options is parsed down to TCP, as a switch's fixed
 * parser would; so TCP always starts here when it is parsed at all. */
#define MG_L4_OFF (MG_L3_OFF + 20)
/*
 * Bytes the parser reads through direct packet access, and so wants in the
 * linear part of the skb: Ethernet, IPv4 and the fixed TCP header (options
 * are read with bpf_skb_load_bytes(), which does not need them there).  Not
 * one byte more: TCP sends a TSO segment with its headers (66 bytes with
 * timestamps) linear and its payload in pages, and keeps it for
 * retransmission, so pulling payload costs a new head and a copy on every
 * packet (bpf_skb_pull_data() unclones it).  When this also covered the
 * option space, every response segment crossing a switch port paid that, and
 * the l4switch fell to a third of `direct` at 1 MB, one connection per request.
 */
#define MG_HDR_PULL (MG_L4_OFF + 20)

#define MG_IP_TOS_OFF (MG_L3_OFF + 1)
#define MG_IP_CSUM_OFF (MG_L3_OFF + 10)
#define MG_IP_TTL_OFF (MG_L3_OFF + 8)
#define MG_IP_SADDR_OFF (MG_L3_OFF + 12)
#define MG_IP_DADDR_OFF (MG_L3_OFF + 16)
#define MG_TCP_SPORT_OFF (MG_L4_OFF + 0)
#define MG_TCP_DPORT_OFF (MG_L4_OFF + 2)
#define MG_TCP_CSUM_OFF (MG_L4_OFF + 16)

/* TCP flags, byte 13 of the header. */
#define MG_TCP_FIN 0x01
#define MG_TCP_SYN 0x02
#define MG_TCP_RST 0x04
#define MG_TCP_PSH 0x08
#define MG_TCP_ACK 0x10
#define MG_TCP_URG 0x20

/* What the parser found.  Ordered: a higher value means more was parsed. */
enum mg_parse_result {
	MG_PKT_NOT_IPV4 = 0, /* not IPv4 (or shorter than Ethernet): not ours */
	MG_PKT_IPV4_BAD,     /* EtherType IPv4 but the header is truncated or inconsistent;
			      * saddr/daddr are filled in if 20 bytes were there */
	MG_PKT_IPV4,         /* sound IPv4, but not a plain TCP segment: another
			      * protocol, a fragment, or IP options (see ihl/frag) */
	MG_PKT_TCP_BAD,      /* sound IPv4 + TCP whose header is truncated or inconsistent */
	MG_PKT_TCP,          /* sound IPv4 (ihl 5, unfragmented) + sound TCP header */
};

struct mg_pkt {
	__be32 saddr;
	__be32 daddr;
	__u16 tot_len;     /* IPv4 total length (host order) */
	__u16 ip_id;       /* IPv4 identification (host order) */
	__u8 proto;
	__u8 ttl;
	__u8 ihl;
	__u8 frag;         /* MF set or offset non-zero */
	__u8 tos;
	/* valid for MG_PKT_TCP only */
	__u8 tcp_flags;
	__u8 doff;         /* TCP header length in 32-bit words */
	__be16 sport;
	__be16 dport;
	__u16 window;      /* host order, as sent (unscaled) */
	__u16 l4_off;      /* TCP header offset in the frame: MG_L4_OFF from mg_parse() */
	__u32 seq;         /* host order */
	__u32 ack_seq;     /* host order */
	__u32 payload_len; /* TCP payload bytes (Ethernet padding excluded); mg_parse() only */
};

/* Bytes of TCP options of a parsed segment (0..40). */
static __always_inline __u32 mg_tcp_opt_len(const struct mg_pkt *p)
{
	return p->doff * 4 - 20;
}

static __always_inline __u16 mg_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * Parse Ethernet / IPv4 / TCP.  Headers that sit in paged data are pulled
 * into the linear part first, so direct packet access sees them.
 */
static __always_inline int mg_parse(struct __sk_buff *skb, struct mg_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + MG_HDR_PULL > data_end && skb->len > (__u32)(data_end - data)) {
		bpf_skb_pull_data(skb, skb->len < MG_HDR_PULL ? skb->len : MG_HDR_PULL);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return MG_PKT_NOT_IPV4;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return MG_PKT_NOT_IPV4;

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return MG_PKT_IPV4_BAD;
	/* Addresses first: a caller may still want to know whether a broken
	 * packet was addressed to it. */
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	p->tos = ip->tos;
	p->ihl = ip->ihl;
	if (ip->version != 4 || ip->ihl < 5)
		return MG_PKT_IPV4_BAD;
	p->tot_len = bpf_ntohs(ip->tot_len);
	p->ip_id = bpf_ntohs(ip->id);
	/* A total length beyond the frame is a truncated packet; shorter than
	 * the frame is Ethernet padding and fine. */
	if (p->tot_len < ip->ihl * 4 || p->tot_len > skb->len - MG_ETH_HLEN)
		return MG_PKT_IPV4_BAD;
	p->frag = (ip->frag_off & bpf_htons(0x3fff)) != 0; /* MF | offset */
	if (p->ihl != 5 || p->frag || p->proto != IPPROTO_TCP)
		return MG_PKT_IPV4;

	struct tcphdr *tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end)
		return MG_PKT_TCP_BAD;
	p->doff = tcp->doff;
	if (p->doff < 5 || p->doff * 4 > p->tot_len - 20)
		return MG_PKT_TCP_BAD;
	p->sport = tcp->source;
	p->dport = tcp->dest;
	p->window = bpf_ntohs(tcp->window);
	p->l4_off = MG_L4_OFF;
	p->seq = bpf_ntohl(tcp->seq);
	p->ack_seq = bpf_ntohl(tcp->ack_seq);
	p->tcp_flags = ((__u8 *)tcp)[13];
	p->payload_len = p->tot_len - 20 - p->doff * 4;
	return MG_PKT_TCP;
}

/*
 * Parse Ethernet / IPv4 / TCP as a host's program needs it (the back-end
 * agent, which rewrites what the host's own stack sends and receives).
 *
 * Copies rather than direct packet access: bpf_skb_load_bytes() reads
 * non-linear skbs too (headers split by GRO or a driver) without pulling
 * them, and copies cannot be invalidated by the store and checksum helpers
 * called later.
 *
 * Looser than mg_parse(), because the host's stack, not a fixed pipeline,
 * decides what is sound:
 *  - IP options are allowed: l4_off says where TCP starts;
 *  - another protocol is MG_PKT_IPV4 whatever its header looks like;
 *  - the first fragment of a segment is parsed (its TCP checksum covers the
 *    reassembled segment, which an incremental update keeps right); only a
 *    later one, which has no TCP header, is MG_PKT_IPV4;
 *  - lengths are not held against the frame (payload_len is not computed);
 *  - a frame too short for an Ethernet header counts as truncated
 *    (MG_PKT_IPV4_BAD), not as another protocol.
 */
static __always_inline int mg_parse_copy(struct __sk_buff *skb, struct mg_pkt *p)
{
	struct ethhdr eth;
	struct iphdr ip;
	struct tcphdr tcp;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return MG_PKT_IPV4_BAD;
	if (eth.h_proto != bpf_htons(ETH_P_IP))
		return MG_PKT_NOT_IPV4;   /* IPv6, ARP: Miresga is IPv4 only */
	if (bpf_skb_load_bytes(skb, MG_L3_OFF, &ip, sizeof(ip)))
		return MG_PKT_IPV4_BAD;
	p->proto = ip.protocol;
	if (ip.protocol != IPPROTO_TCP)
		return MG_PKT_IPV4;
	if (ip.version != 4 || ip.ihl < 5)
		return MG_PKT_IPV4_BAD;
	p->frag = (ip.frag_off & bpf_htons(0x3fff)) != 0; /* MF | offset */
	if (ip.frag_off & bpf_htons(0x1fff))               /* offset: a later fragment */
		return MG_PKT_IPV4;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->tot_len = bpf_ntohs(ip.tot_len);
	p->ip_id = bpf_ntohs(ip.id);
	p->ttl = ip.ttl;
	p->tos = ip.tos;
	p->ihl = ip.ihl;
	p->l4_off = MG_L3_OFF + ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, p->l4_off, &tcp, sizeof(tcp)))
		return MG_PKT_TCP_BAD;
	if (tcp.doff < 5)
		return MG_PKT_TCP_BAD;
	p->doff = tcp.doff;
	p->sport = tcp.source;
	p->dport = tcp.dest;
	p->window = bpf_ntohs(tcp.window);
	p->seq = bpf_ntohl(tcp.seq);
	p->ack_seq = bpf_ntohl(tcp.ack_seq);
	p->tcp_flags = ((__u8 *)&tcp)[13];
	return MG_PKT_TCP;
}

/* ------------------------------------------------------------ SYN options */

struct mg_syn_opts {
	__u16 mss;      /* 536 (RFC 9293 default) if absent or zero */
	__u8 wscale;    /* valid if has_wscale; clamped to 14 (RFC 7323 2.3) */
	__u8 has_wscale;
	__u8 sack_ok;
	__u8 has_ts;    /* the client offered timestamps (RFC 7323) */
	__u8 _pad[2];
	__u32 tsval;    /* its TSval, host order, valid if has_ts */
};

#define MG_TCPOPT_EOL 0
#define MG_TCPOPT_NOP 1
#define MG_TCPOPT_MSS 2
#define MG_TCPOPT_WSCALE 3
#define MG_TCPOPT_SACK_PERM 4
#define MG_TCPOPT_TIMESTAMP 8

/* State of the option walk, shared with the bpf_loop() callback. */
struct mg_syn_opts_walk {
	/* 64 bytes so that any index masked with 63 stays inside; only the
	 * first `len` (<= 40) are loaded. */
	__u8 buf[64];
	__u32 len;
	__u32 i;
	int bad;
	struct mg_syn_opts o;
};

/* One step of the walk: consume one option at w->i.  Returns 1 to stop. */
static int mg_syn_opt_step(__u32 n, struct mg_syn_opts_walk *w)
{
	__u32 i = w->i;
	__u32 len = w->len;

	if (i >= len || len > 40)
		return 1;
	__u8 kind = w->buf[i & 63];
	if (kind == MG_TCPOPT_EOL)
		return 1;
	if (kind == MG_TCPOPT_NOP) {
		w->i = i + 1;
		return 0;
	}
	if (i + 1 >= len)
		goto bad;
	__u8 olen = w->buf[(i + 1) & 63];
	if (olen < 2 || i + olen > len)
		goto bad;
	if (kind == MG_TCPOPT_MSS) {
		if (olen != 4)
			goto bad;
		__u16 mss = ((__u16)w->buf[(i + 2) & 63] << 8) | w->buf[(i + 3) & 63];
		if (mss) /* Linux ignores an MSS of zero; so do we */
			w->o.mss = mss;
	} else if (kind == MG_TCPOPT_WSCALE) {
		if (olen != 3)
			goto bad;
		__u8 ws = w->buf[(i + 2) & 63];
		w->o.wscale = ws > 14 ? 14 : ws;
		w->o.has_wscale = 1;
	} else if (kind == MG_TCPOPT_SACK_PERM) {
		if (olen != 2)
			goto bad;
		w->o.sack_ok = 1;
	} else if (kind == MG_TCPOPT_TIMESTAMP && olen == 10) {
		/* A timestamp option of another length is ignored, as Linux does. */
		w->o.tsval = ((__u32)w->buf[(i + 2) & 63] << 24) | ((__u32)w->buf[(i + 3) & 63] << 16) |
			     ((__u32)w->buf[(i + 4) & 63] << 8) | w->buf[(i + 5) & 63];
		w->o.has_ts = 1;
	}
	w->i = i + olen;
	return 0;
bad:
	w->bad = 1;
	return 1;
}

/*
 * Parse the options of a SYN whose TCP header is `doff` words long.
 * Returns 0, or -1 if the option list is malformed: a length byte under 2
 * (which would loop a naive parser forever), an option running past the
 * header, or MSS / window-scale / SACK-permitted with the wrong length.
 * Unknown options are skipped; a repeated option counts as its last copy.
 *
 * The walk visits packet bytes, not state, as a switch's parser state
 * machine does; each step consumes at least one of the <= 40 option bytes,
 * so 40 steps always finish.  bpf_loop() makes the verifier check one step
 * instead of every path through 40 unrolled ones.
 */
static __always_inline int mg_parse_syn_opts(struct __sk_buff *skb, __u32 doff,
					     struct mg_syn_opts *o)
{
	struct mg_syn_opts_walk w = {};
	__u32 len = doff * 4 - 20;

	w.o.mss = 536;
	if (len > 40)
		return -1;
	if (len > 0) {
		if (bpf_skb_load_bytes(skb, MG_L4_OFF + 20, w.buf, len) < 0)
			return -1;
		w.len = len;
		bpf_loop(40, mg_syn_opt_step, &w, 0);
	}
	*o = w.o;
	return w.bad ? -1 : 0;
}

/* ------------------------------------------------------- header rewrites */

/* Replace the IPv4 address at `field_off` (MG_IP_SADDR_OFF or
 * MG_IP_DADDR_OFF) of a TCP packet, patching both checksums. */
static __always_inline int mg_set_ipv4_addr(struct __sk_buff *skb, __u32 field_off, __be32 from,
					    __be32 to)
{
	if (bpf_l4_csum_replace(skb, MG_TCP_CSUM_OFF, from, to, BPF_F_PSEUDO_HDR | sizeof(to)))
		return -1;
	if (bpf_l3_csum_replace(skb, MG_IP_CSUM_OFF, from, to, sizeof(to)))
		return -1;
	return bpf_skb_store_bytes(skb, field_off, &to, sizeof(to), 0);
}

/* Replace a TCP port (MG_TCP_SPORT_OFF or MG_TCP_DPORT_OFF).  Ports are not
 * in the pseudo header: a CHECKSUM_PARTIAL skb needs no patch, and the
 * helper knows not to apply one. */
static __always_inline int mg_set_tcp_port(struct __sk_buff *skb, __u32 field_off, __be16 from,
					   __be16 to)
{
	if (bpf_l4_csum_replace(skb, MG_TCP_CSUM_OFF, from, to, sizeof(to)))
		return -1;
	return bpf_skb_store_bytes(skb, field_off, &to, sizeof(to), 0);
}

/* Decrement the TTL as a router does.  TTL and protocol share a 16-bit
 * word of the header checksum. */
static __always_inline int mg_dec_ttl(struct __sk_buff *skb, const struct mg_pkt *p)
{
	__be16 from = bpf_htons(((__u16)p->ttl << 8) | p->proto);
	__be16 to = bpf_htons(((__u16)(p->ttl - 1) << 8) | p->proto);
	__u8 ttl = p->ttl - 1;

	if (bpf_l3_csum_replace(skb, MG_IP_CSUM_OFF, from, to, sizeof(to)))
		return -1;
	return bpf_skb_store_bytes(skb, MG_IP_TTL_OFF, &ttl, 1, 0);
}

/* Set the TOS byte (DSCP and ECN) of a parsed IPv4 packet; p->tos is what it
 * holds now.  Version/IHL and TOS share a 16-bit word of the header
 * checksum; nothing else covers them (not the TCP pseudo header). */
static __always_inline int mg_set_tos(struct __sk_buff *skb, const struct mg_pkt *p, __u8 tos)
{
	__u16 vihl = (__u16)(0x40 | (p->ihl & 0xf)) << 8;
	__be16 from = bpf_htons(vihl | p->tos);
	__be16 to = bpf_htons(vihl | tos);

	if (tos == p->tos)
		return 0;
	if (bpf_l3_csum_replace(skb, MG_IP_CSUM_OFF, from, to, sizeof(to)))
		return -1;
	return bpf_skb_store_bytes(skb, MG_IP_TOS_OFF, &tos, 1, 0);
}

/* Rewrite both MAC addresses; Ethernet has no checksum to patch. */
static __always_inline int mg_set_macs(struct __sk_buff *skb, const __u8 *dst, const __u8 *src)
{
	__u8 macs[12];

	__builtin_memcpy(macs, dst, 6);
	__builtin_memcpy(macs + 6, src, 6);
	return bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0);
}

#endif /* MG_PKT_H */
