/*
 * cli_common.c - helpers that every smtpool command shares.
 *
 * Prints errors on standard error, maps operation statuses to <sysexits.h>
 * exit statuses, keeps the run's passwords and tokens so that printed
 * results and server texts show them as "***", and opens the session with
 * smtpoold.  Functions that can fail print the reason with cli_error() and
 * return NULL or an exit status.  A secret that cannot be copied for lack
 * of memory is not masked.
 */
#include <getopt.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sysexits.h>

#include "smtpool.h"
#include "cli.h"

/* Maximum number of secrets the run remembers to keep them out of its
 * output, and the shortest one it looks for.  Shorter values would hide
 * ordinary words of the daemon's messages. */
#define CLI_MAX_SECRETS		16
#define CLI_MIN_SECRET		4

/* Passwords and tokens of this run.  Every message and server text the
 * CLI prints is searched for them, as a guard in case a daemon or server
 * repeats one. */
static char		*cli_secrets[CLI_MAX_SECRETS];
static size_t		 cli_nsecrets;

/* Prints "smtpool: MESSAGE" on standard error. */
void
cli_error(const char *fmt, ...)
{
	va_list	ap;

	fputs("smtpool: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Maps an operation's status to an exit status. */
int
cli_status_exit(const smtpool_t *s, int status)
{
	if (status >= 0)
		return 0;
	if (status == SMTPOOL_STATUS_PROTOCOL_ERROR)
		return EX_PROTOCOL;
	/* A -1 with a failed system call behind it is a file the library
	 * could not open or read.  Without one, the daemon or an argument
	 * check rejected a value. */
	if (status == SMTPOOL_STATUS_INVALID_ARGUMENT &&
	    smtpool_last_errno(s) != 0)
		return EX_NOINPUT;
	if (status == SMTPOOL_STATUS_NO_MEMORY && smtpool_last_errno(s) != 0)
		return EX_OSERR;
	if (!smtpool_is_connected(s))
		return EX_UNAVAILABLE;
	return EX_DATAERR;
}

/* Returns 1 when the len bytes at secret are remembered already. */
static int
cli_secret_known(const char *secret, size_t len)
{
	size_t	i;

	for (i = 0; i < cli_nsecrets; i++)
		if (strlen(cli_secrets[i]) == len &&
		    memcmp(cli_secrets[i], secret, len) == 0)
			return 1;
	return 0;
}

/* Remembers a copy of a password or token so that cli_print_escaped()
 * never prints it.  When the list is full, the oldest is dropped. */
void
cli_secret_add(const char *secret, size_t len)
{
	char	*copy;

	if (len < CLI_MIN_SECRET || cli_secret_known(secret, len))
		return;
	if ((copy = strndup(secret, len)) == NULL)
		return;
	if (cli_nsecrets == CLI_MAX_SECRETS) {
		explicit_bzero(cli_secrets[0], strlen(cli_secrets[0]));
		free(cli_secrets[0]);
		memmove(cli_secrets, cli_secrets + 1,
		    (CLI_MAX_SECRETS - 1) * sizeof(cli_secrets[0]));
		cli_nsecrets--;
	}
	cli_secrets[cli_nsecrets++] = copy;
}

/* Wipes, frees and empties the list of remembered secrets. */
void
cli_secret_clear(void)
{
	size_t	i;

	for (i = 0; i < cli_nsecrets; i++) {
		explicit_bzero(cli_secrets[i], strlen(cli_secrets[i]));
		free(cli_secrets[i]);
	}
	cli_nsecrets = 0;
}

/* Returns the length of the longest remembered secret that starts at s,
 * or 0.  The longest, because one secret may begin with another. */
static size_t
cli_secret_at(const char *s)
{
	size_t	i, len, best = 0;

	for (i = 0; i < cli_nsecrets; i++) {
		len = strlen(cli_secrets[i]);
		if (len > best && strncmp(s, cli_secrets[i], len) == 0)
			best = len;
	}
	return best;
}

/* Prints s to fp with control characters escaped, so a result stays one
 * line, and every remembered secret replaced by "***". */
void
cli_print_escaped_to(FILE *fp, const char *s)
{
	unsigned char	c;
	size_t		skip;

	while (*s != '\0') {
		if ((skip = cli_secret_at(s)) > 0) {
			fputs("***", fp);
			s += skip;
			continue;
		}
		c = (unsigned char)*s++;
		if (c == '\n')
			fputs("\\n", fp);
		else if (c == '\r')
			fputs("\\r", fp);
		else if (c == '\t')
			fputs("\\t", fp);
		else if (c < 0x20 || c == 0x7f)
			fprintf(fp, "\\x%02x", c);
		else
			putc(c, fp);
	}
}

/* Prints s on standard output as cli_print_escaped_to() does. */
void
cli_print_escaped(const char *s)
{
	cli_print_escaped_to(stdout, s);
}

/* Prints "OP: STATUS (status text) MESSAGE" for a finished operation,
 * taking the status text from text_of (SetSecurity and GetSecurity have
 * their own status tables). */
void
cli_print_result_with(const char *op, const smtpool_t *s, int status,
    const char *(*text_of)(int))
{
	const char	*message = smtpool_last_message(s);

	printf("%s: %d", op, status);
	if (status != 0)
		printf(" (%s)", text_of(status));
	if (*message != '\0') {
		putchar(' ');
		cli_print_escaped(message);
	}
	putchar('\n');
}

/* Prints the result of an operation with the common status table. */
void
cli_print_result(const char *op, const smtpool_t *s, int status)
{
	cli_print_result_with(op, s, status, smtpool_status_text);
}

/* Prints "CODE [ENHANCED] TEXT" of a GET_RESPONSE reply.  The server text
 * usually starts with the enhanced code already, so it is added only when
 * missing. */
void
cli_print_smtp_reply(const smtpool_t *s, int code, const char *text)
{
	const char	*enhanced = smtpool_last_enhanced(s);
	size_t		 elen = strlen(enhanced);

	printf("%d", code);
	if (elen > 0 && (strncmp(text, enhanced, elen) != 0 ||
	    (text[elen] != ' ' && text[elen] != '\0')))
		printf(" %s", enhanced);
	if (*text != '\0') {
		putchar(' ');
		cli_print_escaped(text);
	}
}

/* Opens a session on --socket, SMTPOOL_SOCKET or the default path.
 * Prints the reason and returns NULL on failure. */
smtpool_t *
cli_connect(void)
{
	smtpool_t	*s;
	char		 err[1024];

	size_t		 len;

	if ((s = smtpool_connect(cli_socket, err, sizeof(err))) == NULL) {
		len = strlen(err);
		cli_error("%s%s Set --socket PATH or SMTPOOL_SOCKET to use "
		    "another socket.", err,
		    len > 0 && err[len - 1] == '?' ? "" : ".");
	}
	return s;
}

/* Reports a getopt failure for command cmd ("send", or NULL for the
 * top level) and returns EX_USAGE. */
int
cli_bad_option(const char *cmd, int c, char *const argv[])
{
	const char	*opt = argv[optind - 1];
	const char	*prefix = cmd != NULL ? " " : "";

	if (cmd == NULL)
		cmd = "";
	if (c == ':')
		cli_error("option %s requires a value; see smtpool%s%s --help",
		    opt, prefix, cmd);
	else if (optopt != 0)
		cli_error("unknown option -%c; see smtpool%s%s --help", optopt,
		    prefix, cmd);
	else
		cli_error("unknown option %s; see smtpool%s%s --help", opt,
		    prefix, cmd);
	return EX_USAGE;
}

int
cli_read_up_to(int fd, char *buf, size_t max, size_t *lenp)
{
	size_t	len = 0;
	ssize_t	n = 0;

	/* Read one byte past the limit to tell a full file from a long one. */
	while (len < max + 1) {
		n = read(fd, buf + len, max + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	*lenp = len;
	return n == -1 ? errno : 0;
}
