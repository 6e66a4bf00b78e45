/*
 * dotstuff.h - the DATA transparency encoder (RFC 5321 section 4.5.2).
 *
 * Turns arbitrary bytes into wire form: every line ends in CRLF (a bare CR
 * or a bare LF becomes CRLF; CR LF stays one line break) and a '.' at the
 * start of a line is doubled, so no input can end the DATA phase early.
 * It streams: input may be split anywhere, including between CR and LF.
 */
#ifndef SMTPOOL_DOTSTUFF_H
#define SMTPOOL_DOTSTUFF_H

#include <stddef.h>

struct dotstuff {
	int	line_start;	/* next byte begins a line */
	int	pending_cr;	/* last input byte was a CR */
};

/* Output bytes needed for len input bytes, in the worst case. */
#define DOTSTUFF_MAX_OUT(len)	(2 * (len) + 2)

void dotstuff_init(struct dotstuff *);
/* Encodes len bytes of in into out (at least DOTSTUFF_MAX_OUT(len) bytes).
 * Returns the number of bytes written. */
size_t dotstuff_encode(struct dotstuff *, const char *in, size_t len,
    char *out);
/* Ends the stream: writes a final CRLF when the last line is unterminated
 * (and resolves a pending CR).  out needs 2 bytes.  Returns bytes written.
 * The caller then sends ".\r\n". */
size_t dotstuff_finish(struct dotstuff *, char *out);

#endif
