/* Hostile layers: nothing is written outside the image's tree, and each case
 * ends either in the OCI handling or in a clear error that leaves no image and
 * no temporary file. */
#include "tests/unit/test_rootfs_util.h"

struct fx {
	char *dir;
	char img[512];
	char layer[512];
};

static void fx_init(struct test_ctx *t, struct fx *f)
{
	/* These tests read the images back with libext2fs (test_rootfs_erofs.c covers EROFS). */
	CHECK_INT(setenv("MSB_ROOTFS_FORMAT", "ext4", 1), ==, 0);
	f->dir = scratch_dir();
	CHECK(f->dir != NULL);
	snprintf(f->img, sizeof(f->img), "%s/rootfs.img", f->dir);
	snprintf(f->layer, sizeof(f->layer), "%s/layer", f->dir);
}

static void fx_done(struct fx *f)
{
	rm_rf(f->dir);
	free(f->dir);
}

static int build1(struct fx *f, const struct rootfs_limits *lim, struct msb_err *err)
{
	struct rootfs_layer l = {f->layer, NULL};
	return rootfs_build_limited(&l, 1, f->img, lim, err);
}

/* The build fails with kind corrupt, a message containing `needle`, and leaves
 * only the layer in the scratch directory (no image, no temporary, no spool).
 */
#define CHECK_REFUSED(f, lim, needle)                                               \
	do {                                                                        \
		struct msb_err e_ = {0};                                            \
		CHECK_INT(build1((f), (lim), &e_), ==, -1);                         \
		if (!strstr(e_.msg, (needle)))                                      \
			TEST_FAIL("message \"%s\" lacks \"%s\"", e_.msg, (needle)); \
		CHECK_INT(e_.kind, ==, MSB_EK_CORRUPT);                             \
		CHECK_INT(count_dir_entries((f)->dir), ==, 1);                      \
	} while (0)

#define BUILD_OK(f)                                                   \
	do {                                                          \
		struct msb_err e_ = {0};                              \
		if (build1((f), NULL, &e_) != 0)                      \
			TEST_FAIL("rootfs_build failed: %s", e_.msg); \
		CHECK_INT(img_fsck((f)->img), ==, 0);                 \
	} while (0)

