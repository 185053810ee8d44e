/* libFuzzer target: the OCI image manifest parser over arbitrary bytes (a registry is hostile). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_manifest m;
	struct msb_err err = {0};
	if (oci_manifest_parse((const char *)data, size, &m, &err) == 0) {
		for (size_t i = 0; i < m.n_layers; i++)
			if (!oci_digest_valid(m.layers[i].digest) ||
			    !oci_layer_type_supported(m.layers[i].media_type))
				abort();
		oci_manifest_release(&m);
	}
	enum oci_doc_kind k;
	(void)oci_doc_kind(NULL, (const char *)data, size, &k, &err);
	return 0;
}
