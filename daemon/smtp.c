/*
 * smtp.c - one upstream SMTP client connection as an explicit state
 * machine on a libevent bufferevent (plain TCP, or implicit TLS through an
 * OpenSSL bufferevent).
 *
 * smtp_enter() is the only place that changes the state: it arms the
 * state's timeout from smtp_timeout_rules[] and logs the transition.
 * smtp_read_input() cuts the input into lines, feeds the reply parser and
 * hands each complete reply to smtp_dispatch(), which picks the next state
 * from the current one.  Every way a connection can end (EOF, error,
 * timeout, 421, malformed reply) goes through smtp_fail_conn(), which
 * fires the pending callback: open while connecting, done during a
 * transaction, lost while idle.
 *
 * Security drivers (STARTTLS, then AUTH LOGIN, PLAIN, XOAUTH2 or
 * OAUTHBEARER) run in order between EHLO and READY, each in its own
 * states.  A MAND driver the server does not offer fails the open with
 * SMTP_NO_DRIVER, and an OPT one is skipped.  A driver that runs and fails
 * gives SMTP_SECURITY.  Credentials are sent only in base64 lines that
 * are wiped once written, and never logged.
 *
 * Results that are known before any I/O (TLS set-up failure, a message
 * over the server's SIZE limit) are delivered from a zero-delay event, so
 * no callback ever runs inside smtp_open() or smtp_send().  Memory is
 * freed from another zero-delay event after smtp_close(), never inside a
 * callback frame that may still use it.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "dotstuff.h"
#include "log.h"
#include "smtp.h"
#include "spool.h"
#include "tlsctx.h"

/* Body bytes read from the spool and encoded per step. */
#define SMTP_BODY_CHUNK		(64 * 1024)
/* The body is refilled when the output buffer drains to this many bytes. */
#define SMTP_BODY_LOW_WATER	(64 * 1024)
/* Bytes kept of a server reply in smtp_result.text. */
#define SMTP_RESULT_TEXT_MAX	512
#define SMTP_HELO_MAX		255
/* "[" host "]:" port */
#define SMTP_PEER_MAX		(CONNSTR_MAX_HOST + 10)

static const char *const smtp_state_names[SMTP_STATE_COUNT] = {
#define SMTP_STATE_NAME(name, text) [SMTP_STATE_##name] = text,
	SMTP_STATES(SMTP_STATE_NAME)
#undef SMTP_STATE_NAME
};

/* The config_timeouts field that bounds a state.  Unarmed states wait
 * without a limit, and the pool's idle timeout bounds READY. */
struct smtp_timeout_rule {
	int	armed;
	size_t	field;		/* offsetof(struct config_timeouts, ...) */
};

#define SMTP_TIMEOUT(name)	{ 1, offsetof(struct config_timeouts, name) }

/* The implicit-TLS handshake runs inside CONNECTING, because libevent
 * reports CONNECTED on a TLS bufferevent only after the handshake; so the
 * connect timeout bounds both.  TLS_HANDSHAKE is the handshake after
 * STARTTLS, bounded by the connect timeout too.  The STARTTLS and AUTH
 * replies share the helo timeout. */
static const struct smtp_timeout_rule smtp_timeout_rules[SMTP_STATE_COUNT] = {
	[SMTP_STATE_CONNECTING]		= SMTP_TIMEOUT(connect),
	[SMTP_STATE_TLS_HANDSHAKE]	= SMTP_TIMEOUT(connect),
	[SMTP_STATE_GREETING]		= SMTP_TIMEOUT(greeting),
	[SMTP_STATE_EHLO]		= SMTP_TIMEOUT(helo),
	[SMTP_STATE_HELO]		= SMTP_TIMEOUT(helo),
	[SMTP_STATE_STARTTLS]		= SMTP_TIMEOUT(helo),
	[SMTP_STATE_AUTH]		= SMTP_TIMEOUT(helo),
	[SMTP_STATE_AUTH_USER]		= SMTP_TIMEOUT(helo),
	[SMTP_STATE_AUTH_SECRET]	= SMTP_TIMEOUT(helo),
	[SMTP_STATE_AUTH_CANCEL]	= SMTP_TIMEOUT(helo),
	[SMTP_STATE_RSET]		= SMTP_TIMEOUT(rset),
	[SMTP_STATE_MAIL]		= SMTP_TIMEOUT(mail),
	[SMTP_STATE_RCPT]		= SMTP_TIMEOUT(rcpt),
	[SMTP_STATE_DATA]		= SMTP_TIMEOUT(data_init),
	[SMTP_STATE_BODY]		= SMTP_TIMEOUT(data_block),
	[SMTP_STATE_DATA_DONE]		= SMTP_TIMEOUT(data_done),
	[SMTP_STATE_QUIT]		= SMTP_TIMEOUT(quit),
};

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

