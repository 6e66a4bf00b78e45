/*
 * security.c - parsing and checking of security contexts, and the keyed
 * digest that separates authenticated connections in the pool.
 *
 * The digest is an HMAC-SHA256 over every driver's kind, USE flag and
 * checked parameters, with a random key made at daemon start.  Two
 * sessions get the same digest exactly when their contexts are the same,
 * secrets included, and the digest reveals nothing about the secrets to
 * someone who reads the logs or the status output.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "security.h"

static unsigned char	security_hmac_key[32];
static int		security_hmac_ready;

static const struct {
	const char		*name;
	enum security_kind	 kind;
	const char		*mechanism;
} security_kinds[] = {
	{ "UStartTLSSMTP",		SECURITY_STARTTLS,	  NULL },
	{ "UAuthLoginSMTP",		SECURITY_AUTH_LOGIN,	  "LOGIN" },
	{ "UAuthPlainSMTP",		SECURITY_AUTH_PLAIN,	  "PLAIN" },
	{ "UAuthXOAUTH2SMTP",		SECURITY_AUTH_XOAUTH2,	  "XOAUTH2" },
	{ "UAuthOAuthBearerSMTP",	SECURITY_AUTH_OAUTHBEARER,
	    "OAUTHBEARER" },
};

#define SECURITY_NKINDS	(sizeof(security_kinds) / sizeof(security_kinds[0]))

int
security_init_key(void)
{
	if (RAND_bytes(security_hmac_key, sizeof(security_hmac_key)) != 1)
		return -1;
	security_hmac_ready = 1;
	return 0;
}

const char *
security_kind_name(enum security_kind kind)
{
	size_t	i;

	for (i = 0; i < SECURITY_NKINDS; i++) {
		if (security_kinds[i].kind == kind)
			return security_kinds[i].name;
	}
	return "unknown";
}

const char *
security_mechanism(enum security_kind kind)
{
	size_t	i;

	for (i = 0; i < SECURITY_NKINDS; i++) {
		if (security_kinds[i].kind == kind)
			return security_kinds[i].mechanism;
	}
	return NULL;
}

/* Copies the next ';'-separated item of *p into buf (";;" becomes ';').
 * Returns the item length, or -1 when it does not fit. */
static long
security_next_item(const char **p, char *buf, size_t len)
{
	const char	*s = *p;
	size_t		 n = 0;

	while (*s != '\0') {
		if (*s == ';') {
			if (s[1] != ';')
				break;
			s++;
		}
		if (n + 1 >= len)
			return -1;
		buf[n++] = *s++;
	}
	buf[n] = '\0';
	*p = *s == ';' ? s + 1 : s;
	return (long)n;
}

int
security_parse_properties(const char *properties, enum security_kind *kind,
    int *mandatory, char *err, size_t errlen)
{
	const char	*p, *entry, *semi;
	size_t		 entry_len, i;

	if (strlen(properties) > SECURITY_MAX_PROPERTIES) {
		snprintf(err, errlen, "properties are %zu bytes, more than the "
		    "limit of %d", strlen(properties),
		    SECURITY_MAX_PROPERTIES);
		return SECURITY_INVALID_PROPERTIES;
	}
	if (strncasecmp(properties, "SMTP=", 5) != 0) {
		snprintf(err, errlen, "invalid properties \"%.64s\": they must "
		    "start with SMTP=, as in SMTP=UAuthLoginSMTP;USE=MAND",
		    properties);
		return SECURITY_INVALID_PROPERTIES;
	}
	entry = properties + 5;
	if (*entry == '\0')
		return 1;

	semi = strchr(entry, ';');
	entry_len = semi != NULL ? (size_t)(semi - entry) : strlen(entry);
	*mandatory = 1;
	if (semi != NULL) {
		p = semi + 1;
		if (strcasecmp(p, "USE=MAND") == 0)
			*mandatory = 1;
		else if (strcasecmp(p, "USE=OPT") == 0)
			*mandatory = 0;
		else {
			snprintf(err, errlen, "invalid properties item "
			    "\"%.64s\": the only item after the entry point is "
			    "USE=MAND or USE=OPT", p);
			return SECURITY_INVALID_PROPERTIES;
		}
	}

	/* Entry-point names are case-sensitive, as in Uniface. */
	for (i = 0; i < SECURITY_NKINDS; i++) {
		if (strlen(security_kinds[i].name) == entry_len &&
		    strncmp(security_kinds[i].name, entry, entry_len) == 0) {
			*kind = security_kinds[i].kind;
			return 0;
		}
	}
	snprintf(err, errlen, "unknown security driver \"%.*s\": use "
	    "UStartTLSSMTP, UAuthLoginSMTP, UAuthPlainSMTP, UAuthXOAUTH2SMTP "
	    "or UAuthOAuthBearerSMTP (names are case-sensitive)",
	    (int)(entry_len > 64 ? 64 : entry_len), entry);
	return SECURITY_UNKNOWN_DRIVER;
}

