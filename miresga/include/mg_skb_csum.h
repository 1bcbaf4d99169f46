/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Rewriting TCP header fields of an skb (tc programs) with an incremental
 * checksum update that is right for every skb->ip_summed state.
 *
 * Why bpf_l4_csum_replace() and not arithmetic on the checksum field: on
 * transmit, TCP hands down CHECKSUM_PARTIAL skbs whose check field holds only
 * the folded pseudo-header sum; the NIC (or skb_checksum_help() after the
 * qdisc, when offload is off) sums the header and payload later.  Changing a
 * header field then needs *no* change to the check field, and changing it
 * anyway corrupts the final checksum.  The kernel helper knows this
 * (inet_proto_csum_replace4 skips the field for CHECKSUM_PARTIAL unless the
 * change is in the pseudo header) and, on receive, keeps CHECKSUM_COMPLETE
 * skbs consistent: a field change plus the matching check change leaves the
 * one's-complement sum of the segment, and so skb->csum, unchanged.
 *
 * Alignment: the Internet checksum sums 16-bit words counted from the start
 * of the TCP header.  A field at an odd offset (a SACK block after a single
 * NOP, a window-scale shift byte) straddles words, and the helper's
 * "from/to" arguments assume word alignment.  A 32-bit value b0 b1 b2 b3 at
 * an odd offset contributes b0 + b1b2 + b3<<8, which is exactly what the
 * aligned value b3 b0 b1 b2 (the original rotated right by 8) contributes,
 * so odd offsets pass rotated values.  For one byte, the other byte of its
 * word is the same before and after and cancels, so it is passed as zero.
 */
#ifndef MG_SKB_CSUM_H
#define MG_SKB_CSUM_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The checksum's offset in the TCP header (mg_pkt.h's MG_TCP_CSUM_OFF is the
 * same field's offset in a frame whose IPv4 header has no options). */
#define MG_TCPH_CSUM_OFF 16

static __always_inline __u32 mg_ror8(__u32 v)
{
	return (v >> 8) | (v << 24);
}

/*
 * Store the host-order 32-bit value `to` (was `from`) at TCP header offset
 * `field_off` and fix the TCP checksum.  `l4_off` is the TCP header's offset
 * from the start of the frame.  Returns 0 or a negative errno.
 */
static __always_inline int mg_tcp_store32(struct __sk_buff *skb, __u32 l4_off, __u32 field_off,
					  __u32 from, __u32 to)
{
	__be32 val = bpf_htonl(to);
	int rc;

	if (from == to)
		return 0;
	rc = bpf_skb_store_bytes(skb, l4_off + field_off, &val, sizeof(val), 0);
	if (rc)
		return rc;
	if (field_off & 1) {
		from = mg_ror8(from);
		to = mg_ror8(to);
	}
	return bpf_l4_csum_replace(skb, l4_off + MG_TCPH_CSUM_OFF, bpf_htonl(from), bpf_htonl(to),
				   sizeof(__u32));
}

/* Same for a 16-bit value at an even offset (the window field). */
static __always_inline int mg_tcp_store16(struct __sk_buff *skb, __u32 l4_off, __u32 field_off,
					  __u16 from, __u16 to)
{
	__be16 val = bpf_htons(to);
	int rc;

	if (from == to)
		return 0;
	if (field_off & 1)
		return -22; /* -EINVAL: no 16-bit field of TCP's is unaligned */
	rc = bpf_skb_store_bytes(skb, l4_off + field_off, &val, sizeof(val), 0);
	if (rc)
		return rc;
	return bpf_l4_csum_replace(skb, l4_off + MG_TCPH_CSUM_OFF, bpf_htons(from), bpf_htons(to),
				   sizeof(__u16));
}

/* Same for one byte at any offset (an option's value). */
static __always_inline int mg_tcp_store8(struct __sk_buff *skb, __u32 l4_off, __u32 field_off,
					 __u8 from, __u8 to)
{
	__u16 wfrom, wto;
	int rc;

	if (from == to)
		return 0;
	rc = bpf_skb_store_bytes(skb, l4_off + field_off, &to, sizeof(to), 0);
	if (rc)
		return rc;
	/* Even offset: high byte of its word.  Odd: low byte. */
	wfrom = (field_off & 1) ? from : (__u16)from << 8;
	wto = (field_off & 1) ? to : (__u16)to << 8;
	return bpf_l4_csum_replace(skb, l4_off + MG_TCPH_CSUM_OFF, bpf_htons(wfrom), bpf_htons(wto),
				   sizeof(__u16));
}

#endif /* MG_SKB_CSUM_H */
