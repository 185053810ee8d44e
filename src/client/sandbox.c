/* libmicrosandbox: sandbox lifecycle, metrics, REPL and command runs. */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

struct msbc_result {
	char *out; /* stdout lines joined by "\n", trimmed */
	char *err;
	char *status;
	int exit_code;
	int success;
};

static int bad_args(msbc_client *c, const char *fn)
{
	if (!c)
		return MSBC_E_USAGE;
	return msbci_fail(c, MSBC_E_USAGE, "%s: a required argument is NULL or empty", fn);
}

int msbc_sandbox_start(msbc_client *c, const char *name, const char *image, unsigned memory_mib,
		       unsigned cpus, const char *extra_config_json, char **message)
{
	if (!c || !name || !*name)
		return bad_args(c, "msbc_sandbox_start");
	if (message)
		*message = NULL;
	json_t *config = NULL;
	if (extra_config_json) {
		json_error_t jerr;
		config = json_loads(extra_config_json, 0, &jerr);
		if (!json_is_object(config)) {
			json_decref(config);
			return msbci_fail(
				c, MSBC_E_USAGE,
				"msbc_sandbox_start: extra_config_json is not a JSON object");
		}
	} else {
		config = json_object();
	}
	if (!config)
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	if (image)
		json_object_set_new(config, "image", json_string(image));
	if (memory_mib)
		json_object_set_new(config, "memory", json_integer(memory_mib));
	if (cpus)
		json_object_set_new(config, "cpus", json_integer(cpus));
	json_t *params = json_pack("{s:s, s:o}", "sandbox", name, "config", config);
	if (!params)
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	json_t *res;
	/* The server pulls the image and boots, and bounds that itself (a boot
	 * takes minutes under PVM): no client deadline unless the caller set one
	 * with msbc_client_set_timeout(). */
	int rc = msbci_call(c, "sandbox.start", params, 0, "Failed to start sandbox", &res);
	if (rc < 0)
		return rc;
	if (message && json_is_string(res)) {
		*message = strdup(json_string_value(res));
		if (!*message)
			rc = msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	}
	json_decref(res);
	return rc;
}

int msbc_sandbox_stop(msbc_client *c, const char *name)
{
	if (!c || !name || !*name)
		return bad_args(c, "msbc_sandbox_stop");
	return msbci_call(c, "sandbox.stop", json_pack("{s:s}", "sandbox", name), 0,
			  "Failed to stop sandbox", NULL);
}

int msbc_sandbox_list(msbc_client *c, char **json)
{
	if (!c || !json)
		return bad_args(c, "msbc_sandbox_list");
	*json = NULL;
	json_t *res;
	int rc = msbci_call(c, "sandbox.list", json_object(), 0, "Failed to list sandboxes", &res);
	if (rc < 0)
		return rc;
	if (!json_is_object(res)) {
		json_decref(res);
		return msbci_fail(c, MSBC_E_PROTOCOL,
				  "Failed to list sandboxes: the result is not an object");
	}
	*json = json_dumps(res, JSON_COMPACT);
	json_decref(res);
	return *json ? 0 : msbci_fail(c, MSBC_E_NOMEM, "out of memory");
}

int msbc_metrics_get(msbc_client *c, const char *name, struct msbc_metrics *out)
{
	if (!c || !name || !out)
		return bad_args(c, "msbc_metrics_get");
	memset(out, 0, sizeof(*out));
	out->memory_mib = -1;
	out->disk_bytes = -1;
	json_t *res;
	int rc = msbci_call(c, "sandbox.metrics.get", json_pack("{s:s}", "sandbox", name), 0,
			    "Failed to get sandbox metrics", &res);
	if (rc < 0)
		return rc;
	json_t *m = json_array_get(json_object_get(res, "sandboxes"), 0);
	if (json_is_object(m)) {
		json_t *v;
		out->running = json_is_true(json_object_get(m, "running"));
		if (json_is_number(v = json_object_get(m, "cpu_usage"))) {
			out->has_cpu = 1;
			out->cpu_usage = json_number_value(v);
		}
		if (json_is_number(v = json_object_get(m, "memory_usage")))
			out->memory_mib = (int64_t)json_number_value(v);
		if (json_is_number(v = json_object_get(m, "disk_usage")))
			out->disk_bytes = (int64_t)json_number_value(v);
	}
	json_decref(res);
	return 0;
}

