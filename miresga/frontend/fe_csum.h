/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Internet checksums for the front-end.
 *
 * The forwarding path only swaps an address and a port, so it patches the
 * existing checksums (RFC 1624) instead of summing the payload again: that
 * keeps a forwarded packet O(header) whatever its size.  Packets the
 * front-end builds itself, and every packet it receives, are summed in full:
 * af_packet hands us whatever the peer's stack wrote, and a corrupted request
 * must not be parsed, so nothing is trusted to a NIC offload.
 *
 * The one's-complement sum does not depend on byte order as long as every
 * word is read the same way, so the helpers take raw (network-order) words.
 */
#ifndef FE_CSUM_H
#define FE_CSUM_H

#include <stdint.h>

#include <rte_ip.h>

static inline uint16_t fe_csum_fold(uint32_t sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').  Returns the new checksum
 * (header fields are packed, so no pointers into them). */
static inline uint16_t fe_csum_replace2(uint16_t csum, uint16_t from, uint16_t to)
{
	uint32_t sum = (uint16_t)~csum;

	sum += (uint16_t)~from;
	sum += to;
	return (uint16_t)~fe_csum_fold(sum);
}

static inline uint16_t fe_csum_replace4(uint16_t csum, uint32_t from, uint32_t to)
{
	uint32_t sum = (uint16_t)~csum;

	sum += (uint16_t)~(from & 0xffff);
	sum += (uint16_t)~(from >> 16);
	sum += to & 0xffff;
	sum += to >> 16;
	return (uint16_t)~fe_csum_fold(sum);
}

/* TCP checksum over the pseudo header and `l4_len` bytes at `l4`. */
static inline uint16_t fe_tcp_csum(const struct rte_ipv4_hdr *ip, const void *l4, uint16_t l4_len)
{
	uint32_t sum = rte_ipv4_phdr_cksum(ip, 0);

	sum += rte_raw_cksum(l4, l4_len);
	return (uint16_t)~fe_csum_fold(sum);
}

/* A segment whose checksum field is right sums to all ones. */
static inline int fe_tcp_csum_ok(const struct rte_ipv4_hdr *ip, const void *l4, uint16_t l4_len)
{
	uint32_t sum = rte_ipv4_phdr_cksum(ip, 0);

	sum += rte_raw_cksum(l4, l4_len);
	return fe_csum_fold(sum) == 0xffff;
}

static inline int fe_ip_csum_ok(const struct rte_ipv4_hdr *ip)
{
	return rte_raw_cksum(ip, rte_ipv4_hdr_len(ip)) == 0xffff;
}

#endif /* FE_CSUM_H */
