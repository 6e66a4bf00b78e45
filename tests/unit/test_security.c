/*
 * test_security.c - SetSecurity properties, driver parameters and the
 * digest that separates security contexts in the pool.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "security.h"

struct properties_case {
	const char	*properties;
	int		 want;		/* return value */
	int		 kind;		/* when want == 0 */
	int		 mandatory;
	const char	*err_part;	/* when want < 0 */
};

static const struct properties_case properties_cases[] = {
	{ "SMTP=", 1, 0, 0, NULL },
	{ "smtp=", 1, 0, 0, NULL },
	{ "SMTP=UStartTLSSMTP", 0, SECURITY_STARTTLS, 1, NULL },
	{ "SMTP=UAuthLoginSMTP;USE=MAND", 0, SECURITY_AUTH_LOGIN, 1, NULL },
	{ "SMTP=UAuthLoginSMTP;use=opt", 0, SECURITY_AUTH_LOGIN, 0, NULL },
	{ "Smtp=UAuthPlainSMTP;USE=Opt", 0, SECURITY_AUTH_PLAIN, 0, NULL },
	{ "SMTP=UAuthXOAUTH2SMTP", 0, SECURITY_AUTH_XOAUTH2, 1, NULL },
	{ "SMTP=UAuthOAuthBearerSMTP", 0, SECURITY_AUTH_OAUTHBEARER, 1,
	    NULL },
	{ "SMTP=uauthloginsmtp", SECURITY_UNKNOWN_DRIVER, 0, 0,
	    "case-sensitive" },
	{ "SMTP=UAuthCramSMTP", SECURITY_UNKNOWN_DRIVER, 0, 0,
	    "UAuthCramSMTP" },
	{ "SMTP=UAuthLoginSMTP;USE=MAYBE", SECURITY_INVALID_PROPERTIES, 0, 0,
	    "USE=MAYBE" },
	{ "SMTP=UAuthLoginSMTP;", SECURITY_INVALID_PROPERTIES, 0, 0,
	    "USE=MAND" },
	{ "POP=UAuthLoginSMTP", SECURITY_INVALID_PROPERTIES, 0, 0,
	    "SMTP=" },
	{ "", SECURITY_INVALID_PROPERTIES, 0, 0, "SMTP=" },
};

static void
test_properties(void)
{
	enum security_kind	 kind;
	char			 err[256], what[160], longprop[300];
	size_t			 i;
	int			 mandatory, rc;

	for (i = 0; i < sizeof(properties_cases) /
	    sizeof(properties_cases[0]); i++) {
		const struct properties_case *c = &properties_cases[i];

		err[0] = '\0';
		kind = SECURITY_STARTTLS;
		mandatory = -1;
		rc = security_parse_properties(c->properties, &kind,
		    &mandatory, err, sizeof(err));
		snprintf(what, sizeof(what), "properties \"%s\" result",
		    c->properties);
		CHECK_INT(rc, c->want, what);
		if (c->want == 0) {
			snprintf(what, sizeof(what), "properties \"%s\" kind",
			    c->properties);
			CHECK_INT(kind, c->kind, what);
			snprintf(what, sizeof(what), "properties \"%s\" USE",
			    c->properties);
			CHECK_INT(mandatory, c->mandatory, what);
		}
		if (c->err_part != NULL) {
			snprintf(what, sizeof(what), "properties \"%s\" "
			    "message", c->properties);
			CHECK(strstr(err, c->err_part) != NULL, what);
		}
	}

	memset(longprop, 'A', sizeof(longprop) - 1);
	longprop[sizeof(longprop) - 1] = '\0';
	memcpy(longprop, "SMTP=", 5);
	CHECK_INT(security_parse_properties(longprop, &kind, &mandatory, err,
	    sizeof(err)), SECURITY_INVALID_PROPERTIES,
	    "properties over 255 bytes rejected");
}

struct parameters_case {
	const char	*properties;
	const char	*parameters;
	int		 ok;
	const char	*err_part;
};

