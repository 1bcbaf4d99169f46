/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Layouts shared by every Miresga component: the switch pipeline (eBPF), the
 * back-end agent (eBPF), the front-end (DPDK, user space) and, through
 * switchhost/layouts.py, the Python control plane.  Anything that crosses
 * a component boundary (a map the control plane writes, a message of the
 * switch host's control protocol, the bits of the SYN cookie) is defined here once.
 *
 * Byte order: fields named *_be are network order, everything else is host
 * order.  Structs are padded by hand so that C, eBPF and ctypes agree without
 * relying on compiler packing rules.  Python's copies of the structs, enums
 * and constants are generated from this header's BTF (layouts.bpf.c,
 * scripts/gen_layouts.py): add what Python needs there.
 */
#ifndef MIRESGA_H
#define MIRESGA_H

#ifdef __BPF__
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef uint16_t __be16;
typedef uint32_t __be32;
#endif

/*
 * Helpers below are forced inline in eBPF: a BPF function call takes at most
 * five arguments (mg_halfsiphash5 has six) and the verifier is simplest with
 * one flat program.
 */
#ifdef __BPF__
#define MG_INLINE static inline __attribute__((always_inline))
#else
#define MG_INLINE static inline
#endif

/* ------------------------------------------------------------------ sizes */

/* The prototype's merged flow table: 143,360 entries on one Tofino pipe. */
#define MG_FLOW_CAPACITY_DEFAULT 143360
/* The back-end index is 8 bits wide: this is what keeps an entry small. */
#define MG_MAX_BACKENDS 256
#define MG_MAX_FRONTENDS 16
/* The front-end selection table: a prime number of slots (Maglev).  1021
 * slots keep the table's own imbalance under 16/1021 (1.6%) of a share for
 * up to 16 front-ends, in 2 x 4 bits per slot. */
#define MG_FE_SLOTS_DEFAULT 1021
#define MG_FE_SLOTS_MAX 65537
/* A selection slot naming no front-end. */
#define MG_FE_NONE 0xffu
#define MG_MAX_VIPS 16
/* Switch ports the port table can describe (a Tofino has 64 to 512). */
#define MG_MAX_PORTS 256

/* ------------------------------------------------------------------ marks */

/*
 * Marks: how the switch S, the front-ends F and the back-end agents A talk
 * in the data plane.  A mark is a value of the 6-bit DSCP field of the IPv4
 * header; the two ECN bits are never touched.
 *
 * Why DSCP: every IPv4 packet has the field, so a mark rides on a packet
 * that is sent anyway (F's handshake ACK, A's response segments) and needs
 * no packet of its own; writing it changes one 16-bit word covered only by
 * the IP header checksum (an incremental update, no TCP checksum, no
 * CHECKSUM_PARTIAL subtleties); nothing grows, so no MTU or TSO trouble and
 * no option a middlebox might strip; and a switch's parser has it in a
 * fixed place.  The values are from RFC 2474's pool 2 (xxxx11, "for
 * experimental or local use"), so no standard code point (CS*, AF*, EF, LE)
 * is taken, and the switch can clear its own marks without touching anyone
 * else's DSCP.
 *
 * A mark is trusted only where it cannot be forged:
 *   F -> S  INSTALL, REMOVE, REMOVE_CTL: only from a front-end port (the
 *           switch's port table says which ports are); from any other port
 *           the mark is cleared and counted.
 *   S -> F  ADMIT or KNOWN: set by the switch on every client packet it
 *           hands a front-end, BACKEND on every back-end packet it hands
 *           one (its agent's mark, on its own port), so F can believe the
 *           field: a client reaches F's link only through S, and S clears
 *           every mark it did not set there.
 *   A -> S  MIRESGA: a back-end's packet is Miresga's only with this mark
 *           and only on that back-end's own switch port.
 * No packet leaves the switch carrying a mark the switch did not set there.
 */
#define MG_DSCP_NONE 0x00
/* S -> F: this client packet carried a valid cookie (seq - 1 = c and
 * ack - 1 = s check out): the proof F creates flow state from. */
