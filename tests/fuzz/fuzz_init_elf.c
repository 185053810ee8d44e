/* msb-init's ELF parser (SETUP's WARM reads programs and libraries of the
 * image, which is untrusted) against arbitrary files: no read outside the
 * buffer, and what it returns is what the prefetch relies on: terminated
 * names, an absolute interpreter, no relative path with '/'. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "init/warm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(const char *s, int absolute)
{
	size_t n = strnlen(s, WARM_NAME_MAX);
	if (n == WARM_NAME_MAX || n == 0 || (absolute && s[0] != '/'))
		__builtin_trap();
	if (s[0] != '/' && memchr(s, '/', n))
		__builtin_trap();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct warm_elf e;
	if (warm_elf_parse(data, size, &e) < 0)
		return 0;
	if (e.interp[0])
		check_name(e.interp, 1);
	if (e.nneeded > WARM_NEEDED_MAX)
		__builtin_trap();
	for (unsigned i = 0; i < e.nneeded; i++)
		check_name(e.needed[i], 0);
	return 0;
}
