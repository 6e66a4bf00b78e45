/*
 * smtpool.h - client library for smtpoold, the SMTP connection pool daemon.
 *
 * A session (smtpool_t) is one connection to the daemon's Unix socket and
 * plays the part of one Uniface UPOPMAIL instance: it has its own logon
 * state and remembers the details of its last SMTP exchange.  Many
 * processes and sessions share the daemon's pooled SMTP connections.
 *
 * Every operation returns a status.  Zero is success, a positive SendMail
 * status counts refused recipients, and negative values are failures, as
 * listed with each function and in the SMTPOOL_STATUS_* table below.  Most
 * statuses come from the daemon, but the library produces these itself:
 *
 *   SMTPOOL_STATUS_INVALID_ARGUMENT (-1)  an argument failed a local check
 *       (NULL, over its length limit, negative maxsize) or an attachment
 *       file could not be opened or read.  smtpool_last_errno() is nonzero
 *       when a system call failed.
 *   SMTPOOL_STATUS_NETWORK (-9)  the daemon cannot be reached: the
 *       connection was lost, an I/O error occurred on the socket, or the
 *       session was already closed.
 *   SMTPOOL_STATUS_NO_MEMORY (-18)  the library ran out of memory.
 *   SMTPOOL_STATUS_PROTOCOL_ERROR (-99)  the daemon sent an ERROR frame or
 *       a reply the library cannot parse.  The session is closed.
 *
 * After every call, smtpool_last_smtp_code(), smtpool_last_enhanced() and
 * smtpool_last_message() describe the outcome.  The message names the value
 * at fault (an address, a path, a limit) and never contains a password.
 * smtpool_is_connected() returns whether the session can still be used.
 * Once it returns 0, every operation returns SMTPOOL_STATUS_NETWORK at once.
 *
 * A session must not be used by two threads at the same time.  Separate
 * sessions are independent.  The library never prints anything, and it
 * sends with MSG_NOSIGNAL, so a closed socket never raises SIGPIPE.
 */
#ifndef SMTPOOL_H
#define SMTPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes.  0, -2, -3, -6, -7, -8, -9, -10, -12, -15 and -18 keep the
 * meanings the Uniface UPOPMAIL component gives them; -1, -11 and -99 are
 * smtpool's own. */
#define SMTPOOL_STATUS_OK			0
#define SMTPOOL_STATUS_INVALID_ARGUMENT		(-1)
#define SMTPOOL_STATUS_INVALID_ADDRESS		(-2)
#define SMTPOOL_STATUS_ALREADY_LOGGED_ON	(-3)
#define SMTPOOL_STATUS_TOO_LARGE		(-6)
#define SMTPOOL_STATUS_NO_DRIVER		(-7)
#define SMTPOOL_STATUS_SECURITY			(-8)
#define SMTPOOL_STATUS_NETWORK			(-9)
#define SMTPOOL_STATUS_NO_RESPONSE		(-10)
#define SMTPOOL_STATUS_REJECTED			(-11)
#define SMTPOOL_STATUS_NO_RECIPIENT		(-12)
#define SMTPOOL_STATUS_QUOTA			(-15)
#define SMTPOOL_STATUS_NO_MEMORY		(-18)
#define SMTPOOL_STATUS_PROTOCOL_ERROR		(-99)

/*
 * SetSecurity status codes.  They are smtpool's choice, because Uniface
 * publishes none for SetSecurity, and they mean something else than the
 * same numbers in the table above.  smtpool_set_security() returns them
 * besides -9 and -99.
 */
#define SMTPOOL_SECURITY_OK			0
#define SMTPOOL_SECURITY_INVALID_PROPERTIES	(-1)
#define SMTPOOL_SECURITY_PARAMETERS_TOO_LONG	(-2)
#define SMTPOOL_SECURITY_LOCKED			(-3)
#define SMTPOOL_SECURITY_UNKNOWN_DRIVER		(-4)
#define SMTPOOL_SECURITY_BAD_ORDER		(-5)
#define SMTPOOL_SECURITY_TOO_MANY_DRIVERS	(-6)
#define SMTPOOL_SECURITY_NO_MEMORY		(-18)

/* GetSecurity status codes besides 0, -9 and -99. */
#define SMTPOOL_GET_SECURITY_NO_SUCH_DRIVER	(-1)
#define SMTPOOL_GET_SECURITY_INVALID_KEYWORD	(-2)
#define SMTPOOL_GET_SECURITY_NO_MEMORY		(-6)

