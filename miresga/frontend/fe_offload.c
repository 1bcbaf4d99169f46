/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rte_errno.h>
#include <rte_lcore.h>

#include "fe_offload.h"

#define BACKOFF_MIN_US (100 * 1000)
#define BACKOFF_MAX_US (2 * 1000 * 1000)
#define CONNECT_TIMEOUT_MS 500
/* How often an idle connection looks at the ring: bounds the extra delay
 * before an entry leaves, and is ~1000 wake-ups/s, nothing on a busy box. */
#define RING_POLL_MS 1

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline void count(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

int fe_offload_init(struct fe_offload *o, const char *host, uint16_t port, uint32_t ring_size)
{
	static unsigned int instance;
	char name[RTE_RING_NAMESIZE];

	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->backoff_us = BACKOFF_MIN_US;
	o->next_seq = 1;
	o->enabled = host && host[0] && port;
	if (o->enabled) {
		snprintf(o->host, sizeof(o->host), "%s", host);
		o->port = port;
	}
	snprintf(name, sizeof(name), "fe_offload_%u", instance);
	o->ring = rte_ring_create_elem(name, sizeof(struct fe_offload_req), ring_size, rte_socket_id(),
				       RING_F_SC_DEQ);
	snprintf(name, sizeof(name), "fe_results_%u", instance++);
	o->results = rte_ring_create_elem(name, sizeof(struct fe_offload_result), ring_size,
					  rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
	return o->ring && o->results ? 0 : -1;
}

int fe_offload_post_result(struct fe_offload *o, const struct fe_offload_result *r)
{
	struct fe_offload_result copy = *r;  /* the ring's API takes no const */

	if (rte_ring_sp_enqueue_elem(o->results, &copy, sizeof(copy))) {
		count(&o->c.results_dropped, 1);
		return -1;
	}
	return 0;
}

/*
 * Answer the entries of an acknowledged batch that asked for a result.  The
 * version-1 ACK counts refusals without saying which entries they were, so a
 * batch with any refusal answers REFUSED for all of them: the flows stay on
 * the front-end and their ADDs are deleted, which is safe, only slower.
 */
static void post_batch_results(struct fe_offload *o, const struct fe_offload_batch *b,
			       uint16_t refused)
{
	for (unsigned int i = 0; i < b->count; i++) {
		struct fe_offload_result r = {
			.kind = refused ? FE_OFFLOAD_REFUSED : FE_OFFLOAD_ADDED,
			.backend_idx = b->entries[i].backend_idx,
			.key = {.client_ip_be = b->entries[i].client_ip_be,
				.client_port_be = b->entries[i].client_port_be},
		};

		if (b->want_result[i] && b->entries[i].op == MG_CTL_ADD)
			fe_offload_post_result(o, &r);
	}
}

static void disconnect(struct fe_offload *o, uint64_t now)
{
	if (o->fd >= 0) {
		close(o->fd);
		o->fd = -1;
		count(&o->c.disconnects, 1);
	}
	__atomic_store_n(&o->c.connected, 0, __ATOMIC_RELAXED);
	o->out_len = o->out_off = 0;
	o->in_len = 0;
	o->resend_from = 0;     /* everything in flight goes again */
	o->next_connect_us = now + o->backoff_us;
	o->backoff_us = o->backoff_us * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : o->backoff_us * 2;
}

static int try_connect(struct fe_offload *o, uint64_t now)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char port[8];
	int fd = -1, one = 1, err = 0;
	socklen_t elen = sizeof(err);
	struct pollfd pfd;

	snprintf(port, sizeof(port), "%u", o->port);
	if (getaddrinfo(o->host, port, &hints, &ai) || !ai)
		goto fail;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS)
		goto fail;
	pfd.fd = fd;
	pfd.events = POLLOUT;
	if (poll(&pfd, 1, CONNECT_TIMEOUT_MS) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) || err)
		goto fail;
	freeaddrinfo(ai);
	o->fd = fd;
	o->backoff_us = BACKOFF_MIN_US;
	o->resend_from = 0;
	count(&o->c.connects, 1);
	__atomic_store_n(&o->c.connected, 1, __ATOMIC_RELAXED);
	return 0;
fail:
	if (ai)
		freeaddrinfo(ai);
	if (fd >= 0)
		close(fd);
	count(&o->c.connect_failures, 1);
	o->fd = -1;
	disconnect(o, now);
	return -1;
}

static void encode(struct fe_offload *o, const struct fe_offload_batch *b)
{
	struct mg_ctl_hdr h = {
		.magic = htonl(MG_CTL_MAGIC),
		.version = MG_CTL_VERSION,
		.type = MG_CTL_BATCH,
		.count = htons(b->count),
		.seq = htonl(b->seq),
	};

	memcpy(o->out, &h, sizeof(h));
	memcpy(o->out + sizeof(h), b->entries, b->count * sizeof(struct mg_ctl_entry));
	o->out_len = (uint32_t)(sizeof(h) + b->count * sizeof(struct mg_ctl_entry));
	o->out_off = 0;
}

