/* The agent protocol's frame and field codec (see proto.h). */
#include "agent/proto.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "agent/codec_int.h"
#include "agent/files_proto.h"

#define FIELD_HDR 6 /* u16 tag, u32 len */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

const char *agent_type_name(uint16_t type)
{
	switch (type) {
	case AGENT_HELLO:
		return "HELLO";
	case AGENT_READY:
		return "READY";
	case AGENT_ERROR:
		return "ERROR";
	case AGENT_OK:
		return "OK";
	case AGENT_EXEC:
		return "EXEC";
	case AGENT_STARTED:
		return "STARTED";
	case AGENT_DATA:
		return "DATA";
	case AGENT_EOF:
		return "EOF";
	case AGENT_EXIT:
		return "EXIT";
	case AGENT_WINDOW:
		return "WINDOW";
	case AGENT_SIGNAL:
		return "SIGNAL";
	case AGENT_RESIZE:
		return "RESIZE";
	case AGENT_REPL_RUN:
		return "REPL_RUN";
	case AGENT_REPL_RESULT:
		return "REPL_RESULT";
	case AGENT_SHUTDOWN:
		return "SHUTDOWN";
	case AGENT_SETUP:
		return "SETUP";
	default: {
		const char *file = agent_file_type_name(type);
		return file ? file : "unknown";
	}
	}
}

const char *agent_err_name(uint32_t kind)
{
	static const char *const names[] = {
		[AGENT_E_INTERNAL] = "internal",
		[AGENT_E_BAD_REQUEST] = "bad_request",
		[AGENT_E_UNSUPPORTED] = "unsupported",
		[AGENT_E_NOT_FOUND] = "not_found",
		[AGENT_E_EXISTS] = "exists",
		[AGENT_E_SYSTEM] = "system",
		[AGENT_E_LIMIT] = "limit",
		[AGENT_E_PERMISSION] = "permission",
	};
	if (kind >= sizeof(names) / sizeof(names[0]) || !names[kind])
		return "unknown";
	return names[kind];
}

enum msb_err_kind agent_err_to_kind(uint32_t kind)
{
	switch (kind) {
	case AGENT_E_BAD_REQUEST:
	case AGENT_E_UNSUPPORTED:
		return MSB_EK_USAGE;
	case AGENT_E_NOT_FOUND:
		return MSB_EK_NOT_FOUND;
	case AGENT_E_EXISTS:
		return MSB_EK_EXISTS;
	case AGENT_E_LIMIT:
		return MSB_EK_STATE;
	default:
		return MSB_EK_GUEST;
	}
}

uint32_t agent_err_from_errno(int errnum)
{
	switch (errnum) {
	case ENOENT:
	case ENOTDIR:
		return AGENT_E_NOT_FOUND;
	case EACCES:
	case EPERM:
		return AGENT_E_PERMISSION;
	case EEXIST:
		return AGENT_E_EXISTS;
	case EMFILE:
	case ENFILE:
	case EAGAIN:
	case ENOMEM:
		return AGENT_E_LIMIT;
	default:
		return AGENT_E_SYSTEM;
	}
}

void agent_hdr_encode(uint8_t out[AGENT_HDR_SIZE], const struct agent_hdr *h)
{
	put_le32(out, h->len);
	put_le16(out + 4, h->type);
	put_le16(out + 6, h->flags);
	put_le32(out + 8, h->id);
	put_le32(out + 12, h->stream);
}

int agent_hdr_decode(const uint8_t in[AGENT_HDR_SIZE], struct agent_hdr *h, struct msb_err *err)
{
	h->len = get_le32(in);
	h->type = get_le16(in + 4);
	h->flags = get_le16(in + 6);
	h->id = get_le32(in + 8);
	h->stream = get_le32(in + 12);
	if (h->len > AGENT_MAX_PAYLOAD)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "agent frame of %u bytes exceeds the limit of %u", h->len,
				   AGENT_MAX_PAYLOAD);
	return 0;
}

