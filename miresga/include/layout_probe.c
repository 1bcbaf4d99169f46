/* Prints the size and field offsets of every shared layout as JSON, so that
 * tests/test_layouts.py can hold switchhost/layouts.py to the C header. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>

#include "miresga.h"

#define S(t) printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first++ ? "}}, " : "", #t, sizeof(struct t)); fsep = 0
#define F(t, f) printf("%s\"%s\": %zu", fsep++ ? ", " : "", #f, offsetof(struct t, f))

/* The switch validates what it made: cookie_check() of that cookie. */
static int cookie_zero_check(const struct mg_cookie_key *key)
{
	struct mg_switch_config cfg = {.keys = {*key, *key}, .epoch = 2};
	__u32 c = mg_cookie_make(key, inet_addr("10.10.1.2"), inet_addr("10.10.0.100"),
				 htons(40000), htons(80), 13672851, 2, mg_cookie_low_byte(0, 0, 0, 2));

	return mg_cookie_check(&cfg, inet_addr("10.10.1.2"), inet_addr("10.10.0.100"),
			       htons(40000), htons(80), 13672851, c);
}

int main(void)
{
	int first = 0, fsep = 0;

	printf("{");
	S(mg_vip_key); F(mg_vip_key, ip_be); F(mg_vip_key, port_be);
	S(mg_vip); F(mg_vip, vip_idx);
	S(mg_flow_key); F(mg_flow_key, client_ip_be); F(mg_flow_key, client_port_be);
	S(mg_flow); F(mg_flow, backend_idx); F(mg_flow, vip_idx); F(mg_flow, last_seen_s);
	S(mg_backend_key); F(mg_backend_key, ip_be); F(mg_backend_key, port_be);
	S(mg_backend); F(mg_backend, ip_be); F(mg_backend, port_be); F(mg_backend, mac);
	F(mg_backend, src_mac); F(mg_backend, ifindex);
	S(mg_frontend); F(mg_frontend, ip_be); F(mg_frontend, mac); F(mg_frontend, src_mac);
	F(mg_frontend, ifindex);
	S(mg_port); F(mg_port, flags);
	S(mg_fe_slot); F(mg_fe_slot, active); F(mg_fe_slot, stable);
	S(mg_dp_slot); F(mg_dp_slot, client_ip_be); F(mg_dp_slot, client_port_be);
	F(mg_dp_slot, backend_idx); F(mg_dp_slot, vip_idx); F(mg_dp_slot, last_seen);
	S(mg_cookie_key); F(mg_cookie_key, k0); F(mg_cookie_key, k1);
	S(mg_switch_config); F(mg_switch_config, keys); F(mg_switch_config, epoch);
	F(mg_switch_config, fe_slots); F(mg_switch_config, mss); F(mg_switch_config, window);
	F(mg_switch_config, wscale); F(mg_switch_config, now_s);
	F(mg_switch_config, filter_key); F(mg_switch_config, filter_gen);
	F(mg_switch_config, filter_bits_log2); F(mg_switch_config, dp_slots_log2);
	F(mg_switch_config, dp_ways); F(mg_switch_config, dp_idle_ticks); F(mg_switch_config, dp_seed);
	S(mg_ctl_hdr); F(mg_ctl_hdr, magic); F(mg_ctl_hdr, version); F(mg_ctl_hdr, type);
	F(mg_ctl_hdr, count); F(mg_ctl_hdr, seq);
	S(mg_ctl_entry); F(mg_ctl_entry, client_ip_be); F(mg_ctl_entry, client_port_be);
	F(mg_ctl_entry, op); F(mg_ctl_entry, backend_idx); F(mg_ctl_entry, vip_idx);
	S(mg_ctl_ack); F(mg_ctl_ack, seq); F(mg_ctl_ack, added); F(mg_ctl_ack, deleted);
	F(mg_ctl_ack, refused);
	S(mg_ctl_key); F(mg_ctl_key, client_ip_be); F(mg_ctl_key, client_port_be);
	F(mg_ctl_key, vip_idx);
	S(mg_ctl_liveness); F(mg_ctl_liveness, present); F(mg_ctl_liveness, backend_idx);
	F(mg_ctl_liveness, idle_ms);
	printf("}}, \"MG_SW__MAX\": %d, \"MG_FLOW_CAPACITY_DEFAULT\": %d", MG_SW__MAX,
	       MG_FLOW_CAPACITY_DEFAULT);
	printf(", \"ctl\": {\"MAGIC\": %u, \"VERSION\": %d, \"MAX_BATCH\": %d, \"MAX_BODY\": %d, "
	       "\"PORT_DEFAULT\": %d, \"KEY_LEN\": %d, \"NONCE_LEN\": %d, \"HMAC_LEN\": %d, "
	       "\"MAC_LEN\": %d, \"DIR_TO_SERVER\": %d, \"DIR_TO_CLIENT\": %d}",
	       MG_CTL_MAGIC, MG_CTL_VERSION, MG_CTL_MAX_BATCH, MG_CTL_MAX_BODY, MG_CTL_PORT_DEFAULT,
	       MG_CTL_KEY_LEN, MG_CTL_NONCE_LEN, MG_CTL_HMAC_LEN, MG_CTL_MAC_LEN,
	       MG_CTL_DIR_TO_SERVER, MG_CTL_DIR_TO_CLIENT);
	/* mg_ctl_body_len over every type (and one past) and the counts at its edges. */
	printf(", \"ctl_body_len\": [");
	{
		static const __u32 counts[] = {0, 1, 2, 31, 32, 33, 511, 512, 513, 65535};
		const char *sep = "";

		for (int type = 0; type <= MG_CTL_AUTH_OK + 1; type++)
			for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
				printf("%s[%d, %u, %ld]", sep, type, counts[i],
				       mg_ctl_body_len((__u8)type, counts[i]));
				sep = ", ";
			}
	}
	printf("]");

	/* A cookie for fixed inputs, so the Python mirror's hash is held to C's. */
	struct mg_cookie_key key = {0x03020100, 0x07060504};
	__u32 low = mg_cookie_low_byte(mg_mss_class(1460), 7, 1, 5);
	printf(", \"cookie\": {\"low\": %u, \"value\": %u}", low,
	       mg_cookie_make(&key, inet_addr("10.10.1.2"), inet_addr("10.10.0.100"), htons(40000),
			      htons(80), 12345, 5, low));
	/* The data-plane table's hash for fixed inputs, both ways. */
	printf(", \"dp_hash\": [%u, %u]",
	       mg_dp_hash(&key, inet_addr("10.10.1.2"), htons(40000), 0),
	       mg_dp_hash(&key, inet_addr("10.10.1.2"), htons(40000), 1));
	printf(", \"dscp\": {\"none\": %d, \"admit\": %d, \"known\": %d, \"install\": %d, "
	       "\"remove\": %d, \"remove_ctl\": %d, \"miresga\": %d}",
	       MG_DSCP_NONE, MG_DSCP_ADMIT, MG_DSCP_KNOWN, MG_DSCP_INSTALL, MG_DSCP_REMOVE,
	       MG_DSCP_REMOVE_CTL, MG_DSCP_MIRESGA);
	printf(", \"MG_DP_TICK_SHIFT\": %d, \"MG_MAX_PORTS\": %d, \"MG_DP_SLOTS_LOG2_MAX\": %d, "
	       "\"MG_DP_SLOTS_DEFAULT\": %d, \"MG_DP_WAYS_DEFAULT\": %d",
	       MG_DP_TICK_SHIFT, MG_MAX_PORTS, MG_DP_SLOTS_LOG2_MAX, MG_DP_SLOTS_DEFAULT,
	       MG_DP_WAYS_DEFAULT);
	printf(", \"MG_FE_SLOTS_DEFAULT\": %d, \"MG_FE_SLOTS_MAX\": %d, \"MG_FE_NONE\": %d",
	       MG_FE_SLOTS_DEFAULT, MG_FE_SLOTS_MAX, MG_FE_NONE);
	/* Inputs whose hash bits are all zero with a zero low byte (MSS class
	 * 0, window scale 0, no SACK, even epoch): the cookie would be 0. */
	printf(", \"cookie_zero_hash\": {\"isn\": 13672851, \"value\": %u, \"check\": %d}}\n",
	       mg_cookie_make(&key, inet_addr("10.10.1.2"), inet_addr("10.10.0.100"), htons(40000),
			      htons(80), 13672851, 2, mg_cookie_low_byte(0, 0, 0, 2)),
	       cookie_zero_check(&key));
	return 0;
}
