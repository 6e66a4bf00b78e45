/*
 * session.c - one client of the Unix socket: frame reading, the UPOPMAIL
 * operations and their status codes.
 *
 * Requests are handled one at a time.  While a request waits for the pool
 * or an upstream transaction, frames that arrive stay in the input buffer
 * unparsed; its read high-water mark makes libevent stop reading once it
 * contains one maximum frame, so a client cannot queue unbounded input.
 * Reading itself stays enabled, which detects a client that goes away
 * while it waits and saves two epoll_ctl(2) calls per request.
 *
 * A SENDMAIL request spans several frames (SENDMAIL, PART, CHUNK..., END).
 * The message is composed into spools as the frames arrive; the upstream
 * transaction starts after END, when the size is known.  A failure found
 * early (a bad header list, say) is kept and reported after END, and the
 * remaining body frames are read and discarded.
 *
 * Lifetime: a session is freed from a zero-delay event once the client is
 * gone and no pool request or upstream transaction refers to it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "proto.h"
#include "config.h"
#include "connstr.h"
#include "log.h"
#include "mail.h"
#include "pool.h"
#include "security.h"
#include "server.h"
#include "session.h"
#include "smtp.h"

/* The session's activity between frames. */
enum session_op {
	SESSION_OP_NONE,	/* waiting for a request */
	SESSION_OP_BODY,	/* inside SENDMAIL, reading body frames */
	SESSION_OP_LOGON,	/* LOGON waiting for the pool */
	SESSION_OP_SEND,	/* SENDMAIL waiting for the pool or upstream */
};

/* The SENDMAIL request being received or sent. */
struct session_send {
	struct mail		*mail;
	int64_t			 maxsize;
	struct pool_key		 key;
	int			 status;	/* failure found early */
	char			 message[PROTO_MAX_MESSAGE + 1];
	int			 parts;
	int			 in_text;
	int			 in_attachment;
	int			 retried;
	struct smtp_conn	*conn;		/* during the transaction */
};

struct session {
	TAILQ_ENTRY(session)	 link;
	struct server		*server;
	uint64_t		 id;
	char			 peer[64];
	struct bufferevent	*bev;
	struct event		*free_event;

	enum session_op		 op;
	struct pool_wait	*wait;
	int			 client_gone;	/* EOF, error or dropped */
	int			 stopping;	/* drop after this request */
	int			 close_after_write;
	int			 freeing;
	unsigned		 frames;

	/* UPOPMAIL state. */
	struct security		 security;	/* built by SET_SECURITY */
	/* Set after a logon failed with -7 or -8: the next SET_SECURITY
	 * starts a new context. */
	int			 security_spent;
	unsigned		 security_used;	/* INUSE bits */
	int			 logged_on;
	struct pool_key		 logon_key;
	struct pool_key		 pending_key;	/* LOGON in progress */

	/* The last SMTP reply this session's operations received, and
	 * whether the current request received it. */
	int			 have_response;
	int			 response_is_current;
	int			 last_code;
	char			 last_enhanced[REPLY_MAX_ENHANCED + 1];
	char			 last_text[PROTO_MAX_SMTP_TEXT + 1];

	struct session_send	 send;
};

static void session_read_cb(struct bufferevent *, void *);
static void session_process_input(struct session *);
static void session_send_start(struct session *, int fresh);

/* ---- Lifetime ----------------------------------------------------- */

static void
session_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;
	struct server	*server = s->server;

	log_event(LOG_LEVEL_INFO, s->id, s->peer, "session.end",
	    "frames=%u", s->frames);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->send.mail != NULL)
		mail_free(s->send.mail);
	security_clear(&s->security);
	event_free(s->free_event);
	TAILQ_REMOVE(&server->sessions, s, link);
	server->nsessions--;
	free(s);
	server_session_gone(server);
}

/* Frees the session later, once nothing upstream refers to it. */
static void
session_try_free(struct session *s)
{
	if (s->freeing || !s->client_gone)
		return;
	if (s->wait != NULL || s->send.conn != NULL)
		return;
	s->freeing = 1;
	event_active(s->free_event, 0, 0);
}

/* Marks the client gone: no more reads or replies. */
static void
session_drop(struct session *s, const char *reason)
{
	if (s->client_gone)
		return;
	s->client_gone = 1;
	log_event(LOG_LEVEL_DEBUG, s->id, s->peer, "session.drop",
	    "reason=\"%s\"", LOG_QUOTED(reason));
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	/* A request still waiting for the pool is withdrawn; a running
	 * transaction finishes and then releases its connection. */
	if (s->wait != NULL) {
		pool_cancel(s->wait);
		s->wait = NULL;
	}
	session_try_free(s);
}

/* ---- Replies ------------------------------------------------------ */

/*
 * Writes bytes to the client.  When nothing is queued the bytes go out
 * with one send(2) at once; only what the socket does not take is queued
 * on the bufferevent.  This saves the write event's epoll_ctl(2) pair and
 * a loop pass for nearly every reply.
 */
