/*
 * test_addr.c - mailbox validation, entry parsing and address lists.
 */
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "check.h"

/* Mailboxes and whether addr_mailbox_valid() accepts them. */
static const struct {
	const char	*mailbox;
	int		 valid;
} mailbox_cases[] = {
	{ "bob@example.test", 1 },
	{ "b@x", 1 },
	{ "bob@localhost", 1 },
	{ "first.last@example.test", 1 },
	{ "a+tag@sub.example.test", 1 },
	{ "!#$%&'*+-/=?^_`{|}~@example.test", 1 },
	{ "\"john doe\"@example.test", 1 },
	{ "\"a@b\"@example.test", 1 },
	{ "\"quote\\\"d\"@example.test", 1 },
	{ "\"\"@example.test", 1 },
	{ "bob@[192.0.2.1]", 1 },
	{ "bob@[IPv6:2001:db8::1]", 1 },
	{ "bob@[ipv6:::1]", 1 },
	{ "bob@a-b.example.test", 1 },
	{ "bob@123.example.test", 1 },
	{ "", 0 },
	{ "bob", 0 },
	{ "bob@", 0 },
	{ "@example.test", 0 },
	{ ".bob@example.test", 0 },
	{ "bob.@example.test", 0 },
	{ "b..b@example.test", 0 },
	{ "bo b@example.test", 0 },
	{ "bob(x)@example.test", 0 },
	{ "bob@@example.test", 0 },
	{ "bob@example..test", 0 },
	{ "bob@.example.test", 0 },
	{ "bob@example.test.", 0 },
	{ "bob@-example.test", 0 },
	{ "bob@example-.test", 0 },
	{ "bob@exa_mple.test", 0 },
	{ "bob@[192.0.2.256]", 0 },
	{ "bob@[192.0.2]", 0 },
	{ "bob@[IPv6:2001:db8::g]", 0 },
	{ "bob@[2001:db8::1]", 0 },
	{ "bob@[192.0.2.1", 0 },
	{ "\"unterminated@example.test", 0 },
	{ "\"a\"b\"@example.test", 0 },
	{ "bob\r@example.test", 0 },
	{ "bob@example.test\n", 0 },
	{ "j\xc3\xb6rg@example.test", 0 },
	{ "bob@b\xc3\xbc" "cher.test", 0 },
	{ NULL, 0 },
};

/* Single entries for addr_parse(): expected mailbox and display name, or
 * a substring of the error message when mailbox is NULL. */
static const struct {
	const char	*entry;
	const char	*mailbox;
	const char	*display;
	const char	*error;
} entry_cases[] = {
	{ "bob@example.test", "bob@example.test", NULL, NULL },
	{ "  bob@example.test\t", "bob@example.test", NULL, NULL },
	{ "Bob Smith <bob@example.test>", "bob@example.test", "Bob Smith",
	    NULL },
	{ "  Bob  Smith   < bob@example.test >  ", "bob@example.test",
	    "Bob  Smith", NULL },
	{ "<bob@example.test>", "bob@example.test", NULL, NULL },
	{ "\"Smith, Bob\" <bob@example.test>", "bob@example.test",
	    "Smith, Bob", NULL },
	{ "\"Bob \\\"B\\\" <x>\" <bob@example.test>", "bob@example.test",
	    "Bob \"B\" <x>", NULL },
	{ "J\xc3\xb6rg <j@example.test>", "j@example.test", "J\xc3\xb6rg",
	    NULL },
	{ "Bob \"the builder\" Smith <b@example.test>", "b@example.test",
	    "Bob \"the builder\" Smith", NULL },
	{ "<\"a>b\"@example.test>", "\"a>b\"@example.test", NULL, NULL },
	{ "\"\" <bob@example.test>", "bob@example.test", NULL, NULL },
	{ "bob@", NULL, NULL, "invalid address \"bob@\": the domain is empty" },
	{ "", NULL, NULL, "the entry is empty" },
	{ "Bob <bob@example.test", NULL, NULL, "no closing '>'" },
	{ "Bob <>", NULL, NULL, "the mailbox is empty" },
	{ "Bob bob@example.test", NULL, NULL, "angle brackets" },
	{ "Bob\r\n <bob@example.test>", NULL, NULL, "line break" },
	{ "Bob <bob@example.test>\n", NULL, NULL, "\\n" },
	{ "\"Bob <bob@example.test>", NULL, NULL, "invalid address" },
	{ "\xff <bob@example.test>", NULL, NULL, "not valid UTF-8" },
	{ "j\xc3\xb6rg@example.test", NULL, NULL, "SMTPUTF8" },
	{ NULL, NULL, NULL, NULL },
};

