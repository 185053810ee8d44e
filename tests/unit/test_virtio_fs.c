/* The virtio-fs server (src/virtio/fs_req.c, fs_ops.c) on a temporary host
 * directory: a normal session, then hostile requests: bad lengths, bad
 * nodeids and handles, names that try to leave the volume, symlinks that
 * point out of it, and changes to a read-only volume. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "virtio/fs.h"

#define OUT_MAX FS_REQ_MAX

static uint8_t in_buf[FS_REQ_MAX], out_buf[OUT_MAX];
static char root[256], outside[300];
static uint64_t unique;

/* A volume with a file, a directory and a host-made symlink pointing out of
 * it (at `outside`, a file next to the volume). */
static struct fs_server *server(struct test_ctx *t, bool readonly)
{
	snprintf(root, sizeof(root), "%s/msb-fs-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(root));
	char p[400];
	snprintf(outside, sizeof(outside), "%s.secret", root);
	FILE *f = fopen(outside, "w");
	CHECK(f);
	fputs("host secret\n", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/hello.txt", root);
	f = fopen(p, "w");
	CHECK(f);
	fputs("hello from the host\n", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/sub", root);
	CHECK(mkdir(p, 0755) == 0);
	snprintf(p, sizeof(p), "%s/out", root);
	CHECK(symlink(outside, p) == 0);
	snprintf(p, sizeof(p), "%s/outdir", root);
	CHECK(symlink("/etc", p) == 0);
	int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	CHECK(fd >= 0);
	struct fs_server *s = fs_server_new(fd, readonly);
	CHECK(s);
	return s;
}

static void cleanup(struct fs_server *s)
{
	fs_server_free(s);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root, outside);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
}

/* Send one request; returns the answer's error (0 or -errno) and leaves the
 * body at out_buf + sizeof(fuse_out_header); *body_len its length. */
static int call(struct fs_server *s, uint32_t opcode, uint64_t nodeid, const void *a, size_t alen,
		const void *b, size_t blen, size_t *body_len)
{
	struct fuse_in_header h = {
		.len = (uint32_t)(sizeof(h) + alen + blen),
		.opcode = opcode,
		.unique = ++unique,
		.nodeid = nodeid,
	};
	memcpy(in_buf, &h, sizeof(h));
	if (alen)
		memcpy(in_buf + sizeof(h), a, alen);
	if (blen)
		memcpy(in_buf + sizeof(h) + alen, b, blen);
	size_t n = fs_server_dispatch(s, in_buf, h.len, out_buf, OUT_MAX);
	if (n == 0)
		return 1; /* no answer */
	struct fuse_out_header o;
	memcpy(&o, out_buf, sizeof(o));
	if (o.len != n || o.unique != h.unique)
		return -9999;
	if (body_len)
		*body_len = n - sizeof(o);
	return o.error;
}

static void *body(void)
{
	return out_buf + sizeof(struct fuse_out_header);
}

static void init(struct test_ctx *t, struct fs_server *s)
{
	struct fuse_init_in in = {.major = 7, .minor = 31, .max_readahead = 1 << 20};
	size_t n;
	CHECK_INT(call(s, FUSE_INIT, 0, &in, sizeof(in), NULL, 0, &n), ==, 0);
	struct fuse_init_out o;
	memcpy(&o, body(), sizeof(o));
	CHECK_INT(o.major, ==, 7);
	CHECK_INT(o.minor, ==, 31);
	CHECK_INT(o.max_write, ==, FS_MAX_WRITE);
	CHECK(fs_server_mounted(s));
}

static int lookup(struct fs_server *s, uint64_t dir, const char *name, uint64_t *nodeid)
{
	int r = call(s, FUSE_LOOKUP, dir, name, strlen(name) + 1, NULL, 0, NULL);
	if (r == 0 && nodeid) {
		struct fuse_entry_out e;
		memcpy(&e, body(), sizeof(e));
		*nodeid = e.nodeid;
	}
	return r;
}

static int open_file(struct fs_server *s, uint64_t nodeid, uint32_t flags, uint64_t *fh)
{
	struct fuse_open_in in = {.flags = flags};
	int r = call(s, FUSE_OPEN, nodeid, &in, sizeof(in), NULL, 0, NULL);
	if (r == 0) {
		struct fuse_open_out o;
		memcpy(&o, body(), sizeof(o));
		*fh = o.fh;
	}
	return r;
}

static int read_file(struct fs_server *s, uint64_t nodeid, uint64_t fh, char *buf, size_t cap)
{
	struct fuse_read_in in = {.fh = fh, .size = (uint32_t)cap};
	size_t n;
	int r = call(s, FUSE_READ, nodeid, &in, sizeof(in), NULL, 0, &n);
	if (r < 0)
		return r;
	memcpy(buf, body(), n);
	return (int)n;
}

TEST(session_round_trip)
{
	struct fs_server *s = server(t, false);
	init(t, s);
	uint64_t hello, fh;
	CHECK_INT(lookup(s, FUSE_ROOT_ID, "hello.txt", &hello), ==, 0);
	CHECK_INT(open_file(s, hello, O_RDONLY, &fh), ==, 0);
	char buf[64] = {0};
	CHECK_INT(read_file(s, hello, fh, buf, sizeof(buf)), ==, 20);
	CHECK_STR(buf, "hello from the host\n");
	struct fuse_release_in rel = {.fh = fh};
	CHECK_INT(call(s, FUSE_RELEASE, hello, &rel, sizeof(rel), NULL, 0, NULL), ==, 0);

	/* The guest creates a file in a subdirectory and writes to it. */
	uint64_t sub;
	CHECK_INT(lookup(s, FUSE_ROOT_ID, "sub", &sub), ==, 0);
	struct fuse_create_in ci = {.flags = O_WRONLY | O_CREAT, .mode = S_IFREG | 0644};
	CHECK_INT(call(s, FUSE_CREATE, sub, &ci, sizeof(ci), "new", 4, NULL), ==, 0);
	struct fuse_open_out oo;
	memcpy(&oo, (uint8_t *)body() + sizeof(struct fuse_entry_out), sizeof(oo));
	struct fuse_write_in wi = {.fh = oo.fh, .size = 6};
	size_t n;
	CHECK_INT(call(s, FUSE_WRITE, sub, &wi, sizeof(wi), "guest\n", 6, &n), ==, 0);
	struct fuse_write_out wo;
	memcpy(&wo, body(), sizeof(wo));
	CHECK_INT(wo.size, ==, 6);
	char p[400];
	snprintf(p, sizeof(p), "%s/sub/new", root);
	FILE *f = fopen(p, "r");
	CHECK(f);
	CHECK(fgets(buf, sizeof(buf), f));
	fclose(f);
	CHECK_STR(buf, "guest\n");

	/* mkdir, rename, readdir, unlink, rmdir. */
	struct fuse_mkdir_in mi = {.mode = 0755};
	CHECK_INT(call(s, FUSE_MKDIR, FUSE_ROOT_ID, &mi, sizeof(mi), "d", 2, NULL), ==, 0);
	struct fuse_rename_in ri = {.newdir = FUSE_ROOT_ID};
	CHECK_INT(call(s, FUSE_RENAME, sub, &ri, sizeof(ri), "new\0moved", 10, NULL), ==, 0);
	struct fuse_open_in oi = {0};
	CHECK_INT(call(s, FUSE_OPENDIR, FUSE_ROOT_ID, &oi, sizeof(oi), NULL, 0, NULL), ==, 0);
	memcpy(&oo, body(), sizeof(oo));
	struct fuse_read_in rd = {.fh = oo.fh, .size = 4096};
	CHECK_INT(call(s, FUSE_READDIR, FUSE_ROOT_ID, &rd, sizeof(rd), NULL, 0, &n), ==, 0);
	bool seen_moved = false;
	for (size_t off = 0; off < n;) {
		struct fuse_dirent *d = (struct fuse_dirent *)((uint8_t *)body() + off);
		if (d->namelen == 5 && !memcmp(d->name, "moved", 5))
			seen_moved = true;
		off += FUSE_DIRENT_SIZE(d);
	}
	CHECK(seen_moved);
	CHECK_INT(call(s, FUSE_READDIRPLUS, FUSE_ROOT_ID, &rd, sizeof(rd), NULL, 0, &n), ==, 0);
	CHECK(n > 0);
	CHECK_INT(call(s, FUSE_UNLINK, FUSE_ROOT_ID, "moved", 6, NULL, 0, NULL), ==, 0);
	CHECK_INT(call(s, FUSE_RMDIR, FUSE_ROOT_ID, "d", 2, NULL, 0, NULL), ==, 0);
	struct stat st;
	snprintf(p, sizeof(p), "%s/moved", root);
	CHECK(stat(p, &st) < 0);
	CHECK_INT(call(s, FUSE_STATFS, FUSE_ROOT_ID, NULL, 0, NULL, 0, NULL), ==, 0);

	/* FORGET takes no answer; the forgotten nodeid is stale afterwards. */
	struct fuse_forget_in fi = {.nlookup = 100}; /* READDIRPLUS looked it up too */
	CHECK_INT(call(s, FUSE_FORGET, hello, &fi, sizeof(fi), NULL, 0, NULL), ==, 1);
	struct fuse_getattr_in gi = {0};
	CHECK_INT(call(s, FUSE_GETATTR, hello, &gi, sizeof(gi), NULL, 0, NULL), ==, -ESTALE);
	CHECK_INT(call(s, FUSE_GETATTR, FUSE_ROOT_ID, &gi, sizeof(gi), NULL, 0, NULL), ==, 0);
	cleanup(s);
}

TEST(hostile_framing)
{
	struct fs_server *s = server(t, false);
	/* Before INIT everything but INIT fails. */
	CHECK_INT(lookup(s, FUSE_ROOT_ID, "hello.txt", NULL), ==, -EIO);
	init(t, s);
	/* Too short to carry a header: no answer at all. */
	CHECK_INT(fs_server_dispatch(s, in_buf, 10, out_buf, OUT_MAX), ==, 0);
	/* A header claiming more bytes than the chain holds. */
	struct fuse_in_header h = {.len = 4000, .opcode = FUSE_GETATTR, .unique = 7, .nodeid = 1};
	memcpy(in_buf, &h, sizeof(h));
	CHECK_INT(fs_server_dispatch(s, in_buf, sizeof(h), out_buf, OUT_MAX), ==,
		  sizeof(struct fuse_out_header));
	struct fuse_out_header o;
	memcpy(&o, out_buf, sizeof(o));
	CHECK_INT(o.error, ==, -EINVAL);
	/* An answer that does not fit in the guest's buffer. */
	h.len = sizeof(h) + 16;
	memset(in_buf + sizeof(h), 0, 16);
	memcpy(in_buf, &h, sizeof(h));
	CHECK_INT(fs_server_dispatch(s, in_buf, h.len, out_buf, sizeof(o) + 8), ==, sizeof(o));
	memcpy(&o, out_buf, sizeof(o));
	CHECK_INT(o.error, ==, -ERANGE);
	/* Arguments cut short, unknown opcodes, bad nodeids and handles. */
	CHECK_INT(call(s, FUSE_READ, 1, "abc", 3, NULL, 0, NULL), ==, -EINVAL);
	CHECK_INT(call(s, 9999, 1, NULL, 0, NULL, 0, NULL), ==, -ENOSYS);
	CHECK_INT(call(s, FUSE_LINK, 1, NULL, 0, NULL, 0, NULL), ==, -ENOSYS);
	struct fuse_getattr_in gi = {0};
	CHECK_INT(call(s, FUSE_GETATTR, 0, &gi, sizeof(gi), NULL, 0, NULL), ==, -ESTALE);
	CHECK_INT(call(s, FUSE_GETATTR, 1ull << 40, &gi, sizeof(gi), NULL, 0, NULL), ==, -ESTALE);
	struct fuse_read_in rd = {.fh = 12345, .size = 10};
	CHECK_INT(call(s, FUSE_READ, 1, &rd, sizeof(rd), NULL, 0, NULL), ==, -EBADF);
	struct fuse_write_in wi = {.fh = 1, .size = 1000};
	CHECK_INT(call(s, FUSE_WRITE, 1, &wi, sizeof(wi), "x", 1, NULL), ==, -EBADF);
	/* BATCH_FORGET whose count is larger than what follows. */
	struct fuse_batch_forget_in bf = {.count = 1000000};
	CHECK_INT(call(s, FUSE_BATCH_FORGET, 0, &bf, sizeof(bf), NULL, 0, NULL), ==, 1);
	/* A directory handle used as a file handle and the other way round. */
	struct fuse_open_in oi = {0};
	CHECK_INT(call(s, FUSE_OPENDIR, 1, &oi, sizeof(oi), NULL, 0, NULL), ==, 0);
	struct fuse_open_out oo;
	memcpy(&oo, body(), sizeof(oo));
	rd.fh = oo.fh;
	CHECK_INT(call(s, FUSE_READ, 1, &rd, sizeof(rd), NULL, 0, NULL), ==, -EBADF);
	cleanup(s);
}

TEST(names_and_symlinks_stay_inside)
{
	struct fs_server *s = server(t, false);
	init(t, s);
	CHECK_INT(lookup(s, 1, "..", NULL), ==, -EINVAL);
	CHECK_INT(lookup(s, 1, ".", NULL), ==, -EINVAL);
	CHECK_INT(lookup(s, 1, "sub/../..", NULL), ==, -EINVAL);
	CHECK_INT(lookup(s, 1, "", NULL), ==, -EINVAL);
	/* A name with no NUL in the request. */
	CHECK_INT(call(s, FUSE_LOOKUP, 1, "abc", 3, NULL, 0, NULL), ==, -EINVAL);
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	CHECK_INT(lookup(s, 1, longname, NULL), ==, -ENAMETOOLONG);

	/* The host-made link pointing out: its text can be read, it cannot be
	 * opened, and it cannot be walked through as a directory. */
	uint64_t out, outdir, fh;
	CHECK_INT(lookup(s, 1, "out", &out), ==, 0);
	size_t n;
	CHECK_INT(call(s, FUSE_READLINK, out, NULL, 0, NULL, 0, &n), ==, 0);
	CHECK_INT(n, ==, strlen(outside));
	CHECK_INT(open_file(s, out, O_RDONLY, &fh), ==, -EACCES);
	CHECK_INT(lookup(s, 1, "outdir", &outdir), ==, 0);
	CHECK_INT(lookup(s, outdir, "passwd", NULL), ==, -ENOTDIR);
	struct fuse_open_in oi = {0};
	CHECK_INT(call(s, FUSE_OPENDIR, outdir, &oi, sizeof(oi), NULL, 0, NULL), ==, -ENOTDIR);
	struct fuse_setattr_in sa = {.valid = FATTR_SIZE, .size = 0};
	CHECK_INT(call(s, FUSE_SETATTR, out, &sa, sizeof(sa), NULL, 0, NULL), ==, -EINVAL);
	sa = (struct fuse_setattr_in){.valid = FATTR_MODE, .mode = 0777};
	CHECK_INT(call(s, FUSE_SETATTR, out, &sa, sizeof(sa), NULL, 0, NULL), ==, -EOPNOTSUPP);

	/* A guest-made link pointing out, then a CREATE through it. */
	CHECK_INT(call(s, FUSE_SYMLINK, 1, "esc", 4, outside, strlen(outside) + 1, NULL), ==, 0);
	struct fuse_create_in ci = {.flags = O_WRONLY | O_TRUNC, .mode = 0644};
	CHECK(call(s, FUSE_CREATE, 1, &ci, sizeof(ci), "esc", 4, NULL) < 0);
	/* Renames with escaping names. */
	struct fuse_rename_in ri = {.newdir = 1};
	CHECK_INT(call(s, FUSE_RENAME, 1, &ri, sizeof(ri), "hello.txt\0../x", 15, NULL), ==,
		  -EINVAL);
	CHECK_INT(call(s, FUSE_RENAME, 1, &ri, sizeof(ri), "..\0x", 5, NULL), ==, -EINVAL);
	ri.newdir = 77777;
	CHECK_INT(call(s, FUSE_RENAME, 1, &ri, sizeof(ri), "hello.txt\0x", 12, NULL), ==, -ESTALE);
	struct fuse_rename2_in r2 = {.newdir = 1, .flags = 4 /* RENAME_WHITEOUT */};
	CHECK_INT(call(s, FUSE_RENAME2, 1, &r2, sizeof(r2), "hello.txt\0x", 12, NULL), ==, -EINVAL);

	/* The host file outside is untouched. */
	FILE *f = fopen(outside, "r");
	CHECK(f);
	char buf[64] = {0};
	CHECK(fgets(buf, sizeof(buf), f));
	fclose(f);
	CHECK_STR(buf, "host secret\n");
	cleanup(s);
}

TEST(read_only_volume)
{
	struct fs_server *s = server(t, true);
	init(t, s);
	uint64_t hello, fh;
	CHECK_INT(lookup(s, 1, "hello.txt", &hello), ==, 0);
	CHECK_INT(open_file(s, hello, O_RDONLY, &fh), ==, 0);
	CHECK_INT(open_file(s, hello, O_WRONLY, &fh), ==, -EROFS);
	CHECK_INT(open_file(s, hello, O_RDONLY | O_TRUNC, &fh), ==, -EROFS);
	struct fuse_create_in ci = {.flags = O_WRONLY, .mode = 0644};
	CHECK_INT(call(s, FUSE_CREATE, 1, &ci, sizeof(ci), "n", 2, NULL), ==, -EROFS);
	struct fuse_mkdir_in mi = {.mode = 0755};
	CHECK_INT(call(s, FUSE_MKDIR, 1, &mi, sizeof(mi), "d", 2, NULL), ==, -EROFS);
	CHECK_INT(call(s, FUSE_UNLINK, 1, "hello.txt", 10, NULL, 0, NULL), ==, -EROFS);
	CHECK_INT(call(s, FUSE_SYMLINK, 1, "l", 2, "x", 2, NULL), ==, -EROFS);
	struct fuse_setattr_in sa = {.valid = FATTR_SIZE};
	CHECK_INT(call(s, FUSE_SETATTR, hello, &sa, sizeof(sa), NULL, 0, NULL), ==, -EROFS);
	struct fuse_write_in wi = {.fh = 1, .size = 1};
	CHECK_INT(call(s, FUSE_WRITE, hello, &wi, sizeof(wi), "x", 1, NULL), ==, -EROFS);
	struct fuse_access_in ai = {.mask = W_OK};
	CHECK_INT(call(s, FUSE_ACCESS, hello, &ai, sizeof(ai), NULL, 0, NULL), ==, -EROFS);
	char p[400];
	struct stat st;
	snprintf(p, sizeof(p), "%s/hello.txt", root);
	CHECK(stat(p, &st) == 0 && st.st_size == 20);
	cleanup(s);
}

static int getattr_ino(struct fs_server *s, uint64_t nodeid, uint64_t *ino)
{
	struct fuse_getattr_in gi = {0};
	int r = call(s, FUSE_GETATTR, nodeid, &gi, sizeof(gi), NULL, 0, NULL);
	if (r == 0) {
		struct fuse_attr_out o;
		memcpy(&o, body(), sizeof(o));
		*ino = o.attr.ino;
	}
	return r;
}

static uint64_t host_ino(struct test_ctx *t, const char *dir, const char *name)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/%s/%s", root, dir, name);
	struct stat st;
	CHECK(lstat(p, &st) == 0);
	return st.st_ino;
}

/* A directory of a few thousand entries (what READDIRPLUS looks up at once):
 * each gets its own nodeid, a second lookup finds the same one (also through
 * a hard link), forgotten slots are reused, and open-file handles too. */
TEST(many_inodes_found_by_inode)
{
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	uint32_t count = 3000;
	if (rl.rlim_cur < count + 200)
		count = rl.rlim_cur > 400 ? (uint32_t)rl.rlim_cur - 200 : 0;
	if (count < 200)
		TEST_SKIP("too few file descriptors (RLIMIT_NOFILE %llu)",
			  (unsigned long long)rl.rlim_cur);

	struct fs_server *s = server(t, false);
	init(t, s);
	char p[400], name[32];
	snprintf(p, sizeof(p), "%s/many", root);
	CHECK(mkdir(p, 0755) == 0);
	for (uint32_t i = 0; i < count; i++) {
		snprintf(p, sizeof(p), "%s/many/f%u", root, i);
		FILE *f = fopen(p, "w");
		CHECK(f);
		fprintf(f, "%u", i);
		fclose(f);
	}
	snprintf(p, sizeof(p), "%s/many/f0", root);
	char alias[400];
	snprintf(alias, sizeof(alias), "%s/many/alias", root);
	CHECK(link(p, alias) == 0);

	uint64_t dir;
	CHECK_INT(lookup(s, FUSE_ROOT_ID, "many", &dir), ==, 0);
	uint64_t *ids = calloc(count, sizeof(*ids));
	uint8_t *seen = calloc(FS_MAX_INODES + 1, 1);
	CHECK(ids && seen);
	uint64_t top = 0;
	for (uint32_t i = 0; i < count; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		CHECK_INT(lookup(s, dir, name, &ids[i]), ==, 0);
		CHECK(ids[i] >= 1 && ids[i] <= FS_MAX_INODES && !seen[ids[i]]);
		seen[ids[i]] = 1;
		top = ids[i] > top ? ids[i] : top;
	}
	CHECK_INT(top, ==, count + 2); /* root, "many", then one slot each */
	for (uint32_t i = 0; i < count; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		uint64_t again, ino;
		CHECK_INT(lookup(s, dir, name, &again), ==, 0);
		CHECK_INT(again, ==, ids[i]);
		CHECK_INT(getattr_ino(s, ids[i], &ino), ==, 0);
		CHECK_INT(ino, ==, host_ino(t, "many", name));
	}
	uint64_t via_link;
	CHECK_INT(lookup(s, dir, "alias", &via_link), ==, 0);
	CHECK_INT(via_link, ==, ids[0]);

	/* Forget every other entry: stale, the rest still answer. */
	struct fuse_forget_in fi = {.nlookup = 100};
	for (uint32_t i = 0; i < count; i += 2) {
		CHECK_INT(call(s, FUSE_FORGET, ids[i], &fi, sizeof(fi), NULL, 0, NULL), ==, 1);
		seen[ids[i]] = 2;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint64_t ino;
		CHECK_INT(getattr_ino(s, ids[i], &ino), ==, i % 2 ? 0 : -ESTALE);
	}
	/* New lookups take the freed slots: no slot past the old top. */
	for (uint32_t i = 0; i < count; i += 2) {
		snprintf(name, sizeof(name), "f%u", i);
		uint64_t id, ino;
		CHECK_INT(lookup(s, dir, name, &id), ==, 0);
		CHECK(id <= top && seen[id] == 2);
		seen[id] = 1;
		CHECK_INT(getattr_ino(s, id, &ino), ==, 0);
		CHECK_INT(ino, ==, host_ino(t, "many", name));
		ids[i] = id;
	}
	for (uint32_t i = 0; i < count; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		uint64_t again;
		CHECK_INT(lookup(s, dir, name, &again), ==, 0);
		CHECK_INT(again, ==, ids[i]);
	}

	/* Open files: closed handles are reused and each handle reads its own file. */
	uint64_t fh[200];
	for (uint32_t i = 0; i < 200; i++)
		CHECK_INT(open_file(s, ids[i], O_RDONLY, &fh[i]), ==, 0);
	for (uint32_t i = 0; i < 200; i += 2) {
		struct fuse_release_in rel = {.fh = fh[i]};
		CHECK_INT(call(s, FUSE_RELEASE, ids[i], &rel, sizeof(rel), NULL, 0, NULL), ==, 0);
	}
	for (uint32_t i = 0; i < 200; i += 2) {
		CHECK_INT(open_file(s, ids[i + 1], O_RDONLY, &fh[i]), ==, 0);
		CHECK(fh[i] <= 200);
	}
	for (uint32_t i = 0; i < 200; i++) {
		char buf[16] = {0}, want[16];
		uint32_t file = i % 2 ? i : i + 1;
		snprintf(want, sizeof(want), "%u", file);
		CHECK_INT(read_file(s, ids[file], fh[i], buf, sizeof(buf) - 1), ==, strlen(want));
		CHECK(strcmp(buf, want) == 0);
	}

	/* A new session forgets them all; lookups start over after the root. */
	init(t, s);
	uint64_t ino, id;
	CHECK_INT(getattr_ino(s, ids[1], &ino), ==, -ESTALE);
	CHECK_INT(lookup(s, FUSE_ROOT_ID, "many", &id), ==, 0);
	CHECK_INT(id, ==, 2);
	free(ids);
	free(seen);
	cleanup(s);
}

/* The guest's root stands for the server's owner: the owner's files show as
 * 0, host root's as the overflow id (root only: a user cannot make them), a
 * chown to 0 is a chown to the owner; an owner that is root changes nothing. */
TEST(owners_map_to_the_guests_root)
{
	struct fs_server *s = server(t, false);
	bool as_root = geteuid() == 0;
	uint32_t ou = as_root ? 4321 : (uint32_t)geteuid();
	uint32_t og = as_root ? 4322 : (uint32_t)getegid();
	char hello_p[400], sub_p[400];
	snprintf(hello_p, sizeof(hello_p), "%s/hello.txt", root);
	snprintf(sub_p, sizeof(sub_p), "%s/sub", root);
	if (as_root)
		CHECK(chown(hello_p, ou, og) == 0);
	fs_server_set_owner(s, ou, og);
	init(t, s);
	uint64_t hello, sub;
	CHECK_INT(lookup(s, FUSE_ROOT_ID, "hello.txt", &hello), ==, 0);
	struct fuse_entry_out e;
	memcpy(&e, body(), sizeof(e));
	CHECK_INT(e.attr.uid, ==, 0);
	CHECK_INT(e.attr.gid, ==, 0);
	CHECK_INT(lookup(s, FUSE_ROOT_ID, "sub", &sub), ==, 0);
	memcpy(&e, body(), sizeof(e));
	struct stat st;
	struct fuse_attr_out ao;
	struct fuse_setattr_in sa = {.valid = FATTR_UID | FATTR_GID, .uid = 0, .gid = 0};
	if (as_root) {
		CHECK_INT(e.attr.uid, ==, FS_OVERFLOW_ID); /* host root's directory */
		CHECK_INT(e.attr.gid, ==, FS_OVERFLOW_ID);
		/* chown 0:0 in the guest: the owner's on the host, 0 in the guest */
		CHECK_INT(call(s, FUSE_SETATTR, sub, &sa, sizeof(sa), NULL, 0, NULL), ==, 0);
		memcpy(&ao, body(), sizeof(ao));
		CHECK_INT(ao.attr.uid, ==, 0);
		CHECK_INT(ao.attr.gid, ==, 0);
		CHECK(stat(sub_p, &st) == 0);
		CHECK_INT(st.st_uid, ==, ou);
		CHECK_INT(st.st_gid, ==, og);
		/* any other id goes through as it is */
		sa = (struct fuse_setattr_in){.valid = FATTR_UID, .uid = 1000};
		CHECK_INT(call(s, FUSE_SETATTR, sub, &sa, sizeof(sa), NULL, 0, NULL), ==, 0);
		memcpy(&ao, body(), sizeof(ao));
		CHECK_INT(ao.attr.uid, ==, 1000);
		CHECK_INT(ao.attr.gid, ==, 0);
		CHECK(stat(sub_p, &st) == 0);
		CHECK_INT(st.st_uid, ==, 1000);
	} else {
		CHECK_INT(call(s, FUSE_SETATTR, hello, &sa, sizeof(sa), NULL, 0, NULL), ==, 0);
		CHECK(stat(hello_p, &st) == 0);
		CHECK_INT(st.st_uid, ==, ou);
	}
	/* an owner that is root: ids as they are */
	fs_server_set_owner(s, 0, 0);
	struct fuse_getattr_in gi = {0};
	CHECK_INT(call(s, FUSE_GETATTR, hello, &gi, sizeof(gi), NULL, 0, NULL), ==, 0);
	memcpy(&ao, body(), sizeof(ao));
	CHECK_INT(ao.attr.uid, ==, ou);
	CHECK_INT(ao.attr.gid, ==, og);
	cleanup(s);
}

TEST(empty_slot_refuses_mount)
{
	struct fs_server *s = fs_server_new(-1, false);
	CHECK(s);
	struct fuse_init_in in = {.major = 7, .minor = 31};
	CHECK_INT(call(s, FUSE_INIT, 0, &in, sizeof(in), NULL, 0, NULL), ==, -EIO);
	CHECK(!fs_server_mounted(s));
	fs_server_free(s);
}

TEST_MAIN(T(session_round_trip), T(hostile_framing), T(names_and_symlinks_stay_inside),
	  T(read_only_volume), T(many_inodes_found_by_inode), T(owners_map_to_the_guests_root),
	  T(empty_slot_refuses_mount))
