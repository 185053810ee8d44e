/* The codec of the file and metrics requests (see files_proto.h). */
#include "agent/files_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

static int flag(const struct agent_field *f, bool *v, struct msb_err *err)
{
	uint32_t u;
	if (agent_field_u32(f, &u, err) < 0)
		return -1;
	*v = u != 0;
	return 0;
}

/* Which optional fields each request takes. */
static bool takes(uint16_t type, uint16_t tag)
{
	switch (tag) {
	case AGENT_T_MODE:
		return type == AGENT_FILE_WRITE || type == AGENT_FILE_MKDIR;
	case AGENT_T_PARENTS:
		return type == AGENT_FILE_WRITE || type == AGENT_FILE_MKDIR;
	case AGENT_T_RECURSIVE:
		return type == AGENT_FILE_REMOVE;
	case AGENT_T_FOLLOW:
		return type == AGENT_FILE_STAT;
	case AGENT_T_ENT_MTIME:
		return type == AGENT_FILE_WRITE;
	case AGENT_T_ENT_LINK:
		return type == AGENT_FILE_SYMLINK;
	default:
		return false;
	}
}

int agent_decode_file_req(const uint8_t *p, size_t n, uint16_t type, struct agent_file_req *out,
			  struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *name = agent_file_type_name(type);
	char *path = NULL, *cwd = NULL;
	struct agent_iter it;
	struct agent_field f;
	int r;
	agent_iter_init(&it, p, n);
	while ((r = agent_iter_next(&it, &f, err)) > 0) {
		char **dst = f.tag == AGENT_T_PATH			       ? &path
			     : f.tag == AGENT_T_CWD			       ? &cwd
			     : f.tag == AGENT_T_ENT_LINK && takes(type, f.tag) ? &out->target
									       : NULL;
		if (dst) {
			if (*dst) {
				msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: field %u repeated", name,
					    f.tag);
				goto fail;
			}
			if (agent_field_str(&f, dst, err) < 0)
				goto fail;
			continue;
		}
		if (!takes(type, f.tag)) {
			/* Another request's field is as unknown here as a future one. */
			if (agent_field_unknown(&f, type, err) < 0)
				goto fail;
			continue;
		}
		switch (f.tag) {
		case AGENT_T_MODE:
			if (agent_field_u32(&f, &out->mode, err) < 0)
				goto fail;
			if (out->mode & ~07777u) {
				msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: mode %#o is not in 07777",
					    name, out->mode);
				goto fail;
			}
			out->has_mode = true;
			break;
		case AGENT_T_PARENTS:
			if (flag(&f, &out->parents, err) < 0)
				goto fail;
			break;
		case AGENT_T_RECURSIVE:
			if (flag(&f, &out->recursive, err) < 0)
				goto fail;
			break;
		case AGENT_T_FOLLOW:
			if (flag(&f, &out->follow, err) < 0)
				goto fail;
			break;
		case AGENT_T_ENT_MTIME:
			if (agent_field_u64(&f, &out->mtime, err) < 0)
				goto fail;
			if (out->mtime > (1ull << 40)) {
				msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: mtime out of range", name);
				goto fail;
			}
			out->has_mtime = true;
			break;
		}
	}
	if (r < 0)
		goto fail;
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
	memset(m, 0, sizeof(*m));
	unsigned seen = 0;
	struct agent_iter it;
	struct agent_field f;
	int r;
	agent_iter_init(&it, p, n);
	while ((r = agent_iter_next(&it, &f, err)) > 0) {
		uint32_t *u32 = NULL;
		uint64_t *u64 = NULL;
		switch (f.tag) {
		case AGENT_T_INTERVAL_MS:
			u32 = &m->interval_ms;
			break;
		case AGENT_T_CPU_X100:
			u32 = &m->cpu_x100;
			break;
		case AGENT_T_NCPUS:
			u32 = &m->ncpus;
			break;
		case AGENT_T_PROCS:
			u32 = &m->procs;
			break;
		case AGENT_T_MEM_TOTAL:
			u64 = &m->mem_total;
			break;
		case AGENT_T_MEM_USED:
			u64 = &m->mem_used;
			break;
		case AGENT_T_DISK_TOTAL:
			u64 = &m->disk_total;
			break;
		case AGENT_T_DISK_USED:
			u64 = &m->disk_used;
			break;
		case AGENT_T_UPTIME_MS:
			u64 = &m->uptime_ms;
			break;
		default:
			if (agent_field_unknown(&f, AGENT_METRICS, err) < 0)
				return -1;
			continue;
		}
		if (u32 ? agent_field_u32(&f, u32, err) : agent_field_u64(&f, u64, err))
			return -1;
		seen |= 1u << (f.tag - AGENT_T_INTERVAL_MS);
	}
	if (r < 0)
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
	*interval_ms = AGENT_METRICS_DEFAULT;
	struct agent_iter it;
	struct agent_field f;
	int r;
	agent_iter_init(&it, p, n);
	while ((r = agent_iter_next(&it, &f, err)) > 0) {
		if (f.tag == AGENT_T_INTERVAL_MS) {
			if (agent_field_u32(&f, interval_ms, err) < 0)
				return -1;
		} else if (agent_field_unknown(&f, AGENT_METRICS, err) < 0) {
			return -1;
		}
	}
	if (r < 0)
		return -1;
	if (*interval_ms > AGENT_METRICS_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "METRICS interval of %u ms is above the limit of %d ms",
				   *interval_ms, AGENT_METRICS_MAX);
	return 0;
}
