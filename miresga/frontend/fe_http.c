/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * HTTP/1.1 request scanner, parser and body tracker; see fe_http.h for the
 * split and for the verdicts.  Grammar from RFC 9110/9112, narrowed where a
 * load balancer should be stricter than an origin server: a request that two
 * parsers could read differently (bare LF, obs-fold, Content-Length together
 * with Transfer-Encoding, two different lengths) is refused, not guessed at.
 */
#include <stdio.h>
#include <string.h>

#include "fe_http.h"

/* ------------------------------------------------------------ byte classes */

enum {
	C_TCHAR = 1,    /* token character (method, field name) */
	C_VCHAR = 2,    /* visible ASCII */
	C_FIELD = 4,    /* field value: VCHAR, SP, HTAB, obs-text */
	C_HOST = 8,     /* reg-name / IP literal / port characters */
	C_HEX = 16,
};

static uint8_t cls[256];
static volatile int cls_ready;

/* Idempotent; http_init() runs it before any packet thread starts. */
static void classes_init(void)
{
	static const char tspecial[] = "!#$%&'*+-.^_`|~";
	static const char hspecial[] = "-._~!$&'()*+,;=:[]%";

	if (cls_ready)
		return;
	for (int c = 0x21; c <= 0x7e; c++)
		cls[c] |= C_VCHAR | C_FIELD;
	for (int c = 0x80; c <= 0xff; c++)
		cls[c] |= C_FIELD;
	cls[' '] |= C_FIELD;
	cls['\t'] |= C_FIELD;
	for (int c = '0'; c <= '9'; c++)
		cls[c] |= C_TCHAR | C_HOST | C_HEX;
	for (int c = 'a'; c <= 'z'; c++)
		cls[c] |= C_TCHAR | C_HOST;
	for (int c = 'A'; c <= 'Z'; c++)
		cls[c] |= C_TCHAR | C_HOST;
	for (int c = 'a'; c <= 'f'; c++)
		cls[c] |= C_HEX;
	for (int c = 'A'; c <= 'F'; c++)
		cls[c] |= C_HEX;
	for (const char *p = tspecial; *p; p++)
		cls[(uint8_t)*p] |= C_TCHAR;
	for (const char *p = hspecial; *p; p++)
		cls[(uint8_t)*p] |= C_HOST;
	cls_ready = 1;
}

void http_init(void)
{
	classes_init();
}

static inline int is(uint8_t c, uint8_t mask)
{
	return cls[c] & mask;
}

static inline uint8_t lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* ---------------------------------------------------------------- scanner */

enum scan_state {
	S_METHOD0,      /* first byte of the method */
	S_METHOD,
	S_TARGET0,      /* first byte of the request target */
	S_SCHEME,       /* inside "http", sub = letters matched */
	S_SCHEME_S,     /* after "http": 's' or ':' */
	S_COLON,        /* after "https": ':' */
	S_SLASHES,      /* "//", sub = slashes matched */
	S_AUTH0,        /* first authority byte */
	S_AUTH,
	S_TARGET,
	S_VERSION,      /* inside "HTTP/1.", sub = bytes matched */
	S_MINOR,
	S_RL_CR,
	S_RL_LF,
	S_FIELD0,       /* start of a field line, or the final CRLF */
	S_NAME,
	S_VALUE,
	S_VALUE_LF,
	S_END_LF,
};

static const char http_version_prefix[] = "HTTP/1.";

