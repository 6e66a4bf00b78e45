/*
 * cli_send.c - "smtpool send": one message built from options.
 *
 * Builds the SendMail header list and the SetSecurity calls of --starttls
 * and --auth, reads the password or token from its file or environment
 * variable, and sends the message in one session.  Errors go to standard
 * error and end the command with a <sysexits.h> status.  Passwords and
 * tokens are wiped before their memory is freed.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "smtpool.h"
#include "cli.h"

/* Maximum size of a file that --password-file or --token-file reads. */
#define CLI_MAX_SECRET_FILE	4096

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
	int	fd, errnum;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		cli_error("cannot open --%s file \"%s\": %s", option, path,
		    strerror(errno));
		return EX_NOINPUT;
	}
	errnum = cli_read_up_to(fd, buf, CLI_MAX_SECRET_FILE, &len);
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
int
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

