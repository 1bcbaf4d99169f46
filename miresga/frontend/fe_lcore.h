/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Everything one packet lcore touches, in one struct (l3fwd's lcore_conf):
 * its port queue, its flow table, its selection counters, its statistics.
 * Nothing here is shared with another lcore except the offload ring, which
 * is multi-producer.
 *
 * One lcore is what runs today: af_packet has one queue, and spreading flows
 * over lcores would need the NIC to steer both directions of a connection
 * (client->VIP and back-end->client) to the same queue, e.g. an rte_flow
 * rule on the client address.  The struct is per lcore so that adding that
 * later does not reshape the code.
 */
#ifndef FE_LCORE_H
#define FE_LCORE_H

#include <stdint.h>

#include <rte_mbuf.h>

#include "fe_config.h"
#include "fe_flow.h"
#include "fe_offload.h"
#include "fe_rules.h"
#include "fe_stats.h"

#define FE_RX_BURST 32
#define FE_TX_BURST 32

/* A DEL the offload ring refused, waiting to be pushed again (fe_offload_queue.c). */
struct fe_del {
	struct mg_flow_key key;
	uint8_t backend;
};

struct fe_del_backlog {
	struct fe_del *slots;
	uint32_t size, head, count;
};

struct fe_lcore;
typedef void (*fe_tx_sink_t)(struct fe_lcore *lc, struct rte_mbuf **pkts, uint16_t n);

struct fe_lcore {
	const struct fe_config *cfg;
	struct rte_mempool *pool;
	uint16_t port_id;
	uint16_t queue_id;
	uint8_t mac[6];
	uint16_t ip_id;
	uint64_t now_us;            /* set once per loop: one clock read per burst */
	uint64_t turns;             /* of the loop: the offload channel's watchdog reads it */
	uint8_t draining;           /* the switch host said DRAIN (fe_drain_notice()) */

	struct fe_flow_table ft;
	struct fe_lb lb;
	struct fe_offload *offload; /* NULL or disabled: flows stay on the front-end */
	struct fe_stats stats;
	/* How many mbufs all flows may park (held bytes and copies, the
	 * stats' held_mbufs): hold_pool_percent of the pool. */
	uint64_t hold_budget;
	struct fe_del_backlog dels;

	uint8_t *scratch;           /* max_header_bytes: a held header made contiguous */

	uint16_t n_tx;
	struct rte_mbuf *tx[FE_TX_BURST];
	fe_tx_sink_t tx_sink;       /* the port, or the test harness */
};

int fe_lcore_init(struct fe_lcore *lc, const struct fe_config *cfg, struct rte_mempool *pool,
		  uint16_t port_id, const uint8_t mac[6], struct fe_offload *offload,
		  fe_tx_sink_t sink, unsigned int lcore_id);
/* Frees every flow (taking their switch entries away) and the table. */
void fe_lcore_fini(struct fe_lcore *lc);

static inline void fe_tx_flush(struct fe_lcore *lc)
{
	if (lc->n_tx) {
		lc->tx_sink(lc, lc->tx, lc->n_tx);
		lc->n_tx = 0;
	}
}

static inline void fe_tx(struct fe_lcore *lc, struct rte_mbuf *m)
{
	lc->stats.pkt.tx++;
	lc->stats.pkt.tx_bytes += m->pkt_len;
	lc->tx[lc->n_tx++] = m;
	if (lc->n_tx == FE_TX_BURST)
		fe_tx_flush(lc);
}

/* The splice state machine (fe_splice.h lists its files). */
void fe_input(struct fe_lcore *lc, struct rte_mbuf *m);
/* Runs expired timers; returns how many fired. */
unsigned int fe_timers_run(struct fe_lcore *lc);
/* Hands the switch's answers to their flows; returns how many. */
unsigned int fe_results_run(struct fe_lcore *lc);

#endif /* FE_LCORE_H */
