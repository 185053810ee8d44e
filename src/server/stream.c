/* Streamed bodies: exec events as NDJSON or SSE, file bytes. */
#include "server/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"
#include "server/internal.h"

enum stream_kind { SK_EXEC, SK_FILE };
enum exec_state { ST_ANNOUNCE, ST_EVENTS, ST_DONE };

struct srv_stream {
	enum stream_kind kind;
	struct msb_server *s;
	enum srv_stream_format fmt;
	char id[SB_EXEC_ID_MAX];
	enum exec_state state;
	char *pending;
	size_t plen, poff;
	time_t last_send;
	void *fh;
	bool (*alive)(void *arg);
	void *alive_arg;
	bool gone;
};

void srv_stream_set_alive_check(struct srv_stream *st, bool (*alive)(void *arg), void *arg)
{
	st->alive = alive;
	st->alive_arg = arg;
}

static char *frame(enum srv_stream_format fmt, const char *event, json_t *obj, size_t *len)
{
	size_t jlen = 0;
	char *j = json_dump_compact(obj, &jlen);
	if (!j)
		return NULL;
	char *out = NULL;
	int n;
	if (fmt == STREAM_SSE)
		n = asprintf(&out, "event: %s\ndata: %s\n\n", event, j);
	else
		n = asprintf(&out, "%s\n", j);
	free(j);
	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return out;
}

char *stream_encode_json(enum srv_stream_format fmt, const char *event, json_t *obj, size_t *len)
{
	json_t *o = json_deep_copy(obj);
	if (!o)
		return NULL;
	/* "event" first, so NDJSON readers can switch on it. */
	json_t *full = json_pack("{s:s}", "event", event);
	json_object_update(full, o);
	json_decref(o);
	char *r = frame(fmt, event, full, len);
	json_decref(full);
	return r;
}

char *stream_encode_event(enum srv_stream_format fmt, const struct sb_exec_event *ev, size_t *len)
{
	json_t *o = json_object();
	const char *event;
	if (ev->type == SB_EV_EXIT) {
		event = "exit";
		json_object_set_new(o, "exit_code", json_integer(ev->exit_code));
		json_object_set_new(o, "signal",
				    ev->signal ? json_integer(ev->signal) : json_null());
		json_object_set_new(o, "timed_out", json_boolean(ev->timed_out));
		json_object_set_new(o, "out_of_memory", json_boolean(ev->oom_killed));
	} else {
		event = ev->type == SB_EV_STDERR ? "stderr" : "stdout";
		/* json_stringn refuses invalid UTF-8: such chunks go as base64. */
		json_t *text = json_stringn(ev->data ? ev->data : "", ev->len);
		if (text) {
			json_object_set_new(o, "data", text);
		} else {
			char *b = msb_b64_encode(ev->data, ev->len, NULL);
			if (!b) {
				json_decref(o);
				return NULL;
			}
			json_object_set_new(o, "data_base64", json_string(b));
			free(b);
		}
	}
	char *r = stream_encode_json(fmt, event, o, len);
	json_decref(o);
	return r;
}

struct srv_stream *srv_stream_exec_new(struct msb_server *s, const char *id,
				       enum srv_stream_format fmt, bool announce)
{
	struct srv_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->kind = SK_EXEC;
	st->s = s;
	st->fmt = fmt;
	snprintf(st->id, sizeof(st->id), "%s", id);
	st->state = announce ? ST_ANNOUNCE : ST_EVENTS;
	st->last_send = time(NULL);
	return st;
}

struct srv_stream *srv_stream_file_new(struct msb_server *s, void *h)
{
	struct srv_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->kind = SK_FILE;
	st->s = s;
	st->fh = h;
	return st;
}

const char *srv_stream_content_type(const struct srv_stream *st)
{
	if (st->kind == SK_FILE)
		return "application/octet-stream";
	return st->fmt == STREAM_SSE ? "text/event-stream" : "application/x-ndjson";
}

static void set_pending(struct srv_stream *st, char *buf, size_t len)
{
	free(st->pending);
	st->pending = buf;
	st->plen = buf ? len : 0;
	st->poff = 0;
}

static void error_event(struct srv_stream *st, const struct msb_err *err)
{
	json_t *o = json_pack("{s:i,s:s}", "code", rpc_error_code(err->kind), "message", err->msg);
	size_t len = 0;
	char *f = stream_encode_json(st->fmt, "error", o, &len);
	json_decref(o);
	set_pending(st, f, len);
	st->state = ST_DONE;
}

/* Produces the next frame into st->pending (or moves to ST_DONE). */
static void exec_step(struct srv_stream *st)
{
	const struct sandbox_backend *be = st->s->be;
	size_t len = 0;
	if (st->state == ST_ANNOUNCE) {
		json_t *o = json_pack("{s:s}", "exec", st->id);
		char *f = stream_encode_json(st->fmt, "started", o, &len);
		json_decref(o);
		set_pending(st, f, len);
		st->state = ST_EVENTS;
		return;
	}
	for (;;) {
		if (st->alive && !st->alive(st->alive_arg)) {
			st->gone = true;
			st->state = ST_DONE;
			return;
		}
		if (srv_stopping(st->s)) {
			struct msb_err e = {0};
			msb_err_set(&e, MSB_EK_STATE, 0, "the server is stopping");
			error_event(st, &e);
			return;
		}
		struct sb_exec_event ev = {0};
		struct msb_err err = {0};
		int r = be->exec_next(be->self, st->id, STREAM_POLL_MS, &ev, &err);
		if (r < 0) {
			error_event(st, &err);
			return;
		}
		if (r == 1) {
			char *f = stream_encode_event(st->fmt, &ev, &len);
			set_pending(st, f, len);
			if (ev.type == SB_EV_EXIT)
				st->state = ST_DONE;
			return;
		}
		if (time(NULL) - st->last_send >= STREAM_KEEPALIVE_S) {
			const char *ka = st->fmt == STREAM_SSE ? ": keepalive\n\n" : "\n";
			set_pending(st, strdup(ka), strlen(ka));
			return;
		}
	}
}

ssize_t srv_stream_read(struct srv_stream *st, char *buf, size_t max)
{
	if (st->kind == SK_FILE) {
		struct msb_err err = {0};
		ssize_t n = st->s->be->file_read(st->s->be->self, st->fh, buf, max, &err);
		return n < 0 ? -1 : n;
	}
	while (st->poff >= st->plen) {
		if (st->state == ST_DONE)
			return 0;
		set_pending(st, NULL, 0);
		exec_step(st);
		if (st->gone)
			return -1;
		if (!st->pending && st->state != ST_DONE)
			return -1; /* out of memory: drop the connection */
	}
	size_t n = st->plen - st->poff;
	if (n > max)
		n = max;
	memcpy(buf, st->pending + st->poff, n);
	st->poff += n;
	st->last_send = time(NULL);
	return (ssize_t)n;
}

void srv_stream_free(struct srv_stream *st)
{
	if (!st)
		return;
	const struct sandbox_backend *be = st->s->be;
	if (st->kind == SK_EXEC)
		be->exec_release(be->self, st->id);
	else if (st->fh)
		be->file_close_read(be->self, st->fh);
	free(st->pending);
	free(st);
}
