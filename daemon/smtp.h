/*
 * smtp.h - one upstream SMTP client connection, as an explicit state
 * machine on a libevent bufferevent.
 *
 * A connection is opened with smtp_open(): it connects (implicit TLS for
 * TLS: connection strings), reads the greeting, sends EHLO (HELO only when
 * EHLO is rejected as unrecognized, 500/502), runs the security drivers of
 * settings.security in order (STARTTLS followed by a new EHLO, then AUTH)
 * and reports the outcome once through the open callback.  A ready
 * connection then runs one transaction at a time with smtp_send(): RSET
 * first when the previous transaction did not end cleanly, MAIL (with
 * SIZE= when offered), RCPT for each recipient and DATA, pipelined when
 * PIPELINING is offered, then the message streamed from the mail's spool
 * through the dot-stuffing encoder, bounded by the bufferevent's write
 * watermark.
 *
 * Every state has its own timeout from config_timeouts; a timeout log line
 * names the state.  Replies are parsed line by line across partial reads,
 * with lines bounded by REPLY_MAX_LINE and replies by REPLY_MAX_LINES.
 *
 * While a connection is idle (SMTP_STATE_READY, no transaction), reading
 * stays enabled: EOF, an error, a 421 or any unexpected byte makes the
 * connection dead and the lost callback tells its owner.
 *
 * Lifetime: the owner ends a connection only with smtp_close(); the memory
 * is freed later from a zero-delay event, never inside a callback, and no
 * callback fires after smtp_close().
 */
#ifndef SMTPOOL_SMTP_H
#define SMTPOOL_SMTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <event2/dns.h>
#include <openssl/ssl.h>

#include "config.h"
#include "connstr.h"
#include "mail.h"
#include "reply.h"
#include "security.h"

/* The states, with their names, from one list. */
#define SMTP_STATES(X)				\
	X(CONNECTING,	"connecting")		\
	X(TLS_HANDSHAKE, "tls-handshake")	\
	X(GREETING,	"greeting")		\
	X(EHLO,		"ehlo")			\
	X(HELO,		"helo")			\
	X(STARTTLS,	"starttls")		\
	X(AUTH,		"auth")			\
	X(AUTH_USER,	"auth-user")		\
	X(AUTH_SECRET,	"auth-secret")		\
	X(AUTH_CANCEL,	"auth-cancel")		\
	X(READY,	"ready")		\
	X(RSET,		"rset")			\
	X(MAIL,		"mail")			\
	X(RCPT,		"rcpt")			\
	X(DATA,		"data")			\
	X(BODY,		"body")			\
	X(DATA_DONE,	"data-done")		\
	X(QUIT,		"quit")			\
	X(CLOSED,	"closed")

enum smtp_state {
#define SMTP_STATE_ENUM(name, text) SMTP_STATE_##name,
	SMTP_STATES(SMTP_STATE_ENUM)
#undef SMTP_STATE_ENUM
	SMTP_STATE_COUNT
};

enum smtp_outcome {
	SMTP_OK,		/* ready, or 250 to the end of DATA */
	SMTP_NETWORK,		/* DNS, connect, reset, EOF, timeout */
	SMTP_SECURITY,		/* TLS handshake or certificate failed,
				 * STARTTLS or AUTH refused */
	SMTP_NO_DRIVER,		/* a MAND driver is not offered */
	SMTP_PROTOCOL,		/* malformed or unexpected reply */
	SMTP_GREETING_REJECTED,	/* 4xx/5xx greeting or EHLO+HELO refused */
	SMTP_SENDER_REJECTED,	/* 4xx/5xx to MAIL */
	SMTP_ALL_RCPT_REFUSED,	/* every RCPT got 4xx/5xx */
	SMTP_DATA_REJECTED,	/* 4xx/5xx to DATA or to the end of DATA */
	SMTP_SPOOL_ERROR,	/* reading the message spool failed */
};

