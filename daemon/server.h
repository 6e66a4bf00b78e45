/*
 * server.h - the daemon as a whole: event loop, listening Unix socket,
 * client sessions, configuration, TLS contexts and the pool.
 */
#ifndef SMTPOOL_SERVER_H
#define SMTPOOL_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/dns.h>
#include <event2/listener.h>

#include "config.h"
#include "pool.h"
#include "tlsctx.h"

struct session;

TAILQ_HEAD(session_list, session);

struct server {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct config		*cfg;
	struct tlsctx_set	*tls;
	struct pool		*pool;

	struct evconnlistener	*listener;
	char			*socket_path;	/* NULL until bound */
	int			 socket_owned;	/* unlink at exit */

	struct event		*ev_sigterm;
	struct event		*ev_sigint;
	struct event		*ev_sighup;

	struct session_list	 sessions;
	unsigned		 nsessions;
	uint64_t		 sessions_total;
	struct pool_totals	 final_totals;	/* kept when the pool goes */

	char			 helo_name[256];
	char			 spool_dir[256];
	int			 stopping;
};

/* Sets up the loop, DNS, TLS contexts and pool for cfg (taken over by the
 * server).  Returns 0 or -1 with err filled. */
int server_init(struct server *, struct config *cfg, char *err,
    size_t errlen);
/* Binds the socket (replacing a stale one) and starts accepting.
 * socket_path overrides the configuration when not NULL. */
int server_listen(struct server *, const char *socket_path, char *err,
    size_t errlen);
/* Runs the loop until SIGTERM or SIGINT and the shutdown finished. */
int server_run(struct server *);
void server_free(struct server *);

/* Returns a random 64-bit id for a session or a connection. */
uint64_t server_new_id(void);

/* Called after a session has been freed, so a stopping daemon can tell
 * when the last one is gone. */
void server_session_gone(struct server *);

#endif
