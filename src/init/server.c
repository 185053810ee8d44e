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
#include <unistd.h>

#include "agent/proto.h"
#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"
#include "init/exec.h"
#include "init/oom.h"
#include "init/server_int.h"

uint64_t now_ms(void)
{
	return (uint64_t)msb_now_ms();
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
	/* The only signal msb-init ignores: exec.c's child resets it alone. */
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
void send_error(struct conn *c, uint32_t id, uint32_t kind, int errnum, const char *msg)
{
	struct msb_err err;
	if (agent_put_error(&c->out, id, kind, errnum, msg, &err) < 0)
		c->closing = true;
}

void send_simple(struct conn *c, uint16_t type, uint32_t id, uint32_t stream)
{
	struct msb_err err;
	agent_msg_begin(&c->out, type, id, stream);
	if (agent_msg_end(&c->out, &err) < 0)
		c->closing = true;
}

void send_window(struct conn *c, uint32_t id, uint32_t stream, uint32_t inc)
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

/* Whether c may be served: fewer than MAX_CONNS others are.  At the cap, the
 * others whose host has gone already (EOF queued, not yet read: a host that
 * closes one connection and opens the next) are let go first. */
static bool conn_place(struct server *s, const struct conn *c)
{
	size_t served = 0;
	for (size_t i = 0; i < CONN_SLOTS; i++)
		if (s->conns[i] && s->conns[i] != c && s->conns[i]->state == CONN_READY &&
		    !s->conns[i]->closing)
			served++;
	if (served < MAX_CONNS)
		return true;
	for (size_t i = 0; i < CONN_SLOTS; i++) {
		struct conn *o = s->conns[i];
		char b;
		if (o && o != c && o->state == CONN_READY && !o->closing &&
		    recv(o->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
			o->closing = true;
			o->out.len = 0; /* the host is gone; nothing to flush to */
			served--;
		}
	}
	return served < MAX_CONNS;
}

/* The host's HELLO names a version we speak; otherwise an ERROR, and the
 * connection closes. */
static bool hello_ok(struct conn *c, const struct agent_hdr *h, const uint8_t *p)
{
	struct msb_err err;
	struct agent_hello hello;
	if (agent_decode_hello(p, h->len, &hello, &err) < 0) {
		send_error(c, 0, AGENT_E_BAD_REQUEST, 0, err.msg);
		c->closing = true;
		return false;
	}
	uint32_t v = hello.version;
	agent_hello_release(&hello);
	if (v != AGENT_PROTO_VERSION) {
		char msg[128];
		snprintf(msg, sizeof(msg), "protocol version %u is not supported (agent: %u)", v,
			 AGENT_PROTO_VERSION);
		send_error(c, 0, AGENT_E_UNSUPPORTED, 0, msg);
		c->closing = true;
		return false;
	}
	return true;
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
		if (!hello_ok(c, h, p))
			return;
		if (!conn_place(s, c)) {
			char msg[224];
			snprintf(msg, sizeof(msg),
				 "the guest is busy: its agent serves %d connections at once and "
				 "all are open (commands, shells, file transfers); end one, or try "
				 "again when one has finished",
				 MAX_CONNS);
			msb_warn("refusing a host connection: %d are open", MAX_CONNS);
			send_error(c, 0, AGENT_E_LIMIT, 0, msg);
			c->closing = true;
			return;
		}
		c->state = CONN_READY;
		send_hello(s, c);
		return;
	}
	if (files_frame(s, c, h, p))
		return;
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
	case AGENT_SETUP:
		handle_setup(s, c, h, p);
		break;
	case AGENT_RESIZE:
		handle_resize(s, c, h, p);
		break;
	case AGENT_REPL_RUN:
		handle_repl_run(s, c, h, p);
		break;
	case AGENT_SHUTDOWN:
		send_simple(c, AGENT_OK, h->id, 0);
		s->shutdown = true;
		break;
	case AGENT_HELLO:
		/* Answered again: a connection parked in a snapshot (docs/snapshot.md)
		 * exchanged HELLO before it; its next client starts with one. */
		if (hello_ok(c, h, p))
			send_hello(s, c);
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
	/* PARK is msb-vmm's CONNECT that a snapshot keeps; no snapshots here. */
	if ((sscanf(c->line, "CONNECT %u%c", &port, &tail) != 1 &&
	     sscanf(c->line, "PARK %u%c", &port, &tail) != 1) ||
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
	files_conn_closed(s, c);
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
	repl_conn_gone(s, c);
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
	for (slot = 0; slot < CONN_SLOTS && s->conns[slot]; slot++)
		;
	struct conn *c = slot < CONN_SLOTS ? calloc(1, sizeof(*c)) : NULL;
	struct msb_err err;
	if (!c || agent_reader_init(&c->in, &err) < 0) {
		msb_warn("closing a host connection: too many or out of memory");
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

enum { K_SIG, K_LISTEN, K_CONN, K_EXEC, K_READY, K_REPL };

struct slot {
	int kind;
	void *ptr;
	size_t idx;
};

int server_run(struct server *s, struct msb_err *err)
{
	size_t cap = 1 + MAX_LISTENERS + CONN_SLOTS + 3 * MAX_EXECS + 1 + REPL_MAX_FDS;
	_cleanup_free_ struct pollfd *pfd = calloc(cap, sizeof(*pfd));
	_cleanup_free_ struct slot *slots = calloc(cap, sizeof(*slots));
	if (!pfd || !slots)
		return msb_err_sys(err, "allocating the poll set");
	announce_ready(s);
	uint64_t shutdown_at = 0;
	for (;;) {
		uint64_t now = now_ms();
		uint64_t repl_left = repl_tick(s, now); /* may queue frames: before the poll set */
		check_deadlines(s, now);
		uint64_t files_timeout = files_tick(s, now);
		uint64_t oom_timeout = oom_tick(s, now);
		for (struct exec *e = s->execs, *next; e; e = next) {
			next = e->next;
			exec_maybe_finish(s, e);
		}
		bool pending_out = false;
		for (size_t i = 0; i < CONN_SLOTS; i++) {
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
		for (size_t i = 0; i < CONN_SLOTS; i++) {
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
		if (repl_left < timeout)
			timeout = repl_left;
		for (size_t k = repl_poll_add(s, pfd + n); k; k--)
			slots[n++] = (struct slot){K_REPL, NULL, 0};
		if (s->ready_fd >= 0) {
			pfd[n] = (struct pollfd){.fd = s->ready_fd, .events = POLLOUT};
			slots[n++] = (struct slot){K_READY, NULL, 0};
		}
		if (files_timeout < timeout)
			timeout = files_timeout;
		if (oom_timeout < timeout)
			timeout = oom_timeout;
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
			case K_REPL:
				repl_poll_ready(s, pfd[i].fd, re);
				break;
			}
		}
	}
	/* Shutting down: no command outlives the agent. */
	for (struct exec *e = s->execs; e; e = e->next)
		if (!e->reaped)
			kill_tree(e->pid);
	repl_shutdown(s);
	return 0;
}

void server_free(struct server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < CONN_SLOTS; i++)
		if (s->conns[i])
			conn_close(s, i);
	files_free_all(s);
	while (s->execs)
		exec_free(s, s->execs);
	repl_shutdown(s);
	oom_free(s);
	for (size_t i = 0; i < s->nlisteners; i++)
		close(s->listeners[i].fd);
	if (s->sigfd >= 0)
		close(s->sigfd);
	if (s->ready_fd >= 0)
		close(s->ready_fd);
	agent_buf_release(&s->ready_out);
	free(s);
}
