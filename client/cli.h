/*
 * cli.h - declarations shared by the source files of the smtpool CLI.
 *
 * Private to the smtpool executable: programs that talk to smtpoold use
 * smtpool.h.
 */
#ifndef SMTPOOL_CLI_H
#define SMTPOOL_CLI_H

#include <stdio.h>

#include "smtpool.h"

extern const char	*cli_socket;	/* --socket, or NULL */

/* getopt_long() codes of the long options that have no short form. */
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

/* Helpers defined in cli_common.c. */
void		cli_error(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
int		cli_status_exit(const smtpool_t *, int);
void		cli_secret_add(const char *, size_t);
void		cli_secret_clear(void);
void		cli_print_escaped_to(FILE *, const char *);
void		cli_print_escaped(const char *);
void		cli_print_result_with(const char *, const smtpool_t *, int,
		    const char *(*)(int));
void		cli_print_result(const char *, const smtpool_t *, int);
void		cli_print_smtp_reply(const smtpool_t *, int, const char *);
smtpool_t	*cli_connect(void);
int		cli_bad_option(const char *, int, char *const []);

/* The commands that main() runs.  Each returns the exit status of the run. */
int		cli_send(int, char *[]);
int		cli_shell(int, char *[]);
int		cli_status_command(const char *, int, char *[]);

/* Reads at most max + 1 bytes of fd into buf (max + 1 bytes long), so a
 * length over max shows the file is too long.  Returns 0 or the errno of
 * the failed read; *lenp gets the bytes read either way. */
int	cli_read_up_to(int fd, char *buf, size_t max, size_t *lenp);

#endif /* SMTPOOL_CLI_H */
