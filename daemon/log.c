/*
 * log.c - event lines on stderr with sd-daemon priority prefixes.
 *
 * Each event is one line "<P>SESSION PEER EVENT fields", written with a
 * single fputs() to a line-buffered stderr so that journald (or any
 * reader) never sees half a line.  Lines above the configured level are
 * dropped.  Peers control parts of what is logged, so every control
 * character is replaced with '?' (no forged lines) and a line is cut at
 * LOG_MAX_LINE bytes.  An error or warning line identical to the previous
 * one (same level, peer, event and fields) within LOG_REPEAT_WINDOW
 * seconds is counted instead of written; the count is written as
 * "EVENT repeated=N" before the next different line or by log_flush().
 * Logging never fails: a line that cannot be written is lost.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/err.h>

#include "log.h"

#define LOG_MAX_LINE		2048	/* bytes, newline included */
#define LOG_REPEAT_WINDOW	10	/* seconds */

static int	log_level = LOG_LEVEL_INFO;
static int	log_stderr_ready;
static char	log_stderr_buf[LOG_MAX_LINE * 2];

/* The last error or warning written, for counting repeats. */
static struct {
	int		valid;
	int		level;
	uint64_t	session;
	char		peer[128];
	char		event[64];
	char		fields[LOG_MAX_LINE];
	time_t		since;		/* when the line was last written */
	unsigned long	repeated;	/* suppressed copies since then */
} log_last;

static const struct {
	const char	*name;
	int		 level;
} log_levels[] = {
	{ "error",	LOG_LEVEL_ERR },
	{ "warning",	LOG_LEVEL_WARNING },
	{ "notice",	LOG_LEVEL_NOTICE },
	{ "info",	LOG_LEVEL_INFO },
	{ "debug",	LOG_LEVEL_DEBUG },
};

void
log_set_level(int level)
{
	if (level < LOG_LEVEL_ERR)
		level = LOG_LEVEL_ERR;
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	log_level = level;
}

int
log_get_level(void)
{
	return log_level;
}

