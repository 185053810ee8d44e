/* The agent protocol decoder against arbitrary bytes: the input is a byte
 * stream as a peer would send it, fed to the frame reader in pieces whose
 * sizes come from the first byte; every frame goes to the decoder of its type,
 * as msb-init and the host client do. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(const struct agent_hdr *h, const uint8_t *p)
{
	struct msb_err err;
	uint32_t v;
	switch (h->type) {
	case AGENT_HELLO:
	case AGENT_READY: {
		struct agent_hello x;
		if (agent_decode_hello(p, h->len, &x, &err) == 0)
			agent_hello_release(&x);
		break;
	}
	case AGENT_EXEC: {
		struct agent_exec_req x;
		if (agent_decode_exec(p, h->len, &x, &err) == 0) {
			/* Promised invariants: terminated vectors, non-empty argv[0]. */
			if (!x.argc || x.argv[x.argc] || !x.argv[0][0] || (x.env && x.env[x.envc]))
				__builtin_trap();
			agent_exec_req_release(&x);
		}
		break;
	}
	case AGENT_ERROR: {
		struct agent_error x;
		if (agent_decode_error(p, h->len, &x, &err) == 0)
			agent_error_release(&x);
		break;
	}
	case AGENT_EXIT: {
		struct agent_exit x;
		agent_decode_exit(p, h->len, &x, &err);
		break;
	}
	case AGENT_SETUP: {
		struct agent_setup_req x;
		agent_decode_setup(p, h->len, &x, &err);
		break;
	}
	case AGENT_REPL_RUN: {
		struct agent_repl_req x;
		if (agent_decode_repl_run(p, h->len, &x, &err) == 0) {
			/* Promised: a language, code, an absolute cwd if any. */
			if (!x.language[0] || !x.code || (x.cwd && x.cwd[0] != '/') ||
			    (x.env && x.env[x.envc]))
				__builtin_trap();
			agent_repl_req_release(&x);
		}
		break;
	}
	case AGENT_REPL_RESULT: {
		struct agent_repl_outcome x;
		if (agent_decode_repl_result(p, h->len, &x, &err) == 0) {
			if (x.status > AGENT_REPL_TIMEOUT)
				__builtin_trap();
			agent_repl_outcome_release(&x);
		}
		break;
	}
	case AGENT_RESIZE: {
		uint16_t rows, cols;
		if (agent_decode_resize(p, h->len, &rows, &cols, &err) == 0 && (!rows || !cols))
			__builtin_trap();
		break;
	}
	case AGENT_STARTED:
		agent_decode_u32(p, h->len, h->type, AGENT_T_PID, &v, &err);
		break;
	case AGENT_WINDOW:
		agent_decode_u32(p, h->len, h->type, AGENT_T_INCREMENT, &v, &err);
		break;
	case AGENT_SIGNAL:
		agent_decode_u32(p, h->len, h->type, AGENT_T_SIGNAL, &v, &err);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct agent_reader r;
	static int ready;
	struct msb_err err;
	if (!ready) {
		if (agent_reader_init(&r, &err) < 0)
			return 0;
		ready = 1;
	}
	r.start = r.end = 0;
	if (size == 0)
		return 0;
	size_t piece = (size_t)data[0] + 1;
	data++;
	size--;
	size_t off = 0;
	for (;;) {
		size_t avail;
		uint8_t *dst = agent_reader_space(&r, &avail);
		size_t n = size - off < piece ? size - off : piece;
		if (n > avail)
			n = avail;
		memcpy(dst, data + off, n);
		agent_reader_commit(&r, n);
		off += n;
		struct agent_hdr h;
		const uint8_t *p;
		int rc;
		while ((rc = agent_reader_next(&r, &h, &p, &err)) > 0)
			decode(&h, p);
		if (rc < 0 || n == 0)
			break;
	}
	return 0;
}
