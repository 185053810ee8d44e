/* libmicrosandbox: streamed processes (sandbox.exec.*). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/internal.h"
#include "common/b64.h"

/* State of one NDJSON stream being read by libcurl's write callback. */
struct stream {
	msbc_client *c;
	msbc_output_fn fn;
	void *ud;
	char *exec_id; /* 64 bytes or NULL */
	struct msbc_exit *exit;
	struct msbci_buf line;	  /* the incomplete line */
	struct msbci_buf errbody; /* a non-stream reply */
	int checked;		  /* the reply's status and type were looked at */
	int streaming;		  /* it is an NDJSON stream */
	int stopped;		  /* the callback asked to stop */
	int ended;		  /* an exit or error event arrived */
	int failed;		  /* an error event: c holds it */
};

static int handle_event(struct stream *s, const char *text, size_t len)
{
	if (len == 0)
		return 0; /* keep-alive */
	json_t *ev = json_loadb(text, len, 0, NULL);
	const char *kind = json_string_value(json_object_get(ev, "event"));
	if (!kind) {
		json_decref(ev);
		msbci_fail(s->c, MSBC_E_PROTOCOL, "bad stream event");
		s->failed = 1;
		return -1;
	}
	int rc = 0;
	if (!strcmp(kind, "started")) {
		const char *id = json_string_value(json_object_get(ev, "exec"));
		if (id && s->exec_id)
			snprintf(s->exec_id, 64, "%s", id);
	} else if (!strcmp(kind, "stdout") || !strcmp(kind, "stderr")) {
		enum msbc_stream st = kind[3] == 'o' ? MSBC_STDOUT : MSBC_STDERR;
		const char *d = json_string_value(json_object_get(ev, "data"));
		const char *b = json_string_value(json_object_get(ev, "data_base64"));
		if (d) {
			if (s->fn && s->fn(s->ud, st, d, strlen(d)) != 0)
				rc = -1, s->stopped = 1;
		} else if (b) {
			size_t n = 0;
			unsigned char *raw = msb_b64_decode(b, strlen(b), &n);
			if (!raw) {
				msbci_fail(s->c, MSBC_E_PROTOCOL,
					   "could not decode the server's base64 output");
				s->failed = 1;
				rc = -1;
			} else {
				if (s->fn && s->fn(s->ud, st, (const char *)raw, n) != 0)
					rc = -1, s->stopped = 1;
				free(raw);
			}
		}
	} else if (!strcmp(kind, "exit")) {
		s->ended = 1;
		if (s->exit) {
			json_t *sig = json_object_get(ev, "signal");
			s->exit->exit_code =
				(int)json_integer_value(json_object_get(ev, "exit_code"));
			s->exit->signal = json_is_integer(sig) ? (int)json_integer_value(sig) : 0;
			s->exit->timed_out = json_is_true(json_object_get(ev, "timed_out"));
			s->exit->out_of_memory = json_is_true(json_object_get(ev, "out_of_memory"));
		}
	} else if (!strcmp(kind, "error")) {
		s->ended = 1;
		s->failed = 1;
		json_t *body =
			json_pack("{s:{s:O?, s:O?}}", "error", "code", json_object_get(ev, "code"),
				  "message", json_object_get(ev, "message"));
		char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
		msbci_fail_reply(s->c, 500, txt ? txt : "", txt ? strlen(txt) : 0,
				 "the process failed", 0);
		free(txt);
		json_decref(body);
	}
	json_decref(ev);
	return rc;
}

