/* Helpers of the rootfs unit tests: tar layers written with libarchive, and images read
 * back with libext2fs (no mount, no root needed). */
#ifndef MSB_TEST_ROOTFS_UTIL_H
#define MSB_TEST_ROOTFS_UTIL_H

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "rootfs/rootfs.h"
#include "tests/unit/test.h"

/* ---- a scratch directory per test ------------------------------------------------- */

static inline char *scratch_dir(void)
{
	const char *base = getenv("TMPDIR");
	char *d = NULL;
	if (asprintf(&d, "%s/msb-rootfs-test-XXXXXX", base ? base : "/tmp") < 0)
		return NULL;
	return mkdtemp(d);
}

static inline void rm_rf(const char *path)
{
	char *cmd = NULL;
	if (asprintf(&cmd, "rm -rf '%s'", path) >= 0) {
		if (system(cmd) != 0)
			fprintf(stderr, "rm -rf %s failed\n", path);
	}
	free(cmd);
}

static inline int count_dir_entries(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* ---- writing layers ------------------------------------------------------------------- */

enum tb_compress { TB_NONE, TB_GZIP, TB_ZSTD };

struct tb {
	struct archive *a;
};

static inline int tb_open(struct tb *b, const char *path, enum tb_compress c)
{
	b->a = archive_write_new();
	if (!b->a || archive_write_set_format_pax(b->a) != ARCHIVE_OK)
		return -1;
	if (c == TB_GZIP && archive_write_add_filter_gzip(b->a) != ARCHIVE_OK)
		return -1;
	if (c == TB_ZSTD && archive_write_add_filter_zstd(b->a) != ARCHIVE_OK)
		return -1;
	return archive_write_open_filename(b->a, path) == ARCHIVE_OK ? 0 : -1;
}

static inline int tb_close(struct tb *b)
{
	int rc = archive_write_close(b->a) == ARCHIVE_OK ? 0 : -1;
	archive_write_free(b->a);
	b->a = NULL;
	return rc;
}

/* An entry; data only for regular files. */
struct tb_entry {
	const char *path;
	mode_t mode; /* with the type bits */
	unsigned uid, gid;
	const char *data; /* regular: content; symlink: target */
	size_t len;	  /* regular: length of data */
	const char *hardlink;
	unsigned rmajor, rminor;
	time_t mtime;
	long mtime_nsec;
	const char *xname, *xvalue; /* one xattr */
	int64_t size_claim;	    /* when non-zero: the size header, data not written */
};

static inline int tb_add(struct tb *b, const struct tb_entry *e)
{
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, e->path);
	archive_entry_set_mode(ae, e->mode ? e->mode : (S_IFREG | 0644));
	archive_entry_set_uid(ae, e->uid);
	archive_entry_set_gid(ae, e->gid);
	archive_entry_set_mtime(ae, e->mtime ? e->mtime : 1700000000, e->mtime_nsec);
	if (e->hardlink) {
		archive_entry_set_hardlink(ae, e->hardlink);
		archive_entry_set_size(ae, 0);
	} else if (S_ISLNK(e->mode)) {
		archive_entry_set_symlink(ae, e->data);
	} else if (S_ISCHR(e->mode) || S_ISBLK(e->mode)) {
		archive_entry_set_rdevmajor(ae, e->rmajor);
		archive_entry_set_rdevminor(ae, e->rminor);
	} else if (S_ISREG(e->mode ? e->mode : S_IFREG)) {
		archive_entry_set_size(ae, e->size_claim ? e->size_claim
							 : (la_int64_t)(e->data ? e->len : 0));
	}
	if (e->xname)
		archive_entry_xattr_add_entry(ae, e->xname, e->xvalue, strlen(e->xvalue));
	/* A name that is not UTF-8 is written raw (hdrcharset=BINARY) with a warning. */
	int r = archive_write_header(b->a, ae);
	int rc = r == ARCHIVE_OK || r == ARCHIVE_WARN ? 0 : -1;
	if (rc == 0 && e->data && e->len && !e->size_claim && S_ISREG(e->mode ? e->mode : S_IFREG))
		rc = archive_write_data(b->a, e->data, e->len) == (la_ssize_t)e->len ? 0 : -1;
	archive_entry_free(ae);
	return rc;
}

/* Write a whole layer from a list of entries ending with {NULL}. */
static inline int tb_layer(const char *path, enum tb_compress c, const struct tb_entry *es)
{
	struct tb b;
	if (tb_open(&b, path, c) < 0)
		return -1;
	for (; es->path; es++)
		if (tb_add(&b, es) < 0)
			return -1;
	return tb_close(&b);
}

/* ---- reading images ---------------------------------------------------------------------- */

static inline ext2_filsys img_open(const char *path)
{
	ext2_filsys fs = NULL;
	if (ext2fs_open(path, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs))
		return NULL;
	return fs;
}

/* The inode number of a path (last symlink not followed), 0 when absent. */
static inline ext2_ino_t img_ino(ext2_filsys fs, const char *path)
{
	ext2_ino_t ino = 0;
	if (ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino))
		return 0;
	return ino;
}

static inline int img_inode(ext2_filsys fs, const char *path, struct ext2_inode_large *li)
{
	ext2_ino_t ino = img_ino(fs, path);
	if (!ino)
		return -1;
	memset(li, 0, sizeof(*li));
	return ext2fs_read_inode_full(fs, ino, (struct ext2_inode *)li, sizeof(*li)) ? -1 : 0;
}

/* A regular file's (or long symlink's) content, NUL-terminated; caller frees. */
static inline char *img_read(ext2_filsys fs, const char *path, size_t *len)
{
	ext2_ino_t ino = img_ino(fs, path);
	ext2_file_t f;
	if (!ino || ext2fs_file_open(fs, ino, 0, &f))
		return NULL;
	__u64 size = 0;
	if (ext2fs_file_get_lsize(f, &size)) {
		ext2fs_file_close(f);
		return NULL;
	}
	char *buf = calloc(1, size + 1);
	unsigned int got = 0;
	if (buf && size && ext2fs_file_read(f, buf, (unsigned int)size, &got)) {
		free(buf);
		buf = NULL;
	}
	ext2fs_file_close(f);
	if (len)
		*len = got;
	return buf;
}

static inline char *img_xattr(ext2_filsys fs, const char *path, const char *name, size_t *len)
{
	ext2_ino_t ino = img_ino(fs, path);
	struct ext2_xattr_handle *h;
	void *v = NULL;
	size_t l = 0;
	if (!ino || ext2fs_xattrs_open(fs, ino, &h))
		return NULL;
	if (ext2fs_xattrs_read(h) || ext2fs_xattr_get(h, name, &v, &l))
		v = NULL;
	ext2fs_xattrs_close(&h);
	if (len)
		*len = l;
	return v;
}

static inline unsigned img_uid(const struct ext2_inode_large *li)
{
	return li->i_uid | ((unsigned)li->osd2.linux2.l_i_uid_high << 16);
}

static inline unsigned img_gid(const struct ext2_inode_large *li)
{
	return li->i_gid | ((unsigned)li->osd2.linux2.l_i_gid_high << 16);
}

/* e2fsck -fn: 0 when the image is consistent. */
static inline int img_fsck(const char *path)
{
	char *cmd = NULL;
	if (asprintf(&cmd, "PATH=/sbin:/usr/sbin:$PATH e2fsck -fn '%s' >/dev/null 2>&1", path) < 0)
		return -1;
	int rc = system(cmd);
	free(cmd);
	return rc;
}

#endif