#define MG_DSCP_ADMIT 0x03
/* S -> F: admitted by a flow entry or the seen filter: F may hold state for
 * it, but the packet proves nothing. */
#define MG_DSCP_KNOWN 0x07
/* F -> S: "carry (client IP, client port) -> the back-end this packet is
 * addressed to from now on"; the VIP index is in the IP ID field. */
#define MG_DSCP_INSTALL 0x0b
/* F -> S: "forget the data-plane entry of this packet's (client IP, client
 * port)"; the packet itself goes on to its destination. */
#define MG_DSCP_REMOVE 0x0f
/* F -> S: REMOVE on a packet sent for that alone: the switch drops it after
 * acting. */
#define MG_DSCP_REMOVE_CTL 0x13
/* A -> S: a packet of a connection the agent has an entry for. */
#define MG_DSCP_MIRESGA 0x17
/* S -> F: a back-end's packet that carried MIRESGA on that back-end's own
 * port: F may answer it in the client's name (a reset toward the client of a
 * connection no front-end holds), which it must never do for a packet anyone
 * else could have sent. */
#define MG_DSCP_BACKEND 0x1b

#define MG_DSCP_MARKS                                                              \
	((1ull << MG_DSCP_ADMIT) | (1ull << MG_DSCP_KNOWN) | (1ull << MG_DSCP_INSTALL) | \
	 (1ull << MG_DSCP_REMOVE) | (1ull << MG_DSCP_REMOVE_CTL) | (1ull << MG_DSCP_MIRESGA) | \
	 (1ull << MG_DSCP_BACKEND))

MG_INLINE __u8 mg_tos_dscp(__u8 tos)
{
	return tos >> 2;
}

/* The TOS byte with its DSCP replaced and its ECN bits kept. */
MG_INLINE __u8 mg_tos_with_dscp(__u8 tos, __u8 dscp)
{
	return (__u8)((dscp << 2) | (tos & 3));
}

/* Is this DSCP one of Miresga's marks? */
MG_INLINE int mg_dscp_is_mark(__u8 dscp)
{
	return dscp < 64 && ((MG_DSCP_MARKS >> dscp) & 1);
}

/* ------------------------------------------------------------ switch maps */

/* VIP table: (VIP address, service port) -> VIP index. */
struct mg_vip_key {
	__be32 ip_be;
	__be16 port_be;
	__u16 _pad;
};

struct mg_vip {
	__u8 vip_idx;
	__u8 _pad[3];
};

/*
 * Merged flow table.  One entry serves both directions of a connection:
 * client->VIP packets match on (source IP, source port), back-end->client
 * packets on (destination IP, destination port).  The key deliberately omits
 * the VIP and back-end addresses; see miresga/control/memory_model.py.
 */
struct mg_flow_key {
	__be32 client_ip_be;
	__be16 client_port_be;
	__u16 _pad;
};

struct mg_flow {
	__u8 backend_idx;
	__u8 vip_idx;
	__u16 _pad;
	/* Coarse seconds of the last packet the switch moved; the control plane
	 * ages entries on it (a Tofino table's idle timeout does the same). */
	__u32 last_seen_s;
};

/*
 * Back-end address table: (back-end IP, service port) -> back-end index.  It
 * recognises packets *from* a back-end (the reverse direction); the value is
 * a __u32 index into the back-end table.
 */
struct mg_backend_key {
	__be32 ip_be;
	__be16 port_be;
	__u16 _pad;
};

/* Back-end table: index -> where to send and how to rewrite. */
struct mg_backend {
	__be32 ip_be;
	__be16 port_be;
	__u8 mac[6];        /* next-hop MAC (the back-end's own on one L2 hop) */
	__u8 src_mac[6];    /* MAC of the switch port the packet leaves by */
	__u32 ifindex;      /* egress port */
	__u32 _pad;
};

/* Front-end table: front-end index -> its port. */
struct mg_frontend {
	__be32 ip_be;
	__u8 mac[6];
	__u8 src_mac[6];
	__u32 ifindex;
};

