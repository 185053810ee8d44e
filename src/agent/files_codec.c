/* The codec of the file and metrics requests (see files_proto.h). */
#include "agent/files_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/codec_int.h"

const char *agent_file_type_name(uint16_t type)
{
	switch (type) {
	case AGENT_FILE_READ:
		return "FILE_READ";
	case AGENT_FILE_WRITE:
		return "FILE_WRITE";
	case AGENT_FILE_LIST:
		return "FILE_LIST";
	case AGENT_FILE_STAT:
		return "FILE_STAT";
	case AGENT_FILE_MKDIR:
		return "FILE_MKDIR";
	case AGENT_FILE_REMOVE:
		return "FILE_REMOVE";
	case AGENT_FILE_INFO:
		return "FILE_INFO";
	case AGENT_FILE_ENTRIES:
		return "FILE_ENTRIES";
	case AGENT_FILE_SYMLINK:
		return "FILE_SYMLINK";
	case AGENT_METRICS:
		return "METRICS";
	default:
		return NULL;
	}
}

/* The fields of a file request as they arrive (PATH and CWD are joined
 * afterwards). */
struct file_fields {
	struct agent_file_req r;
	char *path, *cwd;
};

#define FRULE(tag, kind, member) RULE(tag, kind, struct file_fields, member)

/* The fields `type` takes: PATH and CWD, then its own (another request's
 * field is as unknown here as a future one).  Returns how many. */
static size_t file_rules(uint16_t type, struct field_rule *rules)
{
	size_t k = 0;
	rules[k++] = (struct field_rule)FRULE(AGENT_T_PATH, F_STR_ONCE, path);
	rules[k++] = (struct field_rule)FRULE(AGENT_T_CWD, F_STR_ONCE, cwd);
	if (type == AGENT_FILE_WRITE || type == AGENT_FILE_MKDIR) {
		rules[k++] = (struct field_rule)FRULE(AGENT_T_MODE, F_U32, r.mode);
		rules[k++] = (struct field_rule)FRULE(AGENT_T_PARENTS, F_FLAG, r.parents);
	}
	if (type == AGENT_FILE_WRITE)
		rules[k++] = (struct field_rule)FRULE(AGENT_T_ENT_MTIME, F_U64, r.mtime);
	if (type == AGENT_FILE_REMOVE)
		rules[k++] = (struct field_rule)FRULE(AGENT_T_RECURSIVE, F_FLAG, r.recursive);
	if (type == AGENT_FILE_STAT)
		rules[k++] = (struct field_rule)FRULE(AGENT_T_FOLLOW, F_FLAG, r.follow);
	if (type == AGENT_FILE_SYMLINK)
		rules[k++] = (struct field_rule)FRULE(AGENT_T_ENT_LINK, F_STR_ONCE, r.target);
	return k;
}

/* Whether a field of `tag` was stored. */
static bool got(const struct field_rule *rules, size_t n, uint32_t seen, uint16_t tag)
{
	for (size_t i = 0; i < n; i++)
		if (rules[i].tag == tag)
			return seen & (1u << i);
	return false;
}

int agent_decode_file_req(const uint8_t *p, size_t n, uint16_t type, struct agent_file_req *out,
			  struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *name = agent_type_name(type);
	struct file_fields ff = {0};
	struct field_rule rules[8];
	size_t nrules = file_rules(type, rules);
	uint32_t seen;
	int r = agent_decode_fields(p, n, type, rules, nrules, &ff, &seen, err);
	*out = ff.r;
	char *path = ff.path, *cwd = ff.cwd;
	if (r < 0)
		goto fail;
	out->has_mode = got(rules, nrules, seen, AGENT_T_MODE);
	if (out->mode & ~07777u) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: mode %#o is not in 07777", name,
			    out->mode);
		goto fail;
	}
	out->has_mtime = got(rules, nrules, seen, AGENT_T_ENT_MTIME);
	if (out->mtime > (1ull << 40)) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: mtime out of range", name);
		goto fail;
	}
	if (!path || !path[0]) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s without a path", name);
		goto fail;
	}
	if (type == AGENT_FILE_SYMLINK &&
	    (!out->target || !out->target[0] || strlen(out->target) >= AGENT_PATH_MAX)) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s needs a target below %d bytes", name,
			    AGENT_PATH_MAX);
		goto fail;
	}
	if (cwd && !cwd[0]) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s with an empty working directory", name);
		goto fail;
	}
	if (path[0] == '/') {
		out->path = path;
		path = NULL;
	} else {
		/* Relative: to CWD, itself relative to "/" when relative. */
		const char *base = cwd ? cwd : "/";
		size_t bl = strlen(base), pl = strlen(path);
		if (bl + pl + 3 > AGENT_PATH_MAX + 2)
			goto too_long;
		out->path = malloc(bl + pl + 3);
		if (!out->path) {
			msb_err_sys(err, "allocating a path");
			goto fail;
		}
		size_t k = 0;
		if (base[0] != '/')
			out->path[k++] = '/';
		memcpy(out->path + k, base, bl);
		k += bl;
		if (out->path[k - 1] != '/')
			out->path[k++] = '/';
		memcpy(out->path + k, path, pl + 1);
	}
	if (strlen(out->path) >= AGENT_PATH_MAX)
		goto too_long;
	free(path);
	free(cwd);
	return 0;
