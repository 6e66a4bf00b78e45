/*
 * cli.c - smtpool, the command-line client of smtpoold.
 *
 * "smtpool send" builds a SendMail header list from options and sends one
 * message.  "smtpool shell" runs UPOPMAIL operations written one per line,
 * from a script or typed at a prompt, over a single session.  Both use only
 * the public libsmtpool API.  Results go to standard output, errors to
 * standard error, and the exit status follows <sysexits.h> as the help text
 * lists.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
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

static const char	*cli_socket;	/* --socket, or NULL */
static int		 cli_exit;	/* exit status so far */

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
"  shell    run LogonSMTP, LogoffSMTP, SendMail and GetSMTPResponse from a\n"
"           script or a prompt (see smtpool shell --help)\n"
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
"  66  EX_NOINPUT: a file (message text, attachment, script, @ argument)\n"
"      cannot be opened or read\n"
"  69  EX_UNAVAILABLE: smtpoold cannot be reached, or the connection to\n"
"      it was lost\n"
"  71  EX_OSERR: out of memory\n"
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
"At least one of --to, --cc and --bcc is required.  A ';' in a value is\n"
"passed on as \";;\", the header list's escape for it.  Exit status as in\n"
"smtpool --help.\n"
"\n"
"Example:\n"
"  smtpool send --server TLS:smtp.example.com --from app@example.com \\\n"
"      --to ops@example.com --subject \"Nightly report\" \\\n"
"      --attach report.csv < summary.txt\n";

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
"\n"
"Line syntax:\n"
"  NAME ARG ARG ...   or   NAME(ARG, ARG, ...)\n"
"  An ARG is a double-quoted string (\"\" is empty) or an unquoted integer.\n"
"  Inside quotes, \\\" is a quote, \\\\ a backslash, \\n a line feed and \\t a\n"
"  tab; any other backslash is an error.\n"
"  A quoted ARG that starts with @ is replaced by the contents of the file\n"
"  named after the @ (at most 65536 bytes, one trailing line break\n"
"  removed).  SendMail's text argument is streamed from the file instead,\n"
"  whole and unchanged.  Write @@ for a literal leading @.\n"
"  Blank lines and lines whose first character is # are skipped.\n"
"\n"
"Arguments:\n"
"  conn, server  connection string {TCP:|TLS:}HOST{+PORT}{:PROFILE}\n"
"  headers       LABEL=VALUE items separated by ';', LABEL one of TO, FROM,\n"
"                CC, BCC, SUBJECT, PRIORITY (1-5), REPLY (Reply-To); \";;\"\n"
"                is a literal ';'; commas separate addresses\n"
"  attachments   file paths separated by ';' (\";;\" is a literal ';'), or\n"
"                \"\"; each is sent under its base name\n"
"  maxsize       largest composed message in bytes, 0 for no limit\n"
"\n"
"Output: one line per operation, \"NAME: STATUS\", then \"(status text)\" when\n"
"STATUS is not 0, then the daemon's message.  GetSMTPResponse prints\n"
"\"GetSMTPResponse: 0 CODE TEXT\".  Line breaks inside a message are shown\n"
"as \\n.  A line that cannot run (syntax error, unreadable @ file) prints\n"
"\"error: line N: ...\" on standard error and the shell goes on; the exit\n"
"status (see smtpool --help) reports it at the end.\n"
"\n"
"Example script:\n"
"  # Log on once and send two messages over the same connection.\n"
"  LogonSMTP \"TLS:smtp.example.com+465\" \"\" \"\"\n"
"  SendMail \"\" \"FROM=app@example.com;TO=ops@example.com;SUBJECT=Report\" "
"\"@report.txt\" \"report.csv\" 0\n"
"  GetSMTPResponse\n"
"  SendMail(\"\", \"FROM=app@example.com;TO=a@example.com,b@example.com\", "
"\"Hello,\\nbye.\\n\", \"\", 0)\n"
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

