/* The server's backend on real VMs: a list of running sandboxes, each used by one
 * request at a time (an agent connection is single-threaded).  Entries are
 * reference-counted so that a stop can unlink one while a command still uses it:
 * the stop kills the VM first, the command fails promptly, the last user frees. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "project/project.h"
#include "sandbox/backend_vm.h"
#include "sandbox/sandbox.h"

struct vm_entry {
	char *name;
	struct sandbox *sb; /* NULL while starting and after a stop */
	pthread_mutex_t use;
	struct msb_strv env; /* image Env, then the sandbox's */
	char *workdir;
	unsigned refs; /* users besides the list */
	bool dead;     /* unlinked from the list */
	struct vm_entry *next;
};

struct vm_backend {
	struct sandbox_backend ops; /* first: the server's `self` is this struct */
	pthread_mutex_t lock;
	char *project_dir;
	struct vm_entry *list;
	bool down;
};

#define NOT_YET(what)                                               \
	msb_err_set(err, MSB_EK_SYSTEM, 0,                          \
		    "%s is not supported by this backend yet (see " \
		    "docs/sandbox.md)",                             \
		    what)

static struct vm_entry *find(struct vm_backend *b, const char *name)
{
	for (struct vm_entry *e = b->list; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void unlink_entry(struct vm_backend *b, struct vm_entry *e)
{
	for (struct vm_entry **p = &b->list; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			break;
		}
	e->dead = true;
}

static void destroy(struct vm_entry *e)
{
	sandbox_free(e->sb);
	pthread_mutex_destroy(&e->use);
	msb_strv_clear(&e->env);
	free(e->workdir);
	free(e->name);
	free(e);
}

/* Drop a reference taken under b->lock. */
static void put(struct vm_backend *b, struct vm_entry *e)
{
	pthread_mutex_lock(&b->lock);
	bool last = --e->refs == 0 && e->dead;
	pthread_mutex_unlock(&b->lock);
	if (last)
		destroy(e);
}

static char *result_msg(const char *name, const char *what)
{
	char *s = NULL;
	return asprintf(&s, "Sandbox %s %s successfully", name, what) < 0 ? NULL : s;
}

/* What to boot: config.image wins; else the sandbox of that name in the project. */
struct desc {
	char *image;
	unsigned cpus, memory_mib;
	struct msb_strv envs;
	char *workdir;
};

static void desc_clear(struct desc *d)
{
	free(d->image);
	free(d->workdir);
	msb_strv_clear(&d->envs);
}

static int desc_from_project(struct vm_backend *b, const char *name, struct desc *d,
			     struct msb_err *err)
{
	if (!b->project_dir)
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "sandbox '%s' is not configured; pass config.image", name);
	struct msb_project p = {0};
	struct msb_sandboxfile *sf = NULL;
	int r = -1;
	if (msb_project_resolve(b->project_dir, false, &p, err) < 0 ||
	    msb_project_load(&p, &sf, err) < 0)
		goto out;
	const struct msb_sandbox *s = msb_sandboxfile_find(sf, name);
	if (!s) {
		msb_err_set(err, MSB_EK_NOT_FOUND, 0,
			    "sandbox '%s' is not in %s; pass config.image to start it", name,
			    p.config_path);
		goto out;
	}
	if (s->image_is_path || s->nvolumes || s->nports) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "sandbox '%s': image directories, volumes and ports are not supported "
			    "yet",
			    name);
		goto out;
	}
	d->image = strdup(s->image);
	d->workdir = s->workdir ? strdup(s->workdir) : NULL;
	d->cpus = s->cpus;
	d->memory_mib = s->memory_mib;
	for (size_t i = 0; i < s->nenvs; i++) {
		_cleanup_free_ char *kv = NULL;
		if (asprintf(&kv, "%s=%s", s->envs[i].name, s->envs[i].value) < 0 ||
		    msb_strv_push(&d->envs, kv, err) < 0)
			goto out;
	}
	r = d->image ? 0 : msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
out:
	msb_sandboxfile_free(sf);
	msb_project_release(&p);
	return r;
}

