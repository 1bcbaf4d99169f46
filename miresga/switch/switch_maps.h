/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The switch pipeline's tables.  Each map plays one Tofino table or register
 * array; the layouts of keys and values are in miresga.h because the Python
 * control plane writes them (switchhost/layouts.py mirrors them).
 *
 * Sizes marked "set at load" are overridden by the loader through
 * bpf_map__set_max_entries() (switchhost/ebpf_switch.py); the numbers
 * here are what a bare `bpftool prog load` would get.
 */
#ifndef MIRESGA_SWITCH_MAPS_H
#define MIRESGA_SWITCH_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "miresga.h"
#include "mg_vip_maps.h"

/* The merged flow table: (client IP, client port) -> back-end index.  Set at
 * load (default MG_FLOW_CAPACITY_DEFAULT).  Preallocated, so a full table
 * refuses inserts (E2BIG) instead of allocating on the control path. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_FLOW_CAPACITY_DEFAULT);
	__type(key, struct mg_flow_key);
	__type(value, struct mg_flow);
} flow_table SEC(".maps");

/* Front-end table: front-end index -> its port. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MG_MAX_FRONTENDS);
	__type(key, __u32);
	__type(value, struct mg_frontend);
} frontend_table SEC(".maps");

/* Front-end selection: hash(client) % fe_slots -> front-end indices.  Set
 * at load (default MG_FE_SLOTS_DEFAULT). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MG_FE_SLOTS_DEFAULT);
	__type(key, __u32);
	__type(value, struct mg_fe_slot);
} fe_select SEC(".maps");

/* Port table: ingress port (ifindex) -> role bits (MG_PORT_*).  A port not
 * in it is a plain port: clients, back-ends, anything else. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct mg_port);
} port_table SEC(".maps");

/* The data-plane table: dp_ways x 2^dp_slots_log2 slots, way w at
 * [w << dp_slots_log2, (w + 1) << dp_slots_log2).  Set at load (default
 * MG_DP_SLOTS_DEFAULT).  An array,
 * never a hash map: the pipeline writes it from packets, as a Tofino writes
 * register arrays, so nothing is allocated or inserted on the packet path. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MG_DP_SLOTS_DEFAULT);
	__type(key, __u32);
	__type(value, struct mg_dp_slot);
} dp_table SEC(".maps");

/* One element: secrets, epoch, SYN-ACK parameters, clocks. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_switch_config);
} config SEC(".maps");

/* Seen-connection filter: two generations of a Bloom filter, each
 * 2^filter_bits_log2 bits, stored as 64-bit words; generation g occupies
 * words [g * W, (g + 1) * W).  Set at load (2 * W entries).  On a Tofino
 * this is a pair of register arrays per generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} seen_filter SEC(".maps");

/* Per-branch counters, index = enum mg_switch_counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MG_SW__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

#endif /* MIRESGA_SWITCH_MAPS_H */
