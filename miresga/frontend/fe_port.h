/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The front-end's one port: a real NIC on a server, an af_packet or af_xdp
 * vdev on the emulated testbed.  No offloads are asked for (checksums are
 * done in software, see fe_csum.h), so all behave the same.
 */
#ifndef FE_PORT_H
#define FE_PORT_H

#include <stddef.h>
#include <stdint.h>

#include <rte_mempool.h>

struct rte_mempool *fe_pool_create(const char *name, uint32_t n_mbufs, int socket);
int fe_port_init(uint16_t port_id, struct rte_mempool *pool, uint8_t mac[6]);
void fe_port_fini(uint16_t port_id);
/* The port's driver name (net_af_packet, net_af_xdp, net_ice...), for the log. */
const char *fe_port_driver(uint16_t port_id);
/* The kernel interface under the port (a vdev's), in buf; NULL if it has none. */
const char *fe_port_ifname(uint16_t port_id, char *buf, size_t len);

/* An endpoint whose TCP frames are the front-end's: as their destination
 * (the VIP) or as their source (a back-end). */
struct fe_port_endpoint {
	uint32_t addr_be;
	uint16_t port_be;
	uint8_t is_source;
};

/* af_xdp: tell the port's XDP program (fe_xsk.bpf.c) which frames are the
 * front-end's.  Every other port takes every frame of its link: nothing to
 * do.  0, or -1 with `err` set. */
int fe_port_steer(uint16_t port_id, const struct fe_port_endpoint *eps, unsigned int n,
		  char *err, size_t errlen);

/* rte_eal_cleanup() leaves the runtime directory (/var/run/dpdk/<prefix>)
 * behind; a front-end with its own prefix removes it on the way out.
 * Call with the path copied before rte_eal_cleanup(). */
void fe_runtime_dir_remove(const char *dir);

#endif /* FE_PORT_H */