static void smtp_enter(struct smtp_conn *, enum smtp_state);
static void smtp_dispatch(struct smtp_conn *, const struct reply *);
static void smtp_read_input(struct smtp_conn *);
static void smtp_fail_conn(struct smtp_conn *, enum smtp_outcome,
    const struct reply *, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void smtp_body_fill(struct smtp_conn *);
static void smtp_drivers_begin(struct smtp_conn *);

/* --- small helpers ------------------------------------------------------ */

/* Copies s into buf for a quoted log value: '"' and '\' become '\'', other
 * control and non-ASCII bytes become '?'. */
static const char *
smtp_log_quote(const char *s, char *buf, size_t len)
{
	size_t i;

	if (len == 0)
		return "";
	for (i = 0; s != NULL && s[i] != '\0' && i + 1 < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			buf[i] = '\'';
		else if (c < 0x20 || c >= 0x7f)
			buf[i] = '?';
		else
			buf[i] = (char)c;
	}
	buf[i] = '\0';
	return buf;
}

/* Formats into buf, cutting what does not fit: details and log values
 * are bounded on purpose. */
static void
smtp_format(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
smtp_format(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* Fills code, enhanced code and text of res from r; the text is cut at
 * SMTP_RESULT_TEXT_MAX bytes, not inside a UTF-8 sequence. */
static void
smtp_result_set_reply(struct smtp_result *res, const struct reply *r)
{
	size_t n;

	res->code = r->code;
	snprintf(res->enhanced, sizeof(res->enhanced), "%s", r->enhanced);
	n = r->text != NULL ? r->textlen : 0;
	if (n > SMTP_RESULT_TEXT_MAX) {
		n = SMTP_RESULT_TEXT_MAX;
		while (n > 0 && ((unsigned char)r->text[n] & 0xc0) == 0x80)
			n--;
	}
	if (n > 0)
		memcpy(res->text, r->text, n);
	res->text[n] = '\0';
}

static void
smtp_result_set_detail(struct smtp_result *res, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
smtp_result_set_detail(struct smtp_result *res, const char *fmt, va_list ap)
{
	vsnprintf(res->detail, sizeof(res->detail), fmt, ap);
}

/* Returns seconds of the timeout bounding state, 0 for none. */
static unsigned
smtp_timeout_seconds(const struct smtp_conn *conn, enum smtp_state state)
{
	const struct smtp_timeout_rule *rule;
	const char *base;

	if ((unsigned)state >= SMTP_STATE_COUNT)
		return 0;
	rule = &smtp_timeout_rules[state];
	if (!rule->armed)
		return 0;
	base = (const char *)&conn->settings.timeouts;
	return *(const unsigned *)(const void *)(base + rule->field);
}

/* (Re)starts the timer of the current state; a state without a timeout
 * stops it. */
static void
smtp_arm_timer(struct smtp_conn *conn)
{
	struct timeval tv;
	unsigned seconds;

	seconds = smtp_timeout_seconds(conn, conn->state);
	if (seconds == 0) {
		evtimer_del(conn->timer);
		return;
	}
	tv.tv_sec = seconds;
	tv.tv_usec = 0;
	evtimer_add(conn->timer, &tv);
}

/* Rejects mailboxes that would break the command line; mail.c validates
 * addresses already, so this only guards against a bug there. */
static int
smtp_mailbox_ok(const char *mailbox)
{
	const unsigned char *p;

	if (mailbox == NULL || strlen(mailbox) > 512)
		return 0;
	for (p = (const unsigned char *)mailbox; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return 0;
	return 1;
}

static struct evbuffer *
smtp_output(struct smtp_conn *conn)
{
	return bufferevent_get_output(conn->bev);
}

/* --- state changes ---------------------------------------------------- */

/* Enters state: sets it, arms its timeout and logs the transition. */
static void
smtp_enter(struct smtp_conn *conn, enum smtp_state state)
{
	enum smtp_state from = conn->state;

	conn->state = state;
	if (from != state)
		log_event(LOG_LEVEL_DEBUG, conn->settings.id, conn->peer,
		    "upstream.state", "from=%s to=%s",
		    smtp_state_name(from), smtp_state_name(state));

	if (state == SMTP_STATE_CLOSED) {
		/* Nothing more is read or written; pending output is
		 * dropped when the bufferevent is freed. */
		evtimer_del(conn->timer);
		if (conn->bev != NULL)
			bufferevent_disable(conn->bev, EV_READ | EV_WRITE);
		return;
	}
	smtp_arm_timer(conn);
}

static void
smtp_mark_dead(struct smtp_conn *conn)
{
	conn->dead = 1;
	if (conn->state != SMTP_STATE_QUIT)
		smtp_enter(conn, SMTP_STATE_CLOSED);
}

/* Queues a formatted command.  Returns 0, or -1 on ENOMEM. */
static int
smtp_command(struct smtp_conn *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
smtp_command(struct smtp_conn *conn, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = evbuffer_add_vprintf(smtp_output(conn), fmt, ap);
	va_end(ap);
	return r < 0 ? -1 : 0;
}

/* Arms the defer event to deliver conn->deferred_result. */
static void
smtp_defer(struct smtp_conn *conn, enum smtp_deferred what)
{
	struct timeval zero = { 0, 0 };

	conn->deferred = what;
	evtimer_add(conn->defer_ev, &zero);
}

static void
smtp_schedule_free(struct smtp_conn *conn)
{
	struct timeval zero = { 0, 0 };

	smtp_enter(conn, SMTP_STATE_CLOSED);
	evtimer_add(conn->free_ev, &zero);
}

/* --- open ------------------------------------------------------------- */

/* Reports the end of the opening phase through the open callback. */
static void
smtp_open_finish(struct smtp_conn *conn, enum smtp_outcome outcome,
    const struct reply *r, enum smtp_state at, const char *detail)
{
	struct smtp_result res;
	smtp_open_cb *cb = conn->open_cb;

	memset(&res, 0, sizeof(res));
	res.outcome = outcome;
	res.state = at;
	if (r == NULL && outcome == SMTP_OK && conn->open_reply.code != 0)
		r = &conn->open_reply;
	if (r != NULL)
		smtp_result_set_reply(&res, r);
	res.security_used = conn->security_used;
	snprintf(res.detail, sizeof(res.detail), "%s", detail);

	conn->open_pending = 0;
	conn->open_cb = NULL;
	reply_clear(&conn->open_reply);
	if (!conn->closing && cb != NULL)
		cb(conn, &res, conn->open_arg);
}

/* Fails the opening phase after a reply.  With send_quit, QUIT is sent and
 * its reply awaited in state QUIT, because a server that greets with 554
 * waits for QUIT (RFC 5321 section 3.1).  Otherwise the connection closes
 * at once. */
static void
smtp_open_reject(struct smtp_conn *conn, enum smtp_outcome outcome,
    const struct reply *r, int send_quit, const char *detail)
{
	enum smtp_state at = conn->state;
	char quoted[256];

	log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
	    "upstream.error", "state=%s detail=\"%s\"", smtp_state_name(at),
	    smtp_log_quote(detail, quoted, sizeof(quoted)));

	conn->dead = 1;
	if (send_quit && smtp_command(conn, "QUIT\r\n") == 0)
		smtp_enter(conn, SMTP_STATE_QUIT);
	else
		smtp_enter(conn, SMTP_STATE_CLOSED);
	smtp_open_finish(conn, outcome, r, at, detail);
}

/* Makes the connection READY once EHLO (or HELO) and every security
 * driver have succeeded. */
static void
smtp_ready(struct smtp_conn *conn)
{
	smtp_enter(conn, SMTP_STATE_READY);
	log_event(LOG_LEVEL_INFO, conn->settings.id, conn->peer,
	    "upstream.ready", "ehlo=%s tls=%s security_used=0x%x "
	    "pipelining=%s size=%" PRIu64, conn->ehlo ? "yes" : "no",
	    conn->starttls_done ? "starttls" :
	    conn->settings.server.connector == CONNSTR_TLS ? "yes" : "no",
	    conn->security_used,
	    (conn->caps.flags & EHLO_PIPELINING) ? "yes" : "no",
	    conn->caps.size_max);
	smtp_open_finish(conn, SMTP_OK, NULL, SMTP_STATE_READY, "");
}

static void
smtp_on_greeting(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];
	char detail[256];

	reply_summary(r, summary, sizeof(summary));
	if (r->code == 220) {
		if (smtp_command(conn, "EHLO %s\r\n", conn->helo_name) == -1) {
			smtp_fail_conn(conn, SMTP_NETWORK, NULL,
			    "out of memory queuing EHLO");
			return;
		}
		smtp_enter(conn, SMTP_STATE_EHLO);
		return;
	}
	if (r->code >= 400) {
		smtp_format(detail, sizeof(detail),
		    "server %s rejected the connection: %s", conn->peer,
		    summary);
		/* After a 421 the server closes; QUIT is only for 5xx. */
		smtp_open_reject(conn, SMTP_GREETING_REJECTED, r,
		    r->code >= 500, detail);
		return;
	}
	smtp_format(detail, sizeof(detail), "unexpected greeting from %s: %s",
	    conn->peer, summary);
	smtp_open_reject(conn, SMTP_PROTOCOL, r, 0, detail);
}

static void
smtp_on_ehlo(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];
	char detail[256];

	reply_summary(r, summary, sizeof(summary));
	if (r->code == 250) {
		memset(&conn->caps, 0, sizeof(conn->caps));
		ehlo_parse(r, &conn->caps);
		conn->ehlo = 1;
		smtp_drivers_begin(conn);
		return;
	}
	if (r->code == 421) {
		smtp_fail_conn(conn, SMTP_NETWORK, r,
		    "server %s is closing the connection: %s", conn->peer,
		    summary);
		return;
	}
	if ((r->code == 500 || r->code == 502) && conn->starttls_done) {
		/* HELO would leave the drivers still to run without the
		 * extensions they need. */
		smtp_format(detail, sizeof(detail), "EHLO after STARTTLS "
		    "rejected by %s: %s", conn->peer, summary);
		smtp_open_reject(conn, SMTP_PROTOCOL, r, 1, detail);
		return;
	}
	if (r->code == 500 || r->code == 502) {
		/* An RFC 821 server: fall back to HELO. */
		if (smtp_command(conn, "HELO %s\r\n", conn->helo_name) == -1) {
			smtp_fail_conn(conn, SMTP_NETWORK, NULL,
			    "out of memory queuing HELO");
			return;
		}
		smtp_enter(conn, SMTP_STATE_HELO);
		return;
	}
	smtp_format(detail, sizeof(detail), "EHLO rejected by %s: %s",
	    conn->peer, summary);
	smtp_open_reject(conn, SMTP_GREETING_REJECTED, r, r->code >= 400,
	    detail);
}

static void
smtp_on_helo(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];
	char detail[256];

	reply_summary(r, summary, sizeof(summary));
	if (r->code == 250) {
		memset(&conn->caps, 0, sizeof(conn->caps));
		conn->ehlo = 0;
		/* Without extensions every driver counts as not offered. */
		smtp_drivers_begin(conn);
		return;
	}
	if (r->code == 421) {
		smtp_fail_conn(conn, SMTP_NETWORK, r,
		    "server %s is closing the connection: %s", conn->peer,
		    summary);
		return;
	}
	smtp_format(detail, sizeof(detail), "HELO rejected by %s: %s",
	    conn->peer, summary);
	smtp_open_reject(conn, SMTP_GREETING_REJECTED, r, r->code >= 400,
	    detail);
}

/* --- security drivers ------------------------------------------------ */

/*
 * Drivers run in the order of the context, after EHLO (or HELO) and
 * before READY.  Each phase first checks its drivers against the EHLO
 * extensions and the TLS state (smtp_drivers_check), so a missing MAND
 * driver fails before anything is sent.  Then smtp_drivers_next() runs
 * them one by one.  A STARTTLS that runs ends the phase: after the
 * handshake everything learned in plain text is dropped, EHLO is sent
 * again and the remaining drivers form the next phase.
 */

/* The maximum command line length, CRLF included (RFC 5321 section
 * 4.5.3.1.4).  RFC 4954 section 4 keeps AUTH with an initial response
 * within it. */
#define SMTP_COMMAND_MAX	512
/* Bytes of a decoded AUTH error challenge kept for the result. */
#define SMTP_CHALLENGE_MAX	(REPLY_MAX_LINE / 4 * 3)

static int
smtp_has_tls(const struct smtp_conn *conn)
{
	return conn->settings.server.connector == CONNSTR_TLS ||
	    conn->starttls_done;
}

static size_t
smtp_driver_count(const struct smtp_conn *conn)
{
	const struct security *sec = conn->settings.security;

	if (sec == NULL)
		return 0;
	return sec->count < SECURITY_MAX_DRIVERS ? sec->count :
	    SECURITY_MAX_DRIVERS;
}

static const struct security_driver *
smtp_driver(const struct smtp_conn *conn, size_t i)
{
	return &conn->settings.security->drivers[i];
}

/* Fails the opening phase because of a driver; see smtp_open_reject. */
static void
smtp_driver_reject(struct smtp_conn *conn, enum smtp_outcome outcome,
    const struct reply *r, int send_quit, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
smtp_driver_reject(struct smtp_conn *conn, enum smtp_outcome outcome,
    const struct reply *r, int send_quit, const char *fmt, ...)
{
	char detail[sizeof(((struct smtp_result *)NULL)->detail)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	smtp_open_reject(conn, outcome, r, send_quit, detail);
}

/* Marks OPT driver i as skipped for this connection (its used bit stays
 * 0) and logs why. */
static void
smtp_driver_skip(struct smtp_conn *conn, size_t i, const char *reason)
{
	const struct security_driver *d = smtp_driver(conn, i);

	conn->skipped |= 1u << i;
	if (d->kind == SECURITY_STARTTLS)
		log_event(LOG_LEVEL_NOTICE, conn->settings.id, conn->peer,
		    "upstream.starttls", "result=skipped reason=\"%s\"",
		    reason);
	else
		log_event(LOG_LEVEL_NOTICE, conn->settings.id, conn->peer,
		    "upstream.auth", "mechanism=%s result=skipped "
		    "reason=\"%s\"", security_mechanism(d->kind), reason);
}

/*
 * Checks the drivers of the current phase against the EHLO extensions and
 * the TLS state: from driver_next up to the first STARTTLS that will run,
 * or to the end.  A MAND driver that cannot run fails the open; an OPT one
 * is skipped.  Returns 0, or -1 when the open failed.
 */
static int
smtp_drivers_check(struct smtp_conn *conn)
{
	const struct security_driver *d;
	const char *name, *mech;
	size_t i, count = smtp_driver_count(conn);
	int tls = smtp_has_tls(conn);

	for (i = conn->driver_next; i < count; i++) {
		d = smtp_driver(conn, i);
		name = security_kind_name(d->kind);

		if (d->kind == SECURITY_STARTTLS) {
			if (tls) {
				smtp_driver_reject(conn, SMTP_SECURITY, NULL,
				    1, "STARTTLS on a connection that already "
				    "uses TLS: remove %s from the security "
				    "context or connect with TCP:", name);
				return -1;
			}
			if (!(conn->caps.flags & EHLO_STARTTLS)) {
				if (d->mandatory) {
					smtp_driver_reject(conn,
					    SMTP_NO_DRIVER, NULL, 1, "the "
					    "server %s does not offer "
					    "STARTTLS, which the mandatory "
					    "driver %s needs", conn->peer,
					    name);
					return -1;
				}
				smtp_driver_skip(conn, i, "not offered");
				continue;
			}
			conn->phase_end = i + 1;
			return 0;
		}

		mech = security_mechanism(d->kind);
		if (mech == NULL || !ehlo_has_auth(&conn->caps, mech)) {
			if (d->mandatory) {
				/* Many servers list AUTH only after
				 * STARTTLS; saying so points at the fix. */
				smtp_driver_reject(conn, SMTP_NO_DRIVER, NULL,
				    1, "the server %s does not offer AUTH %s, "
				    "which the mandatory driver %s needs%s",
				    conn->peer, mech != NULL ? mech : "?",
				    name, !tls &&
				    (conn->caps.flags & EHLO_STARTTLS) ?
				    " (it offers STARTTLS, after which it "
				    "may offer AUTH)" : "");
				return -1;
			}
			smtp_driver_skip(conn, i, "not offered");
			continue;
		}
		if (!tls && !conn->settings.allow_plaintext_auth) {
			if (d->mandatory) {
				smtp_driver_reject(conn, SMTP_SECURITY, NULL,
				    1, "AUTH %s refused over an unencrypted "
				    "connection; use TLS or STARTTLS, or set "
				    "allow_plaintext_auth", mech);
				return -1;
			}
			smtp_driver_skip(conn, i, "connection not encrypted");
			continue;
		}
	}
	conn->phase_end = count;
	return 0;
}

static void smtp_starttls_start(struct smtp_conn *);
static void smtp_auth_start(struct smtp_conn *);

/* Runs the next driver of the phase that was not skipped, or makes the
 * connection READY when none is left. */
static void
smtp_drivers_next(struct smtp_conn *conn)
{
	size_t i;

	for (i = conn->driver_next; i < conn->phase_end; i++) {
		if (conn->skipped & (1u << i))
			continue;
		conn->driver_next = i + 1;
		conn->driver_cur = i;
		if (smtp_driver(conn, i)->kind == SECURITY_STARTTLS)
			smtp_starttls_start(conn);
		else
			smtp_auth_start(conn);
		return;
	}
	conn->driver_next = conn->phase_end;
	smtp_ready(conn);
}

/* Starts a phase after a 250 to EHLO or HELO. */
static void
smtp_drivers_begin(struct smtp_conn *conn)
{
	if (conn->driver_next >= smtp_driver_count(conn)) {
		smtp_ready(conn);
		return;
	}
	if (smtp_drivers_check(conn) == -1)
		return;
	smtp_drivers_next(conn);
}

/* Records that the running driver succeeded and goes on. */
static void
smtp_driver_done(struct smtp_conn *conn)
{
	conn->security_used |= 1u << conn->driver_cur;
	smtp_drivers_next(conn);
}

/* --- STARTTLS ---------------------------------------------------------- */

static void smtp_read_cb(struct bufferevent *, void *);
static void smtp_write_cb(struct bufferevent *, void *);
static void smtp_event_cb(struct bufferevent *, short, void *);

static void
smtp_starttls_start(struct smtp_conn *conn)
{
	if (conn->settings.starttls_ctx == NULL ||
	    conn->settings.starttls_profile == NULL) {
		smtp_driver_reject(conn, SMTP_SECURITY, NULL, 1, "cannot "
		    "start TLS with %s: the default TLS profile (tls.default) "
		    "has no TLS context", conn->peer);
		return;
	}
	if (smtp_command(conn, "STARTTLS\r\n") == -1) {
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "out of memory queuing STARTTLS");
		return;
	}
	smtp_enter(conn, SMTP_STATE_STARTTLS);
}

/* Returns 1 when a byte follows the 220 to STARTTLS: in the input buffer
 * (it came in the same read) or still in the socket. */
static int
smtp_starttls_data_pending(struct smtp_conn *conn)
{
	evutil_socket_t fd;
	char c;

	if (evbuffer_get_length(bufferevent_get_input(conn->bev)) > 0)
		return 1;
	fd = bufferevent_getfd(conn->bev);
	if (fd < 0)
		return 0;
	/* Bytes that arrive after this check reach OpenSSL as a TLS
	 * record and fail the handshake. */
	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* Cleans up after bufferevent_openssl_filter_new() failed, which happens
 * only when memory runs out.  libevent 2.1 either gave up before taking
 * the SSL and the socket bufferevent (whose callbacks are then still
 * ours), or freed both; the extra reference taken before the call keeps
 * conn->bev valid in either case until smtp_free_cb frees it. */
static void
smtp_starttls_filter_failed(struct smtp_conn *conn, SSL *ssl)
{
	bufferevent_data_cb readcb = NULL;

	bufferevent_getcb(conn->bev, &readcb, NULL, NULL, NULL);
	if (readcb == smtp_read_cb) {
		SSL_free(ssl);
		bufferevent_decref(conn->bev);
	}
	smtp_fail_conn(conn, SMTP_NETWORK, NULL,
	    "out of memory starting TLS with %s", conn->peer);
}

/* Wraps the socket bufferevent in an OpenSSL filter and starts the
 * handshake; the filter owns the socket bufferevent and the SSL. */
static void
smtp_starttls_handshake(struct smtp_conn *conn)
{
	const struct connstr *server = &conn->settings.server;
	const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	struct bufferevent *sock = conn->bev, *tls;
	SSL *ssl;
	char err[256];

	ssl = tlsctx_new_ssl(conn->settings.starttls_ctx,
	    conn->settings.starttls_profile, server->host,
	    server->host_is_ip, err, sizeof(err));
	if (ssl == NULL) {
		log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
		    "upstream.starttls", "result=failed");
		smtp_fail_conn(conn, SMTP_SECURITY, NULL, "cannot start TLS "
		    "with %s: %s", conn->peer, err);
		return;
	}

	bufferevent_incref(sock);
	tls = bufferevent_openssl_filter_new(conn->settings.base, sock, ssl,
	    BUFFEREVENT_SSL_CONNECTING, opts);
	if (tls == NULL) {
		smtp_starttls_filter_failed(conn, ssl);
		return;
	}
	bufferevent_decref(sock);
	conn->bev = tls;
	conn->ssl = ssl;

	/* Many servers close without a TLS close_notify after QUIT; that
	 * is an EOF, not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	bufferevent_setcb(tls, smtp_read_cb, smtp_write_cb, smtp_event_cb,
	    conn);
	bufferevent_setwatermark(tls, EV_WRITE, SMTP_BODY_LOW_WATER, 0);
	/* The filter moves encrypted bytes into the socket bufferevent
	 * until that reaches its high write watermark.  Without one, a large
	 * body would pile up there as fast as it is read from the spool. */
	bufferevent_setwatermark(sock, EV_WRITE, SMTP_BODY_LOW_WATER / 2,
	    SMTP_BODY_LOW_WATER);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	smtp_enter(conn, SMTP_STATE_TLS_HANDSHAKE);
}

static void
smtp_on_starttls(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];

	reply_summary(r, summary, sizeof(summary));
	if (r->code != 220) {
		log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
		    "upstream.starttls", "result=refused code=%d", r->code);
		/* After a 421 the server closes; QUIT would be lost. */
		smtp_driver_reject(conn, SMTP_SECURITY, r, r->code != 421,
		    "STARTTLS refused by %s: %s", conn->peer, summary);
		return;
	}
	/* Bytes sent between the 220 and the handshake would later be read
	 * as if they came through TLS (STARTTLS command injection,
	 * CVE-2011-0411).  So they end the connection, and nothing more is
	 * sent. */
	if (smtp_starttls_data_pending(conn)) {
		log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
		    "upstream.starttls", "result=injection");
		smtp_driver_reject(conn, SMTP_SECURITY, r, 0, "server %s sent "
		    "data after its 220 reply to STARTTLS; possible response "
		    "injection", conn->peer);
		return;
	}
	smtp_starttls_handshake(conn);
}

