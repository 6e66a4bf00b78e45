/*
 * test_mail.c - unit tests for message composition: the SendMail header
 * list, the envelope and RCPT results, the header block, the MIME body
 * (decoded back here) and the size estimate.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mail.h"
#include "proto.h"

static uint32_t test_seed = 4242;

static unsigned
test_rand(void)
{
	test_seed = test_seed * 1103515245u + 12345u;
	return (test_seed >> 16) & 0x7fff;
}

static const char *
test_spool_dir(void)
{
	const char *dir = getenv("TMPDIR");

	return dir != NULL && *dir != '\0' ? dir : "/tmp";
}

static struct mail *
test_mail(size_t spool_memory)
{
	struct mail_limits limits;

	limits.spool_memory = spool_memory;
	limits.spool_dir = test_spool_dir();
	limits.hostname = "mail.example.test";
	return mail_new(&limits);
}

/* Reads a whole spool into a malloc'd, NUL-terminated buffer. */
static char *
test_read_spool(struct spool *sp, size_t *len)
{
	char *buf;
	size_t size, n = 0;
	ssize_t got;

	*len = 0;
	if (sp == NULL)
		return NULL;
	size = (size_t)spool_size(sp);
	if ((buf = malloc(size + 1)) == NULL)
		return NULL;
	spool_rewind(sp);
	while (n < size && (got = spool_read(sp, buf + n, size - n)) > 0)
		n += (size_t)got;
	buf[n] = '\0';
	*len = n;
	return buf;
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

/* ---- header list ------------------------------------------------------ */

static void
test_header_list(void)
{
	static char long_subject[1100];
	static const struct {
		const char *name, *list;
		int status;
		const char *err;
	} cases[] = {
		{ "list basic", "TO=a@x.test;FROM=b@y.test;SUBJECT=Hi;"
		    "PRIORITY=3", 0, NULL },
		{ "list every label", "TO=a@x.test,Bob <b@x.test>;"
		    "CC=c@x.test;BCC=d@x.test;FROM=Me <me@x.test>;"
		    "REPLY=r@x.test;SUBJECT=x;PRIORITY=1", 0, NULL },
		{ "list empty", "", 0, NULL },
		{ "list trailing semicolon", "TO=a@x.test;", 0, NULL },
		{ "list empty cc", "CC=;TO=a@x.test", 0, NULL },
		{ "list escaped semicolon", "SUBJECT=a;;b;TO=a@x.test", 0,
		    NULL },
		{ "list repeated label", "TO=a@x.test;TO=b@x.test",
		    PROTO_STATUS_INVALID_ARGUMENT, "\"TO\" given twice" },
		{ "list lower case label", "to=a@x.test",
		    PROTO_STATUS_INVALID_ARGUMENT, "upper case" },
		{ "list unknown label", "FOO=1", PROTO_STATUS_INVALID_ARGUMENT,
		    "unknown header label \"FOO\": use TO, FROM, CC, BCC, "
		    "SUBJECT, PRIORITY or REPLY" },
		{ "list item without =", "TO", PROTO_STATUS_INVALID_ARGUMENT,
		    "LABEL=VALUE" },
		{ "list priority 7", "PRIORITY=7",
		    PROTO_STATUS_INVALID_ARGUMENT,
		    "invalid PRIORITY \"7\": use 1 (highest) to 5 (lowest)" },
		{ "list priority 0", "PRIORITY=0",
		    PROTO_STATUS_INVALID_ARGUMENT, "PRIORITY \"0\"" },
		{ "list priority 12", "PRIORITY=12",
		    PROTO_STATUS_INVALID_ARGUMENT, "PRIORITY \"12\"" },
		{ "list priority word", "PRIORITY=high",
		    PROTO_STATUS_INVALID_ARGUMENT, "PRIORITY \"high\"" },
		{ "list bad to", "TO=not an address",
		    PROTO_STATUS_INVALID_ADDRESS, "invalid TO" },
		{ "list bad cc", "TO=a@x.test;CC=a@x.test,,b@x.test",
		    PROTO_STATUS_INVALID_ADDRESS, "invalid CC" },
		{ "list bad bcc", "BCC=@x.test", PROTO_STATUS_INVALID_ADDRESS,
		    "invalid BCC" },
		{ "list bad reply", "REPLY=r", PROTO_STATUS_INVALID_ADDRESS,
		    "invalid REPLY" },
		{ "list bad from", "FROM=me", PROTO_STATUS_INVALID_ADDRESS,
		    "invalid FROM" },
		{ "list two from", "FROM=a@x.test,b@x.test",
		    PROTO_STATUS_INVALID_ADDRESS, "exactly one" },
		{ "list CRLF in subject", "SUBJECT=hi\r\nBcc: x@y.test",
		    PROTO_STATUS_INVALID_ARGUMENT, "CR or LF" },
		{ "list LF in to", "TO=a@x.test\n", PROTO_STATUS_INVALID_ARGUMENT,
		    "CR or LF" },
		{ "list subject not utf-8", "SUBJECT=\xff\xfe",
		    PROTO_STATUS_INVALID_ARGUMENT, "UTF-8" },
		{ "list subject surrogate", "SUBJECT=\xed\xa0\x80",
		    PROTO_STATUS_INVALID_ARGUMENT, "UTF-8" },
		{ "list subject too long", long_subject,
		    PROTO_STATUS_INVALID_ARGUMENT, "maximum is 998" },
	};
	struct mail *m;
	char err[1024], name[96];
	size_t i;
	int rc;

	memcpy(long_subject, "SUBJECT=", 8);
	memset(long_subject + 8, 's', 999);
	long_subject[8 + 999] = '\0';

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m = test_mail(1 << 16);
		err[0] = '\0';
		rc = mail_set_header_list(m, cases[i].list, err, sizeof(err));
		CHECK_INT(rc, cases[i].status, cases[i].name);
		if (cases[i].err != NULL) {
			snprintf(name, sizeof(name), "%s message",
			    cases[i].name);
			CHECK(strstr(err, cases[i].err) != NULL, name);
			if (strstr(err, cases[i].err) == NULL)
				printf("#   message: %s\n", err);
		}
		if (rc != 0) {
			snprintf(name, sizeof(name), "%s leaves no rcpt",
			    cases[i].name);
			CHECK_INT(mail_rcpt_count(m), 0, name);
		}
		mail_free(m);
	}

	/* A subject of exactly 998 bytes is accepted. */
	m = test_mail(1 << 16);
	long_subject[8 + 998] = '\0';
	CHECK_INT(mail_set_header_list(m, long_subject, err, sizeof(err)), 0,
	    "list subject 998 bytes");
	mail_free(m);
}

