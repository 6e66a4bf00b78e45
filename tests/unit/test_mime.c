/*
 * test_mime.c - unit tests for the MIME primitives: base64 and
 * quoted-printable output decoded back by small decoders here, encoded
 * words, header folding, Date, Message-ID and boundary formats.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "mime.h"

/* ---- helpers --------------------------------------------------------- */

static uint32_t test_seed = 12345;

/* A fixed-seed generator so failures reproduce. */
static unsigned
test_rand(void)
{
	test_seed = test_seed * 1103515245u + 12345u;
	return (test_seed >> 16) & 0x7fff;
}

static int
test_b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes base64, skipping CRLF.  Returns the length or -1. */
static long
test_b64_decode(const char *in, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		int v;

		if (in[i] == '\r' || in[i] == '\n')
			continue;
		if (in[i] == '=')
			break;
		if ((v = test_b64_value((unsigned char)in[i])) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return (long)n;
}

static int
test_hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes quoted-printable.  Returns the length or -1 on a malformed
 * escape (lower-case hex counts as malformed: we write upper case). */
static long
test_qp_decode(const char *in, size_t len, unsigned char *out)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		if (in[i] != '=') {
			out[n++] = (unsigned char)in[i];
			continue;
		}
		if (i + 2 < len && in[i + 1] == '\r' && in[i + 2] == '\n') {
			i += 2;
			continue;
		}
		if (i + 2 >= len || test_hex_value(in[i + 1]) < 0 ||
		    test_hex_value(in[i + 2]) < 0)
			return -1;
		out[n++] = (unsigned char)(test_hex_value(in[i + 1]) * 16 +
		    test_hex_value(in[i + 2]));
		i += 2;
	}
	return (long)n;
}

/* Normalizes line breaks to CRLF and ends non-empty text with one, which
 * is what the decoded QP output must equal. */
static size_t
test_normalize(const unsigned char *in, size_t len, unsigned char *out)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		if (in[i] == '\r') {
			if (i + 1 < len && in[i + 1] == '\n')
				i++;
			out[n++] = '\r';
			out[n++] = '\n';
		} else if (in[i] == '\n') {
			out[n++] = '\r';
			out[n++] = '\n';
		} else
			out[n++] = in[i];
	}
	if (n > 0 && !(n >= 2 && out[n - 2] == '\r' && out[n - 1] == '\n')) {
		out[n++] = '\r';
		out[n++] = '\n';
	}
	return n;
}

/* Returns the longest line (without CRLF) in s. */
static size_t
test_max_line(const char *s, size_t len)
{
	size_t i, cur = 0, max = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
			if (cur > max)
				max = cur;
			cur = 0;
			i++;
		} else
			cur++;
	}
	return cur > max ? cur : max;
}

static size_t
test_qp_all(const void *in, size_t len, char *out)
{
	struct mime_qp q;
	size_t n;

	mime_qp_init(&q);
	n = mime_qp_encode(&q, in, len, out);
	return n + mime_qp_finish(&q, out + n);
}

static size_t
test_b64_all(const void *in, size_t len, char *out)
{
	struct mime_b64 b;
	size_t n;

	mime_b64_init(&b);
	n = mime_b64_encode(&b, in, len, out);
	return n + mime_b64_finish(&b, out + n);
}

/* ---- base64 ---------------------------------------------------------- */

static void
test_b64_vectors(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "", "" },
		{ "f", "Zg==\r\n" },
		{ "fo", "Zm8=\r\n" },
		{ "foo", "Zm9v\r\n" },
		{ "foob", "Zm9vYg==\r\n" },
		{ "fooba", "Zm9vYmE=\r\n" },
		{ "foobar", "Zm9vYmFy\r\n" },
	};
	char out[64], name[64];
	size_t i, n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = test_b64_all(cases[i].in, strlen(cases[i].in), out);
		out[n] = '\0';
		snprintf(name, sizeof(name), "base64 of \"%s\"", cases[i].in);
		CHECK_STR(out, cases[i].out, name);
	}
}

