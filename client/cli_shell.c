/*
 * cli_shell.c - "smtpool shell": UPOPMAIL operations, one per line.
 *
 * Reads lines from a script or at a prompt, parses each into an operation
 * and its arguments (quoted strings, integers, env:NAME and quoted @file
 * loads) and runs it in one session.  A bad line prints "error: line N:
 * MESSAGE" and the shell goes on with the next one.  The exit status is
 * the most serious one of the run.  Lines and arguments are wiped after
 * use because they may hold passwords.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "smtpool.h"
#include "cli.h"

/* Maximum shell line length in bytes: room for a full header list with
 * every ';' escaped, plus the other arguments. */
#define CLI_MAX_LINE	(3 * SMTPOOL_MAX_HEADERS)
/* Maximum size of a file that an @path argument loads.  It is the header
 * list limit, the longest argument the daemon accepts. */
#define CLI_MAX_LOADED	SMTPOOL_MAX_HEADERS
/* Maximum number of arguments on a shell line.  No operation takes more
 * than 5. */
#define CLI_MAX_ARGS	8

static int		 cli_exit;	/* exit status so far */
/* stdio buffer of the shell's script or standard input. */
static char		 cli_script_buf[BUFSIZ];

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

static void	cli_line_error(unsigned long, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

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
	errnum = cli_read_up_to(fd, buf, CLI_MAX_LOADED, &len);
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
int
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