static size_t on_stream(char *data, size_t size, size_t nmemb, void *ud)
{
	struct stream *s = ud;
	size_t len = size * nmemb;
	if (!s->checked) {
		long http = 0;
		char *ctype = NULL;
		curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &http);
		curl_easy_getinfo(s->c->curl, CURLINFO_CONTENT_TYPE, &ctype);
		s->streaming = http == 200 && ctype && strstr(ctype, "ndjson");
		s->checked = 1;
	}
	if (!s->streaming)
		return msbci_buf_add(&s->errbody, data, len) == 0 ? len : 0;
	if (msbci_buf_add(&s->line, data, len) < 0) {
		msbci_fail(s->c, MSBC_E_NOMEM, "out of memory");
		s->failed = 1;
		return 0;
	}
	size_t start = 0;
	/* only the new bytes can hold a newline: scanning from 0 each time
	 * would be quadratic in a long event */
	for (size_t i = s->line.n - len; i < s->line.n; i++) {
		if (s->line.p[i] != '\n')
			continue;
		size_t end = i;
		if (end > start && s->line.p[end - 1] == '\r')
			end--;
		if (handle_event(s, s->line.p + start, end - start) < 0)
			return 0;
		start = i + 1;
	}
	memmove(s->line.p, s->line.p + start, s->line.n - start);
	s->line.n -= start;
	if (s->line.n > MSBC_MAX_EVENT) {
		/* the server's events are small; an endless line is not one */
		msbci_fail(s->c, MSBC_E_PROTOCOL, "a stream event is over %d bytes",
			   MSBC_MAX_EVENT);
		s->failed = 1;
		return 0;
	}
	return len;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct stream *s = ud;
	size_t len = size * nmemb;
	static const char name[] = "x-msb-exec:";
	if (s->exec_id && len > sizeof(name) - 1 && !strncasecmp(data, name, sizeof(name) - 1)) {
		const char *v = data + sizeof(name) - 1;
		size_t n = len - (sizeof(name) - 1);
		while (n && (*v == ' ' || *v == '\t'))
			v++, n--;
		while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
			n--;
		if (n < 64) {
			memcpy(s->exec_id, v, n);
			s->exec_id[n] = '\0';
		}
	}
	return len;
}

static int run_stream(msbc_client *c, json_t *params, const char *context, msbc_output_fn fn,
		      void *ud, char *exec_id, struct msbc_exit *exit)
{
	if (exit) {
		memset(exit, 0, sizeof(*exit));
		exit->exit_code = -1;
	}
	if (exec_id)
		exec_id[0] = '\0';
	json_t *env = json_pack("{s:s, s:s, s:o, s:i}", "jsonrpc", "2.0", "method",
				"sandbox.exec.stream", "params", params, "id", 1);
	char *body = env ? json_dumps(env, JSON_COMPACT) : NULL;
	json_decref(env);
	if (!body)
		return msbci_fail(c, MSBC_E_NOMEM, "%s: out of memory", context);
	struct curl_slist *hdrs;
	if (msbci_prepare(c, "POST", "/api/v1/rpc", -1, "application/json", &hdrs) < 0) {
		free(body);
		return c->status;
	}
	/* a stream lasts as long as the process: no overall timeout */
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, 0L);
	struct curl_slist *h2 = curl_slist_append(hdrs, "Accept: application/x-ndjson");
	if (h2)
		hdrs = h2;
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
	struct stream s = {.c = c, .fn = fn, .ud = ud, .exec_id = exec_id, .exit = exit};
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &s);
	CURLcode rc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	free(body);
	long http_status = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http_status);
	int ret = 0;
	if (s.failed) {
		ret = c->status;
	} else if (s.stopped) {
		ret = 0; /* the caller asked to stop: closing released the exec */
	} else if (rc != CURLE_OK) {
		ret = msbci_fail_curl(c, rc, context);
	} else if (!s.streaming) {
		long http = 0;
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
		ret = msbci_fail_reply(c, http == 200 ? 500 : http, s.errbody.p, s.errbody.n,
				       context, 0);
	} else if (!s.ended) {
		ret = msbci_fail(c, MSBC_E_PROTOCOL, "%s: the stream ended without an exit event",
				 context);
	}
	if (http_status)
		c->http_status = (int)http_status;
	msbci_buf_free(&s.line);
	msbci_buf_free(&s.errbody);
	return ret;
}

static json_t *exec_params(const char *name, const char *command, const char *const *args,
			   size_t nargs, double timeout, int with_stdin)
{
	json_t *a = msbci_args_json(args, nargs);
	if (!a)
		return NULL;
	json_t *p = json_pack("{s:s, s:s, s:o, s:b}", "sandbox", name, "command", command, "args",
			      a, "stdin", with_stdin != 0);
	if (p && timeout > 0)
		json_object_set_new(p, "timeout", json_real(timeout));
	return p;
}

int msbc_exec_stream(msbc_client *c, const char *name, const char *command, const char *const *args,
		     size_t nargs, double timeout, int with_stdin, msbc_output_fn fn, void *ud,
		     char exec_id[64], struct msbc_exit *exit)
{
	if (!c)
		return MSBC_E_USAGE;
	msbci_clear(c);
	if (!name || !command || (nargs && !args))
		return msbci_fail(c, MSBC_E_USAGE, "msbc_exec_stream: a required argument is NULL");
	json_t *p = exec_params(name, command, args, nargs, timeout, with_stdin);
	if (!p)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_exec_stream: an argument is not UTF-8");
	char ctx[200];
	snprintf(ctx, sizeof(ctx), "Failed to run '%s'", command);
	return run_stream(c, p, ctx, fn, ud, exec_id, exit);
}