static void
test_envelope(void)
{
	struct mail *m;
	char err[256];

	m = test_mail(1 << 16);
	CHECK_INT(mail_set_header_list(m, "TO=a@x.test", err, sizeof(err)),
	    0, "envelope without from parses");
	CHECK_INT(mail_check_envelope(m, err, sizeof(err)),
	    PROTO_STATUS_NO_RECIPIENT, "envelope without from -12");
	CHECK(strstr(err, "FROM") != NULL, "envelope names FROM");
	CHECK(mail_from_mailbox(m) == NULL, "envelope no from mailbox");

	CHECK_INT(mail_set_header_list(m, "FROM=me@x.test;CC=", err,
	    sizeof(err)), 0, "envelope without rcpt parses");
	CHECK_INT(mail_check_envelope(m, err, sizeof(err)),
	    PROTO_STATUS_NO_RECIPIENT, "envelope without rcpt -12");

	CHECK_INT(mail_set_header_list(m, "BCC=d@x.test;CC=c@x.test;"
	    "FROM=Me <me@x.test>;TO=a@x.test, B <b@x.test>", err,
	    sizeof(err)), 0, "envelope full parses");
	CHECK_INT(mail_check_envelope(m, err, sizeof(err)), 0,
	    "envelope full ok");
	CHECK_STR(mail_from_mailbox(m), "me@x.test", "envelope from mailbox");
	CHECK_INT(mail_rcpt_count(m), 4, "envelope rcpt count");
	CHECK_STR(mail_rcpt_mailbox(m, 0), "a@x.test", "rcpt 0 is first to");
	CHECK_STR(mail_rcpt_mailbox(m, 1), "b@x.test", "rcpt 1 is second to");
	CHECK_STR(mail_rcpt_mailbox(m, 2), "c@x.test", "rcpt 2 is cc");
	CHECK_STR(mail_rcpt_mailbox(m, 3), "d@x.test", "rcpt 3 is bcc");
	CHECK_INT(mail_rcpt_list(m, 1), MAIL_LIST_TO, "rcpt 1 list to");
	CHECK_INT(mail_rcpt_list(m, 2), MAIL_LIST_CC, "rcpt 2 list cc");
	CHECK_INT(mail_rcpt_list(m, 3), MAIL_LIST_BCC, "rcpt 3 list bcc");
	CHECK(mail_rcpt_mailbox(m, 4) == NULL, "rcpt out of range null");
	CHECK(mail_rcpt_result(m, 4) == NULL, "rcpt result out of range");
	CHECK_INT(mail_rcpt_result(m, 0)->code, 0, "rcpt result starts 0");
	mail_free(m);
}