/* ---- building ---------------------------------------------------------------------- */

void agent_buf_release(struct agent_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void agent_buf_consume(struct agent_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

uint8_t *agent_buf_reserve(struct agent_buf *b, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len) {
		b->failed = true;
		return NULL;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *d = realloc(b->data, cap);
		if (!d) {
			b->failed = true;
			return NULL;
		}
		b->data = d;
		b->cap = cap;
	}
	return b->data + b->len;
}

void agent_msg_begin(struct agent_buf *b, uint16_t type, uint32_t id, uint32_t stream)
{
	b->failed = false;
	b->msg_start = b->len;
	uint8_t *p = agent_buf_reserve(b, AGENT_HDR_SIZE);
	if (!p)
		return;
	struct agent_hdr h = {.len = 0, .type = type, .flags = 0, .id = id, .stream = stream};
	agent_hdr_encode(p, &h);
	b->len += AGENT_HDR_SIZE;
}

void agent_put_raw(struct agent_buf *b, const void *v, size_t n)
{
	if (b->failed)
		return;
	uint8_t *p = agent_buf_reserve(b, n);
	if (!p)
		return;
	if (n)
		memcpy(p, v, n);
	b->len += n;
}

void agent_put_bytes(struct agent_buf *b, uint16_t tag, const void *v, size_t n)
{
	if (b->failed)
		return;
	if (n > AGENT_MAX_PAYLOAD) {
		b->failed = true;
		return;
	}
	uint8_t *p = agent_buf_reserve(b, FIELD_HDR + n);
	if (!p)
		return;
	put_le16(p, tag);
	put_le32(p + 2, (uint32_t)n);
	if (n)
		memcpy(p + FIELD_HDR, v, n);
	b->len += FIELD_HDR + n;
}

void agent_put_str(struct agent_buf *b, uint16_t tag, const char *s)
{
	agent_put_bytes(b, tag, s, strlen(s));
}

void agent_put_u32(struct agent_buf *b, uint16_t tag, uint32_t v)
{
	uint8_t le[4];
	put_le32(le, v);
	agent_put_bytes(b, tag, le, sizeof(le));
}

void agent_put_u64(struct agent_buf *b, uint16_t tag, uint64_t v)
{
	uint8_t le[8];
	put_le32(le, (uint32_t)v);
	put_le32(le + 4, (uint32_t)(v >> 32));
	agent_put_bytes(b, tag, le, sizeof(le));
}

int agent_msg_end(struct agent_buf *b, struct msb_err *err)
{
	size_t payload = b->len - b->msg_start - AGENT_HDR_SIZE;
	if (!b->failed && b->len >= b->msg_start + AGENT_HDR_SIZE && payload <= AGENT_MAX_PAYLOAD) {
		put_le32(b->data + b->msg_start, (uint32_t)payload);
		return 0;
	}
	/* Drop the partial frame so the buffer still holds whole frames only. */
	if (b->len > b->msg_start)
		b->len = b->msg_start;
	b->failed = false;
	return msb_err_set(err, MSB_EK_INTERNAL, ENOMEM, "building an agent frame");
}

int agent_put_error(struct agent_buf *b, uint32_t id, uint32_t kind, int errnum, const char *msg,
		    struct msb_err *err)
{
	agent_msg_begin(b, AGENT_ERROR, id, 0);
	agent_put_u32(b, AGENT_T_ERR_KIND, kind);
	if (errnum)
		agent_put_u32(b, AGENT_T_ERR_ERRNO, (uint32_t)errnum);
	/* Messages are for people; keep them short enough to never hit the limit. */
	size_t n = strnlen(msg, 4096);
	agent_put_bytes(b, AGENT_T_ERR_MSG, msg, n);
	return agent_msg_end(b, err);
}

/* ---- reading ------------------------------------------------------------------------ */

#define AGENT_READER_INITIAL (AGENT_HDR_SIZE + AGENT_DATA_CHUNK + 4096)

int agent_reader_init(struct agent_reader *r, struct msb_err *err)
{
	memset(r, 0, sizeof(*r));
	/* Room for a full DATA chunk and slack so that small frames batch up; grown
	 * to a maximal frame only when one arrives.  Small enough that malloc does
	 * not map and unmap it per connection: in the guest every mmap, fault and
	 * munmap is emulated kernel work on PVM hosts. */
	r->cap = AGENT_READER_INITIAL;
	r->buf = malloc(r->cap);
	if (!r->buf)
		return msb_err_sys(err, "allocating the agent frame reader");
	return 0;
}

void agent_reader_release(struct agent_reader *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

uint8_t *agent_reader_space(struct agent_reader *r, size_t *avail)
{
	if (r->start == r->end) {
		r->start = r->end = 0;
	} else if (r->cap - r->end < AGENT_HDR_SIZE + AGENT_DATA_CHUNK && r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	*avail = r->cap - r->end;
	return r->buf + r->end;
}

void agent_reader_commit(struct agent_reader *r, size_t n)
{
	if (n > r->cap - r->end)
		n = r->cap - r->end;
	r->end += n;
}

int agent_reader_next(struct agent_reader *r, struct agent_hdr *h, const uint8_t **payload,
		      struct msb_err *err)
{
	size_t have = r->end - r->start;
	if (have < AGENT_HDR_SIZE)
		return 0;
	if (agent_hdr_decode(r->buf + r->start, h, err) < 0)
		return -1;
	if (have - AGENT_HDR_SIZE < h->len) {
		/* Make sure the whole frame will fit behind the current start. */
		size_t need = AGENT_HDR_SIZE + (size_t)h->len;
		if (r->cap - r->start < need) {
			memmove(r->buf, r->buf + r->start, have);
			r->start = 0;
			r->end = have;
		}
		if (r->cap < need) {
			size_t cap = AGENT_HDR_SIZE + AGENT_MAX_PAYLOAD + 4096;
			uint8_t *nb = realloc(r->buf, cap);
			if (!nb)
				return msb_err_sys(err,
						   "growing the agent frame reader for a "
						   "%u-byte frame",
						   h->len);
			r->buf = nb;
			r->cap = cap;
		}
		return 0;
	}
	*payload = r->buf + r->start + AGENT_HDR_SIZE;
	r->start += AGENT_HDR_SIZE + h->len;
	return 1;
}

/* ---- fields --------------------------------------------------------------------------- */

int agent_iter_next(struct agent_iter *it, struct agent_field *f, struct msb_err *err)
{
	if (it->left == 0)
		return 0;
	if (it->left < FIELD_HDR)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "truncated field header (%zu bytes)",
				   it->left);
	f->tag = get_le16(it->p);
	f->len = get_le32(it->p + 2);
	if (f->len > it->left - FIELD_HDR)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "field %u claims %u bytes, %zu are left",
				   f->tag, f->len, it->left - FIELD_HDR);
	f->val = it->p + FIELD_HDR;
	it->p += FIELD_HDR + f->len;
	it->left -= FIELD_HDR + (size_t)f->len;
	return 1;
}

int agent_field_u32(const struct agent_field *f, uint32_t *v, struct msb_err *err)
{
	if (f->len != 4)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "field %u: want 4 bytes, got %u", f->tag,
				   f->len);
	*v = get_le32(f->val);
	return 0;
}