/* Argument limits in bytes, without a terminating NUL.  Longer arguments
 * are rejected locally with SMTPOOL_STATUS_INVALID_ARGUMENT, except that
 * smtpool_set_security() and smtpool_get_security() use the codes of their
 * own tables. */
#define SMTPOOL_MAX_CONNSTR	1024	/* connection string */
#define SMTPOOL_MAX_CREDENTIAL	4095	/* logon user or password */
#define SMTPOOL_MAX_HEADERS	65536	/* SendMail header list */
#define SMTPOOL_MAX_FILENAME	255	/* base name of an attachment */
#define SMTPOOL_MAX_SMTP_TEXT	512	/* text from GetSMTPResponse */
#define SMTPOOL_MAX_PROPERTIES	255	/* SetSecurity properties */
#define SMTPOOL_MAX_PARAMETERS	4095	/* SetSecurity parameters */
#define SMTPOOL_MAX_DRIVERS	8	/* drivers in one security context */

/* An open session.  The structure is private to the library. */
typedef struct smtpool smtpool_t;

/*
 * Connects to the daemon.  socket_path NULL means the SMTPOOL_SOCKET
 * environment variable when it is set and not empty, else the default path:
 * $RUNTIME_DIRECTORY/smtpool.sock, /run/smtpool/smtpool.sock for root, or
 * $XDG_RUNTIME_DIR/smtpool.sock.  Returns a new session.  On failure it
 * returns NULL and fills err (errlen bytes, may be NULL) with a message
 * that names the path.  errno is then ENAMETOOLONG when the path does not
 * fit a Unix socket address, EINVAL for an empty path, ENOENT when no
 * default path applies, ENOMEM, or the errno of socket(2) or connect(2).
 */
smtpool_t	*smtpool_connect(const char *socket_path, char *err,
		    size_t errlen);

/* Closes the connection and frees the session.  When the session is still
 * logged on, the daemon logs it off.  NULL is ignored. */
void		 smtpool_close(smtpool_t *);

/*
 * LogonSMTP: logs on to the SMTP server that conn names
 * ("{TCP:|TLS:}HOST{+PORT}{:PROFILE}") and keeps the connection for the
 * following SendMail calls, whose server argument is then ignored.  user
 * and password must be empty strings.  Returns:
 *    0  logged on
 *   -1  an argument is NULL or over its limit (local)
 *   -2  user or password is not empty
 *   -3  already logged on
 *   -7  the server lacks a function a mandatory security driver of the
 *       session's security context needs (see smtpool_set_security())
 *   -8  TLS handshake, certificate, STARTTLS or AUTH failure, invalid
 *       security parameters, AUTH refused over an unencrypted connection,
 *       or a protocol error with the server
 *   -9  network problem, invalid connection string, undefined TLS
 *       profile, no pooled connection within the wait time, or the daemon
 *       connection is lost
 *  -18  out of memory (local)
 *  -99  protocol error between library and daemon; the session is closed
 */
int		 smtpool_logon(smtpool_t *, const char *conn, const char *user,
		    const char *password);

/*
 * LogoffSMTP: gives up the logged-on server connection.  Returns 0, -8 when
 * not logged on, -9 when the daemon connection is lost, -99 as for
 * smtpool_logon().
 */
int		 smtpool_logoff(smtpool_t *);

/*
 * SendMail: sends one message.  server is a connection string, ignored
 * after a successful smtpool_logon().  headers is the header list: items
 * LABEL=VALUE separated by ';', LABEL one of TO, FROM, CC, BCC, SUBJECT,
 * PRIORITY (1..5) or REPLY (Reply-To), with ";;" for a ';' inside a value
 * and commas between several addresses of one label.  text (textlen bytes)
 * is the plain-text body; NULL with textlen 0 sends no body part.
 * attachments lists nattachments file paths.  The library opens each file
 * before sending anything, sends its base name as the attachment's file
 * name and streams its contents in 64 KiB pieces.  maxsize limits the
 * composed message in bytes; 0 means no limit.  Returns:
 *   >0  sent, this many recipients refused
 *    0  sent and every recipient accepted (the server replied 250 to the
 *       end of DATA)
 *   -1  malformed header list (unknown or repeated label, PRIORITY not
 *       1..5, CR, LF or NUL in a value), an argument over its limit,
 *       negative maxsize, or an attachment that cannot be opened or read,
 *       or whose base name is empty, longer than 255 bytes or contains CR,
 *       LF or '\\'.  An attachment that fails to read after sending began
 *       also closes the session, because the protocol cannot cancel a
 *       message half sent, and closing keeps the daemon from sending it.
 *   -2  invalid To, Cc, Bcc, From or Reply address, sender refused, or
 *       every recipient refused
 *   -6  message larger than maxsize or than the server accepts
 *   -7, -8  security context (as for smtpool_logon())
 *   -9  network problem, invalid server string, no pooled connection in
 *       time, or the daemon connection is lost
 *  -11  the server rejected the message
 *  -12  no From or no recipient at all
 *  -15  server quota exceeded
 *  -18  out of memory or spool space
 *  -99  protocol error between library and daemon; the session is closed
 */