/* Finishes STARTTLS once the handshake is done: checks the certificate
 * and sends EHLO again on a clean slate. */
static void
smtp_starttls_done(struct smtp_conn *conn)
{
	const struct tls_profile *prof = conn->settings.starttls_profile;
	const char *verify;

	/* Defense in depth: the context's verify mode should have failed
	 * the handshake already. */
	if (prof->verify_server &&
	    SSL_get_verify_result(conn->ssl) != X509_V_OK) {
		verify = tlsctx_verify_error(conn->ssl);
		log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
		    "upstream.starttls", "result=failed");
		smtp_fail_conn(conn, SMTP_SECURITY, NULL, "TLS after "
		    "STARTTLS with %s failed: %s", conn->peer,
		    verify[0] != '\0' ? verify : "certificate verify failed");
		return;
	}
	log_event(LOG_LEVEL_INFO, conn->settings.id, conn->peer,
	    "upstream.starttls", "result=ok version=%s cipher=%s",
	    SSL_get_version(conn->ssl), SSL_get_cipher_name(conn->ssl));

	conn->starttls_done = 1;
	conn->security_used |= 1u << conn->driver_cur;
	/* RFC 3207 section 4.2: the server's plain-text replies cannot be
	 * trusted, so its extensions are learned again. */
	memset(&conn->caps, 0, sizeof(conn->caps));
	conn->ehlo = 0;
	reply_parser_reset(&conn->parser);
	if (evbuffer_get_length(bufferevent_get_input(conn->bev)) > 0) {
		smtp_fail_conn(conn, SMTP_PROTOCOL, NULL, "server %s sent "
		    "data before the EHLO that follows STARTTLS", conn->peer);
		return;
	}
	if (smtp_command(conn, "EHLO %s\r\n", conn->helo_name) == -1) {
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "out of memory queuing EHLO");
		return;
	}
	smtp_enter(conn, SMTP_STATE_EHLO);
}

/* Copies the reason a TLS handshake failed into reason: the certificate
 * verification error, else the first OpenSSL error.  Logs every OpenSSL
 * error.  Returns 1 when TLS itself failed, 0 when the cause lies below
 * it (a socket error or EOF). */
static int
smtp_tls_error_reason(struct smtp_conn *conn, char *reason, size_t len)
{
	unsigned long sslerr = 0, e;
	char quoted[160];
	const char *verify;

	/* libevent moves OpenSSL's error queue into the bufferevent; the
	 * first error names the cause. */
	while ((e = bufferevent_get_openssl_error(conn->bev)) != 0) {
		/* libevent 2.1 also stores the SSL_get_error() value, which
		 * has no library and is not an OpenSSL code. */
		if (ERR_GET_LIB(e) == 0)
			continue;
		if (sslerr == 0)
			sslerr = e;
		ERR_error_string_n(e, reason, len);
		log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
		    "upstream.tls-error", "error=\"%s\"",
		    smtp_log_quote(reason, quoted, sizeof(quoted)));
	}
	if (ERR_peek_error() != 0)
		log_openssl_errors(LOG_LEVEL_WARNING, conn->settings.id,
		    conn->peer, "upstream.tls-error");
	if (sslerr != 0 && ERR_GET_LIB(sslerr) == ERR_LIB_SYS)
		sslerr = 0;	/* a socket error */
	if (sslerr == 0 && SSL_get_verify_result(conn->ssl) == X509_V_OK)
		return 0;

	verify = tlsctx_verify_error(conn->ssl);
	if (verify != NULL && verify[0] != '\0')
		snprintf(reason, len, "%s", verify);
	else if (sslerr != 0 && ERR_reason_error_string(sslerr) != NULL)
		snprintf(reason, len, "%s", ERR_reason_error_string(sslerr));
	else
		snprintf(reason, len, "handshake failed");
	return 1;
}

/* Fails a handshake after STARTTLS: whatever the cause, the server
 * accepted STARTTLS and TLS did not come up. */
static void
smtp_starttls_failed(struct smtp_conn *conn, short what, int sockerr)
{
	char reason[160];

	if (!smtp_tls_error_reason(conn, reason, sizeof(reason))) {
		if ((what & BEV_EVENT_EOF) && sockerr == 0)
			snprintf(reason, sizeof(reason), "the server closed "
			    "the connection");
		else
			snprintf(reason, sizeof(reason), "%s", sockerr != 0 ?
			    evutil_socket_error_to_string(sockerr) :
			    "connection failed");
	}
	log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
	    "upstream.starttls", "result=failed");
	smtp_fail_conn(conn, SMTP_SECURITY, NULL, "TLS handshake after "
	    "STARTTLS with %s failed: %s", conn->peer, reason);
}

/* --- AUTH -------------------------------------------------------------- */

/* Frees a credential line when the output buffer is done with it (sent,
 * or dropped with the connection), wiping it first. */
static void
smtp_secret_cleanup_cb(const void *data, size_t len, void *arg)
{
	(void)data;
	OPENSSL_cleanse(arg, len);
	free(arg);
}

/*
 * Queues prefix, base64(raw) and CRLF as one line.  The line is added by
 * reference, so libevent never copies it into its own chains, and is
 * wiped as soon as it has been written to the socket (or TLS).  Returns 0,
 * or -1 on ENOMEM.
 */
static int
smtp_auth_queue(struct smtp_conn *conn, const char *prefix,
    const unsigned char *raw, size_t rawlen)
{
	size_t plen = strlen(prefix);
	size_t elen = 4 * ((rawlen + 2) / 3);
	size_t len = plen + elen + 2;
	char *line;

	if (rawlen > 4 * SECURITY_MAX_PARAMETERS)
		return -1;
	/* EVP_EncodeBlock's terminating NUL lands where CR goes. */
	if ((line = malloc(len)) == NULL)
		return -1;
	memcpy(line, prefix, plen);
	EVP_EncodeBlock((unsigned char *)line + plen, raw, (int)rawlen);
	memcpy(line + plen + elen, "\r\n", 2);
	if (evbuffer_add_reference(smtp_output(conn), line, len,
	    smtp_secret_cleanup_cb, line) == -1) {
		OPENSSL_cleanse(line, len);
		free(line);
		return -1;
	}
	return 0;
}

