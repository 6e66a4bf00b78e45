/*
 * mail.c - one message being built: the SendMail header list, the
 * envelope with each recipient's RCPT result, and the MIME body.
 *
 * The text is written raw into its own spool while its statistics are
 * gathered, because the transfer encoding (7bit or quoted-printable)
 * depends on every byte.  When the first attachment begins or
 * mail_finish() runs, the text is encoded into the body spool and its
 * spool is freed.  Attachments are base64-encoded into the body spool as
 * their chunks arrive.  Without attachments the body is the text alone
 * (text/plain, described in the top-level header); with attachments it
 * is multipart/mixed.
 *
 * Functions return 0 or a PROTO_STATUS_* value with err naming the value
 * at fault: PROTO_STATUS_INVALID_ARGUMENT for malformed input or a call
 * out of order, PROTO_STATUS_INVALID_ADDRESS for a bad address,
 * PROTO_STATUS_NO_MEMORY when memory or spool space runs out.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mail.h"
#include "mime.h"
#include "proto.h"

/* Progress of the body. */
enum mail_state {
	MAIL_STATE_EMPTY,	/* nothing written yet */
	MAIL_STATE_TEXT,	/* text being written */
	MAIL_STATE_ATTACHMENT,	/* an attachment being written */
	MAIL_STATE_FINISHED,	/* body complete */
};

/* Room for "<" 32 hex "." time "@" 253-byte domain ">" and a NUL. */
#define MAIL_MESSAGE_ID_MAX	320
#define MAIL_BOUNDARY_MAX	64
/* Room for a Date value, with a five-digit year to spare. */
#define MAIL_DATE_MAX		64
/* The longest generated Date value we allow for in the size estimate. */
#define MAIL_DATE_PLACEHOLDER	"Wed, 00 Sep 00000 00:00:00 +0000"
/* Input bytes encoded per step when streaming into the body spool. */
#define MAIL_STEP		(12 * 1024)

struct mail {
	size_t			 spool_memory;
	char			*spool_dir;
	char			*hostname;

	struct addr_list	 from;
	struct addr_list	 reply;
	struct addr_list	 lists[MAIL_LIST_COUNT];
	char			*subject;	/* NULL when not given */
	int			 priority;	/* 1..5, 0 when not given */

	struct mail_rcpt_result	*results;	/* one per recipient */
	size_t			 nrcpt;

	char			 message_id[MAIL_MESSAGE_ID_MAX];
	char			 boundary[MAIL_BOUNDARY_MAX];

	enum mail_state		 state;
	struct spool		*text;		/* raw text until encoded */
	struct mime_text_stats	 stats;
	int			 has_text;
	enum mime_encoding	 text_encoding;
	size_t			 attachments;
	struct mime_b64		 b64;
	struct spool		*body;
	int			 broken;	/* a body write failed */
};

/* Header list labels, in the order the error message lists them. */
enum mail_label {
	MAIL_LABEL_TO,
	MAIL_LABEL_FROM,
	MAIL_LABEL_CC,
	MAIL_LABEL_BCC,
	MAIL_LABEL_SUBJECT,
	MAIL_LABEL_PRIORITY,
	MAIL_LABEL_REPLY,
	MAIL_LABEL_COUNT,
};

static const char *const mail_label_names[MAIL_LABEL_COUNT] = {
	"TO", "FROM", "CC", "BCC", "SUBJECT", "PRIORITY", "REPLY",
};

/* ---- helpers ------------------------------------------------------------ */

/* Copies n bytes of s for an error message: control bytes become '?' and
 * long values are cut to 60 bytes with "...". */
