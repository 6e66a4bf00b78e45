/*
 * session.h - one client connection on the Unix socket, playing the part
 * of one UPOPMAIL instance: its logon state, the message being sent and
 * the details of its last SMTP exchange.
 *
 * A session reads frames, answers each request with exactly one reply, and
 * drops the client after a protocol error.  It is freed from a zero-delay
 * event once the client is gone and no upstream work refers to it.
 */
#ifndef SMTPOOL_SESSION_H
#define SMTPOOL_SESSION_H

#include <sys/types.h>

#include <event2/util.h>

struct server;
struct session;

/* Takes over fd.  Returns NULL (fd closed) on ENOMEM. */
struct session *session_new(struct server *, evutil_socket_t fd);
/* Ends the session at daemon shutdown: the client is disconnected and any
 * pending request is dropped. */
void session_shutdown(struct session *);
/* Ends every session of the server, as session_shutdown() does. */
void session_shutdown_all(struct server *);

#endif
