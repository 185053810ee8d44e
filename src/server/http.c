/* libmicrohttpd glue: sockets, threads, request bodies, streamed replies.
 * The request logic itself is srv_handle() (router.c); this file only moves
 * bytes, bounds them and streams file transfers straight to the backend. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "server/internal.h"
#include "server/params.h"
#include "server/stream.h"

#define FILE_ROUTE "/api/v1/sandbox/file"

struct conn {
	bool started;
	char *body;
	size_t len, cap;
	bool too_large;
	/* PUT FILE_ROUTE: bytes go to the backend as they arrive. */
	bool upload;
	void *wh;
	uint64_t written, dropped;
	char *path;
	bool failed; /* a reply is queued already */
	bool upload_failed;
	struct msb_err err;
};

static const char *hdr(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static void fill_request(struct MHD_Connection *mc, const char *url, const char *method,
			 struct srv_request *rq)
{
	memset(rq, 0, sizeof(*rq));
	rq->method = method;
	rq->path = url;
	rq->content_type = hdr(mc, MHD_HTTP_HEADER_CONTENT_TYPE);
	rq->accept = hdr(mc, MHD_HTTP_HEADER_ACCEPT);
	rq->authorization = hdr(mc, MHD_HTTP_HEADER_AUTHORIZATION);
	rq->proxy_authorization = hdr(mc, MHD_HTTP_HEADER_PROXY_AUTHORIZATION);
	rq->origin = hdr(mc, "Origin");
	rq->mcp_session_id = hdr(mc, "Mcp-Session-Id");
	rq->mcp_protocol_version = hdr(mc, "MCP-Protocol-Version");
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	ssize_t n = srv_stream_read(cls, buf, max);
	if (n == 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (n < 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	return n;
}

static void stream_free(void *cls)
{
	srv_stream_free(cls);
}

/* The peer closed (or reset) its end: poll says so without reading. */
static bool socket_alive(void *arg)
{
	struct pollfd p = {.fd = (int)(intptr_t)arg, .events = POLLRDHUP};
	if (poll(&p, 1, 0) <= 0)
		return true;
	return !(p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static enum MHD_Result queue(struct MHD_Connection *mc, struct srv_reply *rp, uint64_t stream_size)
{
	struct MHD_Response *r;
	if (rp->stream) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (ci)
			srv_stream_set_alive_check(rp->stream, socket_alive,
						   (void *)(intptr_t)ci->connect_fd);
		r = MHD_create_response_from_callback(stream_size, 64 * 1024, stream_reader,
						      rp->stream, stream_free);
		if (r)
			rp->stream = NULL; /* MHD owns it now */
	} else {
		r = MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_FREE);
		if (r)
			rp->body = NULL;
	}
	if (!r) {
		srv_reply_release(rp);
		return MHD_NO;
	}
	if (rp->content_type)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rp->content_type);
	MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
	MHD_add_response_header(r, "Access-Control-Expose-Headers", "Mcp-Session-Id");
	for (unsigned i = 0; i < rp->nheaders; i++)
		MHD_add_response_header(r, rp->headers[i].name, rp->headers[i].value);
	enum MHD_Result ret = MHD_queue_response(mc, (unsigned)rp->status, r);
	MHD_destroy_response(r);
	srv_reply_release(rp);
	return ret;
}

/* The own routes' envelope: {"jsonrpc":"2.0","result"|"error"} without id. */
static enum MHD_Result queue_error(struct MHD_Connection *mc, const struct msb_err *err)
{
	struct srv_reply rp = {0};
	json_t *e = json_pack("{s:s,s:{s:i,s:s,s:{s:s}}}", "jsonrpc", "2.0", "error", "code",
			      rpc_error_code(err->kind), "message", err->msg, "data", "kind",
			      msb_err_kind_name(err->kind));
	reply_json(&rp, rpc_http_status(err->kind), e);
	return queue(mc, &rp, 0);
}

static enum MHD_Result queue_result(struct MHD_Connection *mc, json_t *result)
{
	struct srv_reply rp = {0};
	reply_json(&rp, 200, json_pack("{s:s,s:o}", "jsonrpc", "2.0", "result", result));
	return queue(mc, &rp, 0);
}

/* sandbox and path query arguments of FILE_ROUTE, checked like JSON params. */
static int file_args(struct MHD_Connection *mc, const char **sandbox, const char **path,
		     unsigned *mode, struct msb_err *err)
{
	*sandbox = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "sandbox");
	*path = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "path");
	const char *m = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "mode");
	json_t *o = json_pack("{s:s?,s:s?}", "sandbox", *sandbox, "path", *path);
	int r = o ? 0 : msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	const char *tmp;
	if (r == 0)
		r = p_sandbox(o, "sandbox", true, &tmp, err);
	if (r == 0)
		r = p_path(o, "path", &tmp, err);
	json_decref(o);
	if (r == 0 && mode) {
		char *end = NULL;
		unsigned long v = m ? strtoul(m, &end, 8) : 0644;
		if (m && (!*m || *end || v > 07777))
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "Invalid params: `mode` must be octal, e.g. 0644");
		*mode = (unsigned)v;
	}
	return r;
}