static const struct parameters_case parameters_cases[] = {
	{ "SMTP=UStartTLSSMTP", "", 1, NULL },
	{ "SMTP=UStartTLSSMTP", "user=x", 0, "no parameters" },
	{ "SMTP=UAuthLoginSMTP", "user=bob;password=s3cret", 1, NULL },
	{ "SMTP=UAuthLoginSMTP", "USER=bob;Password=s3cret", 1, NULL },
	{ "SMTP=UAuthLoginSMTP", "user=bob", 0, "\"password\" is missing" },
	{ "SMTP=UAuthLoginSMTP", "password=x", 0, "\"user\" is missing" },
	{ "SMTP=UAuthLoginSMTP", "user=bob;password=", 0, "empty" },
	{ "SMTP=UAuthLoginSMTP", "user=bob;password=x;token=y", 0,
	    "unknown parameter \"token\"" },
	{ "SMTP=UAuthLoginSMTP", "user=bob;user=al;password=x", 0, "twice" },
	{ "SMTP=UAuthLoginSMTP", "user=bob;password", 0, "without '='" },
	{ "SMTP=UAuthLoginSMTP", "user=bob;password=a\rb", 0,
	    "control character" },
	{ "SMTP=UAuthLoginSMTP", "user=bob;password=a;;b", 1, NULL },
	{ "SMTP=UAuthPlainSMTP", "user=bob;password=x;authzid=admin", 1,
	    NULL },
	{ "SMTP=UAuthXOAUTH2SMTP", "user=bob;token=ya29.abc", 1, NULL },
	{ "SMTP=UAuthXOAUTH2SMTP", "user=bob;password=x", 0,
	    "user and token" },
	{ "SMTP=UAuthOAuthBearerSMTP", "user=bob;token=t", 1, NULL },
};

static void
test_parameters(void)
{
	struct security		 sec;
	enum security_kind	 kind;
	char			 err[256], what[200];
	size_t			 i;
	int			 mandatory, rc;

	for (i = 0; i < sizeof(parameters_cases) /
	    sizeof(parameters_cases[0]); i++) {
		const struct parameters_case *c = &parameters_cases[i];

		memset(&sec, 0, sizeof(sec));
		security_parse_properties(c->properties, &kind, &mandatory,
		    err, sizeof(err));
		CHECK_INT(security_append(&sec, kind, mandatory,
		    c->parameters, err, sizeof(err)), SECURITY_OK,
		    "append accepts any parameters");
		err[0] = '\0';
		rc = security_check(&sec, err, sizeof(err));
		snprintf(what, sizeof(what), "%s \"%s\" check", c->properties,
		    c->parameters);
		CHECK_INT(rc, c->ok ? 0 : -1, what);
		if (c->err_part != NULL) {
			snprintf(what, sizeof(what), "%s \"%s\" message",
			    c->properties, c->parameters);
			CHECK(strstr(err, c->err_part) != NULL, what);
		}
		/* No message may echo a secret value. */
		snprintf(what, sizeof(what), "%s \"%s\" message hides "
		    "secrets", c->properties, c->parameters);
		CHECK(strstr(err, "s3cret") == NULL &&
		    strstr(err, "ya29") == NULL, what);
		security_clear(&sec);
	}

	memset(&sec, 0, sizeof(sec));
	security_append(&sec, SECURITY_AUTH_LOGIN, 1,
	    "user=bob;password=a;;b", err, sizeof(err));
	security_check(&sec, err, sizeof(err));
	CHECK_STR(sec.drivers[0].secret, "a;b", "double semicolon unescaped");
	security_clear(&sec);
}

static void
test_order_and_limits(void)
{
	struct security	sec;
	char		err[256], big[5000];
	size_t		i;

	memset(&sec, 0, sizeof(sec));
	CHECK_INT(security_append(&sec, SECURITY_AUTH_LOGIN, 1, "", err,
	    sizeof(err)), SECURITY_OK, "first driver appended");
	CHECK_INT(security_append(&sec, SECURITY_STARTTLS, 1, "", err,
	    sizeof(err)), SECURITY_BAD_ORDER, "STARTTLS after AUTH rejected");
	CHECK(strstr(err, "first") != NULL, "order message says first");
	CHECK_INT(security_append(&sec, SECURITY_AUTH_LOGIN, 0, "", err,
	    sizeof(err)), SECURITY_BAD_ORDER, "repeated driver rejected");
	CHECK_INT(sec.count, 1, "rejected drivers not added");

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT(security_append(&sec, SECURITY_AUTH_PLAIN, 1, big, err,
	    sizeof(err)), SECURITY_PARAMETERS_TOO_LONG,
	    "parameters over 4095 bytes rejected");
	big[SECURITY_MAX_PARAMETERS] = '\0';
	CHECK_INT(security_append(&sec, SECURITY_AUTH_PLAIN, 1, big, err,
	    sizeof(err)), SECURITY_OK, "parameters of 4095 bytes accepted");
	security_clear(&sec);
	CHECK_INT(sec.count, 0, "clear empties the context");

	/* Drivers may not repeat, so fill the context by hand to reach the
	 * limit. */
	memset(&sec, 0, sizeof(sec));
	for (i = 0; i < SECURITY_MAX_DRIVERS; i++)
		sec.drivers[i].kind = SECURITY_AUTH_LOGIN;
	sec.count = SECURITY_MAX_DRIVERS;
	CHECK_INT(security_append(&sec, SECURITY_AUTH_PLAIN, 1, "", err,
	    sizeof(err)), SECURITY_TOO_MANY_DRIVERS, "ninth driver rejected");
}

