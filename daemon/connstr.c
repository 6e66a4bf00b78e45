/*
 * connstr.c - parsing and normalizing connection strings of the form
 * {TCP|TLS:}host{+port}{:profile}.
 *
 * connstr_parse() fills a struct connstr.  The connector is TCP unless the
 * string starts with "TCP:" or "TLS:" in any case.  The host is stored in
 * lower case: an IPv4 or IPv6 address as inet_ntop() writes it, or a DNS
 * name of LDH labels.  The port defaults to 25 for TCP and 465 for TLS,
 * and the TLS profile name is kept as given.  An IPv6 address must be in
 * brackets, because
 * a ':' after the host always starts the profile.  Whitespace is never
 * trimmed.  On any error it returns -1 with a message that quotes the
 * string, says what is wrong and shows the expected form.
 *
 * connstr_format() writes the normalized form that the pool uses as a
 * key, so "smtp.example.com" and "TCP:SMTP.example.com+25" compare equal.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "connstr.h"

#define CONNSTR_FORM		"{TCP|TLS:}host{+port}{:profile}"
/* Longer input is rejected before parsing, because the socket protocol
 * allows at most 1024 bytes for a connection string. */
#define CONNSTR_MAX_INPUT	1024
/* Bytes of the input quoted in an error message before it is cut. */
#define CONNSTR_MAX_QUOTED	80
#define CONNSTR_MAX_LABEL	63

/*
 * Fills err with: invalid connection string "S": WHAT; expected FORM.
 * Non-printable bytes of s are written as \xHH.
 */
static void connstr_fail(char *, size_t, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));

static void
connstr_fail(char *err, size_t errlen, const char *s, const char *fmt, ...)
{
	char	 quoted[CONNSTR_MAX_QUOTED * 4 + 4], what[256];
	size_t	 i, o = 0;
	va_list	 ap;

	if (err == NULL || errlen == 0)
		return;
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == CONNSTR_MAX_QUOTED) {
			memcpy(quoted + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			snprintf(quoted + o, 5, "\\x%02x", c);
			o += 4;
		} else
			quoted[o++] = (char)c;
	}
	quoted[o] = '\0';

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "invalid connection string \"%s\": %s; "
	    "expected " CONNSTR_FORM, quoted, what);
}

static int
connstr_is_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

static int
connstr_to_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Checks a DNS name of LDH labels.  Returns NULL, or the reason it is
 * invalid. */
static const char *
connstr_check_dns(const char *h, size_t n)
{
	size_t	 i, start = 0, label;
	int	 all_digits = 1;

	if (n > CONNSTR_MAX_HOST)
		return "the host name is longer than 253 characters";
	for (i = 0; i <= n; i++) {
		if (i < n && h[i] != '.') {
			if (h[i] == '_')
				return "the host name contains '_', which is "
				    "not allowed in a host name";
			if (!connstr_is_alnum((unsigned char)h[i]) &&
			    h[i] != '-')
				return "the host name contains a character "
				    "other than letters, digits, '-' and '.'";
			if (h[i] < '0' || h[i] > '9')
				all_digits = 0;
			continue;
		}
		label = i - start;
		if (label == 0)
			return i == n ? "the host name ends with a dot" :
			    "the host name has an empty label (a leading dot "
			    "or two dots in a row)";
		if (label > CONNSTR_MAX_LABEL)
			return "a label of the host name is longer than 63 "
			    "characters";
		if (h[start] == '-' || h[i - 1] == '-')
			return "a label of the host name starts or ends "
			    "with '-'";
		if (i < n)
			all_digits = 1;
		start = i + 1;
	}
	/* A name whose last label is numeric would be read as a short IPv4
	 * form ("127.1") by the resolver. */
	if (all_digits)
		return "the host is not a valid IPv4 address (write four "
		    "decimal numbers, e.g. 192.0.2.1) nor a host name";
	return NULL;
}

/* Parses the port digits at [p, p + n).  Returns the port, or 0 when
 * they are not a decimal number from 1 to 65535. */
static unsigned long
connstr_parse_port(const char *p, size_t n)
{
	unsigned long	 v = 0;
	size_t		 i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		v = v * 10 + (unsigned long)(p[i] - '0');
		if (v > 65535)
			return 0;
	}
	return v;
}

