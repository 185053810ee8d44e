/* rootfs_build_from_dir(): a plain directory tree as an image (`image: ./dir`).
 */
#include <fcntl.h>
#include <sys/xattr.h>

#include "tests/unit/test_rootfs_util.h"

static void put(struct test_ctx *t, const char *dir, const char *name, const char *data,
		mode_t mode)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	CHECK(fd >= 0);
	CHECK_INT(write(fd, data, strlen(data)), ==, (long long)strlen(data));
	close(fd);
	CHECK_INT(chmod(p, mode), ==, 0);
}

TEST(directory_tree_is_copied)
{
	CHECK_INT(setenv("MSB_ROOTFS_FORMAT", "ext4", 1), ==, 0); /* read back with libext2fs */
	char *src = scratch_dir(), *out = scratch_dir();
	CHECK(src && out);
	char p[600], q[600], img[600];
	snprintf(img, sizeof(img), "%s/dir.img", out);
	snprintf(p, sizeof(p), "%s/sub", src);
	CHECK_INT(mkdir(p, 0750), ==, 0);
	put(t, src, "sub/file", "content", 04711);
	put(t, src, ".wh.literal", "a plain name here", 0644);
	snprintf(p, sizeof(p), "%s/sub/file", src);
	snprintf(q, sizeof(q), "%s/hard", src);
	CHECK_INT(link(p, q), ==, 0);
	snprintf(q, sizeof(q), "%s/sym", src);
	CHECK_INT(symlink("sub/file", q), ==, 0);
	snprintf(q, sizeof(q), "%s/fifo", src);
	CHECK_INT(mkfifo(q, 0600), ==, 0);
	bool xattrs = setxattr(p, "user.k", "val", 3, 0) == 0;
	bool root = geteuid() == 0;
	if (root) /* chown clears setuid: set the mode after it */
		CHECK_INT(lchown(p, 1234, 5678), ==, 0);
	CHECK_INT(chmod(p, 04711), ==, 0);

	struct msb_err err = {0};
	if (rootfs_build_from_dir(src, img, &err) != 0)
		TEST_FAIL("rootfs_build_from_dir: %s", err.msg);
	CHECK_INT(img_fsck(img), ==, 0);
	ext2_filsys fs = img_open(img);
	CHECK(fs != NULL);
	struct ext2_inode_large li;
	CHECK_INT(img_inode(fs, "sub", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFDIR | 0750);
	CHECK_INT(img_inode(fs, "sub/file", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFREG | 04711);
	CHECK_INT(li.i_links_count, ==, 2);
	CHECK_INT(img_uid(&li), ==, root ? 1234 : 0);
	CHECK_INT(img_gid(&li), ==, root ? 5678 : 0);
	char *d = img_read(fs, "sub/file", NULL);
	CHECK_STR(d, "content");
	free(d);
	CHECK_INT(img_ino(fs, "hard"), ==, img_ino(fs, "sub/file"));
	d = img_read(fs, ".wh.literal", NULL);
	CHECK_STR(d, "a plain name here");
	free(d);
	CHECK_INT(img_inode(fs, "sym", &li), ==, 0);
	CHECK(LINUX_S_ISLNK(li.i_mode));
	CHECK_INT(memcmp(li.i_block, "sub/file", 8), ==, 0);
	CHECK_INT(img_inode(fs, "fifo", &li), ==, 0);
	CHECK_INT(li.i_mode, ==, S_IFIFO | 0600);
	if (xattrs) {
		size_t len;
		char *x = img_xattr(fs, "sub/file", "user.k", &len);
		CHECK(x && len == 3 && memcmp(x, "val", 3) == 0);
		free(x);
	}
	ext2fs_close_free(&fs);
	/* Only the image is left beside it: no temporary, no spool. */
	CHECK_INT(count_dir_entries(out), ==, 1);
	rm_rf(src);
	rm_rf(out);
	free(src);
	free(out);
}

TEST(missing_directory_is_not_found)
{
	char *out = scratch_dir();
	CHECK(out != NULL);
	char img[600], src[600];
	snprintf(img, sizeof(img), "%s/dir.img", out);
	snprintf(src, sizeof(src), "%s/nope", out);
	struct msb_err err = {0};
	CHECK_INT(rootfs_build_from_dir(src, img, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK_INT(count_dir_entries(out), ==, 0);
	rm_rf(out);
	free(out);
}

TEST_MAIN(T(directory_tree_is_copied), T(missing_directory_is_not_found))
