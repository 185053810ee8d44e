/* Helpers every backend shares, and the backend of a build without sandboxes. */
#include "server/backend.h"

#include <stdlib.h>
#include <string.h>

int sb_output_add(struct sb_output *out, enum sb_stream s, const char *text, size_t len,
		  struct msb_err *err)
{
	if (out->n == out->cap) {
		size_t cap = out->cap ? out->cap * 2 : 16;
		struct sb_line *l = realloc(out->lines, cap * sizeof(*l));
		if (!l)
			return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory for output");
		out->lines = l;
		out->cap = cap;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory for output");
	memcpy(copy, text, len);
	copy[len] = '\0';
	out->lines[out->n].stream = s;
	out->lines[out->n].text = copy;
	out->n++;
	return 0;
}

void sb_output_release(struct sb_output *out)
{
	for (size_t i = 0; i < out->n; i++)
		free(out->lines[i].text);
	free(out->lines);
	memset(out, 0, sizeof(*out));
}

void sb_repl_result_release(struct sb_repl_result *r)
{
	free(r->status);
	r->status = NULL;
	sb_output_release(&r->output);
}

void sb_command_result_release(struct sb_command_result *r)
{
	sb_output_release(&r->output);
}

static __thread bool (*client_alive)(void *arg);
static __thread void *client_arg;

void sb_client_set(bool (*alive)(void *arg), void *arg)
{
	client_alive = alive;
	client_arg = arg;
}

bool sb_client_gone(void)
{
	return client_alive && !client_alive(client_arg);
}

void sb_client_get(bool (**alive)(void *arg), void **arg)
{
	*alive = client_alive;
	*arg = client_arg;
}

void sb_metrics_free(struct sb_metrics *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		free(rows[i].name);
	free(rows);
}

void sb_info_free(struct sb_info *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		free(rows[i].name);
		free(rows[i].status);
		free(rows[i].image);
	}
	free(rows);
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool sb_name_valid(const char *name)
{
	if (!name || !is_alnum(name[0]))
		return false;
	size_t i = 0;
	for (; name[i]; i++)
		if (i >= 63 || !(is_alnum(name[i]) || name[i] == '_' || name[i] == '-'))
			return false;
	return true;
}

/* ---- the unavailable backend ------------------------------------------------------ */

static int unavailable(struct msb_err *err)
{
	return msb_err_set(err, MSB_EK_SYSTEM, 0, SB_UNAVAILABLE_MSG);
}

static int u_start(void *self, const char *name, const struct sb_start_config *cfg, char **message,
		   struct msb_err *err)
{
	return unavailable(err);
}

static int u_stop(void *self, const char *name, char **message, struct msb_err *err)
{
	return unavailable(err);
}

static int u_repl(void *self, const char *name, const char *language, const char *code,
		  double timeout_s, struct sb_repl_result *res, struct msb_err *err)
{
	return unavailable(err);
}

static int u_command(void *self, const char *name, const char *command, const struct sb_strv *args,
		     double timeout_s, struct sb_command_result *res, struct msb_err *err)
{
	return unavailable(err);
}

static int u_metrics(void *self, const char *name, struct sb_metrics **rows, size_t *n,
		     struct msb_err *err)
{
	return unavailable(err);
}

static int u_list(void *self, struct sb_info **rows, size_t *n, struct msb_err *err)
{
	return unavailable(err);
}

static int u_exec_start(void *self, const struct sb_exec_spec *spec, char id[SB_EXEC_ID_MAX],
			struct msb_err *err)
{
	return unavailable(err);
}

static int u_exec_next(void *self, const char *id, int timeout_ms, struct sb_exec_event *ev,
		       struct msb_err *err)
{
	return unavailable(err);
}

static int u_exec_stdin(void *self, const char *id, const void *data, size_t len, bool eof,
			struct msb_err *err)
{
	return unavailable(err);
}

static int u_exec_signal(void *self, const char *id, int sig, struct msb_err *err)
{
	return unavailable(err);
}

static int u_exec_wait(void *self, const char *id, int timeout_ms, struct sb_exec_status *st,
		       struct msb_err *err)
{
	return unavailable(err);
}

static void u_exec_release(void *self, const char *id)
{
}

static int u_open_write(void *self, const char *sandbox, const char *path, unsigned mode, void **h,
			struct msb_err *err)
{
	return unavailable(err);
}

static int u_write(void *self, void *h, const void *buf, size_t len, struct msb_err *err)
{
	return unavailable(err);
}

static int u_close_write(void *self, void *h, bool commit, struct msb_err *err)
{
	return unavailable(err);
}

static int u_open_read(void *self, const char *sandbox, const char *path, void **h, uint64_t *size,
		       struct msb_err *err)
{
	return unavailable(err);
}

static ssize_t u_read(void *self, void *h, void *buf, size_t len, struct msb_err *err)
{
	return unavailable(err);
}

static void u_close_read(void *self, void *h)
{
}

static void u_shutdown(void *self)
{
}

static const struct sandbox_backend unavailable_backend = {
	.name = "unavailable",
	.start = u_start,
	.stop = u_stop,
	.repl_run = u_repl,
	.command_run = u_command,
	.metrics = u_metrics,
	.list = u_list,
	.exec_start = u_exec_start,
	.exec_next = u_exec_next,
	.exec_stdin = u_exec_stdin,
	.exec_signal = u_exec_signal,
	.exec_wait = u_exec_wait,
	.exec_release = u_exec_release,
	.file_open_write = u_open_write,
	.file_write = u_write,
	.file_close_write = u_close_write,
	.file_open_read = u_open_read,
	.file_read = u_read,
	.file_close_read = u_close_read,
	.shutdown = u_shutdown,
};

const struct sandbox_backend *sb_backend_unavailable(void)
{
	return &unavailable_backend;
}
