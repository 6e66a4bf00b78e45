/*
 * bench_client.c - load generator for smtpoold, used by bench/bench.py.
 *
 * Forks PROCS client processes.  Each one opens a libsmtpool session, logs
 * on once to CONN, waits for a common start signal, sends COUNT messages
 * with a body of BYTES bytes, and logs off.  The parent times the run from
 * the start signal until the last child exits and prints one line:
 *
 *   messages=N failed=N seconds=S rate=R
 *
 * where rate counts messages that returned status 0 per second.  Exits 0
 * when every message returned 0, 1 when any failed, 64 on a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "smtpool.h"

#define BENCH_MAX_PROCS	256

struct bench_options {
	const char	*socket_path;
	const char	*conn;
	long		 procs;
	long		 count;
	long		 bytes;
};

static void
bench_usage(void)
{
	fprintf(stderr, "usage: smtpool-bench -s SOCKET -c CONN [-p PROCS] "
	    "[-n COUNT] [-l BYTES]\n"
	    "  -s SOCKET  smtpoold's socket path\n"
	    "  -c CONN    connection string of the SMTP server\n"
	    "  -p PROCS   client processes, 1..%d (default 4)\n"
	    "  -n COUNT   messages per process (default 1000)\n"
	    "  -l BYTES   body size in bytes (default 1024)\n",
	    BENCH_MAX_PROCS);
	exit(64);
}

/* Parses a decimal option value within [min, max], or exits 64. */
static long
bench_number(const char *text, long min, long max, char option)
{
	char	*end;
	long	 value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min ||
	    value > max) {
		fprintf(stderr, "smtpool-bench: -%c %s is invalid: expected a "
		    "number from %ld to %ld\n", option, text, min, max);
		exit(64);
	}
	return value;
}

/* Fills body with bytes of printable text in lines of 72 characters. */
static char *
bench_make_body(long bytes)
{
	char	*body;
	long	 i;

	if ((body = malloc((size_t)bytes + 1)) == NULL) {
		perror("smtpool-bench: malloc");
		exit(71);
	}
	for (i = 0; i < bytes; i++)
		body[i] = (i % 73 == 72) ? '\n' : (char)('a' + i % 26);
	body[bytes] = '\0';
	return body;
}

/*
 * Runs one client process: log on, report ready, wait until the start
 * pipe closes, send count messages.  Returns the number of failed sends,
 * capped at 99 to fit an exit status, or 100 when the logon failed.
 */
static int
bench_child(const struct bench_options *opt, int ready_fd, int start_fd,
    const char *body)
{
	smtpool_t	*s;
	char		 err[256], c;
	long		 i, failed = 0;
	int		 status;
	const char	*headers = "FROM=bench@example.test;"
	    "TO=sink@example.test;SUBJECT=smtpool benchmark";

	if ((s = smtpool_connect(opt->socket_path, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "smtpool-bench: %s\n", err);
		return 100;
	}
	if ((status = smtpool_logon(s, opt->conn, "", "")) != 0) {
		fprintf(stderr, "smtpool-bench: LogonSMTP %s returned %d: %s\n",
		    opt->conn, status, smtpool_last_message(s));
		smtpool_close(s);
		return 100;
	}
	if (write(ready_fd, "r", 1) != 1) {
		perror("smtpool-bench: write");
		smtpool_close(s);
		return 100;
	}

	/* Every child is logged on before the clock starts: the parent
	 * closes the pipe, and read() returns 0 in all children at once. */
	while (read(start_fd, &c, 1) < 0 && errno == EINTR)
		;

	for (i = 0; i < opt->count; i++) {
		status = smtpool_sendmail(s, "", headers, body,
		    (size_t)opt->bytes, NULL, 0, 0);
		if (status != 0) {
			if (failed == 0)
				fprintf(stderr, "smtpool-bench: SendMail "
				    "returned %d: %s\n", status,
				    smtpool_last_message(s));
			failed++;
		}
	}
	smtpool_logoff(s);
	smtpool_close(s);
	return failed > 99 ? 99 : (int)failed;
}

static double
bench_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char *argv[])
{
	struct bench_options	 opt = { NULL, NULL, 4, 1000, 1024 };
	pid_t			 pids[BENCH_MAX_PROCS];
	int			 ch, ready_pipe[2], start_pipe[2], status;
	long			 i, failed = 0, sent;
	double			 started, seconds;
	char			*body, c;

	while ((ch = getopt(argc, argv, "s:c:p:n:l:")) != -1) {
		switch (ch) {
		case 's':
			opt.socket_path = optarg;
			break;
		case 'c':
			opt.conn = optarg;
			break;
		case 'p':
			opt.procs = bench_number(optarg, 1, BENCH_MAX_PROCS,
			    'p');
			break;
		case 'n':
			opt.count = bench_number(optarg, 1, 10000000, 'n');
			break;
		case 'l':
			opt.bytes = bench_number(optarg, 1, 16 * 1024 * 1024,
			    'l');
			break;
		default:
			bench_usage();
		}
	}
	if (opt.socket_path == NULL || opt.conn == NULL || optind != argc)
		bench_usage();

	body = bench_make_body(opt.bytes);
	if (pipe(ready_pipe) == -1 || pipe(start_pipe) == -1) {
		perror("smtpool-bench: pipe");
		return 71;
	}
	for (i = 0; i < opt.procs; i++) {
		if ((pids[i] = fork()) == -1) {
			perror("smtpool-bench: fork");
			return 71;
		}
		if (pids[i] == 0) {
			close(ready_pipe[0]);
			close(start_pipe[1]);
			_exit(bench_child(&opt, ready_pipe[1], start_pipe[0],
			    body));
		}
	}
	close(ready_pipe[1]);
	close(start_pipe[0]);

	/* Wait until every child has logged on.  A child that fails exits
	 * without writing, and read() returns 0 once all children have
	 * written or exited, so the loop ends either way. */
	for (i = 0; i < opt.procs; i++) {
		ssize_t	n;

		while ((n = read(ready_pipe[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n <= 0)
			break;
	}
	close(ready_pipe[0]);
	started = bench_now();
	close(start_pipe[1]);

	for (i = 0; i < opt.procs; i++) {
		while (waitpid(pids[i], &status, 0) == -1 && errno == EINTR)
			;
		if (!WIFEXITED(status))
			failed += opt.count;
		else if (WEXITSTATUS(status) == 100)
			failed += opt.count;
		else
			failed += WEXITSTATUS(status);
	}
	seconds = bench_now() - started;
	sent = opt.procs * opt.count - failed;
	printf("messages=%ld failed=%ld seconds=%.3f rate=%.1f\n",
	    opt.procs * opt.count, failed, seconds,
	    seconds > 0 ? (double)sent / seconds : 0.0);
	free(body);
	return failed == 0 ? 0 : 1;
}
