/*
 * test_spool.c - the in-memory and on-disk modes of the spool, the move
 * between them, and reads after rewind.
 */
#include <sys/types.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "spool.h"

/* Byte i of the test pattern, so shifted or dropped bytes show up. */
static unsigned char
pattern_byte(size_t i)
{
	return (unsigned char)((i * 7 + i / 251) & 0xff);
}

/* Writes total bytes in pieces of step; returns 0 or -1. */
static int
spool_fill(struct spool *sp, size_t total, size_t step)
{
	unsigned char	 buf[4096];
	size_t		 off, n, i;

	for (off = 0; off < total; off += n) {
		n = total - off < step ? total - off : step;
		if (n > sizeof(buf))
			n = sizeof(buf);
		for (i = 0; i < n; i++)
			buf[i] = pattern_byte(off + i);
		if (spool_write(sp, buf, n) == -1)
			return -1;
	}
	return 0;
}

/* Reads everything back in pieces of step; returns 1 when the bytes and
 * the count match the pattern. */
static int
spool_verify(struct spool *sp, size_t total, size_t step)
{
	unsigned char	 buf[4096];
	size_t		 off = 0, i;
	ssize_t		 n;

	if (step > sizeof(buf))
		step = sizeof(buf);
	while ((n = spool_read(sp, buf, step)) > 0) {
		for (i = 0; i < (size_t)n; i++)
			if (buf[i] != pattern_byte(off + i))
				return 0;
		off += (size_t)n;
	}
	return n == 0 && off == total;
}

/* Round trips: memory limit, bytes written, write and read piece sizes,
 * and whether the spool should end up on disk. */
static const struct {
	size_t	 mem_limit;
	size_t	 total;
	size_t	 write_step;
	size_t	 read_step;
	int	 on_disk;
} trip_cases[] = {
	{ 1024, 0, 1, 1, 0 },
	{ 1024, 1, 1, 1, 0 },
	{ 1024, 1024, 100, 7, 0 },
	{ 1024, 1025, 100, 7, 1 },
	{ 0, 1, 1, 1, 1 },
	{ 16, 100000, 333, 4096, 1 },
	{ 1 << 20, 300000, 4096, 1000, 0 },
	{ 4096, 4096, 4096, 4096, 0 },
	{ 4096, 4097, 4096, 1, 1 },
};

static void
test_round_trip(const char *dir)
{
	struct spool	*sp;
	char		 name[128];
	size_t		 i;

	for (i = 0; i < sizeof(trip_cases) / sizeof(trip_cases[0]); i++) {
		sp = spool_new(trip_cases[i].mem_limit, dir);
		snprintf(name, sizeof(name), "trip %zu spool created", i);
		CHECK(sp != NULL, name);
		if (sp == NULL)
			continue;
		snprintf(name, sizeof(name), "trip %zu writes", i);
		CHECK_INT(spool_fill(sp, trip_cases[i].total,
		    trip_cases[i].write_step), 0, name);
		snprintf(name, sizeof(name), "trip %zu size", i);
		CHECK_INT(spool_size(sp), trip_cases[i].total, name);
		snprintf(name, sizeof(name), "trip %zu on disk", i);
		CHECK_INT(spool_on_disk(sp), trip_cases[i].on_disk, name);
		snprintf(name, sizeof(name), "trip %zu first read", i);
		CHECK(spool_verify(sp, trip_cases[i].total,
		    trip_cases[i].read_step), name);
		spool_rewind(sp);
		snprintf(name, sizeof(name), "trip %zu read after rewind", i);
		CHECK(spool_verify(sp, trip_cases[i].total,
		    trip_cases[i].read_step + 1), name);
		spool_free(sp);
	}
}

/* Rewinding after a partial read starts over, and interleaved reads and
 * writes keep their own positions. */
static void
test_partial_rewind(const char *dir, size_t mem_limit, const char *mode)
{
	struct spool	*sp;
	char		 buf[16], name[128];
	ssize_t		 n;

	sp = spool_new(mem_limit, dir);
	CHECK(sp != NULL, "partial rewind spool created");
	if (sp == NULL)
		return;
	CHECK_INT(spool_write(sp, "hello ", 6), 0, "partial write one");
	n = spool_read(sp, buf, 3);
	snprintf(name, sizeof(name), "%s: read 3 bytes", mode);
	CHECK_INT(n, 3, name);
	snprintf(name, sizeof(name), "%s: first bytes", mode);
	CHECK(memcmp(buf, "hel", 3) == 0, name);
	CHECK_INT(spool_write(sp, "world", 5), 0, "partial write two");
	n = spool_read(sp, buf, sizeof(buf));
	snprintf(name, sizeof(name), "%s: read continues", mode);
	CHECK_INT(n, 8, name);
	snprintf(name, sizeof(name), "%s: continued bytes", mode);
	CHECK(memcmp(buf, "lo world", 8) == 0, name);
	snprintf(name, sizeof(name), "%s: end returns 0", mode);
	CHECK_INT(spool_read(sp, buf, sizeof(buf)), 0, name);
	spool_rewind(sp);
	n = spool_read(sp, buf, sizeof(buf));
	snprintf(name, sizeof(name), "%s: rewind reads all", mode);
	CHECK_INT(n, 11, name);
	snprintf(name, sizeof(name), "%s: rewind bytes", mode);
	CHECK(memcmp(buf, "hello world", 11) == 0, name);
	snprintf(name, sizeof(name), "%s: on disk", mode);
	CHECK_INT(spool_on_disk(sp), mem_limit < 11, name);
	spool_free(sp);
}

/* A missing directory fails at spill time with errno set, and the spool
 * keeps what it had in memory. */
static void
test_missing_dir(void)
{
	struct spool	*sp;
	char		 buf[16];
	int		 rc;

	sp = spool_new(4, "/nonexistent-smtpool-test-dir/spool");
	CHECK(sp != NULL, "missing dir spool created");
	if (sp == NULL)
		return;
	CHECK_INT(spool_write(sp, "abc", 3), 0, "missing dir memory write");
	errno = 0;
	rc = spool_write(sp, "defg", 4);
	CHECK_INT(rc, -1, "missing dir spill fails");
	CHECK_INT(errno, ENOENT, "missing dir errno ENOENT");
	CHECK_INT(spool_on_disk(sp), 0, "missing dir stays in memory");
	CHECK_INT(spool_size(sp), 3, "missing dir size unchanged");
	CHECK_INT(spool_read(sp, buf, sizeof(buf)), 3,
	    "missing dir memory still readable");
	spool_free(sp);
}

/* No file is left behind in the spool directory. */
static void
test_no_leftover(const char *dir)
{
	struct spool	*sp;
	char		 cmd[512];
	int		 rc;

	sp = spool_new(0, dir);
	CHECK(sp != NULL, "leftover spool created");
	if (sp == NULL)
		return;
	CHECK_INT(spool_write(sp, "x", 1), 0, "leftover write");
	CHECK_INT(spool_on_disk(sp), 1, "leftover on disk");
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", dir);
	rc = system(cmd);
	CHECK_INT(rc, 0, "spool file has no name in dir");
	spool_free(sp);
}

int
main(void)
{
	char	 dir[] = "/tmp/smtpool-test-spool-XXXXXX";

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_round_trip(dir);
	test_partial_rewind(dir, 1 << 16, "memory");
	test_partial_rewind(dir, 0, "disk");
	test_partial_rewind(dir, 8, "spill mid-way");
	test_missing_dir();
	test_no_leftover(dir);
	CHECK_INT(rmdir(dir), 0, "spool dir empty at the end");
	return check_done();
}
