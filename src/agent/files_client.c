/* Files and metrics through the agent, host side (see files_client.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/client.h"
#include "agent/client_int.h"
#include "agent/files_proto.h"

#define UP_HIGH (512u << 10) /* stop reading the source while this much is unsent */

struct freq {
	struct agent_req r;
	uint16_t type;
	bool done, failed;
	struct msb_err err;
	/* FILE_READ */
	agent_sink_fn sink;
	void *ctx;
	struct agent_file_info *info; /* FILE_READ (optional), FILE_STAT */
	bool got_info;
	/* FILE_WRITE */
	uint64_t credit;
	/* FILE_LIST */
	struct agent_file_info *ents;
	size_t n, cap;
	/* METRICS */
	struct agent_metrics *m;
};

const char *agent_file_type_str(uint32_t type)
{
	switch (type) {
	case AGENT_FT_FILE:
		return "file";
	case AGENT_FT_DIR:
		return "dir";
	case AGENT_FT_SYMLINK:
		return "symlink";
	default:
		return "other";
	}
}

int agent_sink_fd(void *ctx, const void *data, size_t len, struct msb_err *err)
{
	int fd = *(int *)ctx;
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return msb_err_sys(err, "writing the downloaded data");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t agent_source_fd(void *ctx, void *buf, size_t cap, struct msb_err *err)
{
	for (;;) {
		ssize_t n = read(*(int *)ctx, buf, cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return msb_err_sys(err, "reading the data to upload");
		return n;
	}
}

/* The request failed: keep the first reason. */
static void fail(struct freq *q, const struct msb_err *e)
{
	if (!q->failed)
		q->err = *e;
	q->failed = q->done = true;
}

static void fail_msg(struct freq *q, const char *msg)
{
	struct msb_err e;
	msb_err_set(&e, MSB_EK_GUEST, 0, "%s", msg);
	fail(q, &e);
}

/* Tell the agent to drop a transfer (no reply comes). */
static void send_abort(struct agent_client *c, uint32_t id)
{
	struct msb_err e;
	agent_put_error(agent_client_out(c), id, AGENT_E_INTERNAL, 0, "abandoned by the host", &e);
}

static int add_entry(void *ctx, struct agent_file_info *e, struct msb_err *err)
{
	struct freq *q = ctx;
	if (q->n >= AGENT_LIST_MAX)
		return msb_err_set(err, MSB_EK_GUEST, 0, "the agent listed more than %d entries",
				   AGENT_LIST_MAX);
	if (q->n == q->cap) {
		size_t nc = q->cap ? q->cap * 2 : 64;
		struct agent_file_info *v = realloc(q->ents, nc * sizeof(*v));
		if (!v)
			return msb_err_sys(err, "allocating a directory listing");
		q->ents = v;
		q->cap = nc;
	}
	q->ents[q->n++] = *e;
	return 0;
}

static int on_frame(struct agent_req *r, struct agent_client *c, const struct agent_hdr *h,
		    const uint8_t *p, struct msb_err *err)
{
	struct freq *q = (struct freq *)r;
	struct msb_err e;
	if (q->done)
		return 0; /* late frames of an abandoned transfer */
	switch (h->type) {
	case AGENT_ERROR: {
		struct agent_error ae;
		if (agent_decode_error(p, h->len, &ae, &e) < 0) {
			fail(q, &e);
			break;
		}
		msb_err_set(&e, agent_err_to_kind(ae.kind), 0, "%s",
			    ae.msg ? ae.msg : agent_err_name(ae.kind));
		e.errnum = (int)ae.errnum;
		agent_error_release(&ae);
		fail(q, &e);
		break;
	}
	case AGENT_OK:
		if (q->type == AGENT_FILE_READ || q->type == AGENT_FILE_STAT ||
		    q->type == AGENT_METRICS)
			fail_msg(q, "the agent answered OK without the data");
		q->done = true;
		break;
	case AGENT_FILE_INFO: {
		if (q->type != AGENT_FILE_READ && q->type != AGENT_FILE_STAT)
			break;
		struct agent_file_info fi;
		if (agent_decode_file_info(p, h->len, false, &fi, &e) < 0) {
			fail(q, &e);
			break;
		}
		if (q->info && !q->got_info)
			*q->info = fi;
		else
			agent_file_info_clear(&fi);
		q->got_info = true;
		if (q->type == AGENT_FILE_STAT)
			q->done = true;
		break;
	}
	case AGENT_DATA:
		if (q->type != AGENT_FILE_READ || h->stream != AGENT_FILE_DOWN) {
			fail_msg(q, "the agent sent data where none belongs");
			break;
		}
		if (q->sink(q->ctx, p, h->len, &e) < 0) {
			send_abort(c, q->r.id);
			fail(q, &e);
			break;
		}
		if (h->len) {
			struct agent_buf *out = agent_client_out(c);
			agent_msg_begin(out, AGENT_WINDOW, q->r.id, AGENT_FILE_DOWN);
			agent_put_u32(out, AGENT_T_INCREMENT, h->len);
			if (agent_msg_end(out, err) < 0)
				return -1;
		}
		break;
	case AGENT_EOF:
		if (q->type == AGENT_FILE_READ && h->stream == AGENT_FILE_DOWN)
			q->done = true;
		break;
	case AGENT_WINDOW: {
		uint32_t v;
		if (q->type != AGENT_FILE_WRITE || h->stream != AGENT_FILE_UP)
			break;
		if (agent_decode_u32(p, h->len, h->type, AGENT_T_INCREMENT, &v, &e) < 0)
			fail(q, &e);
		else if (q->credit + v <= (1ull << 40))
			q->credit += v;
		break;
	}
	case AGENT_FILE_ENTRIES:
		if (q->type != AGENT_FILE_LIST)
			break;
		if (agent_decode_file_entries(p, h->len, add_entry, q, &e) < 0)
			fail(q, &e);
		break;
	case AGENT_METRICS:
		if (q->type != AGENT_METRICS)
			break;
		if (agent_decode_metrics(p, h->len, q->m, &e) < 0)
			fail(q, &e);
		q->done = true;
		break;
	default:
		break;
	}
	return 0;
}

/* One chunk of an upload from the source into the outgoing buffer. */
static int upload_chunk(struct agent_client *c, struct freq *q, agent_source_fn source, void *ctx,
			bool *eof)
{
	struct agent_buf *out = agent_client_out(c);
	size_t want = AGENT_DATA_CHUNK;
	if (want > q->credit)
		want = (size_t)q->credit;
	uint8_t *dst = agent_buf_reserve(out, AGENT_HDR_SIZE + want);
	if (!dst) {
		struct msb_err e;
		msb_err_set(&e, MSB_EK_SYSTEM, ENOMEM, "out of memory for the upload");
		send_abort(c, q->r.id);
		fail(q, &e);
		return -1;
	}
	struct msb_err e;
	ssize_t n = source(ctx, dst + AGENT_HDR_SIZE, want, &e);
	if (n < 0 || (size_t)n > want) {
		if (n >= 0)
			msb_err_set(&e, MSB_EK_INTERNAL, 0, "the upload source overfilled");
		send_abort(c, q->r.id);
		fail(q, &e);
		return -1;
	}
	struct agent_hdr h = {.len = (uint32_t)n,
			      .type = n ? AGENT_DATA : AGENT_EOF,
			      .id = q->r.id,
			      .stream = AGENT_FILE_UP};
	agent_hdr_encode(dst, &h);
	out->len += AGENT_HDR_SIZE + (size_t)n;
	q->credit -= (uint64_t)n;
	*eof = n == 0;
	return 0;
}

/* Start the request (fields already in the frame being built) and pump until
 * it ended. */
static int run(struct agent_client *c, struct freq *q, agent_source_fn source, void *ctx,
	       struct msb_err *err)
{
	if (agent_msg_end(agent_client_out(c), err) < 0)
		return -1;
	q->r.on_frame = on_frame;
	q->credit = AGENT_INITIAL_WINDOW;
	agent_client_req_add(c, &q->r);
	bool eof = q->type != AGENT_FILE_WRITE;
	int rc = 0;
	while (!q->done) {
		while (!eof && !q->done && q->credit && agent_client_out(c)->len < UP_HIGH)
			if (upload_chunk(c, q, source, ctx, &eof) < 0)
				break;
		if (agent_client_pump(c, -1, err) < 0) {
			rc = -1;
			break;
		}
	}
	agent_client_req_del(c, &q->r);
	if (rc == 0 && q->failed) {
		*err = q->err;
		rc = -1;
	}
	return rc;
}

static void begin(struct agent_client *c, struct freq *q, uint16_t type, const char *path)
{
	memset(q, 0, sizeof(*q));
	q->type = type;
	q->r.id = agent_client_new_id(c);
	struct agent_buf *out = agent_client_out(c);
	agent_msg_begin(out, type, q->r.id, 0);
	if (path)
		agent_put_str(out, AGENT_T_PATH, path);
}

static int check_path(const char *path, struct msb_err *err)
{
	if (!path || !path[0])
		return msb_err_set(err, MSB_EK_USAGE, 0, "no guest path given");
	if (strlen(path) >= AGENT_PATH_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0, "the guest path is longer than %d bytes",
				   AGENT_PATH_MAX - 1);
	return 0;
}

int agent_file_read(struct agent_client *c, const char *path, agent_sink_fn sink, void *ctx,
		    struct agent_file_info *info, struct msb_err *err)
{
	if (check_path(path, err) < 0)
		return -1;
	struct freq q;
	begin(c, &q, AGENT_FILE_READ, path);
	q.sink = sink;
	q.ctx = ctx;
	q.info = info;
	if (info)
		memset(info, 0, sizeof(*info));
	int rc = run(c, &q, NULL, NULL, err);
	if (rc < 0 && info)
		agent_file_info_clear(info);
	return rc;
}

int agent_file_write_opts(struct agent_client *c, const struct agent_file_write_opts *o,
			  agent_source_fn source, void *ctx, struct msb_err *err)
{
	if (check_path(o->path, err) < 0)
		return -1;
	if (o->mode > 07777)
		return msb_err_set(err, MSB_EK_USAGE, 0, "file mode %#o is not in 07777",
				   (unsigned)o->mode);
	if (o->set_mtime && o->mtime > (1ull << 40))
		return msb_err_set(err, MSB_EK_USAGE, 0, "mtime %llu is out of range",
				   (unsigned long long)o->mtime);
	struct freq q;
	begin(c, &q, AGENT_FILE_WRITE, o->path);
	struct agent_buf *out = agent_client_out(c);
	if (o->mode >= 0)
		agent_put_u32(out, AGENT_T_MODE, (uint32_t)o->mode);
	if (o->parents)
		agent_put_u32(out, AGENT_T_PARENTS, 1);
	if (o->set_mtime)
		agent_put_u64(out, AGENT_T_ENT_MTIME, o->mtime);
	return run(c, &q, source, ctx, err);
}

int agent_file_write(struct agent_client *c, const char *path, int mode, bool parents,
		     agent_source_fn source, void *ctx, struct msb_err *err)
{
	struct agent_file_write_opts o = {.path = path, .mode = mode, .parents = parents};
	return agent_file_write_opts(c, &o, source, ctx, err);
}

int agent_file_symlink(struct agent_client *c, const char *target, const char *path,
		       struct msb_err *err)
{
	if (check_path(path, err) < 0)
		return -1;
	if (!target || !target[0] || strlen(target) >= AGENT_PATH_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "a symlink needs a target of 1 to %d bytes", AGENT_PATH_MAX - 1);
	struct freq q;
	begin(c, &q, AGENT_FILE_SYMLINK, path);
	agent_put_str(agent_client_out(c), AGENT_T_ENT_LINK, target);
	return run(c, &q, NULL, NULL, err);
}

void agent_file_list_free(struct agent_file_info *entries, size_t n)
{
	for (size_t i = 0; i < n; i++)
		agent_file_info_clear(&entries[i]);
	free(entries);
}

int agent_file_list(struct agent_client *c, const char *path, struct agent_file_info **entries,
		    size_t *n, struct msb_err *err)
{
	if (check_path(path, err) < 0)
		return -1;
	struct freq q;
	begin(c, &q, AGENT_FILE_LIST, path);
	if (run(c, &q, NULL, NULL, err) < 0) {
		agent_file_list_free(q.ents, q.n);
		return -1;
	}
	*entries = q.ents;
	*n = q.n;
	return 0;
}

int agent_file_stat(struct agent_client *c, const char *path, bool follow,
		    struct agent_file_info *info, struct msb_err *err)
{
	if (check_path(path, err) < 0)
		return -1;
	struct freq q;
	begin(c, &q, AGENT_FILE_STAT, path);
	memset(info, 0, sizeof(*info));
	q.info = info;
	if (follow)
		agent_put_u32(agent_client_out(c), AGENT_T_FOLLOW, 1);
	int rc = run(c, &q, NULL, NULL, err);
	if (rc < 0)
		agent_file_info_clear(info);
	return rc;
}

int agent_file_mkdir(struct agent_client *c, const char *path, int mode, bool parents,
		     struct msb_err *err)
{
	if (check_path(path, err) < 0)
		return -1;
	if (mode > 07777)
		return msb_err_set(err, MSB_EK_USAGE, 0, "directory mode %#o is not in 07777",
				   (unsigned)mode);
	struct freq q;
	begin(c, &q, AGENT_FILE_MKDIR, path);
	if (mode >= 0)
		agent_put_u32(agent_client_out(c), AGENT_T_MODE, (uint32_t)mode);
	if (parents)
		agent_put_u32(agent_client_out(c), AGENT_T_PARENTS, 1);
	return run(c, &q, NULL, NULL, err);
}

int agent_file_remove(struct agent_client *c, const char *path, bool recursive, struct msb_err *err)
{
	if (check_path(path, err) < 0)
		return -1;
	struct freq q;
	begin(c, &q, AGENT_FILE_REMOVE, path);
	if (recursive)
		agent_put_u32(agent_client_out(c), AGENT_T_RECURSIVE, 1);
	return run(c, &q, NULL, NULL, err);
}

int agent_metrics(struct agent_client *c, uint32_t interval_ms, struct agent_metrics *m,
		  struct msb_err *err)
{
	if (interval_ms > AGENT_METRICS_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "a metrics interval of %u ms is above the limit of %d ms",
				   interval_ms, AGENT_METRICS_MAX);
	struct freq q;
	begin(c, &q, AGENT_METRICS, NULL);
	q.m = m;
	if (interval_ms)
		agent_put_u32(agent_client_out(c), AGENT_T_INTERVAL_MS, interval_ms);
	return run(c, &q, NULL, NULL, err);
}
