/* One OCI layer applied to the merged tree (see tree.h). */
#ifndef MSB_ROOTFS_LAYER_H
#define MSB_ROOTFS_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "rootfs/tree.h"

/* Whether `media_type` (NULL: unknown, sniffed) names a tar layer we read. */
int rf_layer_media_type_ok(const char *media_type);

/* Apply the layer blob at `path` as layer number `layer` (1, 2, ... in manifest order).
 * The compression (none, gzip, zstd) is sniffed from the bytes. */
int rf_layer_apply(struct rf_tree *t, const char *path, const char *media_type, uint32_t layer,
		   struct msb_err *err);

/* Layers 1..n, decoded in parallel (up to 4 threads, as many as there are CPUs) and applied
 * in order; errors name the layer ("layer 2 of 5: ...").  What rootfs_build() uses. */
int rf_layers_apply(struct rf_tree *t, const struct rootfs_layer *layers, size_t n,
		    struct msb_err *err);

/* The same from memory (tests, the fuzz target). */
int rf_layer_apply_mem(struct rf_tree *t, const void *data, size_t len, uint32_t layer,
		       struct msb_err *err);

#endif
