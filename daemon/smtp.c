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
 * connect timeout bounds both.  TLS_HANDSHAKE is kept for STARTTLS. */
static const struct smtp_timeout_rule smtp_timeout_rules[SMTP_STATE_COUNT] = {
	[SMTP_STATE_CONNECTING]		= SMTP_TIMEOUT(connect),
	[SMTP_STATE_TLS_HANDSHAKE]	= SMTP_TIMEOUT(connect),
	[SMTP_STATE_GREETING]		= SMTP_TIMEOUT(greeting),
	[SMTP_STATE_EHLO]		= SMTP_TIMEOUT(helo),
	[SMTP_STATE_HELO]		= SMTP_TIMEOUT(helo),
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
	if (r != NULL)
		smtp_result_set_reply(&res, r);
	snprintf(res.detail, sizeof(res.detail), "%s", detail);

	conn->open_pending = 0;
	conn->open_cb = NULL;
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

/* Makes the connection READY after a 250 to EHLO or HELO. */
static void
smtp_ready(struct smtp_conn *conn)
{
	smtp_enter(conn, SMTP_STATE_READY);
	log_event(LOG_LEVEL_INFO, conn->settings.id, conn->peer,
	    "upstream.ready", "ehlo=%s pipelining=%s size=%" PRIu64,
	    conn->ehlo ? "yes" : "no",
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
		smtp_ready(conn);
		return;
	}
	if (r->code == 421) {
		smtp_fail_conn(conn, SMTP_NETWORK, r,
		    "server %s is closing the connection: %s", conn->peer,
		    summary);
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
		smtp_ready(conn);
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
	unsigned long sslerr = 0, e;
	char reason[160];
	char quoted[sizeof(reason)];
	const char *verify;
	int dnserr;

	dnserr = bufferevent_socket_get_dns_error(conn->bev);
	if (dnserr != 0) {
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "cannot resolve %s: %s", conn->settings.server.host,
		    evutil_gai_strerror(dnserr));
		return;
	}

	if (conn->ssl != NULL) {
		/* libevent moves OpenSSL's error queue into the
		 * bufferevent; the first error names the cause. */
		while ((e = bufferevent_get_openssl_error(conn->bev)) != 0) {
			/* libevent 2.1 also stores the SSL_get_error() value,
			 * which has no library and is not an OpenSSL code. */
			if (ERR_GET_LIB(e) == 0)
				continue;
			if (sslerr == 0)
				sslerr = e;
			ERR_error_string_n(e, reason, sizeof(reason));
			log_event(LOG_LEVEL_WARNING, conn->settings.id,
			    conn->peer, "upstream.tls-error", "error=\"%s\"",
			    smtp_log_quote(reason, quoted, sizeof(quoted)));
		}
		if (ERR_peek_error() != 0)
			log_openssl_errors(LOG_LEVEL_WARNING,
			    conn->settings.id, conn->peer,
			    "upstream.tls-error");
		if (sslerr != 0 && ERR_GET_LIB(sslerr) == ERR_LIB_SYS)
			sslerr = 0;	/* a socket error, reported below */
		if (sslerr != 0 ||
		    SSL_get_verify_result(conn->ssl) != X509_V_OK) {
			verify = tlsctx_verify_error(conn->ssl);
			if (verify != NULL && verify[0] != '\0')
				snprintf(reason, sizeof(reason), "%s", verify);
			else if (sslerr != 0 &&
			    ERR_reason_error_string(sslerr) != NULL)
				snprintf(reason, sizeof(reason), "%s",
				    ERR_reason_error_string(sslerr));
			else
				snprintf(reason, sizeof(reason),
				    "handshake failed");
			smtp_fail_conn(conn, SMTP_SECURITY, NULL,
			    "TLS handshake with %s failed: %s", conn->peer,
			    reason);
			return;
		}
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
		if (conn->state == SMTP_STATE_CONNECTING ||
		    conn->state == SMTP_STATE_TLS_HANDSHAKE)
			smtp_connected(conn);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
		return;

	if (conn->state == SMTP_STATE_CONNECTING ||
	    conn->state == SMTP_STATE_TLS_HANDSHAKE) {
		smtp_connect_failed(conn, what, sockerr);
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
	if (conn->ssl != NULL &&
	    (sslerr = bufferevent_get_openssl_error(conn->bev)) != 0 &&
	    ERR_reason_error_string(sslerr) != NULL)
		smtp_fail_conn(conn, SMTP_NETWORK, NULL,
		    "TLS connection to %s failed: %s", conn->peer,
		    ERR_reason_error_string(sslerr));
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

	/* Running no driver would silently give a weaker connection than
	 * the client asked for, so a context with drivers fails. */
	if (settings->security != NULL && settings->security->count > 0) {
		/* TODO: run the security drivers (STARTTLS, AUTH) after
		 * EHLO and record them for smtp_security_used(). */
		smtp_open_defer_fail(conn, SMTP_SECURITY, "security drivers "
		    "(STARTTLS, AUTH) are not supported on upstream "
		    "connections yet");
		return conn;
	}

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
	/* No driver ever runs: smtp_open() fails a context that has any. */
	return 0;
}