TEST(dotdot_is_refused)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {{.path = "ok", .data = "1", .len = 1},
				      {.path = "a/../../escape", .data = "x", .len = 1},
				      {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	CHECK_REFUSED(&f, NULL, "leaves the root");
	fx_done(&f);
}

TEST(dotdot_inside_the_tree_is_fine)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {{.path = "a/b/../c", .data = "1", .len = 1}, {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	BUILD_OK(&f);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	CHECK(img_ino(fs, "a/c") != 0);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(absolute_paths_land_inside)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {{.path = "/etc/abs", .data = "1", .len = 1},
				      {.path = "//double//slash", .data = "2", .len = 1},
				      {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	BUILD_OK(&f);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	CHECK(img_ino(fs, "etc/abs") != 0);
	CHECK(img_ino(fs, "double/slash") != 0);
	ext2fs_close_free(&fs);
	fx_done(&f);
}

/* A symlink that points out of the root, then a file written through it: the
 * link is resolved inside the tree, as if the tree were the root, so the file
 * lands inside. */
TEST(write_through_symlink_stays_inside)
{
	struct fx f;
	fx_init(t, &f);
	char outside[600];
	snprintf(outside, sizeof(outside), "%s/outside", f.dir);
	const struct tb_entry es[] = {
		{.path = "up", .mode = S_IFLNK | 0777, .data = "../../../../.."},
		{.path = "up/etc/owned", .data = "1", .len = 1},
		{.path = "abs", .mode = S_IFLNK | 0777, .data = outside},
		{.path = "abs/owned2", .data = "2", .len = 1},
		{.path = "root", .mode = S_IFLNK | 0777, .data = "/"},
		{.path = "root/tmp/owned3", .data = "3", .len = 1},
		{NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	BUILD_OK(&f);
	CHECK_INT(count_dir_entries(f.dir), ==, 2); /* the layer and the image, no "outside" */
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	CHECK(img_ino(fs, "etc/owned") != 0);
	char inside[620];
	snprintf(inside, sizeof(inside), "%s/owned2", outside + 1);
	CHECK(img_ino(fs, inside) != 0);
	CHECK(img_ino(fs, "tmp/owned3") != 0);
	/* The symlinks themselves are kept verbatim. */
	struct ext2_inode_large li;
	CHECK_INT(img_inode(fs, "up", &li), ==, 0);
	CHECK(LINUX_S_ISLNK(li.i_mode));
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(symlink_loops_are_refused)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {{.path = "a", .mode = S_IFLNK | 0777, .data = "b"},
				      {.path = "b", .mode = S_IFLNK | 0777, .data = "a"},
				      {.path = "a/x", .data = "1", .len = 1},
				      {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	CHECK_REFUSED(&f, NULL, "too many levels of symbolic links");
	fx_done(&f);
}

TEST(file_used_as_directory_is_refused)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {{.path = "f", .data = "1", .len = 1},
				      {.path = "f/x", .data = "1", .len = 1},
				      {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	CHECK_REFUSED(&f, NULL, "not one");
	fx_done(&f);
}

TEST(hardlink_to_outside_is_refused)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {{.path = "passwd", .hardlink = "../../../etc/passwd"},
				      {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	CHECK_REFUSED(&f, NULL, "leaves the root");
	fx_done(&f);
}

TEST(hardlink_to_missing_target_is_refused)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {{.path = "l", .hardlink = "nothing/here"}, {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	CHECK_REFUSED(&f, NULL, "does not exist");
	fx_done(&f);
}

TEST(hardlink_to_directory_is_refused)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {
		{.path = "d/", .mode = S_IFDIR | 0755}, {.path = "l", .hardlink = "d"}, {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	CHECK_REFUSED(&f, NULL, "directory");
	fx_done(&f);
}

/* A hard link through a symlink to "/" names the tree's own file, never the
 * host's. */
TEST(hardlink_through_symlink_stays_inside)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry es[] = {{.path = "etc/passwd", .data = "image", .len = 5},
				      {.path = "r", .mode = S_IFLNK | 0777, .data = "/"},
				      {.path = "copy", .hardlink = "r/etc/passwd"},
				      {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	BUILD_OK(&f);
	ext2_filsys fs = img_open(f.img);
	CHECK(fs != NULL);
	char *d = img_read(fs, "copy", NULL);
	CHECK_STR(d, "image");
	free(d);
	CHECK_INT(img_ino(fs, "copy"), ==, img_ino(fs, "etc/passwd"));
	ext2fs_close_free(&fs);
	fx_done(&f);
}

TEST(tar_bomb_entries_capped)
{
	struct fx f;
	fx_init(t, &f);
	struct tb b;
	CHECK_INT(tb_open(&b, f.layer, TB_GZIP), ==, 0);
	char name[64];
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "e%d", i);
		struct tb_entry e = {.path = name};
		CHECK_INT(tb_add(&b, &e), ==, 0);
	}
	CHECK_INT(tb_close(&b), ==, 0);
	struct rootfs_limits lim;
	rootfs_default_limits(&lim);
	lim.max_entries = 100;
	CHECK_REFUSED(&f, &lim, "more than 100 entries");
	lim.max_entries = 200;
	struct msb_err err = {0};
	CHECK_INT(build1(&f, &lim, &err), ==, 0);
	fx_done(&f);
}

TEST(tar_bomb_bytes_capped)
{
	struct fx f;
	fx_init(t, &f);
	/* 64 MiB of zeros compress to almost nothing: the cap counts what comes out.
	 */
	size_t n = 64u << 20;
	char *zeros = calloc(1, n);
	CHECK(zeros != NULL);
	const struct tb_entry es[] = {{.path = "a", .data = zeros, .len = n},
				      {.path = "b", .data = zeros, .len = n},
				      {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_ZSTD, es), ==, 0);
	free(zeros);
	struct stat st;
	CHECK_INT(stat(f.layer, &st), ==, 0);
	CHECK_INT(st.st_size, <, 1 << 20);
	struct rootfs_limits lim;
	rootfs_default_limits(&lim);
	lim.max_total_bytes = 100u << 20;
	CHECK_REFUSED(&f, &lim, "bytes of file data");
	fx_done(&f);
}

TEST(claimed_size_capped)
{
	struct fx f;
	fx_init(t, &f);
	/* A header that claims 1 TiB, then 64 KiB and the end of the file.  Written
	 * to a bounded memory buffer: libarchive's padding of the missing data stops
	 * there. */
	size_t cap = 64 << 10, used = 0;
	char *buf = calloc(1, cap);
	CHECK(buf != NULL);
	struct archive *a = archive_write_new();
	CHECK_INT(archive_write_set_format_pax(a), ==, ARCHIVE_OK);
	CHECK_INT(archive_write_set_bytes_per_block(a, 0), ==, ARCHIVE_OK);
	CHECK_INT(archive_write_open_memory(a, buf, cap, &used), ==, ARCHIVE_OK);
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, "huge");
	archive_entry_set_mode(ae, S_IFREG | 0644);
	archive_entry_set_size(ae, 1LL << 40);
	CHECK_INT(archive_write_header(a, ae), ==, ARCHIVE_OK);
	archive_entry_free(ae);
	archive_write_free(a);
	CHECK(used > 512);
	FILE *fp = fopen(f.layer, "w");
	CHECK(fp != NULL);
	CHECK_INT(fwrite(buf, 1, used, fp), ==, used);
	fclose(fp);
	free(buf);
	struct rootfs_limits lim;
	rootfs_default_limits(&lim);
	CHECK_REFUSED(&f, &lim, "claims");
	/* Under the cap, the missing data is a truncated layer. */
	lim.max_file_size = 2LL << 40;
	CHECK_REFUSED(&f, &lim, "layer");
	fx_done(&f);
}

TEST(sparse_apparent_size_capped)
{
	struct fx f;
	fx_init(t, &f);
	struct tb b;
	CHECK_INT(tb_open(&b, f.layer, TB_NONE), ==, 0);
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, "sparse");
	archive_entry_set_mode(ae, S_IFREG | 0644);
	archive_entry_set_size(ae, 1LL << 36);
	archive_entry_sparse_add_entry(ae, (1LL << 36) - 4096, 4096);
	CHECK_INT(archive_write_header(b.a, ae), ==, ARCHIVE_OK);
	char blk[4096] = {1};
	CHECK_INT(archive_write_data(b.a, blk, sizeof(blk)), ==, 4096);
	archive_entry_free(ae);
	CHECK_INT(tb_close(&b), ==, 0);
	struct rootfs_limits lim;
	rootfs_default_limits(&lim);
	lim.max_file_size = 1LL << 30;
	CHECK_REFUSED(&f, &lim, "over the cap of 1073741824");
	fx_done(&f);
}

TEST(long_names_refused)
{
	struct fx f;
	fx_init(t, &f);
	char name[300];
	memset(name, 'n', 256);
	name[256] = '\0';
	const struct tb_entry es[] = {{.path = name, .data = "1", .len = 1}, {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, es), ==, 0);
	CHECK_REFUSED(&f, NULL, "longer than 255");
	fx_done(&f);
}

TEST(garbage_and_truncated_layers_refused)
{
	struct fx f;
	fx_init(t, &f);
	FILE *fp = fopen(f.layer, "w");
	CHECK(fp != NULL);
	for (int i = 0; i < 5000; i++)
		fputc((i * 131) & 0xff, fp);
	fclose(fp);
	CHECK_REFUSED(&f, NULL, "layer");

	/* A real gzip layer cut in half. */
	size_t n = 1 << 20;
	char *data = malloc(n);
	CHECK(data != NULL);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 2654435761u >> 13);
	const struct tb_entry es[] = {{.path = "x", .data = data, .len = n}, {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_GZIP, es), ==, 0);
	free(data);
	struct stat st;
	CHECK_INT(stat(f.layer, &st), ==, 0);
	CHECK_INT(truncate(f.layer, st.st_size / 2), ==, 0);
	CHECK_REFUSED(&f, NULL, "layer");

	/* A missing layer file is "not found". */
	unlink(f.layer);
	struct msb_err err = {0};
	CHECK_INT(build1(&f, NULL, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	fx_done(&f);
}

/* A failed build leaves an existing image under the name untouched. */
TEST(failure_keeps_previous_image)
{
	struct fx f;
	fx_init(t, &f);
	const struct tb_entry good[] = {{.path = "v1", .data = "1", .len = 1}, {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, good), ==, 0);
	BUILD_OK(&f);
	struct stat before, after;
	CHECK_INT(stat(f.img, &before), ==, 0);
	const struct tb_entry bad[] = {{.path = "../x", .data = "1", .len = 1}, {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_NONE, bad), ==, 0);
	struct msb_err err = {0};
	CHECK_INT(build1(&f, NULL, &err), ==, -1);
	CHECK_INT(stat(f.img, &after), ==, 0);
	CHECK_INT(before.st_ino, ==, after.st_ino);
	CHECK_INT(count_dir_entries(f.dir), ==, 2);
	fx_done(&f);
}

/* Layers decode in parallel: the caps are shared, and the first failing layer is reported. */
TEST(caps_and_errors_across_parallel_layers)
{
	struct fx f;
	fx_init(t, &f);
	char l2[600], l3[600];
	snprintf(l2, sizeof(l2), "%s/layer2", f.dir);
	snprintf(l3, sizeof(l3), "%s/layer3", f.dir);
	size_t n = 40u << 20;
	char *zeros = calloc(1, n);
	CHECK(zeros != NULL);
	const struct tb_entry es[] = {{.path = "z", .data = zeros, .len = n}, {NULL}};
	CHECK_INT(tb_layer(f.layer, TB_ZSTD, es), ==, 0);
	CHECK_INT(tb_layer(l2, TB_GZIP, es), ==, 0);
	CHECK_INT(tb_layer(l3, TB_ZSTD, es), ==, 0);
	free(zeros);
	struct rootfs_layer ls[3] = {{f.layer, NULL}, {l2, NULL}, {l3, NULL}};
	struct rootfs_limits lim;
	rootfs_default_limits(&lim);
	lim.max_total_bytes = 100u << 20; /* each layer fits, the three do not */
	struct msb_err err = {0};
	CHECK_INT(rootfs_build_limited(ls, 3, f.img, &lim, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	CHECK(strstr(err.msg, "bytes of file data") != NULL);
	CHECK(strstr(err.msg, "stopped") == NULL);
	lim.max_total_bytes = 120u << 20;
	CHECK_INT(rootfs_build_limited(ls, 3, f.img, &lim, &err), ==, 0);

	/* layers 2 and 3 are both broken: layer 2 is named */
	const struct tb_entry bad[] = {{.path = "../up", .data = "x", .len = 1}, {NULL}};
	CHECK_INT(tb_layer(l2, TB_NONE, bad), ==, 0);
	CHECK_INT(tb_layer(l3, TB_NONE, bad), ==, 0);
	CHECK_INT(rootfs_build(ls, 3, f.img, &err), ==, -1);
	if (!strstr(err.msg, "layer 2 of 3"))
		TEST_FAIL("unexpected message: %s", err.msg);
	CHECK(strstr(err.msg, "leaves the root") != NULL);
	fx_done(&f);
}

TEST_MAIN(T(dotdot_is_refused), T(dotdot_inside_the_tree_is_fine), T(absolute_paths_land_inside),
	  T(write_through_symlink_stays_inside), T(symlink_loops_are_refused),
	  T(file_used_as_directory_is_refused), T(hardlink_to_outside_is_refused),
	  T(hardlink_to_missing_target_is_refused), T(hardlink_to_directory_is_refused),
	  T(hardlink_through_symlink_stays_inside), T(tar_bomb_entries_capped),
	  T(tar_bomb_bytes_capped), T(claimed_size_capped), T(sparse_apparent_size_capped),
	  T(long_names_refused), T(garbage_and_truncated_layers_refused),
	  T(failure_keeps_previous_image), T(caps_and_errors_across_parallel_layers))