static void
session_send_bytes(struct session *s, const void *data, size_t len)
{
	struct evbuffer	*output = bufferevent_get_output(s->bev);
	ssize_t		 n = 0;

	if (evbuffer_get_length(output) == 0) {
		n = send(bufferevent_getfd(s->bev), data, len,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			/* EAGAIN and errors alike: the bufferevent retries
			 * and reports a real error through its callback. */
			n = 0;
		}
	}
	if ((size_t)n < len)
		bufferevent_write(s->bev, (const char *)data + n,
		    len - (size_t)n);
}

static void
session_write_frame(struct session *s, uint8_t op, int32_t status,
    int32_t code, const char *enhanced, const char *message,
    const char *const *extra, size_t nextra)
{
	struct proto_buf	buf;

	if (s->client_gone)
		return;
	memset(&buf, 0, sizeof(buf));
	if (proto_build_reply(&buf, op, status, code, enhanced, message,
	    extra, nextra) == -1) {
		log_event(LOG_LEVEL_ERR, s->id, s->peer, "session.error",
		    "detail=\"cannot build a reply frame\"");
		proto_buf_free(&buf);
		session_drop(s, "reply frame failed");
		return;
	}
	session_send_bytes(s, buf.data, buf.len);
	proto_buf_free(&buf);
}