/*
 * Front-end selection table: slot hash(client IP, client port) % fe_slots ->
 * the front-end that serves the client.  Filled by the control plane from a
 * Maglev table (switchhost/pipelines/maglev.py), so that a front-end coming
 * or going moves only its own share of clients.  Two columns (switch.bpf.c, "front-end
 * selection"): `active` over the front-ends in service, for new connections;
 * `stable` over those plus the draining ones, for the rest.  Equal in every
 * slot unless a front-end is draining.  MG_FE_NONE: no front-end.
 */
struct mg_fe_slot {
	__u8 active;
	__u8 stable;
	__u8 _pad[2];
};

/* Port table: switch port (ifindex) -> what hangs off it, as a Tofino's
 * port table gives per-port metadata to every packet. */
#define MG_PORT_FRONTEND 0x1u   /* a front-end: its F -> S marks are trusted */

struct mg_port {
	__u32 flags;
};

/*
 * The data-plane table (hand-off mode `dataplane`): register arrays the
 * pipeline itself writes, from INSTALL marks, and clears, from REMOVE marks.
 * One slot per (way, hash of client IP and port); see switch.bpf.c,
 * "data-plane table", for the semantics and a Tofino's layout.
 *
 * The first 8 bytes (key and value) are read and written as one 64-bit word,
 * so a reader never sees one flow's key with another's back-end.  A slot is
 * empty if its client IP is 0 or its last_seen is 0, and counts as empty
 * once last_seen is dp_idle_ticks old (lazy aging).
 */
struct mg_dp_slot {
	__be32 client_ip_be;
	__be16 client_port_be;
	__u8 backend_idx;
	__u8 vip_idx;
	/* Data-plane clock, bpf_ktime_get_ns() >> MG_DP_TICK_SHIFT, of the
	 * install or the last packet moved; 0: empty. */
	__u32 last_seen;
	__u32 _pad;
};

/* One tick of the data-plane table's clock: 2^20 ns, about 1.05 ms. */
#define MG_DP_TICK_SHIFT 20
/* At most 2^24 slots per way. */
#define MG_DP_SLOTS_LOG2_MAX 24
/* The data-plane table's default size: 2 ways of 65,536 slots. */
#define MG_DP_SLOTS_DEFAULT (1 << 17)
#define MG_DP_WAYS_DEFAULT 2

/* One HalfSipHash key (64 bits). */
struct mg_cookie_key {
	__u32 k0;
	__u32 k1;
};

/*
 * Switch configuration, one element of an array map, written by the control
 * plane.  Secrets rotate: keys[epoch & 1] is current, keys[(epoch - 1) & 1]
 * the previous one, so a cookie is valid for one to two epochs.
 */
struct mg_switch_config {
	struct mg_cookie_key keys[2];
	__u32 epoch;
	__u32 fe_slots;     /* slots of the front-end selection table; 0: no front-end */
	__u16 mss;          /* MSS the switch advertises in its SYN-ACK */
	__u16 window;       /* unscaled window of the SYN-ACK */
	__u8 wscale;        /* window scale W the switch advertises */
	__u8 _pad[3];
	__u32 now_s;        /* coarse clock for flow aging, written by control */
	/*
	 * Seen-connection filter (switch only): two generations of a Bloom
	 * filter of connections whose cookie the switch has validated, so that
	 * their later packets without a flow entry are not taken for forgeries.
	 * Generation (filter_gen & 1) is current; the control plane clears the
	 * other one and bumps filter_gen every period.  filter_bits_log2 = 0
	 * disables the filter (every packet without an entry needs a cookie).
	 */
	struct mg_cookie_key filter_key;
	__u32 filter_gen;
	__u32 filter_bits_log2; /* bits per generation = 1 << this, 6..30 */
	/*
	 * The data-plane table: dp_ways (1 or 2) ways of 1 << dp_slots_log2
	 * slots each; dp_slots_log2 = 0: no table (INSTALL marks are refused).
	 * Way w's index is dp_hash(w) (switch.bpf.c), seeded with dp_seed.k0
	 * and .k1; a slot idle for dp_idle_ticks counts as empty.
	 */
	__u32 dp_slots_log2;
	__u32 dp_ways;
	__u32 dp_idle_ticks;
	struct mg_cookie_key dp_seed;
};

