/*
 * libsmtpool.c - client side of the smtpool socket protocol.
 *
 * Each public call sends one request frame (SENDMAIL also streams its
 * PART, CHUNK and END frames), then reads exactly one REPLY or ERROR frame
 * (STATUS reads its STATUS_ROW frames first) and stores its status, SMTP
 * code, enhanced code and message in the session.  Local failures use the
 * same statuses as the daemon: -1 for an argument or attachment problem,
 * -9 when the daemon connection is gone, -18 when memory runs out and -99
 * for a protocol error.  SetSecurity and GetSecurity instead return the
 * code that their own table has for a bad argument.  A lost connection or
 * a protocol error closes the session for good.  Frames that carry a
 * password or security parameters are wiped before they are freed.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "smtpool.h"
/* Only for the SetSecurity constants below; nothing of the daemon is
 * linked in. */
#include "../daemon/security.h"

/* The public constants repeat proto.h, so the installed header needs no
 * other header.  These checks keep the two in step. */
_Static_assert(SMTPOOL_STATUS_INVALID_ARGUMENT ==
    PROTO_STATUS_INVALID_ARGUMENT, "status -1");
_Static_assert(SMTPOOL_STATUS_NETWORK == PROTO_STATUS_NETWORK, "status -9");
_Static_assert(SMTPOOL_STATUS_NO_RESPONSE == PROTO_STATUS_NO_RESPONSE,
    "status -10");
_Static_assert(SMTPOOL_STATUS_NO_MEMORY == PROTO_STATUS_NO_MEMORY,
    "status -18");
_Static_assert(SMTPOOL_STATUS_PROTOCOL_ERROR == PROTO_STATUS_PROTOCOL_ERROR,
    "status -99");
_Static_assert(SMTPOOL_MAX_CONNSTR == PROTO_MAX_CONNSTR, "connstr limit");
_Static_assert(SMTPOOL_MAX_CREDENTIAL == PROTO_MAX_CREDENTIAL,
    "credential limit");
_Static_assert(SMTPOOL_MAX_HEADERS == PROTO_MAX_HEADERS, "header limit");
_Static_assert(SMTPOOL_MAX_FILENAME == PROTO_MAX_FILENAME, "file name limit");
_Static_assert(SMTPOOL_MAX_SMTP_TEXT == PROTO_MAX_SMTP_TEXT,
    "SMTP text limit");
_Static_assert(SMTPOOL_MAX_PROPERTIES == PROTO_MAX_PROPERTIES &&
    SMTPOOL_MAX_PROPERTIES == SECURITY_MAX_PROPERTIES, "properties limit");
_Static_assert(SMTPOOL_MAX_PARAMETERS == PROTO_MAX_PARAMETERS &&
    SMTPOOL_MAX_PARAMETERS == SECURITY_MAX_PARAMETERS, "parameters limit");
_Static_assert(SMTPOOL_MAX_DRIVERS == SECURITY_MAX_DRIVERS, "driver limit");
/* GetSecurity's int index travels as an int32 field without a check. */
_Static_assert(INT_MAX == INT32_MAX, "int is 32 bits");
_Static_assert(SMTPOOL_SECURITY_INVALID_PROPERTIES ==
    SECURITY_INVALID_PROPERTIES, "SetSecurity -1");
_Static_assert(SMTPOOL_SECURITY_PARAMETERS_TOO_LONG ==
    SECURITY_PARAMETERS_TOO_LONG, "SetSecurity -2");
_Static_assert(SMTPOOL_SECURITY_LOCKED == SECURITY_LOCKED, "SetSecurity -3");
_Static_assert(SMTPOOL_SECURITY_UNKNOWN_DRIVER == SECURITY_UNKNOWN_DRIVER,
    "SetSecurity -4");
_Static_assert(SMTPOOL_SECURITY_BAD_ORDER == SECURITY_BAD_ORDER,
    "SetSecurity -5");
_Static_assert(SMTPOOL_SECURITY_TOO_MANY_DRIVERS ==
    SECURITY_TOO_MANY_DRIVERS, "SetSecurity -6");
_Static_assert(SMTPOOL_SECURITY_NO_MEMORY == SECURITY_NO_MEMORY,
    "SetSecurity -18");

/* Room for a daemon message or a local one that quotes a long path. */
#define SMTPOOL_MESSAGE_SIZE	(PROTO_MAX_MESSAGE + 4096)

struct smtpool {
	int	fd;		/* daemon socket, -1 once closed */
	int	smtp_code;	/* of the last reply, 0 when none */
	int	sys_errno;	/* of a failed local system call, else 0 */
	char	enhanced[PROTO_MAX_ENHANCED + 1];
	char	message[SMTPOOL_MESSAGE_SIZE];
	/* Why the session closed, repeated by every later call; shorter
	 * than message so the repetition fits with its explanation. */
	char	closed_reason[SMTPOOL_MESSAGE_SIZE - 128];

	/* SENDMAIL, PART and CHUNK frames wait here and go out together with
	 * END, or when SMTPOOL_OUT_FLUSH bytes have gathered, so a small
	 * message costs one send(2) instead of one per frame. */
	uint8_t	*out;
	size_t	 outlen;
	size_t	 outcap;
	/* Bytes read from the daemon but not used yet; a reply usually
	 * arrives whole, header and payload in one read(2). */
	uint8_t	 in[4096];
	size_t	 in_start;
	size_t	 in_end;
};

#define SMTPOOL_OUT_FLUSH	(64 * 1024)

/* Source of the SENDMAIL body: a buffer, a descriptor or none. */
struct smtpool_text {
	const char	*data;
	size_t		 len;
	int		 fd;		/* -1 unless reading from a descriptor */
	int		 present;	/* 0 sends no "text" part */
};

/* A caller's buffer for one extra text field of a reply. */
struct smtpool_extra {
	char	*buf;
	size_t	 len;		/* 0 ignores the field */
};

/* One attachment opened before the request goes out. */
struct smtpool_attachment {
	const char	*path;
	const char	*name;		/* base name inside path */
	int		 fd;
};

