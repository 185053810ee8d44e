/* Streaming execs and file transfers of the VM backend.
 *
 * Each runs on an agent connection of its own (msb-init serves several), so a
 * long stream never holds up the sandbox's other requests, and a connection
 * that closes makes the guest kill what ran on it.  The caller's thread moves
 * the bytes (agent_client_pump) when it asks for output or writes input; with
 * nobody asking, the guest waits on the agent's flow-control window, so
 * nothing piles up in the server.
 *
 * Files use the agent's file requests (streamed, the guest renames a temporary
 * file over the path when an upload is complete), each on its own connection
 * and thread (the requests are blocking and callback-driven).  A watchdog
 * ends a transfer whose guest has not answered for the file timeout
 * (b->file_timeout_ms): a hung guest must not hold a server thread for ever. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "agent/proto.h"
#include "common/log.h"
#include "sandbox/backend_vm_int.h"
#include "sandbox/vm_int.h"

#define PUMP_SLICE_MS 50
#define QUEUE_LIMIT   (4u << 20) /* bytes of output held before the guest is made to wait */
#define ERR_KEEP      1024	 /* bytes of a file command's stderr kept for its message */

struct chunk {
	struct chunk *next;
	int stream; /* 1 stdout, 2 stderr */
	size_t len, off;
	char data[];
};

/* One command on its own agent connection, which holds a place in the
 * sandbox's connection budget and a reference on its entry. */
struct job {
	struct vm_backend *b;
	struct vm_entry *e;
	struct agent_client *c;
	struct agent_exec *x; /* NULL once collected */
	int in_r, in_w;	      /* its stdin pipe; -1 when none or closed */
	struct chunk *head, *tail;
	size_t queued;
	bool keep_stdout; /* else stdout is dropped (file commands keep stderr only) */
	char errtext[ERR_KEEP];
	size_t errlen;
	bool done, failed;
	struct agent_exec_status st;
	struct msb_err xerr;
	uint64_t last_ms; /* the guest's last sign of life (output, or a probe answered) */
	char what[72];	  /* the command, for messages */
};

static void on_output(void *ctx, int stream, const void *data, size_t len)
{
	struct job *j = ctx;
	j->last_ms = sandbox_now_ms();
	if (stream == 2 && j->errlen < ERR_KEEP - 1) {
		size_t n = len < ERR_KEEP - 1 - j->errlen ? len : ERR_KEEP - 1 - j->errlen;
		memcpy(j->errtext + j->errlen, data, n);
		j->errlen += n;
	}
	if (stream == 1 && !j->keep_stdout)
		return;
	struct chunk *ch = malloc(sizeof(*ch) + len);
	if (!ch) {
		j->failed = true;
		msb_err_set(&j->xerr, MSB_EK_SYSTEM, ENOMEM, "out of memory for output");
		return;
	}
	*ch = (struct chunk){.stream = stream, .len = len};
	memcpy(ch->data, data, len);
	if (j->tail)
		j->tail->next = ch;
	else
		j->head = ch;
	j->tail = ch;
	j->queued += len;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	agent_client_free(j->c); /* the guest kills whatever still runs */
	vm_conn_release(j->e);
	vm_put(j->b, j->e);
	close_fd(&j->in_r);
	close_fd(&j->in_w);
	while (j->head) {
		struct chunk *n = j->head->next;
		free(j->head);
		j->head = n;
	}
	free(j);
}

static struct job *job_new(struct vm_backend *b, struct vm_entry *e, struct msb_err *err)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return NULL;
	}
	j->in_r = j->in_w = -1;
	if (vm_conn_reserve(e, "a stream", err) < 0) {
		free(j);
		return NULL;
	}
	j->c = vm_agent_open(b, e, err);
	if (!j->c) {
		vm_conn_release(e);
		free(j);
		return NULL;
	}
	vm_ref(b, e);
	j->b = b;
	j->e = e;
	j->last_ms = sandbox_now_ms();
	return j;
}

static int job_start(struct job *j, const struct agent_exec_opts *base, bool with_stdin,
		     struct msb_err *err)
{
	struct agent_exec_opts o = *base;
	o.stdin_fd = o.stdout_fd = o.stderr_fd = -1;
	if (with_stdin) {
		int p[2];
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
			return msb_err_sys(err, "creating a pipe");
		j->in_r = p[0];
		j->in_w = p[1];
		o.stdin_fd = j->in_r;
	}
	o.on_output = on_output;
	o.ctx = j;
	j->errlen = 0;
	j->x = agent_exec_start(j->c, &o, err);
	return j->x ? 0 : -1;
}

