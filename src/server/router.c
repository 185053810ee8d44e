/* Routes a request to health, JSON-RPC or MCP; the server's lifetime. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "server/auth.h"
#include "server/internal.h"
#include "server/stream.h"

void reply_set(struct srv_reply *rp, int status, const char *content_type, char *body, size_t len)
{
	free(rp->body);
	rp->status = status;
	rp->content_type = content_type;
	rp->body = body;
	rp->len = body ? len : 0;
}

char *json_dump_compact(const json_t *j, size_t *len)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	if (s && len)
		*len = strlen(s);
	return s;
}

void reply_json(struct srv_reply *rp, int status, json_t *j)
{
	if (!j) {
		reply_set(rp, status, NULL, NULL, 0);
		return;
	}
	size_t len = 0;
	char *s = json_dump_compact(j, &len);
	json_decref(j);
	if (!s) {
		reply_json_text(rp, 500, "{\"error\":\"Internal server error\",\"code\":5002}");
		return;
	}
	reply_set(rp, status, "application/json", s, len);
}

void reply_json_text(struct srv_reply *rp, int status, const char *json_text)
{
	char *s = strdup(json_text);
	reply_set(rp, s ? status : 500, "application/json", s, s ? strlen(s) : 0);
}

void reply_text(struct srv_reply *rp, int status, const char *text)
{
	char *s = strdup(text);
	reply_set(rp, status, "text/plain; charset=utf-8", s, s ? strlen(s) : 0);
}

void reply_header(struct srv_reply *rp, const char *name, const char *fmt, ...)
{
	if (rp->nheaders >= SRV_MAX_EXTRA_HEADERS)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *v = NULL;
	int n = vasprintf(&v, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	rp->headers[rp->nheaders].name = name;
	rp->headers[rp->nheaders].value = v;
	rp->nheaders++;
}

void srv_reply_release(struct srv_reply *rp)
{
	free(rp->body);
	for (unsigned i = 0; i < rp->nheaders; i++)
		free(rp->headers[i].value);
	srv_stream_free(rp->stream);
	memset(rp, 0, sizeof(*rp));
}

bool content_type_is_json(const char *ct)
{
	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	static const char want[] = "application/json";
	if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
		return false;
	char next = ct[sizeof(want) - 1];
	return next == '\0' || next == ';' || next == ' ';
}

bool accept_has(const char *accept, const char *type)
{
	if (!accept)
		return false;
	size_t tlen = strlen(type);
	const char *slash = strchr(type, '/');
	size_t major = slash ? (size_t)(slash - type) : tlen;
	const char *p = accept;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *end = p + strcspn(p, ",;");
		size_t n = (size_t)(end - p);
		while (n && p[n - 1] == ' ')
			n--;
		if ((n == tlen && strncasecmp(p, type, n) == 0) ||
		    (n == 3 && !strncmp(p, "*/*", 3)) ||
		    (n == major + 2 && strncasecmp(p, type, major) == 0 && p[major] == '/' &&
		     p[major + 1] == '*'))
			return true;
		p = end + strcspn(end, ",");
	}
	return false;
}

bool srv_stopping(const struct msb_server *s)
{
	return atomic_load(&((struct msb_server *)s)->stopping);
}

/* 401 unless the request carries a valid key (or the server runs with --dev). */
bool srv_authorized(struct msb_server *s, const struct srv_request *rq, struct srv_reply *rp)
{
	if (s->dev)
		return true;
	enum auth_result r =
		auth_check(s->key, rq->proxy_authorization, rq->authorization, time(NULL));
	if (r == AUTH_OK)
		return true;
	reply_json_text(rp, 401, auth_error_body(r));
	return false;
}

static const struct {
	const char *path;
	const char *method; /* the alias's JSON-RPC method */
} rpc_aliases[] = {
	{"/api/v1/sandbox/start", "sandbox.start"},
	{"/api/v1/sandbox/stop", "sandbox.stop"},
	{"/api/v1/sandbox/command/run", "sandbox.command.run"},
};

void srv_handle(struct msb_server *s, const struct srv_request *rq, struct srv_reply *rp)
{
	const char *path = rq->path ? rq->path : "";
	const char *m = rq->method ? rq->method : "";
	bool known = false;

	if (strcmp(m, "OPTIONS") == 0) {
		/* CORS preflight, as upstream allows any origin. */
		reply_set(rp, 204, NULL, NULL, 0);
		reply_header(rp, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE");
		reply_header(rp, "Access-Control-Allow-Headers",
			     "Authorization, Proxy-Authorization, Accept, Content-Type, "
			     "Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID");
		return;
	}
	if (strcmp(path, "/api/v1/health") == 0) {
		if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
			reply_json_text(rp, 200, "{\"message\":\"Service is healthy\"}");
		else
			reply_set(rp, 405, NULL, NULL, 0);
		return;
	}
	if (strcmp(path, "/api/v1/rpc") == 0) {
		known = true;
		if (strcmp(m, "POST") == 0) {
			if (srv_authorized(s, rq, rp))
				rpc_handle(s, rq, NULL, rp);
			return;
		}
	}
	for (size_t i = 0; i < MSB_ARRAY_SIZE(rpc_aliases); i++) {
		if (strcmp(path, rpc_aliases[i].path) != 0)
			continue;
		known = true;
		if (strcmp(m, "POST") == 0) {
			if (srv_authorized(s, rq, rp))
				rpc_handle(s, rq, rpc_aliases[i].method, rp);
			return;
		}
	}
	if (strcmp(path, "/mcp") == 0) {
		if (srv_authorized(s, rq, rp))
			mcp_handle(s, rq, rp);
		return;
	}
	if (known) {
		reply_set(rp, 405, NULL, NULL, 0);
		reply_header(rp, "Allow", "POST");
		return;
	}
	reply_set(rp, 404, NULL, NULL, 0);
}

int msb_server_new(const struct msb_server_config *cfg, const struct sandbox_backend *be,
		   struct msb_server **out, struct msb_err *err)
{
	if (!cfg->dev && (!cfg->key || !*cfg->key))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "a server key is required unless --dev is given");
	struct msb_server *s = calloc(1, sizeof(*s));
	if (!s)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	s->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
	s->key = cfg->dev ? NULL : strdup(cfg->key);
	s->project_dir = cfg->project_dir ? strdup(cfg->project_dir) : NULL;
	s->port = cfg->port;
	s->dev = cfg->dev;
	s->max_body = cfg->max_body ? cfg->max_body : SRV_MAX_BODY;
	s->max_connections = cfg->max_connections ? cfg->max_connections : SRV_MAX_CONNECTIONS;
	s->idle_timeout_s = cfg->idle_timeout_s ? cfg->idle_timeout_s : SRV_IDLE_TIMEOUT_S;
	s->be = be;
	atomic_init(&s->stopping, false);
	if (!s->host || (!cfg->dev && !s->key) || (cfg->project_dir && !s->project_dir)) {
		msb_server_free(s);
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	}
	if (mcp_sessions_new(&s->mcp, err) < 0) {
		msb_server_free(s);
		return -1;
	}
	*out = s;
	return 0;
}
