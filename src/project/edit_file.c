/* The file side of `msb add` / `msb remove`: check, edit, verify, replace. */
#include "project/edit.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"
#include "project/ytree.h"

int msb_sandbox_spec_check(const struct msb_sandbox_spec *s, struct msb_err *err)
{
	if (!s->image || !*s->image)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "an image is required: -i IMAGE, e.g. -i python");
	if (!msb_image_is_path(s->image) && msb_image_ref_check(s->image, err) < 0)
		return msb_err_wrap(err, "--image");
	for (size_t i = 0; i < s->nvolumes; i++) {
		struct msb_path_pair pp;
		if (msb_path_pair_parse(s->volumes[i], &pp, err) < 0)
			return msb_err_wrap(err, "--volume");
		for (size_t j = 0; j < i; j++) {
			struct msb_path_pair q;
			if (msb_path_pair_parse(s->volumes[j], &q, err) < 0)
				return -1;
			bool ov = msb_guest_paths_overlap(pp.guest, q.guest);
			if (ov)
				msb_err_set(
					err, MSB_EK_USAGE, 0,
					"--volume: the guest paths '%s' and '%s' overlap; mount "
					"each at a separate directory",
					q.guest, pp.guest);
			msb_path_pair_clear(&q);
			if (ov) {
				msb_path_pair_clear(&pp);
				return -1;
			}
		}
		msb_path_pair_clear(&pp);
	}
	for (size_t i = 0; i < s->nports; i++) {
		struct msb_port_pair pp;
		if (msb_port_pair_parse(s->ports[i], &pp, err) < 0)
			return msb_err_wrap(err, "--port");
	}
	for (size_t i = 0; i < s->nenvs; i++) {
		struct msb_env_pair ep;
		if (msb_env_pair_parse(s->envs[i], &ep, err) < 0)
			return msb_err_wrap(err, "--env");
		msb_env_pair_clear(&ep);
	}
	for (size_t i = 0; i < s->ndepends_on; i++)
		if (!msb_sandbox_name_valid(s->depends_on[i]))
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "--depends-on: '%s' is not a sandbox name",
					   s->depends_on[i]);
	if (s->workdir && s->workdir[0] != '/')
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "--workdir: '%s' is not an absolute path; e.g. --workdir /app",
				   s->workdir);
	if (s->shell && !*s->shell)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "--shell is empty; e.g. --shell /bin/bash");
	for (size_t i = 0; i < s->nscripts; i++)
		if (!msb_path_segment_valid(s->scripts[i].key))
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "--script: '%s' is not a script name; use a word "
					   "without '/', e.g. --script test='pytest'",
					   s->scripts[i].key);
	enum msb_scope sc;
	if (s->scope && msb_scope_parse(s->scope, false, &sc) < 0)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "--scope '%s': write one of none, group, public, any", s->scope);
	return 0;
}

int msb_write_file_atomic(const char *path, const char *data, size_t len, unsigned mode,
			  struct msb_err *err)
{
	_cleanup_free_ char *copy = strdup(path);
	_cleanup_free_ char *tmp = NULL;
	if (!copy || asprintf(&tmp, "%s/.%s.msb-XXXXXX", dirname(copy),
			      strrchr(path, '/') ? strrchr(path, '/') + 1 : path) < 0) {
		tmp = NULL; /* asprintf leaves it undefined on failure */
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "writing %s", path);
	}
	struct stat st;
	bool existed = stat(path, &st) == 0;
	if (existed)
		mode = st.st_mode & 07777;
	_cleanup_close_ int fd = mkstemp(tmp);
	if (fd < 0)
		return msb_err_sys(err, "creating a temporary file beside %s", path);
	/* Keep the owner too (root editing a user's file); only root can, and
	 * failing to is not worth failing the edit. */
	if (existed && fchown(fd, st.st_uid, st.st_gid) < 0 && errno != EPERM)
		msb_debug("keeping the owner of %s: %s", path, strerror(errno));
	if (msb_write_all(fd, data, len) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0) {
		msb_err_sys(err, "writing %s", tmp);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		msb_err_sys(err, "replacing %s", path);
		unlink(tmp);
		return -1;
	}
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool kvs_eq(const struct msb_kv *a, size_t na, const struct msb_kv *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!str_eq(a[i].key, b[i].key) || !str_eq(a[i].value, b[i].value))
			return false;
	return true;
}