/*
 * Stores the bracketed IPv6 literal at s (s[0] == '[') in out and returns
 * the number of bytes consumed, or -1 with err filled.
 */
static int
connstr_parse_ipv6(const char *input, const char *s, struct connstr *out,
    char *err, size_t errlen)
{
	const char	*close = strchr(s, ']');
	char		 text[INET6_ADDRSTRLEN + 1];
	struct in6_addr	 a6;
	struct in_addr	 a4;
	size_t		 n;

	if (close == NULL) {
		connstr_fail(err, errlen, input, "'[' has no closing ']'");
		return -1;
	}
	n = (size_t)(close - s - 1);
	if (n == 0 || n >= sizeof(text)) {
		connstr_fail(err, errlen, input,
		    "the host in brackets is not a valid IPv6 address");
		return -1;
	}
	memcpy(text, s + 1, n);
	text[n] = '\0';
	if (inet_pton(AF_INET, text, &a4) == 1) {
		connstr_fail(err, errlen, input,
		    "brackets are only for IPv6 addresses; write the IPv4 "
		    "address %s without them", text);
		return -1;
	}
	if (inet_pton(AF_INET6, text, &a6) != 1) {
		connstr_fail(err, errlen, input,
		    "the host in brackets is not a valid IPv6 address");
		return -1;
	}
	inet_ntop(AF_INET6, &a6, out->host, sizeof(out->host));
	out->host_is_ip = 1;
	out->host_is_ipv6 = 1;
	return (int)(n + 2);
}

/* Validates the unbracketed host at [h, h + n) and stores it in out. */
static int
connstr_store_host(const char *input, const char *h, size_t n,
    struct connstr *out, char *err, size_t errlen)
{
	char		 text[CONNSTR_MAX_HOST + 1];
	struct in_addr	 a4;
	const char	*why;
	size_t		 i;

	if (n == 0) {
		strcpy(out->host, "localhost");
		return 0;
	}
	if ((why = connstr_check_dns(h, n)) != NULL) {
		/* An IPv4 address also fails the last-label test. */
		if (n < sizeof(text)) {
			memcpy(text, h, n);
			text[n] = '\0';
			if (inet_pton(AF_INET, text, &a4) == 1) {
				inet_ntop(AF_INET, &a4, out->host,
				    sizeof(out->host));
				out->host_is_ip = 1;
				return 0;
			}
		}
		connstr_fail(err, errlen, input, "%s", why);
		return -1;
	}
	for (i = 0; i < n; i++)
		out->host[i] = (char)connstr_to_lower((unsigned char)h[i]);
	out->host[n] = '\0';
	return 0;
}

/* Checks the profile name: 1..63 of [A-Za-z0-9_.-]. */
static int
connstr_store_profile(const char *input, const char *p,
    struct connstr *out, char *err, size_t errlen)
{
	size_t	 i, n = strlen(p);

	if (out->connector != CONNSTR_TLS) {
		connstr_fail(err, errlen, input,
		    "a TLS profile (\":%.63s\") is only allowed with the TLS "
		    "connector; write TLS: in front, or drop the profile", p);
		return -1;
	}
	if (n == 0) {
		connstr_fail(err, errlen, input, "the profile after ':' is "
		    "empty; name a profile or drop the ':'");
		return -1;
	}
	if (n > CONNSTR_MAX_PROFILE) {
		connstr_fail(err, errlen, input,
		    "the profile name is longer than 63 characters");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (connstr_is_alnum((unsigned char)p[i]) || p[i] == '_' ||
		    p[i] == '.' || p[i] == '-')
			continue;
		if (p[i] == '+')
			connstr_fail(err, errlen, input, "the profile name "
			    "contains '+'; the port goes before the profile");
		else if (p[i] == ':')
			connstr_fail(err, errlen, input, "more than one ':' "
			    "after the host; an IPv6 address must be in "
			    "brackets, e.g. [::1]");
		else
			connstr_fail(err, errlen, input, "the profile name "
			    "contains a character other than letters, "
			    "digits, '_', '.' and '-'");
		return -1;
	}
	memcpy(out->profile, p, n + 1);
	return 0;
}

/* Returns 1 when p starts with three letters and a ':' that is not
 * followed by a profile-like rest alone, as in "FOO:host": a connector
 * that is neither TCP nor TLS, rather than a host with a TLS profile. */