int
log_level_from_name(const char *name)
{
	size_t	i;

	if (name == NULL)
		return -1;
	for (i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (strcmp(log_levels[i].name, name) == 0)
			return log_levels[i].level;
	return -1;
}

static time_t
log_now(void)
{
	struct timespec	ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return ts.tv_sec;
}

/* Copies src into dst (size len), replacing control characters with '?'
 * and, when no_space is set, spaces too (PEER and EVENT are one word). */
static void
log_sanitize(char *dst, size_t len, const char *src, int no_space)
{
	size_t	i;

	for (i = 0; i + 1 < len && src[i] != '\0'; i++) {
		unsigned char	c = (unsigned char)src[i];

		if (c < 0x20 || c == 0x7f || (no_space && c == ' '))
			dst[i] = '?';
		else
			dst[i] = (char)c;
	}
	dst[i] = '\0';
}

/* Writes one finished line; the fields are already sanitized. */
static void
log_write(int level, uint64_t session, const char *peer, const char *event,
    const char *fields)
{
	char	line[LOG_MAX_LINE + 1];
	int	n;

	/* Line buffering makes each fputs() one write(2) for lines shorter
	 * than the buffer, which every capped line is. */
	if (!log_stderr_ready) {
		setvbuf(stderr, log_stderr_buf, _IOLBF,
		    sizeof(log_stderr_buf));
		log_stderr_ready = 1;
	}

	n = snprintf(line, sizeof(line), "<%d>%016llx %s %s%s%s", level,
	    (unsigned long long)session, peer, event,
	    *fields != '\0' ? " " : "", fields);
	if (n < 0)
		return;
	if (n > LOG_MAX_LINE - 1)
		n = LOG_MAX_LINE - 1;
	line[n] = '\n';
	line[n + 1] = '\0';
	fputs(line, stderr);
}

/* Writes the pending "repeated=N" line, if any. */
static void
log_flush_repeats(void)
{
	char	fields[64];

	if (!log_last.valid || log_last.repeated == 0)
		return;
	snprintf(fields, sizeof(fields), "repeated=%lu", log_last.repeated);
	log_write(log_last.level, log_last.session, log_last.peer,
	    log_last.event, fields);
	log_last.repeated = 0;
}

/* Tells whether the line repeats the last error or warning inside the
 * window, and if so counts it. */
static int
log_suppress(int level, uint64_t session, const char *peer,
    const char *event, const char *fields, time_t now)
{
	if (level > LOG_LEVEL_WARNING || !log_last.valid ||
	    log_last.level != level || strcmp(log_last.peer, peer) != 0 ||
	    strcmp(log_last.event, event) != 0 ||
	    strcmp(log_last.fields, fields) != 0)
		return 0;
	if (now - log_last.since >= LOG_REPEAT_WINDOW)
		return 0;
	log_last.session = session;
	log_last.repeated++;
	return 1;
}

/* Remembers an error or warning line just written. */
static void
log_remember(int level, uint64_t session, const char *peer,
    const char *event, const char *fields, time_t now)
{
	if (level > LOG_LEVEL_WARNING)
		return;
	log_last.valid = 1;
	log_last.level = level;
	log_last.session = session;
	snprintf(log_last.peer, sizeof(log_last.peer), "%s", peer);
	snprintf(log_last.event, sizeof(log_last.event), "%s", event);
	snprintf(log_last.fields, sizeof(log_last.fields), "%s", fields);
	log_last.since = now;
	log_last.repeated = 0;
}

/* Logs a line whose fields are already formatted. */
static void
log_line(int level, uint64_t session, const char *peer, const char *event,
    const char *rawfields)
{
	char	sp[sizeof(log_last.peer)], se[sizeof(log_last.event)];
	char	sf[LOG_MAX_LINE];
	time_t	now;

	if (level > log_level)
		return;

	log_sanitize(sp, sizeof(sp), peer != NULL && *peer != '\0' ? peer :
	    "-", 1);
	log_sanitize(se, sizeof(se), event != NULL && *event != '\0' ?
	    event : "-", 1);
	log_sanitize(sf, sizeof(sf), rawfields != NULL ? rawfields : "", 0);

	now = log_now();
	if (log_suppress(level, session, sp, se, sf, now))
		return;

	/* A different line (or the same one after the window) ends the
	 * run, so its count goes out first. */
	log_flush_repeats();
	log_write(level, session, sp, se, sf);
	log_remember(level, session, sp, se, sf, now);
}

void
log_event(int level, uint64_t session, const char *peer, const char *event,
    const char *fmt, ...)
{
	char	fields[LOG_MAX_LINE];
	va_list	ap;

	if (level > log_level)
		return;
	fields[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(fields, sizeof(fields), fmt, ap);
		va_end(ap);
	}
	log_line(level, session, peer, event, fields);
}

void
log_flush(void)
{
	log_flush_repeats();
	fflush(stderr);
}

void
log_openssl_errors(int level, uint64_t session, const char *peer,
    const char *event)
{
	char		 fields[LOG_MAX_LINE], one[512];
	const char	*data;
	unsigned long	 code;
	size_t		 used;
	int		 flags, n, count = 0, dropped = 0;

	used = (size_t)snprintf(fields, sizeof(fields), "error=\"");
	while ((code = ERR_get_error_all(NULL, NULL, NULL, &data,
	    &flags)) != 0) {
		/* Keep draining after the line is full, so the queue is
		 * empty for the next operation. */
		if (dropped > 0 || level > log_level) {
			dropped++;
			continue;
		}
		ERR_error_string_n(code, one, sizeof(one));
		n = snprintf(fields + used, sizeof(fields) - used, "%s%s%s%s",
		    count > 0 ? "; " : "", one,
		    (flags & ERR_TXT_STRING) && data != NULL && *data != '\0' ?
		    ": " : "",
		    (flags & ERR_TXT_STRING) && data != NULL ? data : "");
		if (n < 0 || (size_t)n >= sizeof(fields) - used - 32) {
			fields[used] = '\0';
			dropped++;
			continue;
		}
		used += (size_t)n;
		count++;
	}
	if (level > log_level)
		return;
	if (count == 0)
		snprintf(fields + used, sizeof(fields) - used,
		    "no OpenSSL error queued\"");
	else if (dropped > 0)
		snprintf(fields + used, sizeof(fields) - used,
		    "\" more_errors=%d", dropped);
	else
		snprintf(fields + used, sizeof(fields) - used, "\"");
	log_line(level, session, peer, event, fields);
}

/* Receives libevent's internal messages. */
static void
log_libevent_cb(int severity, const char *msg)
{
	int	level;

	switch (severity) {
	case EVENT_LOG_DEBUG:
		level = LOG_LEVEL_DEBUG;
		break;
	case EVENT_LOG_MSG:
		level = LOG_LEVEL_INFO;
		break;
	case EVENT_LOG_WARN:
		level = LOG_LEVEL_WARNING;
		break;
	default:
		level = LOG_LEVEL_ERR;
		break;
	}
	log_event(level, 0, NULL, "libevent", "message=\"%s\"",
	    msg != NULL ? msg : "");
}

void
log_hook_libevent(void)
{
	event_set_log_callback(log_libevent_cb);
}

const char *
log_quote(const char *s, char *buf, size_t len)
{
	size_t	i;

	if (len == 0)
		return "";
	for (i = 0; s != NULL && s[i] != '\0' && i + 1 < len; i++) {
		unsigned char	c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			buf[i] = '\'';
		else if (c < 0x20 || c >= 0x7f)
			buf[i] = '?';
		else
			buf[i] = (char)c;
	}
	buf[i] = '\0';
	return buf;
}
