/* MCP at /mcp (docs/mcp.md): the Streamable HTTP transport of the MCP
 * specification, and upstream's 2024-11-05 plain-POST behaviour. */
#ifndef MSB_SERVER_MCP_H
#define MSB_SERVER_MCP_H

#include <jansson.h>
#include <stdbool.h>

#include "common/error.h"

/* Newest first; the first one is what a client asking for an unknown
 * version is offered. */
#define MCP_VERSIONS                                                   \
	{                                                              \
		"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05" \
	}
#define MCP_MAX_SESSIONS 1024

struct mcp_tool {
	const char *name;
	const char *method; /* the JSON-RPC method it calls */
	bool soft_errors;   /* upstream: failures are isError results, not JSON-RPC errors */
	const char *description;
	const char *schema; /* JSON text of inputSchema */
};

const struct mcp_tool *mcp_tool_find(const char *name);
/* {"tools":[...]} / {"prompts":[...]}: new references. */
json_t *mcp_tools_json(void);
json_t *mcp_prompts_json(void);
/* prompts/get: *result a new reference; not_found for an unknown prompt. */
int mcp_prompt_get(json_t *params, json_t **result, struct msb_err *err);

/* The version to answer an initialize asking for `requested` (may be NULL). */
const char *mcp_negotiate_version(const char *requested);
bool mcp_version_supported(const char *v);

#endif
