/* Persistent REPLs: REPL_RUN runs code in one interpreter per language per
 * guest (the image's own python3 or node, started on first use with a driver
 * program from repl_drivers.c), streams its stdout and stderr as DATA 1 and 2
 * while it runs, and ends with REPL_RESULT (ok, error with the exception, or
 * timed out).
 *
 * Why output is complete and separated: the interpreter's stdout and stderr
 * are two pipes, and the end of a run is a reply on a third one (fd 4) that
 * the driver writes only after flushing both streams.  So when the reply
 * arrives every byte of the run is already in the two pipes; they are drained
 * before REPL_RESULT is queued (upstream's portal lost stderr that came after
 * its in-band marker).
 *
 * Runs of one language are serialized (a queue); languages run in parallel.
 * A timeout interrupts: python gets SIGINT (KeyboardInterrupt) and, if it has
 * not answered after REPL_GRACE_MS, is killed; node is killed at once.  A
 * killed or dead interpreter is started again by the next run, whose result
 * says RESTARTED (its earlier state is gone).
 *
 * Output is not windowed: an interpreter's pipes are read only while its
 * connection's outgoing buffer is below OUT_HIGH, which bounds memory the
 * same way. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "init/exec.h"
#include "init/oom.h"
#include "init/repl.h"
#include "init/server_int.h"

#define REPL_GRACE_MS 3000 /* after SIGINT, before the interpreter is killed */
#define CTL_MAX	      8192 /* a reply: "word n\n" + at most 4000 bytes */

struct lang {
	const char *name;	       /* as the host names it */
	const char *const programs[3]; /* looked up in PATH, in order */
	const char *flag;	       /* before the driver text */
	const char *pre;	       /* an extra first argument, or NULL */
	const char *driver;	       /* the program text */
	bool interrupt;		       /* SIGINT stops a run (else: restart) */
	const char *const aliases[4];  /* other names the host may use */
};

static const struct lang langs[REPL_LANGS] = {
	{"python",
	 {"python3", "python", NULL},
	 "-c",
	 "-u",
	 repl_driver_python,
	 true,
	 {"python3", "py", NULL}},
	{"node",
	 {"node", "nodejs", NULL},
	 "-e",
	 NULL,
	 repl_driver_node,
	 false,
	 {"nodejs", "javascript", "js", NULL}},
};

struct repl_run {
	struct repl_run *next;
	struct conn *conn; /* NULL once it went away */
	uint32_t id;
	struct agent_repl_req req;
	bool restarted;
};

struct repl_engine {
	const struct lang *lang;
	pid_t pid; /* 0: no interpreter */
	int fd_code, fd_out, fd_err, fd_ctl;
	struct agent_buf tx; /* the code block being written */
	char ctl[CTL_MAX];
	size_t ctl_len;
	bool ready;	/* the driver said "ready" */
	bool had_state; /* an interpreter ran before and is gone: the next run is fresh */
	struct repl_run *cur, *queue;
	uint64_t deadline; /* 0: none (or not ready yet) */
	uint64_t kill_at;  /* after SIGINT: when to give up */
	bool timed_out, killed;
};

static int find_lang(const char *name)
{
	for (int l = 0; l < REPL_LANGS; l++) {
		if (strcasecmp(name, langs[l].name) == 0)
			return l;
		for (size_t i = 0; langs[l].aliases[i]; i++)
			if (strcasecmp(name, langs[l].aliases[i]) == 0)
				return l;
	}
	return -1;
}

static void run_free(struct repl_run *r)
{
	agent_repl_req_release(&r->req);
	free(r);
}

/* ---- the interpreter process ------------------------------------------------------------ */

static void engine_close_fds(struct repl_engine *e)
{
	close_fd(&e->fd_code);
	close_fd(&e->fd_out);
	close_fd(&e->fd_err);
	close_fd(&e->fd_ctl);
	agent_buf_release(&e->tx);
	e->ctl_len = 0;
}

/* Start the interpreter with the environment and directory of the run that
 * needs it.  Fails with a message for the host and its wire kind. */
