/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The l4switch's tables.  Layouts are in l4switch.h (its own) and miresga.h
 * (the VIP and back-end tables it shares with the Miresga switch, defined
 * once in miresga/include/mg_vip_maps.h).
 *
 * Sizes marked "set at load" are overridden by the driver through
 * bpf_map__set_max_entries() (switchhost/ebpf_switch.py).
 */
#ifndef L4SWITCH_MAPS_H
#define L4SWITCH_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "l4switch.h"
#include "mg_vip_maps.h"

/* Maglev lookup tables, two generations per VIP (see struct l4_config): slot
 * -> back-end index, L4_BACKEND_NONE for a VIP without back-ends.  Set at load:
 * 2 * vip_capacity * maglev_size. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * L4_MAGLEV_SIZE_DEFAULT);
	__type(key, __u32);
	__type(value, __u32);
} maglev_table SEC(".maps");

/* Connection table, two entries per connection (see struct l4_conn_key).
 * LRU: when full, adding a connection evicts the least recently used entry
 * instead of failing, as Katran's connection table does.  Set at load:
 * 2 * connection capacity. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2 * L4_CONN_CAPACITY_DEFAULT);
	__type(key, struct l4_conn_key);
	__type(value, struct l4_conn);
} conn_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l4_config);
} config SEC(".maps");

/* Per-CPU counters, index = enum l4_counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, L4__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

#endif /* L4SWITCH_MAPS_H */