static int	smtpool_fail(smtpool_t *, int, int, const char *, ...)
		    __attribute__((format(printf, 4, 5)));
static int	smtpool_lost(smtpool_t *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));

/* Clears the details of the previous call. */
static void
smtpool_reset_result(smtpool_t *s)
{
	s->smtp_code = 0;
	s->sys_errno = 0;
	s->enhanced[0] = '\0';
	s->message[0] = '\0';
}

/* Records a local failure with its errno (0 for none) and returns status. */
static int
smtpool_fail(smtpool_t *s, int status, int errnum, const char *fmt, ...)
{
	va_list	ap;

	smtpool_reset_result(s);
	s->sys_errno = errnum;
	va_start(ap, fmt);
	vsnprintf(s->message, sizeof(s->message), fmt, ap);
	va_end(ap);
	return status;
}

/* Copies src into dst (size bytes), cutting it to fit. */
static void
smtpool_copy_str(char *dst, size_t size, const char *src)
{
	size_t	len = strlen(src);

	if (len > size - 1)
		len = size - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Closes the socket; later calls fail at once with the reason kept here. */
static void
smtpool_shut(smtpool_t *s)
{
	if (s->fd != -1) {
		close(s->fd);
		s->fd = -1;
	}
	/* Frames not sent yet belong to a request that cannot finish. */
	s->outlen = 0;
	s->in_start = s->in_end = 0;
	smtpool_copy_str(s->closed_reason, sizeof(s->closed_reason),
	    s->message);
}

/* Records the loss of the daemon connection and returns -9. */
static int
smtpool_lost(smtpool_t *s, int errnum, const char *fmt, ...)
{
	va_list	ap;

	smtpool_reset_result(s);
	s->sys_errno = errnum;
	va_start(ap, fmt);
	vsnprintf(s->message, sizeof(s->message), fmt, ap);
	va_end(ap);
	smtpool_shut(s);
	return SMTPOOL_STATUS_NETWORK;
}

/* Starts a call: fails with -9 when the session is already closed. */
static int
smtpool_begin(smtpool_t *s)
{
	if (s->fd != -1) {
		smtpool_reset_result(s);
		return 0;
	}
	smtpool_reset_result(s);
	snprintf(s->message, sizeof(s->message),
	    "the session's connection to smtpoold is closed (%s); "
	    "connect again", s->closed_reason);
	return SMTPOOL_STATUS_NETWORK;
}

/* Checks that a string argument is present and within max bytes. */
static int
smtpool_check_arg(smtpool_t *s, const char *what, const char *value,
    size_t max)
{
	size_t	len;

	if (value == NULL)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "%s is NULL; pass an empty string instead", what);
	len = strlen(value);
	if (len > max)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "%s is %zu bytes, over the limit of %zu", what, len, max);
	return 0;
}