int agent_field_u64(const struct agent_field *f, uint64_t *v, struct msb_err *err)
{
	if (f->len != 8)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "field %u: want 8 bytes, got %u", f->tag,
				   f->len);
	*v = (uint64_t)get_le32(f->val) | (uint64_t)get_le32(f->val + 4) << 32;
	return 0;
}

int agent_field_str(const struct agent_field *f, char **s, struct msb_err *err)
{
	if (memchr(f->val, 0, f->len))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "field %u: string contains NUL", f->tag);
	char *c = malloc((size_t)f->len + 1);
	if (!c)
		return msb_err_sys(err, "allocating a string field");
	memcpy(c, f->val, f->len);
	c[f->len] = '\0';
	*s = c;
	return 0;
}

int agent_field_unknown(const struct agent_field *f, uint16_t type, struct msb_err *err)
{
	if (f->tag & AGENT_TAG_CRITICAL)
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s: unknown critical field %#x",
				   agent_type_name(type), f->tag);
	return 0;
}

/* ---- messages -------------------------------------------------------------------------- */

/* ---- table-driven field decoding ------------------------------------------------- */

static int push_str(char ***vec, size_t *count, size_t *cap, char *s, struct msb_err *err);
static int field_dim(const struct agent_field *f, uint16_t *out, struct msb_err *err);
static bool valid_term(const char *s);

