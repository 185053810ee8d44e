/* Snapshots as msb uses them: the base snapshot every sandbox restores by
 * default, user snapshots of running sandboxes (`msb snapshot`), and what a
 * restore needs (msb-vmm's control socket, copies of writable layers).
 *
 * Layout under $MICROSANDBOX_HOME/snapshots (or $MSB_BASE_SNAPSHOTS for the
 * base ones, so that test runs can share them):
 *   base/<key>/{state,memory}        msb-vmm's files, one per VM shape
 *   base/<key>.lock                  held while that base is built
 *   user/<NAME>/{state,memory,meta[,rw.ext4]}
 * See docs/snapshot.md. */
#ifndef MSB_SANDBOX_SNAPSHOT_H
#define MSB_SANDBOX_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "sandbox/sandbox.h"

/* Bump when what a base snapshot holds or how msb attaches devices to it
 * changes: every old base is then rebuilt on first use. */
#define SANDBOX_BASE_LAYOUT "base-v2 disks=2 console vsock rng net fs=4"

/* ---- metadata (pure) --------------------------------------------------------
 * A small text file: the line "msb-snapshot 1", then "key=value" lines.  Used
 * for user snapshots (`meta`) and for a running sandbox's run directory
 * (`sandbox.meta`, what `msb snapshot create` reads).  Read as untrusted:
 * values are bounded, numbers checked, unknown keys ignored. */
struct sandbox_snapmeta {
	char *name;	     /* sandbox name (run dir) or snapshot name */
	char *source;	     /* user snapshot: the sandbox it was taken from */
	char *image;	     /* image reference */
	char *rootfs;	     /* the image's root filesystem file */
	char *rootfs_format; /* erofs | ext4 */
	char *rw_disk;	     /* run dir: the writable layer file, or NULL (tmpfs) */
	char *created;	     /* RFC 3339 UTC */
	/* base snapshot (`meta` in its directory): what it was built from */
	char *kernel, *initrd, *vmm; /* the files' paths */
	char *cmdline;		     /* the base kernel command line, or NULL */
	char *digest; /* warm snapshot: the image's manifest digest (source: its base's dir) */
	unsigned cpus, memory_mib;
	unsigned disks;	   /* disk slots the VM has (1 or 2): a restore gives the same */
	bool rw;	   /* user snapshot: holds rw.ext4 for slot 2 */
	bool net;	   /* the VM has a network device slot (after rng) */
	unsigned fs_slots; /* virtio-fs slots (after net): a restore gives the same */
	unsigned volumes;  /* run meta: volumes mounted (a snapshot refuses them) */
};

#define SANDBOX_SNAPMETA_MAX (64 * 1024)

int sandbox_snapmeta_parse(const char *buf, size_t len, struct sandbox_snapmeta *m,
			   struct msb_err *err);
/* The file's text (caller frees).  Values with a newline are refused (kind usage). */
char *sandbox_snapmeta_format(const struct sandbox_snapmeta *m, struct msb_err *err);
void sandbox_snapmeta_clear(struct sandbox_snapmeta *m);
int sandbox_snapmeta_read(const char *path, struct sandbox_snapmeta *m, struct msb_err *err);
/* Written to a temporary name and renamed. */
int sandbox_snapmeta_write(const char *path, const struct sandbox_snapmeta *m, struct msb_err *err);

/* A snapshot name: [A-Za-z0-9._-], 1..64 bytes, not starting with '.' or '-'. */
int sandbox_snapshot_name_check(const char *name, struct msb_err *err);

/* ---- the base snapshot -------------------------------------------------------- */

/* The text that identifies a base snapshot (pure): the files' identities, the
 * base command line, the VM shape and SANDBOX_BASE_LAYOUT.  Caller frees. */
struct sandbox_file_id {
	uint64_t size, mtime_ns, ino, dev;
};
char *sandbox_base_key_text(const struct sandbox_file_id ids[3], const char *base_cmdline,
			    unsigned cpus, unsigned memory_mib);
/* 16 hex digits of sha256(text) into out; stats the parts' files. */
int sandbox_base_key(const struct sandbox_parts *p, unsigned cpus, unsigned memory_mib,
		     char out[17], struct msb_err *err);
/* $MSB_BASE_SNAPSHOTS, else $MICROSANDBOX_HOME/snapshots/base (caller frees). */
char *sandbox_base_root(struct msb_err *err);
/* $MICROSANDBOX_HOME/snapshots/user (caller frees). */
char *sandbox_user_root(struct msb_err *err);

/* Make sure the base snapshot for (cpus, memory) exists, building it when
 * missing (a cold boot, minutes on PVM; one builder at a time under a file
 * lock, others wait).  *dir: its directory (caller frees). */
int sandbox_base_ensure(const struct sandbox_parts *p, unsigned cpus, unsigned memory_mib,
			int boot_timeout_ms, char **dir, struct msb_err *err);
/* Remove the base snapshot in `dir` (after msb-vmm refused it), under its lock. */
int sandbox_base_discard(const char *dir, struct msb_err *err);

/* ---- the warm snapshot (per image; throwaway sandboxes) -------------------------
 * A restore of the base with the image's root mounted (tmpfs overlay) and its
 * programs read into the page cache, before anything of a sandbox ran
 * (docs/snapshot.md).  Layout: $MSB_WARM_SNAPSHOTS, else
 * $MICROSANDBOX_HOME/snapshots/warm: <key>/{state,memory,meta}, <key>.lock. */
