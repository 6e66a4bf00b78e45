/*
 * cli.c - smtpool, the command-line client of smtpoold.
 *
 * "smtpool send" builds a SendMail header list from options and sends one
 * message.  "smtpool shell" runs UPOPMAIL operations written one per line,
 * from a script or typed at a prompt, over a single session.  "smtpool
 * status" and "smtpool metrics" print the daemon's pool counts as a table,
 * as JSON or in the Prometheus text format.  All of them use only the
 * public libsmtpool API.  Results go to standard output, errors to
 * standard error, and the exit status follows <sysexits.h> as the help
 * text lists.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "smtpool.h"

#ifndef SMTPOOL_VERSION
#define SMTPOOL_VERSION	"unknown"
#endif

/* Maximum shell line length in bytes: room for a full header list with
 * every ';' escaped, plus the other arguments. */
#define CLI_MAX_LINE	(3 * SMTPOOL_MAX_HEADERS)
/* Maximum size of a file that an @path argument loads.  It is the header
 * list limit, the longest argument the daemon accepts. */
#define CLI_MAX_LOADED	SMTPOOL_MAX_HEADERS
/* Maximum number of arguments on a shell line.  No operation takes more
 * than 5. */
#define CLI_MAX_ARGS	8

/* Maximum number of secrets the run remembers to keep them out of its
 * output, and the shortest one it looks for.  Shorter values would hide
 * ordinary words of the daemon's messages. */
#define CLI_MAX_SECRETS		16
#define CLI_MIN_SECRET		4
/* Maximum size of a file that --password-file or --token-file reads. */
#define CLI_MAX_SECRET_FILE	4096

static const char	*cli_socket;	/* --socket, or NULL */
static int		 cli_exit;	/* exit status so far */
/* Passwords and tokens of this run.  Every message and server text the
 * CLI prints is searched for them, as a guard in case a daemon or server
 * repeats one. */
static char		*cli_secrets[CLI_MAX_SECRETS];
static size_t		 cli_nsecrets;
/* stdio buffer of the shell's script or standard input. */
static char		 cli_script_buf[BUFSIZ];

static const char cli_main_help[] =
"Usage: smtpool [--socket PATH] COMMAND [OPTION]... [ARG]...\n"
"       smtpool --help | --version\n"
"\n"
"Client of smtpoold, the daemon that keeps authenticated SMTP connections\n"
"to mail servers in a pool for local programs.  Each run opens one session\n"
"with the daemon.\n"
"\n"
"Commands:\n"
"  send     send one message built from options (see smtpool send --help)\n"
"  shell    run LogonSMTP, LogoffSMTP, SendMail, GetSMTPResponse,\n"
"           SetSecurity and GetSecurity from a script or a prompt (see\n"
"           smtpool shell --help)\n"
"  status   show the daemon's connection pools and totals, as a table or\n"
"           JSON (see smtpool status --help)\n"
"  metrics  print the same counts for Prometheus (see smtpool metrics\n"
"           --help)\n"
"\n"
"Options:\n"
"  --socket PATH  path of smtpoold's Unix socket; also accepted after the\n"
"                 command.  Default: $SMTPOOL_SOCKET when set, else\n"
"                 $RUNTIME_DIRECTORY/smtpool.sock, else\n"
"                 /run/smtpool/smtpool.sock for root, else\n"
"                 $XDG_RUNTIME_DIR/smtpool.sock\n"
"  -h, --help     show this help and exit\n"
"  --version      show the version and exit\n"
"\n"
"Exit status:\n"
"   0  every operation returned a status of 0 or more\n"
"  64  EX_USAGE: invalid command line\n"
"  65  EX_DATAERR: an operation returned a negative status, or a shell\n"
"      line has a syntax error\n"
"  66  EX_NOINPUT: a file (message text, attachment, script, @ argument,\n"
"      password or token file) cannot be opened or read, or an environment\n"
"      variable named for a value is not set\n"
"  69  EX_UNAVAILABLE: smtpoold cannot be reached, or the connection to\n"
"      it was lost\n"
"  71  EX_OSERR: out of memory\n"
"  74  EX_IOERR: status or metrics output could not be written\n"
"  76  EX_PROTOCOL: smtpoold reported a protocol error or sent an invalid\n"
"      reply\n"
"When several apply, the first of 69, 76, 71, 66, 65 in that order wins.\n";

static const char cli_send_help[] =
"Usage: smtpool send --server CONN --from ADDR --to ADDR[,ADDR...]\n"
"                    [OPTION]... [--attach FILE]...\n"
"\n"
"Sends one message with the SendMail operation over a pooled connection\n"
"to CONN, without LogonSMTP.  The message text is read from --body FILE or\n"
"from standard input and streamed to the daemon.  Prints\n"
"  SendMail: STATUS (status text) MESSAGE\n"
"and, once the server has replied, the last SMTP reply:\n"
"  smtp: CODE ENHANCED-CODE TEXT\n"
"\n"
"Options:\n"
"  --server CONN      connection string {TCP:|TLS:}HOST{+PORT}{:PROFILE},\n"
"                     e.g. TLS:smtp.example.com+465 (required)\n"
"  --from ADDR        sender: local@domain or \"Name <local@domain>\"\n"
"                     (required)\n"
"  --to ADDR[,ADDR]   recipients, commas between addresses; repeatable\n"
"  --cc ADDR[,ADDR]   copy recipients; repeatable\n"
"  --bcc ADDR[,ADDR]  blind copy recipients, left out of the message\n"
"                     headers; repeatable\n"
"  --reply-to ADDR    Reply-To address\n"
"  --subject TEXT     subject line\n"
"  --priority N       priority from 1 (highest) to 5 (lowest)\n"
"  --body FILE        file with the message text; \"-\" or no --body reads\n"
"                     standard input\n"
"  --attach FILE      attach FILE under its base name; repeatable\n"
"  --max-size BYTES   largest composed message in bytes, status -6 when\n"
"                     larger; 0 (the default) means no limit\n"
"  --socket PATH      path of smtpoold's socket (see smtpool --help)\n"
"  -h, --help         show this help and exit\n"
"\n"
"Security (SetSecurity calls made before SendMail, STARTTLS first):\n"
"  --starttls[=mand|opt]\n"
"                     upgrade the connection with STARTTLS; with mand (the\n"
"                     default) a server without STARTTLS gives status -7,\n"
"                     with opt it is used when offered\n"
"  --auth MECH        authenticate with SMTP AUTH; MECH is login, plain,\n"
"                     xoauth2 or oauthbearer.  A server that does not\n"
"                     offer MECH gives status -7, rejected credentials -8\n"
"  --user USER        user name to authenticate as (required with --auth)\n"
"  --password-file FILE\n"
"                     read the password (login, plain) from FILE\n"
"  --password-env VAR read the password from environment variable VAR\n"
"  --token-file FILE  read the OAuth 2.0 access token (xoauth2,\n"
"                     oauthbearer) from FILE\n"
"  --token-env VAR    read the token from environment variable VAR\n"
"  --authzid ID       identity to act as (plain only)\n"
"  --auth-optional    skip AUTH when the server does not offer MECH,\n"
"                     instead of failing with -7\n"
"No option takes a password or token itself, so secrets never show up in\n"
"the process list.  A password or token file holds at most 4096 bytes;\n"
"one trailing line break is removed and an empty file is an error.  The\n"
"daemon sends AUTH only over TLS or STARTTLS unless its configuration\n"
"allows plain text.  A failed SetSecurity prints\n"
"  SetSecurity: STATUS (status text) MESSAGE\n"
"and nothing is sent.\n"
"\n"
"At least one of --to, --cc and --bcc is required.  A ';' in a value is\n"
"passed on as \";;\", the header list's escape for it, in the header list\n"
"and in the security parameters alike.  Exit status as in smtpool --help.\n"
"\n"
"Example:\n"
"  smtpool send --server TLS:smtp.example.com --from app@example.com \\\n"
"      --to ops@example.com --subject \"Nightly report\" \\\n"
"      --attach report.csv < summary.txt\n"
"  smtpool send --server TCP:smtp.example.com+587 --starttls \\\n"
"      --auth login --user app@example.com \\\n"
"      --password-file ~/.config/smtpool/password \\\n"
"      --from app@example.com --to ops@example.com < summary.txt\n";

static const char cli_shell_help[] =
"Usage: smtpool shell [--socket PATH] [FILE]\n"
"\n"
"Runs UPOPMAIL SMTP operations in one session, one per line, read from\n"
"FILE or, with no FILE or \"-\", from standard input.  The prompt\n"
"\"smtpool> \" is shown when standard input is a terminal.\n"
"\n"
"Operations (names in any case):\n"
"  LogonSMTP conn user password     log on; user and password must be \"\"\n"
"  LogoffSMTP                       log off\n"
"  SendMail server headers text attachments maxsize\n"
"                                   send one message; server is ignored\n"
"                                   while logged on\n"
"  GetSMTPResponse                  last SMTP reply code and text\n"
"  SetSecurity properties parameters\n"
"                                   add a security driver (STARTTLS or\n"
"                                   SMTP AUTH) to the session's context;\n"
"                                   properties \"SMTP=\" removes it all\n"
"  GetSecurity index properties     driver number index (from 1);\n"
"                                   properties must be \"SMTP=\"\n"
"\n"
"Line syntax:\n"
"  NAME ARG ARG ...   or   NAME(ARG, ARG, ...)\n"
"  An ARG is a double-quoted string (\"\" is empty), an unquoted integer\n"
"  or an unquoted env:NAME.\n"
"  Inside quotes, \\\" is a quote, \\\\ a backslash, \\n a line feed and \\t a\n"
"  tab; any other backslash is an error.\n"
"  A quoted ARG that starts with @ is replaced by the contents of the file\n"
"  named after the @ (at most 65536 bytes, one trailing line break\n"
"  removed).  SendMail's text argument is streamed from the file instead,\n"
"  whole and unchanged.  Write @@ for a literal leading @.\n"
"  An unquoted env:NAME is replaced by the value of the environment\n"
"  variable NAME; an unset variable is an error.  Quoted, \"env:NAME\" is\n"
"  plain text.\n"
"  Blank lines and lines whose first character is # are skipped.\n"
"\n"
"Arguments:\n"
"  conn, server  connection string {TCP:|TLS:}HOST{+PORT}{:PROFILE}\n"
"  headers       LABEL=VALUE items separated by ';', LABEL one of TO, FROM,\n"
"                CC, BCC, SUBJECT, PRIORITY (1-5), REPLY (Reply-To); \";;\"\n"
"                is a literal ';'; commas separate addresses\n"
"  attachments   file paths separated by ';' (\";;\" is a literal ';'), or\n"
"                \"\"; each is sent under its base name\n"
"  maxsize       largest composed message in bytes, 0 for no limit\n";

/* The rest of the shell help.  ISO C limits a string literal to 4095
 * bytes, so the help is printed in two pieces. */
