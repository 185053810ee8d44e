/* msb image import: images from disk rather than a registry.
 *
 * PATH may be an OCI image layout directory (oci-layout + index.json + blobs/), a tar of
 * one (`skopeo copy ... oci-archive:x.tar`), a docker-archive tar (`docker save`:
 * manifest.json + config + layer tars), or a plain root filesystem directory.  Blobs are
 * verified against their digests as they are copied into the store.  The image is
 * recorded under NAME (normalised like any reference), replacing what NAME named.
 */
#ifndef MSB_OCI_IMPORT_H
#define MSB_OCI_IMPORT_H

#include "common/error.h"
#include "oci/store.h"

/* *out (may be NULL) receives the stored image, the caller's to free. */
int oci_import(struct oci_store *st, const char *path, const char *name, struct oci_image **out,
	       struct msb_err *err);

/* For `image: ./dir` in a Sandboxfile: the image of a root filesystem directory, recorded
 * as "localhost/dir-<12 hex of sha256(real path)>:latest".  Cheap when the tree did not
 * change since the last call (the root filesystem image is reused); rebuilt otherwise.
 * *out is the caller's (oci_image_free). */
int oci_image_from_dir(struct oci_store *st, const char *dir, struct oci_image **out,
		       struct msb_err *err);

#endif