/* Writes all of buf to the daemon.  Returns 0, or -1 with errno set. */
static int
smtpool_write_all(smtpool_t *s, const uint8_t *buf, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		/* MSG_NOSIGNAL: a library must not kill its caller with
		 * SIGPIPE when the daemon has gone away. */
		n = send(s->fd, buf, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly len bytes, through the session's input buffer.  Returns
 * 1, 0 on end of file before the first byte, or -1 with errno set
 * (ECONNRESET for end of file in the middle). */
static int
smtpool_read_full(smtpool_t *s, uint8_t *buf, size_t len)
{
	size_t	got = 0, take;
	ssize_t	n;
	int	direct;

	while (got < len) {
		if (s->in_start < s->in_end) {
			take = s->in_end - s->in_start;
			if (take > len - got)
				take = len - got;
			memcpy(buf + got, s->in + s->in_start, take);
			s->in_start += take;
			got += take;
			continue;
		}
		/* A large remainder goes straight into buf. */
		direct = len - got >= sizeof(s->in);
		if (direct) {
			n = read(s->fd, buf + got, len - got);
		} else {
			n = read(s->fd, s->in, sizeof(s->in));
			s->in_start = 0;
			s->in_end = n > 0 ? (size_t)n : 0;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			if (got == 0)
				return 0;
			errno = ECONNRESET;
			return -1;
		}
		if (direct)
			got += (size_t)n;
	}
	return 1;
}

/* Marks the session broken by a bad frame from the daemon; returns -99. */
static int
smtpool_bad_reply(smtpool_t *s, const char *why)
{
	smtpool_fail(s, SMTPOOL_STATUS_PROTOCOL_ERROR, 0,
	    "invalid reply from smtpoold: %s", why);
	smtpool_shut(s);
	return SMTPOOL_STATUS_PROTOCOL_ERROR;
}

/* Copies a text field of at most max bytes into dst (max + 1 bytes). */
static void
smtpool_copy_field(char *dst, const struct proto_field *f, size_t max)
{
	size_t	len = f->len < max ? f->len : max;

	memcpy(dst, f->data, len);
	dst[len] = '\0';
}

/* Takes status, SMTP code, enhanced code and message from a parsed reply,
 * and the extra fields 4, 5 ... into extras[0], extras[1] ... (empty when
 * the reply has fewer fields). */
static int
smtpool_store_reply(smtpool_t *s, const struct proto_frame *f,
    const struct smtpool_extra *extras, size_t nextras)
{
	int32_t	status, code;
	size_t	i, n;

	if (proto_field_i32(&f->fields[0], &status) == -1 ||
	    proto_field_i32(&f->fields[1], &code) == -1)
		return smtpool_bad_reply(s, "status or SMTP code is not a "
		    "4-byte integer");
	s->smtp_code = code;
	smtpool_copy_field(s->enhanced, &f->fields[2], PROTO_MAX_ENHANCED);
	smtpool_copy_field(s->message, &f->fields[3], PROTO_MAX_MESSAGE);

	for (i = 0; i < nextras; i++) {
		if (extras[i].buf == NULL || extras[i].len == 0)
			continue;
		n = 0;
		if (f->nfields > 4 + i) {
			n = f->fields[4 + i].len;
			if (n > extras[i].len - 1)
				n = extras[i].len - 1;
			memcpy(extras[i].buf, f->fields[4 + i].data, n);
		}
		extras[i].buf[n] = '\0';
	}

	if (f->op == PROTO_OP_ERROR) {
		/* The daemon closes the connection after an ERROR, whatever
		 * status the frame carries. */
		smtpool_shut(s);
		return SMTPOOL_STATUS_PROTOCOL_ERROR;
	}
	return status;
}

/*
 * Reads and parses one frame of any opcode.  On success it returns 0, and
 * *framep is the malloc'd frame that f points into, for the caller to wipe
 * and free (size bytes in *sizep).  Otherwise it returns the failure status
 * and the session is closed.
 * NOTE: there is no reply timeout, because a request may wait for a pooled
 * connection and for the SMTP server; a hung daemon blocks the caller.
 */
static int
smtpool_read_frame(smtpool_t *s, struct proto_frame *f, uint8_t **framep,
    size_t *sizep)
{
	uint8_t		 header[PROTO_HEADER_SIZE], *frame;
	char		 why[256];
	long		 size;
	int		 rc;

	rc = smtpool_read_full(s, header, sizeof(header));
	if (rc == 0)
		return smtpool_lost(s, ECONNRESET, "smtpoold closed the "
		    "connection without replying; see its log");
	if (rc == -1)
		return smtpool_lost(s, errno, "cannot read the reply from "
		    "smtpoold: %s", strerror(errno));

	/* The codec's version message is worded for the daemon's side, so
	 * name both versions here from the client's point of view. */
	if (header[0] == PROTO_MAGIC0 && header[1] == PROTO_MAGIC1 &&
	    header[2] != PROTO_VERSION) {
		snprintf(why, sizeof(why), "smtpoold sent protocol version %u; "
		    "this library speaks version %d, so upgrade one of them",
		    header[2], PROTO_VERSION);
		return smtpool_bad_reply(s, why);
	}
	size = proto_frame_size(header, sizeof(header), NULL, why,
	    sizeof(why));
	if (size == -1)
		return smtpool_bad_reply(s, why);
	if ((frame = malloc((size_t)size)) == NULL) {
		smtpool_fail(s, SMTPOOL_STATUS_NO_MEMORY, ENOMEM,
		    "out of memory for a %ld-byte reply", size);
		/* The unread rest of the frame would be taken for the next
		 * reply, so the session cannot go on. */
		smtpool_shut(s);
		return SMTPOOL_STATUS_NO_MEMORY;
	}
	memcpy(frame, header, sizeof(header));
	rc = smtpool_read_full(s, frame + PROTO_HEADER_SIZE,
	    (size_t)size - PROTO_HEADER_SIZE);
	if (rc != 1) {
		int errnum = rc == 0 ? ECONNRESET : errno;

		free(frame);
		return smtpool_lost(s, errnum, "cannot read the reply from "
		    "smtpoold: %s", strerror(errnum));
	}

	if (proto_frame_parse(frame, (size_t)size, f, why,
	    sizeof(why)) == -1) {
		free(frame);
		return smtpool_bad_reply(s, why);
	}
	*framep = frame;
	*sizep = (size_t)size;
	return 0;
}

/* Wipes and frees a frame from smtpool_read_frame().  Replies carry no
 * secrets, but wiping costs little and keeps a reply that repeats one by
 * mistake out of freed memory. */
static void
smtpool_free_reply(uint8_t *frame, size_t size)
{
	explicit_bzero(frame, size);
	free(frame);
}

/* Fails with -99 for a frame that is not a REPLY or ERROR. */
static int
smtpool_unexpected_frame(smtpool_t *s, const struct proto_frame *f,
    const char *expected)
{
	char	why[256];

	snprintf(why, sizeof(why), "expected %s, got %s (opcode 0x%02x)",
	    expected, proto_op_name(f->op), f->op);
	return smtpool_bad_reply(s, why);
}

/*
 * Reads one REPLY or ERROR frame and returns its status.  extras receive
 * the fields from 4 on (the server text of a GET_RESPONSE reply, the
 * driver properties and runtime information of a GET_SECURITY reply).
 */
static int
smtpool_read_reply(smtpool_t *s, const struct smtpool_extra *extras,
    size_t nextras)
{
	struct proto_frame	 f;
	uint8_t			*frame;
	size_t			 size;
	int			 rc, status;

	if ((rc = smtpool_read_frame(s, &f, &frame, &size)) != 0)
		return rc;
	if (f.op != PROTO_OP_REPLY && f.op != PROTO_OP_ERROR) {
		smtpool_free_reply(frame, size);
		return smtpool_unexpected_frame(s, &f, "REPLY or ERROR");
	}
	status = smtpool_store_reply(s, &f, extras, nextras);
	smtpool_free_reply(frame, size);
	return status;
}

/*
 * Handles a failed write to the daemon.  The daemon may have sent an ERROR
 * frame and closed the connection while the request was still going out.
 * That frame explains the failure better than EPIPE, so read it first.
 */
static int
smtpool_write_failed(smtpool_t *s, int errnum)
{
	int	status;

	if (errnum == EPIPE || errnum == ECONNRESET) {
		status = smtpool_read_reply(s, NULL, 0);
		if (status == SMTPOOL_STATUS_PROTOCOL_ERROR)
			return status;
	}
	return smtpool_lost(s, errnum, "cannot send to smtpoold: %s",
	    strerror(errnum));
}

/* Appends a built frame to the output queue.  Returns 0 or -1 (ENOMEM). */
static int
smtpool_queue(smtpool_t *s, const uint8_t *data, size_t len)
{
	uint8_t	*grown;
	size_t	 cap;

	if (s->outlen + len > s->outcap) {
		cap = s->outcap != 0 ? s->outcap : 8192;
		while (cap < s->outlen + len)
			cap *= 2;
		if ((grown = realloc(s->out, cap)) == NULL)
			return -1;
		s->out = grown;
		s->outcap = cap;
	}
	memcpy(s->out + s->outlen, data, len);
	s->outlen += len;
	return 0;
}

/* Writes the output queue.  Returns 0, or -1 with errno set. */
static int
smtpool_flush(smtpool_t *s)
{
	int	rc;

	if (s->outlen == 0)
		return 0;
	rc = smtpool_write_all(s, s->out, s->outlen);
	s->outlen = 0;
	return rc;
}

/* Wipes and frees a frame buffer that may contain a secret: LOGON has a
 * password field and SET_SECURITY parameters carry passwords and tokens.
 * free() alone would hand the bytes back to the allocator as they are. */
static void
smtpool_free_frame(struct proto_buf *b, uint8_t op)
{
	if (b->data != NULL &&
	    (op == PROTO_OP_LOGON || op == PROTO_OP_SET_SECURITY))
		explicit_bzero(b->data, b->cap);
	proto_buf_free(b);
}

/* Finishes a built frame and writes it.  Returns 0 or a failure status. */
static int
smtpool_send_frame(smtpool_t *s, struct proto_buf *b, uint8_t op)
{
	int	rc, errnum;

	if (proto_buf_finish(b) == -1) {
		smtpool_free_frame(b, op);
		/* Arguments were checked against the limits beforehand, so
		 * only an allocation can fail here. */
		return smtpool_fail(s, SMTPOOL_STATUS_NO_MEMORY, ENOMEM,
		    "out of memory while building a request");
	}
	/* Body frames are queued; END, and every other request, sends
	 * what is queued and then itself. */
	if (op == PROTO_OP_SENDMAIL || op == PROTO_OP_PART ||
	    op == PROTO_OP_CHUNK || op == PROTO_OP_END) {
		if (smtpool_queue(s, b->data, b->len) == -1) {
			smtpool_free_frame(b, op);
			return smtpool_fail(s, SMTPOOL_STATUS_NO_MEMORY, ENOMEM,
			    "out of memory while queueing a request");
		}
		smtpool_free_frame(b, op);
		if (op != PROTO_OP_END && s->outlen < SMTPOOL_OUT_FLUSH)
			return 0;
		rc = smtpool_flush(s);
	} else {
		rc = smtpool_flush(s);
		if (rc == 0)
			rc = smtpool_write_all(s, b->data, b->len);
		errnum = errno;
		smtpool_free_frame(b, op);
		errno = errnum;
	}
	errnum = errno;
	if (rc == -1)
		return smtpool_write_failed(s, errnum);
	return 0;
}

/* Sends a request built in b with opcode op and returns the status of its
 * reply; extras receive the reply's fields from 4 on. */
static int
smtpool_request(smtpool_t *s, struct proto_buf *b, uint8_t op,
    const struct smtpool_extra *extras, size_t nextras)
{
	int	rc;

	if ((rc = smtpool_send_frame(s, b, op)) != 0)
		return rc;
	return smtpool_read_reply(s, extras, nextras);
}

smtpool_t *
smtpool_connect(const char *socket_path, char *err, size_t errlen)
{
	struct sockaddr_un	 sun;
	smtpool_t		*s;
	char			 path[sizeof(sun.sun_path)], why[512];
	const char		*source = "";
	int			 fd, errnum;

	if (socket_path == NULL) {
		socket_path = getenv("SMTPOOL_SOCKET");
		source = " (from SMTPOOL_SOCKET)";
		if (socket_path == NULL || *socket_path == '\0') {
			if (proto_default_socket_path(path, sizeof(path), why,
			    sizeof(why)) == -1) {
				if (err != NULL && errlen > 0)
					snprintf(err, errlen, "%s", why);
				errno = ENOENT;
				return NULL;
			}
			socket_path = path;
			source = " (the default path)";
		}
	}
	if (*socket_path == '\0') {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "the socket path is empty; give "
			    "the path of smtpoold's socket");
		errno = EINVAL;
		return NULL;
	}
	if (strlen(socket_path) >= sizeof(sun.sun_path)) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "socket path \"%s\"%s is %zu "
			    "bytes, over the limit of %zu for a Unix socket",
			    socket_path, source, strlen(socket_path),
			    sizeof(sun.sun_path) - 1);
		errno = ENAMETOOLONG;
		return NULL;
	}

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, socket_path, strlen(socket_path) + 1);

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		errnum = errno;
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "cannot create a Unix socket: "
			    "%s", strerror(errnum));
		errno = errnum;
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		errnum = errno;
		close(fd);
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "cannot connect to %s%s: %s; "
			    "is smtpoold running?", socket_path, source,
			    strerror(errnum));
		errno = errnum;
		return NULL;
	}

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "out of memory for a session");
		errno = ENOMEM;
		return NULL;
	}
	s->fd = fd;
	return s;
}

