/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A bounded, verifier-friendly walk over TCP options, shared by the eBPF
 * programs and usable from plain C (the front-end).
 *
 * The walk runs over a copy of the options in a fixed 64-byte buffer (eBPF:
 * bpf_skb_load_bytes() into the stack), never over packet memory, so every
 * read is an index masked into that buffer and the loop has a constant bound:
 * each step advances by at least one byte and there are at most 40 bytes of
 * options, so 40 steps always suffice.  A list that would "loop" in a naive
 * parser (an option length of 0 or 1) is reported as malformed instead, and
 * so is any other irregularity: a caller that rewrites options must leave a
 * list it cannot read exactly as it came.
 *
 * Offsets in struct mg_tcp_opts are relative to the start of the options,
 * i.e. to TCP header offset 20; MG_OPT_ABSENT marks an option not present.
 */
#ifndef MG_TCP_OPTS_H
#define MG_TCP_OPTS_H

#ifdef __BPF__
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define MG_TCP_OPTS_MAX 40     /* (15 - 5) * 4 */
#define MG_TCP_OPTS_BUF 64     /* power of two >= MG_TCP_OPTS_MAX, for index masking */
#define MG_OPT_ABSENT 0xff

#define MG_TCPOPT_EOL 0
#define MG_TCPOPT_NOP 1
#define MG_TCPOPT_MSS 2
#define MG_TCPOPT_WSCALE 3
#define MG_TCPOPT_SACK_PERM 4
#define MG_TCPOPT_SACK 5
#define MG_TCPOPT_TIMESTAMP 8

enum mg_tcp_opts_status {
	MG_OPTS_OK = 0,
	MG_OPTS_TRUNCATED,      /* an option runs past the end of the header */
	MG_OPTS_BAD_LEN,        /* length byte < 2, or wrong for a known kind */
	MG_OPTS_DUPLICATE,      /* a known option twice: which one would a stack take? */
};

struct mg_tcp_opts {
	__u8 status;            /* enum mg_tcp_opts_status */
	__u8 mss_off;           /* offset of the 2-byte MSS value */
	__u8 wscale_off;        /* offset of the 1-byte shift count */
	__u8 wscale;
	__u8 sack_perm;         /* 1 if SACK-permitted is present */
	__u8 sack_off;          /* offset of the first SACK block (left edge) */
	__u8 sack_blocks;       /* number of 8-byte blocks, 1..4 */
	__u8 timestamps;        /* 1 if the timestamp option is present */
	__u8 ts_off;            /* offset of its TSval (TSecr follows), MG_OPT_ABSENT if none */
	__u16 mss;
};

/*
 * The walk as a step function over a state struct, so that eBPF can drive it
 * with bpf_loop() (the callback is verified once, whatever the option list;
 * an unrolled or bounded C loop over 40 bytes with five optional outputs
 * makes the verifier explore every combination and exceed its budget) and
 * plain C with an ordinary loop, mg_tcp_opts_parse() below.
 */
struct mg_tcp_opts_walk {
	__u8 buf[MG_TCP_OPTS_BUF];  /* the options, copied out of the packet */
	__u32 len;                  /* bytes of options in buf, <= MG_TCP_OPTS_MAX */
	__u32 off;                  /* next byte to look at */
	struct mg_tcp_opts o;       /* the result */
};

static __always_inline void mg_tcp_opts_init(struct mg_tcp_opts_walk *w, __u32 len)
{
	struct mg_tcp_opts *o = &w->o;

	w->len = len > MG_TCP_OPTS_MAX ? MG_TCP_OPTS_MAX : len;
	w->off = 0;
	o->status = MG_OPTS_OK;
	o->mss_off = o->wscale_off = o->sack_off = o->ts_off = MG_OPT_ABSENT;
	o->wscale = o->sack_perm = o->sack_blocks = o->timestamps = 0;
	o->mss = 0;
}

/*
 * Look at one option.  Returns 0 to go on, 1 when the walk is over (end of
 * list, EOL, or an error recorded in w->o.status).  Each call advances by at
 * least one byte, so MG_TCP_OPTS_MAX calls always reach the end.
 */