/* Appends n bytes to a response under construction. */
static void
smtp_auth_put(unsigned char *buf, size_t *off, const void *src, size_t n)
{
	memcpy(buf + *off, src, n);
	*off += n;
}

/*
 * Builds the SASL response of a PLAIN, XOAUTH2 or OAUTHBEARER driver in a
 * new buffer that the caller wipes and frees.  Returns the buffer with
 * *len set, or NULL on ENOMEM.
 */
static unsigned char *
smtp_auth_response(const struct smtp_conn *conn,
    const struct security_driver *d, size_t *len)
{
	const struct connstr *server = &conn->settings.server;
	const char *authzid = d->authzid != NULL ? d->authzid : "";
	size_t ulen = strlen(d->user), slen = strlen(d->secret);
	size_t cap, off = 0, i;
	unsigned char *buf;
	char port[8];

	/* Every part is bounded by SECURITY_MAX_PARAMETERS; the user name
	 * may triple in size when escaped for OAUTHBEARER. */
	cap = strlen(authzid) + 3 * ulen + slen + strlen(server->host) + 64;
	if ((buf = malloc(cap)) == NULL)
		return NULL;

	switch (d->kind) {
	case SECURITY_AUTH_PLAIN:
		/* RFC 4616: authzid NUL authcid NUL passwd. */
		smtp_auth_put(buf, &off, authzid, strlen(authzid));
		smtp_auth_put(buf, &off, "", 1);
		smtp_auth_put(buf, &off, d->user, ulen);
		smtp_auth_put(buf, &off, "", 1);
		smtp_auth_put(buf, &off, d->secret, slen);
		break;
	case SECURITY_AUTH_XOAUTH2:
		smtp_auth_put(buf, &off, "user=", 5);
		smtp_auth_put(buf, &off, d->user, ulen);
		smtp_auth_put(buf, &off, "\001auth=Bearer ", 13);
		smtp_auth_put(buf, &off, d->secret, slen);
		smtp_auth_put(buf, &off, "\001\001", 2);
		break;
	case SECURITY_AUTH_OAUTHBEARER:
		/* RFC 7628 section 3.1: a GS2 header whose saslname writes
		 * ',' as "=2C" and '=' as "=3D", then key=value pairs each
		 * ended by ^A, and a final ^A. */
		smtp_auth_put(buf, &off, "n,a=", 4);
		for (i = 0; i < ulen; i++) {
			if (d->user[i] == ',')
				smtp_auth_put(buf, &off, "=2C", 3);
			else if (d->user[i] == '=')
				smtp_auth_put(buf, &off, "=3D", 3);
			else
				smtp_auth_put(buf, &off, &d->user[i], 1);
		}
		smtp_auth_put(buf, &off, ",\001host=", 7);
		smtp_auth_put(buf, &off, server->host, strlen(server->host));
		snprintf(port, sizeof(port), "%u", (unsigned)server->port);
		smtp_auth_put(buf, &off, "\001port=", 6);
		smtp_auth_put(buf, &off, port, strlen(port));
		smtp_auth_put(buf, &off, "\001auth=Bearer ", 13);
		smtp_auth_put(buf, &off, d->secret, slen);
		smtp_auth_put(buf, &off, "\001\001", 2);
		break;
	case SECURITY_STARTTLS:
	case SECURITY_AUTH_LOGIN:
	default:
		break;
	}
	*len = off;
	return buf;
}

/* Queues a built response (see smtp_auth_response) after prefix, then
 * wipes and frees it.  Returns 0 or -1 on ENOMEM. */
static int
smtp_auth_queue_response(struct smtp_conn *conn, const char *prefix)
{
	const struct security_driver *d = smtp_driver(conn, conn->driver_cur);
	unsigned char *raw;
	size_t len = 0;
	int r;

	if ((raw = smtp_auth_response(conn, d, &len)) == NULL)
		return -1;
	r = smtp_auth_queue(conn, prefix, raw, len);
	OPENSSL_cleanse(raw, len);
	free(raw);
	return r;
}

/* Queues base64 of one string (LOGIN's user name or password). */
static int
smtp_auth_queue_string(struct smtp_conn *conn, const char *s)
{
	return smtp_auth_queue(conn, "", (const unsigned char *)s,
	    strlen(s));
}

static void
smtp_auth_start(struct smtp_conn *conn)
{
	const struct security_driver *d = smtp_driver(conn, conn->driver_cur);
	const char *mech = security_mechanism(d->kind);
	char prefix[32];
	size_t rawlen = 0;
	unsigned char *raw;
	int r = 0;

	if (mech == NULL || d->user == NULL || d->secret == NULL) {
		smtp_driver_reject(conn, SMTP_SECURITY, NULL, 1, "driver %s "
		    "has no checked user and secret", security_kind_name(
		    d->kind));
		return;
	}

	conn->auth_initial = 0;
	conn->auth_note[0] = '\0';
	snprintf(prefix, sizeof(prefix), "AUTH %s ", mech);
	switch (d->kind) {
	case SECURITY_AUTH_LOGIN:
		r = smtp_command(conn, "AUTH LOGIN\r\n");
		break;
	case SECURITY_AUTH_PLAIN:
		/* The initial response only when the whole line stays
		 * within SMTP_COMMAND_MAX; otherwise it follows a 334. */
		if ((raw = smtp_auth_response(conn, d, &rawlen)) == NULL) {
			r = -1;
			break;
		}
		if (strlen(prefix) + 4 * ((rawlen + 2) / 3) + 2 <=
		    SMTP_COMMAND_MAX) {
			r = smtp_auth_queue(conn, prefix, raw, rawlen);
			conn->auth_initial = 1;
		} else {
			r = smtp_command(conn, "AUTH PLAIN\r\n");
		}
		OPENSSL_cleanse(raw, rawlen);
		free(raw);
		break;
	case SECURITY_AUTH_XOAUTH2:
	case SECURITY_AUTH_OAUTHBEARER:
		/* NOTE: bearer tokens often make this line longer than
		 * SMTP_COMMAND_MAX, which RFC 4954 does not allow, so a
		 * server that enforces the limit rejects it.  Sending the
		 * response after an empty 334 instead is not implemented. */
		r = smtp_auth_queue_response(conn, prefix);
		conn->auth_initial = 1;
		break;
	case SECURITY_STARTTLS:
	default:
		r = -1;
		break;
	}
	if (r == -1) {
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "out of memory queuing AUTH %s", mech);
		return;
	}
	smtp_enter(conn, SMTP_STATE_AUTH);
}

static void
smtp_auth_ok(struct smtp_conn *conn, const struct reply *r)
{
	const struct security_driver *d = smtp_driver(conn, conn->driver_cur);

	log_event(LOG_LEVEL_INFO, conn->settings.id, conn->peer,
	    "upstream.auth", "mechanism=%s result=ok code=%d",
	    security_mechanism(d->kind), r->code);
	smtp_driver_done(conn);
}

/* Fails the open after a final AUTH reply other than 235.  QUIT follows
 * unless the server is closing (421) or still inside the exchange (334),
 * where "QUIT" would be read as a SASL response. */
static void
smtp_auth_fail(struct smtp_conn *conn, const struct reply *r)
{
	const struct security_driver *d = smtp_driver(conn, conn->driver_cur);
	const char *mech = security_mechanism(d->kind);
	char summary[200];

	log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
	    "upstream.auth", "mechanism=%s result=failed code=%d", mech,
	    r->code);
	reply_summary(r, summary, conn->auth_note[0] != '\0' ? 100 :
	    sizeof(summary));
	if (conn->auth_note[0] != '\0')
		smtp_driver_reject(conn, SMTP_SECURITY, r,
		    r->code != 421 && r->code != 334, "AUTH %s rejected by "
		    "%s: %s; %s", mech, conn->peer, summary, conn->auth_note);
	else
		smtp_driver_reject(conn, SMTP_SECURITY, r,
		    r->code != 421 && r->code != 334, "AUTH %s rejected by "
		    "%s: %s", mech, conn->peer, summary);
}

/* Cancels the exchange after an unexpected 334 by sending line, and waits
 * in AUTH_CANCEL for the final failure.  note is the reason, kept for the
 * result's detail. */
static void
smtp_auth_cancel(struct smtp_conn *conn, const char *line, const char *note)
{
	snprintf(conn->auth_note, sizeof(conn->auth_note), "%s", note);
	if (smtp_command(conn, "%s\r\n", line) == -1) {
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "out of memory queuing the AUTH cancellation");
		return;
	}
	smtp_enter(conn, SMTP_STATE_AUTH_CANCEL);
}

/* Decodes base64 text (no line breaks) into out.  Returns the length, or
 * -1 when text is not base64 or does not fit in outlen bytes. */
static int
smtp_b64_decode(const char *text, size_t len, unsigned char *out,
    size_t outlen)
{
	size_t pad = 0;
	int n;

	while (len > 0 && isspace((unsigned char)text[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*text)) {
		text++;
		len--;
	}
	if (len == 0)
		return 0;
	if (len % 4 != 0 || len / 4 * 3 > outlen || len > REPLY_MAX_LINE)
		return -1;
	if (text[len - 1] == '=')
		pad++;
	if (text[len - 2] == '=')
		pad++;
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if ((n = EVP_DecodeBlock(out, (const unsigned char *)text,
	    (int)len)) < 0 || (size_t)n < pad)
		return -1;
	return n - (int)pad;
}

/* Copies the "status" member of a JSON error object into buf, or
 * "unknown".  The scan is shallow on purpose: only that value is used. */
static void
smtp_json_status(const char *json, char *buf, size_t len)
{
	const char *p = strstr(json, "\"status\"");
	size_t n = 0;

	snprintf(buf, len, "unknown");
	if (p == NULL || len == 0)
		return;
	p += strlen("\"status\"");
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p++ != ':')
		return;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '"')
		p++;
	while (p[n] != '\0' && p[n] != '"' && p[n] != ',' && p[n] != '}' &&
	    p[n] != ' ' && n + 1 < len)
		n++;
	if (n == 0)
		return;
	memcpy(buf, p, n);
	buf[n] = '\0';
}

/*
 * Handles the 334 error challenge of XOAUTH2 and OAUTHBEARER: base64 JSON
 * such as {"status":"401",...}.  The client must respond to it (an empty
 * line for XOAUTH2, a single ^A for OAUTHBEARER, RFC 7628 section 3.2.3)
 * and then read the server's final failure.
 */
static void
smtp_auth_error_challenge(struct smtp_conn *conn, const struct reply *r,
    const char *response)
{
	unsigned char decoded[SMTP_CHALLENGE_MAX + 1];
	char status[64];
	char note[sizeof(conn->auth_note)];
	int n, i;

	n = smtp_b64_decode(r->text != NULL ? r->text : "",
	    r->text != NULL ? r->textlen : 0, decoded, SMTP_CHALLENGE_MAX);
	if (n < 0) {
		snprintf(note, sizeof(note), "error challenge is not "
		    "base64");
	} else {
		/* Server text goes into messages and logs: printable
		 * ASCII only. */
		for (i = 0; i < n; i++)
			if (decoded[i] < 0x20 || decoded[i] >= 0x7f)
				decoded[i] = '?';
		decoded[n] = '\0';
		smtp_json_status((const char *)decoded, status,
		    sizeof(status));
		smtp_format(note, sizeof(note), "error status %s: %s", status,
		    (const char *)decoded);
	}
	smtp_auth_cancel(conn, response, note);
}