/* Put the next message in the output buffer if it is free. */
static void fill_out(struct fe_offload *o)
{
	struct fe_offload_batch *b;
	struct fe_offload_req reqs[64];
	unsigned int n = 0, got;

	if (o->out_off < o->out_len)
		return;
	o->out_len = o->out_off = 0;
	if (o->resend_from < o->inflight_n) {
		b = &o->inflight[(o->inflight_head + o->resend_from) % FE_OFFLOAD_INFLIGHT];
		o->resend_from++;
		count(&o->c.batches_resent, 1);
		encode(o, b);
		return;
	}
	if (o->inflight_n == FE_OFFLOAD_INFLIGHT)
		return;
	b = &o->inflight[(o->inflight_head + o->inflight_n) % FE_OFFLOAD_INFLIGHT];
	do {
		unsigned int room = MG_CTL_MAX_BATCH - n;

		got = rte_ring_sc_dequeue_burst_elem(o->ring, reqs, sizeof(reqs[0]),
						     room < 64 ? room : 64, NULL);
		for (unsigned int i = 0; i < got; i++) {
			if (reqs[i].e.op == FE_OFFLOAD_QUERY) {
				/* Version 1 has no QUERY: the lcore's idle timer
				 * treats a query without answer as an idle entry. */
				count(&o->c.queries_unanswered, 1);
				continue;
			}
			b->entries[n] = reqs[i].e;
			b->want_result[n] = reqs[i].want_result;
			n++;
		}
	} while (got && n < MG_CTL_MAX_BATCH);
	if (!n)
		return;
	b->count = (uint16_t)n;
	b->seq = o->next_seq++;
	o->inflight_n++;
	o->resend_from++;
	__atomic_store_n(&o->c.inflight, o->inflight_n, __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < n; i++) {
		if (b->entries[i].op == MG_CTL_ADD)
			count(&o->c.adds_sent, 1);
		else
			count(&o->c.dels_sent, 1);
	}
	count(&o->c.batches_sent, 1);
	count(&o->c.entries_sent, n);
	encode(o, b);
}

/* Consume whole ACK messages; -1 if the peer said something we did not ask. */
static int read_acks(struct fe_offload *o)
{
	const size_t msg = sizeof(struct mg_ctl_hdr) + sizeof(struct mg_ctl_ack);

	while (o->in_len >= msg) {
		struct mg_ctl_hdr h;
		struct mg_ctl_ack a;
		struct fe_offload_batch *b = &o->inflight[o->inflight_head];

		memcpy(&h, o->in, sizeof(h));
		memcpy(&a, o->in + sizeof(h), sizeof(a));
		if (ntohl(h.magic) != MG_CTL_MAGIC || h.version != MG_CTL_VERSION ||
		    h.type != MG_CTL_ACK || !o->resend_from || ntohl(a.seq) != b->seq) {
			count(&o->c.bad_acks, 1);
			return -1;
		}
		count(&o->c.batches_acked, 1);
		count(&o->c.added, ntohs(a.added));
		count(&o->c.deleted, ntohs(a.deleted));
		count(&o->c.refused, ntohs(a.refused));
		post_batch_results(o, b, ntohs(a.refused));
		o->inflight_head = (o->inflight_head + 1) % FE_OFFLOAD_INFLIGHT;
		o->inflight_n--;
		o->resend_from--;
		__atomic_store_n(&o->c.inflight, o->inflight_n, __ATOMIC_RELAXED);
		memmove(o->in, o->in + msg, o->in_len - msg);
		o->in_len -= (uint32_t)msg;
	}
	return 0;
}

static void *channel_main(void *arg)
{
	struct fe_offload *o = arg;

	for (;;) {
		uint64_t now = mono_us();
		struct pollfd pfd;
		int timeout;

		if (o->stop && ((rte_ring_empty(o->ring) && !o->inflight_n) ||
				now >= o->drain_deadline_us))
			break;
		if (o->fd < 0) {
			if (now >= o->next_connect_us && try_connect(o, now) == 0)
				continue;
			usleep(10 * 1000);
			continue;
		}
		fill_out(o);
		pfd.fd = o->fd;
		pfd.events = POLLIN | (o->out_off < o->out_len ? POLLOUT : 0);
		pfd.revents = 0;
		timeout = o->out_off < o->out_len ? 10 : RING_POLL_MS;
		if (poll(&pfd, 1, timeout) < 0) {
			if (errno == EINTR)
				continue;
			disconnect(o, now);
			continue;
		}
		if (pfd.revents & (POLLERR | POLLNVAL)) {
			disconnect(o, now);
			continue;
		}
		if (pfd.revents & POLLOUT) {
			ssize_t w = send(o->fd, o->out + o->out_off, o->out_len - o->out_off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				disconnect(o, now);
				continue;
			}
			if (w > 0)
				o->out_off += (uint32_t)w;
		}
		if (pfd.revents & (POLLIN | POLLHUP)) {
			ssize_t r = recv(o->fd, o->in + o->in_len, sizeof(o->in) - o->in_len,
					 MSG_DONTWAIT);

			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				disconnect(o, now);
				continue;
			}
			if (r > 0) {
				o->in_len += (uint32_t)r;
				if (read_acks(o)) {
					disconnect(o, now);
					continue;
				}
			}
		}
	}
	if (o->fd >= 0) {
		close(o->fd);
		o->fd = -1;
	}
	__atomic_store_n(&o->c.connected, 0, __ATOMIC_RELAXED);
	return NULL;
}

int fe_offload_start(struct fe_offload *o)
{
	if (!o->enabled)
		return 0;
	if (pthread_create(&o->thread, NULL, channel_main, o))
		return -1;
	pthread_setname_np(o->thread, "fe-offload");
	o->thread_started = 1;
	return 0;
}

void fe_offload_stop(struct fe_offload *o, unsigned int drain_ms)
{
	if (!o->thread_started)
		return;
	o->drain_deadline_us = mono_us() + (uint64_t)drain_ms * 1000;
	o->stop = 1;
	pthread_join(o->thread, NULL);
	o->thread_started = 0;
}

void fe_offload_free(struct fe_offload *o)
{
	rte_ring_free(o->ring);
	rte_ring_free(o->results);
	o->ring = NULL;
	o->results = NULL;
}