static int store_vec(const struct agent_field *f, const struct field_rule *r, uint8_t *o,
		     size_t *cap, struct msb_err *err)
{
	char ***vec = (char ***)(void *)(o + r->off);
	size_t *count = (size_t *)(void *)(o + r->count_off);
	bool env = r->kind == F_ENV;
	if (*count >= AGENT_MAX_ARGS)
		return msb_err_set(err, MSB_EK_USAGE, 0, "more than %d %s", AGENT_MAX_ARGS,
				   env ? "environment entries" : "arguments");
	char *s = NULL;
	if (agent_field_str(f, &s, err) < 0)
		return -1;
	if (env && (s[0] == '=' || !strchr(s, '='))) {
		msb_err_set(err, MSB_EK_USAGE, 0, "environment entry '%.64s' is not NAME=VALUE", s);
		free(s);
		return -1;
	}
	return push_str(vec, count, cap, s, err);
}

/* An F_CHARS field: once, shorter than the array, no NUL, accepted by r->ok. */
static int store_chars(const struct agent_field *f, uint16_t type, const struct field_rule *r,
		       char *dst, struct msb_err *err)
{
	const char *v = (const char *)f->val;
	const char *name = agent_type_name(type);
	if (dst[0])
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: %s given twice", name, r->what);
	if (f->len >= r->count_off || memchr(v, 0, f->len) || !r->ok(v, f->len))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: bad %s '%.*s'", name, r->what,
				   (int)(f->len > 64 ? 64 : f->len), v);
	memcpy(dst, v, f->len);
	dst[f->len] = '\0';
	return 0;
}

/* One field of a `type` message by its rule; *skip when an F_STR_FIRST field
 * came again. */
static int store_field(const struct agent_field *f, uint16_t type, const struct field_rule *r,
		       uint8_t *o, size_t *cap, bool *skip, struct msb_err *err)
{
	void *dst = o + r->off;
	uint32_t u;
	char *s = NULL;
	switch (r->kind) {
	case F_U32:
		return agent_field_u32(f, dst, err);
	case F_U64:
		return agent_field_u64(f, dst, err);
	case F_FLAG:
		if (agent_field_u32(f, &u, err) < 0)
			return -1;
		*(bool *)dst = u != 0;
		return 0;
	case F_STR_FIRST:
		if (*(char **)dst) {
			*skip = true;
			return 0;
		}
		return agent_field_str(f, dst, err);
	case F_STR_ONCE:
		if (*(char **)dst)
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: field %u repeated",
					   agent_type_name(type), f->tag);
		return agent_field_str(f, dst, err);
	case F_STR:
	case F_TERM:
		if (agent_field_str(f, &s, err) < 0)
			return -1;
		free(*(char **)dst);
		*(char **)dst = s;
		if (r->kind == F_TERM && !valid_term(s))
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "TERM '%.32s' is not a terminal name", s);
		return 0;
	case F_ARG:
	case F_ENV:
		return store_vec(f, r, o, cap, err);
	case F_DIM:
		return field_dim(f, dst, err);
	case F_CHARS:
		return store_chars(f, type, r, dst, err);
	case F_CALL:
		return r->call(f, o, err);
	}
	return msb_err_set(err, MSB_EK_INTERNAL, 0, "field rule of unknown kind");
}