static enum MHD_Result upload_begin(struct msb_server *s, struct MHD_Connection *mc, struct conn *c)
{
	const char *sandbox, *path;
	unsigned mode = 0644;
	struct msb_err err = {0};
	c->upload = true;
	if (file_args(mc, &sandbox, &path, &mode, &err) < 0 ||
	    s->be->file_open_write(s->be->self, sandbox, path, mode, &c->wh, &err) < 0) {
		c->failed = true;
		return queue_error(mc, &err);
	}
	c->path = strdup(path);
	return MHD_YES;
}

/* libmicrohttpd cannot reply in the middle of a body: a failed write is
 * remembered, the rest of the body dropped (up to max_body, then the
 * connection is cut), and the error goes out at the end. */
static enum MHD_Result upload_chunk(struct msb_server *s, struct conn *c, const char *data,
				    size_t len)
{
	if (c->upload_failed) {
		c->dropped += len;
		return c->dropped > s->max_body ? MHD_NO : MHD_YES;
	}
	if (s->be->file_write(s->be->self, c->wh, data, len, &c->err) < 0) {
		struct msb_err ignored = {0};
		s->be->file_close_write(s->be->self, c->wh, false, &ignored);
		c->wh = NULL;
		c->upload_failed = true;
		return MHD_YES;
	}
	c->written += len;
	return MHD_YES;
}

static enum MHD_Result upload_end(struct msb_server *s, struct MHD_Connection *mc, struct conn *c)
{
	if (c->upload_failed)
		return queue_error(mc, &c->err);
	struct msb_err err = {0};
	void *wh = c->wh;
	c->wh = NULL;
	if (s->be->file_close_write(s->be->self, wh, true, &err) < 0)
		return queue_error(mc, &err);
	return queue_result(mc, json_pack("{s:s,s:I}", "path", c->path ? c->path : "", "size",
					  (json_int_t)c->written));
}

