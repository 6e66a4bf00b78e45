/*
 * config.c - load and validate the daemon's YAML configuration.
 *
 * libyaml's document API parses the file into a node tree.  Each mapping
 * is then walked against a table of the keys it may contain.  A table
 * entry gives the value's type, its range and where it is stored.  The first
 * problem stops the load: config_load() returns NULL with a message of the
 * form "FILE:LINE:COLUMN: key 'pool.idle_timeout': what is wrong", where
 * LINE and COLUMN (1-based) point at the offending key or value.  Nothing
 * here touches the files a profile names, because tlsctx.c loads them and
 * reports their errors.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <yaml.h>

#include "config.h"
#include "connstr.h"
#include "log.h"

/* Largest configuration file read; a real one is a few kilobytes. */
#define CONFIG_MAX_FILE		(1024 * 1024)
/* Longest dotted key name shown in messages ("tls.profiles.NAME.key"). */
#define CONFIG_MAX_KEY		160
#define CONFIG_MAX_STRING	4096
#define CONFIG_MAX_CIPHERS	1024
#define CONFIG_MAX_HOSTNAME	253

/* Type of a key's value, which selects its parser and its storage. */
enum config_type {
	CONFIG_SECTION,		/* a nested mapping with its own key table */
	CONFIG_UINT,		/* unsigned, min..max */
	CONFIG_DURATION,	/* seconds, or N with suffix s, m or h */
	CONFIG_SIZE,		/* bytes, or N with suffix k or m (1024) */
	CONFIG_STRING,		/* any non-empty string */
	CONFIG_SOCKET_PATH,	/* fits in sockaddr_un */
	CONFIG_ABS_PATH,	/* absolute path */
	CONFIG_MODE,		/* file mode 0..0777 */
	CONFIG_LOG_LEVEL,
	CONFIG_HOSTNAME,	/* helo_name */
	CONFIG_BOOL,
	CONFIG_CIPHERS,
	CONFIG_TLS_VERSION,
	CONFIG_NAME_CHECK,	/* verify_server_name */
	CONFIG_PROFILE,		/* tls.default */
	CONFIG_PROFILES,	/* tls.profiles */
	CONFIG_PLAINTEXT_AUTH,	/* allow_plaintext_auth */
	CONFIG_USERS,		/* access.users */
	CONFIG_GROUPS,		/* access.groups */
};

struct config_section;

/* One key of a mapping.  offset locates the value in the structure the
 * section fills (struct config, or struct tls_profile for profiles). */
struct config_key {
	const char			*name;
	const char			*alias;		/* NULL if none */
	enum config_type		 type;
	size_t				 offset;
	unsigned long long		 min;
	unsigned long long		 max;
	const struct config_section	*section;	/* CONFIG_SECTION */
};

struct config_section {
	const struct config_key	*keys;
	size_t			 nkeys;
};

/* State of one config_load() call. */
struct config_parser {
	const char		*path;
	yaml_document_t		*doc;
	struct config		*cfg;
	SSL_CTX			*scratch;	/* for checking cipher lists */
	char			*err;
	size_t			 errlen;
};

#define CONFIG_OFF(field)	offsetof(struct config, field)
#define CONFIG_POFF(field)	offsetof(struct tls_profile, field)
#define CONFIG_NKEYS(a)		(sizeof(a) / sizeof((a)[0]))

static const struct config_key config_socket_keys[] = {
	{ "path", NULL, CONFIG_SOCKET_PATH, CONFIG_OFF(socket_path), 0, 0,
	    NULL },
	{ "mode", NULL, CONFIG_MODE, CONFIG_OFF(socket_mode), 0, 0777,
	    NULL },
};

static const struct config_key config_log_keys[] = {
	{ "level", NULL, CONFIG_LOG_LEVEL, CONFIG_OFF(log_level), 0, 0,
	    NULL },
};

static const struct config_key config_spool_keys[] = {
	{ "memory_limit", NULL, CONFIG_SIZE, CONFIG_OFF(spool_memory),
	    4096, 1073741824ULL, NULL },
	{ "directory", NULL, CONFIG_ABS_PATH, CONFIG_OFF(spool_dir), 0, 0,
	    NULL },
};

static const struct config_key config_pool_keys[] = {
	{ "max_connections_per_key", NULL, CONFIG_UINT,
	    CONFIG_OFF(pool.max_per_key), 1, 1024, NULL },
	{ "idle_timeout", NULL, CONFIG_DURATION,
	    CONFIG_OFF(pool.idle_timeout), 1, 24 * 3600, NULL },
	{ "max_messages_per_connection", NULL, CONFIG_UINT,
	    CONFIG_OFF(pool.max_messages), 0, 1000000, NULL },
	{ "max_connection_age", NULL, CONFIG_DURATION,
	    CONFIG_OFF(pool.max_age), 1, 7 * 24 * 3600, NULL },
	{ "wait_timeout", NULL, CONFIG_DURATION,
	    CONFIG_OFF(pool.wait_timeout), 1, 3600, NULL },
};

/* The maximum of each SMTP timeout is its RFC 5321 (4.5.3.2) value. */
static const struct config_key config_timeout_keys[] = {
	{ "connect", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.connect),
	    1, 300, NULL },
	{ "greeting", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.greeting),
	    1, 300, NULL },
	{ "helo", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.helo),
	    1, 300, NULL },
	{ "mail", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.mail),
	    1, 300, NULL },
	{ "rcpt", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.rcpt),
	    1, 300, NULL },
	{ "data_init", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.data_init),
	    1, 120, NULL },
	{ "data_block", NULL, CONFIG_DURATION,
	    CONFIG_OFF(timeouts.data_block), 1, 180, NULL },
	{ "data_done", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.data_done),
	    1, 600, NULL },
	{ "rset", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.rset),
	    1, 300, NULL },
	{ "quit", NULL, CONFIG_DURATION, CONFIG_OFF(timeouts.quit),
	    1, 300, NULL },
};