int agent_decode_fields(const uint8_t *p, size_t n, uint16_t type, const struct field_rule *rules,
			size_t nrules, void *out, uint32_t *seen, struct msb_err *err)
{
	size_t caps[MAX_RULES] = {0};
	struct agent_iter it;
	struct agent_field f;
	int r;
	if (seen)
		*seen = 0;
	agent_iter_init(&it, p, n);
	while ((r = agent_iter_next(&it, &f, err)) > 0) {
		size_t i = 0;
		while (i < nrules && rules[i].tag != f.tag)
			i++;
		bool skip = i == nrules;
		if (!skip && store_field(&f, type, &rules[i], out, &caps[i], &skip, err) < 0)
			return -1;
		if (skip && agent_field_unknown(&f, type, err) < 0)
			return -1;
		if (!skip && seen)
			*seen |= 1u << i;
	}
	return r < 0 ? -1 : 0;
}

/* ---- messages -------------------------------------------------------------------------- */

int agent_decode_hello(const uint8_t *p, size_t n, struct agent_hello *out, struct msb_err *err)
{
	static const struct field_rule rules[] = {
		RULE(AGENT_T_VERSION, F_U32, struct agent_hello, version),
		RULE(AGENT_T_NAME, F_STR_FIRST, struct agent_hello, name),
	};
	memset(out, 0, sizeof(*out));
	uint32_t seen;
	if (agent_decode_fields(p, n, AGENT_HELLO, rules, 2, out, &seen, err) < 0)
		goto fail;
	if (!(seen & 1)) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "HELLO without a version");
		goto fail;
	}
	return 0;
fail:
	agent_hello_release(out);
	return -1;
}

void agent_hello_release(struct agent_hello *h)
{
	free(h->name);
	h->name = NULL;
}

static int push_str(char ***vec, size_t *count, size_t *cap, char *s, struct msb_err *err)
{
	if (*count + 2 > *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		char **v = realloc(*vec, nc * sizeof(*v));
		if (!v) {
			free(s);
			return msb_err_sys(err, "allocating an argument vector");
		}
		*vec = v;
		*cap = nc;
	}
	(*vec)[(*count)++] = s;
	(*vec)[*count] = NULL;
	return 0;
}

/* A terminal dimension: 1..65535 (a PTY's winsize holds u16). */
static int field_dim(const struct agent_field *f, uint16_t *out, struct msb_err *err)
{
	uint32_t v;
	if (agent_field_u32(f, &v, err) < 0)
		return -1;
	if (v == 0 || v > 65535)
		return msb_err_set(err, MSB_EK_USAGE, 0, "terminal size %u out of range (1..65535)",
				   v);
	*out = (uint16_t)v;
	return 0;
}

/* TERM ends up in an environment entry and in terminfo lookups: a short
 * name of letters, digits and "-+._". */
