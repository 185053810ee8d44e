/* libFuzzer target: the OCI image config parser over arbitrary bytes (a registry is hostile). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_image_config c;
	struct msb_err err = {0};
	if (oci_config_parse((const char *)data, size, &c, &err) == 0) {
		if (!c.env || !c.exposed_ports)
			abort();
		(void)oci_strv_len(c.cmd);
		oci_config_release(&c);
	}
	return 0;
}
