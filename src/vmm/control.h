/* msb-vmm's control socket (--control PATH): a Unix stream socket, one
 * command per line, answered "OK[ ...]\n" or "ERR <message>\n".
 *
 *   status         OK running | OK paused
 *   pause          vCPUs parked outside KVM_RUN, devices paused
 *   resume         the same VM goes on
 *   snapshot DIR   pause (if running), write DIR/state and DIR/memory; stays paused
 *   quit           end the VM: msb-vmm exits 0 ("stopped on request")
 *
 * Served from vm_run()'s main loop (a vm_hook), one client at a time; others
 * wait in the listen backlog.  Protocol details: docs/snapshot.md.
 */
#ifndef MSB_VMM_CONTROL_H
#define MSB_VMM_CONTROL_H

#include <stddef.h>

#include "common/error.h"
#include "vmm/devices.h"
#include "vmm/vm.h"

#define CONTROL_LINE_MAX 4096

struct vmm_control {
	int listen_fd, conn_fd;
	char path[108];
	char buf[CONTROL_LINE_MAX];
	size_t len;
	struct vm *vm;		  /* borrowed */
	struct vmm_devices *devs; /* borrowed */
	const char *cmdline;	  /* borrowed: the kernel command line, kept in snapshots */
};

/* Create the socket at `path` (mode 0600; an existing socket file there is
 * replaced) and hook it into vm->hook. */
int vmm_control_open(struct vmm_control *c, const char *path, struct vm *vm,
		     struct vmm_devices *devs, const char *cmdline, struct msb_err *err);

/* Close the sockets and remove the socket file; a zeroed struct is fine. */
void vmm_control_close(struct vmm_control *c);

/* One command line (without its newline): the reply in `reply` (with its
 * newline).  Exposed for tests. */
void vmm_control_command(struct vmm_control *c, const char *line, char *reply, size_t cap);

/* Pause (vCPUs, then devices) / resume (devices, then vCPUs); snapshot into
 * `dir` (pausing first).  Used by the commands above and the one-shot mode. */
int vmm_control_pause(struct vmm_control *c, struct msb_err *err);
void vmm_control_resume(struct vmm_control *c);
int vmm_control_snapshot(struct vmm_control *c, const char *dir, struct msb_err *err);

#endif