/* Sends the REPLY to the current request with a formatted message. */
static void
session_reply(struct session *s, int32_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
session_reply(struct session *s, int32_t status, const char *fmt, ...)
{
	char	message[PROTO_MAX_MESSAGE + 1];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	/* A reply carries the SMTP code only of an exchange made for this
	 * request; GET_RESPONSE gives the session's last one. */
	session_write_frame(s, PROTO_OP_REPLY, status,
	    s->response_is_current ? s->last_code : 0,
	    s->response_is_current ? s->last_enhanced : "", message, NULL, 0);
}

/* Reports a broken frame, then disconnects the client once the ERROR
 * frame has been written. */
static void
session_protocol_error(struct session *s, const char *detail)
{
	log_event(LOG_LEVEL_WARNING, s->id, s->peer, "session.protocol-error",
	    "detail=\"%s\"", LOG_QUOTED(detail));
	session_write_frame(s, PROTO_OP_ERROR, PROTO_STATUS_PROTOCOL_ERROR, 0,
	    "", detail, NULL, 0);
	s->close_after_write = 1;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		session_drop(s, "protocol error");
}

/* Stores the server reply in r as this session's last SMTP exchange. */
static void
session_record_reply(struct session *s, const struct smtp_result *r)
{
	if (r == NULL || r->code == 0)
		return;
	s->have_response = 1;
	s->response_is_current = 1;
	s->last_code = r->code;
	snprintf(s->last_enhanced, sizeof(s->last_enhanced), "%s",
	    r->enhanced);
	snprintf(s->last_text, sizeof(s->last_text), "%s", r->text);
}

/* Maps a pool or upstream failure (or success) to a UPOPMAIL status. */
static int
session_status_for(const struct smtp_result *r)
{
	int	quota = r->code == 452 || r->code == 552;

	switch (r->outcome) {
	case SMTP_OK:
		return (int)r->refused;
	case SMTP_NETWORK:
	case SMTP_GREETING_REJECTED:
		return PROTO_STATUS_NETWORK;
	case SMTP_SECURITY:
	case SMTP_PROTOCOL:
		return PROTO_STATUS_SECURITY;
	case SMTP_NO_DRIVER:
		return PROTO_STATUS_NO_DRIVER;
	case SMTP_SENDER_REJECTED:
		if (quota)
			return PROTO_STATUS_QUOTA;
		return r->code >= 500 ? PROTO_STATUS_INVALID_ADDRESS :
		    PROTO_STATUS_REJECTED;
	case SMTP_ALL_RCPT_REFUSED:
		return quota ? PROTO_STATUS_QUOTA :
		    PROTO_STATUS_INVALID_ADDRESS;
	case SMTP_DATA_REJECTED:
		if (r->code == 552 && strcmp(r->enhanced, "5.3.4") == 0)
			return PROTO_STATUS_TOO_LARGE;
		return quota ? PROTO_STATUS_QUOTA : PROTO_STATUS_REJECTED;
	case SMTP_SPOOL_ERROR:
		return PROTO_STATUS_NO_MEMORY;
	}
	return PROTO_STATUS_NETWORK;
}

/* Writes a readable sentence about r for the client. */
static void
session_describe(const struct smtp_result *r, char *buf, size_t len)
{
	if (r->detail[0] != '\0')
		snprintf(buf, len, "%s", r->detail);
	else if (r->code != 0)
		snprintf(buf, len, "server replied %d %s", r->code, r->text);
	else
		snprintf(buf, len, "upstream failure in state %s",
		    smtp_state_name(r->state));
}

/* Ends the current request: reading resumes with the next frame. */
static void
session_request_done(struct session *s)
{
	s->op = SESSION_OP_NONE;
	if (s->stopping && !s->client_gone) {
		/* The reply is queued; the daemon is stopping, so the client
		 * is let go once it has been written. */
		s->close_after_write = 1;
		bufferevent_disable(s->bev, EV_READ);
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
			session_drop(s, "daemon stopping");
		return;
	}
	if (s->client_gone) {
		session_try_free(s);
		return;
	}
	/* Frames may already be buffered behind the one just answered. */
	session_process_input(s);
}

/* ---- Connection strings ------------------------------------------- */

/*
 * Parses a connection string into a pool key.  Returns 0, or -1 with the
 * message filled (invalid string, or an undefined TLS profile).
 */
static int
session_key_from(struct session *s, const char *text, struct pool_key *key,
    char *message, size_t len)
{
	struct connstr	cs;
	char		err[256];
	char		security[SECURITY_MAX_DESCRIPTION];

	if (connstr_parse(text, &cs, err, sizeof(err)) == -1) {
		snprintf(message, len, "%s", err);
		return -1;
	}
	if (cs.connector == CONNSTR_TLS &&
	    config_profile(s->server->cfg, cs.profile) == NULL) {
		snprintf(message, len, "TLS profile \"%s\" is not defined in "
		    "the configuration; add it under tls.profiles or leave "
		    "the profile out to use the default one", cs.profile);
		return -1;
	}
	security_describe(&s->security, security, sizeof(security));
	pool_key_init(key, &cs, security);
	return 0;
}


/* ---- LOGON, LOGOFF, GET_RESPONSE ---------------------------------- */

static void
session_logon_acquired_cb(struct smtp_conn *conn,
    const struct smtp_result *result, void *arg)
{
	const struct smtp_result *failure = result;
	struct session	*s = arg;
	char		 message[PROTO_MAX_MESSAGE + 1];
	int		 status;

	s->wait = NULL;
	if (conn != NULL) {
		/* The logon proved the server works; the connection goes
		 * back to the pool for this and other sessions to use. */
		s->security_used = smtp_security_used(conn);
		/* A connection opened for this logon brings the server's EHLO
		 * reply; a reused one brings no new exchange. */
		session_record_reply(s, result);
		pool_release(s->server->pool, conn, 1);
		if (!s->client_gone) {
			s->logged_on = 1;
			s->logon_key = s->pending_key;
			log_event(LOG_LEVEL_INFO, s->id, s->peer,
			    "session.logon", "key=%s status=0",
			    s->logon_key.text);
			session_reply(s, PROTO_STATUS_OK, "logged on to %s",
			    s->logon_key.text);
		}
		session_request_done(s);
		return;
	}

	session_record_reply(s, failure);
	status = session_status_for(failure);
	if (status == PROTO_STATUS_NO_DRIVER ||
	    status == PROTO_STATUS_SECURITY)
		s->security_spent = 1;
	/* Drivers that succeeded before the failure took part in this
	 * connection; the one that failed did not. */
	s->security_used = failure->security_used;
	session_describe(failure, message, sizeof(message));
	log_event(LOG_LEVEL_NOTICE, s->id, s->peer, "session.logon",
	    "key=%s status=%d detail=\"%s\"", s->pending_key.text, status,
	    LOG_QUOTED(message));
	session_reply(s, status, "%s", message);
	session_request_done(s);
}

static void
session_logon(struct session *s, const struct proto_frame *f)
{
	char	*conn;
	char	 message[PROTO_MAX_MESSAGE + 1];

	/* The user and password arguments exist for compatibility only;
	 * credentials belong to the security context. */
	if (f->fields[1].len != 0 || f->fields[2].len != 0) {
		session_reply(s, PROTO_STATUS_INVALID_ADDRESS, "LogonSMTP "
		    "takes an empty user name and password; set credentials "
		    "through the security context instead");
		return;
	}
	if (s->logged_on) {
		session_reply(s, PROTO_STATUS_ALREADY_LOGGED_ON, "already "
		    "logged on to %s; call LogoffSMTP first",
		    s->logon_key.text);
		return;
	}
	conn = proto_field_strdup(&f->fields[0]);
	if (conn == NULL) {
		session_reply(s, PROTO_STATUS_NETWORK, "invalid connection "
		    "string: it contains a NUL byte");
		return;
	}
	/* Driver parameters are checked here, not by SET_SECURITY, and a
	 * bad one fails the logon like a refused AUTH would. */
	if (security_check(&s->security, message, sizeof(message)) == -1) {
		char	err[PROTO_MAX_MESSAGE + 1];

		snprintf(err, sizeof(err), "%s", message);
		log_event(LOG_LEVEL_NOTICE, s->id, s->peer, "session.logon",
		    "status=%d detail=\"%s\"", PROTO_STATUS_SECURITY,
		    LOG_QUOTED(err));
		s->security_spent = 1;
		session_reply(s, PROTO_STATUS_SECURITY, "invalid security "
		    "driver parameters: %s", err);
		free(conn);
		return;
	}
	if (session_key_from(s, conn, &s->pending_key, message,
	    sizeof(message)) == -1) {
		log_event(LOG_LEVEL_NOTICE, s->id, s->peer, "session.logon",
		    "status=%d detail=\"%s\"", PROTO_STATUS_NETWORK,
		    LOG_QUOTED(message));
		session_reply(s, PROTO_STATUS_NETWORK, "%s", message);
		free(conn);
		return;
	}
	free(conn);

	s->wait = pool_acquire(s->server->pool, &s->pending_key,
	    &s->security, 0, s->id, session_logon_acquired_cb, s);
	if (s->wait == NULL) {
		session_reply(s, PROTO_STATUS_NO_MEMORY, "out of memory");
		return;
	}
	s->op = SESSION_OP_LOGON;
}

static void
session_logoff(struct session *s)
{
	if (!s->logged_on) {
		session_reply(s, PROTO_STATUS_SECURITY, "not logged on; call "
		    "LogonSMTP first");
		return;
	}
	/* The upstream connections stay in the pool for other sessions;
	 * the pool closes them when they are idle too long. */
	s->logged_on = 0;
	log_event(LOG_LEVEL_INFO, s->id, s->peer, "session.logoff", "key=%s",
	    s->logon_key.text);
	session_reply(s, PROTO_STATUS_OK, "logged off from %s",
	    s->logon_key.text);
}

static void
session_get_response(struct session *s)
{
	const char	*extra[1];

	if (!s->have_response) {
		session_write_frame(s, PROTO_OP_REPLY,
		    PROTO_STATUS_NO_RESPONSE, 0, "", "no SMTP reply has been "
		    "received in this session yet", NULL, 0);
		return;
	}
	extra[0] = s->last_text;
	session_write_frame(s, PROTO_OP_REPLY, PROTO_STATUS_OK, s->last_code,
	    s->last_enhanced, "last SMTP reply", extra, 1);
}

/* ---- SET_SECURITY, GET_SECURITY ----------------------------------- */

static void
session_set_security(struct session *s, const struct proto_frame *f)
{
	enum security_kind	 kind;
	char			*properties, *parameters;
	char			 err[256];
	int			 mandatory, rc;

	if (s->logged_on) {
		session_reply(s, SECURITY_LOCKED, "the security context is "
		    "locked while logged on; call LogoffSMTP first");
		return;
	}
	properties = proto_field_strdup(&f->fields[0]);
	parameters = proto_field_strdup(&f->fields[1]);
	if (properties == NULL || parameters == NULL) {
		free(properties);
		if (parameters != NULL) {
			OPENSSL_cleanse(parameters, strlen(parameters));
			free(parameters);
		}
		session_reply(s, SECURITY_NO_MEMORY, "out of memory");
		return;
	}

	rc = security_parse_properties(properties, &kind, &mandatory, err,
	    sizeof(err));
	if (rc == 1) {
		security_clear(&s->security);
		s->security_spent = 0;
		s->security_used = 0;
		log_event(LOG_LEVEL_INFO, s->id, s->peer, "session.security",
		    "action=remove");
		session_reply(s, SECURITY_OK, "security context removed");
	} else if (rc < 0) {
		session_reply(s, rc, "%s", err);
	} else {
		/* A context that failed at logon was used up. */
		if (s->security_spent) {
			security_clear(&s->security);
			s->security_spent = 0;
			s->security_used = 0;
		}
		rc = security_append(&s->security, kind, mandatory,
		    parameters, err, sizeof(err));
		if (rc == SECURITY_OK) {
			log_event(LOG_LEVEL_INFO, s->id, s->peer,
			    "session.security", "action=append driver=%s "
			    "use=%s drivers=%zu", security_kind_name(kind),
			    mandatory ? "MAND" : "OPT", s->security.count);
			session_reply(s, SECURITY_OK, "%s added as driver %zu",
			    security_kind_name(kind), s->security.count);
		} else
			session_reply(s, rc, "%s", err);
	}
	free(properties);
	OPENSSL_cleanse(parameters, strlen(parameters));
	free(parameters);
}

/* GetSecurity status codes, as Uniface documents them. */
enum {
	SESSION_GETSEC_NO_DRIVER	= -1,
	SESSION_GETSEC_BAD_KEYWORD	= -2,
};

static void
session_get_security(struct session *s, const struct proto_frame *f)
{
	const char	*extra[2];
	char		 properties[SECURITY_MAX_PROPERTIES + 1];
	char		 runtime[32];
	int32_t		 index;

	if (proto_field_i32(&f->fields[0], &index) == -1 ||
	    f->fields[1].len != 5 ||
	    strncasecmp((const char *)f->fields[1].data, "SMTP=", 5) != 0) {
		session_reply(s, SESSION_GETSEC_BAD_KEYWORD, "invalid "
		    "properties: GetSecurity takes \"SMTP=\"");
		return;
	}
	if (index < 1 || (size_t)index > s->security.count) {
		session_reply(s, SESSION_GETSEC_NO_DRIVER, "no security "
		    "driver %d: the context has %zu", (int)index,
		    s->security.count);
		return;
	}
	security_driver_properties(&s->security.drivers[index - 1],
	    properties, sizeof(properties));
	snprintf(runtime, sizeof(runtime), "INUSE=%s",
	    (s->security_used & (1u << (index - 1))) ? "TRUE" : "FALSE");
	extra[0] = properties;
	extra[1] = runtime;
	session_write_frame(s, PROTO_OP_REPLY, PROTO_STATUS_OK, 0, "",
	    "security driver", extra, 2);
}

/* ---- STATUS ------------------------------------------------------- */

static void
session_status_row_cb(const struct pool_row *row, void *arg)
{
	struct session		*s = arg;
	struct proto_buf	 buf;

	memset(&buf, 0, sizeof(buf));
	proto_buf_begin(&buf, PROTO_OP_STATUS_ROW);
	proto_buf_add_str(&buf, row->server);
	proto_buf_add_str(&buf, row->drivers);
	proto_buf_add_i32(&buf, (int32_t)row->idle);
	proto_buf_add_i32(&buf, (int32_t)row->busy);
	proto_buf_add_i32(&buf, (int32_t)row->opening);
	proto_buf_add_i32(&buf, (int32_t)row->waiting);
	proto_buf_add_i64(&buf, (int64_t)row->sent);
	proto_buf_add_i64(&buf, (int64_t)row->errors);
	proto_buf_add_i64(&buf, row->oldest_age);
	if (proto_buf_finish(&buf) == 0)
		session_send_bytes(s, buf.data, buf.len);
	proto_buf_free(&buf);
}

/* Replies to STATUS: one STATUS_ROW per pool key, then the daemon totals
 * as name=value extras of the REPLY. */
static void
session_status(struct session *s)
{
	struct server		*server = s->server;
	struct pool_totals	 t;
	char			 values[12][48];
	const char		*extra[12];
	size_t			 i;

	pool_foreach_row(server->pool, session_status_row_cb, s);
	pool_get_totals(server->pool, &t);
	snprintf(values[0], sizeof(values[0]), "sessions=%u",
	    server->nsessions);
	snprintf(values[1], sizeof(values[1]), "keys=%u", t.keys);
	snprintf(values[2], sizeof(values[2]), "idle=%u", t.idle);
	snprintf(values[3], sizeof(values[3]), "busy=%u", t.busy);
	snprintf(values[4], sizeof(values[4]), "opening=%u", t.opening);
	snprintf(values[5], sizeof(values[5]), "waiting=%u", t.waiting);
	snprintf(values[6], sizeof(values[6]), "opened=%llu",
	    (unsigned long long)t.opened);
	snprintf(values[7], sizeof(values[7]), "reused=%llu",
	    (unsigned long long)t.reused);
	snprintf(values[8], sizeof(values[8]), "sent=%llu",
	    (unsigned long long)t.sent);
	snprintf(values[9], sizeof(values[9]), "errors=%llu",
	    (unsigned long long)t.errors);
	snprintf(values[10], sizeof(values[10]), "uptime=%lld",
	    (long long)(time(NULL) - server->started));
	snprintf(values[11], sizeof(values[11]), "version=%s",
	    SMTPOOL_VERSION);
	for (i = 0; i < 12; i++)
		extra[i] = values[i];
	session_write_frame(s, PROTO_OP_REPLY, PROTO_STATUS_OK, 0, "",
	    "pool status", extra, 12);
}

/* ---- SENDMAIL ----------------------------------------------------- */

/* Keeps the first failure of a SENDMAIL request for the reply after END. */
static void
session_send_fail(struct session *s, int status, const char *message)
{
	if (s->send.status != 0)
		return;
	s->send.status = status;
	snprintf(s->send.message, sizeof(s->send.message), "%s", message);
}

static void
session_send_reset(struct session *s)
{
	if (s->send.mail != NULL)
		mail_free(s->send.mail);
	memset(&s->send, 0, sizeof(s->send));
}

static void
session_sendmail_begin(struct session *s, const struct proto_frame *f)
{
	const struct config	*cfg = s->server->cfg;
	struct mail_limits	 limits;
	char			*server = NULL, *headers = NULL;
	char			 message[PROTO_MAX_MESSAGE + 1];
	int			 status;

	session_send_reset(s);
	s->op = SESSION_OP_BODY;

	limits.spool_memory = cfg->spool_memory;
	limits.spool_dir = s->server->spool_dir;
	limits.hostname = s->server->helo_name;
	s->send.mail = mail_new(&limits);
	if (s->send.mail == NULL) {
		session_send_fail(s, PROTO_STATUS_NO_MEMORY, "out of memory");
		return;
	}

	if (proto_field_i64(&f->fields[2], &s->send.maxsize) == -1 ||
	    s->send.maxsize < 0) {
		session_send_fail(s, PROTO_STATUS_INVALID_ARGUMENT, "invalid "
		    "maxsize: give the limit in bytes, or 0 for none");
		return;
	}

	/* After a logon the server argument is ignored. */
	if (s->logged_on)
		s->send.key = s->logon_key;
	else {
		char	err[256];

		if (security_check(&s->security, err, sizeof(err)) == -1) {
			snprintf(message, sizeof(message), "invalid security "
			    "driver parameters: %s", err);
			session_send_fail(s, PROTO_STATUS_SECURITY, message);
			return;
		}
		server = proto_field_strdup(&f->fields[0]);
		if (server == NULL) {
			session_send_fail(s, PROTO_STATUS_NETWORK, "invalid "
			    "server: it contains a NUL byte");
			return;
		}
		if (session_key_from(s, server, &s->send.key, message,
		    sizeof(message)) == -1) {
			session_send_fail(s, PROTO_STATUS_NETWORK, message);
			free(server);
			return;
		}
		free(server);
	}

	headers = proto_field_strdup(&f->fields[1]);
	if (headers == NULL) {
		session_send_fail(s, PROTO_STATUS_INVALID_ARGUMENT, "invalid "
		    "header list: it contains a NUL byte");
		return;
	}
	status = mail_set_header_list(s->send.mail, headers, message,
	    sizeof(message));
	free(headers);
	if (status != 0)
		session_send_fail(s, status, message);
}

/* Handles PART.  Returns 0, or -1 after a protocol error. */
static int
session_sendmail_part(struct session *s, const struct proto_frame *f)
{
	char	*kind, *filename, *content_type;
	char	 message[PROTO_MAX_MESSAGE + 1];
	int	 status;

	kind = proto_field_strdup(&f->fields[0]);
	filename = proto_field_strdup(&f->fields[1]);
	content_type = proto_field_strdup(&f->fields[2]);
	if (kind == NULL || filename == NULL || content_type == NULL) {
		free(kind);
		free(filename);
		free(content_type);
		session_protocol_error(s, "PART fields must not contain NUL "
		    "bytes");
		return -1;
	}

	if (strcmp(kind, "text") == 0) {
		if (s->send.parts != 0) {
			free(kind);
			free(filename);
			free(content_type);
			session_protocol_error(s, "a \"text\" PART must be the "
			    "first and only text part of a SENDMAIL");
			return -1;
		}
		s->send.in_text = 1;
	} else if (strcmp(kind, "attachment") == 0) {
		s->send.in_text = 0;
		s->send.in_attachment = 1;
		if (s->send.status == 0) {
			status = mail_attachment_begin(s->send.mail, filename,
			    content_type, message, sizeof(message));
			if (status != 0)
				session_send_fail(s, status, message);
		}
	} else {
		snprintf(message, sizeof(message), "unknown PART kind \"%.16s\"; "
		    "use \"text\" or \"attachment\"", kind);
		free(kind);
		free(filename);
		free(content_type);
		session_protocol_error(s, message);
		return -1;
	}
	s->send.parts++;
	free(kind);
	free(filename);
	free(content_type);
	return 0;
}

/* Handles CHUNK.  Returns 0, or -1 after a protocol error. */
static int
session_sendmail_chunk(struct session *s, const struct proto_frame *f)
{
	char	message[PROTO_MAX_MESSAGE + 1];
	int	status;

	if (!s->send.in_text && !s->send.in_attachment) {
		session_protocol_error(s, "CHUNK before any PART");
		return -1;
	}
	if (s->send.status != 0)
		return 0;
	if (s->send.in_text)
		status = mail_text_write(s->send.mail, f->fields[0].data,
		    f->fields[0].len, message, sizeof(message));
	else
		status = mail_attachment_write(s->send.mail,
		    f->fields[0].data, f->fields[0].len, message,
		    sizeof(message));
	if (status != 0)
		session_send_fail(s, status, message);
	return 0;
}

static void
session_sendmail_end(struct session *s)
{
	char		message[PROTO_MAX_MESSAGE + 1];
	uint64_t	size;
	int		status;

	if (s->send.status == 0) {
		status = mail_finish(s->send.mail, message, sizeof(message));
		if (status != 0)
			session_send_fail(s, status, message);
	}
	if (s->send.status == 0) {
		status = mail_check_envelope(s->send.mail, message,
		    sizeof(message));
		if (status != 0)
			session_send_fail(s, status, message);
	}
	if (s->send.status == 0 && s->send.maxsize > 0) {
		size = mail_size_estimate(s->send.mail);
		if (size > (uint64_t)s->send.maxsize) {
			snprintf(message, sizeof(message), "the message is "
			    "%llu bytes, larger than maxsize %lld",
			    (unsigned long long)size,
			    (long long)s->send.maxsize);
			session_send_fail(s, PROTO_STATUS_TOO_LARGE, message);
		}
	}

	if (s->send.status != 0) {
		log_event(LOG_LEVEL_NOTICE, s->id, s->peer, "session.sendmail",
		    "status=%d detail=\"%s\"", s->send.status,
		    LOG_QUOTED(s->send.message));
		session_reply(s, s->send.status, "%s", s->send.message);
		session_send_reset(s);
		s->op = SESSION_OP_NONE;
		return;
	}

	s->op = SESSION_OP_SEND;
	session_send_start(s, 0);
}

/* Reports the outcome of a SENDMAIL and ends the request. */
static void
session_send_finish(struct session *s, int status, const char *message)
{
	log_event(LOG_LEVEL_INFO, s->id, s->peer, "session.sendmail",
	    "key=%s status=%d recipients=%zu detail=\"%s\"", s->send.key.text,
	    status, mail_rcpt_count(s->send.mail), LOG_QUOTED(message));
	session_reply(s, status, "%s", message);
	session_send_reset(s);
	session_request_done(s);
}

static void
session_send_done_cb(struct smtp_conn *conn, const struct smtp_result *r,
    void *arg)
{
	struct session	*s = arg;
	char		 message[PROTO_MAX_MESSAGE + 1];
	int		 status;

	s->send.conn = NULL;

	/* The server may not have the message yet: one retry on a fresh
	 * connection is safe.  After the final "." it never is. */
	if (r->conn_lost && !r->committed && !s->send.retried &&
	    !s->client_gone) {
		log_event(LOG_LEVEL_NOTICE, s->id, smtp_peer(conn),
		    "session.retry", "key=%s state=%s detail=\"%s\"",
		    s->send.key.text, smtp_state_name(r->state),
		    LOG_QUOTED(r->detail));
		pool_release(s->server->pool, conn, 0);
		s->send.retried = 1;
		mail_rcpt_reset(s->send.mail);
		session_send_start(s, 1);
		return;
	}

	pool_release(s->server->pool, conn, 1);
	pool_note_result(s->server->pool, &s->send.key, r->outcome == SMTP_OK);
	session_record_reply(s, r);
	status = session_status_for(r);
	if (r->outcome == SMTP_OK && r->refused == 0)
		snprintf(message, sizeof(message), "sent; recipients "
		    "accepted: %zu; server replied %d %s",
		    mail_rcpt_count(s->send.mail), r->code, r->text);
	else if (r->outcome == SMTP_OK)
		snprintf(message, sizeof(message), "sent, but %zu of %zu "
		    "recipients were refused", r->refused,
		    mail_rcpt_count(s->send.mail));
	else
		session_describe(r, message, sizeof(message));
	session_send_finish(s, status, message);
}

static void
session_send_acquired_cb(struct smtp_conn *conn,
    const struct smtp_result *failure, void *arg)
{
	/* With a connection, failure is the result of opening it, which
	 * the transaction's own result supersedes. */
	struct session	*s = arg;
	char		 message[PROTO_MAX_MESSAGE + 1];

	s->wait = NULL;
	if (conn == NULL) {
		session_record_reply(s, failure);
		session_describe(failure, message, sizeof(message));
		session_send_finish(s, session_status_for(failure), message);
		return;
	}
	if (s->client_gone) {
		pool_release(s->server->pool, conn, 1);
		session_send_reset(s);
		session_try_free(s);
		return;
	}
	s->send.conn = conn;
	if (smtp_send(conn, s->send.mail, session_send_done_cb, s) == -1) {
		s->send.conn = NULL;
		pool_release(s->server->pool, conn, 0);
		session_send_finish(s, PROTO_STATUS_NETWORK, "the pooled "
		    "connection was not ready; try again");
	}
}

/* Asks the pool for a connection for the current SENDMAIL. */
static void
session_send_start(struct session *s, int fresh)
{
	s->wait = pool_acquire(s->server->pool, &s->send.key, &s->security,
	    fresh, s->id, session_send_acquired_cb, s);
	if (s->wait == NULL)
		session_send_finish(s, PROTO_STATUS_NO_MEMORY,
		    "out of memory");
}

/* ---- Frame dispatch ----------------------------------------------- */

/* Handles one parsed frame.  Returns 0, or -1 when the client is being
 * disconnected. */
static int
session_dispatch(struct session *s, const struct proto_frame *f)
{
	s->frames++;
	if (s->op == SESSION_OP_NONE)
		s->response_is_current = 0;

	if (s->op == SESSION_OP_BODY) {
		switch (f->op) {
		case PROTO_OP_PART:
			return session_sendmail_part(s, f);
		case PROTO_OP_CHUNK:
			return session_sendmail_chunk(s, f);
		case PROTO_OP_END:
			session_sendmail_end(s);
			return 0;
		default:
			break;
		}
		session_protocol_error(s, "only PART, CHUNK or END may follow "
		    "SENDMAIL until END");
		return -1;
	}

	switch (f->op) {
	case PROTO_OP_LOGON:
		session_logon(s, f);
		return 0;
	case PROTO_OP_LOGOFF:
		session_logoff(s);
		return 0;
	case PROTO_OP_SENDMAIL:
		session_sendmail_begin(s, f);
		return 0;
	case PROTO_OP_GET_RESPONSE:
		session_get_response(s);
		return 0;
	case PROTO_OP_SET_SECURITY:
		session_set_security(s, f);
		return 0;
	case PROTO_OP_STATUS:
		session_status(s);
		return 0;
	case PROTO_OP_GET_SECURITY:
		session_get_security(s, f);
		return 0;
	case PROTO_OP_PART:
	case PROTO_OP_CHUNK:
	case PROTO_OP_END:
		session_protocol_error(s, "PART, CHUNK and END are only "
		    "allowed inside a SENDMAIL request");
		return -1;
	default:
		break;
	}

	{
		char	detail[96];

		snprintf(detail, sizeof(detail), "opcode 0x%02x (%s) is not a "
		    "request", f->op, proto_op_name(f->op));
		session_protocol_error(s, detail);
	}
	return -1;
}

/* Parses and handles the complete frames in the input buffer, stopping
 * while a request waits for the pool or an upstream transaction. */
static void
session_process_input(struct session *s)
{
	struct evbuffer		*input = bufferevent_get_input(s->bev);
	struct proto_frame	 frame;
	unsigned char		*data;
	char			 err[256];
	uint8_t			 version;
	size_t			 avail;
	long			 size;

	while (!s->client_gone && !s->close_after_write &&
	    (s->op == SESSION_OP_NONE || s->op == SESSION_OP_BODY)) {
		avail = evbuffer_get_length(input);
		if (avail < PROTO_HEADER_SIZE)
			return;
		data = evbuffer_pullup(input, PROTO_HEADER_SIZE);
		size = proto_frame_size(data, avail, &version, err,
		    sizeof(err));
		if (size < 0) {
			session_protocol_error(s, err);
			return;
		}
		if (size == 0 || (size_t)size > avail)
			return;
		data = evbuffer_pullup(input, size);
		if (data == NULL) {
			session_drop(s, "out of memory");
			return;
		}
		if (proto_frame_parse(data, (size_t)size, &frame, err,
		    sizeof(err)) == -1) {
			session_protocol_error(s, err);
			return;
		}
		if (session_dispatch(s, &frame) == -1)
			return;
		evbuffer_drain(input, (size_t)size);
	}
}

/* ---- Callbacks ---------------------------------------------------- */

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	session_process_input(arg);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	if (s->close_after_write)
		session_drop(s, s->stopping ? "daemon stopping" :
		    "protocol error");
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session	*s = arg;

	if (what & BEV_EVENT_EOF)
		session_drop(s, "client closed the connection");
	else if (what & BEV_EVENT_ERROR)
		session_drop(s, strerror(EVUTIL_SOCKET_ERROR()));
}