/* Per-branch counters of the switch pipeline (per-CPU array, index = enum). */
enum mg_switch_counter {
	MG_SW_PKTS = 0,          /* every packet the program saw */
	MG_SW_PASS,              /* not Miresga's: normal forwarding */
	MG_SW_SYN_COOKIE,        /* SYN to VIP answered with a cookie SYN-ACK */
	MG_SW_SYN_BAD_OPTIONS,   /* SYN with malformed options, dropped */
	MG_SW_COOKIE_OK,         /* no entry, cookie valid, sent to a front-end */
	MG_SW_COOKIE_BAD,        /* no entry, cookie forged or expired, dropped */
	MG_SW_TO_FRONTEND,       /* client packet sent to a front-end */
	MG_SW_TO_FRONTEND_BYTES,
	MG_SW_OFFLOAD_FWD,       /* client pure ACK rewritten VIP -> back-end */
	MG_SW_OFFLOAD_FWD_BYTES,
	MG_SW_OFFLOAD_REV,       /* back-end packet rewritten back-end -> VIP */
	MG_SW_OFFLOAD_REV_BYTES,
	MG_SW_REV_TO_FRONTEND,   /* back-end packet without entry or FIN/RST */
	MG_SW_REV_TO_FRONTEND_BYTES,
	MG_SW_MALFORMED,         /* truncated or unparsable, forwarded untouched */
	MG_SW_VIP_NOT_TCP,       /* non-TCP to a VIP, dropped */
	MG_SW_NO_FRONTEND,       /* no front-end configured, dropped */
	MG_SW_FIB_MISS,          /* no FIB next hop for a rewritten packet: kernel path */
	/* Appended after the first version; indices above are unchanged. */
	MG_SW_CONN_KNOWN,        /* no entry, connection in the seen filter: to a front-end */
	MG_SW_VIP_MALFORMED,     /* to a VIP but truncated, fragmented, IP options or bad flags: dropped */
	MG_SW_TTL_EXCEEDED,      /* TTL would expire on a redirect: kernel path (ICMP) */
	/* The hand-off's marks and the data-plane table. */
	MG_SW_FE_ADMIT,          /* client packet handed to a front-end marked ADMIT */
	MG_SW_FE_KNOWN,          /* client packet handed to a front-end marked KNOWN */
	MG_SW_MARK_CLEARED,      /* a packet arrived with a mark nobody may send from there: cleared */
	MG_SW_MARK_UNTRUSTED,    /* ... of which INSTALL/REMOVE marks from a non-front-end port */
	MG_SW_FUSED_SYN_FORGED,  /* fused SYN to a back-end from a non-front-end port: dropped */
	MG_SW_BE_UNMARKED,       /* from a back-end service address, no MIRESGA mark: forwarded */
	MG_SW_BE_WRONG_PORT,     /* ... MIRESGA mark, but not on that back-end's port: forwarded */
	MG_SW_DP_INSTALL,        /* INSTALL wrote a free (empty or aged) slot */
	MG_SW_DP_REINSTALL,      /* INSTALL rewrote the slot that held its own key */
	MG_SW_DP_COLLISION,      /* INSTALL refused: every way holds another live key */
	MG_SW_DP_INSTALL_RACE,   /* INSTALL refused: the slot changed while it was written */
	MG_SW_DP_INSTALL_BAD,    /* INSTALL refused: not to a back-end, bad VIP index, no table */
	MG_SW_DP_REMOVE,         /* REMOVE cleared the slot holding its key */
	MG_SW_DP_REMOVE_MISS,    /* REMOVE found no slot holding its key: nothing done */
	MG_SW_CTL_CONSUMED,      /* a standalone control packet (REMOVE_CTL), dropped after acting */
	MG_SW_DP_HIT,            /* a lookup found a live data-plane entry (either direction) */
	MG_SW_DP_EXPIRED,        /* a lookup found its key in a slot idle past the timeout: a miss */
	/* Several front-ends: selection during a drain. */
	MG_SW_FE_MOVED,          /* new connection to its active front-end, its stable one draining */
	MG_SW_FE_DRAINING,       /* packet of an old connection to its draining front-end */
	MG_SW__MAX,
};

