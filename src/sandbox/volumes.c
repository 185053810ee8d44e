/* Volumes: parsing, checks and what msb-vmm and SETUP get (volumes.h). */
#include "sandbox/volumes.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/proto.h"
#include "common/cleanup.h"
#include "project/pairs.h"

void sandbox_volumes_clear(struct sandbox_volumes *vols)
{
	for (unsigned i = 0; i < vols->n; i++) {
		free(vols->v[i].host);
		free(vols->v[i].guest);
	}
	free(vols->v);
	vols->v = NULL;
	vols->n = 0;
}

int sandbox_volume_check(const struct sandbox_volume *v, struct msb_err *err)
{
	if (!agent_valid_mount_path(v->guest, strlen(v->guest)))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "the volume's guest path '%s' is not usable: give an absolute "
				   "path other than / without '.', '..' or empty components, e.g. "
				   "/data",
				   v->guest);
	struct stat st;
	if (stat(v->host, &st) < 0) {
		int e = errno;
		msb_err_sys(err, "the volume's host directory %s", v->host);
		if (e == ENOENT) {
			err->kind = MSB_EK_NOT_FOUND;
			msb_err_wrap(err, "create it or fix the path");
		}
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "the volume's host path %s is not a directory; volumes share "
				   "directories, not single files",
				   v->host);
	return 0;
}

static int append(struct sandbox_volumes *vols, struct sandbox_volume *v, struct msb_err *err)
{
	if (sandbox_volume_check(v, err) < 0)
		return -1;
	if (vols->n >= SANDBOX_FS_SLOTS)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "a sandbox has at most %d volumes (its VM has %d file system "
				   "slots); share a common parent directory instead",
				   SANDBOX_FS_SLOTS, SANDBOX_FS_SLOTS);
	for (unsigned i = 0; i < vols->n; i++)
		if (msb_guest_paths_overlap(vols->v[i].guest, v->guest))
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "the volume at %s overlaps the one at %s; give each its "
					   "own guest directory",
					   v->guest, vols->v[i].guest);
	struct sandbox_volume *p = realloc(vols->v, (vols->n + 1) * sizeof(*p));
	if (!p)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	vols->v = p;
	vols->v[vols->n++] = *v;
	*v = (struct sandbox_volume){0};
	return 0;
}

/* A trailing ":ro" or ":rw" on the guest side is the mode: cut it off. */
static void split_mode(char *guest, bool *readonly)
{
	size_t gl = strlen(guest);
	if (gl > 3 && (strcmp(guest + gl - 3, ":ro") == 0 || strcmp(guest + gl - 3, ":rw") == 0)) {
		*readonly = guest[gl - 1] == 'o';
		guest[gl - 3] = '\0';
	}
}

int sandbox_volumes_add(struct sandbox_volumes *vols, const char *spec, const char *base_dir,
			struct msb_err *err)
{
	struct msb_path_pair pp = {0};
	if (msb_path_pair_parse(spec, &pp, err) < 0)
		return -1;
	struct sandbox_volume v = {0};
	split_mode(pp.guest, &v.readonly);
	if (strchr(pp.guest, ':')) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "'%s' is not a volume; write HOST:GUEST, HOST:GUEST:ro or "
			    "HOST:GUEST:rw",
			    spec);
		msb_path_pair_clear(&pp);
		return -1;
	}
	char cwd[PATH_MAX];
	if (!base_dir && !(base_dir = getcwd(cwd, sizeof(cwd)))) {
		msb_err_sys(err, "resolving the volume's host path %s", pp.host);
		msb_path_pair_clear(&pp);
		return -1;
	}
	if (msb_path_pair_resolve(&pp, base_dir, err) < 0) {
		msb_path_pair_clear(&pp);
		return -1;
	}
	v.host = steal_pointer(&pp.host_abs);
	v.guest = steal_pointer(&pp.guest);
	msb_path_pair_clear(&pp);
	int r = append(vols, &v, err);
	free(v.host);
	free(v.guest);
	return r;
}

int sandbox_volumes_from_pairs(struct sandbox_volumes *vols, const struct msb_path_pair *p,
			       size_t n, struct msb_err *err)
{
	for (size_t i = 0; i < n; i++) {
		struct sandbox_volume v = {
			.host = strdup(p[i].host_abs ? p[i].host_abs : p[i].host),
			.guest = strdup(p[i].guest),
		};
		if (v.guest)
			split_mode(v.guest, &v.readonly);
		int r = v.host && v.guest
				? append(vols, &v, err)
				: msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		free(v.host);
		free(v.guest);
		if (r < 0)
			return msb_err_wrap(err, "volume %s:%s", p[i].host, p[i].guest);
	}
	return 0;
}

int sandbox_volumes_fs_argv(struct msb_strv *argv, unsigned slots,
			    const struct sandbox_volumes *vols, struct msb_err *err)
{
	unsigned n = vols ? vols->n : 0;
	if (n > slots)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "this VM has %u file system slots, too few for %u volumes",
				   slots, n);
	for (unsigned i = 0; i < slots; i++) {
		_cleanup_free_ char *a = NULL;
		int k = i < n ? asprintf(&a, SANDBOX_FS_TAG "%u=%s%s", i, vols->v[i].host,
					 vols->v[i].readonly ? ",ro" : "")
			      : asprintf(&a, SANDBOX_FS_TAG "%u", i);
		if (k < 0) {
			a = NULL;
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		}
		if (msb_strv_push(argv, "--fs", err) < 0 || msb_strv_push(argv, a, err) < 0)
			return -1;
	}
	return 0;
}

int sandbox_volumes_mounts(const struct sandbox_volumes *vols, struct msb_strv *out,
			   struct msb_err *err)
{
	for (unsigned i = 0; vols && i < vols->n; i++) {
		_cleanup_free_ char *m = NULL;
		if (asprintf(&m, SANDBOX_FS_TAG "%u %s %s", i, vols->v[i].readonly ? "ro" : "rw",
			     vols->v[i].guest) < 0) {
			m = NULL;
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		}
		if (msb_strv_push(out, m, err) < 0)
			return -1;
	}
	return 0;
}

int sandbox_volumes_merge(struct sandbox_volumes *vols, const struct sandbox_volumes *more,
			  struct msb_err *err)
{
	for (unsigned i = 0; i < more->n; i++) {
		struct sandbox_volume v = {
			.host = strdup(more->v[i].host),
			.guest = strdup(more->v[i].guest),
			.readonly = more->v[i].readonly,
		};
		int r = v.host && v.guest
				? append(vols, &v, err)
				: msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		free(v.host);
		free(v.guest);
		if (r < 0)
			return -1;
	}
	return 0;
}
