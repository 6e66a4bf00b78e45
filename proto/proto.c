/*
 * proto.c - encoder and decoder for smtpool socket frames.
 *
 * Parsing checks a frame in two steps: proto_frame_size() validates the
 * 8-byte header (magic, version, payload length), and proto_frame_parse()
 * splits the payload into fields and checks them against the rule of the
 * frame's opcode.  Both fail with -1 and a message that names the offending
 * value.  Building appends fields to a growable buffer; any failure
 * (allocation, a frame over the limits) is remembered and reported once by
 * proto_buf_finish().
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* Kind of check that proto_frame_parse() applies to one field. */
enum proto_field_kind {
	PROTO_FIELD_TEXT,	/* UTF-8, no NUL byte, at most max bytes */
	PROTO_FIELD_BYTES,	/* any bytes, at most max bytes */
	PROTO_FIELD_I32,	/* exactly 4 bytes */
	PROTO_FIELD_I64,	/* exactly 8 bytes */
};

struct proto_field_rule {
	const char		*name;
	enum proto_field_kind	 kind;
	uint32_t		 max;
};

/*
 * Field layout of one opcode.  Fields past the listed ones (allowed when
 * max_fields is larger than the number listed) follow the extra rule.
 */
#define PROTO_RULE_LISTED	9

struct proto_op_rule {
	const char		*name;
	unsigned		 min_fields;
	unsigned		 max_fields;
	struct proto_field_rule	 fields[PROTO_RULE_LISTED];
	struct proto_field_rule	 extra;
};

#define PROTO_RULE_FIELD(n, k, m)	{ .name = (n), .kind = (k), .max = (m) }

/* REPLY and ERROR share one layout. */
#define PROTO_RULE_REPLY(opname) {					\
	.name = (opname), .min_fields = 4, .max_fields = PROTO_MAX_FIELDS, \
	.fields = {							\
		PROTO_RULE_FIELD("status", PROTO_FIELD_I32, 4),		\
		PROTO_RULE_FIELD("SMTP code", PROTO_FIELD_I32, 4),	\
		PROTO_RULE_FIELD("enhanced status code", PROTO_FIELD_TEXT, \
		    PROTO_MAX_ENHANCED),				\
		PROTO_RULE_FIELD("message", PROTO_FIELD_TEXT,		\
		    PROTO_MAX_MESSAGE),					\
	},								\
	.extra = PROTO_RULE_FIELD("extra field", PROTO_FIELD_TEXT,	\
	    PROTO_MAX_SMTP_TEXT),					\
}

