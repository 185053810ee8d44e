#include "project/menv.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/paths.h"

struct msb_rotlog {
	int fd;
	char *path, *old;
	uint64_t max, size;
};

static int open_log(struct msb_rotlog *l, struct msb_err *err)
{
	l->fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (l->fd < 0)
		return msb_err_sys(err, "opening the log %s", l->path);
	struct stat st;
	if (fstat(l->fd, &st) < 0)
		return msb_err_sys(err, "opening the log %s", l->path);
	if (!S_ISREG(st.st_mode))
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s is not a regular file", l->path);
	l->size = (uint64_t)st.st_size;
	return 0;
}

int msb_rotlog_open(const char *path, uint64_t max_bytes, struct msb_rotlog **out,
		    struct msb_err *err)
{
	*out = NULL;
	struct msb_rotlog *l = calloc(1, sizeof(*l));
	_cleanup_free_ char *dir = strdup(path);
	if (!l || !dir || !(l->path = strdup(path)) || asprintf(&l->old, "%s.old", path) < 0) {
		if (l)
			free(l->path);
		free(l);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "opening the log %s", path);
	}
	l->fd = -1;
	l->max = max_bytes ? max_bytes : MSB_LOG_MAX_BYTES;
	if (msb_mkdir_p(dirname(dir), 0755, err) < 0 || open_log(l, err) < 0) {
		msb_rotlog_close(l);
		return -1;
	}
	*out = l;
	return 0;
}

static int rotate(struct msb_rotlog *l, struct msb_err *err)
{
	if (rename(l->path, l->old) < 0 && errno != ENOENT)
		return msb_err_sys(err, "rotating the log %s", l->path);
	close(l->fd);
	l->fd = -1;
	return open_log(l, err);
}

int msb_rotlog_write(struct msb_rotlog *l, const void *buf, size_t len, struct msb_err *err)
{
	if (l->size > 0 && l->size + len > l->max && rotate(l, err) < 0)
		return -1;
	if (msb_write_all(l->fd, buf, len) < 0)
		return msb_err_sys(err, "writing the log %s", l->path);
	l->size += len;
	return 0;
}

void msb_rotlog_close(struct msb_rotlog *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	free(l->path);
	free(l->old);
	free(l);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int rc = type == FTW_DP ? rmdir(path) : unlink(path);
	return rc < 0 && errno != ENOENT ? -1 : 0;
}

int msb_remove_tree(const char *path, struct msb_err *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : msb_err_sys(err, "removing %s", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return msb_err_sys(err, "removing %s", path);
		return 0;
	}
	/* Depth first, physical (symlinks removed, never followed), one file system. */
	if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
		return msb_err_sys(err, "removing %s", path);
	if (lstat(path, &st) == 0)
		return msb_err_set(err, MSB_EK_SYSTEM, EBUSY,
				   "removing %s (something in it is on another file system)", path);
	return 0;
}

static int clean_all(const struct msb_project *p, bool force, struct msb_err *err)
{
	if (!force && access(p->config_path, F_OK) == 0)
		return msb_err_set(
			err, MSB_EK_STATE, 0,
			"%s exists, so its sandboxes' state is still in use; pass --force "
			"to remove %s anyway",
			p->config_path, p->menv);
	struct msb_state *st;
	if (access(p->menv, F_OK) == 0 && msb_project_state(p, &st, err) == 0) {
		struct msb_state_row *rows;
		size_t n;
		int rc = msb_state_list(st, NULL, &rows, &n, err);
		msb_state_close(st);
		if (rc < 0)
			return -1;
		for (size_t i = 0; i < n; i++) {
			if (msb_state_row_alive(&rows[i])) {
				msb_err_set(err, MSB_EK_STATE, 0,
					    "the sandbox '%s' is running; stop it first (msb down "
					    "%s)",
					    rows[i].name, rows[i].name);
				msb_state_rows_free(rows, n);
				return -1;
			}
		}
		msb_state_rows_free(rows, n);
	}
	return msb_remove_tree(p->menv, err);
}

