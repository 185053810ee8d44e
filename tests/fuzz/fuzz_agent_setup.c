/* SETUP's decoder against arbitrary payloads (msb-init decodes whatever a
 * host sends), with the invariants the guest relies on when it uses the
 * values as they are: terminated, validated strings and bounded entropy. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_setup_req r;
	struct msb_err err;
	if (agent_decode_setup(data, size, &r, &err) < 0) {
		if (!err.msg[0])
			__builtin_trap(); /* every refusal says why */
		return 0;
	}
	size_t dev = strnlen(r.root_dev, sizeof(r.root_dev));
	size_t ov = strnlen(r.overlay, sizeof(r.overlay));
	size_t host = strnlen(r.hostname, sizeof(r.hostname));
	size_t mid = strnlen(r.machine_id, sizeof(r.machine_id));
	if (dev == sizeof(r.root_dev) || ov == sizeof(r.overlay) || host == sizeof(r.hostname) ||
	    mid == sizeof(r.machine_id))
		__builtin_trap();
	if ((dev && !agent_valid_dev(r.root_dev, dev)) ||
	    (host && !agent_valid_hostname(r.hostname, host)) ||
	    (mid && !agent_valid_machine_id(r.machine_id, mid)) ||
	    (ov && strcmp(r.overlay, "tmpfs") != 0 && !agent_valid_dev(r.overlay, ov)) ||
	    (!dev && (ov || r.root_fstype[0])))
		__builtin_trap();
	if (r.root_fstype[0] && strcmp(r.root_fstype, "erofs") != 0 &&
	    strcmp(r.root_fstype, "ext4") != 0)
		__builtin_trap();
	if (r.entropy_len &&
	    (r.entropy_len < AGENT_ENTROPY_MIN || r.entropy_len > AGENT_ENTROPY_MAX))
		__builtin_trap();
	if (r.has_realtime && !r.realtime_ns)
		__builtin_trap();
	if (r.net.prefix) {
		/* The guest applies it as is: a prefix it can mask with, a gateway
		 * on the link that is not the address itself. */
		uint32_t mask = ~0u << (32 - r.net.prefix);
		uint32_t ad = __builtin_bswap32(r.net.addr), gw = __builtin_bswap32(r.net.gateway);
		if (r.net.prefix > 30 || (ad & mask) != (gw & mask) || ad == gw)
			__builtin_trap();
	}
	return 0;
}
