/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The tables every switch pipeline of this repository has, with the layouts of
 * miresga.h: the Miresga switch (miresga/switch/) and the l4switch baseline
 * (targets/l4switch/) both include it, so one piece of the switch host programs
 * both (switchhost/pipeline.py).
 */
#ifndef MG_VIP_MAPS_H
#define MG_VIP_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "miresga.h"

/* VIP table, exact match on (destination IP, destination port) -> VIP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_VIPS);
	__type(key, struct mg_vip_key);
	__type(value, struct mg_vip);
} vip_table SEC(".maps");

/* VIP addresses alone: non-TCP and malformed packets to a VIP address are
 * recognised (and dropped) without a port to match on. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_VIPS);
	__type(key, __be32);
	__type(value, struct mg_vip);
} vip_addrs SEC(".maps");

/* VIP index -> (IP, port): the source a back-end's packet is rewritten to.
 * Flow entries carry only the index, to stay small. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MG_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct mg_vip_key);
} vip_by_idx SEC(".maps");

/* Back-end table: index -> address, next-hop MAC, egress port; ifindex 0:
 * unused.  Every back-end the switch may ever send to has an entry, in a
 * pool or not: a connection keeps its back-end after the pool changes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MG_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct mg_backend);
} backend_table SEC(".maps");

/* Back-end service address -> index: recognises packets from a back-end. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_BACKENDS);
	__type(key, struct mg_backend_key);
	__type(value, __u32);
} backend_addrs SEC(".maps");

#endif
