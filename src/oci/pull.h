/* Pulling images into the store, and the call a sandbox makes to get one. */
#ifndef MSB_OCI_PULL_H
#define MSB_OCI_PULL_H

#include <stdbool.h>

#include "common/error.h"
#include "oci/registry.h"
#include "oci/store.h"

struct oci_pull_opts {
	const char *os, *arch;	  /* default linux/amd64 */
	oci_progress_fn progress; /* per-blob progress, may be NULL */
	void *ctx;
	/* One-line status messages ("resolved ... to sha256:..."), may be NULL. */
	void (*status)(void *ctx, const char *msg);
};

/* Resolve `ref` at its registry (always contacting it), fetch what the store lacks,
 * verify it, build the root filesystem image and record the image.  *up_to_date (may be
 * NULL) says whether the store already had exactly this manifest.  *out (may be NULL)
 * receives the stored image, the caller's to free. */
int oci_pull(struct oci_store *st, const char *ref, const struct oci_pull_opts *opts,
	     struct oci_image **out, bool *up_to_date, struct msb_err *err);

/* The image for `ref` from the store, pulling it only when the store does not have it
 * (offline use works for stored images).  *out is the caller's (oci_image_free). */
int oci_image_ensure(struct oci_store *st, const char *ref, const struct oci_pull_opts *opts,
		     struct oci_image **out, struct msb_err *err);

/* Store one blob given in memory (a manifest, an index) under its digest. */
int oci_store_put_blob(struct oci_store *st, const char *digest, const void *data, size_t len,
		       struct msb_err *err);

/* Internal, shared by pull and import: `doc` is an image manifest whose config and layer
 * blobs are in the store.  Verifies the config, builds the root filesystem image (from
 * the layers, or from the directory `from_dir` when not NULL) unless one exists for this
 * manifest, and records the image under `key` (normalised). */
int oci_finish_image(struct oci_store *st, const char *key, const struct oci_doc *doc,
		     const char *index_digest, const char *from_dir, const struct oci_pull_opts *o,
		     struct oci_image **out, struct msb_err *err);

#endif
