/*
 * server.c - the listening Unix socket, signals and the daemon's shutdown.
 *
 * The socket path comes from the command line, the configuration, or the
 * default rule shared with the clients (proto_default_socket_path).  A
 * socket file left by a dead daemon is replaced; a live daemon on the same
 * path is a start-up error.
 *
 * Shutdown (SIGTERM or SIGINT): the listener closes, every client is
 * disconnected, transactions already running upstream finish (bounded by
 * their state timeouts and a fixed deadline), idle upstream connections
 * get QUIT, and the loop ends when nothing is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <event2/event.h>
#include <event2/dns.h>
#include <event2/listener.h>

#include "proto.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "session.h"

/* Seconds a stopping daemon waits for running transactions. */
#define SERVER_STOP_DEADLINE	30

static struct event	*server_stop_timer;

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
server_libevent_dns_init(struct server *server)
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
server_init(struct server *server, struct config *cfg, char *err,
    size_t errlen)
{
	memset(server, 0, sizeof(*server));
	TAILQ_INIT(&server->sessions);
	server->cfg = cfg;

	server->base = event_base_new();
	if (server->base == NULL) {
		snprintf(err, errlen, "cannot create the event loop");
		return -1;
	}
	server_libevent_dns_init(server);
	if (server->dns == NULL) {
		snprintf(err, errlen, "cannot create the DNS resolver");
		return -1;
	}
	server->tls = tlsctx_set_new(cfg, err, errlen);
	if (server->tls == NULL)
		return -1;
	server->pool = pool_new(server);
	if (server->pool == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	server_set_names(server);
	return 0;
}

/* ---- Socket ------------------------------------------------------- */

/* Returns 1 when a daemon accepts connections on path. */
static int
server_socket_alive(const struct sockaddr_un *sun)
{
	int	fd, alive;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return 0;
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return alive;
}

/* Creates the socket's folder when it does not exist (one level, as
 * /run/smtpool is when the daemon runs without systemd). */
static void
server_make_parent(const char *path)
{
	char	dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char	*slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0755) == 0)
		log_event(LOG_LEVEL_INFO, 0, "-", "daemon.mkdir", "path=%s",
		    dir);
}

