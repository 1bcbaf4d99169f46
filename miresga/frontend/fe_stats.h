/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Counters and the stats socket.
 *
 * Each lcore owns its counters and is their only writer, so the hot path
 * increments plain integers; the stats thread reads them (aligned 64-bit
 * loads do not tear on the targets DPDK supports) and sums over lcores.
 * The counter lists below are X-macros so that a field, its JSON name and
 * its group are written down once.
 *
 * The socket is a Unix stream socket: connect, read one JSON object, EOF.
 * miresga/control/frontend.py reads it; `socat - UNIX:PATH` works by hand.
 */
#ifndef FE_STATS_H
#define FE_STATS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Packets, by where they came from and where they went. */
#define FE_PACKET_COUNTERS(X)                                                   \
	X(rx) X(rx_bytes) X(tx) X(tx_bytes) X(tx_dropped)                        \
	X(from_client) X(from_backend) X(not_ours) X(own)                        \
	X(malformed) X(bad_checksum) X(fragment) X(multi_segment)                \
	X(to_backend) X(to_client) X(held) X(released) X(split)                  \
	X(syn_sent) X(syn_retransmit) X(ack_sent) X(rst_sent) X(answer_sent) X(fin_sent)           \
	X(no_flow) X(out_of_order) X(duplicate) X(hold_full) X(stale_backend)    \
	X(coalesced) X(hold_pool_full)                        \
	X(unexpected) X(retransmit_fwd) X(reincarnation) X(time_wait_reset)      \
	X(unadmitted) X(known_reset) X(orphan_reset) X(own_ack) X(rtx)          \
	X(install_sent) X(remove_marked) X(remove_sent)                          \
	X(fin_deferred) X(fin_released) X(fin_absorbed) X(idle_fin)              \
	X(fin_again) X(fin_refreshed)                                            \
	X(drain_fin) X(fin_swallowed) X(drain_close) X(close_marked) X(close_unmarked)

/* What happened to requests. */
#define FE_DECISION_COUNTERS(X)                                                 \
	X(first) X(same_backend) X(other_backend) X(no_offload) X(opaque)        \
	X(empty_close) X(pinned) X(half_closed)

/* Errors by kind: the answers the front-end gave, then other failures. */
#define FE_ERROR_COUNTERS(X)                                                    \
	X(e400, "400") X(e404, "404") X(e408, "408") X(e431, "431") X(e503, "503") \
	X(flow_table_full, "flow_table_full") X(syn_timeout, "syn_timeout")      \
	X(backend_refused, "backend_refused") X(agent_mismatch, "agent_mismatch") \
	X(body_framing, "body_framing") X(idle_timeout, "idle_timeout")          \
	X(client_reset, "client_reset") X(backend_reset, "backend_reset")        \
	X(no_mbuf, "no_mbuf") X(path_refused, "path_refused")                    \
	X(rtx_timeout, "rtx_timeout")                                            \
	X(drain_timeout, "drain_timeout") X(close_timeout, "close_timeout")      \
	X(idle_close_race, "idle_close_race")                                    \
	X(evicted_for_flow, "evicted_for_flow")                                  \
	X(evicted_for_mbufs, "evicted_for_mbufs")

/* Offload entries as the packet path queued them, and the switch's answers
 * as it acted on them (the channel thread counts what it sent and what the
 * switch answered). */
#define FE_OFFLOAD_COUNTERS(X)                                                  \
	X(queued_add) X(queued_del) X(queued_query) X(ring_full)                 \
	X(del_deferred) X(del_retried) X(del_lost)                               \
	X(confirmed) X(confirm_refused) X(confirm_timeout) X(late_results)       \
	X(entry_busy) X(entry_idle) X(entry_gone) X(query_unanswered)

#define FE_FIELD(name) uint64_t name;
#define FE_FIELD2(name, json) uint64_t name;
struct fe_stats {
	struct { FE_PACKET_COUNTERS(FE_FIELD) } pkt;
	struct { FE_DECISION_COUNTERS(FE_FIELD) } decision;
	struct { FE_ERROR_COUNTERS(FE_FIELD2) } err;
	struct { FE_OFFLOAD_COUNTERS(FE_FIELD) } offload;
	uint64_t requests;
	uint64_t held_mbufs;    /* a gauge: mbufs parked in flows right now */
	uint64_t busy_cycles;   /* timer cycles of loop turns that had work (not idle polls) */
};
#undef FE_FIELD
#undef FE_FIELD2

struct fe_lcore;
struct fe_offload;

struct fe_stats_server {
	char path[108];
	int fd;
	pthread_t thread;
	int started;
	volatile int stop;
	/* what the JSON is built from */
	struct fe_lcore **lcores;
	unsigned int n_lcores;
	struct fe_offload *offload;
	int port_id;            /* -1: no port (test harness) */
	uint64_t start_us;
};

/* Writes the stats JSON into buf; returns its length (truncated at len-1). */
size_t fe_stats_json(const struct fe_stats_server *s, char *buf, size_t len);

int fe_stats_server_start(struct fe_stats_server *s);
void fe_stats_server_stop(struct fe_stats_server *s);

#endif /* FE_STATS_H */