static bool valid_term(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '+' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

int agent_decode_exec(const uint8_t *p, size_t n, struct agent_exec_req *out, struct msb_err *err)
{
	static const struct field_rule rules[] = {
		RULE_VEC(AGENT_T_ARGV, F_ARG, struct agent_exec_req, argv, argc),
		RULE_VEC(AGENT_T_ENV, F_ENV, struct agent_exec_req, env, envc),
		RULE(AGENT_T_CWD, F_STR, struct agent_exec_req, cwd),
		RULE(AGENT_T_TIMEOUT_MS, F_U64, struct agent_exec_req, timeout_ms),
		RULE(AGENT_T_STDIN, F_FLAG, struct agent_exec_req, stdin_stream),
		RULE(AGENT_T_PTY, F_FLAG, struct agent_exec_req, pty),
		RULE(AGENT_T_ROWS, F_DIM, struct agent_exec_req, rows),
		RULE(AGENT_T_COLS, F_DIM, struct agent_exec_req, cols),
		RULE(AGENT_T_TERM, F_TERM, struct agent_exec_req, term),
	};
	memset(out, 0, sizeof(*out));
	if (agent_decode_fields(p, n, AGENT_EXEC, rules, sizeof(rules) / sizeof(rules[0]), out,
				NULL, err) < 0)
		goto fail;
	if (out->argc == 0 || out->argv[0][0] == '\0') {
		msb_err_set(err, MSB_EK_USAGE, 0, "EXEC without a command (argv is empty)");
		goto fail;
	}
	if (out->cwd && out->cwd[0] == '\0') {
		msb_err_set(err, MSB_EK_USAGE, 0, "EXEC with an empty working directory");
		goto fail;
	}
	return 0;
fail:
	agent_exec_req_release(out);
	return -1;
}

void agent_exec_req_release(struct agent_exec_req *r)
{
	for (size_t i = 0; i < r->argc; i++)
		free(r->argv[i]);
	for (size_t i = 0; i < r->envc; i++)
		free(r->env[i]);
	free(r->argv);
	free(r->env);
	free(r->cwd);
	free(r->term);
	memset(r, 0, sizeof(*r));
}

int agent_decode_error(const uint8_t *p, size_t n, struct agent_error *out, struct msb_err *err)
{
	static const struct field_rule rules[] = {
		RULE(AGENT_T_ERR_KIND, F_U32, struct agent_error, kind),
		RULE(AGENT_T_ERR_ERRNO, F_U32, struct agent_error, errnum),
		RULE(AGENT_T_ERR_MSG, F_STR_FIRST, struct agent_error, msg),
	};
	memset(out, 0, sizeof(*out));
	out->kind = AGENT_E_INTERNAL;
	if (agent_decode_fields(p, n, AGENT_ERROR, rules, 3, out, NULL, err) < 0) {
		agent_error_release(out);
		return -1;
	}
	return 0;
}

void agent_error_release(struct agent_error *e)
{
	free(e->msg);
	e->msg = NULL;
}

int agent_decode_exit(const uint8_t *p, size_t n, struct agent_exit *out, struct msb_err *err)
{
	static const struct field_rule rules[] = {
		RULE(AGENT_T_EXIT_CODE, F_U32, struct agent_exit, code),
		RULE(AGENT_T_SIGNAL, F_U32, struct agent_exit, signal),
		RULE(AGENT_T_TIMED_OUT, F_FLAG, struct agent_exit, timed_out),
		RULE(AGENT_T_OOM_KILLED, F_FLAG, struct agent_exit, oom_killed),
	};
	memset(out, 0, sizeof(*out));
	uint32_t seen;
	if (agent_decode_fields(p, n, AGENT_EXIT, rules, 4, out, &seen, err) < 0)
		return -1;
	out->has_code = seen & 1;
	if (out->has_code == (out->signal != 0))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "EXIT must carry exactly one of an exit code and a signal");
	if (out->has_code && out->code > 255)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "EXIT code %u out of range", out->code);
	return 0;
}

int agent_decode_u32(const uint8_t *p, size_t n, uint16_t type, uint16_t tag, uint32_t *v,
		     struct msb_err *err)
{
	struct agent_iter it;
	struct agent_field f;
	bool found = false;
	int r;
	agent_iter_init(&it, p, n);
	while ((r = agent_iter_next(&it, &f, err)) > 0) {
		if (f.tag == tag && !found) {
			if (agent_field_u32(&f, v, err) < 0)
				return -1;
			found = true;
		} else if (f.tag != tag && agent_field_unknown(&f, type, err) < 0) {
			return -1;
		}
	}
	if (r < 0)
		return -1;
	if (!found)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s without field %u",
				   agent_type_name(type), tag);
	return 0;
}

