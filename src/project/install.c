#include "project/install.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/paths.h"
#include "project/edit.h"
#include "project/pairs.h"

static int oom(struct msb_err *err)
{
	return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
}

int msb_bin_dir(char **out, struct msb_err *err)
{
	*out = NULL;
	const char *d = getenv("MSB_BIN_DIR");
	if (d && *d) {
		if (d[0] != '/')
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "MSB_BIN_DIR must be an absolute path, not '%s'", d);
		*out = strdup(d);
		return *out ? 0 : oom(err);
	}
	const char *home = getenv("HOME");
	if (!home || home[0] != '/')
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "HOME is not set; set MSB_BIN_DIR to the directory for "
				   "installed sandboxes");
	if (asprintf(out, "%s/.local/bin", home) < 0) {
		*out = NULL;
		return oom(err);
	}
	return 0;
}

char *msb_shell_quote(const char *s)
{
	size_t n = 3;
	for (const char *p = s; *p; p++)
		n += *p == '\'' ? 4 : 1;
	char *q = malloc(n), *o = q;
	if (!q)
		return NULL;
	*o++ = '\'';
	for (const char *p = s; *p; p++) {
		if (*p == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else {
			*o++ = *p;
		}
	}
	*o++ = '\'';
	*o = '\0';
	return q;
}

/* Append to a growing string. */
static int cat(char **buf, size_t *len, const char *s)
{
	size_t l = strlen(s);
	char *n = realloc(*buf, *len + l + 1);
	if (!n)
		return -1;
	memcpy(n + *len, s, l + 1);
	*buf = n;
	*len += l;
	return 0;
}

static bool has_newline(const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strchr(v[i], '\n'))
			return true;
	return false;
}

static int cat_quoted(char **buf, size_t *len, const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *q = msb_shell_quote(v[i]);
		int bad = !q || cat(buf, len, " ") || cat(buf, len, q);
		free(q);
		if (bad)
			return -1;
	}
	return 0;
}

int msb_launcher_text(const char *name, const char *msb_exe, const char *const *exe_args, size_t n,
		      const char *const *args, size_t nargs, char **out, struct msb_err *err)
{
	*out = NULL;
	if (!msb_sandbox_name_valid(name))
		return msb_err_set(err, MSB_EK_USAGE, 0, "'%s' is not a valid command name", name);
	/* A value with a newline would end the exec line early. */
	if (has_newline(exe_args, n) || has_newline(args, nargs) || strchr(msb_exe, '\n'))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "an installed sandbox's options cannot hold a newline");
	char *buf = NULL;
	size_t len = 0;
	int bad = cat(&buf, &len, "#!/bin/sh\n" MSB_ALIAS_MARKER) || cat(&buf, &len, name) ||
		  cat(&buf, &len, "\n# A sandbox installed by `msb install`; `msb uninstall ") ||
		  cat(&buf, &len, name) || cat(&buf, &len, "` removes it.\nexec ");
	char *q = bad ? NULL : msb_shell_quote(msb_exe);
	bad = bad || !q || cat(&buf, &len, q) || cat(&buf, &len, " exe");
	free(q);
	if (bad || cat_quoted(&buf, &len, exe_args, n) || cat(&buf, &len, " --") ||
	    cat_quoted(&buf, &len, args, nargs) || cat(&buf, &len, " \"$@\"\n")) {
		free(buf);
		return oom(err);
	}
	*out = buf;
	return 0;
}

bool msb_launcher_is_ours(const char *path, const char *name)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return false;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	char buf[256];
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	if (r <= 0)
		return false;
	buf[r] = '\0';
	const char *head = "#!/bin/sh\n" MSB_ALIAS_MARKER;
	if (strncmp(buf, head, strlen(head)) != 0)
		return false;
	const char *nm = buf + strlen(head);
	size_t l = strcspn(nm, "\n");
	if (nm[l] != '\n')
		return false;
	return !name || (strlen(name) == l && strncmp(nm, name, l) == 0);
}

