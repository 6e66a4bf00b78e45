/*
 * test_config.c - unit tests for the configuration loader, the log writer
 * and the TLS contexts.
 *
 * YAML snippets are written to temporary files and loaded with
 * config_load(); error cases check the "LINE:COLUMN" and the key name of
 * the message.  The TLS tests make a self-signed certificate in memory and
 * run real handshakes over a BIO pair, so the server-name checks are
 * exercised by OpenSSL itself.  The log tests point stderr at a temporary
 * file and read back what log.c wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "tlsctx.h"

static char	test_err[2048];
static char	test_path[256];

/* Writes text to a new temporary file, whose name goes to test_path. */
static int
test_write_file(const char *text)
{
	const char	*tmp = getenv("TMPDIR");
	size_t		 len = strlen(text);
	int		 fd;

	snprintf(test_path, sizeof(test_path), "%s/smtpool-test-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if ((fd = mkstemp(test_path)) == -1)
		return -1;
	if (write(fd, text, len) != (ssize_t)len) {
		close(fd);
		unlink(test_path);
		return -1;
	}
	close(fd);
	return 0;
}

/* Loads YAML text through a temporary file; err goes to test_err. */
static struct config *
test_load(const char *yaml)
{
	struct config	*cfg;

	test_err[0] = '\0';
	if (test_write_file(yaml) == -1) {
		snprintf(test_err, sizeof(test_err), "cannot write temp file");
		return NULL;
	}
	cfg = config_load(test_path, test_err, sizeof(test_err));
	unlink(test_path);
	return cfg;
}

/* Builds the path of a file under SMTPOOL_TEST_DATA. */
static const char *
test_data_path(const char *rel)
{
	static char	 buf[1024];
	const char	*dir = getenv("SMTPOOL_TEST_DATA");

	snprintf(buf, sizeof(buf), "%s/%s", dir != NULL ? dir : ".", rel);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Defaults                                                            */

static void
test_defaults_of(const struct config *cfg, const char *what)
{
	char	name[128];

#define TEST_DEFAULT(cond, field) do {					\
	snprintf(name, sizeof(name), "%s: %s", what, field);		\
	CHECK(cond, name);						\
} while (0)
	TEST_DEFAULT(cfg->socket_path == NULL, "socket path unset");
	TEST_DEFAULT(cfg->socket_mode == 0660, "socket mode 0660");
	TEST_DEFAULT(cfg->log_level == LOG_LEVEL_INFO, "log level info");
	TEST_DEFAULT(cfg->helo_name == NULL, "helo_name unset");
	TEST_DEFAULT(cfg->max_clients == 256, "max_clients 256");
	TEST_DEFAULT(cfg->allow_plaintext_auth == CONFIG_PLAINTEXT_AUTH_NO,
	    "allow_plaintext_auth no");
	TEST_DEFAULT(cfg->drain_timeout == 30, "drain_timeout 30");
	TEST_DEFAULT(cfg->naccess_uids == 0 && cfg->naccess_gids == 0,
	    "no access lists");
	TEST_DEFAULT(cfg->spool_memory == 1024 * 1024, "spool 1 MiB");
	TEST_DEFAULT(cfg->spool_dir == NULL, "spool dir unset");
	TEST_DEFAULT(cfg->pool.max_per_key == 4, "pool per key 4");
	TEST_DEFAULT(cfg->pool.idle_timeout == 60, "pool idle 60");
	TEST_DEFAULT(cfg->pool.max_messages == 100, "pool messages 100");
	TEST_DEFAULT(cfg->pool.max_age == 600, "pool age 600");
	TEST_DEFAULT(cfg->pool.wait_timeout == 60, "pool wait 60");
	TEST_DEFAULT(cfg->timeouts.connect == 30, "connect 30");
	TEST_DEFAULT(cfg->timeouts.greeting == 300, "greeting 300");
	TEST_DEFAULT(cfg->timeouts.helo == 300, "helo 300");
	TEST_DEFAULT(cfg->timeouts.mail == 300, "mail 300");
	TEST_DEFAULT(cfg->timeouts.rcpt == 300, "rcpt 300");
	TEST_DEFAULT(cfg->timeouts.data_init == 120, "data_init 120");
	TEST_DEFAULT(cfg->timeouts.data_block == 180, "data_block 180");
	TEST_DEFAULT(cfg->timeouts.data_done == 600, "data_done 600");
	TEST_DEFAULT(cfg->timeouts.rset == 20, "rset 20");
	TEST_DEFAULT(cfg->timeouts.quit == 20, "quit 20");
	TEST_DEFAULT(cfg->tls_default.name != NULL &&
	    strcmp(cfg->tls_default.name, "default") == 0,
	    "default profile named default");
	TEST_DEFAULT(cfg->tls_default.verify_server == 1, "verify on");
	TEST_DEFAULT(cfg->tls_default.ca_certificate == NULL, "system CAs");
	TEST_DEFAULT(cfg->tls_default.name_check == TLS_NAME_HOST,
	    "host name check");
	TEST_DEFAULT(cfg->tls_default.nverify_names == 0, "no name list");
	TEST_DEFAULT(cfg->tls_default.client_certificate == NULL,
	    "no client cert");
	TEST_DEFAULT(cfg->tls_default.client_key == NULL, "no client key");
	TEST_DEFAULT(cfg->tls_default.ciphers == NULL, "default ciphers");
	TEST_DEFAULT(cfg->tls_default.min_tls_version == TLS1_2_VERSION,
	    "min TLS 1.2");
	TEST_DEFAULT(cfg->nprofiles == 0, "no profiles");
#undef TEST_DEFAULT
}

static void
test_defaults(void)
{
	static const char *const empty[] = {
		"",
		"# nothing but a comment\n",
		"---\n",
		"---\n...\n",
		"pool:\ntimeouts:\ntls:\n  default:\n  profiles:\n",
	};
	struct config	*cfg;
	size_t		 i;
	char		 name[64];

	cfg = config_load(NULL, test_err, sizeof(test_err));
	CHECK(cfg != NULL, "load NULL gives defaults");
	if (cfg != NULL) {
		CHECK(cfg->path == NULL, "defaults have no path");
		test_defaults_of(cfg, "built-in");
	}
	config_free(cfg);

	for (i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		snprintf(name, sizeof(name), "empty document %zu loads", i);
		cfg = test_load(empty[i]);
		CHECK(cfg != NULL, name);
		if (cfg == NULL) {
			printf("# %s\n", test_err);
			continue;
		}
		snprintf(name, sizeof(name), "empty document %zu", i);
		test_defaults_of(cfg, name);
		config_free(cfg);
	}
}

/* ------------------------------------------------------------------ */
/* Valid values                                                        */

enum test_field {
	F_MODE, F_LEVEL, F_MAX_CLIENTS, F_SPOOL_MEMORY, F_PER_KEY, F_IDLE,
	F_MESSAGES, F_AGE, F_WAIT, F_CONNECT, F_DATA_DONE, F_RSET,
	F_VERIFY, F_MIN_TLS, F_NAME_CHECK, F_NNAMES, F_PLAINTEXT_AUTH,
	F_DRAIN, F_NUIDS, F_UID0, F_NGIDS, F_GID0,
};

static long long
test_field_value(const struct config *cfg, enum test_field f)
{
	switch (f) {
	case F_MODE:		return cfg->socket_mode;
	case F_LEVEL:		return cfg->log_level;
	case F_MAX_CLIENTS:	return cfg->max_clients;
	case F_SPOOL_MEMORY:	return (long long)cfg->spool_memory;
	case F_PER_KEY:		return cfg->pool.max_per_key;
	case F_IDLE:		return cfg->pool.idle_timeout;
	case F_MESSAGES:	return cfg->pool.max_messages;
	case F_AGE:		return cfg->pool.max_age;
	case F_WAIT:		return cfg->pool.wait_timeout;
	case F_CONNECT:		return cfg->timeouts.connect;
	case F_DATA_DONE:	return cfg->timeouts.data_done;
	case F_RSET:		return cfg->timeouts.rset;
	case F_VERIFY:		return cfg->tls_default.verify_server;
	case F_MIN_TLS:		return cfg->tls_default.min_tls_version;
	case F_NAME_CHECK:	return cfg->tls_default.name_check;
	case F_NNAMES:		return (long long)cfg->tls_default.nverify_names;
	case F_PLAINTEXT_AUTH:	return cfg->allow_plaintext_auth;
	case F_DRAIN:		return cfg->drain_timeout;
	case F_NUIDS:		return (long long)cfg->naccess_uids;
	case F_UID0:		return cfg->access_uids[0];
	case F_NGIDS:		return (long long)cfg->naccess_gids;
	case F_GID0:		return cfg->access_gids[0];
	}
	return -1;
}

static const struct {
	const char	*name;
	const char	*yaml;
	enum test_field	 field;
	long long	 want;
} test_valid[] = {
	{ "duration plain", "pool:\n  idle_timeout: 30\n", F_IDLE, 30 },
	{ "duration seconds", "pool:\n  idle_timeout: 30s\n", F_IDLE, 30 },
	{ "duration minutes", "pool:\n  idle_timeout: 5m\n", F_IDLE, 300 },
	{ "duration hours", "pool:\n  idle_timeout: 1h\n", F_IDLE, 3600 },
	{ "duration at max", "pool:\n  idle_timeout: 24h\n", F_IDLE, 86400 },
	{ "duration quoted", "pool:\n  idle_timeout: \"45\"\n", F_IDLE, 45 },
	{ "age 7 days", "pool:\n  max_connection_age: 168h\n", F_AGE,
	    604800 },
	{ "wait 1h", "pool:\n  wait_timeout: 60m\n", F_WAIT, 3600 },
	{ "per key max", "pool:\n  max_connections_per_key: 1024\n",
	    F_PER_KEY, 1024 },
	{ "messages zero", "pool:\n  max_messages_per_connection: 0\n",
	    F_MESSAGES, 0 },
	{ "messages max",
	    "pool:\n  max_messages_per_connection: 1000000\n", F_MESSAGES,
	    1000000 },
	{ "max_clients min", "max_clients: 1\n", F_MAX_CLIENTS, 1 },
	{ "drain timeout", "shutdown:\n  drain_timeout: 2m\n", F_DRAIN, 120 },
	{ "access user by name", "access:\n  users: [root]\n", F_UID0, 0 },
	{ "access user by id", "access:\n  users: [1001, root]\n", F_UID0,
	    1001 },
	{ "access users counted", "access:\n  users: [1001, root]\n",
	    F_NUIDS, 2 },
	{ "access group by name", "access:\n  groups: [root]\n", F_GID0,
	    0 },
	{ "access group by id", "access:\n  groups: [2000]\n", F_GID0,
	    2000 },
	{ "access groups counted", "access:\n  groups: [2000, 0]\n",
	    F_NGIDS, 2 },
	{ "plaintext auth loopback", "allow_plaintext_auth: loopback\n",
	    F_PLAINTEXT_AUTH, CONFIG_PLAINTEXT_AUTH_LOOPBACK },
	{ "plaintext auth yes", "allow_plaintext_auth: yes\n",
	    F_PLAINTEXT_AUTH, CONFIG_PLAINTEXT_AUTH_YES },
	{ "plaintext auth no", "allow_plaintext_auth: no\n",
	    F_PLAINTEXT_AUTH, CONFIG_PLAINTEXT_AUTH_NO },
	{ "max_clients max", "max_clients: 65536\n", F_MAX_CLIENTS, 65536 },
	{ "connect max", "timeouts:\n  connect: 5m\n", F_CONNECT, 300 },
	{ "data_done max", "timeouts:\n  data_done: 10m\n", F_DATA_DONE,
	    600 },
	{ "rset min", "timeouts:\n  rset: 1s\n", F_RSET, 1 },
	{ "size bytes", "spool:\n  memory_limit: 4096\n", F_SPOOL_MEMORY,
	    4096 },
	{ "size k", "spool:\n  memory_limit: 64k\n", F_SPOOL_MEMORY,
	    65536 },
	{ "size K", "spool:\n  memory_limit: 4K\n", F_SPOOL_MEMORY, 4096 },
	{ "size M", "spool:\n  memory_limit: 2M\n", F_SPOOL_MEMORY,
	    2097152 },
	{ "size max", "spool:\n  memory_limit: 1024m\n", F_SPOOL_MEMORY,
	    1073741824 },
	{ "mode quoted octal", "socket:\n  mode: \"0600\"\n", F_MODE, 0600 },
	{ "mode quoted no zero", "socket:\n  mode: \"640\"\n", F_MODE,
	    0640 },
	{ "mode plain octal", "socket:\n  mode: 0640\n", F_MODE, 0640 },
	{ "mode 0o form", "socket:\n  mode: 0o750\n", F_MODE, 0750 },
	{ "mode decimal", "socket:\n  mode: 432\n", F_MODE, 0660 },
	{ "mode zero", "socket:\n  mode: 0\n", F_MODE, 0 },
	{ "mode 0777", "socket:\n  mode: \"0777\"\n", F_MODE, 0777 },
	{ "level error", "log:\n  level: error\n", F_LEVEL, LOG_LEVEL_ERR },
	{ "level warning", "log:\n  level: warning\n", F_LEVEL,
	    LOG_LEVEL_WARNING },
	{ "level notice", "log:\n  level: notice\n", F_LEVEL,
	    LOG_LEVEL_NOTICE },
	{ "level debug", "log:\n  level: debug\n", F_LEVEL,
	    LOG_LEVEL_DEBUG },
	{ "bool yes", "tls:\n  default:\n    verify_server: yes\n",
	    F_VERIFY, 1 },
	{ "bool no", "tls:\n  default:\n    verify_server: no\n",
	    F_VERIFY, 0 },
	{ "bool true", "tls:\n  default:\n    verify_server: true\n",
	    F_VERIFY, 1 },
	{ "bool False", "tls:\n  default:\n    verify_server: False\n",
	    F_VERIFY, 0 },
	{ "bool on", "tls:\n  default:\n    verify_server: on\n",
	    F_VERIFY, 1 },
	{ "bool off", "tls:\n  default:\n    verify_server: off\n",
	    F_VERIFY, 0 },
	{ "bool 1", "tls:\n  default:\n    verify_server: 1\n",
	    F_VERIFY, 1 },
	{ "bool 0", "tls:\n  default:\n    verify_server: 0\n",
	    F_VERIFY, 0 },
	{ "tls 1.3 float", "tls:\n  default:\n    min_tls_version: 1.3\n",
	    F_MIN_TLS, TLS1_3_VERSION },
	{ "tls 1.3 string",
	    "tls:\n  default:\n    min_tls_version: \"1.3\"\n", F_MIN_TLS,
	    TLS1_3_VERSION },
	{ "tls 1.2 float", "tls:\n  default:\n    min_tls_version: 1.2\n",
	    F_MIN_TLS, TLS1_2_VERSION },
	{ "name check no",
	    "tls:\n  default:\n    verify_server_name: no\n", F_NAME_CHECK,
	    TLS_NAME_OFF },
	{ "name check false alias",
	    "tls:\n  default:\n    vfy_srv_nm: false\n", F_NAME_CHECK,
	    TLS_NAME_OFF },
	{ "name check yes",
	    "tls:\n  default:\n    verify_server_name: yes\n", F_NAME_CHECK,
	    TLS_NAME_HOST },
	{ "name list",
	    "tls:\n  default:\n    verify_server_name: [\"DNS:a.example\", "
	    "\"IP:192.0.2.1\"]\n", F_NAME_CHECK, TLS_NAME_LIST },
	{ "name list count",
	    "tls:\n  default:\n    vfy_srv_nm:\n      - DNS:a.example\n"
	    "      - DNS:*.b.example\n      - IP:::1\n", F_NNAMES, 3 },
};

static void
test_valid_values(void)
{
	struct config	*cfg;
	size_t		 i;

	for (i = 0; i < sizeof(test_valid) / sizeof(test_valid[0]); i++) {
		cfg = test_load(test_valid[i].yaml);
		CHECK(cfg != NULL, test_valid[i].name);
		if (cfg == NULL) {
			printf("# %s\n", test_err);
			continue;
		}
		CHECK_INT(test_field_value(cfg, test_valid[i].field),
		    test_valid[i].want, test_valid[i].name);
		config_free(cfg);
	}
}

/* Loads tests/unit/data/full.yaml, which sets every key. */
static void
test_full_file(void)
{
	const struct tls_profile	*corp, *lab, *def;
	struct config			*cfg;

	cfg = config_load(test_data_path("data/full.yaml"), test_err,
	    sizeof(test_err));
	CHECK(cfg != NULL, "full example loads");
	if (cfg == NULL) {
		printf("# %s\n", test_err);
		return;
	}
	CHECK(strstr(cfg->path, "data/full.yaml") != NULL, "full: path kept");
	CHECK_STR(cfg->socket_path, "/run/test/smtpool.sock", "full: socket");
	CHECK_INT(cfg->socket_mode, 0600, "full: mode");
	CHECK_INT(cfg->log_level, LOG_LEVEL_DEBUG, "full: level");
	CHECK_STR(cfg->helo_name, "relay.example.org", "full: helo_name");
	CHECK_INT(cfg->max_clients, 1000, "full: max_clients");
	CHECK_INT(cfg->spool_memory, 262144, "full: memory_limit");
	CHECK_STR(cfg->spool_dir, "/var/spool/smtpool", "full: spool dir");
	CHECK_INT(cfg->pool.max_per_key, 8, "full: per key");
	CHECK_INT(cfg->pool.idle_timeout, 120, "full: idle");
	CHECK_INT(cfg->pool.max_messages, 0, "full: messages");
	CHECK_INT(cfg->pool.max_age, 3600, "full: age");
	CHECK_INT(cfg->pool.wait_timeout, 15, "full: wait");
	CHECK_INT(cfg->timeouts.connect, 10, "full: connect");
	CHECK_INT(cfg->timeouts.greeting, 60, "full: greeting");
	CHECK_INT(cfg->timeouts.helo, 61, "full: helo");
	CHECK_INT(cfg->timeouts.mail, 62, "full: mail");
	CHECK_INT(cfg->timeouts.rcpt, 63, "full: rcpt");
	CHECK_INT(cfg->timeouts.data_init, 64, "full: data_init");
	CHECK_INT(cfg->timeouts.data_block, 65, "full: data_block");
	CHECK_INT(cfg->timeouts.data_done, 66, "full: data_done");
	CHECK_INT(cfg->timeouts.rset, 5, "full: rset");
	CHECK_INT(cfg->timeouts.quit, 6, "full: quit");

	def = &cfg->tls_default;
	CHECK_STR(def->ca_certificate, "/etc/ssl/certs/ca-certificates.crt",
	    "full: ca_cert alias");
	CHECK_INT(def->min_tls_version, TLS1_3_VERSION, "full: default 1.3");
	CHECK_INT(cfg->nprofiles, 2, "full: two profiles");

	corp = config_profile(cfg, "corp");
	CHECK(corp != NULL, "full: corp found");
	if (corp != NULL) {
		CHECK_INT(corp->verify_server, 1, "corp: verify");
		CHECK_STR(corp->ca_certificate, "/etc/smtpool/corp-ca.pem",
		    "corp: CA");
		CHECK_INT(corp->name_check, TLS_NAME_LIST, "corp: name list");
		CHECK_INT(corp->nverify_names, 4, "corp: four names");
		if (corp->nverify_names == 4) {
			CHECK_STR(corp->verify_names[0],
			    "DNS:smtp.corp.example", "corp: DNS lower-cased");
			CHECK_STR(corp->verify_names[1],
			    "DNS:*.mx.corp.example", "corp: wildcard");
			CHECK_STR(corp->verify_names[2], "IP:192.0.2.10",
			    "corp: IPv4");
			CHECK_STR(corp->verify_names[3], "IP:2001:db8::25",
			    "corp: IPv6");
		}
		CHECK_STR(corp->client_certificate, "/etc/smtpool/client.crt",
		    "corp: client cert");
		CHECK_STR(corp->client_key, "/etc/smtpool/client.key",
		    "corp: client key");
		CHECK_STR(corp->ciphers, "ECDHE+AESGCM", "corp: ciphers");
		CHECK_INT(corp->min_tls_version, TLS1_2_VERSION,
		    "corp: min 1.2");
	}
	lab = config_profile(cfg, "lab.local");
	CHECK(lab != NULL, "full: lab.local found");
	if (lab != NULL) {
		CHECK_INT(lab->verify_server, 0, "lab: verify off");
		CHECK_INT(lab->name_check, TLS_NAME_OFF, "lab: names off");
		CHECK(lab->ca_certificate == NULL, "lab: system CAs");
	}
	config_free(cfg);
}

/* The shipped example must load and leave every default in place. */
static void
test_example_file(void)
{
	struct config	*cfg;

	cfg = config_load(test_data_path("../../conf/smtpoold.yaml"),
	    test_err, sizeof(test_err));
	CHECK(cfg != NULL, "conf/smtpoold.yaml loads");
	if (cfg == NULL) {
		printf("# %s\n", test_err);
		return;
	}
	test_defaults_of(cfg, "example");
	config_free(cfg);
}

static void
test_strings(void)
{
	static const struct {
		const char	*name;
		const char	*yaml;
		const char	*want;
	} cases[] = {
		{ "helo DNS name", "helo_name: mail.example.com\n",
		    "mail.example.com" },
		{ "helo IPv4 literal", "helo_name: \"[192.0.2.1]\"\n",
		    "[192.0.2.1]" },
		{ "helo IPv6 literal", "helo_name: \"[IPv6:2001:db8::1]\"\n",
		    "[IPv6:2001:db8::1]" },
		{ "helo single label", "helo_name: localhost\n",
		    "localhost" },
	};
	struct config	*cfg;
	size_t		 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cfg = test_load(cases[i].yaml);
		CHECK(cfg != NULL, cases[i].name);
		if (cfg == NULL) {
			printf("# %s\n", test_err);
			continue;
		}
		CHECK_STR(cfg->helo_name, cases[i].want, cases[i].name);
		config_free(cfg);
	}

	cfg = test_load("socket:\n  path: /tmp/x.sock\nspool:\n"
	    "  directory: /var/tmp\n");
	CHECK(cfg != NULL, "socket path and spool dir load");
	if (cfg != NULL) {
		CHECK_STR(cfg->socket_path, "/tmp/x.sock", "socket path kept");
		CHECK_STR(cfg->spool_dir, "/var/tmp", "spool dir kept");
		config_free(cfg);
	}
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */

static const struct {
	const char	*name;
	const char	*yaml;
	const char	*where;		/* ":LINE:COLUMN: " */
	const char	*key;		/* substring naming the key */
	const char	*what;		/* substring saying what is wrong */
} test_errors[] = {
	{ "out of range", "pool:\n  max_connections_per_key: 0\n", ":2:28: ",
	    "key 'pool.max_connections_per_key'",
	    "0 is out of range 1..1024" },
	{ "above range", "pool:\n  max_connections_per_key: 1025\n",
	    ":2:28: ", "key 'pool.max_connections_per_key'",
	    "out of range" },
	{ "access unknown user",
	    "access:\n  users: [no-such-user-smtpool]\n", ":2:11: ",
	    "key 'access.users'", "unknown user 'no-such-user-smtpool'" },
	{ "access unknown group",
	    "access:\n  groups: [no-such-group-smtpool]\n", ":2:12: ",
	    "key 'access.groups'", "unknown group" },
	{ "access users not a list", "access:\n  users: root\n", ":2:10: ",
	    "key 'access.users'", "list expected" },
	{ "drain timeout too long", "shutdown:\n  drain_timeout: 11m\n",
	    ":2:18: ", "key 'shutdown.drain_timeout'", "out of range" },
	{ "plaintext auth invalid", "allow_plaintext_auth: sometimes\n",
	    ":1:23: ", "key 'allow_plaintext_auth'",
	    "use no, loopback or yes" },
	{ "unknown key", "pool:\n  max_conn: 3\n", ":2:3: ",
	    "unknown key 'pool.max_conn'", "max_connections_per_key" },
	{ "unknown root key", "max_client: 3\n", ":1:1: ",
	    "unknown key 'max_client'", "max_clients" },
	{ "unknown profile key",
	    "tls:\n  profiles:\n    corp:\n      verify: yes\n", ":4:7: ",
	    "unknown key 'tls.profiles.corp.verify'", "verify_server" },
	{ "repeated key", "max_clients: 10\nmax_clients: 20\n", ":2:1: ",
	    "key 'max_clients'", "line 1" },
	{ "repeated section", "pool:\n  wait_timeout: 5\npool:\n", ":3:1: ",
	    "key 'pool'", "line 1" },
	{ "alias repeats name",
	    "tls:\n  default:\n    ca_certificate: /a\n    ca_cert: /b\n",
	    ":4:5: ", "key 'tls.default.ca_cert'",
	    "repeats 'ca_certificate'" },
	{ "name repeats alias",
	    "tls:\n  default:\n    vfy_srv_nm: no\n"
	    "    verify_server_name: no\n", ":4:5: ",
	    "key 'tls.default.verify_server_name'", "repeats 'vfy_srv_nm'" },
	{ "mapping expected", "pool: 5\n", ":1:7: ", "key 'pool'",
	    "mapping expected" },
	{ "mapping expected list", "timeouts: [1, 2]\n", ":1:11: ",
	    "key 'timeouts'", "mapping expected" },
	{ "root not mapping", "- a\n- b\n", ":1:1: ", "",
	    "mapping expected" },
	{ "scalar expected list", "max_clients: [1, 2]\n", ":1:14: ",
	    "key 'max_clients'", "scalar expected" },
	{ "scalar expected map", "helo_name: {a: b}\n", ":1:12: ",
	    "key 'helo_name'", "scalar expected" },
	{ "list expected",
	    "tls:\n  default:\n    verify_server_name: DNS:a.example\n",
	    ":3:25: ", "key 'tls.default.verify_server_name'",
	    "list expected" },
	{ "value missing", "helo_name:\n", ":1:11: ", "key 'helo_name'",
	    "missing" },
	{ "not a number", "max_clients: many\n", ":1:14: ",
	    "key 'max_clients'", "not a whole number" },
	{ "number overflow", "max_clients: 99999999999999999999999\n",
	    ":1:14: ", "key 'max_clients'", "out of range" },
	{ "number trailing text", "max_clients: 12abc\n", ":1:14: ",
	    "key 'max_clients'", "not a whole number" },
	{ "duration bad unit", "pool:\n  idle_timeout: 5x\n", ":2:17: ",
	    "key 'pool.idle_timeout'", "unknown unit 'x'" },
	{ "duration negative", "pool:\n  idle_timeout: -5\n", ":2:17: ",
	    "key 'pool.idle_timeout'", "out of range 1..86400" },
	{ "duration negative unit", "pool:\n  idle_timeout: -5m\n",
	    ":2:17: ", "key 'pool.idle_timeout'", "out of range" },
	{ "duration zero", "timeouts:\n  rset: 0s\n", ":2:9: ",
	    "key 'timeouts.rset'", "out of range 1..300" },
	{ "duration above max", "pool:\n  idle_timeout: 25h\n", ":2:17: ",
	    "key 'pool.idle_timeout'", "out of range" },
	{ "duration no digits", "pool:\n  idle_timeout: m\n", ":2:17: ",
	    "key 'pool.idle_timeout'", "not a duration" },
	{ "duration two units", "pool:\n  idle_timeout: 1h30m\n",
	    ":2:17: ", "key 'pool.idle_timeout'", "not a whole number" },
	{ "connect above 300", "timeouts:\n  connect: 301\n", ":2:12: ",
	    "key 'timeouts.connect'", "out of range 1..300" },
	{ "data_init above 120", "timeouts:\n  data_init: 121\n",
	    ":2:14: ", "key 'timeouts.data_init'", "out of range 1..120" },
	{ "size below min", "spool:\n  memory_limit: 4095\n", ":2:17: ",
	    "key 'spool.memory_limit'", "out of range 4096..1073741824" },
	{ "size k below min", "spool:\n  memory_limit: 3k\n", ":2:17: ",
	    "key 'spool.memory_limit'", "out of range" },
	{ "size above max", "spool:\n  memory_limit: 1025m\n", ":2:17: ",
	    "key 'spool.memory_limit'", "out of range" },
	{ "size bad unit", "spool:\n  memory_limit: 1g\n", ":2:17: ",
	    "key 'spool.memory_limit'", "unknown unit 'g'" },
	{ "spool dir relative", "spool:\n  directory: var/tmp\n", ":2:14: ",
	    "key 'spool.directory'", "not an absolute path" },
	{ "mode decimal 660", "socket:\n  mode: 660\n", ":2:9: ",
	    "key 'socket.mode'", "out of range 0..0777" },
	{ "mode not octal", "socket:\n  mode: \"0800\"\n", ":2:9: ",
	    "key 'socket.mode'", "not a file mode" },
	{ "mode text", "socket:\n  mode: rw\n", ":2:9: ",
	    "key 'socket.mode'", "not a file mode" },
	{ "mode above 0777", "socket:\n  mode: \"01777\"\n", ":2:9: ",
	    "key 'socket.mode'", "out of range" },
	{ "socket path too long",
	    "socket:\n  path: /tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n", ":2:9: ",
	    "key 'socket.path'", "Unix socket path" },
	{ "level unknown", "log:\n  level: loud\n", ":2:10: ",
	    "key 'log.level'", "unknown level 'loud'" },
	{ "helo underscore", "helo_name: bad_name.example\n", ":1:12: ",
	    "key 'helo_name'", "not a valid host name" },
	{ "helo leading hyphen", "helo_name: -a.example\n", ":1:12: ",
	    "key 'helo_name'", "'-'" },
	{ "helo empty label", "helo_name: a..example\n", ":1:12: ",
	    "key 'helo_name'", "empty label" },
	{ "helo bad literal", "helo_name: \"[999.1.1.1]\"\n", ":1:12: ",
	    "key 'helo_name'", "address literal" },
	{ "helo wildcard", "helo_name: \"*.example.com\"\n", ":1:12: ",
	    "key 'helo_name'", "not a valid host name" },
	{ "bool invalid", "tls:\n  default:\n    verify_server: maybe\n",
	    ":3:20: ", "key 'tls.default.verify_server'", "not a boolean" },
	{ "tls version 1.1",
	    "tls:\n  default:\n    min_tls_version: 1.1\n", ":3:22: ",
	    "key 'tls.default.min_tls_version'", "use 1.2 or 1.3" },
	{ "ciphers none",
	    "tls:\n  default:\n    ciphers: NO-SUCH-CIPHER\n", ":3:14: ",
	    "key 'tls.default.ciphers'", "selects no cipher" },
	{ "name partial wildcard",
	    "tls:\n  default:\n    verify_server_name: [\"DNS:f*.example\"]\n",
	    ":3:26: ", "key 'tls.default.verify_server_name'",
	    "whole left-most label" },
	{ "name inner wildcard",
	    "tls:\n  default:\n    verify_server_name: [\"DNS:a.*.example\"]\n",
	    ":3:26: ", "key 'tls.default.verify_server_name'",
	    "whole left-most label" },
	{ "name wildcard tld",
	    "tls:\n  default:\n    verify_server_name: [\"DNS:*.com\"]\n",
	    ":3:26: ", "key 'tls.default.verify_server_name'",
	    "two labels" },
	{ "name bad IP",
	    "tls:\n  default:\n    verify_server_name: [\"IP:300.1.1.1\"]\n",
	    ":3:26: ", "key 'tls.default.verify_server_name'",
	    "not a valid IPv4 or IPv6" },
	{ "name no prefix",
	    "tls:\n  default:\n    verify_server_name:\n"
	    "      - mail.example\n", ":4:9: ",
	    "key 'tls.default.verify_server_name'", "DNS: or IP:" },
	{ "name empty list",
	    "tls:\n  default:\n    verify_server_name: []\n", ":3:25: ",
	    "key 'tls.default.verify_server_name'", "empty" },
	{ "name nested list",
	    "tls:\n  default:\n    verify_server_name: [[\"DNS:a.b\"]]\n",
	    ":3:26: ", "key 'tls.default.verify_server_name'",
	    "scalar expected" },
	{ "cert without key",
	    "tls:\n  default:\n    client_certificate: /c.pem\n", ":3:5: ",
	    "key 'tls.default'", "client_key is missing" },
	{ "key without cert",
	    "tls:\n  profiles:\n    p1:\n      client_key: /k.pem\n",
	    ":4:7: ", "key 'tls.profiles.p1'",
	    "client_certificate is missing" },
	{ "profile named default",
	    "tls:\n  profiles:\n    default:\n      verify_server: no\n",
	    ":3:5: ", "key 'tls.profiles'", "reserved" },
	{ "profile named Default",
	    "tls:\n  profiles:\n    Default: {}\n", ":3:5: ",
	    "key 'tls.profiles'", "reserved" },
	{ "profile name bad char",
	    "tls:\n  profiles:\n    \"a b\": {}\n", ":3:5: ",
	    "key 'tls.profiles'", "invalid profile name 'a b'" },
	{ "profile name colon",
	    "tls:\n  profiles:\n    \"a:b\": {}\n", ":3:5: ",
	    "key 'tls.profiles'", "invalid profile name" },
	{ "profile name too long",
	    "tls:\n  profiles:\n    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaa: {}\n", ":3:5: ", "key 'tls.profiles'",
	    "1 to 63" },
	{ "profile defined twice",
	    "tls:\n  profiles:\n    p1: {}\n    p1: {}\n", ":4:5: ",
	    "key 'tls.profiles'", "defined twice" },
	{ "profile not mapping",
	    "tls:\n  profiles:\n    p1: yes\n", ":3:9: ",
	    "key 'tls.profiles.p1'", "mapping expected" },
	{ "profiles not mapping", "tls:\n  profiles: [a]\n", ":2:13: ",
	    "key 'tls.profiles'", "mapping expected" },
	{ "key not scalar", "? [a]\n: 1\n", ":1:3: ", "",
	    "a key must be" },
	{ "second document", "max_clients: 1\n---\nmax_clients: 2\n",
	    ":2:1: ", "", "second YAML document" },
	{ "syntax error", "pool:\n  idle_timeout: [1, 2\nmax_clients: 5\n",
	    ":3:12: ", "", "YAML syntax error" },
	{ "tab indentation", "pool:\n\tidle_timeout: 5\n", ":2:1: ", "",
	    "YAML syntax error" },
};

static void
test_error_cases(void)
{
	struct config	*cfg;
	char		 name[160];
	size_t		 i;

	for (i = 0; i < sizeof(test_errors) / sizeof(test_errors[0]); i++) {
		cfg = test_load(test_errors[i].yaml);
		snprintf(name, sizeof(name), "%s rejected",
		    test_errors[i].name);
		CHECK(cfg == NULL, name);
		if (cfg != NULL) {
			config_free(cfg);
			continue;
		}
		snprintf(name, sizeof(name), "%s: message starts with path",
		    test_errors[i].name);
		CHECK(strncmp(test_err, test_path, strlen(test_path)) == 0,
		    name);
		snprintf(name, sizeof(name), "%s: position",
		    test_errors[i].name);
		CHECK(strstr(test_err, test_errors[i].where) != NULL, name);
		snprintf(name, sizeof(name), "%s: key named",
		    test_errors[i].name);
		CHECK(strstr(test_err, test_errors[i].key) != NULL, name);
		snprintf(name, sizeof(name), "%s: reason",
		    test_errors[i].name);
		CHECK(strstr(test_err, test_errors[i].what) != NULL, name);
		printf("# %s\n", test_err);
	}
}

static void
test_file_errors(void)
{
	struct config	*cfg;
	const char	*path;

	cfg = config_load("/nonexistent/smtpool/none.yaml", test_err,
	    sizeof(test_err));
	CHECK(cfg == NULL, "missing file rejected");
	CHECK(strstr(test_err, "/nonexistent/smtpool/none.yaml") != NULL,
	    "missing file named");
	CHECK(strstr(test_err, "No such file") != NULL,
	    "missing file reason");
	config_free(cfg);

	cfg = config_load("/", test_err, sizeof(test_err));
	CHECK(cfg == NULL, "directory rejected");
	config_free(cfg);

	path = test_data_path("data/syntax-error.yaml");
	cfg = config_load(path, test_err, sizeof(test_err));
	CHECK(cfg == NULL, "syntax error file rejected");
	CHECK(strstr(test_err, "syntax-error.yaml:") != NULL,
	    "syntax error file named");
	CHECK(strstr(test_err, "YAML syntax error") != NULL,
	    "syntax error said");
	printf("# %s\n", test_err);
	config_free(cfg);

	/* A NULL err buffer must not crash. */
	cfg = config_load("/nonexistent/x.yaml", NULL, 0);
	CHECK(cfg == NULL, "NULL err buffer tolerated");
}

/* config_profile: "", NULL and "default" give the default profile. */
static void
test_profile_lookup(void)
{
	struct config	*cfg;

	cfg = test_load("tls:\n  profiles:\n    a: {}\n    b-2.x_y:\n"
	    "      verify_server: no\n");
	CHECK(cfg != NULL, "two profiles load");
	if (cfg == NULL) {
		printf("# %s\n", test_err);
		return;
	}
	CHECK(config_profile(cfg, NULL) == &cfg->tls_default,
	    "NULL name is default");
	CHECK(config_profile(cfg, "") == &cfg->tls_default,
	    "empty name is default");
	CHECK(config_profile(cfg, "default") == &cfg->tls_default,
	    "default name is default");
	CHECK(config_profile(cfg, "a") == &cfg->profiles[0], "profile a");
	CHECK(config_profile(cfg, "b-2.x_y") == &cfg->profiles[1],
	    "profile b-2.x_y");
	CHECK(config_profile(cfg, "A") == NULL, "lookup is case-sensitive");
	CHECK(config_profile(cfg, "c") == NULL, "undefined profile is NULL");
	CHECK(config_profile(NULL, "a") == NULL, "NULL config is NULL");
	CHECK_INT(cfg->profiles[1].verify_server, 0, "b-2.x_y verify off");
	CHECK_INT(cfg->profiles[0].verify_server, 1, "a keeps defaults");
	config_free(cfg);
}

/* ------------------------------------------------------------------ */
/* Log                                                                 */

static char	test_log_text[16384];

/* Prints captured log text as TAP comments, one "# " per line. */
static void
test_diag_log(void)
{
	const char	*p = test_log_text, *nl;

	while (*p != '\0') {
		nl = strchr(p, '\n');
		printf("# %.*s\n", nl != NULL ? (int)(nl - p) : (int)strlen(p),
		    p);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
}

/* Runs fn with stderr sent to a temporary file, then reads the file
 * into test_log_text. */
static void
test_capture_log(void (*fn)(void))
{
	int	saved, fd;
	ssize_t	n;

	test_log_text[0] = '\0';
	fflush(stderr);
	if (test_write_file("") == -1 || (fd = open(test_path,
	    O_RDWR)) == -1)
		return;
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	fn();
	log_flush();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);

	lseek(fd, 0, SEEK_SET);
	n = read(fd, test_log_text, sizeof(test_log_text) - 1);
	test_log_text[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(test_path);
}

static void
test_log_basic_fn(void)
{
	log_set_level(LOG_LEVEL_INFO);
	log_event(LOG_LEVEL_INFO, 0x1234, "127.0.0.1:25", "test.event",
	    "a=%d b=%s", 1, "x");
	log_event(LOG_LEVEL_DEBUG, 1, NULL, "test.hidden", "x=1");
	log_event(LOG_LEVEL_NOTICE, 0, NULL, "test.nofields", "%s", "");
	log_event(LOG_LEVEL_INFO, 2, "evil\npeer", "test.inject",
	    "text=\"a\r\n<3>0000000000000000 - forged\"");
}

static void
test_log_repeat_fn(void)
{
	int	i;

	log_set_level(LOG_LEVEL_INFO);
	for (i = 0; i < 5; i++)
		log_event(LOG_LEVEL_WARNING, 7, "peer", "test.flood",
		    "error=\"same\"");
	log_event(LOG_LEVEL_INFO, 7, "peer", "test.other", "n=1");
	for (i = 0; i < 3; i++)
		log_event(LOG_LEVEL_ERR, 8, "peer", "test.flood2", "e=1");
	/* A different field value is a different line. */
	log_event(LOG_LEVEL_ERR, 8, "peer", "test.flood2", "e=2");
	log_event(LOG_LEVEL_ERR, 8, "peer", "test.flood2", "e=2");
	/* Info lines are never folded. */
	log_event(LOG_LEVEL_INFO, 9, "-", "test.info", "same");
	log_event(LOG_LEVEL_INFO, 9, "-", "test.info", "same");
}

static void
test_log_long_fn(void)
{
	static char	big[5000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_set_level(LOG_LEVEL_INFO);
	log_event(LOG_LEVEL_INFO, 3, "peer", "test.long", "data=%s", big);
}

static void
test_log_openssl_fn(void)
{
	SSL_CTX	*ctx = SSL_CTX_new(TLS_client_method());

	log_set_level(LOG_LEVEL_INFO);
	if (ctx != NULL) {
		/* Fails and queues OpenSSL errors. */
		SSL_CTX_load_verify_locations(ctx, "/nonexistent/ca.pem",
		    NULL);
		SSL_CTX_free(ctx);
	}
	log_openssl_errors(LOG_LEVEL_ERR, 4, "peer", "tls.load");
	log_openssl_errors(LOG_LEVEL_ERR, 4, "peer", "tls.empty");
}

static void
test_log(void)
{
	static const struct {
		const char	*name;
		int		 level;
	} levels[] = {
		{ "error", LOG_LEVEL_ERR }, { "warning", LOG_LEVEL_WARNING },
		{ "notice", LOG_LEVEL_NOTICE }, { "info", LOG_LEVEL_INFO },
		{ "debug", LOG_LEVEL_DEBUG }, { "verbose", -1 }, { "", -1 },
		{ "ERROR", -1 },
	};
	const char	*nl;
	size_t		 i;
	int		 saved_level = log_get_level();

	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		CHECK_INT(log_level_from_name(levels[i].name),
		    levels[i].level, "log level name");
	log_set_level(LOG_LEVEL_DEBUG);
	CHECK_INT(log_get_level(), LOG_LEVEL_DEBUG, "log level set");

	test_capture_log(test_log_basic_fn);
	CHECK(strstr(test_log_text, "<6>0000000000001234 127.0.0.1:25 test.event "
	    "a=1 b=x\n") != NULL, "log line format");
	CHECK(strstr(test_log_text, "test.hidden") == NULL, "debug line dropped");
	CHECK(strstr(test_log_text, "<5>0000000000000000 - test.nofields\n") !=
	    NULL, "log line without fields or peer");
	CHECK(strstr(test_log_text, "<6>0000000000000002 evil?peer test.inject "
	    "text=\"a?\?<3>0000000000000000 - forged\"\n") != NULL,
	    "control characters replaced");
	CHECK(strstr(test_log_text, "\n<3>") == NULL, "no forged line start");
	test_diag_log();

	test_capture_log(test_log_repeat_fn);
	CHECK(strstr(test_log_text, "<4>0000000000000007 peer test.flood "
	    "error=\"same\"\n<4>0000000000000007 peer test.flood "
	    "repeated=4\n<6>0000000000000007 peer test.other n=1\n") != NULL,
	    "repeats counted before next line");
	CHECK(strstr(test_log_text, "test.flood2 e=1\n<3>0000000000000008 peer "
	    "test.flood2 repeated=2\n<3>0000000000000008 peer test.flood2 "
	    "e=2\n") != NULL, "changed field ends the run");
	CHECK(strstr(test_log_text, "test.flood2 e=2\n<6>0000000000000008 peer "
	    "test.flood2 repeated=1\n") == NULL,
	    "repeat count keeps its level");
	CHECK(strstr(test_log_text, "<3>0000000000000008 peer test.flood2 "
	    "repeated=1\n<6>0000000000000009 - test.info same\n"
	    "<6>0000000000000009 - test.info same\n") != NULL,
	    "info repeats written");
	test_diag_log();

	test_capture_log(test_log_long_fn);
	nl = strchr(test_log_text, '\n');
	CHECK(nl != NULL, "long line ends in newline");
	if (nl != NULL) {
		CHECK_INT(nl - test_log_text + 1, 2048,
		    "long line capped at 2048 bytes");
		CHECK(nl[1] == '\0', "long line is one line");
	}

	test_capture_log(test_log_openssl_fn);
	CHECK(strstr(test_log_text, "<3>0000000000000004 peer tls.load "
	    "error=\"error:") != NULL, "OpenSSL errors logged");
	CHECK(strstr(test_log_text, "tls.empty error=\"no OpenSSL error queued\"")
	    != NULL, "empty OpenSSL queue said");
	CHECK(ERR_peek_error() == 0, "OpenSSL queue drained");
	test_diag_log();

	log_set_level(saved_level);
}

/* ------------------------------------------------------------------ */
/* TLS contexts                                                        */

static EVP_PKEY	*test_key;
static X509	*test_cert;
static char	 test_cert_path[256];
static char	 test_other_path[256];

/* Makes a self-signed certificate for CN=mail.test with the given
 * subjectAltName and writes it as PEM to path (a fresh temp file). */
static X509 *
test_make_cert(EVP_PKEY *key, const char *san, char *path, size_t len)
{
	X509		*x;
	X509_NAME	*name;
	X509_EXTENSION	*ext;
	X509V3_CTX	 v3;
	FILE		*fp;

	if ((x = X509_new()) == NULL)
		return NULL;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"mail.test", -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (ext != NULL) {
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (X509_sign(x, key, EVP_sha256()) == 0) {
		X509_free(x);
		return NULL;
	}

	if (test_write_file("") == -1) {
		X509_free(x);
		return NULL;
	}
	snprintf(path, len, "%s", test_path);
	if ((fp = fopen(path, "w")) != NULL) {
		PEM_write_X509(fp, x);
		fclose(fp);
	}
	return x;
}

/* Runs a handshake over a BIO pair between client and a server using the
 * test certificate.  Returns 1 when the client completed it. */
static int
test_handshake(SSL *client)
{
	SSL_CTX	*sctx;
	SSL	*server;
	BIO	*cbio, *sbio;
	int	 i, cdone = 0, sdone = 0, rc;

	if ((sctx = SSL_CTX_new(TLS_server_method())) == NULL)
		return 0;
	SSL_CTX_use_certificate(sctx, test_cert);
	SSL_CTX_use_PrivateKey(sctx, test_key);
	server = SSL_new(sctx);
	BIO_new_bio_pair(&cbio, 0, &sbio, 0);
	SSL_set_bio(client, cbio, cbio);
	SSL_set_bio(server, sbio, sbio);
	SSL_set_connect_state(client);
	SSL_set_accept_state(server);

	/* Each round moves the handshake one flight on; 20 is plenty. */
	for (i = 0; i < 20 && !(cdone && sdone); i++) {
		if (!cdone) {
			rc = SSL_do_handshake(client);
			if (rc == 1)
				cdone = 1;
			else if (SSL_get_error(client, rc) !=
			    SSL_ERROR_WANT_READ)
				break;
		}
		if (!sdone) {
			rc = SSL_do_handshake(server);
			if (rc == 1)
				sdone = 1;
			else if (SSL_get_error(server, rc) !=
			    SSL_ERROR_WANT_READ)
				break;
		}
	}
	ERR_clear_error();
	SSL_free(server);
	SSL_CTX_free(sctx);
	return cdone;
}

/* A profile (YAML under tls.default, CA = %s) and a host to connect to,
 * with the outcome expected. */
static const struct {
	const char	*name;
	const char	*profile;
	const char	*host;
	int		 host_is_ip;
	int		 ok;
} test_tls_cases[] = {
	{ "host name matches", "", "mail.test", 0, 1 },
	{ "host name differs", "", "other.test", 0, 0 },
	{ "host IP matches", "", "127.0.0.1", 1, 1 },
	{ "host IP differs", "", "127.0.0.2", 1, 0 },
	{ "wildcard matches one label", "", "x.wild.test", 0, 1 },
	{ "wildcard not two deep", "", "a.b.wild.test", 0, 0 },
	{ "name check off", "    verify_server_name: no\n", "other.test",
	    0, 1 },
	{ "list DNS matches",
	    "    verify_server_name: [\"DNS:mail.test\"]\n", "other.test",
	    0, 1 },
	{ "list DNS differs",
	    "    verify_server_name: [\"DNS:x.test\", \"DNS:y.test\"]\n",
	    "mail.test", 0, 0 },
	{ "list second DNS matches",
	    "    verify_server_name: [\"DNS:x.test\", \"DNS:mail.test\"]\n",
	    "other.test", 0, 1 },
	{ "list IP matches",
	    "    verify_server_name: [\"IP:127.0.0.1\"]\n", "mail.test",
	    0, 1 },
	{ "list IP differs",
	    "    verify_server_name: [\"IP:10.0.0.1\"]\n", "mail.test",
	    0, 0 },
	{ "list two IPs second matches",
	    "    verify_server_name: [\"IP:10.0.0.1\", \"IP:127.0.0.1\"]\n",
	    "mail.test", 0, 1 },
	{ "list two IPs none matches",
	    "    verify_server_name: [\"IP:10.0.0.1\", \"IP:10.0.0.2\"]\n",
	    "mail.test", 0, 0 },
	{ "mixed list IP matches",
	    "    verify_server_name: [\"DNS:x.test\", \"IP:127.0.0.1\"]\n",
	    "other.test", 0, 1 },
	{ "mixed list DNS matches",
	    "    verify_server_name: [\"DNS:mail.test\", \"IP:10.0.0.1\"]\n",
	    "other.test", 0, 1 },
	{ "mixed list none matches",
	    "    verify_server_name: [\"DNS:x.test\", \"IP:10.0.0.1\"]\n",
	    "mail.test", 0, 0 },
	/* A listed wildcard accepts the same wildcard in the certificate,
	 * through OpenSSL's parameters and through the callback alike. */
	{ "list wildcard",
	    "    verify_server_name: [\"DNS:*.wild.test\"]\n",
	    "other.test", 0, 1 },
	{ "mixed list wildcard",
	    "    verify_server_name: [\"DNS:*.wild.test\", \"IP:10.0.0.1\"]\n",
	    "other.test", 0, 1 },
	{ "list wildcard other domain",
	    "    verify_server_name: [\"DNS:*.mail.test\", \"IP:10.0.0.1\"]\n",
	    "mail.test", 0, 0 },
	{ "wrong CA refused", "WRONG-CA", "mail.test", 0, 0 },
	{ "wrong CA without verify",
	    "WRONG-CA    verify_server: no\n", "other.test", 0, 1 },
};

static void
test_tls_handshakes(void)
{
	struct tlsctx_set	*set;
	struct config		*cfg;
	SSL			*ssl;
	const char		*profile, *ca;
	char			 yaml[1024], name[160];
	size_t			 i;
	int			 ok;

	for (i = 0; i < sizeof(test_tls_cases) / sizeof(test_tls_cases[0]);
	    i++) {
		profile = test_tls_cases[i].profile;
		ca = test_cert_path;
		if (strncmp(profile, "WRONG-CA", 8) == 0) {
			ca = test_other_path;
			profile += 8;
		}
		snprintf(yaml, sizeof(yaml), "tls:\n  default:\n"
		    "    ca_certificate: %s\n%s", ca, profile);
		cfg = test_load(yaml);
		set = cfg != NULL ? tlsctx_set_new(cfg, test_err,
		    sizeof(test_err)) : NULL;
		snprintf(name, sizeof(name), "%s: context built",
		    test_tls_cases[i].name);
		CHECK(set != NULL, name);
		if (set == NULL) {
			printf("# %s\n", test_err);
			config_free(cfg);
			continue;
		}
		ssl = tlsctx_new_ssl(tlsctx_get(set, ""), &cfg->tls_default,
		    test_tls_cases[i].host, test_tls_cases[i].host_is_ip,
		    test_err, sizeof(test_err));
		snprintf(name, sizeof(name), "%s: SSL created",
		    test_tls_cases[i].name);
		CHECK(ssl != NULL, name);
		if (ssl != NULL) {
			ok = test_handshake(ssl);
			CHECK_INT(ok, test_tls_cases[i].ok,
			    test_tls_cases[i].name);
			snprintf(name, sizeof(name), "%s: verify error",
			    test_tls_cases[i].name);
			if (ok && cfg->tls_default.verify_server)
				CHECK_STR(tlsctx_verify_error(ssl), "", name);
			else if (!ok)
				CHECK(strncmp(tlsctx_verify_error(ssl),
				    "certificate verify failed: ", 27) == 0,
				    name);
			if (!ok)
				printf("# %s\n", tlsctx_verify_error(ssl));
			SSL_free(ssl);
		}
		tlsctx_set_free(set);
		config_free(cfg);
	}
}

static void
test_tls_contexts(void)
{
	struct tlsctx_set	*set;
	struct config		*cfg;
	SSL			*ssl;
	X509			*other;
	EVP_PKEY		*other_key;
	char			 yaml[1024];
	char			*ipasc;

	/* Defaults: the system store, which may be empty but loads. */
	cfg = config_load(NULL, test_err, sizeof(test_err));
	set = cfg != NULL ? tlsctx_set_new(cfg, test_err, sizeof(test_err)) :
	    NULL;
	CHECK(set != NULL, "default TLS context built");
	if (set != NULL) {
		CHECK(tlsctx_get(set, "") != NULL, "default context by \"\"");
		CHECK(tlsctx_get(set, NULL) == tlsctx_get(set, ""),
		    "default context by NULL");
		CHECK(tlsctx_get(set, "default") == tlsctx_get(set, ""),
		    "default context by name");
		CHECK(tlsctx_get(set, "nope") == NULL, "unknown context NULL");

		ssl = tlsctx_new_ssl(tlsctx_get(set, ""), &cfg->tls_default,
		    "mail.example.com", 0, test_err, sizeof(test_err));
		CHECK(ssl != NULL, "SSL for DNS host");
		if (ssl != NULL) {
			CHECK_STR(SSL_get_servername(ssl,
			    TLSEXT_NAMETYPE_host_name), "mail.example.com",
			    "SNI set for DNS host");
			CHECK_STR(X509_VERIFY_PARAM_get0_host(
			    SSL_get0_param(ssl), 0), "mail.example.com",
			    "host check set");
			CHECK_STR(tlsctx_verify_error(ssl), "",
			    "no verify error before handshake");
			SSL_free(ssl);
		}
		ssl = tlsctx_new_ssl(tlsctx_get(set, ""), &cfg->tls_default,
		    "192.0.2.7", 1, test_err, sizeof(test_err));
		CHECK(ssl != NULL, "SSL for IP host");
		if (ssl != NULL) {
			CHECK(SSL_get_servername(ssl,
			    TLSEXT_NAMETYPE_host_name) == NULL,
			    "no SNI for IP host");
			ipasc = X509_VERIFY_PARAM_get1_ip_asc(
			    SSL_get0_param(ssl));
			CHECK_STR(ipasc, "192.0.2.7", "IP check set");
			OPENSSL_free(ipasc);
			SSL_free(ssl);
		}
		ssl = tlsctx_new_ssl(tlsctx_get(set, ""), &cfg->tls_default,
		    "", 0, test_err, sizeof(test_err));
		CHECK(ssl == NULL, "empty host with host check rejected");
		SSL_free(ssl);
	}
	tlsctx_set_free(set);
	config_free(cfg);

	/* A missing CA file names the profile and the file. */
	cfg = test_load("tls:\n  profiles:\n    corp:\n"
	    "      ca_certificate: /nonexistent/corp-ca.pem\n");
	CHECK(cfg != NULL, "profile with missing CA loads as config");
	if (cfg != NULL) {
		set = tlsctx_set_new(cfg, test_err, sizeof(test_err));
		CHECK(set == NULL, "missing CA file rejected");
		CHECK(strstr(test_err, "/nonexistent/corp-ca.pem") != NULL,
		    "missing CA file named");
		CHECK(strstr(test_err, "'corp'") != NULL,
		    "missing CA profile named");
		CHECK(strstr(test_err, "No such file") != NULL,
		    "missing CA reason");
		printf("# %s\n", test_err);
		tlsctx_set_free(set);
		config_free(cfg);
	}

	/* A CA file that contains no certificate. */
	if (test_write_file("not a certificate\n") == 0) {
		char	junk[256];

		snprintf(junk, sizeof(junk), "%s", test_path);
		snprintf(yaml, sizeof(yaml), "tls:\n  default:\n"
		    "    ca_cert: %s\n", junk);
		cfg = test_load(yaml);
		set = cfg != NULL ? tlsctx_set_new(cfg, test_err,
		    sizeof(test_err)) : NULL;
		CHECK(set == NULL, "junk CA file rejected");
		CHECK(strstr(test_err, junk) != NULL, "junk CA file named");
		printf("# %s\n", test_err);
		tlsctx_set_free(set);
		config_free(cfg);
		unlink(junk);
	}

	/* A missing client key. */
	cfg = test_load("tls:\n  default:\n    client_certificate: /etc/hosts\n"
	    "    client_key: /nonexistent/client.key\n");
	if (cfg != NULL) {
		set = tlsctx_set_new(cfg, test_err, sizeof(test_err));
		CHECK(set == NULL, "missing client key rejected");
		CHECK(strstr(test_err, "/nonexistent/client.key") != NULL ||
		    strstr(test_err, "/etc/hosts") != NULL,
		    "client certificate problem names a file");
		printf("# %s\n", test_err);
		tlsctx_set_free(set);
		config_free(cfg);
	}

	/* Certificates for the handshake tests. */
	test_key = EVP_EC_gen("P-256");
	CHECK(test_key != NULL, "test key generated");
	if (test_key == NULL)
		return;
	test_cert = test_make_cert(test_key,
	    "DNS:mail.test,DNS:*.wild.test,IP:127.0.0.1", test_cert_path,
	    sizeof(test_cert_path));
	/* Same subject but another key: a CA the server's certificate
	 * does not chain to. */
	other_key = EVP_EC_gen("P-256");
	other = other_key == NULL ? NULL : test_make_cert(other_key,
	    "DNS:mail.test", test_other_path, sizeof(test_other_path));
	CHECK(test_cert != NULL, "test certificate made");
	CHECK(other != NULL, "second test certificate made");
	if (test_cert != NULL && other != NULL) {
		test_tls_handshakes();

		/* A client certificate that does not match its key. */
		snprintf(yaml, sizeof(yaml), "tls:\n  default:\n"
		    "    client_certificate: %s\n    client_key: %s\n",
		    test_cert_path, test_cert_path);
		cfg = test_load(yaml);
		set = cfg != NULL ? tlsctx_set_new(cfg, test_err,
		    sizeof(test_err)) : NULL;
		CHECK(set == NULL, "certificate as key rejected");
		CHECK(strstr(test_err, "client_key") != NULL,
		    "bad key option named");
		printf("# %s\n", test_err);
		tlsctx_set_free(set);
		config_free(cfg);
	}
	X509_free(other);
	EVP_PKEY_free(other_key);
	X509_free(test_cert);
	EVP_PKEY_free(test_key);
	unlink(test_cert_path);
	unlink(test_other_path);
}

int
main(void)
{
	test_defaults();
	test_valid_values();
	test_full_file();
	test_example_file();
	test_strings();
	test_error_cases();
	test_file_errors();
	test_profile_lookup();
	test_log();
	test_tls_contexts();
	return check_done();
}
