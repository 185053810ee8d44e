/* The ext4 image writer (libext2fs). */
#ifndef MSB_ROOTFS_EXT4_H
#define MSB_ROOTFS_EXT4_H

#include <stdint.h>

#include "common/error.h"
#include "rootfs/tree.h"

struct rootfs_ext4_plan {
	uint64_t inodes;    /* distinct inodes in the tree */
	uint64_t blocks;    /* 4 KiB blocks of data, directories, long symlinks, xattrs */
	uint64_t fs_blocks; /* the file system size chosen from those */
	uint64_t fs_inodes;
};

/* Number the tree's inodes (ino fields) and estimate the image size. */
void rootfs_ext4_plan(struct rf_tree *t, struct rootfs_ext4_plan *p);

/* Write the tree as an ext4 image at `path` (created or replaced; not renamed: the
 * caller writes to a temporary name).  Returns 0 or -1 with err. */
int rootfs_ext4_write(struct rf_tree *t, const char *path, struct msb_err *err);

#endif