int		 smtpool_sendmail(smtpool_t *, const char *server,
		    const char *headers, const char *text, size_t textlen,
		    const char *const *attachments, size_t nattachments,
		    int64_t maxsize);

/*
 * SendMail with the body read from textfd up to end of file.  The body is
 * streamed in 64 KiB pieces rather than read into memory, and textfd -1
 * sends no body part.  The descriptor is read but not closed.  A read error
 * on it returns -1 and closes the session.  Other arguments and statuses
 * are as for smtpool_sendmail().
 */
int		 smtpool_sendmail_fd(smtpool_t *, const char *server,
		    const char *headers, int textfd,
		    const char *const *attachments, size_t nattachments,
		    int64_t maxsize);

/*
 * GetSMTPResponse: fetches the last SMTP reply the session's last
 * operation received.  On status 0, *code is its reply code and text
 * (textlen bytes, cut to fit and always NUL-terminated when textlen > 0)
 * is its text, at most SMTPOOL_MAX_SMTP_TEXT bytes, lines joined with '\n'
 * and each line starting with the enhanced status code when the server
 * sends one.  code and text may be NULL.  Returns 0, -10 when the session
 * has had no SMTP exchange yet, -9 or -99 as for smtpool_logon().
 */
int		 smtpool_get_smtp_response(smtpool_t *, int *code, char *text,
		    size_t textlen);

/*
 * SetSecurity: appends one security driver to the session's security
 * context, which LogonSMTP, and SendMail without a logon, apply to the
 * upstream connection.  Drivers run in the order they were added.
 *
 * properties is "SMTP=ENTRYPOINT{;USE=MAND|OPT}" (MAND is the default).
 * The entry points, case-sensitive, are UStartTLSSMTP (must come first),
 * UAuthLoginSMTP, UAuthPlainSMTP, UAuthXOAUTH2SMTP and
 * UAuthOAuthBearerSMTP.  Properties that are exactly "SMTP=", in any
 * letter case, remove the whole context.  A MAND driver the server does
 * not offer makes the logon fail with -7, an OPT one is skipped.
 *
 * parameters are key=value items separated by ';' (";;" is a literal ';'),
 * keys in any letter case: none for UStartTLSSMTP; user and password for
 * UAuthLoginSMTP; user, password and optionally authzid for
 * UAuthPlainSMTP; user and token for UAuthXOAUTH2SMTP and
 * UAuthOAuthBearerSMTP.  The daemon checks them only at logon, where
 * invalid parameters give -8.  The library wipes every buffer that held
 * them before it returns; the caller wipes its own copy.
 *
 * After a logon that failed with -7 or -8 the context stays for another
 * logon, but the next SetSecurity starts a new context.  After any other
 * failure it appends.  Returns:
 *    0  driver appended, or context removed
 *   -1  invalid properties: not starting with SMTP=, an item other than
 *       USE=MAND or USE=OPT, over SMTPOOL_MAX_PROPERTIES bytes, or NULL
 *       (the last two are also checked locally)
 *   -2  parameters over SMTPOOL_MAX_PARAMETERS bytes, or NULL (local too)
 *   -3  context locked, because the session is logged on
 *   -4  unknown entry point
 *   -5  UStartTLSSMTP not first, or a driver given twice
 *   -6  more than SMTPOOL_MAX_DRIVERS drivers
 *   -9  the daemon connection is lost (local)
 *  -18  out of memory (daemon or local)
 *  -99  protocol error between library and daemon; the session is closed
 */
int		 smtpool_set_security(smtpool_t *, const char *properties,
		    const char *parameters);

