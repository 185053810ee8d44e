/* This project's own methods: streaming exec (start, stream, stdin, signal,
 * wait) and small files inside JSON (docs/api.md). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/b64.h"
#include "server/methods.h"
#include "server/params.h"
#include "server/stream.h"

int exec_spec_parse(json_t *params, struct sb_exec_spec *spec, struct msb_err *err)
{
	memset(spec, 0, sizeof(*spec));
	if (p_object(params, false, err) < 0 ||
	    p_sandbox(params, "sandbox", true, &spec->sandbox, err) < 0 ||
	    p_string(params, "command", true, &spec->command, err) < 0 ||
	    p_string(params, "cwd", false, &spec->cwd, err) < 0 ||
	    p_seconds(params, "timeout", RPC_MAX_TIMEOUT_S, &spec->timeout_s, err) < 0 ||
	    p_bool(params, "stdin", &spec->stdin_open, err) < 0 ||
	    p_bool(params, "tty", &spec->tty, err) < 0 ||
	    p_strv(params, "args", &spec->args, err) < 0)
		return -1;
	if (!spec->command[0])
		return msb_err_set(err, MSB_EK_USAGE, 0, "Invalid params: `command` is empty");
	if (p_strv(params, "env", &spec->env, err) < 0) {
		free((void *)spec->args.v);
		return -1;
	}
	for (size_t i = 0; i < spec->env.n; i++) {
		const char *eq = strchr(spec->env.v[i], '=');
		if (!eq || eq == spec->env.v[i]) {
			free((void *)spec->args.v);
			free((void *)spec->env.v);
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "Invalid params: `env` items must look like KEY=value");
		}
	}
	return 0;
}

static void exec_spec_release(struct sb_exec_spec *spec)
{
	free((void *)spec->args.v);
	free((void *)spec->env.v);
}

static int p_exec_id(json_t *params, const char **id, struct msb_err *err)
{
	if (p_object(params, false, err) < 0 || p_string(params, "exec", true, id, err) < 0)
		return -1;
	size_t n = strlen(*id);
	if (n == 0 || n >= SB_EXEC_ID_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "Invalid params: `exec` is not an exec id");
	return 0;
}

int m_exec_start(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	struct sb_exec_spec spec;
	if (exec_spec_parse(params, &spec, err) < 0)
		return -1;
	char id[SB_EXEC_ID_MAX] = "";
	int r = s->be->exec_start(s->be->self, &spec, id, err);
	exec_spec_release(&spec);
	if (r < 0)
		return -1;
	id[SB_EXEC_ID_MAX - 1] = '\0';
	*result = json_pack("{s:s}", "exec", id);
	return 0;
}

int m_exec_stream(struct msb_server *s, const struct srv_request *rq, json_t *params, json_t *id,
		  struct srv_reply *rp, struct msb_err *err)
{
	char exec_id[SB_EXEC_ID_MAX] = "";
	bool announce = false;
	if (p_object(params, false, err) < 0)
		return -1;
	if (json_object_get(params, "exec")) {
		const char *e;
		if (p_exec_id(params, &e, err) < 0)
			return -1;
		snprintf(exec_id, sizeof(exec_id), "%s", e);
	} else {
		struct sb_exec_spec spec;
		if (exec_spec_parse(params, &spec, err) < 0)
			return -1;
		int r = s->be->exec_start(s->be->self, &spec, exec_id, err);
		exec_spec_release(&spec);
		if (r < 0)
			return -1;
		exec_id[SB_EXEC_ID_MAX - 1] = '\0';
		announce = true;
	}
	/* SSE when the client asks for it, NDJSON otherwise. */
	enum srv_stream_format fmt =
		rq->accept && strstr(rq->accept, "text/event-stream") ? STREAM_SSE : STREAM_NDJSON;
	struct srv_stream *st = srv_stream_exec_new(s, exec_id, fmt, announce);
	if (!st) {
		s->be->exec_release(s->be->self, exec_id);
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	}
	reply_set(rp, 200, srv_stream_content_type(st), NULL, 0);
	rp->stream = st;
	reply_header(rp, "Cache-Control", "no-cache");
	reply_header(rp, "X-Msb-Exec", "%s", exec_id);
	return 0;
}