#define SANDBOX_WARM_LAYOUT "warm-v2 overlay=tmpfs eth0"

/* The text that identifies a warm snapshot (pure): SANDBOX_WARM_LAYOUT, eth0's
 * configuration (SANDBOX_NET_SETUP), the base's key, the image's manifest digest, its root
 * filesystem file's path and identity.  Caller frees. */
char *sandbox_warm_key_text(const char *base_key, const char *digest, const char *rootfs,
			    const struct sandbox_file_id *id);
/* 16 hex digits of sha256(text) into out; stats `rootfs`. */
int sandbox_warm_key(const char *base_key, const char *digest, const char *rootfs, char out[17],
		     struct msb_err *err);
/* What a warm snapshot reads into the page cache (pure): the program this run
 * execs, the image's own (Entrypoint[0], else Cmd[0]) and /bin/sh, each once,
 * those the agent takes (a name or an absolute path).  Pointers into the
 * arguments; returns how many (at most max). */
size_t sandbox_warm_programs(const char *run, const char *const *entrypoint, const char *const *cmd,
			     const char *out[], size_t max);
/* $MSB_WARM_SNAPSHOTS, else $MICROSANDBOX_HOME/snapshots/warm (caller frees). */
char *sandbox_warm_root(struct msb_err *err);
/* Whether this sandbox may start from a warm snapshot: spec->warm, a tmpfs
 * writable layer, a network (the snapshot's eth0 is configured), no user
 * snapshot, no $MSB_NO_WARM_SNAPSHOT. */
bool sandbox_warm_wanted(const struct sandbox_spec *spec);
/* Start sb (as for a base restore) from the warm snapshot of its image over
 * the base in `base_dir`, building it on first use.  0: started; 1: not
 * possible, a warning said why, the caller restores the base; -1: interrupted. */
int sandbox_warm_start(struct sandbox *sb, const struct sandbox_spec *spec, const char *base_dir,
		       int restore_timeout_ms, struct msb_err *err);

/* ---- msb-vmm's control socket ------------------------------------------------- */

/* Send one line ("pause", "snapshot DIR", ...) and read the reply line.  "OK..."
 * returns 0 (reply copied to `reply` when given); "ERR msg" fails with msg. */
int sandbox_vmm_control(const char *sock, const char *line, char *reply, size_t reply_len,
			int timeout_ms, struct msb_err *err);
/* Parse a reply line (pure): 0 for "OK" / "OK ...", -1 with its message otherwise. */
int sandbox_vmm_reply_parse(const char *reply, struct msb_err *err);

/* ---- files -------------------------------------------------------------------- */

/* Copy `src` to a new file `dst` (0600) without duplicating data where the
 * filesystem allows (FICLONE), else as a sparse copy (SEEK_DATA/SEEK_HOLE).
 * *how: "reflink" or "sparse copy" (static). */
int sandbox_copy_file(const char *src, const char *dst, const char **how, struct msb_err *err);

/* ---- restoring a user snapshot --------------------------------------------------- */

/* A user snapshot by name: its directory and metadata (caller clears both). */
int sandbox_user_snapshot_open(const char *name, char **dir, struct sandbox_snapmeta *m,
			       struct msb_err *err);

/* ---- pruning (snapprune.c) ------------------------------------------------------ */

/* The first bytes of msb-vmm's state file that hold the VM shape. */
#define SANDBOX_BASE_SHAPE_BYTES 60
/* vCPUs and memory of a base snapshot from its state file's first bytes (pure). */
int sandbox_base_shape_parse(const void *buf, size_t len, unsigned *cpus, unsigned *memory_mib,
			     struct msb_err *err);
/* Write `meta` into the base snapshot being built in `dir`: what it is built
 * from (the parts' paths, command line, shape), so that prune can tell later
 * whether its key can still come out of sandbox_base_key(). */
int sandbox_base_record(const char *dir, const char *key, const struct sandbox_parts *p,
			unsigned cpus, unsigned memory_mib, struct msb_err *err);

struct sandbox_prune_opts {
	const struct sandbox_parts *parts; /* the current parts, or NULL (not known) */
	bool user;			   /* also user snapshots that cannot be restored */
	bool dry_run;			   /* only report */
	const char *keep;		   /* a base key never removed, or NULL */
	/* Called for each removal: kind "base", "warm" or "user", its name, why, bytes. */
	void (*report)(void *ctx, const char *kind, const char *name, const char *why,
		       uint64_t bytes);
	void *ctx;
};
struct sandbox_prune_totals {
	unsigned removed, failed;
	unsigned kept, busy; /* bases: current, or locked right now */
	unsigned kept_user;
	unsigned kept_warm; /* warm snapshots still usable */
	uint64_t bytes;	    /* disk space of what was removed */
};
/* Remove the stale base snapshots (see snapprune.c), the warm snapshots whose
 * base or image root filesystem is gone or changed, leftovers of interrupted
 * builds and, with o->user, user snapshots that cannot be restored. */
int sandbox_snapshot_prune(const struct sandbox_prune_opts *o, struct sandbox_prune_totals *t,
			   struct msb_err *err);
/* After base `key` was built: prune the stale bases, saying so on stderr. */
void sandbox_base_prune_after_build(const struct sandbox_parts *p, const char *key);

#endif
