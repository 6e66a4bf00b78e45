/*
 * addr.c - parsing and validation of e-mail addresses as applications
 * give them to SendMail.
 *
 * addr_mailbox_valid() checks a bare mailbox against the RFC 5321 grammar.
 * The local part is a dot-atom or a quoted string of at most 64 bytes.
 * The domain has at most 255 bytes and is either dot-separated LDH labels
 * of 1..63 characters or an address literal ("[192.0.2.1]",
 * "[IPv6:2001:db8::1]").  The whole mailbox may be at most 254 bytes, the
 * limit RFC 3696 (errata 1690) derives from the 256-byte path.
 * Non-ASCII mailboxes (SMTPUTF8) are rejected.
 *
 * addr_parse() and addr_list_parse() accept "mailbox" or
 * "Display Name <mailbox>" entries and return -1 with a message that
 * quotes the entry and says what is wrong with it.  On failure the output
 * is left empty (addr_parse) or unchanged (addr_list_parse).
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

#define ADDR_MAX_LOCAL		64
#define ADDR_MAX_DOMAIN		255
#define ADDR_MAX_MAILBOX	254
#define ADDR_MAX_LABEL		63
/* Bytes of an entry quoted in an error message before it is cut short. */
#define ADDR_MAX_QUOTED		100

static int
addr_is_ws(int c)
{
	return c == ' ' || c == '\t';
}

static int
addr_is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
addr_is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* Tests for RFC 5322 atext: letters, digits and !#$%&'*+-/=?^_`{|}~ */
static int
addr_is_atext(int c)
{
	if (addr_is_alpha(c) || addr_is_digit(c))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Returns the length of the valid UTF-8 sequence at s (at most n bytes),
 * or 0 when the bytes there are not one. */
static size_t
addr_utf8_len(const unsigned char *s, size_t n)
{
	size_t		 len, i;
	unsigned int	 cp;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and values past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

static int
addr_utf8_valid(const char *s, size_t n)
{
	size_t	 i, step;

	for (i = 0; i < n; i += step) {
		step = addr_utf8_len((const unsigned char *)s + i, n - i);
		if (step == 0)
			return 0;
	}
	return 1;
}

/*
 * Copies n bytes of s into buf for use inside an error message: quotes,
 * backslashes and control characters are escaped, invalid UTF-8 is shown
 * as \xHH, and long values are cut with "...".
 */
static void
addr_quote(const char *s, size_t n, char *buf, size_t buflen)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 i, o = 0, step;
	char			 piece[8];
	int			 cut = 0;

	if (buflen == 0)
		return;
	for (i = 0; i < n; i += step) {
		step = addr_utf8_len(p + i, n - i);
		if (p[i] == '"' || p[i] == '\\')
			snprintf(piece, sizeof(piece), "\\%c", p[i]);
		else if (p[i] == '\r')
			snprintf(piece, sizeof(piece), "\\r");
		else if (p[i] == '\n')
			snprintf(piece, sizeof(piece), "\\n");
		else if (p[i] == '\t')
			snprintf(piece, sizeof(piece), "\\t");
		else if (p[i] < 0x20 || p[i] == 0x7f || step == 0)
			snprintf(piece, sizeof(piece), "\\x%02x", p[i]);
		else {
			memcpy(piece, p + i, step);
			piece[step] = '\0';
		}
		if (step == 0)
			step = 1;
		if (o + strlen(piece) > ADDR_MAX_QUOTED ||
		    o + strlen(piece) + 1 > buflen) {
			cut = 1;
			break;
		}
		memcpy(buf + o, piece, strlen(piece));
		o += strlen(piece);
	}
	buf[o] = '\0';
	if (cut && o + 4 <= buflen)
		memcpy(buf + o, "...", 4);
}

/* Fills err with: invalid address "ENTRY": WHY */
static void
addr_fail(char *err, size_t errlen, const char *entry, size_t entrylen,
    const char *why)
{
	char	 quoted[ADDR_MAX_QUOTED * 2 + 8];

	if (err == NULL || errlen == 0)
		return;
	addr_quote(entry, entrylen, quoted, sizeof(quoted));
	snprintf(err, errlen, "invalid address \"%s\": %s", quoted, why);
}

/* Checks for CR, LF and other control characters.  Returns the reason
 * the text is invalid, or NULL. */
static const char *
addr_check_controls(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r' || c == '\n')
			return "it contains a line break (CR or LF)";
		if (c == '\0')
			return "it contains a NUL byte";
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return "it contains a control character";
	}
	return NULL;
}