static void
test_b64_stream(void)
{
	unsigned char in[300], back[300];
	char whole[MIME_B64_MAX_OUT(300)], split[MIME_B64_MAX_OUT(300)];
	size_t i, n, wn, pos;
	int same = 1, bounded = 1;
	long dn;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)test_rand();
	wn = test_b64_all(in, sizeof(in), whole);

	for (pos = 0; pos <= sizeof(in); pos++) {
		struct mime_b64 b;

		mime_b64_init(&b);
		n = mime_b64_encode(&b, in, pos, split);
		if (n > MIME_B64_MAX_OUT(pos))
			bounded = 0;
		n += mime_b64_encode(&b, in + pos, sizeof(in) - pos,
		    split + n);
		n += mime_b64_finish(&b, split + n);
		if (n != wn || memcmp(split, whole, n) != 0)
			same = 0;
	}
	CHECK(same, "base64 split anywhere same bytes");
	CHECK(bounded, "base64 output within MIME_B64_MAX_OUT");
	CHECK_INT(test_max_line(whole, wn), 76, "base64 lines 76 chars");
	CHECK(memcmp(whole + wn - 2, "\r\n", 2) == 0, "base64 ends in CRLF");
	CHECK(strstr(whole, "\r\n\r\n") == NULL, "base64 no empty line");
	dn = test_b64_decode(whole, wn, back);
	CHECK_INT(dn, sizeof(in), "base64 decodes to input length");
	CHECK(memcmp(back, in, sizeof(in)) == 0, "base64 decodes to input");

	/* 57 input bytes fill exactly one 76-character line. */
	wn = test_b64_all(in, 57, whole);
	CHECK_INT(wn, 78, "base64 57 bytes one line");
}

/* ---- quoted-printable ------------------------------------------------- */

static void
test_qp_cases(void)
{
	static const struct {
		const char *name, *in, *out;
	} cases[] = {
		{ "qp plain text", "Hello", "Hello\r\n" },
		{ "qp empty text", "", "" },
		{ "qp trailing space", "a \nb", "a=20\r\nb\r\n" },
		{ "qp trailing tab", "a\t\r\nb", "a=09\r\nb\r\n" },
		{ "qp space at end", "a ", "a=20\r\n" },
		{ "qp inner spaces kept", "a  b", "a  b\r\n" },
		{ "qp two trailing spaces", "a  \n", "a =20\r\n" },
		{ "qp equals sign", "1+1=2", "1+1=3D2\r\n" },
		{ "qp 8-bit bytes", "Gr\xc3\xbc\xc3\x9f" "e",
		    "Gr=C3=BC=C3=9Fe\r\n" },
		{ "qp control byte", "a\x01" "b", "a=01b\r\n" },
		{ "qp leading dot", ".\nx.y", "=2E\r\nx.y\r\n" },
		{ "qp From line", "From me\nFrom", "=46rom me\r\nFrom\r\n" },
		{ "qp From not at start", "x From y", "x From y\r\n" },
		{ "qp Fro prefix only", "Frog", "Frog\r\n" },
		{ "qp From without space", "From:", "From:\r\n" },
		{ "qp bare CR is break", "a\rb", "a\r\nb\r\n" },
		{ "qp CR at end", "a\r", "a\r\n" },
		{ "qp empty lines kept", "a\n\n\nb", "a\r\n\r\n\r\nb\r\n" },
	};
	char out[256];
	size_t i, n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = test_qp_all(cases[i].in, strlen(cases[i].in), out);
		out[n] = '\0';
		CHECK_STR(out, cases[i].out, cases[i].name);
	}
}

static void
test_qp_long_lines(void)
{
	char in[400], out[MIME_QP_MAX_OUT(400)];
	size_t n;

	memset(in, 'a', 200);
	n = test_qp_all(in, 200, out);
	out[n] = '\0';
	CHECK(test_max_line(out, n) <= 76, "qp long line max 76");
	CHECK(strncmp(out + 75, "=\r\n", 3) == 0, "qp soft break at 75");

	memset(in, 0xe9, 200);
	n = test_qp_all(in, 200, out);
	out[n] = '\0';
	CHECK(test_max_line(out, n) <= 76, "qp long 8-bit line max 76");
	CHECK(strstr(out, "=E=\r\n") == NULL, "qp escape never split");

	/* A dot or "From " right after a soft break starts a line too. */
	memset(in, 'a', 75);
	memcpy(in + 75, ".From x", 7);
	n = test_qp_all(in, 82, out);
	out[n] = '\0';
	CHECK(strstr(out, "=\r\n=2EFrom x") != NULL,
	    "qp dot after soft break");
	memset(in, 'a', 75);
	memcpy(in + 75, "From x", 6);
	n = test_qp_all(in, 81, out);
	out[n] = '\0';
	CHECK(strstr(out, "=\r\n=46rom x") != NULL,
	    "qp From after soft break");
}