void
smtpool_close(smtpool_t *s)
{
	if (s == NULL)
		return;
	if (s->fd != -1)
		close(s->fd);
	free(s->out);
	/* The last message stays in the session; see smtpool_read_reply(). */
	explicit_bzero(s, sizeof(*s));
	free(s);
}

int
smtpool_logon(smtpool_t *s, const char *conn, const char *user,
    const char *password)
{
	struct proto_buf	b;
	int			rc;

	if (s == NULL)
		return SMTPOOL_STATUS_INVALID_ARGUMENT;
	if ((rc = smtpool_begin(s)) != 0)
		return rc;
	if ((rc = smtpool_check_arg(s, "connection string", conn,
	    PROTO_MAX_CONNSTR)) != 0 ||
	    (rc = smtpool_check_arg(s, "user", user,
	    PROTO_MAX_CREDENTIAL)) != 0 ||
	    (rc = smtpool_check_arg(s, "password", password,
	    PROTO_MAX_CREDENTIAL)) != 0)
		return rc;

	proto_buf_begin(&b, PROTO_OP_LOGON);
	proto_buf_add_str(&b, conn);
	proto_buf_add_str(&b, user);
	proto_buf_add_str(&b, password);
	return smtpool_request(s, &b, PROTO_OP_LOGON, NULL, 0);
}

