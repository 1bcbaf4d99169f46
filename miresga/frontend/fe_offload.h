/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The offload channel client: tells the switch's control plane which flows
 * it may carry (ADD client -> back-end index) and which it must forget (DEL).
 *
 * The packet path never waits for it.  An lcore puts a wire-format
 * mg_ctl_entry on a ring (multi-producer, one enqueue, no syscall) and goes
 * on forwarding the flow itself; a plain pthread (not an EAL lcore, so it
 * sleeps in poll() instead of spinning) drains the ring into batches of up to
 * MG_CTL_MAX_BATCH entries, sends them over TCP as miresga.h describes, and
 * matches the ACKs.  Until an entry is installed the flow's packets keep
 * coming to the front-end, which is correct, only slower: that is the
 * paper's asynchronous synchronisation.
 *
 * Up to FE_OFFLOAD_INFLIGHT batches may await their ACK.  If the connection
 * drops they are sent again, first and in order, after reconnecting: ADD and
 * DEL are idempotent on the switch and order per flow is kept, so a resend
 * never leaves a stale entry behind.  If the ring is full the entry is
 * dropped and counted: an ADD lost keeps the flow on the front-end, a DEL
 * lost leaves an entry the switch ages out.
 *
 * Answers go the other way on a second ring, which the lcore drains once per
 * loop turn (fe_offload_results): whether an ADD pushed with want_result
 * was installed or refused (the `confirmed` hand-off), and the switch's
 * view of an entry's liveness (a query from an idle timer).
 */
#ifndef FE_OFFLOAD_H
#define FE_OFFLOAD_H

#include <pthread.h>
#include <stdint.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "miresga.h"

#define FE_OFFLOAD_INFLIGHT 8

/* The op of a liveness query on the request ring (not an mg_ctl_op). */
#define FE_OFFLOAD_QUERY 0x80

/* An lcore's request to the channel thread: an entry to ADD or DEL, or a key
 * to QUERY; want_result asks for an FE_OFFLOAD_ADDED/REFUSED answer. */
struct fe_offload_req {
	struct mg_ctl_entry e;
	uint8_t want_result;
	uint8_t _pad[3];
};

enum fe_offload_result_kind {
	FE_OFFLOAD_ADDED = 1,   /* an ADD pushed with want_result is in the switch */
	FE_OFFLOAD_REFUSED,     /* ... the switch refused it (table full, collision) */
	FE_OFFLOAD_LIVENESS,    /* the answer to a query */
};

struct fe_offload_result {
	uint8_t kind;           /* enum fe_offload_result_kind */
	uint8_t present;        /* LIVENESS: the switch has an entry for the key */
	uint8_t backend_idx;
	uint8_t _pad;
	struct mg_flow_key key;
	uint32_t idle_ms;       /* LIVENESS: since the entry last carried a packet */
};

struct fe_offload_batch {
	uint32_t seq;
	uint16_t count;
	struct mg_ctl_entry entries[MG_CTL_MAX_BATCH];
	uint8_t want_result[MG_CTL_MAX_BATCH];
};

/* Written by the channel thread, read by the stats thread. */
struct fe_offload_counters {
	uint64_t connects;
	uint64_t connect_failures;
	uint64_t disconnects;
	uint64_t batches_sent;
	uint64_t entries_sent;
	uint64_t adds_sent;
	uint64_t dels_sent;
	uint64_t batches_resent;
	uint64_t batches_acked;
	uint64_t added;
	uint64_t deleted;
	uint64_t refused;
	uint64_t bad_acks;
	uint64_t queries_unanswered;    /* this protocol version has no QUERY */
	uint64_t results_dropped;       /* the lcore's result ring was full */
	uint32_t connected;
	uint32_t inflight;
};

struct fe_offload {
	struct rte_ring *ring;          /* struct fe_offload_req, lcores -> thread */
	struct rte_ring *results;       /* struct fe_offload_result, thread -> lcore */
	int enabled;
	char host[64];
	uint16_t port;

	pthread_t thread;
	int thread_started;
	volatile int stop;
	uint64_t drain_deadline_us;     /* on stop: flush the ring until then */

	int fd;
	uint32_t next_seq;
	struct fe_offload_batch inflight[FE_OFFLOAD_INFLIGHT];
	uint32_t inflight_head, inflight_n;
	uint32_t resend_from;           /* inflight batches already on this connection */
	uint8_t out[sizeof(struct mg_ctl_hdr) + MG_CTL_MAX_BATCH * sizeof(struct mg_ctl_entry)];
	uint32_t out_len, out_off;
	uint8_t in[64];
	uint32_t in_len;
	uint64_t backoff_us;
	uint64_t next_connect_us;

	struct fe_offload_counters c;
};

/* Host "" or port 0 leaves the channel disabled: nothing is ever queued. */
int fe_offload_init(struct fe_offload *o, const char *host, uint16_t port, uint32_t ring_size);
int fe_offload_start(struct fe_offload *o);
/* Stops the thread after trying for up to drain_ms to send what is queued. */
void fe_offload_stop(struct fe_offload *o, unsigned int drain_ms);
void fe_offload_free(struct fe_offload *o);

/* Packet path: returns 0, or -1 if the entry was dropped (ring full). */
static inline int fe_offload_push(struct fe_offload *o, uint8_t op, const struct mg_flow_key *key,
				  uint8_t backend_idx, uint8_t vip_idx, int want_result)
{
	struct fe_offload_req r = {
		.e = {
			.client_ip_be = key->client_ip_be,
			.client_port_be = key->client_port_be,
			.op = op,
			.backend_idx = backend_idx,
			.vip_idx = vip_idx,
		},
		.want_result = (uint8_t)!!want_result,
	};

	return rte_ring_mp_enqueue_elem(o->ring, &r, sizeof(r)) == 0 ? 0 : -1;
}

/* Ask the switch how long the key's entry has been idle (an
 * FE_OFFLOAD_LIVENESS result answers).  0, or -1 if the ring is full. */
static inline int fe_offload_query(struct fe_offload *o, const struct mg_flow_key *key,
				   uint8_t vip_idx)
{
	return fe_offload_push(o, FE_OFFLOAD_QUERY, key, 0, vip_idx, 1);
}

/* Results the channel thread has for this lcore; non-blocking; returns how many. */
static inline unsigned int fe_offload_results(struct fe_offload *o, struct fe_offload_result *out,
					      unsigned int n)
{
	return rte_ring_sc_dequeue_burst_elem(o->results, out, sizeof(*out), n, NULL);
}

/* Channel side: hand a result to the lcore; -1 (and counted) if its ring is full. */
int fe_offload_post_result(struct fe_offload *o, const struct fe_offload_result *r);

#endif /* FE_OFFLOAD_H */
