/* A scripted sandbox backend for the server's unit tests ONLY: it checks
 * result shapes and error mapping of the dispatch code.  The msb binary never
 * links it (it is a header under tests/). */
#ifndef MSB_TEST_SERVER_MOCK_H
#define MSB_TEST_SERVER_MOCK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "server/backend.h"
#include "server/server.h"

struct mock {
	/* What the next call fails with (MSB_EK_NONE = succeed). */
	enum msb_err_kind fail;
	char last_name[64];
	char last_image[64];
	char last_lang[32];
	double last_timeout;
	int exit_code;
	bool oom_killed; /* command.run and exec.wait: the memory guard killed it */
	unsigned calls;
	/* exec: events handed out in order */
	struct sb_exec_event events[8];
	unsigned nevents, next_event;
	bool silent;
	unsigned wait_calls;
	volatile bool released;
	int last_signal;
	char stdin_buf[256];
	size_t stdin_len;
	/* files */
	char file[64];
	size_t file_len, file_pos;
	char written[64];
	size_t written_len;
	bool committed;
};

static int mock_fail(struct mock *m, struct msb_err *err)
{
	m->calls++;
	if (m->fail == MSB_EK_NONE)
		return 0;
	return msb_err_set(err, m->fail, 0, "mock failure (%s)", msb_err_kind_name(m->fail));
}

static int mk_start(void *self, const char *name, const struct sb_start_config *cfg, char **message,
		    struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	snprintf(m->last_name, sizeof(m->last_name), "%s", name);
	snprintf(m->last_image, sizeof(m->last_image), "%s", cfg->image ? cfg->image : "");
	if (asprintf(message, "Sandbox %s started successfully", name) < 0)
		return -1;
	return 0;
}

static int mk_stop(void *self, const char *name, char **message, struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	if (asprintf(message, "Sandbox %s stopped successfully", name) < 0)
		return -1;
	return 0;
}

static int mk_repl(void *self, const char *name, const char *language, const char *code,
		   double timeout_s, struct sb_repl_result *res, struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	snprintf(m->last_lang, sizeof(m->last_lang), "%s", language);
	m->last_timeout = timeout_s;
	res->status = strdup("success");
	sb_output_add(&res->output, SB_STDOUT, "2", 1, err);
	sb_output_add(&res->output, SB_STDERR, "warn", 4, err);
	return 0;
}

static int mk_command(void *self, const char *name, const char *command, const struct sb_strv *args,
		      double timeout_s, struct sb_command_result *res, struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	res->exit_code = m->exit_code;
	res->oom_killed = m->oom_killed;
	sb_output_add(&res->output, SB_STDOUT, command, strlen(command), err);
	return 0;
}

static int mk_metrics(void *self, const char *name, struct sb_metrics **rows, size_t *n,
		      struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	*rows = calloc(2, sizeof(**rows));
	(*rows)[0] = (struct sb_metrics){.name = strdup("a"),
					 .running = true,
					 .has_cpu = true,
					 .cpu_usage = 1.5,
					 .has_memory = true,
					 .memory_mib = 12,
					 .has_disk = true,
					 .disk_bytes = 4096};
	(*rows)[1] = (struct sb_metrics){.name = strdup("b")};
	*n = name ? 1 : 2;
	if (name)
		free((*rows)[1].name);
	return 0;
}

static int mk_list(void *self, struct sb_info **rows, size_t *n, struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	*rows = calloc(1, sizeof(**rows));
	(*rows)[0] = (struct sb_info){.name = strdup("a"),
				      .status = strdup("running"),
				      .image = strdup("python"),
				      .pid = 42};
	*n = 1;
	return 0;
}

static int mk_exec_start(void *self, const struct sb_exec_spec *spec, char id[SB_EXEC_ID_MAX],
			 struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	snprintf(id, SB_EXEC_ID_MAX, "e-%s", spec->command);
	return 0;
}

static int mk_exec_next(void *self, const char *id, int timeout_ms, struct sb_exec_event *ev,
			struct msb_err *err)
{
	struct mock *m = self;
	if (m->silent) {
		/* A process that prints nothing: wait as a real backend would. */
		usleep((useconds_t)timeout_ms * 1000);
		return 0;
	}
	if (m->next_event >= m->nevents)
		return msb_err_set(err, MSB_EK_STATE, 0, "exec %s has ended", id);
	*ev = m->events[m->next_event++];
	return 1;
}

