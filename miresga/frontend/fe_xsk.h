/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The af_xdp port's steering map, shared by its XDP program (fe_xsk.bpf.c)
 * and the front-end, which fills it once the port is up (fe_port.c).
 *
 * Byte order: fields named *_be are network order.
 */
#ifndef FE_XSK_H
#define FE_XSK_H

#include <linux/types.h>

#define FE_XSK_STEER_MAP "fe_xsk_steer"
/* the VIP and the back-ends (at most MG_MAX_BACKENDS, 256) */
#define FE_XSK_STEER_MAX 512

/* An endpoint the front-end serves or talks to. */
struct fe_xsk_key {
	__be32 addr_be;
	__be16 port_be;
	__u16 pad;
};

/* What a frame must have to be the front-end's: the key as its destination
 * (the VIP: client packets) or as its source (a back-end). */
enum fe_xsk_match {
	FE_XSK_TO = 1,
	FE_XSK_FROM = 2,
};

#endif /* FE_XSK_H */