/* Lists for addr_list_parse(): expected mailboxes joined with '|', or a
 * substring of the error message when mailboxes is NULL. */
static const struct {
	const char	*text;
	const char	*mailboxes;
	const char	*error;
} list_cases[] = {
	{ "a@x.test", "a@x.test", NULL },
	{ "a@x.test,b@y.test", "a@x.test|b@y.test", NULL },
	{ " a@x.test , B <b@y.test> ,c@z.test ", "a@x.test|b@y.test|c@z.test",
	    NULL },
	{ "\"Smith, Bob\" <b@y.test>, a@x.test", "b@y.test|a@x.test", NULL },
	{ "<\"a,b\"@x.test>,c@z.test", "\"a,b\"@x.test|c@z.test", NULL },
	{ "\"a,b\"@x.test", "\"a,b\"@x.test", NULL },
	{ "a@x.test,,b@y.test", NULL, "entry 2 is empty" },
	{ "a@x.test,", NULL, "entry 2 is empty" },
	{ ",a@x.test", NULL, "entry 1 is empty" },
	{ "", NULL, "entry 1 is empty" },
	{ "   ", NULL, "entry 1 is empty" },
	{ "a@x.test,b@", NULL, "invalid address \"b@\": the domain is empty" },
	{ "B <b@y.test, c@z.test>", NULL,
	    "invalid address \"B <b@y.test, c@z.test>\": the domain" },
	{ NULL, NULL, NULL },
};

static void
test_mailboxes(void)
{
	char	 name[160];
	size_t	 i;

	for (i = 0; mailbox_cases[i].mailbox != NULL; i++) {
		snprintf(name, sizeof(name), "mailbox %zu %s", i,
		    mailbox_cases[i].valid ? "accepted" : "rejected");
		CHECK_INT(addr_mailbox_valid(mailbox_cases[i].mailbox),
		    mailbox_cases[i].valid, name);
	}
	CHECK_INT(addr_mailbox_valid(NULL), 0, "NULL mailbox rejected");
}

/* Checks the length limits: local part 64, label 63, domain 255, whole
 * mailbox 254. */
static void
test_lengths(void)
{
	char	 box[600];

	memset(box, 'a', 64);
	strcpy(box + 64, "@example.test");
	CHECK_INT(addr_mailbox_valid(box), 1, "64-byte local part accepted");
	memset(box, 'a', 65);
	strcpy(box + 65, "@example.test");
	CHECK_INT(addr_mailbox_valid(box), 0, "65-byte local part rejected");

	strcpy(box, "bob@");
	memset(box + 4, 'd', 63);
	strcpy(box + 67, ".test");
	CHECK_INT(addr_mailbox_valid(box), 1, "63-char label accepted");
	strcpy(box, "bob@");
	memset(box + 4, 'd', 64);
	strcpy(box + 68, ".test");
	CHECK_INT(addr_mailbox_valid(box), 0, "64-char label rejected");

	/* "b@" + 4 labels of 60, each with its dot, + "abcdefgh" = 254. */
	strcpy(box, "b@");
	for (int l = 0; l < 4; l++) {
		memset(box + strlen(box), 'x', 60);
		box[2 + (l + 1) * 61 - 1] = '.';
		box[2 + (l + 1) * 61] = '\0';
	}
	strcat(box, "abcdefgh");
	CHECK_INT(strlen(box), 254, "254-byte mailbox built");
	CHECK_INT(addr_mailbox_valid(box), 1, "254-byte mailbox accepted");
	strcat(box, "j");
	CHECK_INT(addr_mailbox_valid(box), 0, "255-byte mailbox rejected");
}

