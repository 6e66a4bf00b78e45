/*
 * cli_status.c - "smtpool status" and "smtpool metrics".
 *
 * Sends one STATUS request and prints the pool keys and daemon totals as
 * an aligned table, as JSON or in the Prometheus text format.  Nothing goes
 * to standard output before the whole reply is in.  A failed request,
 * allocation or write prints an error on standard error and ends the
 * command with a <sysexits.h> status.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "smtpool.h"
#include "cli.h"

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
int
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

