/*
 * config.h - the daemon's YAML configuration (libyaml) and its defaults.
 *
 * With no file the daemon runs on the built-in defaults below.  Every key
 * is validated: an unknown key, a repeated key, a wrong type or a value out
 * of range is an error reported as "FILE:LINE:COLUMN: key 'NAME': what is
 * wrong", and the daemon does not start.  conf/smtpoold.yaml documents
 * every key.  Durations are whole seconds, or a number with the suffix s,
 * m or h.
 */
#ifndef SMTPOOL_CONFIG_H
#define SMTPOOL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONFIG_MAX_PROFILES	64
#define CONFIG_MAX_ACCESS	64	/* entries in access.users/groups */
#define CONFIG_MAX_VERIFY_NAMES	32

/* Server-name check of a TLS profile. */
enum tls_name_check {
	TLS_NAME_HOST,		/* the HOST of the connection string */
	TLS_NAME_OFF,		/* verify_server_name: no */
	TLS_NAME_LIST,		/* the names listed */
};

struct tls_profile {
	char			*name;		/* "default" for the default */
	int			 verify_server;	/* default 1 */
	char			*ca_certificate; /* NULL: system store */
	enum tls_name_check	 name_check;
	char			*verify_names[CONFIG_MAX_VERIFY_NAMES];
					/* "DNS:x" or "IP:x" entries */
	size_t			 nverify_names;
	char			*client_certificate;
	char			*client_key;
	char			*ciphers;	/* NULL: OpenSSL default */
	int			 min_tls_version; /* TLS1_2_VERSION or
						   * TLS1_3_VERSION */
};

/* Timeouts in seconds.  The defaults are RFC 5321 section 4.5.3.2's
 * values, which are also the maximum accepted; connect has no RFC value
 * and is capped at 300. */
struct config_timeouts {
	unsigned	connect;	/* default 30 */
	unsigned	greeting;	/* 300 */
	unsigned	helo;		/* EHLO/HELO, 300 */
	unsigned	mail;		/* 300 */
	unsigned	rcpt;		/* 300 */
	unsigned	data_init;	/* DATA to 354, 120 */
	unsigned	data_block;	/* each body write, 180 */
	unsigned	data_done;	/* final "." to reply, 600 */
	unsigned	rset;		/* default 20, max 300 */
	unsigned	quit;		/* default 20, max 300 */
};

struct config_pool {
	unsigned	max_per_key;	/* upstream connections per key, 4 */
	unsigned	idle_timeout;	/* seconds an idle one is kept, 60 */
	unsigned	max_messages;	/* per connection, 100; 0 = no cap */
	unsigned	max_age;	/* seconds per connection, 600 */
	unsigned	wait_timeout;	/* seconds a request waits, 60 */
};

/* When AUTH may be sent over a connection without TLS. */
enum config_plaintext_auth {
	CONFIG_PLAINTEXT_AUTH_NO,	/* never (default) */
	CONFIG_PLAINTEXT_AUTH_LOOPBACK,	/* to 127.0.0.0/8, ::1, localhost */
	CONFIG_PLAINTEXT_AUTH_YES,	/* to any server */
};

struct config {
	char			*path;		/* file read, NULL = defaults */
	char			*socket_path;	/* NULL: proto default */
	mode_t			 socket_mode;	/* 0660 */
	int			 log_level;	/* LOG_LEVEL_INFO */
	char			*helo_name;	/* NULL: gethostname() */
	unsigned		 max_clients;	/* 256 */
	enum config_plaintext_auth allow_plaintext_auth; /* no */
	unsigned		 drain_timeout;	/* shutdown.drain_timeout, 30 */
	/* access.users and access.groups, resolved to ids at load; with
	 * both empty the socket's permissions alone decide. */
	uid_t			 access_uids[CONFIG_MAX_ACCESS];
	size_t			 naccess_uids;
	gid_t			 access_gids[CONFIG_MAX_ACCESS];
	size_t			 naccess_gids;
	size_t			 spool_memory;	/* bytes, 1 MiB */
	char			*spool_dir;	/* NULL: $TMPDIR or /tmp */
	struct config_pool	 pool;
	struct config_timeouts	 timeouts;
	struct tls_profile	 tls_default;
	struct tls_profile	 profiles[CONFIG_MAX_PROFILES];
	size_t			 nprofiles;
};

/* Loads path, or the defaults when path is NULL.  Returns the new config,
 * or NULL with err filled ("FILE:LINE:COLUMN: key 'NAME': ..."). */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *);
/* Returns the named profile, the default profile for "" or NULL, or NULL
 * when the name is not defined. */
const struct tls_profile *config_profile(const struct config *,
    const char *name);

#endif
