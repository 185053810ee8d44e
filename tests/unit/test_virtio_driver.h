/* A fake virtio driver for unit tests: guest RAM in a host buffer
 * (gm_init_flat), the virtio-mmio registers driven as Linux's virtio_mmio
 * driver does, and split rings filled by hand. */
#ifndef MSB_TEST_VIRTIO_DRIVER_H
#define MSB_TEST_VIRTIO_DRIVER_H

#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "virtio/device.h"
#include "virtio/virtio.h"
#include "virtio/virtio_spec.h"
#include "vmm/guest_mem.h"

#define DRV_RAM_SIZE (8u << 20)

struct drv_vq {
	uint16_t num;
	uint64_t desc, avail, used;
	uint16_t avail_idx; /* next avail index the driver publishes */
	uint16_t used_seen; /* used entries consumed so far */
	uint16_t next_desc; /* next free descriptor slot (simple, no recycling) */
};

struct drv {
	/* On the heap, like `ram`: a test that fails leaks its device, which must
	 * not be left pointing into a dead stack frame. */
	struct guest_mem *mem;
	uint8_t *ram;
	int irqfd;
	struct virtio_dev *d;
	struct drv_vq vq[VIRTIO_MAX_QUEUES];
	uint64_t heap;	 /* bump allocator for guest buffers */
	uint64_t refuse; /* feature bits drv_start() does not accept */
};

static inline void drv_open(struct drv *f)
{
	memset(f, 0, sizeof(*f));
	f->ram = aligned_alloc(4096, DRV_RAM_SIZE);
	memset(f->ram, 0, DRV_RAM_SIZE);
	f->mem = calloc(1, sizeof(*f->mem));
	gm_init_flat(f->mem, f->ram, DRV_RAM_SIZE);
	f->irqfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->heap = 0x100000;
}

static inline void drv_close(struct drv *f)
{
	virtio_dev_free(f->d);
	f->d = NULL;
	close(f->irqfd);
	free(f->ram);
	free(f->mem);
}

static inline uint32_t drv_rd(struct drv *f, uint64_t off)
{
	uint32_t v = 0xdeadbeef;
	virtio_mmio_access(f->d, off, &v, 4, false);
	return v;
}

static inline void drv_wr(struct drv *f, uint64_t off, uint32_t v)
{
	virtio_mmio_access(f->d, off, &v, 4, true);
}

/* Interrupts signalled since the last call (the eventfd's counter). */
static inline uint64_t drv_irqs(struct drv *f)
{
	uint64_t v = 0;
	if (read(f->irqfd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static inline uint64_t drv_alloc(struct drv *f, uint64_t size)
{
	uint64_t a = (f->heap + 15) & ~15ull;
	f->heap = a + size;
	if (f->heap > DRV_RAM_SIZE)
		abort();
	return a;
}

static inline void *drv_host(struct drv *f, uint64_t gpa)
{
	return f->ram + gpa;
}

/* Configure queue `qi` with `num` entries at fixed places (no DRIVER_OK). */
static inline void drv_setup_queue(struct drv *f, unsigned qi, uint16_t num)
{
	struct drv_vq *q = &f->vq[qi];
	memset(q, 0, sizeof(*q));
	q->num = num;
	q->desc = 0x10000ull * (qi + 1);
	q->avail = q->desc + 0x4000;
	q->used = q->desc + 0x8000;
	drv_wr(f, VIRTIO_MMIO_QUEUE_SEL, qi);
	drv_wr(f, VIRTIO_MMIO_QUEUE_NUM, num);
	drv_wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q->desc);
	drv_wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	drv_wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)q->avail);
	drv_wr(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
	drv_wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)q->used);
	drv_wr(f, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
	drv_wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
}

/* The Linux probe sequence: reset, ACKNOWLEDGE, DRIVER, features (all that
 * is offered), FEATURES_OK, queues, DRIVER_OK.  Returns the status read back. */
