/* What msb-vmm sees of a virtio device: an opaque object with a 4 KiB
 * virtio-mmio window (transport version 2, virtio 1.x, split virtqueues).
 *
 * msb-vmm places device i at VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE with GSI
 * VIRTIO_MMIO_GSI_BASE + i, registers an eventfd for that GSI with KVM_IRQFD,
 * and forwards every guest access inside the window to virtio_mmio_access().
 * The device interrupts the guest by writing 1 to that eventfd.
 *
 * Ownership: a *_new() function returns a device owned by the caller, who
 * releases it with virtio_dev_free().  `mem` and `irqfd` are borrowed and must
 * outlive the device.  Files and sockets a device opens itself are its own.
 */
#ifndef MSB_VIRTIO_VIRTIO_H
#define MSB_VIRTIO_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "vmm/guest_mem.h"

#define VIRTIO_MMIO_BASE     0xd0000000ull
#define VIRTIO_MMIO_SIZE     0x1000u
#define VIRTIO_MMIO_GSI_BASE 5u

struct virtio_dev;

/* A guest access to the device's 4 KiB MMIO window, called from vCPU threads.
 * `offset` is relative to the window; `data` holds `len` bytes (1, 2, 4 or 8)
 * in guest (little-endian) order: filled on a read, consumed on a write.
 * Safe to call from several vCPU threads at once.  Never blocks on host I/O
 * other than a block device's disk file. */
void virtio_mmio_access(struct virtio_dev *d, uint64_t offset, void *data, uint32_t len,
			bool is_write);

/* Stops the device's threads and closes its files; NULL is allowed.  Call it
 * once no vCPU thread can reach virtio_mmio_access() for this device. */
void virtio_dev_free(struct virtio_dev *d);

/* mem: guest RAM, borrowed, outlives the device.  irqfd: an eventfd that msb-vmm
 * has registered with KVM_IRQFD for the device's GSI (borrowed); writing 1 to it
 * interrupts.  Each returns NULL and fills `err` on failure. */

/* A block device backed by the raw file `path` (opened here, O_RDONLY when
 * `readonly`, which is also reported to the guest with VIRTIO_BLK_F_RO).
 * `path` NULL: an empty slot (capacity 0, writable) that a restore fills. */
struct virtio_dev *virtio_blk_new(const struct guest_mem *mem, int irqfd, const char *path,
				  bool readonly, struct msb_err *err);

/* A console (hvc0): guest output is written to out_fd, host input is read from
 * in_fd (-1: none).  Both fds are borrowed. */
struct virtio_dev *virtio_console_new(const struct guest_mem *mem, int irqfd, int in_fd, int out_fd,
				      struct msb_err *err); /* in_fd -1: none */

/* An entropy device fed by getrandom(). */
struct virtio_dev *virtio_rng_new(const struct guest_mem *mem, int irqfd, struct msb_err *err);

/* A vsock device with the guest's context id `guest_cid` (>= 3).  Hybrid host side:
 * it listens on the Unix socket `uds_path` (created here, removed on free); a host
 * process connects, writes "CONNECT <port>\n", reads "OK <host_port>\n", and the
 * stream is then the guest connection to that port.  A guest connection to host
 * port P is forwarded to the Unix socket "<uds_path>_<P>". */
struct virtio_dev *virtio_vsock_new(const struct guest_mem *mem, int irqfd, uint64_t guest_cid,
				    const char *uds_path, struct msb_err *err);

/* A network device (virtio-net, no offloads, MTU 1500) with the MAC `mac`,
 * whose frames go to and come from `backend_fd`: a connected stream socket
 * carrying each frame after its 4-byte big-endian length (QEMU's stream
 * netdev, passt).  The device owns the socket once it returns non-NULL.
 * backend_fd -1: no backend; the link is down and frames are dropped. */
struct virtio_dev *virtio_net_new(const struct guest_mem *mem, int irqfd, int backend_fd,
				  const uint8_t mac[6], struct msb_err *err);

/* A file system device (virtio-fs) with tag `tag` (1 to 36 bytes, what the
 * guest names in `mount -t virtiofs TAG DIR`) serving the host directory
 * `dir` (opened here; NULL: an empty slot that a restore fills), refusing
 * every change when `readonly`.  See src/virtio/fs.h. */
struct virtio_dev *virtio_fs_new(const struct guest_mem *mem, int irqfd, const char *tag,
				 const char *dir, bool readonly, struct msb_err *err);

/* The virtio device id (1 net, 2 block, 3 console, 4 rng, 19 vsock) and a short name
 * ("blk", ...), for logs. */
uint32_t virtio_dev_id(const struct virtio_dev *d);
const char *virtio_dev_name(const struct virtio_dev *d);

/* ---- snapshots -------------------------------------------------------------
 * How msb-vmm saves a device with the VM and restores it into a new process
 * (docs/snapshot.md).  All four are called from msb-vmm's main thread while no
 * vCPU runs.
 *
 * virtio_dev_pause(): stop the device's threads at a point where nothing is
 * half done: every chain popped from a ring is either completed (pushed) or
 * given back (the ring index rewound), so the rings in guest memory and the
 * state below describe the device completely.  Host connections stay open.
 * virtio_dev_resume(): start them again (the same VM goes on).
 *
 * virtio_dev_save(): the device's state as a blob (malloc'd, caller frees):
 * transport registers, negotiated features, status, each queue's size,
 * addresses, ready flag and indices, the config space, and the device's own
 * state.  The device must be paused.
 *
 * virtio_dev_restore(): load a blob into a device just created by *_new() in a
 * new msb-vmm, of the same kind (device id).  The blob comes from a file and is
 * checked like any untrusted input: a wrong device kind, sizes, queue addresses
 * outside guest memory or a queue size above the device's maximum fail with
 * kind corrupt and leave the device reset.  What differs from the saved VM is
 * reported to the guest once it runs again: a block device given other media
 * (another file, or none) raises a configuration change with the new capacity;
 * vsock keeps the guest's connections and CID (each connection comes back
 * without a host socket; see vsock.c).  The device's threads run afterwards if the
 * driver had set DRIVER_OK. */
int virtio_dev_pause(struct virtio_dev *d, struct msb_err *err);
void virtio_dev_resume(struct virtio_dev *d);
int virtio_dev_save(struct virtio_dev *d, uint8_t **blob, size_t *len, struct msb_err *err);
int virtio_dev_restore(struct virtio_dev *d, const uint8_t *blob, size_t len, struct msb_err *err);

#endif
