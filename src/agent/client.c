/* The host's agent client (see client.h). */
#include "agent/client.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/proto.h"
#include "agent/client_int.h"
#include "common/cleanup.h"
#include "common/clock.h"

#define OUT_HIGH (512u << 10) /* stop reading stdin while this much is unsent */

struct agent_exec {
	struct agent_exec *next;
	uint32_t id;
	struct agent_exec_opts o;
	uint64_t stdin_credit;
	bool stdin_done; /* EOF sent (or no stdin) */
	bool started, done, failed;
	struct agent_exec_status st;
	struct msb_err err;
	bool repl; /* a REPL run: ends with REPL_RESULT, output is not windowed */
	struct agent_repl_result rr;
};

struct agent_client {
	int fd;
	struct agent_reader in;
	struct agent_buf out;
	struct agent_exec *execs;
	struct agent_req *reqs; /* other requests in flight (client_int.h) */
	uint32_t next_id;
	char hostname[256];
	char name[128];
	void (*notice)(void *ctx, const char *msg);
	void *notice_ctx;
	bool shutdown_acked;
	uint32_t shutdown_id;
	bool peer_closed; /* the guest closed or reset the connection */
	/* The one simple request (answered by OK or ERROR) in flight. */
	uint32_t req_id;
	bool req_done;
	struct msb_err req_err; /* kind none: it succeeded */
};

static int left_ms(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t l = deadline - msb_now_ms();
	return l < 0 ? 0 : (l > 60000 ? 60000 : (int)l);
}

/* Wait for `events` on fd until the deadline (-1: none). */
static int wait_fd(int fd, short events, int64_t deadline, const char *what, struct msb_err *err)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		int r = poll(&p, 1, left_ms(deadline));
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return msb_err_sys(err, "poll while %s", what);
		if (r == 0 && deadline >= 0 && msb_now_ms() >= deadline)
			return msb_err_set(err, MSB_EK_TIMEOUT, 0, "timed out %s", what);
	}
}

/* Whether a failed syscall means the guest refused or dropped the connection,
 * as it does while its vsock transport resets after a restore. */
static bool peer_gone(int errnum)
{
	return errnum == 0 || errnum == ECONNRESET || errnum == EPIPE || errnum == ECONNABORTED;
}

/* "<verb> <port>\n" to msb-vmm's socket (CONNECT, or PARK for a connection kept
 * across snapshots), then its "OK <n>\n".  *retry tells whether the guest (not
 * msb-vmm, not the caller) refused. */
static int vsock_handshake(const char *uds_path, const char *verb, unsigned port, int64_t deadline,
			   bool *retry, struct msb_err *err)
{
	*retry = false;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(uds_path) >= sizeof(a.sun_path))
		return msb_err_set(err, MSB_EK_USAGE, 0, "vsock socket path too long: %s",
				   uds_path);
	strcpy(a.sun_path, uds_path);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return msb_err_sys(err, "creating a Unix socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return msb_err_set(err, errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_NETWORK, errno,
				   "connecting to the VM's vsock socket %s", uds_path);
	char line[64];
	int n = snprintf(line, sizeof(line), "%s %u\n", verb, port);
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n)
		return msb_err_set(err, MSB_EK_NETWORK, errno, "sending %s to %s", verb, uds_path);
	/* Byte by byte: what follows the line belongs to the guest's stream. */
	size_t len = 0;
	while (len < sizeof(line) - 1) {
		if (wait_fd(fd, POLLIN, deadline, "waiting for the guest to accept", err) < 0)
			return -1;
		ssize_t r = read(fd, line + len, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*retry = peer_gone(r < 0 ? errno : 0);
			return msb_err_set(err, MSB_EK_NETWORK, r < 0 ? errno : 0,
					   "the guest does not accept on vsock port %u "
					   "(is the VM up and its agent ready?)",
					   port);
		}
		if (line[len++] == '\n')
			break;
	}
	line[len] = '\0';
	unsigned host_port;
	if (sscanf(line, "OK %u", &host_port) != 1)
		return msb_err_set(err, MSB_EK_GUEST, 0, "unexpected vsock handshake reply '%.32s'",
				   line);
	return steal_fd(&fd);
}

