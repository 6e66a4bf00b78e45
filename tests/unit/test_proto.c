/*
 * test_proto.c - unit tests for the frame codec and the default socket path.
 *
 * Frames are built by hand here, independently of proto_buf, so the tests
 * also catch a builder and a parser that agree with each other but not with
 * the documented layout.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "proto.h"

#define TEST_FRAME_MAX	(PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD + 1024)

/* One field of a hand-built frame: len bytes of data, or of filler when
 * data is NULL. */
struct test_field {
	const void	*data;
	size_t		 len;
};

static uint8_t	test_frame[TEST_FRAME_MAX];
static uint8_t	test_filler[PROTO_MAX_PAYLOAD];
static char	test_err[512];

static void
test_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Builds a frame by hand into test_frame and returns its size. */
static size_t
test_build(uint8_t op, const struct test_field *fields, unsigned n)
{
	size_t		off = PROTO_HEADER_SIZE;
	unsigned	i;

	test_frame[0] = 'S';
	test_frame[1] = 'P';
	test_frame[2] = 1;
	test_frame[3] = op;
	for (i = 0; i < n; i++) {
		test_put_u32(test_frame + off, (uint32_t)fields[i].len);
		off += 4;
		memcpy(test_frame + off, fields[i].data != NULL ?
		    fields[i].data : test_filler, fields[i].len);
		off += fields[i].len;
	}
	test_put_u32(test_frame + 4, (uint32_t)(off - PROTO_HEADER_SIZE));
	return off;
}

static int
test_parse(size_t len, struct proto_frame *f)
{
	test_err[0] = '\0';
	return proto_frame_parse(test_frame, len, f, test_err,
	    sizeof(test_err));
}

static int
test_err_has(const char *needle)
{
	return strstr(test_err, needle) != NULL;
}

static const uint8_t	test_i32_zero[4] = { 0, 0, 0, 0 };
static const uint8_t	test_i64_zero[8] = { 0 };

/* A valid field list for every known opcode, used as the base that the
 * limit tests change one field of. */
struct test_op_case {
	const char		*name;
	uint8_t			 op;
	unsigned		 n;
	struct test_field	 fields[5];
};

static const struct test_op_case test_op_cases[] = {
	{ "LOGON", PROTO_OP_LOGON, 3, {
		{ "TLS:smtp.example.com", 20 }, { "", 0 }, { "", 0 } } },
	{ "LOGOFF", PROTO_OP_LOGOFF, 0, { { NULL, 0 } } },
	{ "SENDMAIL", PROTO_OP_SENDMAIL, 3, {
		{ "localhost+25", 12 }, { "TO=a@b.example", 14 },
		{ test_i64_zero, 8 } } },
	{ "PART", PROTO_OP_PART, 3, {
		{ "attachment", 10 }, { "a.txt", 5 }, { "text/plain", 10 } } },
	{ "CHUNK", PROTO_OP_CHUNK, 1, { { "a\0b", 3 } } },
	{ "END", PROTO_OP_END, 0, { { NULL, 0 } } },
	{ "GET_RESPONSE", PROTO_OP_GET_RESPONSE, 0, { { NULL, 0 } } },
	{ "SET_SECURITY", PROTO_OP_SET_SECURITY, 2, {
		{ "SMTP=UAuthLoginSMTP", 19 }, { "user=a;password=b", 17 } } },
	{ "GET_SECURITY", PROTO_OP_GET_SECURITY, 2, {
		{ "\0\0\0\x01", 4 }, { "SMTP=", 5 } } },
	{ "STATUS", PROTO_OP_STATUS, 0, { { NULL, 0 } } },
	{ "REPLY", PROTO_OP_REPLY, 5, {
		{ test_i32_zero, 4 }, { "\0\0\0\xfa", 4 }, { "2.0.0", 5 },
		{ "ok", 2 }, { "250 2.0.0 queued", 16 } } },
	{ "ERROR", PROTO_OP_ERROR, 4, {
		{ "\xff\xff\xff\x9d", 4 }, { test_i32_zero, 4 }, { "", 0 },
		{ "bad frame", 9 } } },
};
#define TEST_NOPS	(sizeof(test_op_cases) / sizeof(test_op_cases[0]))

