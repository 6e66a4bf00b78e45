/*
 * smtp_txn.c - one mail transaction on a READY upstream SMTP connection.
 *
 * smtp_send() starts it: RSET first when the previous transaction did not
 * end cleanly, then MAIL (with SIZE= when offered), RCPT for each
 * recipient and DATA, all in one write when PIPELINING is offered.  After
 * 354 the header block and then the spool go through the dot-stuffing
 * encoder.  smtp_body_fill() keeps about SMTP_BODY_LOW_WATER bytes queued,
 * and the write callback calls it again as the output buffer drains.
 *
 * A rejected sender, all recipients refused or a rejected DATA is the
 * transaction's outcome: the done callback reports it once every
 * pipelined reply has been read, and the connection goes back to READY
 * with RSET pending.  A 421, an unexpected reply (any reply during the
 * body included), a spool read error or ENOMEM ends the connection through
 * smtp_fail_conn().  A message over the server's SIZE limit or without
 * recipients fails from the defer event before anything is sent.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "dotstuff.h"
#include "log.h"
#include "smtp.h"
#include "smtp_private.h"
#include "spool.h"

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

static void
smtp_result_set_detail(struct smtp_result *res, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
smtp_result_set_detail(struct smtp_result *res, const char *fmt, va_list ap)
{
	vsnprintf(res->detail, sizeof(res->detail), fmt, ap);
}

/* --- transaction ------------------------------------------------------ */

/* Releases the per-transaction buffers. */
void
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
void
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
		    log_quote(res.text, quoted, sizeof(quoted)));
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

void
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

void
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

void
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

void
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
void
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

void
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
void
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

/* --- public interface ------------------------------------------------ */

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
			smtp_flush(conn);
			return 0;
		}
		conn->result.outcome = SMTP_SPOOL_ERROR;
		snprintf(conn->result.detail, sizeof(conn->result.detail),
		    "out of memory queuing RSET");
	} else if (smtp_send_envelope(conn) == 0) {
		smtp_flush(conn);
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
