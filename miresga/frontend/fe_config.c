/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The config file reader.  The format is line-oriented on purpose: the
 * front-end links no JSON or TOML library, the Python launcher is the only
 * writer, and a researcher can still read and edit a rendered file by hand.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fe_config.h"

#define MAX_TOKENS (4 + MG_MAX_BACKENDS)

const char *fe_policy_name(enum fe_policy p)
{
	switch (p) {
	case FE_POLICY_ROUND_ROBIN: return "round-robin";
	case FE_POLICY_LEAST_CONNECTIONS: return "least-connections";
	case FE_POLICY_HASH: return "hash";
	}
	return "?";
}

static const char *const handoff_names[] = {
	[FE_HANDOFF_ASYNC] = "async",
	[FE_HANDOFF_CONFIRMED] = "confirmed",
	[FE_HANDOFF_DATAPLANE] = "dataplane",
};

const char *fe_handoff_name(int handoff)
{
	return handoff >= 0 && handoff <= FE_HANDOFF_DATAPLANE ? handoff_names[handoff] : "?";
}

static int fail(char *err, size_t errlen, int line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "line %d: ", line);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_ip(const char *s, uint32_t *ip_be)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*ip_be = a.s_addr;
	return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];
	char tail;

	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (b[i] > 0xff)
			return -1;
		mac[i] = (uint8_t)b[i];
	}
	return 0;
}

static int parse_policy(const char *s, enum fe_policy *p)
{
	if (!strcmp(s, "round-robin"))
		*p = FE_POLICY_ROUND_ROBIN;
	else if (!strcmp(s, "least-connections"))
		*p = FE_POLICY_LEAST_CONNECTIONS;
	else if (!strcmp(s, "hash"))
		*p = FE_POLICY_HASH;
	else
		return -1;
	return 0;
}

/*
 * Scalar directives: name, where, bounds and default in the unit the file
 * uses.  The one place a scalar's default is stated in C: fe_config_defaults()
 * and --print-defaults both read it, and tests/test_frontend_defaults.py
 * compares what it prints with the Python model (miresga/config.py).
 * UNSTATED: 0 means the directive was left out (printed as null).
 */
enum unit { U_COUNT, U_MS_TO_US, U_US };
#define UNSTATED 1
struct scalar {
	const char *name;
	size_t off;
	int width; /* 4 or 8 bytes, or 1 */
	uint64_t min, max;
	enum unit unit;
	uint64_t def;
	int flags;
};

#define SC(n, f, w, lo, hi, u, d) { n, offsetof(struct fe_config, f), w, lo, hi, u, d, 0 }
#define SC_UNSTATED(n, f, w, lo, hi, u) \
	{ n, offsetof(struct fe_config, f), w, lo, hi, u, 0, UNSTATED }
