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
 *
 * This file parses the global options and runs the command, which lives
 * in cli_send.c, cli_shell.c or cli_status.c.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "smtpool.h"
#include "cli.h"

#ifndef SMTPOOL_VERSION
#define SMTPOOL_VERSION	"unknown"
#endif

const char	*cli_socket;	/* --socket, or NULL */

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