static int desc_from_config(const struct sb_start_config *c, struct desc *d, struct msb_err *err)
{
	if (c->volumes.n || c->ports.n)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "volumes and ports are not supported yet; start without them");
	if (c->exec)
		return NOT_YET("config.exec");
	d->image = strdup(c->image);
	d->workdir = c->workdir ? strdup(c->workdir) : NULL;
	d->cpus = c->has_cpus ? c->cpus : 0;
	d->memory_mib = c->has_memory ? c->memory_mib : 0;
	for (size_t i = 0; i < c->envs.n; i++)
		if (msb_strv_push(&d->envs, c->envs.v[i], err) < 0)
			return -1;
	return d->image ? 0 : msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
}

static int vm_start(void *self, const char *name, const struct sb_start_config *cfg, char **message,
		    struct msb_err *err)
{
	struct vm_backend *b = self;
	pthread_mutex_lock(&b->lock);
	if (b->down) {
		pthread_mutex_unlock(&b->lock);
		return msb_err_set(err, MSB_EK_STATE, 0, "the server is stopping");
	}
	if (find(b, name)) { /* idempotent, as upstream should have been */
		pthread_mutex_unlock(&b->lock);
		*message = result_msg(name, "started");
		return 0;
	}
	struct vm_entry *e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name))) {
		pthread_mutex_unlock(&b->lock);
		free(e);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&e->use, NULL);
	e->refs = 1; /* this start */
	e->next = b->list;
	b->list = e;
	pthread_mutex_unlock(&b->lock);

	struct desc d = {0};
	struct sandbox *sb = NULL;
	int r = cfg && cfg->image ? desc_from_config(cfg, &d, err)
				  : desc_from_project(b, name, &d, err);
	if (r == 0) {
		struct sandbox_spec spec = {.name = name,
					    .image = d.image,
					    .cpus = d.cpus,
					    .memory_mib = d.memory_mib,
					    .console_fd = -1};
		r = sandbox_start(&spec, &sb, err);
	}
	if (r == 0 && sandbox_merge_env((const char *const *)sb->img->config.env,
					(const char *const *)d.envs.v, &e->env, err) < 0)
		r = -1;
	if (r == 0) {
		const char *wd = d.workdir ? d.workdir : sb->img->config.working_dir;
		if (wd && !(e->workdir = strdup(wd)))
			r = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		struct msb_err ignored = {0};
		if (r == 0 && sandbox_ensure_dir(sb, wd, &ignored) < 0)
			msb_debug("%s", ignored.msg); /* commands will report the directory */
	}
	desc_clear(&d);
	pthread_mutex_lock(&b->lock);
	if (r == 0 && e->dead) /* stopped or shut down while booting */
		r = msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' was stopped while starting",
				name);
	if (r < 0) {
		if (!e->dead)
			unlink_entry(b, e);
	} else {
		e->sb = sb;
		sb = NULL;
	}
	pthread_mutex_unlock(&b->lock);
	sandbox_free(sb);
	put(b, e);
	if (r < 0)
		return -1;
	*message = result_msg(name, "started");
	return 0;
}

/* Take a reference on a running sandbox's entry. */
static struct vm_entry *get_running(struct vm_backend *b, const char *name, struct msb_err *err)
{
	pthread_mutex_lock(&b->lock);
	struct vm_entry *e = find(b, name);
	if (!e) {
		pthread_mutex_unlock(&b->lock);
		msb_err_set(err, MSB_EK_NOT_FOUND, 0, "sandbox '%s' is not running; start it first",
			    name);
		return NULL;
	}
	if (!e->sb) {
		pthread_mutex_unlock(&b->lock);
		msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' is still starting", name);
		return NULL;
	}
	e->refs++;
	pthread_mutex_unlock(&b->lock);
	return e;
}

static void kill_and_free(struct vm_entry *e)
{
	if (e->sb)
		sandbox_kill_from_signal(e->sb); /* a command in flight fails now */
	pthread_mutex_lock(&e->use);
	struct msb_err ignored = {0};
	if (e->sb)
		sandbox_stop(e->sb, SANDBOX_STOP_KILL, 0, &ignored);
	sandbox_free(e->sb);
	e->sb = NULL;
	pthread_mutex_unlock(&e->use);
}

static int vm_stop(void *self, const char *name, char **message, struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_entry *e = get_running(b, name, err);
	if (!e)
		return -1;
	pthread_mutex_lock(&b->lock);
	if (!e->dead)
		unlink_entry(b, e);
	pthread_mutex_unlock(&b->lock);
	kill_and_free(e);
	put(b, e);
	*message = result_msg(name, "stopped");
	return 0;
}

