/*
 * connstr.h - connection strings {CONNECTOR:}HOST{+PORT}{:PROFILE}.
 *
 * CONNECTOR is TCP (default) or TLS, in any case.  HOST is a DNS name, an
 * IPv4 literal or a bracketed IPv6 literal; empty means localhost.  PORT is
 * 1..65535 and defaults to 25 (TCP) or 465 (TLS).  PROFILE names a TLS
 * profile and is allowed only with TLS.
 */
#ifndef SMTPOOL_CONNSTR_H
#define SMTPOOL_CONNSTR_H

#include <stddef.h>
#include <stdint.h>

#define CONNSTR_MAX_HOST	253	/* longest DNS name */
#define CONNSTR_MAX_PROFILE	63

enum connstr_connector {
	CONNSTR_TCP,
	CONNSTR_TLS,
};

struct connstr {
	enum connstr_connector	connector;
	char			host[CONNSTR_MAX_HOST + 1]; /* lower case, no
							     * brackets */
	int			host_is_ipv6;
	int			host_is_ip;	/* IPv4 or IPv6 literal */
	uint16_t		port;
	char			profile[CONNSTR_MAX_PROFILE + 1]; /* "" if none */
};

/* Parses s.  Returns 0, or -1 with err naming what is wrong and how to
 * write it instead. */
int connstr_parse(const char *s, struct connstr *out, char *err,
    size_t errlen);

/* Writes the normalized form, e.g. "TCP:smtp.example.com+25" or
 * "TLS:[::1]+465:local".  Returns the length, as snprintf does. */
int connstr_format(const struct connstr *, char *buf, size_t len);

#endif