too_long:
	msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: the path is longer than %d bytes", name,
		    AGENT_PATH_MAX - 1);
fail:
	free(path);
	free(cwd);
	agent_file_req_release(out);
	return -1;
}

void agent_file_req_release(struct agent_file_req *r)
{
	free(r->path);
	free(r->target);
	memset(r, 0, sizeof(*r));
}

/* ---- entries ------------------------------------------------------------------------ */

void agent_file_info_clear(struct agent_file_info *e)
{
	free(e->name);
	free(e->link);
	memset(e, 0, sizeof(*e));
}

void agent_put_file_info(struct agent_buf *b, const struct agent_file_info *e)
{
	agent_put_str(b, AGENT_T_ENT_NAME, e->name ? e->name : "");
	agent_put_u32(b, AGENT_T_ENT_TYPE, e->type);
	agent_put_u64(b, AGENT_T_ENT_SIZE, e->size);
	agent_put_u32(b, AGENT_T_ENT_MODE, e->mode);
	agent_put_u64(b, AGENT_T_ENT_MTIME, e->mtime);
	if (e->link)
		agent_put_str(b, AGENT_T_ENT_LINK, e->link);
}

void agent_put_file_entry(struct agent_buf *b, const struct agent_file_info *e)
{
	struct agent_buf tmp = {0};
	agent_put_file_info(&tmp, e);
	if (tmp.failed)
		b->failed = true;
	else
		agent_put_bytes(b, AGENT_T_ENTRY, tmp.data, tmp.len);
	agent_buf_release(&tmp);
}

static bool one_component(const char *s)
{
	return s[0] && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/');
}

int agent_decode_file_info(const uint8_t *p, size_t n, bool entry_name, struct agent_file_info *out,
			   struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	bool have_type = false;
	struct agent_iter it;
	struct agent_field f;
	int r;
	agent_iter_init(&it, p, n);
	while ((r = agent_iter_next(&it, &f, err)) > 0) {
		char **dst = f.tag == AGENT_T_ENT_NAME	 ? &out->name
			     : f.tag == AGENT_T_ENT_LINK ? &out->link
							 : NULL;
		if (dst) {
			if (*dst) {
				msb_err_set(err, MSB_EK_CORRUPT, 0, "file entry: field %u repeated",
					    f.tag);
				goto fail;
			}
			if (f.len >= AGENT_PATH_MAX) {
				msb_err_set(err, MSB_EK_CORRUPT, 0,
					    "file entry: field %u of %u bytes is too long", f.tag,
					    f.len);
				goto fail;
			}
			if (agent_field_str(&f, dst, err) < 0)
				goto fail;
			continue;
		}
		switch (f.tag) {
		case AGENT_T_ENT_TYPE:
			if (agent_field_u32(&f, &out->type, err) < 0)
				goto fail;
			have_type = true;
			break;
		case AGENT_T_ENT_SIZE:
			if (agent_field_u64(&f, &out->size, err) < 0)
				goto fail;
			break;
		case AGENT_T_ENT_MODE:
			if (agent_field_u32(&f, &out->mode, err) < 0)
				goto fail;
			break;
		case AGENT_T_ENT_MTIME:
			if (agent_field_u64(&f, &out->mtime, err) < 0)
				goto fail;
			break;
		default:
			if (agent_field_unknown(&f, AGENT_FILE_INFO, err) < 0)
				goto fail;
		}
	}
	if (r < 0)
		goto fail;
	if (!have_type || out->type < AGENT_FT_FILE || out->type > AGENT_FT_OTHER) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "file entry without a known type");
		goto fail;
	}
	if (out->mode & ~07777u) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "file entry: mode %#o is not in 07777",
			    out->mode);
		goto fail;
	}
	if (!out->name) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "file entry without a name");
		goto fail;
	}
	if (entry_name && !one_component(out->name)) {
		msb_err_set(err, MSB_EK_CORRUPT, 0,
			    "directory entry name '%.64s' is not a single path component",
			    out->name);
		goto fail;
	}
	return 0;
