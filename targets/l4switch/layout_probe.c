/* Prints the size and field offsets of l4switch.h's layouts, its constants
 * and flow hashes of fixed inputs as JSON, so that tests/test_l4switch.py can
 * hold switchhost/pipelines/l4switch_layouts.py to the C header. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>

#include "l4switch.h"

#define S(t) printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first++ ? "}}, " : "", #t, sizeof(struct t)); fsep = 0
#define F(t, f) printf("%s\"%s\": %zu", fsep++ ? ", " : "", #f, offsetof(struct t, f))

int main(void)
{
	int first = 0, fsep = 0;

	printf("{\"structs\": {");
	S(l4_conn_key); F(l4_conn_key, client_ip_be); F(l4_conn_key, peer_ip_be);
	F(l4_conn_key, client_port_be); F(l4_conn_key, peer_port_be);
	S(l4_conn); F(l4_conn, idx); F(l4_conn, flags); F(l4_conn, last_seen_s);
	S(l4_config); F(l4_config, now_s); F(l4_config, maglev_size); F(l4_config, vip_capacity);
	F(l4_config, maglev_gen); F(l4_config, hash_seed);
	printf("}}}, \"constants\": {\"L4__MAX\": %d, \"L4_MAGLEV_SIZE_DEFAULT\": %d, "
	       "\"L4_CONN_CAPACITY_DEFAULT\": %d, \"L4_BACKEND_NONE\": %u, \"L4_CONN_REVERSE\": %u, "
	       "\"L4_CONN_FIN_CLIENT\": %u, \"L4_CONN_FIN_BACKEND\": %u, \"L4_CONN_RST\": %u}",
	       L4__MAX, L4_MAGLEV_SIZE_DEFAULT, L4_CONN_CAPACITY_DEFAULT, L4_BACKEND_NONE,
	       L4_CONN_REVERSE, L4_CONN_FIN_CLIENT, L4_CONN_FIN_BACKEND, L4_CONN_RST);

	/* Flow hashes of fixed inputs, so the Python mirror is held to C's. */
	printf(", \"flow_hash\": [");
	for (int i = 0; i < 4; i++)
		printf("%s{\"seed\": %u, \"client\": \"10.10.1.2\", \"client_port\": %d, "
		       "\"vip\": \"10.10.0.100\", \"vip_port\": 80, \"hash\": %u}",
		       i ? ", " : "", 0x9e3779b9u * i, 40000 + i,
		       l4_flow_hash(0x9e3779b9u * i, inet_addr("10.10.1.2"), htons(40000 + i),
				    inet_addr("10.10.0.100"), htons(80)));
	printf("]}\n");
	return 0;
}