/* Handles a reply in AUTH, AUTH_USER and AUTH_SECRET. */
static void
smtp_on_auth(struct smtp_conn *conn, const struct reply *r)
{
	const struct security_driver *d = smtp_driver(conn, conn->driver_cur);
	int q = 0;

	if (r->code == 235) {
		smtp_auth_ok(conn, r);
		return;
	}
	if (r->code != 334) {
		smtp_auth_fail(conn, r);
		return;
	}

	if (conn->state == SMTP_STATE_AUTH_SECRET) {
		/* RFC 4954 section 4: "*" cancels the exchange. */
		smtp_auth_cancel(conn, "*", "the server asked for more after "
		    "the credentials");
		return;
	}
	if (conn->state == SMTP_STATE_AUTH_USER) {
		q = smtp_auth_queue_string(conn, d->secret);
		if (q == 0)
			smtp_enter(conn, SMTP_STATE_AUTH_SECRET);
	} else {
		switch (d->kind) {
		case SECURITY_AUTH_LOGIN:
			q = smtp_auth_queue_string(conn, d->user);
			if (q == 0)
				smtp_enter(conn, SMTP_STATE_AUTH_USER);
			break;
		case SECURITY_AUTH_PLAIN:
			if (conn->auth_initial) {
				smtp_auth_cancel(conn, "*", "unexpected "
				    "challenge after the initial response");
				return;
			}
			q = smtp_auth_queue_response(conn, "");
			if (q == 0)
				smtp_enter(conn, SMTP_STATE_AUTH_SECRET);
			break;
		case SECURITY_AUTH_XOAUTH2:
			smtp_auth_error_challenge(conn, r, "");
			return;
		case SECURITY_AUTH_OAUTHBEARER:
			smtp_auth_error_challenge(conn, r, "AQ==");
			return;
		case SECURITY_STARTTLS:
		default:
			smtp_auth_fail(conn, r);
			return;
		}
	}
	if (q == -1)
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "out of memory queuing the AUTH %s response",
		    security_mechanism(d->kind));
}

/* Handles the final reply after a cancelled exchange: always a failure,
 * even a 235, because the client gave up. */
static void
smtp_on_auth_cancel(struct smtp_conn *conn, const struct reply *r)
{
	smtp_auth_fail(conn, r);
}

/* --- transaction ------------------------------------------------------ */

/* Releases the per-transaction buffers. */
static void
smtp_txn_clear(struct smtp_conn *conn)
{
	free(conn->headers);
	conn->headers = NULL;
	conn->headers_len = conn->headers_off = 0;
	free(conn->chunk);
	conn->chunk = NULL;
	conn->txn = 0;
	conn->mail = NULL;
	conn->body = NULL;
	conn->done_cb = NULL;
	conn->done_arg = NULL;
}

/* Ends the transaction with conn->result and fires the done callback.  A
 * live connection goes back to READY.  clean is 1 when the server has no
 * open transaction (250 to the end of DATA, or nothing sent), so no RSET
 * is needed before the next one. */
static void
smtp_txn_finish(struct smtp_conn *conn, enum smtp_state at, int clean)
{
	struct smtp_result res;
	smtp_done_cb *cb = conn->done_cb;
	void *arg = conn->done_arg;
	char quoted[SMTP_RESULT_TEXT_MAX + 1];

	conn->result.state = at;
	conn->result.committed = conn->committed;
	conn->result.refused = conn->refused;
	res = conn->result;

	if (res.outcome == SMTP_OK) {
		conn->messages_sent++;
		log_event(LOG_LEVEL_INFO, conn->settings.id, conn->peer,
		    "upstream.sent", "code=%d recipients=%zu refused=%zu "
		    "bytes=%" PRIu64, res.code, conn->nrcpt, res.refused,
		    conn->body_bytes);
	} else if (res.outcome == SMTP_SENDER_REJECTED ||
	    res.outcome == SMTP_ALL_RCPT_REFUSED ||
	    res.outcome == SMTP_DATA_REJECTED) {
		log_event(LOG_LEVEL_NOTICE, conn->settings.id, conn->peer,
		    "upstream.rejected", "state=%s code=%d enhanced=%s "
		    "recipients=%zu refused=%zu committed=%s reply=\"%s\"",
		    smtp_state_name(at), res.code,
		    res.enhanced[0] != '\0' ? res.enhanced : "-", conn->nrcpt,
		    res.refused, res.committed ? "yes" : "no",
		    smtp_log_quote(res.text, quoted, sizeof(quoted)));
	}

	if (!conn->dead) {
		if (!clean)
			conn->rset_pending = 1;
		smtp_enter(conn, SMTP_STATE_READY);
	}
	smtp_txn_clear(conn);

	/* The callback may start the next transaction or close the
	 * connection, so nothing of conn is touched after it. */
	if (!conn->closing && cb != NULL)
		cb(conn, &res, arg);
}

/* Records a rejection that decides the transaction's outcome. */
static void
smtp_txn_decide(struct smtp_conn *conn, enum smtp_outcome outcome,
    const struct reply *r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
smtp_txn_decide(struct smtp_conn *conn, enum smtp_outcome outcome,
    const struct reply *r, const char *fmt, ...)
{
	va_list ap;

	conn->decided = 1;
	conn->result.outcome = outcome;
	smtp_result_set_reply(&conn->result, r);
	va_start(ap, fmt);
	smtp_result_set_detail(&conn->result, fmt, ap);
	va_end(ap);
}

/* Queues MAIL, and with PIPELINING every RCPT and DATA too, in one write.
 * Returns 0, or -1 with conn->result's outcome and detail filled. */
static int
smtp_send_envelope(struct smtp_conn *conn)
{
	struct evbuffer *cmds;
	const char *from = mail_from_mailbox(conn->mail);
	const char *to;
	size_t i;
	int r = 0;

	if (!smtp_mailbox_ok(from)) {
		conn->result.outcome = SMTP_PROTOCOL;
		snprintf(conn->result.detail, sizeof(conn->result.detail),
		    "the sender address cannot be sent in MAIL FROM");
		return -1;
	}
	for (i = 0; i < conn->nrcpt; i++) {
		if (!smtp_mailbox_ok(mail_rcpt_mailbox(conn->mail, i))) {
			conn->result.outcome = SMTP_PROTOCOL;
			snprintf(conn->result.detail,
			    sizeof(conn->result.detail),
			    "recipient %zu cannot be sent in RCPT TO", i + 1);
			return -1;
		}
	}

	if ((cmds = evbuffer_new()) == NULL)
		goto nomem;
	r |= evbuffer_add_printf(cmds, "MAIL FROM:<%s>", from);
	if (conn->caps.flags & EHLO_SIZE)
		r |= evbuffer_add_printf(cmds, " SIZE=%" PRIu64,
		    mail_size_estimate(conn->mail));
	r |= evbuffer_add(cmds, "\r\n", 2);
	if (conn->pipelined) {
		for (i = 0; i < conn->nrcpt; i++) {
			to = mail_rcpt_mailbox(conn->mail, i);
			r |= evbuffer_add_printf(cmds, "RCPT TO:<%s>\r\n", to);
		}
		r |= evbuffer_add(cmds, "DATA\r\n", 6);
	}
	if (r < 0 || bufferevent_write_buffer(conn->bev, cmds) == -1) {
		evbuffer_free(cmds);
		goto nomem;
	}
	evbuffer_free(cmds);
	conn->rcpt_next = 0;
	smtp_enter(conn, SMTP_STATE_MAIL);
	return 0;

nomem:
	conn->result.outcome = SMTP_SPOOL_ERROR;
	snprintf(conn->result.detail, sizeof(conn->result.detail),
	    "out of memory queuing the MAIL command");
	return -1;
}

/* Handles a 421 during a transaction: the server is closing. */
static void
smtp_on_closing(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];

	reply_summary(r, summary, sizeof(summary));
	smtp_fail_conn(conn, SMTP_NETWORK, r,
	    "server %s is closing the connection: %s", conn->peer, summary);
}

static void
smtp_on_rset(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];

	if (r->code == 421) {
		smtp_on_closing(conn, r);
		return;
	}
	if (r->code != 250) {
		reply_summary(r, summary, sizeof(summary));
		smtp_fail_conn(conn, SMTP_PROTOCOL, r,
		    "RSET rejected by %s: %s", conn->peer, summary);
		return;
	}
	conn->rset_pending = 0;
	if (smtp_send_envelope(conn) == -1)
		smtp_fail_conn(conn, conn->result.outcome, NULL, "%s",
		    conn->result.detail);
}

/* Sends DATA after the last RCPT without PIPELINING, or ends a
 * transaction that has no accepted recipient. */
static void
smtp_after_rcpts(struct smtp_conn *conn)
{
	if (conn->pipelined) {
		/* DATA was sent with the envelope; its reply comes next. */
		smtp_enter(conn, SMTP_STATE_DATA);
		return;
	}
	if (conn->decided) {
		smtp_txn_finish(conn, SMTP_STATE_RCPT, 0);
		return;
	}
	if (smtp_command(conn, "DATA\r\n") == -1) {
		smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
		    "out of memory queuing DATA");
		return;
	}
	smtp_enter(conn, SMTP_STATE_DATA);
}

static void
smtp_on_mail(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];

	reply_summary(r, summary, sizeof(summary));
	if (r->code == 421) {
		smtp_on_closing(conn, r);
		return;
	}
	if (r->code / 100 != 2 && r->code < 400) {
		smtp_fail_conn(conn, SMTP_PROTOCOL, r,
		    "unexpected reply to MAIL from %s: %s", conn->peer,
		    summary);
		return;
	}
	if (r->code / 100 != 2) {
		smtp_txn_decide(conn, SMTP_SENDER_REJECTED, r,
		    "sender rejected by %s: %s", conn->peer, summary);
		if (!conn->pipelined) {
			smtp_txn_finish(conn, SMTP_STATE_MAIL, 0);
			return;
		}
		/* The pipelined RCPT and DATA replies still have to be read
		 * to stay in step with the server. */
		smtp_enter(conn, SMTP_STATE_RCPT);
		return;
	}
	if (!conn->pipelined && smtp_command(conn, "RCPT TO:<%s>\r\n",
	    mail_rcpt_mailbox(conn->mail, 0)) == -1) {
		smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
		    "out of memory queuing RCPT");
		return;
	}
	smtp_enter(conn, SMTP_STATE_RCPT);
}

