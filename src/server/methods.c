/* Upstream's five sandbox methods and sandbox.list: parse and check params,
 * call the backend, shape the result as upstream does. */
#include "server/methods.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "server/params.h"

static json_t *output_json(const struct sb_output *out)
{
	json_t *a = json_array();
	for (size_t i = 0; i < out->n; i++)
		json_array_append_new(
			a, json_pack("{s:s,s:s}", "stream",
				     out->lines[i].stream == SB_STDERR ? "stderr" : "stdout",
				     "text", out->lines[i].text ? out->lines[i].text : ""));
	return a;
}

static json_t *strv_json(const struct sb_strv *v)
{
	json_t *a = json_array();
	for (size_t i = 0; i < v->n; i++)
		json_array_append_new(a, json_string(v->v[i]));
	return a;
}

struct start_params {
	struct sb_start_config cfg;
	const char **names, **bodies;
};

static void start_params_release(struct start_params *p)
{
	free((void *)p->cfg.volumes.v);
	free((void *)p->cfg.ports.v);
	free((void *)p->cfg.envs.v);
	free((void *)p->cfg.depends_on.v);
	free(p->names);
	free(p->bodies);
}

static int parse_config(json_t *c, struct start_params *p, struct msb_err *err)
{
	struct sb_start_config *cfg = &p->cfg;
	if (!c || json_is_null(c))
		return 0;
	if (!json_is_object(c))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "Invalid params: `config` must be an "
				   "object");
	uint64_t v = 0;
	if (p_string(c, "image", false, &cfg->image, err) < 0 ||
	    p_uint(c, "memory", UINT32_MAX, &cfg->has_memory, &v, err) < 0)
		return -1;
	cfg->memory_mib = (uint32_t)v;
	if (p_uint(c, "cpus", UINT8_MAX, &cfg->has_cpus, &v, err) < 0)
		return -1;
	cfg->cpus = (uint8_t)v;
	if (p_strv(c, "volumes", &cfg->volumes, err) < 0 ||
	    p_strv(c, "ports", &cfg->ports, err) < 0 || p_strv(c, "envs", &cfg->envs, err) < 0 ||
	    p_strv(c, "depends_on", &cfg->depends_on, err) < 0 ||
	    p_string(c, "workdir", false, &cfg->workdir, err) < 0 ||
	    p_string(c, "shell", false, &cfg->shell, err) < 0 ||
	    p_string(c, "exec", false, &cfg->exec, err) < 0)
		return -1;
	json_t *scripts = json_object_get(c, "scripts");
	if (scripts && !json_is_null(scripts)) {
		if (!json_is_object(scripts))
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "Invalid params: `scripts` must be an object of "
					   "strings");
		size_t n = json_object_size(scripts), i = 0;
		p->names = calloc(n + 1, sizeof(char *));
		p->bodies = calloc(n + 1, sizeof(char *));
		if (!p->names || !p->bodies)
			return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
		const char *k;
		json_t *body;
		json_object_foreach(scripts, k, body)
		{
			if (!json_is_string(body))
				return msb_err_set(
					err, MSB_EK_USAGE, 0,
					"Invalid params: script `%.80s` must be a string", k);
			p->names[i] = k;
			p->bodies[i] = json_string_value(body);
			i++;
		}
		cfg->script_names = (struct sb_strv){p->names, i};
		cfg->script_bodies = (struct sb_strv){p->bodies, i};
	}
	return 0;
}

static int m_start(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *name;
	if (p_object(params, false, err) < 0 || p_sandbox(params, "sandbox", true, &name, err) < 0)
		return -1;
	struct start_params p = {0};
	_cleanup_free_ char *msg = NULL;
	int r = parse_config(json_object_get(params, "config"), &p, err);
	if (r == 0)
		r = s->be->start(s->be->self, name, &p.cfg, &msg, err);
	start_params_release(&p);
	if (r < 0)
		return -1;
	*result = json_string(msg ? msg : "");
	return 0;
}

static int m_stop(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *name;
	if (p_object(params, false, err) < 0 || p_sandbox(params, "sandbox", true, &name, err) < 0)
		return -1;
	_cleanup_free_ char *msg = NULL;
	if (s->be->stop(s->be->self, name, &msg, err) < 0)
		return -1;
	*result = json_string(msg ? msg : "");
	return 0;
}

/* Upstream's portal languages, case-insensitive. */
static bool language_valid(const char *l)
{
	static const char *const known[] = {"python", "node", "nodejs", "javascript"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(known); i++)
		if (strcasecmp(l, known[i]) == 0)
			return true;
	return false;
}

static int m_repl_run(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *name, *language, *code;
	double timeout = 0;
	if (p_object(params, false, err) < 0 ||
	    p_sandbox(params, "sandbox", true, &name, err) < 0 ||
	    p_string(params, "language", true, &language, err) < 0 ||
	    p_string(params, "code", true, &code, err) < 0 ||
	    p_seconds(params, "timeout", RPC_MAX_TIMEOUT_S, &timeout, err) < 0)
		return -1;
	if (!language_valid(language))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "Unsupported language '%.40s': use python or node", language);
	struct sb_repl_result res = {0};
	if (s->be->repl_run(s->be->self, name, language, code, timeout, &res, err) < 0) {
		sb_repl_result_release(&res);
		return -1;
	}
	*result = json_pack("{s:s,s:s,s:o}", "status", res.status ? res.status : "success",
			    "language", language, "output", output_json(&res.output));
	sb_repl_result_release(&res);
	return 0;
}

