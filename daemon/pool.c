/*
 * pool.c - upstream connections grouped by key, handed to sessions one
 * transaction at a time.
 *
 * Each key has an entry with its connections (opening, idle or busy) and
 * a FIFO of waiting requests.  pool_entry_dispatch() is the single place
 * that matches waiting requests with idle connections or opens new ones
 * within the per-key limit.  pool_conn_reusable() is the single place
 * that decides whether a connection may serve another transaction.
 *
 * Requests are answered from a zero-delay event, so a session never sees
 * its callback run inside its own call to pool_acquire().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/queue.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>

#include "log.h"
#include "pool.h"
#include "server.h"

enum pool_conn_state {
	POOL_CONN_OPENING,
	POOL_CONN_IDLE,
	POOL_CONN_BUSY,
};

struct pool_entry;

struct pool_conn {
	TAILQ_ENTRY(pool_conn)	 link;
	struct pool_entry	*entry;
	struct smtp_conn	*conn;
	enum pool_conn_state	 state;
	struct event		*idle_timer;
	struct pool_wait	*waiter;	/* OPENING: opened for it */
	struct server_gen	*gen;		/* configuration it uses */
};

TAILQ_HEAD(pool_conn_list, pool_conn);

struct pool_wait {
	TAILQ_ENTRY(pool_wait)	 link;
	struct pool		*pool;
	struct pool_entry	*entry;
	pool_acquire_cb		*cb;
	void			*arg;
	uint64_t		 session;
	int			 fresh;
	int			 queued;	/* in entry->waiters */
	struct pool_conn	*opening;	/* connection opened for it */
	struct event		*timeout;
	struct event		*deliver;
	/* The answer the delivery event hands over. */
	struct smtp_conn	*result_conn;
	struct smtp_result	 result;
	int			 has_result;
};

TAILQ_HEAD(pool_wait_list, pool_wait);

struct pool_entry {
	TAILQ_ENTRY(pool_entry)	 link;
	struct pool		*pool;
	struct pool_key		 key;
	struct security		 security;	/* copy, secrets included */
	struct pool_conn_list	 conns;
	unsigned		 nconns;	/* opening + idle + busy */
	struct pool_wait_list	 waiters;
	unsigned		 nwaiters;
	uint64_t		 sent;
	uint64_t		 errors;
};

TAILQ_HEAD(pool_entry_list, pool_entry);

struct pool {
	struct server		*server;
	struct pool_entry_list	 entries;
	uint64_t		 opened;
	uint64_t		 reused;
	uint64_t		 sent;
	uint64_t		 errors;
};

static void pool_entry_dispatch(struct pool_entry *);
static void pool_conn_close(struct pool_conn *, int send_quit,
    const char *reason);

void
pool_key_init(struct pool_key *key, const struct connstr *server,
    const char *security)
{
	char normalized[POOL_MAX_KEY - sizeof(key->security) - 1];

	memset(key, 0, sizeof(*key));
	key->server = *server;
	snprintf(key->security, sizeof(key->security), "%s",
	    security != NULL ? security : "");
	connstr_format(server, normalized, sizeof(normalized));
	/* The security part is left out while there is none, so the key
	 * reads as the normalized connection string in logs. */
	if (key->security[0] == '\0')
		snprintf(key->text, sizeof(key->text), "%.*s",
		    (int)sizeof(normalized) - 1, normalized);
	else
		snprintf(key->text, sizeof(key->text), "%.*s|%s",
		    (int)sizeof(normalized) - 1, normalized, key->security);
}

struct pool *
pool_new(struct server *server)
{
	struct pool	*pool;

	pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return NULL;
	pool->server = server;
	TAILQ_INIT(&pool->entries);
	return pool;
}

static struct pool_entry *
pool_entry_find(struct pool *pool, const struct pool_key *key)
{
	struct pool_entry	*entry;

	TAILQ_FOREACH(entry, &pool->entries, link) {
		if (strcmp(entry->key.text, key->text) == 0)
			return entry;
	}
	return NULL;
}

