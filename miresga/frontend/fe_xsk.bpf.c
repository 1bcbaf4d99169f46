// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The af_xdp port's XDP program: the frames the front-end serves go to its
 * AF_XDP socket, every other frame to the kernel.
 *
 * The link is shared.  The front-end host's kernel talks on it too: ARP, and
 * the offload channel's TCP connection to the switch.  An af_packet port
 * sees a copy of every frame and the kernel still gets the original; an
 * AF_XDP socket takes the frames it is given away from the kernel, so the
 * program gives it exactly those the front-end would not call "not ours"
 * (fe_input()): TCP to the VIP's port and TCP from a back-end's.  Until the
 * front-end has filled the steering map (fe_port_steer()), nothing matches
 * and the kernel gets everything.
 *
 * DPDK's af_xdp PMD loads this object (vdev argument xdp_prog=), attaches it
 * to the interface and puts its socket in xsks_map at the queue it reads.
 * A frame of the front-end's that finds no socket there (the front-end is
 * stopping) is dropped: the kernel has nothing to do with it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "fe_xsk.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The name the PMD looks for. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FE_XSK_STEER_MAX);
	__type(key, struct fe_xsk_key);
	__type(value, __u8);
} fe_xsk_steer SEC(".maps");

static __always_inline int matches(__be32 addr_be, __be16 port_be, __u8 want)
{
	struct fe_xsk_key k = {.addr_be = addr_be, .port_be = port_be};
	__u8 *m = bpf_map_lookup_elem(&fe_xsk_steer, &k);

	return m && *m == want;
}

SEC("xdp")
int fe_xsk(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_TCP || ip->ihl < 5)
		return XDP_PASS;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > end)
		return XDP_PASS;
	if (!matches(ip->daddr, tcp->dest, FE_XSK_TO) &&
	    !matches(ip->saddr, tcp->source, FE_XSK_FROM))
		return XDP_PASS;
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_DROP);
}
