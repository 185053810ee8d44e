/* A plain directory as the source of a root filesystem (see dir.c). */
#ifndef MSB_ROOTFS_DIR_H
#define MSB_ROOTFS_DIR_H

#include "common/error.h"
#include "rootfs/tree.h"

/* Add everything below `src` to the tree (as layer 1); symlinks are not followed, names
 * starting with ".wh." are ordinary names here.  Regular files are read later, when the
 * image is written. */
int rf_dir_scan(struct rf_tree *t, const char *src, struct msb_err *err);

#endif
