/*
 * test_connstr.c - connection string parsing and the normalized form.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "connstr.h"

/* Each input with its normalized form, or with a substring of the error
 * message when normal is NULL. */
static const struct {
	const char	*input;
	const char	*normal;
	const char	*error;
} cases[] = {
	/* Valid strings. */
	{ "smtp.example.com", "TCP:smtp.example.com+25", NULL },
	{ "TCP:SMTP.Example.COM+25", "TCP:smtp.example.com+25", NULL },
	{ "tcp:smtp.example.com", "TCP:smtp.example.com+25", NULL },
	{ "TLS:smtp.example.com", "TLS:smtp.example.com+465", NULL },
	{ "tls:smtp.example.com+587", "TLS:smtp.example.com+587", NULL },
	{ "Tls:mail+465:corp", "TLS:mail+465:corp", NULL },
	{ "TLS:mail:Corp_1.a-b", "TLS:mail+465:Corp_1.a-b", NULL },
	{ "", "TCP:localhost+25", NULL },
	{ "+2525", "TCP:localhost+2525", NULL },
	{ "TLS:", "TLS:localhost+465", NULL },
	{ "TLS::local", "TLS:localhost+465:local", NULL },
	{ "TLS:+1", "TLS:localhost+1", NULL },
	{ "127.0.0.1", "TCP:127.0.0.1+25", NULL },
	{ "127.0.0.1+65535", "TCP:127.0.0.1+65535", NULL },
	{ "[::1]", "TCP:[::1]+25", NULL },
	{ "TLS:[::1]+465:local", "TLS:[::1]+465:local", NULL },
	{ "TLS:[::1]:local", "TLS:[::1]+465:local", NULL },
	{ "[2001:DB8:0:0:0:0:0:1]+25", "TCP:[2001:db8::1]+25", NULL },
	{ "[::ffff:192.0.2.1]", "TCP:[::ffff:192.0.2.1]+25", NULL },
	{ "mx-1.example.com+0025", "TCP:mx-1.example.com+25", NULL },
	{ "a1.b2", "TCP:a1.b2+25", NULL },
	{ "1host.example", "TCP:1host.example+25", NULL },
	/* Connector and profile errors. */
	{ "smtp.example.com:corp", NULL, "only allowed with the TLS" },
	{ "TCP:smtp.example.com:corp", NULL, "write TLS: in front" },
	{ "SSL:smtp.example.com", NULL, "unknown connector \"SSL\"" },
	{ "TLS:mail:", NULL, "the profile after ':' is empty" },
	{ "TLS:mail:a/b", NULL, "profile name contains a character" },
	{ "TLS:mail:corp+25", NULL, "the port goes before the profile" },
	{ "TLS:mail:a:b", NULL, "more than one ':'" },
	{ ":corp", NULL, "starts with ':'" },
	/* Host errors. */
	{ "::1", NULL, "must be in brackets: [::1]" },
	{ "TLS:2001:db8::1+465", NULL, "must be in brackets" },
	{ "[::1", NULL, "no closing ']'" },
	{ "[]", NULL, "not a valid IPv6 address" },
	{ "[::g]", NULL, "not a valid IPv6 address" },
	{ "[fe80::1%eth0]", NULL, "not a valid IPv6 address" },
	{ "[127.0.0.1]", NULL, "brackets are only for IPv6" },
	{ "[::1]x", NULL, "unexpected 'x' after the IPv6 address" },
	{ "smtp_relay.example.com", NULL, "contains '_'" },
	{ "smtp..example.com", NULL, "empty label" },
	{ ".example.com", NULL, "empty label" },
	{ "example.com.", NULL, "ends with a dot" },
	{ "-mx.example.com", NULL, "starts or ends with '-'" },
	{ "mx-.example.com", NULL, "starts or ends with '-'" },
	{ "exa!mple.com", NULL, "other than letters" },
	{ "256.1.1.1", NULL, "not a valid IPv4 address" },
	{ "127.1", NULL, "not a valid IPv4 address" },
	{ "12345", NULL, "not a valid IPv4 address" },
	/* Port errors. */
	{ "mail+", NULL, "the port \"\" is not a decimal number" },
	{ "mail+0", NULL, "not a decimal number from 1 to 65535" },
	{ "mail+65536", NULL, "from 1 to 65535" },
	{ "mail+99999999999999999999", NULL, "from 1 to 65535" },
	{ "mail++25", NULL, "the port \"+25\"" },
	{ "mail+-25", NULL, "not a decimal number" },
	{ "mail+0x19", NULL, "not a decimal number" },
	{ "mail+25+26", NULL, "not a decimal number" },
	/* Whitespace and other bytes. */
	{ " smtp.example.com", NULL, "whitespace at offset 0" },
	{ "smtp.example.com ", NULL, "whitespace at offset 16" },
	{ "mail+ 25", NULL, "whitespace" },
	{ "TLS: mail", NULL, "whitespace" },
	{ "mail\r\n", NULL, "whitespace" },
	{ "m\xc3\xa4il.example", NULL, "non-ASCII" },
	{ NULL, NULL, NULL },
};