fail:
	agent_file_info_clear(out);
	return -1;
}

int agent_decode_file_entries(const uint8_t *p, size_t n,
			      int (*fn)(void *ctx, struct agent_file_info *e, struct msb_err *err),
			      void *ctx, struct msb_err *err)
{
	struct agent_iter it;
	struct agent_field f;
	int r;
	agent_iter_init(&it, p, n);
	while ((r = agent_iter_next(&it, &f, err)) > 0) {
		if (f.tag != AGENT_T_ENTRY) {
			if (agent_field_unknown(&f, AGENT_FILE_ENTRIES, err) < 0)
				return -1;
			continue;
		}
		struct agent_file_info e;
		if (agent_decode_file_info(f.val, f.len, true, &e, err) < 0)
			return -1;
		if (fn(ctx, &e, err) < 0) {
			agent_file_info_clear(&e);
			return -1;
		}
	}
	return r < 0 ? -1 : 0;
}

/* ---- metrics ---------------------------------------------------------------------- */

void agent_put_metrics(struct agent_buf *b, const struct agent_metrics *m)
{
	agent_put_u32(b, AGENT_T_INTERVAL_MS, m->interval_ms);
	agent_put_u32(b, AGENT_T_CPU_X100, m->cpu_x100);
	agent_put_u32(b, AGENT_T_NCPUS, m->ncpus);
	agent_put_u64(b, AGENT_T_MEM_TOTAL, m->mem_total);
	agent_put_u64(b, AGENT_T_MEM_USED, m->mem_used);
	agent_put_u64(b, AGENT_T_DISK_TOTAL, m->disk_total);
	agent_put_u64(b, AGENT_T_DISK_USED, m->disk_used);
	agent_put_u32(b, AGENT_T_PROCS, m->procs);
	agent_put_u64(b, AGENT_T_UPTIME_MS, m->uptime_ms);
}

int agent_decode_metrics(const uint8_t *p, size_t n, struct agent_metrics *m, struct msb_err *err)
{
	/* In tag order: bit i of `seen` is tag AGENT_T_INTERVAL_MS + i. */
	static const struct field_rule rules[] = {
		RULE(AGENT_T_INTERVAL_MS, F_U32, struct agent_metrics, interval_ms),
		RULE(AGENT_T_CPU_X100, F_U32, struct agent_metrics, cpu_x100),
		RULE(AGENT_T_NCPUS, F_U32, struct agent_metrics, ncpus),
		RULE(AGENT_T_MEM_TOTAL, F_U64, struct agent_metrics, mem_total),
		RULE(AGENT_T_MEM_USED, F_U64, struct agent_metrics, mem_used),
		RULE(AGENT_T_DISK_TOTAL, F_U64, struct agent_metrics, disk_total),
		RULE(AGENT_T_DISK_USED, F_U64, struct agent_metrics, disk_used),
		RULE(AGENT_T_PROCS, F_U32, struct agent_metrics, procs),
		RULE(AGENT_T_UPTIME_MS, F_U64, struct agent_metrics, uptime_ms),
	};
	memset(m, 0, sizeof(*m));
	uint32_t seen;
	if (agent_decode_fields(p, n, AGENT_METRICS, rules, sizeof(rules) / sizeof(rules[0]), m,
				&seen, err) < 0)
		return -1;
	if (seen != 0x1ff)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "METRICS reply lacks fields (%#x)",
				   seen);
	if (m->mem_used > m->mem_total || m->disk_used > m->disk_total)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "METRICS: more used than total");
	return 0;
}

int agent_decode_metrics_req(const uint8_t *p, size_t n, uint32_t *interval_ms, struct msb_err *err)
{
	struct req {
		uint32_t interval_ms;
	} q = {AGENT_METRICS_DEFAULT};
	static const struct field_rule rules[] = {
		RULE(AGENT_T_INTERVAL_MS, F_U32, struct req, interval_ms),
	};
	int r = agent_decode_fields(p, n, AGENT_METRICS, rules, 1, &q, NULL, err);
	*interval_ms = q.interval_ms;
	if (r < 0)
		return -1;
	if (*interval_ms > AGENT_METRICS_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "METRICS interval of %u ms is above the limit of %d ms",
				   *interval_ms, AGENT_METRICS_MAX);
	return 0;
}
