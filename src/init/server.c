/* The agent server's event loop: connections, requests, commands.
 *
 * Back-pressure, end to end: a command's output is read from its pipe only
 * while the host has granted credit for that stream (WINDOW) and while the
 * connection's outgoing buffer is below OUT_HIGH; stdin from the host is
 * accepted only up to the credit we granted, and credit is granted back only
 * once the bytes went into the command's pipe.  So every buffer is bounded and
 * a slow reader slows the command down instead of filling memory.
 */
#include "init/server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/proto.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "init/exec.h"

#define MAX_LISTENERS	4
#define MAX_CONNS	32
#define MAX_EXECS	256 /* across all connections */
#define MAX_BOOT_ERRORS 16
#define OUT_HIGH	(1u << 20) /* stop producing for a connection above this */
#define HANDSHAKE_MAX	64
#define AGENT_NAME	"msb-init 0.1"

enum conn_state { CONN_HANDSHAKE, CONN_HELLO, CONN_READY };

struct conn {
	int fd;
	enum conn_state state;
	struct agent_reader in;
	struct agent_buf out;
	char line[HANDSHAKE_MAX];
	size_t line_len;
	bool closing; /* close once `out` is flushed */
};

struct exec {
	struct exec *next;
	struct conn *conn; /* NULL once its connection went away */
	uint32_t id;
	pid_t pid;
	int fds[3];		  /* stdin (write end), stdout, stderr (read ends); -1 closed */
	uint64_t window[3];	  /* stdout/stderr: credit the host granted us */
	uint64_t stdin_credit;	  /* stdin bytes the host may still send */
	struct agent_buf pending; /* stdin received, not yet in the pipe */
	bool stdin_eof;		  /* the host sent EOF on stdin */
	bool stdin_closed;	  /* and we closed the pipe (or the command did) */
	bool reaped;
	int status;
	uint64_t deadline_ms; /* 0: none */
	bool timed_out;
};

struct server {
	struct server_opts opts;
	char hostname[256];
	int sigfd;
	struct {
		int fd;
		enum listener_role role;
	} listeners[MAX_LISTENERS];
	size_t nlisteners;
	struct conn *conns[MAX_CONNS];
	struct exec *execs;
	size_t nexecs;
	struct msb_err boot_errors[MAX_BOOT_ERRORS];
	size_t nboot_errors;
	int ready_fd;
	struct agent_buf ready_out;
	bool shutdown;
	unsigned next_host_port;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct server *server_new(const struct server_opts *opts, struct msb_err *err)
{
	struct server *s = calloc(1, sizeof(*s));
	if (!s) {
		msb_err_sys(err, "allocating the agent server");
		return NULL;
	}
	s->opts = *opts;
	s->ready_fd = -1;
	s->sigfd = -1;
	s->next_host_port = 1u << 30;
	if (opts->hostname)
		snprintf(s->hostname, sizeof(s->hostname), "%s", opts->hostname);
	else if (gethostname(s->hostname, sizeof(s->hostname) - 1) < 0)
		s->hostname[0] = '\0';
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
		msb_err_sys(err, "blocking SIGCHLD");
		goto fail;
	}
	s->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->sigfd < 0) {
		msb_err_sys(err, "creating the SIGCHLD signalfd");
		goto fail;
	}
	/* A host that goes away mid-write must not kill the agent. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		msb_err_sys(err, "ignoring SIGPIPE");
		goto fail;
	}
	return s;
fail:
	server_free(s);
	return NULL;
}

int server_add_listener(struct server *s, int fd, enum listener_role role, struct msb_err *err)
{
	if (s->nlisteners == MAX_LISTENERS) {
		close(fd);
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "too many listeners");
	}
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		msb_err_sys(err, "making a listener non-blocking");
		close(fd);
		return -1;
	}
	s->listeners[s->nlisteners].fd = fd;
	s->listeners[s->nlisteners].role = role;
	s->nlisteners++;
	return 0;
}

void server_add_boot_error(struct server *s, const struct msb_err *e)
{
	if (s->nboot_errors < MAX_BOOT_ERRORS)
		s->boot_errors[s->nboot_errors++] = *e;
}

/* ---- sending --------------------------------------------------------------------- */

