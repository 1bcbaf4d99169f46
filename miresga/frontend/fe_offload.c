/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include "fe_offload.h"

#define BACKOFF_MIN_US (100 * 1000)
#define BACKOFF_MAX_US (2 * 1000 * 1000)
#define CONNECT_TIMEOUT_MS 500
/* A server that does not finish the handshake by then is dropped and retried. */
#define HANDSHAKE_TIMEOUT_US (2 * 1000 * 1000)
/* How often an idle connection looks at the rings: bounds the extra delay
 * before an entry leaves, and is ~1000 wake-ups/s, nothing on a busy box. */
#define RING_POLL_MS 1
#define HDR_LEN sizeof(struct mg_ctl_hdr)

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

/* ------------------------------------------------------------------ the MACs */

static void hmac_sha256(const struct fe_offload *o, const uint8_t *msg, size_t len,
			uint8_t out[MG_CTL_HMAC_LEN])
{
	unsigned int n = MG_CTL_HMAC_LEN;

	HMAC(EVP_sha256(), o->key, MG_CTL_KEY_LEN, msg, len, out, &n);
}

/* The handshake's proof: HMAC(K, label || first || second). */
static void proof(const struct fe_offload *o, const char label[5], const uint8_t *first,
		  const uint8_t *second, uint8_t out[MG_CTL_HMAC_LEN])
{
	uint8_t msg[5 + 2 * MG_CTL_NONCE_LEN];

	memcpy(msg, label, 5);
	memcpy(msg + 5, first, MG_CTL_NONCE_LEN);
	memcpy(msg + 5 + MG_CTL_NONCE_LEN, second, MG_CTL_NONCE_LEN);
	hmac_sha256(o, msg, sizeof(msg), out);
}

/* MAC of a message: HMAC(K, Ns || Nc || dir || counter || hdr || body)[0:16]. */
static void message_mac(const struct fe_offload *o, uint8_t dir, uint64_t counter,
			const uint8_t *msg, size_t len, uint8_t out[MG_CTL_MAC_LEN])
{
	static __thread uint8_t buf[2 * MG_CTL_NONCE_LEN + 9 + sizeof(o->out)];
	uint8_t full[MG_CTL_HMAC_LEN];
	size_t at = 0;

	memcpy(buf, o->server_nonce, MG_CTL_NONCE_LEN);
	memcpy(buf + MG_CTL_NONCE_LEN, o->client_nonce, MG_CTL_NONCE_LEN);
	at = 2 * MG_CTL_NONCE_LEN;
	buf[at++] = dir;
	for (int i = 7; i >= 0; i--)
		buf[at++] = (uint8_t)(counter >> (8 * i));
	memcpy(buf + at, msg, len);
	hmac_sha256(o, buf, at + len, full);
	memcpy(out, full, MG_CTL_MAC_LEN);
}

/* ------------------------------------------------------------------ set-up */

