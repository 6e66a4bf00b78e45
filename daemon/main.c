/*
 * main.c - smtpoold: command line, configuration and start-up.
 *
 * Runs in the foreground (as systemd expects), logging to stderr.  Exit
 * status: 0 after SIGTERM or SIGINT, 64 (EX_USAGE) for a bad command line,
 * 78 (EX_CONFIG) for an invalid configuration, 71 (EX_OSERR) when the
 * socket or the event loop cannot be set up.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "tlsctx.h"
#include "server.h"

/* Read when no -c is given and the file exists; meson sets it from the
 * install prefix and sysconfdir. */
#ifdef SMTPOOL_DEFAULT_CONFIG
#define MAIN_DEFAULT_CONFIG	SMTPOOL_DEFAULT_CONFIG
#else
#define MAIN_DEFAULT_CONFIG	"/etc/smtpool/smtpoold.yaml"
#endif

static void
main_usage(FILE *out)
{
	fprintf(out,
"usage: smtpoold [-c FILE] [-s PATH] [-v]... [-t] [-V] [-h]\n"
"\n"
"Keeps SMTP connections to upstream mail servers in a pool and serves\n"
"local applications over a Unix socket.\n"
"\n"
"  -c, --config FILE   read this YAML configuration; without -c, read\n"
"                      " MAIN_DEFAULT_CONFIG "\n"
"                      when it exists, else use built-in defaults\n"
"  -s, --socket PATH   listen on PATH instead of socket.path\n"
"  -v, --verbose       log more detail; -v once enables debug lines\n"
"  -t, --check-config  check the configuration and exit (0 or 78)\n"
"  -V, --version       print the version and exit\n"
"  -h, --help          print this help and exit\n");
}

int
main(int argc, char *argv[])
{
	static const struct option options[] = {
		{ "config",		required_argument,	NULL, 'c' },
		{ "socket",		required_argument,	NULL, 's' },
		{ "verbose",		no_argument,		NULL, 'v' },
		{ "check-config",	no_argument,		NULL, 't' },
		{ "version",		no_argument,		NULL, 'V' },
		{ "help",		no_argument,		NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char	*config_path = NULL, *socket_path = NULL;
	struct config	*cfg;
	struct server	 server;
	char		 err[512];
	int		 ch, verbose = 0, check_only = 0, rc;

	while ((ch = getopt_long(argc, argv, "c:s:vtVh", options,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 't':
			check_only = 1;
			break;
		case 'V':
			printf("smtpoold %s\n", SMTPOOL_VERSION);
			return 0;
		case 'h':
			main_usage(stdout);
			return 0;
		default:
			main_usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "smtpoold: unexpected argument \"%s\"\n",
		    argv[optind]);
		main_usage(stderr);
		return EX_USAGE;
	}
	if (config_path == NULL && access(MAIN_DEFAULT_CONFIG, F_OK) == 0)
		config_path = MAIN_DEFAULT_CONFIG;

	cfg = config_load(config_path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "smtpoold: %s\n", err);
		return EX_CONFIG;
	}
	if (check_only) {
		struct tlsctx_set	*tls;

		/* Building the TLS contexts loads every certificate and key
		 * file, as a real start does. */
		tls = tlsctx_set_new(cfg, err, sizeof(err));
		if (tls == NULL) {
			fprintf(stderr, "smtpoold: %s\n", err);
			config_free(cfg);
			return EX_CONFIG;
		}
		tlsctx_set_free(tls);
		config_free(cfg);
		printf("smtpoold: configuration %s is valid\n",
		    config_path != NULL ? config_path : "(built-in defaults)");
		return 0;
	}

	log_set_level(verbose > 0 ? LOG_LEVEL_DEBUG : cfg->log_level);
	log_hook_libevent();
	log_event(LOG_LEVEL_NOTICE, 0, "-", "daemon.start",
	    "version=%s config=%s pid=%ld", SMTPOOL_VERSION,
	    config_path != NULL ? config_path : "built-in", (long)getpid());

	if (server_init(&server, cfg, config_path, err, sizeof(err)) == -1) {
		log_event(LOG_LEVEL_ERR, 0, "-", "daemon.start-failed",
		    "error=\"%s\"", err);
		fprintf(stderr, "smtpoold: %s\n", err);
		server_free(&server);
		log_flush();
		return EX_CONFIG;
	}
	if (server_listen(&server, socket_path, err, sizeof(err)) == -1) {
		log_event(LOG_LEVEL_ERR, 0, "-", "daemon.start-failed",
		    "error=\"%s\"", err);
		fprintf(stderr, "smtpoold: %s\n", err);
		server_free(&server);
		log_flush();
		return EX_OSERR;
	}

	rc = server_run(&server);
	server_free(&server);
	log_flush();
	return rc == 0 ? 0 : EX_OSERR;
}
