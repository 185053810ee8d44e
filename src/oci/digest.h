/* sha256 digests ("sha256:<64 hex>") over buffers, files and streams (OpenSSL). */
#ifndef MSB_OCI_DIGEST_H
#define MSB_OCI_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "oci/ref.h"

struct oci_hasher; /* opaque; a running sha256 */

struct oci_hasher *oci_hasher_new(void);
void oci_hasher_free(struct oci_hasher *h);
void oci_hasher_reset(struct oci_hasher *h);
void oci_hasher_update(struct oci_hasher *h, const void *data, size_t len);
/* Writes "sha256:<hex>" (OCI_DIGEST_MAX + 1 bytes); the hasher can be reset and reused. */
void oci_hasher_final(struct oci_hasher *h, char out[OCI_DIGEST_MAX + 1]);

void oci_sha256_buf(const void *data, size_t len, char out[OCI_DIGEST_MAX + 1]);
/* Hash the first `limit` bytes of an open fd from offset 0 (UINT64_MAX: all). */
int oci_sha256_fd(int fd, uint64_t limit, struct oci_hasher *h, uint64_t *nread,
		  struct msb_err *err);
int oci_sha256_file(const char *path, char out[OCI_DIGEST_MAX + 1], uint64_t *size,
		    struct msb_err *err);

#endif