/* Move bytes for up to timeout_ms; collects the status once the command ended. */
static void job_pump(struct job *j, int timeout_ms)
{
	if (j->done)
		return;
	if (j->queued >= QUEUE_LIMIT) {	       /* the reader is behind: let the guest wait */
		j->last_ms = sandbox_now_ms(); /* (its silence is ours, not the guest's) */
		if (timeout_ms > 0)
			usleep((useconds_t)timeout_ms * 1000);
		return;
	}
	struct msb_err err = {0};
	if (agent_client_pump(j->c, timeout_ms, &err) < 0) {
		if (!j->failed)
			j->xerr = err;
		j->failed = j->done = true;
		return;
	}
	if (j->x && agent_exec_done(j->x)) {
		if (agent_exec_wait(j->c, j->x, &j->st, &err) < 0 && !j->failed) {
			j->xerr = err;
			j->failed = true;
		}
		j->x = NULL;
		j->done = true;
		j->errtext[j->errlen] = '\0';
		close_fd(&j->in_r);
		close_fd(&j->in_w);
	}
}

/* Write all of buf to the command's stdin, pumping while the pipe is full. */
static int job_write(struct job *j, const void *buf, size_t len, struct msb_err *err)
{
	const char *p = buf;
	while (len > 0) {
		if (j->done || j->in_w < 0)
			return msb_err_set(err, MSB_EK_STATE, 0,
					   j->done ? "the command has exited"
						   : "the command's stdin is closed");
		ssize_t n = write(j->in_w, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			job_pump(j, 0);
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return msb_err_sys(err, "writing to the command's stdin");
		job_pump(j, PUMP_SLICE_MS);
	}
	return 0;
}

/* ---- streaming execs ----------------------------------------------------------------- */

struct vm_exec {
	struct vm_exec *next;
	char id[SB_EXEC_ID_MAX];
	char sandbox[SB_EXEC_ID_MAX]; /* names are at most 63 bytes */
	pthread_mutex_t mu;
	unsigned users; /* callers inside an operation (under b->lock) */
	bool released;
	struct job *j;
	struct chunk *cur; /* the chunk the last event pointed into */
	bool exit_sent;
	bool probing; /* a caller probes the guest (job_check_guest), x->mu dropped */
};

/* The hung-guest check of an exec that is read or waited for (as vm_guard
 * does for command.run and repl.run): silent for the guest limit, the guest
 * is probed (vm_guest_probe); one that does not answer in time ends the exec
 * with a timeout error (its connection is shut down), else the exec goes on.
 * Called with x->mu held, which it drops during the probe (up to the limit)
 * so that stdin writes and signals to the exec are not held up; one caller
 * probes at a time. */
static void job_check_guest(struct vm_exec *x)
{
	struct job *j = x->j;
	if (j->done || x->probing || sandbox_now_ms() - j->last_ms < j->b->file_timeout_ms)
		return;
	x->probing = true;
	uint64_t seen = j->last_ms;
	pthread_mutex_unlock(&x->mu);
	struct msb_err perr = {0};
	int r = vm_guest_probe(j->b, j->e, j->b->file_timeout_ms, &perr);
	pthread_mutex_lock(&x->mu);
	x->probing = false;
	if (j->done)
		return; /* it ended meanwhile (another caller pumped its exit) */
	if (r == 0 || perr.kind != MSB_EK_TIMEOUT || j->last_ms != seen) {
		j->last_ms = sandbox_now_ms(); /* alive (or not known): silent code */
		return;
	}
	msb_err_set(
		&j->xerr, MSB_EK_TIMEOUT, 0,
		"the sandbox stopped answering during '%s': no sign of life for %u s (its guest "
		"may be hung); try again, or stop the sandbox",
		j->what, j->b->file_timeout_ms / 1000);
	j->failed = j->done = true;
	shutdown(agent_client_fd(j->c), SHUT_RDWR);
}

static void exec_free(struct vm_exec *x)
{
	job_free(x->j);
	free(x->cur);
	pthread_mutex_destroy(&x->mu);
	free(x);
}

static struct vm_exec *exec_get(struct vm_backend *b, const char *id, struct msb_err *err)
{
	pthread_mutex_lock(&b->lock);
	struct vm_exec *x = b->execs;
	while (x && strcmp(x->id, id) != 0)
		x = x->next;
	if (x)
		x->users++;
	pthread_mutex_unlock(&b->lock);
	if (!x)
		msb_err_set(err, MSB_EK_NOT_FOUND, 0,
			    "no running exec '%s' (it ended or was released)", id);
	else
		pthread_mutex_lock(&x->mu);
	return x;
}

static void exec_put(struct vm_backend *b, struct vm_exec *x)
{
	pthread_mutex_unlock(&x->mu);
	pthread_mutex_lock(&b->lock);
	bool last = --x->users == 0 && x->released;
	pthread_mutex_unlock(&b->lock);
	if (last)
		exec_free(x);
}

static int vm_exec_start(void *self, const struct sb_exec_spec *spec, char id[SB_EXEC_ID_MAX],
			 struct msb_err *err)
{
	struct vm_backend *b = self;
	if (spec->tty)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "tty is not supported by this backend yet; run without it");
	struct vm_entry *e = vm_get_running(b, spec->sandbox, err);
	if (!e)
		return -1;
	struct msb_strv env = {0};
	const char **argv = calloc(spec->args.n + 2, sizeof(*argv));
	struct vm_exec *x = calloc(1, sizeof(*x));
	struct job *j = NULL;
	int r = -1;
	if (!argv || !x) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	argv[0] = spec->command;
	for (size_t i = 0; i < spec->args.n; i++)
		argv[i + 1] = spec->args.v[i];
	const char **over = calloc(spec->env.n + 1, sizeof(*over));
	if (!over) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < spec->env.n; i++)
		over[i] = spec->env.v[i];
	r = sandbox_merge_env((const char *const *)e->env.v, over, &env, err);
	free(over);
	if (r < 0 || !(j = job_new(b, e, err))) {
		r = -1;
		goto out;
	}
	j->keep_stdout = true;
	snprintf(j->what, sizeof(j->what), "%.64s", spec->command);
	struct agent_exec_opts o = {
		.argv = argv,
		.env = (const char *const *)env.v,
		.cwd = spec->cwd ? spec->cwd : e->workdir,
		.timeout_ms = spec->timeout_s > 0 ? (uint64_t)(spec->timeout_s * 1000) : 0,
	};
	if (job_start(j, &o, spec->stdin_open, err) < 0) {
		r = -1;
		goto out;
	}
	job_pump(j, 0); /* send the request now */
	pthread_mutex_init(&x->mu, NULL);
	x->j = j;
	j = NULL;
	pthread_mutex_lock(&b->lock);
	if (b->down) {
		pthread_mutex_unlock(&b->lock);
		r = msb_err_set(err, MSB_EK_STATE, 0, "the server is stopping");
		exec_free(x);
		x = NULL;
		goto out;
	}
	snprintf(x->id, sizeof(x->id), "%s-%lu", spec->sandbox, ++b->next_exec);
	snprintf(x->sandbox, sizeof(x->sandbox), "%s", spec->sandbox);
	x->next = b->execs;
	b->execs = x;
	pthread_mutex_unlock(&b->lock);
	snprintf(id, SB_EXEC_ID_MAX, "%s", x->id);
	x = NULL;
	r = 0;