static struct pool_entry *
pool_entry_get(struct pool *pool, const struct pool_key *key,
    const struct security *security)
{
	struct pool_entry	*entry;

	entry = pool_entry_find(pool, key);
	if (entry != NULL)
		return entry;
	entry = calloc(1, sizeof(*entry));
	if (entry == NULL)
		return NULL;
	/* Equal keys mean equal digests, so the first context seen stands
	 * for every session of the key. */
	if (security != NULL && security_copy(&entry->security,
	    security) == -1) {
		free(entry);
		return NULL;
	}
	entry->pool = pool;
	entry->key = *key;
	TAILQ_INIT(&entry->conns);
	TAILQ_INIT(&entry->waiters);
	TAILQ_INSERT_TAIL(&pool->entries, entry, link);
	return entry;
}

/* Frees an entry once nothing refers to it any more. */
static void
pool_entry_release_if_empty(struct pool_entry *entry)
{
	if (entry->nconns != 0 || entry->nwaiters != 0)
		return;
	/* A request that was answered but not yet delivered still points to
	 * its entry only through ->entry, which it never reads after the
	 * answer; see pool_wait_answer(). */
	TAILQ_REMOVE(&entry->pool->entries, entry, link);
	security_clear(&entry->security);
	free(entry);
}

static const struct config *
pool_config(const struct pool *pool)
{
	return pool->server->cfg;
}

/* ---- Requests ----------------------------------------------------- */

static void
pool_wait_free(struct pool_wait *w)
{
	if (w->timeout != NULL)
		event_free(w->timeout);
	if (w->deliver != NULL)
		event_free(w->deliver);
	free(w);
}

static void
pool_wait_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_wait	*w = arg;
	pool_acquire_cb		*cb = w->cb;
	void			*cbarg = w->arg;
	struct smtp_conn	*conn = w->result_conn;
	struct smtp_result	 result = w->result;
	int			 has_result = w->has_result;

	pool_wait_free(w);
	cb(conn, has_result ? &result : NULL, cbarg);
}

/* Detaches a request from its entry and schedules its callback with conn
 * and, when known, the result of opening it (the failure when conn is
 * NULL). */
static void
pool_wait_answer(struct pool_wait *w, struct smtp_conn *conn,
    const struct smtp_result *result)
{
	struct pool_entry	*entry = w->entry;

	if (w->queued) {
		TAILQ_REMOVE(&entry->waiters, w, link);
		entry->nwaiters--;
		w->queued = 0;
	}
	if (w->timeout != NULL)
		event_del(w->timeout);
	w->opening = NULL;
	w->entry = NULL;
	w->result_conn = conn;
	if (result != NULL) {
		w->result = *result;
		w->has_result = 1;
	}
	event_active(w->deliver, 0, 0);
}

static void
pool_wait_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_wait	*w = arg;
	struct pool_entry	*entry = w->entry;
	struct smtp_result	 failure;
	unsigned		 seconds = pool_config(w->pool)->pool.wait_timeout;

	memset(&failure, 0, sizeof(failure));
	failure.outcome = SMTP_NETWORK;
	if (w->opening != NULL)
		/* The pool was not full: the server is slow to accept,
		 * greet or authenticate the connection opened for this
		 * request. */
		snprintf(failure.detail, sizeof(failure.detail),
		    "the connection opened to %.120s was not ready within "
		    "%u seconds (pool.wait_timeout); it is still in state "
		    "%s", entry->key.text, seconds,
		    smtp_state_name(smtp_get_state(w->opening->conn)));
	else
		snprintf(failure.detail, sizeof(failure.detail),
		    "no connection to %.160s became free within %u seconds "
		    "(pool.max_connections_per_key is %u)",
		    entry->key.text, seconds,
		    pool_config(w->pool)->pool.max_per_key);
	log_event(LOG_LEVEL_WARNING, w->session, "-", "pool.wait-timeout",
	    "key=%s seconds=%u", entry->key.text, seconds);

	/* A connection being opened for this request stays in the pool: it
	 * serves the next request once it is ready. */
	if (w->opening != NULL)
		w->opening->waiter = NULL;
	pool_wait_answer(w, NULL, &failure);
	pool_entry_release_if_empty(entry);
}

