/*
 * smtp_security.c - the security drivers of an upstream SMTP connection.
 *
 * Security drivers (STARTTLS, then AUTH LOGIN, PLAIN, XOAUTH2 or
 * OAUTHBEARER) run in order between EHLO and READY, each in its own
 * states.  A MAND driver the server does not offer fails the open with
 * SMTP_NO_DRIVER, and an OPT one is skipped.  A driver that runs and fails
 * gives SMTP_SECURITY.  Credentials are sent only in base64 lines that
 * are wiped once written, and never logged.
 *
 * STARTTLS wraps the socket bufferevent in an OpenSSL filter.  A byte that
 * follows the server's 220 before the handshake ends the connection,
 * because it would later be read as if it came through TLS.  After the
 * handshake the extensions learned in plain text are dropped and EHLO is
 * sent again.  Failures end the open through smtp_open_reject(), with QUIT
 * where the server still expects commands, or through smtp_fail_conn();
 * running out of memory gives SMTP_NETWORK.
 */
#include <ctype.h>
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
void
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

	/* The filter writes through the socket bufferevent, which needs
	 * its own write event again. */
	conn->direct_write = 0;
	bufferevent_enable(sock, EV_WRITE);
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

void
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
void
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
int
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
		    log_quote(reason, quoted, sizeof(quoted)));
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
void
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
void
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
void
smtp_on_auth_cancel(struct smtp_conn *conn, const struct reply *r)
{
	smtp_auth_fail(conn, r);
}
