/* The snapshot state file's decoder on arbitrary bytes (snapshot.h): it must
 * refuse or accept without touching memory it does not own, and whatever it
 * accepts must encode and decode again to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snapshot s;
	struct msb_err err = {0};
	/* Most inputs die at the checksum; also try them with a fixed-up header
	 * so the fuzzer reaches the sections. */
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (size >= SNAP_HEADER_SIZE) {
		uint64_t body = size - SNAP_HEADER_SIZE;
		memcpy(copy, SNAP_MAGIC, 8);
		uint32_t v = SNAP_VERSION, zero = 0;
		memcpy(copy + 8, &v, 4);
		memcpy(copy + 12, &zero, 4);
		memcpy(copy + 16, &body, 8);
		memcpy(copy + 28, &zero, 4);
		uint32_t crc = snap_crc32c(0, copy, 24);
		crc = snap_crc32c(crc, copy + SNAP_HEADER_SIZE, body);
		memcpy(copy + 24, &crc, 4);
	}
	for (int pass = 0; pass < 2; pass++) {
		const uint8_t *in = pass ? copy : data;
		if (snap_decode(in, size, &s, &err) < 0)
			continue;
		uint8_t *out = NULL;
		size_t len = 0;
		if (snap_encode(&s, &out, &len, &err) < 0)
			__builtin_trap();
		struct snapshot t;
		if (snap_decode(out, len, &t, &err) < 0)
			__builtin_trap();
		uint8_t *again = NULL;
		size_t len2 = 0;
		if (snap_encode(&t, &again, &len2, &err) < 0 || len2 != len ||
		    memcmp(out, again, len) != 0)
			__builtin_trap();
		free(out);
		free(again);
		snap_free(&t);
		snap_free(&s);
	}
	free(copy);
	return 0;
}