static const struct config_key config_access_keys[] = {
	{ "users", NULL, CONFIG_USERS, 0, 0, 0, NULL },
	{ "groups", NULL, CONFIG_GROUPS, 0, 0, 0, NULL },
};

static const struct config_key config_shutdown_keys[] = {
	{ "drain_timeout", NULL, CONFIG_DURATION, CONFIG_OFF(drain_timeout),
	    1, 600, NULL },
};

static const struct config_key config_profile_keys[] = {
	{ "verify_server", NULL, CONFIG_BOOL, CONFIG_POFF(verify_server),
	    0, 0, NULL },
	{ "ca_certificate", "ca_cert", CONFIG_STRING,
	    CONFIG_POFF(ca_certificate), 0, 0, NULL },
	{ "verify_server_name", "vfy_srv_nm", CONFIG_NAME_CHECK, 0, 0, 0,
	    NULL },
	{ "client_certificate", NULL, CONFIG_STRING,
	    CONFIG_POFF(client_certificate), 0, 0, NULL },
	{ "client_key", NULL, CONFIG_STRING, CONFIG_POFF(client_key),
	    0, 0, NULL },
	{ "ciphers", NULL, CONFIG_CIPHERS, CONFIG_POFF(ciphers), 0, 0,
	    NULL },
	{ "min_tls_version", NULL, CONFIG_TLS_VERSION,
	    CONFIG_POFF(min_tls_version), 0, 0, NULL },
};

static const struct config_key config_tls_keys[] = {
	{ "default", NULL, CONFIG_PROFILE, CONFIG_OFF(tls_default), 0, 0,
	    NULL },
	{ "profiles", NULL, CONFIG_PROFILES, 0, 0, 0, NULL },
};

static const struct config_section config_socket_section = {
	config_socket_keys, CONFIG_NKEYS(config_socket_keys) };
static const struct config_section config_log_section = {
	config_log_keys, CONFIG_NKEYS(config_log_keys) };
static const struct config_section config_spool_section = {
	config_spool_keys, CONFIG_NKEYS(config_spool_keys) };
static const struct config_section config_pool_section = {
	config_pool_keys, CONFIG_NKEYS(config_pool_keys) };
static const struct config_section config_timeout_section = {
	config_timeout_keys, CONFIG_NKEYS(config_timeout_keys) };
static const struct config_section config_profile_section = {
	config_profile_keys, CONFIG_NKEYS(config_profile_keys) };
static const struct config_section config_tls_section = {
	config_tls_keys, CONFIG_NKEYS(config_tls_keys) };
static const struct config_section config_access_section = {
	config_access_keys, CONFIG_NKEYS(config_access_keys) };
static const struct config_section config_shutdown_section = {
	config_shutdown_keys, CONFIG_NKEYS(config_shutdown_keys) };

static const struct config_key config_root_keys[] = {
	{ "socket", NULL, CONFIG_SECTION, 0, 0, 0, &config_socket_section },
	{ "log", NULL, CONFIG_SECTION, 0, 0, 0, &config_log_section },
	{ "helo_name", NULL, CONFIG_HOSTNAME, CONFIG_OFF(helo_name), 0, 0,
	    NULL },
	{ "max_clients", NULL, CONFIG_UINT, CONFIG_OFF(max_clients),
	    1, 65536, NULL },
	{ "allow_plaintext_auth", NULL, CONFIG_PLAINTEXT_AUTH,
	    CONFIG_OFF(allow_plaintext_auth), 0, 0, NULL },
	{ "spool", NULL, CONFIG_SECTION, 0, 0, 0, &config_spool_section },
	{ "pool", NULL, CONFIG_SECTION, 0, 0, 0, &config_pool_section },
	{ "timeouts", NULL, CONFIG_SECTION, 0, 0, 0,
	    &config_timeout_section },
	{ "tls", NULL, CONFIG_SECTION, 0, 0, 0, &config_tls_section },
	{ "access", NULL, CONFIG_SECTION, 0, 0, 0, &config_access_section },
	{ "shutdown", NULL, CONFIG_SECTION, 0, 0, 0,
	    &config_shutdown_section },
};

static const struct config_section config_root_section = {
	config_root_keys, CONFIG_NKEYS(config_root_keys) };

static int config_walk(struct config_parser *, yaml_node_t *,
    const struct config_section *, const char *, void *);

