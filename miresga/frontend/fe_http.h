/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * HTTP/1.1 request handling for the front-end, in three parts:
 *
 * 1. The scanner (http_scan) checks the syntax of a request header byte by
 *    byte as segments arrive and finds where it ends.  Its state is a few
 *    bytes kept in the flow, so each byte is looked at once however the
 *    client splits the header (a client that sends one byte per segment costs
 *    linear time, not quadratic).
 * 2. The parser (http_parse) runs once, on the complete header copied into
 *    one buffer, and extracts what routing and framing need: path, host,
 *    body length or chunking, keep-alive.  It also applies the checks that
 *    need the whole header (one Host, consistent Content-Length, ...).
 * 3. The body tracker (http_body_feed) follows Content-Length or chunked
 *    framing over the bytes that are forwarded, so the front-end knows where
 *    the next request on a keep-alive connection starts.
 *
 * The verdicts, which tests/http_oracle.py restates in Python for the fuzzer:
 *  - the first byte that cannot continue a valid header gives 400, as soon
 *    as it arrives;
 *  - a header (request line to the empty line, inclusive) longer than the
 *    limit gives 431, once `limit` bytes arrived without an end;
 *  - a complete header that breaks a whole-header rule gives 400;
 *  - the connection ending (FIN) inside a header gives 400, a header still
 *    incomplete when the request timer fires gives 408.
 * Accepted: origin-form, absolute-form (http/https) and "*" targets;
 * HTTP/1.0 and HTTP/1.1; CRLF line ends only (a bare LF is refused, which
 * closes the door on LF/CRLF smuggling differences with the back-ends).  A
 * '#' anywhere in the target is refused as it arrives: a fragment is never
 * part of a request target (RFC 9112 3.2), HAProxy refuses it, and nginx
 * would cut the path there, so the back-end would see another path.
 *
 * Rules match the request's path in a normal form (http_normalize_path), the
 * path the back-ends actually serve; a path that has no single meaning is
 * refused with 400 (the parser says so in req->path_refused).
 */
#ifndef FE_HTTP_H
#define FE_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* Builds the byte-class table; call once before packet threads start. */
void http_init(void);

enum http_scan_result {
	HTTP_SCAN_MORE = 0,     /* valid so far, header not complete */
	HTTP_SCAN_DONE,         /* header complete; scan->pos is its length */
	HTTP_SCAN_BAD,          /* 400 */
	HTTP_SCAN_TOO_LARGE,    /* 431 */
};

struct http_scan {
	uint32_t pos;   /* bytes of the header consumed so far */
	uint8_t state;
	uint8_t sub;    /* position inside a literal ("HTTP/1.", "://") */
	uint8_t flags;
};

static inline void http_scan_init(struct http_scan *s)
{
	s->pos = 0;
	s->state = 0;
	s->sub = 0;
	s->flags = 0;
}

/*
 * Feed `n` more bytes.  *used is set to the bytes of `p` that belong to the
 * header: all of them unless the result is DONE (the rest is body or the
 * next request) or BAD/TOO_LARGE (scanning stopped there).
 */
enum http_scan_result http_scan(struct http_scan *s, const uint8_t *p, uint32_t n,
				uint32_t limit, uint32_t *used);

struct http_request {
	const uint8_t *method;
	const uint8_t *target;
	const uint8_t *path;    /* target without query; "*" for asterisk-form */
	const uint8_t *host;    /* absolute-form authority, else Host; may hold a port */
	uint64_t content_length;
	/* 32 bits: a header may be max_header_bytes (up to 1 MiB) long, and
	 * every one of these can be nearly all of it. */
	uint32_t method_len;
	uint32_t target_len;
	uint32_t path_len;
	uint32_t host_len;
	uint8_t has_host;       /* a host was given (possibly empty) */
	uint8_t version_minor;  /* HTTP/1.x */
	uint8_t keep_alive;
	uint8_t chunked;
	uint8_t has_length;
	uint8_t upgrade;        /* after this request the stream is not HTTP any more */
	uint8_t path_refused;   /* 400 because the path has no normal form */
};

/*
 * Parse a complete header that http_scan accepted.  Returns 0 or 400.  The
 * path is rewritten in place, inside `buf`, to its normal form (it only
 * shrinks), and req->path points at that; req->target keeps the raw bytes up
 * to the path's end.  `buf` is a copy: the request goes to the back-end as
 * the client sent it.
 */
int http_parse(uint8_t *buf, uint32_t len, struct http_request *req);

/*
 * The normal form of a request path (starting with '/'), in place: returns
 * its new length, or -1 if the path is refused.  See fe_http.c for what is
 * normalised and refused, and why; common/service.py's
 * normalize_path() is the same in Python, and tests/fixtures/uri_paths.toml
 * holds the cases both are held to.
 */
int64_t http_normalize_path(uint8_t *path, uint32_t len);

enum http_body_mode { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };

struct http_body {
	uint64_t left;      /* bytes left in the body or in the current chunk */
	uint8_t mode;
	uint8_t state;      /* chunked decoder state */
	uint8_t digits;     /* hex digits of the current chunk size */
	uint8_t done;
};

void http_body_init(struct http_body *b, const struct http_request *req);

/*
 * Feed bytes that follow the header.  Returns how many of them belong to
 * this request's body (the rest start the next request), or -1 if chunked
 * framing is broken.  b->done is set once the body has ended.
 */
int64_t http_body_feed(struct http_body *b, const uint8_t *p, uint32_t n);

/* The complete response the front-end sends for its own errors. */
int http_error_response(int status, char *buf, size_t len);
const char *http_reason(int status);

#endif /* FE_HTTP_H */