/* Rules indexed by opcode; an entry without a name is an unknown opcode. */
static const struct proto_op_rule proto_op_rules[256] = {
	[PROTO_OP_LOGON] = {
		.name = "LOGON", .min_fields = 3, .max_fields = 3,
		.fields = {
			PROTO_RULE_FIELD("connection string",
			    PROTO_FIELD_TEXT, PROTO_MAX_CONNSTR),
			PROTO_RULE_FIELD("user", PROTO_FIELD_TEXT,
			    PROTO_MAX_CREDENTIAL),
			PROTO_RULE_FIELD("password", PROTO_FIELD_TEXT,
			    PROTO_MAX_CREDENTIAL),
		},
	},
	[PROTO_OP_LOGOFF] = { .name = "LOGOFF" },
	[PROTO_OP_SENDMAIL] = {
		.name = "SENDMAIL", .min_fields = 3, .max_fields = 3,
		.fields = {
			PROTO_RULE_FIELD("server", PROTO_FIELD_TEXT,
			    PROTO_MAX_CONNSTR),
			PROTO_RULE_FIELD("header list", PROTO_FIELD_TEXT,
			    PROTO_MAX_HEADERS),
			PROTO_RULE_FIELD("maxsize", PROTO_FIELD_I64, 8),
		},
	},
	[PROTO_OP_PART] = {
		.name = "PART", .min_fields = 3, .max_fields = 3,
		.fields = {
			PROTO_RULE_FIELD("kind", PROTO_FIELD_TEXT,
			    PROTO_MAX_PART_KIND),
			PROTO_RULE_FIELD("file name", PROTO_FIELD_TEXT,
			    PROTO_MAX_FILENAME),
			PROTO_RULE_FIELD("content type", PROTO_FIELD_TEXT,
			    PROTO_MAX_CONTENT_TYPE),
		},
	},
	[PROTO_OP_CHUNK] = {
		.name = "CHUNK", .min_fields = 1, .max_fields = 1,
		.fields = {
			PROTO_RULE_FIELD("data", PROTO_FIELD_BYTES,
			    PROTO_MAX_CHUNK),
		},
	},
	[PROTO_OP_END] = { .name = "END" },
	[PROTO_OP_GET_RESPONSE] = { .name = "GET_RESPONSE" },
	/* Over-long properties or parameters are not protocol errors:
	 * SET_SECURITY answers them with its own status codes. */
	[PROTO_OP_SET_SECURITY] = {
		.name = "SET_SECURITY", .min_fields = 2, .max_fields = 2,
		.fields = {
			PROTO_RULE_FIELD("properties", PROTO_FIELD_TEXT,
			    PROTO_MAX_PROPERTIES + 1024),
			PROTO_RULE_FIELD("parameters", PROTO_FIELD_TEXT,
			    PROTO_MAX_PARAMETERS + 1024),
		},
	},
	[PROTO_OP_GET_SECURITY] = {
		.name = "GET_SECURITY", .min_fields = 2, .max_fields = 2,
		.fields = {
			PROTO_RULE_FIELD("index", PROTO_FIELD_I32, 4),
			PROTO_RULE_FIELD("properties", PROTO_FIELD_TEXT,
			    PROTO_MAX_PROPERTIES),
		},
	},
	[PROTO_OP_STATUS] = { .name = "STATUS" },
	[PROTO_OP_STATUS_ROW] = {
		.name = "STATUS_ROW", .min_fields = 9, .max_fields = 9,
		.fields = {
			PROTO_RULE_FIELD("connection string",
			    PROTO_FIELD_TEXT, PROTO_MAX_CONNSTR),
			PROTO_RULE_FIELD("drivers", PROTO_FIELD_TEXT,
			    PROTO_MAX_MESSAGE),
			PROTO_RULE_FIELD("idle", PROTO_FIELD_I32, 4),
			PROTO_RULE_FIELD("busy", PROTO_FIELD_I32, 4),
			PROTO_RULE_FIELD("opening", PROTO_FIELD_I32, 4),
			PROTO_RULE_FIELD("waiting", PROTO_FIELD_I32, 4),
			PROTO_RULE_FIELD("sent", PROTO_FIELD_I64, 8),
			PROTO_RULE_FIELD("errors", PROTO_FIELD_I64, 8),
			PROTO_RULE_FIELD("oldest age", PROTO_FIELD_I64, 8),
		},
	},
	[PROTO_OP_REPLY] = PROTO_RULE_REPLY("REPLY"),
	[PROTO_OP_ERROR] = PROTO_RULE_REPLY("ERROR"),
};

void
proto_format_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint32_t
proto_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void
proto_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

long
proto_frame_size(const uint8_t *buf, size_t avail, uint8_t *version,
    char *err, size_t errlen)
{
	uint32_t	payload;

	if (avail < PROTO_HEADER_SIZE)
		return 0;
	if (version != NULL)
		*version = buf[2];

	if (buf[0] != PROTO_MAGIC0 || buf[1] != PROTO_MAGIC1) {
		proto_format_error(err, errlen,
		    "bad frame magic 0x%02x%02x; every frame must start "
		    "with \"SP\" (0x5350)", buf[0], buf[1]);
		return -1;
	}
	if (buf[2] != PROTO_VERSION) {
		proto_format_error(err, errlen,
		    "unsupported protocol version %u; only version %d is "
		    "supported", buf[2], PROTO_VERSION);
		return -1;
	}

	payload = proto_get_u32(buf + 4);
	if (payload > PROTO_MAX_PAYLOAD) {
		proto_format_error(err, errlen,
		    "%s frame declares a payload of %lu bytes, over the "
		    "limit of %d", proto_op_name(buf[3]),
		    (unsigned long)payload, PROTO_MAX_PAYLOAD);
		return -1;
	}
	return (long)PROTO_HEADER_SIZE + (long)payload;
}

