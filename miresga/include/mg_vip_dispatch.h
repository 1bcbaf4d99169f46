/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The entry of every switch pipeline in this repository (the Miresga switch
 * and the l4switch baseline): parse the packet, then ask whether it is
 * addressed to a VIP.  Only a sound TCP segment to a VIP's service port is
 * the pipeline's to balance; anything else to a VIP address (another
 * protocol, a fragment, IP options, a truncated header) is dropped here
 * rather than handed to a kernel that does not own the address, and counted
 * by why.  Both programs thus refuse the same packets for the same reasons.
 *
 * Each program numbers its counters in its own enum and keeps them in its
 * own per-CPU array; it passes the map and the indices of the three outcomes
 * counted here.
 */
#ifndef MG_VIP_DISPATCH_H
#define MG_VIP_DISPATCH_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "miresga.h"
#include "mg_pkt.h"
#include "mg_vip_maps.h"

/* Add n to counter idx of a pipeline's per-CPU array of __u64. */
static __always_inline void mg_count(void *counters, __u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(counters, &idx);

	if (c)
		*c += n; /* per-CPU: no atomics needed */
}

/* Where a program counts what the prologue decides. */
struct mg_vip_counters {
	__u32 pass;             /* not IPv4, or another port of a VIP address: forwarded as is */
	__u32 vip_malformed;    /* to a VIP address, but truncated, fragmented or with IP options */
	__u32 vip_not_tcp;      /* to a VIP address, not TCP */
};

enum mg_vip_dispatch {
	MG_VD_DONE,     /* judged and counted: the program returns *verdict */
	MG_VD_VIP,      /* a sound TCP segment to a VIP's service port: *vip is that VIP */
	MG_VD_NOT_VIP,  /* IPv4, not to a VIP address: *parsed says how far the parser got */
};

/*
 * Parse `skb` into `p` and sort it.  A packet no VIP owns comes back as
 * MG_VD_NOT_VIP with the parser's verdict (enum mg_parse_result) in *parsed,
 * for the program's own branches (a back-end's reply, say).
 */
static __always_inline enum mg_vip_dispatch
mg_vip_dispatch(struct __sk_buff *skb, struct mg_pkt *p, void *counters,
		const struct mg_vip_counters ix, int *parsed, const struct mg_vip **vip,
		int *verdict)
{
	int r = mg_parse(skb, p);

	*parsed = r;
	if (r == MG_PKT_NOT_IPV4) {
		mg_count(counters, ix.pass, 1);
		*verdict = TC_ACT_OK;
		return MG_VD_DONE;
	}
	if (!p->daddr || !bpf_map_lookup_elem(&vip_addrs, &p->daddr))
		return MG_VD_NOT_VIP;
	*verdict = TC_ACT_SHOT;
	if (r == MG_PKT_IPV4_BAD) {
		mg_count(counters, ix.vip_malformed, 1);
		return MG_VD_DONE;
	}
	if (p->proto != IPPROTO_TCP) {
		mg_count(counters, ix.vip_not_tcp, 1);
		return MG_VD_DONE;
	}
	if (r != MG_PKT_TCP) {
		/* a fragment, IP options, a bad TCP header */
		mg_count(counters, ix.vip_malformed, 1);
		return MG_VD_DONE;
	}
	struct mg_vip_key vk = {.ip_be = p->daddr, .port_be = p->dport};
	*vip = bpf_map_lookup_elem(&vip_table, &vk);
	if (!*vip) {
		/* another port of the VIP address */
		mg_count(counters, ix.pass, 1);
		*verdict = TC_ACT_OK;
		return MG_VD_DONE;
	}
	return MG_VD_VIP;
}

#endif /* MG_VIP_DISPATCH_H */