static char *join(const char *dir, const char *name)
{
	char *s;
	return asprintf(&s, "%s/%s", dir, name) < 0 ? NULL : s;
}

int msb_launcher_install(const char *dir, const char *name, const char *text, bool replace,
			 struct msb_err *err)
{
	if (!msb_sandbox_name_valid(name))
		return msb_err_set(err, MSB_EK_USAGE, 0, "'%s' is not a valid command name", name);
	if (msb_mkdir_p(dir, 0755, err) < 0)
		return -1;
	_cleanup_free_ char *path = join(dir, name);
	if (!path)
		return oom(err);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!msb_launcher_is_ours(path, NULL))
			return msb_err_set(err, MSB_EK_EXISTS, 0,
					   "%s exists and is not an msb launcher; pick another "
					   "name",
					   path);
		if (!replace)
			return msb_err_set(err, MSB_EK_EXISTS, 0,
					   "'%s' is already installed (%s); `msb uninstall %s` "
					   "first, or pass --force",
					   name, path, name);
	}
	if (msb_write_file_atomic(path, text, strlen(text), 0755, err) < 0)
		return -1;
	/* An existing launcher kept its mode through the atomic write: make sure. */
	if (chmod(path, 0755) < 0)
		return msb_err_sys(err, "chmod %s", path);
	return 0;
}

int msb_launcher_remove(const char *dir, const char *name, struct msb_err *err)
{
	if (!msb_sandbox_name_valid(name))
		return msb_err_set(err, MSB_EK_USAGE, 0, "'%s' is not a valid command name", name);
	_cleanup_free_ char *path = join(dir, name);
	if (!path)
		return oom(err);
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? msb_err_set(err, MSB_EK_NOT_FOUND, 0,
						     "'%s' is not installed (no %s)", name, path)
				       : msb_err_sys(err, "reading %s", path);
	if (!msb_launcher_is_ours(path, name))
		return msb_err_set(err, MSB_EK_STATE, 0,
				   "%s was not installed by msb (no '%s%s' line); left as it is",
				   path, MSB_ALIAS_MARKER, name);
	if (unlink(path) < 0)
		return msb_err_sys(err, "removing %s", path);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int msb_launcher_list(const char *dir, char ***names, size_t *n, struct msb_err *err)
{
	*names = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : msb_err_sys(err, "reading %s", dir);
	struct dirent *e;
	size_t cap = 0;
	while ((e = readdir(d))) {
		if (!msb_sandbox_name_valid(e->d_name))
			continue;
		_cleanup_free_ char *path = join(dir, e->d_name);
		if (!path || !msb_launcher_is_ours(path, e->d_name))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			char **v = realloc(*names, cap * sizeof(*v));
			if (!v)
				goto fail;
			*names = v;
		}
		if (!((*names)[*n] = strdup(e->d_name)))
			goto fail;
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(*names, *n, sizeof(**names), cmp_str);
	return 0;
fail:
	closedir(d);
	for (size_t i = 0; i < *n; i++)
		free((*names)[i]);
	free(*names);
	*names = NULL;
	*n = 0;
	return oom(err);
}

char *msb_which(const char *name)
{
	const char *path = getenv("PATH");
	if (!path || strchr(name, '/'))
		return NULL;
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return NULL;
	char *save = NULL;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char *p = join(*dir ? dir : ".", name);
		struct stat st;
		if (p && stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

int msb_install_default_name(const char *image, const char *script, char **out, struct msb_err *err)
{
	*out = NULL;
	char *name;
	if (script && *script) {
		name = strdup(script);
	} else {
		const char *base = strrchr(image, '/');
		base = base ? base + 1 : image;
		size_t l = strcspn(base, ":@");
		name = strndup(base, l);
	}
	if (!name)
		return oom(err);
	if (!msb_sandbox_name_valid(name)) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "'%s' (from '%s') is not a valid command name; give one: msb install "
			    "%s NAME",
			    name, image, image);
		free(name);
		return -1;
	}
	*out = name;
	return 0;
}