static const struct scalar scalars[] = {
	SC("vip_index", vip_idx, 1, 0, MG_MAX_VIPS - 1, U_COUNT, 0),
	SC("vip_wscale", vip_wscale, 1, 0, 14, U_COUNT, 7),
	SC("max_header_bytes", max_header_bytes, 4, 256, 1 << 20, U_COUNT, 8192),
	SC("hold_limit_bytes", hold_limit_bytes, 4, 256, 16 << 20, U_COUNT, 8192 + 65536),
	SC("hold_pool_percent", hold_pool_percent, 4, 1, 90, U_COUNT, 50),
	SC("request_timeout_ms", request_timeout_us, 8, 1, 3600 * 1000, U_MS_TO_US, 10 * 1000),
	SC("syn_timeout_ms", syn_timeout_us, 8, 1, 600 * 1000, U_MS_TO_US, 1000),
	SC("syn_retries", syn_retries, 4, 0, 8, U_COUNT, 1),
	SC("grace_ms", grace_us, 8, 1, 600 * 1000, U_MS_TO_US, 2000),
	SC("idle_timeout_ms", idle_timeout_us, 8, 1, 24 * 3600 * 1000ull, U_MS_TO_US, 90 * 1000),
	SC("answer_rto_ms", answer_rto_us, 8, 1, 60 * 1000, U_MS_TO_US, 200),
	SC("answer_retries", answer_retries, 4, 0, 16, U_COUNT, 3),
	SC("backend_down_ms", backend_down_us, 8, 0, 3600 * 1000, U_MS_TO_US, 2000),
	SC("flow_capacity", flow_capacity, 4, 1, 1 << 24, U_COUNT, 65536),
	SC("mbufs", n_mbufs, 4, 1023, 1 << 22, U_COUNT, 16383),
	SC("idle_sleep_max_us", idle_sleep_max_us, 4, 0, 1000 * 1000, U_US, 500),
	SC("watchdog_ms", watchdog_us, 8, 10, 600 * 1000, U_MS_TO_US, 2000),
	SC("offload_after_bytes", offload_after_bytes, 4, 0, 1u << 30, U_COUNT, 0),
	SC("offload_ring_size", offload_ring_size, 4, 64, 1 << 24, U_COUNT, 65536),
	SC("verify_checksums", verify_checksums, 1, 0, 1, U_COUNT, 1),
	SC("require_admit", require_admit, 1, 0, 1, U_COUNT, 1),
	SC("confirm_timeout_ms", confirm_timeout_us, 8, 1, 60 * 1000, U_MS_TO_US, 100),
	SC("drain_quiet_ms", drain_quiet_us, 8, 1, 10 * 1000, U_MS_TO_US, 50),
	/* the deployment's other timeouts, which idle_timeout_ms must nest with */
	SC_UNSTATED("filter_period_ms", filter_period_us, 8, 1, 24 * 3600 * 1000ull, U_MS_TO_US),
	SC_UNSTATED("switch_idle_ms", switch_idle_us, 8, 1, 24 * 3600 * 1000ull, U_MS_TO_US),
	SC_UNSTATED("agent_idle_ms", agent_idle_us, 8, 1, 24 * 3600 * 1000ull, U_MS_TO_US),
};

#define N_SCALARS (sizeof(scalars) / sizeof(scalars[0]))

static void store_scalar(struct fe_config *cfg, const struct scalar *sc, uint64_t v)
{
	char *base = (char *)cfg + sc->off;

	if (sc->unit == U_MS_TO_US)
		v *= 1000;
	switch (sc->width) {
	case 1: *(uint8_t *)base = (uint8_t)v; break;
	case 4: *(uint32_t *)base = (uint32_t)v; break;
	default: *(uint64_t *)base = v; break;
	}
}

void fe_config_defaults(struct fe_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_SCALARS; i++)
		store_scalar(cfg, &scalars[i], scalars[i].def);
	cfg->vip_port_be = htons(80);
	cfg->default_cluster = -1;
	cfg->handoff = FE_HANDOFF_DATAPLANE;
	for (int i = 0; i < MG_MAX_BACKENDS; i++)
		cfg->backends[i].cluster = -1;
}

static int set_scalar(struct fe_config *cfg, const struct scalar *sc, const char *val)
{
	uint64_t v;

	if (parse_u64(val, UINT64_MAX, &v) || v < sc->min || v > sc->max)
		return -1;
	store_scalar(cfg, sc, v);
	return 0;
}

/* A scalar's value in the file's unit. */
static uint64_t get_scalar(const struct fe_config *cfg, const struct scalar *sc)
{
	const char *base = (const char *)cfg + sc->off;
	uint64_t v;

	switch (sc->width) {
	case 1: v = *(const uint8_t *)base; break;
	case 4: v = *(const uint32_t *)base; break;
	default: v = *(const uint64_t *)base; break;
	}
	return sc->unit == U_MS_TO_US ? v / 1000 : v;
}

void fe_config_print_defaults(FILE *out)
{
	static struct fe_config cfg;

	fe_config_defaults(&cfg);
	/* The directives that are not one number: required ones and lists have
	 * no default (null, []); the rest say what their absence means. */
	fprintf(out, "{\"vip\": {\"ip\": null, \"port\": %u}, \"nexthop_mac\": null, "
		"\"backend\": [], \"cluster\": [], \"rule\": [], \"default_cluster\": null, "
		"\"control\": null, \"control_key\": null, \"stats_socket\": null, "
		"\"handoff\": \"%s\"",
		ntohs(cfg.vip_port_be), fe_handoff_name(cfg.handoff));
	for (size_t i = 0; i < N_SCALARS; i++) {
		uint64_t v = get_scalar(&cfg, &scalars[i]);

		if ((scalars[i].flags & UNSTATED) && !v)
			fprintf(out, ", \"%s\": null", scalars[i].name);
		else
			fprintf(out, ", \"%s\": %llu", scalars[i].name, (unsigned long long)v);
	}
	fprintf(out, "}\n");
}