static void
test_entries(void)
{
	struct addr	 a;
	char		 err[256], name[160];
	size_t		 i;
	int		 rc;

	for (i = 0; entry_cases[i].entry != NULL; i++) {
		err[0] = '\0';
		rc = addr_parse(entry_cases[i].entry, &a, err, sizeof(err));
		if (entry_cases[i].mailbox != NULL) {
			snprintf(name, sizeof(name), "entry %zu parses", i);
			CHECK_INT(rc, 0, name);
			if (rc == -1)
				printf("#   error: %s\n", err);
			snprintf(name, sizeof(name), "entry %zu mailbox", i);
			CHECK_STR(a.mailbox, entry_cases[i].mailbox, name);
			snprintf(name, sizeof(name), "entry %zu display", i);
			if (entry_cases[i].display == NULL)
				CHECK(a.display == NULL, name);
			else
				CHECK_STR(a.display, entry_cases[i].display,
				    name);
		} else {
			snprintf(name, sizeof(name), "entry %zu rejected", i);
			CHECK_INT(rc, -1, name);
			snprintf(name, sizeof(name), "entry %zu error text", i);
			CHECK(strstr(err, entry_cases[i].error) != NULL, name);
			if (strstr(err, entry_cases[i].error) == NULL)
				printf("#   error: %s\n#   want: %s\n", err,
				    entry_cases[i].error);
			snprintf(name, sizeof(name), "entry %zu output empty",
			    i);
			CHECK(a.mailbox == NULL, name);
			CHECK(a.display == NULL, name);
		}
		addr_clear(&a);
	}
}

static void
test_lists(void)
{
	struct addr_list list;
	char		 err[256], joined[512], name[160];
	size_t		 i, j;
	int		 rc;

	for (i = 0; list_cases[i].text != NULL; i++) {
		memset(&list, 0, sizeof(list));
		err[0] = '\0';
		rc = addr_list_parse(list_cases[i].text, &list, err,
		    sizeof(err));
		if (list_cases[i].mailboxes != NULL) {
			snprintf(name, sizeof(name), "list %zu parses", i);
			CHECK_INT(rc, 0, name);
			joined[0] = '\0';
			for (j = 0; j < list.count; j++) {
				if (j > 0)
					strcat(joined, "|");
				strcat(joined, list.items[j].mailbox);
			}
			snprintf(name, sizeof(name), "list %zu mailboxes", i);
			CHECK_STR(joined, list_cases[i].mailboxes, name);
		} else {
			snprintf(name, sizeof(name), "list %zu rejected", i);
			CHECK_INT(rc, -1, name);
			snprintf(name, sizeof(name), "list %zu error text", i);
			CHECK(strstr(err, list_cases[i].error) != NULL, name);
			if (strstr(err, list_cases[i].error) == NULL)
				printf("#   error: %s\n#   want: %s\n", err,
				    list_cases[i].error);
			snprintf(name, sizeof(name), "list %zu left empty", i);
			CHECK_INT(list.count, 0, name);
		}
		addr_list_clear(&list);
	}
}

/* A failed parse leaves entries from an earlier call in place. */
static void
test_list_append(void)
{
	struct addr_list list = { NULL, 0 };
	char		 err[256];

	CHECK_INT(addr_list_parse("a@x.test", &list, err, sizeof(err)), 0,
	    "list append first call");
	CHECK_INT(addr_list_parse("b@y.test, C <c@z.test>", &list, err,
	    sizeof(err)), 0, "list append second call");
	CHECK_INT(list.count, 3, "list append count");
	CHECK_STR(list.items[2].display, "C", "list append display");
	CHECK_INT(addr_list_parse("d@w.test, bad", &list, err, sizeof(err)),
	    -1, "list append bad entry rejected");
	CHECK_INT(list.count, 3, "list append rolled back");
	CHECK_STR(list.items[1].mailbox, "b@y.test",
	    "list append earlier entry kept");
	addr_list_clear(&list);
	CHECK(list.items == NULL, "list clear frees items");
	CHECK_INT(list.count, 0, "list clear resets count");
}

int
main(void)
{
	test_mailboxes();
	test_lengths();
	test_entries();
	test_lists();
	test_list_append();
	return check_done();
}
