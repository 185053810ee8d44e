/* libFuzzer target: archive entry names (oci_tar_clean_name).  Whatever comes in, an
 * accepted name must be relative, free of "." / ".." / empty components and NULs. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[256];
	if (oci_tar_clean_name((const char *)data, size, out, sizeof(out)) < 0)
		return 0;
	size_t n = strlen(out);
	if (n == 0 || n >= sizeof(out) || out[0] == '/' || out[n - 1] == '/')
		abort();
	for (const char *p = out;;) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '.') ||
		    (len == 2 && p[0] == '.' && p[1] == '.'))
			abort();
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}