static bool strv_eq(const struct msb_strv *a, const char *const *b, size_t nb)
{
	if (a->n != nb)
		return false;
	for (size_t i = 0; i < nb; i++)
		if (strcmp(a->v[i], b[i]) != 0)
			return false;
	return true;
}

/* Does the sandbox read back from the edited file say what was asked? */
static bool spec_matches(const struct msb_sandbox *sb, const struct msb_sandbox_spec *s)
{
	if (!str_eq(sb->image, s->image) || sb->memory_mib != s->memory_mib ||
	    sb->cpus != s->cpus ||
	    !str_eq(sb->shell, s->shell || s->no_default_shell ? s->shell : MSB_DEFAULT_SHELL) ||
	    !str_eq(sb->workdir, s->workdir) || sb->nvolumes != s->nvolumes ||
	    sb->nports != s->nports || sb->nenvs != s->nenvs ||
	    !strv_eq(&sb->depends_on, s->depends_on, s->ndepends_on) ||
	    !strv_eq(&sb->command, s->command, s->ncommand) ||
	    !kvs_eq(sb->scripts, sb->nscripts, s->scripts, s->nscripts) ||
	    !kvs_eq(sb->imports, sb->nimports, s->imports, s->nimports) ||
	    !kvs_eq(sb->exports, sb->nexports, s->exports, s->nexports))
		return false;
	enum msb_scope sc = MSB_SCOPE_DEFAULT;
	if (s->scope)
		msb_scope_parse(s->scope, false, &sc);
	if (sb->scope != sc)
		return false;
	for (size_t i = 0; i < s->nvolumes; i++) {
		struct msb_path_pair pp;
		struct msb_err e;
		if (msb_path_pair_parse(s->volumes[i], &pp, &e) < 0)
			return false;
		bool ok = str_eq(pp.host, sb->volumes[i].host) &&
			  str_eq(pp.guest, sb->volumes[i].guest);
		msb_path_pair_clear(&pp);
		if (!ok)
			return false;
	}
	for (size_t i = 0; i < s->nports; i++) {
		struct msb_port_pair pp;
		struct msb_err e;
		if (msb_port_pair_parse(s->ports[i], &pp, &e) < 0 || pp.host != sb->ports[i].host ||
		    pp.guest != sb->ports[i].guest)
			return false;
	}
	for (size_t i = 0; i < s->nenvs; i++) {
		const char *eq = strchr(s->envs[i], '=');
		if (!eq || strncmp(s->envs[i], sb->envs[i].name, (size_t)(eq - s->envs[i])) != 0 ||
		    sb->envs[i].name[eq - s->envs[i]] != '\0' ||
		    strcmp(eq + 1, sb->envs[i].value) != 0)
			return false;
	}
	return true;
}

enum edit_op { OP_ADD, OP_REMOVE, OP_SET };

/* Same names in the same order, except those removed (OP_REMOVE) and those
 * added at the end (OP_ADD, or OP_SET of a new name)? */
static bool names_as_expected(const struct msb_sandboxfile *before,
			      const struct msb_sandboxfile *after, const char *const *names,
			      size_t n, enum edit_op op)
{
	size_t j = 0;
	for (size_t i = 0; i < before->nsandboxes; i++) {
		bool removed = false;
		for (size_t k = 0; op == OP_REMOVE && k < n; k++)
			if (strcmp(before->sandboxes[i].name, names[k]) == 0)
				removed = true;
		if (removed)
			continue;
		if (j >= after->nsandboxes ||
		    strcmp(before->sandboxes[i].name, after->sandboxes[j].name) != 0)
			return false;
		j++;
	}
	for (size_t k = 0; op != OP_REMOVE && k < n; k++) {
		if (op == OP_SET && msb_sandboxfile_find(before, names[k]))
			continue;
		if (j >= after->nsandboxes || strcmp(after->sandboxes[j].name, names[k]) != 0)
			return false;
		j++;
	}
	return j == after->nsandboxes;
}

