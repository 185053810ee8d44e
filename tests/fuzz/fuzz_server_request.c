/* Fuzzes the server's request logic without sockets: routing, API key
 * parsing, the JSON-RPC envelope, params of every method, MCP messages and
 * streamed replies, against a scripted backend that always succeeds.
 *
 * Input: byte 0 picks the route (its top bit: the backend fails, with the kind
 * in bits 3-6, so that every error body is built too), byte 1 the method and
 * headers; the rest is "<header value>\n<body>" (the header value becomes
 * Authorization and the MCP session id, as byte 1 says). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/auth.h"
#include "server/server.h"
#include "server/stream.h"
#include "tests/unit/test_server_mock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const routes[] = {
	"/api/v1/rpc",
	"/mcp",
	"/api/v1/sandbox/start",
	"/api/v1/sandbox/stop",
	"/api/v1/sandbox/command/run",
	"/api/v1/health",
	"/nowhere",
};
static const char *const methods[] = {"POST", "GET", "DELETE", "OPTIONS"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mock m;
	static struct sandbox_backend be;
	if (size < 2)
		return 0;
	memset(&m, 0, sizeof(m));
	m.events[0] = (struct sb_exec_event){.type = SB_EV_STDOUT, .data = "out", .len = 3};
	m.events[1] = (struct sb_exec_event){.type = SB_EV_EXIT, .exit_code = 1};
	m.nevents = 2;
	memcpy(m.file, "file", 4);
	m.file_len = 4;
	be = mock_backend(&m);
	uint8_t route = data[0], flags = data[1];
	if (route & 0x80)
		m.fail = (enum msb_err_kind)(1 + ((route >> 3) & 0x0f) % MSB_EK_INTERNAL);
	data += 2;
	size -= 2;

	const uint8_t *nl = memchr(data, '\n', size);
	size_t hlen = nl ? (size_t)(nl - data) : 0;
	char *hv = malloc(hlen + 1);
	if (!hv)
		return 0;
	memcpy(hv, data, hlen);
	hv[hlen] = '\0';
	const char *body = nl ? (const char *)nl + 1 : (const char *)data;
	size_t blen = nl ? size - hlen - 1 : size;

	/* Keys on unless flag 0x80: auth is part of what is parsed. */
	struct msb_server_config cfg = {.dev = !(flags & 0x80), .key = "fuzz-key"};
	struct msb_server *s = NULL;
	struct msb_err err = {0};
	if (msb_server_new(&cfg, &be, &s, &err) < 0) {
		free(hv);
		return 0;
	}
	struct srv_request rq = {
		.method = methods[flags & 3],
		.path = routes[route % (sizeof(routes) / sizeof(routes[0]))],
		.content_type = (flags & 4) ? "text/plain" : "application/json",
		.accept = (flags & 8) ? "application/json, text/event-stream" : NULL,
		.authorization = (flags & 0x10) ? hv : NULL,
		.proxy_authorization = (flags & 0x20) ? hv : NULL,
		.mcp_session_id = (flags & 0x40) ? hv : NULL,
		.mcp_protocol_version = (flags & 0x40) ? "2025-06-18" : NULL,
		.body = body,
		.body_len = blen,
	};
	struct srv_reply rp = {0};
	srv_handle(s, &rq, &rp);
	if (rp.status < 100 || rp.status > 599)
		abort();
	if (rp.stream) {
		char buf[64];
		for (int i = 0; i < 100 && srv_stream_read(rp.stream, buf, sizeof(buf)) > 0; i++)
			;
	}
	srv_reply_release(&rp);
	/* The same header value straight into the key check. */
	auth_check("fuzz-key", NULL, hv, 1700000000);
	msb_server_free(s);
	free(hv);
	return 0;
}