/* ---- Creation ----------------------------------------------------- */

struct session *
session_new(struct server *server, evutil_socket_t fd, const char *peer)
{
	struct session	*s;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		evutil_closesocket(fd);
		return NULL;
	}
	s->server = server;
	s->id = server_new_id();

	snprintf(s->peer, sizeof(s->peer), "%s", peer);

	s->bev = bufferevent_socket_new(server->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	s->free_event = event_new(server->base, -1, 0, session_free_cb, s);
	if (s->bev == NULL || s->free_event == NULL) {
		if (s->bev != NULL)
			bufferevent_free(s->bev);
		else
			evutil_closesocket(fd);
		if (s->free_event != NULL)
			event_free(s->free_event);
		free(s);
		return NULL;
	}
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	/* Never buffer more than one maximum frame from a client. */
	bufferevent_setwatermark(s->bev, EV_READ, 0,
	    PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);

	TAILQ_INSERT_TAIL(&server->sessions, s, link);
	server->nsessions++;
	server->sessions_total++;
	log_event(LOG_LEVEL_INFO, s->id, s->peer, "session.start",
	    "sessions=%u", server->nsessions);
	return s;
}

void
session_drain_all(struct server *server)
{
	struct session	*s, *next;

	for (s = TAILQ_FIRST(&server->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, link);
		s->stopping = 1;
		/* A client between requests goes now; one in the middle of a
		 * request (its body still arriving, or waiting for the pool or
		 * the server) is answered first. */
		if (s->op == SESSION_OP_NONE)
			session_drop(s, "daemon stopping");
	}
}