out:
	job_free(j);
	free(x);
	free(argv);
	msb_strv_clear(&env);
	vm_put(b, e);
	return r;
}

static int vm_exec_next(void *self, const char *id, int timeout_ms, struct sb_exec_event *ev,
			struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_exec *x = exec_get(b, id, err);
	if (!x)
		return -1;
	free(x->cur);
	x->cur = NULL;
	uint64_t deadline = sandbox_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	int r = 0;
	for (;;) {
		struct job *j = x->j;
		if (j->head) {
			struct chunk *ch = j->head;
			j->head = ch->next;
			if (!j->head)
				j->tail = NULL;
			j->queued -= ch->len;
			x->cur = ch;
			*ev = (struct sb_exec_event){.type = ch->stream == 2 ? SB_EV_STDERR
									     : SB_EV_STDOUT,
						     .data = ch->data,
						     .len = ch->len};
			r = 1;
			break;
		}
		if (j->done) {
			if (x->exit_sent)
				r = msb_err_set(err, MSB_EK_STATE, 0, "exec '%s' has exited", id);
			else if (j->failed)
				r = (*err = j->xerr, -1);
			else {
				x->exit_sent = true;
				*ev = (struct sb_exec_event){
					.type = SB_EV_EXIT,
					.exit_code = j->st.signaled ? -1 : j->st.code,
					.signal = j->st.signaled ? j->st.signal : 0,
					.timed_out = j->st.timed_out,
					.oom_killed = j->st.oom_killed};
				r = 1;
			}
			break;
		}
		uint64_t now = sandbox_now_ms();
		if (now >= deadline)
			break;
		uint64_t left = deadline - now;
		/* Short slices: stdin writers and signals wait on this lock. */
		job_pump(j, left < PUMP_SLICE_MS ? (int)left : PUMP_SLICE_MS);
		job_check_guest(x);
		if (!j->head && !j->done) {
			pthread_mutex_unlock(&x->mu);
			pthread_mutex_lock(&x->mu);
		}
	}
	exec_put(b, x);
	return r;
}

