/* The virtio-mmio transport, version 2: the register file a driver sees in
 * the device's 4 KiB window, feature negotiation, queue setup, reset. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "virtio/device.h"
#include "virtio/virtio_spec.h"

#define TRANSPORT_FEATURES                                                 \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_INDIRECT_DESC) | \
	 (1ull << VIRTIO_F_EVENT_IDX))

int virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops,
		    const struct guest_mem *mem, int irqfd, uint64_t features, unsigned nqueues,
		    uint16_t queue_max, struct msb_err *err)
{
	if (nqueues > VIRTIO_MAX_QUEUES || queue_max == 0 || queue_max > VIRTQ_MAX_SIZE ||
	    (queue_max & (queue_max - 1)))
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "virtio %s: bad queue layout",
				   ops->name);
	d->ops = ops;
	d->mem = mem;
	d->irqfd = irqfd;
	d->features = d->base_features = features | TRANSPORT_FEATURES;
	d->nqueues = nqueues;
	for (unsigned i = 0; i < nqueues; i++) {
		d->vqs[i].num_max = queue_max;
		virtq_reset(&d->vqs[i]);
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->qlock, NULL);
	return 0;
}

void virtio_dev_release(struct virtio_dev *d)
{
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->qlock);
}

void virtio_dev_interrupt(struct virtio_dev *d, uint32_t why)
{
	__atomic_fetch_or(&d->isr, why, __ATOMIC_SEQ_CST);
	if (d->irqfd < 0)
		return;
	uint64_t one = 1;
	/* EAGAIN means the counter is saturated: an interrupt is pending anyway. */
	if (write(d->irqfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		msb_warn("virtio %s: signalling the interrupt: %s", d->ops->name, strerror(errno));
}

void virtio_dev_set_broken(struct virtio_dev *d, const char *why)
{
	uint32_t old =
		__atomic_fetch_or(&d->status, VIRTIO_STATUS_DEVICE_NEEDS_RESET, __ATOMIC_SEQ_CST);
	if (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	msb_warn("virtio %s: the driver broke a queue (%s); the device needs a reset", d->ops->name,
		 why);
	virtio_dev_interrupt(d, VIRTIO_MMIO_INT_CONFIG);
}

bool virtio_dev_running(const struct virtio_dev *d)
{
	uint32_t s = __atomic_load_n(&d->status, __ATOMIC_ACQUIRE);
	return (s & VIRTIO_STATUS_DRIVER_OK) && !(s & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

bool virtio_dev_has_feature(const struct virtio_dev *d, unsigned bit)
{
	return bit < 64 && (d->driver_features & (1ull << bit));
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
	d->config_generation++;
	if (__atomic_load_n(&d->status, __ATOMIC_SEQ_CST) & VIRTIO_STATUS_DRIVER_OK)
		virtio_dev_interrupt(d, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_dev_queue_done(struct virtio_dev *d, struct virtq *q)
{
	if (virtq_want_interrupt(q, d->mem))
		virtio_dev_interrupt(d, VIRTIO_MMIO_INT_VRING);
}

void virtio_dev_serve(struct virtio_dev *d, unsigned qi, struct virtq_chain *c,
		      uint32_t (*handle)(struct virtio_dev *d, const struct virtq_chain *c))
{
	struct virtq *q = &d->vqs[qi];
	bool pushed = false;
	pthread_mutex_lock(&d->qlock);
	while (virtio_dev_running(d)) {
		const char *why;
		enum virtq_pop_result r = virtq_pop(q, d->mem, c, &why);
		if (r == VIRTQ_EMPTY)
			break;
		if (r == VIRTQ_BROKEN) {
			virtio_dev_set_broken(d, why);
			break;
		}
		if (virtq_push(q, d->mem, c->head, handle(d, c)) < 0) {
			virtio_dev_set_broken(d, "used ring outside guest memory");
			break;
		}
		pushed = true;
	}
	if (pushed)
		virtio_dev_queue_done(d, q);
	pthread_mutex_unlock(&d->qlock);
}

uint32_t virtio_dev_id(const struct virtio_dev *d)
{
	return d->ops->device_id;
}

const char *virtio_dev_name(const struct virtio_dev *d)
{
	return d->ops->name;
}

/* The driver wrote 0 to Status: stop the device, forget everything the
 * driver configured.  Called with d->lock held. */
static void device_reset(struct virtio_dev *d)
{
	if (d->started && d->ops->stop)
		d->ops->stop(d);
	d->started = false;
	d->paused = false;
	pthread_mutex_lock(&d->qlock);
	for (unsigned i = 0; i < d->nqueues; i++)
		virtq_reset(&d->vqs[i]);
	pthread_mutex_unlock(&d->qlock);
	d->driver_features = 0;
	d->features = d->base_features; /* a restore may have changed them */
	d->dev_features_sel = d->drv_features_sel = d->queue_sel = 0;
	__atomic_store_n(&d->isr, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&d->status, 0, __ATOMIC_SEQ_CST);
}

static void write_status(struct virtio_dev *d, uint32_t v)
{
	uint32_t old = __atomic_load_n(&d->status, __ATOMIC_SEQ_CST);
	if (v == 0) {
		device_reset(d);
		return;
	}
	/* Only a reset clears bits; DEVICE_NEEDS_RESET is ours to set.  The new
	 * bits are OR-ed in (below) so that a device thread setting
	 * DEVICE_NEEDS_RESET meanwhile is not overwritten. */
	v = (v | old) & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		/* Legacy (pre-1.0) drivers are not supported: refuse the features. */
		if (!virtio_dev_has_feature(d, VIRTIO_F_VERSION_1))
			v &= ~VIRTIO_STATUS_FEATURES_OK;
	}
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (!(v & VIRTIO_STATUS_FEATURES_OK)) {
			v &= ~VIRTIO_STATUS_DRIVER_OK;
		} else {
			pthread_mutex_lock(&d->qlock);
			for (unsigned i = 0; i < d->nqueues; i++) {
				d->vqs[i].indirect =
					virtio_dev_has_feature(d, VIRTIO_F_INDIRECT_DESC);
				d->vqs[i].event_idx = virtio_dev_has_feature(d, VIRTIO_F_EVENT_IDX);
			}
			pthread_mutex_unlock(&d->qlock);
			__atomic_fetch_or(&d->status, v, __ATOMIC_SEQ_CST);
			if (d->ops->start && d->ops->start(d) < 0)
				virtio_dev_set_broken(d, "the device could not start");
			else
				d->started = true;
			return;
		}
	}
	__atomic_fetch_or(&d->status, v, __ATOMIC_SEQ_CST);
}

static struct virtq *selected_queue(struct virtio_dev *d)
{
	return d->queue_sel < d->nqueues ? &d->vqs[d->queue_sel] : NULL;
}

/* Queue configuration may change only between reset and DRIVER_OK, and only
 * while the queue is not enabled. */
static struct virtq *configurable_queue(struct virtio_dev *d)
{
	struct virtq *q = selected_queue(d);
	uint32_t s = __atomic_load_n(&d->status, __ATOMIC_SEQ_CST);
	if (!q || q->ready || (s & VIRTIO_STATUS_DRIVER_OK))
		return NULL;
	return q;
}

static void set_low(uint64_t *v, uint32_t x)
{
	*v = (*v & ~0xffffffffull) | x;
}

static void set_high(uint64_t *v, uint32_t x)
{
	*v = (*v & 0xffffffffull) | ((uint64_t)x << 32);
}

static uint32_t read_reg(struct virtio_dev *d, uint64_t off)
{
	struct virtq *q = selected_queue(d);
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (d->dev_features_sel > 1)
			return 0;
		return (uint32_t)(d->features >> (32 * d->dev_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return q ? q->num_max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return __atomic_load_n(&d->isr, __ATOMIC_SEQ_CST);
	case VIRTIO_MMIO_STATUS:
		return __atomic_load_n(&d->status, __ATOMIC_SEQ_CST);
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		return 0xffffffffu; /* no shared memory regions */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return d->config_generation;
	default:
		return 0;
	}
}

static void write_reg(struct virtio_dev *d, uint64_t off, uint32_t v)
{
	struct virtq *q;
	uint32_t s = __atomic_load_n(&d->status, __ATOMIC_SEQ_CST);
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->dev_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->drv_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if ((s & VIRTIO_STATUS_FEATURES_OK) || d->drv_features_sel > 1)
			break;
		/* Bits we never offered are dropped here, once. */
		if (d->drv_features_sel == 0)
			set_low(&d->driver_features, v & (uint32_t)d->features);
		else
			set_high(&d->driver_features, v & (uint32_t)(d->features >> 32));
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if ((q = configurable_queue(d)))
			q->num = v > 0xffff ? 0 : (uint16_t)v;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		if ((q = configurable_queue(d)))
			set_low(&q->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if ((q = configurable_queue(d)))
			set_high(&q->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		if ((q = configurable_queue(d)))
			set_low(&q->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if ((q = configurable_queue(d)))
			set_high(&q->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		if ((q = configurable_queue(d)))
			set_low(&q->used_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if ((q = configurable_queue(d)))
			set_high(&q->used_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		q = selected_queue(d);
		if (!q || (s & VIRTIO_STATUS_DRIVER_OK))
			break;
		if (v == 0) {
			q->ready = false;
		} else if (!q->ready) {
			const char *why;
			if (virtq_check_config(q, d->mem, &why) < 0) {
				virtio_dev_set_broken(d, why);
				break;
			}
			pthread_mutex_lock(&d->qlock);
			q->ready = true;
			pthread_mutex_unlock(&d->qlock);
		}
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		__atomic_fetch_and(&d->isr, ~v, __ATOMIC_SEQ_CST);
		break;
	case VIRTIO_MMIO_STATUS:
		write_status(d, v);
		break;
	default:
		break; /* read-only or unknown: ignored */
	}
}

void virtio_mmio_access(struct virtio_dev *d, uint64_t offset, void *data, uint32_t len,
			bool is_write)
{
	if (offset >= VIRTIO_MMIO_CONFIG) {
		uint64_t off = offset - VIRTIO_MMIO_CONFIG;
		if (is_write)
			return; /* no device has a writable configuration field */
		memset(data, 0, len);
		if (off < d->config_len && len <= d->config_len - off)
			memcpy(data, d->config + off, len);
		return;
	}
	if (offset >= VIRTIO_MMIO_SIZE || len != 4 || (offset & 3)) {
		/* The register file is 32-bit only (virtio-mmio v2). */
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (is_write) {
		uint32_t v;
		memcpy(&v, data, 4);
		if (offset == VIRTIO_MMIO_QUEUE_NOTIFY) {
			/* No register lock: notify may do disk I/O. */
			if (v < d->nqueues && virtio_dev_running(d))
				d->ops->notify(d, v);
			return;
		}
		pthread_mutex_lock(&d->lock);
		write_reg(d, offset, v);
		pthread_mutex_unlock(&d->lock);
	} else {
		pthread_mutex_lock(&d->lock);
		uint32_t v = read_reg(d, offset);
		pthread_mutex_unlock(&d->lock);
		memcpy(data, &v, 4);
	}
}

void virtio_dev_free(struct virtio_dev *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	if (d->started && d->ops->stop)
		d->ops->stop(d);
	d->started = false;
	pthread_mutex_unlock(&d->lock);
	d->ops->destroy(d);
}
