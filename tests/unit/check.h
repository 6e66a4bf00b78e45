/*
 * check.h - a minimal TAP producer for the unit tests.
 *
 * Each CHECK prints one "ok N - what" or "not ok N - what" line;
 * check_done() prints the plan and returns the exit status (1 if any check
 * failed).  Meson runs the binaries with protocol 'tap', and tests/run-all
 * counts the lines.
 */
#ifndef SMTPOOL_CHECK_H
#define SMTPOOL_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_count;
static int check_failed;

static inline void
check_report(int ok, const char *file, int line, const char *what)
{
	check_count++;
	if (!ok)
		check_failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", check_count, what);
	if (!ok)
		printf("# failed at %s:%d\n", file, line);
	fflush(stdout);
}

/* Checks a condition; what names the case in the TAP line. */
#define CHECK(cond, what) check_report(!!(cond), __FILE__, __LINE__, (what))

/* Checks that two C strings are equal, printing both when they differ. */
#define CHECK_STR(got, want, what) do {					\
	const char *check_got_ = (got), *check_want_ = (want);		\
	int check_ok_ = check_got_ != NULL && check_want_ != NULL &&	\
	    strcmp(check_got_, check_want_) == 0;			\
	check_report(check_ok_, __FILE__, __LINE__, (what));		\
	if (!check_ok_)							\
		printf("#   got:  \"%s\"\n#   want: \"%s\"\n",		\
		    check_got_ ? check_got_ : "(null)",			\
		    check_want_ ? check_want_ : "(null)");		\
} while (0)

/* Checks that two integers are equal, printing both when they differ. */
#define CHECK_INT(got, want, what) do {					\
	long long check_got_ = (long long)(got);			\
	long long check_want_ = (long long)(want);			\
	check_report(check_got_ == check_want_, __FILE__, __LINE__,	\
	    (what));							\
	if (check_got_ != check_want_)					\
		printf("#   got:  %lld\n#   want: %lld\n", check_got_,	\
		    check_want_);					\
} while (0)

static inline int
check_done(void)
{
	printf("1..%d\n", check_count);
	return check_failed ? 1 : 0;
}

#endif
