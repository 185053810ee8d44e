/* libmicrosandbox: the client object, errors, and JSON-RPC over libcurl. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int msbci_buf_add(struct msbci_buf *b, const void *data, size_t len)
{
	if (b->oom)
		return -1;
	if (b->n + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + len + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return -1;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, data, len);
	b->n += len;
	b->p[b->n] = '\0';
	return 0;
}

void msbci_buf_free(struct msbci_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

msbc_client *msbc_client_new(const char *server_url, const char *api_key)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return NULL;
	msbc_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (!server_url || !*server_url)
		server_url = getenv("MSB_SERVER_URL");
	if (!server_url || !*server_url)
		server_url = "http://127.0.0.1:5555";
	if (!api_key || !*api_key)
		api_key = getenv("MSB_API_KEY");
	c->url = strdup(server_url);
	c->key = api_key && *api_key ? strdup(api_key) : NULL;
	c->curl = curl_easy_init();
	if (!c->url || (api_key && *api_key && !c->key) || !c->curl) {
		msbc_client_free(c);
		return NULL;
	}
	size_t n = strlen(c->url);
	while (n > 0 && c->url[n - 1] == '/')
		c->url[--n] = '\0';
	return c;
}

void msbc_client_free(msbc_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->url);
	if (c->key) {
		/* the key is a credential: do not leave it in freed memory */
		volatile char *k = c->key;
		while (*k)
			*k++ = 0;
		free(c->key);
	}
	free(c);
}

int msbc_client_status(const msbc_client *c)
{
	return c ? c->status : MSBC_E_USAGE;
}

const char *msbc_client_errmsg(const msbc_client *c)
{
	return c ? c->errmsg : "no client";
}

int msbc_client_http_status(const msbc_client *c)
{
	return c ? c->http_status : 0;
}

int msbc_client_error_code(const msbc_client *c)
{
	return c ? c->code : 0;
}

void msbc_client_set_timeout(msbc_client *c, double seconds)
{
	if (c)
		c->timeout = seconds > 0 ? seconds : 0;
}

const char *msbc_status_name(int status)
{
	switch (status) {
	case MSBC_OK:
		return "ok";
	case MSBC_E_UNREACHABLE:
		return "unreachable";
	case MSBC_E_AUTH:
		return "auth";
	case MSBC_E_INVALID:
		return "invalid";
	case MSBC_E_NOT_FOUND:
		return "not_found";
	case MSBC_E_STATE:
		return "state";
	case MSBC_E_TIMEOUT:
		return "timeout";
	case MSBC_E_NETWORK:
		return "network";
	case MSBC_E_GUEST:
		return "guest";
	case MSBC_E_SERVER:
		return "server";
	case MSBC_E_PROTOCOL:
		return "protocol";
	case MSBC_E_USAGE:
		return "usage";
	case MSBC_E_NOMEM:
		return "nomem";
	case MSBC_E_IO:
		return "io";
	}
	return "unknown";
}

void msbci_clear(msbc_client *c)
{
	c->status = MSBC_OK;
	c->http_status = 0;
	c->code = 0;
	c->errmsg[0] = '\0';
}

int msbci_fail(msbc_client *c, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	c->status = status;
	return status;
}

static int status_of_rpc_code(long code)
{
	switch (code) {
	case -32600:
	case -32602:
		return MSBC_E_INVALID;
	case -32001:
		return MSBC_E_NOT_FOUND;
	case -32002:
		return MSBC_E_STATE;
	case -32003:
		return MSBC_E_TIMEOUT;
	case -32004:
		return MSBC_E_NETWORK;
	case -32005:
		return MSBC_E_GUEST;
	}
	return MSBC_E_SERVER;
}

/* this project's error kinds (docs/errors.md), when an upstream-shaped body
 * carries one */
static int status_of_kind(const char *kind)
{
	static const struct {
		const char *kind;
		int status;
	} map[] = {
		{"usage", MSBC_E_INVALID},   {"not_found", MSBC_E_NOT_FOUND},
		{"exists", MSBC_E_STATE},    {"state", MSBC_E_STATE},
		{"timeout", MSBC_E_TIMEOUT}, {"network", MSBC_E_NETWORK},
		{"guest", MSBC_E_GUEST},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(kind, map[i].kind))
			return map[i].status;
	return MSBC_E_SERVER;
}