/* Checks one field against its rule; i is its index, for the message. */
static int
proto_field_check(const struct proto_op_rule *rule,
    const struct proto_field_rule *fr, unsigned i,
    const struct proto_field *fld, char *err, size_t errlen)
{
	const uint8_t	*nul;

	switch (fr->kind) {
	case PROTO_FIELD_I32:
	case PROTO_FIELD_I64:
		if (fld->len != fr->max) {
			proto_format_error(err, errlen,
			    "%s field %u (%s) is %lu bytes; it must be "
			    "exactly %lu", rule->name, i, fr->name,
			    (unsigned long)fld->len, (unsigned long)fr->max);
			return -1;
		}
		return 0;
	case PROTO_FIELD_TEXT:
	case PROTO_FIELD_BYTES:
		if (fld->len > fr->max) {
			proto_format_error(err, errlen,
			    "%s field %u (%s) is %lu bytes, over the limit "
			    "of %lu", rule->name, i, fr->name,
			    (unsigned long)fld->len, (unsigned long)fr->max);
			return -1;
		}
		break;
	}

	/* A NUL cannot be distinguished from the end of a C string, so text
	 * fields reject it here, before anyone copies them. */
	if (fr->kind == PROTO_FIELD_TEXT && fld->len > 0 &&
	    (nul = memchr(fld->data, '\0', fld->len)) != NULL) {
		proto_format_error(err, errlen,
		    "%s field %u (%s) contains a NUL byte at offset %lu",
		    rule->name, i, fr->name,
		    (unsigned long)(nul - fld->data));
		return -1;
	}
	return 0;
}

/* Checks the field count and every field of a frame against its rule. */
static int
proto_frame_check(const struct proto_op_rule *rule,
    const struct proto_frame *f, char *err, size_t errlen)
{
	const struct proto_field_rule	*fr;
	unsigned			 i;

	if (f->nfields < rule->min_fields || f->nfields > rule->max_fields) {
		if (rule->min_fields == rule->max_fields)
			proto_format_error(err, errlen,
			    "%s takes %u fields, got %u", rule->name,
			    rule->min_fields, f->nfields);
		else
			proto_format_error(err, errlen,
			    "%s takes %u to %u fields, got %u", rule->name,
			    rule->min_fields, rule->max_fields, f->nfields);
		return -1;
	}

	for (i = 0; i < f->nfields; i++) {
		fr = i < PROTO_RULE_LISTED && rule->fields[i].name != NULL ?
		    &rule->fields[i] : &rule->extra;
		if (proto_field_check(rule, fr, i, &f->fields[i], err,
		    errlen) == -1)
			return -1;
	}
	return 0;
}

int
proto_frame_parse(const uint8_t *buf, size_t len, struct proto_frame *f,
    char *err, size_t errlen)
{
	const struct proto_op_rule	*rule;
	long				 size;
	size_t				 off, end;
	uint32_t			 flen;

	memset(f, 0, sizeof(*f));
	if (len < PROTO_HEADER_SIZE) {
		proto_format_error(err, errlen,
		    "frame is %zu bytes, shorter than the %d-byte header",
		    len, PROTO_HEADER_SIZE);
		return -1;
	}
	size = proto_frame_size(buf, len, &f->version, err, errlen);
	if (size == -1)
		return -1;
	f->op = buf[3];
	f->payload_len = proto_get_u32(buf + 4);
	if ((size_t)size != len) {
		proto_format_error(err, errlen,
		    "frame is %zu bytes but its header declares %ld "
		    "(8-byte header plus a %lu-byte payload)", len, size,
		    (unsigned long)f->payload_len);
		return -1;
	}

	rule = &proto_op_rules[f->op];
	if (rule->name == NULL) {
		if (f->op >= 0x0b && f->op <= 0x3f)
			proto_format_error(err, errlen,
			    "unknown opcode 0x%02x (reserved for a later "
			    "protocol version)", f->op);
		else
			proto_format_error(err, errlen, "unknown opcode 0x%02x",
			    f->op);
		return -1;
	}

	/* Split the payload into length-prefixed fields. */
	off = PROTO_HEADER_SIZE;
	end = len;
	while (off < end) {
		if (f->nfields == PROTO_MAX_FIELDS) {
			proto_format_error(err, errlen,
			    "%s frame has more than %d fields", rule->name,
			    PROTO_MAX_FIELDS);
			return -1;
		}
		if (end - off < 4) {
			proto_format_error(err, errlen,
			    "%s payload ends inside the length of field %u "
			    "(%zu of 4 bytes present)", rule->name,
			    f->nfields, end - off);
			return -1;
		}
		flen = proto_get_u32(buf + off);
		off += 4;
		if (flen > end - off) {
			proto_format_error(err, errlen,
			    "%s field %u declares %lu bytes but only %zu "
			    "remain in the payload", rule->name, f->nfields,
			    (unsigned long)flen, end - off);
			return -1;
		}
		f->fields[f->nfields].data = buf + off;
		f->fields[f->nfields].len = flen;
		f->nfields++;
		off += flen;
	}

	return proto_frame_check(rule, f, err, errlen);
}

