/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <rte_common.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "fe_port.h"
#include "fe_xsk.h"

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
	/* A driver that prefers larger rings gets them: af_xdp sizes the
	 * socket's rings by ours and gives the kernel 2,048 buffers to fill,
	 * all of which may be waiting in the RX ring when the loop wakes. */
	if (info.default_rxportconf.ring_size > rxd)
		rxd = info.default_rxportconf.ring_size;
	if (info.default_txportconf.ring_size > txd)
		txd = info.default_txportconf.ring_size;
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

const char *fe_port_driver(uint16_t port_id)
{
	struct rte_eth_dev_info info;

	if (rte_eth_dev_info_get(port_id, &info) || !info.driver_name)
		return "?";
	return info.driver_name;
}

const char *fe_port_ifname(uint16_t port_id, char *buf, size_t len)
{
	struct rte_eth_dev_info info;
	char name[IF_NAMESIZE];

	if (rte_eth_dev_info_get(port_id, &info) || !info.if_index ||
	    !if_indextoname(info.if_index, name))
		return NULL;
	snprintf(buf, len, "%s", name);
	return buf;
}

/* The steering map of the XDP program on `ifindex`: found through the
 * program, because the PMD that loaded it keeps the object to itself. */
static int steer_map_fd(uint32_t ifindex, char *err, size_t errlen)
{
	struct bpf_prog_info prog = {0};
	uint32_t prog_id = 0, map_ids[16], len = sizeof(prog);
	int prog_fd, fd;

	if (bpf_xdp_query_id((int)ifindex, 0, &prog_id) || !prog_id) {
		snprintf(err, errlen, "no XDP program on interface %u", ifindex);
		return -1;
	}
	prog_fd = bpf_prog_get_fd_by_id(prog_id);
	if (prog_fd < 0) {
		snprintf(err, errlen, "XDP program %u: %s", prog_id, strerror(errno));
		return -1;
	}
	prog.nr_map_ids = RTE_DIM(map_ids);
	prog.map_ids = (uint64_t)(uintptr_t)map_ids;
	if (bpf_obj_get_info_by_fd(prog_fd, &prog, &len)) {
		snprintf(err, errlen, "XDP program %u: %s", prog_id, strerror(errno));
		close(prog_fd);
		return -1;
	}
	close(prog_fd);
	for (uint32_t i = 0; i < RTE_MIN(prog.nr_map_ids, RTE_DIM(map_ids)); i++) {
		struct bpf_map_info map = {0};
		uint32_t map_len = sizeof(map);

		fd = bpf_map_get_fd_by_id(map_ids[i]);
		if (fd < 0)
			continue;
		if (!bpf_obj_get_info_by_fd(fd, &map, &map_len) && !strcmp(map.name, FE_XSK_STEER_MAP))
			return fd;
		close(fd);
	}
	snprintf(err, errlen, "XDP program %s (id %u) has no %s map: give the af_xdp vdev "
		 "xdp_prog=<build>/bpf/fe_xsk.bpf.o", prog.name, prog_id, FE_XSK_STEER_MAP);
	return -1;
}

int fe_port_steer(uint16_t port_id, const struct fe_port_endpoint *eps, unsigned int n,
		  char *err, size_t errlen)
{
	struct rte_eth_dev_info info;
	int fd;

	if (rte_eth_dev_info_get(port_id, &info) || strcmp(info.driver_name, "net_af_xdp"))
		return 0;
	fd = steer_map_fd(info.if_index, err, errlen);
	if (fd < 0)
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		struct fe_xsk_key key = {.addr_be = eps[i].addr_be, .port_be = eps[i].port_be};
		__u8 match = eps[i].is_source ? FE_XSK_FROM : FE_XSK_TO;

		if (bpf_map_update_elem(fd, &key, &match, BPF_ANY)) {
			snprintf(err, errlen, "%s: %s", FE_XSK_STEER_MAP, strerror(errno));
			close(fd);
			return -1;
		}
	}
	close(fd);
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