/* ---- composed messages ------------------------------------------------ */

/* A composed message: header block and body. */
struct test_msg {
	char	*headers;
	size_t	 hlen;
	char	*body;
	size_t	 blen;
	uint64_t estimate;
};

static void
test_msg_free(struct test_msg *t)
{
	free(t->headers);
	free(t->body);
	memset(t, 0, sizeof(*t));
}

/* Finishes m and reads its headers and body. */
static int
test_compose(struct mail *m, struct test_msg *t)
{
	char err[256];

	memset(t, 0, sizeof(*t));
	if (mail_finish(m, err, sizeof(err)) != 0)
		return -1;
	t->estimate = mail_size_estimate(m);
	if (mail_write_headers(m, &t->headers, &t->hlen) != 0)
		return -1;
	t->body = test_read_spool(mail_body(m), &t->blen);
	return t->body != NULL ? 0 : -1;
}

/* Returns 1 when haystack is not NULL and contains needle. */
static int
test_contains(const char *haystack, const char *needle)
{
	return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* Returns 1 when s is not NULL and ends with suffix. */
static int
test_ends_with(const char *s, const char *suffix)
{
	return s != NULL && strlen(s) >= strlen(suffix) &&
	    strcmp(s + strlen(s) - strlen(suffix), suffix) == 0;
}

static int
test_has_header(const struct test_msg *t, const char *line)
{
	return strstr(t->headers, line) != NULL;
}

static void
test_text_only(void)
{
	struct mail *m;
	struct test_msg t;
	char err[256];
	int rc;

	m = test_mail(1 << 16);
	rc = mail_set_header_list(m, "FROM=Me <me@x.test>;TO=a@x.test;"
	    "BCC=hidden@x.test;SUBJECT=Plain;; subject;PRIORITY=1;"
	    "REPLY=r@x.test", err, sizeof(err));
	CHECK_INT(rc, 0, "text-only list parses");
	CHECK_INT(mail_text_write(m, "Hello\nWorld", 11, err, sizeof(err)), 0,
	    "text-only write");
	CHECK_INT(test_compose(m, &t), 0, "text-only composes");

	CHECK(strncmp(t.headers, "Date: ", 6) == 0, "text-only Date first");
	CHECK(test_has_header(&t, "\r\nFrom: Me <me@x.test>\r\n"),
	    "text-only From");
	CHECK(test_has_header(&t, "\r\nReply-To: r@x.test\r\n"),
	    "text-only Reply-To");
	CHECK(test_has_header(&t, "\r\nTo: a@x.test\r\n"), "text-only To");
	CHECK(test_has_header(&t, "\r\nSubject: Plain; subject\r\n"),
	    "text-only Subject with ;");
	CHECK(test_has_header(&t, "\r\nX-Priority: 1 (Highest)\r\n"),
	    "text-only X-Priority");
	CHECK(test_has_header(&t, "\r\nImportance: high\r\n"),
	    "text-only Importance");
	CHECK(test_has_header(&t, "\r\nMessage-ID: <"),
	    "text-only Message-ID");
	CHECK(test_has_header(&t, "@mail.example.test>\r\n"),
	    "text-only Message-ID domain");
	CHECK(test_has_header(&t, "\r\nMIME-Version: 1.0\r\n"),
	    "text-only MIME-Version");
	CHECK(test_has_header(&t, "\r\nContent-Type: text/plain; "
	    "charset=UTF-8\r\n"), "text-only Content-Type");
	CHECK(test_has_header(&t, "\r\nContent-Transfer-Encoding: 7bit\r\n"),
	    "text-only 7bit");
	CHECK(strstr(t.headers, "hidden") == NULL, "text-only no Bcc");
	CHECK(strstr(t.headers, "Cc:") == NULL, "text-only no Cc header");
	CHECK(test_ends_with(t.headers, "\r\n\r\n"),
	    "text-only headers end in empty line");
	CHECK_STR(t.body, "Hello\r\nWorld\r\n", "text-only body CRLF");
	CHECK(t.estimate >= t.hlen + t.blen, "text-only estimate >= size");
	test_msg_free(&t);
	mail_free(m);

	/* Non-ASCII text and subject: quoted-printable and encoded words. */
	m = test_mail(1 << 16);
	rc = mail_set_header_list(m, "FROM=me@x.test;TO=a@x.test;"
	    "SUBJECT=Gr\xc3\xbc\xc3\x9f" "e;PRIORITY=5", err, sizeof(err));
	CHECK_INT(rc, 0, "utf-8 list parses");
	mail_text_write(m, "Gr\xc3\xbc", 4, err, sizeof(err));
	mail_text_write(m, "\xc3\x9f" "e \r\n.\r\n", 8, err, sizeof(err));
	CHECK_INT(test_compose(m, &t), 0, "utf-8 composes");
	CHECK(test_has_header(&t, "\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"),
	    "utf-8 subject encoded");
	CHECK(test_has_header(&t, "\r\nContent-Transfer-Encoding: "
	    "quoted-printable\r\n"), "utf-8 text is qp");
	CHECK(test_has_header(&t, "\r\nX-Priority: 5 (Lowest)\r\n"),
	    "utf-8 priority 5 lowest");
	CHECK(test_has_header(&t, "\r\nImportance: low\r\n"),
	    "utf-8 importance low");
	CHECK_STR(t.body, "Gr=C3=BC=C3=9Fe=20\r\n=2E\r\n", "utf-8 body qp");
	CHECK(t.estimate >= t.hlen + t.blen, "utf-8 estimate >= size");
	test_msg_free(&t);
	mail_free(m);

	/* Nothing at all: an empty text/plain body. */
	m = test_mail(1 << 16);
	mail_set_header_list(m, "FROM=me@x.test;TO=a@x.test", err,
	    sizeof(err));
	CHECK_INT(test_compose(m, &t), 0, "empty message composes");
	CHECK_INT(t.blen, 0, "empty message empty body");
	CHECK(strstr(t.headers, "Subject:") == NULL,
	    "empty message no Subject");
	CHECK(strstr(t.headers, "X-Priority") == NULL,
	    "empty message no X-Priority");
	test_msg_free(&t);
	mail_free(m);
}

/* Returns the part of body between delimiter number n (0-based) and the
 * next one, as a malloc'd string, or NULL. */
static char *
test_part(const char *body, const char *boundary, int n)
{
	char delim[128];
	const char *p = body, *end;
	char *part;
	int i;

	snprintf(delim, sizeof(delim), "--%s\r\n", boundary);
	for (i = 0; i <= n; i++) {
		if ((p = strstr(p, delim)) == NULL)
			return NULL;
		p += strlen(delim);
	}
	snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	if ((end = strstr(p, delim)) == NULL)
		return NULL;
	if ((part = malloc((size_t)(end - p) + 1)) == NULL)
		return NULL;
	memcpy(part, p, (size_t)(end - p));
	part[end - p] = '\0';
	return part;
}

/* Decodes a base64 part body (after its header) and compares. */
static int
test_part_decodes(const char *part, const unsigned char *want, size_t len)
{
	const char *data;
	unsigned char *out;
	long n;
	int same;

	if (part == NULL || (data = strstr(part, "\r\n\r\n")) == NULL ||
	    (out = malloc(len + 16)) == NULL)
		return 0;
	data += 4;
	n = test_b64_decode(data, strlen(data), out);
	same = n == (long)len && memcmp(out, want, len) == 0;
	free(out);
	return same;
}

/* Extracts the boundary parameter of the top-level Content-Type. */
static int
test_boundary(const char *headers, char *out, size_t outlen)
{
	const char *p = strstr(headers, "boundary=\""), *end;

	if (p == NULL)
		return -1;
	p += strlen("boundary=\"");
	if ((end = strchr(p, '"')) == NULL || (size_t)(end - p) >= outlen)
		return -1;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return 0;
}

/* Composes text plus two attachments, each fed in pieces. */
static int
test_compose_attachments(struct mail *m, const unsigned char *bin,
    size_t binlen, struct test_msg *t)
{
	char err[256];
	size_t pos, piece;

	if (mail_set_header_list(m, "FROM=me@x.test;TO=a@x.test;"
	    "SUBJECT=Files", err, sizeof(err)) != 0)
		return -1;
	if (mail_text_write(m, "See the files.\n", 15, err, sizeof(err)) != 0)
		return -1;
	if (mail_attachment_begin(m, "report.pdf", NULL, err,
	    sizeof(err)) != 0)
		return -1;
	for (pos = 0; pos < binlen; pos += piece) {
		piece = 1 + (pos * 7919) % 5000;
		if (piece > binlen - pos)
			piece = binlen - pos;
		if (mail_attachment_write(m, bin + pos, piece, err,
		    sizeof(err)) != 0)
			return -1;
	}
	if (mail_attachment_begin(m, "Gr\xc3\xbc\xc3\x9f" "e \"x\".txt",
	    "Text/Plain", err, sizeof(err)) != 0)
		return -1;
	if (mail_attachment_write(m, "hi", 2, err, sizeof(err)) != 0)
		return -1;
	if (mail_attachment_begin(m, "empty \"q\".bin", "", err,
	    sizeof(err)) != 0)
		return -1;
	return test_compose(m, t);
}

static void
test_attachments(void)
{
	static unsigned char bin[100000];
	struct mail *m, *spill;
	struct test_msg t, t2;
	char boundary[128], line[160], *part;
	size_t i;

	for (i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)test_rand();

	m = test_mail(1 << 20);
	CHECK_INT(test_compose_attachments(m, bin, sizeof(bin), &t), 0,
	    "attachments compose");
	CHECK(test_has_header(&t, "\r\nContent-Type: multipart/mixed;"),
	    "attachments multipart/mixed");
	CHECK_INT(test_boundary(t.headers, boundary, sizeof(boundary)), 0,
	    "attachments boundary in header");
	snprintf(line, sizeof(line), "--%s\r\n", boundary);
	CHECK(strncmp(t.body, line, strlen(line)) == 0,
	    "attachments body starts with delimiter");

	part = test_part(t.body, boundary, 0);
	CHECK_STR(part, "Content-Type: text/plain; charset=UTF-8\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n\r\nSee the files.\r\n",
	    "attachments text part first");
	free(part);

	part = test_part(t.body, boundary, 1);
	CHECK(test_contains(part, "Content-Type: application/pdf;"
	    "\r\n name=\"report.pdf\"\r\n"),
	    "attachment pdf content type");
	CHECK(test_contains(part, "Content-Disposition: attachment;"
	    "\r\n filename=\"report.pdf\"\r\n"),
	    "attachment pdf disposition");
	CHECK(test_contains(part, "Content-Transfer-Encoding: "
	    "base64\r\n\r\n"), "attachment pdf base64");
	CHECK(test_part_decodes(part, bin, sizeof(bin)),
	    "attachment pdf decodes to input");
	free(part);

	part = test_part(t.body, boundary, 2);
	CHECK(test_contains(part, "Content-Type: text/plain;\r\n "
	    "name=\"=?UTF-8?B?"), "attachment utf-8 name words");
	CHECK(test_contains(part, "filename*=UTF-8''"
	    "Gr%C3%BC%C3%9Fe%20%22x%22.txt\r\n"),
	    "attachment utf-8 filename*");
	CHECK(test_part_decodes(part, (const unsigned char *)"hi", 2),
	    "attachment utf-8 decodes");
	free(part);

	part = test_part(t.body, boundary, 3);
	CHECK(test_contains(part, "Content-Type: application/octet-stream;"
	    "\r\n name=\"empty \\\"q\\\".bin\""),
	    "attachment quote escaped");
	CHECK(test_ends_with(part, "\r\n\r\n"), "attachment empty body");
	free(part);

	snprintf(line, sizeof(line), "\r\n--%s--\r\n", boundary);
	CHECK(test_ends_with(t.body, line), "attachments closing delimiter");
	CHECK(t.estimate >= t.hlen + t.blen, "attachments estimate >= size");
	CHECK(t.estimate < (t.hlen + t.blen) * 11 / 10 + 4096,
	    "attachments estimate close");
	CHECK(!spool_on_disk(mail_body(m)), "attachments body in memory");

	/* The same message with a tiny memory limit spills to disk and
	 * composes the same body (apart from the random boundary). */
	spill = test_mail(16);
	CHECK_INT(test_compose_attachments(spill, bin, sizeof(bin), &t2), 0,
	    "spilled attachments compose");
	CHECK(spool_on_disk(mail_body(spill)), "spilled body on disk");
	CHECK_INT(t2.blen, t.blen, "spilled body same size");
	{
		char boundary2[128], *p;
		size_t n = strlen(boundary);

		if (test_boundary(t2.headers, boundary2, sizeof(boundary2)) ==
		    0 && strlen(boundary2) == n) {
			/* Replace the second boundary by the first. */
			for (p = t2.body; (p = strstr(p, boundary2)) != NULL;
			    p += n)
				memcpy(p, boundary, n);
		}
		CHECK_STR(t2.body, t.body, "spilled body same bytes");
	}
	test_msg_free(&t2);
	mail_free(spill);
	test_msg_free(&t);
	mail_free(m);

	/* An attachment without text starts the body with its part. */
	m = test_mail(1 << 16);
	mail_set_header_list(m, "FROM=me@x.test;TO=a@x.test", NULL, 0);
	CHECK_INT(mail_attachment_begin(m, "data.csv", NULL, NULL, 0), 0,
	    "attachment only begins");
	mail_attachment_write(m, "a,b\n", 4, NULL, 0);
	CHECK_INT(test_compose(m, &t), 0, "attachment only composes");
	test_boundary(t.headers, boundary, sizeof(boundary));
	part = test_part(t.body, boundary, 0);
	CHECK(test_contains(part, "Content-Type: text/csv;"),
	    "attachment only first part csv");
	CHECK(test_part_decodes(part, (const unsigned char *)"a,b\n", 4),
	    "attachment only decodes");
	free(part);
	test_msg_free(&t);
	mail_free(m);
}

static void
test_body_errors(void)
{
	static const struct {
		const char *name, *file, *type;
	} bad[] = {
		{ "attachment name with slash", "dir/a.txt", NULL },
		{ "attachment name with backslash", "..\\a.txt", NULL },
		{ "attachment name with CRLF", "a\r\nb.txt", NULL },
		{ "attachment name with tab", "a\tb.txt", NULL },
		{ "attachment name empty", "", NULL },
		{ "attachment name dot dot", "..", NULL },
		{ "attachment name not utf-8", "\xff.txt", NULL },
		{ "content type no slash", "a.txt", "text" },
		{ "content type with space", "a.txt", "text/ plain" },
		{ "content type with params", "a.txt",
		    "text/plain; charset=x" },
		{ "content type two slashes", "a.txt", "a/b/c" },
	};
	char longname[300], err[256];
	struct mail *m;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = test_mail(1 << 16);
		err[0] = '\0';
		CHECK_INT(mail_attachment_begin(m, bad[i].file, bad[i].type,
		    err, sizeof(err)), PROTO_STATUS_INVALID_ARGUMENT,
		    bad[i].name);
		CHECK(err[0] != '\0', "bad attachment has message");
		mail_free(m);
	}

	m = test_mail(1 << 16);
	memset(longname, 'n', 256);
	longname[256] = '\0';
	CHECK_INT(mail_attachment_begin(m, longname, NULL, err, sizeof(err)),
	    PROTO_STATUS_INVALID_ARGUMENT, "attachment name 256 bytes");
	longname[255] = '\0';
	CHECK_INT(mail_attachment_begin(m, longname, NULL, err, sizeof(err)),
	    0, "attachment name 255 bytes");
	CHECK_INT(mail_text_write(m, "x", 1, err, sizeof(err)),
	    PROTO_STATUS_INVALID_ARGUMENT, "text after attachment");
	CHECK_INT(mail_finish(m, err, sizeof(err)), 0, "finish once");
	CHECK_INT(mail_finish(m, err, sizeof(err)),
	    PROTO_STATUS_INVALID_ARGUMENT, "finish twice");
	CHECK_INT(mail_attachment_begin(m, "b.txt", NULL, err, sizeof(err)),
	    PROTO_STATUS_INVALID_ARGUMENT, "attachment after finish");
	mail_free(m);

	m = test_mail(1 << 16);
	CHECK_INT(mail_attachment_write(m, "x", 1, err, sizeof(err)),
	    PROTO_STATUS_INVALID_ARGUMENT, "attachment data before begin");
	mail_free(m);
}