/*
 * Checks a local part.  Returns NULL when it is valid, else the reason.
 * A dot-atom is atext runs separated by single dots.  A quoted string
 * allows printable ASCII, with '"' and '\' escaped by a backslash.
 */
static const char *
addr_check_local(const char *s, size_t n)
{
	size_t	 i;

	if (n == 0)
		return "the local part (before the @) is empty";
	if (n > ADDR_MAX_LOCAL)
		return "the local part (before the @) is longer than 64 bytes";

	if (s[0] == '"') {
		if (n < 2 || s[n - 1] != '"')
			return "the quoted local part has no closing quote";
		for (i = 1; i < n - 1; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '\\') {
				i++;
				if (i >= n - 1)
					return "the quoted local part ends "
					    "in a lone backslash";
				c = (unsigned char)s[i];
				if (c < 0x20 || c > 0x7e)
					return "the quoted local part escapes "
					    "a character that is not "
					    "printable ASCII";
				continue;
			}
			if (c == '"')
				return "the quoted local part contains an "
				    "unescaped quote";
			if (c < 0x20 || c > 0x7e)
				return "the quoted local part contains a "
				    "character that is not printable ASCII";
		}
		return NULL;
	}

	if (s[0] == '.')
		return "the local part starts with a dot";
	if (s[n - 1] == '.')
		return "the local part ends with a dot";
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return "the local part contains two dots in "
				    "a row";
			continue;
		}
		if (!addr_is_atext((unsigned char)s[i])) {
			if (s[i] == ' ')
				return "the local part contains a space "
				    "(a display name needs the mailbox in "
				    "<angle brackets>)";
			return "the local part contains a character that "
			    "is only allowed inside quotes";
		}
	}
	return NULL;
}

/* Checks an address literal "[...]" (n includes the brackets). */
static const char *
addr_check_literal(const char *s, size_t n)
{
	char		 ip[ADDR_MAX_DOMAIN + 1];
	unsigned char	 bin[sizeof(struct in6_addr)];
	size_t		 len;

	if (s[n - 1] != ']')
		return "the address literal has no closing ']'";
	len = n - 2;
	memcpy(ip, s + 1, len);
	ip[len] = '\0';
	if (len > 5 && strncasecmp(ip, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, ip + 5, bin) != 1)
			return "the IPv6 address literal is not a valid IPv6 "
			    "address";
		return NULL;
	}
	if (strchr(ip, ':') != NULL)
		return "the address literal is neither [IPv4] nor "
		    "[IPv6:address]";
	if (inet_pton(AF_INET, ip, bin) != 1)
		return "the address literal is not a valid IPv4 address";
	return NULL;
}

/* Checks a domain: LDH labels of 1..63 characters that neither start nor
 * end with '-', or an address literal. */
static const char *
addr_check_domain(const char *s, size_t n)
{
	size_t	 i, start, label;

	if (n == 0)
		return "the domain is empty";
	if (n > ADDR_MAX_DOMAIN)
		return "the domain is longer than 255 bytes";
	if (s[0] == '[')
		return addr_check_literal(s, n);

	start = 0;
	for (i = 0; i <= n; i++) {
		if (i < n && s[i] != '.') {
			unsigned char c = (unsigned char)s[i];

			if (!addr_is_alpha(c) && !addr_is_digit(c) &&
			    c != '-')
				return "the domain contains a character other "
				    "than letters, digits, '-' and '.'";
			continue;
		}
		label = i - start;
		if (label == 0)
			return i == n ? "the domain ends with a dot" :
			    "the domain has an empty label (a leading dot "
			    "or two dots in a row)";
		if (label > ADDR_MAX_LABEL)
			return "a domain label is longer than 63 characters";
		if (s[start] == '-' || s[i - 1] == '-')
			return "a domain label starts or ends with '-'";
		start = i + 1;
	}
	return NULL;
}

