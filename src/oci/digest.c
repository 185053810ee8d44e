#include "oci/digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"

struct oci_hasher {
	EVP_MD_CTX *ctx;
};

struct oci_hasher *oci_hasher_new(void)
{
	struct oci_hasher *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		oci_hasher_free(h);
		return NULL;
	}
	return h;
}

void oci_hasher_free(struct oci_hasher *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void oci_hasher_reset(struct oci_hasher *h)
{
	EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void oci_hasher_update(struct oci_hasher *h, const void *data, size_t len)
{
	EVP_DigestUpdate(h->ctx, data, len);
}

void oci_hasher_final(struct oci_hasher *h, char out[OCI_DIGEST_MAX + 1])
{
	unsigned char md[32];
	unsigned n = 0;
	EVP_DigestFinal_ex(h->ctx, md, &n);
	memcpy(out, "sha256:", 7);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
	oci_hasher_reset(h);
}

void oci_sha256_buf(const void *data, size_t len, char out[OCI_DIGEST_MAX + 1])
{
	unsigned char md[32];
	EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL);
	memcpy(out, "sha256:", 7);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
}

int oci_sha256_fd(int fd, uint64_t limit, struct oci_hasher *h, uint64_t *nread,
		  struct msb_err *err)
{
	static __thread char buf[1 << 16];
	uint64_t done = 0;
	while (done < limit) {
		size_t want = sizeof(buf);
		if (limit - done < want)
			want = (size_t)(limit - done);
		ssize_t n = pread(fd, buf, want, (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return msb_err_sys(err, "reading for sha256");
		}
		if (n == 0)
			break;
		oci_hasher_update(h, buf, (size_t)n);
		done += (uint64_t)n;
	}
	if (nread)
		*nread = done;
	return 0;
}

int oci_sha256_file(const char *path, char out[OCI_DIGEST_MAX + 1], uint64_t *size,
		    struct msb_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening %s", path);
	struct oci_hasher *h = oci_hasher_new();
	if (!h)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	int r = oci_sha256_fd(fd, UINT64_MAX, h, size, err);
	if (r == 0)
		oci_hasher_final(h, out);
	oci_hasher_free(h);
	return r < 0 ? msb_err_wrap(err, "%s", path) : 0;
}