static void
security_free_string(char **s)
{
	if (*s == NULL)
		return;
	OPENSSL_cleanse(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

static void
security_driver_clear(struct security_driver *d)
{
	security_free_string(&d->parameters);
	security_free_string(&d->user);
	security_free_string(&d->secret);
	security_free_string(&d->authzid);
}

int
security_append(struct security *sec, enum security_kind kind,
    int mandatory, const char *parameters, char *err, size_t errlen)
{
	struct security_driver	*d;
	size_t			 i;

	if (strlen(parameters) > SECURITY_MAX_PARAMETERS) {
		snprintf(err, errlen, "parameters are %zu bytes, more than the "
		    "limit of %d", strlen(parameters),
		    SECURITY_MAX_PARAMETERS);
		return SECURITY_PARAMETERS_TOO_LONG;
	}
	if (sec->count >= SECURITY_MAX_DRIVERS) {
		snprintf(err, errlen, "the security context already has %d "
		    "drivers, the maximum; remove it with SMTP= and start "
		    "again", SECURITY_MAX_DRIVERS);
		return SECURITY_TOO_MANY_DRIVERS;
	}
	/* STARTTLS upgrades the connection before anything else runs. */
	if (kind == SECURITY_STARTTLS && sec->count != 0) {
		snprintf(err, errlen, "UStartTLSSMTP must be the first driver "
		    "of a security context; remove the context with SMTP= "
		    "and add UStartTLSSMTP first");
		return SECURITY_BAD_ORDER;
	}
	for (i = 0; i < sec->count; i++) {
		if (sec->drivers[i].kind == kind) {
			snprintf(err, errlen, "the security context already "
			    "has %s; each driver may appear once",
			    security_kind_name(kind));
			return SECURITY_BAD_ORDER;
		}
	}

	d = &sec->drivers[sec->count];
	memset(d, 0, sizeof(*d));
	d->kind = kind;
	d->mandatory = mandatory;
	d->parameters = strdup(parameters);
	if (d->parameters == NULL) {
		snprintf(err, errlen, "out of memory");
		return SECURITY_NO_MEMORY;
	}
	sec->count++;
	return SECURITY_OK;
}

void
security_clear(struct security *sec)
{
	size_t	i;

	for (i = 0; i < sec->count; i++)
		security_driver_clear(&sec->drivers[i]);
	memset(sec, 0, sizeof(*sec));
}

static int
security_dup(char **dst, const char *src)
{
	if (src == NULL) {
		*dst = NULL;
		return 0;
	}
	*dst = strdup(src);
	return *dst == NULL ? -1 : 0;
}

int
security_copy(struct security *dst, const struct security *src)
{
	size_t	i;

	memset(dst, 0, sizeof(*dst));
	for (i = 0; i < src->count; i++) {
		const struct security_driver	*s = &src->drivers[i];
		struct security_driver		*d = &dst->drivers[i];

		d->kind = s->kind;
		d->mandatory = s->mandatory;
		dst->count = i + 1;
		if (security_dup(&d->parameters, s->parameters) == -1 ||
		    security_dup(&d->user, s->user) == -1 ||
		    security_dup(&d->secret, s->secret) == -1 ||
		    security_dup(&d->authzid, s->authzid) == -1) {
			security_clear(dst);
			return -1;
		}
	}
	return 0;
}

/* Returns 1 when s has no control character, so it is usable on the
 * wire. */
static int
security_value_clean(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	}
	return 1;
}

/* Parses one driver's parameters into its fields.  Returns 0 or -1. */
static int
security_check_driver(struct security_driver *d, char *err, size_t errlen)
{
	const char	*name = security_kind_name(d->kind);
	const char	*p = d->parameters;
	char		 item[SECURITY_MAX_PARAMETERS + 1];
	char		*eq, **slot;
	long		 n;
	int		 wants_token = d->kind == SECURITY_AUTH_XOAUTH2 ||
			    d->kind == SECURITY_AUTH_OAUTHBEARER;

	security_free_string(&d->user);
	security_free_string(&d->secret);
	security_free_string(&d->authzid);

	while (*p != '\0') {
		n = security_next_item(&p, item, sizeof(item));
		if (n < 0)
			goto invalid_item;
		if (n == 0)
			continue;
		eq = strchr(item, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s: parameter item without '=': "
			    "write key=value", name);
			goto fail;
		}
		*eq = '\0';
		if (d->kind == SECURITY_STARTTLS) {
			snprintf(err, errlen, "%s takes no parameters, but got "
			    "\"%.32s\"", name, item);
			goto fail;
		}
		if (strcasecmp(item, "user") == 0)
			slot = &d->user;
		else if (!wants_token && strcasecmp(item, "password") == 0)
			slot = &d->secret;
		else if (wants_token && strcasecmp(item, "token") == 0)
			slot = &d->secret;
		else if (d->kind == SECURITY_AUTH_PLAIN &&
		    strcasecmp(item, "authzid") == 0)
			slot = &d->authzid;
		else {
			snprintf(err, errlen, "%s: unknown parameter \"%.32s\"; "
			    "it takes %s", name, item,
			    d->kind == SECURITY_AUTH_PLAIN ?
			    "user, password and optionally authzid" :
			    wants_token ? "user and token" :
			    "user and password");
			goto fail;
		}
		if (*slot != NULL) {
			snprintf(err, errlen, "%s: parameter \"%.32s\" is given "
			    "twice", name, item);
			goto fail;
		}
		if (!security_value_clean(eq + 1)) {
			snprintf(err, errlen, "%s: parameter \"%.32s\" contains "
			    "a control character", name, item);
			goto fail;
		}
		*slot = strdup(eq + 1);
		if (*slot == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	OPENSSL_cleanse(item, sizeof(item));

	if (d->kind == SECURITY_STARTTLS)
		return 0;
	if (d->user == NULL || d->user[0] == '\0') {
		snprintf(err, errlen, "%s: parameter \"user\" is missing or "
		    "empty", name);
		return -1;
	}
	if (d->secret == NULL || d->secret[0] == '\0') {
		snprintf(err, errlen, "%s: parameter \"%s\" is missing or "
		    "empty", name, wants_token ? "token" : "password");
		return -1;
	}
	return 0;

invalid_item:
	snprintf(err, errlen, "%s: a parameter item is too long", name);
fail:
	OPENSSL_cleanse(item, sizeof(item));
	return -1;
}

int
security_check(struct security *sec, char *err, size_t errlen)
{
	size_t	i;

	for (i = 0; i < sec->count; i++) {
		if (security_check_driver(&sec->drivers[i], err, errlen) == -1)
			return -1;
	}
	return 0;
}

void
security_driver_properties(const struct security_driver *d, char *buf,
    size_t len)
{
	snprintf(buf, len, "SMTP=%s;USE=%s", security_kind_name(d->kind),
	    d->mandatory ? "MAND" : "OPT");
}

void
security_driver_names(const struct security *sec, char *buf, size_t len)
{
	size_t	i, used = 0;
	int	n;

	buf[0] = '\0';
	for (i = 0; i < sec->count && used < len; i++) {
		n = snprintf(buf + used, len - used, "%s%s/%s",
		    i == 0 ? "" : "+",
		    security_kind_name(sec->drivers[i].kind),
		    sec->drivers[i].mandatory ? "MAND" : "OPT");
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/* Feeds one length-prefixed value into the MAC, so that field boundaries
 * cannot shift between two contexts. */
static void
security_mac_field(EVP_MAC_CTX *mac, const char *value)
{
	unsigned char	prefix[4];
	size_t		len = value != NULL ? strlen(value) : 0;

	prefix[0] = value != NULL;
	prefix[1] = (unsigned char)(len >> 16);
	prefix[2] = (unsigned char)(len >> 8);
	prefix[3] = (unsigned char)len;
	EVP_MAC_update(mac, prefix, sizeof(prefix));
	if (len != 0)
		EVP_MAC_update(mac, (const unsigned char *)value, len);
}

void
security_describe(const struct security *sec, char *buf, size_t len)
{
	unsigned char	 digest[32];
	char		 hex[2 * 16 + 1];
	char		 names[SECURITY_MAX_DESCRIPTION];
	OSSL_PARAM	 params[2];
	EVP_MAC		*mac = NULL;
	EVP_MAC_CTX	*ctx = NULL;
	size_t		 i, outlen = 0;
	int		 ok = 0;

	if (sec->count == 0) {
		buf[0] = '\0';
		return;
	}
	security_driver_names(sec, names, sizeof(names));

	if (!security_hmac_ready && security_init_key() == -1)
		goto out;
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	if (ctx == NULL)
		goto out;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(ctx, security_hmac_key, sizeof(security_hmac_key),
	    params) != 1)
		goto out;
	for (i = 0; i < sec->count; i++) {
		const struct security_driver *d = &sec->drivers[i];
		unsigned char	head[2];

		head[0] = (unsigned char)d->kind;
		head[1] = (unsigned char)d->mandatory;
		EVP_MAC_update(ctx, head, sizeof(head));
		security_mac_field(ctx, d->user);
		security_mac_field(ctx, d->secret);
		security_mac_field(ctx, d->authzid);
	}
	if (EVP_MAC_final(ctx, digest, &outlen, sizeof(digest)) == 1 &&
	    outlen == sizeof(digest))
		ok = 1;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	if (!ok) {
		/* Without a digest no two contexts may share: fall back to a
		 * fresh random value. */
		if (RAND_bytes(digest, sizeof(digest)) != 1)
			memset(digest, 0xff, sizeof(digest));
	}
	/* 128 bits of the MAC are plenty to tell contexts apart. */
	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	snprintf(buf, len, "%s@%s", names, hex);
	OPENSSL_cleanse(digest, sizeof(digest));
}