struct pool_wait *
pool_acquire(struct pool *pool, const struct pool_key *key,
    const struct security *security, int fresh, uint64_t session,
    pool_acquire_cb *cb, void *arg)
{
	struct event_base	*base = pool->server->base;
	struct pool_entry	*entry;
	struct pool_wait	*w;
	struct timeval		 tv;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->timeout = evtimer_new(base, pool_wait_timeout_cb, w);
	w->deliver = event_new(base, -1, 0, pool_wait_deliver_cb, w);
	entry = pool_entry_get(pool, key, security);
	if (w->timeout == NULL || w->deliver == NULL || entry == NULL) {
		pool_wait_free(w);
		return NULL;
	}
	w->pool = pool;
	w->entry = entry;
	w->cb = cb;
	w->arg = arg;
	w->session = session;
	w->fresh = fresh;

	TAILQ_INSERT_TAIL(&entry->waiters, w, link);
	entry->nwaiters++;
	w->queued = 1;

	tv.tv_sec = pool_config(pool)->pool.wait_timeout;
	tv.tv_usec = 0;
	evtimer_add(w->timeout, &tv);

	pool_entry_dispatch(entry);
	if (w->queued && w->opening == NULL)
		log_event(LOG_LEVEL_DEBUG, session, "-", "pool.wait",
		    "key=%s waiting=%u connections=%u", key->text,
		    entry->nwaiters, entry->nconns);
	return w;
}

void
pool_cancel(struct pool_wait *w)
{
	struct pool_entry	*entry = w->entry;

	if (entry == NULL) {
		/* Already answered: hand back a connection it was given. */
		event_del(w->deliver);
		if (w->result_conn != NULL)
			pool_release(w->pool, w->result_conn, 1);
		pool_wait_free(w);
		return;
	}
	if (w->opening != NULL)
		w->opening->waiter = NULL;
	if (w->queued) {
		TAILQ_REMOVE(&entry->waiters, w, link);
		entry->nwaiters--;
	}
	pool_wait_free(w);
	pool_entry_release_if_empty(entry);
}

/* ---- Connections -------------------------------------------------- */

/*
 * Decides whether an idle or just-released connection may carry another
 * transaction.  Returns 1, or 0 with reason filled for the log.
 */
static int
pool_conn_reusable(const struct pool_conn *pc, char *reason, size_t len)
{
	const struct config_pool *limits = &pool_config(pc->entry->pool)->pool;
	time_t			 age = time(NULL) - smtp_opened_at(pc->conn);
	unsigned		 sent = smtp_messages_sent(pc->conn);

	if (!smtp_is_usable(pc->conn)) {
		snprintf(reason, len, "not usable in state %s",
		    smtp_state_name(smtp_get_state(pc->conn)));
		return 0;
	}
	if (limits->max_messages != 0 && sent >= limits->max_messages) {
		snprintf(reason, len, "sent %u messages, the maximum per "
		    "connection", sent);
		return 0;
	}
	if (age >= (time_t)limits->max_age) {
		snprintf(reason, len, "open for %lld seconds, the maximum "
		    "age is %u", (long long)age, limits->max_age);
		return 0;
	}
	return 1;
}

static struct pool_conn *
pool_conn_find(struct pool *pool, const struct smtp_conn *conn)
{
	struct pool_entry	*entry;
	struct pool_conn	*pc;

	/* NOTE: a linear search; keys and connections per key are few. */
	TAILQ_FOREACH(entry, &pool->entries, link) {
		TAILQ_FOREACH(pc, &entry->conns, link) {
			if (pc->conn == conn)
				return pc;
		}
	}
	return NULL;
}

/* Removes pc from its entry, closes its connection and frees it. */
static void
pool_conn_close(struct pool_conn *pc, int send_quit, const char *reason)
{
	struct pool_entry	*entry = pc->entry;

	log_event(LOG_LEVEL_INFO, smtp_id(pc->conn), smtp_peer(pc->conn),
	    "pool.close", "key=%s reason=\"%s\" messages=%u", entry->key.text,
	    LOG_QUOTED(reason), smtp_messages_sent(pc->conn));
	TAILQ_REMOVE(&entry->conns, pc, link);
	entry->nconns--;
	if (pc->idle_timer != NULL)
		event_free(pc->idle_timer);
	smtp_close(pc->conn, send_quit);
	server_gen_release(pc->gen);
	free(pc);
}