static int engine_spawn(struct repl_engine *e, const struct agent_repl_req *req, uint32_t *wire,
			struct msb_err *err)
{
	const struct lang *l = e->lang;
	_cleanup_free_ char **env = exec_merge_env(exec_base_env, req->env, req->envc);
	if (!env) {
		*wire = AGENT_E_LIMIT;
		return msb_err_sys(err, "allocating the environment");
	}
	_cleanup_free_ char *path = NULL;
	for (size_t i = 0; l->programs[i] && !path; i++)
		path = exec_find_program(l->programs[i], env);
	if (!path) {
		*wire = AGENT_E_NOT_FOUND;
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "the image has no %s%s%s%s on its PATH: use an image that has "
				   "%s, or install it in this one",
				   l->programs[0], l->programs[1] ? " (nor " : "",
				   l->programs[1] ? l->programs[1] : "", l->programs[1] ? ")" : "",
				   l->name);
	}
	int code[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, ctl[2] = {-1, -1};
	int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int rc = -1;
	*wire = AGENT_E_SYSTEM;
	if (null_fd < 0 || pipe2(code, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
	    pipe2(errp, O_CLOEXEC) < 0 || pipe2(ctl, O_CLOEXEC) < 0) {
		msb_err_sys(err, "creating the interpreter's pipes");
		goto out;
	}
	char *argv[6];
	size_t argc = 0;
	argv[argc++] = path;
	if (l->pre)
		argv[argc++] = (char *)l->pre;
	argv[argc++] = (char *)l->flag;
	argv[argc++] = (char *)l->driver;
	argv[argc] = NULL;
	struct agent_exec_req r = {
		.argv = argv, .argc = argc, .env = req->env, .envc = req->envc, .cwd = req->cwd};
	const int fds[5] = {null_fd, out[1], errp[1], code[0], ctl[1]};
	pid_t pid;
	if (exec_spawn_fds(&r, fds, 5, false, &pid, wire, err) < 0) {
		msb_err_wrap(err, "starting the %s interpreter", l->name);
		goto out;
	}
	if (fcntl(code[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(out[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(errp[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(ctl[0], F_SETFL, O_NONBLOCK) < 0) {
		msb_err_sys(err, "making the interpreter's pipes non-blocking");
		kill_tree(pid);
		goto out;
	}
	msb_debug("repl: %s started as %s (pid %d)", l->name, path, (int)pid);
	e->pid = pid;
	e->fd_code = steal_fd(&code[1]);
	e->fd_out = steal_fd(&out[0]);
	e->fd_err = steal_fd(&errp[0]);
	e->fd_ctl = steal_fd(&ctl[0]);
	e->ready = false;
	e->ctl_len = 0;
	rc = 0;
out:
	msb_closep(&null_fd);
	for (int i = 0; i < 2; i++) {
		msb_closep(&code[i]);
		msb_closep(&out[i]);
		msb_closep(&errp[i]);
		msb_closep(&ctl[i]);
	}
	return rc;
}

/* ---- runs ------------------------------------------------------------------------------ */

/* One read of stdout (1) or stderr (2) into a DATA frame of the current run,
 * or into nothing when no run can take it.  0: more may come; -1: nothing now
 * (EAGAIN) or the pipe ended (then it is closed). */
static int pump_output(struct repl_engine *e, int stream)
{
	int *fd = stream == 1 ? &e->fd_out : &e->fd_err;
	if (*fd < 0)
		return -1;
	struct conn *c = e->cur ? e->cur->conn : NULL;
	if (!c || c->closing) {
		char sink[4096];
		ssize_t n = read(*fd, sink, sizeof(sink));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			close_fd(fd);
		return n > 0 ? 0 : -1;
	}
	uint8_t *dst = agent_buf_reserve(&c->out, AGENT_HDR_SIZE + AGENT_DATA_CHUNK);
	if (!dst)
		return -1;
	ssize_t n = read(*fd, dst + AGENT_HDR_SIZE, AGENT_DATA_CHUNK);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			close_fd(fd);
		return -1;
	}
	struct agent_hdr h = {.len = (uint32_t)n,
			      .type = AGENT_DATA,
			      .id = e->cur->id,
			      .stream = (uint32_t)stream};
	agent_hdr_encode(dst, &h);
	c->out.len += AGENT_HDR_SIZE + (size_t)n;
	return 0;
}

/* Everything the interpreter wrote before its reply is in the pipes now. */
static void drain_output(struct repl_engine *e)
{
	while (pump_output(e, 1) == 0)
		;
	while (pump_output(e, 2) == 0)
		;
}

static void finish_run(struct repl_engine *e, uint32_t status, const char *msg)
{
	struct repl_run *r = e->cur;
	if (!r)
		return;
	drain_output(e);
	struct conn *c = r->conn;
	if (c) {
		char text[256];
		if (e->timed_out) {
			status = AGENT_REPL_TIMEOUT;
			snprintf(text, sizeof(text), "timed out after %llu ms%s",
				 (unsigned long long)r->req.timeout_ms,
				 e->killed ? " (the interpreter was stopped; the next run starts a "
					     "fresh one)"
					   : "");
			msg = text;
		}
		struct msb_err err;
		agent_msg_begin(&c->out, AGENT_REPL_RESULT, r->id, 0);
		agent_put_u32(&c->out, AGENT_T_REPL_STATUS, status);
		if (msg && *msg)
			agent_put_str(&c->out, AGENT_T_REPL_MESSAGE, msg);
		if (r->restarted)
			agent_put_u32(&c->out, AGENT_T_REPL_RESTARTED, 1);
		if (agent_msg_end(&c->out, &err) < 0)
			c->closing = true;
	}
	run_free(r);
	e->cur = NULL;
	e->deadline = e->kill_at = 0;
	e->timed_out = e->killed = false;
}

static void start_deadline(struct repl_engine *e, uint64_t now)
{
	uint64_t t = e->cur ? e->cur->req.timeout_ms : 0;
	if (t)
		e->deadline = t > UINT64_MAX - now ? UINT64_MAX : now + t;
}

/* The driver's replies: "ready 0\n", "ok 0\n", "error <n>\n<n bytes>". */
static void parse_ctl(struct repl_engine *e)
{
	for (;;) {
		char *nl = memchr(e->ctl, '\n', e->ctl_len);
		if (!nl)
			break;
		char word[8];
		unsigned len;
		char tail;
		*nl = '\0';
		if (sscanf(e->ctl, "%7s %u%c", word, &len, &tail) != 2 ||
		    len > CTL_MAX - (size_t)(nl + 1 - e->ctl) - 1) {
			msb_warn("repl: %s sent a malformed reply; stopping it", e->lang->name);
			kill_tree(e->pid);
			e->ctl_len = 0;
			return;
		}
		size_t head = (size_t)(nl + 1 - e->ctl);
		if (e->ctl_len < head + len) {
			*nl = '\n';
			break;
		}
		char msg[CTL_MAX];
		memcpy(msg, nl + 1, len);
		msg[len] = '\0';
		memmove(e->ctl, e->ctl + head + len, e->ctl_len - head - len);
		e->ctl_len -= head + len;
		if (strcmp(word, "ready") == 0) {
			e->ready = true;
			start_deadline(e, now_ms());
		} else if (strcmp(word, "ok") == 0) {
			finish_run(e, AGENT_REPL_OK, NULL);
		} else {
			/* NULs in the exception text would make the field invalid. */
			for (size_t i = 0; i < len; i++)
				if (!msg[i])
					msg[i] = '?';
			finish_run(e, AGENT_REPL_ERROR, msg);
		}
	}
	if (e->ctl_len == CTL_MAX) {
		msb_warn("repl: %s sent an oversized reply; stopping it", e->lang->name);
		kill_tree(e->pid);
		e->ctl_len = 0;
	}
}

static void read_ctl(struct repl_engine *e)
{
	ssize_t n = read(e->fd_ctl, e->ctl + e->ctl_len, CTL_MAX - e->ctl_len);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		close_fd(&e->fd_ctl); /* it is exiting; its reaping ends the run */
		return;
	}
	if (n > 0) {
		e->ctl_len += (size_t)n;
		parse_ctl(e);
	}
}

static void interrupt(struct repl_engine *e, uint64_t now)
{
	e->timed_out = true;
	if (e->lang->interrupt && e->ready) {
		kill(e->pid, SIGINT);
		e->kill_at = now + REPL_GRACE_MS;
	} else {
		kill_tree(e->pid);
		e->killed = true;
	}
}

/* Take the next run off the queue and hand its code to the interpreter. */
static void start_next(struct repl_engine *e, uint64_t now)
{
	while (!e->cur && e->queue) {
		struct repl_run *r = e->queue;
		e->queue = r->next;
		r->next = NULL;
		if (!r->conn) {
			run_free(r);
			continue;
		}
		if (!e->pid) {
			struct msb_err err;
			uint32_t wire;
			if (engine_spawn(e, &r->req, &wire, &err) < 0) {
				send_error(r->conn, r->id, wire, err.errnum, err.msg);
				run_free(r);
				continue;
			}
			r->restarted = e->had_state;
		}
		e->cur = r;
		char head[32];
		int hn = snprintf(head, sizeof(head), "%zu\n", strlen(r->req.code));
		agent_put_raw(&e->tx, head, (size_t)hn);
		agent_put_raw(&e->tx, r->req.code, strlen(r->req.code));
		if (e->tx.failed) {
			e->tx.failed = false;
			agent_buf_release(&e->tx);
			send_error(r->conn, r->id, AGENT_E_LIMIT, ENOMEM,
				   "out of memory for the code");
			run_free(r);
			e->cur = NULL;
			continue;
		}
		if (e->ready)
			start_deadline(e, now);
	}
}

/* The interpreter was reaped: what it said last still counts, then the run
 * (if any) ends as an error and the next run starts a fresh interpreter. */
static void engine_dead(struct repl_engine *e, int status, bool out_of_memory)
{
	if (e->fd_ctl >= 0)
		read_ctl(e);
	drain_output(e);
	pid_t pid = e->pid;
	e->pid = 0;
	e->had_state = true;
	/* Whatever it started in its session goes with it. */
	kill(-pid, SIGKILL);
	if (e->cur) {
		char msg[200];
		if (out_of_memory)
			snprintf(msg, sizeof(msg),
				 "the %s interpreter ran out of memory during the run and msb-init "
				 "killed it; its state is lost and the next run starts a fresh one "
				 "(give the sandbox more memory)",
				 e->lang->name);
		else if (WIFSIGNALED(status))
			snprintf(msg, sizeof(msg),
				 "the %s interpreter was killed by signal %d during the run; its "
				 "state is lost and the next run starts a fresh one",
				 e->lang->name, WTERMSIG(status));
		else
			snprintf(msg, sizeof(msg),
				 "the %s interpreter exited with status %d %s; its state is lost "
				 "and the next run starts a fresh one",
				 e->lang->name, WEXITSTATUS(status),
				 e->ready ? "during the run" : "while starting");
		finish_run(e, AGENT_REPL_ERROR, msg);
	}
	engine_close_fds(e);
	e->ready = false;
	msb_debug("repl: %s interpreter %d ended", e->lang->name, (int)pid);
}

/* ---- the server's hooks -------------------------------------------------------------- */

static bool id_in_use(struct server *s, struct conn *c, uint32_t id)
{
	if (find_exec(s, c, id))
		return true;
	for (int l = 0; l < REPL_LANGS; l++) {
		struct repl_engine *e = s->repl[l];
		if (!e)
			continue;
		if (e->cur && e->cur->conn == c && e->cur->id == id)
			return true;
		for (struct repl_run *r = e->queue; r; r = r->next)
			if (r->conn == c && r->id == id)
				return true;
	}
	return false;
}

void handle_repl_run(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p)
{
	struct msb_err err;
	if (h->id == 0) {
		send_error(c, 0, AGENT_E_BAD_REQUEST, 0, "REPL_RUN needs a non-zero request id");
		return;
	}
	if (id_in_use(s, c, h->id)) {
		send_error(c, h->id, AGENT_E_EXISTS, 0, "request id is already in use");
		return;
	}
	struct repl_run *r = calloc(1, sizeof(*r));
	if (!r) {
		send_error(c, h->id, AGENT_E_LIMIT, ENOMEM, "out of memory");
		return;
	}
	if (agent_decode_repl_run(p, h->len, &r->req, &err) < 0) {
		send_error(c, h->id,
			   err.kind == MSB_EK_USAGE && strstr(err.msg, "critical")
				   ? AGENT_E_UNSUPPORTED
				   : AGENT_E_BAD_REQUEST,
			   0, err.msg);
		free(r);
		return;
	}
	int l = find_lang(r->req.language);
	if (l < 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "unknown language '%.64s': use python or node",
			 r->req.language);
		send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, msg);
		run_free(r);
		return;
	}
	struct repl_engine *e = s->repl[l];
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e) {
			send_error(c, h->id, AGENT_E_LIMIT, ENOMEM, "out of memory");
			run_free(r);
			return;
		}
		e->lang = &langs[l];
		e->fd_code = e->fd_out = e->fd_err = e->fd_ctl = -1;
		s->repl[l] = e;
	}
	r->conn = c;
	r->id = h->id;
	struct repl_run **pp = &e->queue;
	while (*pp)
		pp = &(*pp)->next;
	*pp = r;
}

uint64_t repl_tick(struct server *s, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	for (int l = 0; l < REPL_LANGS; l++) {
		struct repl_engine *e = s->repl[l];
		if (!e)
			continue;
		if (e->cur && e->pid && !e->timed_out && e->deadline && now >= e->deadline)
			interrupt(e, now);
		if (e->cur && e->pid && e->kill_at && !e->killed && now >= e->kill_at) {
			kill_tree(e->pid);
			e->killed = true;
		}
		start_next(e, now);
		uint64_t at = 0;
		if (e->cur && !e->timed_out && e->deadline)
			at = e->deadline;
		else if (e->cur && e->kill_at && !e->killed)
			at = e->kill_at;
		if (at && (at > now ? at - now : 0) < next)
			next = at > now ? at - now : 0;
	}
	return next;
}

size_t repl_poll_add(struct server *s, struct pollfd *pfd)
{
	size_t n = 0;
	for (int l = 0; l < REPL_LANGS; l++) {
		struct repl_engine *e = s->repl[l];
		if (!e)
			continue;
		struct conn *c = e->cur ? e->cur->conn : NULL;
		bool room = !c || c->out.len < OUT_HIGH;
		if (e->fd_code >= 0 && e->tx.len)
			pfd[n++] = (struct pollfd){.fd = e->fd_code, .events = POLLOUT};
		if (e->fd_out >= 0 && room)
			pfd[n++] = (struct pollfd){.fd = e->fd_out, .events = POLLIN};
		if (e->fd_err >= 0 && room)
			pfd[n++] = (struct pollfd){.fd = e->fd_err, .events = POLLIN};
		if (e->fd_ctl >= 0)
			pfd[n++] = (struct pollfd){.fd = e->fd_ctl, .events = POLLIN};
	}
	return n;
}

void repl_poll_ready(struct server *s, int fd, short revents)
{
	for (int l = 0; l < REPL_LANGS; l++) {
		struct repl_engine *e = s->repl[l];
		if (!e || fd < 0)
			continue;
		if (fd == e->fd_code) {
			ssize_t n = write(fd, e->tx.data, e->tx.len);
			if (n > 0)
				agent_buf_consume(&e->tx, (size_t)n);
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				close_fd(&e->fd_code); /* it exits; its reaping ends the run */
		} else if (fd == e->fd_out) {
			pump_output(e, 1);
		} else if (fd == e->fd_err) {
			pump_output(e, 2);
		} else if (fd == e->fd_ctl) {
			/* Output first: it was written before the reply. */
			drain_output(e);
			read_ctl(e);
		} else {
			continue;
		}
		return;
	}
	(void)revents;
}

void repl_reaped(struct server *s, pid_t pid, int status)
{
	for (int l = 0; l < REPL_LANGS; l++) {
		struct repl_engine *e = s->repl[l];
		if (e && e->pid && e->pid == pid) {
			engine_dead(e, status, oom_was_victim(s, pid));
			return;
		}
	}
}

size_t repl_pids(struct server *s, pid_t *out, size_t cap)
{
	size_t n = 0;
	for (int l = 0; l < REPL_LANGS && n < cap; l++)
		if (s->repl[l] && s->repl[l]->pid > 1)
			out[n++] = s->repl[l]->pid;
	return n;
}

void repl_conn_gone(struct server *s, struct conn *c)
{
	uint64_t now = now_ms();
	for (int l = 0; l < REPL_LANGS; l++) {
		struct repl_engine *e = s->repl[l];
		if (!e)
			continue;
		for (struct repl_run *r = e->queue; r; r = r->next)
			if (r->conn == c)
				r->conn = NULL;
		if (e->cur && e->cur->conn == c) {
			e->cur->conn = NULL;
			/* Nobody waits for it: stop it so the next run can go. */
			if (e->pid && !e->timed_out)
				interrupt(e, now);
		}
	}
}

void repl_shutdown(struct server *s)
{
	for (int l = 0; l < REPL_LANGS; l++) {
		struct repl_engine *e = s->repl[l];
		if (!e)
			continue;
		if (e->pid)
			kill_tree(e->pid);
		if (e->cur)
			run_free(e->cur);
		while (e->queue) {
			struct repl_run *r = e->queue;
			e->queue = r->next;
			run_free(r);
		}
		engine_close_fds(e);
		free(e);
		s->repl[l] = NULL;
	}
}
