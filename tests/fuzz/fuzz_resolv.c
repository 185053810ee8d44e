/* The scope filter's host-file parsers on arbitrary bytes (sandbox/scope.h):
 * resolv.conf (an administrator's file, but passt and msb both read it) and
 * /proc/self/mountinfo.  Byte 0 picks the parser and the limit; the rest is
 * the text.  Checks: at most `max` name servers, each AF_INET or AF_INET6,
 * no two equal; a mount point found is NUL-terminated inside the buffer and
 * absolute.  The name servers then go into every BPF program, which must
 * assemble within SCOPE_MAX_INSNS. */
#include <linux/bpf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sandbox/scope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	if (data[0] & 1) {
		char out[64];
		size_t outsz = (size_t)(data[0] >> 1) % sizeof(out) + 1;
		memset(out, 'x', sizeof(out));
		if (scope_cgroup2_from_mountinfo(text, len, out, outsz) == 0) {
			const char *nul = memchr(out, '\0', outsz);
			if (!nul || out[0] != '/')
				abort();
		}
		return 0;
	}
	struct scope_rules r = {0};
	size_t max = (size_t)(data[0] >> 1) % (SCOPE_MAX_NS + 1);
	r.nns = scope_parse_resolv(text, len, r.ns, max);
	if (r.nns > max)
		abort();
	for (size_t i = 0; i < r.nns; i++) {
		if (r.ns[i].family != AF_INET && r.ns[i].family != AF_INET6)
			abort();
		for (size_t k = 0; k < i; k++)
			if (r.ns[k].family == r.ns[i].family && !memcmp(r.ns[k].a, r.ns[i].a, 16))
				abort();
	}
	static struct bpf_insn insns[SCOPE_MAX_INSNS];
	for (int h = 0; h < SCOPE_NHOOKS; h++)
		if (scope_prog_build(&r, (enum scope_hook)h, insns) == 0)
			abort();
	return 0;
}