/* Binds and listens on path.  Returns the descriptor or -1 with err. */
static int
server_bind(const char *path, mode_t mode, char *err, size_t errlen)
{
	struct sockaddr_un	sun;
	struct stat		st;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "socket path %s is longer than %zu "
		    "bytes; choose a shorter socket.path", path,
		    sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	server_make_parent(path);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		if (errno != EADDRINUSE) {
			snprintf(err, errlen, "cannot bind %s: %s", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
		if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket; "
			    "remove it or choose another socket.path", path);
			close(fd);
			return -1;
		}
		if (server_socket_alive(&sun)) {
			snprintf(err, errlen, "another smtpoold is already "
			    "listening on %s", path);
			close(fd);
			return -1;
		}
		log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.stale-socket",
		    "path=%s", path);
		if (unlink(path) == -1 ||
		    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
			snprintf(err, errlen, "cannot replace stale socket "
			    "%s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
	}
	if (chmod(path, mode) == -1 || listen(fd, 128) == -1) {
		snprintf(err, errlen, "cannot set up socket %s: %s", path,
		    strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

/* Turns away a client over max_clients with an ERROR frame. */
static void
server_reject_client(struct server *server, evutil_socket_t fd)
{
	struct proto_buf	buf;
	char			message[128];
	ssize_t			n;

	snprintf(message, sizeof(message), "too many clients: the daemon "
	    "serves at most %u at once (max_clients); try again later",
	    server->cfg->max_clients);
	memset(&buf, 0, sizeof(buf));
	if (proto_build_reply(&buf, PROTO_OP_ERROR, PROTO_STATUS_NETWORK, 0,
	    "", message, NULL, 0) == 0) {
		/* Best effort: the frame fits an empty socket buffer. */
		n = write(fd, buf.data, buf.len);
		(void)n;
	}
	proto_buf_free(&buf);
	evutil_closesocket(fd);
	log_event(LOG_LEVEL_WARNING, 0, "-", "daemon.client-rejected",
	    "reason=max_clients max_clients=%u", server->cfg->max_clients);
}

static void
server_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
    struct sockaddr *addr, int socklen, void *arg)
{
	struct server	*server = arg;

	if (server->stopping) {
		evutil_closesocket(fd);
		return;
	}
	if (server->nsessions >= server->cfg->max_clients) {
		server_reject_client(server, fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	if (session_new(server, fd) == NULL)
		log_event(LOG_LEVEL_ERR, 0, "-", "daemon.accept",
		    "error=\"out of memory\"");
}

static void
server_accept_error_cb(struct evconnlistener *listener, void *arg)
{
	int	error = EVUTIL_SOCKET_ERROR();

	log_event(LOG_LEVEL_ERR, 0, "-", "daemon.accept", "error=\"%s\"",
	    evutil_socket_error_to_string(error));
}

int
server_listen(struct server *server, const char *socket_path, char *err,
    size_t errlen)
{
	char	path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int	fd;

	if (socket_path != NULL)
		snprintf(path, sizeof(path), "%s", socket_path);
	else if (server->cfg->socket_path != NULL)
		snprintf(path, sizeof(path), "%s", server->cfg->socket_path);
	else if (proto_default_socket_path(path, sizeof(path), err,
	    errlen) == -1)
		return -1;

	fd = server_bind(path, server->cfg->socket_mode, err, errlen);
	if (fd == -1)
		return -1;
	server->socket_path = strdup(path);
	server->socket_owned = 1;
	server->listener = evconnlistener_new(server->base, server_accept_cb,
	    server, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (server->listener == NULL || server->socket_path == NULL) {
		snprintf(err, errlen, "cannot listen on %s", path);
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(server->listener, server_accept_error_cb);
	return 0;
}

/* ---- Shutdown ----------------------------------------------------- */

/* Ends what keeps the loop alive once every session is gone. */
static void
server_finish_stop(struct server *server)
{
	if (server_stop_timer != NULL) {
		event_free(server_stop_timer);
		server_stop_timer = NULL;
	}
	/* QUIT goes to idle connections; their closing ends the loop. */
	pool_get_totals(server->pool, &server->final_totals);
	pool_free(server->pool);
	server->pool = NULL;
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
server_stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server	*server = arg;

	log_event(LOG_LEVEL_WARNING, 0, "-", "daemon.stop-deadline",
	    "seconds=%d sessions=%u", SERVER_STOP_DEADLINE,
	    server->nsessions);
	event_base_loopbreak(server->base);
}

static void
server_stop(struct server *server, const char *signal_name)
{
	struct timeval	tv = { SERVER_STOP_DEADLINE, 0 };

	if (server->stopping)
		return;
	server->stopping = 1;
	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.stopping",
	    "signal=%s sessions=%u", signal_name, server->nsessions);

	if (server->listener != NULL) {
		evconnlistener_free(server->listener);
		server->listener = NULL;
	}
	if (server->socket_owned && server->socket_path != NULL) {
		unlink(server->socket_path);
		server->socket_owned = 0;
	}

	server_stop_timer = evtimer_new(server->base, server_stop_deadline_cb,
	    server);
	if (server_stop_timer != NULL)
		evtimer_add(server_stop_timer, &tv);

	session_shutdown_all(server);
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
		/* TODO: re-read the configuration on SIGHUP. */
		log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.sighup",
		    "detail=\"configuration reload is not supported yet; "
		    "restart the daemon to apply changes\"");
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
	    server->ev_sighup == NULL)
		return -1;
	event_add(server->ev_sigterm, NULL);
	event_add(server->ev_sigint, NULL);
	event_add(server->ev_sighup, NULL);

	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.ready",
	    "socket=%s helo=%s", server->socket_path, server->helo_name);
	if (event_base_dispatch(server->base) == -1)
		return -1;

	if (server->pool != NULL)
		pool_get_totals(server->pool, &server->final_totals);
	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.stopped",
	    "sessions=%llu opened=%llu reused=%llu",
	    (unsigned long long)server->sessions_total,
	    (unsigned long long)server->final_totals.opened,
	    (unsigned long long)server->final_totals.reused);
	return 0;
}

void
server_free(struct server *server)
{
	if (server->listener != NULL)
		evconnlistener_free(server->listener);
	if (server->socket_owned && server->socket_path != NULL)
		unlink(server->socket_path);
	free(server->socket_path);
	if (server->pool != NULL)
		pool_free(server->pool);
	if (server_stop_timer != NULL) {
		event_free(server_stop_timer);
		server_stop_timer = NULL;
	}
	if (server->ev_sigterm != NULL)
		event_free(server->ev_sigterm);
	if (server->ev_sigint != NULL)
		event_free(server->ev_sigint);
	if (server->ev_sighup != NULL)
		event_free(server->ev_sighup);
	if (server->dns != NULL)
		evdns_base_free(server->dns, 0);
	if (server->tls != NULL)
		tlsctx_set_free(server->tls);
	if (server->base != NULL)
		event_base_free(server->base);
	config_free(server->cfg);
	memset(server, 0, sizeof(*server));
}
