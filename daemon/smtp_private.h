/*
 * smtp_private.h - the internals that the files of the upstream SMTP
 * client share: smtp.c (state machine, open, loss and close, callbacks),
 * smtp_txn.c (transactions) and smtp_security.c (STARTTLS and AUTH).  It
 * contains struct smtp_conn, its size limits and the prototypes of the
 * functions that one file calls in another.  Each function is documented
 * at its definition.  Only these files include this header, and the rest
 * of the daemon uses smtp.h.
 */
#ifndef SMTPOOL_SMTP_PRIVATE_H
#define SMTPOOL_SMTP_PRIVATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>

#include "dotstuff.h"
#include "reply.h"
#include "smtp.h"

/* Body bytes read from the spool and encoded per step. */
#define SMTP_BODY_CHUNK		(64 * 1024)
/* The body is refilled when the output buffer drains to this many bytes. */
#define SMTP_BODY_LOW_WATER	(64 * 1024)
/* Bytes kept of a server reply in smtp_result.text. */
#define SMTP_RESULT_TEXT_MAX	512
#define SMTP_HELO_MAX		255
/* "[" host "]:" port */
#define SMTP_PEER_MAX		(CONNSTR_MAX_HOST + 10)

/* Kind of result the zero-delay defer event delivers. */
enum smtp_deferred {
	SMTP_DEFERRED_NONE,
	SMTP_DEFERRED_OPEN,
	SMTP_DEFERRED_DONE,
};

struct smtp_conn {
	struct smtp_settings	 settings;
	char			 helo_name[SMTP_HELO_MAX + 1];
	char			 peer[SMTP_PEER_MAX];
	enum smtp_state		 state;
	struct bufferevent	*bev;
	SSL			*ssl;		/* owned by bev once it exists */
	struct event		*timer;		/* the state's timeout */
	struct event		*defer_ev;	/* delivers a result later */
	struct event		*free_ev;	/* frees the connection */
	struct reply_parser	 parser;
	char			 line[REPLY_MAX_LINE + 1];
	struct ehlo_caps	 caps;
	int			 ehlo;		/* 1: EHLO accepted */

	/* Security drivers.  A phase is the run of drivers checked against
	 * one EHLO reply: it ends after a STARTTLS that will run. */
	size_t			 driver_next;	/* next driver to consider */
	size_t			 driver_cur;	/* driver running now */
	size_t			 phase_end;	/* drivers < this are checked */
	unsigned		 skipped;	/* bit i: driver i skipped */
	unsigned		 security_used;	/* bit i: driver i succeeded */
	int			 starttls_done;	/* handshake after STARTTLS */
	int			 auth_initial;	/* AUTH sent a response */
	/* Why an AUTH exchange was cancelled, kept until the final
	 * reply; server text only, never a credential. */
	char			 auth_note[256];
	/* The last reply of the opening phase (EHLO or AUTH), which the
	 * open callback reports on success. */
	struct reply		 open_reply;
	time_t			 opened_at;
	unsigned		 messages_sent;

	int			 dead;		/* unusable; no new work */
	int			 closing;	/* smtp_close() was called */
	int			 rset_pending;	/* last transaction unclean */
	/* Plain TCP after connect: bytes go out from smtp_flush() with a
	 * direct write, and the bufferevent's write event is armed only
	 * when the socket does not take them all. */
	int			 direct_write;

	int			 open_pending;	/* open_cb not fired yet */
	smtp_open_cb		*open_cb;
	void			*open_arg;
	smtp_lost_cb		*lost_cb;
	void			*lost_arg;

	enum smtp_deferred	 deferred;
	struct smtp_result	 deferred_result;

	/* The running transaction. */
	int			 txn;
	struct mail		*mail;
	smtp_done_cb		*done_cb;
	void			*done_arg;
	struct smtp_result	 result;
	int			 pipelined;
	int			 decided;	/* rejection known, still
						 * reading pipelined replies */
	int			 committed;	/* final "." queued */
	size_t			 nrcpt;
	size_t			 rcpt_next;	/* next RCPT reply to read */
	size_t			 accepted;
	size_t			 refused;
	char			 last_refusal[200]; /* summary of the
						     * latest RCPT refusal */
	char			*headers;	/* header block, not stuffed */
	size_t			 headers_len;
	size_t			 headers_off;
	struct spool		*body;		/* the mail's body spool */
	char			*chunk;		/* SMTP_BODY_CHUNK bytes */
	struct dotstuff		 stuffer;
	uint64_t		 body_bytes;	/* bytes queued after DATA */
};

/* smtp.c: helpers, state changes and the end of the opening phase. */
void smtp_format(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void smtp_result_set_reply(struct smtp_result *, const struct reply *);
struct evbuffer *smtp_output(struct smtp_conn *);
void smtp_enter(struct smtp_conn *, enum smtp_state);
int smtp_command(struct smtp_conn *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtp_defer(struct smtp_conn *, enum smtp_deferred);
void smtp_open_reject(struct smtp_conn *, enum smtp_outcome,
    const struct reply *, int send_quit, const char *detail);
void smtp_ready(struct smtp_conn *);
void smtp_fail_conn(struct smtp_conn *, enum smtp_outcome,
    const struct reply *, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void smtp_read_cb(struct bufferevent *, void *);
void smtp_write_cb(struct bufferevent *, void *);
void smtp_event_cb(struct bufferevent *, short, void *);

/* smtp_txn.c: the transaction's replies, body and end. */
void smtp_on_rset(struct smtp_conn *, const struct reply *);
void smtp_on_mail(struct smtp_conn *, const struct reply *);
void smtp_on_rcpt(struct smtp_conn *, const struct reply *);
void smtp_on_data(struct smtp_conn *, const struct reply *);
void smtp_on_body_reply(struct smtp_conn *, const struct reply *);
void smtp_on_data_done(struct smtp_conn *, const struct reply *);
void smtp_body_fill(struct smtp_conn *);
/* smtp.c */
void smtp_flush(struct smtp_conn *);
void smtp_arm_timer(struct smtp_conn *);
void smtp_txn_finish(struct smtp_conn *, enum smtp_state at, int clean);
void smtp_txn_clear(struct smtp_conn *);

/* smtp_security.c: the security drivers and the TLS error report. */
void smtp_drivers_begin(struct smtp_conn *);
void smtp_on_starttls(struct smtp_conn *, const struct reply *);
void smtp_starttls_done(struct smtp_conn *);
void smtp_starttls_failed(struct smtp_conn *, short what, int sockerr);
int smtp_tls_error_reason(struct smtp_conn *, char *reason, size_t len);
void smtp_on_auth(struct smtp_conn *, const struct reply *);
void smtp_on_auth_cancel(struct smtp_conn *, const struct reply *);

#endif