/* Queue an error frame; a failure to even build it closes the connection. */
static void send_error(struct conn *c, uint32_t id, uint32_t kind, int errnum, const char *msg)
{
	struct msb_err err;
	if (agent_put_error(&c->out, id, kind, errnum, msg, &err) < 0)
		c->closing = true;
}

static void send_simple(struct conn *c, uint16_t type, uint32_t id, uint32_t stream)
{
	struct msb_err err;
	agent_msg_begin(&c->out, type, id, stream);
	if (agent_msg_end(&c->out, &err) < 0)
		c->closing = true;
}

static void send_window(struct conn *c, uint32_t id, uint32_t stream, uint32_t inc)
{
	struct msb_err err;
	agent_msg_begin(&c->out, AGENT_WINDOW, id, stream);
	agent_put_u32(&c->out, AGENT_T_INCREMENT, inc);
	if (agent_msg_end(&c->out, &err) < 0)
		c->closing = true;
}

static void send_hello(struct server *s, struct conn *c)
{
	struct msb_err err;
	agent_msg_begin(&c->out, AGENT_HELLO, 0, 0);
	agent_put_u32(&c->out, AGENT_T_VERSION, AGENT_PROTO_VERSION);
	agent_put_str(&c->out, AGENT_T_NAME, AGENT_NAME);
	agent_put_str(&c->out, AGENT_T_HOSTNAME, s->hostname);
	if (agent_msg_end(&c->out, &err) < 0) {
		c->closing = true;
		return;
	}
	for (size_t i = 0; i < s->nboot_errors; i++)
		send_error(c, 0, AGENT_E_SYSTEM, 0, s->boot_errors[i].msg);
}

/* ---- commands ---------------------------------------------------------------------- */

static struct exec *find_exec(struct server *s, struct conn *c, uint32_t id)
{
	for (struct exec *e = s->execs; e; e = e->next)
		if (e->conn == c && e->id == id)
			return e;
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static void exec_free(struct server *s, struct exec *e)
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

static void handle_exec(struct server *s, struct conn *c, const struct agent_hdr *h,
			const uint8_t *p)
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
	if (exec_spawn(&req, &sp, &wire_err, &err) < 0) {
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

static void handle_stdin(struct conn *c, struct exec *e, const struct agent_hdr *h,
			 const uint8_t *p)
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

static void handle_frame(struct server *s, struct conn *c, const struct agent_hdr *h,
			 const uint8_t *p)
{
	struct msb_err err;
	if (c->state == CONN_HELLO) {
		if (h->type != AGENT_HELLO) {
			send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, "send HELLO first");
			return;
		}
		struct agent_hello hello;
		if (agent_decode_hello(p, h->len, &hello, &err) < 0) {
			send_error(c, 0, AGENT_E_BAD_REQUEST, 0, err.msg);
			c->closing = true;
			return;
		}
		uint32_t v = hello.version;
		agent_hello_release(&hello);
		if (v != AGENT_PROTO_VERSION) {
			char msg[128];
			snprintf(msg, sizeof(msg),
				 "protocol version %u is not supported (agent: %u)", v,
				 AGENT_PROTO_VERSION);
			send_error(c, 0, AGENT_E_UNSUPPORTED, 0, msg);
			c->closing = true;
			return;
		}
		c->state = CONN_READY;
		send_hello(s, c);
		return;
	}
	struct exec *e;
	uint32_t v;
	switch (h->type) {
	case AGENT_EXEC:
		handle_exec(s, c, h, p);
		break;
	case AGENT_DATA:
	case AGENT_EOF:
		e = find_exec(s, c, h->id);
		if (!e)
			break; /* the command ended while the host was still sending */
		if (h->type == AGENT_DATA)
			handle_stdin(c, e, h, p);
		else if (h->stream == AGENT_STDIN)
			e->stdin_eof = true;
		break;
	case AGENT_WINDOW:
		if (agent_decode_u32(p, h->len, h->type, AGENT_T_INCREMENT, &v, &err) < 0) {
			send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, err.msg);
			break;
		}
		e = find_exec(s, c, h->id);
		if (e && (h->stream == AGENT_STDOUT || h->stream == AGENT_STDERR) &&
		    e->window[h->stream] + v <= (1ull << 40))
			e->window[h->stream] += v;
		break;
	case AGENT_SIGNAL:
		if (agent_decode_u32(p, h->len, h->type, AGENT_T_SIGNAL, &v, &err) < 0) {
			send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, err.msg);
			break;
		}
		e = find_exec(s, c, h->id);
		if (!e) {
			send_error(c, h->id, AGENT_E_NOT_FOUND, 0, "no such command");
		} else if (v == 0 || v >= (uint32_t)NSIG) {
			send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, "bad signal number");
		} else if (!e->reaped && kill(-e->pid, (int)v) < 0 && errno != ESRCH) {
			send_error(c, h->id, agent_err_from_errno(errno), errno, "kill");
		}
		break;
	case AGENT_SHUTDOWN:
		send_simple(c, AGENT_OK, h->id, 0);
		s->shutdown = true;
		break;
	case AGENT_HELLO:
		send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, "HELLO was already exchanged");
		break;
	default: {
		char msg[96];
		snprintf(msg, sizeof(msg), "unknown message type %#x", h->type);
		send_error(c, h->id, AGENT_E_UNSUPPORTED, 0, msg);
	}
	}
}

