#include "project/project.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/paths.h"
#include "project/edit.h"

static int oom(struct msb_err *err)
{
	return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
}

/* "dir/name" ("/name" under the root), or NULL. */
static char *join(const char *dir, const char *name)
{
	char *s;
	if (asprintf(&s, "%s/%s", strcmp(dir, "/") ? dir : "", name) < 0)
		return NULL;
	return s;
}

static int fill(struct msb_project *p, const char *dir, const char *cfg, struct msb_err *err)
{
	char abs[PATH_MAX];
	if (!realpath(dir, abs)) {
		if (errno == ENOENT || errno == ENOTDIR)
			return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
					   "the project directory %s does not exist; create it "
					   "with `msb init -f %s`",
					   dir, dir);
		return msb_err_sys(err, "resolving %s", dir);
	}
	struct stat st;
	if (stat(abs, &st) < 0 || !S_ISDIR(st.st_mode))
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s is not a directory", dir);
	if (!msb_path_segment_valid(cfg))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "'%s' is not a config file name; -f takes a directory or a file "
				   "path such as ./Sandboxfile",
				   cfg);
	p->dir = strdup(abs);
	p->config_name = strdup(cfg);
	if (!p->dir || !p->config_name || (p->config_path = join(abs, cfg)) == NULL ||
	    (p->menv = join(abs, MSB_MENV_DIR)) == NULL) {
		msb_project_release(p);
		return oom(err);
	}
	return 0;
}

/* For `init -f PATH` with PATH missing: a name like a config file is a file
 * to create in an existing directory; anything else a directory to create. */
static bool looks_like_config(const char *path)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t n = strlen(base);
	return strcmp(base, MSB_SANDBOXFILE_NAME) == 0 ||
	       (n > 5 && strcmp(base + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(base + n - 4, ".yml") == 0);
}

int msb_project_resolve(const char *file_opt, bool for_init, struct msb_project *p,
			struct msb_err *err)
{
	memset(p, 0, sizeof(*p));
	if (!file_opt || !*file_opt)
		return fill(p, ".", MSB_SANDBOXFILE_NAME, err);
	struct stat st;
	bool exists = stat(file_opt, &st) == 0;
	if ((exists && S_ISDIR(st.st_mode)) ||
	    (!exists && for_init && errno == ENOENT && !looks_like_config(file_opt))) {
		if (!exists) {
			/* Upstream's init creates the directory; so does ours. */
			if (msb_mkdir_p(file_opt, 0755, err) < 0)
				return -1;
		}
		return fill(p, file_opt, MSB_SANDBOXFILE_NAME, err);
	}
	_cleanup_free_ char *a = strdup(file_opt), *b = strdup(file_opt);
	if (!a || !b)
		return oom(err);
	size_t n = strlen(b);
	if (b[n - 1] == '/')
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0, "the directory %s does not exist",
				   file_opt);
	const char *base = basename(b);
	const char *dir = strchr(file_opt, '/') ? dirname(a) : ".";
	return fill(p, dir, base, err);
}

void msb_project_release(struct msb_project *p)
{
	free(p->dir);
	free(p->config_name);
	free(p->config_path);
	free(p->menv);
	memset(p, 0, sizeof(*p));
}

static int mkdir_in(const char *base, const char *sub, struct msb_err *err)
{
	_cleanup_free_ char *path = NULL;
	if (!(path = join(base, sub)))
		return oom(err);
	return msb_mkdir_p(path, 0755, err);
}

/* Is ".menv" ignored by a line of .gitignore already? */
static bool gitignore_has_menv(const char *text)
{
	const char *p = text;
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		while (l && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
			l--;
		const char *s = p;
		if (l && *s == '/') {
			s++;
			l--;
		}
		if ((l == 5 && memcmp(s, ".menv", 5) == 0) ||
		    (l == 6 && memcmp(s, ".menv/", 6) == 0))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

static int update_gitignore(const struct msb_project *p, struct msb_err *err)
{
	_cleanup_free_ char *path = NULL, *text = NULL, *next = NULL;
	if (!(path = join(p->dir, ".gitignore")))
		return oom(err);
	size_t len = 0;
	if (msb_read_file(path, 16 << 20, MSB_EK_USAGE, &text, &len, err) < 0) {
		if (err->kind != MSB_EK_NOT_FOUND)
			return -1;
		text = strdup("");
		if (!text)
			return oom(err);
	}
	if (gitignore_has_menv(text))
		return 0;
	bool nl = len == 0 || text[len - 1] == '\n';
	if (asprintf(&next, "%s%s%s/\n", text, nl ? "" : "\n", MSB_MENV_DIR) < 0) {
		next = NULL;
		return oom(err);
	}
	return msb_write_file_atomic(path, next, strlen(next), 0644, err);
}

int msb_project_init(const struct msb_project *p, bool *created_config, struct msb_err *err)
{
	if (created_config)
		*created_config = false;
	if (msb_mkdir_p(p->menv, 0755, err) < 0 || mkdir_in(p->menv, "log", err) < 0 ||
	    mkdir_in(p->menv, "rw", err) < 0 || mkdir_in(p->menv, "patch", err) < 0)
		return msb_err_wrap(err, "initialising %s", p->dir);
	struct msb_state *st;
	if (msb_project_state(p, &st, err) < 0)
		return msb_err_wrap(err, "initialising %s", p->dir);
	msb_state_close(st);
	/* O_EXCL: never overwrite a config that appears meanwhile. */
	int fd = open(p->config_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0) {
		size_t l = strlen(MSB_DEFAULT_CFG);
		ssize_t w = write(fd, MSB_DEFAULT_CFG, l);
		int saved = errno;
		close(fd);
		if (w != (ssize_t)l) {
			errno = w < 0 ? saved : EIO;
			unlink(p->config_path);
			return msb_err_sys(err, "writing %s", p->config_path);
		}
		if (created_config)
			*created_config = true;
	} else if (errno != EEXIST) {
		return msb_err_sys(err, "creating %s", p->config_path);
	}
	return update_gitignore(p, err);
}

int msb_project_load(const struct msb_project *p, struct msb_sandboxfile **out, struct msb_err *err)
{
	return msb_sandboxfile_load(p->config_path, out, err);
}

int msb_project_state(const struct msb_project *p, struct msb_state **out, struct msb_err *err)
{
	*out = NULL;
	struct stat st;
	if (stat(p->menv, &st) < 0 || !S_ISDIR(st.st_mode))
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "%s has no %s/ directory; run `msb init` there first", p->dir,
				   MSB_MENV_DIR);
	_cleanup_free_ char *db = NULL;
	if (!(db = join(p->menv, MSB_STATE_DB)))
		return oom(err);
	return msb_state_open(db, out, err);
}

static char *menv_path(const struct msb_project *p, const char *sub, const char *sandbox,
		       const char *suffix)
{
	char *s = NULL;
	if (asprintf(&s, "%s/%s/%s/%s%s", p->menv, sub, p->config_name, sandbox, suffix) < 0)
		return NULL;
	return s;
}

char *msb_project_log_path(const struct msb_project *p, const char *sandbox)
{
	return menv_path(p, "log", sandbox, ".log");
}

char *msb_project_rw_dir(const struct msb_project *p, const char *sandbox)
{
	return menv_path(p, "rw", sandbox, "");
}

char *msb_project_patch_dir(const struct msb_project *p, const char *sandbox)
{
	return menv_path(p, "patch", sandbox, "");
}
