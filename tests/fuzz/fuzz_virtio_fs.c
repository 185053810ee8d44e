/* The virtio-fs server from arbitrary requests: the input is a sequence of
 * records (u16 little-endian length, then that many bytes: a fuse_in_header
 * and its arguments) answered in order after a FUSE_INIT, on a volume that
 * is a fresh server over one scratch directory.  Besides the sanitizers, a
 * check that nothing outside the volume changed: the directory holding it
 * and a file next to it keep their modification times. */
#include <fcntl.h>
#include <ftw.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtio/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char parent[128], vol[160], secret[160];
static uint8_t out[FS_REQ_MAX];
static struct stat parent_st, secret_st;

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	remove(path);
	return 0;
}

/* The scratch directory goes when the fuzzer exits. */
static void teardown(void)
{
	nftw(parent, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	snprintf(parent, sizeof(parent), "/tmp/msb-fuzz-fs-XXXXXX");
	if (!mkdtemp(parent))
		__builtin_trap();
	snprintf(vol, sizeof(vol), "%s/vol", parent);
	snprintf(secret, sizeof(secret), "%s/secret", parent);
	if (mkdir(vol, 0700) < 0)
		__builtin_trap();
	int fd = open(secret, O_WRONLY | O_CREAT, 0600);
	if (fd < 0 || write(fd, "secret\n", 7) != 7)
		__builtin_trap();
	close(fd);
	char p[200];
	snprintf(p, sizeof(p), "%s/out", vol);
	if (symlink(secret, p) < 0 || symlink("..", (snprintf(p, sizeof(p), "%s/up", vol), p)) < 0)
		__builtin_trap();
	snprintf(p, sizeof(p), "%s/f", vol);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	if (fd < 0 || write(fd, "data\n", 5) != 5)
		__builtin_trap();
	close(fd);
	if (stat(parent, &parent_st) < 0 || stat(secret, &secret_st) < 0)
		__builtin_trap();
	atexit(teardown);
}

static bool same_time(const struct stat *a, const struct stat *b)
{
	return a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_size == b->st_size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!parent[0])
		setup();
	if (size < 1)
		return 0;
	int fd = open(vol, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		__builtin_trap();
	struct fs_server *s = fs_server_new(fd, data[0] & 1);
	if (!s)
		return 0;
	if (data[0] & 4) /* a server run by a user who is not root: owners mapped */
		fs_server_set_owner(s, 4321, 4322);
	struct {
		struct fuse_in_header h;
		struct fuse_init_in i;
	} init = {.h = {.len = sizeof(init), .opcode = FUSE_INIT, .unique = 1},
		  .i = {.major = 7, .minor = 31, .max_readahead = 65536, .flags = ~0u}};
	fs_server_dispatch(s, (const uint8_t *)&init, sizeof(init), out, sizeof(out));
	size_t cap = (data[0] & 2) ? sizeof(out) : 256;
	for (size_t pos = 1; pos + 2 <= size;) {
		size_t n = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
		pos += 2;
		if (n > size - pos)
			n = size - pos;
		/* A copy, so that the sanitizers see reads past the record. */
		uint8_t *req = malloc(n ? n : 1);
		if (!req)
			break;
		memcpy(req, data + pos, n);
		size_t r = fs_server_dispatch(s, req, n, out, cap);
		free(req);
		if (r > cap)
			__builtin_trap();
		pos += n;
	}
	fs_server_free(s);
	struct stat st;
	if (stat(parent, &st) < 0 || !same_time(&st, &parent_st) || stat(secret, &st) < 0 ||
	    !same_time(&st, &secret_st))
		__builtin_trap(); /* something outside the volume changed */
	return 0;
}
