/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The packet path's side of the offload channel: an ADD when a flow may be
 * carried by the switch, a DEL when it must not be any more, and the flow's
 * `installed` bit that says which of the two it asked for last.  The channel
 * itself (ring, thread, TCP) is fe_offload.c; when to ask is
 * fe_offload_apply() in fe_splice.h.
 */
#include "fe_splice.h"

void fe_offload_queue(struct fe_lcore *lc, struct fe_flow *f, uint8_t op)
{
	if (!lc->offload || !lc->offload->enabled)
		return;
	if (fe_offload_push(lc->offload, op, &f->key, f->backend, lc->cfg->vip_idx, 0)) {
		lc->stats.offload.ring_full++;
		return;
	}
	if (op == MG_CTL_ADD) {
		lc->stats.offload.queued_add++;
		f->installed = 1;
	} else {
		lc->stats.offload.queued_del++;
		f->installed = 0;
	}
}
