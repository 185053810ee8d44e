/* Volumes: host directories a sandbox sees at guest paths (docs/sandbox.md,
 * "Volumes").  msb-vmm serves each on a virtio-fs slot (tag msbvol<i>); the
 * base VM has SANDBOX_FS_SLOTS empty ones, a restore attaches the host
 * directories to the first slots and SETUP MOUNT mounts them in the guest.
 * Pure helpers, apart from sandbox_volume_check() which looks at the host. */
#ifndef MSB_SANDBOX_VOLUMES_H
#define MSB_SANDBOX_VOLUMES_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "project/sandboxfile.h"

#define SANDBOX_FS_SLOTS 4
#define SANDBOX_FS_TAG	 "msbvol"

struct sandbox_volume {
	char *host;  /* absolute, a directory */
	char *guest; /* absolute, not "/", no "." or ".." components */
	bool readonly;
};

struct sandbox_volumes {
	struct sandbox_volume *v; /* owned (sandbox_volumes_clear) */
	unsigned n;
};

/* "HOST:GUEST[:ro|:rw]" or "PATH" (msb exe -v, the server's `volumes`): HOST
 * relative to `base_dir` (NULL: the working directory).  Appends to *vols
 * after checking it (sandbox_volume_check) and the set (at most
 * SANDBOX_FS_SLOTS, no guest path inside another).  Errors: kind usage (bad
 * syntax, too many, overlaps, HOST not a directory), not_found (no HOST). */
int sandbox_volumes_add(struct sandbox_volumes *vols, const char *spec, const char *base_dir,
			struct msb_err *err);
/* A Sandboxfile's volumes (already parsed and resolved, host_abs set). */
int sandbox_volumes_from_pairs(struct sandbox_volumes *vols, const struct msb_path_pair *p,
			       size_t n, struct msb_err *err);
/* Append copies of `more` to *vols, checked as a set again. */
int sandbox_volumes_merge(struct sandbox_volumes *vols, const struct sandbox_volumes *more,
			  struct msb_err *err);
void sandbox_volumes_clear(struct sandbox_volumes *vols);

/* The host side exists and is a directory; the guest path is acceptable. */
int sandbox_volume_check(const struct sandbox_volume *v, struct msb_err *err);

/* msb-vmm's "--fs msbvol<i>[=DIR[,ro]]" for `slots` slots, the first filled
 * from vols (NULL: all empty).  More volumes than slots: kind usage. */
int sandbox_volumes_fs_argv(struct msb_strv *argv, unsigned slots,
			    const struct sandbox_volumes *vols, struct msb_err *err);

/* SETUP MOUNT values "msbvol<i> ro|rw GUEST", one per volume (owned by out). */
int sandbox_volumes_mounts(const struct sandbox_volumes *vols, struct msb_strv *out,
			   struct msb_err *err);

#endif
