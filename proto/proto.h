/*
 * proto.h - the smtpool socket protocol: frame layout, limits, status codes
 * and the codec shared by smtpoold and libsmtpool.
 *
 * A frame is an 8-byte header followed by a payload:
 *
 *   offset 0  2 bytes  magic "SP"
 *   offset 2  1 byte   protocol version (PROTO_VERSION)
 *   offset 3  1 byte   opcode (enum proto_op)
 *   offset 4  4 bytes  payload length, unsigned big-endian
 *
 * The payload is a sequence of fields, each a 4-byte unsigned big-endian
 * length followed by that many bytes.  Integers travel as fields of exactly
 * 4 (int32) or 8 (int64) bytes, big-endian two's complement.  Strings are
 * UTF-8 without a terminating NUL; a NUL inside a text field is invalid.
 * PROTOCOL.md is the full description; this header and that document must
 * agree.
 *
 * Every parse function returns 0 on success and -1 on error, filling a
 * caller-supplied message buffer with what was wrong.
 */
#ifndef SMTPOOL_PROTO_H
#define SMTPOOL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC0		'S'
#define PROTO_MAGIC1		'P'
#define PROTO_VERSION		1
#define PROTO_HEADER_SIZE	8

/* Hard limits.  A frame that exceeds one is a protocol error. */
#define PROTO_MAX_PAYLOAD	(128 * 1024)	/* bytes after the header */
#define PROTO_MAX_FIELDS	16		/* fields in one frame */
#define PROTO_MAX_CHUNK		(64 * 1024)	/* data bytes in one CHUNK */
#define PROTO_MAX_CONNSTR	1024		/* connection string */
#define PROTO_MAX_CREDENTIAL	4095		/* LOGON user or password */
#define PROTO_MAX_HEADERS	65536		/* SENDMAIL header list */
#define PROTO_MAX_FILENAME	255		/* PART file name */
#define PROTO_MAX_CONTENT_TYPE	255		/* PART content type */
#define PROTO_MAX_PART_KIND	16		/* PART kind word */
#define PROTO_MAX_ENHANCED	32		/* reply enhanced status code */
#define PROTO_MAX_MESSAGE	1024		/* reply readable message */
#define PROTO_MAX_SMTP_TEXT	512		/* GET_RESPONSE server text */
#define PROTO_MAX_PROPERTIES	255		/* SET_SECURITY properties */
#define PROTO_MAX_PARAMETERS	4095		/* SET_SECURITY parameters */

/* Opcodes.  Requests are below 0x80, daemon replies 0x80 and above. */
enum proto_op {
	PROTO_OP_LOGON		= 0x01,	/* conn, user, password */
	PROTO_OP_LOGOFF		= 0x02,	/* (none) */
	PROTO_OP_SENDMAIL	= 0x03,	/* server, headers, maxsize(i64) */
	PROTO_OP_PART		= 0x04,	/* kind, filename, content type */
	PROTO_OP_CHUNK		= 0x05,	/* data */
	PROTO_OP_END		= 0x06,	/* (none): ends a SENDMAIL */
	PROTO_OP_GET_RESPONSE	= 0x07,	/* (none) */
	PROTO_OP_SET_SECURITY	= 0x08,	/* properties, parameters */
	PROTO_OP_GET_SECURITY	= 0x09,	/* index(i32), properties */
	PROTO_OP_STATUS		= 0x0a,	/* (none): pool status */
	/* 0x0b..0x3f are reserved for the message builder and
	 * GetRecipientDetails. */
	PROTO_OP_REPLY		= 0x80,	/* status(i32), smtp code(i32),
					 * enhanced, message, extra... */
	PROTO_OP_ERROR		= 0x81,	/* same layout as REPLY; the daemon
					 * closes the connection after it */
	PROTO_OP_STATUS_ROW	= 0x82,	/* one pool key, before the REPLY to
					 * STATUS: connection string,
					 * drivers, idle(i32), busy(i32),
					 * opening(i32), waiting(i32),
					 * sent(i64), errors(i64),
					 * oldest age in seconds(i64) */
};

/*
 * UPOPMAIL status codes carried in the status field of every reply.
 * Values 0, -2, -3, -6, -7, -8, -9, -10, -12, -15 and -18 keep the meanings
 * the Uniface UPOPMAIL component gives them; -1, -11 and -99 are smtpool's.
 */
