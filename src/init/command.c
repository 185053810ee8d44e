/* Running commands for the agent server: spawning, stdin, output with flow
 * control, reaping, deadlines (see server.c for the whole picture). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "init/exec.h"
#include "init/oom.h"
#include "init/server_int.h"

/* ---- commands ---------------------------------------------------------------------- */

struct exec *find_exec(struct server *s, struct conn *c, uint32_t id)
{
	for (struct exec *e = s->execs; e; e = e->next)
		if (e->conn == c && e->id == id)
			return e;
	return NULL;
}

void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void exec_free(struct server *s, struct exec *e)
{
	for (struct exec **pp = &s->execs; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	for (int i = 0; i < 3; i++)
		close_fd(&e->fds[i]);
	agent_buf_release(&e->pending);
	free(e);
	s->nexecs--;
}

void handle_exec(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p)
{
	struct msb_err err;
	struct agent_exec_req req;
	if (h->id == 0) {
		send_error(c, 0, AGENT_E_BAD_REQUEST, 0, "EXEC needs a non-zero request id");
		return;
	}
	if (find_exec(s, c, h->id)) {
		send_error(c, h->id, AGENT_E_EXISTS, 0, "request id is already in use");
		return;
	}
	if (s->nexecs >= MAX_EXECS) {
		send_error(c, h->id, AGENT_E_LIMIT, 0, "too many commands are running");
		return;
	}
	if (agent_decode_exec(p, h->len, &req, &err) < 0) {
		send_error(c, h->id,
			   err.kind == MSB_EK_USAGE ? AGENT_E_UNSUPPORTED : AGENT_E_BAD_REQUEST, 0,
			   err.msg);
		return;
	}
	struct exec *e = calloc(1, sizeof(*e));
	if (!e) {
		agent_exec_req_release(&req);
		send_error(c, h->id, AGENT_E_LIMIT, ENOMEM, "out of memory");
		return;
	}
	struct spawned sp;
	uint32_t wire_err;
	if ((req.pty ? pty_spawn(&req, &sp, &wire_err, &err)
		     : exec_spawn(&req, &sp, &wire_err, &err)) < 0) {
		msb_debug("exec %u: %s", h->id, err.msg);
		send_error(c, h->id, wire_err, err.errnum, err.msg);
		agent_exec_req_release(&req);
		free(e);
		return;
	}
	e->conn = c;
	e->id = h->id;
	e->pid = sp.pid;
	e->fds[0] = sp.in_fd;
	e->fds[1] = sp.out_fd;
	e->fds[2] = sp.err_fd;
	e->pty = req.pty;
	e->window[1] = e->window[2] = AGENT_INITIAL_WINDOW;
	e->stdin_credit = req.stdin_stream ? AGENT_INITIAL_WINDOW : 0;
	e->stdin_closed = !req.stdin_stream;
	e->stdin_eof = !req.stdin_stream;
	if (req.timeout_ms) {
		uint64_t now = now_ms();
		e->deadline_ms =
			req.timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + req.timeout_ms;
	}
	agent_exec_req_release(&req);
	e->next = s->execs;
	s->execs = e;
	s->nexecs++;
	agent_msg_begin(&c->out, AGENT_STARTED, e->id, 0);
	agent_put_u32(&c->out, AGENT_T_PID, (uint32_t)e->pid);
	if (agent_msg_end(&c->out, &err) < 0)
		c->closing = true;
}

void handle_stdin(struct conn *c, struct exec *e, const struct agent_hdr *h, const uint8_t *p)
{
	if (h->stream != AGENT_STDIN) {
		send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, "the host may only write stream 0");
		return;
	}
	if (e->stdin_eof) {
		send_error(c, h->id, AGENT_E_BAD_REQUEST, 0,
			   "stdin is closed (no STDIN field in EXEC, or EOF sent)");
		return;
	}
	if (h->len > e->stdin_credit) {
		send_error(c, h->id, AGENT_E_BAD_REQUEST, 0,
			   "stdin data beyond the granted window; dropped");
		return;
	}
	e->stdin_credit -= h->len;
	if (e->stdin_closed) {
		/* The command closed its stdin: drop the bytes, keep the host going. */
		if (h->len)
			send_window(c, e->id, AGENT_STDIN, h->len);
		e->stdin_credit += h->len;
		return;
	}
	agent_put_raw(&e->pending, p, h->len);
	if (e->pending.failed) {
		e->pending.failed = false;
		send_error(c, h->id, AGENT_E_LIMIT, ENOMEM, "out of memory for stdin");
	}
}