/* Checks QP output line by line for the rules the encoder promises. */
static int
test_qp_well_formed(const char *s, size_t len)
{
	size_t i, start = 0;

	for (i = 0; i + 1 < len; i++) {
		if (s[i] != '\r' || s[i + 1] != '\n')
			continue;
		if (i - start > 76)
			return 0;
		if (i > start && (s[i - 1] == ' ' || s[i - 1] == '\t'))
			return 0;
		if (s[start] == '.' || (i - start >= 5 &&
		    memcmp(s + start, "From ", 5) == 0))
			return 0;
		start = i + 2;
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80 || s[i] == '\0' ||
		    (s[i] == '=' && i + 1 < len && s[i + 1] == '_'))
			return 0;
	return start == len;
}

static void
test_qp_roundtrip(void)
{
	static const char *const texts[] = {
		"",
		"plain ascii\r\nsecond line\r\n",
		"mixed\nline\rbreaks\r\n",
		"trailing   \n\ttab\t\n",
		"==== equals ====",
		"Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbc" "nchen",
		".\n..\n.x\nFrom \nFrom\nFromage\n",
		"F",
		"Fr",
		"Fro",
		"From",
		"From ",
	};
	static unsigned char in[5000], norm[10100], back[10100];
	static char out[MIME_QP_MAX_OUT(5000)], split[MIME_QP_MAX_OUT(5000)];
	char name[80];
	size_t t, i, len, n, nn;
	long dn;

	for (t = 0; t < sizeof(texts) / sizeof(texts[0]) + 6; t++) {
		if (t < sizeof(texts) / sizeof(texts[0])) {
			len = strlen(texts[t]);
			memcpy(in, texts[t], len);
		} else {
			/* Random bytes; some rounds weighted to spaces,
			 * line breaks, dots and 'F'. */
			len = 1000 + test_rand() % 4000;
			for (i = 0; i < len; i++) {
				unsigned r = test_rand();

				if (t % 2 == 0 && r % 3 == 0)
					in[i] = (unsigned char)" \r\n.F=\t"[
					    r % 7];
				else
					in[i] = (unsigned char)(r >> 3);
			}
		}
		n = test_qp_all(in, len, out);
		nn = test_normalize(in, len, norm);
		dn = test_qp_decode(out, n, back);
		snprintf(name, sizeof(name), "qp roundtrip case %zu", t);
		CHECK_INT(dn, nn, name);
		snprintf(name, sizeof(name), "qp roundtrip bytes case %zu", t);
		CHECK(memcmp(back, norm, nn) == 0, name);
		snprintf(name, sizeof(name), "qp well formed case %zu", t);
		CHECK(test_qp_well_formed(out, n), name);

		/* Feeding the same input in small pieces gives the same
		 * bytes, and each call stays within MIME_QP_MAX_OUT. */
		{
			struct mime_qp q;
			size_t pos = 0, sn = 0, piece;
			int bounded = 1;

			mime_qp_init(&q);
			while (pos < len) {
				size_t got;

				piece = 1 + test_rand() % 7;
				if (piece > len - pos)
					piece = len - pos;
				got = mime_qp_encode(&q, in + pos, piece,
				    split + sn);
				if (got > MIME_QP_MAX_OUT(piece))
					bounded = 0;
				sn += got;
				pos += piece;
			}
			sn += mime_qp_finish(&q, split + sn);
			snprintf(name, sizeof(name),
			    "qp split same bytes case %zu", t);
			CHECK_INT(sn, n, name);
			snprintf(name, sizeof(name),
			    "qp split same content case %zu", t);
			CHECK(memcmp(split, out, n) == 0, name);
			snprintf(name, sizeof(name),
			    "qp split bounded case %zu", t);
			CHECK(bounded, name);
		}
	}
}

/* ---- base64 round trip ----------------------------------------------- */

