/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * miresga-frontend-test: the front-end's code without a port, for tests.
 *
 *   miresga-frontend-test parser
 *       Table-driven unit tests of the HTTP scanner, parser and body tracker.
 *   miresga-frontend-test paths
 *       For each raw request path on stdin (one a line), the path the rules
 *       match as the parser gives it for "GET PATH HTTP/1.1", or "refuse"
 *       (400 for the path, path_refused), or "bad" (any other 400): the C
 *       half of tests/fixtures/uri_paths.toml.
 *   miresga-frontend-test pipe CONFIG
 *       Packet in, packets out, with a virtual clock: tests/ drive the real
 *       state machine with scapy packets over stdin/stdout, in the spirit of
 *       BPF_PROG_TEST_RUN.  Commands, one per line:
 *         pkt HEX       inject an Ethernet frame
 *         advance US    move the clock and run the timers that expire
 *         stats         print the stats JSON
 *         offload       print and drain what was queued for the channel:
 *                       entries (op ADD 1, DEL 2; want_result if asked) and
 *                       liveness queries (op 128)
 *         result added|refused IP PORT BACKEND
 *         result liveness IP PORT PRESENT IDLE_MS
 *                       an answer of the switch, as the channel thread
 *                       hands it over
 *         notice drain|resume
 *                       the switch host's NOTICE, as the channel thread
 *                       reads it
 *       Each answer is zero or more "tx HEX" lines (frames sent), then the
 *       command's own line if any, then "end".  The switch's answers are
 *       handed to the state machine after every command, as the poll loop
 *       does every turn.
 *   miresga-frontend-test fuzz CONFIG CASES [SEED]
 *       Replays generated requests (tests/test_frontend_fuzz.py writes each as
 *       a line "EXPECT MODE LENGTH", then LENGTH raw bytes and a newline:
 *       cases reach 16 MiB, so no hex) as client connections and checks every
 *       answer, the SYNs to back-ends, and that every flow and mbuf is freed
 *       after each connection.  A request that fits one mbuf goes whole, one
 *       byte per segment, and split in two at every byte boundary; a longer
 *       one in full-size segments, shifted by a few seeded offsets, in seeded
 *       random sizes, and in one-byte segments around the header limit and
 *       every 64 KiB.  Each header is also parsed from an exact-size malloc'd
 *       copy, where the sanitized build sees a read past its end (DPDK's own
 *       memory is not instrumented).  Prints a JSON summary.
 *   miresga-frontend-test canary asan|ubsan
 *       In the sanitized build, a deliberate heap over-read or signed
 *       overflow: the sanitizer must report it and exit non-zero, which is
 *       how tests know that build checks anything (the plain build exits 3).
 *   miresga-frontend-test replay CONFIG close|keepalive N
 *       A fixed replay of N single-segment GETs with 1 KB responses, for
 *       counting the state machine's instructions per request under
 *       callgrind (README.md, "Cost per request"): one connection per request
 *       (the server closes, as with Connection: close) or N requests on one
 *       kept-alive connection.  Every packet of a connection goes through the
 *       front-end, whatever the hand-off mode would leave to the switch, so
 *       every build replays the same packets.  Prints a JSON summary.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "fe_config.h"
#include "fe_http.h"
#include "fe_lcore.h"
#include "fe_offload.h"
#include "fe_pkt.h"
#include "fe_port.h"
#include "fe_stats.h"

/* ============================================================ parser tests */

static int failures, checks;

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		checks++;                                                       \
		if (!(cond)) {                                                  \
			failures++;                                             \
			printf("not ok: ");                                     \
			printf(__VA_ARGS__);                                    \
			printf("   [%s:%d: %s]\n", __FILE__, __LINE__, #cond);  \
		}                                                               \
	} while (0)

enum { R_MORE = HTTP_SCAN_MORE, R_DONE = HTTP_SCAN_DONE, R_400 = HTTP_SCAN_BAD,
       R_431 = HTTP_SCAN_TOO_LARGE };

struct scan_case {
	const char *desc;
	const char *req;
	int scan;               /* expected scan result */
	int parse;              /* expected http_parse result when DONE */
	const char *path;       /* expected routing path, NULL: don't check */
	const char *host;       /* expected host, "-" for none */
	int keep_alive;         /* -1: don't check */
	int framing;            /* 0 none, 1 length, 2 chunked, -1 don't check */
	long long length;
};