/* "CONNECT <port>\n": msb-vmm's hybrid vsock handshake, emulated for tests. */
static void handle_handshake(struct server *s, struct conn *c)
{
	char *nl = memchr(c->line, '\n', c->line_len);
	if (!nl) {
		if (c->line_len == sizeof(c->line))
			c->closing = true;
		return;
	}
	*nl = '\0';
	unsigned port = 0;
	char tail;
	if (sscanf(c->line, "CONNECT %u%c", &port, &tail) != 1 ||
	    (port != AGENT_PORT_AGENT && port != AGENT_PORT_POWER)) {
		c->closing = true; /* nothing listens there: close, as msb-vmm does */
		return;
	}
	char ok[32];
	int n = snprintf(ok, sizeof(ok), "OK %u\n", s->next_host_port++);
	agent_put_raw(&c->out, ok, (size_t)n);
	if (port == AGENT_PORT_POWER) {
		s->shutdown = true;
		c->closing = true;
		return;
	}
	/* Whatever followed the line already is the start of the agent stream. */
	size_t rest = c->line_len - (size_t)(nl + 1 - c->line), avail;
	uint8_t *dst = agent_reader_space(&c->in, &avail);
	memcpy(dst, nl + 1, rest);
	agent_reader_commit(&c->in, rest);
	c->state = CONN_HELLO;
}

static void conn_close(struct server *s, size_t idx)
{
	struct conn *c = s->conns[idx];
	for (struct exec *e = s->execs; e; e = e->next) {
		if (e->conn != c)
			continue;
		/* Nobody can see the output any more: end the command. */
		if (!e->reaped)
			kill_tree(e->pid);
		e->conn = NULL;
		for (int i = 0; i < 3; i++)
			close_fd(&e->fds[i]);
	}
	close(c->fd);
	agent_reader_release(&c->in);
	agent_buf_release(&c->out);
	free(c);
	s->conns[idx] = NULL;
}

static void conn_read(struct server *s, struct conn *c)
{
	struct msb_err err;
	if (c->state == CONN_HANDSHAKE) {
		/* Byte by byte: nothing after the line may be consumed here. */
		ssize_t n = read(c->fd, c->line + c->line_len, 1);
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				c->closing = true, c->out.len = 0;
			return;
		}
		c->line_len += (size_t)n;
		handle_handshake(s, c);
		if (c->state != CONN_HELLO)
			return;
	} else {
		size_t avail;
		uint8_t *dst = agent_reader_space(&c->in, &avail);
		ssize_t n = read(c->fd, dst, avail);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			c->closing = true;
			c->out.len = 0; /* the host is gone; nothing to flush to */
			return;
		}
		if (n < 0)
			return;
		agent_reader_commit(&c->in, (size_t)n);
	}
	struct agent_hdr h;
	const uint8_t *p;
	int r;
	while (!c->closing && (r = agent_reader_next(&c->in, &h, &p, &err)) != 0) {
		if (r < 0) {
			msb_warn("closing a host connection: %s", err.msg);
			send_error(c, 0, AGENT_E_BAD_REQUEST, 0, err.msg);
			c->closing = true;
			return;
		}
		handle_frame(s, c, &h, p);
	}
}

static void conn_write(struct conn *c)
{
	ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			c->closing = true;
			c->out.len = 0;
		}
		return;
	}
	agent_buf_consume(&c->out, (size_t)n);
}

