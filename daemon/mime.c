/*
 * mime.c - MIME encoding primitives: streaming base64 and quoted-printable
 * encoders, text statistics that pick a transfer encoding, header fields
 * with RFC 2047 encoded words and folding, and Date, Message-ID and
 * boundary values.
 *
 * The stream encoders cannot fail as long as callers size the output
 * buffers with MIME_B64_MAX_OUT() and MIME_QP_MAX_OUT(); finish needs 8
 * bytes.  The header builders return a
 * malloc'd string, or NULL when memory runs out.
 */
#include <sys/random.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "mime.h"

/* Encoded lines (base64, quoted-printable) stay within 76 characters. */
#define MIME_LINE_MAX		76
/* Header lines are folded at 78 columns and never exceed 998. */
#define MIME_HEADER_FOLD	78
#define MIME_HEADER_HARD	998
/* An RFC 2047 encoded word is at most 75 characters. */
#define MIME_WORD_MAX		75
/* "=?UTF-8?B?" plus "?=" */
#define MIME_WORD_OVERHEAD	12
/* Text lines in 7bit data are at most 998 bytes. */
#define MIME_7BIT_LINE_MAX	998

static const char mime_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char mime_hex[] = "0123456789ABCDEF";

/* ---- base64 ---------------------------------------------------------- */

void
mime_b64_init(struct mime_b64 *b)
{
	memset(b, 0, sizeof(*b));
}

/* Writes 1 to 3 bytes as one padded quad into plain (no line breaks). */
static void
mime_b64_quad(const unsigned char *in, size_t count, char *out)
{
	uint32_t v;

	v = (uint32_t)in[0] << 16;
	if (count > 1)
		v |= (uint32_t)in[1] << 8;
	if (count > 2)
		v |= in[2];
	out[0] = mime_b64_alphabet[(v >> 18) & 0x3f];
	out[1] = mime_b64_alphabet[(v >> 12) & 0x3f];
	out[2] = count > 1 ? mime_b64_alphabet[(v >> 6) & 0x3f] : '=';
	out[3] = count > 2 ? mime_b64_alphabet[v & 0x3f] : '=';
}

/*
 * Appends one quad to a stream.  The line break comes before the quad that
 * would start a new line, so output never ends in an empty line.
 */
static size_t
mime_b64_put_quad(struct mime_b64 *b, const unsigned char *in, size_t count,
    char *out)
{
	size_t n = 0;

	if (b->column >= MIME_LINE_MAX) {
		out[n++] = '\r';
		out[n++] = '\n';
		b->column = 0;
	}
	mime_b64_quad(in, count, out + n);
	b->column += 4;
	return n + 4;
}

size_t
mime_b64_encode(struct mime_b64 *b, const void *in, size_t len, char *out)
{
	const unsigned char *p = in;
	size_t n = 0;

	while (len > 0) {
		b->carry[b->ncarry++] = *p++;
		len--;
		if (b->ncarry == 3) {
			n += mime_b64_put_quad(b, b->carry, 3, out + n);
			b->ncarry = 0;
		}
	}
	return n;
}

/* Writes at most 8 bytes. */
size_t
mime_b64_finish(struct mime_b64 *b, char *out)
{
	size_t n = 0;

	if (b->ncarry > 0) {
		n += mime_b64_put_quad(b, b->carry, b->ncarry, out);
		b->ncarry = 0;
	}
	if (b->column > 0) {
		out[n++] = '\r';
		out[n++] = '\n';
		b->column = 0;
	}
	return n;
}

/* Encodes len bytes as one run of base64 without line breaks.  out needs
 * 4 * ((len + 2) / 3) bytes.  Returns the count written. */
static size_t
mime_b64_plain(const unsigned char *in, size_t len, char *out)
{
	size_t n = 0;

	while (len > 0) {
		size_t take = len < 3 ? len : 3;

		mime_b64_quad(in, take, out + n);
		n += 4;
		in += take;
		len -= take;
	}
	return n;
}

/* ---- quoted-printable ------------------------------------------------- */

/*
 * The encoder holds back bytes in two cases, using held[]:
 *  - one space or tab, until the next byte shows whether it ends a line
 *    (trailing white space must be encoded);
 *  - "F", "Fr", "Fro" or "From" at the start of an encoded line, until the
 *    next byte shows whether the line starts with "From ", which
 *    some mail stores mangle, so it is written "=46rom ".
 * The two cases never overlap, and held[0] shows which one is active.
 */

