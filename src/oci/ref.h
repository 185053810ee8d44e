/* Image references, normalised exactly as Docker does.
 *
 *   python                      -> docker.io/library/python:latest
 *   user/img                    -> docker.io/user/img:latest
 *   localhost:5000/ns/img:tag   -> localhost:5000/ns/img:tag
 *   img@sha256:<64 hex>         -> docker.io/library/img@sha256:<64 hex>   (no tag added)
 *   img:tag@sha256:<64 hex>     -> both kept; the digest is what is pulled
 *
 * The first path component is a registry host when it contains '.' or ':', is
 * "localhost", or has an upper-case letter (Docker's rule).  index.docker.io and
 * registry-1.docker.io are spelled docker.io.  The normalised string is the key of an
 * image in the store.
 */
#ifndef MSB_OCI_REF_H
#define MSB_OCI_REF_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

#define OCI_NAME_MAX   255 /* registry + '/' + repository, as Docker limits it */
#define OCI_TAG_MAX    128
#define OCI_DIGEST_MAX 71 /* "sha256:" + 64 hex */

struct oci_ref {
	char registry[OCI_NAME_MAX + 1];   /* "docker.io", "localhost:5000" */
	char repository[OCI_NAME_MAX + 1]; /* "library/python" */
	char tag[OCI_TAG_MAX + 1];	   /* "" when only a digest was given */
	char digest[OCI_DIGEST_MAX + 1];   /* "" or "sha256:<hex>" */
};

/* Parse and normalise `s` into `out` (caller-owned).  -1 with a MSB_EK_USAGE error that
 * names what is wrong. */
int oci_ref_parse(const char *s, struct oci_ref *out, struct msb_err *err);

/* The normalised string ("docker.io/library/python:latest") into buf; -1 when it does not
 * fit (never for a parsed reference and len >= OCI_REF_STR_MAX). */
#define OCI_REF_STR_MAX (2 * OCI_NAME_MAX + OCI_TAG_MAX + OCI_DIGEST_MAX + 4)
int oci_ref_format(const struct oci_ref *ref, char *buf, size_t len);

/* What to ask the registry for: the digest when there is one, else the tag. */
const char *oci_ref_target(const struct oci_ref *ref);

/* True for a well-formed "sha256:<64 lower-case hex>". */
bool oci_digest_valid(const char *d);

/* True when `registry` (host[:port]) is a loopback name or address: such registries are
 * reached over plain HTTP, as Docker does. */
bool oci_registry_is_loopback(const char *registry);

#endif