/* ---- command I/O ------------------------------------------------------------------- */

void exec_read(struct exec *e, int stream)
{
	struct conn *c = e->conn;
	if (!c) {
		char sink[4096];
		ssize_t n = read(e->fds[stream], sink, sizeof(sink));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			close_fd(&e->fds[stream]);
		return;
	}
	size_t want = AGENT_DATA_CHUNK;
	if (want > e->window[stream])
		want = (size_t)e->window[stream];
	uint8_t *dst = agent_buf_reserve(&c->out, AGENT_HDR_SIZE + want);
	if (!dst)
		return; /* try again later; memory may come back */
	ssize_t n = read(e->fds[stream], dst + AGENT_HDR_SIZE, want);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		n = 0; /* a pipe read error ends the stream like EOF */
	}
	struct agent_hdr h = {.len = (uint32_t)n,
			      .type = n ? AGENT_DATA : AGENT_EOF,
			      .id = e->id,
			      .stream = (uint32_t)stream};
	agent_hdr_encode(dst, &h);
	c->out.len += AGENT_HDR_SIZE + (size_t)n;
	e->window[stream] -= (uint64_t)n;
	if (n == 0)
		close_fd(&e->fds[stream]);
}

void exec_write_stdin(struct exec *e)
{
	ssize_t n = write(e->fds[0], e->pending.data, e->pending.len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		/* EPIPE: the command closed stdin.  Further data is dropped. */
		n = (ssize_t)e->pending.len;
		close_fd(&e->fds[0]);
		e->stdin_closed = true;
	}
	agent_buf_consume(&e->pending, (size_t)n);
	e->stdin_credit += (uint64_t)n;
	if (e->conn && n > 0 && !e->stdin_eof)
		send_window(e->conn, e->id, AGENT_STDIN, (uint32_t)n);
}

/* EXIT is the last frame of a command: after its process was reaped and both
 * output streams reached EOF, so no output can follow it. */
void exec_maybe_finish(struct server *s, struct exec *e)
{
	if (e->stdin_eof && e->pending.len == 0 && e->fds[0] >= 0) {
		if (e->pty)
			pty_send_eof(e->fds[0]);
		close_fd(&e->fds[0]);
		e->stdin_closed = true;
	}
	if (!e->reaped || e->fds[1] >= 0 || e->fds[2] >= 0)
		return;
	struct conn *c = e->conn;
	if (c) {
		struct msb_err err;
		agent_msg_begin(&c->out, AGENT_EXIT, e->id, 0);
		if (WIFSIGNALED(e->status))
			agent_put_u32(&c->out, AGENT_T_SIGNAL, (uint32_t)WTERMSIG(e->status));
		else
			agent_put_u32(&c->out, AGENT_T_EXIT_CODE, (uint32_t)WEXITSTATUS(e->status));
		if (e->timed_out)
			agent_put_u32(&c->out, AGENT_T_TIMED_OUT, 1);
		if (e->oom_killed)
			agent_put_u32(&c->out, AGENT_T_OOM_KILLED, 1);
		if (agent_msg_end(&c->out, &err) < 0)
			c->closing = true;
	}
	exec_free(s, e);
}

void reap(struct server *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			break;
		repl_reaped(s, pid, status);
		for (struct exec *e = s->execs; e; e = e->next) {
			if (e->pid == pid) {
				e->reaped = true;
				e->status = status;
				e->oom_killed = WIFSIGNALED(status) && oom_was_victim(s, pid);
				break;
			}
		}
	}
}

void check_deadlines(struct server *s, uint64_t now)
{
	for (struct exec *e = s->execs; e; e = e->next) {
		if (e->deadline_ms && now >= e->deadline_ms && !e->timed_out) {
			e->timed_out = true;
			/* The whole tree: its output pipes close only when all are gone. */
			kill_tree(e->pid);
		}
	}
}
