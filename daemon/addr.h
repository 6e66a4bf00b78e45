/*
 * addr.h - e-mail address lists as applications give them.
 *
 * An entry is either a bare mailbox ("bob@example.test") or a display name
 * with the mailbox in angle brackets ("Bob Smith <bob@example.test>").
 * Entries in a list are separated by commas.  A mailbox is checked against
 * RFC 5321 section 4.1.2 (dot-atom or quoted-string local part, domain
 * name or address literal, 64/255/256-byte limits); CR, LF and NUL are
 * invalid anywhere.
 */
#ifndef SMTPOOL_ADDR_H
#define SMTPOOL_ADDR_H

#include <stddef.h>

struct addr {
	char	*display;	/* UTF-8 display name, or NULL */
	char	*mailbox;	/* local@domain, as used in MAIL/RCPT */
};

struct addr_list {
	struct addr	*items;
	size_t		 count;
};

/* Returns 1 when mailbox is a valid RFC 5321 mailbox, else 0. */
int addr_mailbox_valid(const char *mailbox);

/* Parses one entry.  Returns 0, or -1 with err naming the entry and what
 * is wrong with it. */
int addr_parse(const char *entry, struct addr *out, char *err,
    size_t errlen);

/* Parses a comma-separated list and appends its entries to list.  Empty
 * entries between commas are an error.  Returns 0 or -1 with err filled. */
int addr_list_parse(const char *text, struct addr_list *list, char *err,
    size_t errlen);

void addr_clear(struct addr *);
void addr_list_clear(struct addr_list *);

#endif