enum http_scan_result http_scan(struct http_scan *s, const uint8_t *p, uint32_t n,
				uint32_t limit, uint32_t *used)
{
	uint32_t i;

	classes_init();
	for (i = 0; i < n; i++) {
		uint8_t c = p[i];
		int ok = 1;

		switch (s->state) {
		case S_METHOD0:
			ok = is(c, C_TCHAR);
			s->state = S_METHOD;
			break;
		case S_METHOD:
			if (c == ' ')
				s->state = S_TARGET0;
			else
				ok = is(c, C_TCHAR);
			break;
		case S_TARGET0:
			if (c == '/' || c == '*') {
				s->state = S_TARGET;
			} else if (lower(c) == 'h') {
				s->state = S_SCHEME;
				s->sub = 1;
			} else {
				ok = 0;
			}
			break;
		case S_SCHEME:
			ok = lower(c) == (uint8_t)"http"[s->sub];
			if (ok && ++s->sub == 4)
				s->state = S_SCHEME_S;
			break;
		case S_SCHEME_S:
			if (lower(c) == 's')
				s->state = S_COLON;
			else if (c == ':')
				s->state = S_SLASHES, s->sub = 0;
			else
				ok = 0;
			break;
		case S_COLON:
			ok = c == ':';
			s->state = S_SLASHES;
			s->sub = 0;
			break;
		case S_SLASHES:
			ok = c == '/';
			if (ok && ++s->sub == 2)
				s->state = S_AUTH0;
			break;
		case S_AUTH0:
			ok = is(c, C_HOST);
			s->state = S_AUTH;
			break;
		case S_AUTH:
			if (c == '/' || c == '?')
				s->state = S_TARGET;
			else if (c == ' ')
				s->state = S_VERSION, s->sub = 0;
			else
				ok = is(c, C_HOST);
			break;
		case S_TARGET:
			if (c == ' ')
				s->state = S_VERSION, s->sub = 0;
			else
				ok = is(c, C_VCHAR) && c != '#';
			break;
		case S_VERSION:
			ok = c == (uint8_t)http_version_prefix[s->sub];
			if (ok && ++s->sub == sizeof(http_version_prefix) - 1)
				s->state = S_MINOR;
			break;
		case S_MINOR:
			ok = c == '0' || c == '1';
			s->state = S_RL_CR;
			break;
		case S_RL_CR:
			ok = c == '\r';
			s->state = S_RL_LF;
			break;
		case S_RL_LF:
			ok = c == '\n';
			s->state = S_FIELD0;
			break;
		case S_FIELD0:
			/* SP/HTAB here would be obs-fold: refused (RFC 9112 5.2). */
			if (c == '\r')
				s->state = S_END_LF;
			else if (is(c, C_TCHAR))
				s->state = S_NAME;
			else
				ok = 0;
			break;
		case S_NAME:
			/* No whitespace before the colon (RFC 9112 5.1). */
			if (c == ':')
				s->state = S_VALUE;
			else
				ok = is(c, C_TCHAR);
			break;
		case S_VALUE:
			if (c == '\r')
				s->state = S_VALUE_LF;
			else
				ok = is(c, C_FIELD);
			break;
		case S_VALUE_LF:
			ok = c == '\n';
			s->state = S_FIELD0;
			break;
		case S_END_LF:
			if (c != '\n') {
				ok = 0;
				break;
			}
			s->pos++;
			*used = i + 1;
			return HTTP_SCAN_DONE;
		default:
			ok = 0;
		}
		if (!ok) {
			*used = i;
			return HTTP_SCAN_BAD;
		}
		if (++s->pos >= limit) {
			*used = i + 1;
			return HTTP_SCAN_TOO_LARGE;
		}
	}
	*used = n;
	return HTTP_SCAN_MORE;
}

/* ------------------------------------------------------ path normal form */

/*
 * Rules match the path the back-end will serve, not the bytes on the wire:
 * otherwise `/static/../private/x`, `/static/%2e%2e/private/x` or
 * `//private/x` match a /static rule (or none) and reach the back-ends of
 * one cluster, which then serve /private/x, or slip past a rule that keeps
 * /private on the front-end (offload=0).  The normal form is RFC 3986's
 * (6.2.2), made to agree with what the back-ends (nginx 1.22, Debian 12)
 * resolve; tests/test_uri_normalization.py checks that against a running
 * nginx, form by form:
 *
 *  - %XX of an unreserved character (ALPHA DIGIT - . _ ~) is decoded
 *    (RFC 3986 2.3): `/%70rivate` is `/private`, `%2e` is `.`;
 *  - any other %xx is kept, its hex digits upper-cased (6.2.2.1);
 *  - runs of '/' become one, before dot-segments go: nginx merges slashes
 *    (merge_slashes on, the default) as it parses, so `/static//../x` is
 *    `/x` to it, where RFC 3986 alone would give `/static/x`;
 *  - "." and ".." segments are removed (5.2.4), including the decoded ones;
 *  - the query is not part of the path and is left alone.
 *
 * Refused (400, counted as path_refused):
 *  - a ".." that would climb above the root: nginx answers 400, where
 *    RFC 3986 would drop it;
 *  - an invalid %-escape (`%zz`, `%4`, a trailing `%`): nginx answers 400;
 *  - %00: nginx answers 400;
 *  - %2F and %5C, and a raw '\': nginx decodes %2F into a separator and
 *    keeps '\' a character, other servers refuse %2F (Apache) or take '\'
 *    for a separator (IIS, some frameworks).  Their meaning is the
 *    back-end's choice, so no single normal form exists; HAProxy 2.6 cannot
 *    decode them either.  Refusing keeps every target in agreement.
 *
 * Characters that are neither unreserved nor '/' keep their (upper-cased)
 * escapes here while nginx decodes them (`%20` is a space to it).  That
 * cannot change which rule matches because rule prefixes may only hold
 * unreserved characters and '/' (fe_config.c and Service check it): both
 * forms agree up to the first such character, and no prefix reaches past it.
 *
 * The request itself is forwarded as the client sent it: the front-end
 * splices the client's sequence space onto the back-end's, so it cannot
 * change the request's length, and the back-end normalises the same way.
 */

