/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mempool.h>

#include "fe_lcore.h"
#include "fe_stats.h"

#define JSON_MAX (256 * 1024)

struct jw {
	char *buf;
	size_t len;
	size_t off;
};

static void put(struct jw *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->off >= w->len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->off, w->len - w->off, fmt, ap);
	va_end(ap);
	if (n > 0)
		w->off += (size_t)n;
	if (w->off >= w->len)
		w->off = w->len - 1;
}

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t rd(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

size_t fe_stats_json(const struct fe_stats_server *s, char *buf, size_t len)
{
	struct jw w = {buf, len, 0};
	struct fe_stats sum;
	uint64_t flows = 0, cap = 0, created = 0, freed = 0, states[FE_FS__MAX] = {0};
	const struct fe_config *cfg = s->n_lcores ? s->lcores[0]->cfg : NULL;
	const char *sep;

	memset(&sum, 0, sizeof(sum));
	for (unsigned int i = 0; i < s->n_lcores; i++) {
		const struct fe_lcore *lc = s->lcores[i];
		const uint64_t *src = (const uint64_t *)&lc->stats;
		uint64_t *dst = (uint64_t *)&sum;

		for (size_t k = 0; k < sizeof(sum) / sizeof(uint64_t); k++)
			dst[k] += rd(&src[k]);
		flows += __atomic_load_n(&lc->ft.count, __ATOMIC_RELAXED);
		cap += lc->ft.capacity;
		created += rd(&lc->ft.created);
		freed += rd(&lc->ft.freed);
		for (int st = 0; st < FE_FS__MAX; st++)
			states[st] += __atomic_load_n(&lc->ft.per_state[st], __ATOMIC_RELAXED);
	}

	put(&w, "{\"version\": 1, \"pid\": %d, \"uptime_s\": %.3f, \"lcores\": %u",
	    (int)getpid(), (double)(mono_us() - s->start_us) / 1e6, s->n_lcores);
	put(&w, ", \"flows\": %llu, \"flow_capacity\": %llu, \"flows_created\": %llu, "
	    "\"flows_freed\": %llu", (unsigned long long)flows, (unsigned long long)cap,
	    (unsigned long long)created, (unsigned long long)freed);
	put(&w, ", \"flows_by_state\": {");
	for (int st = 0; st < FE_FS__MAX; st++)
		put(&w, "%s\"%s\": %llu", st ? ", " : "", fe_flow_state_name(st),
		    (unsigned long long)states[st]);
	put(&w, "}, \"held_mbufs\": %llu", (unsigned long long)sum.held_mbufs);
	if (s->n_lcores && s->lcores[0]->pool)
		put(&w, ", \"mbufs_in_use\": %u, \"mbufs_total\": %u",
		    rte_mempool_in_use_count(s->lcores[0]->pool), s->lcores[0]->pool->size);
	put(&w, ", \"requests\": %llu", (unsigned long long)sum.requests);
	put(&w, ", \"busy_s\": %.6f", (double)sum.busy_cycles / (double)rte_get_timer_hz());

#define J(name) put(&w, "%s\"" #name "\": %llu", sep, (unsigned long long)sum.GROUP.name); sep = ", ";
#define J2(name, json) put(&w, "%s\"" json "\": %llu", sep, (unsigned long long)sum.GROUP.name); sep = ", ";
#define GROUP decision
	sep = "";
	put(&w, ", \"decisions\": {");
	FE_DECISION_COUNTERS(J)
#undef GROUP
#define GROUP err
	sep = "";
	put(&w, "}, \"errors\": {");
	FE_ERROR_COUNTERS(J2)
#undef GROUP
#define GROUP pkt
	sep = "";
	put(&w, "}, \"packets\": {");
	FE_PACKET_COUNTERS(J)
#undef GROUP
#define GROUP offload
	put(&w, "}, \"offload\": {\"enabled\": %s, \"handoff\": \"%s\"",
	    s->offload && s->offload->enabled ? "true" : "false",
	    cfg ? fe_handoff_name(cfg->handoff) : "?");
	sep = ", ";
	FE_OFFLOAD_COUNTERS(J)
#undef GROUP
#undef J
#undef J2
	if (s->offload) {
		const struct fe_offload_counters *c = &s->offload->c;

		put(&w, ", \"connected\": %u, \"inflight\": %u, \"healthy\": %u, \"draining\": %u",
		    __atomic_load_n(&c->connected, __ATOMIC_RELAXED),
		    __atomic_load_n(&c->inflight, __ATOMIC_RELAXED),
		    __atomic_load_n(&c->healthy, __ATOMIC_RELAXED),
		    __atomic_load_n(&c->draining, __ATOMIC_RELAXED));
#define OC(f) put(&w, ", \"" #f "\": %llu", (unsigned long long)rd(&c->f));
		FE_OFFLOAD_CHANNEL_COUNTERS(OC)
#undef OC
	}
	put(&w, "}");

	if (s->port_id >= 0) {
		struct rte_eth_stats es;

		if (rte_eth_stats_get((uint16_t)s->port_id, &es) == 0)
			put(&w, ", \"port\": {\"ipackets\": %llu, \"opackets\": %llu, \"ibytes\": %llu, "
			    "\"obytes\": %llu, \"imissed\": %llu, \"ierrors\": %llu, \"oerrors\": %llu, "
			    "\"rx_nombuf\": %llu}",
			    (unsigned long long)es.ipackets, (unsigned long long)es.opackets,
			    (unsigned long long)es.ibytes, (unsigned long long)es.obytes,
			    (unsigned long long)es.imissed, (unsigned long long)es.ierrors,
			    (unsigned long long)es.oerrors, (unsigned long long)es.rx_nombuf);
	}

	put(&w, ", \"backends\": [");
	sep = "";
	for (unsigned int b = 0; cfg && b < cfg->n_backends; b++) {
		char ip[INET_ADDRSTRLEN];
		uint64_t active = 0, connects = 0, failures = 0, down = 0;
		uint64_t now = s->n_lcores ? s->lcores[0]->now_us : 0;

		if (!cfg->backends[b].present)
			continue;
		for (unsigned int i = 0; i < s->n_lcores; i++) {
			const struct fe_lb *lb = &s->lcores[i]->lb;

			active += __atomic_load_n(&lb->active[b], __ATOMIC_RELAXED);
			connects += rd(&lb->connects[b]);
			failures += rd(&lb->failures[b]);
			down |= rd(&lb->down_until_us[b]) > now;
		}
		inet_ntop(AF_INET, &cfg->backends[b].ip_be, ip, sizeof(ip));
		put(&w, "%s{\"index\": %u, \"ip\": \"%s\", \"port\": %u, \"cluster\": %d, "
		    "\"active\": %llu, \"connects\": %llu, \"failures\": %llu, \"down\": %s}",
		    sep, b, ip, ntohs(cfg->backends[b].port_be), cfg->backends[b].cluster,
		    (unsigned long long)active, (unsigned long long)connects,
		    (unsigned long long)failures, down ? "true" : "false");
		sep = ", ";
	}
	put(&w, "]}\n");
	return w.off;
}

static void *stats_main(void *arg)
{
	struct fe_stats_server *s = arg;
	char *buf = malloc(JSON_MAX);

	while (buf && !s->stop) {
		struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
		struct timeval tv = {.tv_sec = 1};
		size_t n, off = 0;
		int c;

		if (poll(&pfd, 1, 200) <= 0)
			continue;
		c = accept(s->fd, NULL, NULL);
		if (c < 0)
			continue;
		/* A reader that stalls must not hold the server for long. */
		setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		n = fe_stats_json(s, buf, JSON_MAX);
		while (off < n) {
			ssize_t wr = send(c, buf + off, n - off, MSG_NOSIGNAL);

			if (wr <= 0)
				break;
			off += (size_t)wr;
		}
		close(c);
	}
	free(buf);
	return NULL;
}

int fe_stats_server_start(struct fe_stats_server *s)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};

	s->start_us = mono_us();
	s->fd = -1;
	if (!s->path[0])
		return 0;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", s->path);
	unlink(s->path);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(s->fd, 16))
		goto fail;
	if (pthread_create(&s->thread, NULL, stats_main, s))
		goto fail;
	pthread_setname_np(s->thread, "fe-stats");
	s->started = 1;
	return 0;
fail:
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	return -1;
}

void fe_stats_server_stop(struct fe_stats_server *s)
{
	if (!s->started)
		return;
	s->stop = 1;
	pthread_join(s->thread, NULL);
	close(s->fd);
	unlink(s->path);
	s->started = 0;
}