static int vsock_connect_by(const char *uds_path, unsigned port, int64_t deadline, bool *retry,
			    struct msb_err *err)
{
	return vsock_handshake(uds_path, "CONNECT", port, deadline, retry, err);
}

int agent_vsock_connect(const char *uds_path, unsigned port, int timeout_ms, struct msb_err *err)
{
	bool retry;
	return vsock_connect_by(uds_path, port, timeout_ms < 0 ? -1 : msb_now_ms() + timeout_ms,
				&retry, err);
}

int agent_vsock_park(const char *uds_path, unsigned port, int timeout_ms, struct msb_err *err)
{
	bool retry;
	return vsock_handshake(uds_path, "PARK", port,
			       timeout_ms < 0 ? -1 : msb_now_ms() + timeout_ms, &retry, err);
}

/* ---- frames ---------------------------------------------------------------------- */

static int flush_out(struct agent_client *c, int64_t deadline, struct msb_err *err)
{
	while (c->out.len) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (wait_fd(c->fd, POLLOUT, deadline, "sending to the agent", err) < 0)
				return -1;
			continue;
		}
		if (n < 0) {
			c->peer_closed = peer_gone(errno);
			return msb_err_set(err, MSB_EK_NETWORK, errno, "sending to the agent");
		}
		agent_buf_consume(&c->out, (size_t)n);
	}
	return 0;
}

/* Read what is there (after waiting up to the deadline); 0 when a frame or more
 * may be available, -1 when the connection ended or failed. */
static int read_some(struct agent_client *c, int64_t deadline, struct msb_err *err)
{
	if (wait_fd(c->fd, POLLIN, deadline, "waiting for the agent", err) < 0)
		return -1;
	size_t avail;
	uint8_t *dst = agent_reader_space(&c->in, &avail);
	ssize_t n = read(c->fd, dst, avail);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		c->peer_closed = peer_gone(n < 0 ? errno : 0);
		return msb_err_set(err, MSB_EK_GUEST, n < 0 ? errno : 0,
				   "the agent closed the connection");
	}
	agent_reader_commit(&c->in, (size_t)n);
	return 0;
}

static int hello(struct agent_client *c, int64_t deadline, struct msb_err *err)
{
	agent_msg_begin(&c->out, AGENT_HELLO, 0, 0);
	agent_put_u32(&c->out, AGENT_T_VERSION, AGENT_PROTO_VERSION);
	agent_put_str(&c->out, AGENT_T_NAME, "msb-agent-client 0.1");
	if (agent_msg_end(&c->out, err) < 0 || flush_out(c, deadline, err) < 0)
		return -1;
	for (;;) {
		struct agent_hdr h;
		const uint8_t *p;
		int r = agent_reader_next(&c->in, &h, &p, err);
		if (r < 0)
			return -1;
		if (r == 0) {
			if (read_some(c, deadline, err) < 0)
				return msb_err_wrap(err, "agent HELLO");
			continue;
		}
		if (h.type == AGENT_ERROR) {
			struct agent_error e;
			if (agent_decode_error(p, h.len, &e, err) < 0)
				return -1;
			/* limit: the guest serves all the connections it can ("busy"),
			 * kind state; no retry, the caller decides. */
			msb_err_set(err, agent_err_to_kind(e.kind), 0, "%s%s",
				    e.kind == AGENT_E_LIMIT ? "" : "agent refused HELLO: ",
				    e.msg ? e.msg : agent_err_name(e.kind));
			agent_error_release(&e);
			return -1;
		}
		if (h.type != AGENT_HELLO)
			return msb_err_set(err, MSB_EK_GUEST, 0, "agent answered HELLO with %s",
					   agent_type_name(h.type));
		/* The reply may carry more fields than this version knows: skip them. */
		struct agent_iter it;
		struct agent_field f;
		agent_iter_init(&it, p, h.len);
		while ((r = agent_iter_next(&it, &f, err)) > 0) {
			char *dst = f.tag == AGENT_T_HOSTNAME ? c->hostname
				    : f.tag == AGENT_T_NAME   ? c->name
							      : NULL;
			size_t cap =
				f.tag == AGENT_T_HOSTNAME ? sizeof(c->hostname) : sizeof(c->name);
			if (dst) {
				size_t n = f.len < cap - 1 ? f.len : cap - 1;
				memcpy(dst, f.val, n);
				dst[n] = '\0';
			}
		}
		return r < 0 ? -1 : 0;
	}
}