static inline int hex_digit(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static inline int unreserved(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

int64_t http_normalize_path(uint8_t *p, uint32_t len)
{
	static const char upper_hex[] = "0123456789ABCDEF";
	uint32_t r, w = 0, n;

	if (len == 0 || p[0] != '/')
		return -1;
	/* 1. escapes: decode the unreserved, upper-case the rest (w <= r) */
	for (r = 0; r < len; r++) {
		uint8_t c = p[r];

		if (c == '\\' || c == '#' || c == '?')
			return -1;
		if (c == '%') {
			int hi, lo;
			uint8_t v;

			if (len - r < 3)
				return -1;
			hi = hex_digit(p[r + 1]);
			lo = hex_digit(p[r + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			v = (uint8_t)(hi << 4 | lo);
			if (v == 0 || v == '/' || v == '\\')
				return -1;
			r += 2;
			if (unreserved(v)) {
				p[w++] = v;
			} else {
				p[w++] = '%';
				p[w++] = (uint8_t)upper_hex[v >> 4];
				p[w++] = (uint8_t)upper_hex[v & 15];
			}
			continue;
		}
		p[w++] = c;
	}
	/* 2. segments: merge slashes, drop "." and "..", in place (w <= r) */
	n = w;
	w = 0;
	r = 0;
	while (r < n) {
		uint32_t s, seg;

		while (r < n && p[r] == '/')
			r++;
		if (r == n) {
			p[w++] = '/';           /* a trailing slash, or the root */
			break;
		}
		s = r;
		while (r < n && p[r] != '/')
			r++;
		seg = r - s;
		if (seg == 1 && p[s] == '.') {
			if (r == n)
				p[w++] = '/';   /* "/a/." is "/a/" */
			continue;
		}
		if (seg == 2 && p[s] == '.' && p[s + 1] == '.') {
			if (w == 0)
				return -1;      /* above the root */
			while (p[w - 1] != '/')
				w--;
			w--;                    /* "/a/b" -> "/a" */
			if (r == n)
				p[w++] = '/';   /* "/a/b/.." is "/a/" */
			continue;
		}
		p[w++] = '/';
		memmove(p + w, p + s, seg);
		w += seg;
	}
	if (w == 0)
		p[w++] = '/';
	return w;
}

/* ----------------------------------------------------------------- parser */

static int eq_ci(const uint8_t *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return 0;
	for (size_t i = 0; i < alen; i++)
		if (lower(a[i]) != (uint8_t)b[i])
			return 0;
	return 1;
}

static void trim(const uint8_t **v, uint32_t *len)
{
	while (*len && ((*v)[0] == ' ' || (*v)[0] == '\t'))
		(*v)++, (*len)--;
	while (*len && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t'))
		(*len)--;
}

/* Calls fn on each comma-separated element, trimmed; empty ones included. */
static void each_element(const uint8_t *v, uint32_t len,
			 void (*fn)(const uint8_t *, uint32_t, void *), void *arg)
{
	uint32_t start = 0;

	for (uint32_t i = 0; i <= len; i++) {
		if (i == len || v[i] == ',') {
			const uint8_t *e = v + start;
			uint32_t elen = i - start;

			trim(&e, &elen);
			fn(e, elen, arg);
			start = i + 1;
		}
	}
}

struct conn_tokens {
	uint8_t close, keep_alive, upgrade;
};

static void conn_token(const uint8_t *e, uint32_t len, void *arg)
{
	struct conn_tokens *t = arg;

	if (eq_ci(e, len, "close"))
		t->close = 1;
	else if (eq_ci(e, len, "keep-alive"))
		t->keep_alive = 1;
	else if (eq_ci(e, len, "upgrade"))
		t->upgrade = 1;
}

struct last_element {
	const uint8_t *e;
	uint32_t len;
};

static void last_element(const uint8_t *e, uint32_t len, void *arg)
{
	struct last_element *l = arg;

	l->e = e;
	l->len = len;
}

static const uint8_t slash[] = "/";

int http_parse(uint8_t *buf, uint32_t len, struct http_request *req)
{
	const uint8_t *p = buf, *end = buf + len, *sp;
	uint8_t *path = NULL;   /* the path inside buf, to normalise last */
	const uint8_t *hdr_host = NULL;
	uint32_t hdr_host_len = 0;
	int host_fields = 0, te_fields = 0, upgrade_field = 0, uri_host = 0;
	struct conn_tokens conn = {0};

	classes_init();
	memset(req, 0, sizeof(*req));

	/* request line: the scanner vouched for its shape */
	sp = memchr(p, ' ', (size_t)(end - p));
	if (!sp)
		return 400;
	req->method = p;
	req->method_len = (uint32_t)(sp - p);
	p = sp + 1;
	sp = memchr(p, ' ', (size_t)(end - p));
	if (!sp || end - sp < 11)
		return 400;
	req->target = p;
	req->target_len = (uint32_t)(sp - p);
	p = sp + 1 + sizeof(http_version_prefix) - 1;
	req->version_minor = (uint8_t)(*p - '0');
	p += 3; /* minor digit, CR LF */

	/* where the route's path and host come from */
	if (req->target[0] == '*') {
		/* Methods are case-sensitive (RFC 9110 9.1): only OPTIONS. */
		if (req->target_len != 1 || req->method_len != 7 || memcmp(req->method, "OPTIONS", 7))
			return 400;
		req->path = req->target;
		req->path_len = 1;
	} else if (req->target[0] == '/') {
		const uint8_t *q = memchr(req->target, '?', req->target_len);

		path = buf + (req->target - buf);
		req->path_len = q ? (uint32_t)(q - req->target) : req->target_len;
	} else {
		/* absolute-form: scheme "://" authority [path] [?query]; the
		 * scanner vouched for the "://", this only refuses to trust it. */
		const uint8_t *slashes = memchr(req->target, '/', req->target_len);
		const uint8_t *tend = req->target + req->target_len, *a, *e;

		if (!slashes || tend - slashes < 3)
			return 400;
		a = e = slashes + 2;
		while (e < tend && *e != '/' && *e != '?')
			e++;
		req->host = a;
		req->host_len = (uint32_t)(e - a);
		uri_host = 1;
		if (e < tend && *e == '/') {
			const uint8_t *q = memchr(e, '?', (size_t)(tend - e));

			path = buf + (e - buf);
			req->path_len = (uint32_t)((q ? q : tend) - e);
		} else {
			req->path = slash;
			req->path_len = 1;
		}
	}

	/* field lines */
	while (p < end && *p != '\r') {
		const uint8_t *colon = memchr(p, ':', (size_t)(end - p));
		const uint8_t *cr, *v;
		uint32_t nlen, vlen;

		if (!colon)
			return 400;
		cr = memchr(colon, '\r', (size_t)(end - colon));
		if (!cr)
			return 400;
		nlen = (uint32_t)(colon - p);
		v = colon + 1;
		vlen = (uint32_t)(cr - v);
		trim(&v, &vlen);

		if (eq_ci(p, nlen, "host")) {
			if (++host_fields > 1)
				return 400;
			for (uint32_t i = 0; i < vlen; i++)
				if (!is(v[i], C_HOST))
					return 400;
			hdr_host = v;
			hdr_host_len = vlen;
		} else if (eq_ci(p, nlen, "content-length")) {
			uint64_t cl = 0;

			if (vlen == 0 || vlen > 18)
				return 400;
			for (uint32_t i = 0; i < vlen; i++) {
				if (v[i] < '0' || v[i] > '9')
					return 400;
				cl = cl * 10 + (uint64_t)(v[i] - '0');
			}
			if (req->has_length && cl != req->content_length)
				return 400;
			req->has_length = 1;
			req->content_length = cl;
		} else if (eq_ci(p, nlen, "transfer-encoding")) {
			struct last_element last = {0};

			if (++te_fields > 1)
				return 400;
			each_element(v, vlen, last_element, &last);
			/* chunked must be the final coding or the length is unknowable */
			if (!eq_ci(last.e, last.len, "chunked"))
				return 400;
			req->chunked = 1;
		} else if (eq_ci(p, nlen, "connection")) {
			each_element(v, vlen, conn_token, &conn);
		} else if (eq_ci(p, nlen, "upgrade")) {
			upgrade_field = 1;
		}
		p = cr + 2;
	}

	if (host_fields == 0 && req->version_minor == 1)
		return 400;
	/* Both framings at once is the classic smuggling vector: refuse it. */
	if (req->chunked && req->has_length)
		return 400;
	if (req->chunked && req->version_minor == 0)
		return 400;
	if (!uri_host && host_fields) {
		req->host = hdr_host;
		req->host_len = hdr_host_len;
	}
	req->has_host = uri_host || host_fields;
	req->keep_alive = req->version_minor == 1 ? !conn.close : (conn.keep_alive && !conn.close);
	req->upgrade = upgrade_field && conn.upgrade;
	/* Last, so that path_refused means the header is otherwise fine. */
	if (path) {
		int64_t n = http_normalize_path(path, req->path_len);

		if (n < 0) {
			req->path_refused = 1;
			return 400;
		}
		req->path = path;
		req->path_len = (uint32_t)n;
	}
	return 0;
}

/* ------------------------------------------------------------ body tracker */

enum body_state {
	B_SIZE0,
	B_SIZE,
	B_SIZE_WS,
	B_EXT,
	B_SIZE_LF,
	B_DATA,
	B_DATA_CR,
	B_DATA_LF,
	B_TRAILER0,
	B_TRAILER,
	B_TRAILER_LF,
	B_FINAL_LF,
};

void http_body_init(struct http_body *b, const struct http_request *req)
{
	memset(b, 0, sizeof(*b));
	if (req->chunked) {
		b->mode = HTTP_BODY_CHUNKED;
		b->state = B_SIZE0;
	} else if (req->has_length && req->content_length) {
		b->mode = HTTP_BODY_LENGTH;
		b->left = req->content_length;
	} else {
		b->mode = HTTP_BODY_NONE;
		b->done = 1;
	}
}

static inline int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	return lower(c) - 'a' + 10;
}

int64_t http_body_feed(struct http_body *b, const uint8_t *p, uint32_t n)
{
	uint32_t i = 0;

	classes_init();
	if (b->done)
		return 0;
	if (b->mode == HTTP_BODY_LENGTH) {
		uint64_t take = b->left < n ? b->left : n;

		b->left -= take;
		b->done = b->left == 0;
		return (int64_t)take;
	}
	while (i < n) {
		uint8_t c = p[i];

		switch (b->state) {
		case B_SIZE0:
			if (!is(c, C_HEX))
				return -1;
			b->left = (uint64_t)hexval(c);
			b->digits = 1;
			b->state = B_SIZE;
			break;
		case B_SIZE:
			if (is(c, C_HEX)) {
				if (++b->digits > 15)
					return -1;
				b->left = b->left * 16 + (uint64_t)hexval(c);
			} else if (c == ';') {
				b->state = B_EXT;
			} else if (c == ' ' || c == '\t') {
				b->state = B_SIZE_WS;
			} else if (c == '\r') {
				b->state = B_SIZE_LF;
			} else {
				return -1;
			}
			break;
		case B_SIZE_WS:
			if (c == ';')
				b->state = B_EXT;
			else if (c != ' ' && c != '\t')
				return -1;
			break;
		case B_EXT:
			if (c == '\r')
				b->state = B_SIZE_LF;
			else if (!is(c, C_FIELD))
				return -1;
			break;
		case B_SIZE_LF:
			if (c != '\n')
				return -1;
			b->state = b->left ? B_DATA : B_TRAILER0;
			break;
		case B_DATA: {
			uint64_t take = b->left < (uint64_t)(n - i) ? b->left : (uint64_t)(n - i);

			b->left -= take;
			i += (uint32_t)take;
			if (!b->left)
				b->state = B_DATA_CR;
			continue;
		}
		case B_DATA_CR:
			if (c != '\r')
				return -1;
			b->state = B_DATA_LF;
			break;
		case B_DATA_LF:
			if (c != '\n')
				return -1;
			b->state = B_SIZE0;
			break;
		case B_TRAILER0:
			if (c == '\r')
				b->state = B_FINAL_LF;
			else if (is(c, C_TCHAR))
				b->state = B_TRAILER;
			else
				return -1;
			break;
		case B_TRAILER:
			if (c == '\r')
				b->state = B_TRAILER_LF;
			else if (!is(c, C_FIELD))
				return -1;
			break;
		case B_TRAILER_LF:
			if (c != '\n')
				return -1;
			b->state = B_TRAILER0;
			break;
		case B_FINAL_LF:
			if (c != '\n')
				return -1;
			b->done = 1;
			return (int64_t)i + 1;
		}
		i++;
	}
	return (int64_t)n;
}

/* ------------------------------------------------------------- responses */

const char *http_reason(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

int http_error_response(int status, char *buf, size_t len)
{
	char body[64];
	int blen = snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));

	return snprintf(buf, len,
			"HTTP/1.1 %d %s\r\n"
			"Server: miresga-frontend\r\n"
			"Content-Type: text/plain\r\n"
			"Content-Length: %d\r\n"
			"Connection: close\r\n"
			"\r\n"
			"%s",
			status, http_reason(status), blen, body);
}