static int vm_exec_stdin(void *self, const char *id, const void *data, size_t len, bool eof,
			 struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_exec *x = exec_get(b, id, err);
	if (!x)
		return -1;
	int r = 0;
	if (x->j->in_w < 0 && !x->j->done && (len || !eof))
		r = msb_err_set(err, MSB_EK_STATE, 0,
				"exec '%s' has no open stdin (start it with stdin open)", id);
	else if (len)
		r = job_write(x->j, data, len, err);
	if (r == 0 && eof) {
		close_fd(&x->j->in_w);
		job_pump(x->j, 0);
	}
	exec_put(b, x);
	return r;
}

static int vm_exec_signal(void *self, const char *id, int sig, struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_exec *x = exec_get(b, id, err);
	if (!x)
		return -1;
	int r = x->j->done ? msb_err_set(err, MSB_EK_STATE, 0, "exec '%s' has exited", id)
			   : agent_exec_signal(x->j->c, x->j->x, sig, err);
	if (r == 0)
		job_pump(x->j, 0);
	exec_put(b, x);
	return r;
}

static int vm_exec_wait(void *self, const char *id, int timeout_ms, struct sb_exec_status *st,
			struct msb_err *err)
{
	struct vm_backend *b = self;
	struct vm_exec *x = exec_get(b, id, err);
	if (!x)
		return -1;
	uint64_t deadline = sandbox_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	struct job *j = x->j;
	for (;;) {
		/* Output nobody streams is dropped once waited for: only the exit matters. */
		while (j->head && j->queued >= QUEUE_LIMIT) {
			struct chunk *ch = j->head;
			j->head = ch->next;
			if (!j->head)
				j->tail = NULL;
			j->queued -= ch->len;
			free(ch);
		}
		if (j->done)
			break;
		uint64_t now = sandbox_now_ms();
		if (now >= deadline)
			break;
		uint64_t left = deadline - now;
		job_pump(j, left < PUMP_SLICE_MS ? (int)left : PUMP_SLICE_MS);
		job_check_guest(x);
	}
	int r = 0;
	if (j->done && j->failed)
		r = (*err = j->xerr, -1);
	else
		*st = (struct sb_exec_status){.exited = j->done,
					      .exit_code = j->st.signaled ? -1 : j->st.code,
					      .signal = j->st.signaled ? j->st.signal : 0,
					      .timed_out = j->st.timed_out,
					      .oom_killed = j->st.oom_killed};
	exec_put(b, x);
	return r;
}

static void release(struct vm_backend *b, struct vm_exec *x)
{
	bool last = x->users == 0;
	x->released = true;
	for (struct vm_exec **p = &b->execs; *p; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	pthread_mutex_unlock(&b->lock);
	if (last)
		exec_free(x);
}

static void vm_exec_release(void *self, const char *id)
{
	struct vm_backend *b = self;
	pthread_mutex_lock(&b->lock);
	struct vm_exec *x = b->execs;
	while (x && strcmp(x->id, id) != 0)
		x = x->next;
	if (!x) {
		pthread_mutex_unlock(&b->lock);
		return;
	}
	release(b, x); /* unlocks */
}

void vm_io_release_sandbox(struct vm_backend *b, const char *name)
{
	for (;;) {
		pthread_mutex_lock(&b->lock);
		struct vm_exec *x = b->execs;
		while (x && strcmp(x->sandbox, name) != 0)
			x = x->next;
		if (!x) {
			pthread_mutex_unlock(&b->lock);
			return;
		}
		release(b, x); /* unlocks */
	}
}

void vm_io_shutdown(struct vm_backend *b)
{
	for (;;) {
		pthread_mutex_lock(&b->lock);
		struct vm_exec *x = b->execs;
		if (!x) {
			pthread_mutex_unlock(&b->lock);
			return;
		}
		release(b, x); /* unlocks; a user inside frees it on the way out */
	}
}

/* A transfer runs agent_file_write/agent_file_read (blocking, callback-driven)
 * on a thread of its own with its own agent connection; the server's calls
 * meet it through a pipe.  Upload: file_write fills the pipe, the source
 * callback drains it; the end of the pipe is the end of the file (or, when not
 * committed, an abandon: the guest removes its temporary file).  Download: the
 * sink callback fills the pipe, file_read drains it. */
/* ---- watchdogs ------------------------------------------------------------------------ */

void vm_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, clockid_t clock, unsigned ms)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cv, mu, &ts);
}