/* Join the `text` of the output lines of one stream with "\n" and trim
 * surrounding whitespace, as upstream's SDKs do. */
static char *join_stream(json_t *lines, const char *stream)
{
	struct msbci_buf b = {0};
	size_t i;
	json_t *line;
	int first = 1;
	msbci_buf_add(&b, "", 0);
	json_array_foreach(lines, i, line)
	{
		const char *s = json_string_value(json_object_get(line, "stream"));
		const char *t = json_string_value(json_object_get(line, "text"));
		if (!s || strcmp(s, stream) != 0)
			continue;
		if (!first)
			msbci_buf_add(&b, "\n", 1);
		first = 0;
		if (t)
			msbci_buf_add(&b, t, strlen(t));
	}
	if (b.oom) {
		msbci_buf_free(&b);
		return NULL;
	}
	size_t start = 0, end = b.n;
	while (start < end && strchr(" \t\r\n", b.p[start]))
		start++;
	while (end > start && strchr(" \t\r\n", b.p[end - 1]))
		end--;
	memmove(b.p, b.p + start, end - start);
	b.p[end - start] = '\0';
	return b.p;
}

static int make_result(msbc_client *c, json_t *res, int is_command, msbc_result **out)
{
	msbc_result *r = calloc(1, sizeof(*r));
	if (!r)
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	json_t *lines = json_object_get(res, "output");
	r->out = join_stream(lines, "stdout");
	r->err = join_stream(lines, "stderr");
	const char *st = json_string_value(json_object_get(res, "status"));
	r->status = strdup(st ? st : "");
	if (!r->out || !r->err || !r->status) {
		msbc_result_free(r);
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	}
	json_t *code = json_object_get(res, "exit_code");
	r->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
	if (is_command)
		r->success = json_is_true(json_object_get(res, "success"));
	else
		r->success = strcmp(r->status, "success") == 0 && r->err[0] == '\0';
	*out = r;
	return 0;
}

int msbc_repl_run(msbc_client *c, const char *name, const char *language, const char *code,
		  double timeout, msbc_result **out)
{
	if (!c || !name || !language || !code || !out)
		return bad_args(c, "msbc_repl_run");
	*out = NULL;
	json_t *params =
		json_pack("{s:s, s:s, s:s}", "sandbox", name, "language", language, "code", code);
	if (params && timeout > 0)
		json_object_set_new(params, "timeout", json_real(timeout));
	if (!params)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_repl_run: the code is not valid UTF-8");
	json_t *res;
	int rc = msbci_call(c, "sandbox.repl.run", params, timeout, "Failed to execute code", &res);
	if (rc < 0)
		return rc;
	rc = make_result(c, res, 0, out);
	json_decref(res);
	return rc;
}

int msbc_command_run(msbc_client *c, const char *name, const char *command, const char *const *args,
		     size_t nargs, double timeout, msbc_result **out)
{
	if (!c || !name || !command || !out || (nargs && !args))
		return bad_args(c, "msbc_command_run");
	*out = NULL;
	json_t *a = msbci_args_json(args, nargs);
	if (!a)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_command_run: an argument is not UTF-8");
	json_t *params =
		json_pack("{s:s, s:s, s:o}", "sandbox", name, "command", command, "args", a);
	if (params && timeout > 0)
		json_object_set_new(params, "timeout", json_real(timeout));
	if (!params)
		return msbci_fail(c, MSBC_E_USAGE, "msbc_command_run: the command is not UTF-8");
	json_t *res;
	int rc = msbci_call(c, "sandbox.command.run", params, timeout, "Failed to execute command",
			    &res);
	if (rc < 0)
		return rc;
	rc = make_result(c, res, 1, out);
	json_decref(res);
	return rc;
}

const char *msbc_result_stdout(const msbc_result *r)
{
	return r ? r->out : "";
}

const char *msbc_result_stderr(const msbc_result *r)
{
	return r ? r->err : "";
}

int msbc_result_exit_code(const msbc_result *r)
{
	return r ? r->exit_code : -1;
}

int msbc_result_success(const msbc_result *r)
{
	return r ? r->success : 0;
}

const char *msbc_result_status(const msbc_result *r)
{
	return r ? r->status : "";
}

void msbc_result_free(msbc_result *r)
{
	if (!r)
		return;
	free(r->out);
	free(r->err);
	free(r->status);
	free(r);
}
