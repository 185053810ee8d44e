/* The snapshot directory on disk: DIR/state and DIR/memory (snapshot.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/snapshot.h"

#define PAGE 4096u

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)(const void *)p;
	for (unsigned i = 0; i < PAGE / 8; i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

static int write_all(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Guest RAM region by region, each at its offset in the file (the regions in
 * order, back to back), skipping all-zero pages; then the trailer. */
static int write_memory(int fd, const struct snapshot *s, const struct guest_mem *mem)
{
	off_t off = 0;
	for (unsigned r = 0; r < mem->nregions; r++) {
		const uint8_t *h = mem->regions[r].host;
		uint64_t size = mem->regions[r].size;
		uint64_t i = 0;
		while (i < size) {
			if (page_is_zero(h + i)) {
				i += PAGE;
				continue;
			}
			uint64_t j = i + PAGE;
			while (j < size && !page_is_zero(h + j) && j - i < (64u << 20))
				j += PAGE;
			if (write_all(fd, h + i, j - i, off + (off_t)i) < 0)
				return -1;
			i = j;
		}
		off += (off_t)size;
	}
	uint8_t trailer[SNAP_MEM_TRAILER] = {0};
	memcpy(trailer, SNAP_MEM_MAGIC, 8);
	memcpy(trailer + 8, s->id, SNAP_ID_SIZE);
	if (write_all(fd, trailer, sizeof(trailer), off) < 0)
		return -1;
	return ftruncate(fd, off + (off_t)sizeof(trailer));
}

static int join(char *out, size_t cap, const char *dir, const char *name, struct msb_err *err)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= cap)
		return msb_err_set(err, MSB_EK_USAGE, 0, "snapshot directory path %s is too long",
				   dir);
	return 0;
}

int snap_write_dir(const char *dir, struct snapshot *s, const struct guest_mem *mem,
		   struct msb_err *err)
{
	char mem_tmp[PATH_MAX], mem_path[PATH_MAX], st_tmp[PATH_MAX], st_path[PATH_MAX];
	if (join(mem_tmp, sizeof(mem_tmp), dir, "memory.tmp", err) < 0 ||
	    join(mem_path, sizeof(mem_path), dir, "memory", err) < 0 ||
	    join(st_tmp, sizeof(st_tmp), dir, "state.tmp", err) < 0 ||
	    join(st_path, sizeof(st_path), dir, "state", err) < 0)
		return -1;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return msb_err_sys(err, "creating snapshot directory %s", dir);
	if (getrandom(s->id, sizeof(s->id), 0) != (ssize_t)sizeof(s->id))
		return msb_err_sys(err, "getrandom");

	uint8_t *state = NULL;
	size_t state_len = 0;
	if (snap_encode(s, &state, &state_len, err) < 0)
		return -1;

	int rc = -1;
	int mfd = open(mem_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int sfd = -1;
	if (mfd < 0) {
		msb_err_sys(err, "creating %s", mem_tmp);
		goto out;
	}
	if (write_memory(mfd, s, mem) < 0 || fsync(mfd) < 0) {
		msb_err_sys(err, "writing %s", mem_tmp);
		goto out;
	}
	sfd = open(st_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (sfd < 0) {
		msb_err_sys(err, "creating %s", st_tmp);
		goto out;
	}
	if (write_all(sfd, state, state_len, 0) < 0 || fsync(sfd) < 0) {
		msb_err_sys(err, "writing %s", st_tmp);
		goto out;
	}
	/* Memory first: until the new state is in place, an old state names the
	 * old id, which the new memory's trailer does not match (refused, never
	 * mixed). */
	if (rename(mem_tmp, mem_path) < 0) {
		msb_err_sys(err, "renaming %s", mem_tmp);
		goto out;
	}
	if (rename(st_tmp, st_path) < 0) {
		msb_err_sys(err, "renaming %s", st_tmp);
		goto out;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	if (mfd >= 0)
		close(mfd);
	if (sfd >= 0)
		close(sfd);
	if (rc < 0) {
		unlink(mem_tmp);
		unlink(st_tmp);
	}
	free(state);
	return rc;
}

static int read_state(const char *path, uint8_t **buf, size_t *len, struct msb_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_set(err, errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_SYSTEM, errno,
				   "opening %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return msb_err_sys(err, "stat %s", path);
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)SNAP_STATE_MAX + SNAP_HEADER_SIZE) {
		close(fd);
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "%s is not a regular file of at most %u bytes", path,
				   SNAP_STATE_MAX);
	}
	size_t n = (size_t)st.st_size;
	uint8_t *b = malloc(n ? n : 1);
	if (!b) {
		close(fd);
		return msb_err_sys(err, "allocating");
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*buf = b;
	*len = got;
	return 0;
}

int snap_read_dir(const char *dir, struct snapshot *s, int *mem_fd, struct msb_err *err)
{
	char st_path[PATH_MAX], mem_path[PATH_MAX];
	memset(s, 0, sizeof(*s));
	if (join(st_path, sizeof(st_path), dir, "state", err) < 0 ||
	    join(mem_path, sizeof(mem_path), dir, "memory", err) < 0)
		return -1;
	uint8_t *buf = NULL;
	size_t len = 0;
	if (read_state(st_path, &buf, &len, err) < 0)
		return -1;
	int rc = snap_decode(buf, len, s, err);
	free(buf);
	if (rc < 0)
		return msb_err_wrap(err, "%s", st_path);

	int fd = open(mem_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		msb_err_set(err, errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_SYSTEM, errno,
			    "opening %s", mem_path);
		goto fail;
	}
	struct stat st;
	uint8_t trailer[8 + SNAP_ID_SIZE];
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != s->mem_bytes + SNAP_MEM_TRAILER) {
		msb_err_set(err, MSB_EK_CORRUPT, 0,
			    "%s is %lld bytes, the snapshot needs %llu (truncated or not "
			    "this snapshot's memory)",
			    mem_path, (long long)st.st_size,
			    (unsigned long long)(s->mem_bytes + SNAP_MEM_TRAILER));
		goto fail;
	}
	if (pread(fd, trailer, sizeof(trailer), (off_t)s->mem_bytes) != (ssize_t)sizeof(trailer) ||
	    memcmp(trailer, SNAP_MEM_MAGIC, 8) != 0 ||
	    memcmp(trailer + 8, s->id, SNAP_ID_SIZE) != 0) {
		msb_err_set(err, MSB_EK_CORRUPT, 0,
			    "%s belongs to another snapshot than %s (its trailer does not match)",
			    mem_path, st_path);
		goto fail;
	}
	*mem_fd = fd;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	snap_free(s);
	return -1;
}