static int m_command_run(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *name, *command;
	struct sb_strv args = {0};
	double timeout = 0;
	if (p_object(params, false, err) < 0 ||
	    p_sandbox(params, "sandbox", true, &name, err) < 0 ||
	    p_string(params, "command", true, &command, err) < 0 ||
	    p_seconds(params, "timeout", RPC_MAX_TIMEOUT_S, &timeout, err) < 0 ||
	    p_strv(params, "args", &args, err) < 0)
		return -1;
	struct sb_command_result res = {0};
	int r = s->be->command_run(s->be->self, name, command, &args, timeout, &res, err);
	if (r == 0)
		*result = json_pack("{s:s,s:o,s:i,s:b,s:o,s:b}", "command", command, "args",
				    strv_json(&args), "exit_code", res.exit_code, "success",
				    res.exit_code == 0, "output", output_json(&res.output),
				    "out_of_memory", res.oom_killed);
	sb_command_result_release(&res);
	free((void *)args.v);
	return r;
}

static json_t *num_or_null(bool has, json_t *v)
{
	if (has)
		return v;
	json_decref(v);
	return json_null();
}

static int m_metrics(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *name = NULL;
	if (p_object(params, true, err) < 0)
		return -1;
	if (json_is_object(params) && p_sandbox(params, "sandbox", false, &name, err) < 0) {
		/* Pre-namespace-removal clients send "*" for all. */
		json_t *v = json_object_get(params, "sandbox");
		if (!json_is_string(v) || strcmp(json_string_value(v), "*") != 0)
			return -1;
		name = NULL;
	}
	struct sb_metrics *rows = NULL;
	size_t n = 0;
	if (s->be->metrics(s->be->self, name, &rows, &n, err) < 0)
		return -1;
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *row = json_object();
		json_object_set_new(row, "name", json_string(rows[i].name ? rows[i].name : ""));
		json_object_set_new(row, "running", json_boolean(rows[i].running));
		json_object_set_new(row, "cpu_usage",
				    num_or_null(rows[i].has_cpu, json_real(rows[i].cpu_usage)));
		json_object_set_new(row, "memory_usage",
				    num_or_null(rows[i].has_memory,
						json_integer((json_int_t)rows[i].memory_mib)));
		json_object_set_new(row, "disk_usage",
				    num_or_null(rows[i].has_disk,
						json_integer((json_int_t)rows[i].disk_bytes)));
		json_array_append_new(a, row);
	}
	sb_metrics_free(rows, n);
	*result = json_pack("{s:o}", "sandboxes", a);
	return 0;
}

static int m_list(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	if (p_object(params, true, err) < 0)
		return -1;
	struct sb_info *rows = NULL;
	size_t n = 0;
	if (s->be->list(s->be->self, &rows, &n, err) < 0)
		return -1;
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *row = json_object();
		json_object_set_new(row, "name", json_string(rows[i].name ? rows[i].name : ""));
		json_object_set_new(row, "status",
				    json_string(rows[i].status ? rows[i].status : "unknown"));
		json_object_set_new(row, "image",
				    rows[i].image ? json_string(rows[i].image) : json_null());
		json_object_set_new(row, "pid",
				    rows[i].pid > 0 ? json_integer(rows[i].pid) : json_null());
		json_array_append_new(a, row);
	}
	sb_info_free(rows, n);
	*result = json_pack("{s:o}", "sandboxes", a);
	return 0;
}

static const struct rpc_method methods[] = {
	{"sandbox.start", RPC_UPSTREAM, m_start, NULL},
	{"sandbox.stop", RPC_UPSTREAM, m_stop, NULL},
	{"sandbox.repl.run", RPC_UPSTREAM, m_repl_run, NULL},
	{"sandbox.command.run", RPC_UPSTREAM, m_command_run, NULL},
	{"sandbox.metrics.get", RPC_UPSTREAM, m_metrics, NULL},
	{"sandbox.list", RPC_OWN, m_list, NULL},
	{"sandbox.exec.start", RPC_OWN, m_exec_start, NULL},
	{"sandbox.exec.stream", RPC_OWN, NULL, m_exec_stream},
	{"sandbox.exec.stdin", RPC_OWN, m_exec_stdin, NULL},
	{"sandbox.exec.signal", RPC_OWN, m_exec_signal, NULL},
	{"sandbox.exec.wait", RPC_OWN, m_exec_wait, NULL},
	{"sandbox.file.read", RPC_OWN, m_file_read, NULL},
	{"sandbox.file.write", RPC_OWN, m_file_write, NULL},
};

const struct rpc_method *rpc_method_find(const char *name)
{
	for (size_t i = 0; name && i < MSB_ARRAY_SIZE(methods); i++)
		if (strcmp(methods[i].name, name) == 0)
			return &methods[i];
	return NULL;
}