struct smtp_result {
	enum smtp_outcome	outcome;
	/* 1 when the final "." was sent: the server may have the message,
	 * so the transaction must not be retried. */
	int			committed;
	/* 1 when the connection died (EOF, reset, 421) before commit; a
	 * retry on a fresh connection is safe. */
	int			conn_lost;
	/* The last server reply, 0/"" when there was none. */
	int			code;
	char			enhanced[REPLY_MAX_ENHANCED + 1];
	char			text[513];
	size_t			refused;	/* recipients refused */
	/* Open only: bit i set when security driver i succeeded before
	 * the open ended, whatever its outcome. */
	unsigned		security_used;
	enum smtp_state		state;		/* where it ended */
	char			detail[256];	/* readable explanation */
};

struct smtp_settings {
	struct event_base		*base;
	struct evdns_base		*dns;
	struct connstr			 server;
	const struct tls_profile	*profile;	/* TLS: only */
	SSL_CTX				*ssl_ctx;	/* NULL for TCP: */
	const char			*helo_name;
	struct config_timeouts		 timeouts;
	uint64_t			 id;		/* for log lines */
	/* Security drivers run in order after EHLO; NULL or empty for
	 * none.  The pointed-to context outlives the connection's open. */
	const struct security		*security;
	/* STARTTLS always uses the default profile. */
	const struct tls_profile	*starttls_profile;
	SSL_CTX				*starttls_ctx;
	/* 1 when AUTH may be sent without TLS to this server. */
	int				 allow_plaintext_auth;
};

struct smtp_conn;

typedef void smtp_open_cb(struct smtp_conn *, const struct smtp_result *,
    void *arg);
typedef void smtp_done_cb(struct smtp_conn *, const struct smtp_result *,
    void *arg);
typedef void smtp_lost_cb(struct smtp_conn *, const char *reason,
    void *arg);

/* Starts a connection.  cb fires exactly once: outcome SMTP_OK when the
 * connection is READY, anything else when it failed (the connection is
 * then dead; the owner still calls smtp_close()).  Returns NULL on ENOMEM
 * (cb does not fire). */
struct smtp_conn *smtp_open(const struct smtp_settings *, smtp_open_cb *cb,
    void *arg);

/* Runs one transaction for m on a READY connection.  cb fires exactly
 * once.  After SMTP_OK, SMTP_SENDER_REJECTED, SMTP_ALL_RCPT_REFUSED or
 * SMTP_DATA_REJECTED the connection is normally READY again (with RSET
 * pending where needed); check smtp_is_usable().  Recipient results are
 * written into m with mail_rcpt_set_result().  Returns 0, or -1 when the
 * connection is not READY (cb does not fire). */
int smtp_send(struct smtp_conn *, struct mail *m, smtp_done_cb *cb,
    void *arg);

/* Sets the callback for a connection lost while idle. */
void smtp_set_lost_cb(struct smtp_conn *, smtp_lost_cb *cb, void *arg);

/* Ends the connection: with send_quit and a READY connection, sends QUIT
 * and waits for the reply (bounded by the quit timeout) before closing;
 * otherwise closes at once.  Safe in any state, including inside this
 * connection's own callbacks. */
void smtp_close(struct smtp_conn *, int send_quit);

/* Queries. */
enum smtp_state smtp_get_state(const struct smtp_conn *);
const char *smtp_state_name(enum smtp_state);
/* 1 when READY and not known to be dead. */
int smtp_is_usable(const struct smtp_conn *);
uint64_t smtp_id(const struct smtp_conn *);
time_t smtp_opened_at(const struct smtp_conn *);
unsigned smtp_messages_sent(const struct smtp_conn *);
/* "host:port" ("[::1]:25" for IPv6) for log lines. */
const char *smtp_peer(const struct smtp_conn *);
const struct ehlo_caps *smtp_caps(const struct smtp_conn *);
/* Bit i set: security driver i ran successfully on this connection. */
unsigned smtp_security_used(const struct smtp_conn *);

#endif