static void
test_round_trip(void)
{
	struct proto_frame	 f;
	struct proto_buf	 b;
	const struct test_op_case *c;
	char			 what[128];
	size_t			 i, len;
	unsigned		 j;
	int			 same;
	uint8_t			 version;

	for (i = 0; i < TEST_NOPS; i++) {
		c = &test_op_cases[i];

		/* proto_buf must produce exactly the hand-built bytes. */
		proto_buf_begin(&b, c->op);
		for (j = 0; j < c->n; j++)
			proto_buf_add_bytes(&b, c->fields[j].data,
			    c->fields[j].len);
		len = test_build(c->op, c->fields, c->n);
		snprintf(what, sizeof(what), "%s builds", c->name);
		CHECK(proto_buf_finish(&b) == 0, what);
		snprintf(what, sizeof(what), "%s built length", c->name);
		CHECK_INT(b.len, len, what);
		snprintf(what, sizeof(what), "%s built bytes match", c->name);
		CHECK(b.len == len && memcmp(b.data, test_frame, len) == 0,
		    what);
		proto_buf_free(&b);

		snprintf(what, sizeof(what), "%s frame size", c->name);
		CHECK_INT(proto_frame_size(test_frame, len, &version, test_err,
		    sizeof(test_err)), len, what);
		snprintf(what, sizeof(what), "%s parses", c->name);
		CHECK(test_parse(len, &f) == 0, what);
		if (test_err[0] != '\0')
			printf("# %s\n", test_err);
		snprintf(what, sizeof(what), "%s opcode kept", c->name);
		CHECK_INT(f.op, c->op, what);
		snprintf(what, sizeof(what), "%s field count", c->name);
		CHECK_INT(f.nfields, c->n, what);
		same = f.nfields == c->n;
		for (j = 0; same && j < c->n; j++)
			same = f.fields[j].len == c->fields[j].len &&
			    memcmp(f.fields[j].data, c->fields[j].data,
			    c->fields[j].len) == 0;
		snprintf(what, sizeof(what), "%s fields kept", c->name);
		CHECK(same, what);
		snprintf(what, sizeof(what), "%s op name", c->name);
		CHECK_STR(proto_op_name(c->op), c->name, what);
	}
}

/* One field limit: the field at index of the base case for op may be
 * max bytes long; exact fields must be exactly max. */
struct test_limit_case {
	const char	*name;
	uint8_t		 op;
	unsigned	 index;
	size_t		 max;
	int		 exact;
};

static const struct test_limit_case test_limit_cases[] = {
	{ "LOGON conn", PROTO_OP_LOGON, 0, PROTO_MAX_CONNSTR, 0 },
	{ "LOGON user", PROTO_OP_LOGON, 1, PROTO_MAX_CREDENTIAL, 0 },
	{ "LOGON password", PROTO_OP_LOGON, 2, PROTO_MAX_CREDENTIAL, 0 },
	{ "SENDMAIL server", PROTO_OP_SENDMAIL, 0, PROTO_MAX_CONNSTR, 0 },
	{ "SENDMAIL headers", PROTO_OP_SENDMAIL, 1, PROTO_MAX_HEADERS, 0 },
	{ "SENDMAIL maxsize", PROTO_OP_SENDMAIL, 2, 8, 1 },
	{ "PART kind", PROTO_OP_PART, 0, PROTO_MAX_PART_KIND, 0 },
	{ "PART filename", PROTO_OP_PART, 1, PROTO_MAX_FILENAME, 0 },
	{ "PART content type", PROTO_OP_PART, 2, PROTO_MAX_CONTENT_TYPE, 0 },
	{ "CHUNK data", PROTO_OP_CHUNK, 0, PROTO_MAX_CHUNK, 0 },
	{ "REPLY status", PROTO_OP_REPLY, 0, 4, 1 },
	{ "REPLY smtp code", PROTO_OP_REPLY, 1, 4, 1 },
	{ "REPLY enhanced", PROTO_OP_REPLY, 2, PROTO_MAX_ENHANCED, 0 },
	{ "SET_SECURITY properties", PROTO_OP_SET_SECURITY, 0,
	    PROTO_MAX_PROPERTIES + 1024, 0 },
	{ "SET_SECURITY parameters", PROTO_OP_SET_SECURITY, 1,
	    PROTO_MAX_PARAMETERS + 1024, 0 },
	{ "GET_SECURITY index", PROTO_OP_GET_SECURITY, 0, 4, 1 },
	{ "GET_SECURITY properties", PROTO_OP_GET_SECURITY, 1,
	    PROTO_MAX_PROPERTIES, 0 },
	{ "REPLY message", PROTO_OP_REPLY, 3, PROTO_MAX_MESSAGE, 0 },
	{ "REPLY extra", PROTO_OP_REPLY, 4, PROTO_MAX_SMTP_TEXT, 0 },
	{ "ERROR status", PROTO_OP_ERROR, 0, 4, 1 },
	{ "ERROR message", PROTO_OP_ERROR, 3, PROTO_MAX_MESSAGE, 0 },
};

