/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include <string.h>

#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include "fe_flow.h"

const char *fe_flow_state_name(int state)
{
	static const char *const names[FE_FS__MAX] = {
		[FE_FS_HEADER] = "header",
		[FE_FS_SYN_SENT] = "syn_sent",
		[FE_FS_CONFIRMING] = "confirming",
		[FE_FS_SPLICED] = "spliced",
		[FE_FS_NEXT_HEADER] = "next_header",
		[FE_FS_DRAIN] = "drain",
		[FE_FS_CLOSING] = "closing",
		[FE_FS_TIME_WAIT] = "time_wait",
		[FE_FS_ANSWERED] = "answered",
	};
	return state >= 0 && state < FE_FS__MAX ? names[state] : "?";
}

/*
 * rte_hash_crc of the 8-byte key, without its 8-byte load: a flow's key sits
 * at a 4-byte boundary inside struct fe_flow, and rte_hash_crc reads it as a
 * uint64_t, which UBSan (rightly) reports as a misaligned access.  Same value.
 */
static uint32_t flow_key_hash(const void *key, uint32_t len, uint32_t init)
{
	uint64_t k;

	RTE_BUILD_BUG_ON(sizeof(struct mg_flow_key) != sizeof(k));
	(void)len;
	memcpy(&k, key, sizeof(k));
	return rte_hash_crc_8byte(k, init);
}

int fe_flow_table_init(struct fe_flow_table *ft, const char *name, uint32_t capacity, int socket)
{
	/* rte_hash wants at least one full bucket; the limit we enforce is ours. */
	uint32_t slots = capacity < 64 ? 64 : capacity;
	struct rte_hash_parameters hp = {
		.name = name,
		.entries = slots,
		.key_len = sizeof(struct mg_flow_key),
		.hash_func = flow_key_hash,
		.socket_id = socket,
		/* Extendable buckets: a full table means `slots` flows, never fewer
		 * because a cuckoo path happened to be too long. */
		.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE,
	};

	memset(ft, 0, sizeof(*ft));
	ft->hash = rte_hash_create(&hp);
	if (!ft->hash)
		return -1;
	/* Positions returned by rte_hash are below `entries`; one spare. */
	ft->flows = rte_zmalloc_socket("fe_flows", sizeof(struct fe_flow) * (slots + 1), 64, socket);
	if (!ft->flows) {
		rte_hash_free(ft->hash);
		return -1;
	}
	ft->slots = slots;
	ft->capacity = capacity;
	for (int t = 0; t < FE_TIMER__MAX; t++)
		TAILQ_INIT(&ft->timers[t]);
	return 0;
}

void fe_flow_table_free(struct fe_flow_table *ft)
{
	rte_hash_free(ft->hash);
	rte_free(ft->flows);
	memset(ft, 0, sizeof(*ft));
}

struct fe_flow *fe_flow_lookup(struct fe_flow_table *ft, const struct mg_flow_key *key)
{
	int32_t pos = rte_hash_lookup(ft->hash, key);

	return pos < 0 ? NULL : &ft->flows[pos];
}

struct fe_flow *fe_flow_create(struct fe_flow_table *ft, const struct mg_flow_key *key,
			       uint8_t state)
{
	struct fe_flow *f;
	int32_t pos;

	if (ft->count >= ft->capacity)
		return NULL;
	pos = rte_hash_add_key(ft->hash, key);
	if (pos < 0 || (uint32_t)pos > ft->slots)
		return NULL;
	f = &ft->flows[pos];
	memset(f, 0, sizeof(*f));
	f->key = *key;
	f->state = state;
	ft->per_state[state]++;
	ft->count++;
	ft->created++;
	return f;
}

void fe_flow_destroy(struct fe_flow_table *ft, struct fe_flow *f)
{
	fe_timer_cancel(ft, f);
	ft->per_state[f->state]--;
	ft->count--;
	ft->freed++;
	rte_hash_del_key(ft->hash, &f->key);
	memset(f, 0, sizeof(*f));
}
