/*
 * test_reply.c - SMTP reply lines, enhanced status codes, summaries and
 * EHLO keywords.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "reply.h"

#define MAX_CASE_LINES	4

/* Replies given as lines.  After the last line either the parsed result
 * or, when error is set, a substring of the error message is expected. */
static const struct {
	const char	*lines[MAX_CASE_LINES + 1];
	int		 code;
	const char	*text;
	const char	*enhanced;
	const char	*error;
} cases[] = {
	{ { "250 OK", NULL }, 250, "OK", "", NULL },
	{ { "220 mx.example.test ESMTP ready", NULL }, 220,
	    "mx.example.test ESMTP ready", "", NULL },
	{ { "250 ", NULL }, 250, "", "", NULL },
	{ { "250", NULL }, 250, "", "", NULL },
	{ { "250-first", "250-second", "250 last", NULL }, 250,
	    "first\nsecond\nlast", "", NULL },
	{ { "250-", "250", NULL }, 250, "\n", "", NULL },
	{ { "554-5.7.1 no", "554 5.7.1 really no", NULL }, 554,
	    "5.7.1 no\n5.7.1 really no", "5.7.1", NULL },
	{ { "250 2.1.0 Sender OK", NULL }, 250, "2.1.0 Sender OK", "2.1.0",
	    NULL },
	{ { "550 5.1.1", NULL }, 550, "5.1.1", "5.1.1", NULL },
	{ { "452 4.2.2 Mailbox full", NULL }, 452, "4.2.2 Mailbox full",
	    "4.2.2", NULL },
	{ { "552 5.123.456 big", NULL }, 552, "5.123.456 big", "5.123.456",
	    NULL },
	/* Not enhanced codes: wrong class, too many digits, no separator. */
	{ { "550 4.1.1 class differs", NULL }, 550, "4.1.1 class differs", "",
	    NULL },
	{ { "354 3.0.0 start input", NULL }, 354, "3.0.0 start input", "",
	    NULL },
	{ { "550 5.1234.1 x", NULL }, 550, "5.1234.1 x", "", NULL },
	{ { "550 5.1.1234 x", NULL }, 550, "5.1.1234 x", "", NULL },
	{ { "550 5.1.1x", NULL }, 550, "5.1.1x", "", NULL },
	{ { "550 5.1 x", NULL }, 550, "5.1 x", "", NULL },
	{ { "550 5..1 x", NULL }, 550, "5..1 x", "", NULL },
	{ { "550 5.1.", NULL }, 550, "5.1.", "", NULL },
	{ { "550 User unknown 5.1.1", NULL }, 550, "User unknown 5.1.1", "",
	    NULL },
	/* Only the first line's code counts. */
	{ { "550-User unknown", "550 5.1.1 x", NULL }, 550,
	    "User unknown\n5.1.1 x", "", NULL },
	/* Malformed lines. */
	{ { "", NULL }, 0, NULL, NULL, "three-digit code" },
	{ { "25", NULL }, 0, NULL, NULL, "three-digit code" },
	{ { "2x0 OK", NULL }, 0, NULL, NULL, "three-digit code" },
	{ { "199 low", NULL }, 0, NULL, NULL, "three-digit code" },
	{ { "650 high", NULL }, 0, NULL, NULL, "three-digit code" },
	{ { "-250 x", NULL }, 0, NULL, NULL, "three-digit code" },
	{ { "250OK", NULL }, 0, NULL, NULL, "followed by 'O'" },
	{ { "250_OK", NULL }, 0, NULL, NULL, "followed by '_'" },
	{ { "250-a", "251 b", NULL }, 0, NULL, NULL,
	    "code 251 inside a reply that started with code 250" },
	{ { "250-a", "250-b", "550 c", NULL }, 0, NULL, NULL,
	    "code 550 inside" },
	{ { "250-a", "garbage", NULL }, 0, NULL, NULL, "three-digit code" },
	{ { NULL }, 0, NULL, NULL, NULL },
};

