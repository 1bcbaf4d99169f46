/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The control protocol's key, read from the file the deploy installed.  Apart
 * from fe_offload.c because <sys/stat.h> brings the kernel's __u64, which is
 * not miresga.h's: this file includes neither miresga.h nor fe_offload.h (whose
 * prototype of fe_offload_read_key() it implements).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int fe_offload_read_key(const char *path, uint8_t *key, size_t len);

static int hex_nibble(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* 2 x len hex digits (white space around them allowed), from a file only its
 * owner can read: a key others on the host can read is no secret. */
int fe_offload_read_key(const char *path, uint8_t *key, size_t len)
{
	char text[256], *p;
	struct stat st;
	size_t n;
	FILE *f;

	if (2 * len + 32 > sizeof(text))
		return -1;
	f = fopen(path, "r");
	if (!f || fstat(fileno(f), &st)) {
		fprintf(stderr, "fe_offload: control_key %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	if (st.st_mode & 077) {
		fprintf(stderr, "fe_offload: control_key %s: mode %04o: a control key must be "
			"readable by its owner only (chmod 600)\n", path, (unsigned)(st.st_mode & 0777));
		return -1;
	}
	text[n] = 0;
	p = text + strspn(text, " \t\r\n");
	for (size_t i = 0; i < len; i++) {
		int hi = hex_nibble(p[2 * i]), lo = hi < 0 ? -1 : hex_nibble(p[2 * i + 1]);

		if (hi < 0 || lo < 0)
			goto bad;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	p += 2 * len;
	if (p[strspn(p, " \t\r\n")] == 0)
		return 0;
bad:
	fprintf(stderr, "fe_offload: control_key %s: expected %zu hex digits (a %zu-byte key)\n",
		path, 2 * len, len);
	return -1;
}
