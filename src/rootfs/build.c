/* rootfs_build(): layers -> merged tree -> image file, renamed into place when complete. */
#include "rootfs/rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "rootfs/dir.h"
#include "rootfs/erofs.h"
#include "rootfs/ext4.h"
#include "rootfs/layer.h"
#include "rootfs/tree.h"

void rootfs_default_limits(struct rootfs_limits *l)
{
	l->max_total_bytes = 64ULL << 30;
	l->max_entries = 4000000;
	l->max_file_size = 64ULL << 30;
}

const char *rootfs_format(void)
{
	const char *f = getenv("MSB_ROOTFS_FORMAT");
	if (f && strcmp(f, "erofs") == 0)
		return "erofs";
	if (f && strcmp(f, "ext4") == 0)
		return "ext4";
	return ROOTFS_DEFAULT_FORMAT;
}

/* The directory holding `path` (caller frees). */
static char *dir_of(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return NULL;
	char *d = strdup(dirname(copy));
	free(copy);
	return d;
}

static int sync_dir(const char *dir)
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return -1;
	return 0;
}

/* Write the tree to a temporary name beside out_path, then rename it into place. */
static int finish(struct rf_tree *t, const char *out_path, const char *dir, struct msb_err *err)
{
	size_t len = strlen(out_path) + 32;
	_cleanup_free_ char *tmp = malloc(len);
	if (!tmp)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "image path");
	snprintf(tmp, len, "%s.tmp-XXXXXX", out_path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "creating %s", tmp);
	close(fd);
	int rc = strcmp(rootfs_format(), "erofs") == 0 ? rootfs_erofs_write(t, tmp, err)
						       : rootfs_ext4_write(t, tmp, err);
	if (rc < 0)
		goto fail;
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		msb_err_sys(err, "syncing %s", tmp);
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	close(fd);
	if (rename(tmp, out_path) < 0) {
		msb_err_sys(err, "renaming %s to %s", tmp, out_path);
		goto fail;
	}
	if (sync_dir(dir) < 0)
		return msb_err_sys(err, "syncing %s", dir);
	return 0;
fail:
	unlink(tmp);
	return -1;
}

int rootfs_build_limited(const struct rootfs_layer *layers, size_t n, const char *out_path,
			 const struct rootfs_limits *limits, struct msb_err *err)
{
	if (!out_path || (n && !layers))
		return msb_err_set(err, MSB_EK_USAGE, 0, "rootfs_build: no output path or layers");
	_cleanup_free_ char *dir = dir_of(out_path);
	if (!dir)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "image path");
	struct rf_tree *t = rf_tree_new(dir, limits, err);
	if (!t)
		return -1;
	int rc = rf_layers_apply(t, layers, n, err);
	if (rc == 0)
		rc = finish(t, out_path, dir, err);
	rf_tree_free(t);
	if (rc < 0)
		return msb_err_wrap(err, "building the root filesystem %s", out_path);
	return 0;
}

int rootfs_build(const struct rootfs_layer *layers, size_t n, const char *out_path,
		 struct msb_err *err)
{
	return rootfs_build_limited(layers, n, out_path, NULL, err);
}

int rootfs_build_from_dir(const char *src, const char *out_path, struct msb_err *err)
{
	if (!src || !out_path)
		return msb_err_set(err, MSB_EK_USAGE, 0, "rootfs_build_from_dir: no directory");
	_cleanup_free_ char *dir = dir_of(out_path);
	if (!dir)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "image path");
	struct rf_tree *t = rf_tree_new(dir, NULL, err);
	if (!t)
		return -1;
	int rc = rf_dir_scan(t, src, err);
	if (rc == 0)
		rc = finish(t, out_path, dir, err);
	rf_tree_free(t);
	if (rc < 0)
		return msb_err_wrap(err, "building the root filesystem %s from %s", out_path, src);
	return 0;
}