static void
pool_idle_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_conn	*pc = arg;
	struct pool_entry	*entry = pc->entry;

	pool_conn_close(pc, 1, "idle timeout");
	pool_entry_dispatch(entry);
	pool_entry_release_if_empty(entry);
}

static void
pool_lost_cb(struct smtp_conn *conn, const char *reason, void *arg)
{
	struct pool_conn	*pc = arg;
	struct pool_entry	*entry = pc->entry;
	char			 why[320];

	snprintf(why, sizeof(why), "lost while idle: %s", reason);
	pool_conn_close(pc, 0, why);
	pool_entry_dispatch(entry);
	pool_entry_release_if_empty(entry);
}

/* Parks a ready connection until a request takes it or it times out. */
static void
pool_conn_make_idle(struct pool_conn *pc)
{
	struct timeval	tv;

	pc->state = POOL_CONN_IDLE;
	pc->waiter = NULL;
	smtp_set_lost_cb(pc->conn, pool_lost_cb, pc);
	tv.tv_sec = pool_config(pc->entry->pool)->pool.idle_timeout;
	tv.tv_usec = 0;
	evtimer_add(pc->idle_timer, &tv);
	log_event(LOG_LEVEL_DEBUG, smtp_id(pc->conn), smtp_peer(pc->conn),
	    "pool.idle", "key=%s", pc->entry->key.text);
}

/* Gives a ready connection to a request; opened is the result of opening
 * it for this request, NULL for a reused one. */
static void
pool_conn_hand_over(struct pool_conn *pc, struct pool_wait *w,
    const struct smtp_result *opened)
{
	struct pool	*pool = pc->entry->pool;

	pc->state = POOL_CONN_BUSY;
	pc->waiter = NULL;
	evtimer_del(pc->idle_timer);
	smtp_set_lost_cb(pc->conn, NULL, NULL);
	if (opened == NULL) {
		pool->reused++;
		log_event(LOG_LEVEL_INFO, w->session, smtp_peer(pc->conn),
		    "pool.reuse", "key=%s conn=%016llx messages=%u",
		    pc->entry->key.text,
		    (unsigned long long)smtp_id(pc->conn),
		    smtp_messages_sent(pc->conn));
	}
	pool_wait_answer(w, pc->conn, opened);
}

static void
pool_open_cb(struct smtp_conn *conn, const struct smtp_result *result,
    void *arg)
{
	struct pool_conn	*pc = arg;
	struct pool_entry	*entry = pc->entry;
	struct pool_wait	*w = pc->waiter;

	if (result->outcome == SMTP_OK) {
		if (w != NULL)
			pool_conn_hand_over(pc, w, result);
		else
			pool_conn_make_idle(pc);
		pool_entry_dispatch(entry);
		return;
	}

	/* The request it was opened for gets the failure; later requests
	 * try their own connection. */
	entry->errors++;
	entry->pool->errors++;
	pool_conn_close(pc, 0, result->detail[0] != '\0' ? result->detail :
	    "open failed");
	if (w != NULL)
		pool_wait_answer(w, NULL, result);
	pool_entry_dispatch(entry);
	pool_entry_release_if_empty(entry);
}

/* Applies allow_plaintext_auth to one server. */
static int
pool_plaintext_auth_allowed(const struct config *cfg,
    const struct connstr *server)
{
	struct in_addr	v4;

	switch (cfg->allow_plaintext_auth) {
	case CONFIG_PLAINTEXT_AUTH_YES:
		return 1;
	case CONFIG_PLAINTEXT_AUTH_LOOPBACK:
		if (strcmp(server->host, "localhost") == 0)
			return 1;
		if (server->host_is_ipv6)
			return strcmp(server->host, "::1") == 0;
		if (server->host_is_ip &&
		    inet_pton(AF_INET, server->host, &v4) == 1)
			return (ntohl(v4.s_addr) >> 24) == 127;
		return 0;
	case CONFIG_PLAINTEXT_AUTH_NO:
		break;
	}
	return 0;
}

