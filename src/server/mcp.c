/* MCP over HTTP (docs/mcp.md).
 *
 * One POST carries one JSON-RPC message (or, for 2025-03-26 clients, a batch).
 * Requests get a JSON reply, or an SSE stream holding it for tools/call when
 * the client accepts one; notifications and responses get 202 (200 for
 * upstream's plain-POST clients).  initialize opens a session whose id comes
 * back in Mcp-Session-Id; later requests may carry it (an unknown id is 404)
 * or not (stateless, as upstream's clients are). */
#include "server/mcp.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "server/internal.h"

#define MCP_SESSION_IDLE_S (24 * 3600)

struct mcp_session {
	char id[33];
	char version[16];
	time_t last_used;
};

struct mcp_sessions {
	pthread_mutex_t mu;
	struct mcp_session s[MCP_MAX_SESSIONS];
};

static const char *const versions[] = MCP_VERSIONS;

bool mcp_version_supported(const char *v)
{
	for (size_t i = 0; v && i < MSB_ARRAY_SIZE(versions); i++)
		if (strcmp(v, versions[i]) == 0)
			return true;
	return false;
}

const char *mcp_negotiate_version(const char *requested)
{
	for (size_t i = 0; requested && i < MSB_ARRAY_SIZE(versions); i++)
		if (strcmp(requested, versions[i]) == 0)
			return versions[i];
	return versions[0];
}

int mcp_sessions_new(struct mcp_sessions **out, struct msb_err *err)
{
	struct mcp_sessions *m = calloc(1, sizeof(*m));
	if (!m)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	pthread_mutex_init(&m->mu, NULL);
	*out = m;
	return 0;
}

void mcp_sessions_free(struct mcp_sessions *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* A new session; the least recently used one makes room when full. */
static int session_open(struct mcp_sessions *m, const char *version, char id[33])
{
	unsigned char r[16];
	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		return -1;
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(id + 2 * i, 3, "%02x", r[i]);
	pthread_mutex_lock(&m->mu);
	size_t victim = 0;
	for (size_t i = 0; i < MCP_MAX_SESSIONS; i++) {
		if (!m->s[i].id[0]) {
			victim = i;
			break;
		}
		if (m->s[i].last_used < m->s[victim].last_used)
			victim = i;
	}
	struct mcp_session *s = &m->s[victim];
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->version, sizeof(s->version), "%s", version);
	s->last_used = time(NULL);
	pthread_mutex_unlock(&m->mu);
	return 0;
}

/* Finds and touches a session; copies its version.  false when unknown. */
static bool session_use(struct mcp_sessions *m, const char *id, char version[16], bool remove)
{
	bool found = false;
	time_t now = time(NULL);
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < MCP_MAX_SESSIONS; i++) {
		struct mcp_session *s = &m->s[i];
		if (!s->id[0] || strcmp(s->id, id) != 0)
			continue;
		if (now - s->last_used > MCP_SESSION_IDLE_S) {
			memset(s, 0, sizeof(*s));
			break;
		}
		found = true;
		s->last_used = now;
		if (version)
			memcpy(version, s->version, 16);
		if (remove)
			memset(s, 0, sizeof(*s));
		break;
	}
	pthread_mutex_unlock(&m->mu);
	return found;
}

/* What one POST's handling knows. */
struct mcp_call {
	struct msb_server *s;
	const struct srv_request *rq;
	bool legacy;	      /* upstream's plain-POST client: no session, no version header */
	bool sse_ok;	      /* the client accepts text/event-stream */
	bool want_sse;	      /* answer with an SSE stream */
	char new_session[33]; /* set by initialize */
};

static json_t *rpc_reply(json_t *id)
{
	json_t *r = json_pack("{s:s}", "jsonrpc", "2.0");
	json_object_set(r, "id", id ? id : json_null());
	return r;
}

static json_t *rpc_err(json_t *id, int code, const char *msg)
{
	json_t *r = rpc_reply(id);
	json_object_set_new(r, "error", json_pack("{s:i,s:s}", "code", code, "message", msg));
	return r;
}

static json_t *text_content(const char *text, bool is_error)
{
	json_t *r = json_pack("{s:[{s:s,s:s}]}", "content", "type", "text", "text", text);
	if (is_error)
		json_object_set_new(r, "isError", json_true());
	return r;
}

static json_t *do_initialize(struct mcp_call *c, json_t *id, json_t *params)
{
	json_t *pv = json_object_get(params, "protocolVersion");
	const char *v = mcp_negotiate_version(json_is_string(pv) ? json_string_value(pv) : NULL);
	if (session_open(c->s->mcp, v, c->new_session) < 0)
		c->new_session[0] = '\0';
	json_t *r = rpc_reply(id);
	json_object_set_new(
		r, "result",
		json_pack(
			"{s:s,s:{s:{s:b},s:{s:b}},s:{s:s,s:s},s:s}", "protocolVersion", v,
			"capabilities", "tools", "listChanged", 0, "prompts", "listChanged", 0,
			"serverInfo", "name", "microsandbox-server", "version", MSB_SERVER_VERSION,
			"instructions",
			"Start a sandbox with sandbox_start, run code or commands in it, read and "
			"write its files, and stop it with sandbox_stop."));
	return r;
}

