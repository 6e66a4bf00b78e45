/*
 * listener.c - the Unix socket clients connect to.
 *
 * Under systemd socket activation the daemon takes the listening socket it
 * is given (sd_listen_fds) and leaves the file to systemd.  Otherwise it
 * binds the path from the command line, the configuration or the default
 * rule shared with the clients (proto_default_socket_path): a socket file
 * left by a dead daemon is replaced, a live daemon on the same path is a
 * start-up error.
 *
 * Every accepted client is checked against access.users and access.groups
 * with its SO_PEERCRED credentials; a client not allowed gets an ERROR
 * frame and is disconnected.  With both lists empty the socket file's
 * permissions alone decide.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <event2/listener.h>
#include <systemd/sd-daemon.h>

#include "proto.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "session.h"

/* Supplementary groups looked at per peer; more are ignored. */
#define LISTENER_MAX_GROUPS	256

/* Returns 1 when a daemon accepts connections on sun. */
static int
listener_socket_alive(const struct sockaddr_un *sun)
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
listener_make_parent(const char *path)
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
listener_bind(const char *path, mode_t mode, char *err, size_t errlen)
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
	listener_make_parent(path);

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
		if (listener_socket_alive(&sun)) {
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

/*
 * Returns the listening socket systemd passed, -1 when there is none, or
 * -2 with err filled when what was passed is unusable.
 */
static int
listener_activated(char *path, size_t pathlen, char *err, size_t errlen)
{
	struct sockaddr_un	sun;
	socklen_t		len = sizeof(sun);
	int			n, fd;

	n = sd_listen_fds(1);
	if (n <= 0)
		return -1;
	if (n > 1) {
		snprintf(err, errlen, "systemd passed %d sockets; smtpoold "
		    "takes exactly one ListenStream= Unix socket", n);
		return -2;
	}
	fd = SD_LISTEN_FDS_START;
	if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
		snprintf(err, errlen, "the socket systemd passed is not a "
		    "listening Unix stream socket; use ListenStream= with a "
		    "path");
		return -2;
	}
	memset(&sun, 0, sizeof(sun));
	if (getsockname(fd, (struct sockaddr *)&sun, &len) == 0 &&
	    sun.sun_path[0] != '\0')
		snprintf(path, pathlen, "%s", sun.sun_path);
	else
		snprintf(path, pathlen, "(socket from systemd)");
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	return fd;
}

/* Returns 1 when gid is among the peer's groups, looked up by uid. */
static int
listener_in_group(uid_t uid, gid_t primary, gid_t gid)
{
	gid_t		 groups[LISTENER_MAX_GROUPS];
	int		 ngroups = LISTENER_MAX_GROUPS, i;
	struct passwd	*pw;

	if (primary == gid)
		return 1;
	pw = getpwuid(uid);
	if (pw == NULL)
		return 0;
	/* With more groups than fit, getgrouplist() fills what fits and
	 * fails; the groups it filled are still checked. */
	if (getgrouplist(pw->pw_name, primary, groups, &ngroups) == -1)
		ngroups = LISTENER_MAX_GROUPS;
	for (i = 0; i < ngroups; i++) {
		if (groups[i] == gid)
			return 1;
	}
	return 0;
}

int
listener_peer_allowed(const struct config *cfg, uid_t uid, gid_t gid,
    char *reason, size_t len)
{
	struct passwd	*pw;
	size_t		 i;

	if (cfg->naccess_uids == 0 && cfg->naccess_gids == 0)
		return 1;
	for (i = 0; i < cfg->naccess_uids; i++) {
		if (cfg->access_uids[i] == uid)
			return 1;
	}
	for (i = 0; i < cfg->naccess_gids; i++) {
		if (listener_in_group(uid, gid, cfg->access_gids[i]))
			return 1;
	}
	pw = getpwuid(uid);
	snprintf(reason, len, "access denied: uid %ld (%s) is not in "
	    "access.users and none of its groups is in access.groups",
	    (long)uid, pw != NULL ? pw->pw_name : "no user name");
	return 0;
}