static void *ticker_main(void *arg)
{
	struct vm_ticker *t = arg;
	pthread_mutex_lock(&t->mu);
	while (!t->stop && !t->tick(t, t->arg) && !t->stop)
		vm_cond_wait_ms(&t->cv, &t->mu, CLOCK_MONOTONIC, t->slice_ms);
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

int vm_ticker_start(struct vm_ticker *t, unsigned slice_ms,
		    bool (*tick)(struct vm_ticker *t, void *arg), void *arg, struct msb_err *err)
{
	*t = (struct vm_ticker){.slice_ms = slice_ms, .tick = tick, .arg = arg};
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&t->mu, NULL);
	int pe = pthread_create(&t->th, NULL, ticker_main, t);
	if (pe != 0) {
		pthread_cond_destroy(&t->cv);
		pthread_mutex_destroy(&t->mu);
		return msb_err_set(err, MSB_EK_SYSTEM, pe, "starting a watchdog thread");
	}
	t->started = true;
	return 0;
}

void vm_ticker_stop(struct vm_ticker *t)
{
	if (!t->started)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->th, NULL);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	t->started = false;
}

static bool watch_tick(struct vm_ticker *t, void *arg)
{
	(void)t;
	struct vm_watch *w = arg;
	if (atomic_load(&w->paused) || sandbox_now_ms() - atomic_load(&w->last_ms) < w->timeout_ms)
		return false;
	atomic_store(&w->fired, true);
	shutdown(w->sock, SHUT_RDWR); /* the agent call fails at once */
	return true;
}

int vm_watch_start(struct vm_watch *w, int sock, unsigned timeout_ms, struct msb_err *err)
{
	*w = (struct vm_watch){.sock = sock, .timeout_ms = timeout_ms};
	atomic_store(&w->last_ms, sandbox_now_ms());
	return vm_ticker_start(&w->tk, 100, watch_tick, w, err);
}

bool vm_watch_stop(struct vm_watch *w)
{
	vm_ticker_stop(&w->tk);
	return atomic_load(&w->fired);
}

/* ---- files ----------------------------------------------------------------------------- */

struct vm_file {
	struct vm_backend *b;
	struct vm_entry *e; /* a reference, and a place in its connection budget once c is open */
	struct agent_client *c;
	char *path;
	int mode;
	bool upload;
	int rd, wr; /* the pipe */
	pthread_t th;
	bool started;
	atomic_bool abandon, done;
	int rc;
	struct msb_err terr; /* the thread's error, read after done */
	/* Ends the transfer when the guest is silent for the file timeout; the
	 * clock is paused while a callback waits for the HTTP client. */
	struct vm_watch wd;
	unsigned timeout_ms;
};

/* A callback of the transfer begins (the guest answered) or ends. */
static void cb_enter(struct vm_file *f)
{
	atomic_store(&f->wd.paused, true);
}

static void cb_leave(struct vm_file *f)
{
	atomic_store(&f->wd.last_ms, sandbox_now_ms());
	atomic_store(&f->wd.paused, false);
}

/* The error of a request the watchdog ended. */
static int timeout_err(struct vm_file *f, struct msb_err *err)
{
	return msb_err_set(err, MSB_EK_TIMEOUT, 0,
			   "the sandbox did not answer the file request for %s within %u s (its "
			   "guest may be hung); try again, or stop the sandbox",
			   f->path, f->timeout_ms / 1000);
}