static void
test_b64_roundtrip(void)
{
	static unsigned char in[3000], back[3000];
	static char out[MIME_B64_MAX_OUT(3000)];
	char name[64];
	size_t t, i, len, n;
	long dn;

	for (t = 0; t < 8; t++) {
		len = t < 4 ? t : test_rand() % sizeof(in);
		for (i = 0; i < len; i++)
			in[i] = (unsigned char)test_rand();
		n = test_b64_all(in, len, out);
		dn = test_b64_decode(out, n, back);
		snprintf(name, sizeof(name), "base64 roundtrip case %zu", t);
		CHECK_INT(dn, len, name);
		snprintf(name, sizeof(name), "base64 roundtrip bytes %zu", t);
		CHECK(memcmp(back, in, len) == 0, name);
	}
}

/* ---- text statistics ------------------------------------------------- */

static void
test_text_encoding(void)
{
	static char longline[1200];
	static const struct {
		const char *name, *text;
		size_t len;
		enum mime_encoding want;
	} cases[] = {
		{ "stats ascii is 7bit", "hello\r\nworld\n", 13,
		    MIME_ENC_7BIT },
		{ "stats empty is 7bit", "", 0, MIME_ENC_7BIT },
		{ "stats 8-bit is qp", "gr\xc3\xbc\xc3\x9f" "e", 7,
		    MIME_ENC_QUOTED_PRINTABLE },
		{ "stats NUL is qp", "a\0b", 3, MIME_ENC_QUOTED_PRINTABLE },
		{ "stats bare CR is qp", "a\rb", 3,
		    MIME_ENC_QUOTED_PRINTABLE },
		{ "stats final CR is qp", "a\r", 2,
		    MIME_ENC_QUOTED_PRINTABLE },
	};
	struct mime_text_stats s;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mime_text_stats_init(&s);
		mime_text_stats_add(&s, cases[i].text, cases[i].len);
		CHECK_INT(mime_text_encoding(&s), cases[i].want,
		    cases[i].name);
	}

	/* CR and LF in separate calls are still one CRLF. */
	mime_text_stats_init(&s);
	mime_text_stats_add(&s, "a\r", 2);
	mime_text_stats_add(&s, "\nb", 2);
	CHECK_INT(mime_text_encoding(&s), MIME_ENC_7BIT,
	    "stats CRLF split across calls");
	CHECK_INT(s.bytes, 4, "stats byte count");

	memset(longline, 'x', sizeof(longline));
	mime_text_stats_init(&s);
	mime_text_stats_add(&s, longline, 998);
	CHECK_INT(mime_text_encoding(&s), MIME_ENC_7BIT,
	    "stats 998-byte line 7bit");
	mime_text_stats_add(&s, longline, 1);
	CHECK_INT(mime_text_encoding(&s), MIME_ENC_QUOTED_PRINTABLE,
	    "stats 999-byte line qp");
	mime_text_stats_init(&s);
	mime_text_stats_add(&s, longline, 999);
	mime_text_stats_add(&s, "\nshort\n", 7);
	CHECK_INT(s.max_line, 999, "stats longest line kept");
	CHECK_STR(mime_encoding_name(MIME_ENC_QUOTED_PRINTABLE),
	    "quoted-printable", "encoding name qp");
	CHECK_STR(mime_encoding_name(MIME_ENC_BASE64), "base64",
	    "encoding name base64");
}

/* ---- header fields --------------------------------------------------- */

