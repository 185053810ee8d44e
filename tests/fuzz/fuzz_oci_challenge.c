/* libFuzzer target: the WWW-Authenticate challenge parser (a registry is hostile). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct oci_challenge c;
	if (oci_parse_challenge(s, &c) == 0) {
		if (strlen(c.scheme) >= sizeof(c.scheme) || strlen(c.realm) >= sizeof(c.realm) ||
		    strlen(c.scope) >= sizeof(c.scope) || strlen(c.service) >= sizeof(c.service))
			abort();
	}
	free(s);
	return 0;
}