/* Locates the "@" that ends the local part, skipping a quoted string. */
static const char *
addr_find_at(const char *s, size_t n)
{
	size_t	 i = 0;

	if (n > 0 && s[0] == '"') {
		for (i = 1; i < n; i++) {
			if (s[i] == '\\' && i + 1 < n)
				i++;
			else if (s[i] == '"') {
				i++;
				break;
			}
		}
	}
	for (; i < n; i++)
		if (s[i] == '@')
			return s + i;
	return NULL;
}

/* Checks a whole mailbox.  Returns NULL when it is valid, else the
 * reason. */
static const char *
addr_check_mailbox(const char *s, size_t n)
{
	const char	*why, *at;
	size_t		 i;

	if (n == 0)
		return "the mailbox is empty";
	if ((why = addr_check_controls(s, n)) != NULL)
		return why;
	/* TODO: accept UTF-8 mailboxes when the server announces SMTPUTF8. */
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return "non-ASCII mailboxes (SMTPUTF8) are not "
			    "supported; use an ASCII address";
	if (n > ADDR_MAX_MAILBOX)
		return "the mailbox is longer than 254 bytes";
	if ((at = addr_find_at(s, n)) == NULL)
		return "the mailbox has no @";
	if ((why = addr_check_local(s, (size_t)(at - s))) != NULL)
		return why;
	return addr_check_domain(at + 1, n - (size_t)(at - s) - 1);
}

int
addr_mailbox_valid(const char *mailbox)
{
	if (mailbox == NULL)
		return 0;
	return addr_check_mailbox(mailbox, strlen(mailbox)) == NULL;
}

