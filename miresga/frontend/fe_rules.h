/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * L7 rules and back-end selection.
 *
 * fe_route() is Service.route() of common/service.py in C, with the same
 * semantics so that every target routes a request the same way: first rule
 * in file order whose host (if it has one) equals the request's host,
 * lower-cased and cut at the first ':', and whose path prefix starts the
 * request's path in normal form (query excluded; http_parse() normalised it);
 * otherwise the default cluster, else none.
 *
 * Selection keeps per-lcore counters (round-robin cursors, connections per
 * back-end for least-connections) and a passive health mark: a back-end that
 * failed a SYN is skipped by the first pick for backend_down_ms while its
 * cluster has another one up.  Retries walk the cluster in ring order from
 * the first pick, so a request is refused with 503 only after every back-end
 * of its cluster failed it.
 */
#ifndef FE_RULES_H
#define FE_RULES_H

#include <stdint.h>

#include "fe_config.h"
#include "fe_http.h"

struct fe_lb {
	const struct fe_config *cfg;
	uint32_t rr[FE_MAX_CLUSTERS];
	uint32_t active[MG_MAX_BACKENDS];       /* back-end connections open or opening */
	uint64_t down_until_us[MG_MAX_BACKENDS];
	uint64_t connects[MG_MAX_BACKENDS];
	uint64_t failures[MG_MAX_BACKENDS];
	/* (ip, port) -> back-end index + 1, open addressing; identifies back-end
	 * packets on the hot path without walking the back-end list. */
	uint32_t slot_ip[512];
	uint16_t slot_port[512];
	uint16_t slot_idx[512];
};

void fe_lb_init(struct fe_lb *lb, const struct fe_config *cfg);

/* Back-end index of a packet's source, or -1. */
static inline int fe_lb_find(const struct fe_lb *lb, uint32_t ip_be, uint16_t port_be)
{
	uint32_t h = (ip_be * 2654435761u) ^ port_be;

	for (uint32_t i = 0; i < 512; i++) {
		uint32_t s = (h + i) & 511;

		if (!lb->slot_idx[s])
			return -1;
		if (lb->slot_ip[s] == ip_be && lb->slot_port[s] == port_be)
			return lb->slot_idx[s] - 1;
	}
	return -1;
}

/* Cluster for a parsed request, or -1 (404); *offload from the rule. */
int fe_route(const struct fe_config *cfg, const struct http_request *req, int *offload);

/* Position in the cluster for a flow's first try. */
unsigned int fe_lb_first(struct fe_lb *lb, int cluster, uint32_t client_ip_be, uint64_t now_us);

static inline unsigned int fe_lb_backend(const struct fe_config *cfg, int cluster, unsigned int pos)
{
	const struct fe_cluster_cfg *c = &cfg->clusters[cluster];

	return c->backends[pos % c->n_backends];
}

static inline void fe_lb_attach(struct fe_lb *lb, unsigned int b)
{
	lb->active[b]++;
	lb->connects[b]++;
}

static inline void fe_lb_detach(struct fe_lb *lb, unsigned int b)
{
	lb->active[b]--;
}

static inline void fe_lb_failed(struct fe_lb *lb, unsigned int b, uint64_t now_us)
{
	lb->failures[b]++;
	lb->down_until_us[b] = now_us + lb->cfg->backend_down_us;
}

static inline void fe_lb_answered(struct fe_lb *lb, unsigned int b)
{
	lb->down_until_us[b] = 0;
}

#endif /* FE_RULES_H */