static inline uint32_t drv_start(struct drv *f, struct virtio_dev *d, unsigned nqueues,
				 uint16_t num)
{
	f->d = d;
	drv_wr(f, VIRTIO_MMIO_STATUS, 0);
	drv_wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	drv_wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	for (uint32_t sel = 0; sel < 2; sel++) {
		drv_wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
		uint32_t feat = drv_rd(f, VIRTIO_MMIO_DEVICE_FEATURES);
		drv_wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
		drv_wr(f, VIRTIO_MMIO_DRIVER_FEATURES, feat & ~(uint32_t)(f->refuse >> (32 * sel)));
	}
	uint32_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	drv_wr(f, VIRTIO_MMIO_STATUS, s);
	for (unsigned i = 0; i < nqueues; i++)
		drv_setup_queue(f, i, num);
	drv_wr(f, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_DRIVER_OK);
	return drv_rd(f, VIRTIO_MMIO_STATUS);
}

static inline void drv_desc(struct drv *f, unsigned qi, uint16_t i, uint64_t addr, uint32_t len,
			    uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
	memcpy(drv_host(f, f->vq[qi].desc + 16ull * i), &d, sizeof(d));
}

/* Puts a chain of `n` buffers in fresh descriptors; returns its head. */
struct drv_buf {
	uint64_t addr;
	uint32_t len;
	bool writable;
};

static inline uint16_t drv_chain(struct drv *f, unsigned qi, const struct drv_buf *b, int n)
{
	struct drv_vq *q = &f->vq[qi];
	uint16_t head = q->next_desc % q->num;
	for (int i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % q->num);
		uint16_t flags = (b[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
				 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
		drv_desc(f, qi, idx, b[i].addr, b[i].len, flags, (uint16_t)((idx + 1) % q->num));
	}
	q->next_desc = (uint16_t)(q->next_desc + n);
	return head;
}

/* Makes chain `head` available (ring entry, then index). */
static inline void drv_publish(struct drv *f, unsigned qi, uint16_t head)
{
	struct drv_vq *q = &f->vq[qi];
	uint16_t *ring = drv_host(f, q->avail + VIRTQ_AVAIL_RING);
	ring[q->avail_idx % q->num] = head;
	q->avail_idx++;
	__atomic_store_n((uint16_t *)drv_host(f, q->avail + VIRTQ_AVAIL_IDX), q->avail_idx,
			 __ATOMIC_RELEASE);
}

/* EVENT_IDX words: used_event (driver -> device) and avail_event (device -> driver). */
static inline void drv_set_used_event(struct drv *f, unsigned qi, uint16_t v)
{
	struct drv_vq *q = &f->vq[qi];
	memcpy(drv_host(f, q->avail + VIRTQ_AVAIL_RING + 2ull * q->num), &v, 2);
}

static inline uint16_t drv_avail_event(struct drv *f, unsigned qi)
{
	struct drv_vq *q = &f->vq[qi];
	uint16_t v;
	memcpy(&v, drv_host(f, q->used + VIRTQ_USED_RING + 8ull * q->num), 2);
	return v;
}

static inline void drv_kick(struct drv *f, unsigned qi)
{
	drv_wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, qi);
}

/* Takes the next used element; false when there is none. */
static inline bool drv_used(struct drv *f, unsigned qi, uint32_t *id, uint32_t *len)
{
	struct drv_vq *q = &f->vq[qi];
	uint16_t idx = __atomic_load_n((uint16_t *)drv_host(f, q->used + VIRTQ_USED_IDX),
				       __ATOMIC_ACQUIRE);
	if (idx == q->used_seen)
		return false;
	struct virtq_used_elem e;
	memcpy(&e, drv_host(f, q->used + VIRTQ_USED_RING + 8ull * (q->used_seen % q->num)),
	       sizeof(e));
	q->used_seen++;
	if (id)
		*id = e.id;
	if (len)
		*len = e.len;
	return true;
}

static inline uint64_t drv_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* For devices with their own threads: waits up to `ms` for a used element. */
static inline bool drv_wait_used(struct drv *f, unsigned qi, uint32_t *id, uint32_t *len, int ms)
{
	uint64_t end = drv_now_ms() + (uint64_t)ms;
	for (;;) {
		if (drv_used(f, qi, id, len))
			return true;
		if (drv_now_ms() >= end)
			return false;
		struct pollfd p = {.fd = f->irqfd, .events = POLLIN};
		poll(&p, 1, 10);
	}
}

static inline bool drv_needs_reset(struct drv *f)
{
	return drv_rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET;
}

#endif
