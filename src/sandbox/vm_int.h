/* What vm.c (cold boots, the lifecycle) shares with restore.c (base snapshot,
 * restores): spawning and watching msb-vmm.  Not a public API. */
#ifndef MSB_SANDBOX_VM_INT_H
#define MSB_SANDBOX_VM_INT_H

#include <stdint.h>

#include "sandbox/sandbox.h"

#define SANDBOX_TAIL_BYTES 2048

uint64_t sandbox_now_ms(void);
/* "dir/name" (caller frees), NULL when out of memory. */
char *sandbox_path_join(const char *dir, const char *name);
/* A private 0700 directory for one VM's sockets and logs (caller frees). */
char *sandbox_make_run_dir(struct msb_err *err);
/* A listening, non-blocking Unix socket at path (caller closes). */
int sandbox_listen_unix(const char *path, struct msb_err *err);
/* Reap msb-vmm if it ended (or wait up to timeout_ms; -1: forever): 1 reaped, 0 running. */
int sandbox_reap(struct sandbox *sb, int timeout_ms);
/* msb-vmm's exit code once reaped (128+N for a signal). */
int sandbox_vmm_exit_code(const struct sandbox *sb);
/* Explain why msb-vmm ended (status, its stderr, the console's tail); returns -1. */
int sandbox_vmm_died(struct sandbox *sb, struct msb_err *err);
/* fork+exec msb-vmm in its own session with PDEATHSIG; stderr to <run dir>/vmm.stderr. */
int sandbox_spawn_vmm(struct sandbox *sb, const struct msb_strv *argv, int console_fd,
		      struct msb_err *err);
/* Wait for msb-init's READY on the listening socket lfd while watching msb-vmm. */
int sandbox_wait_ready(struct sandbox *sb, int lfd, int timeout_ms, struct msb_err *err);
/* Kill and reap msb-vmm, drop the agent, remove the sockets of the run dir: the
 * state before a (new) spawn. */
void sandbox_vm_discard(struct sandbox *sb);

/* restore.c: start sb (parts, img, run dir and paths filled) by restoring
 * `dir`.  user: a user snapshot (resync only) else the base (SETUP mounts the
 * root).  rw_disk: the writable layer for slot 2, or NULL; disks: slots.
 * *refused: msb-vmm exited 3 (the snapshot cannot be restored). */
struct sandbox_restore {
	const char *dir;
	bool user;
	bool warm;	 /* a warm snapshot: root mounted, per-copy SETUP only */
	bool warm_build; /* restoring the base to make a warm snapshot: root + WARM, no NIC */
	unsigned disks;
	bool net;	   /* the snapshot's VM has a network slot (after rng) */
	unsigned fs_slots; /* its virtio-fs slots (after net) */
	const char *rw_disk;
	int timeout_ms;
};
int sandbox_restore_start(struct sandbox *sb, const struct sandbox_spec *spec,
			  const struct sandbox_restore *r, bool *refused, struct msb_err *err);

/* restore.c: a connection to the guest agent's port opened with "PARK 1024"
 * on msb-vmm's vsock socket `vsock` (docs/snapshot.md): the next snapshot
 * keeps it for the first client of each restored copy.  A connected fd the
 * caller owns (HELLO not exchanged yet), or -1. */
int sandbox_park_connection(const char *vsock, int timeout_ms, struct msb_err *err);

#endif