/* The client over fd (owned from now on) after HELLO; NULL on failure, then
 * *retry tells whether the guest dropped the connection before answering. */
static struct agent_client *client_new(int fd, int64_t deadline, bool *retry, struct msb_err *err)
{
	*retry = false;
	struct agent_client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		msb_err_sys(err, "allocating the agent client");
		return NULL;
	}
	c->fd = fd;
	c->next_id = 1;
	if (agent_reader_init(&c->in, err) < 0 || hello(c, deadline, err) < 0) {
		*retry = c->peer_closed;
		agent_client_free(c);
		return NULL;
	}
	return c;
}

struct agent_client *agent_client_from_fd(int fd, int timeout_ms, struct msb_err *err)
{
	bool retry;
	return client_new(fd, timeout_ms < 0 ? -1 : msb_now_ms() + timeout_ms, &retry, err);
}

/* Without a deadline, how long a refusing guest is retried. */
#define OPEN_RETRY_MS 10000

struct agent_client *agent_client_open(const char *uds_path, int timeout_ms, struct msb_err *err)
{
	int64_t start = msb_now_ms();
	int64_t deadline = timeout_ms < 0 ? -1 : start + timeout_ms;
	int64_t retry_until = timeout_ms < 0 ? start + OPEN_RETRY_MS : deadline;
	for (;;) {
		bool retry;
		int fd = vsock_connect_by(uds_path, AGENT_PORT_AGENT, deadline, &retry, err);
		if (fd >= 0) {
			struct agent_client *c = client_new(fd, deadline, &retry, err);
			if (c)
				return c;
		}
		/* Right after a restore the guest's vsock transport resets: the
		 * first connections may be refused or dropped.  Try again. */
		int64_t now = msb_now_ms();
		if (!retry || now + 20 >= retry_until)
			return NULL;
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

void agent_client_free(struct agent_client *c)
{
	if (!c)
		return;
	while (c->execs) {
		struct agent_exec *e = c->execs;
		c->execs = e->next;
		free(e);
	}
	close(c->fd);
	agent_reader_release(&c->in);
	agent_buf_release(&c->out);
	free(c);
}

int agent_client_fd(const struct agent_client *c)
{
	return c->fd;
}

const char *agent_client_hostname(const struct agent_client *c)
{
	return c->hostname;
}

const char *agent_client_agent_name(const struct agent_client *c)
{
	return c->name;
}

void agent_client_on_notice(struct agent_client *c, void (*fn)(void *ctx, const char *msg),
			    void *ctx)
{
	c->notice = fn;
	c->notice_ctx = ctx;
}

uint32_t agent_client_new_id(struct agent_client *c)
{
	uint32_t id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	return id;
}

void agent_client_req_add(struct agent_client *c, struct agent_req *r)
{
	r->next = c->reqs;
	c->reqs = r;
}

void agent_client_req_del(struct agent_client *c, struct agent_req *r)
{
	for (struct agent_req **pp = &c->reqs; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			return;
		}
	}
}

struct agent_buf *agent_client_out(struct agent_client *c)
{
	return &c->out;
}

int agent_exec_status_code(const struct agent_exec_status *st)
{
	return st->signaled ? 128 + st->signal : st->code;
}

/* ---- commands ------------------------------------------------------------------------- */

struct agent_exec *agent_exec_start(struct agent_client *c, const struct agent_exec_opts *o,
				    struct msb_err *err)
{
	if (!o->argv || !o->argv[0]) {
		msb_err_set(err, MSB_EK_USAGE, 0, "no command given");
		return NULL;
	}
	struct agent_exec *e = calloc(1, sizeof(*e));
	if (!e) {
		msb_err_sys(err, "allocating a command");
		return NULL;
	}
	e->id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	e->o = *o;
	e->stdin_credit = o->stdin_fd >= 0 ? AGENT_INITIAL_WINDOW : 0;
	e->stdin_done = o->stdin_fd < 0;
	agent_msg_begin(&c->out, AGENT_EXEC, e->id, 0);
	for (size_t i = 0; o->argv[i]; i++)
		agent_put_str(&c->out, AGENT_T_ARGV, o->argv[i]);
	for (size_t i = 0; o->env && o->env[i]; i++)
		agent_put_str(&c->out, AGENT_T_ENV, o->env[i]);
	if (o->cwd)
		agent_put_str(&c->out, AGENT_T_CWD, o->cwd);
	if (o->timeout_ms)
		agent_put_u64(&c->out, AGENT_T_TIMEOUT_MS, o->timeout_ms);
	if (o->stdin_fd >= 0)
		agent_put_u32(&c->out, AGENT_T_STDIN, 1);
	if (o->pty) {
		agent_put_u32(&c->out, AGENT_T_PTY, 1);
		if (o->rows && o->cols) {
			agent_put_u32(&c->out, AGENT_T_ROWS, o->rows);
			agent_put_u32(&c->out, AGENT_T_COLS, o->cols);
		}
		if (o->term)
			agent_put_str(&c->out, AGENT_T_TERM, o->term);
	}
	if (agent_msg_end(&c->out, err) < 0) {
		free(e);
		return NULL;
	}
	e->next = c->execs;
	c->execs = e;
	return e;
}

static struct agent_exec *find(struct agent_client *c, uint32_t id)
{
	for (struct agent_exec *e = c->execs; e; e = e->next)
		if (e->id == id)
			return e;
	return NULL;
}

static int write_all(int fd, const uint8_t *p, size_t n, struct msb_err *err)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			if (wait_fd(fd, POLLOUT, -1, "writing output", err) < 0)
				return -1;
			continue;
		}
		if (w < 0)
			return msb_err_sys(err, "writing the command's output");
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int on_frame(struct agent_client *c, const struct agent_hdr *h, const uint8_t *p,
		    struct msb_err *err)
{
	for (struct agent_req *r = c->reqs; r && h->id; r = r->next)
		if (r->id == h->id)
			return r->on_frame(r, c, h, p, err);
	struct agent_error ae;
	if (h->id && h->id == c->req_id && (h->type == AGENT_OK || h->type == AGENT_ERROR)) {
		c->req_done = true;
		if (h->type == AGENT_OK)
			return 0;
		if (agent_decode_error(p, h->len, &ae, err) < 0)
			return -1;
		/* The agent's message already ends with the errno text. */
		msb_err_set(&c->req_err, agent_err_to_kind(ae.kind), 0, "%s",
			    ae.msg ? ae.msg : agent_err_name(ae.kind));
		c->req_err.errnum = (int)ae.errnum;
		agent_error_release(&ae);
		return 0;
	}
	if (h->type == AGENT_ERROR && (h->id == 0 || !find(c, h->id))) {
		if (h->id == c->shutdown_id && h->id) {
			c->shutdown_acked = true;
		}
		if (agent_decode_error(p, h->len, &ae, err) < 0)
			return -1;
		if (c->notice)
			c->notice(c->notice_ctx, ae.msg ? ae.msg : agent_err_name(ae.kind));
		agent_error_release(&ae);
		return 0;
	}
	if (h->type == AGENT_OK) {
		if (h->id && h->id == c->shutdown_id)
			c->shutdown_acked = true;
		return 0;
	}
	struct agent_exec *e = find(c, h->id);
	if (!e || e->done)
		return 0; /* not ours (any more): ignore, the protocol allows growth */
	uint32_t v;
	switch (h->type) {
	case AGENT_STARTED:
		if (agent_decode_u32(p, h->len, h->type, AGENT_T_PID, &v, err) < 0)
			return -1;
		e->started = true;
		e->st.pid = v;
		break;
	case AGENT_DATA: {
		if (h->stream != 1 && h->stream != 2)
			return msb_err_set(err, MSB_EK_GUEST, 0, "output on stream %u", h->stream);
		int fd = h->stream == 1 ? e->o.stdout_fd : e->o.stderr_fd;
		if (fd >= 0 && write_all(fd, p, h->len, err) < 0)
			return -1;
		if (e->o.on_output)
			e->o.on_output(e->o.ctx, (int)h->stream, p, h->len);
		if (h->len && !e->repl) {
			/* Only now, when the bytes are delivered, may more come. */
			agent_msg_begin(&c->out, AGENT_WINDOW, e->id, h->stream);
			agent_put_u32(&c->out, AGENT_T_INCREMENT, h->len);
			if (agent_msg_end(&c->out, err) < 0)
				return -1;
		}
		break;
	}
	case AGENT_WINDOW:
		if (agent_decode_u32(p, h->len, h->type, AGENT_T_INCREMENT, &v, err) < 0)
			return -1;
		if (h->stream == 0)
			e->stdin_credit += v;
		break;
	case AGENT_REPL_RESULT: {
		struct agent_repl_outcome x;
		if (!e->repl)
			break;
		if (agent_decode_repl_result(p, h->len, &x, err) < 0)
			return -1;
		e->done = true;
		e->rr.status = (enum agent_repl_status_kind)x.status;
		e->rr.message = x.message; /* handed on */
		e->rr.restarted = x.restarted;
		break;
	}
	case AGENT_EXIT: {
		struct agent_exit x;
		if (agent_decode_exit(p, h->len, &x, err) < 0)
			return -1;
		e->done = true;
		e->st.signaled = !x.has_code;
		e->st.code = (int)x.code;
		e->st.signal = (int)x.signal;
		e->st.timed_out = x.timed_out;
		e->st.oom_killed = x.oom_killed;
		break;
	}
	case AGENT_ERROR:
		if (agent_decode_error(p, h->len, &ae, err) < 0)
			return -1;
		if (!e->started) {
			e->done = e->failed = true;
			/* The agent's message already ends with the errno text. */
			msb_err_set(&e->err, agent_err_to_kind(ae.kind), 0, "%s",
				    ae.msg ? ae.msg : agent_err_name(ae.kind));
			e->err.errnum = (int)ae.errnum;
		} else if (c->notice) {
			c->notice(c->notice_ctx, ae.msg ? ae.msg : agent_err_name(ae.kind));
		}
		agent_error_release(&ae);
		break;
	default:
		break;
	}
	return 0;
}