static int
connstr_looks_like_connector(const char *p)
{
	size_t	i;

	for (i = 0; i < 3; i++) {
		if (!isalpha((unsigned char)p[i]))
			return 0;
	}
	/* "mx1:..." could be a host with a profile; only a rest that
	 * contains a host separator ('.', '[' or '+') reads as a host. */
	return p[3] == ':' && strpbrk(p + 4, ".[+") != NULL;
}

int
connstr_parse(const char *s, struct connstr *out, char *err, size_t errlen)
{
	const char	*p = s, *end;
	size_t		 i, n;
	unsigned long	 port;
	struct in6_addr	 a6;
	char		 text[INET6_ADDRSTRLEN + 1];
	int		 used;

	memset(out, 0, sizeof(*out));
	if (s == NULL) {
		connstr_fail(err, errlen, "", "the connection string is "
		    "missing");
		return -1;
	}
	if (strnlen(s, CONNSTR_MAX_INPUT + 1) > CONNSTR_MAX_INPUT) {
		connstr_fail(err, errlen, s, "it is longer than 1024 bytes");
		return -1;
	}
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			connstr_fail(err, errlen, s, "it contains whitespace "
			    "at offset %zu; remove it", i);
			return -1;
		}
		if (c < 0x20 || c >= 0x7f) {
			connstr_fail(err, errlen, s, "it contains a control "
			    "or non-ASCII character at offset %zu", i);
			return -1;
		}
	}

	/* The connector. */
	out->connector = CONNSTR_TCP;
	if (strncasecmp(p, "TCP:", 4) == 0)
		p += 4;
	else if (strncasecmp(p, "TLS:", 4) == 0) {
		out->connector = CONNSTR_TLS;
		p += 4;
	} else if (connstr_looks_like_connector(p)) {
		connstr_fail(err, errlen, s, "unknown connector \"%.3s\"; "
		    "use TCP or TLS", p);
		return -1;
	}

	/* The host. */
	if (*p == '[') {
		if ((used = connstr_parse_ipv6(s, p, out, err, errlen)) == -1)
			return -1;
		p += used;
		if (*p != '\0' && *p != '+' && *p != ':') {
			connstr_fail(err, errlen, s, "unexpected '%c' after "
			    "the IPv6 address; only +port or :profile may "
			    "follow", *p);
			return -1;
		}
	} else {
		n = strcspn(p, "+:");
		/* Catch an unbracketed IPv6 address before it is taken for
		 * a host and a profile. */
		end = p + strcspn(p, "+");
		if ((size_t)(end - p) < sizeof(text) && strchr(p, ':') !=
		    NULL) {
			memcpy(text, p, (size_t)(end - p));
			text[end - p] = '\0';
			if (inet_pton(AF_INET6, text, &a6) == 1) {
				connstr_fail(err, errlen, s, "an IPv6 "
				    "address must be in brackets: [%s]", text);
				return -1;
			}
		}
		if (n == 0 && *p == ':' && out->connector == CONNSTR_TCP &&
		    p == s) {
			connstr_fail(err, errlen, s, "it starts with ':'; "
			    "write the connector TCP or TLS before it");
			return -1;
		}
		if (connstr_store_host(s, p, n, out, err, errlen) == -1)
			return -1;
		p += n;
	}

	/* The port. */
	out->port = out->connector == CONNSTR_TLS ? 465 : 25;
	if (*p == '+') {
		p++;
		n = strcspn(p, ":");
		port = connstr_parse_port(p, n);
		if (port == 0) {
			connstr_fail(err, errlen, s, "the port \"%.*s\" is "
			    "not a decimal number from 1 to 65535",
			    (int)(n > 10 ? 10 : n), p);
			return -1;
		}
		out->port = (uint16_t)port;
		p += n;
	}

	/* The profile. */
	if (*p == ':')
		return connstr_store_profile(s, p + 1, out, err, errlen);
	return 0;
}

int
connstr_format(const struct connstr *cs, char *buf, size_t len)
{
	const char	*connector = cs->connector == CONNSTR_TLS ? "TLS" :
	    "TCP";

	return snprintf(buf, len, "%s:%s%s%s+%u%s%s", connector,
	    cs->host_is_ipv6 ? "[" : "", cs->host,
	    cs->host_is_ipv6 ? "]" : "", (unsigned)cs->port,
	    cs->profile[0] != '\0' ? ":" : "", cs->profile);
}