static enum MHD_Result download(struct msb_server *s, struct MHD_Connection *mc)
{
	const char *sandbox, *path;
	struct msb_err err = {0};
	void *h = NULL;
	uint64_t size = 0;
	if (file_args(mc, &sandbox, &path, NULL, &err) < 0 ||
	    s->be->file_open_read(s->be->self, sandbox, path, &h, &size, &err) < 0)
		return queue_error(mc, &err);
	struct srv_reply rp = {0};
	rp.stream = srv_stream_file_new(s, h);
	if (!rp.stream) {
		s->be->file_close_read(s->be->self, h);
		msb_err_set(&err, MSB_EK_SYSTEM, 0, "out of memory");
		return queue_error(mc, &err);
	}
	reply_set(&rp, 200, "application/octet-stream", NULL, 0);
	/* The size is what open saw; a file that changes after it ends early
	 * (the connection drops) rather than lying about its length. */
	return queue(mc, &rp, size);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct msb_server *s = cls;
	struct conn *c = *con_cls;
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return MHD_NO;
		*con_cls = c;
		bool is_file = strcmp(url, FILE_ROUTE) == 0;
		struct srv_request rq;
		fill_request(mc, url, method, &rq);
		if (is_file) {
			struct srv_reply rp = {0};
			if (!srv_authorized(s, &rq, &rp)) {
				c->failed = true;
				return queue(mc, &rp, 0);
			}
			srv_reply_release(&rp);
			if (strcmp(method, "PUT") == 0)
				return upload_begin(s, mc, c);
			if (strcmp(method, "GET") == 0) {
				c->failed = true;
				return download(s, mc);
			}
			c->failed = true;
			rp.status = 405;
			return queue(mc, &rp, 0);
		}
		/* A declared length over the limit is refused before it is read. */
		const char *cl = hdr(mc, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > s->max_body)
			c->too_large = true;
		if (c->too_large) {
			rq.body_too_large = true;
			struct srv_reply rp = {0};
			srv_handle(s, &rq, &rp);
			c->failed = true;
			return queue(mc, &rp, 0);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (c->failed)
			return MHD_YES; /* the reply is out; the rest is dropped */
		if (c->upload)
			return upload_chunk(s, c, upload, n);
		if (c->too_large || n > s->max_body - c->len) {
			/* A chunked body grew past the limit.  libmicrohttpd cannot reply
			 * mid-body, so the rest is read and dropped, and 413 goes out at
			 * the end; a client that sends on and on past 4x the limit is
			 * cut off. */
			c->too_large = true;
			c->dropped += n;
			return c->dropped > 4 * (uint64_t)s->max_body ? MHD_NO : MHD_YES;
		}
		if (c->len + n > c->cap) {
			size_t cap = c->cap ? c->cap : 4096;
			while (cap < c->len + n)
				cap *= 2;
			char *b = realloc(c->body, cap);
			if (!b)
				return MHD_NO;
			c->body = b;
			c->cap = cap;
		}
		memcpy(c->body + c->len, upload, n);
		c->len += n;
		return MHD_YES;
	}
	if (c->failed)
		return MHD_YES;
	if (c->upload)
		return upload_end(s, mc, c);
	struct srv_request rq;
	fill_request(mc, url, method, &rq);
	rq.body = c->body;
	rq.body_len = c->len;
	rq.body_too_large = c->too_large;
	struct srv_reply rp = {0};
	/* A long backend call (command.run) can see that its client went away. */
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		sb_client_set(socket_alive, (void *)(intptr_t)ci->connect_fd);
	srv_handle(s, &rq, &rp);
	sb_client_set(NULL, NULL);
	msb_debug("%s %s -> %d", method, url, rp.status);
	return queue(mc, &rp, MHD_SIZE_UNKNOWN);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct msb_server *s = cls;
	struct conn *c = *con_cls;
	if (!c)
		return;
	if (c->wh) {
		/* The client went away mid-upload: nothing half-written stays. */
		struct msb_err ignored = {0};
		s->be->file_close_write(s->be->self, c->wh, false, &ignored);
	}
	free(c->path);
	free(c->body);
	free(c);
	*con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	msb_info("http: %s", buf);
}

static int listen_socket(struct msb_server *s, struct msb_err *err)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, s->host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(s->port);
		len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, s->host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(s->port);
		len = sizeof(*v6);
	} else {
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "--host '%s' is not an IP address; give one such as 127.0.0.1",
				   s->host);
	}
	_cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return msb_err_sys(err, "creating the listening socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		if (errno == EADDRINUSE)
			return msb_err_set(err, MSB_EK_STATE, EADDRINUSE,
					   "port %u on %s is in use; stop what uses it or pick "
					   "another port with --port",
					   s->port, s->host);
		return msb_err_sys(err, "binding %s port %u", s->host, s->port);
	}
	if (listen(fd, 128) < 0)
		return msb_err_sys(err, "listening on %s port %u", s->host, s->port);
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);
	if (getsockname(fd, (struct sockaddr *)&got, &glen) == 0)
		s->bound_port =
			ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
							: ((struct sockaddr_in *)&got)->sin_port);
	return steal_fd(&fd);
}

int msb_server_listen(struct msb_server *s, struct msb_err *err)
{
	int fd = listen_socket(s, err);
	if (fd < 0)
		return -1;
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, fd,
		MHD_OPTION_CONNECTION_LIMIT, s->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
		s->idle_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!d) {
		close(fd);
		return msb_err_set(err, MSB_EK_SYSTEM, 0,
				   "libmicrohttpd could not start on %s port %u", s->host,
				   s->bound_port);
	}
	s->mhd = d;
	return 0;
}

uint16_t msb_server_port(const struct msb_server *s)
{
	return s->bound_port;
}

void msb_server_free(struct msb_server *s)
{
	if (!s)
		return;
	atomic_store(&s->stopping, true);
	/* Stop accepting, then stop the sandboxes, so that requests blocked in
	 * the backend (a long command, a start) fail and return; only then join
	 * the connection threads.  Streams end within one backend wait. */
	if (s->mhd) {
		MHD_socket ls = MHD_quiesce_daemon(s->mhd);
		if (ls != MHD_INVALID_SOCKET)
			close(ls);
	}
	if (s->be && s->be->shutdown)
		s->be->shutdown(s->be->self);
	if (s->mhd)
		MHD_stop_daemon(s->mhd);
	mcp_sessions_free(s->mcp);
	free(s->host);
	free(s->key);
	free(s->project_dir);
	free(s);
}