/* Opens a new connection for request w.  Returns 0 or -1. */
static int
pool_conn_open(struct pool_entry *entry, struct pool_wait *w)
{
	struct server		*server = entry->pool->server;
	struct smtp_settings	 settings;
	struct pool_conn	*pc;

	pc = calloc(1, sizeof(*pc));
	if (pc == NULL)
		return -1;
	pc->idle_timer = evtimer_new(server->base, pool_idle_timeout_cb, pc);
	if (pc->idle_timer == NULL) {
		free(pc);
		return -1;
	}

	memset(&settings, 0, sizeof(settings));
	/* The settings point into the configuration of the moment, which a
	 * reload must not free while this connection lives. */
	pc->gen = server_gen_hold(server);
	settings.base = server->base;
	settings.dns = server->dns;
	settings.server = entry->key.server;
	if (entry->key.server.connector == CONNSTR_TLS) {
		settings.profile = config_profile(server->cfg,
		    entry->key.server.profile);
		settings.ssl_ctx = tlsctx_get(server->tls,
		    entry->key.server.profile);
		/* A reload may have removed the profile since the session
		 * checked it. */
		if (settings.profile == NULL || settings.ssl_ctx == NULL) {
			server_gen_release(pc->gen);
			event_free(pc->idle_timer);
			free(pc);
			return -1;
		}
	}
	settings.helo_name = server->helo_name;
	settings.timeouts = server->cfg->timeouts;
	settings.id = server_new_id();
	if (entry->security.count != 0) {
		settings.security = &entry->security;
		settings.starttls_profile = config_profile(server->cfg, NULL);
		settings.starttls_ctx = tlsctx_get(server->tls, "");
	}
	settings.allow_plaintext_auth = pool_plaintext_auth_allowed(
	    server->cfg, &entry->key.server);

	pc->entry = entry;
	pc->state = POOL_CONN_OPENING;
	pc->waiter = w;
	TAILQ_INSERT_TAIL(&entry->conns, pc, link);
	entry->nconns++;
	w->opening = pc;

	pc->conn = smtp_open(&settings, pool_open_cb, pc);
	if (pc->conn == NULL) {
		TAILQ_REMOVE(&entry->conns, pc, link);
		entry->nconns--;
		w->opening = NULL;
		server_gen_release(pc->gen);
		event_free(pc->idle_timer);
		free(pc);
		return -1;
	}
	entry->pool->opened++;
	log_event(LOG_LEVEL_INFO, w->session, smtp_peer(pc->conn),
	    "pool.open", "key=%s conn=%016llx connections=%u",
	    entry->key.text, (unsigned long long)settings.id, entry->nconns);
	return 0;
}

/* Takes the first idle connection that may still be reused, closing the
 * ones that may not. */
static struct pool_conn *
pool_entry_take_idle(struct pool_entry *entry)
{
	struct pool_conn	*pc, *next;
	char			 reason[160];

	for (pc = TAILQ_FIRST(&entry->conns); pc != NULL; pc = next) {
		next = TAILQ_NEXT(pc, link);
		if (pc->state != POOL_CONN_IDLE)
			continue;
		if (pool_conn_reusable(pc, reason, sizeof(reason)))
			return pc;
		pool_conn_close(pc, 1, reason);
	}
	return NULL;
}

/*
 * Serves waiting requests in order: an idle connection for a request that
 * accepts one, else a new connection while the key is under its limit.
 * A request already waiting for a connection being opened is skipped.
 */
static void
pool_entry_dispatch(struct pool_entry *entry)
{
	unsigned		 max = pool_config(entry->pool)->pool.max_per_key;
	struct pool_wait	*w, *next;
	struct pool_conn	*pc;

	for (w = TAILQ_FIRST(&entry->waiters); w != NULL; w = next) {
		next = TAILQ_NEXT(w, link);
		if (w->opening != NULL)
			continue;
		if (!w->fresh && (pc = pool_entry_take_idle(entry)) != NULL) {
			pool_conn_hand_over(pc, w, NULL);
			continue;
		}
		if (entry->nconns >= max) {
			/* A fresh request may displace an idle connection,
			 * which the retry it serves is about to replace. */
			if (!w->fresh ||
			    (pc = pool_entry_take_idle(entry)) == NULL)
				break;
			pool_conn_close(pc, 1, "making room for a fresh "
			    "connection");
		}
		if (pool_conn_open(entry, w) == -1) {
			struct smtp_result	failure;

			memset(&failure, 0, sizeof(failure));
			failure.outcome = SMTP_NETWORK;
			snprintf(failure.detail, sizeof(failure.detail),
			    "cannot open a connection to %.160s: out of "
			    "memory, or its TLS profile is no longer "
			    "defined", entry->key.text);
			pool_wait_answer(w, NULL, &failure);
		}
	}
}