int
proto_field_i32(const struct proto_field *fld, int32_t *v)
{
	uint32_t	u;

	if (fld->len != 4)
		return -1;
	u = proto_get_u32(fld->data);
	/* Two's complement by arithmetic, without an implementation-defined
	 * unsigned-to-signed conversion. */
	if (u <= INT32_MAX)
		*v = (int32_t)u;
	else
		*v = -(int32_t)(~u) - 1;
	return 0;
}

int
proto_field_i64(const struct proto_field *fld, int64_t *v)
{
	uint64_t	u;

	if (fld->len != 8)
		return -1;
	u = (uint64_t)proto_get_u32(fld->data) << 32 |
	    proto_get_u32(fld->data + 4);
	if (u <= INT64_MAX)
		*v = (int64_t)u;
	else
		*v = -(int64_t)(~u) - 1;
	return 0;
}

/* Sets errno to EINVAL for a NUL inside the field, ENOMEM when malloc
 * fails, so callers can tell the two NULL returns apart. */
char *
proto_field_strdup(const struct proto_field *fld)
{
	char	*s;

	if (fld->len > 0 && memchr(fld->data, '\0', fld->len) != NULL) {
		errno = EINVAL;
		return NULL;
	}
	if ((s = malloc((size_t)fld->len + 1)) == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	if (fld->len > 0)
		memcpy(s, fld->data, fld->len);
	s[fld->len] = '\0';
	return s;
}

/* Makes room for n more bytes; marks the buffer failed when the frame
 * would grow past the largest valid frame or memory runs out. */
static int
proto_buf_reserve(struct proto_buf *b, size_t n)
{
	const size_t	 limit = PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD;
	size_t		 want, cap;
	uint8_t		*p;

	if (b->failed)
		return -1;
	if (n > limit || b->len > limit - n) {
		b->failed = 1;
		return -1;
	}
	want = b->len + n;
	if (want <= b->cap)
		return 0;

	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	/* Copy by hand instead of realloc() so the old block can be wiped:
	 * a LOGON frame contains the password. */
	if ((p = malloc(cap)) == NULL) {
		b->failed = 1;
		return -1;
	}
	if (b->data != NULL) {
		memcpy(p, b->data, b->len);
		explicit_bzero(b->data, b->cap);
		free(b->data);
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

/* Starts a frame.  b may be uninitialized or freed by proto_buf_free();
 * a buffer still holding data must be freed first or it leaks. */
void
proto_buf_begin(struct proto_buf *b, uint8_t op)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->failed = 0;
	if (proto_buf_reserve(b, PROTO_HEADER_SIZE) == -1)
		return;
	b->data[0] = PROTO_MAGIC0;
	b->data[1] = PROTO_MAGIC1;
	b->data[2] = PROTO_VERSION;
	b->data[3] = op;
	proto_put_u32(b->data + 4, 0);
	b->len = PROTO_HEADER_SIZE;
}

void
proto_buf_add_bytes(struct proto_buf *b, const void *p, size_t n)
{
	/* Checking n alone first keeps 4 + n from overflowing. */
	if (b->len < PROTO_HEADER_SIZE || n > PROTO_MAX_PAYLOAD)
		b->failed = 1;
	if (proto_buf_reserve(b, 4 + n) == -1)
		return;
	proto_put_u32(b->data + b->len, (uint32_t)n);
	if (n > 0)
		memcpy(b->data + b->len + 4, p, n);
	b->len += 4 + n;
}

/* Adds a text field; NULL adds an empty one. */
void
proto_buf_add_str(struct proto_buf *b, const char *s)
{
	if (s == NULL)
		s = "";
	proto_buf_add_bytes(b, s, strlen(s));
}

void
proto_buf_add_i32(struct proto_buf *b, int32_t v)
{
	uint8_t	p[4];

	/* Conversion to unsigned is defined as modulo 2^32, which is the
	 * two's complement bit pattern. */
	proto_put_u32(p, (uint32_t)v);
	proto_buf_add_bytes(b, p, sizeof(p));
}

void
proto_buf_add_i64(struct proto_buf *b, int64_t v)
{
	uint64_t	u = (uint64_t)v;
	uint8_t		p[8];

	proto_put_u32(p, (uint32_t)(u >> 32));
	proto_put_u32(p + 4, (uint32_t)u);
	proto_buf_add_bytes(b, p, sizeof(p));
}

int
proto_buf_finish(struct proto_buf *b)
{
	size_t		payload, off;
	unsigned	nfields;

	if (b->failed || b->data == NULL || b->len < PROTO_HEADER_SIZE)
		return -1;
	payload = b->len - PROTO_HEADER_SIZE;
	if (payload > PROTO_MAX_PAYLOAD) {
		b->failed = 1;
		return -1;
	}

	/* The buffer only records bytes, so count the fields by walking
	 * their lengths, which proto_buf_add_bytes() wrote consistently. */
	nfields = 0;
	for (off = PROTO_HEADER_SIZE; off < b->len;
	    off += 4 + proto_get_u32(b->data + off))
		nfields++;
	if (nfields > PROTO_MAX_FIELDS) {
		b->failed = 1;
		return -1;
	}

	proto_put_u32(b->data + 4, (uint32_t)payload);
	return 0;
}

void
proto_buf_free(struct proto_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->failed = 0;
}

/* Returns how many bytes of s fit in max bytes without splitting a UTF-8
 * sequence. */
static size_t
proto_utf8_clip(const char *s, size_t max)
{
	size_t	n = strlen(s);

	if (n <= max)
		return n;
	n = max;
	/* Back up over continuation bytes (10xxxxxx) to a lead byte, and
	 * cut before that lead byte. */
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/*
 * Builds a REPLY or ERROR frame.  The message is cut to PROTO_MAX_MESSAGE
 * bytes and each extra to PROTO_MAX_SMTP_TEXT, at a UTF-8 character
 * boundary, so a long server text cannot make the reply invalid.  Returns
 * -1 for another opcode, an enhanced code over PROTO_MAX_ENHANCED bytes,
 * too many extras or a failed allocation; the caller frees b either way.
 */
int
proto_build_reply(struct proto_buf *b, uint8_t op, int32_t status,
    int32_t smtp_code, const char *enhanced, const char *message,
    const char *const *extra, size_t nextra)
{
	size_t	i;

	proto_buf_begin(b, op);
	if (op != PROTO_OP_REPLY && op != PROTO_OP_ERROR)
		b->failed = 1;
	if (enhanced == NULL)
		enhanced = "";
	if (message == NULL)
		message = "";
	if (strlen(enhanced) > PROTO_MAX_ENHANCED)
		b->failed = 1;
	if (nextra > PROTO_MAX_FIELDS - 4 || (nextra > 0 && extra == NULL))
		b->failed = 1;
	if (b->failed)
		return -1;

	proto_buf_add_i32(b, status);
	proto_buf_add_i32(b, smtp_code);
	proto_buf_add_str(b, enhanced);
	proto_buf_add_bytes(b, message,
	    proto_utf8_clip(message, PROTO_MAX_MESSAGE));
	for (i = 0; i < nextra; i++) {
		const char *x = extra[i] != NULL ? extra[i] : "";

		proto_buf_add_bytes(b, x, proto_utf8_clip(x,
		    PROTO_MAX_SMTP_TEXT));
	}
	return proto_buf_finish(b);
}

const char *
proto_op_name(uint8_t op)
{
	const char	*name = proto_op_rules[op].name;

	return name != NULL ? name : "UNKNOWN";
}

static const struct {
	int32_t		 status;
	const char	*text;
} proto_status_texts[] = {
	{ PROTO_STATUS_OK, "success" },
	{ PROTO_STATUS_INVALID_ARGUMENT, "invalid argument" },
	{ PROTO_STATUS_INVALID_ADDRESS,
	    "invalid address or argument, or all recipients refused" },
	{ PROTO_STATUS_ALREADY_LOGGED_ON, "already logged on" },
	{ PROTO_STATUS_TOO_LARGE, "message too large" },
	{ PROTO_STATUS_NO_DRIVER,
	    "server does not offer a mandatory security function" },
	{ PROTO_STATUS_SECURITY,
	    "security context not established, or not logged on" },
	{ PROTO_STATUS_NETWORK, "network problem or invalid server" },
	{ PROTO_STATUS_NO_RESPONSE, "no SMTP exchange yet" },
	{ PROTO_STATUS_REJECTED, "message rejected by the server" },
	{ PROTO_STATUS_NO_RECIPIENT, "no sender or no recipient" },
	{ PROTO_STATUS_QUOTA, "server quota exceeded" },
	{ PROTO_STATUS_NO_MEMORY, "out of memory or spool space" },
	{ PROTO_STATUS_PROTOCOL_ERROR, "protocol error" },
};

const char *
proto_status_text(int32_t status)
{
	size_t	i;

	if (status > 0)
		return "sent, some recipients refused";
	for (i = 0; i < sizeof(proto_status_texts) /
	    sizeof(proto_status_texts[0]); i++)
		if (proto_status_texts[i].status == status)
			return proto_status_texts[i].text;
	return "unknown status";
}