/* -------------------------------------------------------------- the cookie */

/*
 * The switch's SYN-ACK ISN.  Bits:
 *   31..8  top 24 bits of HalfSipHash-2-4(key, saddr, daddr, ports,
 *          client ISN, epoch, low byte)
 *    7..6  client MSS class (index into mg_mss_classes)
 *    5..2  client window scale, MG_COOKIE_NO_WSCALE if it sent none
 *    1     client sent SACK-permitted
 *    0     epoch parity, to pick the key on validation
 * The low byte is authenticated (it is hashed), but not secret: the front-end
 * reads it to replay the client's options to the back-end.  A cookie is never
 * 0 (see mg_cookie_make).
 */
#define MG_COOKIE_HASH_MASK 0xffffff00u
#define MG_COOKIE_MSS_SHIFT 6
#define MG_COOKIE_WSCALE_SHIFT 2
#define MG_COOKIE_SACK_BIT 0x2u
#define MG_COOKIE_EPOCH_BIT 0x1u
#define MG_COOKIE_NO_WSCALE 15

#define MG_MSS_CLASSES {536, 1220, 1440, 1460}

MG_INLINE __u32 mg_mss_class(__u16 mss)
{
	if (mss >= 1460)
		return 3;
	if (mss >= 1440)
		return 2;
	if (mss >= 1220)
		return 1;
	return 0;
}

MG_INLINE __u16 mg_mss_of_class(__u32 cls)
{
	switch (cls & 3) {
	case 3: return 1460;
	case 2: return 1440;
	case 1: return 1220;
	default: return 536;
	}
}

MG_INLINE __u32 mg_cookie_low_byte(__u32 mss_class, __u32 wscale, int sack, __u32 epoch)
{
	if (wscale > 14)
		wscale = MG_COOKIE_NO_WSCALE;
	return ((mss_class & 3) << MG_COOKIE_MSS_SHIFT) |
	       ((wscale & 0xf) << MG_COOKIE_WSCALE_SHIFT) |
	       (sack ? MG_COOKIE_SACK_BIT : 0) | (epoch & MG_COOKIE_EPOCH_BIT);
}

MG_INLINE __u16 mg_cookie_mss(__u32 cookie)
{
	return mg_mss_of_class((cookie >> MG_COOKIE_MSS_SHIFT) & 3);
}

/* Returns MG_COOKIE_NO_WSCALE when the client did not offer window scaling. */
MG_INLINE __u32 mg_cookie_wscale(__u32 cookie)
{
	return (cookie >> MG_COOKIE_WSCALE_SHIFT) & 0xf;
}

MG_INLINE int mg_cookie_sack(__u32 cookie)
{
	return !!(cookie & MG_COOKIE_SACK_BIT);
}

/* murmur3's finaliser: a cheap, well-mixed 32-bit hash, standing in for a
 * switch's CRC hash unit where the input need not be secret.  Used by the
 * switch pipeline (front-end choice, seen filter) and the l4switch baseline
 * (Maglev slot); here so that C test probes compute it too. */
MG_INLINE __u32 mg_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* The data-plane table's hash of (client IP, client port) for way 0 or 1,
 * over the raw network-order words.  Way 1's is derived from way 0's with
 * the second seed, so keys that collide in one way rarely do in the other. */
MG_INLINE __u32 mg_dp_hash(const struct mg_cookie_key *seed, __be32 ip, __be16 port, __u32 way)
{
	__u32 h = mg_mix32(ip ^ mg_mix32((__u32)port ^ seed->k0));

	return way ? mg_mix32(h ^ seed->k1) : h;
}