/* Prints s with control characters escaped, so a result stays one line. */
static void
cli_print_escaped(const char *s)
{
	unsigned char	c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\r')
			fputs("\\r", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

/* Prints "OP: STATUS (status text) MESSAGE" for a finished operation. */
static void
cli_print_result(const char *op, const smtpool_t *s, int status)
{
	const char	*message = smtpool_last_message(s);

	printf("%s: %d", op, status);
	if (status != 0)
		printf(" (%s)", smtpool_status_text(status));
	if (*message != '\0') {
		putchar(' ');
		cli_print_escaped(message);
	}
	putchar('\n');
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

/* Sends the message and prints the SendMail and SMTP reply lines.
 * Returns the exit status. */
static int
cli_send_run(struct cli_send_opts *o, const char *headers, int64_t max,
    int textfd)
{
	smtpool_t	*s;
	char		 text[SMTPOOL_MAX_SMTP_TEXT + 1];
	int		 status, rstatus, code, rc;

	if ((s = cli_connect()) == NULL)
		return EX_UNAVAILABLE;

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
			cli_error("GetSMTPResponse failed: %d (%s) %s",
			    rstatus, smtpool_status_text(rstatus),
			    smtpool_last_message(s));
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
	struct cli_str		h;
	int64_t			max;
	int			c, rc, textfd;

	memset(&o, 0, sizeof(o));
	memset(&h, 0, sizeof(h));
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
	if (rc == 0 && optind < argc) {
		cli_error("send takes no arguments, got \"%s\"; give the "
		    "message text with --body FILE or on standard input",
		    argv[optind]);
		rc = EX_USAGE;
	}
	if (rc == 0)
		rc = cli_send_headers(&o, &h, &max);
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

	rc = cli_send_run(&o, h.data, max, textfd);
	if (textfd != STDIN_FILENO)
		close(textfd);

out:
	free(h.data);
	free(o.to.data);
	free(o.cc.data);
	free(o.bcc.data);
	free(o.attach);
	return rc;
}

/* One decoded argument of a shell line. */
struct cli_arg {
	char	*value;		/* NUL-terminated, escapes resolved */
	int	 quoted;
};

struct cli_call;

/* A shell operation: its name, argument names and the function that runs
 * it, returning an exit status. */
struct cli_op {
	const char	*name;
	size_t		 nargs;
	const char	*signature;
	int		(*run)(smtpool_t *, struct cli_call *);
};

/* A parsed shell line. */
struct cli_call {
	const struct cli_op	*op;
	unsigned long		 lineno;
	size_t			 nargs;
	struct cli_arg		 args[CLI_MAX_ARGS];
};

/* Frees the arguments of a parsed line. */
static void
cli_call_clear(struct cli_call *call)
{
	size_t	i;

	for (i = 0; i < call->nargs; i++)
		free(call->args[i].value);
	call->nargs = 0;
}

/*
 * Resolves argument i: a quoted "@path" loads the file (at most
 * CLI_MAX_LOADED bytes, one trailing LF or CRLF removed), "@@..." drops one
 * '@'.  *out points into the argument or to a malloc'd copy in *owned.
 * Returns 0 or an exit status after printing the error.
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
		status = smtpool_logon(s, v[0], v[1], v[2]);
		cli_print_result(call->op->name, s, status);
		rc = cli_status_exit(s, status);
	}
	for (i = 0; i < 3; i++) {
		/* owned[2] may hold a password read from a file. */
		if (owned[i] != NULL)
			explicit_bzero(owned[i], strlen(owned[i]));
		free(owned[i]);
	}
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
	{ "LogonSMTP", 3, "(conn, user, password)", cli_op_logon },
	{ "LogoffSMTP", 0, "()", cli_op_logoff },
	{ "SendMail", 5, "(server, headers, text, attachments, maxsize)",
	    cli_op_sendmail },
	{ "GetSMTPResponse", 0, "()", cli_op_response },
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

/*
 * Parses one argument at *pp into call->args[call->nargs]: a quoted string
 * with \" \\ \n \t escapes, or an unquoted integer ending at a blank, ','
 * or ')'.  Advances *pp past it.  Returns 0 or -1 with err filled.
 */
static int
cli_parse_arg(char **pp, struct cli_call *call, char *err, size_t errlen)
{
	struct cli_arg	*a;
	char		*p = *pp, *dst, *start;
	size_t		 n = call->nargs + 1, len;

	if (call->nargs == CLI_MAX_ARGS) {
		snprintf(err, errlen, "more than %d arguments", CLI_MAX_ARGS);
		return -1;
	}
	a = &call->args[call->nargs];

	if (*p == '"') {
		p++;
		if ((dst = a->value = malloc(strlen(p) + 1)) == NULL) {
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
				snprintf(err, errlen, "unknown escape \"\\%c\" "
				    "in argument %zu; use \\\" \\\\ \\n or "
				    "\\t", *p != '\0' ? *p : ' ', n);
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
	dst = start;
	if (*dst == '-' || *dst == '+')
		dst++;
	if (dst == p || strspn(dst, "0123456789") != (size_t)(p - dst)) {
		snprintf(err, errlen, "unquoted argument %zu (%.*s) is not an "
		    "integer; put text in double quotes", n,
		    len > 40 ? 40 : (int)len, start);
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
			snprintf(err, errlen, "expected a blank after argument "
			    "%zu, got '%c'", call->nargs, *p);
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
			continue;
		}

		p = cli_skip_blanks(line);
		if (*p == '\0' || *p == '#')
			continue;

		call.lineno = lineno;
		if (cli_parse_line(p, &call, err, sizeof(err)) == -1) {
			cli_line_error(lineno, "%s", err);
			cli_note_exit(EX_DATAERR);
		} else
			cli_note_exit(call.op->run(s, &call));
		cli_call_clear(&call);
		fflush(stdout);
	}
	free(line);
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

	if ((s = cli_connect()) == NULL) {
		if (fp != stdin)
			fclose(fp);
		return EX_UNAVAILABLE;
	}
	rc = cli_shell_run(s, fp, name, fp == stdin && isatty(STDIN_FILENO));
	smtpool_close(s);
	if (fp != stdin)
		fclose(fp);
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
		cli_error("missing command: give send or shell; see smtpool "
		    "--help");
		return EX_USAGE;
	}

	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "send") == 0)
		return cli_send(argc, argv);
	if (strcmp(cmd, "shell") == 0)
		return cli_shell(argc, argv);
	cli_error("unknown command \"%s\": give send or shell; see smtpool "
	    "--help", cmd);
	return EX_USAGE;
}