int
smtpool_logoff(smtpool_t *s)
{
	struct proto_buf	b;
	int			rc;

	if (s == NULL)
		return SMTPOOL_STATUS_INVALID_ARGUMENT;
	if ((rc = smtpool_begin(s)) != 0)
		return rc;
	proto_buf_begin(&b, PROTO_OP_LOGOFF);
	return smtpool_request(s, &b, PROTO_OP_LOGOFF, NULL, 0);
}

int
smtpool_get_smtp_response(smtpool_t *s, int *code, char *text,
    size_t textlen)
{
	struct proto_buf	b;
	struct smtpool_extra	extra;
	char			server_text[PROTO_MAX_SMTP_TEXT + 1];
	int			rc;

	if (code != NULL)
		*code = 0;
	if (text != NULL && textlen > 0)
		text[0] = '\0';
	if (s == NULL)
		return SMTPOOL_STATUS_INVALID_ARGUMENT;
	if ((rc = smtpool_begin(s)) != 0)
		return rc;

	extra.buf = server_text;
	extra.len = sizeof(server_text);
	proto_buf_begin(&b, PROTO_OP_GET_RESPONSE);
	rc = smtpool_request(s, &b, PROTO_OP_GET_RESPONSE, &extra, 1);
	if (rc == SMTPOOL_STATUS_OK) {
		if (code != NULL)
			*code = s->smtp_code;
		if (text != NULL && textlen > 0)
			smtpool_copy_str(text, textlen, server_text);
	}
	return rc;
}

int
smtpool_set_security(smtpool_t *s, const char *properties,
    const char *parameters)
{
	struct proto_buf	b;
	size_t			len;
	int			rc;

	if (s == NULL)
		return SMTPOOL_STATUS_INVALID_ARGUMENT;
	if ((rc = smtpool_begin(s)) != 0)
		return rc;

	/* Over-long values get the codes the daemon would give them, which
	 * also keeps the fields within their frame limits.  The messages
	 * name only the length, because parameters hold secrets. */
	if (properties == NULL)
		return smtpool_fail(s, SMTPOOL_SECURITY_INVALID_PROPERTIES, 0,
		    "properties is NULL; give \"SMTP=ENTRYPOINT\" or "
		    "\"SMTP=\"");
	if ((len = strlen(properties)) > PROTO_MAX_PROPERTIES)
		return smtpool_fail(s, SMTPOOL_SECURITY_INVALID_PROPERTIES, 0,
		    "properties are %zu bytes, over the limit of %d", len,
		    PROTO_MAX_PROPERTIES);
	if (parameters == NULL)
		return smtpool_fail(s, SMTPOOL_SECURITY_PARAMETERS_TOO_LONG, 0,
		    "parameters is NULL; pass an empty string instead");
	if ((len = strlen(parameters)) > PROTO_MAX_PARAMETERS)
		return smtpool_fail(s, SMTPOOL_SECURITY_PARAMETERS_TOO_LONG, 0,
		    "parameters are %zu bytes, over the limit of %d", len,
		    PROTO_MAX_PARAMETERS);

	proto_buf_begin(&b, PROTO_OP_SET_SECURITY);
	proto_buf_add_str(&b, properties);
	proto_buf_add_str(&b, parameters);
	/* smtpool_send_frame() wipes the frame, which is the only copy the
	 * library makes of the parameters. */
	return smtpool_request(s, &b, PROTO_OP_SET_SECURITY, NULL, 0);
}

int
smtpool_get_security(smtpool_t *s, int index, const char *properties,
    char *driver_properties, size_t len1, char *runtime_info, size_t len2)
{
	struct proto_buf	b;
	struct smtpool_extra	extras[2];
	char			props[PROTO_MAX_SMTP_TEXT + 1];
	char			info[PROTO_MAX_SMTP_TEXT + 1];
	size_t			len;
	int			rc;

	if (driver_properties != NULL && len1 > 0)
		driver_properties[0] = '\0';
	if (runtime_info != NULL && len2 > 0)
		runtime_info[0] = '\0';
	if (s == NULL)
		return SMTPOOL_STATUS_INVALID_ARGUMENT;
	if ((rc = smtpool_begin(s)) != 0)
		return rc;
	if (properties == NULL)
		return smtpool_fail(s, SMTPOOL_GET_SECURITY_INVALID_KEYWORD, 0,
		    "properties is NULL; give \"SMTP=\"");
	if ((len = strlen(properties)) > PROTO_MAX_PROPERTIES)
		return smtpool_fail(s, SMTPOOL_GET_SECURITY_INVALID_KEYWORD, 0,
		    "properties are %zu bytes, over the limit of %d; give "
		    "\"SMTP=\"", len, PROTO_MAX_PROPERTIES);
	extras[0].buf = props;
	extras[0].len = sizeof(props);
	extras[1].buf = info;
	extras[1].len = sizeof(info);
	proto_buf_begin(&b, PROTO_OP_GET_SECURITY);
	proto_buf_add_i32(&b, (int32_t)index);
	proto_buf_add_str(&b, properties);
	rc = smtpool_request(s, &b, PROTO_OP_GET_SECURITY, extras, 2);
	if (rc == SMTPOOL_STATUS_OK) {
		if (driver_properties != NULL && len1 > 0)
			smtpool_copy_str(driver_properties, len1, props);
		if (runtime_info != NULL && len2 > 0)
			smtpool_copy_str(runtime_info, len2, info);
	}
	return rc;
}

/* ---- STATUS ------------------------------------------------------ */

/* Decodes a STATUS_ROW frame, whose field layout proto_frame_parse() has
 * checked, and passes it to cb unless an earlier call stopped the calls.
 * Returns 0 or -99. */
