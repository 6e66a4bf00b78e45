/*
 * spool.c - a byte store that is kept in memory up to a limit and then
 * moved to an unlinked temporary file.
 *
 * While the total stays within mem_limit the bytes live in one growable
 * buffer.  The write that would pass the limit creates a file in the
 * spool directory with O_TMPFILE, so the file never has a name.  Where the
 * file system lacks O_TMPFILE, mkstemp() and unlink() are used instead.
 * The buffer is copied to the file and freed, and from then on every byte
 * goes to the file.  Writes append with write(); reads use pread() at their own read
 * position, so reading never disturbs where the next write lands.
 *
 * Failures return -1 with errno from the system call (ENOSPC, EIO,
 * ENOENT for a missing directory...), or NULL with ENOMEM from
 * spool_new().  A failed spill leaves the spool in memory as it was.  A
 * NULL or empty dir means /tmp.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"

struct spool {
	size_t		 mem_limit;
	char		*dir;
	unsigned char	*mem;		/* NULL once on disk */
	size_t		 mem_cap;
	int		 fd;		/* -1 while in memory */
	uint64_t	 size;		/* bytes written so far */
	uint64_t	 rpos;		/* read position */
};

struct spool *
spool_new(size_t mem_limit, const char *dir)
{
	struct spool	*sp;

	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return NULL;
	if ((sp->dir = strdup(dir != NULL && *dir != '\0' ? dir : "/tmp")) ==
	    NULL) {
		free(sp);
		return NULL;
	}
	sp->mem_limit = mem_limit;
	sp->fd = -1;
	return sp;
}

/* Writes all of len bytes to fd, retrying after EINTR and short writes. */
static int
spool_write_all(int fd, const unsigned char *p, size_t len, size_t *done)
{
	ssize_t	 n;

	*done = 0;
	while (*done < len) {
		n = write(fd, p + *done, len - *done);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			/* write() returning 0 for a regular file means no
			 * space could be allocated. */
			errno = ENOSPC;
			return -1;
		}
		*done += (size_t)n;
	}
	return 0;
}

/* Creates an unlinked temporary file in dir.  Returns its descriptor or
 * -1 with errno set. */
static int
spool_open_tmp(const char *dir)
{
	char	*path;
	int	 fd, saved;

#ifdef O_TMPFILE
	fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
	if (fd != -1)
		return fd;
	/* Only fall back when the kernel or file system lacks O_TMPFILE,
	 * because other errors (EACCES, ENOSPC...) would fail mkstemp()
	 * too. */
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL &&
	    errno != ENOENT)
		return -1;
#endif
	/* NOTE: the unit tests reach this fallback only where the test
	 * directory lacks O_TMPFILE support. */
	if (asprintf(&path, "%s/smtpool-spool-XXXXXX", dir) == -1) {
		errno = ENOMEM;
		return -1;
	}
	if ((fd = mkostemp(path, O_CLOEXEC)) == -1) {
		saved = errno;
		free(path);
		errno = saved;
		return -1;
	}
	/* The file only needs to live as long as the descriptor. */
	if (unlink(path) == -1) {
		saved = errno;
		close(fd);
		free(path);
		errno = saved;
		return -1;
	}
	free(path);
	return fd;
}

/* Moves the in-memory bytes to a new temporary file. */
static int
spool_spill(struct spool *sp)
{
	size_t	 done;
	int	 fd, saved;

	if ((fd = spool_open_tmp(sp->dir)) == -1)
		return -1;
	if (spool_write_all(fd, sp->mem, (size_t)sp->size, &done) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	free(sp->mem);
	sp->mem = NULL;
	sp->mem_cap = 0;
	sp->fd = fd;
	return 0;
}

/* Grows the buffer to hold at least need bytes, at most mem_limit. */
static int
spool_grow(struct spool *sp, size_t need)
{
	unsigned char	*p;
	size_t		 cap;

	if (need <= sp->mem_cap)
		return 0;
	cap = sp->mem_cap == 0 ? 4096 : sp->mem_cap;
	while (cap < need && cap <= SIZE_MAX / 2)
		cap *= 2;
	if (cap < need)
		cap = need;
	if (cap > sp->mem_limit)
		cap = sp->mem_limit;
	if ((p = realloc(sp->mem, cap)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	sp->mem = p;
	sp->mem_cap = cap;
	return 0;
}

int
spool_write(struct spool *sp, const void *data, size_t len)
{
	size_t	 done;

	if (len == 0)
		return 0;

	if (sp->fd == -1) {
		/* mem_limit bounds size, so the cast does not truncate. */
		size_t used = (size_t)sp->size;

		if (len <= sp->mem_limit - used) {
			if (spool_grow(sp, used + len) == -1)
				return -1;
			memcpy(sp->mem + used, data, len);
			sp->size += len;
			return 0;
		}
		if (spool_spill(sp) == -1)
			return -1;
	}

	if (spool_write_all(sp->fd, data, len, &done) == -1) {
		/* Count what reached the file so reads stay consistent. */
		sp->size += done;
		return -1;
	}
	sp->size += len;
	return 0;
}

uint64_t
spool_size(const struct spool *sp)
{
	return sp->size;
}

int
spool_on_disk(const struct spool *sp)
{
	return sp->fd != -1;
}

void
spool_rewind(struct spool *sp)
{
	sp->rpos = 0;
}

ssize_t
spool_read(struct spool *sp, void *buf, size_t len)
{
	uint64_t	 left = sp->size - sp->rpos;
	ssize_t		 n;

	if (len > left)
		len = (size_t)left;
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if (len == 0)
		return 0;

	if (sp->fd == -1) {
		memcpy(buf, sp->mem + sp->rpos, len);
		sp->rpos += len;
		return (ssize_t)len;
	}

	do {
		n = pread(sp->fd, buf, len, (off_t)sp->rpos);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if (n == 0) {
		/* The file is shorter than what was written to it. */
		errno = EIO;
		return -1;
	}
	sp->rpos += (uint64_t)n;
	return n;
}

void
spool_free(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->fd != -1)
		close(sp->fd);
	free(sp->mem);
	free(sp->dir);
	free(sp);
}