int m_exec_stdin(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *id, *data, *data64;
	bool eof = false;
	if (p_exec_id(params, &id, err) < 0 || p_string(params, "data", false, &data, err) < 0 ||
	    p_string(params, "data_base64", false, &data64, err) < 0 ||
	    p_bool(params, "eof", &eof, err) < 0)
		return -1;
	if (data && data64)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "Invalid params: give `data` or `data_base64`, not both");
	_cleanup_free_ unsigned char *bytes = NULL;
	size_t len = 0;
	const void *buf = "";
	if (data) {
		buf = data;
		len = strlen(data);
	} else if (data64) {
		bytes = msb_b64_decode(data64, strlen(data64), &len);
		if (!bytes)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "Invalid params: `data_base64` is not base64");
		buf = bytes;
	}
	if (s->be->exec_stdin(s->be->self, id, buf, len, eof, err) < 0)
		return -1;
	*result = json_pack("{s:I,s:b}", "written", (json_int_t)len, "eof", eof);
	return 0;
}

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"KILL", SIGKILL},
	{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM},   {"CONT", SIGCONT},
	{"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"WINCH", SIGWINCH},
};

int signal_parse(json_t *v, int *sig, struct msb_err *err)
{
	if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 65) {
		*sig = (int)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *n = json_string_value(v);
		if (strncasecmp(n, "SIG", 3) == 0)
			n += 3;
		for (size_t i = 0; i < MSB_ARRAY_SIZE(signals); i++)
			if (strcasecmp(n, signals[i].name) == 0) {
				*sig = signals[i].sig;
				return 0;
			}
	}
	return msb_err_set(err, MSB_EK_USAGE, 0,
			   "Invalid params: `signal` must be a signal number (1-64) or a name "
			   "such as \"SIGTERM\"");
}

int m_exec_signal(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *id;
	int sig = SIGTERM;
	if (p_exec_id(params, &id, err) < 0)
		return -1;
	json_t *v = json_object_get(params, "signal");
	if (v && !json_is_null(v) && signal_parse(v, &sig, err) < 0)
		return -1;
	if (s->be->exec_signal(s->be->self, id, sig, err) < 0)
		return -1;
	*result = json_pack("{s:s,s:i}", "exec", id, "signal", sig);
	return 0;
}

int m_exec_wait(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *id;
	double timeout = 0;
	if (p_exec_id(params, &id, err) < 0 ||
	    p_seconds(params, "timeout", RPC_MAX_TIMEOUT_S, &timeout, err) < 0)
		return -1;
	json_t *tv = json_object_get(params, "timeout");
	bool forever = !tv || json_is_null(tv);
	/* Waited for in slices so that a stopping server is not held up. */
	long left_ms = forever ? 0 : (long)(timeout * 1000);
	struct sb_exec_status st = {0};
	for (;;) {
		int slice = forever || left_ms > 250 ? 250 : (int)left_ms;
		if (s->be->exec_wait(s->be->self, id, slice, &st, err) < 0)
			return -1;
		if (st.exited || (!forever && (left_ms -= slice) <= 0))
			break;
		if (srv_stopping(s))
			return msb_err_set(err, MSB_EK_STATE, 0, "the server is stopping");
	}
	*result = json_object();
	json_object_set_new(*result, "exec", json_string(id));
	json_object_set_new(*result, "exited", json_boolean(st.exited));
	json_object_set_new(*result, "exit_code",
			    st.exited ? json_integer(st.exit_code) : json_null());
	json_object_set_new(*result, "signal",
			    st.exited && st.signal ? json_integer(st.signal) : json_null());
	json_object_set_new(*result, "timed_out", json_boolean(st.timed_out));
	json_object_set_new(*result, "out_of_memory", json_boolean(st.oom_killed));
	return 0;
}

