/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "fe_port.h"

#define RX_DESC 1024
#define TX_DESC 1024
#define MBUF_CACHE 256

struct rte_mempool *fe_pool_create(const char *name, uint32_t n_mbufs, int socket)
{
	return rte_pktmbuf_pool_create(name, n_mbufs, MBUF_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
				       socket);
}

int fe_port_init(uint16_t port_id, struct rte_mempool *pool, uint8_t mac[6])
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	struct rte_ether_addr addr;
	uint16_t rxd = RX_DESC, txd = TX_DESC;
	int rc;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_info_get(port_id, &info);
	if (rc)
		return rc;
	rc = rte_eth_dev_configure(port_id, 1, 1, &conf);
	if (rc)
		return rc;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rxd, &txd);
	if (rc)
		return rc;
	rc = rte_eth_rx_queue_setup(port_id, 0, rxd, rte_eth_dev_socket_id(port_id), NULL, pool);
	if (rc)
		return rc;
	rc = rte_eth_tx_queue_setup(port_id, 0, txd, rte_eth_dev_socket_id(port_id), NULL);
	if (rc)
		return rc;
	rc = rte_eth_dev_start(port_id);
	if (rc)
		return rc;
	/* Frames come addressed to us by the switch; anything else is dropped
	 * in software, so promiscuous mode is not needed. */
	rc = rte_eth_macaddr_get(port_id, &addr);
	if (rc)
		return rc;
	memcpy(mac, addr.addr_bytes, 6);
	return 0;
}

void fe_port_fini(uint16_t port_id)
{
	rte_eth_dev_stop(port_id);
	rte_eth_dev_close(port_id);
}

void fe_runtime_dir_remove(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}