/* Sends an ERROR frame to a client that is turned away, then closes it. */
static void
listener_turn_away(evutil_socket_t fd, int32_t status, const char *message)
{
	struct proto_buf	buf;
	ssize_t			n;

	memset(&buf, 0, sizeof(buf));
	if (proto_build_reply(&buf, PROTO_OP_ERROR, status, 0, "", message,
	    NULL, 0) == 0) {
		/* Best effort: the frame fits an empty socket buffer. */
		n = send(fd, buf.data, buf.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)n;
	}
	proto_buf_free(&buf);
	evutil_closesocket(fd);
}

static void
listener_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
    struct sockaddr *addr, int socklen, void *arg)
{
	struct server	*server = arg;
	struct ucred	 cred;
	socklen_t	 len = sizeof(cred);
	char		 reason[256], peer[64];

	if (server->stopping) {
		evutil_closesocket(fd);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_event(LOG_LEVEL_ERR, 0, "-", "daemon.accept",
		    "error=\"cannot read peer credentials: %s\"",
		    strerror(errno));
		evutil_closesocket(fd);
		return;
	}
	snprintf(peer, sizeof(peer), "pid=%ld,uid=%ld,gid=%ld",
	    (long)cred.pid, (long)cred.uid, (long)cred.gid);

	if (!listener_peer_allowed(server->cfg, cred.uid, cred.gid, reason,
	    sizeof(reason))) {
		log_event(LOG_LEVEL_WARNING, 0, peer, "daemon.access-denied",
		    "uid=%ld gid=%ld", (long)cred.uid, (long)cred.gid);
		listener_turn_away(fd, PROTO_STATUS_SECURITY, reason);
		return;
	}
	if (server->nsessions >= server->cfg->max_clients) {
		snprintf(reason, sizeof(reason), "too many clients: the "
		    "daemon serves at most %u at once (max_clients); try "
		    "again later", server->cfg->max_clients);
		log_event(LOG_LEVEL_WARNING, 0, peer, "daemon.client-rejected",
		    "reason=max_clients max_clients=%u",
		    server->cfg->max_clients);
		listener_turn_away(fd, PROTO_STATUS_NETWORK, reason);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	if (session_new(server, fd, peer) == NULL)
		log_event(LOG_LEVEL_ERR, 0, peer, "daemon.accept",
		    "error=\"out of memory\"");
}

static void
listener_error_cb(struct evconnlistener *listener, void *arg)
{
	int	error = EVUTIL_SOCKET_ERROR();

	log_event(LOG_LEVEL_ERR, 0, "-", "daemon.accept", "error=\"%s\"",
	    evutil_socket_error_to_string(error));
}

int
listener_open(struct server *server, const char *socket_path, char *err,
    size_t errlen)
{
	char	path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int	fd;

	fd = listener_activated(path, sizeof(path), err, errlen);
	if (fd == -2)
		return -1;
	if (fd >= 0) {
		server->socket_owned = 0;
		log_event(LOG_LEVEL_INFO, 0, "-", "daemon.socket-activated",
		    "socket=%s", path);
	} else {
		if (socket_path != NULL)
			snprintf(path, sizeof(path), "%s", socket_path);
		else if (server->cfg->socket_path != NULL)
			snprintf(path, sizeof(path), "%s",
			    server->cfg->socket_path);
		else if (proto_default_socket_path(path, sizeof(path), err,
		    errlen) == -1)
			return -1;
		fd = listener_bind(path, server->cfg->socket_mode, err,
		    errlen);
		if (fd == -1)
			return -1;
		server->socket_owned = 1;
	}

	server->socket_path = strdup(path);
	server->listener = evconnlistener_new(server->base,
	    listener_accept_cb, server,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (server->listener == NULL || server->socket_path == NULL) {
		snprintf(err, errlen, "cannot listen on %s", path);
		if (server->socket_owned)
			unlink(path);
		server->socket_owned = 0;
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(server->listener, listener_error_cb);
	return 0;
}

void
listener_close(struct server *server)
{
	if (server->listener != NULL) {
		evconnlistener_free(server->listener);
		server->listener = NULL;
	}
	if (server->socket_owned && server->socket_path != NULL)
		unlink(server->socket_path);
	server->socket_owned = 0;
}