/* ---- command I/O ------------------------------------------------------------------- */

static void exec_read(struct exec *e, int stream)
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

static void exec_write_stdin(struct exec *e)
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
static void exec_maybe_finish(struct server *s, struct exec *e)
{
	if (e->stdin_eof && e->pending.len == 0 && e->fds[0] >= 0) {
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
		if (agent_msg_end(&c->out, &err) < 0)
			c->closing = true;
	}
	exec_free(s, e);
}

static void reap(struct server *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			break;
		for (struct exec *e = s->execs; e; e = e->next) {
			if (e->pid == pid) {
				e->reaped = true;
				e->status = status;
				break;
			}
		}
	}
}

static void check_deadlines(struct server *s, uint64_t now)
{
	for (struct exec *e = s->execs; e; e = e->next) {
		if (e->deadline_ms && now >= e->deadline_ms && !e->timed_out) {
			e->timed_out = true;
			/* The whole tree: its output pipes close only when all are gone. */
			kill_tree(e->pid);
		}
	}
}

/* ---- the loop ------------------------------------------------------------------------- */

static void accept_on(struct server *s, size_t li)
{
	int fd = accept4(s->listeners[li].fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			msb_warn("accept: %s", strerror(errno));
		return;
	}
	if (s->listeners[li].role == LISTEN_POWER) {
		msb_info("power-off requested on the power port");
		close(fd);
		s->shutdown = true;
		return;
	}
	size_t slot;
	for (slot = 0; slot < MAX_CONNS && s->conns[slot]; slot++)
		;
	struct conn *c = slot < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
	struct msb_err err;
	if (!c || agent_reader_init(&c->in, &err) < 0) {
		msb_warn("refusing a host connection: too many or out of memory");
		free(c);
		close(fd);
		return;
	}
	c->fd = fd;
	c->state = s->listeners[li].role == LISTEN_HYBRID ? CONN_HANDSHAKE : CONN_HELLO;
	s->conns[slot] = c;
}

static void announce_ready(struct server *s)
{
	if (!s->opts.ready_connect)
		return;
	s->ready_fd = s->opts.ready_connect(s->opts.ready_ctx);
	if (s->ready_fd < 0)
		return;
	struct msb_err err;
	agent_msg_begin(&s->ready_out, AGENT_READY, 0, 0);
	agent_put_u32(&s->ready_out, AGENT_T_VERSION, AGENT_PROTO_VERSION);
	agent_put_str(&s->ready_out, AGENT_T_NAME, AGENT_NAME);
	agent_put_str(&s->ready_out, AGENT_T_HOSTNAME, s->hostname);
	if (agent_msg_end(&s->ready_out, &err) < 0)
		close_fd(&s->ready_fd);
}

static void ready_write(struct server *s)
{
	ssize_t n = send(s->ready_fd, s->ready_out.data, s->ready_out.len, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR || errno == EINPROGRESS))
		return;
	if (n < 0)
		msb_info("announcing ready: %s (nobody listens; fine)", strerror(errno));
	else
		agent_buf_consume(&s->ready_out, (size_t)n);
	if (n < 0 || s->ready_out.len == 0) {
		close_fd(&s->ready_fd);
		agent_buf_release(&s->ready_out);
	}
}

enum { K_SIG, K_LISTEN, K_CONN, K_EXEC, K_READY };

struct slot {
	int kind;
	void *ptr;
	size_t idx;
};