void
pool_release(struct pool *pool, struct smtp_conn *conn, int reusable)
{
	struct pool_conn	*pc;
	struct pool_entry	*entry;
	char			 reason[160];

	pc = pool_conn_find(pool, conn);
	if (pc == NULL) {
		log_event(LOG_LEVEL_ERR, smtp_id(conn), smtp_peer(conn),
		    "pool.internal-error", "detail=\"released connection "
		    "not in the pool\"");
		smtp_close(conn, 0);
		return;
	}
	entry = pc->entry;

	if (!reusable)
		pool_conn_close(pc, smtp_is_usable(conn), "not reusable "
		    "after the last transaction");
	else if (!pool_conn_reusable(pc, reason, sizeof(reason)))
		pool_conn_close(pc, 1, reason);
	else
		pool_conn_make_idle(pc);

	pool_entry_dispatch(entry);
	pool_entry_release_if_empty(entry);
}

void
pool_note_result(struct pool *pool, const struct pool_key *key, int sent)
{
	struct pool_entry	*entry = pool_entry_find(pool, key);

	if (sent)
		pool->sent++;
	else
		pool->errors++;
	if (entry == NULL)
		return;
	if (sent)
		entry->sent++;
	else
		entry->errors++;
}

void
pool_foreach_row(const struct pool *pool, pool_row_cb *cb, void *arg)
{
	const struct pool_entry	*entry;
	const struct pool_conn	*pc;
	struct pool_row		 row;
	time_t			 now = time(NULL), age;

	TAILQ_FOREACH(entry, &pool->entries, link) {
		memset(&row, 0, sizeof(row));
		connstr_format(&entry->key.server, row.server,
		    sizeof(row.server));
		security_driver_names(&entry->security, row.drivers,
		    sizeof(row.drivers));
		row.waiting = entry->nwaiters;
		row.sent = entry->sent;
		row.errors = entry->errors;
		TAILQ_FOREACH(pc, &entry->conns, link) {
			if (pc->state == POOL_CONN_IDLE)
				row.idle++;
			else if (pc->state == POOL_CONN_BUSY)
				row.busy++;
			else
				row.opening++;
			age = now - smtp_opened_at(pc->conn);
			if (age > row.oldest_age)
				row.oldest_age = age;
		}
		cb(&row, arg);
	}
}

void
pool_get_totals(const struct pool *pool, struct pool_totals *t)
{
	const struct pool_entry	*entry;
	const struct pool_conn	*pc;

	memset(t, 0, sizeof(*t));
	TAILQ_FOREACH(entry, &pool->entries, link) {
		t->keys++;
		t->waiting += entry->nwaiters;
		TAILQ_FOREACH(pc, &entry->conns, link) {
			if (pc->state == POOL_CONN_IDLE)
				t->idle++;
			else if (pc->state == POOL_CONN_BUSY)
				t->busy++;
			else
				t->opening++;
		}
	}
	t->opened = pool->opened;
	t->reused = pool->reused;
	t->sent = pool->sent;
	t->errors = pool->errors;
}

void
pool_free(struct pool *pool)
{
	struct pool_entry	*entry;
	struct pool_conn	*pc;
	struct pool_wait	*w;

	if (pool == NULL)
		return;
	while ((entry = TAILQ_FIRST(&pool->entries)) != NULL) {
		while ((w = TAILQ_FIRST(&entry->waiters)) != NULL) {
			TAILQ_REMOVE(&entry->waiters, w, link);
			pool_wait_free(w);
		}
		while ((pc = TAILQ_FIRST(&entry->conns)) != NULL)
			pool_conn_close(pc, pc->state == POOL_CONN_IDLE,
			    "daemon stopping");
		TAILQ_REMOVE(&pool->entries, entry, link);
		security_clear(&entry->security);
		free(entry);
	}
	free(pool);
}
