/* The server's backend on real VMs: a list of running sandboxes.  An agent
 * connection is single-threaded, so a sandbox's requests run on connections of
 * their own: command.run on a pool (CMD_CONNS_MAX at once), REPL runs on one
 * connection (ordered, as the interpreter is one), metrics on another.  Entries
 * are reference-counted so that a stop can unlink one while a command still uses
 * it: the stop kills the VM first, the command fails promptly, the last user
 * frees. */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "agent/proto.h"
#include "project/menv.h"
#include "project/project.h"
#include "sandbox/backend_vm_int.h"
#include "sandbox/net.h"
#include "sandbox/vm_int.h"
#include "sandbox/volumes.h"

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
	for (int i = 0; i < 2; i++) {
		agent_client_free(e->repl[i]);
		pthread_mutex_destroy(&e->repl_use[i]);
	}
	agent_client_free(e->metrics);
	for (unsigned i = 0; i < e->nidle; i++)
		agent_client_free(e->idle[i]);
	sandbox_free(e->sb);
	pthread_mutex_destroy(&e->use);
	pthread_mutex_destroy(&e->pool_mu);
	pthread_cond_destroy(&e->pool_cv);
	pthread_mutex_destroy(&e->metrics_use);
	free(e->vsock);
	msb_strv_clear(&e->env);
	free(e->workdir);
	free(e->exec);
	msb_rotlog_close(e->log);
	pthread_mutex_destroy(&e->log_mu);
	free(e->name);
	free(e);
}

/* The sandbox's log in the server's project, where `msb server log NAME`
 * reads it (upstream's layout): lifecycle lines and config.exec's output.
 * None without a project directory. */
static void log_open(struct vm_backend *b, struct vm_entry *e)
{
	if (!b->project_dir)
		return;
	_cleanup_free_ char *path = NULL;
	struct msb_err err = {0};
	if (asprintf(&path, "%s/.menv/log/Sandboxfile/%s.log", b->project_dir, e->name) < 0)
		return;
	struct msb_rotlog *log = NULL;
	if (msb_rotlog_open(path, MSB_LOG_MAX_BYTES, &log, &err) < 0)
		msb_warn("sandbox %s: no log: %s", e->name, err.msg);
	pthread_mutex_lock(&e->log_mu);
	e->log = log;
	pthread_mutex_unlock(&e->log_mu);
}

static void log_write(struct vm_entry *e, const void *data, size_t len)
{
	struct msb_err err = {0};
	pthread_mutex_lock(&e->log_mu);
	if (e->log && msb_rotlog_write(e->log, data, len, &err) < 0) {
		msb_warn("sandbox %s: writing its log: %s (no more log lines)", e->name, err.msg);
		msb_rotlog_close(e->log);
		e->log = NULL;
	}
	pthread_mutex_unlock(&e->log_mu);
}

/* One line "<UTC time> msb: <text>". */
__attribute__((format(printf, 2, 3))) static void log_line(struct vm_entry *e, const char *fmt, ...)
{
	char line[1200];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ msb: ", &tm);
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	n = k < 0 ? n : (n + (size_t)k < sizeof(line) - 1 ? n + (size_t)k : sizeof(line) - 2);
	line[n++] = '\n';
	log_write(e, line, n);
}

void vm_ref(struct vm_backend *b, struct vm_entry *e)
{
	pthread_mutex_lock(&b->lock);
	e->refs++;
	pthread_mutex_unlock(&b->lock);
}

void vm_put(struct vm_backend *b, struct vm_entry *e)
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
	char *exec;			/* config.exec or NULL */
	struct sandbox_net net;		/* ports (config.ports or the Sandboxfile's) and scope */
	struct sandbox_volumes volumes; /* config.volumes or the Sandboxfile's */
};