static int
smtpool_status_row(smtpool_t *s, const struct proto_frame *f,
    smtpool_status_row_cb cb, void *arg, int *stopped)
{
	struct smtpool_status_row	row;
	char				conn[PROTO_MAX_CONNSTR + 1];
	char				drivers[PROTO_MAX_MESSAGE + 1];

	if (proto_field_i32(&f->fields[2], &row.idle) == -1 ||
	    proto_field_i32(&f->fields[3], &row.busy) == -1 ||
	    proto_field_i32(&f->fields[4], &row.opening) == -1 ||
	    proto_field_i32(&f->fields[5], &row.waiting) == -1 ||
	    proto_field_i64(&f->fields[6], &row.sent) == -1 ||
	    proto_field_i64(&f->fields[7], &row.errors) == -1 ||
	    proto_field_i64(&f->fields[8], &row.oldest_age) == -1)
		return smtpool_bad_reply(s, "a STATUS_ROW count has the wrong "
		    "size");
	if (row.idle < 0 || row.busy < 0 || row.opening < 0 ||
	    row.waiting < 0 || row.sent < 0 || row.errors < 0 ||
	    row.oldest_age < 0)
		return smtpool_bad_reply(s, "a STATUS_ROW count is negative");
	if (cb == NULL || *stopped)
		return 0;
	smtpool_copy_field(conn, &f->fields[0], PROTO_MAX_CONNSTR);
	smtpool_copy_field(drivers, &f->fields[1], PROTO_MAX_MESSAGE);
	row.connection = conn;
	row.drivers = drivers;
	if (cb(&row, arg) != 0)
		*stopped = 1;
	return 0;
}

/* Returns the count of t that the total name (len bytes) fills, or NULL
 * for a name this library does not know. */
static int64_t *
smtpool_status_total_slot(struct smtpool_status_totals *t, const char *name,
    size_t len)
{
	const struct {
		const char	*name;
		int64_t		*slot;
	} known[] = {
		{ "sessions", &t->sessions },
		{ "keys", &t->keys },
		{ "idle", &t->idle },
		{ "busy", &t->busy },
		{ "opening", &t->opening },
		{ "waiting", &t->waiting },
		{ "opened", &t->opened },
		{ "reused", &t->reused },
		{ "sent", &t->sent },
		{ "errors", &t->errors },
		{ "uptime", &t->uptime },
	};
	size_t	i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strlen(known[i].name) == len &&
		    memcmp(known[i].name, name, len) == 0)
			return known[i].slot;
	return NULL;
}

/* Sets every total to "not reported". */
static void
smtpool_status_totals_clear(struct smtpool_status_totals *t)
{
	t->sessions = t->keys = t->idle = t->busy = t->opening = -1;
	t->waiting = t->opened = t->reused = t->sent = t->errors = -1;
	t->uptime = -1;
	t->version[0] = '\0';
}

/* Parses the "name=value" extras of the STATUS reply into t.  Unknown
 * names are skipped; a known count that is not a non-negative whole
 * number is a bad reply.  Returns 0 or -99. */
static int
smtpool_status_totals(smtpool_t *s, const struct proto_frame *f,
    struct smtpool_status_totals *t)
{
	char		 item[PROTO_MAX_SMTP_TEXT + 1];
	char		 why[PROTO_MAX_SMTP_TEXT + 64];
	char		*eq, *end;
	int64_t		*slot;
	long long	 v;
	unsigned	 i;

	for (i = 4; i < f->nfields; i++) {
		smtpool_copy_field(item, &f->fields[i], PROTO_MAX_SMTP_TEXT);
		if ((eq = strchr(item, '=')) == NULL)
			continue;
		if ((size_t)(eq - item) == 7 &&
		    memcmp(item, "version", 7) == 0) {
			smtpool_copy_str(t->version, sizeof(t->version),
			    eq + 1);
			continue;
		}
		if ((slot = smtpool_status_total_slot(t, item,
		    (size_t)(eq - item))) == NULL)
			continue;
		errno = 0;
		v = strtoll(eq + 1, &end, 10);
		if (eq[1] < '0' || eq[1] > '9' || *end != '\0' ||
		    errno != 0) {
			snprintf(why, sizeof(why), "STATUS total \"%s\" is "
			    "not a whole number", item);
			return smtpool_bad_reply(s, why);
		}
		*slot = v;
	}
	return 0;
}

int
smtpool_status(smtpool_t *s, smtpool_status_row_cb cb, void *arg,
    struct smtpool_status_totals *totals)
{
	struct smtpool_status_totals	 t;
	struct proto_buf		 b;
	struct proto_frame		 f;
	uint8_t				*frame;
	size_t				 size;
	int				 rc, stopped = 0;

	if (totals != NULL)
		smtpool_status_totals_clear(totals);
	if (s == NULL)
		return SMTPOOL_STATUS_INVALID_ARGUMENT;
	if ((rc = smtpool_begin(s)) != 0)
		return rc;

	proto_buf_begin(&b, PROTO_OP_STATUS);
	if ((rc = smtpool_send_frame(s, &b, PROTO_OP_STATUS)) != 0)
		return rc;

	/* STATUS_ROW frames come first, one per pool key, so the loop ends
	 * with the daemon's REPLY or ERROR. */
	for (;;) {
		if ((rc = smtpool_read_frame(s, &f, &frame, &size)) != 0)
			return rc;
		if (f.op != PROTO_OP_STATUS_ROW)
			break;
		rc = smtpool_status_row(s, &f, cb, arg, &stopped);
		smtpool_free_reply(frame, size);
		if (rc != 0)
			return rc;
	}
	if (f.op != PROTO_OP_REPLY && f.op != PROTO_OP_ERROR) {
		smtpool_free_reply(frame, size);
		return smtpool_unexpected_frame(s, &f,
		    "STATUS_ROW, REPLY or ERROR");
	}

	smtpool_status_totals_clear(&t);
	rc = 0;
	if (f.op == PROTO_OP_REPLY)
		rc = smtpool_status_totals(s, &f, &t);
	if (rc == 0)
		rc = smtpool_store_reply(s, &f, NULL, 0);
	smtpool_free_reply(frame, size);
	if (rc == SMTPOOL_STATUS_OK && totals != NULL)
		*totals = t;
	return rc;
}

