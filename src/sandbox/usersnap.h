/* User snapshots of running sandboxes (`msb snapshot`, `msb fork`). */
#ifndef MSB_SANDBOX_USERSNAP_H
#define MSB_SANDBOX_USERSNAP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

/* The --control socket of the msb-vmm process `pid` (caller frees), read from
 * /proc/<pid>/cmdline.  Kind state when it is not msb-vmm or has none. */
int sandbox_vmm_control_path(pid_t pid, char **out, struct msb_err *err);

struct sandbox_snapshot_info {
	const char *how;    /* how the writable layer was copied (static) */
	uint64_t paused_ms; /* how long the sandbox stood still */
	unsigned memory_mib;
	bool rw;
	bool parked; /* an agent connection is parked in it for each copy's first client */
};

/* Snapshot the sandbox whose msb-vmm is `vmm_pid` as user snapshot `name`:
 * msb-vmm writes memory and device state (the VM pauses), the writable layer
 * is copied (reflink, else sparse), the VM resumes.  `source` names the
 * sandbox in the metadata (NULL: its own name).  An existing name is refused
 * (kind exists); nothing is left behind on failure. */
int sandbox_snapshot_create(const char *name, pid_t vmm_pid, const char *source,
			    struct sandbox_snapshot_info *info, struct msb_err *err);

/* Remove user snapshot `name` (sandboxes restored from it keep running). */
int sandbox_snapshot_remove(const char *name, struct msb_err *err);

struct sandbox_spec;
struct sandbox_snapmeta;
/* Open user snapshot `name` and fill what a restore of it needs into *spec
 * (image, cpus, memory, snapshot_*), pointing into *dir and *m, which the
 * caller frees (free, sandbox_snapmeta_clear) after the sandbox started. */
int sandbox_snapshot_spec(const char *name, struct sandbox_spec *spec, char **dir,
			  struct sandbox_snapmeta *m, struct msb_err *err);

#endif
