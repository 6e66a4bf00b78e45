/*
 * server.c - the daemon's life cycle: start-up, systemd notifications,
 * configuration reload and the draining shutdown.
 *
 * systemd: READY=1 once the configuration, the TLS contexts and the socket
 * are ready; STATUS= with pool counts every SERVER_STATUS_INTERVAL seconds
 * and after a reload; RELOADING=1 and READY=1 around a reload; STOPPING=1
 * on SIGTERM; WATCHDOG=1 at half the watchdog interval when systemd asks
 * for one.  Without systemd these calls do nothing.
 *
 * SIGHUP re-reads the configuration file.  New pool limits, timeouts and
 * TLS profiles apply to connections opened afterwards; an invalid file is
 * logged and the running configuration stays.
 *
 * SIGTERM or SIGINT: the listener closes; clients without a request in
 * progress are disconnected at once; requests in progress finish and get
 * their reply, within shutdown.drain_timeout; what is still running then
 * is cut off and reported as failed.  Idle upstream connections get QUIT
 * and the loop ends when nothing is left.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include <event2/event.h>
#include <event2/dns.h>
#include <systemd/sd-daemon.h>

#include "listener.h"
#include "log.h"
#include "pool.h"
#include "security.h"
#include "server.h"
#include "session.h"

/* Seconds between STATUS= updates to systemd. */
#define SERVER_STATUS_INTERVAL	5

uint64_t
server_new_id(void)
{
	static uint64_t	counter;
	uint64_t	id = 0;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
		id = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
	/* The counter keeps ids distinct even if the random source failed. */
	id ^= ++counter;
	return id != 0 ? id : 1;
}

/* ---- Configuration generations ------------------------------------ */