static void
smtp_on_rcpt(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];
	size_t i = conn->rcpt_next;

	reply_summary(r, summary, sizeof(summary));
	if (r->code == 421) {
		smtp_on_closing(conn, r);
		return;
	}
	if ((r->code / 100 != 2 && r->code < 400) || i >= conn->nrcpt) {
		smtp_fail_conn(conn, SMTP_PROTOCOL, r,
		    "unexpected reply to RCPT from %s: %s", conn->peer,
		    summary);
		return;
	}

	conn->rcpt_next++;
	if (r->code / 100 == 2) {
		conn->accepted++;
		mail_rcpt_set_result(conn->mail, i, r->code, NULL);
	} else {
		conn->refused++;
		mail_rcpt_set_result(conn->mail, i, r->code,
		    r->text != NULL ? r->text : "");
		/* Until a recipient is accepted, the last refusal is the
		 * reply that explains an all-refused transaction. */
		if (!conn->decided && conn->accepted == 0) {
			smtp_result_set_reply(&conn->result, r);
			snprintf(conn->last_refusal,
			    sizeof(conn->last_refusal), "%s", summary);
		}
	}

	if (conn->rcpt_next < conn->nrcpt) {
		if (!conn->pipelined && smtp_command(conn, "RCPT TO:<%s>\r\n",
		    mail_rcpt_mailbox(conn->mail, conn->rcpt_next)) == -1) {
			smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
			    "out of memory queuing RCPT");
			return;
		}
		smtp_enter(conn, SMTP_STATE_RCPT);
		return;
	}

	if (!conn->decided && conn->accepted == 0) {
		conn->decided = 1;
		conn->result.outcome = SMTP_ALL_RCPT_REFUSED;
		smtp_format(conn->result.detail, sizeof(conn->result.detail),
		    "all %zu recipients refused by %s; last reply: %s",
		    conn->nrcpt, conn->peer, conn->last_refusal);
	}
	smtp_after_rcpts(conn);
}

/* Starts the body after 354: the header block is built now, because it
 * leaves out the recipients the server refused. */
static void
smtp_body_start(struct smtp_conn *conn)
{
	/* mail_body() rewinds the spool, so it is called once per
	 * transaction and the spool is kept for smtp_body_fill(). */
	struct spool *body = mail_body(conn->mail);

	if (body == NULL) {
		smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
		    "the message has no body spool");
		return;
	}
	if (mail_write_headers(conn->mail, &conn->headers,
	    &conn->headers_len) == -1) {
		conn->headers = NULL;
		smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
		    "out of memory building the message header");
		return;
	}
	if ((conn->chunk = malloc(SMTP_BODY_CHUNK)) == NULL) {
		smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
		    "out of memory reading the message spool");
		return;
	}
	conn->headers_off = 0;
	conn->body = body;
	spool_rewind(body);
	dotstuff_init(&conn->stuffer);
	smtp_enter(conn, SMTP_STATE_BODY);
	smtp_body_fill(conn);
}

static void
smtp_on_data(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];

	reply_summary(r, summary, sizeof(summary));
	if (r->code == 421) {
		smtp_on_closing(conn, r);
		return;
	}
	if (r->code == 354) {
		if (conn->decided) {
			/* A broken pipelining server invites the body after
			 * refusing the envelope.  Sending "." could deliver
			 * an empty message, so the connection is dropped. */
			smtp_fail_conn(conn, conn->result.outcome, NULL,
			    "server %s sent 354 to DATA after refusing the "
			    "envelope", conn->peer);
			return;
		}
		smtp_body_start(conn);
		return;
	}
	if (r->code < 400) {
		smtp_fail_conn(conn, SMTP_PROTOCOL, r,
		    "unexpected reply to DATA from %s: %s", conn->peer,
		    summary);
		return;
	}
	if (!conn->decided)
		smtp_txn_decide(conn, SMTP_DATA_REJECTED, r,
		    "DATA rejected by %s: %s", conn->peer, summary);
	smtp_txn_finish(conn, SMTP_STATE_DATA, 0);
}

/* Handles a reply that arrives while the body is still being sent. */
static void
smtp_on_body_reply(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];

	reply_summary(r, summary, sizeof(summary));
	if (r->code == 421) {
		smtp_on_closing(conn, r);
		return;
	}
	/* The server gave up on the message mid-body.  The transaction
	 * cannot be brought back in step, so the connection is dropped. */
	smtp_fail_conn(conn, SMTP_DATA_REJECTED, r,
	    "server %s replied while the message was being sent: %s",
	    conn->peer, summary);
}

static void
smtp_on_data_done(struct smtp_conn *conn, const struct reply *r)
{
	char summary[200];

	reply_summary(r, summary, sizeof(summary));
	if (r->code == 421) {
		smtp_on_closing(conn, r);
		return;
	}
	smtp_result_set_reply(&conn->result, r);
	if (r->code == 250) {
		conn->result.outcome = SMTP_OK;
		smtp_format(conn->result.detail, sizeof(conn->result.detail),
		    "message accepted by %s", conn->peer);
		smtp_txn_finish(conn, SMTP_STATE_DATA_DONE, 1);
		return;
	}
	/* Only 250 means success; any other reply, 2xx included, is
	 * reported as a rejection. */
	conn->result.outcome = SMTP_DATA_REJECTED;
	smtp_format(conn->result.detail, sizeof(conn->result.detail),
	    "message rejected by %s after the end of data: %s", conn->peer,
	    summary);
	smtp_txn_finish(conn, SMTP_STATE_DATA_DONE, 0);
}

/* Queues stuffed bytes into the output buffer.  Returns 0 or -1. */
static int
smtp_body_push(struct smtp_conn *conn, const char *src, size_t len)
{
	struct evbuffer_iovec vec;
	size_t n;

	if (evbuffer_reserve_space(smtp_output(conn),
	    (ev_ssize_t)DOTSTUFF_MAX_OUT(len), &vec, 1) != 1)
		return -1;
	n = dotstuff_encode(&conn->stuffer, src, len, vec.iov_base);
	vec.iov_len = n;
	if (evbuffer_commit_space(smtp_output(conn), &vec, 1) == -1)
		return -1;
	conn->body_bytes += n;
	return 0;
}

/* Queues the end of the stuffed stream and the final ".". */
static void
smtp_body_end(struct smtp_conn *conn)
{
	char tail[2 + 3];
	size_t n;

	n = dotstuff_finish(&conn->stuffer, tail);
	memcpy(tail + n, ".\r\n", 3);
	if (evbuffer_add(smtp_output(conn), tail, n + 3) == -1) {
		smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
		    "out of memory queuing the end of data");
		return;
	}
	conn->body_bytes += n + 3;
	/* From here on the server may have the message. */
	conn->committed = 1;
	free(conn->chunk);
	conn->chunk = NULL;
	smtp_enter(conn, SMTP_STATE_DATA_DONE);
}

/* Tops up the output buffer with header and spool bytes until it contains
 * SMTP_BODY_LOW_WATER bytes, so about three chunks at most are in memory
 * whatever the message size.  The write callback calls it again as the
 * buffer drains. */
static void
smtp_body_fill(struct smtp_conn *conn)
{
	const char *src;
	size_t n;
	ssize_t got;

	while (conn->state == SMTP_STATE_BODY &&
	    evbuffer_get_length(smtp_output(conn)) < SMTP_BODY_LOW_WATER) {
		if (conn->headers_off < conn->headers_len) {
			src = conn->headers + conn->headers_off;
			n = conn->headers_len - conn->headers_off;
			if (n > SMTP_BODY_CHUNK)
				n = SMTP_BODY_CHUNK;
			conn->headers_off += n;
		} else {
			got = spool_read(conn->body, conn->chunk,
			    SMTP_BODY_CHUNK);
			if (got < 0) {
				smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
				    "reading the message spool failed: %s",
				    strerror(errno));
				return;
			}
			if (got == 0) {
				smtp_body_end(conn);
				return;
			}
			src = conn->chunk;
			n = (size_t)got;
		}
		if (smtp_body_push(conn, src, n) == -1) {
			smtp_fail_conn(conn, SMTP_SPOOL_ERROR, NULL,
			    "out of memory queuing the message body");
			return;
		}
	}
}

/* --- connection loss and close ------------------------------------- */

/* Reports a connection that died while idle. */
static void
smtp_lost(struct smtp_conn *conn, const char *reason)
{
	smtp_lost_cb *cb = conn->lost_cb;
	char quoted[256];

	log_event(LOG_LEVEL_NOTICE, conn->settings.id, conn->peer,
	    "upstream.lost", "reason=\"%s\"",
	    smtp_log_quote(reason, quoted, sizeof(quoted)));
	smtp_mark_dead(conn);
	if (!conn->closing && cb != NULL)
		cb(conn, reason, conn->lost_arg);
}

/* Ends the QUIT exchange (a reply, EOF, an error or the timeout). */
static void
smtp_quit_done(struct smtp_conn *conn, const char *how)
{
	log_event(LOG_LEVEL_INFO, conn->settings.id, conn->peer,
	    "upstream.quit", "result=\"%s\"", how);
	conn->dead = 1;
	if (conn->closing)
		smtp_schedule_free(conn);
	else
		smtp_enter(conn, SMTP_STATE_CLOSED);
}

/*
 * Fails the connection: it becomes dead and the pending callback fires.  A
 * transaction with a decided rejection keeps that outcome.  Otherwise
 * outcome is used, and a network failure before the final "." was queued
 * sets conn_lost, because a retry on another connection is then safe.
 */
static void
smtp_fail_conn(struct smtp_conn *conn, enum smtp_outcome outcome,
    const struct reply *r, const char *fmt, ...)
{
	enum smtp_state at = conn->state;
	char detail[sizeof(conn->result.detail)];
	char quoted[sizeof(detail)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);

	if (at == SMTP_STATE_QUIT) {
		smtp_quit_done(conn, detail);
		return;
	}
	if (at == SMTP_STATE_CLOSED)
		return;

	if (conn->txn || conn->open_pending)
		log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
		    "upstream.error", "state=%s detail=\"%s\"",
		    smtp_state_name(at),
		    smtp_log_quote(detail, quoted, sizeof(quoted)));
	smtp_mark_dead(conn);

	if (conn->open_pending) {
		smtp_open_finish(conn, outcome, r, at, detail);
		return;
	}
	/* A transaction whose result already waits in the defer event is
	 * over; the failure then concerns the idle connection. */
	if (!conn->txn || conn->deferred == SMTP_DEFERRED_DONE) {
		smtp_lost(conn, detail);
		return;
	}
	if (!conn->decided) {
		conn->result.outcome = outcome;
		if (r != NULL)
			smtp_result_set_reply(&conn->result, r);
		snprintf(conn->result.detail, sizeof(conn->result.detail),
		    "%s", detail);
		conn->result.conn_lost = outcome == SMTP_NETWORK &&
		    !conn->committed;
	}
	smtp_txn_finish(conn, at, 0);
}

/* --- libevent callbacks ---------------------------------------------- */

/* Handles bytes that arrive while no reply is expected: a 421 line means
 * the server is closing; anything else is a protocol violation. */
static void
smtp_read_idle(struct smtp_conn *conn)
{
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	struct evbuffer_ptr eol;
	size_t eol_len = 0, len, n;
	char prefix[3];
	char reason[REPLY_MAX_LINE + 64];

	/* Wait for the rest of a line only while it can still be a 421. */
	len = evbuffer_get_length(in);
	n = len < sizeof(prefix) ? len : sizeof(prefix);
	if (evbuffer_copyout(in, prefix, n) != (ev_ssize_t)n ||
	    memcmp(prefix, "421", n) != 0 || len > REPLY_MAX_LINE + 2) {
		smtp_lost(conn, "unexpected data while idle");
		return;
	}
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos < 0)
		return;		/* wait for the rest of the 421 line */

	n = (size_t)eol.pos;
	if (n > REPLY_MAX_LINE)
		n = REPLY_MAX_LINE;
	evbuffer_remove(in, conn->line, n);
	conn->line[n] = '\0';
	snprintf(reason, sizeof(reason), "server sent 421 while idle: %s",
	    n > 4 ? conn->line + 4 : "");
	smtp_lost(conn, reason);
}

