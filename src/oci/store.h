/* The image store under $MICROSANDBOX_HOME/images:
 *
 *   images/images.db              SQLite: images, manifests, configs, layers (manifest order)
 *   images/blobs/sha256/<hex>     every blob (manifest, config, layer), verified, read-only
 *   images/rootfs/<hex>.<fmt>     one root filesystem image per manifest (<hex> of it)
 *   images/tmp/                   partial downloads (resumed by the next pull) and temp files
 *   images/locks/                 one lock file per reference being pulled
 *
 * An image is visible (oci_store_get) only once its row exists, and the row is written
 * last, in one transaction, after every blob was verified and its root filesystem image
 * was renamed into place: a killed pull leaves no image that looks complete.
 *
 * This is the C API the sandbox code uses:
 *
 *   struct oci_store *st;  oci_store_open(NULL, &st, &err);
 *   struct oci_image *img; oci_image_ensure(st, "python", NULL, &img, &err);
 *   ... img->rootfs_path, img->rootfs_format, img->config.env / cmd / entrypoint ...
 *   oci_image_free(img);   oci_store_close(st);
 */
#ifndef MSB_OCI_STORE_H
#define MSB_OCI_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "oci/manifest.h"
#include "oci/ref.h"

struct oci_store;

struct oci_layer {
	char digest[OCI_DIGEST_MAX + 1];
	char media_type[128];
	uint64_t size;
	char *path; /* the blob in the store; owned */
};

/* An image in the store.  Everything is owned by the struct; oci_image_free() frees it. */
struct oci_image {
	char *reference;       /* normalised: "docker.io/library/python:latest" */
	char *manifest_digest; /* the platform manifest's digest */
	char *index_digest;    /* the index it was chosen from, or NULL */
	char *config_digest;   /* NULL for an image imported from a directory */
	char *media_type;      /* of the manifest */
	char *rootfs_path;     /* the read-only root filesystem image to boot */
	char *rootfs_format;   /* "erofs" or "ext4": msb.rootfstype for msb-init */
	uint64_t size;	       /* compressed bytes of its layers */
	int64_t pulled_at;     /* unix seconds */
	struct oci_image_config config;
	struct oci_layer *layers; /* manifest order, lowest first */
	size_t n_layers;
};

/* Open (creating) the store under `home` (NULL: $MICROSANDBOX_HOME).  The caller owns
 * *out and closes it with oci_store_close(). */
int oci_store_open(const char *home, struct oci_store **out, struct msb_err *err);
void oci_store_close(struct oci_store *st);

/* The store's directory ("<home>/images") and the settings home. */
const char *oci_store_dir(const struct oci_store *st);
const char *oci_store_home(const struct oci_store *st);

/* Look up an image by reference as a user types it ("python", "localhost:5000/x:1") or by
 * (a prefix of at least 12 hex digits of) its manifest digest.  *out is the caller's
 * (oci_image_free).  MSB_EK_NOT_FOUND, with a hint to pull, when absent. */
int oci_store_get(struct oci_store *st, const char *ref, struct oci_image **out,
		  struct msb_err *err);
void oci_image_free(struct oci_image *img);

/* Every image, sorted by reference.  *out is a caller-owned array of *n owned images;
 * free with oci_image_list_free(). */
int oci_store_list(struct oci_store *st, struct oci_image ***out, size_t *n, struct msb_err *err);
void oci_image_list_free(struct oci_image **v, size_t n);

/* Forget a reference, then remove blobs and root filesystem images no image uses. */
int oci_store_remove(struct oci_store *st, const char *ref, struct msb_err *err);

/* Remove unreferenced blobs, root filesystem images, partial downloads and temp files.
 * `freed` (may be NULL) receives the bytes reclaimed. */
int oci_store_prune(struct oci_store *st, uint64_t *freed, struct msb_err *err);

/* Paths inside the store (buffers of at least 4096 bytes). */
void oci_store_blob_path(const struct oci_store *st, const char *digest, char *buf, size_t len);
void oci_store_partial_path(const struct oci_store *st, const char *digest, char *buf, size_t len);
void oci_store_rootfs_path(const struct oci_store *st, const char *manifest_digest, char *buf,
			   size_t len);

/* What a pull or import records; everything borrowed. */
struct oci_image_record {
	const char *reference;	     /* normalised */
	const char *manifest_digest; /* may be a synthetic digest for a directory import */
	const char *index_digest;    /* or NULL */
	const char *media_type;
	const char *manifest_json; /* may be NULL */
	size_t manifest_len;
	const char *config_digest; /* or NULL */
	const char *config_json;   /* or NULL */
	size_t config_len;
	const struct oci_descriptor *layers;
	size_t n_layers;
	const char *rootfs_path;
	const char *rootfs_format;
};

/* Record an image (replacing what the reference named before) in one transaction. */
int oci_store_commit(struct oci_store *st, const struct oci_image_record *rec, struct msb_err *err);

/* The rootfs path recorded for a manifest digest when that file still exists (another
 * reference of the same image), as an owned string; NULL otherwise. */
char *oci_store_rootfs_for(struct oci_store *st, const char *manifest_digest);

/* Take the per-reference pull lock (blocking); returns an fd to close to release it. */
int oci_store_lock_ref(struct oci_store *st, const char *reference, struct msb_err *err);

/* The store-wide lock, shared: held by a pull for its whole length so that rm and prune
 * (which take it exclusively) never delete what it is about to record.  Close to release. */
int oci_store_lock_shared(struct oci_store *st, struct msb_err *err);

#endif