static int config_fail(struct config_parser *, const yaml_mark_t *,
    const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Formats "FILE:LINE:COLUMN: key 'KEY': message" into the caller's buffer
 * and returns -1.  key may be NULL for errors that belong to no key.
 */
static int
config_fail(struct config_parser *p, const yaml_mark_t *mark,
    const char *key, const char *fmt, ...)
{
	char	msg[1024];
	va_list	ap;

	if (p->err == NULL || p->errlen == 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (key != NULL && *key != '\0')
		snprintf(p->err, p->errlen, "%s:%zu:%zu: key '%s': %s",
		    p->path, mark->line + 1, mark->column + 1, key, msg);
	else
		snprintf(p->err, p->errlen, "%s:%zu:%zu: %s", p->path,
		    mark->line + 1, mark->column + 1, msg);
	return -1;
}

/* Joins a section's dotted name and a key into buf ("pool" + "x"),
 * ending a name too long for buf (an unknown key, say) with "...". */
static void
config_key_join(char *buf, size_t len, const char *prefix, const char *name)
{
	int	n;

	if (prefix == NULL || *prefix == '\0')
		n = snprintf(buf, len, "%s", name);
	else
		n = snprintf(buf, len, "%s.%s", prefix, name);
	if ((n < 0 || (size_t)n >= len) && len > 4)
		memcpy(buf + len - 4, "...", 4);
}

static const char *
config_scalar_text(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

/* Tells whether a scalar is YAML's null: empty, "~" or "null" unquoted. */
static int
config_is_null(const yaml_node_t *node)
{
	const char	*s;

	if (node->type != YAML_SCALAR_NODE ||
	    node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	s = config_scalar_text(node);
	return *s == '\0' || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

/* Returns the scalar text of node, or fails naming the type found. */
static int
config_scalar(struct config_parser *p, yaml_node_t *node, const char *key,
    const char **out)
{
	if (node->type == YAML_MAPPING_NODE)
		return config_fail(p, &node->start_mark, key,
		    "scalar expected, found a mapping");
	if (node->type == YAML_SEQUENCE_NODE)
		return config_fail(p, &node->start_mark, key,
		    "scalar expected, found a list");
	if (node->type != YAML_SCALAR_NODE)
		return config_fail(p, &node->start_mark, key,
		    "scalar expected");
	if (config_is_null(node))
		return config_fail(p, &node->start_mark, key,
		    "value is missing; give a value or remove the key to "
		    "use the default");
	if (strlen(config_scalar_text(node)) != node->data.scalar.length)
		return config_fail(p, &node->start_mark, key,
		    "value contains a NUL character");
	*out = config_scalar_text(node);
	return 0;
}

/* Parses a decimal integer, optionally signed, with no other text after
 * the digits than the suffix characters allowed.  Returns -1 if s is no
 * number; *overflow is set when it does not fit in a long long. */
static int
config_parse_integer(const char *s, long long *out, const char **rest,
    int *overflow)
{
	char		*end;
	long long	 v;

	*overflow = 0;
	if (!(isdigit((unsigned char)s[0]) ||
	    ((s[0] == '-' || s[0] == '+') && isdigit((unsigned char)s[1]))))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		*overflow = 1;
	*out = v;
	*rest = end;
	return 0;
}

/* Stores an unsigned value of the size that the target field has. */
static void
config_store_uint(void *base, const struct config_key *k,
    unsigned long long v)
{
	char	*field = (char *)base + k->offset;

	if (k->type == CONFIG_SIZE)
		*(size_t *)(void *)field = (size_t)v;
	else
		*(unsigned *)(void *)field = (unsigned)v;
}

/* Parses CONFIG_UINT, CONFIG_DURATION and CONFIG_SIZE values. */
static int
config_parse_number(struct config_parser *p, yaml_node_t *node,
    const struct config_key *k, const char *key, void *base)
{
	const char		*s, *rest, *unit;
	long long		 v;
	unsigned long long	 mult = 1;
	int			 overflow;

	if (config_scalar(p, node, key, &s) == -1)
		return -1;
	unit = k->type == CONFIG_DURATION ? " seconds" :
	    k->type == CONFIG_SIZE ? " bytes" : "";

	if (config_parse_integer(s, &v, &rest, &overflow) == -1) {
		if (k->type == CONFIG_DURATION)
			return config_fail(p, &node->start_mark, key,
			    "'%s' is not a duration; write whole seconds, "
			    "or a number with the suffix s, m or h "
			    "(e.g. 90, 30s, 5m, 1h)", s);
		if (k->type == CONFIG_SIZE)
			return config_fail(p, &node->start_mark, key,
			    "'%s' is not a size; write bytes, or a number "
			    "with the suffix k or m (e.g. 65536, 64k, 1m)", s);
		return config_fail(p, &node->start_mark, key,
		    "'%s' is not a whole number", s);
	}

	if (k->type == CONFIG_DURATION && *rest != '\0' && rest[1] == '\0') {
		if (*rest == 's')
			mult = 1;
		else if (*rest == 'm')
			mult = 60;
		else if (*rest == 'h')
			mult = 3600;
		else
			return config_fail(p, &node->start_mark, key,
			    "'%s' has an unknown unit '%c'; use s, m or h",
			    s, *rest);
		rest++;
	} else if (k->type == CONFIG_SIZE && *rest != '\0' &&
	    rest[1] == '\0') {
		if (*rest == 'k' || *rest == 'K')
			mult = 1024;
		else if (*rest == 'm' || *rest == 'M')
			mult = 1024 * 1024;
		else
			return config_fail(p, &node->start_mark, key,
			    "'%s' has an unknown unit '%c'; use k or m", s,
			    *rest);
		rest++;
	}
	if (*rest != '\0')
		return config_fail(p, &node->start_mark, key,
		    "'%s' is not a whole number%s", s,
		    k->type == CONFIG_DURATION ? " of seconds, or one with "
		    "the suffix s, m or h" : "");

	/* Compare before multiplying, so a huge count cannot wrap. */
	if (v < 0 || overflow || (unsigned long long)v > k->max / mult ||
	    (unsigned long long)v * mult < k->min)
		return config_fail(p, &node->start_mark, key,
		    "%s is out of range %llu..%llu%s", s, k->min, k->max,
		    unit);
	config_store_uint(base, k, (unsigned long long)v * mult);
	return 0;
}

/*
 * Parses a file mode.  A quoted string, a number with a leading 0 and
 * YAML 1.2's 0o form are octal.  Any other plain number is decimal, as
 * YAML reads it, so "mode: 432" is 0660 and "mode: 660" is out of range.
 */
static int
config_parse_mode(struct config_parser *p, yaml_node_t *node,
    const struct config_key *k, const char *key, void *base)
{
	const char		*s, *digits;
	char			*end;
	unsigned long		 v;
	int			 base_n = 10;

	if (config_scalar(p, node, key, &s) == -1)
		return -1;
	digits = s;
	if (strncmp(s, "0o", 2) == 0) {
		digits = s + 2;
		base_n = 8;
	} else if (s[0] == '0' ||
	    node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		base_n = 8;

	if (!isdigit((unsigned char)digits[0]))
		return config_fail(p, &node->start_mark, key,
		    "'%s' is not a file mode; write it in octal as a "
		    "string, e.g. \"0660\"", s);
	errno = 0;
	v = strtoul(digits, &end, base_n);
	if (*end != '\0' || errno == ERANGE)
		return config_fail(p, &node->start_mark, key,
		    "'%s' is not a file mode; write it in octal as a "
		    "string, e.g. \"0660\"", s);
	if (v > k->max)
		return config_fail(p, &node->start_mark, key,
		    "%s is out of range 0..0777; write the mode in octal "
		    "with a leading zero, e.g. \"0660\"", s);
	*(mode_t *)(void *)((char *)base + k->offset) = (mode_t)v;
	return 0;
}

/* Parses YAML 1.1 booleans.  Returns 1, 0, or -1 for anything else. */
static int
config_bool_value(const char *s)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t	i;

	for (i = 0; i < CONFIG_NKEYS(yes); i++)
		if (strcasecmp(s, yes[i]) == 0)
			return 1;
	for (i = 0; i < CONFIG_NKEYS(no); i++)
		if (strcasecmp(s, no[i]) == 0)
			return 0;
	return -1;
}

/* Checks a DNS name: labels of letters, digits and '-', 1..63 bytes,
 * not starting or ending with '-', 253 bytes in all.  With wildcard set,
 * "*" may be the whole left-most label.  Returns NULL or the problem. */
static const char *
config_check_dns_name(const char *s, int wildcard)
{
	const char	*label;
	size_t		 len, nlabels = 0;
	int		 is_wild = 0;

	if (*s == '\0')
		return "the name is empty";
	if (strlen(s) > CONFIG_MAX_HOSTNAME)
		return "the name is longer than 253 bytes";
	if (wildcard && s[0] == '*') {
		if (s[1] != '.')
			return "a wildcard must be the whole left-most label, "
			    "as in *.example.com";
		is_wild = 1;
		s += 2;
	}

	for (label = s; ; ) {
		len = strcspn(label, ".");
		if (len == 0)
			return "the name has an empty label";
		if (len > 63)
			return "a label is longer than 63 bytes";
		if (label[0] == '-' || label[len - 1] == '-')
			return "a label starts or ends with '-'";
		for (size_t i = 0; i < len; i++) {
			unsigned char	c = (unsigned char)label[i];

			if (c == '*')
				return "a wildcard must be the whole "
				    "left-most label, as in *.example.com";
			if (!isalnum(c) && c != '-')
				return "the name contains a character other "
				    "than letters, digits, '-' and '.'";
		}
		nlabels++;
		if (label[len] == '\0')
			break;
		label += len + 1;
	}

	/* OpenSSL never lets "*" match a top-level label, so "*.com" could
	 * match no certificate. */
	if (is_wild && nlabels < 2)
		return "a wildcard needs at least two labels after it, as in "
		    "*.example.com";
	return NULL;
}

/* Tells whether s is an IPv4 or IPv6 address. */
static int
config_is_ip(const char *s)
{
	unsigned char	buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

/* Checks helo_name: a DNS name or an address literal "[192.0.2.1]" or
 * "[IPv6:2001:db8::1]" as EHLO accepts it. */
static const char *
config_check_helo(const char *s)
{
	char		 buf[64];
	unsigned char	 addr[sizeof(struct in6_addr)];
	size_t		 len = strlen(s);

	if (s[0] != '[')
		return config_check_dns_name(s, 0);
	if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof(buf))
		return "an address literal must look like [192.0.2.1] or "
		    "[IPv6:2001:db8::1]";
	memcpy(buf, s + 1, len - 2);
	buf[len - 2] = '\0';
	if (strncasecmp(buf, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, buf + 5, addr) == 1)
			return NULL;
	} else if (inet_pton(AF_INET, buf, addr) == 1)
		return NULL;
	return "an address literal must look like [192.0.2.1] or "
	    "[IPv6:2001:db8::1]";
}

/* Replaces *slot with a copy of s. */
static int
config_store_string(struct config_parser *p, yaml_node_t *node,
    const char *key, char **slot, const char *s)
{
	char	*copy;

	if ((copy = strdup(s)) == NULL)
		return config_fail(p, &node->start_mark, key,
		    "out of memory");
	free(*slot);
	*slot = copy;
	return 0;
}

/*
 * Parses access.users (users set) or access.groups: a list of names or
 * numeric ids, resolved now so that a typo stops the daemon at start-up
 * instead of locking clients out later.
 */
static int
config_parse_ids(struct config_parser *p, yaml_node_t *node,
    const char *key, int users)
{
	struct config		*cfg = p->cfg;
	yaml_node_item_t	*item;
	yaml_node_t		*entry;
	const char		*s;
	char			*end;
	unsigned long		 id;
	size_t			*count = users ? &cfg->naccess_uids :
				    &cfg->naccess_gids;

	if (node->type != YAML_SEQUENCE_NODE)
		return config_fail(p, &node->start_mark, key,
		    "list expected, as in [%s]", users ? "alice, 1001" :
		    "mailers, 2000");
	for (item = node->data.sequence.items.start;
	    item < node->data.sequence.items.top; item++) {
		entry = yaml_document_get_node(p->doc, *item);
		if (config_scalar(p, entry, key, &s) == -1)
			return -1;
		if (*count == CONFIG_MAX_ACCESS)
			return config_fail(p, &entry->start_mark, key,
			    "more than %d entries", CONFIG_MAX_ACCESS);

		errno = 0;
		id = strtoul(s, &end, 10);
		if (s[0] >= '0' && s[0] <= '9' && *end == '\0' &&
		    errno == 0 && id <= 0x7fffffffUL) {
			/* A number is taken as an id even without an entry
			 * in the user database. */
		} else if (users) {
			struct passwd	*pw = getpwnam(s);

			if (pw == NULL)
				return config_fail(p, &entry->start_mark, key,
				    "unknown user '%s'", s);
			id = pw->pw_uid;
		} else {
			struct group	*gr = getgrnam(s);

			if (gr == NULL)
				return config_fail(p, &entry->start_mark, key,
				    "unknown group '%s'", s);
			id = gr->gr_gid;
		}
		if (users)
			cfg->access_uids[(*count)++] = (uid_t)id;
		else
			cfg->access_gids[(*count)++] = (gid_t)id;
	}
	return 0;
}

/* Parses the string types: plain strings, paths, helo_name, ciphers. */
static int
config_parse_string(struct config_parser *p, yaml_node_t *node,
    const struct config_key *k, const char *key, void *base)
{
	const size_t	 sun_max = sizeof(((struct sockaddr_un *)0)->sun_path);
	const char	*s, *why;
	size_t		 len;

	if (config_scalar(p, node, key, &s) == -1)
		return -1;
	len = strlen(s);
	if (len > CONFIG_MAX_STRING)
		return config_fail(p, &node->start_mark, key,
		    "value is %zu bytes, over the limit of %d", len,
		    CONFIG_MAX_STRING);

	switch (k->type) {
	case CONFIG_SOCKET_PATH:
		if (len >= sun_max)
			return config_fail(p, &node->start_mark, key,
			    "'%s' is %zu bytes, over the limit of %zu for a "
			    "Unix socket path", s, len, sun_max - 1);
		break;
	case CONFIG_ABS_PATH:
		if (s[0] != '/')
			return config_fail(p, &node->start_mark, key,
			    "'%s' is not an absolute path; start it with '/'",
			    s);
		break;
	case CONFIG_HOSTNAME:
		if ((why = config_check_helo(s)) != NULL)
			return config_fail(p, &node->start_mark, key,
			    "'%s' is not a valid host name: %s", s, why);
		break;
	case CONFIG_CIPHERS:
		if (len > CONFIG_MAX_CIPHERS)
			return config_fail(p, &node->start_mark, key,
			    "cipher list is %zu bytes, over the limit of %d",
			    len, CONFIG_MAX_CIPHERS);
		if (p->scratch == NULL &&
		    (p->scratch = SSL_CTX_new(TLS_client_method())) == NULL) {
			ERR_clear_error();
			return config_fail(p, &node->start_mark, key,
			    "cannot check the cipher list: OpenSSL could not "
			    "create a context");
		}
		/* OpenSSL 3.0 skips unknown names in a list and fails only
		 * when nothing at all is selected, so a typo next to a
		 * valid name goes unnoticed. */
		if (SSL_CTX_set_cipher_list(p->scratch, s) != 1) {
			ERR_clear_error();
			return config_fail(p, &node->start_mark, key,
			    "'%s' selects no cipher OpenSSL knows; it sets "
			    "TLS 1.2 ciphers only (see 'openssl ciphers -v "
			    "LIST')", s);
		}
		break;
	default:
		break;
	}
	return config_store_string(p, node, key,
	    (char **)(void *)((char *)base + k->offset), s);
}

/* Parses verify_server_name: a boolean (no = no check, yes = the host of
 * the connection string) or a list of "DNS:name" / "IP:address". */
static int
config_parse_name_check(struct config_parser *p, yaml_node_t *node,
    const char *key, struct tls_profile *prof)
{
	yaml_node_item_t	*item;
	yaml_node_t		*entry;
	const char		*s, *why;
	char			 buf[CONFIG_MAX_HOSTNAME + 8];
	size_t			 i;
	int			 b;

	if (node->type == YAML_SCALAR_NODE && !config_is_null(node) &&
	    (b = config_bool_value(config_scalar_text(node))) != -1) {
		prof->name_check = b ? TLS_NAME_HOST : TLS_NAME_OFF;
		return 0;
	}
	if (node->type != YAML_SEQUENCE_NODE)
		return config_fail(p, &node->start_mark, key,
		    "list expected: write no, or a list of \"DNS:name\" and "
		    "\"IP:address\" entries");
	if (node->data.sequence.items.top == node->data.sequence.items.start)
		return config_fail(p, &node->start_mark, key,
		    "the list is empty; write no to turn the name check off");

	for (item = node->data.sequence.items.start;
	    item < node->data.sequence.items.top; item++) {
		entry = yaml_document_get_node(p->doc, *item);
		if (config_scalar(p, entry, key, &s) == -1)
			return -1;
		if (prof->nverify_names == CONFIG_MAX_VERIFY_NAMES)
			return config_fail(p, &entry->start_mark, key,
			    "more than %d names", CONFIG_MAX_VERIFY_NAMES);

		if (strncasecmp(s, "DNS:", 4) == 0) {
			if ((why = config_check_dns_name(s + 4, 1)) != NULL)
				return config_fail(p, &entry->start_mark, key,
				    "'%s' is not a valid DNS name: %s", s,
				    why);
			snprintf(buf, sizeof(buf), "DNS:%s", s + 4);
			/* Certificate names match without regard to case;
			 * one spelling keeps the stored list simple. */
			for (i = 4; buf[i] != '\0'; i++)
				buf[i] = (char)tolower((unsigned char)buf[i]);
		} else if (strncasecmp(s, "IP:", 3) == 0) {
			if (strlen(s + 3) >= 64 || !config_is_ip(s + 3))
				return config_fail(p, &entry->start_mark, key,
				    "'%s' is not a valid IPv4 or IPv6 address",
				    s);
			snprintf(buf, sizeof(buf), "IP:%s", s + 3);
		} else
			return config_fail(p, &entry->start_mark, key,
			    "'%s' must start with DNS: or IP:, as in "
			    "\"DNS:mail.example.com\" or \"IP:192.0.2.1\"", s);

		if ((prof->verify_names[prof->nverify_names] =
		    strdup(buf)) == NULL)
			return config_fail(p, &entry->start_mark, key,
			    "out of memory");
		prof->nverify_names++;
	}
	prof->name_check = TLS_NAME_LIST;
	return 0;
}

/* Sets a profile's defaults; name is copied. */
static int
config_profile_init(struct tls_profile *prof, const char *name)
{
	memset(prof, 0, sizeof(*prof));
	if ((prof->name = strdup(name)) == NULL)
		return -1;
	prof->verify_server = 1;
	prof->name_check = TLS_NAME_HOST;
	prof->min_tls_version = TLS1_2_VERSION;
	return 0;
}

static void
config_profile_free(struct tls_profile *prof)
{
	size_t	i;

	free(prof->name);
	free(prof->ca_certificate);
	for (i = 0; i < prof->nverify_names; i++)
		free(prof->verify_names[i]);
	free(prof->client_certificate);
	free(prof->client_key);
	free(prof->ciphers);
	memset(prof, 0, sizeof(*prof));
}

/* Parses one profile mapping into prof and checks the keys that depend
 * on each other. */
static int
config_parse_profile(struct config_parser *p, yaml_node_t *node,
    const char *key, struct tls_profile *prof)
{
	if (config_walk(p, node, &config_profile_section, key, prof) == -1)
		return -1;
	if ((prof->client_certificate == NULL) !=
	    (prof->client_key == NULL))
		return config_fail(p, &node->start_mark, key,
		    "client_certificate and client_key go together, but "
		    "%s is missing", prof->client_key == NULL ?
		    "client_key" : "client_certificate");
	return 0;
}

/* Checks a profile name: [A-Za-z0-9_.-]{1,63}, and not "default". */
static const char *
config_check_profile_name(const char *s)
{
	size_t	len = strlen(s);

	if (len == 0 || len > CONNSTR_MAX_PROFILE)
		return "a profile name has 1 to 63 characters";
	if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_.-") != len)
		return "a profile name may contain only letters, digits, '_', "
		    "'.' and '-'";
	if (strcasecmp(s, "default") == 0)
		return "'default' is reserved; configure the default profile "
		    "under tls.default";
	return NULL;
}

/* Parses tls.profiles: a mapping of profile names to profiles. */
static int
config_parse_profiles(struct config_parser *p, yaml_node_t *node,
    const char *key)
{
	struct config		*cfg = p->cfg;
	yaml_node_pair_t	*pair;
	yaml_node_t		*knode, *vnode;
	struct tls_profile	*prof;
	const char		*name, *why;
	char			 sub[CONFIG_MAX_KEY];
	size_t			 i;

	if (config_is_null(node))
		return 0;
	if (node->type != YAML_MAPPING_NODE)
		return config_fail(p, &node->start_mark, key,
		    "mapping expected: give each profile as NAME: { ... }");

	for (pair = node->data.mapping.pairs.start;
	    pair < node->data.mapping.pairs.top; pair++) {
		knode = yaml_document_get_node(p->doc, pair->key);
		vnode = yaml_document_get_node(p->doc, pair->value);
		if (config_scalar(p, knode, key, &name) == -1)
			return -1;
		if ((why = config_check_profile_name(name)) != NULL)
			return config_fail(p, &knode->start_mark, key,
			    "invalid profile name '%s': %s", name, why);
		for (i = 0; i < cfg->nprofiles; i++)
			if (strcmp(cfg->profiles[i].name, name) == 0)
				return config_fail(p, &knode->start_mark, key,
				    "profile '%s' is defined twice", name);
		if (cfg->nprofiles == CONFIG_MAX_PROFILES)
			return config_fail(p, &knode->start_mark, key,
			    "more than %d profiles", CONFIG_MAX_PROFILES);

		prof = &cfg->profiles[cfg->nprofiles];
		if (config_profile_init(prof, name) == -1)
			return config_fail(p, &knode->start_mark, key,
			    "out of memory");
		cfg->nprofiles++;
		config_key_join(sub, sizeof(sub), key, name);
		if (config_parse_profile(p, vnode, sub, prof) == -1)
			return -1;
	}
	return 0;
}

/* Parses the value of one key according to its table entry. */
static int
config_parse_value(struct config_parser *p, yaml_node_t *node,
    const struct config_key *k, const char *key, void *base)
{
	const char	*s;
	int		 v;

	switch (k->type) {
	case CONFIG_SECTION:
		return config_walk(p, node, k->section, key, base);
	case CONFIG_UINT:
	case CONFIG_DURATION:
	case CONFIG_SIZE:
		return config_parse_number(p, node, k, key, base);
	case CONFIG_MODE:
		return config_parse_mode(p, node, k, key, base);
	case CONFIG_STRING:
	case CONFIG_SOCKET_PATH:
	case CONFIG_ABS_PATH:
	case CONFIG_HOSTNAME:
	case CONFIG_CIPHERS:
		return config_parse_string(p, node, k, key, base);
	case CONFIG_LOG_LEVEL:
		if (config_scalar(p, node, key, &s) == -1)
			return -1;
		if ((v = log_level_from_name(s)) == -1)
			return config_fail(p, &node->start_mark, key,
			    "unknown level '%s'; use error, warning, notice, "
			    "info or debug", s);
		*(int *)(void *)((char *)base + k->offset) = v;
		return 0;
	case CONFIG_BOOL:
		if (config_scalar(p, node, key, &s) == -1)
			return -1;
		if ((v = config_bool_value(s)) == -1)
			return config_fail(p, &node->start_mark, key,
			    "'%s' is not a boolean; use yes or no", s);
		*(int *)(void *)((char *)base + k->offset) = v;
		return 0;
	case CONFIG_TLS_VERSION:
		/* Unquoted, YAML reads 1.2 as a float; its text is the
		 * same, so both forms compare equal here. */
		if (config_scalar(p, node, key, &s) == -1)
			return -1;
		if (strcmp(s, "1.2") == 0)
			v = TLS1_2_VERSION;
		else if (strcmp(s, "1.3") == 0)
			v = TLS1_3_VERSION;
		else
			return config_fail(p, &node->start_mark, key,
			    "'%s' is not a supported TLS version; use 1.2 "
			    "or 1.3", s);
		*(int *)(void *)((char *)base + k->offset) = v;
		return 0;
	case CONFIG_NAME_CHECK:
		return config_parse_name_check(p, node, key, base);
	case CONFIG_PROFILE:
		return config_parse_profile(p, node, key,
		    (struct tls_profile *)(void *)((char *)base + k->offset));
	case CONFIG_PROFILES:
		return config_parse_profiles(p, node, key);
	case CONFIG_USERS:
	case CONFIG_GROUPS:
		return config_parse_ids(p, node, key, k->type == CONFIG_USERS);
	case CONFIG_PLAINTEXT_AUTH:
		if (config_scalar(p, node, key, &s) == -1)
			return -1;
		if (strcmp(s, "loopback") == 0)
			v = CONFIG_PLAINTEXT_AUTH_LOOPBACK;
		else if ((v = config_bool_value(s)) == -1)
			return config_fail(p, &node->start_mark, key,
			    "'%s' is not valid; use no, loopback or yes", s);
		else
			v = v ? CONFIG_PLAINTEXT_AUTH_YES :
			    CONFIG_PLAINTEXT_AUTH_NO;
		*(enum config_plaintext_auth *)(void *)((char *)base +
		    k->offset) = (enum config_plaintext_auth)v;
		return 0;
	}
	return config_fail(p, &node->start_mark, key,
	    "internal error: unhandled key type %d", (int)k->type);
}

/* Lists the names of a section's keys into buf for an error message. */
static void
config_list_keys(const struct config_section *sec, char *buf, size_t len)
{
	size_t	i, used = 0;
	int	n;

	buf[0] = '\0';
	for (i = 0; i < sec->nkeys && used < len; i++) {
		n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
		    sec->keys[i].name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/*
 * Walks a mapping against a key table: every key must be in the table
 * and appear once (counting an alias and its name as the same key).
 * A null value stands for an empty mapping, so "pool:" with every line
 * under it commented out keeps the defaults.
 */
static int
config_walk(struct config_parser *p, yaml_node_t *node,
    const struct config_section *sec, const char *prefix, void *base)
{
	yaml_node_t		*seen[16] = { NULL };	/* >= any nkeys */
	yaml_node_pair_t	*pair;
	yaml_node_t		*knode, *vnode;
	const struct config_key	*k;
	const char		*name, *first;
	char			 key[CONFIG_MAX_KEY], valid[512];
	size_t			 i;

	if (config_is_null(node))
		return 0;
	if (node->type != YAML_MAPPING_NODE)
		return config_fail(p, &node->start_mark, prefix,
		    "mapping expected, found a %s",
		    node->type == YAML_SEQUENCE_NODE ? "list" : "scalar");

	for (pair = node->data.mapping.pairs.start;
	    pair < node->data.mapping.pairs.top; pair++) {
		knode = yaml_document_get_node(p->doc, pair->key);
		vnode = yaml_document_get_node(p->doc, pair->value);
		if (knode->type != YAML_SCALAR_NODE)
			return config_fail(p, &knode->start_mark, prefix,
			    "a key must be a plain name, not a %s",
			    knode->type == YAML_MAPPING_NODE ? "mapping" :
			    "list");
		name = config_scalar_text(knode);

		k = NULL;
		for (i = 0; i < sec->nkeys; i++)
			if (strcmp(sec->keys[i].name, name) == 0 ||
			    (sec->keys[i].alias != NULL &&
			    strcmp(sec->keys[i].alias, name) == 0)) {
				k = &sec->keys[i];
				break;
			}
		config_key_join(key, sizeof(key), prefix, name);
		if (k == NULL) {
			config_list_keys(sec, valid, sizeof(valid));
			return config_fail(p, &knode->start_mark, NULL,
			    "unknown key '%s'; valid keys here: %s", key,
			    valid);
		}

		if (seen[i] != NULL) {
			first = config_scalar_text(seen[i]);
			if (strcmp(first, name) == 0)
				return config_fail(p, &knode->start_mark, key,
				    "repeats the key from line %zu; give "
				    "each key once",
				    seen[i]->start_mark.line + 1);
			return config_fail(p, &knode->start_mark, key,
			    "repeats '%s' from line %zu (%s is an alias of "
			    "%s); give it once", first,
			    seen[i]->start_mark.line + 1, k->alias, k->name);
		}
		seen[i] = knode;

		if (config_parse_value(p, vnode, k, key, base) == -1)
			return -1;
	}
	return 0;
}

/* Sets every built-in default; see config.h. */
static int
config_defaults(struct config *cfg)
{
	cfg->socket_mode = 0660;
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->max_clients = 256;
	cfg->spool_memory = 1024 * 1024;
	cfg->drain_timeout = 30;

	cfg->pool.max_per_key = 4;
	cfg->pool.idle_timeout = 60;
	cfg->pool.max_messages = 100;
	cfg->pool.max_age = 600;
	cfg->pool.wait_timeout = 60;

	cfg->timeouts.connect = 30;
	cfg->timeouts.greeting = 300;
	cfg->timeouts.helo = 300;
	cfg->timeouts.mail = 300;
	cfg->timeouts.rcpt = 300;
	cfg->timeouts.data_init = 120;
	cfg->timeouts.data_block = 180;
	cfg->timeouts.data_done = 600;
	cfg->timeouts.rset = 20;
	cfg->timeouts.quit = 20;

	return config_profile_init(&cfg->tls_default, "default");
}

/* Opens path, checks its size and parses it with libyaml into doc.
 * Returns 1 with a document, 0 for an empty file, -1 on error. */
static int
config_read(struct config_parser *p, yaml_document_t *doc)
{
	yaml_parser_t	 parser;
	yaml_document_t	 extra;
	struct stat	 st;
	FILE		*fp;
	int		 rc = -1;

	if ((fp = fopen(p->path, "r")) == NULL) {
		snprintf(p->err, p->errlen,
		    "cannot open configuration file '%s': %s", p->path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(p->err, p->errlen,
		    "configuration file '%s' is not a regular file", p->path);
		fclose(fp);
		return -1;
	}
	if (st.st_size > CONFIG_MAX_FILE) {
		snprintf(p->err, p->errlen,
		    "configuration file '%s' is %lld bytes, over the limit of "
		    "%d", p->path, (long long)st.st_size, CONFIG_MAX_FILE);
		fclose(fp);
		return -1;
	}

	if (!yaml_parser_initialize(&parser)) {
		snprintf(p->err, p->errlen,
		    "cannot read '%s': out of memory", p->path);
		fclose(fp);
		return -1;
	}
	yaml_parser_set_input_file(&parser, fp);

	if (!yaml_parser_load(&parser, doc)) {
		config_fail(p, &parser.problem_mark, NULL, "YAML syntax error: %s%s%s",
		    parser.problem != NULL ? parser.problem : "unknown",
		    parser.context != NULL ? " " : "",
		    parser.context != NULL ? parser.context : "");
		goto out;
	}
	if (yaml_document_get_root_node(doc) == NULL) {
		yaml_document_delete(doc);
		rc = 0;
		goto out;
	}

	/* A second document would be silently ignored otherwise. */
	if (!yaml_parser_load(&parser, &extra)) {
		config_fail(p, &parser.problem_mark, NULL,
		    "YAML syntax error: %s", parser.problem != NULL ?
		    parser.problem : "unknown");
		yaml_document_delete(doc);
		goto out;
	}
	if (yaml_document_get_root_node(&extra) != NULL) {
		config_fail(p, &extra.start_mark, NULL,
		    "the file holds a second YAML document; keep the whole "
		    "configuration in one");
		yaml_document_delete(&extra);
		yaml_document_delete(doc);
		goto out;
	}
	yaml_document_delete(&extra);
	rc = 1;
out:
	yaml_parser_delete(&parser);
	fclose(fp);
	return rc;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config_parser	 p;
	struct config		*cfg;
	yaml_document_t		 doc;
	char			 dummy[1];
	int			 rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    config_defaults(cfg) == -1) {
		snprintf(err, errlen, "cannot load the configuration: out of "
		    "memory");
		config_free(cfg);
		return NULL;
	}
	if (path == NULL)
		return cfg;
	if ((cfg->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "cannot load '%s': out of memory", path);
		config_free(cfg);
		return NULL;
	}

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.doc = &doc;
	p.cfg = cfg;
	p.err = err;
	p.errlen = errlen;

	if ((rc = config_read(&p, &doc)) == -1) {
		config_free(cfg);
		return NULL;
	}
	if (rc == 0)
		return cfg;

	rc = config_walk(&p, yaml_document_get_root_node(&doc),
	    &config_root_section, "", cfg);
	yaml_document_delete(&doc);
	SSL_CTX_free(p.scratch);
	if (rc == -1) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

void
config_free(struct config *cfg)
{
	size_t	i;

	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->socket_path);
	free(cfg->helo_name);
	free(cfg->spool_dir);
	config_profile_free(&cfg->tls_default);
	for (i = 0; i < cfg->nprofiles; i++)
		config_profile_free(&cfg->profiles[i]);
	free(cfg);
}

const struct tls_profile *
config_profile(const struct config *cfg, const char *name)
{
	size_t	i;

	if (cfg == NULL)
		return NULL;
	if (name == NULL || *name == '\0' ||
	    strcmp(name, cfg->tls_default.name) == 0)
		return &cfg->tls_default;
	for (i = 0; i < cfg->nprofiles; i++)
		if (strcmp(cfg->profiles[i].name, name) == 0)
			return &cfg->profiles[i];
	return NULL;
}
