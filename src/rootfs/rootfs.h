/* Root filesystem images from OCI layers.
 *
 * The store calls rootfs_build() after a pull or an import; a sandbox later boots with the
 * image file as its first virtio-blk disk (read-only), which msb-init mounts as the lower
 * layer of an overlay.  The image is written directly (no extraction onto the host), so
 * ownership, modes, xattrs and device nodes are kept without host root.  See docs/rootfs.md.
 */
#ifndef MSB_ROOTFS_ROOTFS_H
#define MSB_ROOTFS_ROOTFS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct rootfs_layer {
	const char *path;	/* a layer blob on disk (tar, tar+gzip or tar+zstd) */
	const char *media_type; /* OCI/Docker layer media type, or NULL: sniff the bytes */
};

/* Apply the layers in order (whiteouts, opaque directories) and write the read-only
 * root filesystem image to out_path (written to a temporary file beside it and renamed,
 * so a crash never leaves a half image under that name).  Returns 0 or -1 with err. */
int rootfs_build(const struct rootfs_layer *layers, size_t n, const char *out_path,
		 struct msb_err *err);

/* The same from a plain directory tree (for `image: ./dir` and `msb image import DIR`). */
int rootfs_build_from_dir(const char *dir, const char *out_path, struct msb_err *err);

/* The image format in use ("ext4" or "erofs"), what msb-init is told as msb.rootfstype.
 * ROOTFS_DEFAULT_FORMAT unless the environment says MSB_ROOTFS_FORMAT=ext4 or =erofs. */
const char *rootfs_format(void);

/* Additions beyond the contract. */

/* The format rootfs_build() writes when MSB_ROOTFS_FORMAT does not choose (docs/rootfs.md). */
#define ROOTFS_DEFAULT_FORMAT "erofs"

/* Caps against tar bombs; a layer set that exceeds one fails with kind corrupt. */
struct rootfs_limits {
	uint64_t max_total_bytes; /* file data over all layers (what the spool holds) */
	uint64_t max_entries;	  /* tar entries over all layers, whiteouts included */
	uint64_t max_file_size;	  /* apparent size of one file (sparse or claimed) */
};

/* The defaults rootfs_build() uses: 64 GiB, 4 million entries, 64 GiB. */
void rootfs_default_limits(struct rootfs_limits *l);

/* rootfs_build() with explicit caps (NULL: the defaults). */
int rootfs_build_limited(const struct rootfs_layer *layers, size_t n, const char *out_path,
			 const struct rootfs_limits *limits, struct msb_err *err);

#endif
