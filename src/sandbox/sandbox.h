/* Sandboxes: one microVM (msb-vmm + the project kernel + msb-init) booted on an
 * image's root filesystem, commands run in it through the agent, stopped in order.
 *
 *   struct sandbox_spec s = {.name = "tmp", .image = "python", .cpus = 1, .memory_mib = 512};
 *   struct sandbox *sb;
 *   sandbox_start(&s, &sb, &err);                 boots, waits for the agent
 *   sandbox_exec(sb, &opts, &st, &err);           as many times as wanted
 *   sandbox_stop(sb, SANDBOX_STOP_ORDERED, &err); or _KILL for throwaway ones
 *   sandbox_free(sb);                             kills what is left, removes the run dir
 *
 * The pure parts (what msb-vmm is given, image defaults) are separate functions
 * so that tests can check them without a VM.  See docs/sandbox.md. */
#ifndef MSB_SANDBOX_SANDBOX_H
#define MSB_SANDBOX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/client.h"
#include "common/error.h"
#include "oci/pull.h"
#include "project/sandboxfile.h"

/* ---- the host files a VM needs ------------------------------------------ */

struct sandbox_parts {
	char *kernel;	    /* ELF vmlinux */
	char *initrd;	    /* msb-init's initramfs */
	char *vmm;	    /* msb-vmm */
	char *base_cmdline; /* contents of the kernel's cmdline.txt, or NULL */
};

/* Find kernel, initramfs and msb-vmm.  Order: $MSB_KERNEL / $MSB_INITRD / $MSB_VMM;
 * next to `self_exe` (bin/msb-vmm, ../initramfs.cpio, ../../kernel/vmlinux: the
 * build tree); $MICROSANDBOX_HOME/{kernel/vmlinux,initramfs.cpio,bin/msb-vmm}.
 * `self_exe` may be NULL (/proc/self/exe).  A missing kernel fails with kind
 * not_found and "run kernel/build".  Fills *p (caller-owned, sandbox_parts_clear). */
int sandbox_find_parts(const char *self_exe, struct sandbox_parts *p, struct msb_err *err);
void sandbox_parts_clear(struct sandbox_parts *p);

/* /dev/kvm exists and can be opened read-write; a clear system error otherwise. */
int sandbox_check_kvm(struct msb_err *err);

/* ---- pure builders -------------------------------------------------------- */

/* Lists are struct msb_strv (project/sandboxfile.h): NULL-terminated, owned,
 * freed with msb_strv_clear(). */

/* The msb-init part of the kernel command line:
 * "msb.root=/dev/vda msb.rootfstype=<fmt> msb.overlay=tmpfs|/dev/vdb msb.hostname=<h>".
 * The hostname is reduced to [A-Za-z0-9.-] (others become '-'), at most 63 bytes.
 * Caller frees.  A format other than ext4/erofs is refused (kind corrupt). */
char *sandbox_guest_cmdline(const char *rootfs_format, bool rw_disk, const char *hostname,
			    struct msb_err *err);

struct sandbox_vmm_args {
	const struct sandbox_parts *parts;
	const char *rootfs_path; /* the image, attached read-only as /dev/vda */
	const char *rw_disk;	 /* ext4 writable layer as /dev/vdb, or NULL (tmpfs) */
	const char *guest_cmdline;
	const char *vsock_path;
	const char *console; /* file, "-" (stdout), or NULL */
	const char *control; /* msb-vmm's control socket, or NULL */
	unsigned cpus, memory_mib;
	/* Restore instead of boot: kernel, initramfs, command line, cpus and memory
	 * come from the snapshot and are not passed. */
	const char *restore;
	unsigned cid; /* 0: msb-vmm's default */
	/* Disk slots (1 or 2): with 2 and no rw_disk slot 2 is "none" (an empty
	 * slot that a restore fills); 0: 1 or 2 as rw_disk says.  rootfs_path
	 * NULL: slot 1 is empty too (the base snapshot's VM). */
	unsigned disks;
	/* The network device slot (after rng): "fd:3" (msb-vmm's end of the
	 * pair to passt), "none" (link down), or NULL: no slot (user snapshots
	 * taken before sandboxes had one). */
	const char *net;
	/* virtio-fs slots (after net), the first filled from volumes (NULL:
	 * none); sandbox/volumes.h. */
	unsigned fs_slots;
	const struct sandbox_volumes *volumes;
};
/* msb-vmm's argv (argv[0] = parts->vmm). */
int sandbox_vmm_argv(const struct sandbox_vmm_args *a, struct msb_strv *out, struct msb_err *err);

/* Environment for a command: the image's Env, then each of `over` ("K=V") replacing
 * the entry of the same name or appended (upstream: image Env then sandbox envs).
 * Entries without '=' are skipped. */
int sandbox_merge_env(const char *const *image_env, const char *const *over, struct msb_strv *out,
		      struct msb_err *err);

/* Apply the image defaults to a sandbox description in place, as upstream:
 * workdir <- WorkingDir when unset; an empty command <- Entrypoint+Cmd (or Cmd).
 * (Envs are merged at exec time by sandbox_merge_env.) */
int sandbox_apply_image_defaults(struct msb_sandbox *sb, const struct oci_image_config *cfg,
				 struct msb_err *err);

/* ---- a running sandbox ------------------------------------------------------ */

struct sandbox_net;
struct sandbox_volumes;