/* Builds and checks a one-driver context and writes its description. */
static void
test_describe_one(enum security_kind kind, int mandatory,
    const char *parameters, char *out, size_t len)
{
	struct security	sec;
	char		err[256];

	memset(&sec, 0, sizeof(sec));
	security_append(&sec, kind, mandatory, parameters, err, sizeof(err));
	security_check(&sec, err, sizeof(err));
	security_describe(&sec, out, len);
	security_clear(&sec);
}

static void
test_digest(void)
{
	char		a[SECURITY_MAX_DESCRIPTION], b[SECURITY_MAX_DESCRIPTION];
	struct security	sec, copy;
	char		err[256];

	CHECK_INT(security_init_key(), 0, "digest key created");

	test_describe_one(SECURITY_AUTH_LOGIN, 1, "user=bob;password=one",
	    a, sizeof(a));
	test_describe_one(SECURITY_AUTH_LOGIN, 1, "password=one;user=bob",
	    b, sizeof(b));
	CHECK_STR(a, b, "parameter order does not change the digest");
	CHECK(strncmp(a, "UAuthLoginSMTP/MAND@", 20) == 0,
	    "description starts with the driver list");
	CHECK(strstr(a, "one") == NULL, "description hides the password");

	test_describe_one(SECURITY_AUTH_LOGIN, 1, "user=bob;password=two",
	    b, sizeof(b));
	CHECK(strcmp(a, b) != 0, "another password gives another digest");
	test_describe_one(SECURITY_AUTH_LOGIN, 0, "user=bob;password=one",
	    b, sizeof(b));
	CHECK(strcmp(a, b) != 0, "another USE flag gives another digest");
	test_describe_one(SECURITY_AUTH_PLAIN, 1, "user=bob;password=one",
	    b, sizeof(b));
	CHECK(strcmp(a, b) != 0, "another driver gives another digest");
	test_describe_one(SECURITY_AUTH_LOGIN, 1, "user=bo;password=bone",
	    b, sizeof(b));
	CHECK(strcmp(a, b) != 0, "shifted field boundary changes digest");

	memset(&sec, 0, sizeof(sec));
	security_describe(&sec, a, sizeof(a));
	CHECK_STR(a, "", "empty context has an empty description");

	security_append(&sec, SECURITY_STARTTLS, 0, "", err, sizeof(err));
	security_append(&sec, SECURITY_AUTH_XOAUTH2, 1, "user=u;token=t",
	    err, sizeof(err));
	security_check(&sec, err, sizeof(err));
	CHECK_INT(security_copy(&copy, &sec), 0, "context copied");
	security_describe(&sec, a, sizeof(a));
	security_describe(&copy, b, sizeof(b));
	CHECK_STR(a, b, "copy has the same digest");
	security_driver_names(&sec, a, sizeof(a));
	CHECK_STR(a, "UStartTLSSMTP/OPT+UAuthXOAUTH2SMTP/MAND",
	    "driver names listed in order");
	security_driver_properties(&sec.drivers[1], a, sizeof(a));
	CHECK_STR(a, "SMTP=UAuthXOAUTH2SMTP;USE=MAND",
	    "driver properties string");
	security_clear(&sec);
	security_clear(&copy);
}

int
main(void)
{
	test_properties();
	test_parameters();
	test_order_and_limits();
	test_digest();
	return check_done();
}