#define MG_ROTL32(x, b) (__u32)(((x) << (b)) | ((x) >> (32 - (b))))
#define MG_SIPROUND(v0, v1, v2, v3)                                       \
	do {                                                              \
		v0 += v1; v1 = MG_ROTL32(v1, 5); v1 ^= v0; v0 = MG_ROTL32(v0, 16); \
		v2 += v3; v3 = MG_ROTL32(v3, 8); v3 ^= v2;                 \
		v0 += v3; v3 = MG_ROTL32(v3, 7); v3 ^= v0;                 \
		v2 += v1; v1 = MG_ROTL32(v1, 13); v1 ^= v2; v2 = MG_ROTL32(v2, 16); \
	} while (0)

/*
 * HalfSipHash-2-4 over five 32-bit words, 32-bit output: the keyed hash that
 * SmartCookie runs on Tofino.  Fixed length and unrolled, so the eBPF
 * verifier sees no loop and a P4 port maps it onto pipeline stages.
 */
MG_INLINE __u32 mg_halfsiphash5(const struct mg_cookie_key *key, __u32 m0, __u32 m1,
				    __u32 m2, __u32 m3, __u32 m4)
{
	__u32 v0 = key->k0;
	__u32 v1 = key->k1;
	__u32 v2 = 0x6c796765u ^ key->k0;
	__u32 v3 = 0x74656462u ^ key->k1;
	__u32 b = (__u32)20 << 24; /* message length in bytes, no tail */

#define MG_SIP_ABSORB(m)                      \
	do {                                  \
		v3 ^= (m);                    \
		MG_SIPROUND(v0, v1, v2, v3);  \
		MG_SIPROUND(v0, v1, v2, v3);  \
		v0 ^= (m);                    \
	} while (0)
	MG_SIP_ABSORB(m0);
	MG_SIP_ABSORB(m1);
	MG_SIP_ABSORB(m2);
	MG_SIP_ABSORB(m3);
	MG_SIP_ABSORB(m4);
	MG_SIP_ABSORB(b);
#undef MG_SIP_ABSORB
	v2 ^= 0xff;
	MG_SIPROUND(v0, v1, v2, v3);
	MG_SIPROUND(v0, v1, v2, v3);
	MG_SIPROUND(v0, v1, v2, v3);
	MG_SIPROUND(v0, v1, v2, v3);
	return v1 ^ v3;
}

/*
 * Addresses and ports in network order, exactly as they sit in the packet of
 * the client's SYN (saddr = client, daddr = VIP); client_isn is the SYN's seq
 * in host order.
 */
MG_INLINE __u32 mg_cookie_make(const struct mg_cookie_key *key, __be32 saddr, __be32 daddr,
				   __be16 sport, __be16 dport, __u32 client_isn, __u32 epoch,
				   __u32 low_byte)
{
	__u32 ports = ((__u32)sport << 16) | (__u32)dport;
	__u32 h = mg_halfsiphash5(key, saddr, daddr, ports, client_isn,
				  (epoch << 8) | (low_byte & 0xff));
	__u32 cookie = (h & MG_COOKIE_HASH_MASK) | (low_byte & 0xff);

	/* Never 0: the front-end carries s in the ack field of its SYN, and an
	 * agent takes a SYN whose ack field is 0 for a plain (non-Miresga) SYN.
	 * The one input that would give 0 gets hash bits 1 instead; validation
	 * recomputes through this function, so make and check agree. */
	return cookie ? cookie : 1u << 8;
}

/*
 * Validate a cookie seen as (ack - 1) of the client's third packet whose
 * (seq - 1) is the client ISN.  cfg->epoch is now; a cookie from this or the
 * previous epoch is accepted.  Returns 1 if valid.
 */
MG_INLINE int mg_cookie_check(const struct mg_switch_config *cfg, __be32 saddr, __be32 daddr,
				  __be16 sport, __be16 dport, __u32 client_isn, __u32 cookie)
{
	__u32 low = cookie & 0xff;
	__u32 epoch = cfg->epoch;

	if ((low & MG_COOKIE_EPOCH_BIT) != (epoch & MG_COOKIE_EPOCH_BIT))
		epoch -= 1;
	return mg_cookie_make(&cfg->keys[epoch & 1], saddr, daddr, sport, dport, client_isn,
			      epoch, low) == cookie;
}

