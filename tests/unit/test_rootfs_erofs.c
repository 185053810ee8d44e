/* The EROFS writer (MSB_ROOTFS_FORMAT=erofs): images from tar layers, checked and read back
 * with erofs-utils (fsck.erofs, and its --extract), no mount needed.  The integration tests
 * mount the same images with the kernel. */
#include <fcntl.h>
#include <sys/sysmacros.h>

#include "tests/unit/test_rootfs_util.h"

static int run(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			char *b = realloc(buf, cap + 1);
			if (!b)
				break;
			buf = b;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	if (buf)
		buf[n] = '\0';
	*len = n;
	return buf;
}

/* The on-disk i_mode of `path`: dump.erofs names the inode (nid), the inode is read raw. */
static int raw_mode(const char *img, const char *path)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "dump.erofs --path='%s' '%s' 2>/dev/null", path, img);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	char line[512];
	long nid = -1;
	while (fgets(line, sizeof(line), f)) {
		const char *n = strstr(line, "NID: ");
		if (n)
			nid = strtol(n + 5, NULL, 10);
	}
	pclose(f);
	if (nid < 0)
		return -1;
	int fd = open(img, O_RDONLY);
	unsigned char m[2];
	ssize_t r = fd >= 0 ? pread(fd, m, 2, nid * 32 + 4) : -1;
	if (fd >= 0)
		close(fd);
	return r == 2 ? m[0] | m[1] << 8 : -1;
}

