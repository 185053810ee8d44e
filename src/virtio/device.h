/* The generic half of a virtio device, shared by the virtio-mmio transport
 * (mmio.c) and the devices (blk.c, console.c, rng.c, vsock.c).  Internal to
 * src/virtio; msb-vmm sees only virtio.h.
 *
 * A device embeds `struct virtio_dev` as its first member and fills a const
 * ops table.  Locking: `lock` guards the register file and is held while the
 * transport calls ops->start() and ops->stop(); device threads never take it.
 * `qlock` guards queue processing: whoever pops or pushes takes it (vCPU
 * threads in notify(), device threads), and the transport takes it to reset
 * the queues.  `status` and `isr` are accessed atomically so that device
 * threads can raise interrupts and DEVICE_NEEDS_RESET without `lock`.
 */
#ifndef MSB_VIRTIO_DEVICE_H
#define MSB_VIRTIO_DEVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/snapshot.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

#define VIRTIO_MAX_QUEUES 4
#define VIRTIO_CONFIG_MAX 64

struct virtio_dev_ops {
	const char *name;
	uint32_t device_id;
	/* The driver wrote queue `q` to QueueNotify (a vCPU thread, no lock held). */
	void (*notify)(struct virtio_dev *d, unsigned q);
	/* DRIVER_OK was just set: start threads.  -1 marks the device broken.
	 * NULL for a device without threads. */
	int (*start)(struct virtio_dev *d);
	/* Reset or free: stop threads and drop per-connection state.  Must be
	 * safe when start() was never called.  NULL: nothing to stop. */
	void (*stop)(struct virtio_dev *d);
	/* Release the device's own resources and the containing struct. */
	void (*destroy)(struct virtio_dev *d);

	/* Snapshots (snapshot.c); each may be NULL.  pause: stop the device's
	 * threads between two pieces of work (no chain half done) and keep all
	 * other state; resume: start them again (-1 marks the device broken). */
	void (*pause)(struct virtio_dev *d);
	int (*resume)(struct virtio_dev *d);
	/* Append the device's own state to the blob. */
	void (*save)(struct virtio_dev *d, struct vsnap_w *w);
	/* Decode and check all of the device's own state; keep what restored()
	 * needs.  -1 with err (kind corrupt) must leave the device usable as new. */
	int (*load)(struct virtio_dev *d, struct vsnap_r *r, struct msb_err *err);
	/* The transport state is in place, threads do not run yet: tell the guest
	 * what differs from the saved device.  Returns true when the guest must
	 * re-read the configuration space although its bytes did not change. */
	bool (*restored)(struct virtio_dev *d);
	/* Offered feature bits that depend on the media, so that a snapshot may
	 * differ from the device it is restored into (blk: read-only). */
	uint64_t media_features;
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	const struct guest_mem *mem;
	int irqfd;
	pthread_mutex_t lock;
	pthread_mutex_t qlock;

	uint64_t base_features;	  /* what the device offers after a reset */
	uint64_t features;	  /* offered, device-specific plus transport bits */
	uint64_t driver_features; /* accepted by the driver, masked by `features` */
	uint32_t dev_features_sel, drv_features_sel, queue_sel;
	uint32_t status; /* atomic */
	uint32_t isr;	 /* atomic */
	bool started;
	bool paused; /* virtio_dev_pause() stopped the threads of a started device */
	uint32_t config_generation;

	unsigned nqueues;
	struct virtq vqs[VIRTIO_MAX_QUEUES];

	uint8_t config[VIRTIO_CONFIG_MAX];
	uint32_t config_len;
};

/* Fill the generic part.  `features` are the device-specific bits; the
 * transport adds VIRTIO_F_VERSION_1 and VIRTIO_F_INDIRECT_DESC. */
int virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops,
		    const struct guest_mem *mem, int irqfd, uint64_t features, unsigned nqueues,
		    uint16_t queue_max, struct msb_err *err);

/* Release what virtio_dev_init() set up (not the struct). */
void virtio_dev_release(struct virtio_dev *d);

/* Raise `why` (VIRTIO_MMIO_INT_*) in the ISR and interrupt the guest. */
void virtio_dev_interrupt(struct virtio_dev *d, uint32_t why);

/* A queue or request was malformed beyond recovery: set DEVICE_NEEDS_RESET,
 * send a configuration interrupt, log `why`.  The device stops using the
 * queues until the driver resets it. */
void virtio_dev_set_broken(struct virtio_dev *d, const char *why);

/* DRIVER_OK set and DEVICE_NEEDS_RESET clear: queues may be processed. */
bool virtio_dev_running(const struct virtio_dev *d);

bool virtio_dev_has_feature(const struct virtio_dev *d, unsigned bit);

/* The configuration space changed: a new generation, and a configuration
 * interrupt once the driver is running. */
void virtio_dev_config_changed(struct virtio_dev *d);

/* The loop of a device that carries out each chain at once on the calling
 * thread (blk, rng, console output): pop every available chain of queue `qi`
 * into *c, push it with the used length handle() returns, then decide on one
 * interrupt.  Takes qlock; a broken ring sets DEVICE_NEEDS_RESET. */
void virtio_dev_serve(struct virtio_dev *d, unsigned qi, struct virtq_chain *c,
		      uint32_t (*handle)(struct virtio_dev *d, const struct virtq_chain *c));

/* After pushing used buffers to `q`: interrupt if the driver wants it. */
void virtio_dev_queue_done(struct virtio_dev *d, struct virtq *q);

#endif