static void file_free(struct vm_file *f)
{
	vm_watch_stop(&f->wd);
	close_fd(&f->rd);
	close_fd(&f->wr);
	if (f->c) {
		agent_client_free(f->c);
		vm_conn_release(f->e);
	}
	if (f->e)
		vm_put(f->b, f->e);
	free(f->path);
	free(f);
}

static ssize_t upload_source(void *ctx, void *buf, size_t cap, struct msb_err *err)
{
	struct vm_file *f = ctx;
	cb_enter(f);
	ssize_t r;
	for (;;) {
		ssize_t n = read(f->rd, buf, cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0 || (n == 0 && !atomic_load(&f->abandon)))
			r = n;
		else
			r = msb_err_set(err, MSB_EK_STATE, 0, "the upload of %s was abandoned",
					f->path);
		break;
	}
	cb_leave(f);
	return r;
}

static void *upload_main(void *arg)
{
	struct vm_file *f = arg;
	struct msb_err err = {0};
	f->rc = agent_file_write(f->c, f->path, f->mode, true, upload_source, f, &err);
	if (f->rc < 0 && atomic_load(&f->wd.fired))
		timeout_err(f, &err);
	f->terr = err;
	atomic_store(&f->done, true);
	/* Writers must never block on a pipe nobody reads: drain to the end. */
	char sink[4096];
	while (read(f->rd, sink, sizeof(sink)) > 0)
		;
	return NULL;
}

static int download_sink(void *ctx, const void *data, size_t len, struct msb_err *err)
{
	struct vm_file *f = ctx;
	cb_enter(f);
	const char *p = data;
	int r = 0;
	while (len > 0 && r == 0) {
		if (atomic_load(&f->abandon)) {
			r = msb_err_set(err, MSB_EK_STATE, 0, "the download was abandoned");
			break;
		}
		ssize_t n = write(f->wr, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = f->wr, .events = POLLOUT};
			poll(&pfd, 1, PUMP_SLICE_MS);
		} else if (n < 0 && errno != EINTR) {
			r = msb_err_sys(err, "passing on the download");
		}
	}
	cb_leave(f);
	return r;
}

static void *download_main(void *arg)
{
	struct vm_file *f = arg;
	struct msb_err err = {0};
	f->rc = agent_file_read(f->c, f->path, download_sink, f, NULL, &err);
	if (f->rc < 0 && atomic_load(&f->wd.fired))
		timeout_err(f, &err);
	f->terr = err;
	atomic_store(&f->done, true);
	close_fd(&f->wr); /* the reader sees the end */
	return NULL;
}

static struct vm_file *file_new(struct vm_backend *b, const char *sandbox, const char *path,
				bool upload, struct msb_err *err)
{
	struct vm_entry *e = vm_get_running(b, sandbox, err);
	if (!e)
		return NULL;
	struct vm_file *f = calloc(1, sizeof(*f));
	int p[2] = {-1, -1};
	if (!f || !(f->path = strdup(path))) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		vm_put(b, e);
		free(f);
		return NULL;
	}
	f->b = b;
	f->e = e; /* the reference is the transfer's now */
	f->upload = upload;
	f->rd = f->wr = -1;
	if (pipe2(p, O_CLOEXEC) < 0) {
		msb_err_sys(err, "creating a pipe");
		goto fail;
	}
	f->rd = p[0];
	f->wr = p[1];
	/* the download's writer waits in poll() so that an abandon is seen */
	if (!upload && fcntl(f->wr, F_SETFL, O_NONBLOCK) < 0) {
		msb_err_sys(err, "setting up a pipe");
		goto fail;
	}
	/* The connection, within the file timeout too; then the watchdog. */
	f->timeout_ms = b->file_timeout_ms;
	int limit = f->timeout_ms < CONNECT_MAX_MS ? (int)f->timeout_ms : CONNECT_MAX_MS;
	if (vm_conn_reserve(e, "a file transfer", err) < 0)
		goto fail;
	int sock = agent_vsock_connect(e->vsock, AGENT_PORT_AGENT, limit, err);
	if (sock < 0 || !(f->c = agent_client_from_fd(sock, limit, err))) {
		vm_conn_release(e);
		if (err->kind == MSB_EK_TIMEOUT)
			timeout_err(f, err);
		goto fail;
	}
	if (vm_watch_start(&f->wd, sock, f->timeout_ms, err) < 0)
		goto fail;
	return f;
fail:
	file_free(f);
	return NULL;
}