/* ---- PTY and REPL ------------------------------------------------------------------- */

int agent_decode_resize(const uint8_t *p, size_t n, uint16_t *rows, uint16_t *cols,
			struct msb_err *err)
{
	struct agent_size {
		uint16_t rows, cols;
	} sz = {0};
	static const struct field_rule rules[] = {
		RULE(AGENT_T_ROWS, F_DIM, struct agent_size, rows),
		RULE(AGENT_T_COLS, F_DIM, struct agent_size, cols),
	};
	int r = agent_decode_fields(p, n, AGENT_RESIZE, rules, 2, &sz, NULL, err);
	*rows = sz.rows;
	*cols = sz.cols;
	if (r < 0)
		return -1;
	if (!*rows || !*cols)
		return msb_err_set(err, MSB_EK_USAGE, 0, "RESIZE needs both ROWS and COLS");
	return 0;
}

int agent_decode_repl_run(const uint8_t *p, size_t n, struct agent_repl_req *out,
			  struct msb_err *err)
{
	static const struct field_rule rules[] = {
		RULE(AGENT_T_LANGUAGE, F_STR, struct agent_repl_req, language),
		RULE(AGENT_T_CODE, F_STR, struct agent_repl_req, code),
		RULE(AGENT_T_CWD, F_STR, struct agent_repl_req, cwd),
		RULE(AGENT_T_TIMEOUT_MS, F_U64, struct agent_repl_req, timeout_ms),
		RULE_VEC(AGENT_T_ENV, F_ENV, struct agent_repl_req, env, envc),
	};
	memset(out, 0, sizeof(*out));
	if (agent_decode_fields(p, n, AGENT_REPL_RUN, rules, 5, out, NULL, err) < 0)
		goto fail;
	if (!out->language || !out->language[0]) {
		msb_err_set(err, MSB_EK_USAGE, 0, "REPL_RUN without a language");
		goto fail;
	}
	if (!out->code) {
		msb_err_set(err, MSB_EK_USAGE, 0, "REPL_RUN without code");
		goto fail;
	}
	if (out->cwd && out->cwd[0] != '/') {
		msb_err_set(err, MSB_EK_USAGE, 0, "REPL_RUN's working directory must be absolute");
		goto fail;
	}
	return 0;
fail:
	agent_repl_req_release(out);
	return -1;
}

void agent_repl_req_release(struct agent_repl_req *r)
{
	for (size_t i = 0; i < r->envc; i++)
		free(r->env[i]);
	free(r->env);
	free(r->language);
	free(r->code);
	free(r->cwd);
	memset(r, 0, sizeof(*r));
}

int agent_decode_repl_result(const uint8_t *p, size_t n, struct agent_repl_outcome *out,
			     struct msb_err *err)
{
	static const struct field_rule rules[] = {
		RULE(AGENT_T_REPL_STATUS, F_U32, struct agent_repl_outcome, status),
		RULE(AGENT_T_REPL_MESSAGE, F_STR_FIRST, struct agent_repl_outcome, message),
		RULE(AGENT_T_REPL_RESTARTED, F_FLAG, struct agent_repl_outcome, restarted),
	};
	memset(out, 0, sizeof(*out));
	uint32_t seen;
	if (agent_decode_fields(p, n, AGENT_REPL_RESULT, rules, 3, out, &seen, err) < 0)
		goto fail;
	if (!(seen & 1) || out->status > AGENT_REPL_TIMEOUT) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "REPL_RESULT without a known status");
		goto fail;
	}
	return 0;
fail:
	agent_repl_outcome_release(out);
	return -1;
}

void agent_repl_outcome_release(struct agent_repl_outcome *o)
{
	free(o->message);
	o->message = NULL;
}