TEST(layers_to_erofs)
{
	if (run("command -v fsck.erofs >/dev/null 2>&1") != 0)
		TEST_SKIP("fsck.erofs is not installed (erofs-utils, scripts/deps.d/rootfs.txt)");
	CHECK_INT(setenv("MSB_ROOTFS_FORMAT", "erofs", 1), ==, 0);
	CHECK_STR(rootfs_format(), "erofs");
	char *dir = scratch_dir();
	CHECK(dir != NULL);
	char l0[600], l1[600], img[600], out[600], p[900], cmd[2000];
	snprintf(l0, sizeof(l0), "%s/l0", dir);
	snprintf(l1, sizeof(l1), "%s/l1", dir);
	snprintf(img, sizeof(img), "%s/rootfs.img", dir);
	snprintf(out, sizeof(out), "%s/x", dir);

	size_t big_n = 3 * 4096 + 100; /* whole blocks and an inline tail */
	char *big = malloc(big_n);
	CHECK(big != NULL);
	for (size_t i = 0; i < big_n; i++)
		big[i] = (char)(i * 13 + i / 4096);
	char longtarget[300];
	memset(longtarget, 'y', sizeof(longtarget) - 1);
	longtarget[sizeof(longtarget) - 1] = '\0';
	const struct tb_entry e0[] = {
		{.path = "usr/bin/su", .mode = S_IFREG | 04755, .data = "ELF", .len = 3},
		{.path = "tmp", .mode = S_IFDIR | 01777},
		{.path = "home/u/f",
		 .mode = S_IFREG | 0640,
		 .uid = 100000,
		 .gid = 70000,
		 .data = "hello\n",
		 .len = 6,
		 .mtime = 1600000000},
		{.path = "home/u/big", .data = big, .len = big_n},
		{.path = "home/u/exact", .data = big, .len = 8192},
		{.path = "home/u/empty", .data = "", .len = 0},
		{.path = "home/u/link", .mode = S_IFLNK | 0777, .data = "f"},
		{.path = "home/u/long", .mode = S_IFLNK | 0777, .data = longtarget},
		{.path = "home/u/hard", .hardlink = "home/u/f"},
		{.path = "dev/null", .mode = S_IFCHR | 0666, .rmajor = 1, .rminor = 3},
		{.path = "dev/big", .mode = S_IFBLK | 0600, .rmajor = 300, .rminor = 70000},
		{.path = "run/fifo", .mode = S_IFIFO | 0620},
		{.path = "gone/file", .data = "1", .len = 1},
		{.path = "opq/old", .data = "1", .len = 1},
		{NULL}};
	CHECK_INT(tb_layer(l0, TB_GZIP, e0), ==, 0);
	struct tb b;
	CHECK_INT(tb_open(&b, l1, TB_ZSTD), ==, 0);
	const struct tb_entry e1[] = {{.path = ".wh.gone"},
				      {.path = "opq/.wh..wh..opq"},
				      {.path = "opq/new", .data = "2", .len = 1},
				      {NULL}};
	for (const struct tb_entry *e = e1; e->path; e++)
		CHECK_INT(tb_add(&b, e), ==, 0);
	/* A directory that spans several blocks: its names must stay sorted across them. */
	char name[300];
	for (int i = 2999; i >= 0; i--) {
		snprintf(name, sizeof(name), "many/entry-with-a-long-name-%05d", i);
		struct tb_entry e = {.path = name, .data = name, .len = strlen(name)};
		CHECK_INT(tb_add(&b, &e), ==, 0);
	}
	CHECK_INT(tb_close(&b), ==, 0);
	struct rootfs_layer ls[2] = {{l0, NULL}, {l1, NULL}};
	struct msb_err err = {0};
	if (rootfs_build(ls, 2, img, &err) != 0)
		TEST_FAIL("rootfs_build: %s", err.msg);
	unsetenv("MSB_ROOTFS_FORMAT");

	/* The superblock: magic, 4 KiB blocks, the root right after it (nid 36). */
	int fd = open(img, O_RDONLY);
	CHECK(fd >= 0);
	unsigned char sb[128];
	CHECK_INT(pread(fd, sb, sizeof(sb), 1024), ==, 128);
	close(fd);
	CHECK_INT(sb[0] | sb[1] << 8 | sb[2] << 16 | (unsigned)sb[3] << 24, ==, 0xE0F5E1E2u);
	CHECK_INT(sb[12], ==, 12);
	CHECK_INT(sb[14] | sb[15] << 8, ==, 36);

	snprintf(cmd, sizeof(cmd), "fsck.erofs '%s' >/dev/null 2>&1", img);
	CHECK_INT(run(cmd), ==, 0);
	snprintf(cmd, sizeof(cmd), "fsck.erofs --extract='%s' --preserve '%s' >/dev/null 2>&1", out,
		 img);
	CHECK_INT(run(cmd), ==, 0);

	/* Special mode bits straight from the inodes (the extractor does not restore them). */
	CHECK_INT(raw_mode(img, "/usr/bin/su"), ==, S_IFREG | 04755);
	CHECK_INT(raw_mode(img, "/tmp"), ==, S_IFDIR | 01777);
	struct stat st;
	snprintf(p, sizeof(p), "%s/home/u/f", out);
	CHECK_INT(lstat(p, &st), ==, 0);
	CHECK_INT(st.st_mode, ==, S_IFREG | 0640);
	CHECK_INT(st.st_mtime, ==, 1600000000);
	if (geteuid() == 0) {
		CHECK_INT(st.st_uid, ==, 100000);
		CHECK_INT(st.st_gid, ==, 70000);
	}
	size_t len;
	char *d = slurp(p, &len);
	CHECK_STR(d, "hello\n");
	free(d);
	snprintf(p, sizeof(p), "%s/home/u/big", out);
	d = slurp(p, &len);
	CHECK(d && len == big_n && memcmp(d, big, big_n) == 0);
	free(d);
	snprintf(p, sizeof(p), "%s/home/u/exact", out);
	d = slurp(p, &len);
	CHECK(d && len == 8192 && memcmp(d, big, 8192) == 0);
	free(d);
	free(big);
	snprintf(p, sizeof(p), "%s/home/u/empty", out);
	CHECK_INT(lstat(p, &st), ==, 0);
	CHECK_INT(st.st_size, ==, 0);
	char target[400];
	snprintf(p, sizeof(p), "%s/home/u/link", out);
	CHECK_INT(readlink(p, target, sizeof(target)), ==, 1);
	snprintf(p, sizeof(p), "%s/home/u/long", out);
	CHECK_INT(readlink(p, target, sizeof(target)), ==, (long long)strlen(longtarget));
	CHECK(memcmp(target, longtarget, strlen(longtarget)) == 0);
	snprintf(p, sizeof(p), "%s/home/u/hard", out);
	d = slurp(p, &len);
	CHECK_STR(d, "hello\n");
	free(d);
	if (geteuid() == 0) { /* mknod needs root */
		snprintf(p, sizeof(p), "%s/dev/null", out);
		CHECK_INT(lstat(p, &st), ==, 0);
		CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
		snprintf(p, sizeof(p), "%s/dev/big", out);
		CHECK_INT(lstat(p, &st), ==, 0);
		CHECK(S_ISBLK(st.st_mode) && major(st.st_rdev) == 300 &&
		      minor(st.st_rdev) == 70000);
	}
	snprintf(p, sizeof(p), "%s/run/fifo", out);
	CHECK_INT(lstat(p, &st), ==, 0);
	CHECK(S_ISFIFO(st.st_mode));
	snprintf(p, sizeof(p), "%s/gone", out);
	CHECK_INT(lstat(p, &st), ==, -1);
	snprintf(p, sizeof(p), "%s/opq/old", out);
	CHECK_INT(lstat(p, &st), ==, -1);
	snprintf(p, sizeof(p), "%s/opq/new", out);
	CHECK_INT(lstat(p, &st), ==, 0);
	snprintf(p, sizeof(p), "%s/many", out);
	CHECK_INT(count_dir_entries(p), ==, 3000);
	snprintf(p, sizeof(p), "%s/many/entry-with-a-long-name-01234", out);
	d = slurp(p, &len);
	CHECK_STR(d, "many/entry-with-a-long-name-01234");
	free(d);
	rm_rf(dir);
	free(dir);
}