int msb_project_clean(const struct msb_project *p, const char *name, bool force,
		      struct msb_err *err)
{
	if (!name)
		return clean_all(p, force, err);
	if (!msb_sandbox_name_valid(name))
		return msb_err_set(err, MSB_EK_USAGE, 0, "'%s' is not a sandbox name", name);
	struct msb_sandboxfile *sf = NULL;
	if (msb_project_load(p, &sf, err) == 0) {
		bool listed = msb_sandboxfile_find(sf, name) != NULL;
		msb_sandboxfile_free(sf);
		if (listed && !force)
			return msb_err_set(err, MSB_EK_STATE, 0,
					   "'%s' is still in %s; remove it from there first (msb "
					   "remove %s) or pass --force",
					   name, p->config_path, name);
	} else if (err->kind != MSB_EK_NOT_FOUND && !force) {
		return msb_err_wrap(err,
				    "cannot tell whether '%s' is still configured (pass "
				    "--force to clean it anyway)",
				    name);
	}
	struct msb_state *st;
	if (msb_project_state(p, &st, err) < 0)
		return -1;
	struct msb_state_row row;
	bool found;
	int rc = msb_state_get(st, name, p->config_name, &row, &found, err);
	if (rc == 0 && found && msb_state_row_alive(&row))
		rc = msb_err_set(err, MSB_EK_STATE, 0,
				 "the sandbox '%s' is running; stop it first (msb down %s)", name,
				 name);
	if (found)
		msb_state_row_clear(&row);
	char *paths[4] = {msb_project_rw_dir(p, name), msb_project_patch_dir(p, name),
			  msb_project_log_path(p, name), NULL};
	if (paths[2] && asprintf(&paths[3], "%s.old", paths[2]) < 0)
		paths[3] = NULL;
	for (size_t i = 0; rc == 0 && i < 4; i++)
		rc = paths[i] ? msb_remove_tree(paths[i], err)
			      : msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "cleaning %s", name);
	for (size_t i = 0; i < 4; i++)
		free(paths[i]);
	if (rc == 0 && found)
		rc = msb_state_delete(st, name, p->config_name, err);
	msb_state_close(st);
	return rc;
}

/* nftw has no context argument: one walk at a time per process. */
static uint64_t usage_sum;

static int add_usage(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	usage_sum += (uint64_t)st->st_blocks * 512;
	return 0;
}

int msb_tree_usage(const char *path, uint64_t *bytes)
{
	*bytes = 0;
	struct stat st;
	if (lstat(path, &st) < 0)
		return -1;
	usage_sum = 0;
	if (nftw(path, add_usage, 32, FTW_PHYS | FTW_MOUNT) != 0)
		return -1;
	*bytes = usage_sum;
	return 0;
}

int64_t msb_log_tail_offset(int fd, unsigned long lines, size_t chunk, unsigned long *left)
{
	struct stat st;
	*left = lines;
	if (lines == 0) {
		if (fstat(fd, &st) < 0)
			return -1;
		return st.st_size;
	}
	if (fstat(fd, &st) < 0)
		return -1;
	if (st.st_size == 0)
		return 0;
	if (chunk == 0 || chunk > 65536)
		chunk = 8192;
	char buf[65536];
	off_t end = st.st_size, pos = end;
	unsigned long seen = 0;
	while (pos > 0) {
		size_t n = pos > (off_t)chunk ? chunk : (size_t)pos;
		pos -= (off_t)n;
		if (pread(fd, buf, n, pos) != (ssize_t)n)
			return -1;
		for (size_t i = n; i-- > 0;) {
			if (buf[i] != '\n')
				continue;
			/* A final newline ends the last line; it does not start one. */
			if (pos + (off_t)i == end - 1)
				continue;
			if (++seen == lines) {
				*left = 0;
				return pos + (off_t)i + 1;
			}
		}
	}
	/* The file holds fewer lines than asked: seen + 1 of them. */
	*left = lines - (seen + 1 > lines ? lines : seen + 1);
	return 0;
}