/* Fails the request in progress because the drain time is over. */
static void
session_cut_off(struct session *s)
{
	const char	*message = "transaction cut off: the daemon is "
			    "stopping";

	if (s->op == SESSION_OP_NONE || s->client_gone) {
		session_drop(s, "daemon stopping");
		return;
	}
	log_event(LOG_LEVEL_WARNING, s->id, s->peer, "session.cut-off",
	    "op=%d", (int)s->op);
	if (s->wait != NULL) {
		pool_cancel(s->wait);
		s->wait = NULL;
	}
	if (s->send.conn != NULL) {
		/* The server may or may not have the message; the client
		 * gets a failure status, never a success. */
		pool_release(s->server->pool, s->send.conn, 0);
		s->send.conn = NULL;
	}
	session_reply(s, PROTO_STATUS_NETWORK, "%s", message);
	session_send_reset(s);
	session_request_done(s);
}

void
session_cut_off_all(struct server *server)
{
	struct session	*s, *next;

	/* Withdraw every waiting request first: a connection released by
	 * one cut-off must not be handed, or opened, to another. */
	TAILQ_FOREACH(s, &server->sessions, link) {
		if (s->wait != NULL) {
			pool_cancel(s->wait);
			s->wait = NULL;
		}
	}
	for (s = TAILQ_FIRST(&server->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, link);
		s->stopping = 1;
		session_cut_off(s);
	}
}