static const struct test_op_case *
test_op_case(uint8_t op)
{
	size_t	i;

	for (i = 0; i < TEST_NOPS; i++)
		if (test_op_cases[i].op == op)
			return &test_op_cases[i];
	return NULL;
}

/* Builds the base case of op with field index set to len filler bytes
 * and returns whether it parses. */
static int
test_parse_with_len(uint8_t op, unsigned index, size_t len)
{
	const struct test_op_case	*c = test_op_case(op);
	struct test_field		 fields[5];
	struct proto_frame		 f;

	memcpy(fields, c->fields, sizeof(fields));
	fields[index].data = NULL;
	fields[index].len = len;
	return test_parse(test_build(op, fields, c->n), &f);
}

static void
test_limits(void)
{
	const struct test_limit_case	*c;
	char				 what[128];
	size_t				 i;

	for (i = 0; i < sizeof(test_limit_cases) /
	    sizeof(test_limit_cases[0]); i++) {
		c = &test_limit_cases[i];
		snprintf(what, sizeof(what), "%s at limit accepted", c->name);
		CHECK(test_parse_with_len(c->op, c->index, c->max) == 0,
		    what);
		snprintf(what, sizeof(what), "%s past limit rejected",
		    c->name);
		CHECK(test_parse_with_len(c->op, c->index, c->max + 1) == -1,
		    what);
		snprintf(what, sizeof(what), "%s error names opcode",
		    c->name);
		CHECK(test_err_has(proto_op_name(c->op)), what);
		if (c->exact) {
			snprintf(what, sizeof(what), "%s short rejected",
			    c->name);
			CHECK(test_parse_with_len(c->op, c->index,
			    c->max - 1) == -1, what);
		}
	}
}

/* Field counts one below and one above what each opcode takes. */
static void
test_field_counts(void)
{
	const struct test_op_case	*c;
	struct test_field		 fields[PROTO_MAX_FIELDS + 1];
	struct proto_frame		 f;
	char				 what[128];
	size_t				 i;
	unsigned			 j;

	for (i = 0; i < TEST_NOPS; i++) {
		c = &test_op_cases[i];
		memset(fields, 0, sizeof(fields));
		memcpy(fields, c->fields, sizeof(c->fields));

		if (c->op == PROTO_OP_REPLY || c->op == PROTO_OP_ERROR) {
			snprintf(what, sizeof(what), "%s with 3 fields "
			    "rejected", c->name);
			CHECK(test_parse(test_build(c->op, fields, 3), &f) ==
			    -1, what);
			continue;
		}
		if (c->n > 0) {
			snprintf(what, sizeof(what), "%s missing field "
			    "rejected", c->name);
			CHECK(test_parse(test_build(c->op, fields, c->n - 1),
			    &f) == -1, what);
		}
		fields[c->n] = (struct test_field){ "x", 1 };
		snprintf(what, sizeof(what), "%s extra field rejected",
		    c->name);
		CHECK(test_parse(test_build(c->op, fields, c->n + 1), &f) ==
		    -1, what);
		snprintf(what, sizeof(what), "%s count error names it",
		    c->name);
		CHECK(test_err_has(c->name), what);
	}

	/* A REPLY may carry extras up to the frame's field limit. */
	memset(fields, 0, sizeof(fields));
	memcpy(fields, test_op_case(PROTO_OP_REPLY)->fields,
	    4 * sizeof(fields[0]));
	for (j = 4; j < PROTO_MAX_FIELDS + 1; j++)
		fields[j] = (struct test_field){ "x", 1 };
	CHECK(test_parse(test_build(PROTO_OP_REPLY, fields, PROTO_MAX_FIELDS),
	    &f) == 0, "REPLY with 16 fields accepted");
	CHECK_INT(f.nfields, PROTO_MAX_FIELDS, "REPLY 16 fields counted");
	CHECK(test_parse(test_build(PROTO_OP_REPLY, fields,
	    PROTO_MAX_FIELDS + 1), &f) == -1, "REPLY with 17 fields rejected");
	CHECK(test_err_has("more than 16 fields"), "17 fields error says so");
}

