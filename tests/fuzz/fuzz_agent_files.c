/* The file and metrics decoders (agent/files_codec.c) against arbitrary
 * payloads: the first byte picks the decoder, the rest is the payload, as a
 * hostile host (requests) or a hostile guest (INFO, ENTRIES, METRICS replies)
 * would send it.  The promised invariants are checked. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/files_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_entry(void *ctx, struct agent_file_info *e, struct msb_err *err)
{
	/* A listing entry is one path component: never "", ".", ".." or with '/'. */
	if (!e->name[0] || strchr(e->name, '/') || !strcmp(e->name, ".") ||
	    !strcmp(e->name, "..") || e->type < AGENT_FT_FILE || e->type > AGENT_FT_OTHER ||
	    (e->mode & ~07777u))
		__builtin_trap();
	agent_file_info_clear(e);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t sel = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct msb_err err;
	switch (sel % 5) {
	case 0: {
		static const uint16_t types[] = {
			AGENT_FILE_READ,  AGENT_FILE_WRITE,  AGENT_FILE_LIST,	AGENT_FILE_STAT,
			AGENT_FILE_MKDIR, AGENT_FILE_REMOVE, AGENT_FILE_SYMLINK};
		struct agent_file_req r;
		uint16_t type = types[(sel / 5) % 7];
		if (agent_decode_file_req(p, n, type, &r, &err) == 0) {
			if (r.path[0] != '/' || strlen(r.path) >= AGENT_PATH_MAX ||
			    (r.mode & ~07777u) ||
			    (type == AGENT_FILE_SYMLINK) != (r.target != NULL))
				__builtin_trap();
			agent_file_req_release(&r);
		}
		break;
	}
	case 1:
	case 2: {
		struct agent_file_info e;
		if (agent_decode_file_info(p, n, sel % 5 == 2, &e, &err) == 0) {
			if (sel % 5 == 2)
				check_entry(NULL, &e, &err);
			else
				agent_file_info_clear(&e);
		}
		break;
	}
	case 3:
		agent_decode_file_entries(p, n, check_entry, NULL, &err);
		break;
	case 4: {
		struct agent_metrics m;
		uint32_t iv;
		if (agent_decode_metrics(p, n, &m, &err) == 0 &&
		    (m.mem_used > m.mem_total || m.disk_used > m.disk_total))
			__builtin_trap();
		if (agent_decode_metrics_req(p, n, &iv, &err) == 0 && iv > AGENT_METRICS_MAX)
			__builtin_trap();
		break;
	}
	}
	return 0;
}
