/*
 * pool.h - the upstream connection pool: the one place that decides when
 * a connection is reused, opened, kept idle or closed.
 *
 * Connections are grouped by a key made of the normalized connection
 * string (which includes the TLS profile name) and the security context
 * digest.  Per key there are at most pool.max_connections_per_key
 * connections, counting those being opened, idle and busy.  A request
 * that finds none free waits in a FIFO queue for pool.wait_timeout
 * seconds.
 *
 * Reuse rules, all in pool.c: an idle connection is handed out only while
 * it is usable (no EOF, error or 421 seen while idle), younger than
 * pool.max_connection_age and under pool.max_messages_per_connection; an
 * idle one is closed with QUIT after pool.idle_timeout.  Every declined
 * reuse is logged with its reason.
 */
#ifndef SMTPOOL_POOL_H
#define SMTPOOL_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "connstr.h"
#include "security.h"
#include "smtp.h"

#define POOL_MAX_KEY	(512 + SECURITY_MAX_DESCRIPTION)

struct server;
struct pool;
struct pool_wait;

/* Everything that separates one group of connections from another. */
struct pool_key {
	struct connstr	server;
	/* Driver list and digest of the security context (see
	 * security_describe); "" while a session has none. */
	char		security[SECURITY_MAX_DESCRIPTION];
	/* "TLS:host+465:profile", with "|security" appended when there is
	 * a security context */
	char		text[POOL_MAX_KEY];
};

/* Receives a connection for the request, or conn == NULL and result
 * filled with the failure.  With a connection, result is the outcome of
 * opening it (its EHLO reply) when it was opened for this request, and
 * NULL when it was reused.  The receiver owns conn until pool_release(). */
typedef void pool_acquire_cb(struct smtp_conn *conn,
    const struct smtp_result *result, void *arg);

/* Fills key->text from the other fields. */
void pool_key_init(struct pool_key *, const struct connstr *,
    const char *security);

struct pool *pool_new(struct server *);
/* Closes every connection (QUIT on idle ones) and frees the pool. */
void pool_free(struct pool *);

/*
 * Requests a connection for key on behalf of a session.  security is the
 * checked context the key was made from (NULL for none); the pool keeps a
 * copy, secrets included, while it has connections for the key, because
 * opening another one needs it.  With fresh set,
 * an idle connection is never taken: a new one is opened (used to retry a
 * transaction after a pooled connection died).  cb always runs later from
 * the event loop, never inside this call.  Returns NULL on ENOMEM.
 */
struct pool_wait *pool_acquire(struct pool *, const struct pool_key *key,
    const struct security *security, int fresh, uint64_t session,
    pool_acquire_cb *cb, void *arg);
/* Withdraws a request whose callback has not run yet. */
void pool_cancel(struct pool_wait *);

/* Gives back a connection.  With reusable clear (or when the connection
 * is no longer usable or is over its limits) it is closed. */
void pool_release(struct pool *, struct smtp_conn *, int reusable);

/* Records the outcome of a transaction on a connection of key: sent
 * (the server accepted the message) or an error. */
void pool_note_result(struct pool *, const struct pool_key *key, int sent);

/* Counts for logs and status output. */
struct pool_totals {
	unsigned	keys;
	unsigned	idle;
	unsigned	busy;
	unsigned	opening;
	unsigned	waiting;
	uint64_t	opened;
	uint64_t	reused;
	uint64_t	sent;		/* since the daemon started */
	uint64_t	errors;		/* failed opens and transactions */
};

void pool_get_totals(const struct pool *, struct pool_totals *);

/* One key as status output shows it; never contains a secret. */
struct pool_row {
	char		server[POOL_MAX_KEY];	/* normalized connstr */
	char		drivers[SECURITY_MAX_DESCRIPTION];
	unsigned	idle;
	unsigned	busy;
	unsigned	opening;
	unsigned	waiting;
	uint64_t	sent;
	uint64_t	errors;
	int64_t		oldest_age;	/* seconds, 0 without connections */
};

typedef void pool_row_cb(const struct pool_row *, void *arg);

/* Calls cb for every key in the pool. */
void pool_foreach_row(const struct pool *, pool_row_cb *cb, void *arg);

#endif
