/* Prints flow hashes of fixed inputs as JSON, so that tests/test_l4switch.py
 * can hold the Python flow hash (switchhost/pipelines/l4switch_layouts.py) to
 * l4switch.h's.  (The layouts and constants need no probe: Python's are
 * generated from the header's BTF, scripts/gen_layouts.py.) */
#include <arpa/inet.h>
#include <stdio.h>

#include "l4switch.h"

int main(void)
{
	printf("{\"flow_hash\": [");
	for (int i = 0; i < 4; i++)
		printf("%s{\"seed\": %u, \"client\": \"10.10.1.2\", \"client_port\": %d, "
		       "\"vip\": \"10.10.0.100\", \"vip_port\": 80, \"hash\": %u}",
		       i ? ", " : "", 0x9e3779b9u * i, 40000 + i,
		       l4_flow_hash(0x9e3779b9u * i, inet_addr("10.10.1.2"), htons(40000 + i),
				    inet_addr("10.10.0.100"), htons(80)));
	printf("]}\n");
	return 0;
}