/* Cuts the input into lines and dispatches every complete reply. */
static void
smtp_read_input(struct smtp_conn *conn)
{
	struct evbuffer *in;
	struct evbuffer_ptr eol;
	struct reply reply;
	char err[128];
	size_t eol_len, n;
	int fed;

	for (;;) {
		if (conn->bev == NULL || conn->state == SMTP_STATE_CONNECTING ||
		    conn->state == SMTP_STATE_TLS_HANDSHAKE ||
		    conn->state == SMTP_STATE_CLOSED)
			return;
		in = bufferevent_get_input(conn->bev);
		if (evbuffer_get_length(in) == 0)
			return;
		if (conn->state == SMTP_STATE_READY) {
			smtp_read_idle(conn);
			return;
		}

		eol_len = 0;
		eol = evbuffer_search_eol(in, NULL, &eol_len,
		    EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > REPLY_MAX_LINE + 2)
				smtp_fail_conn(conn, SMTP_PROTOCOL, NULL,
				    "reply line longer than %d bytes",
				    REPLY_MAX_LINE);
			return;
		}
		if ((size_t)eol.pos > REPLY_MAX_LINE) {
			smtp_fail_conn(conn, SMTP_PROTOCOL, NULL,
			    "reply line longer than %d bytes", REPLY_MAX_LINE);
			return;
		}
		n = (size_t)eol.pos;
		evbuffer_remove(in, conn->line, n);
		evbuffer_drain(in, eol_len);
		conn->line[n] = '\0';

		memset(&reply, 0, sizeof(reply));
		fed = reply_parser_feed(&conn->parser, conn->line, n, &reply,
		    err, sizeof(err));
		if (fed == REPLY_FEED_ERROR) {
			reply_parser_reset(&conn->parser);
			smtp_fail_conn(conn, SMTP_PROTOCOL, NULL,
			    "malformed reply from %s: %s", conn->peer, err);
			return;
		}
		if (fed == REPLY_FEED_MORE)
			continue;
		smtp_dispatch(conn, &reply);
		reply_clear(&reply);
	}
}

/* Picks the next state from a complete reply and the current state. */
static void
smtp_dispatch(struct smtp_conn *conn, const struct reply *r)
{
	char how[32];

	/* Until READY, keep the latest reply for the open callback. */
	if (conn->open_pending) {
		reply_clear(&conn->open_reply);
		if (reply_copy(&conn->open_reply, r) == -1)
			memset(&conn->open_reply, 0, sizeof(conn->open_reply));
	}

	switch (conn->state) {
	case SMTP_STATE_GREETING:
		smtp_on_greeting(conn, r);
		break;
	case SMTP_STATE_EHLO:
		smtp_on_ehlo(conn, r);
		break;
	case SMTP_STATE_HELO:
		smtp_on_helo(conn, r);
		break;
	case SMTP_STATE_STARTTLS:
		smtp_on_starttls(conn, r);
		break;
	case SMTP_STATE_AUTH:
	case SMTP_STATE_AUTH_USER:
	case SMTP_STATE_AUTH_SECRET:
		smtp_on_auth(conn, r);
		break;
	case SMTP_STATE_AUTH_CANCEL:
		smtp_on_auth_cancel(conn, r);
		break;
	case SMTP_STATE_RSET:
		smtp_on_rset(conn, r);
		break;
	case SMTP_STATE_MAIL:
		smtp_on_mail(conn, r);
		break;
	case SMTP_STATE_RCPT:
		smtp_on_rcpt(conn, r);
		break;
	case SMTP_STATE_DATA:
		smtp_on_data(conn, r);
		break;
	case SMTP_STATE_BODY:
		smtp_on_body_reply(conn, r);
		break;
	case SMTP_STATE_DATA_DONE:
		smtp_on_data_done(conn, r);
		break;
	case SMTP_STATE_QUIT:
		snprintf(how, sizeof(how), "reply %d", r->code);
		smtp_quit_done(conn, how);
		break;
	case SMTP_STATE_CONNECTING:
	case SMTP_STATE_TLS_HANDSHAKE:
	case SMTP_STATE_READY:
	case SMTP_STATE_CLOSED:
	case SMTP_STATE_COUNT:
	default:
		/* smtp_read_input() never dispatches in these states. */
		log_event(LOG_LEVEL_ERR, conn->settings.id, conn->peer,
		    "upstream.error", "state=%s detail=\"internal error: "
		    "reply dispatched in this state\"",
		    smtp_state_name(conn->state));
		smtp_fail_conn(conn, SMTP_PROTOCOL, r,
		    "internal error: reply in state %s",
		    smtp_state_name(conn->state));
		break;
	}
}

static void
smtp_read_cb(struct bufferevent *bev, void *arg)
{
	smtp_read_input(arg);
}

static void
smtp_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_conn *conn = arg;

	if (conn->state != SMTP_STATE_BODY)
		return;
	/* Progress on the body restarts the data block timeout.  NOTE: it
	 * bounds each refill of about 64 KiB, not each TCP send. */
	smtp_arm_timer(conn);
	smtp_body_fill(conn);
}

/* Starts the SMTP dialogue once TCP (and TLS) is up. */
static void
smtp_connected(struct smtp_conn *conn)
{
	char verify[256];

	if (conn->ssl != NULL) {
		/* Defense in depth: the context's verify mode should have
		 * failed the handshake already. */
		if (conn->settings.profile != NULL &&
		    conn->settings.profile->verify_server &&
		    SSL_get_verify_result(conn->ssl) != X509_V_OK) {
			snprintf(verify, sizeof(verify), "%s",
			    tlsctx_verify_error(conn->ssl));
			smtp_fail_conn(conn, SMTP_SECURITY, NULL,
			    "TLS with %s failed: %s", conn->peer,
			    verify[0] != '\0' ? verify :
			    "certificate verify failed");
			return;
		}
		log_event(LOG_LEVEL_DEBUG, conn->settings.id, conn->peer,
		    "upstream.tls", "version=%s cipher=%s",
		    SSL_get_version(conn->ssl),
		    SSL_get_cipher_name(conn->ssl));
	}
	smtp_enter(conn, SMTP_STATE_GREETING);
	/* The greeting may have arrived with the handshake. */
	smtp_read_input(conn);
}

/* Classifies a failure while connecting: DNS, TCP or TLS. */
static void
smtp_connect_failed(struct smtp_conn *conn, short what, int sockerr)
{
	char reason[160];
	int dnserr;

	dnserr = bufferevent_socket_get_dns_error(conn->bev);
	if (dnserr != 0) {
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "cannot resolve %s: %s", conn->settings.server.host,
		    evutil_gai_strerror(dnserr));
		return;
	}

	if (conn->ssl != NULL &&
	    smtp_tls_error_reason(conn, reason, sizeof(reason))) {
		smtp_fail_conn(conn, SMTP_SECURITY, NULL,
		    "TLS handshake with %s failed: %s", conn->peer, reason);
		return;
	}

	/* libevent reports a refused TLS connection as EOF (a "dirty
	 * shutdown" during the handshake), with errno still set. */
	if ((what & BEV_EVENT_EOF) && sockerr == 0)
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "connection to %s closed before the session started",
		    conn->peer);
	else
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "cannot connect to %s: %s", conn->peer,
		    sockerr != 0 ? evutil_socket_error_to_string(sockerr) :
		    "connection failed");
}

static void
smtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_conn *conn = arg;
	int sockerr = EVUTIL_SOCKET_ERROR();
	unsigned long sslerr;

	if (conn->state == SMTP_STATE_CLOSED)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		if (conn->state == SMTP_STATE_CONNECTING)
			smtp_connected(conn);
		else if (conn->state == SMTP_STATE_TLS_HANDSHAKE)
			smtp_starttls_done(conn);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
		return;

	if (conn->state == SMTP_STATE_CONNECTING) {
		smtp_connect_failed(conn, what, sockerr);
		return;
	}
	if (conn->state == SMTP_STATE_TLS_HANDSHAKE) {
		smtp_starttls_failed(conn, what, sockerr);
		return;
	}

	/* A reply (such as 421) may precede the EOF in the buffer. */
	smtp_read_input(conn);
	if (conn->state == SMTP_STATE_CLOSED)
		return;
	if (conn->state == SMTP_STATE_QUIT) {
		smtp_quit_done(conn, (what & BEV_EVENT_EOF) ?
		    "connection closed" : "connection error");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "connection closed by %s", conn->peer);
		return;
	}
	/* With TLS 1.3 the server checks a client certificate after the
	 * client considers the handshake done, so its rejection arrives as
	 * an alert on the first read.  Before the connection is ready that
	 * is a security context that could not be established. */
	if (conn->ssl != NULL &&
	    (sslerr = bufferevent_get_openssl_error(conn->bev)) != 0 &&
	    ERR_reason_error_string(sslerr) != NULL)
		smtp_fail_conn(conn, conn->open_pending &&
		    ERR_GET_LIB(sslerr) == ERR_LIB_SSL ? SMTP_SECURITY :
		    SMTP_NETWORK, NULL, "TLS connection to %s failed: %s",
		    conn->peer, ERR_reason_error_string(sslerr));
	else
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "connection to %s failed: %s", conn->peer,
		    sockerr != 0 ? evutil_socket_error_to_string(sockerr) :
		    "unknown error");
}

static void
smtp_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_conn *conn = arg;
	unsigned seconds = smtp_timeout_seconds(conn, conn->state);

	log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
	    "upstream.timeout", "state=%s seconds=%u",
	    smtp_state_name(conn->state), seconds);
	if (conn->state == SMTP_STATE_QUIT) {
		smtp_quit_done(conn, "timed out");
		return;
	}
	smtp_fail_conn(conn, SMTP_NETWORK, NULL,
	    "timed out after %u seconds in state %s with %s", seconds,
	    smtp_state_name(conn->state), conn->peer);
}

/* Delivers a result prepared before any I/O. */
static void
smtp_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_conn *conn = arg;
	struct smtp_result res = conn->deferred_result;
	enum smtp_deferred deferred = conn->deferred;
	smtp_open_cb *open_cb = conn->open_cb;
	smtp_done_cb *done_cb = conn->done_cb;
	void *done_arg = conn->done_arg;

	conn->deferred = SMTP_DEFERRED_NONE;
	if (conn->closing)
		return;
	if (deferred == SMTP_DEFERRED_OPEN) {
		conn->open_pending = 0;
		conn->open_cb = NULL;
		if (open_cb != NULL)
			open_cb(conn, &res, conn->open_arg);
	} else if (deferred == SMTP_DEFERRED_DONE) {
		smtp_txn_clear(conn);
		if (done_cb != NULL)
			done_cb(conn, &res, done_arg);
	}
}

