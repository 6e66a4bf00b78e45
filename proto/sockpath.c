/*
 * sockpath.c - the default path of the smtpoold Unix socket.
 *
 * The daemon and every client derive the path with the same rules, so they
 * meet without configuration.  proto_default_socket_path() fails with -1
 * and a message when no rule applies or the path does not fit a
 * sockaddr_un.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

#define PROTO_SOCKET_NAME	"smtpool.sock"
#define PROTO_ROOT_DIR		"/run/smtpool"

/* Joins dir (dirlen bytes, not NUL-terminated) and the socket name into
 * buf, checking both buf and the sun_path size. */
static int
proto_sockpath_join(char *buf, size_t len, const char *dir, size_t dirlen,
    const char *source, char *err, size_t errlen)
{
	const size_t	 maxpath = sizeof(((struct sockaddr_un *)0)->sun_path);
	const char	*sep;
	size_t		 need;

	/* Avoid a double slash when the directory ends in one. */
	sep = dirlen > 0 && dir[dirlen - 1] == '/' ? "" : "/";
	need = dirlen + strlen(sep) + strlen(PROTO_SOCKET_NAME);

	if (need >= maxpath) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen,
			    "socket path from %s (\"%.*s%s%s\") is %zu "
			    "bytes, over the limit of %zu for a Unix socket; "
			    "set a shorter %s or give the socket path "
			    "explicitly", source, (int)dirlen, dir, sep,
			    PROTO_SOCKET_NAME, need, maxpath - 1, source);
		return -1;
	}
	if (need >= len) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen,
			    "socket path from %s is %zu bytes, but the "
			    "buffer holds only %zu", source, need,
			    len > 0 ? len - 1 : 0);
		return -1;
	}
	memcpy(buf, dir, dirlen);
	snprintf(buf + dirlen, len - dirlen, "%s%s", sep, PROTO_SOCKET_NAME);
	return 0;
}

int
proto_default_socket_path(char *buf, size_t len, char *err, size_t errlen)
{
	const char	*dir;
	size_t		 dirlen;

	/* systemd sets RUNTIME_DIRECTORY for a unit with RuntimeDirectory=.
	 * With several directories it joins them with colons, and the
	 * first one is used. */
	dir = getenv("RUNTIME_DIRECTORY");
	if (dir != NULL && *dir != '\0' && *dir != ':') {
		dirlen = strcspn(dir, ":");
		return proto_sockpath_join(buf, len, dir, dirlen,
		    "RUNTIME_DIRECTORY", err, errlen);
	}

	if (geteuid() == 0)
		return proto_sockpath_join(buf, len, PROTO_ROOT_DIR,
		    strlen(PROTO_ROOT_DIR), "the root default", err, errlen);

	/* The XDG Base Directory specification defines a relative path in
	 * XDG_RUNTIME_DIR as invalid, to be ignored. */
	dir = getenv("XDG_RUNTIME_DIR");
	if (dir != NULL && dir[0] == '/')
		return proto_sockpath_join(buf, len, dir, strlen(dir),
		    "XDG_RUNTIME_DIR", err, errlen);

	if (err != NULL && errlen > 0)
		snprintf(err, errlen,
		    "no default socket path: RUNTIME_DIRECTORY is unset, "
		    "the process is not root and XDG_RUNTIME_DIR is %s; "
		    "give the socket path explicitly",
		    dir == NULL || *dir == '\0' ? "unset" :
		    "not an absolute path");
	return -1;
}