int m_file_read(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *name, *path;
	if (p_object(params, false, err) < 0 ||
	    p_sandbox(params, "sandbox", true, &name, err) < 0 ||
	    p_path(params, "path", &path, err) < 0)
		return -1;
	void *h = NULL;
	uint64_t size = 0;
	if (s->be->file_open_read(s->be->self, name, path, &h, &size, err) < 0)
		return -1;
	if (size > RPC_MAX_INLINE_FILE) {
		s->be->file_close_read(s->be->self, h);
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "%s is %llu bytes, over the %u bytes sandbox.file.read returns; "
				   "download it with GET /api/v1/sandbox/file",
				   path, (unsigned long long)size, RPC_MAX_INLINE_FILE);
	}
	_cleanup_free_ char *buf = malloc(RPC_MAX_INLINE_FILE + 1);
	size_t len = 0;
	int r = buf ? 0 : msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	while (r == 0) {
		/* Read one byte past the limit to notice a file that grew. */
		ssize_t n = s->be->file_read(s->be->self, h, buf + len,
					     RPC_MAX_INLINE_FILE + 1 - len, err);
		if (n < 0)
			r = -1;
		else if (n == 0)
			break;
		else if ((len += (size_t)n) > RPC_MAX_INLINE_FILE)
			r = msb_err_set(err, MSB_EK_USAGE, 0, "%s grew past %u bytes while read",
					path, RPC_MAX_INLINE_FILE);
	}
	s->be->file_close_read(s->be->self, h);
	if (r < 0)
		return -1;
	json_t *text = json_stringn(buf, len);
	*result = json_pack("{s:s,s:I}", "path", path, "size", (json_int_t)len);
	if (text) {
		json_object_set_new(*result, "encoding", json_string("utf-8"));
		json_object_set_new(*result, "data", text);
	} else {
		_cleanup_free_ char *b = msb_b64_encode(buf, len, NULL);
		json_object_set_new(*result, "encoding", json_string("base64"));
		json_object_set_new(*result, "data", b ? json_string(b) : json_null());
	}
	return 0;
}

int m_file_write(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err)
{
	const char *name, *path, *data, *encoding;
	bool has_mode = false;
	uint64_t mode = 0644;
	if (p_object(params, false, err) < 0 ||
	    p_sandbox(params, "sandbox", true, &name, err) < 0 ||
	    p_path(params, "path", &path, err) < 0 ||
	    p_string(params, "data", true, &data, err) < 0 ||
	    p_string(params, "encoding", false, &encoding, err) < 0 ||
	    p_uint(params, "mode", 07777, &has_mode, &mode, err) < 0)
		return -1;
	if (!has_mode)
		mode = 0644;
	_cleanup_free_ unsigned char *bytes = NULL;
	const void *buf = data;
	size_t len = strlen(data);
	if (encoding && strcmp(encoding, "base64") == 0) {
		bytes = msb_b64_decode(data, len, &len);
		if (!bytes)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "Invalid params: `data` is not "
					   "base64");
		buf = bytes;
	} else if (encoding && strcmp(encoding, "utf-8") != 0) {
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "Invalid params: `encoding` must be \"utf-8\" or \"base64\"");
	}
	void *h = NULL;
	if (s->be->file_open_write(s->be->self, name, path, (unsigned)mode, &h, err) < 0)
		return -1;
	if (s->be->file_write(s->be->self, h, buf, len, err) < 0) {
		struct msb_err ignored = {0};
		s->be->file_close_write(s->be->self, h, false, &ignored);
		return -1;
	}
	if (s->be->file_close_write(s->be->self, h, true, err) < 0)
		return -1;
	*result = json_pack("{s:s,s:I}", "path", path, "size", (json_int_t)len);
	return 0;
}