static void
test_table(void)
{
	struct connstr	 cs;
	char		 err[512], buf[512], name[160];
	size_t		 i;
	int		 rc;

	for (i = 0; cases[i].input != NULL; i++) {
		err[0] = '\0';
		rc = connstr_parse(cases[i].input, &cs, err, sizeof(err));
		if (cases[i].normal != NULL) {
			snprintf(name, sizeof(name), "case %zu accepted", i);
			CHECK_INT(rc, 0, name);
			if (rc != 0)
				printf("#   input: \"%s\"\n#   error: %s\n",
				    cases[i].input, err);
			connstr_format(&cs, buf, sizeof(buf));
			snprintf(name, sizeof(name), "case %zu normalized", i);
			CHECK_STR(rc == 0 ? buf : "", cases[i].normal, name);
			continue;
		}
		snprintf(name, sizeof(name), "case %zu rejected", i);
		CHECK_INT(rc, -1, name);
		snprintf(name, sizeof(name), "case %zu error text", i);
		CHECK(strstr(err, cases[i].error) != NULL, name);
		if (strstr(err, cases[i].error) == NULL)
			printf("#   input: \"%s\"\n#   error: %s\n#   want: %s\n",
			    cases[i].input, err, cases[i].error);
		snprintf(name, sizeof(name), "case %zu shows the form", i);
		CHECK(strstr(err, "{TCP|TLS:}host{+port}{:profile}") != NULL,
		    name);
	}
}

/* Field values behind the normalized form. */
static void
test_fields(void)
{
	struct connstr	 cs;
	char		 err[512], buf[8];

	CHECK_INT(connstr_parse("TLS:[::1]+4650:p", &cs, err, sizeof(err)), 0,
	    "fields ipv6 parses");
	CHECK_INT(cs.connector, CONNSTR_TLS, "fields ipv6 connector");
	CHECK_STR(cs.host, "::1", "fields ipv6 host without brackets");
	CHECK_INT(cs.host_is_ip, 1, "fields ipv6 is ip");
	CHECK_INT(cs.host_is_ipv6, 1, "fields ipv6 flag");
	CHECK_INT(cs.port, 4650, "fields ipv6 port");
	CHECK_STR(cs.profile, "p", "fields ipv6 profile");

	CHECK_INT(connstr_parse("192.0.2.7", &cs, err, sizeof(err)), 0,
	    "fields ipv4 parses");
	CHECK_INT(cs.host_is_ip, 1, "fields ipv4 is ip");
	CHECK_INT(cs.host_is_ipv6, 0, "fields ipv4 not ipv6");
	CHECK_STR(cs.profile, "", "fields ipv4 no profile");

	CHECK_INT(connstr_parse("Mail.Example", &cs, err, sizeof(err)), 0,
	    "fields dns parses");
	CHECK_INT(cs.host_is_ip, 0, "fields dns not ip");
	CHECK_STR(cs.host, "mail.example", "fields dns lower case");

	/* connstr_format() returns the full length like snprintf. */
	CHECK_INT(connstr_format(&cs, buf, sizeof(buf)),
	    strlen("TCP:mail.example+25"), "format returns full length");
	CHECK_STR(buf, "TCP:mai", "format truncates");
}

/* Length limits: 253-character host, 63-character labels and profile. */
static void
test_limits(void)
{
	struct connstr	 cs;
	char		 s[1100], err[512];
	int		 i;

	/* Four labels of 62 characters and one of 1: 4 * 63 + 1 = 253. */
	s[0] = '\0';
	for (i = 0; i < 4; i++) {
		memset(s + strlen(s), 'h', 62);
		s[(i + 1) * 63 - 1] = '.';
		s[(i + 1) * 63] = '\0';
	}
	strcat(s, "x");
	CHECK_INT(strlen(s), 253, "limits 253-char host built");
	CHECK_INT(connstr_parse(s, &cs, err, sizeof(err)), 0,
	    "limits 253-char host accepted");
	strcat(s, "y");
	CHECK_INT(connstr_parse(s, &cs, err, sizeof(err)), -1,
	    "limits 254-char host rejected");
	CHECK(strstr(err, "longer than 253") != NULL,
	    "limits 254-char host message");

	memset(s, 'a', 64);
	strcpy(s + 64, ".example");
	CHECK_INT(connstr_parse(s, &cs, err, sizeof(err)), -1,
	    "limits 64-char label rejected");
	CHECK(strstr(err, "longer than 63") != NULL,
	    "limits 64-char label message");

	strcpy(s, "TLS:mail:");
	memset(s + 9, 'p', 63);
	s[72] = '\0';
	CHECK_INT(connstr_parse(s, &cs, err, sizeof(err)), 0,
	    "limits 63-char profile accepted");
	strcat(s, "p");
	CHECK_INT(connstr_parse(s, &cs, err, sizeof(err)), -1,
	    "limits 64-char profile rejected");

	memset(s, 'a', 1025);
	s[1025] = '\0';
	CHECK_INT(connstr_parse(s, &cs, err, sizeof(err)), -1,
	    "limits 1025-byte string rejected");
	CHECK(strstr(err, "longer than 1024") != NULL,
	    "limits 1025-byte string message");
	CHECK(strlen(err) < 300, "limits message quotes a prefix only");
}

int
main(void)
{
	test_table();
	test_fields();
	test_limits();
	return check_done();
}
