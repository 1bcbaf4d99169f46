/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow table: one state per spliced connection, keyed like the switch's
 * merged table by (client IP, client port), so a client->VIP packet and a
 * back-end->client packet find the same entry (source side for one,
 * destination side for the other).  The client connection and the back-end
 * connection are one state, never two sockets: the front-end only forwards,
 * retransmission and congestion control stay with the two end hosts.
 *
 * Timers.  Every flow waits for at most one thing at a time (a request to
 * complete, a SYN-ACK, the switch's confirmation, an ACK of bytes it owes, a
 * back-end's response to end, the end of a grace period, or activity), and
 * each kind of wait has one fixed duration.  So each kind gets a FIFO queue:
 * appending at the tail keeps every queue sorted by deadline, arming and
 * cancelling are O(1), and expiry only looks at queue heads.  The one wait
 * that backs off (retransmitting bytes the front-end acknowledged itself)
 * is inserted in order instead; few flows are ever in it.
 */
#ifndef FE_FLOW_H
#define FE_FLOW_H

#include <stdint.h>
#include <sys/queue.h>

#include <rte_mbuf.h>

#include "fe_http.h"
#include "miresga.h"

enum fe_flow_state {
	FE_FS_HEADER,       /* holding the first request's header; no back-end yet */
	FE_FS_SYN_SENT,     /* SYN sent to a back-end, waiting for its SYN-ACK */
	FE_FS_CONFIRMING,   /* joined, holding the request until the switch confirms its entry */
	FE_FS_SPLICED,      /* joined: forwarding, following request boundaries */
	FE_FS_NEXT_HEADER,  /* joined, holding a new request's header until it parses */
	FE_FS_DRAIN,        /* holding a request for another cluster until the old response ends */
	FE_FS_CLOSING,      /* one side closed: forwarding without parsing */
	FE_FS_TIME_WAIT,    /* both FINs, an RST, or our answer acknowledged: grace */
	FE_FS_ANSWERED,     /* the front-end answered an error and sent FIN */
	FE_FS__MAX,
};

enum fe_timer {
	FE_TIMER_NONE,
	FE_TIMER_REQUEST,   /* request_timeout: header must complete (408) */
	FE_TIMER_SYN,       /* syn_timeout: back-end must answer (next one, then 503) */
	FE_TIMER_ANSWER,    /* answer_rto: our error answer must be acknowledged */
	FE_TIMER_GRACE,     /* grace: late ACKs/FINs may still pass, then free */
	FE_TIMER_IDLE,      /* idle_timeout: spliced flow with no packet through us */
	FE_TIMER_CONFIRM,   /* confirm_timeout: the switch must confirm the entry */
	FE_TIMER_RTX,       /* answer_rto, backing off: bytes we acknowledged must reach the back-end */
	FE_TIMER_DRAIN,     /* drain_quiet: has the back-end's response ended? */
	FE_TIMER_CLOSE,     /* grace: a close we started must end, else RST both */
	FE_TIMER__MAX,
};

/* The switch entry a flow may have, and how it was asked for. */
enum fe_entry {
	FE_ENTRY_NONE,
	FE_ENTRY_CHANNEL,   /* an ADD is on the channel, no DEL since */
	FE_ENTRY_PENDING,   /* confirmed hand-off: an ADD awaits the switch's answer */
	FE_ENTRY_DATAPLANE, /* an INSTALL mark went out, no REMOVE since */
};

struct fe_flow {
	TAILQ_ENTRY(fe_flow) tlink;
	uint64_t deadline_us;

	/* Request bytes not yet given to a back-end, payload-only mbufs chained
	 * through m->next (headers stripped, headroom kept to put new ones on). */
	struct rte_mbuf *held;
	struct rte_mbuf *held_tail;
	uint32_t held_len;
	uint32_t held_mbufs;        /* mbufs in that chain */
	/* Copies of request bytes the front-end acknowledged itself and has
	 * released, kept until the back-end acknowledges them (payload-only
	 * mbufs through m->next, from rtx_seq on). */
	uint32_t rtx_seq;
	struct rte_mbuf *rtx;

	struct mg_flow_key key;     /* client address and port, network order */

	/* Sequence numbers, all in the client's view (the agent maps the
	 * back-end's view onto it, so the front-end never translates). */
	uint32_t s_isn;             /* the switch's cookie ISN */
	uint32_t cli_next;          /* next in-order byte expected from the client */
	uint32_t cli_ack;           /* the client's latest acknowledgment */
	uint32_t cli_fin_seq;       /* seq of the client's FIN, when cli_fin */
	uint32_t req_seq;           /* first byte of the request held or being opened */
	uint32_t syn_ack;           /* ack field of our back-end SYN: the ISN we expect back */
	uint32_t answer_seq;        /* ANSWERED: first byte of our response */
	uint32_t hdr_left;          /* header bytes of the current request not yet forwarded */
	uint32_t requests;
	uint32_t be_bytes;          /* response bytes the front-end forwarded (offload_after_bytes) */
	uint32_t own_ack;           /* own_acked: client bytes below this we acknowledged */
	uint32_t be_next;           /* after the last response byte seen from the back-end */
	uint32_t resp_mark;         /* the response stream's end when the last request went out */
	uint32_t drain_polls;       /* quiet periods in a row that did not end the response */
	/* Timestamps (RFC 7323), if the client uses them (ts_ok): its latest
	 * TSval, and its latest TSecr, the server clock as the client last saw
	 * it (the switch's SYN-ACK TSval at first, then the agent-translated
	 * TSvals of the back-end).  A back-end SYN carries them as its TSval
	 * and TSecr; the agent takes the TSecr as its clock base. */
	uint32_t cli_tsval;
	uint32_t cli_tsecr;
	struct http_scan scan;
	struct http_body body;
	uint16_t cli_win;           /* the client's last window field, unscaled */
	uint16_t seg_max;           /* the longest payload held from the client (fe_hold.c) */
	uint16_t status;            /* ANSWERED: the error we answered, 0 for a bare FIN */
	uint16_t answer_len;        /* bytes of that answer */

	uint8_t state;
	uint8_t timer;
	uint8_t scan_result;        /* enum http_scan_result of the held header */
	uint8_t backend;            /* back-end index, valid when has_backend */
	uint8_t has_backend;
	uint8_t cluster;
	uint8_t first_pick;         /* position in the cluster of the first try */
	uint8_t tries;              /* back-ends tried for the pending SYN */
	uint8_t syns;               /* SYNs sent to the current back-end */
	uint8_t offload;            /* the current rule lets the switch carry the flow */
	uint8_t entry;              /* enum fe_entry */
	uint8_t pinned;             /* the switch never carries this connection again */
	uint8_t own_acked;          /* we acknowledged client bytes ourselves (own_ack) */
	uint8_t held_segs;          /* segments held since our last ACK of them */
	uint8_t rtx_tries;          /* retransmissions of rtx so far */
	uint8_t query_pending;      /* a liveness query for the entry is out */
	uint8_t next_cluster;       /* DRAIN: where the held request goes */
	uint8_t next_offload;       /* DRAIN: the held request's rule lets the switch carry it */
	uint8_t drain_fin;          /* DRAIN: our FIN went to the old back-end */
	uint8_t cli_fin;
	uint8_t cli_fin_sent;       /* the client's FIN went on to the back-end */
	uint8_t fe_fin;             /* that FIN was ours (idle close), not the client's */
	uint8_t fin_again;          /* ... and it went again when the close timer ran out */
	uint8_t be_fin;
	uint8_t reset;              /* ended by RST: nothing more is forwarded */
	uint8_t opaque;             /* no more request parsing (Upgrade, broken framing) */
	uint8_t retries;            /* ANSWERED: retransmissions left */
	uint8_t answered;           /* the front-end answered and closed this flow */
	uint8_t ts_ok;              /* the client's segments carry timestamps */
	uint8_t tw_reset;           /* a back-end TIME_WAIT was reset for this SYN */
	/* The front-end drains (NOTICE DRAIN): the connection ends at its next
	 * quiet moment (fe_drain.c, "drain close"). */
	uint8_t drain_close;
	uint8_t close_response;     /* the current request's response is to say Connection: close */
	uint8_t close_hdr_done;     /* ... and its header went by (rewritten or not) */
	uint8_t pipelined;          /* draining, the client sent requests ahead: no close mark */
};

TAILQ_HEAD(fe_timer_queue, fe_flow);

struct rte_hash;

struct fe_flow_table {
	struct rte_hash *hash;
	struct fe_flow *flows;      /* indexed by the hash's key position */
	uint32_t slots;
	uint32_t capacity;          /* what the config allows; <= slots */
	uint32_t count;
	uint32_t per_state[FE_FS__MAX];
	uint64_t created;
	uint64_t freed;
	uint64_t timer_us[FE_TIMER__MAX];
	struct fe_timer_queue timers[FE_TIMER__MAX];
};

int fe_flow_table_init(struct fe_flow_table *ft, const char *name, uint32_t capacity, int socket);
void fe_flow_table_free(struct fe_flow_table *ft);

struct fe_flow *fe_flow_lookup(struct fe_flow_table *ft, const struct mg_flow_key *key);
/* NULL when the table is full. */
struct fe_flow *fe_flow_create(struct fe_flow_table *ft, const struct mg_flow_key *key,
			       uint8_t state);
/* The caller has released everything the flow holds (mbufs, back-end). */
void fe_flow_destroy(struct fe_flow_table *ft, struct fe_flow *f);

static inline void fe_flow_set_state(struct fe_flow_table *ft, struct fe_flow *f, uint8_t state)
{
	ft->per_state[f->state]--;
	ft->per_state[state]++;
	f->state = state;
}

static inline void fe_timer_cancel(struct fe_flow_table *ft, struct fe_flow *f)
{
	if (f->timer != FE_TIMER_NONE) {
		TAILQ_REMOVE(&ft->timers[f->timer], f, tlink);
		f->timer = FE_TIMER_NONE;
	}
}

/* (Re)arm: the flow moves to the tail of the queue of its new kind. */
static inline void fe_timer_arm(struct fe_flow_table *ft, struct fe_flow *f, enum fe_timer t,
				uint64_t now_us)
{
	fe_timer_cancel(ft, f);
	f->timer = (uint8_t)t;
	f->deadline_us = now_us + ft->timer_us[t];
	TAILQ_INSERT_TAIL(&ft->timers[t], f, tlink);
}

/* Arm for `after_us` from now, a duration that is not the kind's own: the
 * flow goes where its deadline keeps the queue sorted, found from the tail
 * (only for a kind whose queue is short). */
static inline void fe_timer_arm_after(struct fe_flow_table *ft, struct fe_flow *f, enum fe_timer t,
				      uint64_t now_us, uint64_t after_us)
{
	struct fe_flow *prev;

	fe_timer_cancel(ft, f);
	f->timer = (uint8_t)t;
	f->deadline_us = now_us + after_us;
	for (prev = TAILQ_LAST(&ft->timers[t], fe_timer_queue); prev;
	     prev = TAILQ_PREV(prev, fe_timer_queue, tlink))
		if (prev->deadline_us <= f->deadline_us)
			break;
	if (prev)
		TAILQ_INSERT_AFTER(&ft->timers[t], prev, f, tlink);
	else
		TAILQ_INSERT_HEAD(&ft->timers[t], f, tlink);
}

/* The next flow whose timer has expired, already disarmed; NULL if none. */
static inline struct fe_flow *fe_timer_next_expired(struct fe_flow_table *ft, uint64_t now_us,
						    enum fe_timer *kind)
{
	for (int t = FE_TIMER_NONE + 1; t < FE_TIMER__MAX; t++) {
		struct fe_flow *f = TAILQ_FIRST(&ft->timers[t]);

		if (f && f->deadline_us <= now_us) {
			fe_timer_cancel(ft, f);
			*kind = (enum fe_timer)t;
			return f;
		}
	}
	return NULL;
}

const char *fe_flow_state_name(int state);

#endif /* FE_FLOW_H */
