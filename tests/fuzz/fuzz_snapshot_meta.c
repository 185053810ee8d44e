/* Snapshot metadata (src/sandbox/snapmeta.c) on arbitrary bytes: parsing never
 * crashes or leaks, and what parses formats back to text that parses to the
 * same values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msb_err err;
	struct sandbox_snapmeta m;
	if (sandbox_snapmeta_parse((const char *)data, size, &m, &err) < 0)
		return 0;
	char *text = sandbox_snapmeta_format(&m, &err);
	if (text) {
		struct sandbox_snapmeta b;
		if (sandbox_snapmeta_parse(text, strlen(text), &b, &err) < 0)
			abort();
		if (!same(m.name, b.name) || !same(m.image, b.image) || !same(m.rootfs, b.rootfs) ||
		    !same(m.rw_disk, b.rw_disk) || !same(m.kernel, b.kernel) ||
		    !same(m.initrd, b.initrd) || !same(m.vmm, b.vmm) ||
		    !same(m.cmdline, b.cmdline) || m.cpus != b.cpus ||
		    m.memory_mib != b.memory_mib || m.disks != b.disks || m.rw != b.rw)
			abort();
		sandbox_snapmeta_clear(&b);
		free(text);
	}
	sandbox_snapmeta_clear(&m);
	return 0;
}
