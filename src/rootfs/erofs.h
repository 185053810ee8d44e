/* The EROFS image writer (uncompressed; experimental, see docs/rootfs.md). */
#ifndef MSB_ROOTFS_EROFS_H
#define MSB_ROOTFS_EROFS_H

#include "common/error.h"
#include "rootfs/tree.h"

/* Write the tree as an EROFS image at `path` (created or replaced; the caller renames it
 * into place).  Numbers the tree's inodes (ino fields).  Returns 0 or -1 with err. */
int rootfs_erofs_write(struct rf_tree *t, const char *path, struct msb_err *err);

#endif