int msbci_fail_reply(msbc_client *c, long http, const char *body, size_t len, const char *context,
		     int files)
{
	(void)files;
	int status = MSBC_E_SERVER;
	const char *msg = NULL;
	long code = 0;
	json_t *doc = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *err = doc ? json_object_get(doc, "error") : NULL;
	if (json_is_object(err)) {
		msg = json_string_value(json_object_get(err, "message"));
		code = (long)json_integer_value(json_object_get(err, "code"));
		status = status_of_rpc_code(code);
	} else if (json_is_string(err)) {
		/* upstream's handler errors: {"error": msg, "code": 1001|1004|2001|5002} */
		msg = json_string_value(err);
		code = (long)json_integer_value(json_object_get(doc, "code"));
		if (code == 1001 || code == 1004)
			status = MSBC_E_AUTH;
		else if (code == 2001 || http == 400)
			status = MSBC_E_INVALID;
		else if (json_is_string(json_object_get(doc, "kind")))
			status = status_of_kind(json_string_value(json_object_get(doc, "kind")));
		else if (strstr(msg, "not found"))
			status = MSBC_E_NOT_FOUND;
		else if (strstr(msg, "timed out"))
			status = MSBC_E_TIMEOUT;
	} else if (http == 400 || http == 413 || http == 415 || http == 422) {
		status = MSBC_E_INVALID;
	}
	if (http == 401)
		status = MSBC_E_AUTH;
	char text[512];
	if (!msg) {
		/* plain-text bodies (413/415/422, axum's wording) or none */
		size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;
		if (n)
			memcpy(text, body, n);
		text[n] = '\0';
		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
			text[--n] = '\0';
		if (!n)
			snprintf(text, sizeof(text), "HTTP %ld", http);
		msg = text;
	}
	msbci_fail(c, status, "%s%s%s", context ? context : "", context ? ": " : "", msg);
	c->http_status = (int)http;
	c->code = (int)code;
	json_decref(doc);
	return status;
}

int msbci_fail_curl(msbc_client *c, CURLcode rc, const char *context)
{
	const char *ctx = context ? context : "request";
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return msbci_fail(
			c, MSBC_E_UNREACHABLE,
			"%s: cannot reach the microsandbox server at %s (%s); start it with "
			"`msb server start` (or `msb server start --dev` without API keys) "
			"or point MSB_SERVER_URL at it",
			ctx, c->url, curl_easy_strerror(rc));
	case CURLE_OPERATION_TIMEDOUT:
		return msbci_fail(c, MSBC_E_TIMEOUT, "%s: no reply from %s in time (%s)", ctx,
				  c->url, curl_easy_strerror(rc));
	case CURLE_OUT_OF_MEMORY:
		return msbci_fail(c, MSBC_E_NOMEM, "%s: out of memory", ctx);
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return msbci_fail(c, MSBC_E_USAGE, "%s: bad server URL '%s' (%s)", ctx, c->url,
				  curl_easy_strerror(rc));
	case CURLE_READ_ERROR:
		return msbci_fail(c, MSBC_E_IO, "%s: reading the local data failed", ctx);
	case CURLE_WRITE_ERROR:
		return msbci_fail(c, MSBC_E_IO, "%s: storing the reply failed", ctx);
	default:
		return msbci_fail(c, MSBC_E_UNREACHABLE, "%s: the connection to %s failed: %s", ctx,
				  c->url, curl_easy_strerror(rc));
	}
}

int msbci_prepare(msbc_client *c, const char *method, const char *path, double timeout,
		  const char *content_type, struct curl_slist **headers)
{
	CURL *h = c->curl;
	curl_easy_reset(h);
	*headers = NULL;
	size_t n = strlen(c->url) + strlen(path) + 1;
	char *url = malloc(n);
	if (!url)
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	snprintf(url, n, "%s%s", c->url, path);
	CURLcode rc = curl_easy_setopt(h, CURLOPT_URL, url);
	free(url);
	if (rc != CURLE_OK)
		return msbci_fail_curl(c, rc, "preparing the request");
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, MSBC_CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "libmicrosandbox/" MSBC_CLIENT_VERSION);
	if (timeout <= 0)
		timeout = c->timeout;
	if (timeout > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
	struct curl_slist *l = NULL;
	if (content_type) {
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		l = curl_slist_append(l, ct);
	}
	if (c->key) {
		size_t kn = strlen(c->key) + 32;
		char *auth = malloc(kn);
		if (!auth) {
			curl_slist_free_all(l);
			return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
		}
		snprintf(auth, kn, "Authorization: Bearer %s", c->key);
		struct curl_slist *l2 = curl_slist_append(l, auth);
		memset(auth, 0, kn);
		free(auth);
		if (!l2) {
			curl_slist_free_all(l);
			return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
		}
		l = l2;
	}
	if (l)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	*headers = l;
	return 0;
}