static void pump_stdin(struct agent_client *c, struct agent_exec *e, struct msb_err *err)
{
	size_t want = AGENT_DATA_CHUNK;
	if (want > e->stdin_credit)
		want = (size_t)e->stdin_credit;
	uint8_t *dst = agent_buf_reserve(&c->out, AGENT_HDR_SIZE + want);
	if (!dst)
		return;
	ssize_t n = read(e->o.stdin_fd, dst + AGENT_HDR_SIZE, want);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n < 0)
		n = 0; /* an unreadable stdin ends like EOF */
	struct agent_hdr h = {.len = (uint32_t)n,
			      .type = n ? AGENT_DATA : AGENT_EOF,
			      .id = e->id,
			      .stream = AGENT_STDIN};
	agent_hdr_encode(dst, &h);
	c->out.len += AGENT_HDR_SIZE + (size_t)n;
	e->stdin_credit -= (uint64_t)n;
	if (n == 0)
		e->stdin_done = true;
	(void)err;
}

int agent_client_pump(struct agent_client *c, int timeout_ms, struct msb_err *err)
{
	/* Frames already buffered first: poll() cannot see them. */
	struct agent_hdr h;
	const uint8_t *p;
	int r;
	bool any = false;
	while ((r = agent_reader_next(&c->in, &h, &p, err)) > 0) {
		if (on_frame(c, &h, p, err) < 0)
			return -1;
		any = true;
	}
	if (r < 0)
		return -1;
	struct pollfd pfd[65];
	struct agent_exec *who[65];
	size_t n = 0;
	pfd[n++] = (struct pollfd){.fd = c->fd, .events = POLLIN | (c->out.len ? POLLOUT : 0)};
	for (struct agent_exec *e = c->execs; e && n < 65; e = e->next) {
		if (e->done || e->stdin_done || !e->stdin_credit || c->out.len >= OUT_HIGH)
			continue;
		who[n] = e;
		pfd[n++] = (struct pollfd){.fd = e->o.stdin_fd, .events = POLLIN};
	}
	int pr = poll(pfd, n, any ? 0 : timeout_ms);
	if (pr < 0 && errno != EINTR)
		return msb_err_sys(err, "poll");
	if (pr <= 0)
		return 0;
	if (pfd[0].revents & POLLOUT) {
		ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return msb_err_set(err, MSB_EK_GUEST, errno, "sending to the agent");
		if (w > 0)
			agent_buf_consume(&c->out, (size_t)w);
	}
	for (size_t i = 1; i < n; i++)
		if (pfd[i].revents)
			pump_stdin(c, who[i], err);
	if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
		size_t avail;
		uint8_t *dst = agent_reader_space(&c->in, &avail);
		ssize_t got = recv(c->fd, dst, avail, MSG_DONTWAIT);
		if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
			return msb_err_set(err, MSB_EK_GUEST, got < 0 ? errno : 0,
					   "the agent closed the connection");
		if (got > 0)
			agent_reader_commit(&c->in, (size_t)got);
		while ((r = agent_reader_next(&c->in, &h, &p, err)) > 0)
			if (on_frame(c, &h, p, err) < 0)
				return -1;
		if (r < 0)
			return -1;
	}
	return 0;
}

