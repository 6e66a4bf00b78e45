/*
 * dotstuff.c - the DATA transparency encoder (RFC 5321 section 4.5.2).
 *
 * Every line break of the input (CR LF, a bare LF or a bare CR) is sent
 * as CR LF, and a '.' that starts a line is doubled.  The encoder keeps
 * two bits of state between calls, so a CR at the end of one chunk and
 * an LF at the start of the next still make one line break.  Neither
 * function has an error case: both only copy bytes into the caller's
 * buffer.
 */
#include <string.h>

#include "dotstuff.h"

void
dotstuff_init(struct dotstuff *ds)
{
	ds->line_start = 1;
	ds->pending_cr = 0;
}

size_t
dotstuff_encode(struct dotstuff *ds, const char *in, size_t len, char *out)
{
	size_t	 i, o = 0, run;
	char	 c;

	for (i = 0; i < len; i++) {
		/* Inside a line, bytes other than CR and LF are copied as a
		 * run: the per-byte rules below apply only at line starts and
		 * line breaks. */
		if (!ds->pending_cr && !ds->line_start) {
			for (run = i; run < len && in[run] != '\r' &&
			    in[run] != '\n'; run++)
				;
			memcpy(out + o, in + i, run - i);
			o += run - i;
			i = run;
			if (i == len)
				break;
		}
		c = in[i];

		/* A CR waits for the next byte: CR LF is one line break,
		 * and a CR before anything else is a line break of its
		 * own. */
		if (ds->pending_cr) {
			out[o++] = '\r';
			out[o++] = '\n';
			ds->pending_cr = 0;
			ds->line_start = 1;
			if (c == '\n')
				continue;
		}
		if (c == '\r') {
			ds->pending_cr = 1;
			continue;
		}
		if (c == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			ds->line_start = 1;
			continue;
		}
		if (ds->line_start && c == '.')
			out[o++] = '.';
		out[o++] = c;
		ds->line_start = 0;
	}
	return o;
}

size_t
dotstuff_finish(struct dotstuff *ds, char *out)
{
	size_t	 o = 0;

	if (ds->pending_cr || !ds->line_start) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	dotstuff_init(ds);
	return o;
}
