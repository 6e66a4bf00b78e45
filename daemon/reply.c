/*
 * reply.c - SMTP reply parsing (RFC 5321 section 4.2), the enhanced status
 * code of a reply (RFC 3463) and the keywords of an EHLO reply.
 *
 * reply_parser_feed() takes one line at a time.  Each line must be three
 * digits (the first 2..5) followed by '-' (more lines follow), ' ' or the
 * end of the line (last line), then the text.  Every line of a reply must
 * carry the same code, a reply has at most REPLY_MAX_LINES lines of at
 * most REPLY_MAX_LINE bytes, and NUL bytes are rejected.  A malformed
 * line returns REPLY_FEED_ERROR with err filled and resets the parser; the
 * connection that sent it cannot be trusted to stay in step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reply.h"

/* Longest SASL mechanism name (RFC 4422 section 3.1). */
#define REPLY_MAX_MECHANISM	20

void
reply_parser_init(struct reply_parser *p)
{
	memset(p, 0, sizeof(*p));
}

void
reply_parser_reset(struct reply_parser *p)
{
	free(p->text);
	reply_parser_init(p);
}

/* Appends n bytes to the parser's text, preceded by '\n' unless it is
 * the first line.  Returns 0 or -1 on ENOMEM. */
static int
reply_append(struct reply_parser *p, const char *s, size_t n)
{
	size_t	 need = p->textlen + n + 2, cap;
	char	*t;

	if (need > p->textcap) {
		cap = p->textcap == 0 ? 256 : p->textcap;
		while (cap < need)
			cap *= 2;
		if ((t = realloc(p->text, cap)) == NULL)
			return -1;
		p->text = t;
		p->textcap = cap;
	}
	if (p->nlines > 0)
		p->text[p->textlen++] = '\n';
	memcpy(p->text + p->textlen, s, n);
	p->textlen += n;
	p->text[p->textlen] = '\0';
	return 0;
}

/* Reads 1..3 digits at s; returns how many, or 0 when there are none or
 * more than three. */
static size_t
reply_digits(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
		if (i == 3)
			return 0;
	return i;
}

/*
 * Copies the enhanced status code "C.S.D" at the start of the first line
 * into enhanced, or leaves it empty.  C must be the class of the reply
 * code (2, 4 or 5), S and D 1..3 digits, and a space or the end of the
 * line must follow.
 */
static void
reply_find_enhanced(int code, const char *text, size_t n,
    char enhanced[REPLY_MAX_ENHANCED + 1])
{
	const char	*nl = memchr(text, '\n', n);
	size_t		 i = 0, d;
	int		 klass = code / 100;

	enhanced[0] = '\0';
	if (nl != NULL)
		n = (size_t)(nl - text);
	if (klass != 2 && klass != 4 && klass != 5)
		return;
	if (n < 5 || text[0] != '0' + klass || text[1] != '.')
		return;
	i = 2;
	if ((d = reply_digits(text + i, n - i)) == 0)
		return;
	i += d;
	if (i >= n || text[i] != '.')
		return;
	i++;
	if ((d = reply_digits(text + i, n - i)) == 0)
		return;
	i += d;
	if (i < n && text[i] != ' ')
		return;
	/* At most "5.123.123", which fits REPLY_MAX_ENHANCED. */
	memcpy(enhanced, text, i);
	enhanced[i] = '\0';
}

/* Copies the start of a line into buf for an error message, with
 * quotes, control and non-ASCII bytes shown as '?'. */
static void
reply_quote(const char *line, size_t len, char *buf, size_t buflen)
{
	size_t	 i;

	for (i = 0; i < len && i + 1 < buflen; i++) {
		unsigned char c = (unsigned char)line[i];

		buf[i] = c < 0x20 || c >= 0x7f || c == '"' ? '?' : (char)c;
	}
	buf[i] = '\0';
}

/* Checks the "DDD" and separator of a line; returns the code or -1. */
static int
reply_line_code(const char *line, size_t len, char *err, size_t errlen)
{
	char	 quoted[41];

	reply_quote(line, len, quoted, sizeof(quoted));
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9') {
		snprintf(err, errlen, "malformed SMTP reply line \"%s\": "
		    "it does not start with a three-digit code from 200 to "
		    "599", quoted);
		return -1;
	}
	if (len > 3 && line[3] != ' ' && line[3] != '-') {
		snprintf(err, errlen, "malformed SMTP reply line \"%s\": "
		    "the code is followed by '%c' instead of ' ' or '-'",
		    quoted, quoted[3]);
		return -1;
	}
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

