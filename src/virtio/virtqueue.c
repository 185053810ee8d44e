#include "virtio/virtqueue.h"

#include <string.h>

#include "virtio/virtio_spec.h"

void virtq_reset(struct virtq *q)
{
	uint16_t num_max = q->num_max;
	memset(q, 0, sizeof(*q));
	q->num_max = num_max;
	q->num = num_max;
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int virtq_check_config(const struct virtq *q, const struct guest_mem *m, const char **why)
{
	uint64_t n = q->num;
	if (!is_pow2(q->num) || q->num > q->num_max) {
		*why = "queue size is not a power of two within the maximum";
		return -1;
	}
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3)) {
		*why = "ring address is misaligned";
		return -1;
	}
	/* The avail and used rings include the event-index word at their end. */
	if (!gm_valid(m, q->desc_gpa, n * sizeof(struct virtq_desc)) ||
	    !gm_valid(m, q->avail_gpa, VIRTQ_AVAIL_RING + 2 * n + 2) ||
	    !gm_valid(m, q->used_gpa, VIRTQ_USED_RING + sizeof(struct virtq_used_elem) * n + 2)) {
		*why = "ring is outside guest memory";
		return -1;
	}
	return 0;
}

/* A 16-bit ring word, read once.  The ring was checked to be in guest memory
 * and aligned when the queue was enabled; gm_ptr() checks it again so that a
 * queue that was never checked cannot escape either. */
static int load16(const struct guest_mem *m, uint64_t gpa, uint16_t *v)
{
	uint16_t *p = gm_ptr(m, gpa, 2);
	if (!p)
		return -1;
	*v = __atomic_load_n(p, __ATOMIC_RELAXED);
	return 0;
}

static int store16(const struct guest_mem *m, uint64_t gpa, uint16_t v)
{
	uint16_t *p = gm_ptr(m, gpa, 2);
	if (!p)
		return -1;
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
	return 0;
}

/* The avail index.  With EVENT_IDX, when it shows nothing new, tell the
 * driver to notify on the next chain (avail_event) and read it once more: a
 * chain published before the driver saw avail_event would get no notify. */
static int load_avail_idx(struct virtq *q, const struct guest_mem *m, uint16_t *idx)
{
	if (load16(m, q->avail_gpa + VIRTQ_AVAIL_IDX, idx) < 0)
		return -1;
	if (!q->event_idx || *idx != q->last_avail)
		return 0;
	uint64_t avail_event = q->used_gpa + VIRTQ_USED_RING + 8ull * q->num;
	if (store16(m, avail_event, q->last_avail) < 0)
		return -1;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load16(m, q->avail_gpa + VIRTQ_AVAIL_IDX, idx);
}

static enum virtq_pop_result broken(struct virtq *q, const char **why, const char *reason)
{
	q->broken = true;
	if (why)
		*why = reason;
	return VIRTQ_BROKEN;
}

/* Adds one descriptor (already copied out of guest memory) to the chain. */
static const char *add_buf(const struct guest_mem *m, struct virtq_chain *c,
			   const struct virtq_desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	if (c->nbufs >= VIRTQ_MAX_CHAIN)
		return "descriptor chain too long";
	if (!gm_valid(m, d->addr, d->len))
		return "descriptor buffer outside guest memory";
	if (!writable && c->nbufs > c->nreadable)
		return "readable descriptor after a writable one";
	c->bufs[c->nbufs++] =
		(struct virtq_buf){.gpa = d->addr, .len = d->len, .writable = writable};
	if (writable)
		c->write_len += d->len;
	else {
		c->nreadable++;
		c->read_len += d->len;
	}
	return NULL;
}

/* Walks the indirect table described by `ind` (a local copy). */
static const char *walk_indirect(const struct guest_mem *m, struct virtq_chain *c,
				 const struct virtq_desc *ind)
{
	if (ind->flags & VIRTQ_DESC_F_NEXT)
		return "indirect descriptor with NEXT set";
	if (ind->len == 0 || ind->len % sizeof(struct virtq_desc))
		return "indirect table size is not a multiple of 16";
	if (ind->addr & 15)
		return "indirect table is misaligned";
	uint32_t n = ind->len / sizeof(struct virtq_desc);
	if (n > VIRTQ_MAX_INDIRECT)
		return "indirect table too large";
	if (!gm_valid(m, ind->addr, ind->len))
		return "indirect table outside guest memory";
	uint32_t i = 0;
	for (uint32_t count = 0;; count++) {
		if (count >= n)
			return "loop in indirect table";
		struct virtq_desc d;
		if (gm_read(m, ind->addr + (uint64_t)i * sizeof(d), &d, sizeof(d)) < 0)
			return "indirect table outside guest memory";
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return "nested indirect table";
		const char *e = add_buf(m, c, &d);
		if (e)
			return e;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return NULL;
		i = d.next;
		if (i >= n)
			return "indirect next index out of range";
	}
}