static int file_start(struct vm_file *f, void *(*fn)(void *), struct msb_err *err)
{
	int pe = pthread_create(&f->th, NULL, fn, f);
	if (pe != 0)
		return msb_err_set(err, MSB_EK_SYSTEM, pe, "starting a file transfer thread");
	f->started = true;
	return 0;
}

static int vm_file_open_write(void *self, const char *sandbox, const char *path, unsigned mode,
			      void **h, struct msb_err *err)
{
	struct vm_file *f = file_new(self, sandbox, path, true, err);
	if (!f)
		return -1;
	f->mode = (int)(mode & 07777);
	if (file_start(f, upload_main, err) < 0) {
		file_free(f);
		return -1;
	}
	*h = f;
	return 0;
}

static int vm_file_write(void *self, void *h, const void *buf, size_t len, struct msb_err *err)
{
	struct vm_file *f = h;
	const char *p = buf;
	while (len > 0) {
		if (atomic_load(&f->done)) { /* the guest refused it: say why */
			if (f->rc < 0)
				return (*err = f->terr, -1);
			return msb_err_set(err, MSB_EK_STATE, 0, "the upload of %s has ended",
					   f->path);
		}
		ssize_t n = write(f->wr, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return msb_err_sys(err, "passing on the upload");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int vm_file_close_write(void *self, void *h, bool commit, struct msb_err *err)
{
	struct vm_file *f = h;
	atomic_store(&f->abandon, !commit);
	close_fd(&f->wr);
	if (f->started)
		pthread_join(f->th, NULL);
	int r = 0;
	if (commit && f->rc < 0)
		r = (*err = f->terr, -1);
	file_free(f);
	return r;
}

static int vm_file_open_read(void *self, const char *sandbox, const char *path, void **h,
			     uint64_t *size, struct msb_err *err)
{
	struct vm_file *f = file_new(self, sandbox, path, false, err);
	if (!f)
		return -1;
	struct agent_file_info info = {0};
	int r = agent_file_stat(f->c, path, true, &info, err);
	if (r < 0 && atomic_load(&f->wd.fired))
		timeout_err(f, err);
	if (r == 0 && info.type == AGENT_FT_DIR)
		r = msb_err_set(err, MSB_EK_USAGE, 0, "%s is a directory, not a file", path);
	else if (r == 0 && info.type != AGENT_FT_FILE)
		r = msb_err_set(err, MSB_EK_USAGE, 0, "%s is not a regular file", path);
	uint64_t sz = info.size;
	agent_file_info_clear(&info);
	if (r < 0 && err->kind == MSB_EK_NOT_FOUND)
		msb_err_set(err, MSB_EK_NOT_FOUND, 0, "no such file: %s", path);
	if (r < 0 || file_start(f, download_main, err) < 0) {
		file_free(f);
		return -1;
	}
	*size = sz;
	*h = f;
	return 0;
}

static ssize_t vm_file_read(void *self, void *h, void *buf, size_t len, struct msb_err *err)
{
	struct vm_file *f = h;
	for (;;) {
		ssize_t n = read(f->rd, buf, len);
		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return msb_err_sys(err, "reading the download");
		/* the end: the thread has finished and closed its side */
		if (f->started) {
			pthread_join(f->th, NULL);
			f->started = false;
		}
		if (f->rc < 0)
			return (*err = f->terr, -1);
		return 0;
	}
}

static void vm_file_close_read(void *self, void *h)
{
	struct vm_file *f = h;
	atomic_store(&f->abandon, true);
	if (f->started) {
		/* a reader that stops early: the sink sees the abandon within a slice */
		char sink[4096];
		while (!atomic_load(&f->done) && read(f->rd, sink, sizeof(sink)) > 0)
			;
		pthread_join(f->th, NULL);
	}
	file_free(f);
}

void vm_io_install(struct sandbox_backend *ops)
{
	ops->exec_start = vm_exec_start;
	ops->exec_next = vm_exec_next;
	ops->exec_stdin = vm_exec_stdin;
	ops->exec_signal = vm_exec_signal;
	ops->exec_wait = vm_exec_wait;
	ops->exec_release = vm_exec_release;
	ops->file_open_write = vm_file_open_write;
	ops->file_write = vm_file_write;
	ops->file_close_write = vm_file_close_write;
	ops->file_open_read = vm_file_open_read;
	ops->file_read = vm_file_read;
	ops->file_close_read = vm_file_close_read;
}
