/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * miresga-frontend: the Miresga front-end on DPDK.
 *
 *   miresga-frontend [EAL options] -- --config FILE [--port N]
 *   miresga-frontend --check-config FILE
 *   miresga-frontend --print-defaults
 *
 * On the emulated testbed, inside the front-end's namespace:
 *   miresga-frontend --no-huge -m 256 --no-pci --file-prefix fe1234 \
 *       --vdev=net_af_packet0,iface=eth0 -l 1 -- --config fe.conf
 * or --vdev=net_af_xdp0,iface=eth0,xdp_prog=build/bpf/fe_xsk.bpf.o,busy_budget=0
 * (an AF_XDP socket; its XDP program leaves the kernel what is not ours).
 * On a server, the same with the NIC's PCI address (-a) and hugepages.
 *
 * One lcore polls the port.  Two plain threads sleep beside it: the offload
 * channel and the stats socket.  SIGINT/SIGTERM stop it cleanly: flows are
 * freed, their switch entries deleted over the channel, the socket removed.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "fe_config.h"
#include "fe_http.h"
#include "fe_lcore.h"
#include "fe_offload.h"
#include "fe_port.h"
#include "fe_stats.h"

/* Empty polls before the loop starts to sleep, and the first sleep: a short
 * spin keeps latency low under load, the back-off keeps an idle front-end
 * from taking a core that the rest of the testbed needs. */
#define IDLE_SPIN_POLLS 64
#define OFFLOAD_DRAIN_MS 500

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [EAL options] -- --config FILE [--port N]\n"
		"       %s --check-config FILE\n"
		"       %s --print-defaults\n", prog, prog, prog);
}

