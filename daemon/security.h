/*
 * security.h - a session's security context: the ordered list of security
 * drivers that SetSecurity builds (STARTTLS and SMTP AUTH mechanisms),
 * their parameters, and the keyed digest that lets the pool share an
 * authenticated connection only between identical contexts.
 *
 * Properties have the form SMTP=ENTRYPOINT{;USE=MAND|OPT}: the entry-point
 * name is case-sensitive, the keyword SMTP, the keyword USE and its value
 * are not.  Parameters are key=value items separated by ';' (";;" is a
 * literal semicolon); keys are case-insensitive.  Parameters are checked
 * only at logon (security_check), where invalid ones give status -8.
 *
 * Secrets (passwords, tokens) live only in struct security_driver and are
 * wiped with OPENSSL_cleanse when a context is cleared.
 */
#ifndef SMTPOOL_SECURITY_H
#define SMTPOOL_SECURITY_H

#include <stddef.h>
#include <stdint.h>

#define SECURITY_MAX_DRIVERS	8
#define SECURITY_MAX_PROPERTIES	255
#define SECURITY_MAX_PARAMETERS	4095
/* Room for every driver's name and USE flag plus the digest. */
#define SECURITY_MAX_DESCRIPTION 320

enum security_kind {
	SECURITY_STARTTLS,		/* UStartTLSSMTP */
	SECURITY_AUTH_LOGIN,		/* UAuthLoginSMTP */
	SECURITY_AUTH_PLAIN,		/* UAuthPlainSMTP */
	SECURITY_AUTH_XOAUTH2,		/* UAuthXOAUTH2SMTP */
	SECURITY_AUTH_OAUTHBEARER,	/* UAuthOAuthBearerSMTP */
};

struct security_driver {
	enum security_kind	 kind;
	int			 mandatory;	/* USE=MAND (the default) */
	char			*parameters;	/* as given; secret */
	/* Filled by security_check(). */
	char			*user;
	char			*secret;	/* password or token */
	char			*authzid;	/* AUTH PLAIN only, or NULL */
};

struct security {
	struct security_driver	drivers[SECURITY_MAX_DRIVERS];
	size_t			count;
};

/* SetSecurity status codes (smtpool's choice; Uniface does not publish
 * them). */
enum security_status {
	SECURITY_OK			= 0,
	SECURITY_INVALID_PROPERTIES	= -1,	/* syntax, USE value, length */
	SECURITY_PARAMETERS_TOO_LONG	= -2,
	SECURITY_LOCKED			= -3,	/* logged on */
	SECURITY_UNKNOWN_DRIVER		= -4,	/* entry point not known */
	SECURITY_BAD_ORDER		= -5,	/* STARTTLS not first */
	SECURITY_TOO_MANY_DRIVERS	= -6,
	SECURITY_NO_MEMORY		= -18,
};

/* Creates the random key behind security_digest(); call once at start.
 * Returns 0 or -1 when the random source fails. */
int security_init_key(void);

/*
 * Parses properties into *kind and *mandatory.  Returns 1 when properties
 * is exactly "SMTP=" (remove the whole context), 0 for a driver, or a
 * negative security_status with err filled.
 */
int security_parse_properties(const char *properties,
    enum security_kind *kind, int *mandatory, char *err, size_t errlen);

/* Appends a driver.  Returns a security_status with err filled. */
int security_append(struct security *, enum security_kind, int mandatory,
    const char *parameters, char *err, size_t errlen);

/* Wipes the secrets and empties the context. */
void security_clear(struct security *);

/* Deep copy (secrets included).  Returns 0 or -1 on ENOMEM. */
int security_copy(struct security *dst, const struct security *src);

/* Checks every driver's parameters and fills user/secret/authzid.
 * Returns 0, or -1 with err naming the driver and the parameter (never
 * its value). */
int security_check(struct security *, char *err, size_t errlen);

/* Writes "UStartTLSSMTP/MAND+UAuthLoginSMTP/OPT@DIGEST" (or "" for an
 * empty context): the readable driver list plus a keyed HMAC-SHA256 of
 * every driver and its checked parameters.  Call after security_check. */
void security_describe(const struct security *, char *buf, size_t len);

/* Writes the driver list without the digest, for status output. */
void security_driver_names(const struct security *, char *buf,
    size_t len);

/* "UStartTLSSMTP" and so on. */
const char *security_kind_name(enum security_kind);
/* "SMTP=UAuthLoginSMTP;USE=MAND" */
void security_driver_properties(const struct security_driver *, char *buf,
    size_t len);
/* The SMTP AUTH mechanism a driver uses ("LOGIN"...), NULL for STARTTLS. */
const char *security_mechanism(enum security_kind);

#endif
