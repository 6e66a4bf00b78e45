/*
 * log.h - one line per event on stderr, with sd-daemon priority prefixes.
 *
 * Line format:  <P>SESSION PEER EVENT key=value ...
 * SESSION is a 16-hex-digit session id (0000000000000000 for the daemon
 * itself), PEER the client or upstream peer ("-" when none), EVENT one
 * dotted word such as "upstream.connect".  Callers never pass secrets.
 * Identical error and warning lines repeated in a row are counted and
 * reported once as "repeated=N" instead of flooding the log.
 */
#ifndef SMTPOOL_LOG_H
#define SMTPOOL_LOG_H

#include <stddef.h>
#include <stdint.h>

/* syslog(3) priorities, as sd-daemon(3) prefixes expect. */
enum log_level {
	LOG_LEVEL_ERR		= 3,
	LOG_LEVEL_WARNING	= 4,
	LOG_LEVEL_NOTICE	= 5,
	LOG_LEVEL_INFO		= 6,
	LOG_LEVEL_DEBUG		= 7,
};

/* Sets the most detailed level written. */
void log_set_level(int level);
int log_get_level(void);
/* Parses "error", "warning", "notice", "info", "debug"; -1 if unknown. */
int log_level_from_name(const char *name);

/* Writes one event line.  fmt gives the key=value fields (may be ""). */
void log_event(int level, uint64_t session, const char *peer,
    const char *event, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Copies s into buf for a quoted log value: '"' and '\\' become '\'',
 * control and non-ASCII bytes '?', cut to fit.  Returns buf. */
const char *log_quote(const char *s, char *buf, size_t len);
/* log_quote() into a buffer that lives until the end of the statement,
 * for use as a log_event() argument. */
#define LOG_QUOTED(s)	log_quote((s), (char[1024]){ 0 }, 1024)

/* Writes out a pending "repeated=N" count; called at exit. */
void log_flush(void);

/* Sends OpenSSL's error queue to the log as one line (then clears it). */
void log_openssl_errors(int level, uint64_t session, const char *peer,
    const char *event);

/* Routes libevent's internal messages into this log. */
void log_hook_libevent(void);

#endif