void
mime_qp_init(struct mime_qp *q)
{
	memset(q, 0, sizeof(*q));
}

static int
mime_qp_is_literal(unsigned char c)
{
	return (c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t';
}

static size_t
mime_qp_soft_break(struct mime_qp *q, char *out)
{
	out[0] = '=';
	out[1] = '\r';
	out[2] = '\n';
	q->column = 0;
	return 3;
}

/*
 * Writes byte c literally or as =XX.  A soft line break goes first when
 * the token would leave no room for the '=' of a later soft break within
 * 76 characters.  A '.' starting a line is always encoded so the body
 * never depends on dot-stuffing; an 'F' starting a line is held back.
 */
static size_t
mime_qp_token(struct mime_qp *q, unsigned char c, int encode, char *out)
{
	size_t n = 0;
	unsigned width = encode ? 3 : 1;

	if (q->column + width > MIME_LINE_MAX - 1)
		n += mime_qp_soft_break(q, out);
	if (q->column == 0 && !encode) {
		if (c == '.') {
			encode = 1;
			width = 3;
		} else if (c == 'F') {
			q->held[0] = 'F';
			q->nheld = 1;
			return n;
		}
	}
	if (encode) {
		out[n++] = '=';
		out[n++] = mime_hex[c >> 4];
		out[n++] = mime_hex[c & 0x0f];
	} else
		out[n++] = (char)c;
	q->column += width;
	return n;
}

/* Writes the held bytes out.  At a line break or the end, held white
 * space is trailing and gets encoded. */
static size_t
mime_qp_flush_held(struct mime_qp *q, int at_line_end, char *out)
{
	size_t n = 0;
	unsigned i, nheld = q->nheld;

	if (nheld == 0)
		return 0;
	q->nheld = 0;
	if (q->held[0] == 'F') {
		/* Held only at column 0, so four bytes always fit. */
		for (i = 0; i < nheld; i++)
			out[n++] = q->held[i];
		q->column += nheld;
		return n;
	}
	return mime_qp_token(q, (unsigned char)q->held[0], at_line_end, out);
}

static size_t
mime_qp_hard_break(struct mime_qp *q, char *out)
{
	size_t n;

	n = mime_qp_flush_held(q, 1, out);
	out[n++] = '\r';
	out[n++] = '\n';
	q->column = 0;
	return n;
}

/* Handles one byte that is not part of a line break. */
static size_t
mime_qp_byte(struct mime_qp *q, unsigned char c, char *out)
{
	static const char from[] = "From ";
	size_t n = 0;

	if (q->nheld > 0 && q->held[0] == 'F') {
		if (q->nheld < 4 && c == (unsigned char)from[q->nheld]) {
			q->held[q->nheld++] = (char)c;
			return 0;
		}
		if (q->nheld == 4 && c == ' ') {
			memcpy(out, "=46rom", 6);
			n = 6;
			q->column += 6;
			q->nheld = 0;
		} else
			n += mime_qp_flush_held(q, 0, out);
	} else if (q->nheld > 0)
		n += mime_qp_flush_held(q, 0, out);

	if (c == ' ' || c == '\t') {
		q->held[0] = (char)c;
		q->nheld = 1;
		return n;
	}
	return n + mime_qp_token(q, c, !mime_qp_is_literal(c), out + n);
}

size_t
mime_qp_encode(struct mime_qp *q, const void *in, size_t len, char *out)
{
	const unsigned char *p = in;
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = p[i];

		/* CR LF, a bare CR and a bare LF each end one line. */
		if (q->pending_cr) {
			q->pending_cr = 0;
			n += mime_qp_hard_break(q, out + n);
			if (c == '\n')
				continue;
		}
		if (c == '\r') {
			q->pending_cr = 1;
			continue;
		}
		if (c == '\n') {
			n += mime_qp_hard_break(q, out + n);
			continue;
		}
		n += mime_qp_byte(q, c, out + n);
	}
	return n;
}

/*
 * Ends the text with a hard line break unless it already ended with one,
 * so the decoded text always ends in CRLF.  Writes at most 8 bytes.
 */
size_t
mime_qp_finish(struct mime_qp *q, char *out)
{
	size_t n = 0;

	if (q->pending_cr || q->nheld > 0 || q->column > 0)
		n = mime_qp_hard_break(q, out);
	q->pending_cr = 0;
	return n;
}