static const char cli_shell_help2[] =
"  properties    SMTP=ENTRYPOINT or SMTP=ENTRYPOINT;USE=MAND|OPT (MAND is\n"
"                the default: a server without the function gives -7 at\n"
"                logon, OPT skips it).  ENTRYPOINT, case-sensitive, is\n"
"                UStartTLSSMTP (first), UAuthLoginSMTP, UAuthPlainSMTP,\n"
"                UAuthXOAUTH2SMTP or UAuthOAuthBearerSMTP\n"
"  parameters    key=value items separated by ';' (\";;\" is a literal ';'):\n"
"                \"\" for STARTTLS, user and password for LOGIN and PLAIN\n"
"                (PLAIN also takes authzid), user and token for XOAUTH2\n"
"                and OAUTHBEARER.  Checked at logon, where invalid ones\n"
"                give -8\n"
"\n"
"Keep credentials out of scripts and command lines: give SetSecurity's\n"
"parameters as \"@FILE\" or env:NAME.  The shell never prints parameters:\n"
"a successful SetSecurity prints \"SetSecurity: 0\", and passwords and\n"
"tokens are replaced by *** wherever a message would show them.\n"
"\n"
"Output: one line per operation, \"NAME: STATUS\", then \"(status text)\" when\n"
"STATUS is not 0, then the daemon's message.  GetSMTPResponse prints\n"
"\"GetSMTPResponse: 0 CODE TEXT\", GetSecurity \"GetSecurity: 0 PROPERTIES\n"
"INUSE=TRUE|FALSE\" (TRUE: the driver took part in the session's current\n"
"or last connection).  Line breaks inside a message are shown as \\n.\n"
"A line that cannot run (syntax error, unreadable @ file, unset env:\n"
"variable) prints \"error: line N: ...\" on standard error and the shell\n"
"goes on; the exit status (see smtpool --help) reports it at the end.\n"
"\n"
"Example script:\n"
"  # Log on once and send two messages over the same connection.\n"
"  LogonSMTP \"TLS:smtp.example.com+465\" \"\" \"\"\n"
"  SendMail \"\" \"FROM=app@example.com;TO=ops@example.com;SUBJECT=Report\" "
"\"@report.txt\" \"report.csv\" 0\n"
"  GetSMTPResponse\n"
"  SendMail(\"\", \"FROM=app@example.com;TO=a@example.com,b@example.com\", "
"\"Hello,\\nbye.\\n\", \"\", 0)\n"
"  LogoffSMTP\n"
"\n"
"Example script with STARTTLS and AUTH LOGIN, the parameters\n"
"\"user=app@example.com;password=...\" taken from $SMTP_PARAMETERS:\n"
"  SetSecurity \"SMTP=UStartTLSSMTP\" \"\"\n"
"  SetSecurity \"SMTP=UAuthLoginSMTP;USE=MAND\" env:SMTP_PARAMETERS\n"
"  LogonSMTP \"TCP:smtp.example.com+587\" \"\" \"\"\n"
"  GetSecurity 2 \"SMTP=\"\n"
"  SendMail \"\" \"FROM=app@example.com;TO=ops@example.com\" \"Hi\" \"\" 0\n"
"  LogoffSMTP\n";