static void
test_header_errors(void)
{
	struct proto_frame	f;
	uint8_t			version;
	size_t			len;
	long			size;

	len = test_build(PROTO_OP_LOGOFF, NULL, 0);
	CHECK_INT(proto_frame_size(test_frame, 7, &version, test_err,
	    sizeof(test_err)), 0, "7-byte header needs more");
	CHECK_INT(proto_frame_size(test_frame, 0, &version, test_err,
	    sizeof(test_err)), 0, "empty buffer needs more");
	CHECK(test_parse(7, &f) == -1, "7-byte frame rejected");
	CHECK(test_err_has("header"), "short frame error names header");

	test_frame[0] = 'X';
	CHECK_INT(proto_frame_size(test_frame, len, &version, test_err,
	    sizeof(test_err)), -1, "bad magic rejected by size");
	CHECK(test_err_has("magic"), "bad magic error says magic");
	CHECK(test_parse(len, &f) == -1, "bad magic rejected by parse");
	test_frame[0] = 'S';
	test_frame[1] = 'p';
	CHECK(test_parse(len, &f) == -1, "lower-case magic rejected");
	test_frame[1] = 'P';

	test_frame[2] = 2;
	version = 0;
	test_err[0] = '\0';
	CHECK_INT(proto_frame_size(test_frame, len, &version, test_err,
	    sizeof(test_err)), -1, "version 2 rejected");
	CHECK_INT(version, 2, "version 2 reported to caller");
	CHECK(test_err_has("version 2"), "version error names version 2");
	CHECK(test_err_has("version 1"), "version error names version 1");
	CHECK(test_parse(len, &f) == -1, "version 2 rejected by parse");
	CHECK_INT(f.version, 2, "parse reports version 2");
	test_frame[2] = 0;
	CHECK(test_parse(len, &f) == -1, "version 0 rejected");
	test_frame[2] = 1;

	test_put_u32(test_frame + 4, PROTO_MAX_PAYLOAD);
	size = proto_frame_size(test_frame, PROTO_HEADER_SIZE, &version,
	    test_err, sizeof(test_err));
	CHECK_INT(size, PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD,
	    "payload at limit sized");
	test_put_u32(test_frame + 4, PROTO_MAX_PAYLOAD + 1);
	CHECK_INT(proto_frame_size(test_frame, PROTO_HEADER_SIZE, &version,
	    test_err, sizeof(test_err)), -1, "payload past limit rejected");
	CHECK(test_err_has("131073"), "payload error names length");
	test_put_u32(test_frame + 4, UINT32_MAX);
	CHECK_INT(proto_frame_size(test_frame, PROTO_HEADER_SIZE, &version,
	    test_err, sizeof(test_err)), -1, "payload 4 GiB rejected");

	/* The length given to parse must match the header exactly. */
	len = test_build(PROTO_OP_CHUNK, (struct test_field[]){ { "ab", 2 } },
	    1);
	CHECK(test_parse(len - 1, &f) == -1, "frame shorter than header says");
	CHECK(test_parse(len + 1, &f) == -1, "frame longer than header says");
	CHECK(test_parse(len, &f) == 0, "frame of exact length parses");

	/* The NULL message buffer must be tolerated. */
	test_frame[0] = 'X';
	CHECK(proto_frame_parse(test_frame, len, &f, NULL, 0) == -1,
	    "bad frame without message buffer");
	test_frame[0] = 'S';
}

