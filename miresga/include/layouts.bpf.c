// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Every struct, enum and constant that Python reads or writes, in one BTF,
 * from which scripts/gen_layouts.py generates the Python modules (`make
 * build` runs it):
 *
 *   struct mg_py_switch   -> switchhost/layouts_gen.py              (miresga.h)
 *   struct mg_py_agent    -> miresga/control/agent_layouts_gen.py   (agent.h)
 *   struct mg_py_l4switch -> switchhost/pipelines/l4switch_layouts_gen.py
 *                                                                   (l4switch.h)
 *
 * A program's own object only has the types its maps and code use, and no
 * enum whose values it only names as constants (its counters, for one), and
 * the control protocol's messages are user space only, so the generator
 * reads this object instead.  Not a program: nothing loads it.  clang emits
 * the BTF of a global variable's type with every member's type, enumerators
 * included, so one variable per module, with a member of each type, is all
 * it takes.
 *
 * What a member of a module's struct becomes in Python:
 *   struct mg_x x;        a ctypes.Structure (host byte order, as in a map)
 *   struct mg_x wire_x;   a struct.Struct in network order (a message on the
 *                         wire; a field named *ip_be is 4 raw bytes)
 *   enum mg_x x;          an enum.IntEnum, and X_MAX if it ends in a __MAX
 *   enum mg_py_*_consts   plain constants: BTF has no macros, so each
 *                         #define Python needs is an enumerator here,
 *                         MG_PY_CONST(prefix, NAME) for the macro prefixNAME
 *                         (enumerator prefix__py__NAME), named NAME in Python
 * Add a member when a header gains something Python reads or writes.
 */
#include "miresga.h"
#include "agent.h"
#include "l4switch.h"

/* Enumerators share one namespace: the prefix keeps agent.h's MAX_PORTS apart
 * from miresga.h's. */
#define MG_PY_CONST(prefix, name) prefix##__py__##name = (prefix##name)

/* ------------------------------------------------------------- miresga.h */

enum mg_py_switch_consts {
	MG_PY_CONST(MG_, FLOW_CAPACITY_DEFAULT),
	MG_PY_CONST(MG_, MAX_BACKENDS),
	MG_PY_CONST(MG_, MAX_FRONTENDS),
	MG_PY_CONST(MG_, FE_SLOTS_DEFAULT),
	MG_PY_CONST(MG_, FE_SLOTS_MAX),
	MG_PY_CONST(MG_, FE_NONE),
	MG_PY_CONST(MG_, MAX_VIPS),
	MG_PY_CONST(MG_, MAX_PORTS),
	MG_PY_CONST(MG_, DSCP_NONE),
	MG_PY_CONST(MG_, DSCP_ADMIT),
	MG_PY_CONST(MG_, DSCP_KNOWN),
	MG_PY_CONST(MG_, DSCP_INSTALL),
	MG_PY_CONST(MG_, DSCP_REMOVE),
	MG_PY_CONST(MG_, DSCP_REMOVE_CTL),
	MG_PY_CONST(MG_, DSCP_MIRESGA),
	MG_PY_CONST(MG_, DSCP_BACKEND),
	MG_PY_CONST(MG_, PORT_FRONTEND),
	MG_PY_CONST(MG_, DP_TICK_SHIFT),
	MG_PY_CONST(MG_, DP_SLOTS_LOG2_MAX),
	MG_PY_CONST(MG_, DP_SLOTS_DEFAULT),
	MG_PY_CONST(MG_, DP_WAYS_DEFAULT),
	MG_PY_CONST(MG_, COOKIE_HASH_MASK),
	MG_PY_CONST(MG_, COOKIE_MSS_SHIFT),
	MG_PY_CONST(MG_, COOKIE_WSCALE_SHIFT),
	MG_PY_CONST(MG_, COOKIE_SACK_BIT),
	MG_PY_CONST(MG_, COOKIE_EPOCH_BIT),
	MG_PY_CONST(MG_, COOKIE_NO_WSCALE),
	MG_PY_CONST(MG_, CTL_MAGIC),
	MG_PY_CONST(MG_, CTL_VERSION),
	MG_PY_CONST(MG_, CTL_MAX_BATCH),
	MG_PY_CONST(MG_, CTL_MAX_BODY),
	MG_PY_CONST(MG_, CTL_PORT_DEFAULT),
	MG_PY_CONST(MG_, CTL_KEY_LEN),
	MG_PY_CONST(MG_, CTL_NONCE_LEN),
	MG_PY_CONST(MG_, CTL_HMAC_LEN),
	MG_PY_CONST(MG_, CTL_MAC_LEN),
	MG_PY_CONST(MG_, CTL_DIR_TO_SERVER),
	MG_PY_CONST(MG_, CTL_DIR_TO_CLIENT),
};

struct mg_py_switch {
	/* the switch's tables and counters */
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
	/* the switch host's control protocol */
	struct mg_ctl_hdr wire_ctl_hdr;
	struct mg_ctl_entry wire_ctl_entry;
	struct mg_ctl_ack wire_ctl_ack;
	struct mg_ctl_key wire_ctl_key;
	struct mg_ctl_liveness wire_ctl_liveness;
	struct mg_ctl_notice wire_ctl_notice;
	enum mg_ctl_type ctl_type;
	enum mg_ctl_op ctl_op;
	enum mg_ctl_notice_what ctl_notice_what;
	enum mg_py_switch_consts consts;
};

struct mg_py_switch mg_py_switch __attribute__((used));

/* ---------------------------------------------------------------- agent.h */

enum mg_py_agent_consts {
	MG_PY_CONST(MG_AGENT_, CONNS_DEFAULT),
	MG_PY_CONST(MG_AGENT_, MAX_PORTS),
	MG_PY_CONST(MG_AGENT_, FIN_IN),
	MG_PY_CONST(MG_AGENT_, FIN_OUT),
	MG_PY_CONST(MG_AGENT_, RST),
	MG_PY_CONST(MG_AGENT_, TS),
};

struct mg_py_agent {
	struct mg_agent_key agent_key;
	struct mg_agent_conn agent_conn;
	struct mg_agent_config agent_config;
	enum mg_agent_state agent_state;
	enum mg_agent_counter agent_counter;
	enum mg_py_agent_consts consts;
};

struct mg_py_agent mg_py_agent __attribute__((used));

/* ------------------------------------------- targets/l4switch/l4switch.h */

enum mg_py_l4switch_consts {
	MG_PY_CONST(L4_, MAGLEV_SIZE_DEFAULT),
	MG_PY_CONST(L4_, CONN_CAPACITY_DEFAULT),
	MG_PY_CONST(L4_, BACKEND_NONE),
	MG_PY_CONST(L4_, CONN_REVERSE),
	MG_PY_CONST(L4_, CONN_FIN_CLIENT),
	MG_PY_CONST(L4_, CONN_FIN_BACKEND),
	MG_PY_CONST(L4_, CONN_RST),
};

struct mg_py_l4switch {
	struct l4_conn_key conn_key;
	struct l4_conn conn;
	struct l4_config config;
	enum l4_counter counter;
	enum mg_py_l4switch_consts consts;
};

struct mg_py_l4switch mg_py_l4switch __attribute__((used));
