/* libFuzzer target: the OCI image index parser over arbitrary bytes (a registry is hostile). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_index idx;
	struct msb_err err = {0};
	if (oci_index_parse((const char *)data, size, &idx, &err) == 0) {
		const struct oci_descriptor *d =
			oci_index_select(&idx, "linux", "amd64", NULL, &err);
		if (d && (d->attestation || strcmp(d->architecture, "amd64") != 0))
			abort();
		oci_index_release(&idx);
	}
	return 0;
}