/* ------------------------------------------- the switch host's control protocol */

/*
 * Version 2, defined here once.  One daemon on the switch host (python -m switchhost)
 * serves it to every peer over TCP: front-ends push flow entries and ask how
 * recently an entry carried a packet; tools on the switch host send management
 * commands.  All integers on the wire are in network byte order.
 *
 * Framing.  Every message is an mg_ctl_hdr, a body whose length follows from
 * (type, count) (mg_ctl_body_len), then, once the handshake is over, a MAC of
 * MG_CTL_MAC_LEN bytes.  A body longer than MG_CTL_MAX_BODY is malformed; so
 * is an unknown type, a count the type does not allow, or a bad MAC: the
 * receiver counts it and closes the connection (a MAC'd stream cannot be
 * resynchronised).
 *
 * Handshake (no MAC: the HMACs in it protect it), with a key K of
 * MG_CTL_KEY_LEN bytes installed at deploy on both ends: each front-end has
 * its own, and the switch host's tools the daemon's; the key a peer proves
 * names the front-end (switchhost/server.py):
 *   server -> client  HELLO    body: Ns (MG_CTL_NONCE_LEN random bytes)
 *   client -> server  AUTH     body: Nc, HMAC-SHA256(K, "MGS2c" || Ns || Nc)
 *   server -> client  AUTH_OK  body: HMAC-SHA256(K, "MGS2s" || Nc || Ns)
 * A wrong AUTH is counted and the connection closed; the client checks AUTH_OK
 * in turn (mutual).  Every later message carries
 *   MAC = HMAC-SHA256(K, Ns || Nc || dir || counter || hdr || body)[0:16]
 * where dir is one byte (MG_CTL_DIR_*) and counter a 64-bit count of the
 * messages already sent in that direction on this connection (not on the
 * wire): a message injected, replayed, reordered or sent back breaks the MAC.
 *
 * Messages after the handshake, each answered in order on its connection:
 *   BATCH  count x mg_ctl_entry (count <= MG_CTL_MAX_BATCH)
 *     ->   ACK  count = the batch's: mg_ctl_ack, then mg_ctl_ack_words(count)
 *               __be32 words of refusal bits (bit i % 32 of word i / 32: entry
 *               i was refused).  Sent once the whole batch is applied, which
 *               the switch's install budget may delay.
 *   QUERY  count x mg_ctl_key (count <= MG_CTL_MAX_BATCH)
 *     ->   REPLY count x mg_ctl_liveness, in the order of the query
 *   CMD    count bytes of UTF-8 JSON {"op": ..., ...}
 *     ->   RESULT count bytes of JSON {"ok": true, ...} or {"error": "..."}
 * and one the server sends unasked, between answers, on the connections that
 * proved a front-end's own key (seq 0, answered by nothing):
 *   NOTICE count = 1: mg_ctl_notice.  DRAIN: the operator drains this
 *          front-end (it gets no new connections; it closes its kept-alive
 *          ones at the end of a response, as a server does that sends
 *          Connection: close); sent when the drain starts, and again right
 *          after the handshake of every connection the front-end opens while
 *          drained.  RESUME: back in service.
 */
#define MG_CTL_MAGIC 0x4d475332u /* "MGS2" */
#define MG_CTL_VERSION 2
#define MG_CTL_MAX_BATCH 512
#define MG_CTL_MAX_BODY 65535    /* the largest a 16-bit count can say */
#define MG_CTL_PORT_DEFAULT 7470 /* TCP port the switch host's daemon listens on */
#define MG_CTL_KEY_LEN 32
#define MG_CTL_NONCE_LEN 16
#define MG_CTL_HMAC_LEN 32       /* HMAC-SHA256 */
#define MG_CTL_MAC_LEN 16        /* truncated HMAC on every message after the handshake */
#define MG_CTL_DIR_TO_SERVER 0
#define MG_CTL_DIR_TO_CLIENT 1