static int lock_dir_of(const char *path, struct msb_err *err)
{
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "locking %s", path);
	const char *dir = dirname(copy);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
					   "the directory %s does not exist; run `msb init` first",
					   dir);
		return msb_err_sys(err, "opening %s", dir);
	}
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			msb_err_sys(err, "locking %s", dir);
			close(fd);
			return -1;
		}
	}
	return fd;
}

static int edit_file(enum edit_op op, const char *given, const char *const *names, size_t nnames,
		     const struct msb_sandbox_spec *spec, struct msb_err *err)
{
	/* A symlinked Sandboxfile is edited where it lives (rename would replace
	 * the link with a file). */
	char real[PATH_MAX];
	const char *path = realpath(given, real) ? real : given;
	_cleanup_free_ char *text = NULL, *out = NULL;
	size_t len, outlen;
	struct msb_sandboxfile *before = NULL, *after = NULL;
	int rc = -1;
	/* Edits are read-modify-write: serialise them (the CLI, the server) on a
	 * lock of the directory, which the rename leaves in place. */
	_cleanup_close_ int lock = lock_dir_of(path, err);
	if (lock < 0)
		return -1;
	if (msb_sandboxfile_load(path, &before, err) < 0)
		return -1;
	if (msb_read_file(path, YTREE_MAX_INPUT_BYTES, MSB_EK_USAGE, &text, &len, err) < 0)
		goto out;
	if (spec) {
		for (size_t i = 0; i < nnames; i++)
			if (!msb_sandbox_name_valid(names[i])) {
				msb_err_set(err, MSB_EK_USAGE, 0,
					    "'%s' is not a valid sandbox name; use 1-63 letters, "
					    "digits, '_' or '-', starting with a letter or digit",
					    names[i]);
				goto out;
			}
		if (msb_sandbox_spec_check(spec, err) < 0)
			goto out;
		for (size_t i = 0; i < spec->ndepends_on; i++) {
			const char *d = spec->depends_on[i];
			bool known = msb_sandboxfile_find(before, d) != NULL;
			for (size_t k = 0; !known && k < nnames; k++)
				known = strcmp(names[k], d) == 0;
			if (!known) {
				msb_err_set(err, MSB_EK_USAGE, 0,
					    "--depends-on: there is no sandbox '%s' in %s; add it "
					    "first or fix the name",
					    d, path);
				goto out;
			}
		}
		int r = op == OP_SET ? msb_sandboxfile_text_set(text, len, path, names[0], spec,
								&out, &outlen, err)
				     : msb_sandboxfile_text_add(text, len, path, names, nnames,
								spec, &out, &outlen, err);
		if (r < 0)
			goto out;
	} else if (msb_sandboxfile_text_remove(text, len, path, names, nnames, &out, &outlen, err) <
		   0) {
		goto out;
	}
	/* Verify before writing: the result loads, and says what was asked. */
	if (msb_sandboxfile_parse(out, outlen, path, before->project_dir, &after, err) < 0) {
		msb_err_wrap(err, "the edited file would not load, so %s was left unchanged", path);
		goto out;
	}
	bool ok = names_as_expected(before, after, names, nnames, op);
	for (size_t i = 0; ok && spec && i < nnames; i++)
		ok = spec_matches(msb_sandboxfile_find(after, names[i]), spec);
	if (!ok) {
		msb_err_set(err, MSB_EK_INTERNAL, 0,
			    "the edited %s did not read back as intended, so it was left "
			    "unchanged (a bug: please report it with the file)",
			    path);
		goto out;
	}
	rc = msb_write_file_atomic(path, out, outlen, 0644, err);
out:
	msb_sandboxfile_free(before);
	msb_sandboxfile_free(after);
	return rc;
}

int msb_sandboxfile_add(const char *path, const char *const *names, size_t nnames,
			const struct msb_sandbox_spec *spec, struct msb_err *err)
{
	return edit_file(OP_ADD, path, names, nnames, spec, err);
}

int msb_sandboxfile_remove(const char *path, const char *const *names, size_t nnames,
			   struct msb_err *err)
{
	return edit_file(OP_REMOVE, path, names, nnames, NULL, err);
}

int msb_sandboxfile_set(const char *path, const char *name, const struct msb_sandbox_spec *spec,
			struct msb_err *err)
{
	const char *names[] = {name};
	return edit_file(OP_SET, path, names, 1, spec, err);
}