struct sandbox_spec {
	const char *name;    /* for messages and the guest hostname */
	const char *image;   /* reference as the user typed it */
	unsigned cpus;	     /* 0: 1 */
	unsigned memory_mib; /* 0: MSB_DEFAULT_MEMORY */
	const char *rw_disk; /* persistent writable layer (ext4 file), or NULL: tmpfs */
	/* Console output: NULL -> <run dir>/console.log; a path -> that file.  With
	 * console_fd >= 0 the output goes to that fd instead (msb-vmm's stdout). */
	const char *console_path;
	int console_fd;
	int boot_timeout_ms;		       /* 0: $MSB_BOOT_TIMEOUT seconds, else 1800 s */
	const struct oci_pull_opts *pull_opts; /* progress of a pull; may be NULL */
	/* Boot cold even where the base snapshot would do (also $MSB_NO_SNAPSHOT=1). */
	bool cold;
	/* A throwaway sandbox with a tmpfs layer: start from the image's warm
	 * snapshot (docs/snapshot.md; $MSB_NO_WARM_SNAPSHOT=1 skips it), made on
	 * first use with warm_programs (names in warm_path, or absolute paths; at
	 * most 8) read into the guest's page cache. */
	bool warm;
	const char *const *warm_programs;
	size_t nwarm_programs;
	const char *warm_path;
	/* Restore this user snapshot directory instead (resync, no root setup): its
	 * disk slots, and whether it holds rw.ext4 (copied into the run directory
	 * when rw_disk is NULL). */
	const char *snapshot_dir;
	unsigned snapshot_disks;
	bool snapshot_rw;
	const char *snapshot_rootfs; /* the image file it ran on: must still be the image's */
	/* Called with msb-vmm's pid as soon as it runs (state DB rows). */
	void (*on_spawn)(void *ctx, pid_t vmm_pid);
	void *ctx;
	/* Network scope and ports (sandbox/net.h); NULL: the default scope
	 * (public), no ports. */
	const struct sandbox_net *net;
	bool snapshot_net;	    /* the user snapshot's VM has a network slot */
	unsigned snapshot_fs_slots; /* the user snapshot's VM's virtio-fs slots */
	/* Host directories to share (sandbox/volumes.h); NULL: none. */
	const struct sandbox_volumes *volumes;
};

struct sandbox {
	char *name;
	struct sandbox_parts parts;
	struct oci_image *img;
	char *run_dir; /* private, 0700, removed by sandbox_free */
	char *vsock_path;
	char *console_path; /* where the console went, or NULL */
	pid_t vmm_pid;	    /* 0 once reaped */
	int vmm_status;	    /* wait status once reaped */
	struct agent_client *agent;
	uint64_t boot_ms;   /* spawn to agent connected */
	bool restored;	    /* from a snapshot, not a cold boot */
	char *control_path; /* msb-vmm's control socket (<run dir>/control) */
	char *rw_disk;	    /* the writable layer file, or NULL (tmpfs) */
	unsigned cpus, memory_mib, disks;
	bool net_slot;	   /* the VM has a network device (msb-vmm --net) */
	int net_fd;	   /* msb's end of the pair to passt until msb-vmm has it; 0: none */
	pid_t passt_pid;   /* 0: none */
	unsigned fs_slots; /* virtio-fs slots of the VM */
	unsigned nvolumes; /* volumes mounted */
};

/* Open the store, get (pull when absent) the image, spawn msb-vmm, wait for the
 * agent.  On failure everything started is stopped and removed again; a guest
 * that died is reported with the tail of its console.  *out is caller-owned. */
int sandbox_start(const struct sandbox_spec *spec, struct sandbox **out, struct msb_err *err);

/* Run one command with `o` (argv, env, cwd, fds) through the agent. */
int sandbox_exec(struct sandbox *sb, const struct agent_exec_opts *o, struct agent_exec_status *st,
		 struct msb_err *err);

/* mkdir -p `path` in the guest (through the image's mkdir), as Docker creates a
 * WorkingDir that the image lacks.  "/" and NULL are no-ops. */
int sandbox_ensure_dir(struct sandbox *sb, const char *path, struct msb_err *err);

/* Write `len` bytes as the guest file `path` (mode), creating its directory, by
 * running /bin/sh in the guest (the agent has no file request yet). */
int sandbox_write_file(struct sandbox *sb, const char *path, const void *data, size_t len,
		       unsigned mode, struct msb_err *err);

enum sandbox_stop_mode {
	/* Agent SHUTDOWN (the guest syncs and unmounts), then SIGTERM to msb-vmm,
	 * then SIGKILL, each after its timeout: for a persistent writable disk. */
	SANDBOX_STOP_ORDERED,
	/* SIGKILL at once: nothing of a throwaway sandbox has to survive. */
	SANDBOX_STOP_KILL,
};
/* Stop the VM and reap msb-vmm.  timeout_ms bounds each ordered step (0: 120 s). */
int sandbox_stop(struct sandbox *sb, enum sandbox_stop_mode mode, int timeout_ms,
		 struct msb_err *err);

/* The last `max` bytes of the console log (caller frees), or NULL. */
char *sandbox_console_tail(const struct sandbox *sb, size_t max);

/* SIGKILL msb-vmm if it still runs, remove the run directory, free. */
void sandbox_free(struct sandbox *sb);

/* Kill the VM from a signal handler (async-signal-safe). */
void sandbox_kill_from_signal(const struct sandbox *sb);

/* Create a sparse ext4 file of `size_mib` for a persistent writable layer with
 * mkfs.ext4, unless it exists.  *created tells which. */
int sandbox_rw_disk_ensure(const char *path, unsigned size_mib, bool *created, struct msb_err *err);

#endif