static json_t *do_tools_call(struct mcp_call *c, json_t *id, json_t *params)
{
	/* Tools may run long: current clients get an SSE stream, where progress
	 * notifications can precede the result. */
	if (c->sse_ok && !c->legacy)
		c->want_sse = true;
	json_t *jn = json_object_get(params, "name");
	const struct mcp_tool *t = json_is_string(jn) ? mcp_tool_find(json_string_value(jn)) : NULL;
	if (!t) {
		char msg[200];
		snprintf(msg, sizeof(msg), "Unknown tool: %.100s",
			 json_is_string(jn) ? json_string_value(jn) : "(none)");
		return rpc_err(id, c->legacy ? -32603 : -32602, msg);
	}
	json_t *args = json_object_get(params, "arguments");
	if (args && !json_is_null(args) && !json_is_object(args))
		return rpc_err(id, -32602, "Invalid params: `arguments` must be an object");
	json_t *rpc_params = args && json_is_object(args) ? json_deep_copy(args) : json_object();
	if (strcmp(t->name, "sandbox_write_file") == 0) {
		/* The tool says "content", the method "data". */
		json_t *content = json_object_get(rpc_params, "content");
		if (content)
			json_object_set(rpc_params, "data", content);
		json_object_del(rpc_params, "content");
	}
	json_t *result = NULL;
	struct msb_err err = {0};
	int rc = rpc_invoke(c->s, t->method, rpc_params, &result, &err);
	json_decref(rpc_params);
	json_t *r;
	if (rc < 0) {
		char msg[MSB_ERR_MSG_MAX + 16];
		if (c->legacy && !t->soft_errors) {
			/* Upstream: a failed forward to the sandbox is a JSON-RPC error. */
			snprintf(msg, sizeof(msg), "MCP method error: %s", err.msg);
			return rpc_err(id, -32603, msg);
		}
		snprintf(msg, sizeof(msg), "Error: %s", err.msg);
		r = rpc_reply(id);
		json_object_set_new(r, "result", text_content(msg, true));
		return r;
	}
	char *text = json_dumps(result, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	json_decref(result);
	r = rpc_reply(id);
	json_object_set_new(r, "result", text_content(text ? text : "null", false));
	free(text);
	return r;
}

/* One message: a response object, or NULL for notifications and responses. */
static json_t *handle_message(struct mcp_call *c, json_t *msg, bool *invalid)
{
	*invalid = false;
	json_t *id = json_object_get(msg, "id");
	json_t *jm = json_object_get(msg, "method");
	json_t *jv = json_object_get(msg, "jsonrpc");
	if (!json_is_object(msg) || !json_is_string(jv) ||
	    strcmp(json_string_value(jv), "2.0") != 0) {
		*invalid = true;
		return rpc_err(json_is_object(msg) ? id : NULL, -32600, "Invalid Request");
	}
	if (!jm) {
		if (json_object_get(msg, "result") || json_object_get(msg, "error"))
			return NULL; /* a response to a request we never send: ignore */
		*invalid = true;
		return rpc_err(id, -32600, "Invalid Request");
	}
	if (!json_is_string(jm)) {
		*invalid = true;
		return rpc_err(id, -32600, "Invalid Request");
	}
	const char *m = json_string_value(jm);
	if (!id) /* notifications: initialized, cancelled, progress, ... */
		return NULL;
	if (!json_is_string(id) && !json_is_integer(id)) {
		*invalid = true;
		return rpc_err(NULL, -32600, "Invalid Request: id must be a string or an integer");
	}
	json_t *params = json_object_get(msg, "params");
	if (params && !json_is_null(params) && !json_is_object(params))
		return rpc_err(id, -32602, "Invalid params: params must be an object");
	if (strcmp(m, "initialize") == 0)
		return do_initialize(c, id, params);
	if (strcmp(m, "ping") == 0) {
		json_t *r = rpc_reply(id);
		json_object_set_new(r, "result", json_object());
		return r;
	}
	if (strcmp(m, "tools/list") == 0) {
		json_t *r = rpc_reply(id);
		json_object_set_new(r, "result", mcp_tools_json());
		return r;
	}
	if (strcmp(m, "tools/call") == 0)
		return do_tools_call(c, id, params);
	if (strcmp(m, "prompts/list") == 0) {
		json_t *r = rpc_reply(id);
		json_object_set_new(r, "result", mcp_prompts_json());
		return r;
	}
	if (strcmp(m, "prompts/get") == 0) {
		json_t *result = NULL;
		struct msb_err err = {0};
		if (mcp_prompt_get(params, &result, &err) < 0)
			return rpc_err(id, c->legacy ? -32603 : -32602, err.msg);
		json_t *r = rpc_reply(id);
		json_object_set_new(r, "result", result);
		return r;
	}
	char text[200];
	if (c->legacy) {
		snprintf(text, sizeof(text), "MCP method error: unknown method %.100s", m);
		return rpc_err(id, -32603, text);
	}
	snprintf(text, sizeof(text), "Method not found: %.100s", m);
	return rpc_err(id, -32601, text);
}

/* Only loopback pages may talk to a server without keys (DNS rebinding). */
static bool origin_allowed(const char *origin)
{
	static const char *const ok[] = {"http://localhost", "https://localhost",
					 "http://127.0.0.1", "https://127.0.0.1",
					 "http://[::1]",     "https://[::1]"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(ok); i++) {
		size_t n = strlen(ok[i]);
		if (strncasecmp(origin, ok[i], n) == 0 && (origin[n] == '\0' || origin[n] == ':'))
			return true;
	}
	return false;
}

static void reply_mcp(struct mcp_call *c, struct srv_reply *rp, int status, json_t *body)
{
	if (c->want_sse && body && status == 200) {
		size_t len = 0;
		char *j = json_dump_compact(body, &len);
		json_decref(body);
		char *sse = NULL;
		int n = j ? asprintf(&sse, "event: message\ndata: %s\n\n", j) : -1;
		free(j);
		if (n < 0) {
			reply_set(rp, 500, NULL, NULL, 0);
			return;
		}
		reply_set(rp, 200, "text/event-stream", sse, (size_t)n);
		reply_header(rp, "Cache-Control", "no-cache");
	} else {
		reply_json(rp, status, body);
	}
	if (c->new_session[0])
		reply_header(rp, "Mcp-Session-Id", "%s", c->new_session);
}

void mcp_handle(struct msb_server *s, const struct srv_request *rq, struct srv_reply *rp)
{
	struct mcp_call c = {.s = s, .rq = rq};
	const char *m = rq->method ? rq->method : "";
	if (s->dev && rq->origin && !origin_allowed(rq->origin)) {
		reply_json(rp, 403,
			   rpc_err(NULL, -32000, "Forbidden: this Origin may not use /mcp"));
		return;
	}
	if (strcmp(m, "DELETE") == 0) {
		if (!rq->mcp_session_id)
			reply_json(rp, 400,
				   rpc_err(NULL, -32000, "Bad Request: no Mcp-Session-Id"));
		else if (!session_use(s->mcp, rq->mcp_session_id, NULL, true))
			reply_json(rp, 404, rpc_err(NULL, -32001, "Session not found"));
		else
			reply_set(rp, 200, NULL, NULL, 0);
		return;
	}
	if (strcmp(m, "POST") != 0) {
		/* No server-initiated messages, so no GET stream (the spec allows 405). */
		reply_set(rp, 405, NULL, NULL, 0);
		reply_header(rp, "Allow", "POST, DELETE");
		return;
	}
	if (rq->mcp_protocol_version && !mcp_version_supported(rq->mcp_protocol_version)) {
		reply_json(rp, 400,
			   rpc_err(NULL, -32600,
				   "Bad Request: unsupported "
				   "MCP-Protocol-Version"));
		return;
	}
	if (rq->mcp_session_id && !session_use(s->mcp, rq->mcp_session_id, NULL, false)) {
		reply_json(rp, 404, rpc_err(NULL, -32001, "Session not found"));
		return;
	}
	c.legacy = !rq->mcp_session_id && !rq->mcp_protocol_version;
	c.sse_ok = rq->accept && strstr(rq->accept, "text/event-stream");
	if (rq->body_too_large) {
		reply_json(rp, 413, rpc_err(NULL, -32600, "Request body too large"));
		return;
	}
	if (!content_type_is_json(rq->content_type)) {
		reply_json(rp, 415, rpc_err(NULL, -32600, "Content-Type must be application/json"));
		return;
	}
	json_t *msg = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, NULL);
	if (!msg) {
		reply_json(rp, c.legacy ? 200 : 400, rpc_err(NULL, -32700, "Parse error"));
		return;
	}
	bool invalid = false;
	if (json_is_array(msg)) {
		/* 2025-03-26 batches; later versions dropped them. */
		json_t *out = json_array();
		size_t i;
		json_t *e;
		if (json_array_size(msg) == 0) {
			json_decref(out);
			out = rpc_err(NULL, -32600, "Invalid Request: empty batch");
		}
		json_array_foreach(msg, i, e)
		{
			bool bad = false;
			json_t *r = handle_message(&c, e, &bad);
			if (r)
				json_array_append_new(out, r);
		}
		c.want_sse = false;
		if (json_is_array(out) && json_array_size(out) == 0) {
			json_decref(out);
			reply_set(rp, c.legacy ? 200 : 202, NULL, NULL, 0);
		} else {
			reply_mcp(&c, rp, 200, out);
		}
		json_decref(msg);
		return;
	}
	json_t *r = handle_message(&c, msg, &invalid);
	json_decref(msg);
	if (!r) {
		reply_set(rp, c.legacy ? 200 : 202, NULL, NULL, 0);
		return;
	}
	reply_mcp(&c, rp, invalid && !c.legacy ? 400 : 200, r);
}
