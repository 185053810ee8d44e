/* The VM shape in a base snapshot's state file (src/sandbox/snapprune.c) on
 * arbitrary bytes: never reads past them, and what it accepts is in range. */
#include <stdint.h>
#include <stdlib.h>

#include "sandbox/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msb_err err;
	unsigned cpus = 0, mib = 0;
	if (sandbox_base_shape_parse(data, size, &cpus, &mib, &err) == 0 &&
	    (cpus < 1 || cpus > 255 || mib < 1 || mib > (1u << 20)))
		abort();
	return 0;
}