/* Closes the descriptors of attachments opened so far. */
static void
smtpool_close_attachments(struct smtpool_attachment *att, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (att[i].fd != -1)
			close(att[i].fd);
}

/* Checks an attachment's base name against the PART file name rules. */
static int
smtpool_check_filename(smtpool_t *s, const char *path, const char *name)
{
	size_t	len = strlen(name);

	if (len == 0)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "attachment \"%s\" has no file name after its last '/'",
		    path);
	if (len > PROTO_MAX_FILENAME)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "attachment file name of \"%s\" is %zu bytes, over the "
		    "limit of %d", path, len, PROTO_MAX_FILENAME);
	if (strpbrk(name, "\r\n\\") != NULL)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "attachment file name of \"%s\" contains CR, LF or a "
		    "backslash; rename the file", path);
	return 0;
}

/*
 * Opens every attachment before anything is sent, so a missing file fails
 * the call without leaving a half-sent request.  Returns 0 or -1 (status).
 */
static int
smtpool_open_attachments(smtpool_t *s, const char *const *paths, size_t n,
    struct smtpool_attachment *att)
{
	struct stat	 st;
	const char	*slash;
	size_t		 i;
	int		 rc, errnum;

	for (i = 0; i < n; i++)
		att[i].fd = -1;
	for (i = 0; i < n; i++) {
		if (paths[i] == NULL) {
			rc = smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
			    "attachment %zu is NULL", i + 1);
			goto fail;
		}
		att[i].path = paths[i];
		slash = strrchr(paths[i], '/');
		att[i].name = slash != NULL ? slash + 1 : paths[i];
		if ((rc = smtpool_check_filename(s, paths[i],
		    att[i].name)) != 0)
			goto fail;

		att[i].fd = open(paths[i], O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (att[i].fd == -1) {
			errnum = errno;
			rc = smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT,
			    errnum, "cannot open attachment \"%s\": %s",
			    paths[i], strerror(errnum));
			goto fail;
		}
		if (fstat(att[i].fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			rc = smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT,
			    EISDIR, "attachment \"%s\" is a directory; give "
			    "a file", paths[i]);
			goto fail;
		}
	}
	return 0;

fail:
	smtpool_close_attachments(att, n);
	return rc;
}

/* Sends a PART frame. */
static int
smtpool_send_part(smtpool_t *s, const char *kind, const char *filename)
{
	struct proto_buf	b;

	proto_buf_begin(&b, PROTO_OP_PART);
	proto_buf_add_str(&b, kind);
	proto_buf_add_str(&b, filename);
	proto_buf_add_str(&b, "");	/* content type: daemon guesses */
	return smtpool_send_frame(s, &b, PROTO_OP_PART);
}

/* Sends one CHUNK frame of len bytes (len <= PROTO_MAX_CHUNK). */
static int
smtpool_send_chunk(smtpool_t *s, const void *data, size_t len)
{
	struct proto_buf	b;

	proto_buf_begin(&b, PROTO_OP_CHUNK);
	proto_buf_add_bytes(&b, data, len);
	return smtpool_send_frame(s, &b, PROTO_OP_CHUNK);
}

/* Sends a buffer as CHUNK frames. */
static int
smtpool_stream_buffer(smtpool_t *s, const char *data, size_t len)
{
	size_t	n;
	int	rc;

	while (len > 0) {
		n = len < PROTO_MAX_CHUNK ? len : PROTO_MAX_CHUNK;
		if ((rc = smtpool_send_chunk(s, data, n)) != 0)
			return rc;
		data += n;
		len -= n;
	}
	return 0;
}

/*
 * Streams fd to end of file as CHUNK frames of up to 64 KiB.  what names
 * the source in messages.  A read error closes the session because the
 * protocol has no way to cancel a SENDMAIL and sending END would send a
 * truncated message.  Closing the connection makes the daemon drop it.
 */
static int
smtpool_stream_fd(smtpool_t *s, int fd, const char *what, uint8_t *buf)
{
	size_t	fill;
	ssize_t	n;
	int	rc, eof = 0, errnum;

	while (!eof) {
		/* Fill the buffer so pipes that deliver a few bytes at a
		 * time do not turn into many tiny frames. */
		fill = 0;
		while (fill < PROTO_MAX_CHUNK) {
			n = read(fd, buf + fill, PROTO_MAX_CHUNK - fill);
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1) {
				errnum = errno;
				smtpool_fail(s,
				    SMTPOOL_STATUS_INVALID_ARGUMENT, errnum,
				    "cannot read %s: %s; the message was not "
				    "sent and the session is closed", what,
				    strerror(errnum));
				smtpool_shut(s);
				return SMTPOOL_STATUS_INVALID_ARGUMENT;
			}
			if (n == 0) {
				eof = 1;
				break;
			}
			fill += (size_t)n;
		}
		if (fill > 0 && (rc = smtpool_send_chunk(s, buf, fill)) != 0)
			return rc;
	}
	return 0;
}