/* ---- text statistics ------------------------------------------------- */

void
mime_text_stats_init(struct mime_text_stats *s)
{
	memset(s, 0, sizeof(*s));
}

static void
mime_text_stats_line_end(struct mime_text_stats *s)
{
	if (s->cur_line > s->max_line)
		s->max_line = s->cur_line;
	s->cur_line = 0;
}

void
mime_text_stats_add(struct mime_text_stats *s, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i, run;

	s->bytes += len;
	for (i = 0; i < len; i++) {
		unsigned char c;

		/* Ordinary bytes in the middle of a line only extend it. */
		if (!s->last_cr) {
			for (run = i; run < len && p[run] != '\r' &&
			    p[run] != '\n'; run++) {
				if (p[run] == 0)
					s->has_nul = 1;
				else if (p[run] >= 0x80)
					s->has_8bit = 1;
			}
			s->cur_line += run - i;
			i = run;
			if (i == len)
				break;
		}
		c = p[i];

		if (s->last_cr) {
			s->last_cr = 0;
			if (c == '\n')
				continue;
			s->has_bare_cr = 1;
		}
		if (c == '\r') {
			mime_text_stats_line_end(s);
			s->last_cr = 1;
			continue;
		}
		if (c == '\n') {
			mime_text_stats_line_end(s);
			continue;
		}
		if (c == 0)
			s->has_nul = 1;
		else if (c >= 0x80)
			s->has_8bit = 1;
		s->cur_line++;
	}
}

enum mime_encoding
mime_text_encoding(const struct mime_text_stats *s)
{
	uint64_t longest = s->max_line > s->cur_line ? s->max_line :
	    s->cur_line;

	/* A CR as the very last byte has no LF after it: a bare CR. */
	if (s->has_8bit || s->has_nul || s->has_bare_cr || s->last_cr ||
	    longest > MIME_7BIT_LINE_MAX)
		return MIME_ENC_QUOTED_PRINTABLE;
	return MIME_ENC_7BIT;
}

const char *
mime_encoding_name(enum mime_encoding enc)
{
	switch (enc) {
	case MIME_ENC_7BIT:
		return "7bit";
	case MIME_ENC_QUOTED_PRINTABLE:
		return "quoted-printable";
	case MIME_ENC_BASE64:
		return "base64";
	}
	return "7bit";
}

/* ---- header fields --------------------------------------------------- */

/* A header field under construction. */
struct mime_hdr {
	char	*buf;
	size_t	 len;
	size_t	 cap;
	size_t	 column;
	size_t	 content_start;	/* column where this line's content starts */
	int	 failed;
};

static void
mime_hdr_put(struct mime_hdr *h, const char *s, size_t n)
{
	if (h->failed)
		return;
	if (h->len + n + 1 > h->cap) {
		size_t cap = h->cap ? h->cap : 128;
		char *p;

		while (cap < h->len + n + 1)
			cap *= 2;
		if ((p = realloc(h->buf, cap)) == NULL) {
			h->failed = 1;
			return;
		}
		h->buf = p;
		h->cap = cap;
	}
	memcpy(h->buf + h->len, s, n);
	h->len += n;
	h->buf[h->len] = '\0';
	h->column += n;
}

static void
mime_hdr_puts(struct mime_hdr *h, const char *s)
{
	mime_hdr_put(h, s, strlen(s));
}

/* Ends the current line.  The caller continues with white space. */
static void
mime_hdr_newline(struct mime_hdr *h)
{
	mime_hdr_put(h, "\r\n", 2);
	h->column = 0;
	h->content_start = 1;
}

/* Starts "Name:"; content begins after the colon. */
static void
mime_hdr_start(struct mime_hdr *h, const char *name)
{
	memset(h, 0, sizeof(*h));
	mime_hdr_puts(h, name);
	mime_hdr_put(h, ":", 1);
	h->content_start = h->column;
}

/* Writes a space, or a fold when a piece of width n would pass 78
 * columns and the line already has content. */
static void
mime_hdr_space(struct mime_hdr *h, size_t n, size_t limit)
{
	if (h->column + 1 + n > limit && h->column > h->content_start)
		mime_hdr_newline(h);
	mime_hdr_put(h, " ", 1);
}

