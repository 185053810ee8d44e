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
 * `readonly`, which is also reported to the guest with VIRTIO_BLK_F_RO). */
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

/* The virtio device id (2 block, 3 console, 4 rng, 19 vsock) and a short name
 * ("blk", ...), for logs. */
uint32_t virtio_dev_id(const struct virtio_dev *d);
const char *virtio_dev_name(const struct virtio_dev *d);

#endif
