/* Prints, as JSON, what miresga.h's functions give for fixed inputs, so that
 * tests/test_layouts.py can hold their Python twins in switchhost/layouts.py
 * to them.  (The layouts and constants need no probe: Python's are generated
 * from the header's BTF, scripts/gen_layouts.py.) */
#include <arpa/inet.h>
#include <stdio.h>

#include "miresga.h"

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
	printf("{\"ctl_body_len\": [");
	/* mg_ctl_body_len over every type (and one past) and the counts at its edges. */
	{
		static const __u32 counts[] = {0, 1, 2, 31, 32, 33, 511, 512, 513, 65535};
		const char *sep = "";

		for (int type = 0; type <= MG_CTL_NOTICE + 1; type++)
			for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
				printf("%s[%d, %u, %ld]", sep, type, counts[i],
				       mg_ctl_body_len((__u8)type, counts[i]));
				sep = ", ";
			}
	}
	printf("]");

	/* The MSS classes (an array: BTF carries no macro that is not a number). */
	{
		static const __u32 classes[] = MG_MSS_CLASSES;

		_Static_assert(sizeof(classes) / sizeof(classes[0]) == 4, "4 MSS classes");
		printf(", \"mss_classes\": [%u, %u, %u, %u]", classes[0], classes[1], classes[2],
		       classes[3]);
	}

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
	/* Inputs whose hash bits are all zero with a zero low byte (MSS class
	 * 0, window scale 0, no SACK, even epoch): the cookie would be 0. */
	printf(", \"cookie_zero_hash\": {\"isn\": 13672851, \"value\": %u, \"check\": %d}}\n",
	       mg_cookie_make(&key, inet_addr("10.10.1.2"), inet_addr("10.10.0.100"), htons(40000),
			      htons(80), 13672851, 2, mg_cookie_low_byte(0, 0, 0, 2)),
	       cookie_zero_check(&key));
	return 0;
}
