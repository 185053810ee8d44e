/* OCI / Docker manifest, index and image-config JSON.
 *
 * Pure parsers over untrusted bytes (a registry or an archive is hostile): every field is
 * type-checked, digests must be sha256, sizes must be non-negative integers, counts are
 * bounded.  Each has a fuzz target (tests/fuzz/fuzz_oci_*.c).
 */
#ifndef MSB_OCI_MANIFEST_H
#define MSB_OCI_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "oci/ref.h"

#define OCI_MT_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define OCI_MT_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_OCI_CONFIG      "application/vnd.oci.image.config.v1+json"
#define OCI_MT_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MT_DOCKER_CONFIG   "application/vnd.docker.container.image.v1+json"
#define OCI_MT_OCI_LAYER       "application/vnd.oci.image.layer.v1.tar"
#define OCI_MT_OCI_LAYER_GZIP  "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_MT_OCI_LAYER_ZSTD  "application/vnd.oci.image.layer.v1.tar+zstd"
#define OCI_MT_DOCKER_LAYER    "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define OCI_MANIFEST_ACCEPT                                               \
	OCI_MT_OCI_INDEX ", " OCI_MT_OCI_MANIFEST ", " OCI_MT_DOCKER_LIST \
			 ", " OCI_MT_DOCKER_MANIFEST

#define OCI_MANIFEST_MAX_BYTES (4u << 20) /* as the distribution spec suggests */
#define OCI_MAX_LAYERS	       1024
#define OCI_MAX_INDEX	       4096

struct oci_descriptor {
	char media_type[128];
	char digest[OCI_DIGEST_MAX + 1];
	uint64_t size;
	/* Index entries only: */
	char os[32], architecture[32], variant[16];
	bool attestation; /* annotation vnd.docker.reference.type (e.g. attestation-manifest) */
};

enum oci_doc_kind { OCI_DOC_MANIFEST, OCI_DOC_INDEX };

/* An image manifest: config and layers in order (lowest first). */
struct oci_manifest {
	char media_type[128];
	struct oci_descriptor config;
	struct oci_descriptor *layers; /* owned; oci_manifest_release() frees */
	size_t n_layers;
};

struct oci_index {
	struct oci_descriptor *manifests; /* owned */
	size_t n;
};

/* The parts of an image config a sandbox uses.  Arrays are NULL-terminated, owned. */
struct oci_image_config {
	char **env;	      /* "K=V" */
	char **cmd;	      /* NULL when absent */
	char **entrypoint;    /* NULL when absent */
	char **exposed_ports; /* "80/tcp" */
	char *working_dir;    /* NULL when absent */
	char *user;	      /* NULL when absent */
	char *os, *architecture;
	size_t n_diff_ids;
};

/* Which kind of document this is, from the Content-Type (may be NULL) or the JSON's own
 * mediaType / shape.  -1 with MSB_EK_CORRUPT for schema 1 and unknown types. */
int oci_doc_kind(const char *content_type, const char *json, size_t len, enum oci_doc_kind *out,
		 struct msb_err *err);

int oci_manifest_parse(const char *json, size_t len, struct oci_manifest *out, struct msb_err *err);
void oci_manifest_release(struct oci_manifest *m);

int oci_index_parse(const char *json, size_t len, struct oci_index *out, struct msb_err *err);
void oci_index_release(struct oci_index *idx);

/* The entry for os/arch (variant ignored unless `variant` is non-NULL): entries marked
 * as attestations are skipped; an exact os+arch match wins.  NULL with MSB_EK_NOT_FOUND
 * listing the platforms the index has. */
const struct oci_descriptor *oci_index_select(const struct oci_index *idx, const char *os,
					      const char *arch, const char *variant,
					      struct msb_err *err);

int oci_config_parse(const char *json, size_t len, struct oci_image_config *out,
		     struct msb_err *err);
void oci_config_release(struct oci_image_config *c);

/* True for a layer media type we can unpack (tar, tar+gzip, tar+zstd, OCI or Docker). */
bool oci_layer_type_supported(const char *media_type);

/* NULL-terminated string array helpers (owned arrays of owned strings). */
void oci_strv_free(char **v);
size_t oci_strv_len(char *const *v);

#endif