static size_t to_buf(char *data, size_t size, size_t nmemb, void *ud)
{
	struct msbci_buf *b = ud;
	return msbci_buf_add(b, data, size * nmemb) == 0 ? size * nmemb : 0;
}

int msbci_call(msbc_client *c, const char *method, json_t *params, double timeout,
	       const char *context, json_t **result)
{
	msbci_clear(c);
	if (result)
		*result = NULL;
	static unsigned long counter;
	json_t *env = json_pack("{s:s, s:s, s:o, s:I}", "jsonrpc", "2.0", "method", method,
				"params", params ? params : json_null(), "id",
				(json_int_t)__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
	if (!env)
		return msbci_fail(c, MSBC_E_NOMEM, "%s: out of memory", context);
	char *body = json_dumps(env, JSON_COMPACT);
	json_decref(env);
	if (!body)
		return msbci_fail(c, MSBC_E_NOMEM, "%s: out of memory", context);
	struct curl_slist *hdrs;
	double wait = timeout > 0 ? timeout + MSBC_TIMEOUT_SLACK_S : 0;
	if (msbci_prepare(c, "POST", "/api/v1/rpc", wait, "application/json", &hdrs) < 0) {
		free(body);
		return c->status;
	}
	struct msbci_buf resp = {0};
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, to_buf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &resp);
	CURLcode rc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	free(body);
	if (rc != CURLE_OK) {
		msbci_buf_free(&resp);
		return msbci_fail_curl(c, rc, context);
	}
	long http = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
	int ret = 0;
	json_t *doc = NULL;
	if (http < 200 || http >= 300) {
		ret = msbci_fail_reply(c, http, resp.p, resp.n, context, 0);
	} else if (!(doc = json_loadb(resp.p ? resp.p : "", resp.n, 0, NULL))) {
		ret = msbci_fail(c, MSBC_E_PROTOCOL, "%s: the server's reply is not JSON", context);
	} else if (json_object_get(doc, "error")) {
		ret = msbci_fail_reply(c, http, resp.p, resp.n, context, 0);
	} else if (!json_object_get(doc, "result")) {
		ret = msbci_fail(c, MSBC_E_PROTOCOL, "%s: the server's reply has no result",
				 context);
	} else if (result) {
		*result = json_incref(json_object_get(doc, "result"));
	}
	c->http_status = (int)http;
	json_decref(doc);
	msbci_buf_free(&resp);
	return ret;
}

int msbc_rpc(msbc_client *c, const char *method, const char *params_json, char **result_json)
{
	if (!c || !method || !result_json)
		return c ? msbci_fail(c, MSBC_E_USAGE, "msbc_rpc: NULL argument") : MSBC_E_USAGE;
	*result_json = NULL;
	json_t *params = NULL;
	if (params_json) {
		json_error_t jerr;
		params = json_loads(params_json, JSON_DECODE_ANY, &jerr);
		if (!params)
			return msbci_fail(c, MSBC_E_USAGE, "msbc_rpc: params are not JSON: %s",
					  jerr.text);
	}
	json_t *res;
	char ctx[160];
	snprintf(ctx, sizeof(ctx), "%s failed", method);
	int rc = msbci_call(c, method, params, 0, ctx, &res);
	if (rc < 0)
		return rc;
	*result_json = json_dumps(res, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(res);
	return *result_json ? 0 : msbci_fail(c, MSBC_E_NOMEM, "out of memory");
}

int msbc_health(msbc_client *c)
{
	if (!c)
		return MSBC_E_USAGE;
	msbci_clear(c);
	struct curl_slist *hdrs;
	if (msbci_prepare(c, "GET", "/api/v1/health", 10, NULL, &hdrs) < 0)
		return c->status;
	struct msbci_buf resp = {0};
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, to_buf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &resp);
	CURLcode rc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		msbci_buf_free(&resp);
		return msbci_fail_curl(c, rc, "health check");
	}
	long http = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
	int ret = http == 200 ? 0 : msbci_fail_reply(c, http, resp.p, resp.n, "health check", 0);
	c->http_status = (int)http;
	msbci_buf_free(&resp);
	return ret;
}

json_t *msbci_args_json(const char *const *args, size_t nargs)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < nargs; i++) {
		if (!args[i] || json_array_append_new(a, json_string(args[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}
