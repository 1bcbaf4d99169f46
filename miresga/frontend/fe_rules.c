/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include <string.h>

#include <rte_jhash.h>

#include "fe_rules.h"

void fe_lb_init(struct fe_lb *lb, const struct fe_config *cfg)
{
	memset(lb, 0, sizeof(*lb));
	lb->cfg = cfg;
	for (unsigned int b = 0; b < cfg->n_backends; b++) {
		const struct fe_backend_cfg *be = &cfg->backends[b];
		uint32_t h = (be->ip_be * 2654435761u) ^ be->port_be;

		if (!be->present)
			continue;
		for (uint32_t i = 0; i < 512; i++) {
			uint32_t s = (h + i) & 511;

			if (!lb->slot_idx[s]) {
				lb->slot_ip[s] = be->ip_be;
				lb->slot_port[s] = be->port_be;
				lb->slot_idx[s] = (uint16_t)(b + 1);
				break;
			}
		}
	}
}

static int host_matches(const struct fe_rule_cfg *r, const struct http_request *req)
{
	uint32_t n = 0;

	if (!req->has_host)
		return 0;
	while (n < req->host_len && req->host[n] != ':')
		n++;
	if (n != r->host_len)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t c = req->host[i];

		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c + 32);
		if (c != (uint8_t)r->host[i])
			return 0;
	}
	return 1;
}

int fe_route(const struct fe_config *cfg, const struct http_request *req, int *offload)
{
	for (unsigned int i = 0; i < cfg->n_rules; i++) {
		const struct fe_rule_cfg *r = &cfg->rules[i];

		if (r->host_len && !host_matches(r, req))
			continue;
		if (req->path_len < r->prefix_len || memcmp(req->path, r->prefix, r->prefix_len))
			continue;
		*offload = r->offload;
		return r->cluster;
	}
	/* The default cluster has no rule of its own; its flows go to the switch. */
	*offload = 1;
	return cfg->default_cluster;
}

static inline int is_up(const struct fe_lb *lb, unsigned int b, uint64_t now_us)
{
	return lb->down_until_us[b] <= now_us;
}

unsigned int fe_lb_first(struct fe_lb *lb, int cluster, uint32_t client_ip_be, uint64_t now_us)
{
	const struct fe_cluster_cfg *c = &lb->cfg->clusters[cluster];
	unsigned int n = c->n_backends, start, best;

	switch (c->policy) {
	case FE_POLICY_HASH:
		start = rte_jhash_1word(client_ip_be, 0x6d697265u) % n;
		break;
	case FE_POLICY_LEAST_CONNECTIONS:
		/* Ties go round-robin, so equal back-ends share new flows. */
		start = lb->rr[cluster]++ % n;
		best = n;
		for (unsigned int k = 0; k < n; k++) {
			unsigned int pos = (start + k) % n;
			unsigned int b = c->backends[pos];

			if (!is_up(lb, b, now_us))
				continue;
			if (best == n || lb->active[b] < lb->active[c->backends[best]])
				best = pos;
		}
		return best == n ? start : best;
	default:
		start = lb->rr[cluster]++ % n;
		break;
	}
	for (unsigned int k = 0; k < n; k++)
		if (is_up(lb, c->backends[(start + k) % n], now_us))
			return (start + k) % n;
	return start;
}
