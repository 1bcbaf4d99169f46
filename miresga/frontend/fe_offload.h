/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The front-end's client of the switch host's control protocol (version 2,
 * miresga/include/miresga.h): it tells the switch which flows it may carry
 * (ADD client -> back-end index) and which it must forget (DEL), and asks how
 * recently an entry carried a packet (QUERY).
 *
 * The packet path never waits for it.  An lcore puts an entry or a key on a
 * ring (multi-producer, one enqueue, no syscall) and goes on forwarding the
 * flow itself; a plain pthread (not an EAL lcore, so it sleeps in poll()
 * instead of spinning) connects, proves the front-end's key (HMAC-SHA256
 * through OpenSSL's libcrypto), drains the rings into BATCH and QUERY messages of up
 * to MG_CTL_MAX_BATCH items, MACs every message, and matches the answers.
 * What an lcore asked to hear back (an ADD pushed with want_result, every
 * query) comes back as a struct fe_offload_result on a third ring, which the
 * lcore reads with fe_offload_results().  Until an entry is installed the
 * flow's packets keep coming to the front-end, which is correct, only slower:
 * that is the paper's asynchronous synchronisation.
 *
 * Up to FE_OFFLOAD_INFLIGHT messages may await their answer.  If the
 * connection drops they are sent again, first and in order, after
 * reconnecting (and authenticating again): ADD and DEL are idempotent on the
 * switch and order per flow is kept, so a resend never leaves a stale entry
 * behind; a query asked twice is answered once.  If a ring is full the item is
 * dropped and counted: an ADD lost keeps the flow on the front-end, a DEL lost
 * leaves an entry the switch ages out, a query lost is answered by nothing
 * (the caller's timer asks again).
 *
 * One results ring per channel: a front-end with several lcores gives each
 * its own struct fe_offload, or routes results by key.
 */
#ifndef FE_OFFLOAD_H
#define FE_OFFLOAD_H

#include <pthread.h>
#include <stdint.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "miresga.h"

#define FE_OFFLOAD_INFLIGHT 8

/* What fe_offload_results() hands back. */
enum {
	FE_OFFLOAD_ADDED = 1,    /* an ADD pushed with want_result is in the switch */
	FE_OFFLOAD_REFUSED,      /* ... or was refused (table full, over budget, invalid) */
	FE_OFFLOAD_LIVENESS,     /* the answer to fe_offload_query() */
};

struct fe_offload_result {
	uint8_t kind;        /* FE_OFFLOAD_ADDED, FE_OFFLOAD_REFUSED (answer to an ADD pushed with
	                        want_result), FE_OFFLOAD_LIVENESS (answer to a query) */
	uint8_t present;     /* LIVENESS: the switch has an entry for the key */
	uint8_t backend_idx;
	uint8_t _pad;
	struct mg_flow_key key;
	uint32_t idle_ms;    /* LIVENESS: since the entry last carried a packet */
};

/* An entry on its way to the switch: the wire entry, and whether to answer it. */
struct fe_offload_req {
	struct mg_ctl_entry e;
	uint8_t want_result;
	uint8_t _pad[3];
};

/* One message awaiting its answer (BATCH or QUERY). */
struct fe_offload_msg {
	uint8_t type;                   /* MG_CTL_BATCH or MG_CTL_QUERY */
	uint16_t count;
	uint32_t seq;
	union {
		struct fe_offload_req reqs[MG_CTL_MAX_BATCH];
		struct mg_ctl_key keys[MG_CTL_MAX_BATCH];
	};
};

/* Written by the channel thread, read by the stats thread (fe_stats.c prints
 * every one by name). */
#define FE_OFFLOAD_CHANNEL_COUNTERS(X) \
	X(connects) X(connect_failures) X(disconnects) X(auth_failures) X(bad_macs) \
	X(batches_sent) X(entries_sent) X(adds_sent) X(dels_sent) X(batches_resent) \
	X(batches_acked) X(added) X(deleted) X(refused) X(bad_acks) \
	X(queries_sent) X(keys_queried) X(replies) X(results) X(results_dropped) \
	X(link_downs) X(loop_stalls) X(health_closes) X(notices)

struct fe_offload_counters {
#define FE_OFFLOAD_COUNTER_FIELD(name) uint64_t name;
	FE_OFFLOAD_CHANNEL_COUNTERS(FE_OFFLOAD_COUNTER_FIELD)
#undef FE_OFFLOAD_COUNTER_FIELD
	uint32_t connected;             /* authenticated */
	uint32_t inflight;
	uint32_t healthy;               /* the watch (below) finds the front-end able to serve */
	/* The switch host's last word (NOTICE DRAIN or RESUME): the operator
	 * drains this front-end.  The lcores read it (fe_drain_notice()). */
	uint32_t draining;
};

/*
 * The front-end's health as the switch host's daemon learns it: the control
 * connection is the front-end's heartbeat (switchhost/pipelines/fe_liveness.py),
 * so a front-end that cannot serve closes it, and the daemon takes it out of
 * the selection at once, and connects again only once it can.  It cannot serve
 * when its port's link is down (the DPDK port's status, and the kernel
 * interface under a vdev: up and running) or when its packet loop stops
 * turning for stall_us (a loop stuck in a bug or starved of its core receives
 * nothing, while its process, and so its connection, lives on).  Until the
 * loop's first turn the front-end is not serving yet either.  Checked every
 * FE_WATCH_PERIOD_US by the channel thread.
 */
#define FE_WATCH_PERIOD_US (10 * 1000)

struct fe_offload_watch {
	const uint64_t *turns;          /* the loop's turn counter; NULL: not watched */
	int port_id;                    /* -1: no DPDK port to ask */
	int ifr_fd;                     /* for SIOCGIFFLAGS on ifname; -1 if none */
	char ifname[16];                /* the port's kernel interface, "" if none */
	uint64_t stall_us;
	uint64_t last_turns, last_turn_us, next_check_us;
	int healthy;
};

enum fe_offload_state {
	FE_OFFLOAD_DOWN,                /* no connection */
	FE_OFFLOAD_HELLO,               /* connected, waiting for the server's nonce */
	FE_OFFLOAD_AUTH,                /* AUTH sent, waiting for AUTH_OK */
	FE_OFFLOAD_READY,               /* authenticated: requests flow */
};

struct fe_offload {
	struct rte_ring *ring;          /* struct fe_offload_req, lcores -> channel */
	struct rte_ring *query_ring;    /* struct mg_ctl_key, lcores -> channel */
	struct rte_ring *result_ring;   /* struct fe_offload_result, channel -> lcores */
	int enabled;
	char host[64];
	uint16_t port;
	uint8_t key[MG_CTL_KEY_LEN];

	pthread_t thread;
	int thread_started;
	volatile int stop;
	uint64_t drain_deadline_us;     /* on stop: flush the rings until then */

	int fd;
	enum fe_offload_state state;
	uint8_t server_nonce[MG_CTL_NONCE_LEN];
	uint8_t client_nonce[MG_CTL_NONCE_LEN];
	uint64_t mac_sent, mac_received; /* messages MAC'd each way on this connection */
	uint32_t next_seq;
	uint8_t last_type;              /* of the last new message: BATCH and QUERY alternate */
	struct fe_offload_msg inflight[FE_OFFLOAD_INFLIGHT];
	uint32_t inflight_head, inflight_n;
	uint32_t resend_from;           /* inflight messages already on this connection */
	uint8_t out[sizeof(struct mg_ctl_hdr) + MG_CTL_MAX_BATCH * sizeof(struct mg_ctl_entry) +
		    MG_CTL_MAC_LEN];
	uint32_t out_len, out_off;
	uint8_t in[sizeof(struct mg_ctl_hdr) + MG_CTL_MAX_BATCH * sizeof(struct mg_ctl_liveness) +
		   MG_CTL_MAC_LEN];
	uint32_t in_len;
	uint64_t backoff_us;
	uint64_t next_connect_us;
	uint64_t handshake_deadline_us;
	struct fe_offload_watch watch;

	struct fe_offload_counters c;
};

/*
 * Host "" or port 0 leaves the channel disabled: nothing is ever queued.
 * Otherwise key_path names the front-end's key (64 hex digits, a file
 * readable by its owner only): its own, which the deployment also gives the
 * switch host's daemon (--frontend-key NAME=PATH), so that the key this
 * channel proves names the front-end there, whatever address it connects
 * from: its liveness and the NOTICEs addressed to it follow that name.
 * Returns 0, or -1 with the reason on stderr.
 */
int fe_offload_init(struct fe_offload *o, const char *host, uint16_t port, const char *key_path,
		    uint32_t ring_size);
/*
 * Before fe_offload_start(): watch the loop's `turns` (written by the lcore,
 * read atomically here), DPDK port `port_id` (-1: none) and kernel interface
 * `ifname` (NULL or "": none), with the loop allowed stall_us without a turn.
 * Not called: the channel connects whatever the front-end's health.
 * Returns 0, or -1 with the reason on stderr.
 */
int fe_offload_watch(struct fe_offload *o, const uint64_t *turns, int port_id, const char *ifname,
		     uint64_t stall_us);
int fe_offload_start(struct fe_offload *o);
/* Stops the thread after trying for up to drain_ms to send what is queued. */
void fe_offload_stop(struct fe_offload *o, unsigned int drain_ms);
void fe_offload_free(struct fe_offload *o);
/* The key from its file (fe_offload_key.c): 0, or -1 with the reason on stderr. */
int fe_offload_read_key(const char *path, uint8_t *key, size_t len);

/* The channel's side: hand a result to the lcores; -1 (and counted) if their
 * ring is full.  The pipe harness (test/fe_test.c) stands in for the channel
 * with it. */
int fe_offload_post_result(struct fe_offload *o, const struct fe_offload_result *r);

/* ------------------------------------------------ the lcore's side (no syscall) */

/* Queue an ADD or DEL; want_result: hear back whether an ADD went in.
 * Returns 0, or -1 if the entry was dropped (ring full). */
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
		.want_result = want_result ? 1 : 0,
	};

	return rte_ring_mp_enqueue_elem(o->ring, &r, sizeof(r)) == 0 ? 0 : -1;
}

/* Ask whether the switch has an entry for the key, and how long it has been
 * idle; the answer comes back as FE_OFFLOAD_LIVENESS.  0, or -1 (ring full). */
static inline int fe_offload_query(struct fe_offload *o, const struct mg_flow_key *key,
				   uint8_t vip_idx)
{
	struct mg_ctl_key k = {
		.client_ip_be = key->client_ip_be,
		.client_port_be = key->client_port_be,
		.vip_idx = vip_idx,
	};

	return rte_ring_mp_enqueue_elem(o->query_ring, &k, sizeof(k)) == 0 ? 0 : -1;
}

/* Up to n results that came back; how many. */
static inline unsigned int fe_offload_results(struct fe_offload *o, struct fe_offload_result *out,
					      unsigned int n)
{
	return rte_ring_mc_dequeue_burst_elem(o->result_ring, out, sizeof(*out), n, NULL);
}

#endif /* FE_OFFLOAD_H */