/* Ends the field and hands the string over, or NULL on ENOMEM. */
static char *
mime_hdr_end(struct mime_hdr *h)
{
	mime_hdr_put(h, "\r\n", 2);
	if (h->failed) {
		free(h->buf);
		return NULL;
	}
	return h->buf;
}

/*
 * Writes text as RFC 2047 encoded words, each preceded by a space or a
 * fold, each line within 76 characters.  A word never ends inside a UTF-8
 * sequence, because RFC 2047 requires whole characters in each word.
 */
static void
mime_hdr_encoded(struct mime_hdr *h, const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t pos = 0;

	while (pos < len) {
		char word[MIME_WORD_MAX + 1];
		size_t room, cap, n, wlen;

		room = h->column + 1 < MIME_LINE_MAX ?
		    MIME_LINE_MAX - h->column - 1 : 0;
		if (room > MIME_WORD_MAX)
			room = MIME_WORD_MAX;
		cap = room >= MIME_WORD_OVERHEAD + 4 ?
		    (room - MIME_WORD_OVERHEAD) / 4 * 3 : 0;
		n = cap < len - pos ? cap : len - pos;
		while (n > 0 && pos + n < len && (p[pos + n] & 0xc0) == 0x80)
			n--;
		if (n == 0 && h->column > h->content_start) {
			/* Too little room left on this line: fold first. */
			mime_hdr_newline(h);
			continue;
		}
		if (n == 0) {
			/* Invalid UTF-8 (a long run of continuation bytes)
			 * or a very long field name: split anyway. */
			cap = (MIME_WORD_MAX - MIME_WORD_OVERHEAD) / 4 * 3;
			n = cap < len - pos ? cap : len - pos;
		}
		memcpy(word, "=?UTF-8?B?", 10);
		wlen = 10 + mime_b64_plain(p + pos, n, word + 10);
		memcpy(word + wlen, "?=", 2);
		wlen += 2;
		mime_hdr_put(h, " ", 1);
		mime_hdr_put(h, word, wlen);
		pos += n;
	}
}

int
mime_needs_encoding(const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p >= 0x7f || (*p < 0x20 && *p != '\t'))
			return 1;
	return 0;
}

/* Returns 1 when plain text would be mistaken for an encoded word. */
static int
mime_looks_encoded(const char *s)
{
	return strstr(s, "=?") != NULL;
}

/*
 * Returns 1 when folding plain text on its white space keeps every line
 * within 998 characters.  first is the column where the value starts.
 */
static int
mime_foldable(const char *value, size_t first)
{
	size_t run = first;
	const char *p;

	for (p = value; *p != '\0'; p++) {
		if ((*p == ' ' || *p == '\t') && p > value &&
		    p[-1] != ' ' && p[-1] != '\t')
			run = 0;
		if (++run > MIME_HEADER_HARD)
			return 0;
	}
	return 1;
}

char *
mime_header_text(const char *name, const char *value)
{
	struct mime_hdr h;
	const char *p, *tok;

	mime_hdr_start(&h, name);
	if (*value == '\0')
		return mime_hdr_end(&h);

	if (mime_needs_encoding(value) || mime_looks_encoded(value) ||
	    !mime_foldable(value, h.column + 1)) {
		mime_hdr_encoded(&h, value, strlen(value));
		return mime_hdr_end(&h);
	}

	/*
	 * Split into tokens of white space followed by non-white space and
	 * fold before a token that would pass column 78.  Unfolding removes
	 * only the CRLF, so the value reads back unchanged.
	 */
	mime_hdr_put(&h, " ", 1);
	p = value;
	while (*p != '\0') {
		size_t ws, word;

		tok = p;
		ws = strspn(tok, " \t");
		word = strcspn(tok + ws, " \t");
		p = tok + ws + word;
		if (ws > 0 && word > 0 && h.column > h.content_start + 1 &&
		    h.column + ws + word > MIME_HEADER_FOLD)
			mime_hdr_newline(&h);
		mime_hdr_put(&h, tok, ws + word);
	}
	return mime_hdr_end(&h);
}

enum mime_phrase {
	MIME_PHRASE_ATOMS,	/* atoms separated by single spaces */
	MIME_PHRASE_QUOTED,	/* printable ASCII with specials */
	MIME_PHRASE_ENCODED,	/* needs RFC 2047 */
};

/* Display names whose quoted form is longer than this are encoded so
 * they can fold. */
#define MIME_QUOTED_MAX		900

