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

/*
 * One loaded configuration with its TLS contexts.  A reload makes a new
 * generation; upstream connections hold a reference to the one they were
 * opened with, because their settings point into it, and the old one is
 * freed when the last of them closes.
 */
struct server_gen {
	struct config		*cfg;
	struct tlsctx_set	*tls;
	unsigned		 refs;
};

struct server {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct server_gen	*gen;		/* current generation */
	struct config		*cfg;		/* gen->cfg */
	struct tlsctx_set	*tls;		/* gen->tls */
	struct pool		*pool;
	char			*config_path;	/* re-read on SIGHUP */
	time_t			 started;

	struct evconnlistener	*listener;
	char			*socket_path;	/* NULL until bound */
	int			 socket_owned;	/* unlink at exit */

	struct event		*ev_sigterm;
	struct event		*ev_sigint;
	struct event		*ev_sighup;
	struct event		*ev_status;	/* sd_notify STATUS= */
	struct event		*ev_watchdog;
	struct event		*ev_drain;	/* drain deadline */

	struct session_list	 sessions;
	unsigned		 nsessions;
	uint64_t		 sessions_total;
	struct pool_totals	 final_totals;	/* kept when the pool goes */

	char			 helo_name[256];
	char			 spool_dir[256];
	int			 stopping;
};

/* Sets up the loop, DNS, TLS contexts and pool for cfg (taken over by the
 * server), read from config_path (NULL: built-in defaults).  Returns 0 or
 * -1 with err filled. */
int server_init(struct server *, struct config *cfg,
    const char *config_path, char *err, size_t errlen);
/* Takes the socket systemd passed (socket activation), or binds one
 * (replacing a stale one), and starts accepting.  socket_path overrides
 * the configuration when not NULL. */
int server_listen(struct server *, const char *socket_path, char *err,
    size_t errlen);
/* Runs the loop until SIGTERM or SIGINT and the shutdown finished. */
int server_run(struct server *);
void server_free(struct server *);

/* Takes and drops a reference to the current configuration generation. */
struct server_gen *server_gen_hold(struct server *);
void server_gen_release(struct server_gen *);

/* Returns a random 64-bit id for a session or a connection. */
uint64_t server_new_id(void);

/* Called after a session has been freed, so a stopping daemon can tell
 * when the last one is gone. */
void server_session_gone(struct server *);

#endif