static int mk_exec_stdin(void *self, const char *id, const void *data, size_t len, bool eof,
			 struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	if (len > sizeof(m->stdin_buf))
		len = sizeof(m->stdin_buf);
	memcpy(m->stdin_buf, data, len);
	m->stdin_len = len;
	return 0;
}

static int mk_exec_signal(void *self, const char *id, int sig, struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	m->last_signal = sig;
	return 0;
}

static int mk_exec_wait(void *self, const char *id, int timeout_ms, struct sb_exec_status *st,
			struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	if (m->silent) {
		usleep((useconds_t)timeout_ms * 1000);
		m->wait_calls++;
		return 0;
	}
	st->exited = true;
	st->exit_code = m->exit_code;
	st->oom_killed = m->oom_killed;
	return 0;
}

static void mk_exec_release(void *self, const char *id)
{
	((struct mock *)self)->released = true;
}

static int mk_open_write(void *self, const char *sandbox, const char *path, unsigned mode, void **h,
			 struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	m->written_len = 0;
	m->committed = false;
	*h = m;
	return 0;
}

static int mk_write(void *self, void *h, const void *buf, size_t len, struct msb_err *err)
{
	struct mock *m = self;
	if (m->written_len + len > sizeof(m->written))
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "mock file full");
	memcpy(m->written + m->written_len, buf, len);
	m->written_len += len;
	return 0;
}

static int mk_close_write(void *self, void *h, bool commit, struct msb_err *err)
{
	((struct mock *)self)->committed = commit;
	return 0;
}

static int mk_open_read(void *self, const char *sandbox, const char *path, void **h, uint64_t *size,
			struct msb_err *err)
{
	struct mock *m = self;
	if (mock_fail(m, err) < 0)
		return -1;
	m->file_pos = 0;
	*size = m->file_len;
	*h = m;
	return 0;
}

static ssize_t mk_read(void *self, void *h, void *buf, size_t len, struct msb_err *err)
{
	struct mock *m = self;
	size_t n = m->file_len - m->file_pos;
	if (n > len)
		n = len;
	memcpy(buf, m->file + m->file_pos, n);
	m->file_pos += n;
	return (ssize_t)n;
}

static void mk_close_read(void *self, void *h)
{
}

static void mk_shutdown(void *self)
{
}

static struct sandbox_backend mock_backend(struct mock *m)
{
	return (struct sandbox_backend){
		.name = "mock",
		.self = m,
		.start = mk_start,
		.stop = mk_stop,
		.repl_run = mk_repl,
		.command_run = mk_command,
		.metrics = mk_metrics,
		.list = mk_list,
		.exec_start = mk_exec_start,
		.exec_next = mk_exec_next,
		.exec_stdin = mk_exec_stdin,
		.exec_signal = mk_exec_signal,
		.exec_wait = mk_exec_wait,
		.exec_release = mk_exec_release,
		.file_open_write = mk_open_write,
		.file_write = mk_write,
		.file_close_write = mk_close_write,
		.file_open_read = mk_open_read,
		.file_read = mk_read,
		.file_close_read = mk_close_read,
		.shutdown = mk_shutdown,
	};
}

/* A POST with a JSON body through srv_handle; the reply is the caller's to release. */
static inline void post(struct msb_server *s, const char *path, const char *body,
			struct srv_reply *rp)
{
	struct srv_request rq = {.method = "POST",
				 .path = path,
				 .content_type = "application/json",
				 .body = body,
				 .body_len = strlen(body)};
	memset(rp, 0, sizeof(*rp));
	srv_handle(s, &rq, rp);
}

/* The reply body as a NUL-terminated string (static buffer). */
static inline const char *body_of(const struct srv_reply *rp)
{
	static char buf[8192];
	size_t n = rp->len < sizeof(buf) - 1 ? rp->len : sizeof(buf) - 1;
	if (rp->body)
		memcpy(buf, rp->body, n);
	buf[rp->body ? n : 0] = '\0';
	return buf;
}

static inline const char *reply_header_value(const struct srv_reply *rp, const char *name)
{
	for (unsigned i = 0; i < rp->nheaders; i++)
		if (strcasecmp(rp->headers[i].name, name) == 0)
			return rp->headers[i].value;
	return NULL;
}

#endif
