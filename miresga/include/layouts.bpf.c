// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Every struct and enum that Python mirrors, in one BTF: the switch's maps
 * and counters (miresga.h), the control protocol's messages (miresga.h: user
 * space only, so no program's BTF has them), the agent's (agent.h) and the
 * l4switch baseline's (l4switch.h).  A program's own object only has the
 * types its maps and code use, and no enum whose values it only names as
 * constants (its counters, for one), so a generator of the Python layouts
 * reads this object instead:
 *
 *   bpftool -j btf dump file build/bpf/layouts.bpf.o
 *
 * Not a program: nothing loads it.  clang emits the BTF of a global
 * variable's type with every member's type, enumerators included, so one
 * variable with a member of each type is all it takes.  Add a member here
 * when a header gains a type that Python mirrors.
 */
#include "miresga.h"
#include "agent.h"
#include "l4switch.h"

struct mg_layouts {
	/* miresga.h: the switch's tables and counters */
	struct mg_vip_key vip_key;
	struct mg_vip vip;
	struct mg_flow_key flow_key;
	struct mg_flow flow;
	struct mg_backend_key backend_key;
	struct mg_backend backend;
	struct mg_frontend frontend;
	struct mg_port port;
	struct mg_dp_slot dp_slot;
	struct mg_fe_slot fe_slot;
	struct mg_cookie_key cookie_key;
	struct mg_switch_config switch_config;
	enum mg_switch_counter switch_counter;
	/* miresga.h: the switch host's control protocol */
	struct mg_ctl_hdr ctl_hdr;
	struct mg_ctl_entry ctl_entry;
	struct mg_ctl_ack ctl_ack;
	struct mg_ctl_key ctl_key;
	struct mg_ctl_liveness ctl_liveness;
	enum mg_ctl_type ctl_type;
	enum mg_ctl_op ctl_op;
	/* agent.h */
	struct mg_agent_key agent_key;
	struct mg_agent_conn agent_conn;
	struct mg_agent_config agent_config;
	enum mg_agent_state agent_state;
	enum mg_agent_counter agent_counter;
	/* targets/l4switch/l4switch.h */
	struct l4_conn_key l4_conn_key;
	struct l4_conn l4_conn;
	struct l4_config l4_config;
	enum l4_counter l4_counter;
};

struct mg_layouts mg_layouts __attribute__((used));