static void
test_table(void)
{
	struct reply_parser	 p;
	struct reply		 r;
	char			 err[256], name[128];
	size_t			 i, k;
	int			 rc = REPLY_FEED_ERROR, more_ok;

	for (i = 0; cases[i].lines[0] != NULL; i++) {
		reply_parser_init(&p);
		memset(&r, 0, sizeof(r));
		err[0] = '\0';
		more_ok = 1;
		for (k = 0; cases[i].lines[k] != NULL; k++) {
			rc = reply_parser_feed(&p, cases[i].lines[k],
			    strlen(cases[i].lines[k]), &r, err, sizeof(err));
			if (cases[i].lines[k + 1] != NULL &&
			    rc != REPLY_FEED_MORE)
				more_ok = 0;
			if (rc == REPLY_FEED_ERROR)
				break;
		}
		if (cases[i].error == NULL) {
			snprintf(name, sizeof(name), "case %zu continuation "
			    "lines", i);
			CHECK(more_ok, name);
			snprintf(name, sizeof(name), "case %zu done", i);
			CHECK_INT(rc, REPLY_FEED_DONE, name);
			if (rc == REPLY_FEED_ERROR)
				printf("#   error: %s\n", err);
			snprintf(name, sizeof(name), "case %zu code", i);
			CHECK_INT(r.code, cases[i].code, name);
			snprintf(name, sizeof(name), "case %zu text", i);
			CHECK_STR(r.text, cases[i].text, name);
			snprintf(name, sizeof(name), "case %zu text length", i);
			CHECK_INT(r.textlen, strlen(cases[i].text), name);
			snprintf(name, sizeof(name), "case %zu line count", i);
			CHECK_INT(r.nlines, k, name);
			snprintf(name, sizeof(name), "case %zu enhanced", i);
			CHECK_STR(r.enhanced, cases[i].enhanced, name);
		} else {
			snprintf(name, sizeof(name), "case %zu rejected", i);
			CHECK_INT(rc, REPLY_FEED_ERROR, name);
			snprintf(name, sizeof(name), "case %zu error text", i);
			CHECK(strstr(err, cases[i].error) != NULL, name);
			if (strstr(err, cases[i].error) == NULL)
				printf("#   error: %s\n#   want: %s\n", err,
				    cases[i].error);
			snprintf(name, sizeof(name), "case %zu parser reset",
			    i);
			CHECK_INT(p.code, 0, name);
			CHECK_INT(p.nlines, 0, name);
			CHECK(p.text == NULL, name);
		}
		reply_clear(&r);
		reply_parser_reset(&p);
	}
}

/* REPLY_MAX_LINES lines are accepted and one more is an error.  So is a
 * line longer than REPLY_MAX_LINE or one with a NUL byte. */
static void
test_limits(void)
{
	struct reply_parser	 p;
	struct reply		 r;
	char			 err[256], *line;
	int			 i, rc = 0, ok = 1;

	reply_parser_init(&p);
	for (i = 0; i < REPLY_MAX_LINES - 1; i++)
		if (reply_parser_feed(&p, "250-x", 5, &r, err, sizeof(err)) !=
		    REPLY_FEED_MORE)
			ok = 0;
	CHECK(ok, "limits lines below max accepted");
	rc = reply_parser_feed(&p, "250 x", 5, &r, err, sizeof(err));
	CHECK_INT(rc, REPLY_FEED_DONE, "limits max lines accepted");
	CHECK_INT(r.nlines, REPLY_MAX_LINES, "limits max line count");
	reply_clear(&r);

	for (i = 0; i < REPLY_MAX_LINES; i++)
		rc = reply_parser_feed(&p, "250-x", 5, &r, err, sizeof(err));
	CHECK_INT(rc, REPLY_FEED_MORE, "limits 64 continuation lines");
	rc = reply_parser_feed(&p, "250 x", 5, &r, err, sizeof(err));
	CHECK_INT(rc, REPLY_FEED_ERROR, "limits too many lines rejected");
	CHECK(strstr(err, "more than 64 lines") != NULL,
	    "limits too many lines message");

	line = malloc(REPLY_MAX_LINE + 2);
	if (line == NULL)
		abort();
	memset(line, 'x', REPLY_MAX_LINE + 1);
	memcpy(line, "250 ", 4);
	rc = reply_parser_feed(&p, line, REPLY_MAX_LINE, &r, err, sizeof(err));
	CHECK_INT(rc, REPLY_FEED_DONE, "limits longest line accepted");
	reply_clear(&r);
	rc = reply_parser_feed(&p, line, REPLY_MAX_LINE + 1, &r, err,
	    sizeof(err));
	CHECK_INT(rc, REPLY_FEED_ERROR, "limits long line rejected");
	CHECK(strstr(err, "longer than the maximum") != NULL,
	    "limits long line message");
	free(line);

	rc = reply_parser_feed(&p, "250 a\0b", 7, &r, err, sizeof(err));
	CHECK_INT(rc, REPLY_FEED_ERROR, "limits NUL byte rejected");

	/* The parser works again after an error. */
	rc = reply_parser_feed(&p, "221 bye", 7, &r, err, sizeof(err));
	CHECK_INT(rc, REPLY_FEED_DONE, "limits parser usable after error");
	CHECK_INT(r.code, 221, "limits code after error");
	reply_clear(&r);
	reply_parser_reset(&p);
}

