/* Root filesystem images from tar layers: metadata kept, whiteouts and opaque directories
 * applied, compression sniffed.  Layers are written here with libarchive; the images are
 * read back with libext2fs and checked with e2fsck. */
#include "rootfs/tree.h"
#include "tests/unit/test_rootfs_util.h"

struct fx {
	char *dir;
	char img[512];
	char l[4][512];
};

static void fx_init(struct test_ctx *t, struct fx *f)
{
	/* These tests read the images back with libext2fs (test_rootfs_erofs.c covers EROFS). */
	CHECK_INT(setenv("MSB_ROOTFS_FORMAT", "ext4", 1), ==, 0);
	f->dir = scratch_dir();
	CHECK(f->dir != NULL);
	snprintf(f->img, sizeof(f->img), "%s/rootfs.img", f->dir);
	for (int i = 0; i < 4; i++)
		snprintf(f->l[i], sizeof(f->l[i]), "%s/layer%d", f->dir, i);
}

static void fx_done(struct fx *f)
{
	rm_rf(f->dir);
	free(f->dir);
}

/* Build f->img from the first n layers; returns rootfs_build's result. */
static int build(struct fx *f, int n, struct msb_err *err)
{
	struct rootfs_layer ls[4];
	for (int i = 0; i < n; i++)
		ls[i] = (struct rootfs_layer){f->l[i], NULL};
	return rootfs_build(ls, (size_t)n, f->img, err);
}

#define BUILD_OK(f, n)                                                \
	do {                                                          \
		struct msb_err e_ = {0};                              \
		if (build((f), (n), &e_) != 0)                        \
			TEST_FAIL("rootfs_build failed: %s", e_.msg); \
		CHECK_INT(img_fsck((f)->img), ==, 0);                 \
	} while (0)

TEST(format_default_and_override)
{
	CHECK_INT(unsetenv("MSB_ROOTFS_FORMAT"), ==, 0);
	CHECK_STR(rootfs_format(), ROOTFS_DEFAULT_FORMAT);
	CHECK_INT(setenv("MSB_ROOTFS_FORMAT", "ext4", 1), ==, 0);
	CHECK_STR(rootfs_format(), "ext4");
	CHECK_INT(setenv("MSB_ROOTFS_FORMAT", "erofs", 1), ==, 0);
	CHECK_STR(rootfs_format(), "erofs");
	CHECK_INT(setenv("MSB_ROOTFS_FORMAT", "bogus", 1), ==, 0);
	CHECK_STR(rootfs_format(), ROOTFS_DEFAULT_FORMAT);
	CHECK_INT(unsetenv("MSB_ROOTFS_FORMAT"), ==, 0);
}