static const struct scan_case scan_cases[] = {
	{"simple GET", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", R_DONE, 0, "/a", "x", 1, 0, 0},
	{"query is not path", "GET /a/b?c=/d HTTP/1.1\r\nHost: x\r\n\r\n", R_DONE, 0, "/a/b", "x", 1, 0, 0},
	{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", R_DONE, 0, "/", "-", 0, 0, 0},
	{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", R_DONE, 0, "/", "-", 1, 0, 0},
	{"HTTP/1.1 close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n", R_DONE, 0, "/", "h", 0, 0, 0},
	{"content-length", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n", R_DONE, 0, "/p", "h", 1, 1, 12},
	{"content-length zero", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", R_DONE, 0, "/p", "h", 1, 0, 0},
	{"same length twice", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n", R_DONE, 0, NULL, NULL, -1, 1, 5},
	{"two lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"length with sign", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"length list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"empty length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"19-digit length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456789\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", R_DONE, 0, "/", "h", 1, 2, 0},
	{"chunked not last", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"TE and CL", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"two TE fields", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", R_DONE, 0, "/", "", 1, 0, 0},
	{"Host with port, OWS", "GET / HTTP/1.1\r\nHost: \tExample.COM:8080  \r\n\r\n", R_DONE, 0, "/", "Example.COM:8080", 1, 0, 0},
	{"absolute-form", "GET http://Img.Example/x/y?q HTTP/1.1\r\nHost: other\r\n\r\n", R_DONE, 0, "/x/y", "Img.Example", 1, 0, 0},
	{"absolute-form https no path", "GET HTTPS://h:443 HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 0, "/", "h:443", 1, 0, 0},
	{"absolute-form query only", "GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 0, "/", "h", 1, 0, 0},
	{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 0, "*", "h", 1, 0, 0},
	{"asterisk not OPTIONS", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"asterisk with more", "OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
	{"upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", R_DONE, 0, "/ws", "h", 1, 0, 0},
	{"obs-text in value", "GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n", R_DONE, 0, "/", "h", 1, 0, 0},
	{"colon in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a:b:c\r\n\r\n", R_DONE, 0, "/", "h", 1, 0, 0},
	/* syntax: refused at the first bad byte */
	{"empty", "", R_MORE, 0, NULL, NULL, -1, -1, 0},
	{"space first", " GET / HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"NUL in method", "GE\0T / HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"two spaces", "GET  / HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"relative target", "GET a HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"authority-form", "CONNECT h:443 HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"ftp scheme", "GET ftp://h/ HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"userinfo", "GET http://u@h/ HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"empty authority", "GET http:///x HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"control in target", "GET /a\x01 HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"DEL in target", "GET /a\x7f HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"lower-case version", "GET / http/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"HTTP/0.9", "GET /\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"bare LF after request line", "GET / HTTP/1.1\nHost: h\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"trailing space in version", "GET / HTTP/1.1 \r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"bare LF in field", "GET / HTTP/1.1\r\nHost: h\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"CR alone", "GET / HTTP/1.1\r\nHost: h\rX\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"bare LF at end", "GET / HTTP/1.1\r\nHost: h\r\n\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"empty name", "GET / HTTP/1.1\r\n: h\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"bad char in name", "GET / HTTP/1.1\r\nX(y): z\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	/* incomplete */
	{"incomplete line", "GET / HTTP/1.1\r\nHost: h\r\n", R_MORE, 0, NULL, NULL, -1, -1, 0},
	{"incomplete method", "GE", R_MORE, 0, NULL, NULL, -1, -1, 0},
	{"incomplete scheme", "GET ht", R_MORE, 0, NULL, NULL, -1, -1, 0},
	/* '#' is never part of a target; paths are matched in normal form */
	{"fragment in path", "GET /a#b HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"fragment in query", "GET /a?b#c HTTP/1.1\r\n\r\n", R_400, 0, NULL, NULL, -1, -1, 0},
	{"dot-segments", "GET /static/../private/x?q=/../y HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 0,
	 "/private/x", "h", 1, 0, 0},
	{"absolute-form dot-segments", "GET http://h/a/%2E%2e//b HTTP/1.1\r\nHost: x\r\n\r\n", R_DONE,
	 0, "/b", "h", 1, 0, 0},
	{"escapes", "GET /%7euser/%c3%a9%41 HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 0,
	 "/~user/%C3%A9A", "h", 1, 0, 0},
	{"above the root", "GET /a/../../b HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 400, NULL, NULL, -1,
	 -1, 0},
	{"encoded slash", "GET /a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n", R_DONE, 400, NULL, NULL, -1, -1, 0},
};

/* http_parse on an exact-size malloc'd copy: it rewrites the path in place,
 * and ASan sees a read one byte past the header.  *copy is the caller's to
 * free (req points into it). */
static int parse_copy(const void *hdr, uint32_t len, struct http_request *req, uint8_t **copy)
{
	*copy = malloc(len ? len : 1);
	if (!*copy) {
		perror("malloc");
		exit(2);
	}
	memcpy(*copy, hdr, len);
	return http_parse(*copy, len, req);
}

/* Reference results at limit; also checks that byte-by-byte scanning ends
 * in the same verdict at the same byte. */
static void test_scan_case(const struct scan_case *c, size_t len)
{
	struct http_scan s;
	struct http_request req;
	uint32_t used = 0, pos_whole;
	uint8_t *copy = NULL;
	int r, r2 = HTTP_SCAN_MORE;

	http_scan_init(&s);
	r = http_scan(&s, (const uint8_t *)c->req, (uint32_t)len, 8192, &used);
	CHECK(r == c->scan, "%s: scan %d, want %d", c->desc, r, c->scan);
	pos_whole = s.pos;

	http_scan_init(&s);
	for (size_t i = 0; i < len && r2 == HTTP_SCAN_MORE; i++)
		r2 = http_scan(&s, (const uint8_t *)c->req + i, 1, 8192, &used);
	CHECK(r2 == r && s.pos == pos_whole, "%s: byte by byte: %d at %u, whole: %d at %u", c->desc,
	      r2, s.pos, r, pos_whole);
	if (r != HTTP_SCAN_DONE)
		return;
	CHECK(pos_whole == len, "%s: header length %u of %zu", c->desc, pos_whole, len);
	r = parse_copy(c->req, pos_whole, &req, &copy);
	CHECK(r == c->parse, "%s: parse %d, want %d", c->desc, r, c->parse);
	if (r) {
		free(copy);
		return;
	}
	if (c->path)
		CHECK(req.path_len == strlen(c->path) && !memcmp(req.path, c->path, req.path_len),
		      "%s: path '%.*s', want '%s'", c->desc, (int)req.path_len, req.path, c->path);
	if (c->host && !strcmp(c->host, "-"))
		CHECK(!req.has_host, "%s: host given", c->desc);
	else if (c->host)
		CHECK(req.has_host && req.host_len == strlen(c->host) &&
		      !memcmp(req.host, c->host, req.host_len),
		      "%s: host '%.*s', want '%s'", c->desc, (int)req.host_len, req.host, c->host);
	if (c->keep_alive >= 0)
		CHECK(req.keep_alive == c->keep_alive, "%s: keep-alive %d", c->desc, req.keep_alive);
	if (c->framing >= 0) {
		struct http_body b;

		http_body_init(&b, &req);
		CHECK(b.mode == c->framing, "%s: framing %d, want %d", c->desc, b.mode, c->framing);
		if (c->framing == HTTP_BODY_LENGTH)
			CHECK(b.left == (uint64_t)c->length, "%s: length %llu", c->desc,
			      (unsigned long long)b.left);
	}
	free(copy);
}

static void test_limit(void)
{
	/* A header of exactly the limit passes; one byte more is 431, and a
	 * bad byte inside the limit still wins over the size. */
	char buf[300];
	const char *head = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
	size_t hl = strlen(head);
	struct http_scan s;
	uint32_t used;
	int r;

	for (int total = 280; total <= 282; total++) {
		memcpy(buf, head, hl);
		memset(buf + hl, 'a', (size_t)total - hl - 4);
		memcpy(buf + total - 4, "\r\n\r\n", 4);
		http_scan_init(&s);
		r = http_scan(&s, (const uint8_t *)buf, (uint32_t)total, 281, &used);
		if (total <= 281)
			CHECK(r == HTTP_SCAN_DONE && s.pos == (uint32_t)total, "limit: %d bytes: %d", total, r);
		else
			CHECK(r == HTTP_SCAN_TOO_LARGE && used == 281, "limit: %d bytes: %d used %u",
			      total, r, used);
	}
	memcpy(buf, head, hl);
	memset(buf + hl, 'a', 300 - hl);
	buf[280] = 0;
	http_scan_init(&s);
	r = http_scan(&s, (const uint8_t *)buf, 300, 281, &used);
	CHECK(r == HTTP_SCAN_BAD && used == 280, "limit: NUL at the last byte: %d at %u", r, used);
	buf[280] = 'a';
	http_scan_init(&s);
	r = http_scan(&s, (const uint8_t *)buf, 300, 281, &used);
	CHECK(r == HTTP_SCAN_TOO_LARGE && used == 281, "limit: runs over: %d", r);
}

struct body_case {
	const char *desc;
	const char *hdr;
	const char *stream;     /* body then whatever follows */
	long long body_len;     /* bytes of stream that belong to the body, -1: framing error */
	int done;
};

static const struct body_case body_cases[] = {
	{"no body", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "GET /next", 0, 1},
	{"length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", "helloGET", 5, 1},
	{"length short", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n", "hello", 5, 0},
	{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	 "5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\nGET", 36, 1},
	{"chunked trailers", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	 "1\r\nx\r\n0\r\nT: v\r\nU: w\r\n\r\nNEXT", 23, 1},
	{"chunked BWS ext", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	 "2 ;a\r\nab\r\n0\r\n\r\n", 15, 1},
	{"chunked upper hex", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	 "1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n", 42, 1},
	{"chunk size not hex", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	 "g\r\n", -1, 0},
	{"chunk without CRLF", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	 "1\r\nxy\r\n", -1, 0},
	{"chunk size overflow", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	 "1000000000000000\r\n", -1, 0},
	{"chunked unfinished", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	 "5\r\nhel", 6, 0},
};

static void test_body(void)
{
	for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
		const struct body_case *c = &body_cases[i];
		struct http_request req;
		struct http_body whole, bytes;
		size_t n = strlen(c->stream);
		int64_t r, total = 0;
		uint8_t *copy;
		int bad = parse_copy(c->hdr, (uint32_t)strlen(c->hdr), &req, &copy);

		free(copy);
		if (bad) {
			CHECK(0, "%s: header does not parse", c->desc);
			continue;
		}
		http_body_init(&whole, &req);
		r = http_body_feed(&whole, (const uint8_t *)c->stream, (uint32_t)n);
		CHECK(r == c->body_len, "%s: whole: %lld, want %lld", c->desc, (long long)r, c->body_len);
		if (r >= 0)
			CHECK(whole.done == c->done, "%s: done %d", c->desc, whole.done);
		/* One byte at a time ends at the same place. */
		http_body_init(&bytes, &req);
		for (size_t k = 0; k < n && !bytes.done; k++) {
			r = http_body_feed(&bytes, (const uint8_t *)c->stream + k, 1);
			if (r < 0) {
				total = -1;
				break;
			}
			total += r;
			if (r == 0)
				break;
		}
		CHECK(total == c->body_len, "%s: byte by byte: %lld", c->desc, (long long)total);
	}
}

static int run_parser_tests(void)
{
	http_init();
	for (size_t i = 0; i < sizeof(scan_cases) / sizeof(scan_cases[0]); i++) {
		const struct scan_case *c = &scan_cases[i];
		/* Embedded NULs: the length is up to the last "\r\n\r\n" or the
		 * literal's size; literals here hold at most one NUL. */
		size_t len = strlen(c->req);

		if (strstr(c->desc, "NUL"))
			len += 1 + strlen(c->req + len + 1);
		test_scan_case(c, len);
	}
	test_limit();
	test_body();
	printf("%s: %d checks, %d failures\n", failures ? "FAIL" : "ok", checks, failures);
	return failures ? 1 : 0;
}

/* ================================================== the lcore, without a port */

static struct fe_config cfg;
static struct fe_lcore lc;
static struct fe_offload offload;
static struct rte_mempool *pool;
static const uint8_t harness_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0xfe};

#define CAPTURE_MAX 4096
static struct {
	uint16_t len;
	uint8_t data[2048];
} captured[CAPTURE_MAX];
static unsigned int n_captured;

static void capture_sink(struct fe_lcore *l, struct rte_mbuf **pkts, uint16_t n)
{
	(void)l;
	for (uint16_t i = 0; i < n; i++) {
		if (n_captured < CAPTURE_MAX && pkts[i]->pkt_len <= sizeof(captured[0].data)) {
			captured[n_captured].len = (uint16_t)pkts[i]->pkt_len;
			memcpy(captured[n_captured].data, rte_pktmbuf_mtod(pkts[i], void *),
			       pkts[i]->data_len);
			n_captured++;
		}
		rte_pktmbuf_free(pkts[i]);
	}
}

static int harness_init(const char *config_path)
{
	char err[256];
	char prefix[32];
	char *eal[] = {"miresga-frontend-test", "--no-huge", "-m", "192", "--no-pci", "--no-shconf",
		       "--no-telemetry", "--log-level=*:error", "--file-prefix", prefix, "-l", "0",
		       NULL};

	snprintf(prefix, sizeof(prefix), "fe%d", (int)getpid());
	if (rte_eal_init(12, eal) < 0) {
		char dir[64];

		fprintf(stderr, "EAL init failed\n");
		snprintf(dir, sizeof(dir), "/var/run/dpdk/%s", prefix);
		fe_runtime_dir_remove(dir);
		return -1;
	}
	http_init();
	fe_config_defaults(&cfg);
	if (fe_config_load(&cfg, config_path, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", config_path, err);
		return -1;
	}
	pool = fe_pool_create("fe_test_mbufs", cfg.n_mbufs, (int)rte_socket_id());
	if (!pool)
		return -1;
	/* The channel is never started here: tests read its ring directly. */
	if (fe_offload_init(&offload, cfg.control_host, cfg.control_port, cfg.control_key,
			    cfg.offload_ring_size))
		return -1;
	if (fe_lcore_init(&lc, &cfg, pool, 0, harness_mac, &offload, capture_sink, 0))
		return -1;
	lc.now_us = 1000000;
	return 0;
}

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void harness_fini(void)
{
	char dir[4096];

	fe_lcore_fini(&lc);
	fe_offload_free(&offload);
	rte_mempool_free(pool);
	snprintf(dir, sizeof(dir), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	fe_runtime_dir_remove(dir);
}

static void print_hex(FILE *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		fputc(digits[p[i] >> 4], out);
		fputc(digits[p[i] & 15], out);
	}
}

static int from_hex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;

	while (isxdigit((unsigned char)s[0]) && isxdigit((unsigned char)s[1]) && n < max) {
		char b[3] = {s[0], s[1], 0};

		out[n++] = (uint8_t)strtoul(b, NULL, 16);
		s += 2;
	}
	return (int)n;
}

static void inject(const uint8_t *frame, uint16_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	char *d;

	if (!m)
		return;
	d = rte_pktmbuf_append(m, len);
	if (!d) {
		rte_pktmbuf_free(m);
		return;
	}
	memcpy(d, frame, len);
	fe_input(&lc, m);
	fe_tx_flush(&lc);
}

static void flush_captured(void)
{
	for (unsigned int i = 0; i < n_captured; i++) {
		fputs("tx ", stdout);
		print_hex(stdout, captured[i].data, captured[i].len);
		fputc('\n', stdout);
	}
	n_captured = 0;
}

/* How `offload` lists a liveness query beside the entries (ops 1 and 2):
 * queries travel on a ring of their own. */
#define QUERY_OP 128

/* "added|refused IP PORT BACKEND" or "liveness IP PORT PRESENT IDLE_MS": as
 * the channel thread would post it. */
static int inject_result(const char *args)
{
	char kind[16], ip[INET_ADDRSTRLEN];
	unsigned int port, present = 0, idle_ms = 0;
	struct fe_offload_result r = {0};
	struct in_addr a;
	int n = sscanf(args, "%15s %15s %u %u %u", kind, ip, &port, &present, &idle_ms);

	if (n < 3 || inet_pton(AF_INET, ip, &a) != 1 || port > 65535)
		return -1;
	if (!strcmp(kind, "added") && n == 4 && present < MG_MAX_BACKENDS)
		r.kind = FE_OFFLOAD_ADDED;
	else if (!strcmp(kind, "refused") && n == 4 && present < MG_MAX_BACKENDS)
		r.kind = FE_OFFLOAD_REFUSED;
	else if (!strcmp(kind, "liveness") && n == 5)
		r.kind = FE_OFFLOAD_LIVENESS;
	else
		return -1;
	if (r.kind == FE_OFFLOAD_LIVENESS) {
		r.present = (uint8_t)!!present;
		r.idle_ms = idle_ms;
	} else {
		r.backend_idx = (uint8_t)present;   /* the third number is the back-end */
	}
	r.key.client_ip_be = a.s_addr;
	r.key.client_port_be = htons((uint16_t)port);
	return fe_offload_post_result(&offload, &r);
}

static int run_pipe(void)
{
	static char line[16384];
	static uint8_t frame[4096];
	static char json[256 * 1024];
	struct fe_lcore *lcs[1] = {&lc};
	struct fe_stats_server s = {.lcores = lcs, .n_lcores = 1, .offload = &offload, .port_id = -1,
				    .start_us = mono_us()};

	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\r\n")] = 0;
		if (!strncmp(line, "pkt ", 4)) {
			int n = from_hex(line + 4, frame, sizeof(frame));

			inject(frame, (uint16_t)n);
			fe_results_run(&lc);
			fe_tx_flush(&lc);
			flush_captured();
		} else if (!strncmp(line, "advance ", 8)) {
			lc.now_us += strtoull(line + 8, NULL, 10);
			fe_timers_run(&lc);
			fe_results_run(&lc);
			fe_tx_flush(&lc);
			flush_captured();
		} else if (!strcmp(line, "stats")) {
			fe_stats_json(&s, json, sizeof(json));
			json[strcspn(json, "\n")] = 0;
			printf("stats %s\n", json);
		} else if (!strcmp(line, "offload")) {
			struct fe_offload_req r;
			struct mg_ctl_key k;
			char ip[INET_ADDRSTRLEN];
			const char *sep = "";

			printf("offload [");
			while (rte_ring_sc_dequeue_elem(offload.ring, &r, sizeof(r)) == 0) {
				inet_ntop(AF_INET, &r.e.client_ip_be, ip, sizeof(ip));
				printf("%s{\"op\": %u, \"ip\": \"%s\", \"port\": %u, "
				       "\"backend\": %u, \"vip\": %u%s}", sep, r.e.op, ip,
				       ntohs(r.e.client_port_be), r.e.backend_idx, r.e.vip_idx,
				       r.want_result ? ", \"want_result\": true" : "");
				sep = ", ";
			}
			while (rte_ring_sc_dequeue_elem(offload.query_ring, &k, sizeof(k)) == 0) {
				inet_ntop(AF_INET, &k.client_ip_be, ip, sizeof(ip));
				printf("%s{\"op\": %u, \"ip\": \"%s\", \"port\": %u, \"vip\": %u}",
				       sep, QUERY_OP, ip, ntohs(k.client_port_be), k.vip_idx);
				sep = ", ";
			}
			printf("]\n");
		} else if (!strncmp(line, "result ", 7)) {
			if (inject_result(line + 7))
				printf("error bad result\n");
			fe_results_run(&lc);
			fe_tx_flush(&lc);
			flush_captured();
		} else if (!strcmp(line, "notice drain") || !strcmp(line, "notice resume")) {
			__atomic_store_n(&offload.c.draining, !strcmp(line, "notice drain"),
					 __ATOMIC_RELEASE);
			fe_results_run(&lc);
			fe_tx_flush(&lc);
			flush_captured();
		} else if (!strcmp(line, "quit")) {
			break;
		} else {
			printf("error unknown command\n");
		}
		printf("end\n");
		fflush(stdout);
	}
	harness_fini();
	return 0;
}

/* ================================================================= fuzz */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)rng_state;
}

struct fuzz_case {
	int expect;             /* HTTP status; 503 means routed (a SYN), then no back-end; 0 a bare FIN */
	int fin;
	uint32_t len;
	uint8_t *data;
};

struct fuzz_tally {
	uint64_t variants, packets, mismatches, leaks, bad_syns, bad_answers, parsed;
	uint64_t by_status[6];
};

/* A client's segment at most: an MSS, and below one mbuf's data room. */
#define FUZZ_MSS 1448
/* Requests up to this size also go whole, in one segment (one mbuf). */
#define FUZZ_WHOLE_MAX 2048
/* Random segment sizes only up to this: more segments than mbufs otherwise. */
#define FUZZ_RANDOM_MAX (4u << 20)

/* Segment boundaries of one variant, strictly increasing, inside the case. */
struct cut_list {
	uint32_t *at;
	uint32_t n, cap;
};

static void cut_push(struct cut_list *c, uint32_t at)
{
	if (c->n && at <= c->at[c->n - 1])
		return;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->at = realloc(c->at, sizeof(*c->at) * c->cap);
		if (!c->at) {
			perror("realloc");
			exit(2);
		}
	}
	c->at[c->n++] = at;
}

static const uint32_t client_ip = 0x0a090005; /* 10.9.0.5 */

/* A segment the harness could not build is a harness failure, not a case's. */
static uint64_t segments_unbuilt;

/* A client segment as the switch hands it over: from the switch's port,
 * marked ADMIT if its numbers are the cookie's (c + 1, s + 1), else KNOWN. */
static void client_segment(uint16_t port, uint32_t seq, uint32_t ack, uint8_t flags,
			   const uint8_t *data, uint16_t len, uint32_t c, uint32_t s)
{
	struct rte_mbuf *m = fe_pkt_new(&lc, data, len);
	struct fe_tuple t = {.saddr = htonl(client_ip), .daddr = cfg.vip_be,
			     .sport = htons(port), .dport = cfg.vip_port_be};
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;

	if (!m || fe_pkt_push_tcp(&lc, m, &t, seq, ack, flags, 502, NULL, 0)) {
		if (m)
			rte_pktmbuf_free(m);
		segments_unbuilt++;
		return;
	}
	eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	memcpy(&eth->src_addr, cfg.nexthop_mac, 6);
	memcpy(&eth->dst_addr, harness_mac, 6);
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	ip->type_of_service = mg_tos_with_dscp(0, seq == c + 1 && ack == s + 1 ? MG_DSCP_ADMIT
									      : MG_DSCP_KNOWN);
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	fe_input(&lc, m);
	fe_tx_flush(&lc);
}

struct seen {
	int answers;
	int status;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t len;
	int syns, bad_syns;
};

/* Look at what the front-end sent since the last call. */
static void inspect(struct seen *sn, uint16_t port, uint32_t c, uint32_t s)
{
	for (unsigned int i = 0; i < n_captured; i++) {
		const uint8_t *f = captured[i].data;
		const struct rte_ipv4_hdr *ip = (const void *)(f + RTE_ETHER_HDR_LEN);
		const struct rte_tcp_hdr *tcp = (const void *)((const uint8_t *)ip + rte_ipv4_hdr_len(ip));
		uint16_t doff = (uint16_t)((tcp->data_off >> 4) * 4);
		const uint8_t *payload = (const uint8_t *)tcp + doff;
		uint16_t plen = (uint16_t)(ntohs(ip->total_length) - rte_ipv4_hdr_len(ip) - doff);

		if (ip->dst_addr == htonl(client_ip) && tcp->dst_port == htons(port)) {
			if (!(tcp->tcp_flags & RTE_TCP_FIN_FLAG))
				continue;
			if (sn->answers++)
				continue;
			sn->seq = ntohl(tcp->sent_seq);
			sn->ack = ntohl(tcp->recv_ack);
			sn->flags = tcp->tcp_flags;
			sn->len = plen;
			sn->status = 0;
			if (plen >= 12 && !memcmp(payload, "HTTP/1.1 ", 9))
				sn->status = atoi((const char *)payload + 9);
			else if (plen)
				sn->status = -1;
		} else if (tcp->tcp_flags & RTE_TCP_SYN_FLAG) {
			uint8_t want[12];
			uint8_t n = 0;
			uint16_t mss = mg_cookie_mss(s);

			want[n++] = 2, want[n++] = 4, want[n++] = (uint8_t)(mss >> 8), want[n++] = (uint8_t)mss;
			if (mg_cookie_sack(s))
				want[n++] = 1, want[n++] = 1, want[n++] = 4, want[n++] = 2;
			if (mg_cookie_wscale(s) != MG_COOKIE_NO_WSCALE)
				want[n++] = 1, want[n++] = 3, want[n++] = 3,
				want[n++] = (uint8_t)mg_cookie_wscale(s);
			sn->syns++;
			if (tcp->tcp_flags != RTE_TCP_SYN_FLAG || ntohl(tcp->sent_seq) != c ||
			    ntohl(tcp->recv_ack) != s || ip->src_addr != htonl(client_ip) ||
			    tcp->src_port != htons(port) || doff != 20 + n ||
			    memcmp(tcp + 1, want, n) || !fe_tcp_csum_ok(ip, tcp, (uint16_t)(doff + plen)))
				sn->bad_syns++;
		}
	}
	n_captured = 0;
}

static int expect_index(int status)
{
	switch (status) {
	case 400: return 0;
	case 404: return 1;
	case 408: return 2;
	case 431: return 3;
	case 503: return 4;
	default: return 5;
	}
}

static void report(const struct fuzz_case *fc, const char *what, int got, const uint32_t *cuts,
		   uint32_t ncuts)
{
	static int reported;

	if (reported++ >= 20)
		return;
	fprintf(stderr, "mismatch (%s): expect %d got %d, %s, %u bytes, %u cuts:", what, fc->expect,
		got, fc->fin ? "fin" : "nofin", fc->len, ncuts);
	for (uint32_t i = 0; i < ncuts && i < 8; i++)
		fprintf(stderr, " %u", cuts[i]);
	fprintf(stderr, "%s\n  ", ncuts > 8 ? " ..." : "");
	print_hex(stderr, fc->data, fc->len > 200 ? 200 : fc->len);
	fputc('\n', stderr);
}

/* The answer acknowledges what the front-end took in: somewhere between
 * nothing and every byte plus the FIN. */
#define SEQ_CHECK_ACK(ack, c, fc) \
	((uint32_t)((ack) - ((c) + 1)) > (uint32_t)((fc)->len + 1))

/* One connection: the case's bytes cut at `cuts` (segment boundaries). */
static void run_variant(const struct fuzz_case *fc, const uint32_t *cuts, uint32_t ncuts,
			struct fuzz_tally *t)
{
	static uint16_t next_port = 1024;
	uint16_t port = next_port++;
	uint32_t c = rnd();
	uint32_t low = mg_cookie_low_byte(rnd() & 3, rnd() % 16, rnd() & 1, rnd() & 1);
	uint32_t s = (rnd() & MG_COOKIE_HASH_MASK) | low;
	uint64_t step = (cfg.request_timeout_us > cfg.syn_timeout_us ? cfg.request_timeout_us
								     : cfg.syn_timeout_us) + 1;
	struct seen sn = {0};
	uint32_t start = 0;
	int fin_sent = 0, expect = fc->expect;

	if (next_port == 0)
		next_port = 1024;
	t->variants++;
	lc.now_us += 1000;
	client_segment(port, c + 1, s + 1, RTE_TCP_ACK_FLAG, NULL, 0, c, s);
	t->packets++;
	for (uint32_t i = 0; i <= ncuts; i++) {
		uint32_t end = i < ncuts ? cuts[i] : fc->len;
		uint8_t flags = RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG;

		if (i == ncuts && fc->fin) {
			flags |= RTE_TCP_FIN_FLAG;
			fin_sent = 1;
		}
		if (end == start && !(flags & RTE_TCP_FIN_FLAG))
			continue;
		client_segment(port, c + 1 + start, s + 1, flags, fc->data + start,
			       (uint16_t)(end - start), c, s);
		t->packets++;
		inspect(&sn, port, c, s);
		start = end;
	}
	for (int i = 0; i < 300 && !sn.answers; i++) {
		lc.now_us += step;
		fe_timers_run(&lc);
		fe_tx_flush(&lc);
		inspect(&sn, port, c, s);
	}
	if (sn.answers != 1 || sn.status != expect) {
		t->mismatches++;
		report(fc, "status", sn.answers == 1 ? sn.status : -100 - sn.answers, cuts, ncuts);
	} else if (sn.seq != s + 1 || SEQ_CHECK_ACK(sn.ack, c, fc) ||
		   !(sn.flags & RTE_TCP_FIN_FLAG) || !(sn.flags & RTE_TCP_ACK_FLAG)) {
		t->bad_answers++;
		report(fc, "answer seq/ack/flags", sn.status, cuts, ncuts);
	}
	if (sn.bad_syns || (expect == 503) != (sn.syns > 0)) {
		t->bad_syns++;
		report(fc, "SYN", sn.syns, cuts, ncuts);
	}
	t->by_status[expect_index(sn.status)]++;

	/* The client reads the answer and closes (or had closed already). */
	if (fin_sent)
		client_segment(port, c + 1 + fc->len + 1, sn.seq + sn.len + 1, RTE_TCP_ACK_FLAG,
			       NULL, 0, c, s);
	else
		client_segment(port, c + 1 + fc->len, sn.seq + sn.len + 1,
			       RTE_TCP_ACK_FLAG | RTE_TCP_FIN_FLAG, NULL, 0, c, s);
	t->packets++;
	n_captured = 0;
	for (uint32_t i = 0; i < cfg.answer_retries + 2 && lc.ft.count; i++) {
		lc.now_us += (cfg.grace_us > cfg.answer_rto_us ? cfg.grace_us : cfg.answer_rto_us) + 1;
		fe_timers_run(&lc);
		fe_tx_flush(&lc);
		n_captured = 0;
	}
	if (lc.ft.count || lc.stats.held_mbufs) {
		t->leaks++;
		report(fc, "leak", (int)lc.ft.count, cuts, ncuts);
		/* Do not let one leak cascade into every later variant. */
		fe_lcore_fini(&lc);
		fe_lcore_init(&lc, &cfg, pool, 0, harness_mac, &offload, capture_sink, 0);
	}
}

/*
 * The header alone, scanned, parsed and routed from a malloc'd buffer of
 * exactly its length: DPDK's memory (the mbufs, the lcore's scratch) is not
 * instrumented, malloc's is, so here the sanitized build catches a read one
 * byte past the header.
 */
static void parse_exact(const struct fuzz_case *fc, struct fuzz_tally *t)
{
	struct http_scan scan;
	struct http_request req;
	uint32_t used;
	uint8_t *copy;
	int offload;

	http_scan_init(&scan);
	if (http_scan(&scan, fc->data, fc->len, cfg.max_header_bytes, &used) != HTTP_SCAN_DONE)
		return;
	copy = malloc(scan.pos);
	if (!copy)
		return;
	memcpy(copy, fc->data, scan.pos);
	if (http_parse(copy, scan.pos, &req) == 0)
		(void)fe_route(&cfg, &req, &offload);
	free(copy);
	t->parsed++;
}

/* Within 16 bytes of the header limit, or of a multiple of 64 KiB up to it. */
static int near_a_limit(uint32_t at)
{
	uint32_t r = at % 65536;

	if (at + 16 >= cfg.max_header_bytes && at <= cfg.max_header_bytes + 16)
		return 1;
	return at <= cfg.max_header_bytes + 16 && at >= 65536 - 16 && (r <= 16 || r >= 65536 - 16);
}

/* Every variant of one case, as the header comment of this file says. */
static void run_case(const struct fuzz_case *fc, struct cut_list *cl, struct fuzz_tally *t)
{
	uint32_t n = fc->len;

	parse_exact(fc, t);
	if (n <= FUZZ_WHOLE_MAX) {
		/* whole */
		run_variant(fc, NULL, 0, t);
		/* one byte per segment: every boundary at once */
		cl->n = 0;
		for (uint32_t i = 1; i < n; i++)
			cut_push(cl, i);
		if (n > 1)
			run_variant(fc, cl->at, cl->n, t);
		/* two segments, cut at each boundary (long requests: a sample,
		 * their every boundary is covered by the byte-per-segment run) */
		for (uint32_t k = 1; k < n; k += (n > 600 ? n / 97 + 1 : 1))
			run_variant(fc, &k, 1, t);
		return;
	}
	/* full-size segments, then the same shifted by three seeded offsets */
	for (int shift = 0; shift < 4; shift++) {
		cl->n = 0;
		if (shift)
			cut_push(cl, 1 + rnd() % (FUZZ_MSS - 1));
		for (uint32_t at = cl->n ? cl->at[0] + FUZZ_MSS : FUZZ_MSS; at < n; at += FUZZ_MSS)
			cut_push(cl, at);
		run_variant(fc, cl->at, cl->n, t);
	}
	/* seeded random sizes */
	if (n <= FUZZ_RANDOM_MAX) {
		cl->n = 0;
		for (uint32_t at = 1 + rnd() % FUZZ_MSS; at < n; at += 1 + rnd() % FUZZ_MSS)
			cut_push(cl, at);
		run_variant(fc, cl->at, cl->n, t);
	}
	/* one-byte segments around the header limit and every 64 KiB of the
	 * header (where a 16-bit length would wrap), full-size ones between */
	cl->n = 0;
	for (uint32_t at = 1; at < n; at++)
		if (at % FUZZ_MSS == 0 || near_a_limit(at))
			cut_push(cl, at);
	run_variant(fc, cl->at, cl->n, t);
}

/* The raw bytes of a case, into `data` grown as needed; -1 if the file ends early. */
static int case_bytes(FILE *f, uint32_t len, uint8_t **data, size_t *cap)
{
	if (len > *cap) {
		*cap = len;
		*data = realloc(*data, len);
		if (!*data) {
			perror("realloc");
			exit(2);
		}
	}
	if (fread(*data, 1, len, f) != len || getc(f) != '\n')
		return -1;
	return 0;
}

static int run_fuzz(const char *cases_path, uint64_t seed)
{
	FILE *f = fopen(cases_path, "r");
	char *line = NULL;
	size_t line_cap = 0, data_cap = 0;
	uint8_t *data = NULL;
	struct cut_list cl = {0};
	struct fuzz_tally t = {0};
	uint64_t ncases = 0, max_len = 0;
	unsigned int baseline;

	if (!f) {
		perror(cases_path);
		return 2;
	}
	if (seed)
		rng_state = seed;
	baseline = rte_mempool_in_use_count(pool);
	while (getline(&line, &line_cap, f) > 0) {
		struct fuzz_case fc;
		char mode[8];

		if (sscanf(line, "%d %7s %u", &fc.expect, mode, &fc.len) != 3 ||
		    case_bytes(f, fc.len, &data, &data_cap)) {
			fprintf(stderr, "%s: case %llu: not EXPECT MODE LENGTH, then LENGTH bytes\n",
				cases_path, (unsigned long long)ncases + 1);
			fclose(f);
			return 2;
		}
		fc.fin = !strcmp(mode, "fin");
		fc.data = data;
		ncases++;
		if (fc.len > max_len)
			max_len = fc.len;
		run_case(&fc, &cl, &t);
	}
	fclose(f);
	free(line);
	free(data);
	free(cl.at);
	printf("{\"cases\": %llu, \"variants\": %llu, \"packets\": %llu, \"max_bytes\": %llu, "
	       "\"parsed_exact\": %llu, \"segments_unbuilt\": %llu, \"hold_full\": %llu, "
	       "\"mismatches\": %llu, "
	       "\"bad_answers\": %llu, \"bad_syns\": %llu, \"leaks\": %llu, \"mbufs_leaked\": %d, "
	       "\"answers\": {\"400\": %llu, \"404\": %llu, \"408\": %llu, \"431\": %llu, "
	       "\"503\": %llu, \"other\": %llu}}\n",
	       (unsigned long long)ncases, (unsigned long long)t.variants,
	       (unsigned long long)t.packets, (unsigned long long)max_len,
	       (unsigned long long)t.parsed, (unsigned long long)segments_unbuilt,
	       (unsigned long long)lc.stats.pkt.hold_full,
	       (unsigned long long)t.mismatches,
	       (unsigned long long)t.bad_answers, (unsigned long long)t.bad_syns,
	       (unsigned long long)t.leaks, (int)rte_mempool_in_use_count(pool) - (int)baseline,
	       (unsigned long long)t.by_status[0], (unsigned long long)t.by_status[1],
	       (unsigned long long)t.by_status[2], (unsigned long long)t.by_status[3],
	       (unsigned long long)t.by_status[4], (unsigned long long)t.by_status[5]);
	return (t.mismatches || t.bad_answers || t.bad_syns || t.leaks || segments_unbuilt ||
		rte_mempool_in_use_count(pool) != baseline) ? 1 : 0;
}

/* For each raw path on stdin: the normal form the parser gives, "refuse" or "bad". */
static int run_paths(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	http_init();
	while ((n = getline(&line, &cap, stdin)) > 0) {
		static const char head[] = "GET ", tail[] = " HTTP/1.1\r\nHost: h\r\n\r\n";
		size_t plen = (size_t)n - (line[n - 1] == '\n');
		size_t len = sizeof(head) - 1 + plen + sizeof(tail) - 1;
		uint8_t *req = malloc(len), *copy = NULL;
		struct http_request parsed;
		struct http_scan scan;
		uint32_t used;

		if (!req)
			return 2;
		memcpy(req, head, sizeof(head) - 1);
		memcpy(req + sizeof(head) - 1, line, plen);
		memcpy(req + sizeof(head) - 1 + plen, tail, sizeof(tail) - 1);
		http_scan_init(&scan);
		if (http_scan(&scan, req, (uint32_t)len, 1u << 20, &used) != HTTP_SCAN_DONE)
			puts("bad");
		else if (parse_copy(req, scan.pos, &parsed, &copy))
			puts(parsed.path_refused ? "refuse" : "bad");
		else
			printf("%.*s\n", (int)parsed.path_len, parsed.path);
		free(copy);
		free(req);
	}
	free(line);
	return 0;
}

static int run_canary(const char *kind)
{
#if defined(__SANITIZE_ADDRESS__)
	volatile size_t n = 8;
	volatile int big = INT32_MAX;

	if (!strcmp(kind, "asan")) {
		volatile char *p = malloc(n);
		char c = p[n];

		free((void *)p);
		return c == 'x' ? 0 : 1;
	}
	if (!strcmp(kind, "ubsan")) {
		volatile int r = big + 1;

		return r < 0 ? 0 : 1;
	}
	fprintf(stderr, "canary: asan or ubsan\n");
	return 2;
#else
	(void)kind;
	fprintf(stderr, "canary: not a sanitized build\n");
	return 3;
#endif
}

/* ================================================================ replay */

static struct {
	uint32_t syn_ip_be;     /* where the last SYN went: the back-end to answer from */
	uint16_t syn_port_be;
	uint64_t frames;
} replay_seen;

/* The replay's port: frames are looked at (a SYN's destination), not kept. */
static void replay_sink(struct fe_lcore *l, struct rte_mbuf **pkts, uint16_t n)
{
	(void)l;
	for (uint16_t i = 0; i < n; i++) {
		const struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(pkts[i], const void *,
									 RTE_ETHER_HDR_LEN);
		const struct rte_tcp_hdr *tcp = (const void *)((const uint8_t *)ip +
							       rte_ipv4_hdr_len(ip));

		if (tcp->tcp_flags & RTE_TCP_SYN_FLAG) {
			replay_seen.syn_ip_be = ip->dst_addr;
			replay_seen.syn_port_be = tcp->dst_port;
		}
		replay_seen.frames++;
	}
	rte_pktmbuf_free_bulk(pkts, n);
}

/* One frame into the front-end, as the switch hands it over. */
static void replay_frame(uint32_t saddr_be, uint32_t daddr_be, uint16_t sport_be, uint16_t dport_be,
			 uint32_t seq, uint32_t ack, uint8_t flags, uint8_t tos, const void *data,
			 uint16_t len)
{
	struct rte_mbuf *m = fe_pkt_new(&lc, data, len);
	struct fe_tuple t = {.saddr = saddr_be, .daddr = daddr_be, .sport = sport_be,
			     .dport = dport_be};
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;

	if (!m || fe_pkt_push_tcp(&lc, m, &t, seq, ack, flags, 502, NULL, 0)) {
		if (m)
			rte_pktmbuf_free(m);
		return;
	}
	eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	memcpy(&eth->src_addr, cfg.nexthop_mac, 6);
	memcpy(&eth->dst_addr, harness_mac, 6);
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	if (tos) {
		ip->type_of_service = tos;
		ip->hdr_checksum = 0;
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	}
	fe_input(&lc, m);
	fe_tx_flush(&lc);
}

/* What the switch would do between the packets: take the entries queued
 * for it, and confirm those that ask for an answer. */
static void replay_switch(void)
{
	struct fe_offload_req r;
	struct mg_ctl_key k;

	while (rte_ring_sc_dequeue_elem(offload.query_ring, &k, sizeof(k)) == 0)
		;

	while (rte_ring_sc_dequeue_elem(offload.ring, &r, sizeof(r)) == 0) {
		struct fe_offload_result res = {
			.kind = FE_OFFLOAD_ADDED,
			.key = {.client_ip_be = r.e.client_ip_be, .client_port_be = r.e.client_port_be},
		};

		if (r.want_result && r.e.op == MG_CTL_ADD)
			fe_offload_post_result(&offload, &res);
	}
	fe_results_run(&lc);
	fe_tx_flush(&lc);
}

static int run_replay(const char *mode, unsigned long n)
{
	static const char get_close[] = "GET /index.html HTTP/1.1\r\nHost: www.example\r\n"
					"Connection: close\r\n\r\n";
	static const char get_ka[] = "GET /index.html HTTP/1.1\r\nHost: www.example\r\n\r\n";
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 984\r\n\r\n";
	static uint8_t response[1024];
	const int keepalive = !strcmp(mode, "keepalive");
	const char *get = keepalive ? get_ka : get_close;
	const uint16_t get_len = (uint16_t)strlen(get);
	const uint32_t cip = htonl(client_ip);
	const uint8_t admit = mg_tos_with_dscp(0, MG_DSCP_ADMIT);
	const uint8_t known = mg_tos_with_dscp(0, MG_DSCP_KNOWN);
	const uint32_t low = mg_cookie_low_byte(3, 7, 1, 1);
	const uint64_t grace = cfg.grace_us + 1;
	uint32_t c = 1000, s = 0x5a5a0000 | low, cseq = 0, sseq = 0;
	uint16_t port = htons(20000);
	unsigned long done = 0;

	if (strcmp(mode, "close") && !keepalive) {
		fprintf(stderr, "replay: mode must be close or keepalive\n");
		return 2;
	}
	memcpy(response, head, sizeof(head) - 1);
	memset(response + sizeof(head) - 1, 'x', sizeof(response) - (sizeof(head) - 1));
	fe_lcore_fini(&lc);
	fe_lcore_init(&lc, &cfg, pool, 0, harness_mac, &offload, replay_sink, 0);
	lc.now_us = 1000000;
	for (unsigned long i = 0; i < n; i++) {
		if (!keepalive || i == 0) {
			/* A new connection: the handshake's last ACK, then the request,
			 * both with the cookie numbers (the switch admits them). */
			port = htons((uint16_t)(20000 + i % 40000));
			c += 100000;
			s += 0x1000;
			cseq = c + 1;
			sseq = s + 1;
			replay_frame(cip, cfg.vip_be, port, cfg.vip_port_be, cseq, sseq, RTE_TCP_ACK_FLAG,
				     admit, NULL, 0);
			replay_frame(cip, cfg.vip_be, port, cfg.vip_port_be, cseq, sseq,
				     RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, admit, get, get_len);
			cseq += get_len;
			/* The back-end's SYN-ACK, in the client's numbering (the agent). */
			replay_frame(replay_seen.syn_ip_be, cip, replay_seen.syn_port_be, port, s, c + 1,
				     RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 0, NULL, 0);
		} else {
			replay_frame(cip, cfg.vip_be, port, cfg.vip_port_be, cseq, sseq,
				     RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, known, get, get_len);
			cseq += get_len;
		}
		replay_switch();
		if (keepalive) {
			replay_frame(replay_seen.syn_ip_be, cip, replay_seen.syn_port_be, port, sseq, cseq,
				     RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, 0, response, sizeof(response));
			sseq += sizeof(response);
			replay_frame(cip, cfg.vip_be, port, cfg.vip_port_be, cseq, sseq, RTE_TCP_ACK_FLAG,
				     known, NULL, 0);
		} else {
			/* The response and the server's FIN, the client's FIN, the last ACK. */
			replay_frame(replay_seen.syn_ip_be, cip, replay_seen.syn_port_be, port, sseq, cseq,
				     RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG | RTE_TCP_FIN_FLAG, 0, response,
				     sizeof(response));
			sseq += sizeof(response) + 1;
			replay_frame(cip, cfg.vip_be, port, cfg.vip_port_be, cseq, sseq,
				     RTE_TCP_ACK_FLAG | RTE_TCP_FIN_FLAG, known, NULL, 0);
			replay_frame(replay_seen.syn_ip_be, cip, replay_seen.syn_port_be, port, sseq,
				     cseq + 1, RTE_TCP_ACK_FLAG, 0, NULL, 0);
			if (i % 64 == 63) {
				lc.now_us += grace;
				fe_timers_run(&lc);
				fe_tx_flush(&lc);
			}
		}
		replay_switch();
		done++;
	}
	lc.now_us += grace;
	fe_timers_run(&lc);
	fe_tx_flush(&lc);
	replay_switch();
	printf("{\"mode\": \"%s\", \"requests\": %lu, \"answered\": %llu, \"frames_out\": %llu, "
	       "\"flows_left\": %u}\n", mode, done, (unsigned long long)lc.stats.requests,
	       (unsigned long long)replay_seen.frames, lc.ft.count);
	return lc.stats.requests == done ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "parser"))
		return run_parser_tests();
	if (argc >= 3 && !strcmp(argv[1], "pipe")) {
		if (harness_init(argv[2]))
			return 2;
		return run_pipe();
	}
	if (argc >= 4 && !strcmp(argv[1], "fuzz")) {
		if (harness_init(argv[2]))
			return 2;
		int rc = run_fuzz(argv[3], argc >= 5 ? strtoull(argv[4], NULL, 0) : 0);

		harness_fini();
		return rc;
	}
	if (argc >= 3 && !strcmp(argv[1], "canary"))
		return run_canary(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "paths"))
		return run_paths();

	if (argc >= 5 && !strcmp(argv[1], "replay")) {
		if (harness_init(argv[2]))
			return 2;
		int rc = run_replay(argv[3], strtoul(argv[4], NULL, 10));

		harness_fini();
		return rc;
	}
	fprintf(stderr, "usage: %s parser | paths | pipe CONFIG | fuzz CONFIG CASES [SEED] | "
		"canary asan|ubsan | replay CONFIG close|keepalive N\n", argv[0]);
	return 2;
}
