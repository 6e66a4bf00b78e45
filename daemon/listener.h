/*
 * listener.h - the daemon's Unix socket: socket activation or binding,
 * accepting clients, and the access check on their credentials.
 */
#ifndef SMTPOOL_LISTENER_H
#define SMTPOOL_LISTENER_H

#include <stddef.h>
#include <sys/types.h>

struct server;
struct config;

/*
 * Starts accepting clients: on the socket systemd passed when there is
 * one (the file is then systemd's and never unlinked), otherwise on a
 * socket bound at socket_path, the configured path or the default one.
 * Returns 0 or -1 with err filled.
 */
int listener_open(struct server *, const char *socket_path, char *err,
    size_t errlen);
/* Stops accepting and removes a socket file the daemon created. */
void listener_close(struct server *);

/* Checks a peer against access.users and access.groups.  Returns 1 when
 * it may connect; otherwise 0 with reason filled. */
int listener_peer_allowed(const struct config *, uid_t uid, gid_t gid,
    char *reason, size_t len);

#endif
