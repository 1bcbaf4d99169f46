/* Prints the size and field offsets of the agent's shared layouts and the
 * values of its enums as JSON, so that tests/test_agent_layout.py can hold
 * the Python mirror in miresga/control/agent.py to miresga/agent/agent.h.
 * (The same test also reads the BTF of build/bpf/agent.bpf.o, the layout the
 * kernel actually uses; this probe is what covers the enums.) */
#include <stddef.h>
#include <stdio.h>

#include "agent.h"

#define S(t) printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first++ ? "}}, " : "", #t, sizeof(struct t)); fsep = 0
#define F(t, f) printf("%s\"%s\": %zu", fsep++ ? ", " : "", #f, offsetof(struct t, f))
#define E(n) printf("%s\"%s\": %d", esep++ ? ", " : "", #n, n)

int main(void)
{
	int first = 0, fsep = 0, esep = 0;

	printf("{\"structs\": {");
	S(mg_agent_key); F(mg_agent_key, client_ip_be); F(mg_agent_key, client_port_be);
	F(mg_agent_key, local_port_be);
	S(mg_agent_conn); F(mg_agent_conn, switch_isn); F(mg_agent_conn, client_isn);
	F(mg_agent_conn, backend_isn); F(mg_agent_conn, delta); F(mg_agent_conn, last_seen_ns);
	F(mg_agent_conn, close_ns); F(mg_agent_conn, state); F(mg_agent_conn, flags);
	F(mg_agent_conn, client_wscale); F(mg_agent_conn, backend_wscale);
	F(mg_agent_conn, egress_shift); F(mg_agent_conn, ingress_shift);
	F(mg_agent_conn, ts_base); F(mg_agent_conn, ts_delta);
	S(mg_agent_config); F(mg_agent_config, idle_timeout_ns); F(mg_agent_config, close_grace_ns);
	F(mg_agent_config, wscale); F(mg_agent_config, enabled); F(mg_agent_config, sweep_ns);
	F(mg_agent_config, generation);
	printf("}}}, \"enums\": {");
	E(MG_AGENT_SYN_SEEN); E(MG_AGENT_ESTABLISHED); E(MG_AGENT_CLOSING);
	E(MG_AGENT_FIN_IN); E(MG_AGENT_FIN_OUT); E(MG_AGENT_RST); E(MG_AGENT_TS);
	E(MG_AG_IN_PKTS); E(MG_AG_OUT_PKTS); E(MG_AG_FOREIGN); E(MG_AG_TRUNCATED);
	E(MG_AG_NO_CONFIG); E(MG_AG_CONN_NEW); E(MG_AG_CONN_REUSE); E(MG_AG_SYN_RETRANS);
	E(MG_AG_SYN_PLAIN); E(MG_AG_STALE_REMOVED); E(MG_AG_SYNACK); E(MG_AG_REWRITE_IN);
	E(MG_AG_REWRITE_OUT); E(MG_AG_SACK_REWRITE); E(MG_AG_SACK_BLOCKS); E(MG_AG_WINDOW_FIX);
	E(MG_AG_WINDOW_CAPPED); E(MG_AG_WSCALE_OPT_FIX); E(MG_AG_CLOSE_RST); E(MG_AG_CLOSE_FIN);
	E(MG_AG_CLEANUP_CLOSED); E(MG_AG_CLEANUP_IDLE); E(MG_AG_MISS_IN); E(MG_AG_MISS_OUT);
	E(MG_AG_NOT_ESTABLISHED); E(MG_AG_BAD_OPTIONS); E(MG_AG_MAP_FAIL);
	E(MG_AG_SWEEPS); E(MG_AG_SWEEP_ARM_FAIL); E(MG_AG_TS_REWRITE); E(MG_AG_MARKED);
	E(MG_AG_SYN_PLAIN_KEPT); E(MG_AG_SYN_LIVE_KEPT); E(MG_AG_SYNACK_FOREIGN); E(MG_AG__MAX);
	E(MG_AGENT_CONNS_DEFAULT); E(MG_AGENT_MAX_PORTS); E(MG_COOKIE_NO_WSCALE);
	printf("}}\n");
	return 0;
}