/* Sends the SENDMAIL request, its parts and END, and reads the reply. */
static int
smtpool_sendmail_stream(smtpool_t *s, const char *server, const char *headers,
    const struct smtpool_text *text, struct smtpool_attachment *att,
    size_t natt, int64_t maxsize)
{
	struct proto_buf	 b;
	uint8_t			*buf;
	char			 what[64 + 4096];
	size_t			 i;
	int			 rc;

	if ((buf = malloc(PROTO_MAX_CHUNK)) == NULL)
		return smtpool_fail(s, SMTPOOL_STATUS_NO_MEMORY, ENOMEM,
		    "out of memory for a %d-byte read buffer",
		    PROTO_MAX_CHUNK);

	proto_buf_begin(&b, PROTO_OP_SENDMAIL);
	proto_buf_add_str(&b, server);
	proto_buf_add_str(&b, headers);
	proto_buf_add_i64(&b, maxsize);
	if ((rc = smtpool_send_frame(s, &b, PROTO_OP_SENDMAIL)) != 0)
		goto done;

	if (text->present) {
		if ((rc = smtpool_send_part(s, "text", "")) != 0)
			goto done;
		if (text->fd != -1) {
			snprintf(what, sizeof(what),
			    "the message text from descriptor %d", text->fd);
			rc = smtpool_stream_fd(s, text->fd, what, buf);
		} else
			rc = smtpool_stream_buffer(s, text->data, text->len);
		if (rc != 0)
			goto done;
	}

	for (i = 0; i < natt; i++) {
		if ((rc = smtpool_send_part(s, "attachment",
		    att[i].name)) != 0)
			goto done;
		snprintf(what, sizeof(what), "attachment \"%s\"",
		    att[i].path);
		if ((rc = smtpool_stream_fd(s, att[i].fd, what, buf)) != 0)
			goto done;
	}

	proto_buf_begin(&b, PROTO_OP_END);
	rc = smtpool_request(s, &b, PROTO_OP_END, NULL, 0);

done:
	free(buf);
	return rc;
}

/* Checks the arguments common to both SendMail calls, opens the
 * attachments and sends. */
static int
smtpool_sendmail_common(smtpool_t *s, const char *server, const char *headers,
    const struct smtpool_text *text, const char *const *attachments,
    size_t nattachments, int64_t maxsize)
{
	struct smtpool_attachment	*att = NULL;
	int				 rc;

	if (s == NULL)
		return SMTPOOL_STATUS_INVALID_ARGUMENT;
	if ((rc = smtpool_begin(s)) != 0)
		return rc;
	if ((rc = smtpool_check_arg(s, "server", server,
	    PROTO_MAX_CONNSTR)) != 0 ||
	    (rc = smtpool_check_arg(s, "header list", headers,
	    PROTO_MAX_HEADERS)) != 0)
		return rc;
	if (maxsize < 0)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "maxsize %lld is negative; give a size in bytes, or 0 "
		    "for no limit", (long long)maxsize);
	if (nattachments > 0 && attachments == NULL)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "attachments is NULL but nattachments is %zu",
		    nattachments);

	if (nattachments > 0) {
		if ((att = calloc(nattachments, sizeof(*att))) == NULL)
			return smtpool_fail(s, SMTPOOL_STATUS_NO_MEMORY, ENOMEM,
			    "out of memory for %zu attachments",
			    nattachments);
		if ((rc = smtpool_open_attachments(s, attachments,
		    nattachments, att)) != 0) {
			free(att);
			return rc;
		}
	}

	rc = smtpool_sendmail_stream(s, server, headers, text, att,
	    nattachments, maxsize);

	smtpool_close_attachments(att, nattachments);
	free(att);
	return rc;
}

int
smtpool_sendmail(smtpool_t *s, const char *server, const char *headers,
    const char *text, size_t textlen, const char *const *attachments,
    size_t nattachments, int64_t maxsize)
{
	struct smtpool_text	t;

	if (s != NULL && s->fd != -1 && text == NULL && textlen > 0)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "text is NULL but textlen is %zu", textlen);
	t.data = text;
	t.len = textlen;
	t.fd = -1;
	t.present = text != NULL;
	return smtpool_sendmail_common(s, server, headers, &t, attachments,
	    nattachments, maxsize);
}

int
smtpool_sendmail_fd(smtpool_t *s, const char *server, const char *headers,
    int textfd, const char *const *attachments, size_t nattachments,
    int64_t maxsize)
{
	struct smtpool_text	t;

	if (s != NULL && s->fd != -1 && textfd < -1)
		return smtpool_fail(s, SMTPOOL_STATUS_INVALID_ARGUMENT, 0,
		    "textfd %d is not a descriptor; give -1 for no text",
		    textfd);
	t.data = NULL;
	t.len = 0;
	t.fd = textfd;
	t.present = textfd != -1;
	return smtpool_sendmail_common(s, server, headers, &t, attachments,
	    nattachments, maxsize);
}

int
smtpool_last_smtp_code(const smtpool_t *s)
{
	return s != NULL ? s->smtp_code : 0;
}

const char *
smtpool_last_enhanced(const smtpool_t *s)
{
	return s != NULL ? s->enhanced : "";
}

const char *
smtpool_last_message(const smtpool_t *s)
{
	return s != NULL ? s->message : "";
}

int
smtpool_last_errno(const smtpool_t *s)
{
	return s != NULL ? s->sys_errno : 0;
}

int
smtpool_is_connected(const smtpool_t *s)
{
	return s != NULL && s->fd != -1;
}

const char *
smtpool_status_text(int status)
{
	return proto_status_text(status);
}

const char *
smtpool_set_security_status_text(int status)
{
	switch (status) {
	case SMTPOOL_SECURITY_OK:
		return "success";
	case SMTPOOL_SECURITY_INVALID_PROPERTIES:
		return "invalid properties";
	case SMTPOOL_SECURITY_PARAMETERS_TOO_LONG:
		return "parameters too long";
	case SMTPOOL_SECURITY_LOCKED:
		return "security context locked while logged on";
	case SMTPOOL_SECURITY_UNKNOWN_DRIVER:
		return "unknown entry point";
	case SMTPOOL_SECURITY_BAD_ORDER:
		return "UStartTLSSMTP not first, or driver given twice";
	case SMTPOOL_SECURITY_TOO_MANY_DRIVERS:
		return "too many drivers";
	default:
		return proto_status_text(status);
	}
}

const char *
smtpool_get_security_status_text(int status)
{
	switch (status) {
	case SMTPOOL_STATUS_OK:
		return "success";
	case SMTPOOL_GET_SECURITY_NO_SUCH_DRIVER:
		return "no such driver";
	case SMTPOOL_GET_SECURITY_INVALID_KEYWORD:
		return "invalid keyword";
	case SMTPOOL_GET_SECURITY_NO_MEMORY:
		return "out of memory";
	default:
		return proto_status_text(status);
	}
}
