/*
 * test_dotstuff.c - line-ending normalization and dot-stuffing, whole and
 * split at every position.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dotstuff.h"

/* Inputs and their encoded stream, including what dotstuff_finish()
 * adds. */
static const struct {
	const char	*in;
	const char	*out;
} cases[] = {
	{ "", "" },
	{ "a", "a\r\n" },
	{ "a\nb", "a\r\nb\r\n" },
	{ "a\r\nb\r\n", "a\r\nb\r\n" },
	{ "\r", "\r\n" },
	{ "\n", "\r\n" },
	{ "\r\n", "\r\n" },
	{ "a\rb", "a\r\nb\r\n" },
	{ "\r\r\n", "\r\n\r\n" },
	{ "\n\r", "\r\n\r\n" },
	{ "\r\r", "\r\n\r\n" },
	{ ".\n", "..\r\n" },
	{ ".", "..\r\n" },
	{ "\n.\n", "\r\n..\r\n" },
	{ "..", "...\r\n" },
	{ "..\r\n.", "...\r\n..\r\n" },
	{ "a.b\n", "a.b\r\n" },
	{ "a\n.b", "a\r\n..b\r\n" },
	{ "a\r.b", "a\r\n..b\r\n" },
	{ "a\r\n.\r\n", "a\r\n..\r\n" },
	{ " .", " .\r\n" },
	{ "x\r\n\r\n", "x\r\n\r\n" },
	{ "\r\n.\r\n", "\r\n..\r\n" },
	{ "end\r", "end\r\n" },
	{ NULL, NULL },
};

/* Encodes in[0..len) split at the given offsets (sorted, each <= len)
 * and finishes.  Returns the malloc'ed output and its length. */
static char *
encode_split(const char *in, size_t len, const size_t *cuts, size_t ncuts,
    size_t *outlen, int *bounded)
{
	struct dotstuff	 ds;
	char		*out;
	size_t		 o = 0, from = 0, to, k, n;

	out = malloc(DOTSTUFF_MAX_OUT(len) + 2 * (ncuts + 1) + 2);
	if (out == NULL)
		abort();
	*bounded = 1;
	dotstuff_init(&ds);
	for (k = 0; k <= ncuts; k++) {
		to = k < ncuts ? cuts[k] : len;
		n = dotstuff_encode(&ds, in + from, to - from, out + o);
		if (n > DOTSTUFF_MAX_OUT(to - from))
			*bounded = 0;
		o += n;
		from = to;
	}
	o += dotstuff_finish(&ds, out + o);
	*outlen = o;
	return out;
}

static void
test_table(void)
{
	char	*out, name[128];
	size_t	 i, len, outlen, cut, wantlen;
	int	 bounded, split_ok, split_bounded;

	for (i = 0; cases[i].in != NULL; i++) {
		len = strlen(cases[i].in);
		wantlen = strlen(cases[i].out);

		out = encode_split(cases[i].in, len, NULL, 0, &outlen,
		    &bounded);
		snprintf(name, sizeof(name), "case %zu whole output", i);
		CHECK(outlen == wantlen &&
		    memcmp(out, cases[i].out, wantlen) == 0, name);
		snprintf(name, sizeof(name), "case %zu within bound", i);
		CHECK(bounded, name);
		free(out);

		/* The same bytes in two chunks, for every cut. */
		split_ok = split_bounded = 1;
		for (cut = 0; cut <= len; cut++) {
			out = encode_split(cases[i].in, len, &cut, 1, &outlen,
			    &bounded);
			if (outlen != wantlen ||
			    memcmp(out, cases[i].out, wantlen) != 0) {
				split_ok = 0;
				printf("# case %zu differs when cut at %zu\n",
				    i, cut);
			}
			if (!bounded)
				split_bounded = 0;
			free(out);
		}
		snprintf(name, sizeof(name), "case %zu every cut", i);
		CHECK(split_ok, name);
		snprintf(name, sizeof(name), "case %zu cuts within bound", i);
		CHECK(split_bounded, name);
	}
}