static void desc_clear(struct desc *d)
{
	free(d->image);
	free(d->workdir);
	free(d->exec);
	msb_strv_clear(&d->envs);
	sandbox_net_clear(&d->net);
	sandbox_volumes_clear(&d->volumes);
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
	    msb_project_load(&p, &sf, err) < 0) {
		if (err->kind == MSB_EK_NOT_FOUND) /* no Sandboxfile: upstream's words */
			msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				    "No configuration provided and no existing configuration found "
				    "for sandbox '%s': pass config.image to start it",
				    name);
		goto out;
	}
	const struct msb_sandbox *s = msb_sandboxfile_find(sf, name);
	if (!s) {
		msb_err_set(err, MSB_EK_NOT_FOUND, 0,
			    "Sandbox '%s' not found in existing configuration (%s); pass "
			    "config.image to start it",
			    name, p.config_path);
		goto out;
	}
	if (s->image_is_path) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "sandbox '%s': image directories are not supported yet", name);
		goto out;
	}
	if (sandbox_volumes_from_pairs(&d->volumes, s->volumes, s->nvolumes, err) < 0) {
		msb_err_wrap(err, "sandbox '%s'", name);
		goto out;
	}
	if (sandbox_net_from_sandboxfile(s, &d->net, err) < 0 ||
	    sandbox_net_add_group(&d->net, sf, err) < 0) {
		msb_err_wrap(err, "sandbox '%s'", name);
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

/* base: the project directory relative volume hosts are joined to (NULL: the
 * server's working directory). */
static int desc_from_config(const struct sb_start_config *c, const char *base, struct desc *d,
			    struct msb_err *err)
{
	for (size_t i = 0; i < c->volumes.n; i++)
		if (sandbox_volumes_add(&d->volumes, c->volumes.v[i], base, err) < 0)
			return msb_err_wrap(err, "config.volumes");
	/* Ports as upstream's "HOST:GUEST" strings (also [IP:]H:G[/udp]); the
	 * scope is the default (public). */
	d->net.scope = MSB_SCOPE_DEFAULT;
	for (size_t i = 0; i < c->ports.n; i++) {
		struct sandbox_port p;
		if (sandbox_port_parse(c->ports.v[i], &p, err) < 0)
			return msb_err_wrap(err, "config.ports");
		if (sandbox_net_add_port(&d->net, &p, err) < 0)
			return -1;
	}
	if (c->exec && !(d->exec = strdup(c->exec)))
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	d->image = strdup(c->image);
	d->workdir = c->workdir ? strdup(c->workdir) : NULL;
	d->cpus = c->has_cpus ? c->cpus : 0;
	d->memory_mib = c->has_memory ? c->memory_mib : 0;
	for (size_t i = 0; i < c->envs.n; i++)
		if (msb_strv_push(&d->envs, c->envs.v[i], err) < 0)
			return -1;
	return d->image ? 0 : msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
}

/* The owner thread's argument: the description is its own (copied). */
struct boot {
	struct vm_backend *b;
	struct vm_entry *e;
	struct desc d;
};

static void on_spawn(void *ctx, pid_t pid)
{
	struct boot *bt = ctx;
	pthread_mutex_lock(&bt->b->lock);
	bt->e->boot_pid = pid;
	pthread_mutex_unlock(&bt->b->lock);
}

static int boot_vm(struct boot *bt, struct sandbox **out, struct msb_err *err)
{
	struct vm_entry *e = bt->e;
	struct desc *d = &bt->d;
	struct sandbox_spec spec = {.name = e->name,
				    .image = d->image,
				    .cpus = d->cpus,
				    .memory_mib = d->memory_mib,
				    .console_fd = -1,
				    .on_spawn = on_spawn,
				    .ctx = bt,
				    .net = &d->net,
				    .volumes = &d->volumes};
	struct sandbox *sb = NULL;
	if (sandbox_start(&spec, &sb, err) < 0)
		return -1;
	int r = sandbox_merge_env((const char *const *)sb->img->config.env,
				  (const char *const *)d->envs.v, &e->env, err);
	const char *wd = d->workdir ? d->workdir : sb->img->config.working_dir;
	if (r == 0 && !(e->vsock = strdup(sb->vsock_path)))
		r = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	if (r == 0 && wd && !(e->workdir = strdup(wd)))
		r = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	struct msb_err ignored = {0};
	if (r == 0 && sandbox_ensure_dir(sb, wd, &ignored) < 0)
		msb_debug("%s", ignored.msg); /* commands will report the directory */
	if (r < 0) {
		sandbox_free(sb);
		return -1;
	}
	*out = sb;
	return 0;
}

static void on_exec_output(void *ctx, int stream, const void *data, size_t len)
{
	log_write(ctx, data, len);
}

/* config.exec: the sandbox's main process, run through its own agent connection
 * with its output in the sandbox's log (without a project: <run dir>/exec.log),
 * until it exits or the sandbox stops. */
static void run_exec(struct vm_backend *b, struct vm_entry *e)
{
	struct msb_err err = {0};
	_cleanup_free_ char *log = NULL;
	_cleanup_close_ int fd = -1;
	pthread_mutex_lock(&e->log_mu);
	bool logged = e->log != NULL;
	pthread_mutex_unlock(&e->log_mu);
	if (!logged) {
		if (asprintf(&log, "%s/exec.log", e->sb->run_dir) < 0)
			return;
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			msb_warn("sandbox %s: config.exec not started: %s: %s", e->name, log,
				 strerror(errno));
			return;
		}
	}
	if (vm_conn_reserve(e, "config.exec", &err) < 0) {
		msb_warn("sandbox %s: config.exec not started: %s", e->name, err.msg);
		log_line(e, "config.exec not started: %s", err.msg);
		return;
	}
	struct agent_client *c = agent_client_open(e->sb->vsock_path, 60000, &err);
	if (!c) {
		msb_warn("sandbox %s: config.exec not started: %s", e->name, err.msg);
		log_line(e, "config.exec not started: %s", err.msg);
		vm_conn_release(e);
		return;
	}
	const char *argv[] = {"/bin/sh", "-c", e->exec, NULL};
	struct agent_exec_opts o = {.argv = argv,
				    .env = (const char *const *)e->env.v,
				    .cwd = e->workdir,
				    .stdin_fd = -1,
				    .stdout_fd = fd,
				    .stderr_fd = fd,
				    .on_output = logged ? on_exec_output : NULL,
				    .ctx = e};
	log_line(e, "config.exec: %s", e->exec);
	struct agent_exec *x = agent_exec_start(c, &o, &err);
	bool stop = false;
	while (x && !stop && !agent_exec_done(x)) {
		if (agent_client_pump(c, 200, &err) < 0)
			break;
		pthread_mutex_lock(&b->lock);
		stop = e->release;
		pthread_mutex_unlock(&b->lock);
	}
	struct agent_exec_status st = {0};
	if (x && !stop && agent_exec_done(x) && agent_exec_wait(c, x, &st, &err) == 0) {
		msb_info("sandbox %s: config.exec exited with %d", e->name,
			 agent_exec_status_code(&st));
		log_line(e, "config.exec exited with %d", agent_exec_status_code(&st));
	} else if (!stop) {
		msb_warn("sandbox %s: config.exec: %s", e->name, err.msg);
		log_line(e, "config.exec failed: %s", err.msg);
	}
	agent_client_free(c);
	vm_conn_release(e);
}