/* ASCII only, whatever the locale. */
static int
mime_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

static int
mime_is_atext(unsigned char c)
{
	return mime_is_alnum(c) ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static enum mime_phrase
mime_classify_phrase(const char *s)
{
	const char *p;
	int atoms = 1;
	size_t quoted = 2;

	/* The quoted form, escapes included, must fit in one line. */
	for (p = s; *p != '\0'; p++)
		quoted += (*p == '"' || *p == '\\') ? 2 : 1;
	if (mime_needs_encoding(s) || quoted > MIME_QUOTED_MAX)
		return MIME_PHRASE_ENCODED;
	if (mime_looks_encoded(s) || s[0] == ' ')
		return MIME_PHRASE_QUOTED;
	for (p = s; *p != '\0'; p++) {
		if (*p == ' ') {
			if (p[1] == ' ' || p[1] == '\0')
				atoms = 0;
		} else if (!mime_is_atext((unsigned char)*p))
			atoms = 0;
	}
	return atoms ? MIME_PHRASE_ATOMS : MIME_PHRASE_QUOTED;
}

static void
mime_hdr_display(struct mime_hdr *h, const char *display)
{
	const char *p;
	char *quoted, *q;

	switch (mime_classify_phrase(display)) {
	case MIME_PHRASE_ATOMS:
		for (p = display; *p != '\0';) {
			size_t n = strcspn(p, " ");

			mime_hdr_space(h, n, MIME_HEADER_FOLD);
			mime_hdr_put(h, p, n);
			p += n;
			p += strspn(p, " ");
		}
		break;
	case MIME_PHRASE_QUOTED:
		/* Worst case every byte is escaped, plus the quotes. */
		if ((quoted = malloc(2 * strlen(display) + 3)) == NULL) {
			h->failed = 1;
			return;
		}
		q = quoted;
		*q++ = '"';
		for (p = display; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				*q++ = '\\';
			*q++ = *p;
		}
		*q++ = '"';
		mime_hdr_space(h, (size_t)(q - quoted), MIME_HEADER_FOLD);
		mime_hdr_put(h, quoted, (size_t)(q - quoted));
		free(quoted);
		break;
	case MIME_PHRASE_ENCODED:
		mime_hdr_encoded(h, display, strlen(display));
		break;
	}
}

char *
mime_header_addresses(const char *name, const char *const *displays,
    const char *const *mailboxes, size_t count)
{
	struct mime_hdr h;
	size_t i;

	mime_hdr_start(&h, name);
	for (i = 0; i < count; i++) {
		const char *display = displays != NULL ? displays[i] : NULL;
		size_t mlen = strlen(mailboxes[i]);

		if (i > 0)
			mime_hdr_put(&h, ",", 1);
		if (display == NULL || *display == '\0') {
			mime_hdr_space(&h, mlen, MIME_HEADER_FOLD);
			mime_hdr_put(&h, mailboxes[i], mlen);
			continue;
		}
		mime_hdr_display(&h, display);
		mime_hdr_space(&h, mlen + 2, MIME_HEADER_FOLD);
		mime_hdr_put(&h, "<", 1);
		mime_hdr_put(&h, mailboxes[i], mlen);
		mime_hdr_put(&h, ">", 1);
	}
	return mime_hdr_end(&h);
}

/* ---- Date, Message-ID, boundary --------------------------------------- */

static const char *const mime_day_names[7] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
};
static const char *const mime_month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* Names come from our own tables because strftime follows the locale. */
void
mime_format_date(time_t t, char *buf, size_t len)
{
	struct tm tm;
	long offset;
	char sign = '+';

	if (len == 0)
		return;
	if (localtime_r(&t, &tm) == NULL) {
		t = 0;
		if (gmtime_r(&t, &tm) == NULL) {
			snprintf(buf, len, "Thu, 01 Jan 1970 00:00:00 +0000");
			return;
		}
	}
	offset = tm.tm_gmtoff / 60;
	if (offset < 0) {
		sign = '-';
		offset = -offset;
	}
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
	    mime_day_names[((tm.tm_wday % 7) + 7) % 7], tm.tm_mday,
	    mime_month_names[((tm.tm_mon % 12) + 12) % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign,
	    (offset / 60) % 100, offset % 60);
}