static void
test_refused(void)
{
	struct mail *m;
	char err[256], *h, *h2;
	size_t len, len2;
	char *id1, id_line[400] = "(none)";

	m = test_mail(1 << 16);
	CHECK_INT(mail_set_header_list(m, "FROM=me@x.test;"
	    "TO=keep@x.test,Gone <gone@x.test>;CC=cc@x.test;"
	    "BCC=bcc@x.test", err, sizeof(err)), 0, "refused list parses");
	mail_text_write(m, "x", 1, err, sizeof(err));
	mail_finish(m, err, sizeof(err));

	CHECK_INT(mail_write_headers(m, &h, &len), 0, "refused headers all");
	CHECK(strstr(h, "To: keep@x.test, Gone <gone@x.test>\r\n") != NULL,
	    "before rcpt every To shown");
	CHECK(strstr(h, "Cc: cc@x.test\r\n") != NULL,
	    "before rcpt Cc shown");
	CHECK(strstr(h, "bcc@x.test") == NULL, "before rcpt no Bcc");
	id1 = strstr(h, "Message-ID: ");
	if (id1 != NULL)
		snprintf(id_line, sizeof(id_line), "%.*s",
		    (int)strcspn(id1, "\r"), id1);

	mail_rcpt_set_result(m, 0, 250, "ok");
	mail_rcpt_set_result(m, 1, 550, "5.1.1 no such user");
	mail_rcpt_set_result(m, 2, 450, "try later");
	mail_rcpt_set_result(m, 3, 250, NULL);
	CHECK_INT(mail_rcpt_result(m, 1)->code, 550, "refused code kept");
	CHECK_STR(mail_rcpt_result(m, 1)->text, "5.1.1 no such user",
	    "refused text kept");
	CHECK(mail_rcpt_result(m, 0)->text == NULL, "accepted no text");

	CHECK_INT(mail_write_headers(m, &h2, &len2), 0,
	    "refused headers partial");
	CHECK(strstr(h2, "To: keep@x.test\r\n") != NULL,
	    "refused To left out");
	CHECK(strstr(h2, "gone@x.test") == NULL, "refused To absent");
	CHECK(strstr(h2, "Cc:") == NULL, "all Cc refused no header");
	CHECK(strstr(h2, "bcc@x.test") == NULL, "accepted Bcc still hidden");
	CHECK(id1 != NULL, "Message-ID in first headers");
	CHECK(test_contains(h2, id_line), "Message-ID reused");
	CHECK(mail_size_estimate(m) >= len + spool_size(mail_body(m)),
	    "refused estimate >= size");
	free(h2);

	mail_rcpt_set_result(m, 0, 551, "no");
	CHECK_INT(mail_write_headers(m, &h2, &len2), 0,
	    "refused headers no To");
	CHECK(strstr(h2, "\r\nTo:") == NULL, "every To refused no header");
	free(h2);

	mail_rcpt_reset(m);
	CHECK_INT(mail_rcpt_result(m, 1)->code, 0, "reset clears code");
	CHECK(mail_rcpt_result(m, 1)->text == NULL, "reset clears text");
	CHECK_INT(mail_write_headers(m, &h2, &len2), 0, "reset headers");
	CHECK(test_contains(h2, "gone@x.test"), "reset shows refused To");
	CHECK(test_contains(h2, "Cc: "), "reset shows Cc again");
	free(h2);
	free(h);
	mail_free(m);
}