enum proto_status {
	PROTO_STATUS_OK			= 0,
	PROTO_STATUS_INVALID_ARGUMENT	= -1,	/* malformed argument */
	PROTO_STATUS_INVALID_ADDRESS	= -2,	/* bad To/From, user set,
						 * all recipients refused */
	PROTO_STATUS_ALREADY_LOGGED_ON	= -3,
	PROTO_STATUS_TOO_LARGE		= -6,	/* over maxsize or SIZE */
	PROTO_STATUS_NO_DRIVER		= -7,	/* server lacks a MAND driver */
	PROTO_STATUS_SECURITY		= -8,	/* TLS/AUTH failed, or not
						 * logged on (LogoffSMTP) */
	PROTO_STATUS_NETWORK		= -9,	/* network, invalid server */
	PROTO_STATUS_NO_RESPONSE	= -10,	/* no SMTP exchange yet */
	PROTO_STATUS_REJECTED		= -11,	/* server rejected message */
	PROTO_STATUS_NO_RECIPIENT	= -12,	/* no From or no recipient */
	PROTO_STATUS_QUOTA		= -15,	/* 452 or 552 */
	PROTO_STATUS_NO_MEMORY		= -18,	/* memory or spool space */
	PROTO_STATUS_PROTOCOL_ERROR	= -99,	/* frame broke the rules */
};

/* One field of a parsed frame; data points into the caller's buffer. */
struct proto_field {
	const uint8_t	*data;
	uint32_t	 len;
};

/* A parsed frame.  Fields stay valid while the parsed buffer does. */
struct proto_frame {
	uint8_t			version;
	uint8_t			op;
	uint32_t		payload_len;
	unsigned		nfields;
	struct proto_field	fields[PROTO_MAX_FIELDS];
};

/*
 * Frame parsing.  proto_frame_size() looks at the header in buf:
 * it returns 0 when fewer than PROTO_HEADER_SIZE bytes are available,
 * -1 (with err filled) when the header is invalid (bad magic, unsupported
 * version, payload over PROTO_MAX_PAYLOAD), otherwise the total frame size.
 * *version receives the header's version byte even when it is unsupported,
 * so the caller can name it in the reply.
 */
long proto_frame_size(const uint8_t *buf, size_t avail, uint8_t *version,
    char *err, size_t errlen);

/*
 * Parses one complete frame of exactly len bytes into f.  Checks the field
 * layout (every length within the payload, at most PROTO_MAX_FIELDS) and,
 * for known opcodes, the field count and each field's limit.  Returns 0 or
 * -1 with err filled.
 */
int proto_frame_parse(const uint8_t *buf, size_t len, struct proto_frame *f,
    char *err, size_t errlen);

/* Field accessors.  Each returns 0 or -1 when the field has the wrong size
 * or, for strings, contains a NUL byte. */
int proto_field_i32(const struct proto_field *, int32_t *);
int proto_field_i64(const struct proto_field *, int64_t *);
/* Returns a malloc'd NUL-terminated copy, or NULL (NUL inside, or ENOMEM). */
char *proto_field_strdup(const struct proto_field *);

/* Frame building into a growable buffer.  Errors (allocation, a frame over
 * the limits) are sticky and reported once by proto_buf_finish(). */
struct proto_buf {
	uint8_t	*data;
	size_t	 len;
	size_t	 cap;
	int	 failed;
};

void proto_buf_begin(struct proto_buf *, uint8_t op);
void proto_buf_add_bytes(struct proto_buf *, const void *, size_t);
void proto_buf_add_str(struct proto_buf *, const char *);
void proto_buf_add_i32(struct proto_buf *, int32_t);
void proto_buf_add_i64(struct proto_buf *, int64_t);
/* Writes the payload length into the header.  Returns 0, or -1 when any
 * step failed or the payload is over PROTO_MAX_PAYLOAD. */
int proto_buf_finish(struct proto_buf *);
/* Frees the data and resets the buffer for reuse. */
void proto_buf_free(struct proto_buf *);

/* Builds a complete REPLY or ERROR frame; extra may be NULL. */
int proto_build_reply(struct proto_buf *, uint8_t op, int32_t status,
    int32_t smtp_code, const char *enhanced, const char *message,
    const char *const *extra, size_t nextra);

/* Formats a message into err, which may be NULL or errlen 0; the error
 * convention of every module is a caller-supplied buffer like this. */
void proto_format_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns the name of an opcode ("LOGON", ...) or "UNKNOWN". */
const char *proto_op_name(uint8_t op);
/* Returns a short English description of a status code. */
const char *proto_status_text(int32_t status);

/*
 * Default socket path, chosen the same way by the daemon and the clients:
 * $RUNTIME_DIRECTORY/smtpool.sock (the first entry when systemd gives a
 * colon-separated list), else /run/smtpool/smtpool.sock when running as
 * root, else $XDG_RUNTIME_DIR/smtpool.sock.  Returns 0, or -1 with err
 * filled when none applies or the result would not fit a sockaddr_un.
 */
int proto_default_socket_path(char *buf, size_t len, char *err,
    size_t errlen);

#endif