/*
 * Rules match normalised paths (fe_http.c), so a prefix must be something a
 * normalised path can start with: unreserved characters and '/' only (the
 * normal form's escapes and nginx's decoded bytes agree up to anything else),
 * no "//", no complete "." or ".." segment.  NULL if fine, else why not.
 */
static const char *prefix_problem(const char *p)
{
	for (const char *c = p; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("-._~/", *c))
			return "may hold only letters, digits, '-', '.', '_', '~' and '/'";
	if (strstr(p, "//"))
		return "has '//', which no normalised path has";
	if (strstr(p, "/./") || strstr(p, "/../"))
		return "has a '.' or '..' segment, which no normalised path has";
	return NULL;
}

static int parse_rule(struct fe_config *cfg, char **tok, int ntok, int line, char *err, size_t errlen)
{
	struct fe_rule_cfg *r;
	int have_cluster = 0;

	if (cfg->n_rules >= FE_MAX_RULES)
		return fail(err, errlen, line, "more than %d rules", FE_MAX_RULES);
	r = &cfg->rules[cfg->n_rules];
	memset(r, 0, sizeof(*r));
	r->offload = 1;
	r->prefix[0] = '/';
	r->prefix_len = 1;
	for (int i = 1; i < ntok; i++) {
		char *eq = strchr(tok[i], '=');
		uint64_t v;
		size_t len;

		if (!eq)
			return fail(err, errlen, line, "rule: expected key=value, got '%s'", tok[i]);
		*eq++ = 0;
		len = strlen(eq);
		if (!strcmp(tok[i], "cluster")) {
			if (parse_u64(eq, FE_MAX_CLUSTERS - 1, &v))
				return fail(err, errlen, line, "rule: bad cluster '%s'", eq);
			r->cluster = (int16_t)v;
			have_cluster = 1;
		} else if (!strcmp(tok[i], "offload")) {
			if (parse_u64(eq, 1, &v))
				return fail(err, errlen, line, "rule: offload must be 0 or 1");
			r->offload = (uint8_t)v;
		} else if (!strcmp(tok[i], "prefix")) {
			const char *why;

			if (eq[0] != '/' || len >= FE_PREFIX_MAX)
				return fail(err, errlen, line, "rule: prefix must start with / and be < %d bytes",
					    FE_PREFIX_MAX);
			why = prefix_problem(eq);
			if (why)
				return fail(err, errlen, line, "rule: prefix '%s' %s", eq, why);
			memcpy(r->prefix, eq, len + 1);
			r->prefix_len = (uint16_t)len;
		} else if (!strcmp(tok[i], "host")) {
			if (len == 0 || len >= FE_HOST_MAX)
				return fail(err, errlen, line, "rule: host must be 1..%d bytes", FE_HOST_MAX - 1);
			for (size_t k = 0; k < len; k++)
				r->host[k] = (char)tolower((unsigned char)eq[k]);
			r->host[len] = 0;
			r->host_len = (uint16_t)len;
		} else {
			return fail(err, errlen, line, "rule: unknown key '%s'", tok[i]);
		}
	}
	if (!have_cluster)
		return fail(err, errlen, line, "rule: cluster= is required");
	cfg->n_rules++;
	return 0;
}