static const char *
mail_quote(const char *s, size_t n, char *buf, size_t buflen)
{
	size_t i, out = 0, max = 60;

	if (buflen < max + 4)
		max = buflen > 4 ? buflen - 4 : 0;
	for (i = 0; i < n && out < max; i++)
		buf[out++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ?
		    '?' : s[i];
	if (i < n && out + 3 < buflen) {
		memcpy(buf + out, "...", 3);
		out += 3;
	}
	if (buflen > 0)
		buf[out < buflen ? out : buflen - 1] = '\0';
	return buf;
}

/* Returns 1 for well-formed UTF-8: no overlong forms, no surrogates,
 * nothing above U+10FFFF. */
static int
mail_utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s != '\0') {
		uint32_t cp;
		size_t need, k;

		if (*s < 0x80) {
			s++;
			continue;
		}
		if (*s >= 0xc2 && *s <= 0xdf) {
			need = 1;
			cp = *s & 0x1f;
		} else if (*s >= 0xe0 && *s <= 0xef) {
			need = 2;
			cp = *s & 0x0f;
		} else if (*s >= 0xf0 && *s <= 0xf4) {
			need = 3;
			cp = *s & 0x07;
		} else
			return 0;
		for (k = 1; k <= need; k++) {
			if ((s[k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		s += need + 1;
	}
	return 1;
}

static void
mail_trim(const char **s, size_t *n)
{
	while (*n > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

static int
mail_spool_write(struct mail *m, struct spool *sp, const void *data,
    size_t len, char *err, size_t errlen)
{
	if (spool_write(sp, data, len) == -1) {
		m->broken = 1;
		proto_format_error(err, errlen, "writing the message to the spool in "
		    "%s failed: %s", m->spool_dir ? m->spool_dir : "/tmp",
		    strerror(errno));
		return PROTO_STATUS_NO_MEMORY;
	}
	return 0;
}

static int
mail_spool_puts(struct mail *m, struct spool *sp, const char *s, char *err,
    size_t errlen)
{
	return mail_spool_write(m, sp, s, strlen(s), err, errlen);
}

static struct spool *
mail_spool_new(struct mail *m, char *err, size_t errlen)
{
	struct spool *sp;

	if ((sp = spool_new(m->spool_memory, m->spool_dir)) == NULL) {
		m->broken = 1;
		proto_format_error(err, errlen, "out of memory creating a message "
		    "spool");
	}
	return sp;
}

/*
 * Returns 0 when the body can take more input.  After a failed write the
 * body is incomplete, so every later body call fails too.
 */
static int
mail_check_writable(const struct mail *m, char *err, size_t errlen)
{
	if (m->broken) {
		proto_format_error(err, errlen, "an earlier write of this message "
		    "failed; send the message again");
		return PROTO_STATUS_NO_MEMORY;
	}
	if (m->state == MAIL_STATE_FINISHED) {
		proto_format_error(err, errlen, "the message is already finished");
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	return 0;
}

/* ---- lifetime ----------------------------------------------------------- */

static char *
mail_strdup_or_null(const char *s, int *failed)
{
	char *copy;

	if (s == NULL)
		return NULL;
	if ((copy = strdup(s)) == NULL)
		*failed = 1;
	return copy;
}

struct mail *
mail_new(const struct mail_limits *limits)
{
	struct mail *m;
	int failed = 0;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->spool_memory = limits->spool_memory;
	m->spool_dir = mail_strdup_or_null(limits->spool_dir, &failed);
	m->hostname = mail_strdup_or_null(limits->hostname, &failed);
	m->state = MAIL_STATE_EMPTY;
	m->text_encoding = MIME_ENC_7BIT;
	mime_text_stats_init(&m->stats);
	if (failed) {
		mail_free(m);
		return NULL;
	}
	return m;
}

/* Forgets everything the header list set. */
static void
mail_clear_headers(struct mail *m)
{
	size_t i;

	addr_list_clear(&m->from);
	addr_list_clear(&m->reply);
	for (i = 0; i < MAIL_LIST_COUNT; i++)
		addr_list_clear(&m->lists[i]);
	free(m->subject);
	m->subject = NULL;
	m->priority = 0;
	for (i = 0; i < m->nrcpt; i++)
		free(m->results[i].text);
	free(m->results);
	m->results = NULL;
	m->nrcpt = 0;
}

void
mail_free(struct mail *m)
{
	if (m == NULL)
		return;
	mail_clear_headers(m);
	spool_free(m->text);
	spool_free(m->body);
	free(m->spool_dir);
	free(m->hostname);
	free(m);
}

/* ---- header list ---------------------------------------------------------- */

/* Parses the addresses of one label into list; an empty value means no
 * addresses. */
static int
mail_parse_addresses(const char *label, const char *value,
    struct addr_list *list, char *err, size_t errlen)
{
	char why[512];
	const char *s = value;
	size_t n = strlen(value);

	mail_trim(&s, &n);
	if (n == 0)
		return 0;
	if (addr_list_parse(value, list, why, sizeof(why)) == -1) {
		proto_format_error(err, errlen, "invalid %s: %s", label, why);
		return PROTO_STATUS_INVALID_ADDRESS;
	}
	return 0;
}

static int
mail_parse_from(struct mail *m, const char *value, char *err, size_t errlen)
{
	struct addr_list tmp = { NULL, 0 };
	char q[80];
	int rc;

	if ((rc = mail_parse_addresses("FROM", value, &tmp, err, errlen)) != 0)
		return rc;
	if (tmp.count > 1) {
		proto_format_error(err, errlen, "invalid FROM \"%s\": give exactly one "
		    "sender address", mail_quote(value, strlen(value), q,
		    sizeof(q)));
		addr_list_clear(&tmp);
		return PROTO_STATUS_INVALID_ADDRESS;
	}
	m->from = tmp;
	return 0;
}

static int
mail_parse_subject(struct mail *m, const char *value, char *err,
    size_t errlen)
{
	size_t len = strlen(value);

	if (len > MAIL_MAX_SUBJECT) {
		proto_format_error(err, errlen, "invalid SUBJECT: it is %zu bytes; the "
		    "maximum is %d", len, MAIL_MAX_SUBJECT);
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	if (!mail_utf8_valid(value)) {
		proto_format_error(err, errlen, "invalid SUBJECT: it is not valid "
		    "UTF-8; send the subject UTF-8 encoded");
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	if ((m->subject = strdup(value)) == NULL) {
		proto_format_error(err, errlen, "out of memory storing the subject");
		return PROTO_STATUS_NO_MEMORY;
	}
	return 0;
}

/* An empty PRIORITY means none, like an empty address label. */
static int
mail_parse_priority(struct mail *m, const char *value, char *err,
    size_t errlen)
{
	const char *s = value;
	size_t n = strlen(value);
	char q[80];

	mail_trim(&s, &n);
	if (n == 0)
		return 0;
	if (n != 1 || s[0] < '1' || s[0] > '5') {
		proto_format_error(err, errlen, "invalid PRIORITY \"%s\": use 1 "
		    "(highest) to 5 (lowest)", mail_quote(value, strlen(value),
		    q, sizeof(q)));
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	m->priority = s[0] - '0';
	return 0;
}

/* Looks a label up.  Returns its index, or -1 with err filled. */
static int
mail_find_label(const char *label, size_t n, char *err, size_t errlen)
{
	char q[80];
	size_t i;

	for (i = 0; i < MAIL_LABEL_COUNT; i++)
		if (strlen(mail_label_names[i]) == n &&
		    memcmp(mail_label_names[i], label, n) == 0)
			return (int)i;
	mail_quote(label, n, q, sizeof(q));
	for (i = 0; i < MAIL_LABEL_COUNT; i++)
		if (strlen(mail_label_names[i]) == n &&
		    strncasecmp(mail_label_names[i], label, n) == 0) {
			proto_format_error(err, errlen, "unknown header label \"%s\": "
			    "labels are upper case, use %s", q,
			    mail_label_names[i]);
			return -1;
		}
	proto_format_error(err, errlen, "unknown header label \"%s\": use TO, FROM, "
	    "CC, BCC, SUBJECT, PRIORITY or REPLY", q);
	return -1;
}

/* Parses one LABEL=VALUE item (";;" already unescaped). */
static int
mail_parse_item(struct mail *m, const char *item, unsigned *seen, char *err,
    size_t errlen)
{
	const char *eq, *label = item, *value;
	size_t n;
	int idx;
	char q[80];

	if ((eq = strchr(item, '=')) == NULL) {
		proto_format_error(err, errlen, "invalid header list item \"%s\": use "
		    "LABEL=VALUE, e.g. TO=bob@example.com", mail_quote(item,
		    strlen(item), q, sizeof(q)));
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	n = (size_t)(eq - item);
	mail_trim(&label, &n);
	if ((idx = mail_find_label(label, n, err, errlen)) == -1)
		return PROTO_STATUS_INVALID_ARGUMENT;
	if (*seen & (1u << idx)) {
		proto_format_error(err, errlen, "header label \"%s\" given twice: give "
		    "each label once, with several addresses separated by "
		    "commas", mail_label_names[idx]);
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	*seen |= 1u << idx;

	value = eq + 1;
	if (strpbrk(value, "\r\n") != NULL) {
		proto_format_error(err, errlen, "invalid %s: the value contains a CR or "
		    "LF character; header values are single lines",
		    mail_label_names[idx]);
		return PROTO_STATUS_INVALID_ARGUMENT;
	}

	switch ((enum mail_label)idx) {
	case MAIL_LABEL_TO:
		return mail_parse_addresses("TO", value,
		    &m->lists[MAIL_LIST_TO], err, errlen);
	case MAIL_LABEL_CC:
		return mail_parse_addresses("CC", value,
		    &m->lists[MAIL_LIST_CC], err, errlen);
	case MAIL_LABEL_BCC:
		return mail_parse_addresses("BCC", value,
		    &m->lists[MAIL_LIST_BCC], err, errlen);
	case MAIL_LABEL_REPLY:
		return mail_parse_addresses("REPLY", value, &m->reply, err,
		    errlen);
	case MAIL_LABEL_FROM:
		return mail_parse_from(m, value, err, errlen);
	case MAIL_LABEL_SUBJECT:
		return mail_parse_subject(m, value, err, errlen);
	case MAIL_LABEL_PRIORITY:
		return mail_parse_priority(m, value, err, errlen);
	case MAIL_LABEL_COUNT:
		break;
	}
	proto_format_error(err, errlen, "internal error: header label %d", idx);
	return PROTO_STATUS_INVALID_ARGUMENT;
}

int
mail_set_header_list(struct mail *m, const char *list, char *err,
    size_t errlen)
{
	const char *p = list;
	size_t len, n, i;
	unsigned seen = 0;
	char *item;
	int rc = 0;

	mail_clear_headers(m);
	if (list == NULL)
		list = p = "";
	if ((len = strlen(list)) > PROTO_MAX_HEADERS) {
		proto_format_error(err, errlen, "the header list is %zu bytes; the "
		    "maximum is %d", len, PROTO_MAX_HEADERS);
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	if ((item = malloc(len + 1)) == NULL) {
		proto_format_error(err, errlen, "out of memory parsing the header list");
		return PROTO_STATUS_NO_MEMORY;
	}

	while (*p != '\0' && rc == 0) {
		/* Copy one item, turning ";;" into ';'. */
		n = 0;
		while (*p != '\0') {
			if (*p == ';' && p[1] == ';') {
				item[n++] = ';';
				p += 2;
			} else if (*p == ';') {
				p++;
				break;
			} else
				item[n++] = *p++;
		}
		item[n] = '\0';
		/* Empty items (a trailing ';') are skipped. */
		if (strspn(item, " \t") == n)
			continue;
		rc = mail_parse_item(m, item, &seen, err, errlen);
	}
	free(item);
	if (rc != 0) {
		mail_clear_headers(m);
		return rc;
	}

	for (i = 0; i < MAIL_LIST_COUNT; i++)
		m->nrcpt += m->lists[i].count;
	if (m->nrcpt > 0 &&
	    (m->results = calloc(m->nrcpt, sizeof(*m->results))) == NULL) {
		m->nrcpt = 0;
		mail_clear_headers(m);
		proto_format_error(err, errlen, "out of memory parsing the header list");
		return PROTO_STATUS_NO_MEMORY;
	}
	return 0;
}

int
mail_check_envelope(const struct mail *m, char *err, size_t errlen)
{
	if (m->from.count == 0) {
		proto_format_error(err, errlen, "no sender: add FROM=address to the "
		    "header list");
		return PROTO_STATUS_NO_RECIPIENT;
	}
	if (m->nrcpt == 0) {
		proto_format_error(err, errlen, "no recipient: add at least one TO, CC "
		    "or BCC address to the header list");
		return PROTO_STATUS_NO_RECIPIENT;
	}
	return 0;
}

/* ---- body ----------------------------------------------------------------- */

/* Line-break normalization for 7bit text: a bare CR, a bare LF and CR LF
 * each become CR LF. */
struct mail_crlf {
	int	pending_cr;
	int	line_start;
};

static size_t
mail_crlf_encode(struct mail_crlf *c, const unsigned char *in, size_t len,
    char *out)
{
	size_t i, n = 0, run;

	for (i = 0; i < len; i++) {
		/* Bytes other than CR and LF are copied as a run. */
		if (!c->pending_cr) {
			for (run = i; run < len && in[run] != '\r' &&
			    in[run] != '\n'; run++)
				;
			if (run > i) {
				memcpy(out + n, in + i, run - i);
				n += run - i;
				c->line_start = 0;
				i = run;
				if (i == len)
					break;
			}
		}
		if (c->pending_cr) {
			c->pending_cr = 0;
			out[n++] = '\r';
			out[n++] = '\n';
			c->line_start = 1;
			if (in[i] == '\n')
				continue;
		}
		if (in[i] == '\r') {
			c->pending_cr = 1;
			continue;
		}
		if (in[i] == '\n') {
			out[n++] = '\r';
			out[n++] = '\n';
			c->line_start = 1;
			continue;
		}
		out[n++] = (char)in[i];
		c->line_start = 0;
	}
	return n;
}

/* Ends the text with a line break, like the QP encoder does. */
static size_t
mail_crlf_finish(struct mail_crlf *c, char *out)
{
	if (c->pending_cr || !c->line_start) {
		c->pending_cr = 0;
		c->line_start = 1;
		out[0] = '\r';
		out[1] = '\n';
		return 2;
	}
	return 0;
}

/* Encodes the spooled text into the body spool and frees the text spool. */
static int
mail_encode_text(struct mail *m, char *err, size_t errlen)
{
	static const size_t outmax = MIME_QP_MAX_OUT(MAIL_STEP);
	struct mime_qp qp;
	struct mail_crlf crlf = { 0, 1 };
	unsigned char *in;
	char *out;
	ssize_t got;
	size_t n;
	int qp_mode = m->text_encoding == MIME_ENC_QUOTED_PRINTABLE;
	int rc = 0;

	if (m->text == NULL)
		return 0;
	in = malloc(MAIL_STEP);
	out = malloc(outmax);
	if (in == NULL || out == NULL) {
		free(in);
		free(out);
		proto_format_error(err, errlen, "out of memory encoding the text");
		return PROTO_STATUS_NO_MEMORY;
	}
	mime_qp_init(&qp);
	spool_rewind(m->text);
	while ((got = spool_read(m->text, in, MAIL_STEP)) > 0) {
		if (qp_mode)
			n = mime_qp_encode(&qp, in, (size_t)got, out);
		else
			n = mail_crlf_encode(&crlf, in, (size_t)got, out);
		if ((rc = mail_spool_write(m, m->body, out, n, err,
		    errlen)) != 0)
			goto done;
	}
	if (got < 0) {
		proto_format_error(err, errlen, "reading the text back from the spool "
		    "failed: %s", strerror(errno));
		rc = PROTO_STATUS_NO_MEMORY;
		goto done;
	}
	n = qp_mode ? mime_qp_finish(&qp, out) : mail_crlf_finish(&crlf, out);
	rc = mail_spool_write(m, m->body, out, n, err, errlen);
	if (rc == 0) {
		spool_free(m->text);
		m->text = NULL;
	}
done:
	free(in);
	free(out);
	return rc;
}

int
mail_text_write(struct mail *m, const void *data, size_t len, char *err,
    size_t errlen)
{
	int rc;

	if ((rc = mail_check_writable(m, err, errlen)) != 0)
		return rc;
	if (m->state == MAIL_STATE_ATTACHMENT) {
		proto_format_error(err, errlen, "the text must come before the "
		    "attachments");
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	m->state = MAIL_STATE_TEXT;
	if (len == 0)
		return 0;
	if (m->text == NULL) {
		if ((m->text = mail_spool_new(m, err, errlen)) == NULL)
			return PROTO_STATUS_NO_MEMORY;
		mime_text_stats_init(&m->stats);
		m->has_text = 1;
	}
	mime_text_stats_add(&m->stats, data, len);
	return mail_spool_write(m, m->text, data, len, err, errlen);
}

/* Checks an attachment file name: a base name without separators or
 * control characters, valid UTF-8, at most PROTO_MAX_FILENAME bytes. */
static int
mail_check_filename(const char *name, char *err, size_t errlen)
{
	const unsigned char *p;
	size_t len;
	char q[80];

	if (name == NULL || *name == '\0') {
		proto_format_error(err, errlen, "the attachment file name is missing");
		return -1;
	}
	len = strlen(name);
	mail_quote(name, len, q, sizeof(q));
	if (len > PROTO_MAX_FILENAME) {
		proto_format_error(err, errlen, "invalid attachment file name \"%s\": "
		    "it is %zu bytes; the maximum is %d", q, len,
		    PROTO_MAX_FILENAME);
		return -1;
	}
	if (strpbrk(name, "/\\") != NULL || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0) {
		proto_format_error(err, errlen, "invalid attachment file name \"%s\": "
		    "give a base name without '/' or '\\'", q);
		return -1;
	}
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f) {
			proto_format_error(err, errlen, "invalid attachment file name "
			    "\"%s\": it contains a control character such as "
			    "CR or LF", q);
			return -1;
		}
	if (!mail_utf8_valid(name)) {
		proto_format_error(err, errlen, "invalid attachment file name \"%s\": "
		    "it is not valid UTF-8", q);
		return -1;
	}
	return 0;
}

/* Returns 1 for an RFC 2045 token character. */
static int
mail_is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* Checks a "type/subtype" content type and copies it in lower case. */
static int
mail_check_content_type(const char *type, char *out, size_t outlen,
    char *err, size_t errlen)
{
	size_t i, len = strlen(type), slash = 0, slashes = 0;
	char q[80];

	for (i = 0; i < len; i++) {
		if (type[i] == '/') {
			slash = i;
			slashes++;
		} else if (!mail_is_token_char((unsigned char)type[i]))
			break;
	}
	if (i < len || slashes != 1 || slash == 0 || slash + 1 == len ||
	    len >= outlen || len > PROTO_MAX_CONTENT_TYPE) {
		proto_format_error(err, errlen, "invalid content type \"%s\": use "
		    "type/subtype without parameters, e.g. application/pdf, "
		    "or leave it empty", mail_quote(type, len, q, sizeof(q)));
		return -1;
	}
	for (i = 0; i <= len; i++)
		out[i] = (char)((type[i] >= 'A' && type[i] <= 'Z') ?
		    type[i] - 'A' + 'a' : type[i]);
	return 0;
}

/* Writes the delimiter line that opens a part.  The CRLF before a later
 * delimiter belongs to the delimiter, not to the previous part's body. */
static int
mail_open_part(struct mail *m, int first, char *err, size_t errlen)
{
	char line[MAIL_BOUNDARY_MAX + 8];

	snprintf(line, sizeof(line), "%s--%s\r\n", first ? "" : "\r\n",
	    m->boundary);
	return mail_spool_puts(m, m->body, line, err, errlen);
}

/* Writes the RFC 2231 percent-encoded form of s and a NUL to out
 * (3 * strlen(s) + 1 bytes). */
static void
mail_percent_encode(const char *s, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') ||
		    strchr("!#$&+-.^_`|~", *p) != NULL) {
			*out++ = (char)*p;
			continue;
		}
		*out++ = '%';
		*out++ = hex[*p >> 4];
		*out++ = hex[*p & 0x0f];
	}
	*out = '\0';
}

/*
 * Writes an attachment's part header.  An ASCII file name goes in quotes
 * (with '"' escaped).  A non-ASCII one goes in filename* as RFC 2231
 * percent-encoded UTF-8, plus RFC 2047 words in name= for readers that
 * know only that form.
 */
static int
mail_write_part_header(struct mail *m, const char *filename,
    const char *type, char *err, size_t errlen)
{
	char *words = NULL, *value, *buf = NULL;
	size_t cap, wlen;
	int rc;

	if (!mime_needs_encoding(filename)) {
		char quoted[2 * PROTO_MAX_FILENAME + 1], *q = quoted;
		const char *p;

		for (p = filename; *p != '\0' && q < quoted +
		    sizeof(quoted) - 2; p++) {
			if (*p == '"')
				*q++ = '\\';
			*q++ = *p;
		}
		*q = '\0';
		cap = 2 * strlen(quoted) + strlen(type) + 128;
		if ((buf = malloc(cap)) == NULL)
			goto nomem;
		snprintf(buf, cap, "Content-Type: %s;\r\n name=\"%s\"\r\n"
		    "Content-Disposition: attachment;\r\n filename=\"%s\"\r\n",
		    type, quoted, quoted);
	} else {
		/* "name: =?UTF-8?B?...?=" with its folds, minus the final
		 * CRLF, gives the words for name="...". */
		if ((words = mime_header_text("name", filename)) == NULL)
			goto nomem;
		wlen = strlen(words);
		if (wlen >= 2 && strcmp(words + wlen - 2, "\r\n") == 0)
			words[wlen - 2] = '\0';
		value = words + strlen("name: ");
		cap = strlen(value) + 3 * strlen(filename) + strlen(type) + 128;
		if ((buf = malloc(cap)) == NULL)
			goto nomem;
		snprintf(buf, cap, "Content-Type: %s;\r\n name=\"%s\"\r\n"
		    "Content-Disposition: attachment;\r\n filename*=UTF-8''",
		    type, value);
		mail_percent_encode(filename, buf + strlen(buf));
		strcat(buf, "\r\n");
	}
	rc = mail_spool_puts(m, m->body, buf, err, errlen);
	if (rc == 0)
		rc = mail_spool_puts(m, m->body,
		    "Content-Transfer-Encoding: base64\r\n\r\n", err, errlen);
	free(words);
	free(buf);
	return rc;

nomem:
	free(words);
	free(buf);
	proto_format_error(err, errlen, "out of memory writing an attachment header");
	return PROTO_STATUS_NO_MEMORY;
}

/* Ends the current attachment's base64. */
static int
mail_close_attachment(struct mail *m, char *err, size_t errlen)
{
	char out[16];
	size_t n;

	n = mime_b64_finish(&m->b64, out);
	return mail_spool_write(m, m->body, out, n, err, errlen);
}

/* Starts the multipart body: the boundary, then the text part if there
 * is text. */
static int
mail_start_multipart(struct mail *m, char *err, size_t errlen)
{
	char line[128];
	int rc;

	if ((m->body = mail_spool_new(m, err, errlen)) == NULL)
		return PROTO_STATUS_NO_MEMORY;
	mime_make_boundary(m->boundary, sizeof(m->boundary));
	if (!m->has_text)
		return 0;
	m->text_encoding = mime_text_encoding(&m->stats);
	if ((rc = mail_open_part(m, 1, err, errlen)) != 0)
		return rc;
	snprintf(line, sizeof(line), "Content-Type: text/plain; "
	    "charset=UTF-8\r\nContent-Transfer-Encoding: %s\r\n\r\n",
	    mime_encoding_name(m->text_encoding));
	if ((rc = mail_spool_puts(m, m->body, line, err, errlen)) != 0)
		return rc;
	return mail_encode_text(m, err, errlen);
}

int
mail_attachment_begin(struct mail *m, const char *filename,
    const char *content_type, char *err, size_t errlen)
{
	char type[PROTO_MAX_CONTENT_TYPE + 1];
	int rc, first_part;

	if ((rc = mail_check_writable(m, err, errlen)) != 0)
		return rc;
	if (mail_check_filename(filename, err, errlen) == -1)
		return PROTO_STATUS_INVALID_ARGUMENT;
	if (content_type == NULL || *content_type == '\0')
		snprintf(type, sizeof(type), "%s",
		    mime_type_from_filename(filename));
	else if (mail_check_content_type(content_type, type, sizeof(type),
	    err, errlen) == -1)
		return PROTO_STATUS_INVALID_ARGUMENT;

	if (m->state == MAIL_STATE_ATTACHMENT)
		rc = mail_close_attachment(m, err, errlen);
	else
		rc = mail_start_multipart(m, err, errlen);
	if (rc != 0)
		return rc;

	first_part = !m->has_text && m->attachments == 0;
	if ((rc = mail_open_part(m, first_part, err, errlen)) != 0 ||
	    (rc = mail_write_part_header(m, filename, type, err,
	    errlen)) != 0)
		return rc;
	mime_b64_init(&m->b64);
	m->attachments++;
	m->state = MAIL_STATE_ATTACHMENT;
	return 0;
}

int
mail_attachment_write(struct mail *m, const void *data, size_t len,
    char *err, size_t errlen)
{
	char out[MIME_B64_MAX_OUT(MAIL_STEP)];
	const unsigned char *p = data;
	size_t step, n;
	int rc;

	if ((rc = mail_check_writable(m, err, errlen)) != 0)
		return rc;
	if (m->state != MAIL_STATE_ATTACHMENT) {
		proto_format_error(err, errlen, "attachment data without an attachment: "
		    "begin the attachment first");
		return PROTO_STATUS_INVALID_ARGUMENT;
	}
	while (len > 0) {
		step = len < MAIL_STEP ? len : MAIL_STEP;
		n = mime_b64_encode(&m->b64, p, step, out);
		if ((rc = mail_spool_write(m, m->body, out, n, err,
		    errlen)) != 0)
			return rc;
		p += step;
		len -= step;
	}
	return 0;
}

int
mail_finish(struct mail *m, char *err, size_t errlen)
{
	char line[MAIL_BOUNDARY_MAX + 16];
	int rc;

	if ((rc = mail_check_writable(m, err, errlen)) != 0)
		return rc;
	switch (m->state) {
	case MAIL_STATE_EMPTY:
	case MAIL_STATE_TEXT:
		/* A single text/plain body, possibly empty. */
		if ((m->body = mail_spool_new(m, err, errlen)) == NULL)
			return PROTO_STATUS_NO_MEMORY;
		m->text_encoding = m->has_text ?
		    mime_text_encoding(&m->stats) : MIME_ENC_7BIT;
		if ((rc = mail_encode_text(m, err, errlen)) != 0)
			return rc;
		break;
	case MAIL_STATE_ATTACHMENT:
		if ((rc = mail_close_attachment(m, err, errlen)) != 0)
			return rc;
		snprintf(line, sizeof(line), "\r\n--%s--\r\n", m->boundary);
		if ((rc = mail_spool_puts(m, m->body, line, err, errlen)) != 0)
			return rc;
		break;
	case MAIL_STATE_FINISHED:
		break;
	}
	m->state = MAIL_STATE_FINISHED;
	return 0;
}

/* Returns NULL until mail_finish() has run. */
struct spool *
mail_body(struct mail *m)
{
	if (m->body != NULL)
		spool_rewind(m->body);
	return m->body;
}

/* ---- envelope ------------------------------------------------------------- */

const char *
mail_from_mailbox(const struct mail *m)
{
	return m->from.count > 0 ? m->from.items[0].mailbox : NULL;
}

size_t
mail_rcpt_count(const struct mail *m)
{
	return m->nrcpt;
}

/* Finds recipient i (RCPT order) as an entry of one list. */
static const struct addr *
mail_rcpt_at(const struct mail *m, size_t i, enum mail_list *list)
{
	size_t l;

	for (l = 0; l < MAIL_LIST_COUNT; l++) {
		if (i < m->lists[l].count) {
			if (list != NULL)
				*list = (enum mail_list)l;
			return &m->lists[l].items[i];
		}
		i -= m->lists[l].count;
	}
	return NULL;
}

const char *
mail_rcpt_mailbox(const struct mail *m, size_t i)
{
	const struct addr *a = mail_rcpt_at(m, i, NULL);

	return a != NULL ? a->mailbox : NULL;
}

/* Out of range gives MAIL_LIST_COUNT. */
enum mail_list
mail_rcpt_list(const struct mail *m, size_t i)
{
	enum mail_list list = MAIL_LIST_COUNT;

	mail_rcpt_at(m, i, &list);
	return list;
}

void
mail_rcpt_set_result(struct mail *m, size_t i, int code, const char *text)
{
	struct mail_rcpt_result *r;

	if (i >= m->nrcpt)
		return;
	r = &m->results[i];
	free(r->text);
	r->text = NULL;
	r->code = code;
	/* NOTE: when strndup fails the code is kept without its text. */
	if ((code < 200 || code > 299) && text != NULL)
		r->text = strndup(text, PROTO_MAX_SMTP_TEXT);
}

const struct mail_rcpt_result *
mail_rcpt_result(const struct mail *m, size_t i)
{
	return i < m->nrcpt ? &m->results[i] : NULL;
}

void
mail_rcpt_reset(struct mail *m)
{
	size_t i;

	for (i = 0; i < m->nrcpt; i++) {
		free(m->results[i].text);
		m->results[i].text = NULL;
		m->results[i].code = 0;
	}
}

/* ---- header block ------------------------------------------------------- */

struct mail_buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
	int	 failed;
};

static void
mail_buf_put(struct mail_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->data, cap)) == NULL) {
			b->failed = 1;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n + 1);
	b->len += n;
}

/* Appends a malloc'd header field and frees it; NULL means ENOMEM. */
static void
mail_buf_take(struct mail_buf *b, char *field)
{
	if (field == NULL) {
		b->failed = 1;
		return;
	}
	mail_buf_put(b, field);
	free(field);
}

/* Returns 1 when recipient i goes into the To or Cc header: accepted or
 * not yet sent. */
static int
mail_rcpt_shown(const struct mail *m, size_t i)
{
	int code = m->results != NULL ? m->results[i].code : 0;

	return code == 0 || (code >= 200 && code <= 299);
}

/* Appends an address header for the shown entries of a list.  first is
 * the RCPT index of the list's first entry, or SIZE_MAX for a list that
 * is not part of the envelope (From, Reply-To) or when every entry is
 * shown. */
static void
mail_buf_addresses(struct mail_buf *b, const struct mail *m,
    const char *name, const struct addr_list *list, size_t first)
{
	const char **displays, **mailboxes;
	size_t i, n = 0;

	if (list->count == 0)
		return;
	displays = calloc(list->count, sizeof(*displays));
	mailboxes = calloc(list->count, sizeof(*mailboxes));
	if (displays == NULL || mailboxes == NULL) {
		b->failed = 1;
		goto done;
	}
	for (i = 0; i < list->count; i++) {
		if (first != SIZE_MAX && !mail_rcpt_shown(m, first + i))
			continue;
		displays[n] = list->items[i].display;
		mailboxes[n] = list->items[i].mailbox;
		n++;
	}
	if (n > 0)
		mail_buf_take(b, mime_header_addresses(name, displays,
		    mailboxes, n));
done:
	free(displays);
	free(mailboxes);
}

static const char *const mail_priority_names[] = {
	"", "1 (Highest)", "2 (High)", "3 (Normal)", "4 (Low)", "5 (Lowest)",
};
static const char *const mail_importance_names[] = {
	"", "high", "high", "normal", "low", "low",
};

/*
 * Builds the header block with the given Date and Message-ID values.
 * all_rcpts includes refused recipients too (for the size estimate).
 */
static int
mail_build_headers(const struct mail *m, const char *date,
    const char *message_id, int all_rcpts, char **out, size_t *outlen)
{
	struct mail_buf b = { NULL, 0, 0, 0 };
	char line[MAIL_MESSAGE_ID_MAX + 128];
	size_t to_first = all_rcpts ? SIZE_MAX : 0;
	size_t cc_first = all_rcpts ? SIZE_MAX : m->lists[MAIL_LIST_TO].count;
	enum mime_encoding enc;

	snprintf(line, sizeof(line), "Date: %s\r\n", date);
	mail_buf_put(&b, line);
	mail_buf_addresses(&b, m, "From", &m->from, SIZE_MAX);
	mail_buf_addresses(&b, m, "Reply-To", &m->reply, SIZE_MAX);
	mail_buf_addresses(&b, m, "To", &m->lists[MAIL_LIST_TO], to_first);
	mail_buf_addresses(&b, m, "Cc", &m->lists[MAIL_LIST_CC], cc_first);
	if (m->subject != NULL)
		mail_buf_take(&b, mime_header_text("Subject", m->subject));
	if (m->priority >= 1 && m->priority <= 5) {
		snprintf(line, sizeof(line), "X-Priority: %s\r\n"
		    "Importance: %s\r\n", mail_priority_names[m->priority],
		    mail_importance_names[m->priority]);
		mail_buf_put(&b, line);
	}
	snprintf(line, sizeof(line), "Message-ID: %s\r\n", message_id);
	mail_buf_put(&b, line);
	mail_buf_put(&b, "MIME-Version: 1.0\r\n");

	if (m->attachments > 0) {
		/* Every part is 7bit, quoted-printable or base64. */
		snprintf(line, sizeof(line), "Content-Type: multipart/mixed;"
		    "\r\n boundary=\"%s\"\r\nContent-Transfer-Encoding: 7bit"
		    "\r\n", m->boundary);
	} else {
		enc = m->state == MAIL_STATE_FINISHED ? m->text_encoding :
		    m->has_text ? mime_text_encoding(&m->stats) :
		    MIME_ENC_7BIT;
		snprintf(line, sizeof(line), "Content-Type: text/plain; "
		    "charset=UTF-8\r\nContent-Transfer-Encoding: %s\r\n",
		    mime_encoding_name(enc));
	}
	mail_buf_put(&b, line);
	mail_buf_put(&b, "\r\n");

	if (b.failed) {
		free(b.data);
		return -1;
	}
	*out = b.data;
	*outlen = b.len;
	return 0;
}

int
mail_write_headers(struct mail *m, char **buf, size_t *len)
{
	char date[MAIL_DATE_MAX];

	mime_format_date(time(NULL), date, sizeof(date));
	/* Generated once, so a retry on another connection reuses it. */
	if (m->message_id[0] == '\0')
		mime_make_message_id(m->hostname, m->message_id,
		    sizeof(m->message_id));
	return mail_build_headers(m, date, m->message_id, 0, buf, len);
}

uint64_t
mail_size_estimate(const struct mail *m)
{
	char id[MAIL_MESSAGE_ID_MAX];
	char *headers;
	size_t hlen, idlen, domain;
	uint64_t size;

	if (m->message_id[0] != '\0')
		snprintf(id, sizeof(id), "%s", m->message_id);
	else {
		/* "<" 32 hex "." up to 20 digits "@" domain ">" */
		domain = m->hostname != NULL ? strlen(m->hostname) : 0;
		if (domain < strlen("localhost.localdomain"))
			domain = strlen("localhost.localdomain");
		idlen = 1 + 32 + 1 + 20 + 1 + domain + 1;
		if (idlen >= sizeof(id))
			idlen = sizeof(id) - 1;
		memset(id, 'x', idlen);
		id[idlen] = '\0';
	}
	/* Without memory for the estimate, report the largest size so the
	 * caller fails safe. */
	if (mail_build_headers(m, MAIL_DATE_PLACEHOLDER, id, 1, &headers,
	    &hlen) == -1)
		return UINT64_MAX;
	free(headers);

	/*
	 * Leaving refused recipients out can move a fold, so allow two
	 * bytes per recipient on top of the header built with all of them.
	 */
	size = hlen + 2 * (uint64_t)m->nrcpt + 16;
	if (m->body != NULL)
		size += spool_size(m->body);
	if (m->state != MAIL_STATE_FINISHED) {
		/* Text not encoded yet, in the worst case, and the end of
		 * the last part and the closing delimiter. */
		if (m->text != NULL)
			size += 4 * spool_size(m->text) + 128;
		size += 16 + 2 * MAIL_BOUNDARY_MAX;
	}
	return size;
}