/* Returns 1 when s is not NULL and starts with prefix. */
static int
test_starts_with(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Checks every line of a header field: within limit, continuation lines
 * start with white space, ends in CRLF. */
static int
test_header_lines_ok(const char *h, size_t limit)
{
	const char *p = h, *eol;

	if (h == NULL)
		return 0;
	while ((eol = strstr(p, "\r\n")) != NULL) {
		if ((size_t)(eol - p) > limit)
			return 0;
		if (p != h && *p != ' ' && *p != '\t')
			return 0;
		p = eol + 2;
	}
	return *p == '\0' && p != h;
}

/* Removes folding (CRLF before white space) in place. */
static void
test_unfold(char *s)
{
	char *r = s, *w = s;

	while (*r != '\0') {
		if (r[0] == '\r' && r[1] == '\n' && (r[2] == ' ' ||
		    r[2] == '\t')) {
			r += 2;
			continue;
		}
		*w++ = *r++;
	}
	*w = '\0';
}

/* Returns 1 when s[0..len) is valid UTF-8 (no partial sequences). */
static int
test_utf8_complete(const unsigned char *s, size_t len)
{
	size_t i = 0, need, k;

	while (i < len) {
		if (s[i] < 0x80)
			need = 0;
		else if ((s[i] & 0xe0) == 0xc0)
			need = 1;
		else if ((s[i] & 0xf0) == 0xe0)
			need = 2;
		else if ((s[i] & 0xf8) == 0xf0)
			need = 3;
		else
			return 0;
		if (i + need >= len)
			return 0;
		for (k = 1; k <= need; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
		i += need + 1;
	}
	return 1;
}

/*
 * Decodes every encoded word in a header field, checking that each word
 * is at most 75 characters and contains whole UTF-8 characters.  Appends the
 * decoded bytes to out.  Returns the decoded length or -1.
 */
static long
test_decode_words(const char *h, unsigned char *out, int *words_ok)
{
	const char *p = h, *end;
	long n = 0, got;

	*words_ok = 1;
	while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
		if ((end = strstr(p + 10, "?=")) == NULL)
			return -1;
		if (end + 2 - p > 75)
			*words_ok = 0;
		got = test_b64_decode(p + 10, (size_t)(end - p - 10), out + n);
		if (got < 0)
			return -1;
		if (!test_utf8_complete(out + n, (size_t)got))
			*words_ok = 0;
		n += got;
		p = end + 2;
	}
	return n;
}

static void
test_header_text(void)
{
	static const char *const umlauts =
	    "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbc" "nchen, "
	    "\xe2\x82\xac 100 f\xc3\xbcr \xf0\x9f\x93\xa7 und \xe6\x97\xa5"
	    "\xe6\x9c\xac\xe8\xaa\x9e \xc3\xa4\xc3\xb6\xc3\xbc\xc3\xa4\xc3\xb6"
	    "\xc3\xbc\xc3\xa4\xc3\xb6\xc3\xbc\xc3\xa4\xc3\xb6\xc3\xbc\xc3\xa4"
	    "\xc3\xb6\xc3\xbc\xc3\xa4\xc3\xb6\xc3\xbc\xe2\x82\xac\xe2\x82\xac"
	    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac";
	unsigned char decoded[1024];
	char longer[600], expect[700], *h, *p;
	long dn;
	int words_ok;
	size_t i;

	h = mime_header_text("Subject", "Hello world");
	CHECK_STR(h, "Subject: Hello world\r\n", "header ascii stays");
	free(h);

	h = mime_header_text("Subject", "Gr\xc3\xbc\xc3\x9f" "e");
	CHECK_STR(h, "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n",
	    "header Gruesse encoded");
	free(h);

	h = mime_header_text("Subject", "");
	CHECK_STR(h, "Subject:\r\n", "header empty value");
	free(h);

	h = mime_header_text("Subject", "=?UTF-8?B?eA==?=");
	CHECK(test_starts_with(h, "Subject: =?UTF-8?B?PT9"),
	    "header lookalike word encoded");
	free(h);

	/* Long non-ASCII text: several words, each complete UTF-8. */
	h = mime_header_text("Subject", umlauts);
	CHECK(h != NULL, "header long utf-8 built");
	if (h != NULL) {
		CHECK(test_header_lines_ok(h, 76), "header long utf-8 lines");
		dn = test_decode_words(h, decoded, &words_ok);
		CHECK(words_ok, "header words <= 75, whole chars");
		CHECK_INT(dn, strlen(umlauts), "header long utf-8 length");
		CHECK(memcmp(decoded, umlauts, strlen(umlauts)) == 0,
		    "header long utf-8 decodes back");
		CHECK(strstr(h, "?=\r\n =?UTF-8?B?") != NULL,
		    "header words folded CRLF SP");
		free(h);
	}

	/* Long ASCII text folds on white space and unfolds unchanged. */
	p = longer;
	for (i = 0; i < 40; i++)
		p += sprintf(p, "word%zu ", i);
	p[-1] = '\0';
	h = mime_header_text("Subject", longer);
	CHECK(test_header_lines_ok(h, 78), "header ascii folds at 78");
	if (h != NULL) {
		CHECK(strchr(h, '\n') != strrchr(h, '\n'),
		    "header ascii has several lines");
		test_unfold(h);
		snprintf(expect, sizeof(expect), "Subject: %s\r\n", longer);
		CHECK_STR(h, expect, "header ascii unfolds unchanged");
		free(h);
	}

	/* A run without white space over 998 cannot fold: encoded. */
	memset(longer, 'x', 599);
	longer[599] = '\0';
	{
		char huge[1200];

		memset(huge, 'y', 1100);
		huge[1100] = '\0';
		h = mime_header_text("Subject", huge);
		CHECK(test_header_lines_ok(h, 998),
		    "header 1100-char word within 998");
		free(h);
	}
	h = mime_header_text("Subject", longer);
	CHECK(test_starts_with(h, "Subject: xxx"),
	    "header 599-char word stays plain");
	free(h);

	CHECK_INT(mime_needs_encoding("plain\ttext"), 0,
	    "needs encoding tab no");
	CHECK_INT(mime_needs_encoding("caf\xc3\xa9"), 1,
	    "needs encoding utf-8 yes");
	CHECK_INT(mime_needs_encoding("bell\a"), 1,
	    "needs encoding control yes");
}

static void
test_header_addresses(void)
{
	static const struct {
		const char *name, *display, *mailbox, *want;
	} cases[] = {
		{ "address bare mailbox", NULL, "a@x.test",
		    "To: a@x.test\r\n" },
		{ "address empty display", "", "a@x.test",
		    "To: a@x.test\r\n" },
		{ "address atom display", "Bob Smith", "bob@x.test",
		    "To: Bob Smith <bob@x.test>\r\n" },
		{ "address specials quoted", "Smith, Bob", "bob@x.test",
		    "To: \"Smith, Bob\" <bob@x.test>\r\n" },
		{ "address dot quoted", "Bob J. Smith", "bob@x.test",
		    "To: \"Bob J. Smith\" <bob@x.test>\r\n" },
		{ "address quote escaped", "Bob \"the\" \\ Smith",
		    "bob@x.test",
		    "To: \"Bob \\\"the\\\" \\\\ Smith\" <bob@x.test>\r\n" },
		{ "address utf-8 encoded", "J\xc3\xbcrgen", "j@x.test",
		    "To: =?UTF-8?B?SsO8cmdlbg==?= <j@x.test>\r\n" },
	};
	const char *displays[1], *mailboxes[1];
	const char *many_d[30], *many_m[30];
	char quotes[601], *h, *p;
	size_t i;
	int order_ok = 1;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		displays[0] = cases[i].display;
		mailboxes[0] = cases[i].mailbox;
		h = mime_header_addresses("To", displays, mailboxes, 1);
		CHECK_STR(h, cases[i].want, cases[i].name);
		free(h);
	}

	/* Escaping would make this display name too long for one line. */
	memset(quotes, '"', 600);
	quotes[600] = '\0';
	displays[0] = quotes;
	mailboxes[0] = "q@x.test";
	h = mime_header_addresses("To", displays, mailboxes, 1);
	CHECK(test_header_lines_ok(h, 998), "address long quoted within 998");
	CHECK(test_starts_with(h, "To: =?UTF-8?B?"),
	    "address long quoted encoded");
	free(h);

	for (i = 0; i < 30; i++) {
		many_d[i] = i % 3 == 0 ? "Some Person" : i % 3 == 1 ? NULL :
		    "M\xc3\xbcller, J\xc3\xbcrgen";
		many_m[i] = "someone.with.a.long.name@example.test";
	}
	h = mime_header_addresses("Cc", many_d, many_m, 30);
	CHECK(test_header_lines_ok(h, 78), "address list folds at 78");
	if (h != NULL) {
		test_unfold(h);
		p = h;
		for (i = 0; i < 30 && p != NULL; i++) {
			p = strstr(p, "someone.with.a.long.name@example.test");
			if (p == NULL)
				order_ok = 0;
			else
				p++;
		}
		CHECK(order_ok, "address list keeps all mailboxes");
		CHECK(strstr(h, "example.test>, Some Person <") != NULL,
		    "address list separated by comma space");
		free(h);
	}
}

