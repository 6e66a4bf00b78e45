/*
 * mail.h - one message being built: envelope, header values and the MIME
 * body, as SendMail (and later the builder calls) fill it.
 *
 * Building a message happens in three steps:
 *   1. mail_set_header_list() takes SendMail's header list
 *      ("TO=a@x,b@y;FROM=c@z;SUBJECT=Hi;PRIORITY=3").
 *   2. mail_text_write(), mail_attachment_begin() and
 *      mail_attachment_write() stream the text and the attachments into a
 *      spool as MIME parts; mail_finish() closes the body.
 *   3. After RCPT, mail_write_headers() produces the header block, leaving
 *      out refused To and Cc recipients and every Bcc recipient.
 * Text and attachments are held in spools (memory up to a limit, then an
 * unlinked temporary file).
 */
#ifndef SMTPOOL_MAIL_H
#define SMTPOOL_MAIL_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "spool.h"

#define MAIL_MAX_SUBJECT	998

/* Recipient lists, in the order RCPT commands are sent. */
enum mail_list {
	MAIL_LIST_TO,
	MAIL_LIST_CC,
	MAIL_LIST_BCC,
	MAIL_LIST_COUNT,
};

struct mail_rcpt_result {
	int	 code;		/* RCPT reply code, 0 = not sent */
	char	*text;		/* server text, NULL when accepted */
};

struct mail_limits {
	size_t		 spool_memory;	/* bytes kept in memory per spool */
	const char	*spool_dir;
	const char	*hostname;	/* domain for generated Message-IDs */
};

struct mail;

struct mail *mail_new(const struct mail_limits *);
void mail_free(struct mail *);

/*
 * Parses a SendMail header list: items separated by ';' (";;" is a literal
 * semicolon), each LABEL=VALUE with LABEL one of TO, FROM, CC, BCC,
 * SUBJECT, PRIORITY (1..5) and REPLY, in upper case.  Addresses within one
 * label are comma-separated.  Returns a PROTO_STATUS_* value: 0;
 * PROTO_STATUS_INVALID_ADDRESS for a bad To, Cc, Bcc, Reply or From
 * address; PROTO_STATUS_INVALID_ARGUMENT for an unknown or repeated
 * label, a bad PRIORITY, or CR/LF/NUL in a value.  err names the value.
 */
int mail_set_header_list(struct mail *, const char *list, char *err,
    size_t errlen);

/* Checks that the message has a From and at least one recipient.
 * Returns 0 or PROTO_STATUS_NO_RECIPIENT with err filled. */
int mail_check_envelope(const struct mail *, char *err, size_t errlen);

/* Body streaming.  The text (UTF-8, any line endings) comes first, then
 * attachments.  Each returns 0, or a PROTO_STATUS_* value with err filled
 * (PROTO_STATUS_NO_MEMORY when the spool fails,
 * PROTO_STATUS_INVALID_ARGUMENT for a bad file name or content type or a
 * call out of order). */
int mail_text_write(struct mail *, const void *data, size_t len,
    char *err, size_t errlen);
/* content_type may be NULL or "" to guess from the file name's extension
 * (application/octet-stream otherwise).  The file name must not contain
 * a path separator, CR, LF or NUL. */
int mail_attachment_begin(struct mail *, const char *filename,
    const char *content_type, char *err, size_t errlen);
int mail_attachment_write(struct mail *, const void *data, size_t len,
    char *err, size_t errlen);
int mail_finish(struct mail *, char *err, size_t errlen);

/* Envelope access for the SMTP transaction. */
const char *mail_from_mailbox(const struct mail *);
size_t mail_rcpt_count(const struct mail *);
/* Recipient i in RCPT order (To, then Cc, then Bcc). */
const char *mail_rcpt_mailbox(const struct mail *, size_t i);
enum mail_list mail_rcpt_list(const struct mail *, size_t i);
/* Records the server's answer to RCPT for recipient i. */
void mail_rcpt_set_result(struct mail *, size_t i, int code,
    const char *text);
const struct mail_rcpt_result *mail_rcpt_result(const struct mail *,
    size_t i);
/* Forgets the RCPT results, before a retry on another connection. */
void mail_rcpt_reset(struct mail *);

/* Estimated size on the wire with every recipient in the headers, for
 * SIZE= and the maxsize check; never smaller than the real size. */
uint64_t mail_size_estimate(const struct mail *);

/*
 * Writes the header block (ending in the empty line) into buf, malloc'd,
 * with the current time: Date, From, Reply-To, To and Cc (only recipients
 * whose RCPT result is 2xx or not yet sent), Subject (RFC 2047 when not
 * plain ASCII), X-Priority and Importance, Message-ID, MIME-Version,
 * Content-Type and Content-Transfer-Encoding.  Bcc never appears.
 * Returns 0 or -1 (ENOMEM).  Lines end in CRLF.
 */
int mail_write_headers(struct mail *, char **buf, size_t *len);

/* The body after the header block, CRLF line endings, not dot-stuffed. */
struct spool *mail_body(struct mail *);

#endif
