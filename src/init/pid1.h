/* The guest's PID 1 duties: API filesystems, the root filesystem (read-only
 * image + writable layer with overlayfs), loopback, hostname, and an orderly
 * power-off.  Every failure is logged to the console by the caller and kept
 * for the host (server_add_boot_error()). */
#ifndef MSB_INIT_PID1_H
#define MSB_INIT_PID1_H

#include <stdbool.h>

#include "common/error.h"
#include "init/cmdline.h"

#define PID1_POWER_PORT 0x510 /* the status byte msb-vmm watches for (0 = orderly) */

struct pid1 {
	int old_root_fd; /* the initramfs root, kept to unmount the layers at the end */
	bool switched;	 /* we live in the overlay root now */
	bool moved;	 /* /dev, /proc, /sys went to the new root (even if switching failed) */
	struct msb_err errors[16];
	int nerrors;
};

/* Mount /dev (devtmpfs) and make sure fds 0-2 are the console, then /proc,
 * /sys, /dev/pts, /dev/shm, /sys/fs/cgroup.  Failures are recorded, not fatal. */
void pid1_early(struct pid1 *p);
/* Read /proc/cmdline. */
int pid1_read_cmdline(struct init_cmdline *cl, struct msb_err *err);
/* Mount msb.root + msb.overlay with overlayfs and switch into it, moving the
 * API filesystems along.  Nothing to do (0) without msb.root.  A failure
 * before the API filesystems moved (p->moved still false) leaves nothing
 * mounted, so it can be tried again (SETUP, src/init/setup.c). */
int pid1_mount_root(struct pid1 *p, const struct init_cmdline *cl, struct msb_err *err);
/* Bring `lo` up with 127.0.0.1/8. */
int pid1_loopback_up(struct msb_err *err);
/* Kill every process, sync, unmount in reverse order, tell msb-vmm (port
 * 0x510) and reboot.  Never returns. */
__attribute__((noreturn)) void pid1_power_off(struct pid1 *p);

/* Record a failure: the console now, the host later. */
void pid1_record(struct pid1 *p, const struct msb_err *e);

#endif
