/*
 * mime.h - MIME encoding primitives (RFC 2045, RFC 2047, RFC 5322): base64
 * and quoted-printable stream encoders, encoded words for header text,
 * header folding, Date and Message-ID values, and boundaries.
 */
#ifndef SMTPOOL_MIME_H
#define SMTPOOL_MIME_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Streaming base64 with 76-character lines ending in CRLF. */
struct mime_b64 {
	unsigned char	carry[3];
	unsigned	ncarry;
	unsigned	column;
};

#define MIME_B64_MAX_OUT(len)	((((len) + 3) / 3) * 4 * 78 / 76 + 8)

void mime_b64_init(struct mime_b64 *);
size_t mime_b64_encode(struct mime_b64 *, const void *in, size_t len,
    char *out);
/* Flushes the last 1-2 bytes with padding and ends the line. */
size_t mime_b64_finish(struct mime_b64 *, char *out);

/* Streaming quoted-printable (RFC 2045 section 6.7) for text: line breaks
 * in any convention become CRLF, lines are soft-broken at 76 characters,
 * trailing white space and a leading '.' or "From " are encoded. */
struct mime_qp {
	unsigned	column;
	int		pending_cr;
	char		held[4];	/* white space held until we know what
					 * follows it */
	unsigned	nheld;
};

#define MIME_QP_MAX_OUT(len)	(4 * (len) + 8)

void mime_qp_init(struct mime_qp *);
size_t mime_qp_encode(struct mime_qp *, const void *in, size_t len,
    char *out);
size_t mime_qp_finish(struct mime_qp *, char *out);

/* Text statistics used to pick a transfer encoding. */
struct mime_text_stats {
	uint64_t	bytes;
	uint64_t	max_line;	/* longest line, without line break */
	uint64_t	cur_line;
	int		has_8bit;
	int		has_nul;
	int		has_bare_cr;
	int		last_cr;	/* last byte added was a CR */
};

enum mime_encoding {
	MIME_ENC_7BIT,
	MIME_ENC_QUOTED_PRINTABLE,
	MIME_ENC_BASE64,
};

void mime_text_stats_init(struct mime_text_stats *);
void mime_text_stats_add(struct mime_text_stats *, const void *, size_t);
/* 7bit for ASCII text with lines up to 998 bytes, otherwise
 * quoted-printable. */
enum mime_encoding mime_text_encoding(const struct mime_text_stats *);
const char *mime_encoding_name(enum mime_encoding);

/*
 * Writes "Name: value" folded at 78 columns with CRLF line ends into a
 * malloc'd string.  When value is not printable ASCII it is written as
 * RFC 2047 encoded words (UTF-8, B encoding, at most 75 characters each).
 * Returns NULL on ENOMEM.
 */
char *mime_header_text(const char *name, const char *value);
/* Same for an address header; display names get encoded words or quotes
 * as needed, mailboxes stay as they are.  displays[i] may be NULL. */
char *mime_header_addresses(const char *name, const char *const *displays,
    const char *const *mailboxes, size_t count);
/* Returns 1 when s needs RFC 2047 encoding in a header (non-ASCII or
 * control characters). */
int mime_needs_encoding(const char *s);

/* RFC 5322 date-time for t in local time, e.g.
 * "Fri, 04 Dec 2026 20:07:09 +0000". */
void mime_format_date(time_t t, char *buf, size_t len);
/* "<random.time@domain>" from the OS random source. */
void mime_make_message_id(const char *domain, char *buf, size_t len);
/* A random boundary that cannot appear in base64 or quoted-printable
 * output. */
void mime_make_boundary(char *buf, size_t len);
/* Guesses a content type from a file name's extension. */
const char *mime_type_from_filename(const char *filename);

#endif
