/* The JSON-RPC 2.0 envelope of POST /api/v1/rpc, with upstream's status codes
 * and error bodies (docs/api.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "server/internal.h"

int rpc_error_code(enum msb_err_kind kind)
{
	switch (kind) {
	case MSB_EK_USAGE:
		return -32602;
	case MSB_EK_NOT_FOUND:
		return -32001;
	case MSB_EK_EXISTS:
	case MSB_EK_STATE:
		return -32002;
	case MSB_EK_TIMEOUT:
		return -32003;
	case MSB_EK_NETWORK:
		return -32004;
	case MSB_EK_GUEST:
		return -32005;
	case MSB_EK_CORRUPT:
		return -32006;
	default:
		return -32603;
	}
}

int rpc_http_status(enum msb_err_kind kind)
{
	switch (kind) {
	case MSB_EK_USAGE:
		return 400;
	case MSB_EK_NOT_FOUND:
		return 404;
	case MSB_EK_EXISTS:
	case MSB_EK_STATE:
		return 409;
	case MSB_EK_TIMEOUT:
		return 504;
	case MSB_EK_NETWORK:
	case MSB_EK_GUEST:
		return 502;
	default:
		return 500;
	}
}

static json_t *envelope(void)
{
	json_t *r = json_object();
	json_object_set_new(r, "jsonrpc", json_string("2.0"));
	return r;
}

static void add_id(json_t *r, json_t *id)
{
	/* Upstream's id is Option<Value>: absent and null are both omitted. */
	if (id && !json_is_null(id))
		json_object_set(r, "id", id);
}

static void rpc_error(struct srv_reply *rp, int status, json_t *id, int code, const char *msg,
		      enum msb_err_kind kind)
{
	json_t *r = envelope();
	json_t *e = json_object();
	json_object_set_new(e, "code", json_integer(code));
	json_object_set_new(e, "message", json_string(msg));
	if (kind != MSB_EK_NONE)
		json_object_set_new(e, "data", json_pack("{s:s}", "kind", msb_err_kind_name(kind)));
	json_object_set_new(r, "error", e);
	add_id(r, id);
	reply_json(rp, status, r);
}

/* Upstream's handler failures are not JSON-RPC errors but {"error","code"}.
 * Kinds a client must tell apart (not_found, timeout, state, ...) add a
 * "kind" member, which upstream's clients ignore and ours read. */
static void upstream_error(struct srv_reply *rp, const struct msb_err *err)
{
	bool client = err->kind == MSB_EK_USAGE; /* upstream: unknown names are 500 */
	json_t *r = json_object();
	json_object_set_new(r, "error",
			    json_string(err->msg[0] ? err->msg
						    : "Internal server "
						      "error"));
	json_object_set_new(r, "code", json_integer(client ? 2001 : 5002));
	if (err->kind != MSB_EK_USAGE && err->kind != MSB_EK_SYSTEM && err->kind != MSB_EK_NONE &&
	    err->kind != MSB_EK_INTERNAL)
		json_object_set_new(r, "kind", json_string(msb_err_kind_name(err->kind)));
	reply_json(rp, client ? 400 : 500, r);
}

int rpc_invoke(struct msb_server *s, const char *method, json_t *params, json_t **result,
	       struct msb_err *err)
{
	const struct rpc_method *m = rpc_method_find(method);
	if (!m || !m->call)
		return msb_err_set(err, MSB_EK_USAGE, 0, "Method not found: %s", method);
	return m->call(s, params, result, err);
}

void rpc_handle(struct msb_server *s, const struct srv_request *rq, const char *route_method,
		struct srv_reply *rp)
{
	if (rq->body_too_large) {
		reply_text(rp, 413, "Failed to buffer the request body: length limit exceeded");
		return;
	}
	if (!content_type_is_json(rq->content_type)) {
		reply_text(rp, 415, "Expected request with `Content-Type: application/json`");
		return;
	}
	json_error_t jerr;
	json_t *req = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, &jerr);
	if (!req) {
		char msg[300];
		snprintf(msg, sizeof(msg),
			 "Failed to parse the request body as JSON: %s at line %d "
			 "column %d",
			 jerr.text, jerr.line, jerr.column);
		reply_text(rp, 400, msg);
		return;
	}
	json_t *jv = json_object_get(req, "jsonrpc");
	json_t *jm = json_object_get(req, "method");
	json_t *id = json_object_get(req, "id");
	json_t *params = json_object_get(req, "params");
	/* The aliases carry the method in the path; their bodies may omit it. */
	if (!json_is_object(req) || !json_is_string(jv) || (!route_method && !json_is_string(jm)) ||
	    (jm && !json_is_string(jm))) {
		reply_text(rp, 422,
			   "Failed to deserialize the JSON body into the target type: expected an "
			   "object with string fields `jsonrpc` and `method`");
		json_decref(req);
		return;
	}
	if (strcmp(json_string_value(jv), "2.0") != 0) {
		rpc_error(rp, 400, id, -32600, "Invalid JSON-RPC version", MSB_EK_NONE);
		json_decref(req);
		return;
	}
	const char *name = route_method ? route_method : json_string_value(jm);
	const struct rpc_method *m = rpc_method_find(name);
	if (!m) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Method not found: %.200s", name);
		rpc_error(rp, 404, id, -32601, msg, MSB_EK_NONE);
		json_decref(req);
		return;
	}
	if (!params)
		params = json_null();

	struct msb_err err = {0};
	if (m->stream) {
		if (m->stream(s, rq, params, id, rp, &err) < 0)
			rpc_error(rp, rpc_http_status(err.kind), id, rpc_error_code(err.kind),
				  err.msg, err.kind);
		json_decref(req);
		return;
	}
	json_t *result = NULL;
	if (m->call(s, params, &result, &err) < 0) {
		msb_debug("%s failed: %s", name, err.msg);
		if (m->style == RPC_UPSTREAM)
			upstream_error(rp, &err);
		else
			rpc_error(rp, rpc_http_status(err.kind), id, rpc_error_code(err.kind),
				  err.msg, err.kind);
		json_decref(req);
		return;
	}
	json_t *r = envelope();
	json_object_set_new(r, "result", result ? result : json_null());
	add_id(r, id);
	reply_json(rp, 200, r);
	json_decref(req);
}