int fe_offload_init(struct fe_offload *o, const char *host, uint16_t port, const char *key_path,
		    uint32_t ring_size)
{
	static unsigned int instance;
	char name[RTE_RING_NAMESIZE];
	unsigned int id = instance++;

	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->watch.port_id = -1;
	o->watch.ifr_fd = -1;
	o->watch.healthy = 1;
	o->c.healthy = 1;
	o->backoff_us = BACKOFF_MIN_US;
	o->next_seq = 1;
	o->enabled = host && host[0] && port;
	if (o->enabled) {
		snprintf(o->host, sizeof(o->host), "%s", host);
		o->port = port;
		if (!key_path || !key_path[0]) {
			fprintf(stderr, "fe_offload: no control_key: the switch host refuses a peer "
				"that cannot prove the key\n");
			return -1;
		}
		if (fe_offload_read_key(key_path, o->key, sizeof(o->key)))
			return -1;
	}
	snprintf(name, sizeof(name), "fe_offload_%u", id);
	o->ring = rte_ring_create_elem(name, sizeof(struct fe_offload_req), ring_size,
				       rte_socket_id(), RING_F_SC_DEQ);
	snprintf(name, sizeof(name), "fe_offload_q%u", id);
	o->query_ring = rte_ring_create_elem(name, sizeof(struct mg_ctl_key), ring_size,
					     rte_socket_id(), RING_F_SC_DEQ);
	snprintf(name, sizeof(name), "fe_offload_r%u", id);
	o->result_ring = rte_ring_create_elem(name, sizeof(struct fe_offload_result), ring_size,
					      rte_socket_id(), RING_F_SP_ENQ);
	if (!o->ring || !o->query_ring || !o->result_ring) {
		fprintf(stderr, "fe_offload: cannot create rings of %u: %s\n", ring_size,
			rte_strerror(rte_errno));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- connection */

static void disconnect(struct fe_offload *o, uint64_t now)
{
	if (o->fd >= 0) {
		close(o->fd);
		o->fd = -1;
		count(&o->c.disconnects, 1);
	}
	__atomic_store_n(&o->c.connected, 0, __ATOMIC_RELAXED);
	o->state = FE_OFFLOAD_DOWN;
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
	o->state = FE_OFFLOAD_HELLO;
	o->handshake_deadline_us = now + HANDSHAKE_TIMEOUT_US;
	o->in_len = o->out_len = o->out_off = 0;
	o->resend_from = 0;
	count(&o->c.connects, 1);
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

static void put_header(uint8_t *at, uint8_t type, uint16_t n, uint32_t seq)
{
	struct mg_ctl_hdr h = {
		.magic = htonl(MG_CTL_MAGIC),
		.version = MG_CTL_VERSION,
		.type = type,
		.count = htons(n),
		.seq = htonl(seq),
	};

	memcpy(at, &h, sizeof(h));
}

/* HELLO arrived: answer with AUTH. */
static void send_auth(struct fe_offload *o)
{
	RAND_bytes(o->client_nonce, MG_CTL_NONCE_LEN);
	put_header(o->out, MG_CTL_AUTH, 0, 0);
	memcpy(o->out + HDR_LEN, o->client_nonce, MG_CTL_NONCE_LEN);
	proof(o, "MGS2c", o->server_nonce, o->client_nonce, o->out + HDR_LEN + MG_CTL_NONCE_LEN);
	o->out_len = HDR_LEN + MG_CTL_NONCE_LEN + MG_CTL_HMAC_LEN;
	o->out_off = 0;
	o->state = FE_OFFLOAD_AUTH;
}

/* ------------------------------------------------------------- requests */

static void encode(struct fe_offload *o, const struct fe_offload_msg *m)
{
	size_t body = 0;

	put_header(o->out, m->type, m->count, m->seq);
	if (m->type == MG_CTL_BATCH) {
		for (unsigned int i = 0; i < m->count; i++) {
			struct mg_ctl_entry e = m->reqs[i].e;

			memset(e._pad, 0, sizeof(e._pad));
			memcpy(o->out + HDR_LEN + body, &e, sizeof(e));
			body += sizeof(e);
		}
	} else {
		body = m->count * sizeof(struct mg_ctl_key);
		memcpy(o->out + HDR_LEN, m->keys, body);
	}
	message_mac(o, MG_CTL_DIR_TO_SERVER, o->mac_sent++, o->out, HDR_LEN + body,
		    o->out + HDR_LEN + body);
	o->out_len = (uint32_t)(HDR_LEN + body + MG_CTL_MAC_LEN);
	o->out_off = 0;
}

/* A new message from the rings: entries and keys take turns, so that a steady
 * stream of entries never starves the queries (an lcore's idle timers wait on
 * their answers). */
static int take_new(struct fe_offload *o, struct fe_offload_msg *m)
{
	unsigned int n = 0;

	if (o->last_type != MG_CTL_BATCH || rte_ring_empty(o->query_ring))
		n = rte_ring_sc_dequeue_burst_elem(o->ring, m->reqs, sizeof(struct fe_offload_req),
						   MG_CTL_MAX_BATCH, NULL);
	if (n) {
		m->type = MG_CTL_BATCH;
		for (unsigned int i = 0; i < n; i++) {
			if (m->reqs[i].e.op == MG_CTL_ADD)
				count(&o->c.adds_sent, 1);
			else
				count(&o->c.dels_sent, 1);
		}
		count(&o->c.batches_sent, 1);
		count(&o->c.entries_sent, n);
	} else {
		n = rte_ring_sc_dequeue_burst_elem(o->query_ring, m->keys, sizeof(struct mg_ctl_key),
						   MG_CTL_MAX_BATCH, NULL);
		if (!n)
			return 0;
		m->type = MG_CTL_QUERY;
		count(&o->c.queries_sent, 1);
		count(&o->c.keys_queried, n);
	}
	m->count = (uint16_t)n;
	m->seq = o->next_seq++;
	o->last_type = m->type;
	return 1;
}

/* Put the next message in the output buffer if it is free. */
static void fill_out(struct fe_offload *o)
{
	struct fe_offload_msg *m;

	if (o->state != FE_OFFLOAD_READY || o->out_off < o->out_len)
		return;
	o->out_len = o->out_off = 0;
	if (o->resend_from < o->inflight_n) {
		m = &o->inflight[(o->inflight_head + o->resend_from) % FE_OFFLOAD_INFLIGHT];
		o->resend_from++;
		if (m->type == MG_CTL_BATCH)
			count(&o->c.batches_resent, 1);
		encode(o, m);
		return;
	}
	if (o->inflight_n == FE_OFFLOAD_INFLIGHT)
		return;
	m = &o->inflight[(o->inflight_head + o->inflight_n) % FE_OFFLOAD_INFLIGHT];
	if (!take_new(o, m))
		return;
	o->inflight_n++;
	o->resend_from++;
	__atomic_store_n(&o->c.inflight, o->inflight_n, __ATOMIC_RELAXED);
	encode(o, m);
}

/* ------------------------------------------------------------- answers */

int fe_offload_post_result(struct fe_offload *o, const struct fe_offload_result *r)
{
	struct fe_offload_result copy = *r;  /* the ring's API takes no const */

	if (rte_ring_sp_enqueue_elem(o->result_ring, &copy, sizeof(copy))) {
		count(&o->c.results_dropped, 1);
		return -1;
	}
	count(&o->c.results, 1);
	return 0;
}

static void on_ack(struct fe_offload *o, const struct fe_offload_msg *m, const uint8_t *body)
{
	struct mg_ctl_ack a;
	const uint8_t *bits = body + sizeof(a);

	memcpy(&a, body, sizeof(a));
	count(&o->c.batches_acked, 1);
	count(&o->c.added, ntohs(a.added));
	count(&o->c.deleted, ntohs(a.deleted));
	count(&o->c.refused, ntohs(a.refused));
	for (unsigned int i = 0; i < m->count; i++) {
		uint32_t word;
		struct fe_offload_result r = {0};

		if (!m->reqs[i].want_result || m->reqs[i].e.op != MG_CTL_ADD)
			continue;
		memcpy(&word, bits + 4 * (i / 32), 4);
		r.kind = (ntohl(word) >> (i % 32)) & 1 ? FE_OFFLOAD_REFUSED : FE_OFFLOAD_ADDED;
		r.backend_idx = m->reqs[i].e.backend_idx;
		r.key.client_ip_be = m->reqs[i].e.client_ip_be;
		r.key.client_port_be = m->reqs[i].e.client_port_be;
		fe_offload_post_result(o, &r);
	}
}

static void on_reply(struct fe_offload *o, const struct fe_offload_msg *m, const uint8_t *body)
{
	count(&o->c.replies, 1);
	for (unsigned int i = 0; i < m->count; i++) {
		struct mg_ctl_liveness l;
		struct fe_offload_result r = {0};

		memcpy(&l, body + i * sizeof(l), sizeof(l));
		r.kind = FE_OFFLOAD_LIVENESS;
		r.present = l.present;
		r.backend_idx = l.backend_idx;
		r.idle_ms = ntohl(l.idle_ms);
		r.key.client_ip_be = m->keys[i].client_ip_be;
		r.key.client_port_be = m->keys[i].client_port_be;
		fe_offload_post_result(o, &r);
	}
}

/* A whole handshake message of `type` with a `len`-byte body at the head of in[]:
 * 1 if there, 0 if more is needed, -1 if something else came. */
static int handshake_message(struct fe_offload *o, uint8_t type, size_t len)
{
	struct mg_ctl_hdr h;

	if (o->in_len < HDR_LEN)
		return 0;
	memcpy(&h, o->in, sizeof(h));
	if (ntohl(h.magic) != MG_CTL_MAGIC || h.version != MG_CTL_VERSION || h.type != type ||
	    h.count)
		return -1;
	return o->in_len >= HDR_LEN + len;
}

static void consume(struct fe_offload *o, size_t n)
{
	memmove(o->in, o->in + n, o->in_len - n);
	o->in_len -= (uint32_t)n;
}

/* The daemon's message at the head of o->in, of body length len: 1 once it is
 * whole and its MAC is right, 0 while more is needed, -1 for a wrong MAC. */
static int received_whole_and_signed(struct fe_offload *o, long len)
{
	uint8_t mac[MG_CTL_MAC_LEN];

	if (o->in_len < HDR_LEN + (size_t)len + MG_CTL_MAC_LEN)
		return 0;
	message_mac(o, MG_CTL_DIR_TO_CLIENT, o->mac_received++, o->in, HDR_LEN + len, mac);
	if (CRYPTO_memcmp(mac, o->in + HDR_LEN + len, MG_CTL_MAC_LEN)) {
		count(&o->c.bad_macs, 1);
		return -1;
	}
	return 1;
}

/* A NOTICE at the head of in[] (the server's, unasked): 1 if read, 0 if more
 * is needed, -1 if malformed or its MAC is wrong. */
static int read_notice(struct fe_offload *o, const struct mg_ctl_hdr *h, long len)
{
	struct mg_ctl_notice n;

	if (ntohl(h->magic) != MG_CTL_MAGIC || h->version != MG_CTL_VERSION || len < 0) {
		count(&o->c.bad_acks, 1);
		return -1;
	}
	int whole = received_whole_and_signed(o, len);

	if (whole <= 0)
		return whole;
	memcpy(&n, o->in + HDR_LEN, sizeof(n));
	count(&o->c.notices, 1);
	/* An unknown notice is a newer daemon's: nothing for us to do. */
	if (n.what == MG_CTL_NOTICE_DRAIN || n.what == MG_CTL_NOTICE_RESUME)
		__atomic_store_n(&o->c.draining, n.what == MG_CTL_NOTICE_DRAIN, __ATOMIC_RELEASE);
	consume(o, HDR_LEN + (size_t)len + MG_CTL_MAC_LEN);
	return 1;
}

/* Whatever whole messages in[] holds; -1 if the peer said something it must not. */
static int read_messages(struct fe_offload *o)
{
	if (o->state == FE_OFFLOAD_HELLO) {
		int r = handshake_message(o, MG_CTL_HELLO, MG_CTL_NONCE_LEN);

		if (r <= 0)
			return r;
		memcpy(o->server_nonce, o->in + HDR_LEN, MG_CTL_NONCE_LEN);
		consume(o, HDR_LEN + MG_CTL_NONCE_LEN);
		send_auth(o);
	}
	if (o->state == FE_OFFLOAD_AUTH) {
		uint8_t want[MG_CTL_HMAC_LEN];
		int r = handshake_message(o, MG_CTL_AUTH_OK, MG_CTL_HMAC_LEN);

		if (r <= 0)
			return r;
		proof(o, "MGS2s", o->client_nonce, o->server_nonce, want);
		if (CRYPTO_memcmp(want, o->in + HDR_LEN, MG_CTL_HMAC_LEN)) {
			/* Whoever answers does not know the key: not our switch. */
			count(&o->c.auth_failures, 1);
			return -1;
		}
		consume(o, HDR_LEN + MG_CTL_HMAC_LEN);
		o->state = FE_OFFLOAD_READY;
		o->mac_sent = o->mac_received = 0;
		/* A drained front-end is told again on every new connection; a
		 * resume while it was away is told by that silence. */
		__atomic_store_n(&o->c.draining, 0, __ATOMIC_RELEASE);
		o->backoff_us = BACKOFF_MIN_US;
		__atomic_store_n(&o->c.connected, 1, __ATOMIC_RELAXED);
	}
	while (o->state == FE_OFFLOAD_READY && o->in_len >= HDR_LEN) {
		struct fe_offload_msg *m = &o->inflight[o->inflight_head];
		struct mg_ctl_hdr h;
		long len;

		memcpy(&h, o->in, sizeof(h));
		len = mg_ctl_body_len(h.type, ntohs(h.count));
		if (h.type == MG_CTL_NOTICE) {
			int r = read_notice(o, &h, len);

			if (r <= 0)
				return r;
			continue;
		}
		if (ntohl(h.magic) != MG_CTL_MAGIC || h.version != MG_CTL_VERSION || len < 0 ||
		    !o->resend_from || ntohl(h.seq) != m->seq || ntohs(h.count) != m->count ||
		    h.type != (m->type == MG_CTL_BATCH ? MG_CTL_ACK : MG_CTL_REPLY)) {
			count(&o->c.bad_acks, 1);
			return -1;
		}
		int whole = received_whole_and_signed(o, len);

		if (whole <= 0)
			return whole;
		if (m->type == MG_CTL_BATCH)
			on_ack(o, m, o->in + HDR_LEN);
		else
			on_reply(o, m, o->in + HDR_LEN);
		o->inflight_head = (o->inflight_head + 1) % FE_OFFLOAD_INFLIGHT;
		o->inflight_n--;
		o->resend_from--;
		__atomic_store_n(&o->c.inflight, o->inflight_n, __ATOMIC_RELAXED);
		consume(o, HDR_LEN + (size_t)len + MG_CTL_MAC_LEN);
	}
	return 0;
}

/* ------------------------------------------------------------- health */

int fe_offload_watch(struct fe_offload *o, const uint64_t *turns, int port_id, const char *ifname,
		     uint64_t stall_us)
{
	struct fe_offload_watch *w = &o->watch;

	w->turns = turns;
	w->port_id = port_id;
	w->stall_us = stall_us;
	if (ifname && ifname[0]) {
		if (strlen(ifname) >= sizeof(w->ifname)) {
			fprintf(stderr, "fe_offload: interface name %s too long\n", ifname);
			return -1;
		}
		snprintf(w->ifname, sizeof(w->ifname), "%s", ifname);
		w->ifr_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (w->ifr_fd < 0) {
			fprintf(stderr, "fe_offload: socket: %s\n", strerror(errno));
			return -1;
		}
	}
	/* Not serving until the loop turns. */
	w->healthy = !turns;
	__atomic_store_n(&o->c.healthy, (uint32_t)w->healthy, __ATOMIC_RELAXED);
	return 0;
}

static int link_up(const struct fe_offload_watch *w)
{
	struct rte_eth_link link;
	struct ifreq ifr;

	if (w->port_id >= 0 && rte_eth_link_get_nowait((uint16_t)w->port_id, &link) == 0 &&
	    link.link_status == RTE_ETH_LINK_DOWN)
		return 0;
	if (w->ifr_fd >= 0) {
		/* Some vdevs report the link they found at start for ever; the
		 * kernel interface under them knows (an interface that is gone
		 * is down). */
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", w->ifname);
		if (ioctl(w->ifr_fd, SIOCGIFFLAGS, &ifr) < 0 ||
		    (ifr.ifr_flags & (IFF_UP | IFF_RUNNING)) != (IFF_UP | IFF_RUNNING))
			return 0;
	}
	return 1;
}

/* Can the front-end serve?  Looked at every FE_WATCH_PERIOD_US. */
static int healthy(struct fe_offload *o, uint64_t now)
{
	struct fe_offload_watch *w = &o->watch;
	int up, turning, ok;

	if (now < w->next_check_us)
		return w->healthy;
	w->next_check_us = now + FE_WATCH_PERIOD_US;
	up = link_up(w);
	turning = 1;
	if (w->turns) {
		uint64_t t = __atomic_load_n(w->turns, __ATOMIC_RELAXED);

		if (t != w->last_turns) {
			w->last_turns = t;
			w->last_turn_us = now;
		}
		turning = w->last_turns && now - w->last_turn_us <= w->stall_us;
	}
	ok = up && turning;
	if (ok == w->healthy)
		return ok;
	if (!ok) {
		if (!up)
			count(&o->c.link_downs, 1);
		else
			count(&o->c.loop_stalls, 1);
		fprintf(stderr, "fe_offload: %s: leaving the switch's selection\n",
			!up ? "link down" : "packet loop stalled");
	} else {
		/* Back: connect now, not after the back-off of the close. */
		o->next_connect_us = 0;
		o->backoff_us = BACKOFF_MIN_US;
	}
	w->healthy = ok;
	__atomic_store_n(&o->c.healthy, (uint32_t)ok, __ATOMIC_RELAXED);
	return ok;
}

/* ------------------------------------------------------------- the thread */

static int idle(struct fe_offload *o)
{
	return rte_ring_empty(o->ring) && rte_ring_empty(o->query_ring) && !o->inflight_n;
}

static void *channel_main(void *arg)
{
	struct fe_offload *o = arg;

	for (;;) {
		uint64_t now = mono_us();
		struct pollfd pfd;
		int timeout;

		if (o->stop && (idle(o) || now >= o->drain_deadline_us))
			break;
		if (!o->stop && !healthy(o, now)) {
			/* The daemon takes a front-end whose connection closes out
			 * of the selection: what one that cannot serve wants. */
			if (o->fd >= 0) {
				count(&o->c.health_closes, 1);
				disconnect(o, now);
			}
			usleep(FE_WATCH_PERIOD_US);
			continue;
		}
		if (o->fd < 0) {
			if (now >= o->next_connect_us && try_connect(o, now) == 0)
				continue;
			usleep(10 * 1000);
			continue;
		}
		if (o->state != FE_OFFLOAD_READY && now >= o->handshake_deadline_us) {
			/* Connected, but nobody there proves the key in time. */
			count(&o->c.auth_failures, 1);
			disconnect(o, now);
			continue;
		}
		fill_out(o);
		pfd.fd = o->fd;
		pfd.events = POLLIN | (o->out_off < o->out_len ? POLLOUT : 0);
		pfd.revents = 0;
		timeout = o->out_off < o->out_len || o->state != FE_OFFLOAD_READY ? 10 : RING_POLL_MS;
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
				/* Closed during the handshake: the server refused our key. */
				if (o->state == FE_OFFLOAD_AUTH)
					count(&o->c.auth_failures, 1);
				disconnect(o, now);
				continue;
			}
			if (r > 0) {
				o->in_len += (uint32_t)r;
				if (read_messages(o)) {
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
	rte_ring_free(o->query_ring);
	rte_ring_free(o->result_ring);
	o->ring = o->query_ring = o->result_ring = NULL;
	if (o->watch.ifr_fd >= 0) {
		close(o->watch.ifr_fd);
		o->watch.ifr_fd = -1;
	}
	OPENSSL_cleanse(o->key, sizeof(o->key));
}
