/*
 * spool.h - a byte store that stays in memory up to a limit and then
 * spills to an unlinked temporary file, so large messages never sit whole
 * in memory.  Written once, then read sequentially any number of times
 * (a retried transaction reads it again from the start).
 */
#ifndef SMTPOOL_SPOOL_H
#define SMTPOOL_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct spool;

/* mem_limit: bytes kept in memory before spilling; dir: where the
 * temporary file goes (opened with O_TMPFILE, or mkstemp then unlink).
 * Returns NULL on ENOMEM. */
struct spool *spool_new(size_t mem_limit, const char *dir);
/* Appends len bytes.  Returns 0, or -1 with errno set (ENOSPC, EIO...). */
int spool_write(struct spool *, const void *data, size_t len);
uint64_t spool_size(const struct spool *);
/* Returns 1 once the spool moved to a file. */
int spool_on_disk(const struct spool *);
/* Moves the read position back to the start. */
void spool_rewind(struct spool *);
/* Copies up to len bytes from the read position.  Returns the count, 0 at
 * the end, -1 with errno on a read error. */
ssize_t spool_read(struct spool *, void *buf, size_t len);
void spool_free(struct spool *);

#endif