int
reply_parser_feed(struct reply_parser *p, const char *line, size_t len,
    struct reply *out, char *err, size_t errlen)
{
	const char	*text;
	size_t		 textlen;
	int		 code, last;

	if (len > REPLY_MAX_LINE) {
		snprintf(err, errlen, "SMTP reply line of %zu bytes is longer "
		    "than the maximum of %d", len, REPLY_MAX_LINE);
		goto fail;
	}
	if (memchr(line, '\0', len) != NULL) {
		snprintf(err, errlen, "SMTP reply line contains a NUL byte");
		goto fail;
	}
	if ((code = reply_line_code(line, len, err, errlen)) == -1)
		goto fail;
	if (p->code != 0 && code != p->code) {
		snprintf(err, errlen, "SMTP reply line with code %d inside a "
		    "reply that started with code %d", code, p->code);
		goto fail;
	}
	if (p->nlines >= REPLY_MAX_LINES) {
		snprintf(err, errlen, "SMTP reply has more than %d lines",
		    REPLY_MAX_LINES);
		goto fail;
	}

	last = len == 3 || line[3] == ' ';
	text = len > 4 ? line + 4 : "";
	textlen = len > 4 ? len - 4 : 0;
	if (reply_append(p, text, textlen) == -1) {
		snprintf(err, errlen, "out of memory while reading an SMTP "
		    "reply");
		goto fail;
	}
	p->code = code;
	p->nlines++;
	if (!last)
		return REPLY_FEED_MORE;

	/* Hand the text over to out and start a new reply. */
	memset(out, 0, sizeof(*out));
	out->code = p->code;
	out->text = p->text;
	out->textlen = p->textlen;
	out->nlines = p->nlines;
	reply_find_enhanced(out->code, out->text, out->textlen,
	    out->enhanced);
	reply_parser_init(p);
	return REPLY_FEED_DONE;

fail:
	reply_parser_reset(p);
	return REPLY_FEED_ERROR;
}

void
reply_clear(struct reply *r)
{
	if (r == NULL)
		return;
	free(r->text);
	memset(r, 0, sizeof(*r));
}

int
reply_copy(struct reply *dst, const struct reply *src)
{
	char	*t = NULL;

	if (src->text != NULL) {
		if ((t = malloc(src->textlen + 1)) == NULL)
			return -1;
		memcpy(t, src->text, src->textlen);
		t[src->textlen] = '\0';
	}
	*dst = *src;
	dst->text = t;
	return 0;
}

void
reply_summary(const struct reply *r, char *buf, size_t len)
{
	size_t	 o, i;
	int	 n;

	if (len == 0)
		return;
	n = snprintf(buf, len, "%03d", r->code);
	if (n < 0 || (size_t)n >= len || r->textlen == 0 || r->text == NULL)
		return;
	o = (size_t)n;
	if (o + 1 < len)
		buf[o++] = ' ';
	for (i = 0; i < r->textlen && o + 1 < len; i++) {
		unsigned char c = (unsigned char)r->text[i];

		/* Line breaks and tabs become spaces, and other control
		 * characters '?', so the summary stays one log line. */
		if (c == '\n' || c == '\r' || c == '\t')
			c = ' ';
		else if (c < 0x20 || c == 0x7f)
			c = '?';
		buf[o++] = (char)c;
	}
	buf[o] = '\0';
}

/* Tests whether the word [w, w + n) equals keyword, ignoring case. */
static int
reply_word_is(const char *w, size_t n, const char *keyword)
{
	return strlen(keyword) == n && strncasecmp(w, keyword, n) == 0;
}

/* Adds the space-separated mechanisms in [s, s + n) to caps->auth, in
 * upper case, skipping duplicates, malformed names and any that do not
 * fit. */