static void
test_estimate_many(void)
{
	struct mail *m;
	char list[8192], *p, err[256], *h;
	size_t i, len;

	/* Many recipients whose headers fold, half of them refused. */
	p = list;
	p += sprintf(p, "FROM=me@x.test;SUBJECT=A subject that is long "
	    "enough to need folding when it goes past seventy-eight "
	    "columns, really;TO=");
	for (i = 0; i < 40; i++)
		p += sprintf(p, "%sPerson %zu <p%zu.with.a.longer.name@x.test>",
		    i ? "," : "", i, i);
	p += sprintf(p, ";CC=");
	for (i = 0; i < 40; i++)
		p += sprintf(p, "%sM\xc3\xbcller %zu <m%zu@x.test>",
		    i ? "," : "", i, i);
	m = test_mail(1 << 16);
	CHECK_INT(mail_set_header_list(m, list, err, sizeof(err)), 0,
	    "estimate list parses");
	mail_text_write(m, "body\n", 5, err, sizeof(err));
	mail_finish(m, err, sizeof(err));
	for (i = 0; i < mail_rcpt_count(m); i += 2)
		mail_rcpt_set_result(m, i, 550, "no");
	CHECK_INT(mail_write_headers(m, &h, &len), 0, "estimate headers");
	CHECK(mail_size_estimate(m) >= len + spool_size(mail_body(m)),
	    "estimate many >= size");
	free(h);
	mail_free(m);
}

int
main(void)
{
	test_header_list();
	test_envelope();
	test_text_only();
	test_attachments();
	test_body_errors();
	test_refused();
	test_estimate_many();
	return check_done();
}