/* Mixes a 64-bit value (splitmix64 finalizer). */
static uint64_t
mime_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * Writes 2 * nbytes hex digits and a NUL from OpenSSL's random generator,
 * which is seeded from the OS and makes no system call per message, or
 * from getrandom() when it fails.  If both fail, the clock, the process id
 * and a counter fill in, which rarely repeat but are guessable.
 */
static void
mime_random_hex(char *out, size_t nbytes)
{
	static uint64_t counter;
	unsigned char raw[32];
	size_t have = 0, i;
	int tries;

	if (nbytes > sizeof(raw))
		nbytes = sizeof(raw);
	if (RAND_bytes(raw, (int)nbytes) == 1)
		have = nbytes;
	for (tries = 0; have < nbytes && tries < 8; tries++) {
		ssize_t got = getrandom(raw + have, nbytes - have, 0);

		if (got < 0 && errno != EINTR)
			break;
		if (got > 0)
			have += (size_t)got;
	}
	if (have < nbytes) {
		struct timespec ts;
		uint64_t seed;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_sec * 1000000000ULL +
		    (uint64_t)ts.tv_nsec;
		seed ^= (uint64_t)getpid() << 32;
		seed ^= ++counter;
		for (i = have; i < nbytes; i++) {
			seed = mime_mix64(seed);
			raw[i] = (unsigned char)seed;
		}
	}
	for (i = 0; i < nbytes; i++) {
		out[2 * i] = mime_hex[raw[i] >> 4];
		out[2 * i + 1] = mime_hex[raw[i] & 0x0f];
	}
	out[2 * nbytes] = '\0';
}

/* Returns 1 for a DNS host name: labels of letters, digits and '-', not
 * starting or ending in '-', 1 to 63 bytes each, 253 in all. */
static int
mime_hostname_valid(const char *s)
{
	size_t label = 0, total = 0;
	const char *p;

	if (s == NULL || *s == '\0')
		return 0;
	for (p = s; *p != '\0'; p++) {
		if (++total > 253)
			return 0;
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!mime_is_alnum((unsigned char)*p) && *p != '-')
			return 0;
		if (*p == '-' && label == 0)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && p[-1] != '-';
}

void
mime_make_message_id(const char *domain, char *buf, size_t len)
{
	char hex[33];

	if (len == 0)
		return;
	if (!mime_hostname_valid(domain))
		domain = "localhost.localdomain";
	mime_random_hex(hex, 16);
	snprintf(buf, len, "<%s.%lld@%s>", hex, (long long)time(NULL),
	    domain);
}

/* "=_" never occurs in base64 or in our quoted-printable output, and the
 * boundary stays within the 70 characters RFC 2046 allows. */
void
mime_make_boundary(char *buf, size_t len)
{
	char hex[33];

	if (len == 0)
		return;
	mime_random_hex(hex, 16);
	snprintf(buf, len, "=_smtpool_%s", hex);
}

static const struct {
	const char	*ext;
	const char	*type;
} mime_types[] = {
	{ "txt",	"text/plain" },
	{ "html",	"text/html" },
	{ "htm",	"text/html" },
	{ "csv",	"text/csv" },
	{ "ics",	"text/calendar" },
	{ "xml",	"application/xml" },
	{ "json",	"application/json" },
	{ "pdf",	"application/pdf" },
	{ "zip",	"application/zip" },
	{ "gz",		"application/gzip" },
	{ "png",	"image/png" },
	{ "jpg",	"image/jpeg" },
	{ "jpeg",	"image/jpeg" },
	{ "gif",	"image/gif" },
	{ "doc",	"application/msword" },
	{ "docx",	"application/vnd.openxmlformats-officedocument."
			"wordprocessingml.document" },
	{ "xls",	"application/vnd.ms-excel" },
	{ "xlsx",	"application/vnd.openxmlformats-officedocument."
			"spreadsheetml.sheet" },
	{ "odt",	"application/vnd.oasis.opendocument.text" },
};

/* Matches the extension case-insensitively; anything else, including a
 * name without an extension, is application/octet-stream. */
const char *
mime_type_from_filename(const char *filename)
{
	const char *dot;
	size_t i;

	if (filename == NULL || (dot = strrchr(filename, '.')) == NULL ||
	    dot == filename)
		return "application/octet-stream";
	for (i = 0; i < sizeof(mime_types) / sizeof(mime_types[0]); i++)
		if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
			return mime_types[i].type;
	return "application/octet-stream";
}