/* One byte per call, the finest split. */
static void
test_byte_at_a_time(void)
{
	const char	*in = "..a\r\r\n\n.\r.b\rc\n";
	const char	*want = "...a\r\n\r\n\r\n..\r\n..b\r\nc\r\n";
	size_t		 cuts[64], i, len = strlen(in), outlen;
	char		*out;
	int		 bounded;

	for (i = 0; i + 1 < len; i++)
		cuts[i] = i + 1;
	out = encode_split(in, len, cuts, len - 1, &outlen, &bounded);
	CHECK_INT(outlen, strlen(want), "byte at a time length");
	CHECK(outlen == strlen(want) && memcmp(out, want, outlen) == 0,
	    "byte at a time bytes");
	CHECK(bounded, "byte at a time within bound");
	free(out);
}

/* Finishing twice, or finishing an empty stream, writes nothing more. */
static void
test_finish(void)
{
	struct dotstuff	 ds;
	char		 out[16];
	size_t		 n;

	dotstuff_init(&ds);
	CHECK_INT(dotstuff_finish(&ds, out), 0, "finish empty stream");

	dotstuff_init(&ds);
	n = dotstuff_encode(&ds, "x\r\n", 3, out);
	CHECK_INT(n, 3, "finish after CRLF encode");
	CHECK_INT(dotstuff_finish(&ds, out), 0, "finish after CRLF");

	dotstuff_init(&ds);
	n = dotstuff_encode(&ds, "x\r", 2, out);
	CHECK_INT(n, 1, "pending CR not written yet");
	n = dotstuff_finish(&ds, out);
	CHECK_INT(n, 2, "finish resolves CR length");
	CHECK(memcmp(out, "\r\n", 2) == 0, "finish resolves CR bytes");
	CHECK_INT(dotstuff_finish(&ds, out), 0, "second finish empty");
}

/*
 * Encodes random input from a small alphabet.  The output must hold CR
 * only before LF and LF only after CR.  Removing one '.' from each line
 * that starts with '.' must give back the input with every line break
 * turned into CRLF.
 */
static void
test_random(void)
{
	static const char alphabet[] = "\r\n.a";
	char		 in[200], norm[500], undone[500], *out;
	size_t		 len, outlen, i, o, u, cuts[3];
	unsigned int	 seed = 12345;
	int		 bounded, round, ok_crlf = 1, ok_undo = 1;

	for (round = 0; round < 2000; round++) {
		seed = seed * 1103515245u + 12345u;
		len = (seed >> 8) % sizeof(in);
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = alphabet[(seed >> 16) % 4];
		}
		for (i = 0; i < 3; i++) {
			seed = seed * 1103515245u + 12345u;
			cuts[i] = len == 0 ? 0 : (seed >> 8) % (len + 1);
		}
		if (cuts[0] > cuts[1]) { o = cuts[0]; cuts[0] = cuts[1]; cuts[1] = o; }
		if (cuts[1] > cuts[2]) { o = cuts[1]; cuts[1] = cuts[2]; cuts[2] = o; }
		if (cuts[0] > cuts[1]) { o = cuts[0]; cuts[0] = cuts[1]; cuts[1] = o; }
		out = encode_split(in, len, cuts, 3, &outlen, &bounded);

		for (i = 0; i < outlen; i++) {
			if (out[i] == '\r' && (i + 1 == outlen ||
			    out[i + 1] != '\n'))
				ok_crlf = 0;
			if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
				ok_crlf = 0;
		}

		/* The input with every line break as CRLF, ending in one. */
		for (i = o = 0; i < len; i++) {
			if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
				continue;
			if (in[i] == '\r' || in[i] == '\n') {
				norm[o++] = '\r';
				norm[o++] = '\n';
			} else
				norm[o++] = in[i];
		}
		if (o > 0 && !(o >= 2 && norm[o - 1] == '\n')) {
			norm[o++] = '\r';
			norm[o++] = '\n';
		}
		for (i = u = 0; i < outlen; i++) {
			if (out[i] == '.' && (i == 0 || out[i - 1] == '\n')) {
				if (i + 1 < outlen && out[i + 1] == '.')
					i++;
				else
					ok_undo = 0;
			}
			undone[u++] = out[i];
		}
		if (u != o || memcmp(undone, norm, o) != 0)
			ok_undo = 0;
		free(out);
	}
	CHECK(ok_crlf, "random output only CRLF pairs");
	CHECK(ok_undo, "random output unstuffs to input");
}

int
main(void)
{
	test_table();
	test_byte_at_a_time();
	test_finish();
	test_random();
	return check_done();
}