int server_run(struct server *s, struct msb_err *err)
{
	size_t cap = 1 + MAX_LISTENERS + MAX_CONNS + 3 * MAX_EXECS + 1;
	_cleanup_free_ struct pollfd *pfd = calloc(cap, sizeof(*pfd));
	_cleanup_free_ struct slot *slots = calloc(cap, sizeof(*slots));
	if (!pfd || !slots)
		return msb_err_sys(err, "allocating the poll set");
	announce_ready(s);
	uint64_t shutdown_at = 0;
	for (;;) {
		uint64_t now = now_ms();
		check_deadlines(s, now);
		for (struct exec *e = s->execs, *next; e; e = next) {
			next = e->next;
			exec_maybe_finish(s, e);
		}
		bool pending_out = false;
		for (size_t i = 0; i < MAX_CONNS; i++) {
			struct conn *c = s->conns[i];
			if (c && c->closing && c->out.len == 0)
				conn_close(s, i);
			else if (c && c->out.len)
				pending_out = true;
		}
		if (s->shutdown) {
			/* Flush the OK of SHUTDOWN for a moment, not forever. */
			if (!shutdown_at)
				shutdown_at = now + 1000;
			if (!pending_out || now >= shutdown_at)
				break;
		}

		size_t n = 0;
		pfd[n] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
		slots[n++] = (struct slot){K_SIG, NULL, 0};
		for (size_t i = 0; i < s->nlisteners && !s->shutdown; i++) {
			pfd[n] = (struct pollfd){.fd = s->listeners[i].fd, .events = POLLIN};
			slots[n++] = (struct slot){K_LISTEN, NULL, i};
		}
		for (size_t i = 0; i < MAX_CONNS; i++) {
			struct conn *c = s->conns[i];
			if (!c)
				continue;
			short ev = 0;
			if (!c->closing && c->out.len < OUT_HIGH)
				ev |= POLLIN;
			if (c->out.len)
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
			slots[n++] = (struct slot){K_CONN, c, i};
		}
		uint64_t timeout = UINT64_MAX;
		for (struct exec *e = s->execs; e; e = e->next) {
			for (int st = 0; st < 3; st++) {
				if (e->fds[st] < 0)
					continue;
				short ev;
				if (st == 0)
					ev = e->pending.len ? POLLOUT : 0;
				else if (!e->conn)
					ev = POLLIN;
				else
					ev = e->window[st] && e->conn->out.len < OUT_HIGH ? POLLIN
											  : 0;
				if (!ev)
					continue;
				pfd[n] = (struct pollfd){.fd = e->fds[st], .events = ev};
				slots[n++] = (struct slot){K_EXEC, e, (size_t)st};
			}
			if (e->deadline_ms && !e->timed_out) {
				uint64_t left = e->deadline_ms > now ? e->deadline_ms - now : 0;
				if (left < timeout)
					timeout = left;
			}
		}
		if (s->ready_fd >= 0) {
			pfd[n] = (struct pollfd){.fd = s->ready_fd, .events = POLLOUT};
			slots[n++] = (struct slot){K_READY, NULL, 0};
		}
		if (s->shutdown && timeout > 100)
			timeout = 100;
		int pr =
			poll(pfd, n,
			     timeout == UINT64_MAX ? -1 : (int)(timeout > 60000 ? 60000 : timeout));
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			return msb_err_sys(err, "poll");
		}
		for (size_t i = 0; i < n; i++) {
			short re = pfd[i].revents;
			if (!re)
				continue;
			struct slot *sl = &slots[i];
			switch (sl->kind) {
			case K_SIG:
				reap(s);
				break;
			case K_LISTEN:
				accept_on(s, sl->idx);
				break;
			case K_CONN: {
				struct conn *c = sl->ptr;
				if (s->conns[sl->idx] != c)
					break;
				if (re & POLLOUT)
					conn_write(c);
				if ((re & (POLLIN | POLLHUP | POLLERR)) && !c->closing)
					conn_read(s, c);
				else if ((re & (POLLHUP | POLLERR)) && !(re & POLLOUT))
					c->closing = true, c->out.len = 0;
				break;
			}
			case K_EXEC: {
				struct exec *e = sl->ptr;
				/* An exec freed in this round is not in the list any more. */
				bool live = false;
				for (struct exec *x = s->execs; x; x = x->next)
					live |= x == e;
				if (!live || e->fds[sl->idx] < 0)
					break;
				if (sl->idx == 0)
					exec_write_stdin(e);
				else
					exec_read(e, (int)sl->idx);
				break;
			}
			case K_READY:
				ready_write(s);
				break;
			}
		}
	}
	/* Shutting down: no command outlives the agent. */
	for (struct exec *e = s->execs; e; e = e->next)
		if (!e->reaped)
			kill_tree(e->pid);
	return 0;
}

void server_free(struct server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < MAX_CONNS; i++)
		if (s->conns[i])
			conn_close(s, i);
	while (s->execs)
		exec_free(s, s->execs);
	for (size_t i = 0; i < s->nlisteners; i++)
		close(s->listeners[i].fd);
	if (s->sigfd >= 0)
		close(s->sigfd);
	if (s->ready_fd >= 0)
		close(s->ready_fd);
	agent_buf_release(&s->ready_out);
	free(s);
}
