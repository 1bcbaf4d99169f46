/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Forwarding helpers for switch-resident tc programs: what an L3 switch does
 * to a packet once a table has decided where it goes.  Shared by the Miresga
 * switch pipeline and the l4switch baseline, so both forward (and fail to
 * forward) the same way; neither owns the other's tables or counters.  The
 * hash they share, mg_mix32(), is in miresga.h, where C test probes see it.
 */
#ifndef MG_FWD_H
#define MG_FWD_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "miresga.h"
#include "mg_pkt.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/*
 * Send a packet out of `ifindex` towards `dmac` as a router does: TTL - 1,
 * both MACs rewritten, redirect.  The caller has checked p->ttl > 1 (and
 * counts the packet its own way).  Returns the redirect verdict, or
 * TC_ACT_SHOT if the skb could not be written (allocation failure).
 *
 * The egress ifindex also lands in skb->cb[0], the model of a Tofino's
 * bridged metadata; BPF_PROG_TEST_RUN returns it to the packet tests.
 */
static __always_inline int mg_l3_redirect(struct __sk_buff *skb, const struct mg_pkt *p,
					  const __u8 *dmac, const __u8 *smac, __u32 ifindex)
{
	if (mg_dec_ttl(skb, p) || mg_set_macs(skb, dmac, smac))
		return TC_ACT_SHOT;
	skb->cb[0] = ifindex;
	return bpf_redirect(ifindex, 0);
}

/*
 * Ask the kernel's FIB (the switch's L3 table) for the next hop of a TCP
 * packet that will leave as (src, sport) -> (p->daddr, p->dport).  The lookup
 * reads these parameters, not the packet's headers, so it can precede the
 * rewrite it describes.
 *
 * tot_len stays 0: the kernel then checks the MTU with is_skb_forwardable(),
 * which knows that a GRO-merged packet is segmented on the way out; given the
 * IP total length instead, it would call every such packet too big.  A
 * BPF_FIB_LKUP_RET_FRAG_NEEDED answer means the packet really does not fit
 * the next link: callers hand it to the kernel *unrewritten*, so that the
 * ICMP "fragmentation needed" reaches the host whose path MTU it is.
 */
static __always_inline long mg_fib_next_hop(struct __sk_buff *skb, const struct mg_pkt *p,
					    __be32 src, __be16 sport, struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = IPPROTO_TCP;
	fib->sport = sport;
	fib->dport = p->dport;
	fib->ifindex = skb->ifindex;
	fib->tos = p->tos;
	fib->ipv4_src = src;
	fib->ipv4_dst = p->daddr;
	return bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
}

#endif /* MG_FWD_H */