static void
test_payload_errors(void)
{
	struct proto_frame	f;
	size_t			len;

	/* CHUNK with its one field cut to a 2-byte length prefix. */
	len = test_build(PROTO_OP_CHUNK, NULL, 0);
	test_frame[len++] = 0;
	test_frame[len++] = 0;
	test_put_u32(test_frame + 4, 2);
	CHECK(test_parse(len, &f) == -1, "truncated field length rejected");
	CHECK(test_err_has("length of field 0"), "truncated length names "
	    "field");

	/* A field that declares more bytes than the payload has. */
	len = test_build(PROTO_OP_CHUNK, (struct test_field[]){
	    { "abcd", 4 } }, 1);
	test_put_u32(test_frame + PROTO_HEADER_SIZE, 5);
	CHECK(test_parse(len, &f) == -1, "field past payload end rejected");
	CHECK(test_err_has("declares 5 bytes"), "past-end error names "
	    "length");
	test_put_u32(test_frame + PROTO_HEADER_SIZE, UINT32_MAX);
	CHECK(test_parse(len, &f) == -1, "field length 4 GiB rejected");

	/* Truncated inside the data of a second field. */
	len = test_build(PROTO_OP_LOGON, (struct test_field[]){
	    { "h", 1 }, { "user", 4 }, { "pw", 2 } }, 3);
	test_put_u32(test_frame + 4, (uint32_t)(len - PROTO_HEADER_SIZE - 3));
	CHECK(test_parse(len - 3, &f) == -1, "truncated field data rejected");

	CHECK(test_parse(test_build(0x42, NULL, 0), &f) == -1,
	    "unknown opcode rejected");
	CHECK(test_err_has("0x42"), "unknown opcode named in hex");
	CHECK(test_parse(test_build(0x0b, NULL, 0), &f) == -1,
	    "reserved opcode 0x0b rejected");
	CHECK(test_err_has("0x0b"), "reserved opcode named in hex");
	CHECK(test_parse(test_build(0x00, NULL, 0), &f) == -1,
	    "opcode 0x00 rejected");
	CHECK(test_parse(test_build(0xff, NULL, 0), &f) == -1,
	    "opcode 0xff rejected");
	CHECK_STR(proto_op_name(0x42), "UNKNOWN", "unknown op name");

	/* A NUL is invalid in text but fine in CHUNK data. */
	CHECK(test_parse(test_build(PROTO_OP_LOGON, (struct test_field[]){
	    { "h", 1 }, { "us\0er", 5 }, { "", 0 } }, 3), &f) == -1,
	    "NUL in LOGON user rejected");
	CHECK(test_err_has("NUL"), "NUL error says NUL");
	CHECK(test_parse(test_build(PROTO_OP_REPLY, (struct test_field[]){
	    { test_i32_zero, 4 }, { test_i32_zero, 4 }, { "", 0 },
	    { "a\0", 2 } }, 4), &f) == -1, "NUL in REPLY message rejected");
	CHECK(test_parse(test_build(PROTO_OP_CHUNK, (struct test_field[]){
	    { "\0\0", 2 } }, 1), &f) == 0, "NUL in CHUNK data accepted");
}

