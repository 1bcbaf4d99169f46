/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The lcore: its set-up and tear-down, and the entry of every received
 * packet, which drops what is not the front-end's (other protocols, bad
 * checksums, its own frames that af_packet shows it) and sorts the rest to
 * the client side (to the VIP) or the back-end side (from a back-end).
 */
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_malloc.h>

#include "fe_splice.h"

void fe_input(struct fe_lcore *lc, struct rte_mbuf *m)
{
	struct fe_pkt p;
	int b;

	lc->stats.pkt.rx++;
	lc->stats.pkt.rx_bytes += m->pkt_len;
	if (m->nb_segs != 1) {
		lc->stats.pkt.multi_segment++;
		rte_pktmbuf_free(m);
		return;
	}
	switch (fe_pkt_parse(&p, m, lc->cfg->verify_checksums)) {
	case FE_PKT_OK:
		break;
	case FE_PKT_NOT_OURS:
		lc->stats.pkt.not_ours++;
		rte_pktmbuf_free(m);
		return;
	case FE_PKT_FRAGMENT:
		lc->stats.pkt.fragment++;
		rte_pktmbuf_free(m);
		return;
	case FE_PKT_BAD_CSUM:
		lc->stats.pkt.bad_checksum++;
		rte_pktmbuf_free(m);
		return;
	default:
		lc->stats.pkt.malformed++;
		rte_pktmbuf_free(m);
		return;
	}
	/* af_packet also shows us what this host itself sends on the link. */
	if (!memcmp(&p.eth->src_addr, lc->mac, RTE_ETHER_ADDR_LEN)) {
		lc->stats.pkt.own++;
		rte_pktmbuf_free(m);
		return;
	}
	if (memcmp(&p.eth->dst_addr, lc->mac, RTE_ETHER_ADDR_LEN)) {
		lc->stats.pkt.not_ours++;
		rte_pktmbuf_free(m);
		return;
	}
	if (p.ip->dst_addr == lc->cfg->vip_be && p.tcp->dst_port == lc->cfg->vip_port_be) {
		fe_client_input(lc, &p);
		return;
	}
	b = fe_lb_find(&lc->lb, p.ip->src_addr, p.tcp->src_port);
	if (b >= 0) {
		fe_server_input(lc, &p, b);
		return;
	}
	lc->stats.pkt.not_ours++;
	rte_pktmbuf_free(m);
}


static void port_sink(struct fe_lcore *lc, struct rte_mbuf **pkts, uint16_t n)
{
	uint16_t sent = rte_eth_tx_burst(lc->port_id, lc->queue_id, pkts, n);

	if (sent < n) {
		lc->stats.pkt.tx_dropped += n - sent;
		rte_pktmbuf_free_bulk(pkts + sent, n - sent);
	}
}

int fe_lcore_init(struct fe_lcore *lc, const struct fe_config *cfg, struct rte_mempool *pool,
		  uint16_t port_id, const uint8_t mac[6], struct fe_offload *offload,
		  fe_tx_sink_t sink, unsigned int lcore_id)
{
	char name[RTE_HASH_NAMESIZE];

	memset(lc, 0, sizeof(*lc));
	lc->cfg = cfg;
	lc->pool = pool;
	lc->port_id = port_id;
	memcpy(lc->mac, mac, 6);
	lc->offload = offload;
	lc->tx_sink = sink ? sink : port_sink;
	lc->hold_budget = (uint64_t)pool->size * cfg->hold_pool_percent / 100;
	snprintf(name, sizeof(name), "fe_flows_%u", lcore_id);
	if (fe_flow_table_init(&lc->ft, name, cfg->flow_capacity, (int)rte_socket_id()))
		return -1;
	lc->ft.timer_us[FE_TIMER_REQUEST] = cfg->request_timeout_us;
	lc->ft.timer_us[FE_TIMER_SYN] = cfg->syn_timeout_us;
	lc->ft.timer_us[FE_TIMER_ANSWER] = cfg->answer_rto_us;
	lc->ft.timer_us[FE_TIMER_GRACE] = cfg->grace_us;
	lc->ft.timer_us[FE_TIMER_IDLE] = cfg->idle_timeout_us;
	lc->ft.timer_us[FE_TIMER_CONFIRM] = cfg->confirm_timeout_us;
	lc->ft.timer_us[FE_TIMER_RTX] = cfg->answer_rto_us;
	lc->ft.timer_us[FE_TIMER_DRAIN] = cfg->drain_quiet_us;
	lc->ft.timer_us[FE_TIMER_CLOSE] = cfg->grace_us;
	fe_lb_init(&lc->lb, cfg);
	lc->scratch = rte_malloc("fe_scratch", cfg->max_header_bytes, 64);
	if (!lc->scratch || fe_del_backlog_init(lc)) {
		rte_free(lc->scratch);
		fe_flow_table_free(&lc->ft);
		return -1;
	}
	return 0;
}

void fe_lcore_fini(struct fe_lcore *lc)
{
	const void *key;
	void *data;
	uint32_t iter = 0, n = 0;
	int32_t pos;
	int32_t *live = rte_malloc("fe_fini", sizeof(int32_t) * (lc->ft.count + 1), 0);

	/* An rte_hash must not change while iterated: collect, then free. */
	while (live && n < lc->ft.count &&
	       (pos = rte_hash_iterate(lc->ft.hash, &key, &data, &iter)) >= 0)
		live[n++] = pos;
	for (uint32_t i = 0; i < n; i++)
		fe_flow_free(lc, &lc->ft.flows[live[i]]);
	rte_free(live);
	fe_tx_flush(lc);
	/* The DELs still waiting get one more try before the channel stops. */
	if (lc->offload && lc->offload->enabled)
		fe_del_backlog_run(lc);
	fe_del_backlog_free(lc);
	rte_free(lc->scratch);
	fe_flow_table_free(&lc->ft);
}