/* ---- Date, Message-ID, boundary --------------------------------------- */

static void
test_date(void)
{
	char buf[64];

	setenv("TZ", "UTC", 1);
	tzset();
	mime_format_date(0, buf, sizeof(buf));
	CHECK_STR(buf, "Thu, 01 Jan 1970 00:00:00 +0000", "date epoch utc");

	/* POSIX TZ "XXX-1" is one hour east of UTC. */
	setenv("TZ", "CET-1", 1);
	tzset();
	mime_format_date(1796411229, buf, sizeof(buf));
	CHECK_STR(buf, "Fri, 04 Dec 2026 20:07:09 +0100", "date east of utc");

	setenv("TZ", "XST+5:30", 1);
	tzset();
	mime_format_date(1796411229, buf, sizeof(buf));
	CHECK_STR(buf, "Fri, 04 Dec 2026 13:37:09 -0530", "date west of utc");

	mime_format_date(1796411229, buf, 10);
	CHECK_INT(strlen(buf), 9, "date truncated to buffer");
	unsetenv("TZ");
	tzset();
}

static int
test_all_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (test_hex_value(s[i]) < 0)
			return 0;
	return 1;
}

static void
test_message_id(void)
{
	char id[320], id2[320], *dot, *at;

	mime_make_message_id("mail.example.test", id, sizeof(id));
	dot = strchr(id, '.');
	at = strchr(id, '@');
	CHECK(id[0] == '<', "message-id starts with <");
	CHECK(test_all_hex(id + 1, 32), "message-id 32 hex chars");
	CHECK(dot == id + 33, "message-id dot after hex");
	CHECK_STR(at, "@mail.example.test>", "message-id domain");
	CHECK(dot != NULL && at != NULL &&
	    strspn(dot + 1, "0123456789") == (size_t)(at - dot - 1),
	    "message-id time digits");
	mime_make_message_id("mail.example.test", id2, sizeof(id2));
	CHECK(strcmp(id, id2) != 0, "message-id differs each call");

	mime_make_message_id("bad host>name", id, sizeof(id));
	CHECK(strstr(id, "@localhost.localdomain>") != NULL,
	    "message-id bad domain fallback");
	mime_make_message_id(NULL, id, sizeof(id));
	CHECK(strstr(id, "@localhost.localdomain>") != NULL,
	    "message-id null domain fallback");
	mime_make_message_id("-x.test", id, sizeof(id));
	CHECK(strstr(id, "@localhost.localdomain>") != NULL,
	    "message-id leading hyphen fallback");
}