/* Two replies in a row through one parser, and a deep copy. */
static void
test_sequence_and_copy(void)
{
	struct reply_parser	 p;
	struct reply		 a, b, c;
	char			 err[256];

	reply_parser_init(&p);
	CHECK_INT(reply_parser_feed(&p, "250-one", 7, &a, err, sizeof(err)),
	    REPLY_FEED_MORE, "sequence first line");
	CHECK_INT(reply_parser_feed(&p, "250 2.0.0 two", 13, &a, err,
	    sizeof(err)), REPLY_FEED_DONE, "sequence first reply done");
	CHECK_INT(reply_parser_feed(&p, "354 go", 6, &b, err, sizeof(err)),
	    REPLY_FEED_DONE, "sequence second reply done");
	CHECK_INT(b.code, 354, "sequence second code");
	CHECK_STR(b.text, "go", "sequence second text");
	CHECK_INT(b.nlines, 1, "sequence second line count");

	CHECK_INT(reply_copy(&c, &a), 0, "copy succeeds");
	CHECK(c.text != a.text, "copy has its own text");
	CHECK_STR(c.text, "one\n2.0.0 two", "copy text");
	CHECK_INT(c.code, 250, "copy code");
	reply_clear(&a);
	CHECK(a.text == NULL, "clear frees text");
	CHECK_INT(a.code, 0, "clear resets code");
	CHECK_STR(c.text, "one\n2.0.0 two", "copy survives clear");
	reply_clear(&b);
	reply_clear(&c);
	reply_parser_reset(&p);
}

static void
test_summary(void)
{
	struct reply	 r;
	char		 buf[64], small[8];
	char		 text[] = "first\nsecond\tx\001";

	memset(&r, 0, sizeof(r));
	r.code = 550;
	r.text = text;
	r.textlen = strlen(text);
	reply_summary(&r, buf, sizeof(buf));
	CHECK_STR(buf, "550 first second x?", "summary joins lines");
	reply_summary(&r, small, sizeof(small));
	CHECK_STR(small, "550 fir", "summary cut to fit");

	r.text = NULL;
	r.textlen = 0;
	reply_summary(&r, buf, sizeof(buf));
	CHECK_STR(buf, "550", "summary without text");
}

/* EHLO replies: text after the code of each line, as the parser stores
 * it, with the expected flags, SIZE and AUTH list. */
static const struct {
	const char	*text;
	unsigned	 flags;
	unsigned long long size;
	const char	*auth;
} ehlo_cases[] = {
	{ "mx.example.test", 0, 0, "" },
	{ "mx.example.test Hello\nPIPELINING\nSIZE 10240000\n8BITMIME\n"
	    "STARTTLS\nENHANCEDSTATUSCODES\nSMTPUTF8\nCHUNKING",
	    EHLO_PIPELINING | EHLO_SIZE | EHLO_8BITMIME | EHLO_STARTTLS |
	    EHLO_ENHANCEDSTATUSCODES | EHLO_SMTPUTF8 | EHLO_CHUNKING,
	    10240000, "" },
	{ "mx\npipelining\nsize 12345\nstarttls", EHLO_PIPELINING |
	    EHLO_SIZE | EHLO_STARTTLS, 12345, "" },
	{ "mx\nSIZE", EHLO_SIZE, 0, "" },
	{ "mx\nSIZE 0", EHLO_SIZE, 0, "" },
	{ "mx\nSIZE abc", EHLO_SIZE, 0, "" },
	{ "mx\nSIZE 99999999999999999999999", EHLO_SIZE, 0, "" },
	{ "mx\nAUTH PLAIN LOGIN", EHLO_AUTH, 0, "PLAIN LOGIN" },
	{ "mx\nauth plain  cram-md5 ", EHLO_AUTH, 0, "PLAIN CRAM-MD5" },
	{ "mx\nAUTH=PLAIN LOGIN", EHLO_AUTH, 0, "PLAIN LOGIN" },
	{ "mx\nAUTH PLAIN LOGIN\nAUTH=LOGIN PLAIN XOAUTH2", EHLO_AUTH, 0,
	    "PLAIN LOGIN XOAUTH2" },
	{ "mx\nAUTH", EHLO_AUTH, 0, "" },
	{ "mx\nAUTH PL@IN LOGIN", EHLO_AUTH, 0, "LOGIN" },
	{ "mx\nX-UNKNOWN foo\nDSN\nPIPELININGX\nSIZE=5", 0, 0, "" },
	{ "PIPELINING", 0, 0, "" },
	{ NULL, 0, 0, NULL },
};

