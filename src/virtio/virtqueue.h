/* The split virtqueue walker: the one path by which a device reads what the
 * driver put in a ring.
 *
 * Everything in a ring is guest-controlled and may change while we look at
 * it.  virtq_pop() therefore copies each guest value (avail index, ring
 * entry, every descriptor) into a local exactly once, checks the copy, and
 * hands the device a virtq_chain of (gpa, len) buffers that it validated
 * against guest memory.  Devices never look at the descriptor table again.
 *
 * What counts as a broken ring (virtq_pop() returns VIRTQ_BROKEN, the
 * device then sets DEVICE_NEEDS_RESET and stops using the queue):
 * an avail index more than `num` ahead, a head or next index >= num, a chain
 * with more descriptors than the queue size (this catches loops), a buffer
 * outside guest memory, a readable buffer after a writable one, an indirect
 * table that is nested, empty, not a multiple of 16 bytes, misaligned, larger
 * than VIRTQ_MAX_INDIRECT entries or combined with NEXT, or indirect
 * descriptors when VIRTIO_F_INDIRECT_DESC was not negotiated.
 *
 * With VIRTIO_F_EVENT_IDX, the device publishes avail_event whenever it finds
 * the queue empty (then looks again, so a chain published meanwhile is not
 * missed), and interrupts only when the used index crosses used_event.
 *
 * Not thread-safe: one thread at a time per queue (the device's lock).
 */
#ifndef MSB_VIRTIO_VIRTQUEUE_H
#define MSB_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/guest_mem.h"

#define VIRTQ_MAX_SIZE	   1024 /* the largest queue size a device may offer */
#define VIRTQ_MAX_INDIRECT 1024 /* entries in one indirect table */
#define VIRTQ_MAX_CHAIN	   1024 /* buffers in one chain, direct and indirect together */

struct virtq {
	/* Set by the driver through the transport, frozen once DRIVER_OK is set. */
	uint16_t num_max; /* what the device offers (a power of two) */
	uint16_t num;	  /* what the driver chose */
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* Device state. */
	bool indirect;	/* VIRTIO_F_INDIRECT_DESC negotiated */
	bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
	bool broken;
	uint16_t signalled_used; /* used_idx when the interrupt was last decided */
	uint16_t last_avail;	 /* next avail ring slot to consume */
	uint16_t used_idx;	 /* next used index to publish */
};

struct virtq_buf {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

/* One descriptor chain as the device sees it: bufs[0 .. nreadable) are
 * readable (driver to device), the rest writable.  Lengths are the checked
 * copies; every buf lies inside guest memory. */
struct virtq_chain {
	uint16_t head;
	uint16_t nbufs;
	uint16_t nreadable;
	uint64_t read_len;  /* sum of the readable lengths */
	uint64_t write_len; /* sum of the writable lengths */
	struct virtq_buf bufs[VIRTQ_MAX_CHAIN];
};

enum virtq_pop_result {
	VIRTQ_BROKEN = -1,
	VIRTQ_EMPTY = 0,
	VIRTQ_CHAIN = 1,
};

/* Forget the driver's configuration and the device's indices (device reset). */
void virtq_reset(struct virtq *q);

/* Check the driver's configuration before the queue is used: size a power of
 * two not above num_max, rings aligned (16/2/4) and inside guest memory.
 * Returns 0 or -1 with *why set to a static reason. */
int virtq_check_config(const struct virtq *q, const struct guest_mem *m, const char **why);

/* Take the next available chain into *c.  On VIRTQ_BROKEN, q->broken is set
 * and *why (if why is non-NULL) names the reason; a broken queue stays broken
 * until virtq_reset(). */
enum virtq_pop_result virtq_pop(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c,
				const char **why);

/* Give back the chain just popped, unused (the device found it could not use
 * it yet); it will be returned by the next virtq_pop(). */
void virtq_unpop(struct virtq *q);

/* True when the driver has made a chain available that has not been popped.
 * With EVENT_IDX, finding none also asks the driver to notify on the next one
 * (as virtq_pop() does when it finds the queue empty). */
bool virtq_has_avail(struct virtq *q, const struct guest_mem *m);

/* Return chain `head` to the driver with `len` bytes written.  -1 (and the
 * queue broken) when the used ring cannot be written. */
int virtq_push(struct virtq *q, const struct guest_mem *m, uint16_t head, uint32_t len);

/* After one or more virtq_push(): whether the driver wants an interrupt:
 * VIRTQ_AVAIL_F_NO_INTERRUPT clear, or with EVENT_IDX, the used index passed
 * the driver's used_event since the last decision. */
bool virtq_want_interrupt(struct virtq *q, const struct guest_mem *m);

/* Copy up to `len` bytes of the chain's readable data, starting `off` bytes
 * into it, to `dst`.  Returns the number of bytes copied. */
size_t virtq_chain_read(const struct guest_mem *m, const struct virtq_chain *c, uint64_t off,
			void *dst, size_t len);

/* Copy up to `len` bytes into the chain's writable buffers, starting `off`
 * bytes into them.  Returns the number of bytes copied. */
size_t virtq_chain_write(const struct guest_mem *m, const struct virtq_chain *c, uint64_t off,
			 const void *src, size_t len);

/* Describe [off, off + maxlen) of the readable (writable == false) or writable
 * data as host iovecs, at most `maxiov` of them.  Returns the number filled;
 * *total receives the bytes they cover. */
int virtq_chain_iov(const struct guest_mem *m, const struct virtq_chain *c, bool writable,
		    uint64_t off, uint64_t maxlen, struct iovec *iov, int maxiov, size_t *total);

#endif