static __always_inline int mg_tcp_opts_step(struct mg_tcp_opts_walk *w)
{
	struct mg_tcp_opts *o = &w->o;
	__u32 off = w->off, len = w->len;
	__u8 kind, olen;

	if (off >= len || len > MG_TCP_OPTS_MAX)
		return 1;
	kind = w->buf[off & (MG_TCP_OPTS_BUF - 1)];
	if (kind == MG_TCPOPT_EOL)
		return 1;
	if (kind == MG_TCPOPT_NOP) {
		w->off = off + 1;
		return 0;
	}
	if (off + 1 >= len) {
		o->status = MG_OPTS_TRUNCATED;
		return 1;
	}
	olen = w->buf[(off + 1) & (MG_TCP_OPTS_BUF - 1)];
	if (olen < 2) {  /* 0 or 1 would make a naive parser spin */
		o->status = MG_OPTS_BAD_LEN;
		return 1;
	}
	if (off + olen > len) {
		o->status = MG_OPTS_TRUNCATED;
		return 1;
	}
	switch (kind) {
	case MG_TCPOPT_MSS:
		if (olen != 4)
			goto bad_len;
		if (o->mss_off != MG_OPT_ABSENT)
			goto duplicate;
		o->mss_off = off + 2;
		o->mss = ((__u16)w->buf[(off + 2) & (MG_TCP_OPTS_BUF - 1)] << 8) |
			 w->buf[(off + 3) & (MG_TCP_OPTS_BUF - 1)];
		break;
	case MG_TCPOPT_WSCALE:
		if (olen != 3)
			goto bad_len;
		if (o->wscale_off != MG_OPT_ABSENT)
			goto duplicate;
		o->wscale_off = off + 2;
		o->wscale = w->buf[(off + 2) & (MG_TCP_OPTS_BUF - 1)];
		break;
	case MG_TCPOPT_SACK_PERM:
		if (olen != 2)
			goto bad_len;
		o->sack_perm = 1;
		break;
	case MG_TCPOPT_SACK:
		/* 2 + 8n bytes, n = 1..4 (4 fit only without timestamps). */
		if (olen < 10 || ((olen - 2) & 7))
			goto bad_len;
		if (o->sack_off != MG_OPT_ABSENT)
			goto duplicate;
		o->sack_off = off + 2;
		o->sack_blocks = (olen - 2) >> 3;
		break;
	case MG_TCPOPT_TIMESTAMP:
		if (olen != 10)
			goto bad_len;
		if (o->ts_off != MG_OPT_ABSENT)
			goto duplicate;
		o->timestamps = 1;
		o->ts_off = off + 2;
		break;
	default:
		break;  /* unknown kinds are skipped by their length */
	}
	w->off = off + olen;
	return 0;

bad_len:
	o->status = MG_OPTS_BAD_LEN;
	return 1;
duplicate:
	o->status = MG_OPTS_DUPLICATE;
	return 1;
}

#ifdef __BPF__
#include <bpf/bpf_helpers.h>

static long mg_tcp_opts_step_cb(__u32 index, void *ctx)
{
	return mg_tcp_opts_step((struct mg_tcp_opts_walk *)ctx);
}

/* Walk w->buf (filled by the caller, mg_tcp_opts_init() done); returns status. */
static __always_inline int mg_tcp_opts_walk(struct mg_tcp_opts_walk *w)
{
	if (bpf_loop(MG_TCP_OPTS_MAX, mg_tcp_opts_step_cb, w, 0) < 0)
		w->o.status = MG_OPTS_TRUNCATED;
	return w->o.status;
}
#else
/* Walk `len` bytes of options at `opts` (plain C).  Returns the status. */
static inline int mg_tcp_opts_parse(const __u8 *opts, __u32 len, struct mg_tcp_opts *out)
{
	struct mg_tcp_opts_walk w;
	__u32 i;

	mg_tcp_opts_init(&w, len);
	for (i = 0; i < w.len; i++)
		w.buf[i] = opts[i];
	for (i = 0; i < MG_TCP_OPTS_MAX; i++)
		if (mg_tcp_opts_step(&w))
			break;
	*out = w.o;
	return w.o.status;
}
#endif

#endif /* MG_TCP_OPTS_H */