/*
 * GetSecurity: describes driver number index (1 for the first) of the
 * session's security context.  properties must be "SMTP=" in any letter
 * case.  On status 0, driver_properties (len1 bytes) receives the driver's
 * properties, e.g. "SMTP=UAuthLoginSMTP;USE=MAND", and runtime_info (len2
 * bytes) "INUSE=TRUE" when the driver took part in the session's current or
 * last upstream connection, else "INUSE=FALSE".  Both are cut to fit and
 * always NUL-terminated when their length is above 0; either may be NULL.
 * Returns:
 *    0  driver found
 *   -1  no such driver
 *   -2  invalid keyword: properties is not "SMTP=" (NULL or over
 *       SMTPOOL_MAX_PROPERTIES bytes is checked locally)
 *   -6  the daemon ran out of memory
 *   -9  the daemon connection is lost (local)
 *  -18  the library ran out of memory (local)
 *  -99  protocol error between library and daemon; the session is closed
 */
int		 smtpool_get_security(smtpool_t *, int index,
		    const char *properties, char *driver_properties,
		    size_t len1, char *runtime_info, size_t len2);

/* One pool key of the daemon, as smtpool_status() reports it.  The
 * strings are valid only during the callback. */
struct smtpool_status_row {
	const char	*connection;	/* normalized connection string,
					 * e.g. "TLS:smtp.example.com+465" */
	/* Security drivers with their USE flags, never their parameters,
	 * e.g. "UStartTLSSMTP/MAND+UAuthLoginSMTP/MAND"; "" for none. */
	const char	*drivers;
	int32_t		 idle;		/* connections free for a request */
	int32_t		 busy;		/* connections serving a session */
	int32_t		 opening;	/* connections being set up */
	int32_t		 waiting;	/* requests waiting for a connection */
	int64_t		 sent;		/* messages sent since start */
	int64_t		 errors;	/* errors since start */
	int64_t		 oldest_age;	/* age of the oldest connection in
					 * seconds, 0 when there is none */
};

/* Called once per pool key.  A nonzero return stops the calls for the
 * remaining keys; smtpool_status() still reads them and the reply. */
typedef int (*smtpool_status_row_cb)(const struct smtpool_status_row *row,
    void *arg);

/* Room for the daemon's version string, NUL included. */
#define SMTPOOL_STATUS_VERSION_SIZE	64

/*
 * Daemon totals, as smtpool_status() reports them.  A count is -1 when
 * the daemon did not report it, and version is "" then.
 */
struct smtpool_status_totals {
	int64_t	sessions;	/* client sessions open now */
	int64_t	keys;		/* pool keys */
	int64_t	idle;		/* connections over all keys, by state */
	int64_t	busy;
	int64_t	opening;
	int64_t	waiting;	/* requests waiting for a connection */
	int64_t	opened;		/* upstream connections opened since start */
	int64_t	reused;		/* times a pooled connection was reused */
	int64_t	sent;		/* messages sent since start */
	int64_t	errors;		/* errors since start */
	int64_t	uptime;		/* seconds since the daemon started */
	char	version[SMTPOOL_STATUS_VERSION_SIZE];
};

/*
 * Pool status: requests one row per pool key and the daemon totals.
 * cb (may be NULL) is called with each row, in the daemon's order, before
 * smtpool_status() returns.  totals (may be NULL) receives the daemon
 * totals on status 0.  Totals the daemon names but this library does not
 * know are ignored, so a newer daemon can add more.  Returns 0, -9 when the
 * daemon connection is lost, -18 when memory runs out, or -99 for an
 * ERROR frame or a malformed row or total (the session is closed then).
 * The session's logon state is not affected.
 */
int		 smtpool_status(smtpool_t *, smtpool_status_row_cb cb,
		    void *arg, struct smtpool_status_totals *totals);

/* SMTP reply code behind the last status, 0 when none. */
int		 smtpool_last_smtp_code(const smtpool_t *);
/* Enhanced status code of that reply ("5.1.1"), or "". */
const char	*smtpool_last_enhanced(const smtpool_t *);
/* Readable explanation of the last status, or "".  Valid until the next
 * call on the session. */
const char	*smtpool_last_message(const smtpool_t *);
/* errno of the system call that failed locally in the last call, or 0
 * when the status came from the daemon or from an argument check. */
int		 smtpool_last_errno(const smtpool_t *);
/* 1 while the session's connection to the daemon is open, else 0. */
int		 smtpool_is_connected(const smtpool_t *);

/* Short English description of a status ("invalid argument"). */
const char	*smtpool_status_text(int status);
/* The same for the statuses of smtpool_set_security() and
 * smtpool_get_security(), whose tables differ from the others. */
const char	*smtpool_set_security_status_text(int status);
const char	*smtpool_get_security_status_text(int status);

#ifdef __cplusplus
}
#endif

#endif