static void
reply_add_mechanisms(struct ehlo_caps *caps, const char *s, size_t n)
{
	char	 mech[REPLY_MAX_MECHANISM + 1];
	size_t	 i = 0, start, mlen, used, k;
	int	 ok;

	while (i < n) {
		while (i < n && s[i] == ' ')
			i++;
		start = i;
		while (i < n && s[i] != ' ')
			i++;
		mlen = i - start;
		if (mlen == 0 || mlen > REPLY_MAX_MECHANISM)
			continue;
		ok = 1;
		for (k = 0; k < mlen; k++) {
			char c = s[start + k];

			if (c >= 'a' && c <= 'z')
				c = (char)(c - 'a' + 'A');
			if (!((c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '_'))
				ok = 0;
			mech[k] = c;
		}
		mech[mlen] = '\0';
		if (!ok || ehlo_has_auth(caps, mech))
			continue;
		used = strlen(caps->auth);
		if (used + (used > 0) + mlen + 1 > sizeof(caps->auth))
			continue;
		if (used > 0)
			caps->auth[used++] = ' ';
		memcpy(caps->auth + used, mech, mlen + 1);
	}
}

/* Parses the SIZE argument; anything but a plain decimal number gives
 * 0, which means no limit, as does a value past 2^64 - 1. */
static uint64_t
reply_parse_size(const char *s, size_t n)
{
	uint64_t	 v = 0;
	size_t		 i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	return v;
}

/* Applies one EHLO keyword line [s, s + n) to caps. */
static void
reply_ehlo_line(struct ehlo_caps *caps, const char *s, size_t n)
{
	size_t		 kw = 0;
	const char	*arg;
	size_t		 argn;

	while (kw < n && s[kw] != ' ' && s[kw] != '=')
		kw++;
	arg = s + kw;
	argn = n - kw;
	/* Skip the separator, and further spaces, before the arguments. */
	if (argn > 0) {
		arg++;
		argn--;
	}
	while (argn > 0 && *arg == ' ') {
		arg++;
		argn--;
	}

	if (reply_word_is(s, kw, "AUTH")) {
		/* Old servers announce "AUTH=PLAIN LOGIN" besides or
		 * instead of "AUTH PLAIN LOGIN"; both count. */
		caps->flags |= EHLO_AUTH;
		reply_add_mechanisms(caps, arg, argn);
		return;
	}
	if (kw < n && s[kw] == '=')
		return;
	if (reply_word_is(s, kw, "PIPELINING"))
		caps->flags |= EHLO_PIPELINING;
	else if (reply_word_is(s, kw, "SIZE")) {
		caps->flags |= EHLO_SIZE;
		caps->size_max = reply_parse_size(arg, argn);
	} else if (reply_word_is(s, kw, "8BITMIME"))
		caps->flags |= EHLO_8BITMIME;
	else if (reply_word_is(s, kw, "STARTTLS"))
		caps->flags |= EHLO_STARTTLS;
	else if (reply_word_is(s, kw, "ENHANCEDSTATUSCODES"))
		caps->flags |= EHLO_ENHANCEDSTATUSCODES;
	else if (reply_word_is(s, kw, "SMTPUTF8"))
		caps->flags |= EHLO_SMTPUTF8;
	else if (reply_word_is(s, kw, "CHUNKING"))
		caps->flags |= EHLO_CHUNKING;
}

void
ehlo_parse(const struct reply *r, struct ehlo_caps *caps)
{
	const char	*s, *end, *nl;
	size_t		 n;

	memset(caps, 0, sizeof(*caps));
	if (r->text == NULL)
		return;
	s = r->text;
	end = r->text + r->textlen;

	/* The first line is the server's domain and greeting. */
	if ((nl = memchr(s, '\n', (size_t)(end - s))) == NULL)
		return;
	for (s = nl + 1; s <= end; s = nl + 1) {
		nl = memchr(s, '\n', (size_t)(end - s));
		if (nl == NULL)
			nl = end;
		n = (size_t)(nl - s);
		/* Trailing blanks on keyword lines are common. */
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r'))
			n--;
		reply_ehlo_line(caps, s, n);
		if (nl == end)
			break;
	}
}

int
ehlo_has_auth(const struct ehlo_caps *caps, const char *mechanism)
{
	const char	*p = caps->auth;
	size_t		 n, mlen = strlen(mechanism);

	while (*p != '\0') {
		n = strcspn(p, " ");
		if (n == mlen && strncasecmp(p, mechanism, n) == 0)
			return 1;
		p += n;
		if (*p == ' ')
			p++;
	}
	return 0;
}