static int parse_line(struct fe_config *cfg, char **tok, int ntok, int line, char *err, size_t errlen)
{
	const char *d = tok[0];
	uint64_t v;

	for (size_t i = 0; i < N_SCALARS; i++) {
		if (strcmp(d, scalars[i].name))
			continue;
		if (ntok != 2 || set_scalar(cfg, &scalars[i], tok[1]))
			return fail(err, errlen, line, "%s: expected one integer in [%llu, %llu]", d,
				    (unsigned long long)scalars[i].min,
				    (unsigned long long)scalars[i].max);
		return 0;
	}
	if (!strcmp(d, "vip")) {
		if (ntok != 3 || parse_ip(tok[1], &cfg->vip_be) || parse_u64(tok[2], 65535, &v) || !v)
			return fail(err, errlen, line, "vip: expected IPV4 PORT");
		cfg->vip_port_be = htons((uint16_t)v);
	} else if (!strcmp(d, "nexthop_mac")) {
		if (ntok != 2 || parse_mac(tok[1], cfg->nexthop_mac))
			return fail(err, errlen, line, "nexthop_mac: expected aa:bb:cc:dd:ee:ff");
		cfg->has_nexthop = 1;
	} else if (!strcmp(d, "backend")) {
		uint32_t ip;
		uint64_t port;

		if (ntok != 4 || parse_u64(tok[1], MG_MAX_BACKENDS - 1, &v) || parse_ip(tok[2], &ip) ||
		    parse_u64(tok[3], 65535, &port) || !port)
			return fail(err, errlen, line, "backend: expected INDEX(0-255) IPV4 PORT");
		if (cfg->backends[v].present)
			return fail(err, errlen, line, "backend: index %llu defined twice",
				    (unsigned long long)v);
		cfg->backends[v].ip_be = ip;
		cfg->backends[v].port_be = htons((uint16_t)port);
		cfg->backends[v].present = 1;
		if (v + 1 > cfg->n_backends)
			cfg->n_backends = (uint16_t)(v + 1);
	} else if (!strcmp(d, "cluster")) {
		struct fe_cluster_cfg *c;

		if (ntok < 5 || parse_u64(tok[1], FE_MAX_CLUSTERS - 1, &v))
			return fail(err, errlen, line, "cluster: expected INDEX NAME POLICY BACKEND...");
		if (v != cfg->n_clusters)
			return fail(err, errlen, line, "cluster: indices must be 0, 1, 2... in order");
		c = &cfg->clusters[v];
		if (strlen(tok[2]) >= FE_NAME_MAX)
			return fail(err, errlen, line, "cluster: name longer than %d", FE_NAME_MAX - 1);
		strcpy(c->name, tok[2]);
		if (parse_policy(tok[3], &c->policy))
			return fail(err, errlen, line, "cluster: unknown policy '%s'", tok[3]);
		for (int i = 4; i < ntok; i++) {
			uint64_t b;

			if (parse_u64(tok[i], MG_MAX_BACKENDS - 1, &b) || !cfg->backends[b].present)
				return fail(err, errlen, line,
					    "cluster: '%s' is not a back-end defined above", tok[i]);
			if (cfg->backends[b].cluster >= 0)
				return fail(err, errlen, line, "cluster: back-end %llu is already in cluster %d",
					    (unsigned long long)b, cfg->backends[b].cluster);
			cfg->backends[b].cluster = (int16_t)v;
			c->backends[c->n_backends++] = (uint8_t)b;
		}
		cfg->n_clusters++;
	} else if (!strcmp(d, "rule")) {
		return parse_rule(cfg, tok, ntok, line, err, errlen);
	} else if (!strcmp(d, "default_cluster")) {
		if (ntok != 2 || parse_u64(tok[1], FE_MAX_CLUSTERS - 1, &v))
			return fail(err, errlen, line, "default_cluster: expected a cluster index");
		cfg->default_cluster = (int16_t)v;
	} else if (!strcmp(d, "control")) {
		if (ntok != 3 || strlen(tok[1]) >= sizeof(cfg->control_host) ||
		    parse_u64(tok[2], 65535, &v) || !v)
			return fail(err, errlen, line, "control: expected HOST PORT");
		strcpy(cfg->control_host, tok[1]);
		cfg->control_port = (uint16_t)v;
	} else if (!strcmp(d, "control_key")) {
		if (ntok != 2 || strlen(tok[1]) >= sizeof(cfg->control_key))
			return fail(err, errlen, line, "control_key: expected a path shorter than %zu",
				    sizeof(cfg->control_key));
		strcpy(cfg->control_key, tok[1]);
	} else if (!strcmp(d, "handoff")) {
		int h = -1;

		for (int i = 0; ntok == 2 && i <= FE_HANDOFF_DATAPLANE; i++)
			if (!strcmp(tok[1], handoff_names[i]))
				h = i;
		if (h < 0)
			return fail(err, errlen, line, "handoff: expected async, confirmed or dataplane");
		cfg->handoff = (uint8_t)h;
	} else if (!strcmp(d, "stats_socket")) {
		if (ntok != 2 || strlen(tok[1]) >= sizeof(cfg->stats_socket))
			return fail(err, errlen, line, "stats_socket: expected a path shorter than %zu",
				    sizeof(cfg->stats_socket));
		strcpy(cfg->stats_socket, tok[1]);
	} else {
		return fail(err, errlen, line, "unknown directive '%s'", d);
	}
	return 0;
}

