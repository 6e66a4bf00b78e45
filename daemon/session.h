/*
 * session.h - one client connection on the Unix socket, playing the part
 * of one UPOPMAIL instance: its logon state, the message being sent and
 * the details of its last SMTP exchange.
 *
 * A session reads frames, replies to each request exactly once, and
 * drops the client after a protocol error.  It is freed from a zero-delay
 * event once the client is gone and no upstream work refers to it.
 */
#ifndef SMTPOOL_SESSION_H
#define SMTPOOL_SESSION_H

#include <sys/types.h>

#include <event2/util.h>

struct server;
struct session;

/* Takes over fd; peer describes the client's credentials for logs.
 * Returns NULL (fd closed) on ENOMEM. */
struct session *session_new(struct server *, evutil_socket_t fd,
    const char *peer);
/* Starts the shutdown of every session: clients without a request in
 * progress are disconnected now, the others after their reply. */
void session_drain_all(struct server *);
/* Ends every request still in progress with a failure reply (status -9)
 * and disconnects its client; used when the drain time is over. */
void session_cut_off_all(struct server *);

#endif
