/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The front-end's control-protocol client (fe_offload.c) driven alone, line by
 * line from stdin, against a real switch host daemon: what tests/ use to check
 * the C side of the protocol (handshake, MACs, per-entry results, queries).
 *
 *   miresga-offload-test HOST PORT KEY_FILE [WATCHDOG_MS IFNAME|-]
 *
 * With WATCHDOG_MS the channel watches a loop that turns every millisecond
 * (a thread of this program) and the kernel interface IFNAME ("-": none),
 * as the front-end watches its packet loop and port (fe_offload_watch()).
 *
 *   push OP IP PORT BACKEND VIP WANT   fe_offload_push() (OP 1 = ADD, 2 = DEL)
 *   pushn N OP IP PORT BACKEND VIP WANT  the same for ports PORT .. PORT + N - 1; how many went
 *   query IP PORT VIP                  fe_offload_query()
 *   results N MS                       wait up to MS for N results; prints them as JSON
 *   connected MS                       wait up to MS for the handshake; prints 0 or 1
 *   stall 1|0                          the watched loop stops (1) or starts (0) turning
 *   stats                              the channel's counters as JSON
 *   quit
 *
 * Every answer is one line.  Exit status 2 if the channel cannot be set up
 * (the reason on stderr).
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_lcore.h>

#include "fe_offload.h"
#include "fe_port.h"

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The loop the watchdog watches: turns every millisecond unless stalled. */
static uint64_t turns;
static volatile int stalled, quitting;

static void *turn(void *arg)
{
	(void)arg;
	while (!quitting) {
		if (!stalled)
			__atomic_store_n(&turns, turns + 1, __ATOMIC_RELAXED);
		usleep(1000);
	}
	return NULL;
}

static int parse_key(const char *ip, unsigned int port, struct mg_flow_key *k)
{
	memset(k, 0, sizeof(*k));
	k->client_port_be = htons((uint16_t)port);
	return inet_pton(AF_INET, ip, &k->client_ip_be) == 1 ? 0 : -1;
}

static void print_results(struct fe_offload *o, unsigned int want, unsigned int ms)
{
	static struct fe_offload_result got[4096];
	static const char *kinds[] = {"?", "added", "refused", "liveness"};
	uint64_t deadline = now_ms() + ms;
	unsigned int n = 0;

	if (want > 4096)
		want = 4096;
	while (n < want && now_ms() < deadline) {
		unsigned int k = fe_offload_results(o, got + n, want - n);

		n += k;
		if (!k)
			usleep(1000);
	}
	printf("[");
	for (unsigned int i = 0; i < n; i++) {
		char ip[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &got[i].key.client_ip_be, ip, sizeof(ip));
		printf("%s{\"kind\": \"%s\", \"ip\": \"%s\", \"port\": %u, \"present\": %u, "
		       "\"backend\": %u, \"idle_ms\": %u}", i ? ", " : "",
		       kinds[got[i].kind < 4 ? got[i].kind : 0], ip, ntohs(got[i].key.client_port_be),
		       got[i].present, got[i].backend_idx, got[i].idle_ms);
	}
	printf("]\n");
}

int main(int argc, char **argv)
{
	static struct fe_offload o;
	char prefix[32], line[256];
	char *eal[] = {"miresga-offload-test", "--no-huge", "-m", "64", "--no-pci", "--no-shconf",
		       "--no-telemetry", "--log-level=*:error", "--file-prefix", prefix, "-l", "0",
		       NULL};

	pthread_t turner;
	int watching = argc == 6;

	if (argc != 4 && !watching) {
		fprintf(stderr, "usage: %s HOST PORT KEY_FILE [WATCHDOG_MS IFNAME|-]\n", argv[0]);
		return 2;
	}
	snprintf(prefix, sizeof(prefix), "offtest%d", (int)getpid());
	if (rte_eal_init(12, eal) < 0) {
		fprintf(stderr, "EAL init failed\n");
		return 2;
	}
	if (fe_offload_init(&o, argv[1], (uint16_t)atoi(argv[2]), argv[3], 4096))
		return 2;
	if (watching &&
	    (fe_offload_watch(&o, &turns, -1, strcmp(argv[5], "-") ? argv[5] : NULL,
			      (uint64_t)atoi(argv[4]) * 1000) ||
	     pthread_create(&turner, NULL, turn, NULL)))
		return 2;
	if (fe_offload_start(&o))
		return 2;
	while (fgets(line, sizeof(line), stdin)) {
		unsigned int op, port, backend, vip, want, n, ms;
		char ip[64];
		struct mg_flow_key k;

		if (sscanf(line, "pushn %u %u %63s %u %u %u %u", &n, &op, ip, &port, &backend, &vip,
			   &want) == 7 && !parse_key(ip, port, &k)) {
			unsigned int ok = 0;

			for (unsigned int i = 0; i < n; i++) {
				k.client_port_be = htons((uint16_t)(port + i));
				ok += !fe_offload_push(&o, (uint8_t)op, &k, (uint8_t)backend,
						       (uint8_t)vip, (int)want);
			}
			printf("%u\n", ok);
		} else if (sscanf(line, "push %u %63s %u %u %u %u", &op, ip, &port, &backend, &vip,
				  &want) == 6 && !parse_key(ip, port, &k)) {
			printf("%d\n", fe_offload_push(&o, (uint8_t)op, &k, (uint8_t)backend,
						       (uint8_t)vip, (int)want));
		} else if (sscanf(line, "query %63s %u %u", ip, &port, &vip) == 3 &&
			   !parse_key(ip, port, &k)) {
			printf("%d\n", fe_offload_query(&o, &k, (uint8_t)vip));
		} else if (sscanf(line, "results %u %u", &n, &ms) == 2) {
			print_results(&o, n, ms);
		} else if (sscanf(line, "connected %u", &ms) == 1) {
			uint64_t deadline = now_ms() + ms;

			while (!__atomic_load_n(&o.c.connected, __ATOMIC_RELAXED) && now_ms() < deadline)
				usleep(1000);
			printf("%u\n", __atomic_load_n(&o.c.connected, __ATOMIC_RELAXED));
		} else if (sscanf(line, "stall %u", &n) == 1) {
			stalled = (int)n;
			printf("%u\n", n);
		} else if (!strncmp(line, "stats", 5)) {
			const char *sep = "";

			printf("{\"healthy\": %u, \"draining\": %u, ",
			       __atomic_load_n(&o.c.healthy, __ATOMIC_RELAXED),
			       __atomic_load_n(&o.c.draining, __ATOMIC_RELAXED));
#define PRINT(f) printf("%s\"" #f "\": %llu", sep, \
			(unsigned long long)__atomic_load_n(&o.c.f, __ATOMIC_RELAXED)); sep = ", ";
			FE_OFFLOAD_CHANNEL_COUNTERS(PRINT)
#undef PRINT
			printf("}\n");
		} else if (!strncmp(line, "quit", 4)) {
			break;
		} else {
			printf("error unknown command\n");
		}
		fflush(stdout);
	}
	fe_offload_stop(&o, 1000);
	if (watching) {
		quitting = 1;
		pthread_join(turner, NULL);
	}
	fe_offload_free(&o);
	snprintf(line, sizeof(line), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	fe_runtime_dir_remove(line);
	return 0;
}