enum mg_ctl_type {
	MG_CTL_BATCH = 1,
	MG_CTL_ACK = 2,
	MG_CTL_HELLO = 3,
	MG_CTL_AUTH = 4,
	MG_CTL_QUERY = 5,
	MG_CTL_REPLY = 6,
	MG_CTL_CMD = 7,
	MG_CTL_RESULT = 8,
	MG_CTL_AUTH_OK = 9,
	MG_CTL_NOTICE = 10,
};

enum mg_ctl_notice_what {
	MG_CTL_NOTICE_DRAIN = 1,
	MG_CTL_NOTICE_RESUME = 2,
};

enum mg_ctl_op {
	MG_CTL_ADD = 1,
	MG_CTL_DEL = 2,
};

struct mg_ctl_hdr {
	__be32 magic;
	__u8 version;
	__u8 type;
	__be16 count;
	__be32 seq;
};

/* BATCH: add or delete (client ip, client port) -> back-end. */
struct mg_ctl_entry {
	__be32 client_ip_be;
	__be16 client_port_be;
	__u8 op;
	__u8 backend_idx;
	__u8 vip_idx;
	__u8 _pad[3];
};

/* ACK, followed by the refusal bitmap. */
struct mg_ctl_ack {
	__be32 seq;         /* seq of the batch this answers */
	__be16 added;
	__be16 deleted;
	__be16 refused;     /* table full, index unknown, or over the install budget */
	__be16 _pad;
};

/* QUERY: is there an entry for this client, and how long has it been idle? */
struct mg_ctl_key {
	__be32 client_ip_be;
	__be16 client_port_be;
	__u8 vip_idx;
	__u8 _pad;
};

/* REPLY, one per queried key. */
struct mg_ctl_liveness {
	__u8 present;       /* the switch has an entry for the key */
	__u8 backend_idx;
	__be16 _pad;
	__be32 idle_ms;     /* since the entry last carried a packet; saturates */
};

/* NOTICE: what the switch host tells a front-end unasked. */
struct mg_ctl_notice {
	__u8 what;          /* enum mg_ctl_notice_what */
	__u8 _pad[3];
};

MG_INLINE __u32 mg_ctl_ack_words(__u32 count)
{
	return (count + 31) / 32;
}

/*
 * The body length of a message, MAC excluded, from its header; -1 if that
 * (type, count) is not a message (malformed).  JSON bodies are `count` bytes.
 */
MG_INLINE long mg_ctl_body_len(__u8 type, __u32 count)
{
	switch (type) {
	case MG_CTL_BATCH:
		return count >= 1 && count <= MG_CTL_MAX_BATCH ?
		       (long)(count * sizeof(struct mg_ctl_entry)) : -1;
	case MG_CTL_ACK:
		return count >= 1 && count <= MG_CTL_MAX_BATCH ?
		       (long)(sizeof(struct mg_ctl_ack) + 4 * mg_ctl_ack_words(count)) : -1;
	case MG_CTL_QUERY:
		return count >= 1 && count <= MG_CTL_MAX_BATCH ?
		       (long)(count * sizeof(struct mg_ctl_key)) : -1;
	case MG_CTL_REPLY:
		return count >= 1 && count <= MG_CTL_MAX_BATCH ?
		       (long)(count * sizeof(struct mg_ctl_liveness)) : -1;
	case MG_CTL_CMD:
	case MG_CTL_RESULT:
		return count >= 2 ? (long)count : -1;
	case MG_CTL_HELLO:
		return count == 0 ? MG_CTL_NONCE_LEN : -1;
	case MG_CTL_AUTH:
		return count == 0 ? MG_CTL_NONCE_LEN + MG_CTL_HMAC_LEN : -1;
	case MG_CTL_AUTH_OK:
		return count == 0 ? MG_CTL_HMAC_LEN : -1;
	case MG_CTL_NOTICE:
		return count == 1 ? (long)sizeof(struct mg_ctl_notice) : -1;
	default:
		return -1;
	}
}

#endif /* MIRESGA_H */