TEST(sparse_file_stays_sparse)
{
	if (run("command -v fsck.erofs >/dev/null 2>&1") != 0)
		TEST_SKIP("fsck.erofs is not installed (erofs-utils, scripts/deps.d/rootfs.txt)");
	char *dir = scratch_dir();
	CHECK(dir != NULL);
	char layer[600], img[600], cmd[1400];
	snprintf(layer, sizeof(layer), "%s/l", dir);
	snprintf(img, sizeof(img), "%s/rootfs.img", dir);
	struct tb b;
	CHECK_INT(tb_open(&b, layer, TB_NONE), ==, 0);
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, "sparse");
	archive_entry_set_mode(ae, S_IFREG | 0644);
	archive_entry_set_size(ae, 1LL << 30);
	archive_entry_sparse_add_entry(ae, 0, 4096);
	CHECK_INT(archive_write_header(b.a, ae), ==, ARCHIVE_OK);
	char blk[4096];
	memset(blk, 'S', sizeof(blk));
	CHECK_INT(archive_write_data(b.a, blk, sizeof(blk)), ==, 4096);
	archive_entry_free(ae);
	CHECK_INT(tb_close(&b), ==, 0);
	CHECK_INT(setenv("MSB_ROOTFS_FORMAT", "erofs", 1), ==, 0);
	struct rootfs_layer l = {layer, NULL};
	struct msb_err err = {0};
	int rc = rootfs_build(&l, 1, img, &err);
	unsetenv("MSB_ROOTFS_FORMAT");
	if (rc != 0)
		TEST_FAIL("rootfs_build: %s", err.msg);
	struct stat st;
	CHECK_INT(stat(img, &st), ==, 0);
	CHECK_INT(st.st_size, >=, 1LL << 30);
	CHECK_INT(st.st_blocks, <, (16 << 20) / 512); /* the hole is not on disk */
	snprintf(cmd, sizeof(cmd), "fsck.erofs '%s' >/dev/null 2>&1", img);
	CHECK_INT(run(cmd), ==, 0);
	int fd = open(img, O_RDONLY);
	CHECK(fd >= 0);
	/* The data block is where the inode says: the first block after the metadata. */
	char got[4096];
	int found = 0;
	for (off_t at = 0; at < 64 * 4096 && !found; at += 4096)
		found = pread(fd, got, sizeof(got), at) == 4096 && memcmp(got, blk, 4096) == 0;
	close(fd);
	CHECK(found);
	rm_rf(dir);
	free(dir);
}

TEST_MAIN(T(layers_to_erofs), T(sparse_file_stays_sparse))