static void *owner_main(void *arg)
{
	struct boot *bt = arg;
	struct vm_backend *b = bt->b;
	struct vm_entry *e = bt->e;
	struct sandbox *sb = NULL;
	struct msb_err err = {0};
	log_open(b, e);
	log_line(e, "starting sandbox %s (image %s)", e->name, bt->d.image);
	int r = boot_vm(bt, &sb, &err);
	desc_clear(&bt->d);
	free(bt);
	if (r == 0)
		log_line(e, "sandbox %s started (msb-vmm pid %d)", e->name, (int)sb->vmm_pid);
	else
		log_line(e, "sandbox %s did not start: %s", e->name, err.msg);
	pthread_mutex_lock(&b->lock);
	if (r == 0 && e->dead) /* stopped or shut down while booting */
		r = msb_err_set(&err, MSB_EK_STATE, 0, "sandbox '%s' was stopped while starting",
				e->name);
	if (r < 0) {
		if (!e->dead)
			unlink_entry(b, e);
	} else {
		e->sb = sb;
		sb = NULL;
	}
	e->booted = true;
	e->boot_rc = r;
	e->boot_err = err;
	pthread_cond_broadcast(&b->cv);
	bool exec = r == 0 && e->exec;
	pthread_mutex_unlock(&b->lock);
	sandbox_free(sb);
	if (exec)
		run_exec(b, e);
	/* msb-vmm must not outlive this thread's wait: stay until the stop. */
	pthread_mutex_lock(&b->lock);
	while (r == 0 && !e->release)
		pthread_cond_wait(&b->cv, &b->lock);
	pthread_mutex_unlock(&b->lock);
	vm_put(b, e);
	pthread_mutex_lock(&b->lock);
	b->owners--;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

static int vm_start(void *self, const char *name, const struct sb_start_config *cfg, char **message,
		    struct msb_err *err)
{
	struct vm_backend *b = self;
	struct boot *bt = calloc(1, sizeof(*bt));
	if (!bt)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	/* A running (or booting) sandbox answers at once, whatever the config;
	 * else the description is built before anything is registered, so a bad
	 * config fails cleanly.  Checked again after building it (a race). */
	bool have_desc = false;
	int r = 0;
	struct vm_entry *e;
	for (;;) {
		pthread_mutex_lock(&b->lock);
		e = b->down ? NULL : find(b, name);
		if (b->down || e)
			break;
		if (have_desc)
			break; /* b->lock held: register it */
		pthread_mutex_unlock(&b->lock);
		r = cfg && cfg->image ? desc_from_config(cfg, b->project_dir, &bt->d, err)
				      : desc_from_project(b, name, &bt->d, err);
		if (r < 0) {
			desc_clear(&bt->d);
			free(bt);
			return -1;
		}
		have_desc = true;
	}
	if (b->down || e) {
		/* idempotent, as upstream should have been: wait for a boot in progress */
		if (e)
			e->refs++;
		while (e && !e->booted)
			pthread_cond_wait(&b->cv, &b->lock);
		r = b->down	     ? msb_err_set(err, MSB_EK_STATE, 0, "the server is stopping")
		    : e->boot_rc < 0 ? (*err = e->boot_err, -1)
				     : 0;
		pthread_mutex_unlock(&b->lock);
		if (e)
			vm_put(b, e);
		desc_clear(&bt->d);
		free(bt);
		if (r < 0)
			return -1;
		*message = result_msg(name, "started");
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name)) || (bt->d.exec && !(e->exec = strdup(bt->d.exec)))) {
		pthread_mutex_unlock(&b->lock);
		if (e)
			free(e->name);
		free(e);
		desc_clear(&bt->d);
		free(bt);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&e->use, NULL);
	pthread_mutex_init(&e->pool_mu, NULL);
	pthread_cond_init(&e->pool_cv, NULL);
	pthread_mutex_init(&e->repl_use[0], NULL);
	pthread_mutex_init(&e->repl_use[1], NULL);
	pthread_mutex_init(&e->metrics_use, NULL);
	pthread_mutex_init(&e->log_mu, NULL);
	e->refs = 2; /* this start and the owner thread */
	e->next = b->list;
	b->list = e;
	bt->b = b;
	bt->e = e;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int pe = pthread_create(&t, &attr, owner_main, bt);
	pthread_attr_destroy(&attr);
	if (pe != 0) {
		unlink_entry(b, e);
		e->refs = 1;
		pthread_mutex_unlock(&b->lock);
		desc_clear(&bt->d);
		free(bt);
		vm_put(b, e);
		return msb_err_set(err, MSB_EK_SYSTEM, pe, "starting a thread for the sandbox");
	}
	b->owners++;
	while (!e->booted)
		pthread_cond_wait(&b->cv, &b->lock);
	r = e->boot_rc;
	if (r < 0)
		*err = e->boot_err;
	pthread_mutex_unlock(&b->lock);
	vm_put(b, e);
	if (r < 0)
		return -1;
	*message = result_msg(name, "started");
	return 0;
}

