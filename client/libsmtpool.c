/*
 * libsmtpool.c - client side of the smtpool socket protocol.
 *
 * Each public call sends one request frame (SENDMAIL also streams its
 * PART, CHUNK and END frames), then reads exactly one REPLY or ERROR frame
 * and stores its status, SMTP code, enhanced code and message in the
 * session.  Local failures use the same statuses as the daemon: -1 for an
 * argument or attachment problem, -9 when the daemon connection is gone,
 * -18 when memory runs out and -99 for a protocol error.  A lost
 * connection or a protocol error closes the session for good.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "smtpool.h"

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
};

/* Source of the SENDMAIL body: a buffer, a descriptor or none. */
struct smtpool_text {
	const char	*data;
	size_t		 len;
	int		 fd;		/* -1 unless reading from a descriptor */
	int		 present;	/* 0 sends no "text" part */
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

/* Reads exactly len bytes.  Returns 1, 0 on end of file before the first
 * byte, or -1 with errno set (ECONNRESET for end of file in the middle). */
static int
smtpool_read_full(int fd, uint8_t *buf, size_t len)
{
	size_t	got = 0;
	ssize_t	n;

	while (got < len) {
		n = read(fd, buf + got, len - got);
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

/* Takes status, SMTP code, enhanced code and message from a parsed reply
 * and, when extra is not NULL, the server text of field 4. */
static int
smtpool_store_reply(smtpool_t *s, const struct proto_frame *f, char *extra,
    size_t extralen)
{
	int32_t	status, code;

	if (proto_field_i32(&f->fields[0], &status) == -1 ||
	    proto_field_i32(&f->fields[1], &code) == -1)
		return smtpool_bad_reply(s, "status or SMTP code is not a "
		    "4-byte integer");
	s->smtp_code = code;
	smtpool_copy_field(s->enhanced, &f->fields[2], PROTO_MAX_ENHANCED);
	smtpool_copy_field(s->message, &f->fields[3], PROTO_MAX_MESSAGE);

	if (extra != NULL && extralen > 0) {
		extra[0] = '\0';
		if (f->nfields > 4) {
			size_t n = f->fields[4].len;

			if (n > extralen - 1)
				n = extralen - 1;
			memcpy(extra, f->fields[4].data, n);
			extra[n] = '\0';
		}
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
 * Reads one REPLY or ERROR frame and returns its status.  extra, when not
 * NULL, receives field 4 (the server text of a GET_RESPONSE reply).
 * NOTE: there is no reply timeout, because a request may wait for a pooled
 * connection and for the SMTP server; a hung daemon blocks the caller.
 */
static int
smtpool_read_reply(smtpool_t *s, char *extra, size_t extralen)
{
	uint8_t			 header[PROTO_HEADER_SIZE], *frame;
	struct proto_frame	 f;
	char			 why[256];
	long			 size;
	int			 rc, status;

	rc = smtpool_read_full(s->fd, header, sizeof(header));
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
	rc = smtpool_read_full(s->fd, frame + PROTO_HEADER_SIZE,
	    (size_t)size - PROTO_HEADER_SIZE);
	if (rc != 1) {
		int errnum = rc == 0 ? ECONNRESET : errno;

		free(frame);
		return smtpool_lost(s, errnum, "cannot read the reply from "
		    "smtpoold: %s", strerror(errnum));
	}

	if (proto_frame_parse(frame, (size_t)size, &f, why,
	    sizeof(why)) == -1) {
		free(frame);
		return smtpool_bad_reply(s, why);
	}
	if (f.op != PROTO_OP_REPLY && f.op != PROTO_OP_ERROR) {
		free(frame);
		snprintf(why, sizeof(why), "expected REPLY or ERROR, got %s "
		    "(opcode 0x%02x)", proto_op_name(f.op), f.op);
		return smtpool_bad_reply(s, why);
	}
	status = smtpool_store_reply(s, &f, extra, extralen);
	free(frame);
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

/* Finishes a built frame and writes it.  Returns 0 or a failure status. */
static int
smtpool_send_frame(smtpool_t *s, struct proto_buf *b)
{
	int	rc;

	if (proto_buf_finish(b) == -1) {
		proto_buf_free(b);
		/* Arguments were checked against the limits beforehand, so
		 * only an allocation can fail here. */
		return smtpool_fail(s, SMTPOOL_STATUS_NO_MEMORY, ENOMEM,
		    "out of memory while building a request");
	}
	rc = smtpool_write_all(s, b->data, b->len);
	if (b->data[3] == PROTO_OP_LOGON) {
		/* The frame contains the password, so wipe it before free()
		 * returns the memory to the allocator. */
		explicit_bzero(b->data, b->len);
	}
	proto_buf_free(b);
	if (rc == -1)
		return smtpool_write_failed(s, errno);
	return 0;
}

/* Sends a request built in b and returns the status of its reply. */
static int
smtpool_request(smtpool_t *s, struct proto_buf *b, char *extra,
    size_t extralen)
{
	int	rc;

	if ((rc = smtpool_send_frame(s, b)) != 0)
		return rc;
	return smtpool_read_reply(s, extra, extralen);
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
	return smtpool_request(s, &b, NULL, 0);
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
	return smtpool_request(s, &b, NULL, 0);
}

int
smtpool_get_smtp_response(smtpool_t *s, int *code, char *text,
    size_t textlen)
{
	struct proto_buf	b;
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

	proto_buf_begin(&b, PROTO_OP_GET_RESPONSE);
	rc = smtpool_request(s, &b, server_text, sizeof(server_text));
	if (rc == SMTPOOL_STATUS_OK) {
		if (code != NULL)
			*code = s->smtp_code;
		if (text != NULL && textlen > 0)
			smtpool_copy_str(text, textlen, server_text);
	}
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
	return smtpool_send_frame(s, &b);
}

/* Sends one CHUNK frame of len bytes (len <= PROTO_MAX_CHUNK). */
static int
smtpool_send_chunk(smtpool_t *s, const void *data, size_t len)
{
	struct proto_buf	b;

	proto_buf_begin(&b, PROTO_OP_CHUNK);
	proto_buf_add_bytes(&b, data, len);
	return smtpool_send_frame(s, &b);
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
	if ((rc = smtpool_send_frame(s, &b)) != 0)
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
	rc = smtpool_request(s, &b, NULL, 0);

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