static void
test_boundary(void)
{
	/* bchars from RFC 2046: DIGIT ALPHA ' ( ) + _ , - . / : = ? space */
	static const char bchars[] = "0123456789"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "'()+_,-./:=? ";
	char b[80], b2[80];

	mime_make_boundary(b, sizeof(b));
	CHECK(strspn(b, bchars) == strlen(b), "boundary only bchars");
	CHECK(strlen(b) <= 70, "boundary at most 70 chars");
	CHECK(b[strlen(b) - 1] != ' ', "boundary no trailing space");
	CHECK(strncmp(b, "=_smtpool_", 10) == 0, "boundary prefix");
	CHECK(test_all_hex(b + 10, 32), "boundary 32 hex chars");
	CHECK_INT(strlen(b), 42, "boundary length");
	mime_make_boundary(b2, sizeof(b2));
	CHECK(strcmp(b, b2) != 0, "boundary differs each call");
}

static void
test_types(void)
{
	static const struct {
		const char *file, *type;
	} cases[] = {
		{ "report.pdf", "application/pdf" },
		{ "REPORT.PDF", "application/pdf" },
		{ "photo.JpEg", "image/jpeg" },
		{ "a.b.csv", "text/csv" },
		{ "notes.txt", "text/plain" },
		{ "page.htm", "text/html" },
		{ "data.xlsx", "application/vnd.openxmlformats-officedocument."
		    "spreadsheetml.sheet" },
		{ "archive.tar.gz", "application/gzip" },
		{ "noext", "application/octet-stream" },
		{ ".hidden", "application/octet-stream" },
		{ "trailing.", "application/octet-stream" },
		{ "mail.eml", "application/octet-stream" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_STR(mime_type_from_filename(cases[i].file),
		    cases[i].type, cases[i].file);
}

int
main(void)
{
	test_b64_vectors();
	test_b64_stream();
	test_b64_roundtrip();
	test_qp_cases();
	test_qp_long_lines();
	test_qp_roundtrip();
	test_text_encoding();
	test_header_text();
	test_header_addresses();
	test_date();
	test_message_id();
	test_boundary();
	test_types();
	return check_done();
}