TEST(metadata_is_kept)
{
	struct fx f;
	fx_init(t, &f);
	char longtarget[200];
	memset(longtarget, 'x', sizeof(longtarget) - 1);
	longtarget[0] = '/';
	longtarget[sizeof(longtarget) - 1] = '\0';
	const struct tb_entry es[] = {
		{.path = "./", .mode = S_IFDIR | 0711, .uid = 0, .gid = 0},
		{.path = "usr/bin/su",
		 .mode = S_IFREG | 04755,
		 .uid = 0,
		 .gid = 0,
		 .data = "ELF",
		 .len = 3},
		{.path = "tmp", .mode = S_IFDIR | 01777},
		{.path = "home/u/f",
		 .mode = S_IFREG | 0640,
		 .uid = 100000,
		 .gid = 70000,
		 .data = "hello\n",
		 .len = 6,
		 .mtime = 1600000000,
		 .mtime_nsec = 123456789},
		{.path = "home/u/link", .mode = S_IFLNK | 0777, .uid = 5, .gid = 6, .data = "f"},
		{.path = "home/u/long", .mode = S_IFLNK | 0777, .data = longtarget},
		{.path = "home/u/hard", .hardlink = "home/u/f"},
		{.path = "dev/null", .mode = S_IFCHR | 0666, .rmajor = 1, .rminor = 3},
		{.path = "dev/sda", .mode = S_IFBLK | 0660, .rmajor = 8, .rminor = 0, .gid = 6},
		{.path = "dev/big", .mode = S_IFCHR | 0600, .rmajor = 300, .rminor = 70000},
		{.path = "run/fifo", .mode = S_IFIFO | 0620},
		{.path = "bin/ping",
		 .mode = S_IFREG | 0755,
		 .data = "P",
		 .len = 1,
		 .xname = "security.capability",
		 .xvalue = "\x01\x02\x03"},
		{.path = "etc/x", .mode = S_IFREG | 0644, .xname = "user.note", .xvalue = "v"},
		{NULL}};
	CHECK_INT(tb_layer(f.l[0], TB_NONE, es), ==, 0);
	BUILD_OK(&f, 1);

	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	struct ext2_inode_large li;
	CHECK_INT(img_inode(fs, "/", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFDIR | 0711);
	CHECK_INT(img_ino(fs, "lost+found"), ==, 0);

	CHECK_INT(img_inode(fs, "usr/bin/su", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFREG | 04755);
	CHECK_INT(img_inode(fs, "tmp", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFDIR | 01777);

	CHECK_INT(img_inode(fs, "home/u/f", &li), ==, 0);
	CHECK_INT(img_uid(&li), ==, 100000);
	CHECK_INT(img_gid(&li), ==, 70000);
	CHECK_INT(li.i_mode, ==, S_IFREG | 0640);
	CHECK_INT(li.i_mtime, ==, 1600000000);
	CHECK_INT(li.i_mtime_extra >> 2, ==, 123456789);
	CHECK_INT(li.i_links_count, ==, 2);
	size_t len;
	char *data = img_read(fs, "home/u/f", &len);
	CHECK_STR(data, "hello\n");
	free(data);
	CHECK_INT(img_ino(fs, "home/u/hard"), ==, img_ino(fs, "home/u/f"));

	CHECK_INT(img_inode(fs, "home/u/link", &li), ==, 0);
	CHECK(LINUX_S_ISLNK(li.i_mode));
	CHECK_INT(img_uid(&li), ==, 5);
	CHECK_INT(img_gid(&li), ==, 6);
	CHECK_INT(li.i_size, ==, 1);
	CHECK_INT(((char *)li.i_block)[0], ==, 'f');
	data = img_read(fs, "home/u/long", &len);
	CHECK_STR(data, longtarget);
	free(data);

	CHECK_INT(img_inode(fs, "dev/null", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFCHR | 0666);
	CHECK_INT(li.i_block[0], ==, 1 * 256 + 3);
	CHECK_INT(img_inode(fs, "dev/sda", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFBLK | 0660);
	CHECK_INT(li.i_block[0], ==, 8 * 256);
	CHECK_INT(img_inode(fs, "dev/big", &li), ==, 0);
	CHECK_INT(li.i_block[0], ==, 0);
	CHECK_INT(li.i_block[1], ==, (70000 & 0xff) | (300 << 8) | ((70000 & ~0xff) << 12));
	CHECK_INT(img_inode(fs, "run/fifo", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFIFO | 0620);

	char *x = img_xattr(fs, "bin/ping", "security.capability", &len);
	CHECK(x && len == 3 && memcmp(x, "\x01\x02\x03", 3) == 0);
	free(x);
	x = img_xattr(fs, "etc/x", "user.note", &len);
	CHECK(x && len == 1 && x[0] == 'v');
	free(x);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(compression_is_sniffed)
{
	static const enum tb_compress cs[] = {TB_NONE, TB_GZIP, TB_ZSTD};
	for (size_t i = 0; i < 3; i++) {
		struct fx f;
		fx_init(t, &f);
		const struct tb_entry es[] = {{.path = "a", .data = "layer-data", .len = 10},
					      {NULL}};
		CHECK_INT(tb_layer(f.l[0], cs[i], es), ==, 0);
		BUILD_OK(&f, 1);
		/* A media type that agrees also works; one that is no layer type does not. */
		struct msb_err err = {0};
		static const char *const types[] = {"application/vnd.oci.image.layer.v1.tar",
						    "application/vnd.oci.image.layer.v1.tar+gzip",
						    "application/vnd.oci.image.layer.v1.tar+zstd"};
		struct rootfs_layer l = {f.l[0], types[i]};
		CHECK_INT(rootfs_build(&l, 1, f.img, &err), ==, 0);
		l.media_type = "application/vnd.oci.image.config.v1+json";
		CHECK_INT(rootfs_build(&l, 1, f.img, &err), ==, -1);
		CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
		ext2_filsys fs = img_open(f.img);
		CHECK(fs != NULL);
		char *d = img_read(fs, "a", NULL);
		CHECK_STR(d, "layer-data");
		free(d);
		ext2fs_close_free(&fs);
		fx_done(&f);
	}
}

TEST(whiteouts_hide_lower_layers_only)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry l0[] = {{.path = "a/b", .data = "1", .len = 1},
				      {.path = "a/c", .data = "1", .len = 1},
				      {.path = "d/deep/file", .data = "1", .len = 1},
				      {.path = "keep", .data = "1", .len = 1},
				      {NULL}};
	const struct tb_entry l1[] = {{.path = "a/.wh.b"},
				      {.path = ".wh.d"},
				      {.path = ".wh.never-existed"},
				      {.path = "nodir/.wh.x"},
				      /* the same layer's own file survives its whiteout */
				      {.path = "new", .data = "2", .len = 1},
				      {.path = ".wh.new"},
				      {.path = ".wh..wh.plnk"},
				      {NULL}};
	const struct tb_entry l2[] = {
		{.path = ".wh.new"}, {.path = "a/b", .data = "3", .len = 1}, {NULL}};
	CHECK_INT(tb_layer(f.l[0], TB_GZIP, l0), ==, 0);
	CHECK_INT(tb_layer(f.l[1], TB_GZIP, l1), ==, 0);
	BUILD_OK(&f, 2);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	CHECK_INT(img_ino(fs, "a/b"), ==, 0);
	CHECK(img_ino(fs, "a/c") != 0);
	CHECK_INT(img_ino(fs, "d"), ==, 0);
	CHECK(img_ino(fs, "keep") != 0);
	CHECK(img_ino(fs, "new") != 0);
	CHECK_INT(img_ino(fs, ".wh.d"), ==, 0);
	CHECK_INT(img_ino(fs, "a/.wh.b"), ==, 0);
	CHECK_INT(img_ino(fs, ".wh..wh.plnk"), ==, 0);
	ext2fs_close_free(&fs);

	/* A third layer removes "new" and brings "a/b" back. */
	CHECK_INT(tb_layer(f.l[2], TB_NONE, l2), ==, 0);
	BUILD_OK(&f, 3);
	fs = img_open(f.img);
	CHECK(fs != NULL);
	CHECK_INT(img_ino(fs, "new"), ==, 0);
	char *d = img_read(fs, "a/b", NULL);
	CHECK_STR(d, "3");
	free(d);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(opaque_directory_hides_everything_below)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry l0[] = {{.path = "etc/", .mode = S_IFDIR | 0755},
				      {.path = "etc/old", .data = "1", .len = 1},
				      {.path = "etc/sub/deeper", .data = "1", .len = 1},
				      {.path = "etc/sub2/x", .data = "1", .len = 1},
				      {.path = "other", .data = "1", .len = 1},
				      {NULL}};
	/* Entries of this layer before the marker stay, also below a lower directory. */
	const struct tb_entry l1[] = {{.path = "etc/early", .data = "2", .len = 1},
				      {.path = "etc/sub2/mine", .data = "2", .len = 1},
				      {.path = "etc/.wh..wh..opq"},
				      {.path = "etc/late", .data = "2", .len = 1},
				      {.path = "fresh/.wh..wh..opq"},
				      {NULL}};
	CHECK_INT(tb_layer(f.l[0], TB_NONE, l0), ==, 0);
	CHECK_INT(tb_layer(f.l[1], TB_ZSTD, l1), ==, 0);
	BUILD_OK(&f, 2);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	CHECK_INT(img_ino(fs, "etc/old"), ==, 0);
	CHECK_INT(img_ino(fs, "etc/sub"), ==, 0);
	CHECK_INT(img_ino(fs, "etc/sub2/x"), ==, 0);
	CHECK(img_ino(fs, "etc/sub2/mine") != 0);
	CHECK(img_ino(fs, "etc/early") != 0);
	CHECK(img_ino(fs, "etc/late") != 0);
	CHECK(img_ino(fs, "other") != 0);
	CHECK(img_ino(fs, "fresh") != 0);
	CHECK_INT(img_ino(fs, "etc/.wh..wh..opq"), ==, 0);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(later_entries_win)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry l0[] = {{.path = "dup", .data = "first", .len = 5},
				      {.path = "dup", .data = "second", .len = 6},
				      {.path = "was-dir/child", .data = "c", .len = 1},
				      {.path = "was-file", .data = "f", .len = 1},
				      {.path = "d/", .mode = S_IFDIR | 0700, .uid = 1},
				      {.path = "d/in", .data = "i", .len = 1},
				      {.path = "shared", .data = "s", .len = 1},
				      {.path = "alias", .hardlink = "shared"},
				      {NULL}};
	const struct tb_entry l1[] = {
		{.path = "was-dir", .data = "now a file", .len = 10},
		{.path = "was-file/", .mode = S_IFDIR | 0755},
		{.path = "was-file/x", .data = "x", .len = 1},
		/* a directory over a directory takes the metadata and keeps the content */
		{.path = "d/", .mode = S_IFDIR | 0751, .uid = 2},
		/* replacing one name of a hard link leaves the other alone */
		{.path = "shared", .data = "new", .len = 3},
		{NULL}};
	CHECK_INT(tb_layer(f.l[0], TB_NONE, l0), ==, 0);
	CHECK_INT(tb_layer(f.l[1], TB_NONE, l1), ==, 0);
	BUILD_OK(&f, 2);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	char *d = img_read(fs, "dup", NULL);
	CHECK_STR(d, "second");
	free(d);
	d = img_read(fs, "was-dir", NULL);
	CHECK_STR(d, "now a file");
	free(d);
	CHECK_INT(img_ino(fs, "was-dir/child"), ==, 0);
	CHECK(img_ino(fs, "was-file/x") != 0);
	struct ext2_inode_large li;
	CHECK_INT(img_inode(fs, "d", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFDIR | 0751);
	CHECK_INT(img_uid(&li), ==, 2);
	CHECK(img_ino(fs, "d/in") != 0);
	d = img_read(fs, "alias", NULL);
	CHECK_STR(d, "s");
	free(d);
	d = img_read(fs, "shared", NULL);
	CHECK_STR(d, "new");
	free(d);
	CHECK_INT(img_inode(fs, "alias", &li), ==, 0);
	CHECK_INT(li.i_links_count, ==, 1);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(big_directories_and_odd_names)
{
	struct fx f;
	fx_init(t, &f);
	struct tb b;
	CHECK_INT(tb_open(&b, f.l[0], TB_GZIP), ==, 0);
	char name[300];
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "many/file-with-a-longish-name-%06d", i);
		struct tb_entry e = {.path = name, .data = name, .len = strlen(name)};
		CHECK_INT(tb_add(&b, &e), ==, 0);
	}
	/* Bytes that are not UTF-8, controls, a newline, and the longest legal name. */
	static const char *const odd[] = {"odd/\x01\x02\x7f", "odd/\xff\xfe latin\xe9",
					  "odd/new\nline", "odd/ space ", "odd/-dash"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(odd); i++) {
		struct tb_entry e = {.path = odd[i], .data = "o", .len = 1};
		CHECK_INT(tb_add(&b, &e), ==, 0);
	}
	memset(name, 'n', 255);
	name[255] = '\0';
	struct tb_entry e = {.path = name, .data = "n", .len = 1};
	CHECK_INT(tb_add(&b, &e), ==, 0);
	CHECK_INT(tb_close(&b), ==, 0);
	BUILD_OK(&f, 1);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	CHECK(img_ino(fs, "many/file-with-a-longish-name-000000") != 0);
	char *d = img_read(fs, "many/file-with-a-longish-name-002999", NULL);
	CHECK_STR(d, "many/file-with-a-longish-name-002999");
	free(d);
	for (size_t i = 0; i < MSB_ARRAY_SIZE(odd); i++)
		CHECK(img_ino(fs, odd[i]) != 0);
	CHECK(img_ino(fs, name) != 0);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(big_and_sparse_files)
{
	struct fx f;
	fx_init(t, &f);
	size_t n = 5 * 1024 * 1024 + 17;
	char *big = malloc(n);
	CHECK(big != NULL);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)(i * 7 + i / 4096);
	const struct tb_entry es[] = {{.path = "big", .data = big, .len = n}, {NULL}};
	CHECK_INT(tb_layer(f.l[0], TB_NONE, es), ==, 0);
	BUILD_OK(&f, 1);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	size_t len;
	char *d = img_read(fs, "big", &len);
	CHECK(d && len == n && memcmp(d, big, n) == 0);
	free(d);
	free(big);
	ext2fs_close_free(&fs);

	/* A sparse entry: 5 GiB apparent (so i_size_high is used), two 4 KiB pieces of data. */
	struct tb b;
	CHECK_INT(tb_open(&b, f.l[1], TB_NONE), ==, 0);
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, "sparse");
	archive_entry_set_mode(ae, S_IFREG | 0644);
	archive_entry_set_size(ae, 5LL << 30);
	archive_entry_sparse_add_entry(ae, 0, 4096);
	archive_entry_sparse_add_entry(ae, (5LL << 30) - 4096, 4096);
	CHECK_INT(archive_write_header(b.a, ae), ==, ARCHIVE_OK);
	char blk[4096];
	memset(blk, 'S', sizeof(blk));
	CHECK_INT(archive_write_data(b.a, blk, sizeof(blk)), ==, 4096);
	CHECK_INT(archive_write_data(b.a, blk, sizeof(blk)), ==, 4096);
	archive_entry_free(ae);
	CHECK_INT(tb_close(&b), ==, 0);
	BUILD_OK(&f, 2);
	struct stat st;
	CHECK_INT(stat(f.img, &st), ==, 0);
	CHECK_INT(st.st_blocks, <, (64 << 20) / 512); /* the holes stay holes */
	fs = img_open(f.img);
	CHECK(fs != NULL);
	struct ext2_inode_large li;
	CHECK_INT(img_inode(fs, "sparse", &li), ==, 0);
	CHECK_INT(EXT2_I_SIZE(&li), ==, 5LL << 30);
	ext2_file_t ef;
	CHECK_INT(ext2fs_file_open(fs, img_ino(fs, "sparse"), 0, &ef), ==, 0);
	char got[4096];
	unsigned int n_got = 0;
	CHECK_INT(ext2fs_file_llseek(ef, (5ULL << 30) - 4096, EXT2_SEEK_SET, NULL), ==, 0);
	CHECK_INT(ext2fs_file_read(ef, got, sizeof(got), &n_got), ==, 0);
	CHECK_INT(n_got, ==, 4096);
	/* Two data blocks on disk (i_blocks counts 512-byte sectors), however big the file. */
	CHECK_INT(li.i_blocks, <=, 3 * 8);
	CHECK_INT(ext2fs_file_llseek(ef, 1ULL << 30, EXT2_SEEK_SET, NULL), ==, 0);
	CHECK_INT(ext2fs_file_read(ef, got, 16, &n_got), ==, 0);
	CHECK(n_got == 16 && got[0] == 0 && got[15] == 0); /* a hole reads as zeros */
	ext2fs_file_close(ef);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(only_safe_xattr_namespaces_are_kept)
{
	CHECK(rf_xattr_kept("user.x"));
	CHECK(rf_xattr_kept("security.capability"));
	CHECK(rf_xattr_kept("system.posix_acl_access"));
	CHECK(!rf_xattr_kept("system.posix_acl_accessX"));
	CHECK(!rf_xattr_kept("user."));
	CHECK(!rf_xattr_kept("trusted.overlay.opaque"));
	CHECK(!rf_xattr_kept("system.nfs4_acl"));
	CHECK(!rf_xattr_kept("us"));
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {
		{.path = "d/",
		 .mode = S_IFDIR | 0755,
		 .xname = "trusted.overlay.opaque",
		 .xvalue = "y"},
		{.path = "d/f", .data = "1", .len = 1, .xname = "user.kept", .xvalue = "k"},
		{NULL}};
	CHECK_INT(tb_layer(f.l[0], TB_NONE, es), ==, 0);
	BUILD_OK(&f, 1);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	size_t len;
	char *x = img_xattr(fs, "d", "trusted.overlay.opaque", &len);
	CHECK(x == NULL);
	x = img_xattr(fs, "d/f", "user.kept", &len);
	CHECK(x && len == 1 && x[0] == 'k');
	free(x);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST_MAIN(T(format_default_and_override), T(metadata_is_kept), T(compression_is_sniffed),
	  T(whiteouts_hide_lower_layers_only), T(opaque_directory_hides_everything_below),
	  T(later_entries_win), T(big_directories_and_odd_names), T(big_and_sparse_files),
	  T(only_safe_xattr_namespaces_are_kept))