/* Narrows [*s, *s + *n) to exclude leading and trailing blanks. */
static void
addr_trim(const char **s, size_t *n)
{
	while (*n > 0 && addr_is_ws((unsigned char)(*s)[0])) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && addr_is_ws((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

/* Returns the offset of the first '<' outside a quoted string, or n. */
static size_t
addr_find_open_angle(const char *s, size_t n)
{
	size_t	 i;
	int	 quoted = 0;

	for (i = 0; i < n; i++) {
		if (quoted && s[i] == '\\' && i + 1 < n)
			i++;
		else if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == '<')
			return i;
	}
	return n;
}

/*
 * Builds the display name from the text before '<'.  A fully quoted
 * display name loses its quotes and backslash escapes; any other text is
 * kept as written.  Stores NULL for an empty display name.
 */
static const char *
addr_make_display(const char *s, size_t n, char **out)
{
	const char	*why;
	char		*d;
	size_t		 i, o = 0;
	int		 quoted;

	*out = NULL;
	if (n == 0)
		return NULL;
	if ((why = addr_check_controls(s, n)) != NULL)
		return why;
	if (!addr_utf8_valid(s, n))
		return "the display name is not valid UTF-8";

	quoted = n >= 2 && s[0] == '"' && s[n - 1] == '"';
	if (quoted) {
		/* Make sure the closing quote is not escaped ("a\"). */
		for (i = 1; i < n - 1; i++) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				break;
		}
		if (i != n - 1)
			quoted = 0;
	}
	if (!quoted && s[0] == '"' &&
	    memchr(s + 1, '"', n - 1) == NULL)
		return "the display name has no closing quote";

	if ((d = malloc(n + 1)) == NULL)
		return "out of memory";
	if (quoted) {
		for (i = 1; i < n - 1; i++) {
			if (s[i] == '\\')
				i++;
			d[o++] = s[i];
		}
	} else {
		memcpy(d, s, n);
		o = n;
	}
	d[o] = '\0';
	if (o == 0) {
		free(d);
		d = NULL;
	}
	*out = d;
	return NULL;
}

/* Parses the entry at [s, s + n), already trimmed. */
static int
addr_parse_span(const char *s, size_t n, struct addr *out, char *err,
    size_t errlen)
{
	const char	*why, *box = s, *disp = NULL;
	size_t		 boxlen = n, displen = 0, lt;
	char		*display = NULL, *mailbox;

	if (n == 0) {
		addr_fail(err, errlen, s, n, "the entry is empty");
		return -1;
	}
	if ((why = addr_check_controls(s, n)) != NULL) {
		addr_fail(err, errlen, s, n, why);
		return -1;
	}

	lt = addr_find_open_angle(s, n);
	if (lt < n) {
		if (s[n - 1] != '>') {
			addr_fail(err, errlen, s, n,
			    "the mailbox after '<' has no closing '>' at the "
			    "end of the entry");
			return -1;
		}
		disp = s;
		displen = lt;
		addr_trim(&disp, &displen);
		box = s + lt + 1;
		boxlen = n - lt - 2;
		addr_trim(&box, &boxlen);
	}

	if ((why = addr_check_mailbox(box, boxlen)) != NULL) {
		addr_fail(err, errlen, s, n, why);
		return -1;
	}
	if ((why = addr_make_display(disp, displen, &display)) != NULL) {
		addr_fail(err, errlen, s, n, why);
		return -1;
	}
	if ((mailbox = strndup(box, boxlen)) == NULL) {
		free(display);
		addr_fail(err, errlen, s, n, "out of memory");
		return -1;
	}
	out->display = display;
	out->mailbox = mailbox;
	return 0;
}

int
addr_parse(const char *entry, struct addr *out, char *err, size_t errlen)
{
	const char	*s = entry;
	size_t		 n;

	out->display = NULL;
	out->mailbox = NULL;
	if (entry == NULL) {
		addr_fail(err, errlen, "", 0, "the entry is missing");
		return -1;
	}
	n = strlen(entry);
	addr_trim(&s, &n);
	return addr_parse_span(s, n, out, err, errlen);
}

/* Returns the length of the next list entry: up to the first comma that
 * is outside quotes and angle brackets, or to the end. */
static size_t
addr_list_next(const char *s)
{
	size_t	 i;
	int	 quoted = 0, angle = 0;

	for (i = 0; s[i] != '\0'; i++) {
		if (quoted) {
			if (s[i] == '\\' && s[i + 1] != '\0')
				i++;
			else if (s[i] == '"')
				quoted = 0;
		} else if (s[i] == '"')
			quoted = 1;
		else if (s[i] == '<')
			angle = 1;
		else if (s[i] == '>')
			angle = 0;
		else if (s[i] == ',' && !angle)
			break;
	}
	return i;
}

/* Fills err for an empty entry, which is usually a stray comma. */
static void
addr_list_fail_empty(char *err, size_t errlen, const char *text,
    size_t entry)
{
	char	 quoted[ADDR_MAX_QUOTED * 2 + 8];

	addr_quote(text, strlen(text), quoted, sizeof(quoted));
	snprintf(err, errlen, "invalid address list \"%s\": entry %zu is "
	    "empty; remove the extra comma or give an address", quoted,
	    entry);
}

int
addr_list_parse(const char *text, struct addr_list *list, char *err,
    size_t errlen)
{
	const char	*p = text, *s;
	size_t		 n, first = list->count, entry = 0;
	struct addr	 a, *grown;

	if (text == NULL) {
		snprintf(err, errlen, "the address list is missing");
		return -1;
	}
	for (;;) {
		n = addr_list_next(p);
		s = p;
		entry++;
		addr_trim(&s, &n);
		if (n == 0) {
			addr_list_fail_empty(err, errlen, text, entry);
			goto fail;
		}
		if (addr_parse_span(s, n, &a, err, errlen) == -1)
			goto fail;
		grown = reallocarray(list->items, list->count + 1,
		    sizeof(*list->items));
		if (grown == NULL) {
			addr_clear(&a);
			snprintf(err, errlen, "out of memory while parsing "
			    "an address list");
			goto fail;
		}
		list->items = grown;
		list->items[list->count++] = a;

		p += addr_list_next(p);
		if (*p == '\0')
			break;
		p++;	/* the comma */
	}
	return 0;

fail:
	/* Leave the list as the caller passed it. */
	while (list->count > first)
		addr_clear(&list->items[--list->count]);
	return -1;
}

void
addr_clear(struct addr *a)
{
	if (a == NULL)
		return;
	free(a->display);
	free(a->mailbox);
	a->display = NULL;
	a->mailbox = NULL;
}

void
addr_list_clear(struct addr_list *list)
{
	size_t	 i;

	if (list == NULL)
		return;
	for (i = 0; i < list->count; i++)
		addr_clear(&list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}
