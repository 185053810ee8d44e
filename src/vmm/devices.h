/* The virtio devices of msb-vmm, attached through src/virtio/virtio.h.
 *
 * Order on the bus (and so on the kernel command line): the disks in the order
 * given (the first is /dev/vda), then the console, vsock, rng, net and the file
 * systems in the order given.  Device i
 * sits at VM_MMIO_BASE + i * 4 KiB with GSI 5 + i.
 */
#ifndef MSB_VMM_DEVICES_H
#define MSB_VMM_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "vmm/vm.h"

struct virtio_dev;

struct vmm_disk {
	const char *path;
	bool readonly;
};

/* A virtio-fs device: the guest mounts `tag`; `dir` NULL is an empty slot. */
struct vmm_fs {
	const char *tag;
	const char *dir;
	bool readonly;
};

struct vmm_devices_config {
	struct vmm_disk disks[VM_MMIO_MAX];
	unsigned ndisks;
	int console_fd;		/* guest console output (borrowed); -1: no console device */
	const char *vsock_path; /* NULL: no vsock device */
	uint64_t cid;
	bool rng;
	/* A network device after rng: "none" (link down, a restore attaches the
	 * backend), "fd:N" (an inherited connected socket) or the path of a Unix
	 * socket to connect to (passt --socket).  NULL: no network device. */
	const char *net;
	/* File system devices after net, in order (volumes). */
	struct vmm_fs fs[VM_MMIO_MAX];
	unsigned nfs;
};

struct vmm_devices {
	struct virtio_dev *devs[VM_MMIO_MAX];
	unsigned n;
	const char *vsock_path; /* borrowed from the config */
	int power_conn;		/* our connection to guest port 1025, or -1 */
};

/* Whether this msb-vmm was built with the virtio devices. */
bool vmm_devices_available(void);

/* Create the devices of `cfg` on `vm` and append their declarations
 * ("virtio_mmio.device=4K@0xd0000000:5 ...") to `decl` (`cap` bytes, a
 * NUL-terminated string).  With a vsock device, vm->request_shutdown is set to
 * connect to guest port 1025.  On failure the devices made so far stay in `d`
 * for vmm_devices_free(). */
int vmm_devices_attach(struct vmm_devices *d, struct vm *vm, const struct vmm_devices_config *cfg,
		       char *decl, size_t cap, struct msb_err *err);

/* Stop and free the devices (before vm_destroy(): they use its memory). */
void vmm_devices_free(struct vmm_devices *d);

struct snapshot;

/* Snapshots (docs/snapshot.md), main thread, vCPUs parked.  pause: every
 * device (on failure the ones paused are resumed); save: add each device's
 * kind and state to s->devs; restore: check that the devices made from the
 * command line are the snapshot's, kind by kind in order (a mismatch is kind
 * MSB_EK_CORRUPT naming both lists), then load each one's state. */
int vmm_devices_pause(struct vmm_devices *d, struct msb_err *err);
void vmm_devices_resume(struct vmm_devices *d);
int vmm_devices_save(struct vmm_devices *d, struct snapshot *s, struct msb_err *err);
int vmm_devices_restore(struct vmm_devices *d, const struct snapshot *s, struct msb_err *err);

/* The guest shutdown request: connect to `uds_path` and ask for guest vsock
 * port 1025.  Returns the connected socket (the caller closes it) or -1. */
int vmm_request_power_off(const char *uds_path, struct msb_err *err);

#endif