static void	cli_error(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
static void	cli_line_error(unsigned long, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* Prints "smtpool: MESSAGE" on standard error. */
static void
cli_error(const char *fmt, ...)
{
	va_list	ap;

	fputs("smtpool: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Prints "error: line N: MESSAGE" on standard error for a shell line. */
static void
cli_line_error(unsigned long lineno, const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "error: line %lu: ", lineno);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Ranks exit statuses so the most serious problem of a run is reported. */
static int
cli_exit_rank(int code)
{
	switch (code) {
	case 0:
		return 0;
	case EX_DATAERR:
		return 1;
	case EX_NOINPUT:
		return 2;
	case EX_OSERR:
		return 3;
	case EX_PROTOCOL:
		return 4;
	case EX_UNAVAILABLE:
		return 5;
	default:
		return 6;
	}
}

/* Raises the exit status of the run to code when code is more serious. */
static void
cli_note_exit(int code)
{
	if (cli_exit_rank(code) > cli_exit_rank(cli_exit))
		cli_exit = code;
}

/* Maps an operation's status to an exit status. */
static int
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
static void
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
static void
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
static void
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
static void
cli_print_escaped(const char *s)
{
	cli_print_escaped_to(stdout, s);
}

/* Prints "OP: STATUS (status text) MESSAGE" for a finished operation,
 * taking the status text from text_of (SetSecurity and GetSecurity have
 * their own status tables). */
static void
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
static void
cli_print_result(const char *op, const smtpool_t *s, int status)
{
	cli_print_result_with(op, s, status, smtpool_status_text);
}

/* Prints "CODE [ENHANCED] TEXT" of a GET_RESPONSE reply.  The server text
 * usually starts with the enhanced code already, so it is added only when
 * missing. */
static void
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
static smtpool_t *
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
static int
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

/* Growable string for the header list. */
struct cli_str {
	char	*data;
	size_t	 len;
	size_t	 cap;
	int	 failed;
};

/* Appends n bytes of p to b; an allocation failure sticks in b->failed. */
static void
cli_str_add(struct cli_str *b, const char *p, size_t n)
{
	size_t	 cap;
	char	*q;

	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((q = realloc(b->data, cap)) == NULL) {
			b->failed = 1;
			return;
		}
		b->data = q;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* Appends "LABEL=VALUE" with each ';' of the value doubled, preceded by
 * the item separator unless it is the first item. */
static void
cli_str_add_item(struct cli_str *b, const char *label, const char *value)
{
	const char	*semi;

	if (b->len > 0)
		cli_str_add(b, ";", 1);
	cli_str_add(b, label, strlen(label));
	cli_str_add(b, "=", 1);
	while ((semi = strchr(value, ';')) != NULL) {
		cli_str_add(b, value, (size_t)(semi - value));
		cli_str_add(b, ";;", 2);
		value = semi + 1;
	}
	cli_str_add(b, value, strlen(value));
}

/* Adds an address option's value to a comma-joined list. */
static void
cli_str_add_list(struct cli_str *b, const char *value)
{
	if (b->len > 0)
		cli_str_add(b, ",", 1);
	cli_str_add(b, value, strlen(value));
}

/* Parses a non-negative byte count.  Returns 0 or -1. */
static int
cli_parse_size(const char *text, int64_t *out)
{
	char		*end;
	long long	 v;

	if (!isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return -1;
	*out = v;
	return 0;
}

/* Options of "smtpool send". */
struct cli_send_opts {
	const char	*server, *from, *subject, *reply_to, *body;
	const char	*priority, *max_size;
	struct cli_str	 to, cc, bcc;
	const char	**attach;
	size_t		 nattach;
	/* Security context: --starttls[=mand|opt] and --auth with the
	 * options that name where its secret is read from. */
	const char	*starttls;	/* "mand" for a bare --starttls */
	const char	*auth, *user, *authzid;
	const char	*password_file, *password_env;
	const char	*token_file, *token_env;
	int		 auth_optional;
};

/* Sets a single-valued option, rejecting a second occurrence. */
static int
cli_set_once(const char **slot, const char *name, const char *value)
{
	if (*slot != NULL) {
		cli_error("option --%s given twice (\"%s\" and \"%s\"); give "
		    "it once", name, *slot, value);
		return -1;
	}
	*slot = value;
	return 0;
}

enum {
	CLI_OPT_SOCKET = 256,
	CLI_OPT_VERSION,
	CLI_OPT_SERVER,
	CLI_OPT_FROM,
	CLI_OPT_TO,
	CLI_OPT_CC,
	CLI_OPT_BCC,
	CLI_OPT_SUBJECT,
	CLI_OPT_PRIORITY,
	CLI_OPT_REPLY_TO,
	CLI_OPT_BODY,
	CLI_OPT_ATTACH,
	CLI_OPT_MAX_SIZE,
	CLI_OPT_STARTTLS,
	CLI_OPT_AUTH,
	CLI_OPT_USER,
	CLI_OPT_PASSWORD_FILE,
	CLI_OPT_PASSWORD_ENV,
	CLI_OPT_TOKEN_FILE,
	CLI_OPT_TOKEN_ENV,
	CLI_OPT_AUTHZID,
	CLI_OPT_AUTH_OPTIONAL,
	CLI_OPT_JSON,
};

static const struct option cli_send_longopts[] = {
	{ "server",	required_argument, NULL, CLI_OPT_SERVER },
	{ "from",	required_argument, NULL, CLI_OPT_FROM },
	{ "to",		required_argument, NULL, CLI_OPT_TO },
	{ "cc",		required_argument, NULL, CLI_OPT_CC },
	{ "bcc",	required_argument, NULL, CLI_OPT_BCC },
	{ "subject",	required_argument, NULL, CLI_OPT_SUBJECT },
	{ "priority",	required_argument, NULL, CLI_OPT_PRIORITY },
	{ "reply-to",	required_argument, NULL, CLI_OPT_REPLY_TO },
	{ "body",	required_argument, NULL, CLI_OPT_BODY },
	{ "attach",	required_argument, NULL, CLI_OPT_ATTACH },
	{ "max-size",	required_argument, NULL, CLI_OPT_MAX_SIZE },
	{ "starttls",	optional_argument, NULL, CLI_OPT_STARTTLS },
	{ "auth",	required_argument, NULL, CLI_OPT_AUTH },
	{ "user",	required_argument, NULL, CLI_OPT_USER },
	{ "password-file", required_argument, NULL, CLI_OPT_PASSWORD_FILE },
	{ "password-env", required_argument, NULL, CLI_OPT_PASSWORD_ENV },
	{ "token-file",	required_argument, NULL, CLI_OPT_TOKEN_FILE },
	{ "token-env",	required_argument, NULL, CLI_OPT_TOKEN_ENV },
	{ "authzid",	required_argument, NULL, CLI_OPT_AUTHZID },
	{ "auth-optional", no_argument,	   NULL, CLI_OPT_AUTH_OPTIONAL },
	{ "socket",	required_argument, NULL, CLI_OPT_SOCKET },
	{ "help",	no_argument,	   NULL, 'h' },
	{ NULL,		0,		   NULL, 0 },
};

/* Handles one option of "smtpool send".  Returns 0 or -1 (usage error). */
static int
cli_send_option(struct cli_send_opts *o, int c, const char *arg)
{
	const char	**p;

	switch (c) {
	case CLI_OPT_SERVER:
		return cli_set_once(&o->server, "server", arg);
	case CLI_OPT_FROM:
		return cli_set_once(&o->from, "from", arg);
	case CLI_OPT_TO:
		cli_str_add_list(&o->to, arg);
		return 0;
	case CLI_OPT_CC:
		cli_str_add_list(&o->cc, arg);
		return 0;
	case CLI_OPT_BCC:
		cli_str_add_list(&o->bcc, arg);
		return 0;
	case CLI_OPT_SUBJECT:
		return cli_set_once(&o->subject, "subject", arg);
	case CLI_OPT_PRIORITY:
		return cli_set_once(&o->priority, "priority", arg);
	case CLI_OPT_REPLY_TO:
		return cli_set_once(&o->reply_to, "reply-to", arg);
	case CLI_OPT_BODY:
		return cli_set_once(&o->body, "body", arg);
	case CLI_OPT_MAX_SIZE:
		return cli_set_once(&o->max_size, "max-size", arg);
	case CLI_OPT_STARTTLS:
		return cli_set_once(&o->starttls, "starttls",
		    arg != NULL ? arg : "mand");
	case CLI_OPT_AUTH:
		return cli_set_once(&o->auth, "auth", arg);
	case CLI_OPT_USER:
		return cli_set_once(&o->user, "user", arg);
	case CLI_OPT_PASSWORD_FILE:
		return cli_set_once(&o->password_file, "password-file", arg);
	case CLI_OPT_PASSWORD_ENV:
		return cli_set_once(&o->password_env, "password-env", arg);
	case CLI_OPT_TOKEN_FILE:
		return cli_set_once(&o->token_file, "token-file", arg);
	case CLI_OPT_TOKEN_ENV:
		return cli_set_once(&o->token_env, "token-env", arg);
	case CLI_OPT_AUTHZID:
		return cli_set_once(&o->authzid, "authzid", arg);
	case CLI_OPT_AUTH_OPTIONAL:
		o->auth_optional = 1;
		return 0;
	case CLI_OPT_SOCKET:
		cli_socket = arg;
		return 0;
	case CLI_OPT_ATTACH:
		p = realloc(o->attach, (o->nattach + 1) * sizeof(*p));
		if (p == NULL) {
			cli_error("out of memory for --attach %s", arg);
			return -1;
		}
		o->attach = p;
		o->attach[o->nattach++] = arg;
		return 0;
	default:
		return -1;
	}
}

/* Checks the parsed options and builds the SendMail header list into h.
 * Returns 0 or an exit status. */
static int
cli_send_headers(struct cli_send_opts *o, struct cli_str *h, int64_t *max)
{
	*max = 0;
	if (o->server == NULL || o->from == NULL) {
		cli_error("send needs --server and --from; see smtpool send "
		    "--help");
		return EX_USAGE;
	}
	if (o->to.len == 0 && o->cc.len == 0 && o->bcc.len == 0) {
		cli_error("send needs a recipient: give --to, --cc or --bcc");
		return EX_USAGE;
	}
	if (o->priority != NULL && (strlen(o->priority) != 1 ||
	    o->priority[0] < '1' || o->priority[0] > '5')) {
		cli_error("invalid --priority \"%s\": give 1 (highest) to 5 "
		    "(lowest)", o->priority);
		return EX_USAGE;
	}
	if (o->max_size != NULL && cli_parse_size(o->max_size, max) == -1) {
		cli_error("invalid --max-size \"%s\": give a size in bytes, or "
		    "0 for no limit", o->max_size);
		return EX_USAGE;
	}

	cli_str_add_item(h, "FROM", o->from);
	if (o->to.len > 0)
		cli_str_add_item(h, "TO", o->to.data);
	if (o->cc.len > 0)
		cli_str_add_item(h, "CC", o->cc.data);
	if (o->bcc.len > 0)
		cli_str_add_item(h, "BCC", o->bcc.data);
	if (o->reply_to != NULL)
		cli_str_add_item(h, "REPLY", o->reply_to);
	if (o->subject != NULL)
		cli_str_add_item(h, "SUBJECT", o->subject);
	if (o->priority != NULL)
		cli_str_add_item(h, "PRIORITY", o->priority);
	if (h->failed || o->to.failed || o->cc.failed || o->bcc.failed) {
		cli_error("out of memory for the header list");
		return EX_OSERR;
	}
	return 0;
}

/* The SetSecurity calls that "smtpool send" makes before SendMail:
 * STARTTLS first, then one AUTH driver. */
struct cli_security {
	size_t	 n;
	char	 properties[2][64];
	char	*parameters[2];		/* malloc'd, wiped before free */
	size_t	 cap[2];		/* allocated size of parameters */
};

/* AUTH mechanisms of --auth and the entry points that run them. */
static const struct {
	const char	*name;
	const char	*entry_point;
	int		 uses_token;	/* token= instead of password= */
} cli_auth_kinds[] = {
	{ "login", "UAuthLoginSMTP", 0 },
	{ "plain", "UAuthPlainSMTP", 0 },
	{ "xoauth2", "UAuthXOAUTH2SMTP", 1 },
	{ "oauthbearer", "UAuthOAuthBearerSMTP", 1 },
};

#define CLI_NAUTH_KINDS	(sizeof(cli_auth_kinds) / sizeof(cli_auth_kinds[0]))

/* Wipes and frees the parameters of sec. */
static void
cli_security_clear(struct cli_security *sec)
{
	size_t	i;

	for (i = 0; i < sec->n; i++) {
		if (sec->parameters[i] != NULL)
			explicit_bzero(sec->parameters[i], sec->cap[i]);
		free(sec->parameters[i]);
		sec->parameters[i] = NULL;
	}
	sec->n = 0;
}

/*
 * Reads a password or token from path into buf (CLI_MAX_SECRET_FILE + 2
 * bytes) and drops one trailing line break.  Messages name the option and
 * the path, never the content.  Returns 0 or an exit status.
 */
static int
cli_read_secret_file(const char *option, const char *path, char *buf,
    size_t *lenp)
{
	size_t	len = 0;
	ssize_t	n = 0;
	int	fd, errnum;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		cli_error("cannot open --%s file \"%s\": %s", option, path,
		    strerror(errno));
		return EX_NOINPUT;
	}
	/* Read one byte past the limit to tell a full file from a long one. */
	while (len < CLI_MAX_SECRET_FILE + 1) {
		n = read(fd, buf + len, CLI_MAX_SECRET_FILE + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	errnum = n == -1 ? errno : 0;
	close(fd);
	buf[len] = '\0';

	if (errnum != 0) {
		cli_error("cannot read --%s file \"%s\": %s", option, path,
		    strerror(errnum));
		return EX_NOINPUT;
	}
	if (len > CLI_MAX_SECRET_FILE) {
		cli_error("--%s file \"%s\" is over the limit of %d bytes",
		    option, path, CLI_MAX_SECRET_FILE);
		return EX_DATAERR;
	}
	if (memchr(buf, '\0', len) != NULL) {
		cli_error("--%s file \"%s\" contains a NUL byte", option, path);
		return EX_DATAERR;
	}
	/* Editors and "echo" end the file with a line break that is not
	 * part of the secret. */
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	if (len == 0) {
		cli_error("--%s file \"%s\" is empty; put the secret in it",
		    option, path);
		return EX_DATAERR;
	}
	*lenp = len;
	return 0;
}

/* Copies a password or token from the environment variable name into buf
 * (CLI_MAX_SECRET_FILE + 2 bytes).  Returns 0 or an exit status. */
static int
cli_read_secret_env(const char *option, const char *name, char *buf,
    size_t *lenp)
{
	const char	*value = getenv(name);
	size_t		 len;

	if (value == NULL || *value == '\0') {
		cli_error("environment variable %s for --%s is %s; export it "
		    "with the secret", name, option,
		    value == NULL ? "not set" : "empty");
		return EX_NOINPUT;
	}
	if ((len = strlen(value)) > CLI_MAX_SECRET_FILE) {
		cli_error("environment variable %s for --%s is over the limit "
		    "of %d bytes", name, option, CLI_MAX_SECRET_FILE);
		return EX_DATAERR;
	}
	memcpy(buf, value, len + 1);
	*lenp = len;
	return 0;
}

/* Appends "key=value" to dst with each ';' of the value doubled, after a
 * ';' unless dst is empty.  dst must have room, see cli_security_auth(). */
static void
cli_params_add(char *dst, size_t *len, const char *key, const char *value,
    size_t vlen)
{
	size_t	i;

	if (*len > 0)
		dst[(*len)++] = ';';
	memcpy(dst + *len, key, strlen(key));
	*len += strlen(key);
	dst[(*len)++] = '=';
	for (i = 0; i < vlen; i++) {
		dst[(*len)++] = value[i];
		if (value[i] == ';')
			dst[(*len)++] = ';';
	}
	dst[*len] = '\0';
}

/* Checks the AUTH options against each other.  Returns the index in
 * cli_auth_kinds, or -1 after printing a usage error. */
static int
cli_security_check_auth(const struct cli_send_opts *o)
{
	const char	*secret_opts[2][2] = {
		{ "password-file", "password-env" },
		{ "token-file", "token-env" },
	};
	const char	*given[2][2] = {
		{ o->password_file, o->password_env },
		{ o->token_file, o->token_env },
	};
	size_t		 k;
	int		 tok;

	for (k = 0; k < CLI_NAUTH_KINDS; k++)
		if (strcasecmp(o->auth, cli_auth_kinds[k].name) == 0)
			break;
	if (k == CLI_NAUTH_KINDS) {
		cli_error("invalid --auth \"%s\": give login, plain, xoauth2 "
		    "or oauthbearer", o->auth);
		return -1;
	}
	tok = cli_auth_kinds[k].uses_token;
	if (o->user == NULL) {
		cli_error("--auth %s needs --user", cli_auth_kinds[k].name);
		return -1;
	}
	if (given[!tok][0] != NULL || given[!tok][1] != NULL) {
		cli_error("--%s does not apply to --auth %s; give --%s or --%s",
		    secret_opts[!tok][given[!tok][0] != NULL ? 0 : 1],
		    cli_auth_kinds[k].name, secret_opts[tok][0],
		    secret_opts[tok][1]);
		return -1;
	}
	if (given[tok][0] != NULL && given[tok][1] != NULL) {
		cli_error("give only one of --%s and --%s",
		    secret_opts[tok][0], secret_opts[tok][1]);
		return -1;
	}
	if (given[tok][0] == NULL && given[tok][1] == NULL) {
		cli_error("--auth %s needs --%s FILE or --%s VARIABLE",
		    cli_auth_kinds[k].name, secret_opts[tok][0],
		    secret_opts[tok][1]);
		return -1;
	}
	if (o->authzid != NULL && strcmp(cli_auth_kinds[k].name,
	    "plain") != 0) {
		cli_error("--authzid applies only to --auth plain");
		return -1;
	}
	return (int)k;
}

/* Builds the AUTH driver's properties and parameters into sec, reading
 * the secret from its file or variable.  Returns 0 or an exit status. */
static int
cli_security_auth(const struct cli_send_opts *o, struct cli_security *sec)
{
	char	 secret[CLI_MAX_SECRET_FILE + 2];
	char	*params;
	size_t	 slen = 0, cap, len = 0;
	int	 k, tok, rc;

	if ((k = cli_security_check_auth(o)) == -1)
		return EX_USAGE;
	tok = cli_auth_kinds[k].uses_token;
	if (tok)
		rc = o->token_file != NULL ?
		    cli_read_secret_file("token-file", o->token_file, secret,
		    &slen) :
		    cli_read_secret_env("token-env", o->token_env, secret,
		    &slen);
	else
		rc = o->password_file != NULL ?
		    cli_read_secret_file("password-file", o->password_file,
		    secret, &slen) :
		    cli_read_secret_env("password-env", o->password_env,
		    secret, &slen);
	if (rc != 0) {
		explicit_bzero(secret, sizeof(secret));
		return rc;
	}
	cli_secret_add(secret, slen);

	/* Room for every value with each byte doubled by the ';' escape,
	 * the keys and the separators, allocated once: growing the buffer
	 * would leave copies of the secret in freed memory. */
	cap = 2 * (strlen(o->user) + slen +
	    (o->authzid != NULL ? strlen(o->authzid) : 0)) + 64;
	if ((params = malloc(cap)) == NULL) {
		explicit_bzero(secret, sizeof(secret));
		cli_error("out of memory for the security parameters");
		return EX_OSERR;
	}
	params[0] = '\0';
	cli_params_add(params, &len, "user", o->user, strlen(o->user));
	cli_params_add(params, &len, tok ? "token" : "password", secret,
	    slen);
	if (o->authzid != NULL)
		cli_params_add(params, &len, "authzid", o->authzid,
		    strlen(o->authzid));
	explicit_bzero(secret, sizeof(secret));

	snprintf(sec->properties[sec->n], sizeof(sec->properties[0]),
	    "SMTP=%s;USE=%s", cli_auth_kinds[k].entry_point,
	    o->auth_optional ? "OPT" : "MAND");
	sec->parameters[sec->n] = params;
	sec->cap[sec->n] = cap;
	sec->n++;
	return 0;
}

/* Builds the SetSecurity calls of the --starttls and --auth options into
 * sec.  Returns 0 or an exit status after printing the error. */
static int
cli_send_security(const struct cli_send_opts *o, struct cli_security *sec)
{
	const char	*use;

	memset(sec, 0, sizeof(*sec));
	if (o->starttls != NULL) {
		if (strcasecmp(o->starttls, "mand") == 0)
			use = "MAND";
		else if (strcasecmp(o->starttls, "opt") == 0)
			use = "OPT";
		else {
			cli_error("invalid --starttls value \"%s\": give "
			    "--starttls, --starttls=mand or --starttls=opt",
			    o->starttls);
			return EX_USAGE;
		}
		snprintf(sec->properties[0], sizeof(sec->properties[0]),
		    "SMTP=UStartTLSSMTP;USE=%s", use);
		/* UStartTLSSMTP takes no parameters; an empty string keeps
		 * the slot the same as the AUTH one. */
		if ((sec->parameters[0] = strdup("")) == NULL) {
			cli_error("out of memory for the security parameters");
			return EX_OSERR;
		}
		sec->cap[0] = 1;
		sec->n = 1;
	}

	if (o->auth != NULL)
		return cli_security_auth(o, sec);
	if (o->user != NULL || o->password_file != NULL ||
	    o->password_env != NULL || o->token_file != NULL ||
	    o->token_env != NULL || o->authzid != NULL || o->auth_optional) {
		cli_error("--user, --password-file, --password-env, "
		    "--token-file, --token-env, --authzid and --auth-optional "
		    "need --auth; see smtpool send --help");
		return EX_USAGE;
	}
	return 0;
}

/* Sends the message and prints the SendMail and SMTP reply lines.
 * Returns the exit status. */
static int
cli_send_run(struct cli_send_opts *o, const struct cli_security *sec,
    const char *headers, int64_t max, int textfd)
{
	smtpool_t	*s;
	char		 text[SMTPOOL_MAX_SMTP_TEXT + 1];
	size_t		 i;
	int		 status, rstatus, code, rc;

	if ((s = cli_connect()) == NULL)
		return EX_UNAVAILABLE;

	/* A successful SetSecurity prints nothing, so the output of a plain
	 * send stays the same. */
	for (i = 0; i < sec->n; i++) {
		status = smtpool_set_security(s, sec->properties[i],
		    sec->parameters[i]);
		if (status != SMTPOOL_SECURITY_OK) {
			cli_print_result_with("SetSecurity", s, status,
			    smtpool_set_security_status_text);
			rc = cli_status_exit(s, status);
			smtpool_close(s);
			return rc;
		}
	}

	status = smtpool_sendmail_fd(s, o->server, headers, textfd,
	    o->attach, o->nattach, max);
	cli_print_result("SendMail", s, status);
	rc = cli_status_exit(s, status);

	if (smtpool_is_connected(s)) {
		rstatus = smtpool_get_smtp_response(s, &code, text,
		    sizeof(text));
		if (rstatus == SMTPOOL_STATUS_OK) {
			fputs("smtp: ", stdout);
			cli_print_smtp_reply(s, code, text);
			putchar('\n');
		} else if (rstatus != SMTPOOL_STATUS_NO_RESPONSE) {
			fprintf(stderr, "smtpool: GetSMTPResponse failed: %d "
			    "(%s) ", rstatus, smtpool_status_text(rstatus));
			cli_print_escaped_to(stderr, smtpool_last_message(s));
			fputc('\n', stderr);
			if (rc == 0)
				rc = cli_status_exit(s, rstatus);
		}
	}
	smtpool_close(s);
	return rc;
}

/* "smtpool send": one message from options. */
static int
cli_send(int argc, char *argv[])
{
	struct cli_send_opts	o;
	struct cli_security	sec;
	struct cli_str		h;
	int64_t			max;
	int			c, rc, textfd;

	memset(&o, 0, sizeof(o));
	memset(&h, 0, sizeof(h));
	memset(&sec, 0, sizeof(sec));
	optind = 0;
	opterr = 0;
	rc = 0;
	while (rc == 0 && (c = getopt_long(argc, argv, ":h",
	    cli_send_longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(cli_send_help, stdout);
			goto out;
		}
		if (c == '?' || c == ':')
			rc = cli_bad_option("send", c, argv);
		else if (cli_send_option(&o, c, optarg) == -1)
			rc = EX_USAGE;
	}
	if (rc == 0 && optind < argc && o.starttls != NULL &&
	    (strcasecmp(argv[optind], "mand") == 0 ||
	    strcasecmp(argv[optind], "opt") == 0)) {
		/* getopt takes an optional value only after '='. */
		cli_error("send takes no arguments, got \"%s\"; write "
		    "--starttls=%s", argv[optind], argv[optind]);
		rc = EX_USAGE;
	} else if (rc == 0 && optind < argc) {
		cli_error("send takes no arguments, got \"%s\"; give the "
		    "message text with --body FILE or on standard input",
		    argv[optind]);
		rc = EX_USAGE;
	}
	if (rc == 0)
		rc = cli_send_headers(&o, &h, &max);
	/* The secret is read last, after every usage check has passed. */
	if (rc == 0)
		rc = cli_send_security(&o, &sec);
	if (rc != 0)
		goto out;

	if (o.body == NULL || strcmp(o.body, "-") == 0) {
		textfd = STDIN_FILENO;
		if (isatty(STDIN_FILENO))
			cli_error("reading the message text from standard "
			    "input; end it with Ctrl-D");
	} else if ((textfd = open(o.body, O_RDONLY | O_CLOEXEC)) == -1) {
		cli_error("cannot open --body file \"%s\": %s", o.body,
		    strerror(errno));
		rc = EX_NOINPUT;
		goto out;
	}

	rc = cli_send_run(&o, &sec, h.data, max, textfd);
	if (textfd != STDIN_FILENO)
		close(textfd);

out:
	cli_security_clear(&sec);
	cli_secret_clear();
	free(h.data);
	free(o.to.data);
	free(o.cc.data);
	free(o.bcc.data);
	free(o.attach);
	return rc;
}

/* One decoded argument of a shell line. */
struct cli_arg {
	char	*value;		/* NUL-terminated, escapes resolved; for an
				 * env:NAME argument, the NAME */
	int	 quoted;
	int	 env;		/* unquoted env:NAME */
};

struct cli_call;

/* A shell operation: its name, argument names and the function that runs
 * it, returning an exit status.  Bit i of secret_args marks argument i + 1
 * as one that may hold a password or token: syntax errors never quote it. */
struct cli_op {
	const char	*name;
	size_t		 nargs;
	const char	*signature;
	int		(*run)(smtpool_t *, struct cli_call *);
	unsigned	 secret_args;
};

/* A parsed shell line. */
struct cli_call {
	const struct cli_op	*op;
	unsigned long		 lineno;
	size_t			 nargs;
	struct cli_arg		 args[CLI_MAX_ARGS];
};

/* Wipes and frees the arguments of a parsed line; they may hold secrets. */
static void
cli_call_clear(struct cli_call *call)
{
	size_t	i;

	for (i = 0; i < call->nargs; i++) {
		explicit_bzero(call->args[i].value,
		    strlen(call->args[i].value));
		free(call->args[i].value);
	}
	call->nargs = 0;
}

/* Wipes and frees a string that an argument resolved to. */
static void
cli_free_secret(char *p)
{
	if (p != NULL)
		explicit_bzero(p, strlen(p));
	free(p);
}

/*
 * Resolves argument i: a quoted "@path" loads the file (at most
 * CLI_MAX_LOADED bytes, one trailing LF or CRLF removed), "@@..." drops one
 * '@', and an unquoted env:NAME takes the value of the environment
 * variable NAME.  *out points into the argument, into the environment or
 * to a malloc'd copy in *owned.  Returns 0 or an exit status after
 * printing the error, which names the file or variable, never its value.
 */
static int
cli_arg_resolve(struct cli_call *call, size_t i, const char **out,
    char **owned)
{
	struct cli_arg	*a = &call->args[i];
	const char	*path;
	char		*buf;
	size_t		 len = 0;
	ssize_t		 n;
	int		 fd, errnum;

	*owned = NULL;
	*out = a->value;
	if (a->env) {
		if ((*out = getenv(a->value)) == NULL) {
			cli_line_error(call->lineno, "environment variable %s "
			    "for argument %zu of %s is not set; export it",
			    a->value, i + 1, call->op->name);
			return EX_NOINPUT;
		}
		return 0;
	}
	if (!a->quoted || a->value[0] != '@')
		return 0;
	if (a->value[1] == '@') {
		*out = a->value + 1;
		return 0;
	}

	path = a->value + 1;
	if (*path == '\0') {
		cli_line_error(call->lineno, "argument %zu of %s is \"@\" "
		    "without a file name; write \"@@\" for a literal @", i + 1,
		    call->op->name);
		return EX_DATAERR;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		cli_line_error(call->lineno, "cannot open \"%s\" for argument "
		    "%zu of %s: %s", path, i + 1, call->op->name,
		    strerror(errno));
		return EX_NOINPUT;
	}
	if ((buf = malloc(CLI_MAX_LOADED + 2)) == NULL) {
		close(fd);
		cli_line_error(call->lineno, "out of memory for \"%s\"", path);
		return EX_OSERR;
	}
	/* Read one byte past the limit to tell a full file from a long one. */
	while (len < CLI_MAX_LOADED + 1) {
		n = read(fd, buf + len, CLI_MAX_LOADED + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	errnum = n == -1 ? errno : 0;
	close(fd);

	if (errnum != 0) {
		cli_line_error(call->lineno, "cannot read \"%s\": %s", path,
		    strerror(errnum));
		free(buf);
		return EX_NOINPUT;
	}
	if (len > CLI_MAX_LOADED) {
		cli_line_error(call->lineno, "file \"%s\" for argument %zu of "
		    "%s is over the limit of %d bytes", path, i + 1,
		    call->op->name, CLI_MAX_LOADED);
		free(buf);
		return EX_DATAERR;
	}
	if (memchr(buf, '\0', len) != NULL) {
		cli_line_error(call->lineno, "file \"%s\" for argument %zu of "
		    "%s contains a NUL byte", path, i + 1, call->op->name);
		free(buf);
		return EX_DATAERR;
	}
	/* Editors end files with a line break that is not part of a
	 * connection string or header list. */
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	*owned = buf;
	*out = buf;
	return 0;
}

/* LogonSMTP conn user password */
static int
cli_op_logon(smtpool_t *s, struct cli_call *call)
{
	const char	*v[3];
	char		*owned[3] = { NULL, NULL, NULL };
	size_t		 i;
	int		 rc = 0, status;

	for (i = 0; i < 3 && rc == 0; i++)
		rc = cli_arg_resolve(call, i, &v[i], &owned[i]);
	if (rc == 0) {
		cli_secret_add(v[2], strlen(v[2]));
		status = smtpool_logon(s, v[0], v[1], v[2]);
		cli_print_result(call->op->name, s, status);
		rc = cli_status_exit(s, status);
	}
	/* owned[2] may hold a password read from a file. */
	for (i = 0; i < 3; i++)
		cli_free_secret(owned[i]);
	return rc;
}

/* LogoffSMTP */
static int
cli_op_logoff(smtpool_t *s, struct cli_call *call)
{
	int	status;

	status = smtpool_logoff(s);
	cli_print_result(call->op->name, s, status);
	return cli_status_exit(s, status);
}

/* GetSMTPResponse */
static int
cli_op_response(smtpool_t *s, struct cli_call *call)
{
	char	text[SMTPOOL_MAX_SMTP_TEXT + 1];
	int	status, code;

	status = smtpool_get_smtp_response(s, &code, text, sizeof(text));
	if (status != SMTPOOL_STATUS_OK) {
		cli_print_result(call->op->name, s, status);
		return cli_status_exit(s, status);
	}
	printf("%s: 0 ", call->op->name);
	cli_print_smtp_reply(s, code, text);
	putchar('\n');
	return 0;
}

/*
 * Remembers the password and token values of SetSecurity parameters, so
 * the shell never prints them.  Keys are case-insensitive and ";;" is a
 * literal ';', as the daemon reads them.
 */
static void
cli_secret_add_parameters(const char *params)
{
	char		 value[SMTPOOL_MAX_PARAMETERS + 1];
	const char	*p = params, *eq;
	size_t		 klen, vlen;
	int		 secret;

	while (*p != '\0') {
		/* The key ends at '=' or at the end of the item. */
		klen = strcspn(p, "=;");
		eq = p + klen;
		vlen = 0;
		if (*eq == '=') {
			for (p = eq + 1; *p != '\0'; p++) {
				if (*p == ';' && p[1] != ';')
					break;
				if (*p == ';')
					p++;
				if (vlen < sizeof(value) - 1)
					value[vlen++] = *p;
			}
			secret = (klen == 8 && strncasecmp(eq - klen,
			    "password", 8) == 0) || (klen == 5 &&
			    strncasecmp(eq - klen, "token", 5) == 0);
			/* Both the value and its escaped form as written. */
			if (secret) {
				cli_secret_add(value, vlen);
				cli_secret_add(eq + 1, (size_t)(p - eq - 1));
			}
		} else
			p = eq;
		if (*p == ';')
			p++;
	}
	explicit_bzero(value, sizeof(value));
}

/* SetSecurity properties parameters */
static int
cli_op_set_security(smtpool_t *s, struct cli_call *call)
{
	const char	*properties, *parameters;
	char		*owned[2] = { NULL, NULL };
	int		 rc, status;

	if ((rc = cli_arg_resolve(call, 0, &properties, &owned[0])) != 0 ||
	    (rc = cli_arg_resolve(call, 1, &parameters, &owned[1])) != 0)
		goto out;
	cli_secret_add_parameters(parameters);

	status = smtpool_set_security(s, properties, parameters);
	/* Success prints the status alone: nothing of the parameters, and
	 * no message that could be taken for them. */
	if (status == SMTPOOL_SECURITY_OK)
		printf("%s: 0\n", call->op->name);
	else
		cli_print_result_with(call->op->name, s, status,
		    smtpool_set_security_status_text);
	rc = cli_status_exit(s, status);

out:
	cli_free_secret(owned[0]);
	cli_free_secret(owned[1]);
	return rc;
}

/* GetSecurity index properties */
static int
cli_op_get_security(smtpool_t *s, struct cli_call *call)
{
	const char	*indexarg, *properties;
	char		*owned[2] = { NULL, NULL };
	char		 driver[SMTPOOL_MAX_SMTP_TEXT + 1];
	char		 info[SMTPOOL_MAX_SMTP_TEXT + 1];
	char		*end;
	long		 v;
	int		 rc, status;

	if ((rc = cli_arg_resolve(call, 0, &indexarg, &owned[0])) != 0 ||
	    (rc = cli_arg_resolve(call, 1, &properties, &owned[1])) != 0)
		goto out;

	errno = 0;
	v = strtol(indexarg, &end, 10);
	if (*indexarg == '\0' || *end != '\0' || errno != 0 ||
	    v < INT_MIN || v > INT_MAX) {
		cli_line_error(call->lineno, "GetSecurity index \"%s\" is not "
		    "an integer; give 1 for the first driver", indexarg);
		rc = EX_DATAERR;
		goto out;
	}

	status = smtpool_get_security(s, (int)v, properties, driver,
	    sizeof(driver), info, sizeof(info));
	if (status == SMTPOOL_STATUS_OK) {
		printf("%s: 0 ", call->op->name);
		cli_print_escaped(driver);
		putchar(' ');
		cli_print_escaped(info);
		putchar('\n');
	} else
		cli_print_result_with(call->op->name, s, status,
		    smtpool_get_security_status_text);
	rc = cli_status_exit(s, status);

out:
	free(owned[0]);
	free(owned[1]);
	return rc;
}

/*
 * Splits a ';'-separated attachment list in place (";;" is a literal ';')
 * into a malloc'd array of paths, skipping empty items.  Returns the array
 * or NULL when out of memory; *n receives the count.
 */
static const char **
cli_split_attachments(char *list, size_t *n)
{
	const char	**paths;
	char		 *src, *dst, *item;
	size_t		  max = 1;

	for (src = list; *src != '\0'; src++)
		if (*src == ';')
			max++;
	if ((paths = calloc(max, sizeof(*paths))) == NULL)
		return NULL;

	*n = 0;
	item = dst = src = list;
	for (;;) {
		if (*src == ';' && src[1] == ';') {
			*dst++ = ';';
			src += 2;
			continue;
		}
		if (*src == ';' || *src == '\0') {
			int end = *src == '\0';

			*dst = '\0';
			if (*item != '\0')
				paths[(*n)++] = item;
			if (end)
				break;
			item = dst = ++src;
			continue;
		}
		*dst++ = *src++;
	}
	return paths;
}

/* SendMail server headers text attachments maxsize */
static int
cli_op_sendmail(smtpool_t *s, struct cli_call *call)
{
	const char	 *server, *headers, *textarg, *listarg, *maxarg;
	const char	**paths = NULL;
	char		 *owned[5] = { NULL, NULL, NULL, NULL, NULL };
	char		 *list = NULL;
	size_t		  npaths = 0, i;
	int64_t		  max;
	int		  rc, status, textfd = -1;
	char		 *end;
	long long	  v;

	if ((rc = cli_arg_resolve(call, 0, &server, &owned[0])) != 0 ||
	    (rc = cli_arg_resolve(call, 1, &headers, &owned[1])) != 0)
		goto out;

	/* The text argument streams from its file instead of loading. */
	textarg = call->args[2].value;
	if (call->args[2].quoted && textarg[0] == '@' && textarg[1] != '@') {
		if (textarg[1] == '\0') {
			cli_line_error(call->lineno, "argument 3 of SendMail "
			    "is \"@\" without a file name; write \"@@\" for "
			    "a literal @");
			rc = EX_DATAERR;
			goto out;
		}
		textfd = open(textarg + 1, O_RDONLY | O_CLOEXEC);
		if (textfd == -1) {
			cli_line_error(call->lineno, "cannot open \"%s\" for "
			    "the text of SendMail: %s", textarg + 1,
			    strerror(errno));
			rc = EX_NOINPUT;
			goto out;
		}
	} else if ((rc = cli_arg_resolve(call, 2, &textarg,
	    &owned[2])) != 0)
		goto out;

	if ((rc = cli_arg_resolve(call, 3, &listarg, &owned[3])) != 0 ||
	    (rc = cli_arg_resolve(call, 4, &maxarg, &owned[4])) != 0)
		goto out;

	errno = 0;
	v = strtoll(maxarg, &end, 10);
	if (*maxarg == '\0' || *end != '\0' || errno != 0) {
		cli_line_error(call->lineno, "SendMail maxsize \"%s\" is not "
		    "a whole number of bytes; give 0 for no limit", maxarg);
		rc = EX_DATAERR;
		goto out;
	}
	max = v;

	/* The list is split in place, so work on a copy of it. */
	if ((list = strdup(listarg)) == NULL ||
	    (paths = cli_split_attachments(list, &npaths)) == NULL) {
		cli_line_error(call->lineno, "out of memory for the "
		    "attachment list");
		rc = EX_OSERR;
		goto out;
	}

	if (textfd != -1)
		status = smtpool_sendmail_fd(s, server, headers, textfd,
		    paths, npaths, max);
	else
		status = smtpool_sendmail(s, server, headers, textarg,
		    strlen(textarg), paths, npaths, max);
	cli_print_result(call->op->name, s, status);
	rc = cli_status_exit(s, status);

out:
	if (textfd != -1)
		close(textfd);
	free(paths);
	free(list);
	for (i = 0; i < 5; i++)
		free(owned[i]);
	return rc;
}

static const struct cli_op cli_ops[] = {
	{ "LogonSMTP", 3, "(conn, user, password)", cli_op_logon, 1u << 2 },
	{ "LogoffSMTP", 0, "()", cli_op_logoff, 0 },
	{ "SendMail", 5, "(server, headers, text, attachments, maxsize)",
	    cli_op_sendmail, 0 },
	{ "GetSMTPResponse", 0, "()", cli_op_response, 0 },
	{ "SetSecurity", 2, "(properties, parameters)", cli_op_set_security,
	    1u << 1 },
	{ "GetSecurity", 2, "(index, properties)", cli_op_get_security, 0 },
};

#define CLI_NOPS	(sizeof(cli_ops) / sizeof(cli_ops[0]))

/* Finds an operation by name, ignoring case. */
static const struct cli_op *
cli_find_op(const char *name, size_t len)
{
	size_t	i;

	for (i = 0; i < CLI_NOPS; i++)
		if (strlen(cli_ops[i].name) == len &&
		    strncasecmp(cli_ops[i].name, name, len) == 0)
			return &cli_ops[i];
	return NULL;
}

/* Skips spaces and tabs. */
static char *
cli_skip_blanks(char *p)
{
	return p + strspn(p, " \t");
}

/* Returns 1 when argument n (1-based) of the call may hold a secret. */
static int
cli_arg_is_secret(const struct cli_call *call, size_t n)
{
	return n >= 1 && n <= 32 && (call->op->secret_args >> (n - 1)) & 1u;
}

/* Parses an unquoted env:NAME argument of len bytes at start into a.
 * Returns 0, or -1 with err filled. */
static int
cli_parse_env_arg(const char *start, size_t len, struct cli_arg *a,
    size_t n, char *err, size_t errlen)
{
	const char	*name = start + 4;
	size_t		 nlen = len - 4;

	if (nlen == 0 || isdigit((unsigned char)name[0]) ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_") < nlen) {
		snprintf(err, errlen, "argument %zu: env: needs a variable "
		    "name of letters, digits and '_', not starting with a "
		    "digit", n);
		return -1;
	}
	if ((a->value = strndup(name, nlen)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	a->quoted = 0;
	a->env = 1;
	return 0;
}

/*
 * Parses one argument at *pp into call->args[call->nargs]: a quoted string
 * with \" \\ \n \t escapes, an unquoted env:NAME, or an unquoted integer,
 * the unquoted forms ending at a blank, ',' or ')'.  Advances *pp past it.
 * Returns 0 or -1 with err filled.  Errors quote nothing of an argument
 * that may hold a secret.
 */
static int
cli_parse_arg(char **pp, struct cli_call *call, char *err, size_t errlen)
{
	struct cli_arg	*a;
	char		*p = *pp, *dst, *start;
	size_t		 n = call->nargs + 1, len;
	int		 secret = cli_arg_is_secret(call, n);

	if (call->nargs == CLI_MAX_ARGS) {
		snprintf(err, errlen, "more than %d arguments", CLI_MAX_ARGS);
		return -1;
	}
	a = &call->args[call->nargs];
	a->env = 0;

	if (*p == '"') {
		p++;
		/* Zeroed, so the value stays NUL-terminated when a syntax
		 * error stops the copy halfway: cli_call_clear() wipes it
		 * by its strlen(). */
		if ((dst = a->value = calloc(strlen(p) + 1, 1)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		call->nargs++;
		a->quoted = 1;
		for (;;) {
			if (*p == '\0') {
				snprintf(err, errlen, "argument %zu has no "
				    "closing quote", n);
				return -1;
			}
			if (*p == '"')
				break;
			if (*p != '\\') {
				*dst++ = *p++;
				continue;
			}
			p++;
			switch (*p) {
			case '"':
			case '\\':
				*dst++ = *p;
				break;
			case 'n':
				*dst++ = '\n';
				break;
			case 't':
				*dst++ = '\t';
				break;
			default:
				if (secret)
					snprintf(err, errlen, "unknown escape "
					    "in argument %zu; use \\\" \\\\ "
					    "\\n or \\t", n);
				else
					snprintf(err, errlen, "unknown escape "
					    "\"\\%c\" in argument %zu; use "
					    "\\\" \\\\ \\n or \\t",
					    *p != '\0' ? *p : ' ', n);
				return -1;
			}
			p++;
		}
		*dst = '\0';
		*pp = p + 1;
		return 0;
	}

	start = p;
	len = strcspn(p, " \t,)");
	if (len == 0) {
		snprintf(err, errlen, "argument %zu is missing", n);
		return -1;
	}
	p += len;
	if (len >= 4 && strncmp(start, "env:", 4) == 0) {
		if (cli_parse_env_arg(start, len, a, n, err, errlen) == -1)
			return -1;
		call->nargs++;
		*pp = p;
		return 0;
	}
	dst = start;
	if (*dst == '-' || *dst == '+')
		dst++;
	if (dst == p || strspn(dst, "0123456789") != (size_t)(p - dst)) {
		if (secret)
			snprintf(err, errlen, "unquoted argument %zu is not an "
			    "integer or env:NAME; put text in double quotes",
			    n);
		else
			snprintf(err, errlen, "unquoted argument %zu (%.*s) is "
			    "not an integer or env:NAME; put text in double "
			    "quotes", n, len > 40 ? 40 : (int)len, start);
		return -1;
	}
	if ((a->value = strndup(start, len)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	call->nargs++;
	a->quoted = 0;
	*pp = p;
	return 0;
}

/* Parses the arguments of a NAME(ARG, ...) line after the '('. */
static int
cli_parse_paren_args(char *p, struct cli_call *call, char *err,
    size_t errlen)
{
	p = cli_skip_blanks(p);
	if (*p != ')') {
		for (;;) {
			p = cli_skip_blanks(p);
			if (cli_parse_arg(&p, call, err, errlen) == -1)
				return -1;
			p = cli_skip_blanks(p);
			if (*p == ',') {
				p++;
				continue;
			}
			if (*p == ')')
				break;
			snprintf(err, errlen, "expected ',' or ')' after "
			    "argument %zu", call->nargs);
			return -1;
		}
	}
	p = cli_skip_blanks(p + 1);
	if (*p != '\0') {
		snprintf(err, errlen, "unexpected text after ')'");
		return -1;
	}
	return 0;
}

/* Parses the arguments of a NAME ARG ARG ... line. */
static int
cli_parse_blank_args(char *p, struct cli_call *call, char *err,
    size_t errlen)
{
	for (;;) {
		p = cli_skip_blanks(p);
		if (*p == '\0')
			return 0;
		if (cli_parse_arg(&p, call, err, errlen) == -1)
			return -1;
		if (*p != '\0' && *p != ' ' && *p != '\t') {
			if (cli_arg_is_secret(call, call->nargs))
				snprintf(err, errlen, "expected a blank after "
				    "argument %zu", call->nargs);
			else
				snprintf(err, errlen, "expected a blank after "
				    "argument %zu, got '%c'", call->nargs, *p);
			return -1;
		}
	}
}

/* Parses a shell line into call.  Returns 0 or -1 with err filled. */
static int
cli_parse_line(char *line, struct cli_call *call, char *err, size_t errlen)
{
	char	*p, *name;
	size_t	 len, i;
	int	 rc;

	name = cli_skip_blanks(line);
	len = strcspn(name, " \t(");
	if ((call->op = cli_find_op(name, len)) == NULL) {
		rc = snprintf(err, errlen, "unknown operation \"%.*s\"; valid "
		    "operations:", len > 40 ? 40 : (int)len, name);
		for (i = 0; i < CLI_NOPS && rc >= 0 && (size_t)rc < errlen;
		    i++)
			rc += snprintf(err + rc, errlen - (size_t)rc, "%s %s",
			    i > 0 ? "," : "", cli_ops[i].name);
		return -1;
	}

	p = cli_skip_blanks(name + len);
	if (*p == '(')
		rc = cli_parse_paren_args(p + 1, call, err, errlen);
	else
		rc = cli_parse_blank_args(p, call, err, errlen);
	if (rc == -1)
		return -1;

	if (call->nargs != call->op->nargs) {
		snprintf(err, errlen, "%s takes %zu argument%s %s, got %zu",
		    call->op->name, call->op->nargs,
		    call->op->nargs == 1 ? "" : "s", call->op->signature,
		    call->nargs);
		return -1;
	}
	return 0;
}

/*
 * Reads one line of at most cap - 1 bytes into buf, without its line
 * break.  Returns 1 for a line, 0 at end of input, -1 for a line that is
 * too long or contains a NUL byte (the rest of it is skipped), -2 for a read
 * error.
 */
static int
cli_read_line(FILE *fp, char *buf, size_t cap)
{
	size_t	len = 0;
	int	c, bad = 0;

	for (;;) {
		c = getc(fp);
		if (c == EOF) {
			if (ferror(fp))
				return -2;
			if (len == 0 && !bad)
				return 0;
			break;
		}
		if (c == '\n')
			break;
		if (c == '\0' || len + 1 >= cap) {
			bad = 1;
			continue;
		}
		buf[len++] = (char)c;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	return bad ? -1 : 1;
}

/* Runs the lines of fp in one session.  Returns the exit status. */
static int
cli_shell_run(smtpool_t *s, FILE *fp, const char *name, int interactive)
{
	struct cli_call	 call;
	unsigned long	 lineno = 0;
	char		*line, *p, err[512];
	int		 rc;

	if ((line = malloc(CLI_MAX_LINE + 1)) == NULL) {
		cli_error("out of memory for a %d-byte line", CLI_MAX_LINE);
		return EX_OSERR;
	}
	memset(&call, 0, sizeof(call));

	for (;;) {
		if (interactive) {
			fputs("smtpool> ", stdout);
			fflush(stdout);
		}
		rc = cli_read_line(fp, line, CLI_MAX_LINE + 1);
		if (rc == 0) {
			if (interactive)
				putchar('\n');
			break;
		}
		if (rc == -2) {
			cli_error("cannot read %s: %s", name, strerror(errno));
			cli_note_exit(EX_NOINPUT);
			break;
		}
		lineno++;
		if (rc == -1) {
			cli_line_error(lineno, "line is longer than %d bytes "
			    "or contains a NUL byte; use a quoted @file "
			    "argument for long values", CLI_MAX_LINE);
			cli_note_exit(EX_DATAERR);
			explicit_bzero(line, strlen(line));
			continue;
		}

		p = cli_skip_blanks(line);
		if (*p == '\0' || *p == '#') {
			explicit_bzero(line, strlen(line));
			continue;
		}

		call.lineno = lineno;
		if (cli_parse_line(p, &call, err, sizeof(err)) == -1) {
			cli_line_error(lineno, "%s", err);
			cli_note_exit(EX_DATAERR);
		} else
			cli_note_exit(call.op->run(s, &call));
		cli_call_clear(&call);
		/* The line may contain SetSecurity parameters. */
		explicit_bzero(line, strlen(line));
		fflush(stdout);
	}
	free(line);
	cli_secret_clear();
	return cli_exit;
}

static const struct option cli_shell_longopts[] = {
	{ "socket",	required_argument, NULL, CLI_OPT_SOCKET },
	{ "help",	no_argument,	   NULL, 'h' },
	{ NULL,		0,		   NULL, 0 },
};

/* "smtpool shell": operations from a script or a prompt. */
static int
cli_shell(int argc, char *argv[])
{
	smtpool_t	*s;
	FILE		*fp = stdin;
	const char	*path = NULL, *name = "standard input";
	int		 c, rc;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", cli_shell_longopts,
	    NULL)) != -1) {
		if (c == 'h') {
			fputs(cli_shell_help, stdout);
			fputs(cli_shell_help2, stdout);
			return 0;
		}
		if (c == CLI_OPT_SOCKET)
			cli_socket = optarg;
		else
			return cli_bad_option("shell", c, argv);
	}
	if (argc - optind > 1) {
		cli_error("shell takes at most one script FILE, got \"%s\" and "
		    "\"%s\"", argv[optind], argv[optind + 1]);
		return EX_USAGE;
	}
	if (optind < argc && strcmp(argv[optind], "-") != 0) {
		path = name = argv[optind];
		if ((fp = fopen(path, "re")) == NULL) {
			cli_error("cannot open script \"%s\": %s", path,
			    strerror(errno));
			return EX_NOINPUT;
		}
	}

	/* Script lines may contain SetSecurity parameters, so stdio reads
	 * them through a buffer of ours that is wiped at the end. */
	setvbuf(fp, cli_script_buf, _IOFBF, sizeof(cli_script_buf));

	if ((s = cli_connect()) == NULL) {
		if (fp != stdin)
			fclose(fp);
		return EX_UNAVAILABLE;
	}
	rc = cli_shell_run(s, fp, name, fp == stdin && isatty(STDIN_FILENO));
	smtpool_close(s);
	if (fp != stdin)
		fclose(fp);
	/* stdin keeps the static buffer, but nothing reads it any more. */
	explicit_bzero(cli_script_buf, sizeof(cli_script_buf));
	return rc;
}

/* ---- status and metrics ------------------------------------------ */

static const char cli_status_help[] =
"Usage: smtpool status [--json] [--socket PATH]\n"
"\n"
"Prints smtpoold's connection pools: a table with one row per pool key,\n"
"then one line of daemon totals.  A pool key is a connection string with\n"
"a security context; sessions share pooled connections only within one\n"
"key.\n"
"\n"
"Columns:\n"
"  CONNECTION  normalized connection string\n"
"  DRIVERS     security drivers with their USE flags, \"-\" when none;\n"
"              never their parameters\n"
"  IDLE, BUSY, OPENING\n"
"              upstream connections free, serving a session, being set up\n"
"  WAITING     requests waiting for a connection\n"
"  SENT        messages sent since the daemon started\n"
"  ERRORS      failed operations since the daemon started\n"
"  OLDEST      age of the oldest connection (42s, 5m03s, 2h05m03s,\n"
"              3d04h05m), 0s when the key has none\n"
"Totals: sessions (open client sessions), keys, idle, busy, opening,\n"
"waiting, opened and reused (upstream connections opened, pooled ones\n"
"used again), sent, errors, uptime in seconds and the daemon's version.\n"
"A total the daemon did not report shows as \"-\".\n"
"\n"
"Options:\n"
"  --json         print one JSON object instead:\n"
"                 {\"keys\": [{\"connection\": TEXT, \"drivers\": [TEXT...],\n"
"                 \"idle\": N, \"busy\": N, \"opening\": N, \"waiting\": N,\n"
"                 \"sent\": N, \"errors\": N, \"oldest_age_seconds\": N}...],\n"
"                 \"totals\": {\"sessions\": N, \"keys\": N, \"idle\": N,\n"
"                 \"busy\": N, \"opening\": N, \"waiting\": N, \"opened\": N,\n"
"                 \"reused\": N, \"sent\": N, \"errors\": N,\n"
"                 \"uptime_seconds\": N, \"version\": TEXT}}\n"
"                 \"drivers\" lists one \"ENTRYPOINT/MAND\" or\n"
"                 \"ENTRYPOINT/OPT\" per driver, [] for none.  A total\n"
"                 the daemon did not report is null\n"
"  --socket PATH  path of smtpoold's socket (see smtpool --help)\n"
"  -h, --help     show this help and exit\n"
"\n"
"Exit status as in smtpool --help: 0, or 69 when smtpoold cannot be\n"
"reached, 76 for a protocol error.\n";

static const char cli_metrics_help[] =
"Usage: smtpool metrics [--socket PATH]\n"
"\n"
"Prints smtpoold's pool counts in the Prometheus text exposition format\n"
"0.0.4, each metric with # HELP and # TYPE lines.  Per pool key, labelled\n"
"key=\"CONNECTION\" and drivers=\"DRIVERS\" as in smtpool status:\n"
"  smtpool_connections{key,drivers,state}   gauge, state idle, busy or\n"
"                                           opening\n"
"  smtpool_waiting_requests{key,drivers}    gauge\n"
"  smtpool_messages_sent_total{key,drivers} counter\n"
"  smtpool_errors_total{key,drivers}        counter\n"
"  smtpool_oldest_connection_age_seconds{key,drivers}  gauge\n"
"Pool keys that differ only in their credentials have the same labels and\n"
"are added up into one series.  Daemon totals:\n"
"  smtpool_sessions                         gauge, open client sessions\n"
"  smtpool_connections_opened_total         counter\n"
"  smtpool_connections_reused_total         counter\n"
"  smtpool_messages_sent_all_total          counter, all keys, including\n"
"                                           keys gone since\n"
"  smtpool_errors_all_total                 counter, likewise\n"
"  smtpool_uptime_seconds                   gauge\n"
"  smtpool_info{version}                    gauge, always 1\n"
"\n"
"For node_exporter's textfile collector, write the file under a temporary\n"
"name and rename it, so the collector never reads half a file, e.g. from a\n"
"systemd timer every 15 seconds (DIR is the collector's\n"
"--collector.textfile.directory):\n"
"  sh -c 'smtpool metrics > DIR/smtpool.prom.$$ &&\n"
"      mv DIR/smtpool.prom.$$ DIR/smtpool.prom'\n"
"On failure nothing is renamed, so remove stale DIR/smtpool.prom.* files\n"
"now and then.\n"
"\n"
"Options:\n"
"  --socket PATH  path of smtpoold's socket (see smtpool --help)\n"
"  -h, --help     show this help and exit\n"
"\n"
"Exit status as in smtpool --help: 0, or 69 when smtpoold cannot be\n"
"reached, 76 for a protocol error.\n";

/* One pool key with copies of its strings. */
struct cli_status_row {
	char				*connection;
	char				*drivers;
	struct smtpool_status_row	 counts;	/* strings unused */
};

/* Everything one STATUS request returned. */
struct cli_status {
	struct cli_status_row		*rows;
	size_t				 nrows;
	size_t				 cap;
	int				 failed;	/* out of memory */
	struct smtpool_status_totals	 totals;
};

/* Stores a copy of one row; stops the rows on allocation failure. */
static int
cli_status_row_cb(const struct smtpool_status_row *row, void *arg)
{
	struct cli_status	*st = arg;
	struct cli_status_row	*rows, *r;
	size_t			 cap;

	if (st->nrows == st->cap) {
		cap = st->cap > 0 ? 2 * st->cap : 16;
		if ((rows = reallocarray(st->rows, cap, sizeof(*rows))) ==
		    NULL) {
			st->failed = 1;
			return 1;
		}
		st->rows = rows;
		st->cap = cap;
	}
	r = &st->rows[st->nrows];
	r->connection = strdup(row->connection);
	r->drivers = strdup(row->drivers);
	if (r->connection == NULL || r->drivers == NULL) {
		free(r->connection);
		free(r->drivers);
		st->failed = 1;
		return 1;
	}
	r->counts = *row;
	r->counts.connection = NULL;
	r->counts.drivers = NULL;
	st->nrows++;
	return 0;
}

/* Frees the rows of st. */
static void
cli_status_free(struct cli_status *st)
{
	size_t	i;

	for (i = 0; i < st->nrows; i++) {
		free(st->rows[i].connection);
		free(st->rows[i].drivers);
	}
	free(st->rows);
	memset(st, 0, sizeof(*st));
}

/* Asks the daemon for its status.  Returns 0 or an exit status after
 * printing the error. */
static int
cli_status_fetch(struct cli_status *st)
{
	smtpool_t	*s;
	int		 status, rc = 0;

	memset(st, 0, sizeof(*st));
	if ((s = cli_connect()) == NULL)
		return EX_UNAVAILABLE;
	status = smtpool_status(s, cli_status_row_cb, st, &st->totals);
	if (status != SMTPOOL_STATUS_OK) {
		fprintf(stderr, "smtpool: STATUS failed: %d (%s) ", status,
		    smtpool_status_text(status));
		cli_print_escaped_to(stderr, smtpool_last_message(s));
		fputc('\n', stderr);
		rc = cli_status_exit(s, status);
	} else if (st->failed) {
		cli_error("out of memory for the status of %zu pool keys",
		    st->nrows);
		rc = EX_OSERR;
	}
	smtpool_close(s);
	if (rc != 0)
		cli_status_free(st);
	return rc;
}

/*
 * Returns the length of the valid UTF-8 sequence at p, 1 to 4 bytes, or 0
 * when p starts an invalid one (a stray continuation byte, an overlong
 * form, a surrogate or a value above U+10FFFF).  p is NUL-terminated, and
 * a NUL is no continuation byte, so the checks never read past it.
 */
static size_t
cli_utf8_length(const unsigned char *p)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		n, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* Formats an age in seconds as 42s, 5m03s, 2h05m03s or 3d04h05m. */
static void
cli_format_age(int64_t secs, char *buf, size_t size)
{
	long long	v = secs < 0 ? 0 : (long long)secs;

	if (v < 60)
		snprintf(buf, size, "%llds", v);
	else if (v < 3600)
		snprintf(buf, size, "%lldm%02llds", v / 60, v % 60);
	else if (v < 86400)
		snprintf(buf, size, "%lldh%02lldm%02llds", v / 3600,
		    v / 60 % 60, v % 60);
	else
		snprintf(buf, size, "%lldd%02lldh%02lldm", v / 86400,
		    v / 3600 % 24, v / 60 % 60);
}

/* Columns of the status table. */
enum {
	CLI_COL_CONNECTION,
	CLI_COL_DRIVERS,
	CLI_COL_IDLE,
	CLI_COL_BUSY,
	CLI_COL_OPENING,
	CLI_COL_WAITING,
	CLI_COL_SENT,
	CLI_COL_ERRORS,
	CLI_COL_OLDEST,
	CLI_NCOLS
};

static const char *const cli_col_names[CLI_NCOLS] = {
	"CONNECTION", "DRIVERS", "IDLE", "BUSY", "OPENING", "WAITING",
	"SENT", "ERRORS", "OLDEST",
};

/* Room for a table cell: a text field of at most 1024 bytes with every
 * byte escaped as \xNN. */
#define CLI_CELL_SIZE	(4 * 1024 + 1)

/* Room for the version with every byte escaped. */
#define CLI_VERSION_CELL	(4 * SMTPOOL_STATUS_VERSION_SIZE)

/* Copies text into a table cell, control bytes escaped as \xNN so a row
 * stays one line. */
static void
cli_cell_text(char *buf, size_t size, const char *text)
{
	size_t	len = 0;
	int	n;

	for (; *text != '\0' && len + 5 <= size; text++) {
		if ((unsigned char)*text < 0x20 || *text == 0x7f) {
			n = snprintf(buf + len, size - len, "\\x%02x",
			    (unsigned char)*text);
			len += (size_t)n;
		} else
			buf[len++] = *text;
	}
	buf[len] = '\0';
}

/* Formats cell col of row r (NULL for the header) into buf. */
static void
cli_status_cell(const struct cli_status_row *r, int col, char *buf,
    size_t size)
{
	const struct smtpool_status_row	*c;
	int64_t				 v;

	if (r == NULL) {
		snprintf(buf, size, "%s", cli_col_names[col]);
		return;
	}
	c = &r->counts;
	switch (col) {
	case CLI_COL_CONNECTION:
		cli_cell_text(buf, size, r->connection);
		return;
	case CLI_COL_DRIVERS:
		cli_cell_text(buf, size, *r->drivers != '\0' ?
		    r->drivers : "-");
		return;
	case CLI_COL_OLDEST:
		cli_format_age(c->oldest_age, buf, size);
		return;
	case CLI_COL_IDLE:
		v = c->idle;
		break;
	case CLI_COL_BUSY:
		v = c->busy;
		break;
	case CLI_COL_OPENING:
		v = c->opening;
		break;
	case CLI_COL_WAITING:
		v = c->waiting;
		break;
	case CLI_COL_SENT:
		v = c->sent;
		break;
	default:
		v = c->errors;
		break;
	}
	snprintf(buf, size, "%" PRId64, v);
}

/* Width of a cell on a terminal: UTF-8 continuation bytes take no
 * column.  NOTE: wide characters (CJK) still count as one column. */
static size_t
cli_cell_width(const char *cell)
{
	size_t	width = 0;

	for (; *cell != '\0'; cell++)
		if (((unsigned char)*cell & 0xc0) != 0x80)
			width++;
	return width;
}

/* Prints one table line, row r or the header when r is NULL.  Text
 * columns are left-aligned and counts right-aligned, two spaces apart. */
static void
cli_status_print_line(const struct cli_status_row *r, const size_t *widths,
    char *cell)
{
	size_t	pad, w;
	int	col;

	for (col = 0; col < CLI_NCOLS; col++) {
		cli_status_cell(r, col, cell, CLI_CELL_SIZE);
		w = cli_cell_width(cell);
		pad = widths[col] > w ? widths[col] - w : 0;
		if (col > 0)
			fputs("  ", stdout);
		if (col > CLI_COL_DRIVERS)
			printf("%*s", (int)pad, "");
		fputs(cell, stdout);
		if (col <= CLI_COL_DRIVERS)
			printf("%*s", (int)pad, "");
	}
	putchar('\n');
}

/* Prints "name=value" of a total, "-" when the daemon did not report it. */
static void
cli_status_print_total(const char *name, int64_t v, const char *unit)
{
	if (v < 0)
		printf("%s=-", name);
	else
		printf("%s=%" PRId64 "%s", name, v, unit);
}

/* Prints the status table and the totals line. */
static int
cli_status_print_table(const struct cli_status *st)
{
	const struct smtpool_status_totals	*t = &st->totals;
	size_t					 widths[CLI_NCOLS], w, i;
	char					*cell;
	char					 version[CLI_VERSION_CELL];
	int					 col;

	if ((cell = malloc(CLI_CELL_SIZE)) == NULL) {
		cli_error("out of memory for the status table");
		return EX_OSERR;
	}
	for (col = 0; col < CLI_NCOLS; col++)
		widths[col] = strlen(cli_col_names[col]);
	for (i = 0; i < st->nrows; i++)
		for (col = 0; col < CLI_NCOLS; col++) {
			cli_status_cell(&st->rows[i], col, cell,
			    CLI_CELL_SIZE);
			if ((w = cli_cell_width(cell)) > widths[col])
				widths[col] = w;
		}

	cli_status_print_line(NULL, widths, cell);
	for (i = 0; i < st->nrows; i++)
		cli_status_print_line(&st->rows[i], widths, cell);
	free(cell);

	cli_status_print_total("sessions", t->sessions, "");
	cli_status_print_total(" keys", t->keys, "");
	cli_status_print_total(" idle", t->idle, "");
	cli_status_print_total(" busy", t->busy, "");
	cli_status_print_total(" opening", t->opening, "");
	cli_status_print_total(" waiting", t->waiting, "");
	cli_status_print_total(" opened", t->opened, "");
	cli_status_print_total(" reused", t->reused, "");
	cli_status_print_total(" sent", t->sent, "");
	cli_status_print_total(" errors", t->errors, "");
	cli_status_print_total(" uptime", t->uptime, "s");
	cli_cell_text(version, sizeof(version), t->version[0] != '\0' ?
	    t->version : "-");
	printf(" version=%s\n", version);
	return 0;
}

/* Prints s as a JSON string: quotes, backslashes and control characters
 * escaped, and each byte of an invalid UTF-8 sequence replaced by
 * U+FFFD, so the output always parses. */
static void
cli_json_string(const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n;

	putchar('"');
	while (*p != '\0') {
		if ((n = cli_utf8_length(p)) == 0) {
			fputs("\\ufffd", stdout);
			p++;
			continue;
		}
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", stdout);
		else if (*p == '\r')
			fputs("\\r", stdout);
		else if (*p == '\t')
			fputs("\\t", stdout);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			fwrite(p, 1, n, stdout);
		p += n;
	}
	putchar('"');
}

/* Prints a driver list "A/MAND+B/OPT" as a JSON array of its items. */
static void
cli_json_drivers(const char *drivers)
{
	char	*copy, *item, *next;

	putchar('[');
	if (*drivers != '\0' && (copy = strdup(drivers)) != NULL) {
		for (item = copy; item != NULL; item = next) {
			if ((next = strchr(item, '+')) != NULL)
				*next++ = '\0';
			cli_json_string(item);
			if (next != NULL)
				fputs(", ", stdout);
		}
		free(copy);
	} else if (*drivers != '\0')
		/* Out of memory for the copy: the whole list as one item
		 * is still correct JSON with every driver in it. */
		cli_json_string(drivers);
	putchar(']');
}

/* Prints ", "name": N" of a total, null when the daemon did not report
 * it. */
static void
cli_json_total(const char *name, int64_t v, int first)
{
	printf("%s\"%s\": ", first ? "" : ", ", name);
	if (v < 0)
		fputs("null", stdout);
	else
		printf("%" PRId64, v);
}

/* Prints the status as one JSON object. */
static void
cli_status_print_json(const struct cli_status *st)
{
	const struct smtpool_status_totals	*t = &st->totals;
	const struct smtpool_status_row		*c;
	size_t					 i;

	fputs("{\n  \"keys\": [", stdout);
	for (i = 0; i < st->nrows; i++) {
		c = &st->rows[i].counts;
		fputs(i > 0 ? ",\n    {" : "\n    {", stdout);
		fputs("\"connection\": ", stdout);
		cli_json_string(st->rows[i].connection);
		fputs(", \"drivers\": ", stdout);
		cli_json_drivers(st->rows[i].drivers);
		printf(", \"idle\": %" PRId32 ", \"busy\": %" PRId32
		    ", \"opening\": %" PRId32 ", \"waiting\": %" PRId32
		    ", \"sent\": %" PRId64 ", \"errors\": %" PRId64
		    ", \"oldest_age_seconds\": %" PRId64 "}", c->idle,
		    c->busy, c->opening, c->waiting, c->sent, c->errors,
		    c->oldest_age);
	}
	fputs(st->nrows > 0 ? "\n  ],\n" : "],\n", stdout);

	fputs("  \"totals\": {", stdout);
	cli_json_total("sessions", t->sessions, 1);
	cli_json_total("keys", t->keys, 0);
	cli_json_total("idle", t->idle, 0);
	cli_json_total("busy", t->busy, 0);
	cli_json_total("opening", t->opening, 0);
	cli_json_total("waiting", t->waiting, 0);
	cli_json_total("opened", t->opened, 0);
	cli_json_total("reused", t->reused, 0);
	cli_json_total("sent", t->sent, 0);
	cli_json_total("errors", t->errors, 0);
	cli_json_total("uptime_seconds", t->uptime, 0);
	fputs(", \"version\": ", stdout);
	if (t->version[0] != '\0')
		cli_json_string(t->version);
	else
		fputs("null", stdout);
	fputs("}\n}\n", stdout);
}

/* Prints a Prometheus label value: backslash, double quote and line feed
 * escaped as the text format requires, invalid UTF-8 bytes as U+FFFD. */
static void
cli_prom_label_value(const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n;

	while (*p != '\0') {
		if ((n = cli_utf8_length(p)) == 0) {
			fputs("\xef\xbf\xbd", stdout);
			p++;
			continue;
		}
		if (*p == '\\')
			fputs("\\\\", stdout);
		else if (*p == '"')
			fputs("\\\"", stdout);
		else if (*p == '\n')
			fputs("\\n", stdout);
		else
			fwrite(p, 1, n, stdout);
		p += n;
	}
}

/* Prints the # HELP and # TYPE lines of a metric. */
static void
cli_prom_family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Prints one per-key sample: name{key="..",drivers="..",state=".."} v,
 * without the state label when state is NULL. */
static void
cli_prom_key_sample(const char *name, const struct cli_status_row *r,
    const char *state, int64_t v)
{
	printf("%s{key=\"", name);
	cli_prom_label_value(r->connection);
	fputs("\",drivers=\"", stdout);
	cli_prom_label_value(r->drivers);
	if (state != NULL)
		printf("\",state=\"%s", state);
	printf("\"} %" PRId64 "\n", v);
}

/* Prints a daemon total, unless the daemon did not report it. */
static void
cli_prom_total(const char *name, const char *type, const char *help,
    int64_t v)
{
	if (v < 0)
		return;
	cli_prom_family(name, type, help);
	printf("%s %" PRId64 "\n", name, v);
}

/*
 * Adds up rows with the same connection string and drivers in place.
 * Such keys differ only in the digest of their credentials, which STATUS
 * does not show, and Prometheus rejects two samples with the same labels.
 */
static void
cli_status_merge(struct cli_status *st)
{
	struct smtpool_status_row	*a, *b;
	size_t				 i, j, n = 0;

	for (i = 0; i < st->nrows; i++) {
		for (j = 0; j < n; j++)
			if (strcmp(st->rows[j].connection,
			    st->rows[i].connection) == 0 &&
			    strcmp(st->rows[j].drivers,
			    st->rows[i].drivers) == 0)
				break;
		if (j == n) {
			st->rows[n++] = st->rows[i];
			continue;
		}
		a = &st->rows[j].counts;
		b = &st->rows[i].counts;
		a->idle += b->idle;
		a->busy += b->busy;
		a->opening += b->opening;
		a->waiting += b->waiting;
		a->sent += b->sent;
		a->errors += b->errors;
		if (b->oldest_age > a->oldest_age)
			a->oldest_age = b->oldest_age;
		free(st->rows[i].connection);
		free(st->rows[i].drivers);
	}
	st->nrows = n;
}

/* Prints the status in the Prometheus text exposition format 0.0.4.  A
 * per-key metric gets no HELP or TYPE lines when there is no key. */
static void
cli_status_print_metrics(struct cli_status *st)
{
	const struct smtpool_status_totals	*t = &st->totals;
	static const char *const		 states[] = {
		"idle", "busy", "opening",
	};
	const struct smtpool_status_row		*c;
	size_t					 i;

	cli_status_merge(st);
	if (st->nrows > 0) {
		cli_prom_family("smtpool_connections", "gauge", "Upstream "
		    "SMTP connections of a pool key by state.");
		for (i = 0; i < st->nrows; i++) {
			c = &st->rows[i].counts;
			cli_prom_key_sample("smtpool_connections",
			    &st->rows[i], states[0], c->idle);
			cli_prom_key_sample("smtpool_connections",
			    &st->rows[i], states[1], c->busy);
			cli_prom_key_sample("smtpool_connections",
			    &st->rows[i], states[2], c->opening);
		}
		cli_prom_family("smtpool_waiting_requests", "gauge",
		    "Requests waiting for a connection of a pool key.");
		for (i = 0; i < st->nrows; i++)
			cli_prom_key_sample("smtpool_waiting_requests",
			    &st->rows[i], NULL, st->rows[i].counts.waiting);
		cli_prom_family("smtpool_messages_sent_total", "counter",
		    "Messages sent through a pool key.");
		for (i = 0; i < st->nrows; i++)
			cli_prom_key_sample("smtpool_messages_sent_total",
			    &st->rows[i], NULL, st->rows[i].counts.sent);
		cli_prom_family("smtpool_errors_total", "counter",
		    "Failed operations of a pool key.");
		for (i = 0; i < st->nrows; i++)
			cli_prom_key_sample("smtpool_errors_total",
			    &st->rows[i], NULL, st->rows[i].counts.errors);
		cli_prom_family("smtpool_oldest_connection_age_seconds",
		    "gauge", "Age of the oldest connection of a pool key, "
		    "0 without connections.");
		for (i = 0; i < st->nrows; i++)
			cli_prom_key_sample(
			    "smtpool_oldest_connection_age_seconds",
			    &st->rows[i], NULL,
			    st->rows[i].counts.oldest_age);
	}

	cli_prom_total("smtpool_sessions", "gauge",
	    "Client sessions open on the daemon's socket.", t->sessions);
	cli_prom_total("smtpool_connections_opened_total", "counter",
	    "Upstream SMTP connections opened since the daemon started.",
	    t->opened);
	cli_prom_total("smtpool_connections_reused_total", "counter",
	    "Times a pooled connection was used again.", t->reused);
	cli_prom_total("smtpool_messages_sent_all_total", "counter",
	    "Messages sent over all pool keys since the daemon started.",
	    t->sent);
	cli_prom_total("smtpool_errors_all_total", "counter",
	    "Failed operations over all pool keys since the daemon started.",
	    t->errors);
	cli_prom_total("smtpool_uptime_seconds", "gauge",
	    "Seconds since the daemon started.", t->uptime);
	if (t->version[0] != '\0') {
		cli_prom_family("smtpool_info", "gauge",
		    "Version of the daemon; the value is always 1.");
		fputs("smtpool_info{version=\"", stdout);
		cli_prom_label_value(t->version);
		fputs("\"} 1\n", stdout);
	}
}

static const struct option cli_status_longopts[] = {
	{ "json",	no_argument,	   NULL, CLI_OPT_JSON },
	{ "socket",	required_argument, NULL, CLI_OPT_SOCKET },
	{ "help",	no_argument,	   NULL, 'h' },
	{ NULL,		0,		   NULL, 0 },
};

static const struct option cli_metrics_longopts[] = {
	{ "socket",	required_argument, NULL, CLI_OPT_SOCKET },
	{ "help",	no_argument,	   NULL, 'h' },
	{ NULL,		0,		   NULL, 0 },
};

/*
 * "smtpool status" and "smtpool metrics": one STATUS request printed as a
 * table, as JSON or as Prometheus metrics.  cmd is the command's name.
 * Nothing goes to standard output before the whole reply is in, so a
 * failed request prints no partial table or metrics.
 */
static int
cli_status_command(const char *cmd, int argc, char *argv[])
{
	struct cli_status	 st;
	int			 c, rc, json = 0;
	int			 metrics = strcmp(cmd, "metrics") == 0;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", metrics ?
	    cli_metrics_longopts : cli_status_longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(metrics ? cli_metrics_help : cli_status_help,
			    stdout);
			return 0;
		}
		if (c == CLI_OPT_SOCKET)
			cli_socket = optarg;
		else if (c == CLI_OPT_JSON)
			json = 1;
		else
			return cli_bad_option(cmd, c, argv);
	}
	if (optind < argc) {
		cli_error("%s takes no arguments, got \"%s\"; see smtpool %s "
		    "--help", cmd, argv[optind], cmd);
		return EX_USAGE;
	}

	if ((rc = cli_status_fetch(&st)) != 0)
		return rc;
	if (metrics)
		cli_status_print_metrics(&st);
	else if (json)
		cli_status_print_json(&st);
	else
		rc = cli_status_print_table(&st);
	cli_status_free(&st);
	/* A full disk must fail the command, so that "smtpool metrics >
	 * f.tmp && mv f.tmp f.prom" keeps the last complete file. */
	if (fflush(stdout) == EOF || ferror(stdout)) {
		cli_error("cannot write the %s output to standard output: %s",
		    cmd, strerror(errno));
		return EX_IOERR;
	}
	return rc;
}

static const struct option cli_main_longopts[] = {
	{ "socket",	required_argument, NULL, CLI_OPT_SOCKET },
	{ "help",	no_argument,	   NULL, 'h' },
	{ "version",	no_argument,	   NULL, CLI_OPT_VERSION },
	{ NULL,		0,		   NULL, 0 },
};

int
main(int argc, char *argv[])
{
	const char	*cmd;
	int		 c;

	/* A result line goes out whole even when output is a pipe. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	opterr = 0;
	/* '+' stops at the command, whose options are parsed separately. */
	while ((c = getopt_long(argc, argv, "+:h", cli_main_longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(cli_main_help, stdout);
			return 0;
		case CLI_OPT_VERSION:
			printf("smtpool %s\n", SMTPOOL_VERSION);
			return 0;
		case CLI_OPT_SOCKET:
			cli_socket = optarg;
			break;
		default:
			return cli_bad_option(NULL, c, argv);
		}
	}
	if (optind >= argc) {
		cli_error("missing command: give send, shell, status or "
		    "metrics; see smtpool --help");
		return EX_USAGE;
	}

	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "send") == 0)
		return cli_send(argc, argv);
	if (strcmp(cmd, "shell") == 0)
		return cli_shell(argc, argv);
	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "metrics") == 0)
		return cli_status_command(cmd, argc, argv);
	cli_error("unknown command \"%s\": give send, shell, status or "
	    "metrics; see smtpool --help", cmd);
	return EX_USAGE;
}