static void
test_ehlo(void)
{
	struct reply	 r;
	struct ehlo_caps caps;
	char		 text[512], name[128];
	size_t		 i;

	for (i = 0; ehlo_cases[i].text != NULL; i++) {
		memset(&r, 0, sizeof(r));
		r.code = 250;
		snprintf(text, sizeof(text), "%s", ehlo_cases[i].text);
		r.text = text;
		r.textlen = strlen(text);
		ehlo_parse(&r, &caps);
		snprintf(name, sizeof(name), "ehlo %zu flags", i);
		CHECK_INT(caps.flags, ehlo_cases[i].flags, name);
		snprintf(name, sizeof(name), "ehlo %zu size", i);
		CHECK_INT(caps.size_max, ehlo_cases[i].size, name);
		snprintf(name, sizeof(name), "ehlo %zu auth", i);
		CHECK_STR(caps.auth, ehlo_cases[i].auth, name);
	}

	/* Through the parser, as smtp.c uses it. */
	{
		struct reply_parser p;
		char	 err[128];

		reply_parser_init(&p);
		reply_parser_feed(&p, "250-mx.example.test", 19, &r, err,
		    sizeof(err));
		reply_parser_feed(&p, "250-AUTH LOGIN PLAIN", 20, &r, err,
		    sizeof(err));
		CHECK_INT(reply_parser_feed(&p, "250 SIZE 52428800", 17, &r,
		    err, sizeof(err)), REPLY_FEED_DONE, "ehlo parser done");
		ehlo_parse(&r, &caps);
		CHECK_INT(caps.size_max, 52428800, "ehlo parser size");
		CHECK(ehlo_has_auth(&caps, "PLAIN"), "ehlo has PLAIN");
		CHECK(ehlo_has_auth(&caps, "login"), "ehlo has login any case");
		CHECK(!ehlo_has_auth(&caps, "LOG"), "ehlo no prefix match");
		CHECK(!ehlo_has_auth(&caps, "CRAM-MD5"), "ehlo no CRAM-MD5");
		reply_clear(&r);
	}
}

/* Mechanisms that overflow the AUTH buffer are left out, never cut. */
static void
test_ehlo_auth_overflow(void)
{
	struct reply	 r;
	struct ehlo_caps caps;
	char		 text[2048];
	size_t		 i, o;

	o = (size_t)snprintf(text, sizeof(text), "mx\nAUTH");
	for (i = 0; i < 40; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o,
		    " MECHANISM-%02zu", i);
	memset(&r, 0, sizeof(r));
	r.code = 250;
	r.text = text;
	r.textlen = o;
	ehlo_parse(&r, &caps);
	CHECK(strlen(caps.auth) < EHLO_MAX_AUTH, "auth overflow bounded");
	CHECK(ehlo_has_auth(&caps, "MECHANISM-00"), "auth overflow keeps first");
	CHECK(!ehlo_has_auth(&caps, "MECHANISM-39"), "auth overflow drops last");
	CHECK(strlen(caps.auth) % 13 == 12, "auth overflow whole names only");
}

int
main(void)
{
	test_table();
	test_limits();
	test_sequence_and_copy();
	test_summary();
	test_ehlo();
	test_ehlo_auth_overflow();
	return check_done();
}