/* Output split into upstream's lines, per stream. */
struct lines {
	struct sb_output *out;
	char *part[2];
	size_t len[2];
	bool failed;
};

static void add_line(struct lines *l, int s, const char *p, size_t n)
{
	struct msb_err err = {0};
	if (!l->failed && sb_output_add(l->out, s ? SB_STDERR : SB_STDOUT, p, n, &err) < 0)
		l->failed = true;
}

static void on_output(void *ctx, int stream, const void *data, size_t len)
{
	struct lines *l = ctx;
	int s = stream == 2;
	const char *p = data;
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t take = nl ? (size_t)(nl - p) : len;
		char *np = realloc(l->part[s], l->len[s] + take + 1);
		if (!np) {
			l->failed = true;
			return;
		}
		l->part[s] = np;
		memcpy(np + l->len[s], p, take);
		l->len[s] += take;
		if (!nl)
			return;
		add_line(l, s, l->part[s], l->len[s]);
		l->len[s] = 0;
		p += take + 1;
		len -= take + 1;
	}
}

static int vm_command_run(void *self, const char *name, const char *command,
			  const struct sb_strv *args, double timeout_s,
			  struct sb_command_result *res, struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_entry *e = get_running(b, name, err);
	if (!e)
		return -1;
	const char **argv = calloc(args->n + 2, sizeof(*argv));
	if (!argv) {
		put(b, e);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	argv[0] = command;
	for (size_t i = 0; i < args->n; i++)
		argv[i + 1] = args->v[i];
	struct lines l = {.out = &res->output};
	struct agent_exec_opts o = {
		.argv = argv,
		.env = (const char *const *)e->env.v,
		.cwd = e->workdir,
		.timeout_ms = timeout_s > 0 ? (uint64_t)(timeout_s * 1000) : 0,
		.stdin_fd = -1,
		.stdout_fd = -1,
		.stderr_fd = -1,
		.on_output = on_output,
		.ctx = &l,
	};
	struct agent_exec_status st = {0};
	pthread_mutex_lock(&e->use);
	int r = e->sb ? sandbox_exec(e->sb, &o, &st, err)
		      : msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' was stopped", name);
	pthread_mutex_unlock(&e->use);
	put(b, e);
	free(argv);
	for (int s = 0; s < 2; s++) {
		if (r == 0 && l.len[s])
			add_line(&l, s, l.part[s], l.len[s]);
		free(l.part[s]);
	}
	if (r < 0)
		return -1;
	if (l.failed)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory for output");
	if (st.timed_out)
		return msb_err_set(err, MSB_EK_TIMEOUT, 0, "'%s' did not finish within %g s",
				   command, timeout_s);
	res->exit_code = agent_exec_status_code(&st);
	return 0;
}

static int vm_list(void *self, struct sb_info **rows, size_t *n, struct msb_err *err)
{
	struct vm_backend *b = self;
	pthread_mutex_lock(&b->lock);
	size_t cnt = 0;
	for (struct vm_entry *e = b->list; e; e = e->next)
		cnt++;
	struct sb_info *v = calloc(cnt ? cnt : 1, sizeof(*v));
	size_t i = 0;
	for (struct vm_entry *e = b->list; v && e; e = e->next, i++) {
		v[i].name = strdup(e->name);
		v[i].status = strdup(e->sb ? "running" : "starting");
		v[i].image = e->sb && e->sb->img ? strdup(e->sb->img->reference) : NULL;
		v[i].pid = e->sb ? e->sb->vmm_pid : 0;
	}
	pthread_mutex_unlock(&b->lock);
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	*rows = v;
	*n = cnt;
	return 0;
}

static int vm_metrics(void *self, const char *name, struct sb_metrics **rows, size_t *n,
		      struct msb_err *err)
{
	struct vm_backend *b = self;
	pthread_mutex_lock(&b->lock);
	size_t cnt = 0;
	for (struct vm_entry *e = b->list; e; e = e->next)
		cnt += !name || strcmp(name, e->name) == 0;
	bool absent = name && cnt == 0;
	struct sb_metrics *v = calloc(cnt + absent + 1, sizeof(*v));
	size_t i = 0;
	for (struct vm_entry *e = b->list; v && e; e = e->next)
		if (!name || strcmp(name, e->name) == 0) {
			v[i].name = strdup(e->name);
			v[i++].running = e->sb != NULL;
		}
	pthread_mutex_unlock(&b->lock);
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	if (absent)
		v[i++].name = strdup(name); /* not running; figures null */
	*rows = v;
	*n = i;
	return 0;
}

static int vm_repl_run(void *self, const char *name, const char *language, const char *code,
		       double timeout_s, struct sb_repl_result *res, struct msb_err *err)
{
	return NOT_YET("sandbox.repl.run");
}

static int vm_exec_start(void *self, const struct sb_exec_spec *spec, char id[SB_EXEC_ID_MAX],
			 struct msb_err *err)
{
	return NOT_YET("streaming exec");
}

static int vm_exec_next(void *self, const char *id, int timeout_ms, struct sb_exec_event *ev,
			struct msb_err *err)
{
	return NOT_YET("streaming exec");
}

static int vm_exec_stdin(void *self, const char *id, const void *data, size_t len, bool eof,
			 struct msb_err *err)
{
	return NOT_YET("streaming exec");
}

static int vm_exec_signal(void *self, const char *id, int sig, struct msb_err *err)
{
	return NOT_YET("streaming exec");
}

static int vm_exec_wait(void *self, const char *id, int timeout_ms, struct sb_exec_status *st,
			struct msb_err *err)
{
	return NOT_YET("streaming exec");
}

static void vm_exec_release(void *self, const char *id)
{
}

static int vm_file_open_write(void *self, const char *sandbox, const char *path, unsigned mode,
			      void **h, struct msb_err *err)
{
	return NOT_YET("file transfer");
}

static int vm_file_write(void *self, void *h, const void *buf, size_t len, struct msb_err *err)
{
	return NOT_YET("file transfer");
}

static int vm_file_close_write(void *self, void *h, bool commit, struct msb_err *err)
{
	return NOT_YET("file transfer");
}

static int vm_file_open_read(void *self, const char *sandbox, const char *path, void **h,
			     uint64_t *size, struct msb_err *err)
{
	return NOT_YET("file transfer");
}

static ssize_t vm_file_read(void *self, void *h, void *buf, size_t len, struct msb_err *err)
{
	return NOT_YET("file transfer");
}

static void vm_file_close_read(void *self, void *h)
{
}

static void vm_shutdown(void *self)
{
	struct vm_backend *b = self;
	for (;;) {
		pthread_mutex_lock(&b->lock);
		b->down = true;
		struct vm_entry *e = b->list;
		if (e) {
			unlink_entry(b, e);
			e->refs++;
		}
		pthread_mutex_unlock(&b->lock);
		if (!e)
			return;
		kill_and_free(e);
		put(b, e);
	}
}

struct sandbox_backend *sandbox_backend_vm_new(const char *project_dir, struct msb_err *err)
{
	struct vm_backend *b = calloc(1, sizeof(*b));
	if (!b || (project_dir && !(b->project_dir = strdup(project_dir)))) {
		free(b);
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	b->ops = (struct sandbox_backend){
		.name = "vm",
		.self = b,
		.start = vm_start,
		.stop = vm_stop,
		.repl_run = vm_repl_run,
		.command_run = vm_command_run,
		.metrics = vm_metrics,
		.list = vm_list,
		.exec_start = vm_exec_start,
		.exec_next = vm_exec_next,
		.exec_stdin = vm_exec_stdin,
		.exec_signal = vm_exec_signal,
		.exec_wait = vm_exec_wait,
		.exec_release = vm_exec_release,
		.file_open_write = vm_file_open_write,
		.file_write = vm_file_write,
		.file_close_write = vm_file_close_write,
		.file_open_read = vm_file_open_read,
		.file_read = vm_file_read,
		.file_close_read = vm_file_close_read,
		.shutdown = vm_shutdown,
	};
	return &b->ops;
}

void sandbox_backend_vm_free(struct sandbox_backend *ops)
{
	if (!ops)
		return;
	struct vm_backend *b = (struct vm_backend *)ops;
	vm_shutdown(b);
	pthread_mutex_destroy(&b->lock);
	free(b->project_dir);
	free(b);
}