bool agent_exec_done(const struct agent_exec *e)
{
	return e->done;
}

int agent_exec_wait(struct agent_client *c, struct agent_exec *e, struct agent_exec_status *st,
		    struct msb_err *err)
{
	int rc = 0;
	while (!e->done) {
		if (agent_client_pump(c, -1, err) < 0) {
			rc = -1;
			break;
		}
	}
	for (struct agent_exec **pp = &c->execs; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	if (rc == 0 && e->failed) {
		*err = e->err;
		rc = -1;
	}
	if (rc == 0)
		*st = e->st;
	free(e);
	return rc;
}

int agent_exec_signal(struct agent_client *c, struct agent_exec *e, int sig, struct msb_err *err)
{
	agent_msg_begin(&c->out, AGENT_SIGNAL, e->id, 0);
	agent_put_u32(&c->out, AGENT_T_SIGNAL, (uint32_t)sig);
	return agent_msg_end(&c->out, err);
}

int agent_exec_resize(struct agent_client *c, struct agent_exec *e, unsigned rows, unsigned cols,
		      struct msb_err *err)
{
	if (rows == 0 || cols == 0 || rows > 65535 || cols > 65535)
		return msb_err_set(err, MSB_EK_USAGE, 0, "terminal size %ux%u out of range", rows,
				   cols);
	agent_msg_begin(&c->out, AGENT_RESIZE, e->id, 0);
	agent_put_u32(&c->out, AGENT_T_ROWS, rows);
	agent_put_u32(&c->out, AGENT_T_COLS, cols);
	return agent_msg_end(&c->out, err);
}

int agent_exec(struct agent_client *c, const struct agent_exec_opts *o,
	       struct agent_exec_status *st, struct msb_err *err)
{
	struct agent_exec *e = agent_exec_start(c, o, err);
	if (!e)
		return -1;
	return agent_exec_wait(c, e, st, err);
}

int agent_client_shutdown(struct agent_client *c, int timeout_ms, struct msb_err *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : msb_now_ms() + timeout_ms;
	c->shutdown_id = c->next_id++;
	agent_msg_begin(&c->out, AGENT_SHUTDOWN, c->shutdown_id, 0);
	if (agent_msg_end(&c->out, err) < 0 || flush_out(c, deadline, err) < 0)
		return -1;
	while (!c->shutdown_acked) {
		if (deadline >= 0 && msb_now_ms() >= deadline)
			return msb_err_set(err, MSB_EK_TIMEOUT, 0,
					   "the agent did not acknowledge the shutdown");
		struct msb_err e2;
		if (agent_client_pump(c, left_ms(deadline), &e2) < 0)
			return 0; /* the guest went down first: that is success too */
	}
	return 0;
}

/* ---- simple requests ------------------------------------------------------------- */

/* Send the frame built in c->out (id `id`) and wait for its OK or ERROR. */
static int request(struct agent_client *c, uint32_t id, int timeout_ms, const char *what,
		   struct msb_err *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : msb_now_ms() + timeout_ms;
	c->req_id = id;
	c->req_done = false;
	memset(&c->req_err, 0, sizeof(c->req_err));
	int rc = 0;
	if (flush_out(c, deadline, err) < 0) {
		rc = -1;
		goto out;
	}
	while (!c->req_done) {
		if (deadline >= 0 && msb_now_ms() >= deadline) {
			rc = msb_err_set(err, MSB_EK_TIMEOUT, 0,
					 "the agent did not answer %s within %d s", what,
					 timeout_ms / 1000);
			goto out;
		}
		if (agent_client_pump(c, left_ms(deadline), err) < 0) {
			rc = -1;
			goto out;
		}
	}
	if (c->req_err.kind != MSB_EK_NONE) {
		*err = c->req_err;
		rc = -1;
	}
out:
	c->req_id = 0;
	return rc;
}

int agent_setup(struct agent_client *c, const struct agent_setup_opts *o, struct msb_err *err)
{
	/* Refuse here what the agent would refuse, with the same rules. */
	static const struct {
		size_t off;
		const char *what;
		bool (*ok)(const char *, size_t);
	} strs[] = {
		{offsetof(struct agent_setup_opts, root_dev), "root device", agent_valid_dev},
		{offsetof(struct agent_setup_opts, hostname), "hostname", agent_valid_hostname},
		{offsetof(struct agent_setup_opts, machine_id),
		 "machine id (32 lowercase hex digits)", agent_valid_machine_id},
	};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const char *v = *(const char *const *)((const char *)o + strs[i].off);
		if (v && (strlen(v) >= 64 || !strs[i].ok(v, strlen(v))))
			return msb_err_set(err, MSB_EK_USAGE, 0, "setup: bad %s '%.64s'",
					   strs[i].what, v);
	}
	if (o->nwarm > AGENT_WARM_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0, "setup: %zu WARM programs; at most %d",
				   o->nwarm, AGENT_WARM_MAX);
	for (size_t i = 0; i < o->nwarm; i++)
		if (!agent_valid_warm_name(o->warm[i], strlen(o->warm[i])))
			return msb_err_set(err, MSB_EK_USAGE, 0, "setup: bad WARM program '%.64s'",
					   o->warm[i]);
	if (o->warm_path && strlen(o->warm_path) >= AGENT_WARM_PATH_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "setup: WARM_PATH of %zu bytes; at most %d",
				   strlen(o->warm_path), AGENT_WARM_PATH_MAX - 1);
	if (o->entropy_len &&
	    (o->entropy_len < AGENT_ENTROPY_MIN || o->entropy_len > AGENT_ENTROPY_MAX))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "setup: %zu bytes of entropy; give %d to %d", o->entropy_len,
				   AGENT_ENTROPY_MIN, AGENT_ENTROPY_MAX);
	uint32_t id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	agent_msg_begin(&c->out, AGENT_SETUP, id, 0);
	if (o->root_dev)
		agent_put_str(&c->out, AGENT_T_ROOT_DEV, o->root_dev);
	if (o->root_fstype)
		agent_put_str(&c->out, AGENT_T_ROOT_FSTYPE, o->root_fstype);
	if (o->overlay)
		agent_put_str(&c->out, AGENT_T_OVERLAY, o->overlay);
	if (o->hostname)
		agent_put_str(&c->out, AGENT_T_HOSTNAME, o->hostname);
	uint64_t realtime = o->realtime_ns;
	if (o->clock_now) {
		/* As late as possible: the guest's clock is this plus the transit. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		realtime = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	if (realtime)
		agent_put_u64(&c->out, AGENT_T_REALTIME_NS, realtime);
	if (o->entropy_len)
		agent_put_bytes(&c->out, AGENT_T_ENTROPY, o->entropy, o->entropy_len);
	if (o->machine_id)
		agent_put_str(&c->out, AGENT_T_MACHINE_ID, o->machine_id);
	if (o->net)
		agent_put_str(&c->out, AGENT_T_NET, o->net);
	for (size_t i = 0; i < o->nmounts; i++)
		agent_put_str(&c->out, AGENT_T_MOUNT, o->mounts[i]);
	for (size_t i = 0; i < o->nwarm; i++)
		agent_put_str(&c->out, AGENT_T_WARM, o->warm[i]);
	if (o->warm_path)
		agent_put_str(&c->out, AGENT_T_WARM_PATH, o->warm_path);
	if (agent_msg_end(&c->out, err) < 0)
		return -1;
	if (request(c, id, o->timeout_ms ? o->timeout_ms : 120000, "SETUP", err) < 0)
		return msb_err_wrap(err, "setting the guest up");
	return 0;
}

/* ---- REPLs ----------------------------------------------------------------------------- */

void agent_repl_result_release(struct agent_repl_result *r)
{
	free(r->message);
	r->message = NULL;
}

int agent_repl_run_opts(struct agent_client *c, const struct agent_repl_opts *o,
			struct agent_repl_result *result, struct msb_err *err)
{
	memset(result, 0, sizeof(*result));
	if (!o->language || !o->code)
		return msb_err_set(err, MSB_EK_USAGE, 0, "a REPL run needs a language and code");
	struct agent_exec *e = calloc(1, sizeof(*e));
	if (!e)
		return msb_err_sys(err, "allocating a REPL run");
	e->repl = true;
	e->stdin_done = true;
	e->o.stdin_fd = e->o.stdout_fd = e->o.stderr_fd = -1;
	e->o.on_output = o->on_output;
	e->o.ctx = o->ctx;
	e->id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	agent_msg_begin(&c->out, AGENT_REPL_RUN, e->id, 0);
	agent_put_str(&c->out, AGENT_T_LANGUAGE, o->language);
	agent_put_str(&c->out, AGENT_T_CODE, o->code);
	if (o->timeout_ms)
		agent_put_u64(&c->out, AGENT_T_TIMEOUT_MS, o->timeout_ms);
	if (o->cwd)
		agent_put_str(&c->out, AGENT_T_CWD, o->cwd);
	for (size_t i = 0; o->env && o->env[i]; i++)
		agent_put_str(&c->out, AGENT_T_ENV, o->env[i]);
	if (agent_msg_end(&c->out, err) < 0) {
		free(e);
		return msb_err_wrap(err, "sending the code (at most about 1 MiB)");
	}
	e->next = c->execs;
	c->execs = e;
	int rc = 0;
	while (!e->done) {
		if (agent_client_pump(c, -1, err) < 0) {
			rc = -1;
			break;
		}
	}
	for (struct agent_exec **pp = &c->execs; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	if (rc == 0 && e->failed) {
		*err = e->err;
		rc = -1;
	}
	if (rc == 0)
		*result = e->rr;
	else
		agent_repl_result_release(&e->rr);
	free(e);
	return rc;
}

int agent_repl_run(struct agent_client *c, const char *language, const char *code,
		   uint64_t timeout_ms,
		   void (*out_fn)(void *ctx, int stream, const void *data, size_t len), void *ctx,
		   struct agent_repl_result *result, struct msb_err *err)
{
	struct agent_repl_opts o = {.language = language,
				    .code = code,
				    .timeout_ms = timeout_ms,
				    .on_output = out_fn,
				    .ctx = ctx};
	return agent_repl_run_opts(c, &o, result, err);
}