static void
test_fields(void)
{
	static const struct {
		uint8_t	bytes[4];
		int32_t	value;
	} i32_cases[] = {
		{ { 0, 0, 0, 0 }, 0 },
		{ { 0, 0, 0, 1 }, 1 },
		{ { 0xff, 0xff, 0xff, 0xff }, -1 },
		{ { 0xff, 0xff, 0xff, 0x9d }, -99 },
		{ { 0x7f, 0xff, 0xff, 0xff }, INT32_MAX },
		{ { 0x80, 0, 0, 0 }, INT32_MIN },
		{ { 0, 0, 0x01, 0xfa }, 506 },
	};
	static const struct {
		uint8_t	bytes[8];
		int64_t	value;
	} i64_cases[] = {
		{ { 0, 0, 0, 0, 0, 0, 0, 0 }, 0 },
		{ { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, -1 },
		{ { 0, 0, 0, 1, 0, 0, 0, 0 }, INT64_C(4294967296) },
		{ { 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
		    INT64_MAX },
		{ { 0x80, 0, 0, 0, 0, 0, 0, 0 }, INT64_MIN },
		{ { 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0 },
		    -INT64_C(4294967296) },
	};
	struct proto_field	 fld;
	struct proto_buf	 b;
	char			 what[128];
	char			*s;
	int32_t			 v32;
	int64_t			 v64;
	size_t			 i;

	for (i = 0; i < sizeof(i32_cases) / sizeof(i32_cases[0]); i++) {
		fld.data = i32_cases[i].bytes;
		fld.len = 4;
		v32 = 12345;
		snprintf(what, sizeof(what), "i32 %ld decodes",
		    (long)i32_cases[i].value);
		CHECK(proto_field_i32(&fld, &v32) == 0, what);
		CHECK_INT(v32, i32_cases[i].value, what);

		proto_buf_begin(&b, PROTO_OP_CHUNK);
		proto_buf_add_i32(&b, i32_cases[i].value);
		snprintf(what, sizeof(what), "i32 %ld frame finishes",
		    (long)i32_cases[i].value);
		CHECK(proto_buf_finish(&b) == 0, what);
		snprintf(what, sizeof(what), "i32 %ld encodes",
		    (long)i32_cases[i].value);
		CHECK(b.len == 16 &&
		    memcmp(b.data + 12, i32_cases[i].bytes, 4) == 0, what);
		proto_buf_free(&b);
	}
	for (i = 0; i < sizeof(i64_cases) / sizeof(i64_cases[0]); i++) {
		fld.data = i64_cases[i].bytes;
		fld.len = 8;
		v64 = 12345;
		snprintf(what, sizeof(what), "i64 %lld decodes",
		    (long long)i64_cases[i].value);
		CHECK(proto_field_i64(&fld, &v64) == 0, what);
		CHECK_INT(v64, i64_cases[i].value, what);

		proto_buf_begin(&b, PROTO_OP_CHUNK);
		proto_buf_add_i64(&b, i64_cases[i].value);
		snprintf(what, sizeof(what), "i64 %lld frame finishes",
		    (long long)i64_cases[i].value);
		CHECK(proto_buf_finish(&b) == 0, what);
		snprintf(what, sizeof(what), "i64 %lld encodes",
		    (long long)i64_cases[i].value);
		CHECK(b.len == 20 &&
		    memcmp(b.data + 12, i64_cases[i].bytes, 8) == 0, what);
		proto_buf_free(&b);
	}

	fld.data = i64_cases[0].bytes;
	fld.len = 3;
	CHECK(proto_field_i32(&fld, &v32) == -1, "i32 of 3 bytes rejected");
	fld.len = 8;
	CHECK(proto_field_i32(&fld, &v32) == -1, "i32 of 8 bytes rejected");
	fld.len = 4;
	CHECK(proto_field_i64(&fld, &v64) == -1, "i64 of 4 bytes rejected");

	fld.data = (const uint8_t *)"hello";
	fld.len = 5;
	s = proto_field_strdup(&fld);
	CHECK_STR(s, "hello", "strdup copies text");
	free(s);
	fld.len = 0;
	s = proto_field_strdup(&fld);
	CHECK_STR(s, "", "strdup of empty field");
	free(s);
	fld.data = (const uint8_t *)"he\0lo";
	fld.len = 5;
	errno = 0;
	s = proto_field_strdup(&fld);
	CHECK(s == NULL, "strdup rejects NUL inside");
	CHECK_INT(errno, EINVAL, "strdup NUL sets EINVAL");
	free(s);
	fld.data = (const uint8_t *)"he\0";
	fld.len = 3;
	s = proto_field_strdup(&fld);
	CHECK(s == NULL, "strdup rejects trailing NUL");
	free(s);
}

static void
test_builder(void)
{
	struct proto_buf	b;
	struct proto_frame	f;
	unsigned		i;

	/* Two fields of 65532 bytes plus their prefixes fill the payload. */
	proto_buf_begin(&b, PROTO_OP_REPLY);
	proto_buf_add_bytes(&b, test_filler, PROTO_MAX_PAYLOAD / 2 - 4);
	proto_buf_add_bytes(&b, test_filler, PROTO_MAX_PAYLOAD / 2 - 4);
	CHECK(proto_buf_finish(&b) == 0, "buf payload at limit finishes");
	CHECK_INT(b.len, PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD,
	    "buf payload at limit length");
	proto_buf_free(&b);

	proto_buf_begin(&b, PROTO_OP_CHUNK);
	proto_buf_add_bytes(&b, test_filler, PROTO_MAX_PAYLOAD / 2 - 4);
	proto_buf_add_bytes(&b, test_filler, PROTO_MAX_PAYLOAD / 2 - 3);
	CHECK(proto_buf_finish(&b) == -1, "buf payload past limit fails");
	proto_buf_free(&b);

	proto_buf_begin(&b, PROTO_OP_CHUNK);
	proto_buf_add_bytes(&b, test_filler, PROTO_MAX_PAYLOAD);
	CHECK(proto_buf_finish(&b) == -1, "buf single huge field fails");
	proto_buf_free(&b);

	/* The failure is sticky: a small field afterwards does not clear it. */
	proto_buf_begin(&b, PROTO_OP_CHUNK);
	proto_buf_add_bytes(&b, test_filler, PROTO_MAX_PAYLOAD + 1);
	proto_buf_add_str(&b, "x");
	CHECK(proto_buf_finish(&b) == -1, "buf failure is sticky");
	proto_buf_free(&b);
	CHECK(b.data == NULL, "buf free clears data");
	CHECK_INT(b.len, 0, "buf free clears length");
	CHECK_INT(b.failed, 0, "buf free clears failure");

	proto_buf_begin(&b, PROTO_OP_REPLY);
	for (i = 0; i < PROTO_MAX_FIELDS + 1; i++)
		proto_buf_add_str(&b, "");
	CHECK(proto_buf_finish(&b) == -1, "buf with 17 fields fails");
	proto_buf_free(&b);

	proto_buf_begin(&b, PROTO_OP_LOGON);
	proto_buf_add_str(&b, "localhost");
	proto_buf_add_str(&b, NULL);
	proto_buf_add_str(&b, "");
	CHECK(proto_buf_finish(&b) == 0, "buf LOGON finishes");
	CHECK(proto_frame_parse(b.data, b.len, &f, test_err,
	    sizeof(test_err)) == 0, "buf LOGON parses");
	CHECK_INT(f.fields[1].len, 0, "buf NULL string is empty");
	proto_buf_free(&b);
}

static void
test_reply(void)
{
	static const char *const extra[] = { "250 2.0.0 Ok: queued" };
	struct proto_buf	 b;
	struct proto_frame	 f;
	char			 longmsg[PROTO_MAX_MESSAGE + 8];
	char			*s;
	int32_t			 v;

	CHECK(proto_build_reply(&b, PROTO_OP_REPLY, -99, 250, "2.0.0",
	    "done", extra, 1) == 0, "reply builds");
	CHECK(proto_frame_parse(b.data, b.len, &f, test_err,
	    sizeof(test_err)) == 0, "reply parses");
	CHECK_INT(f.nfields, 5, "reply field count");
	CHECK(proto_field_i32(&f.fields[0], &v) == 0, "reply status decodes");
	CHECK_INT(v, -99, "reply status");
	CHECK(proto_field_i32(&f.fields[1], &v) == 0,
	    "reply smtp code decodes");
	CHECK_INT(v, 250, "reply smtp code");
	s = proto_field_strdup(&f.fields[4]);
	CHECK_STR(s, extra[0], "reply extra text");
	free(s);
	proto_buf_free(&b);

	CHECK(proto_build_reply(&b, PROTO_OP_ERROR, -99, 0, NULL,
	    "bad frame", NULL, 0) == 0, "error frame builds");
	CHECK_INT(b.data[3], PROTO_OP_ERROR, "error frame opcode");
	proto_buf_free(&b);

	CHECK(proto_build_reply(&b, PROTO_OP_LOGON, 0, 0, "", "", NULL, 0) ==
	    -1, "reply with request opcode fails");
	proto_buf_free(&b);
	CHECK(proto_build_reply(&b, PROTO_OP_REPLY, 0, 0,
	    "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15", "", NULL, 0) == -1,
	    "reply with long enhanced fails");
	proto_buf_free(&b);

	/* "é" is two bytes; placing it across the limit forces the cut
	 * back to before it. */
	memset(longmsg, 'a', sizeof(longmsg));
	longmsg[PROTO_MAX_MESSAGE - 1] = (char)0xc3;
	longmsg[PROTO_MAX_MESSAGE] = (char)0xa9;
	longmsg[sizeof(longmsg) - 1] = '\0';
	CHECK(proto_build_reply(&b, PROTO_OP_REPLY, 0, 0, "", longmsg, NULL,
	    0) == 0, "reply with long message builds");
	CHECK(proto_frame_parse(b.data, b.len, &f, test_err,
	    sizeof(test_err)) == 0, "long message reply parses");
	CHECK_INT(f.fields[3].len, PROTO_MAX_MESSAGE - 1,
	    "long message cut at character");
	proto_buf_free(&b);
}

static void
test_names(void)
{
	CHECK_STR(proto_status_text(0), "success", "status 0 text");
	CHECK_STR(proto_status_text(-99), "protocol error", "status -99 text");
	CHECK_STR(proto_status_text(-10), "no SMTP exchange yet",
	    "status -10 text");
	CHECK(strstr(proto_status_text(3), "refused") != NULL,
	    "positive status text");
	CHECK_STR(proto_status_text(-4), "unknown status", "status -4 text");
	CHECK_STR(proto_op_name(PROTO_OP_GET_RESPONSE), "GET_RESPONSE",
	    "GET_RESPONSE name");
}

/* Sets or unsets (value NULL) an environment variable. */
static void
test_env(const char *name, const char *value)
{
	if (value != NULL)
		setenv(name, value, 1);
	else
		unsetenv(name);
}

/* Returns the default socket path for the given environment, or NULL. */
static const char *
test_sockpath(const char *runtime, const char *xdg)
{
	static char	path[256];

	test_env("RUNTIME_DIRECTORY", runtime);
	test_env("XDG_RUNTIME_DIR", xdg);
	test_err[0] = '\0';
	if (proto_default_socket_path(path, sizeof(path), test_err,
	    sizeof(test_err)) == -1)
		return NULL;
	return path;
}

/* Checks the rules that apply to a process that is not root. */
static void
test_sockpath_user(void)
{
	CHECK_STR(test_sockpath(NULL, "/run/user/1000"),
	    "/run/user/1000/smtpool.sock", "user XDG_RUNTIME_DIR");
	CHECK(test_sockpath(NULL, NULL) == NULL, "user without dirs fails");
	CHECK(test_err_has("XDG_RUNTIME_DIR"), "no-dir error names variable");
	CHECK(test_sockpath(NULL, "") == NULL, "user empty XDG fails");
	CHECK(test_sockpath(NULL, "run/user") == NULL,
	    "user relative XDG fails");
	CHECK_STR(test_sockpath("/run/smtpool", "/run/user/1000"),
	    "/run/smtpool/smtpool.sock", "RUNTIME_DIRECTORY beats XDG");
}

static void
test_sockpath_rules(void)
{
	char	longdir[200];
	char	small[8];

	CHECK_STR(test_sockpath("/run/smtpool", NULL),
	    "/run/smtpool/smtpool.sock", "RUNTIME_DIRECTORY used");
	CHECK_STR(test_sockpath("/run/a:/run/b", NULL),
	    "/run/a/smtpool.sock", "RUNTIME_DIRECTORY first entry");
	CHECK_STR(test_sockpath("/run/a/", NULL),
	    "/run/a/smtpool.sock", "RUNTIME_DIRECTORY trailing slash");

	memset(longdir, 'd', sizeof(longdir));
	longdir[0] = '/';
	longdir[94] = '\0';	/* 94 + "/smtpool.sock" = 107 bytes: fits */
	CHECK(test_sockpath(longdir, NULL) != NULL, "path of 107 accepted");
	longdir[94] = 'd';
	longdir[95] = '\0';	/* 108 bytes: no room for the NUL */
	CHECK(test_sockpath(longdir, NULL) == NULL, "path of 108 rejected");
	CHECK(test_err_has("RUNTIME_DIRECTORY"), "long path names variable");
	CHECK(test_err_has("108"), "long path names length");

	setenv("RUNTIME_DIRECTORY", "/run/smtpool", 1);
	CHECK(proto_default_socket_path(small, sizeof(small), test_err,
	    sizeof(test_err)) == -1, "small buffer rejected");

	if (geteuid() == 0) {
		CHECK_STR(test_sockpath(NULL, "/run/user/1000"),
		    "/run/smtpool/smtpool.sock", "root default path");
		CHECK_STR(test_sockpath(":/run/b", NULL),
		    "/run/smtpool/smtpool.sock", "root empty first entry");
		/* Drop to user 65534 (nobody) for a moment to cover the user rules; the
		 * saved set-user-ID lets the test return to root. */
		if (seteuid(65534) == 0) {
			test_sockpath_user();
			if (seteuid(0) != 0) {
				printf("# cannot return to euid 0\n");
				exit(1);
			}
		} else
			printf("# seteuid failed; user rules not tested\n");
	} else
		test_sockpath_user();
}

int
main(void)
{
	memset(test_filler, 'a', sizeof(test_filler));

	test_round_trip();
	test_limits();
	test_field_counts();
	test_header_errors();
	test_payload_errors();
	test_fields();
	test_builder();
	test_reply();
	test_names();
	test_sockpath_rules();
	return check_done();
}