/* Prints the config as the C side understood it, for the launcher's tests. */
static int check_config(const char *path)
{
	static struct fe_config cfg;
	char err[256], ip[INET_ADDRSTRLEN];

	fe_config_defaults(&cfg);
	if (fe_config_load(&cfg, path, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", path, err);
		return 2;
	}
	inet_ntop(AF_INET, &cfg.vip_be, ip, sizeof(ip));
	printf("{\"vip\": \"%s\", \"port\": %u, \"vip_index\": %u, \"backends\": [", ip,
	       ntohs(cfg.vip_port_be), cfg.vip_idx);
	for (unsigned int b = 0, n = 0; b < cfg.n_backends; b++) {
		if (!cfg.backends[b].present)
			continue;
		inet_ntop(AF_INET, &cfg.backends[b].ip_be, ip, sizeof(ip));
		printf("%s{\"index\": %u, \"ip\": \"%s\", \"port\": %u, \"cluster\": %d}", n++ ? ", " : "",
		       b, ip, ntohs(cfg.backends[b].port_be), cfg.backends[b].cluster);
	}
	printf("], \"clusters\": [");
	for (unsigned int c = 0; c < cfg.n_clusters; c++) {
		printf("%s{\"name\": \"%s\", \"policy\": \"%s\", \"backends\": [", c ? ", " : "",
		       cfg.clusters[c].name, fe_policy_name(cfg.clusters[c].policy));
		for (unsigned int i = 0; i < cfg.clusters[c].n_backends; i++)
			printf("%s%u", i ? ", " : "", cfg.clusters[c].backends[i]);
		printf("]}");
	}
	printf("], \"rules\": [");
	for (unsigned int r = 0; r < cfg.n_rules; r++)
		printf("%s{\"cluster\": %d, \"offload\": %s, \"prefix\": \"%s\", \"host\": %s%s%s}",
		       r ? ", " : "", cfg.rules[r].cluster, cfg.rules[r].offload ? "true" : "false",
		       cfg.rules[r].prefix, cfg.rules[r].host_len ? "\"" : "",
		       cfg.rules[r].host_len ? cfg.rules[r].host : "null",
		       cfg.rules[r].host_len ? "\"" : "");
	printf("], \"default_cluster\": %d, \"max_header_bytes\": %u, \"request_timeout_ms\": %llu, "
	       "\"control\": \"%s:%u\", \"control_key\": \"%s\", \"stats_socket\": \"%s\", "
	       "\"flow_capacity\": %u, \"handoff\": \"%s\"}\n",
	       cfg.default_cluster, cfg.max_header_bytes,
	       (unsigned long long)(cfg.request_timeout_us / 1000), cfg.control_host,
	       cfg.control_port, cfg.control_key, cfg.stats_socket, cfg.flow_capacity,
	       fe_handoff_name(cfg.handoff));
	return 0;
}

/* The frames fe_input() serves: TCP to the VIP's port, TCP from a back-end. */
static int steer(uint16_t port_id, const struct fe_config *cfg, char *err, size_t errlen)
{
	static struct fe_port_endpoint eps[1 + MG_MAX_BACKENDS];
	unsigned int n = 0;

	eps[n++] = (struct fe_port_endpoint){.addr_be = cfg->vip_be, .port_be = cfg->vip_port_be};
	for (unsigned int b = 0; b < cfg->n_backends; b++) {
		if (cfg->backends[b].present)
			eps[n++] = (struct fe_port_endpoint){.addr_be = cfg->backends[b].ip_be,
							     .port_be = cfg->backends[b].port_be,
							     .is_source = 1};
	}
	return fe_port_steer(port_id, eps, n, err, errlen);
}

static void run(struct fe_lcore *lc)
{
	const uint64_t hz = rte_get_timer_hz();
	const uint32_t sleep_max = lc->cfg->idle_sleep_max_us;
	struct rte_mbuf *pkts[FE_RX_BURST];
	uint32_t idle_polls = 0, sleep_us = 0;

	while (!quit) {
		uint16_t n;
		unsigned int fired;

		const uint64_t t0 = rte_get_timer_cycles();

		lc->now_us = t0 * 1000000u / hz;
		__atomic_store_n(&lc->turns, lc->turns + 1, __ATOMIC_RELAXED);
		n = rte_eth_rx_burst(lc->port_id, lc->queue_id, pkts, FE_RX_BURST);
		for (uint16_t i = 0; i < n; i++)
			fe_input(lc, pkts[i]);
		fired = fe_timers_run(lc) + fe_results_run(lc);
		fe_tx_flush(lc);
		if (n || fired) {
			/* A polling core is always busy to the OS: this is the
			 * share that did work, what a request really costs. */
			lc->stats.busy_cycles += rte_get_timer_cycles() - t0;
		}
		if (n || fired || !sleep_max) {
			idle_polls = 0;
			sleep_us = 0;
			continue;
		}
		if (++idle_polls < IDLE_SPIN_POLLS)
			continue;
		sleep_us = sleep_us ? (sleep_us * 2 > sleep_max ? sleep_max : sleep_us * 2) : 1;
		rte_delay_us_sleep(sleep_us);
	}
}

int main(int argc, char **argv)
{
	static struct fe_config cfg;
	static struct fe_lcore lc;
	static struct fe_offload offload;
	static struct fe_stats_server stats;
	struct fe_lcore *lcs[1] = {&lc};
	struct rte_mempool *pool;
	const char *config_path = NULL;
	uint16_t port_id = 0;
	uint8_t mac[6];
	char err[256], ifname[IF_NAMESIZE];
	int ret, opt;
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"port", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};

	if (argc == 3 && !strcmp(argv[1], "--check-config"))
		return check_config(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "--print-defaults")) {
		fe_config_print_defaults(stdout);
		return 0;
	}

	ret = rte_eal_init(argc, argv);
	if (ret < 0) {
		fprintf(stderr, "miresga-frontend: EAL init failed\n");
		return 1;
	}
	argc -= ret;
	argv += ret;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'p':
			port_id = (uint16_t)atoi(optarg);
			break;
		default:
			usage("miresga-frontend");
			return 2;
		}
	}
	if (!config_path) {
		usage("miresga-frontend");
		return 2;
	}
	fe_config_defaults(&cfg);
	if (fe_config_load(&cfg, config_path, err, sizeof(err))) {
		fprintf(stderr, "miresga-frontend: %s: %s\n", config_path, err);
		return 2;
	}
	if (!cfg.has_nexthop) {
		fprintf(stderr, "miresga-frontend: %s: nexthop_mac is required\n", config_path);
		return 2;
	}
	http_init();
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	if (!rte_eth_dev_is_valid_port(port_id)) {
		fprintf(stderr, "miresga-frontend: no port %u (did you pass --vdev or -a?)\n", port_id);
		return 1;
	}
	pool = fe_pool_create("fe_mbufs", cfg.n_mbufs, (int)rte_socket_id());
	if (!pool) {
		fprintf(stderr, "miresga-frontend: cannot allocate %u mbufs\n", cfg.n_mbufs);
		return 1;
	}
	if (fe_port_init(port_id, pool, mac)) {
		fprintf(stderr, "miresga-frontend: port %u would not start\n", port_id);
		return 1;
	}
	if (steer(port_id, &cfg, err, sizeof(err))) {
		fprintf(stderr, "miresga-frontend: port %u: %s\n", port_id, err);
		fe_port_fini(port_id);
		return 1;
	}
	if (fe_offload_init(&offload, cfg.control_host, cfg.control_port, cfg.control_key,
			    cfg.offload_ring_size) ||
	    fe_offload_watch(&offload, &lc.turns, port_id, fe_port_ifname(port_id, ifname,
									 sizeof(ifname)),
			     cfg.watchdog_us) ||
	    fe_offload_start(&offload)) {
		fprintf(stderr, "miresga-frontend: offload channel setup failed\n");
		return 1;
	}
	if (fe_lcore_init(&lc, &cfg, pool, port_id, mac, &offload, NULL, rte_lcore_id())) {
		fprintf(stderr, "miresga-frontend: cannot allocate a flow table of %u\n",
			cfg.flow_capacity);
		return 1;
	}
	snprintf(stats.path, sizeof(stats.path), "%s", cfg.stats_socket);
	stats.lcores = lcs;
	stats.n_lcores = 1;
	stats.offload = &offload;
	stats.port_id = port_id;
	if (fe_stats_server_start(&stats)) {
		fprintf(stderr, "miresga-frontend: stats socket %s: cannot listen\n", cfg.stats_socket);
		return 1;
	}
	printf("miresga-frontend: port %u (%s) mac %02x:%02x:%02x:%02x:%02x:%02x, %u clusters, "
	       "%u rules, offload %s, stats %s\n", port_id, fe_port_driver(port_id), mac[0], mac[1],
	       mac[2], mac[3], mac[4], mac[5], cfg.n_clusters, cfg.n_rules,
	       offload.enabled ? "on" : "off", cfg.stats_socket[0] ? cfg.stats_socket : "off");
	fflush(stdout);

	run(&lc);

	fe_stats_server_stop(&stats);
	fe_lcore_fini(&lc);
	fe_offload_stop(&offload, OFFLOAD_DRAIN_MS);
	fe_port_fini(port_id);
	fe_offload_free(&offload);
	rte_mempool_free(pool);
	snprintf(err, sizeof(err), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	fe_runtime_dir_remove(err);
	printf("miresga-frontend: stopped\n");
	return 0;
}
