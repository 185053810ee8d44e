/* What the server's own files share; not for other modules. */
#ifndef MSB_SERVER_INTERNAL_H
#define MSB_SERVER_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>

#include "server/server.h"

struct mcp_sessions;

struct msb_server {
	char *host;
	uint16_t port, bound_port;
	char *key; /* NULL with dev */
	bool dev;
	char *project_dir;
	size_t max_body;
	unsigned max_connections, idle_timeout_s;
	const struct sandbox_backend *be;
	struct mcp_sessions *mcp;
	void *mhd; /* struct MHD_Daemon */
	atomic_bool stopping;
};

/* ---- replies (router.c) ---- */
/* Takes ownership of body. */
void reply_set(struct srv_reply *rp, int status, const char *content_type, char *body, size_t len);
/* Serialises and drops the reference to j (NULL j = empty body). */
void reply_json(struct srv_reply *rp, int status, json_t *j);
void reply_text(struct srv_reply *rp, int status, const char *text);
/* Copies a literal JSON text. */
void reply_json_text(struct srv_reply *rp, int status, const char *json_text);
__attribute__((format(printf, 3, 4))) void reply_header(struct srv_reply *rp, const char *name,
							const char *fmt, ...);
/* Compact JSON in insertion order; malloc'd; NULL when out of memory. */
char *json_dump_compact(const json_t *j, size_t *len);

/* Content type check: "application/json" with optional parameters. */
bool content_type_is_json(const char *ct);
/* Does an Accept header list the media type (or a wildcard for it)? */
bool accept_has(const char *accept, const char *type);

/* 401 into rp unless the request carries a valid key (or the server runs --dev). */
bool srv_authorized(struct msb_server *s, const struct srv_request *rq, struct srv_reply *rp);

/* ---- JSON-RPC (rpc.c, methods.c) ---- */
/* JSON-RPC error code and HTTP status for a kind (docs/errors.md). */
int rpc_error_code(enum msb_err_kind kind);
int rpc_http_status(enum msb_err_kind kind);

enum rpc_style {
	RPC_UPSTREAM, /* upstream's error bodies: {"error","code":2001|5002} */
	RPC_OWN,      /* JSON-RPC error objects, docs/errors.md codes */
};

struct rpc_method {
	const char *name;
	enum rpc_style style;
	/* Non-streaming: *result is a new reference on success. */
	int (*call)(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err);
	/* Streaming methods (call == NULL): fill rp with a stream or an error. */
	int (*stream)(struct msb_server *s, const struct srv_request *rq, json_t *params,
		      json_t *id, struct srv_reply *rp, struct msb_err *err);
};

const struct rpc_method *rpc_method_find(const char *name);

/* Calls a non-streaming method by name (MCP tools use this). */
int rpc_invoke(struct msb_server *s, const char *method, json_t *params, json_t **result,
	       struct msb_err *err);

/* POST /api/v1/rpc and its aliases (route_method non-NULL: the alias's method). */
void rpc_handle(struct msb_server *s, const struct srv_request *rq, const char *route_method,
		struct srv_reply *rp);

/* ---- MCP (mcp.c) ---- */
int mcp_sessions_new(struct mcp_sessions **out, struct msb_err *err);
void mcp_sessions_free(struct mcp_sessions *m);
void mcp_handle(struct msb_server *s, const struct srv_request *rq, struct srv_reply *rp);

#endif