static void
smtp_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_conn *conn = arg;

	/* With BEV_OPT_CLOSE_ON_FREE this closes the socket and frees the
	 * SSL.  An SSL never handed to a bufferevent is freed here. */
	if (conn->bev != NULL)
		bufferevent_free(conn->bev);
	else if (conn->ssl != NULL)
		SSL_free(conn->ssl);
	event_free(conn->timer);
	event_free(conn->defer_ev);
	event_free(conn->free_ev);
	reply_parser_reset(&conn->parser);
	reply_clear(&conn->open_reply);
	free(conn->headers);
	free(conn->chunk);
	free(conn);
}

/* --- public interface ------------------------------------------------ */

/* Copies the HELO name, or "localhost" when it is missing or unfit for a
 * command line. */
static void
smtp_set_helo_name(struct smtp_conn *conn, const char *name)
{
	const unsigned char *p;

	if (name == NULL || name[0] == '\0' || strlen(name) > SMTP_HELO_MAX)
		goto fallback;
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			goto fallback;
	snprintf(conn->helo_name, sizeof(conn->helo_name), "%s", name);
	return;

fallback:
	log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
	    "upstream.config", "detail=\"invalid HELO name, using "
	    "localhost\"");
	snprintf(conn->helo_name, sizeof(conn->helo_name), "localhost");
}

/* Fails the open from the defer event, before any callback can run. */
static void
smtp_open_defer_fail(struct smtp_conn *conn, enum smtp_outcome outcome,
    const char *detail)
{
	char quoted[256];

	log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
	    "upstream.error", "state=%s detail=\"%s\"",
	    smtp_state_name(conn->state),
	    smtp_log_quote(detail, quoted, sizeof(quoted)));
	memset(&conn->deferred_result, 0, sizeof(conn->deferred_result));
	conn->deferred_result.outcome = outcome;
	conn->deferred_result.state = conn->state;
	snprintf(conn->deferred_result.detail,
	    sizeof(conn->deferred_result.detail), "%s", detail);
	conn->dead = 1;
	smtp_enter(conn, SMTP_STATE_CLOSED);
	smtp_defer(conn, SMTP_DEFERRED_OPEN);
}

struct smtp_conn *
smtp_open(const struct smtp_settings *settings, smtp_open_cb *cb,
    void *arg)
{
	struct smtp_conn *conn;
	const struct connstr *server = &settings->server;
	const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	int tls = server->connector == CONNSTR_TLS;
	char err[256];

	if ((conn = calloc(1, sizeof(*conn))) == NULL)
		return NULL;
	conn->settings = *settings;
	conn->open_cb = cb;
	conn->open_arg = arg;
	conn->open_pending = 1;
	conn->opened_at = time(NULL);
	conn->state = SMTP_STATE_CONNECTING;
	reply_parser_init(&conn->parser);
	if (server->host_is_ipv6)
		snprintf(conn->peer, sizeof(conn->peer), "[%s]:%u",
		    server->host, (unsigned)server->port);
	else
		snprintf(conn->peer, sizeof(conn->peer), "%s:%u",
		    server->host, (unsigned)server->port);
	smtp_set_helo_name(conn, settings->helo_name);
	conn->settings.helo_name = conn->helo_name;

	conn->timer = evtimer_new(settings->base, smtp_timeout_cb, conn);
	conn->defer_ev = evtimer_new(settings->base, smtp_defer_cb, conn);
	conn->free_ev = evtimer_new(settings->base, smtp_free_cb, conn);
	if (conn->timer == NULL || conn->defer_ev == NULL ||
	    conn->free_ev == NULL)
		goto nomem;

	log_event(LOG_LEVEL_INFO, settings->id, conn->peer,
	    "upstream.connect", "host=%s port=%u tls=%s", server->host,
	    (unsigned)server->port, tls ? "yes" : "no");

	if (tls) {
		if (settings->ssl_ctx == NULL) {
			smtp_open_defer_fail(conn, SMTP_SECURITY,
			    "no TLS context for this connection's profile");
			return conn;
		}
		conn->ssl = tlsctx_new_ssl(settings->ssl_ctx,
		    settings->profile, server->host, server->host_is_ip, err,
		    sizeof(err));
		if (conn->ssl == NULL) {
			smtp_open_defer_fail(conn, SMTP_SECURITY, err);
			return conn;
		}
		conn->bev = bufferevent_openssl_socket_new(settings->base, -1,
		    conn->ssl, BUFFEREVENT_SSL_CONNECTING, opts);
		if (conn->bev == NULL)
			goto nomem;
		/* Many servers close without a TLS close_notify after QUIT;
		 * that is an EOF, not an error. */
		bufferevent_openssl_set_allow_dirty_shutdown(conn->bev, 1);
	} else {
		conn->bev = bufferevent_socket_new(settings->base, -1, opts);
		if (conn->bev == NULL)
			goto nomem;
	}

	bufferevent_setcb(conn->bev, smtp_read_cb, smtp_write_cb,
	    smtp_event_cb, conn);
	bufferevent_setwatermark(conn->bev, EV_WRITE, SMTP_BODY_LOW_WATER, 0);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);

	smtp_enter(conn, SMTP_STATE_CONNECTING);
	if (bufferevent_socket_connect_hostname(conn->bev, settings->dns,
	    AF_UNSPEC, server->host, server->port) == -1) {
		smtp_format(err, sizeof(err), "cannot connect to %s: the address "
		    "lookup could not be started", conn->peer);
		smtp_open_defer_fail(conn, SMTP_NETWORK, err);
	}
	return conn;

nomem:
	if (conn->bev == NULL && conn->ssl != NULL)
		SSL_free(conn->ssl);
	if (conn->bev != NULL)
		bufferevent_free(conn->bev);
	if (conn->timer != NULL)
		event_free(conn->timer);
	if (conn->defer_ev != NULL)
		event_free(conn->defer_ev);
	if (conn->free_ev != NULL)
		event_free(conn->free_ev);
	free(conn);
	return NULL;
}

int
smtp_send(struct smtp_conn *conn, struct mail *m, smtp_done_cb *cb,
    void *arg)
{
	uint64_t estimate;

	if (conn == NULL || m == NULL || conn->closing || conn->dead ||
	    conn->state != SMTP_STATE_READY || conn->txn ||
	    conn->deferred != SMTP_DEFERRED_NONE)
		return -1;

	memset(&conn->result, 0, sizeof(conn->result));
	conn->txn = 1;
	conn->mail = m;
	conn->done_cb = cb;
	conn->done_arg = arg;
	conn->pipelined = (conn->caps.flags & EHLO_PIPELINING) != 0;
	conn->decided = 0;
	conn->committed = 0;
	conn->accepted = conn->refused = 0;
	conn->rcpt_next = 0;
	conn->body_bytes = 0;
	mail_rcpt_reset(m);
	conn->nrcpt = mail_rcpt_count(m);

	/* A message over the server's SIZE limit fails without sending
	 * anything, so the connection stays clean. */
	estimate = mail_size_estimate(m);
	if (conn->caps.size_max > 0 && estimate > conn->caps.size_max) {
		conn->result.outcome = SMTP_DATA_REJECTED;
		conn->result.code = 552;
		snprintf(conn->result.enhanced, sizeof(conn->result.enhanced),
		    "5.3.4");
		snprintf(conn->result.detail, sizeof(conn->result.detail),
		    "message of %" PRIu64 " bytes exceeds the server's SIZE "
		    "limit of %" PRIu64 " bytes", estimate,
		    conn->caps.size_max);
		snprintf(conn->result.text, sizeof(conn->result.text), "%s",
		    conn->result.detail);
		conn->result.state = SMTP_STATE_READY;
		log_event(LOG_LEVEL_NOTICE, conn->settings.id, conn->peer,
		    "upstream.rejected", "state=ready code=552 enhanced=5.3.4 "
		    "size=%" PRIu64 " size_max=%" PRIu64, estimate,
		    conn->caps.size_max);
		conn->deferred_result = conn->result;
		smtp_defer(conn, SMTP_DEFERRED_DONE);
		return 0;
	}
	if (conn->nrcpt == 0) {
		conn->result.outcome = SMTP_ALL_RCPT_REFUSED;
		conn->result.state = SMTP_STATE_READY;
		snprintf(conn->result.detail, sizeof(conn->result.detail),
		    "the message has no recipient");
		conn->deferred_result = conn->result;
		smtp_defer(conn, SMTP_DEFERRED_DONE);
		return 0;
	}

	if (conn->rset_pending) {
		if (smtp_command(conn, "RSET\r\n") == 0) {
			smtp_enter(conn, SMTP_STATE_RSET);
			return 0;
		}
		conn->result.outcome = SMTP_SPOOL_ERROR;
		snprintf(conn->result.detail, sizeof(conn->result.detail),
		    "out of memory queuing RSET");
	} else if (smtp_send_envelope(conn) == 0) {
		return 0;
	}

	/* Nothing usable was queued; the connection cannot be trusted to be
	 * in step any more. */
	conn->result.state = conn->state;
	conn->deferred_result = conn->result;
	conn->dead = 1;
	smtp_enter(conn, SMTP_STATE_CLOSED);
	smtp_defer(conn, SMTP_DEFERRED_DONE);
	return 0;
}

void
smtp_set_lost_cb(struct smtp_conn *conn, smtp_lost_cb *cb, void *arg)
{
	conn->lost_cb = cb;
	conn->lost_arg = arg;
}

void
smtp_close(struct smtp_conn *conn, int send_quit)
{
	if (conn == NULL || conn->closing)
		return;
	conn->closing = 1;
	conn->open_cb = NULL;
	conn->done_cb = NULL;
	conn->lost_cb = NULL;
	evtimer_del(conn->defer_ev);
	conn->deferred = SMTP_DEFERRED_NONE;

	/* A QUIT already under way (after a rejected greeting) frees the
	 * connection when it ends. */
	if (conn->state == SMTP_STATE_QUIT)
		return;
	if (send_quit && conn->state == SMTP_STATE_READY && !conn->dead &&
	    !conn->txn && conn->bev != NULL &&
	    smtp_command(conn, "QUIT\r\n") == 0) {
		smtp_enter(conn, SMTP_STATE_QUIT);
		return;
	}
	smtp_schedule_free(conn);
}

enum smtp_state
smtp_get_state(const struct smtp_conn *conn)
{
	return conn->state;
}

const char *
smtp_state_name(enum smtp_state state)
{
	if ((unsigned)state >= SMTP_STATE_COUNT)
		return "invalid";
	return smtp_state_names[state];
}

int
smtp_is_usable(const struct smtp_conn *conn)
{
	return conn->state == SMTP_STATE_READY && !conn->dead &&
	    !conn->closing && !conn->txn &&
	    conn->deferred == SMTP_DEFERRED_NONE;
}

uint64_t
smtp_id(const struct smtp_conn *conn)
{
	return conn->settings.id;
}

time_t
smtp_opened_at(const struct smtp_conn *conn)
{
	return conn->opened_at;
}

unsigned
smtp_messages_sent(const struct smtp_conn *conn)
{
	return conn->messages_sent;
}

const char *
smtp_peer(const struct smtp_conn *conn)
{
	return conn->peer;
}

const struct ehlo_caps *
smtp_caps(const struct smtp_conn *conn)
{
	return &conn->caps;
}

unsigned
smtp_security_used(const struct smtp_conn *conn)
{
	return conn->security_used;
}
