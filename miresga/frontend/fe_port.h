/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The front-end's one port: a real NIC on a server, an af_packet vdev on
 * the emulated testbed.  No offloads are asked for (checksums are done in
 * software, see fe_csum.h), so both behave the same.
 */
#ifndef FE_PORT_H
#define FE_PORT_H

#include <stdint.h>

#include <rte_mempool.h>

struct rte_mempool *fe_pool_create(const char *name, uint32_t n_mbufs, int socket);
int fe_port_init(uint16_t port_id, struct rte_mempool *pool, uint8_t mac[6]);
void fe_port_fini(uint16_t port_id);

/* rte_eal_cleanup() leaves the runtime directory (/var/run/dpdk/<prefix>)
 * behind; a front-end with its own prefix removes it on the way out.
 * Call with the path copied before rte_eal_cleanup(). */
void fe_runtime_dir_remove(const char *dir);

#endif /* FE_PORT_H */