static struct server_gen *
server_gen_new(struct config *cfg, char *err, size_t errlen)
{
	struct server_gen	*gen;

	gen = calloc(1, sizeof(*gen));
	if (gen == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	gen->tls = tlsctx_set_new(cfg, err, errlen);
	if (gen->tls == NULL) {
		free(gen);
		return NULL;
	}
	gen->cfg = cfg;
	gen->refs = 1;
	return gen;
}

struct server_gen *
server_gen_hold(struct server *server)
{
	server->gen->refs++;
	return server->gen;
}

void
server_gen_release(struct server_gen *gen)
{
	if (gen == NULL || --gen->refs != 0)
		return;
	tlsctx_set_free(gen->tls);
	config_free(gen->cfg);
	free(gen);
}

/* Makes gen the current generation. */
static void
server_gen_install(struct server *server, struct server_gen *gen)
{
	struct server_gen	*old = server->gen;

	server->gen = gen;
	server->cfg = gen->cfg;
	server->tls = gen->tls;
	server_gen_release(old);
}

/* Logs a warning for each profile that does not verify servers. */
static void
server_warn_unverified(const struct config *cfg)
{
	size_t	i;

	if (!cfg->tls_default.verify_server)
		log_event(LOG_LEVEL_WARNING, 0, "-", "config.tls",
		    "profile=default detail=\"verify_server is off: server "
		    "certificates are not checked\"");
	for (i = 0; i < cfg->nprofiles; i++) {
		if (!cfg->profiles[i].verify_server)
			log_event(LOG_LEVEL_WARNING, 0, "-", "config.tls",
			    "profile=%s detail=\"verify_server is off: server "
			    "certificates are not checked\"",
			    cfg->profiles[i].name);
	}
}

/* ---- Start-up ----------------------------------------------------- */

/* Fills the HELO name and spool folder from the configuration or the
 * system. */
static void
server_set_names(struct server *server)
{
	const struct config	*cfg = server->cfg;
	const char		*tmp;

	if (cfg->helo_name != NULL)
		snprintf(server->helo_name, sizeof(server->helo_name), "%s",
		    cfg->helo_name);
	else if (gethostname(server->helo_name,
	    sizeof(server->helo_name) - 1) == -1 ||
	    server->helo_name[0] == '\0')
		snprintf(server->helo_name, sizeof(server->helo_name),
		    "localhost");

	tmp = getenv("TMPDIR");
	if (cfg->spool_dir != NULL)
		snprintf(server->spool_dir, sizeof(server->spool_dir), "%s",
		    cfg->spool_dir);
	else if (tmp != NULL && tmp[0] == '/')
		snprintf(server->spool_dir, sizeof(server->spool_dir), "%s",
		    tmp);
	else
		snprintf(server->spool_dir, sizeof(server->spool_dir), "/tmp");
}

static void
server_dns_init(struct server *server)
{
	server->dns = evdns_base_new(server->base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (server->dns != NULL)
		return;
	/* No usable resolv.conf: IP literals and /etc/hosts still work. */
	log_event(LOG_LEVEL_WARNING, 0, "-", "daemon.dns",
	    "detail=\"cannot read the resolver configuration; only IP "
	    "literals and /etc/hosts names will resolve\"");
	server->dns = evdns_base_new(server->base, 0);
	if (server->dns != NULL)
		evdns_base_load_hosts(server->dns, NULL);
}

int
server_init(struct server *server, struct config *cfg,
    const char *config_path, char *err, size_t errlen)
{
	struct server_gen	*gen;
	struct event_config	*evcfg;

	memset(server, 0, sizeof(*server));
	TAILQ_INIT(&server->sessions);
	server->started = time(NULL);
	/* Until the generation exists, server_free() frees cfg itself. */
	server->cfg = cfg;
	if (config_path != NULL &&
	    (server->config_path = strdup(config_path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (security_init_key() == -1) {
		snprintf(err, errlen, "cannot create the security digest key: "
		    "the random number generator failed");
		return -1;
	}

	/* The epoll changelist folds the add and delete of a write event
	 * within one loop pass into at most one epoll_ctl(2), which matters
	 * because every reply and command makes such a pair.  Descriptors
	 * are never dup()ed here, the case the flag is unsafe for. */
	evcfg = event_config_new();
	if (evcfg != NULL) {
		event_config_set_flag(evcfg,
		    EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
		server->base = event_base_new_with_config(evcfg);
		event_config_free(evcfg);
	}
	if (server->base == NULL)
		server->base = event_base_new();
	if (server->base == NULL) {
		snprintf(err, errlen, "cannot create the event loop");
		return -1;
	}
	server_dns_init(server);
	if (server->dns == NULL) {
		snprintf(err, errlen, "cannot create the DNS resolver");
		return -1;
	}
	gen = server_gen_new(cfg, err, errlen);
	if (gen == NULL)
		return -1;
	server->gen = gen;
	server->tls = gen->tls;
	server_warn_unverified(cfg);

	server->pool = pool_new(server);
	if (server->pool == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	server_set_names(server);
	return 0;
}

int
server_listen(struct server *server, const char *socket_path, char *err,
    size_t errlen)
{
	return listener_open(server, socket_path, err, errlen);
}

/* ---- systemd ------------------------------------------------------ */

/* Sends STATUS= with the current counts. */
static void
server_notify_status(struct server *server)
{
	struct pool_totals	t;

	if (server->pool != NULL)
		pool_get_totals(server->pool, &t);
	else
		t = server->final_totals;
	sd_notifyf(0, "STATUS=sessions=%u keys=%u idle=%u busy=%u "
	    "opening=%u waiting=%u sent=%llu errors=%llu%s",
	    server->nsessions, t.keys, t.idle, t.busy, t.opening, t.waiting,
	    (unsigned long long)t.sent, (unsigned long long)t.errors,
	    server->stopping ? " stopping" : "");
}

static void
server_status_cb(evutil_socket_t fd, short what, void *arg)
{
	server_notify_status(arg);
}

static void
server_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
}

/* Starts the STATUS= and WATCHDOG=1 timers. */
static int
server_notify_start(struct server *server)
{
	struct timeval	tv = { SERVER_STATUS_INTERVAL, 0 };
	uint64_t	usec = 0;

	server->ev_status = event_new(server->base, -1, EV_PERSIST,
	    server_status_cb, server);
	if (server->ev_status == NULL)
		return -1;
	event_add(server->ev_status, &tv);

	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		/* Half the interval, as sd_watchdog_enabled(3) advises. */
		tv.tv_sec = (time_t)(usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(usec / 2 % 1000000);
		server->ev_watchdog = event_new(server->base, -1, EV_PERSIST,
		    server_watchdog_cb, server);
		if (server->ev_watchdog == NULL)
			return -1;
		event_add(server->ev_watchdog, &tv);
		log_event(LOG_LEVEL_INFO, 0, "-", "daemon.watchdog",
		    "interval_usec=%llu", (unsigned long long)usec);
	}
	return 0;
}

/* ---- Reload ------------------------------------------------------- */

static void
server_reload(struct server *server)
{
	struct server_gen	*gen;
	struct config		*cfg;
	char			 err[512];

	sd_notify(0, "RELOADING=1");
	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.reload", "config=%s",
	    server->config_path != NULL ? server->config_path : "built-in");

	cfg = config_load(server->config_path, err, sizeof(err));
	if (cfg == NULL) {
		log_event(LOG_LEVEL_ERR, 0, "-", "daemon.reload-failed",
		    "error=\"%s\" detail=\"the running configuration stays\"",
		    err);
		goto done;
	}
	gen = server_gen_new(cfg, err, sizeof(err));
	if (gen == NULL) {
		log_event(LOG_LEVEL_ERR, 0, "-", "daemon.reload-failed",
		    "error=\"%s\" detail=\"the running configuration stays\"",
		    err);
		config_free(cfg);
		goto done;
	}

	if ((cfg->socket_path == NULL) != (server->cfg->socket_path == NULL) ||
	    (cfg->socket_path != NULL &&
	    strcmp(cfg->socket_path, server->cfg->socket_path) != 0) ||
	    cfg->socket_mode != server->cfg->socket_mode)
		log_event(LOG_LEVEL_WARNING, 0, "-", "daemon.reload",
		    "detail=\"socket.path and socket.mode changes take "
		    "effect after a restart\"");
	if (cfg->log_level != server->cfg->log_level &&
	    log_get_level() != LOG_LEVEL_DEBUG)
		log_set_level(cfg->log_level);
	server_warn_unverified(cfg);
	server_gen_install(server, gen);
	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.reloaded",
	    "max_per_key=%u idle_timeout=%u profiles=%zu",
	    cfg->pool.max_per_key, cfg->pool.idle_timeout, cfg->nprofiles);
done:
	sd_notify(0, "READY=1");
	server_notify_status(server);
}

/* ---- Shutdown ----------------------------------------------------- */

/* Ends what keeps the loop alive once every session is gone. */
static void
server_finish_stop(struct server *server)
{
	if (server->ev_drain != NULL) {
		event_free(server->ev_drain);
		server->ev_drain = NULL;
	}
	/* QUIT goes to idle connections; their closing ends the loop. */
	pool_get_totals(server->pool, &server->final_totals);
	pool_free(server->pool);
	server->pool = NULL;
	if (server->ev_status != NULL)
		event_del(server->ev_status);
	if (server->ev_watchdog != NULL)
		event_del(server->ev_watchdog);
	if (server->ev_sigterm != NULL)
		event_del(server->ev_sigterm);
	if (server->ev_sigint != NULL)
		event_del(server->ev_sigint);
	if (server->ev_sighup != NULL)
		event_del(server->ev_sighup);
	if (server->dns != NULL) {
		evdns_base_free(server->dns, 1);
		server->dns = NULL;
	}
}

void
server_session_gone(struct server *server)
{
	if (server->stopping && server->nsessions == 0 &&
	    server->pool != NULL)
		server_finish_stop(server);
}

static void
server_drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server	*server = arg;

	log_event(LOG_LEVEL_WARNING, 0, "-", "daemon.drain-timeout",
	    "seconds=%u sessions=%u", server->cfg->drain_timeout,
	    server->nsessions);
	session_cut_off_all(server);
	server_session_gone(server);
}

static void
server_stop(struct server *server, const char *signal_name)
{
	struct timeval	tv;

	if (server->stopping)
		return;
	server->stopping = 1;
	sd_notify(0, "STOPPING=1");
	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.stopping",
	    "signal=%s sessions=%u drain_timeout=%u", signal_name,
	    server->nsessions, server->cfg->drain_timeout);

	listener_close(server);

	tv.tv_sec = server->cfg->drain_timeout;
	tv.tv_usec = 0;
	server->ev_drain = evtimer_new(server->base,
	    server_drain_deadline_cb, server);
	if (server->ev_drain != NULL)
		evtimer_add(server->ev_drain, &tv);

	session_drain_all(server);
	server_session_gone(server);
}

static void
server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server	*server = arg;

	switch (sig) {
	case SIGTERM:
		server_stop(server, "SIGTERM");
		break;
	case SIGINT:
		server_stop(server, "SIGINT");
		break;
	case SIGHUP:
		if (!server->stopping)
			server_reload(server);
		break;
	default:
		break;
	}
}

int
server_run(struct server *server)
{
	signal(SIGPIPE, SIG_IGN);
	server->ev_sigterm = evsignal_new(server->base, SIGTERM,
	    server_signal_cb, server);
	server->ev_sigint = evsignal_new(server->base, SIGINT,
	    server_signal_cb, server);
	server->ev_sighup = evsignal_new(server->base, SIGHUP,
	    server_signal_cb, server);
	if (server->ev_sigterm == NULL || server->ev_sigint == NULL ||
	    server->ev_sighup == NULL || server_notify_start(server) == -1)
		return -1;
	event_add(server->ev_sigterm, NULL);
	event_add(server->ev_sigint, NULL);
	event_add(server->ev_sighup, NULL);

	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.ready",
	    "socket=%s helo=%s", server->socket_path, server->helo_name);
	sd_notify(0, "READY=1");
	server_notify_status(server);
	if (event_base_dispatch(server->base) == -1)
		return -1;

	if (server->pool != NULL)
		pool_get_totals(server->pool, &server->final_totals);
	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.stopped",
	    "sessions=%llu opened=%llu reused=%llu sent=%llu",
	    (unsigned long long)server->sessions_total,
	    (unsigned long long)server->final_totals.opened,
	    (unsigned long long)server->final_totals.reused,
	    (unsigned long long)server->final_totals.sent);
	return 0;
}

static void
server_event_free(struct event **ev)
{
	if (*ev != NULL)
		event_free(*ev);
	*ev = NULL;
}

void
server_free(struct server *server)
{
	listener_close(server);
	free(server->socket_path);
	free(server->config_path);
	if (server->pool != NULL)
		pool_free(server->pool);
	server_event_free(&server->ev_drain);
	server_event_free(&server->ev_status);
	server_event_free(&server->ev_watchdog);
	server_event_free(&server->ev_sigterm);
	server_event_free(&server->ev_sigint);
	server_event_free(&server->ev_sighup);
	if (server->dns != NULL)
		evdns_base_free(server->dns, 0);
	if (server->base != NULL)
		event_base_free(server->base);
	if (server->gen != NULL)
		server_gen_release(server->gen);
	else
		config_free(server->cfg);
	memset(server, 0, sizeof(*server));
}