static int validate(struct fe_config *cfg, char *err, size_t errlen)
{
	if (!cfg->vip_be)
		return fail(err, errlen, 0, "no vip");
	if (!cfg->n_clusters)
		return fail(err, errlen, 0, "no cluster");
	for (int i = 0; i < cfg->n_rules; i++)
		if (cfg->rules[i].cluster >= cfg->n_clusters)
			return fail(err, errlen, 0, "rule %d names cluster %d, which is not defined", i,
				    cfg->rules[i].cluster);
	if (cfg->default_cluster >= cfg->n_clusters)
		return fail(err, errlen, 0, "default_cluster %d is not defined", cfg->default_cluster);
	if (cfg->hold_limit_bytes < cfg->max_header_bytes)
		cfg->hold_limit_bytes = cfg->max_header_bytes;
	if (cfg->offload_ring_size & (cfg->offload_ring_size - 1))
		return fail(err, errlen, 0, "offload_ring_size must be a power of two");
	/* The rules of common/miresga_defaults.py timeout_nesting_problems(),
	 * for the timeouts the file states. */
	if (cfg->filter_period_us && cfg->filter_period_us <= cfg->idle_timeout_us)
		return fail(err, errlen, 0, "filter_period_ms must exceed idle_timeout_ms: the switch "
			    "must remember a connection as long as the front-end keeps it");
	if (cfg->switch_idle_us && cfg->switch_idle_us < cfg->idle_timeout_us)
		return fail(err, errlen, 0, "switch_idle_ms must be at least idle_timeout_ms: the "
			    "switch must not drop a flow the front-end still keeps");
	if (cfg->agent_idle_us && (cfg->agent_idle_us <= cfg->idle_timeout_us ||
				   cfg->agent_idle_us <= cfg->switch_idle_us))
		return fail(err, errlen, 0, "agent_idle_ms must exceed idle_timeout_ms and "
			    "switch_idle_ms: the agent keeps a connection's offset longest");
	if (cfg->control_port && !cfg->control_key[0])
		return fail(err, errlen, 0, "control needs control_key: the switch host refuses a "
			    "peer that cannot prove the key");
	return 0;
}

int fe_config_parse(struct fe_config *cfg, const char *text, char *err, size_t errlen)
{
	char *copy = strdup(text), *ln, *next;
	int line = 0, rc = 0;

	if (!copy)
		return fail(err, errlen, 0, "out of memory");
	for (ln = copy; ln; ln = next) {
		char *tok[MAX_TOKENS], *hash, *tsave = NULL;
		int ntok = 0;

		next = strchr(ln, '\n');
		if (next)
			*next++ = 0;
		line++;
		hash = strchr(ln, '#');
		if (hash)
			*hash = 0;
		for (char *t = strtok_r(ln, " \t\r", &tsave); t; t = strtok_r(NULL, " \t\r", &tsave)) {
			if (ntok == MAX_TOKENS) {
				rc = fail(err, errlen, line, "too many fields");
				goto out;
			}
			tok[ntok++] = t;
		}
		if (!ntok)
			continue;
		rc = parse_line(cfg, tok, ntok, line, err, errlen);
		if (rc)
			goto out;
	}
	rc = validate(cfg, err, errlen);
out:
	free(copy);
	return rc;
}

int fe_config_load(struct fe_config *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *text;
	long n;
	int rc;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = calloc(1, (size_t)n + 1);
	if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
		snprintf(err, errlen, "%s: read failed", path);
		free(text);
		fclose(f);
		return -1;
	}
	fclose(f);
	rc = fe_config_parse(cfg, text, err, errlen);
	free(text);
	return rc;
}
