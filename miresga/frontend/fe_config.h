/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Front-end configuration: every knob in one struct, read once at start.
 *
 * The file is rendered by miresga/control/frontend.py from the service
 * definition (the same one HAProxy and nginx are configured from) plus the
 * testbed's addresses.  One directive per line, `#` starts a comment:
 *
 *   vip 10.10.0.100 80            service address
 *   vip_index 0                   VIP index in the switch's VIP table
 *   vip_wscale 7                  window scale the switch advertises
 *   nexthop_mac 02:00:00:00:00:01 MAC of the switch port (dst of all we send)
 *   backend 0 10.10.1.1 80        back-end index (as in the switch table), address
 *   cluster 0 static round-robin 0 1   index, name, policy, back-end indices
 *   rule cluster=0 offload=1 prefix=/static/ host=img.example
 *   default_cluster 0
 *   control 10.10.9.1 7470        the switch host's control protocol (miresga.h)
 *   control_key /run/fe/ctl.key   its key (hex, mode 0600); required with `control`
 *   stats_socket /run/fe.sock
 *   handoff dataplane             async | confirmed | dataplane (fe_splice.h)
 *   max_header_bytes 8192   request_timeout_ms 10000   ... (see fe_config.c)
 *   filter_period_ms 120000  switch_idle_ms 120000  agent_idle_ms 300000
 *                                 the others' timeouts: checked against idle_timeout_ms
 *
 * Rules are tried in file order; the first whose host (if any) and path
 * prefix match wins, as in common/service.py's Service.route().
 */
#ifndef FE_CONFIG_H
#define FE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "miresga.h"

#define FE_MAX_CLUSTERS 64
#define FE_MAX_RULES 256
#define FE_HOST_MAX 128
#define FE_PREFIX_MAX 256
#define FE_NAME_MAX 33

/* How a flow is handed to the switch (fe_splice.h says what each one does). */
enum fe_handoff {
	FE_HANDOFF_ASYNC,       /* ADD over the channel at join, keep forwarding until it lands */
	FE_HANDOFF_CONFIRMED,   /* ADD at join, hold the request until the switch confirms it */
	FE_HANDOFF_DATAPLANE,   /* INSTALL mark on the handshake ACK, REMOVE marks to delete */
};

enum fe_policy {
	FE_POLICY_ROUND_ROBIN,
	FE_POLICY_LEAST_CONNECTIONS,
	FE_POLICY_HASH,
};

struct fe_backend_cfg {
	uint32_t ip_be;
	uint16_t port_be;
	int16_t cluster;        /* -1 if no cluster lists it */
	uint8_t present;
};

struct fe_cluster_cfg {
	char name[FE_NAME_MAX];
	enum fe_policy policy;
	uint16_t n_backends;
	uint8_t backends[MG_MAX_BACKENDS];
};

struct fe_rule_cfg {
	int16_t cluster;
	uint8_t offload;
	uint16_t host_len;      /* 0: any host */
	uint16_t prefix_len;
	char host[FE_HOST_MAX]; /* lower case, no port */
	char prefix[FE_PREFIX_MAX];
};

struct fe_config {
	/* service */
	uint32_t vip_be;
	uint16_t vip_port_be;
	uint8_t vip_idx;
	uint8_t vip_wscale;
	uint8_t nexthop_mac[6];
	uint8_t has_nexthop;

	uint16_t n_backends;    /* highest index + 1 */
	struct fe_backend_cfg backends[MG_MAX_BACKENDS];
	uint16_t n_clusters;
	struct fe_cluster_cfg clusters[FE_MAX_CLUSTERS];
	uint16_t n_rules;
	struct fe_rule_cfg rules[FE_MAX_RULES];
	int16_t default_cluster; /* -1: unmatched requests get 404 */

	/* the switch host's control protocol; control_port 0 = no switch to offload to */
	char control_host[64];
	uint16_t control_port;
	char control_key[256];      /* path of the key file */
	uint32_t offload_ring_size;

	char stats_socket[108];

	/* limits and timers */
	uint32_t max_header_bytes;
	uint32_t hold_limit_bytes;  /* request bytes held per flow while no back-end is joined */
	/* Held bytes sit in mbufs from the pool the port receives into: all
	 * flows together park at most this share of it, so that clients sending
	 * 1-byte segments cannot starve RX (a flow's own share is bounded by
	 * hold_limit_bytes: small segments are copied together, fe_hold.c). */
	uint32_t hold_pool_percent;
	uint64_t request_timeout_us;
	uint64_t syn_timeout_us;
	uint32_t syn_retries;       /* same SYN again before the next back-end */
	uint64_t grace_us;
	uint64_t idle_timeout_us;
	uint64_t answer_rto_us;
	uint32_t answer_retries;
	uint64_t backend_down_us;
	/* The deployment's other timeouts (0: the file does not state them),
	 * which idle_timeout_us must nest with: checked, not used. */
	uint64_t filter_period_us;
	uint64_t switch_idle_us;
	uint64_t agent_idle_us;

	/* resources */
	uint32_t flow_capacity;
	uint32_t n_mbufs;
	uint32_t idle_sleep_max_us; /* 0: busy poll */
	/* The packet loop not turning for this long takes the front-end out of
	 * the switch's selection until it turns again (fe_offload.h, health). */
	uint64_t watchdog_us;
	/* Ask the switch to carry a flow only once this many response bytes
	 * have passed through us; 0: as soon as the back-end joins. */
	uint32_t offload_after_bytes;
	uint8_t verify_checksums;

	/* the hand-off */
	uint8_t handoff;            /* enum fe_handoff */
	uint8_t require_admit;      /* 0: a switch without marks; any ACK starts a flow */
	uint64_t confirm_timeout_us;  /* confirmed: release the request unconfirmed after this */
	/* A back-end whose bytes are all acknowledged and that sent nothing for
	 * this long has ended its response (a deferred client FIN goes on, a
	 * pipelined request moves to another cluster). */
	uint64_t drain_quiet_us;
};

void fe_config_defaults(struct fe_config *cfg);
/*
 * Every directive with its compiled default, as one JSON object keyed by the
 * directive's name and in the unit the file uses (ms, bytes, ...): what a
 * file that leaves a directive out gets.  null: no default (required, or
 * absent means off); []: a list, empty by default.
 */
void fe_config_print_defaults(FILE *out);
/* Parse `text`; on error returns -1 with "line N: reason" in err. */
int fe_config_parse(struct fe_config *cfg, const char *text, char *err, size_t errlen);
int fe_config_load(struct fe_config *cfg, const char *path, char *err, size_t errlen);

const char *fe_policy_name(enum fe_policy p);
const char *fe_handoff_name(int handoff);

#endif /* FE_CONFIG_H */