struct vm_entry *vm_get_running(struct vm_backend *b, const char *name, struct msb_err *err)
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

/* A connection of the entry's own (repl or metrics) that failed is not used
 * again: the next call opens another. */
static void side_drop(struct vm_entry *e, struct agent_client **slot)
{
	if (!*slot)
		return;
	agent_client_free(*slot);
	*slot = NULL;
	vm_conn_release(e);
}

/* Stop the VM, then let its owner thread go. */
static void kill_and_free(struct vm_backend *b, struct vm_entry *e)
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
	pthread_mutex_lock(&e->pool_mu);
	e->closed = true;
	while (e->nidle > 0) {
		agent_client_free(e->idle[--e->nidle]);
		e->conns--;
	}
	pthread_cond_broadcast(&e->pool_cv);
	pthread_mutex_unlock(&e->pool_mu);
	for (int i = 0; i < 2; i++) {
		pthread_mutex_lock(&e->repl_use[i]);
		side_drop(e, &e->repl[i]);
		pthread_mutex_unlock(&e->repl_use[i]);
	}
	pthread_mutex_lock(&e->metrics_use);
	side_drop(e, &e->metrics);
	pthread_mutex_unlock(&e->metrics_use);
	log_line(e, "sandbox %s stopped", e->name);
	pthread_mutex_lock(&b->lock);
	e->release = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->lock);
}

