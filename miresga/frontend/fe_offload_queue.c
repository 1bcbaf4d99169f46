/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Entries the packet path asks the switch for, over the offload channel's
 * ring.  An ADD the ring cannot take is simply not asked for: the flow stays
 * on the front-end, which sees all its packets.  A DEL must never be lost: a
 * switch entry left behind keeps sending the client's packets to a back-end
 * connection that is over (and, once its client reuses the port, to the
 * wrong one).  So a DEL the ring refuses waits in the lcore's backlog and is
 * pushed again, in order, at every turn of the loop before anything new.
 * Each flow has at most one entry, so the backlog never needs more slots
 * than the flow table (plus the flows freed since: it is sized twice that).
 */
#include <rte_malloc.h>

#include "fe_splice.h"

int fe_del_backlog_init(struct fe_lcore *lc)
{
	uint32_t n = 2 * lc->cfg->flow_capacity;

	lc->dels.slots = rte_malloc("fe_dels", sizeof(*lc->dels.slots) * n, 0);
	if (!lc->dels.slots)
		return -1;
	lc->dels.size = n;
	lc->dels.head = lc->dels.count = 0;
	return 0;
}

void fe_del_backlog_free(struct fe_lcore *lc)
{
	rte_free(lc->dels.slots);
	lc->dels.slots = NULL;
}

static int push_del(struct fe_lcore *lc, const struct fe_del *d)
{
	return fe_offload_push(lc->offload, MG_CTL_DEL, &d->key, d->backend, lc->cfg->vip_idx, 0);
}

/* Push waiting DELs, oldest first, while the ring takes them. */
void fe_del_backlog_run(struct fe_lcore *lc)
{
	struct fe_del_backlog *b = &lc->dels;

	while (b->count && push_del(lc, &b->slots[b->head]) == 0) {
		b->head = (b->head + 1) % b->size;
		b->count--;
		lc->stats.offload.queued_del++;
		lc->stats.offload.del_retried++;
	}
}

void fe_offload_queue(struct fe_lcore *lc, struct fe_flow *f, uint8_t op)
{
	struct fe_del d = {.key = f->key, .backend = f->backend};
	struct fe_del_backlog *b = &lc->dels;

	if (!lc->offload || !lc->offload->enabled)
		return;
	if (op == MG_CTL_ADD) {
		if (fe_offload_push(lc->offload, op, &f->key, f->backend, lc->cfg->vip_idx, 0)) {
			lc->stats.offload.ring_full++;
			return;
		}
		lc->stats.offload.queued_add++;
		f->entry = FE_ENTRY_CHANNEL;
		return;
	}
	f->entry = FE_ENTRY_NONE;
	/* Behind DELs that wait already: in order. */
	if (!b->count && push_del(lc, &d) == 0) {
		lc->stats.offload.queued_del++;
		return;
	}
	lc->stats.offload.ring_full++;
	if (b->count == b->size) {
		/* Cannot happen (one entry per flow); counted if it does. */
		lc->stats.offload.del_lost++;
		return;
	}
	b->slots[(b->head + b->count) % b->size] = d;
	b->count++;
	lc->stats.offload.del_deferred++;
}
