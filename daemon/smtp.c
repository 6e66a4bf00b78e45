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
 * This file contains the state table, the opening dialogue (connect,
 * greeting, EHLO or HELO), reading and dispatch, loss, QUIT and close, the
 * libevent callbacks and the public interface except smtp_send().
 * smtp_txn.c runs the transaction that smtp_send() starts, and
 * smtp_security.c runs the security drivers (STARTTLS and AUTH) between
 * EHLO and READY.  smtp_private.h contains struct smtp_conn and the
 * functions that these files share.
 *
 * Results that are known before any I/O (TLS set-up failure, a message
 * over the server's SIZE limit) are delivered from a zero-delay event, so
 * no callback ever runs inside smtp_open() or smtp_send().  Memory is
 * freed from another zero-delay event after smtp_close(), never inside a
 * callback frame that may still use it.
 */
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

#include "log.h"
#include "smtp.h"
#include "smtp_private.h"
#include "tlsctx.h"

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

static void smtp_dispatch(struct smtp_conn *, const struct reply *);
static void smtp_read_input(struct smtp_conn *);

/* --- small helpers ------------------------------------------------------ */

/* Formats into buf, cutting what does not fit: details and log values
 * are bounded on purpose. */
void
smtp_format(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* Fills code, enhanced code and text of res from r; the text is cut at
 * SMTP_RESULT_TEXT_MAX bytes, not inside a UTF-8 sequence. */
void
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
void
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

struct evbuffer *
smtp_output(struct smtp_conn *conn)
{
	return bufferevent_get_output(conn->bev);
}

/* --- state changes ---------------------------------------------------- */

/* Enters state: sets it, arms its timeout and logs the transition. */
void
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
int
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
void
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
	/* Without a deciding reply (success, or a failure such as a missing
	 * driver or a timeout) the last reply of the opening phase is reported. */
	if (r == NULL && conn->open_reply.code != 0)
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
void
smtp_open_reject(struct smtp_conn *conn, enum smtp_outcome outcome,
    const struct reply *r, int send_quit, const char *detail)
{
	enum smtp_state at = conn->state;
	char quoted[256];

	log_event(LOG_LEVEL_WARNING, conn->settings.id, conn->peer,
	    "upstream.error", "state=%s detail=\"%s\"", smtp_state_name(at),
	    log_quote(detail, quoted, sizeof(quoted)));

	conn->dead = 1;
	if (send_quit && smtp_command(conn, "QUIT\r\n") == 0)
		smtp_enter(conn, SMTP_STATE_QUIT);
	else
		smtp_enter(conn, SMTP_STATE_CLOSED);
	smtp_open_finish(conn, outcome, r, at, detail);
}

/* Makes the connection READY once EHLO (or HELO) and every security
 * driver have succeeded. */
void
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

/* --- connection loss and close ------------------------------------- */

/* Reports a connection that died while idle. */
static void
smtp_lost(struct smtp_conn *conn, const char *reason)
{
	smtp_lost_cb *cb = conn->lost_cb;
	char quoted[256];

	log_event(LOG_LEVEL_NOTICE, conn->settings.id, conn->peer,
	    "upstream.lost", "reason=\"%s\"",
	    log_quote(reason, quoted, sizeof(quoted)));
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
void
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
		    log_quote(detail, quoted, sizeof(quoted)));
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

/*
 * Sends what the output buffer has with direct writes on a plain TCP
 * connection, refilling it from the body while the socket takes
 * everything.  Only when the socket is full is the bufferevent's write
 * event armed, and the write callback takes over.  This spares the
 * epoll_ctl(2) pair and the loop pass that arming the event costs for
 * every command batch and every small body.  Every entry point of this
 * module ends with a call, so no queued byte waits without a writer.
 */
void
smtp_flush(struct smtp_conn *conn)
{
	struct evbuffer *output;
	int n;

	if (!conn->direct_write || conn->bev == NULL ||
	    conn->state == SMTP_STATE_CLOSED)
		return;
	output = bufferevent_get_output(conn->bev);
	while (evbuffer_get_length(output) > 0) {
		n = evbuffer_write(output, bufferevent_getfd(conn->bev));
		if (n < 0 || evbuffer_get_length(output) > 0) {
			/* Full socket or an error: libevent retries the
			 * write and reports an error through smtp_event_cb. */
			bufferevent_enable(conn->bev, EV_WRITE);
			return;
		}
		if (conn->state != SMTP_STATE_BODY)
			break;
		smtp_arm_timer(conn);
		smtp_body_fill(conn);
		if (conn->state == SMTP_STATE_CLOSED)
			return;
	}
	bufferevent_disable(conn->bev, EV_WRITE);
}

void
smtp_read_cb(struct bufferevent *bev, void *arg)
{
	smtp_read_input(arg);
	smtp_flush(arg);
}

void
smtp_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_conn *conn = arg;

	if (conn->state != SMTP_STATE_BODY) {
		smtp_flush(conn);
		return;
	}
	/* Progress on the body restarts the data block timeout.  NOTE: it
	 * bounds each refill of about 64 KiB, not each TCP send. */
	smtp_arm_timer(conn);
	smtp_body_fill(conn);
	smtp_flush(conn);
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
	if (conn->ssl == NULL) {
		/* The connect itself needed the write event; from here on
		 * smtp_flush() writes. */
		conn->direct_write = 1;
		bufferevent_disable(conn->bev, EV_WRITE);
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
smtp_event_handle(struct bufferevent *bev, short what, void *arg)
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

void
smtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	smtp_event_handle(bev, what, arg);
	smtp_flush(arg);
}

static void
smtp_timeout_handle(evutil_socket_t fd, short what, void *arg)
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

static void
smtp_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	smtp_timeout_handle(fd, what, arg);
	smtp_flush(arg);
}

/* Delivers a result prepared before any I/O. */
static void
smtp_defer_handle(evutil_socket_t fd, short what, void *arg)
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
smtp_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	smtp_defer_handle(fd, what, arg);
	smtp_flush(arg);
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
	    log_quote(detail, quoted, sizeof(quoted)));
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
		smtp_flush(conn);
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