int msbc_exec_attach(msbc_client *c, const char *exec_id, msbc_output_fn fn, void *ud,
		     struct msbc_exit *exit)
{
	if (!c)
		return MSBC_E_USAGE;
	msbci_clear(c);
	if (!exec_id)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_exec_attach: exec_id is NULL");
	json_t *p = json_pack("{s:s}", "exec", exec_id);
	if (!p)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_exec_attach: bad exec id");
	return run_stream(c, p, "Failed to attach to the process", fn, ud, NULL, exit);
}

int msbc_exec_start(msbc_client *c, const char *name, const char *command, const char *const *args,
		    size_t nargs, double timeout, int with_stdin, char exec_id[64])
{
	if (!c || !name || !command || !exec_id || (nargs && !args))
		return c ? msbci_fail(c, MSBC_E_USAGE,
				      "msbc_exec_start: a required argument is NULL")
			 : MSBC_E_USAGE;
	exec_id[0] = '\0';
	json_t *p = exec_params(name, command, args, nargs, timeout, with_stdin);
	if (!p)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_exec_start: an argument is not UTF-8");
	json_t *res;
	int rc = msbci_call(c, "sandbox.exec.start", p, 0, "Failed to start the process", &res);
	if (rc < 0)
		return rc;
	const char *id = json_string_value(json_object_get(res, "exec"));
	if (!id || strlen(id) >= 64)
		rc = msbci_fail(c, MSBC_E_PROTOCOL,
				"sandbox.exec.start returned no usable exec id");
	else
		snprintf(exec_id, 64, "%s", id);
	json_decref(res);
	return rc;
}

int msbc_exec_stdin(msbc_client *c, const char *exec_id, const void *data, size_t len, int eof)
{
	if (!c || !exec_id || (len && !data))
		return c ? msbci_fail(c, MSBC_E_USAGE,
				      "msbc_exec_stdin: a required argument is NULL")
			 : MSBC_E_USAGE;
	char *b64 = msb_b64_encode(data, len, NULL);
	if (!b64)
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	json_t *p =
		json_pack("{s:s, s:s, s:b}", "exec", exec_id, "data_base64", b64, "eof", eof != 0);
	free(b64);
	if (!p)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_exec_stdin: bad exec id");
	return msbci_call(c, "sandbox.exec.stdin", p, 0, "Failed to write to the process's stdin",
			  NULL);
}

int msbc_exec_signal(msbc_client *c, const char *exec_id, int signal)
{
	if (!c || !exec_id)
		return c ? msbci_fail(c, MSBC_E_USAGE, "msbc_exec_signal: exec_id is NULL")
			 : MSBC_E_USAGE;
	json_t *p = json_pack("{s:s, s:i}", "exec", exec_id, "signal", signal);
	if (!p)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_exec_signal: bad exec id");
	return msbci_call(c, "sandbox.exec.signal", p, 0, "Failed to signal the process", NULL);
}

int msbc_exec_wait(msbc_client *c, const char *exec_id, double timeout, int *exited,
		   struct msbc_exit *exit)
{
	if (!c || !exec_id || !exited)
		return c ? msbci_fail(c, MSBC_E_USAGE,
				      "msbc_exec_wait: a required argument is NULL")
			 : MSBC_E_USAGE;
	*exited = 0;
	if (exit) {
		memset(exit, 0, sizeof(*exit));
		exit->exit_code = -1;
	}
	json_t *p = json_pack("{s:s}", "exec", exec_id);
	if (!p)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_exec_wait: bad exec id");
	if (timeout >= 0)
		json_object_set_new(p, "timeout", json_real(timeout));
	json_t *res;
	int rc = msbci_call(c, "sandbox.exec.wait", p, timeout >= 0 ? timeout : 0,
			    "Failed to wait for the process", &res);
	if (rc < 0)
		return rc;
	*exited = json_is_true(json_object_get(res, "exited"));
	if (exit && *exited) {
		json_t *code = json_object_get(res, "exit_code");
		json_t *sig = json_object_get(res, "signal");
		exit->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
		exit->signal = json_is_integer(sig) ? (int)json_integer_value(sig) : 0;
		exit->timed_out = json_is_true(json_object_get(res, "timed_out"));
		exit->out_of_memory = json_is_true(json_object_get(res, "out_of_memory"));
	}
	json_decref(res);
	return 0;
}