enum virtq_pop_result virtq_pop(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c,
				const char **why)
{
	if (q->broken)
		return broken(q, why, "queue is broken");
	if (!q->ready)
		return VIRTQ_EMPTY;
	uint16_t avail_idx;
	if (load_avail_idx(q, m, &avail_idx) < 0)
		return broken(q, why, "avail ring outside guest memory");
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
	if (pending == 0)
		return VIRTQ_EMPTY;
	if (pending > q->num)
		return broken(q, why, "avail index moved more than the queue size");
	/* The ring entry and descriptors were written before the index. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);

	uint16_t head;
	uint64_t slot = q->avail_gpa + VIRTQ_AVAIL_RING + 2ull * (q->last_avail % q->num);
	if (load16(m, slot, &head) < 0)
		return broken(q, why, "avail ring outside guest memory");
	if (head >= q->num)
		return broken(q, why, "head index out of range");

	c->head = head;
	c->nbufs = c->nreadable = 0;
	c->read_len = c->write_len = 0;
	uint16_t i = head;
	for (uint32_t count = 0;; count++) {
		if (count >= q->num)
			return broken(q, why, "descriptor chain longer than the queue (loop?)");
		struct virtq_desc d;
		if (gm_read(m, q->desc_gpa + (uint64_t)i * sizeof(d), &d, sizeof(d)) < 0)
			return broken(q, why, "descriptor table outside guest memory");
		const char *e;
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect)
				return broken(q, why, "indirect descriptor not negotiated");
			e = walk_indirect(m, c, &d);
			if (e)
				return broken(q, why, e);
			break;
		}
		e = add_buf(m, c, &d);
		if (e)
			return broken(q, why, e);
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		i = d.next;
		if (i >= q->num)
			return broken(q, why, "next index out of range");
	}
	q->last_avail++;
	return VIRTQ_CHAIN;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

bool virtq_has_avail(struct virtq *q, const struct guest_mem *m)
{
	uint16_t avail_idx;
	if (q->broken || !q->ready || load_avail_idx(q, m, &avail_idx) < 0)
		return false;
	return avail_idx != q->last_avail;
}

int virtq_push(struct virtq *q, const struct guest_mem *m, uint16_t head, uint32_t len)
{
	if (q->broken || !q->ready)
		return -1;
	struct virtq_used_elem e = {.id = head, .len = len};
	uint64_t slot = q->used_gpa + VIRTQ_USED_RING + sizeof(e) * (q->used_idx % q->num);
	if (gm_write(m, slot, &e, sizeof(e)) < 0) {
		q->broken = true;
		return -1;
	}
	/* The element must be visible before the index that publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->used_idx++;
	if (store16(m, q->used_gpa + VIRTQ_USED_IDX, q->used_idx) < 0) {
		q->broken = true;
		return -1;
	}
	return 0;
}

bool virtq_want_interrupt(struct virtq *q, const struct guest_mem *m)
{
	/* Order the used index store before reading the driver's flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->event_idx) {
		uint16_t event, old = q->signalled_used, now = q->used_idx;
		q->signalled_used = now;
		if (load16(m, q->avail_gpa + VIRTQ_AVAIL_RING + 2ull * q->num, &event) < 0)
			return true;
		/* The spec's vring_need_event(): did used_idx step over event? */
		return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
	}
	uint16_t flags;
	if (load16(m, q->avail_gpa + VIRTQ_AVAIL_FLAGS, &flags) < 0)
		return true;
	return !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

/* Copies between `buf` and the readable (into buf) or writable (out of buf)
 * part of a chain, starting `off` bytes into that part, at most `len` bytes. */
static size_t chain_copy(const struct guest_mem *m, const struct virtq_chain *c, bool writable,
			 uint64_t off, uint8_t *buf, size_t len)
{
	size_t done = 0;
	uint16_t first = writable ? c->nreadable : 0;
	uint16_t end = writable ? c->nbufs : c->nreadable;
	for (uint16_t i = first; i < end && done < len; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		uint64_t n = b->len - off;
		if (n > len - done)
			n = len - done;
		uint8_t *p = gm_ptr(m, b->gpa + off, n);
		if (!p)
			break;
		if (writable)
			memcpy(p, buf + done, n);
		else
			memcpy(buf + done, p, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_chain_read(const struct guest_mem *m, const struct virtq_chain *c, uint64_t off,
			void *dst, size_t len)
{
	return chain_copy(m, c, false, off, dst, len);
}

size_t virtq_chain_write(const struct guest_mem *m, const struct virtq_chain *c, uint64_t off,
			 const void *src, size_t len)
{
	return chain_copy(m, c, true, off, (uint8_t *)src, len);
}

int virtq_chain_iov(const struct guest_mem *m, const struct virtq_chain *c, bool writable,
		    uint64_t off, uint64_t maxlen, struct iovec *iov, int maxiov, size_t *total)
{
	int n = 0;
	uint64_t done = 0;
	uint16_t first = writable ? c->nreadable : 0;
	uint16_t end = writable ? c->nbufs : c->nreadable;
	for (uint16_t i = first; i < end && done < maxlen && n < maxiov; i++) {
		const struct virtq_buf *b = &c->bufs[i];
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		uint64_t len = b->len - off;
		if (len > maxlen - done)
			len = maxlen - done;
		void *p = gm_ptr(m, b->gpa + off, len);
		if (!p)
			break;
		if (len) {
			iov[n].iov_base = p;
			iov[n].iov_len = len;
			n++;
		}
		done += len;
		off = 0;
	}
	*total = done;
	return n;
}