static int vm_stop(void *self, const char *name, char **message, struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_entry *e = vm_get_running(b, name, err);
	if (!e)
		return -1;
	pthread_mutex_lock(&b->lock);
	if (!e->dead)
		unlink_entry(b, e);
	pthread_mutex_unlock(&b->lock);
	kill_and_free(b, e);
	vm_put(b, e);
	vm_io_release_sandbox(b, name);
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

/* agent_exec() that kills the command when the HTTP client has gone away
 * (nobody would read its output; the request's thread is free again), and
 * gives up at host_deadline (monotonic ms, 0 = none): the guest enforces
 * the timeout, so a guest that no longer answers would hang the thread. */
static int run_watched(struct agent_client *c, const struct agent_exec_opts *o,
		       uint64_t host_deadline, struct agent_exec_status *st, bool *gone,
		       bool *broken, struct msb_err *err)
{
	struct agent_exec *x = agent_exec_start(c, o, err);
	if (!x) {
		*broken = true;
		return -1;
	}
	while (!agent_exec_done(x)) {
		struct msb_err perr = {0};
		if (agent_client_pump(c, 250, &perr) < 0)
			break; /* agent_exec_wait() reports it */
		if (!*gone && sb_client_gone()) {
			*gone = true;
			struct msb_err ignored = {0};
			agent_exec_signal(c, x, SIGKILL, &ignored);
		}
		if (host_deadline && sandbox_now_ms() > host_deadline) {
			*broken = true; /* the exec stays with the connection, freed with it */
			return msb_err_set(err, MSB_EK_TIMEOUT, 0,
					   "the sandbox did not report the end of '%s' within %d s "
					   "of its timeout; the guest is not answering",
					   o->argv[0], HOST_GRACE_MS / 1000);
		}
	}
	int r = agent_exec_wait(c, x, st, err);
	if (r < 0)
		*broken = true;
	return r;
}

/* run_watched() on a connection of the pool, with a guard. */
static int run_pooled(struct vm_backend *b, struct vm_entry *e, const struct agent_exec_opts *o,
		      struct vm_guard *g, struct agent_exec_status *st, bool *gone,
		      struct msb_err *err)
{
	uint64_t deadline = o->timeout_ms ? sandbox_now_ms() + o->timeout_ms + HOST_GRACE_MS : 0;
	struct agent_client *c = vm_conn_take(b, e, err);
	if (!c)
		return -1;
	bool broken = false;
	int r = -1;
	if (vm_guard_start(g, b, e, agent_client_fd(c), 0, false, err) == 0) {
		r = run_watched(c, o, deadline, st, gone, &broken, err);
		int why = vm_guard_stop(g); /* on a hung guest without a timeout */
		if (why != GUARD_NONE)
			broken = true;
		if (why != GUARD_NONE && r < 0) {
			char what[80];
			snprintf(what, sizeof(what), "'%.60s'", o->argv[0]);
			r = vm_guard_err(g, why, what, err);
		}
	}
	vm_conn_give(e, c, !broken);
	return r;
}

/* Output of a watched call: lines, and a sign of life for its guard. */
struct call_out {
	struct lines l;
	struct vm_guard *g;
};

static void on_call_output(void *ctx, int stream, const void *data, size_t len)
{
	struct call_out *co = ctx;
	atomic_store(&co->g->last_ms, sandbox_now_ms());
	on_output(&co->l, stream, data, len);
}

static int vm_command_run(void *self, const char *name, const char *command,
			  const struct sb_strv *args, double timeout_s,
			  struct sb_command_result *res, struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_entry *e = vm_get_running(b, name, err);
	if (!e)
		return -1;
	const char **argv = calloc(args->n + 2, sizeof(*argv));
	if (!argv) {
		vm_put(b, e);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	argv[0] = command;
	for (size_t i = 0; i < args->n; i++)
		argv[i + 1] = args->v[i];
	struct vm_guard g;
	struct call_out co = {.l = {.out = &res->output}, .g = &g};
	struct lines l = {0};
	struct agent_exec_opts o = {
		.argv = argv,
		.env = (const char *const *)e->env.v,
		.cwd = e->workdir,
		.timeout_ms = timeout_s > 0 ? (uint64_t)(timeout_s * 1000) : 0,
		.stdin_fd = -1,
		.stdout_fd = -1,
		.stderr_fd = -1,
		.on_output = on_call_output,
		.ctx = &co,
	};
	struct agent_exec_status st = {0};
	bool gone = false;
	int r = run_pooled(b, e, &o, &g, &st, &gone, err);
	l = co.l;
	if (r == 0 && gone)
		r = msb_err_set(err, MSB_EK_STATE, 0, "the client went away; '%s' was killed",
				command);
	vm_put(b, e);
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
		return msb_err_set(err, MSB_EK_TIMEOUT, 0,
				   "'%s' timed out: it did not finish within %g s", command,
				   timeout_s);
	res->exit_code = agent_exec_status_code(&st);
	res->oom_killed = st.oom_killed;
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

/* utime + stime of a process in clock ticks, and its resident memory in KiB. */
static int proc_usage(pid_t pid, uint64_t *ticks, uint64_t *rss_kib)
{
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
	unsigned long long ut = 0, st = 0;
	long long rss = 0;
	/* after ")": state(3) ... utime(14) stime(15) ... rss(24) */
	if (!p || sscanf(p + 2,
			 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
			 "%*d %*d %*u %*u %lld",
			 &ut, &st, &rss) != 3)
		return -1;
	*ticks = ut + st;
	*rss_kib = (uint64_t)(rss > 0 ? rss : 0) * (uint64_t)(sysconf(_SC_PAGESIZE) / 1024);
	return 0;
}

/* The guest's own figures (agent METRICS: CPU over CPU_WINDOW_MS in percent of
 * one vCPU, memory in use, bytes used on "/"); when the agent cannot answer,
 * the host's view of the VM: CPU time of its msb-vmm process (vCPUs and
 * devices) over the same window, and its resident memory (disk then null). */
#define CPU_WINDOW_MS	   200
#define METRICS_TIMEOUT_MS 10000

static bool guest_metrics(struct vm_backend *b, struct vm_entry *e, struct sb_metrics *m);

static void host_metrics(pid_t pid, struct sb_metrics *m)
{
	uint64_t t0, t1, rss;
	if (pid <= 0 || proc_usage(pid, &t0, &rss) < 0)
		return;
	struct timespec ts = {0, CPU_WINDOW_MS * 1000000L};
	nanosleep(&ts, NULL);
	if (proc_usage(pid, &t1, &rss) < 0)
		return;
	long hz = sysconf(_SC_CLK_TCK);
	m->has_cpu = m->has_memory = true;
	m->cpu_usage = (double)(t1 - t0) * 100.0 * 1000.0 / (double)hz / (double)CPU_WINDOW_MS;
	m->memory_mib = rss / 1024;
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
	struct vm_entry **ents = calloc(cnt + 1, sizeof(*ents));
	size_t i = 0;
	for (struct vm_entry *e = b->list; v && ents && e; e = e->next)
		if (!name || strcmp(name, e->name) == 0) {
			e->refs++;
			ents[i] = e;
			v[i].name = strdup(e->name);
			v[i++].running = e->sb != NULL;
		}
	pthread_mutex_unlock(&b->lock);
	for (size_t k = 0; k < i; k++) {
		if (v[k].running && !guest_metrics(b, ents[k], &v[k])) {
			pthread_mutex_lock(&ents[k]->use);
			pid_t pid = ents[k]->sb ? ents[k]->sb->vmm_pid : 0;
			pthread_mutex_unlock(&ents[k]->use);
			host_metrics(pid, &v[k]);
		}
		vm_put(b, ents[k]);
	}
	free(ents);
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	if (absent)
		v[i++].name = strdup(name); /* not running; figures null */
	*rows = v;
	*n = i;
	return 0;
}

/* A connection of the entry's own (repl or metrics), opened on first use;
 * called with its mutex held.  NULL with err once the sandbox is stopped or
 * when its connection budget is used up. */
static struct agent_client *side_client(struct vm_backend *b, struct vm_entry *e,
					struct agent_client **slot, const char *what,
					struct msb_err *err)
{
	pthread_mutex_lock(&b->lock);
	bool gone = e->dead;
	pthread_mutex_unlock(&b->lock);
	if (gone) {
		msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' was stopped", e->name);
		return NULL;
	}
	if (!*slot && vm_conn_reserve(e, what, err) == 0 && !(*slot = vm_agent_open(b, e, err)))
		vm_conn_release(e);
	return *slot;
}

/* The guest's METRICS on the metrics connection within limit ms (a watchdog
 * ends a call the guest does not answer: kind timeout). */
static int guest_metrics_get(struct vm_backend *b, struct vm_entry *e, unsigned limit,
			     struct agent_metrics *am, struct msb_err *err)
{
	pthread_mutex_lock(&b->lock);
	bool gone = e->dead;
	pthread_mutex_unlock(&b->lock);
	if (gone)
		return msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' was stopped", e->name);
	pthread_mutex_lock(&e->metrics_use);
	int r = 0;
	if (!e->metrics && (r = vm_conn_reserve(e, "a metrics request", err)) == 0) {
		int sock = agent_vsock_connect(e->vsock, AGENT_PORT_AGENT, (int)limit, err);
		if (sock >= 0 && (e->metrics = agent_client_from_fd(sock, (int)limit, err)))
			e->metrics_sock = sock;
		else
			r = -1, vm_conn_release(e);
	}
	struct vm_watch w;
	if (r == 0 && (r = vm_watch_start(&w, e->metrics_sock, limit, err)) == 0) {
		r = agent_metrics(e->metrics, CPU_WINDOW_MS, am, err);
		if (vm_watch_stop(&w))
			r = msb_err_set(err, MSB_EK_TIMEOUT, 0, "no answer within %u ms", limit);
	}
	if (r < 0)
		side_drop(e, &e->metrics);
	pthread_mutex_unlock(&e->metrics_use);
	return r;
}

static bool guest_metrics(struct vm_backend *b, struct vm_entry *e, struct sb_metrics *m)
{
	struct msb_err err = {0};
	struct agent_metrics am = {0};
	/* A guest that does not answer gets the host's view after this long. */
	unsigned limit =
		b->file_timeout_ms < METRICS_TIMEOUT_MS ? b->file_timeout_ms : METRICS_TIMEOUT_MS;
	if (guest_metrics_get(b, e, limit, &am, &err) < 0) {
		msb_debug("sandbox %s: guest metrics: %s", e->name, err.msg);
		return false; /* the host's view then */
	}
	m->has_cpu = m->has_memory = m->has_disk = true;
	m->cpu_usage = am.cpu_x100 / 100.0;
	m->memory_mib = am.mem_used >> 20;
	m->disk_bytes = am.disk_used;
	return true;
}

/* What a REPL run's host deadline allows for an interpreter's start (the
 * guest's clock for the run starts once the interpreter is ready). */
#define REPL_START_MS 300000

static int vm_repl_run(void *self, const char *name, const char *language, const char *code,
		       double timeout_s, struct sb_repl_result *res, struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_entry *e = vm_get_running(b, name, err);
	if (!e)
		return -1;
	struct vm_guard g;
	struct call_out co = {.l = {.out = &res->output}, .g = &g};
	struct lines *l = &co.l;
	struct agent_repl_opts o = {
		.language = language,
		.code = code,
		.timeout_ms = timeout_s > 0 ? (uint64_t)(timeout_s * 1000) : 0,
		.cwd = e->workdir,
		.env = (const char *const *)e->env.v,
		.on_output = on_call_output,
		.ctx = &co,
	};
	struct agent_repl_result rr = {0};
	/* The agent's names: python, python3 | node, nodejs, javascript, js. */
	int slot = strncasecmp(language, "py", 2) == 0 ? 0 : 1;
	char what[64];
	snprintf(what, sizeof(what), "the %s run", language);
	pthread_mutex_lock(&e->repl_use[slot]);
	/* The guest's clock starts once the interpreter is ready: a first run on
	 * a connection may start it (seconds, minutes on a loaded PVM host). */
	uint64_t deadline = 0;
	if (o.timeout_ms)
		deadline = sandbox_now_ms() + o.timeout_ms + HOST_GRACE_MS +
			   (e->repl[slot] ? 0 : REPL_START_MS);
	struct agent_client *c = side_client(b, e, &e->repl[slot], "a REPL run", err);
	int r = -1, why = GUARD_NONE;
	if (c && vm_guard_start(&g, b, e, agent_client_fd(c), deadline, true, err) == 0) {
		r = agent_repl_run_opts(c, &o, &rr, err);
		why = vm_guard_stop(&g);
		if (r < 0 && why != GUARD_NONE)
			vm_guard_err(&g, why, what, err);
	}
	/* A guard that fired has shut the socket down, even when the run ended
	 * just before: the next run must not get that connection. */
	if (c && (why != GUARD_NONE ||
		  (r < 0 && err->kind != MSB_EK_NOT_FOUND && err->kind != MSB_EK_USAGE)))
		side_drop(e, &e->repl[slot]);
	pthread_mutex_unlock(&e->repl_use[slot]);
	vm_put(b, e);
	for (int s = 0; s < 2; s++) {
		if (r == 0 && l->len[s])
			add_line(l, s, l->part[s], l->len[s]);
		free(l->part[s]);
	}
	if (r == 0 && l->failed)
		r = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory for output");
	if (r == 0 && rr.status == AGENT_REPL_RESULT_TIMEOUT)
		r = msb_err_set(err, MSB_EK_TIMEOUT, 0,
				"the %s code timed out: it did not finish within %g s", language,
				timeout_s);
	if (r == 0 && rr.status == AGENT_REPL_RESULT_ERROR) {
		/* The traceback is on stderr; a death without one gets the message. */
		bool said = false;
		for (size_t i = 0; i < res->output.n; i++)
			said |= res->output.lines[i].stream == SB_STDERR;
		if (!said && rr.message &&
		    sb_output_add(&res->output, SB_STDERR, rr.message, strlen(rr.message), err) < 0)
			r = -1;
	}
	if (r == 0 && rr.restarted)
		msb_info("sandbox %s: a new %s interpreter ran this code (earlier state is gone)",
			 name, language);
	if (r == 0 &&
	    !(res->status = strdup(rr.status == AGENT_REPL_RESULT_OK ? "success" : "error")))
		r = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	agent_repl_result_release(&rr);
	return r;
}

static void vm_shutdown(void *self)
{
	struct vm_backend *b = self;
	pthread_mutex_lock(&b->lock);
	b->down = true;
	pthread_mutex_unlock(&b->lock);
	vm_io_shutdown(b);
	for (;;) {
		pthread_mutex_lock(&b->lock);
		struct vm_entry *e = b->list;
		if (e) {
			unlink_entry(b, e);
			e->refs++;
			if (!e->booted && e->boot_pid > 0)
				kill(e->boot_pid, SIGKILL); /* its start fails now */
		}
		pthread_mutex_unlock(&b->lock);
		if (!e)
			break;
		kill_and_free(b, e);
		vm_put(b, e);
	}
	/* Owner threads end once their boot failed or their VM is gone. */
	pthread_mutex_lock(&b->lock);
	while (b->owners > 0)
		pthread_cond_wait(&b->cv, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

/* How long a file request may wait for a silent guest (MSB_SERVER_FILE_TIMEOUT). */
#define FILE_TIMEOUT_S 60

struct sandbox_backend *sandbox_backend_vm_new(const char *project_dir, struct msb_err *err)
{
	struct vm_backend *b = calloc(1, sizeof(*b));
	if (!b || (project_dir && !(b->project_dir = strdup(project_dir)))) {
		free(b);
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->file_timeout_ms = FILE_TIMEOUT_S * 1000;
	const char *ft = getenv("MSB_SERVER_FILE_TIMEOUT");
	if (ft && *ft) {
		char *end = NULL;
		unsigned long v = strtoul(ft, &end, 10);
		if (*end || v < 1 || v > 86400)
			msb_warn("MSB_SERVER_FILE_TIMEOUT=%s is not a number of seconds (1-86400); "
				 "using %d",
				 ft, FILE_TIMEOUT_S);
		else
			b->file_timeout_ms = (unsigned)v * 1000;
	}
	b->ops = (struct sandbox_backend){
		.name = "vm",
		.self = b,
		.start = vm_start,
		.stop = vm_stop,
		.repl_run = vm_repl_run,
		.command_run = vm_command_run,
		.metrics = vm_metrics,
		.list = vm_list,
		.shutdown = vm_shutdown,
	};
	vm_io_install(&b->ops);
	return &b->ops;
}

void sandbox_backend_vm_free(struct sandbox_backend *ops)
{
	if (!ops)
		return;
	struct vm_backend *b = (struct vm_backend *)ops;
	vm_shutdown(b);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cv);
	free(b->project_dir);
	free(b);
}
