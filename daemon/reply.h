/*
 * reply.h - SMTP reply parsing (RFC 5321 section 4.2) and EHLO keywords.
 *
 * The parser is fed one line at a time, without its CRLF, so it does not
 * depend on how the bytes arrived; smtp.c reads lines from the socket and
 * enforces REPLY_MAX_LINE before feeding them.
 */
#ifndef SMTPOOL_REPLY_H
#define SMTPOOL_REPLY_H

#include <stddef.h>
#include <stdint.h>

#define REPLY_MAX_LINE		2048	/* bytes per line, without CRLF */
#define REPLY_MAX_LINES		64	/* lines in one multi-line reply */
#define REPLY_MAX_ENHANCED	15

struct reply {
	int	code;			/* 200..599 */
	char	enhanced[REPLY_MAX_ENHANCED + 1]; /* "2.1.0" or "" */
	/* Text of every line after "NNN-"/"NNN ", joined with '\n', with the
	 * enhanced code kept at the start of each line as the server sent it. */
	char	*text;
	size_t	 textlen;
	unsigned nlines;
};

struct reply_parser {
	int		code;		/* code of the first line, 0 if none */
	unsigned	nlines;
	char		*text;
	size_t		 textlen;
	size_t		 textcap;
};

enum reply_feed_result {
	REPLY_FEED_ERROR	= -1,	/* malformed; err filled */
	REPLY_FEED_MORE		= 0,	/* continuation line stored */
	REPLY_FEED_DONE		= 1,	/* last line: *out filled */
};

void reply_parser_init(struct reply_parser *);
/* Feeds one line (no CRLF).  On REPLY_FEED_DONE, *out owns the text (free
 * with reply_clear) and the parser is reset for the next reply. */
int reply_parser_feed(struct reply_parser *, const char *line, size_t len,
    struct reply *out, char *err, size_t errlen);
void reply_parser_reset(struct reply_parser *);

void reply_clear(struct reply *);
/* Copies src into dst (deep). Returns 0 or -1 on ENOMEM. */
int reply_copy(struct reply *dst, const struct reply *src);
/* Writes "CODE TEXT" with line breaks turned into spaces and the text cut
 * to fit len; used in log lines and client replies. */
void reply_summary(const struct reply *, char *buf, size_t len);

/* EHLO extensions this client uses. */
enum ehlo_flag {
	EHLO_PIPELINING		= 1 << 0,
	EHLO_SIZE		= 1 << 1,
	EHLO_8BITMIME		= 1 << 2,
	EHLO_STARTTLS		= 1 << 3,
	EHLO_AUTH		= 1 << 4,
	EHLO_ENHANCEDSTATUSCODES = 1 << 5,
	EHLO_SMTPUTF8		= 1 << 6,
	EHLO_CHUNKING		= 1 << 7,
};

#define EHLO_MAX_AUTH	256

struct ehlo_caps {
	unsigned	flags;
	uint64_t	size_max;	/* SIZE argument; 0 = no limit given */
	char		auth[EHLO_MAX_AUTH]; /* AUTH mechanisms, upper case,
					      * space separated */
};

/* Parses the keywords of a 250 EHLO reply (first line is the domain). */
void ehlo_parse(const struct reply *, struct ehlo_caps *);
/* Returns 1 when mechanism (e.g. "LOGIN") is in caps->auth. */
int ehlo_has_auth(const struct ehlo_caps *, const char *mechanism);

#endif
