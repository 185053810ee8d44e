/* Device snapshots (virtio.h): pause and resume, and the state blob.
 *
 * The blob, version 1, little-endian:
 *
 *   u32 magic "MSBV"   u16 version   u16 0   u32 device id
 *   u64 offered features   u64 accepted features
 *   u32 device/driver features selectors, queue selector, status, isr,
 *       config generation
 *   u16 config length, config bytes
 *   u8 queue count, then per queue:
 *     u16 num, u8 flags (ready 1, indirect 2, event_idx 4, broken 8),
 *     u64 desc, avail, used gpa, u16 signalled_used, last_avail, used_idx
 *   u32 length of the device's own state, that state (ops->save/load)
 *
 * A blob is read back from a file: restore decodes all of it into locals,
 * checks them against the device it was handed and against guest memory,
 * and only then changes the device, so a refused blob leaves it as new.
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "virtio/device.h"
#include "virtio/virtio_spec.h"

#define SNAP_MAGIC   0x5642534du /* "MSBV" */
#define SNAP_VERSION 1u

#define QF_READY     1u
#define QF_INDIRECT  2u
#define QF_EVENT_IDX 4u
#define QF_BROKEN    8u

#define STATUS_KNOWN                                                                  \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK | \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)

/* The largest device section any device writes; a bigger length is corrupt. */
#define SNAP_DEV_MAX 65536u /* vsock: up to 1024 connections */

/* ---- codec ------------------------------------------------------------------ */

void vsnap_put(struct vsnap_w *w, const void *data, size_t len)
{
	if (w->oom)
		return;
	if (len > w->cap - w->len) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap - w->len < len)
			cap *= 2;
		uint8_t *b = realloc(w->buf, cap);
		if (!b) {
			w->oom = true;
			return;
		}
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, data, len);
	w->len += len;
}

void vsnap_put_u8(struct vsnap_w *w, uint8_t v)
{
	vsnap_put(w, &v, 1);
}

void vsnap_put_u16(struct vsnap_w *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	vsnap_put(w, b, 2);
}

void vsnap_put_u32(struct vsnap_w *w, uint32_t v)
{
	vsnap_put_u16(w, (uint16_t)v);
	vsnap_put_u16(w, (uint16_t)(v >> 16));
}

void vsnap_put_u64(struct vsnap_w *w, uint64_t v)
{
	vsnap_put_u32(w, (uint32_t)v);
	vsnap_put_u32(w, (uint32_t)(v >> 32));
}

void vsnap_get(struct vsnap_r *r, void *data, size_t len)
{
	if (r->bad || len > r->len - r->off) {
		r->bad = true;
		memset(data, 0, len);
		return;
	}
	memcpy(data, r->p + r->off, len);
	r->off += len;
}

uint8_t vsnap_get_u8(struct vsnap_r *r)
{
	uint8_t v;
	vsnap_get(r, &v, 1);
	return v;
}

uint16_t vsnap_get_u16(struct vsnap_r *r)
{
	uint8_t b[2];
	vsnap_get(r, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

uint32_t vsnap_get_u32(struct vsnap_r *r)
{
	uint32_t lo = vsnap_get_u16(r);
	return lo | (uint32_t)vsnap_get_u16(r) << 16;
}

uint64_t vsnap_get_u64(struct vsnap_r *r)
{
	uint64_t lo = vsnap_get_u32(r);
	return lo | (uint64_t)vsnap_get_u32(r) << 32;
}

/* ---- pause and resume ----------------------------------------------------------- */

int virtio_dev_pause(struct virtio_dev *d, struct msb_err *err)
{
	pthread_mutex_lock(&d->lock);
	if (d->started && !d->paused) {
		if (d->ops->pause)
			d->ops->pause(d);
		d->paused = true;
	}
	pthread_mutex_unlock(&d->lock);
	/* A request a vCPU thread was still carrying out (blk, rng, console
	 * output hold qlock for the whole of it) is finished once we get it. */
	pthread_mutex_lock(&d->qlock);
	pthread_mutex_unlock(&d->qlock);
	return 0;
}

void virtio_dev_resume(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	if (d->paused) {
		d->paused = false;
		if (d->ops->resume && d->ops->resume(d) < 0)
			virtio_dev_set_broken(d, "the device could not resume");
	}
	pthread_mutex_unlock(&d->lock);
}

/* ---- save ------------------------------------------------------------------------ */

static void save_queue(struct vsnap_w *w, const struct virtq *q)
{
	uint8_t flags = (q->ready ? QF_READY : 0) | (q->indirect ? QF_INDIRECT : 0) |
			(q->event_idx ? QF_EVENT_IDX : 0) | (q->broken ? QF_BROKEN : 0);
	vsnap_put_u16(w, q->num);
	vsnap_put_u8(w, flags);
	vsnap_put_u64(w, q->desc_gpa);
	vsnap_put_u64(w, q->avail_gpa);
	vsnap_put_u64(w, q->used_gpa);
	vsnap_put_u16(w, q->signalled_used);
	vsnap_put_u16(w, q->last_avail);
	vsnap_put_u16(w, q->used_idx);
}

int virtio_dev_save(struct virtio_dev *d, uint8_t **blob, size_t *len, struct msb_err *err)
{
	*blob = NULL;
	*len = 0;
	struct vsnap_w w = {0};
	pthread_mutex_lock(&d->lock);
	if (d->started && !d->paused) {
		pthread_mutex_unlock(&d->lock);
		return msb_err_set(err, MSB_EK_STATE, 0,
				   "virtio %s: the device runs; pause it before saving it",
				   d->ops->name);
	}
	pthread_mutex_lock(&d->qlock);
	vsnap_put_u32(&w, SNAP_MAGIC);
	vsnap_put_u16(&w, SNAP_VERSION);
	vsnap_put_u16(&w, 0);
	vsnap_put_u32(&w, d->ops->device_id);
	vsnap_put_u64(&w, d->features);
	vsnap_put_u64(&w, d->driver_features);
	vsnap_put_u32(&w, d->dev_features_sel);
	vsnap_put_u32(&w, d->drv_features_sel);
	vsnap_put_u32(&w, d->queue_sel);
	vsnap_put_u32(&w, __atomic_load_n(&d->status, __ATOMIC_SEQ_CST));
	vsnap_put_u32(&w, __atomic_load_n(&d->isr, __ATOMIC_SEQ_CST));
	vsnap_put_u32(&w, d->config_generation);
	vsnap_put_u16(&w, (uint16_t)d->config_len);
	vsnap_put(&w, d->config, d->config_len);
	vsnap_put_u8(&w, (uint8_t)d->nqueues);
	for (unsigned i = 0; i < d->nqueues; i++)
		save_queue(&w, &d->vqs[i]);
	struct vsnap_w dw = {0};
	if (d->ops->save)
		d->ops->save(d, &dw);
	vsnap_put_u32(&w, (uint32_t)dw.len);
	if (dw.len)
		vsnap_put(&w, dw.buf, dw.len);
	pthread_mutex_unlock(&d->qlock);
	pthread_mutex_unlock(&d->lock);
	bool oom = w.oom || dw.oom;
	free(dw.buf);
	if (oom) {
		free(w.buf);
		return msb_err_set(err, MSB_EK_SYSTEM, 0,
				   "virtio %s: out of memory saving the device state",
				   d->ops->name);
	}
	*blob = w.buf;
	*len = w.len;
	return 0;
}

/* ---- restore --------------------------------------------------------------------- */

struct snap_state {
	uint64_t features, driver_features;
	uint32_t dev_features_sel, drv_features_sel, queue_sel, status, isr, config_generation;
	uint16_t config_len;
	uint8_t config[VIRTIO_CONFIG_MAX];
	struct virtq vqs[VIRTIO_MAX_QUEUES];
};

static int corrupt(struct virtio_dev *d, struct msb_err *err, const char *why)
{
	return msb_err_set(err, MSB_EK_CORRUPT, 0,
			   "virtio %s: the saved device state is unusable (%s); take a new "
			   "snapshot",
			   d->ops->name, why);
}

static const char *check_queue(const struct virtio_dev *d, const struct snap_state *s,
			       const struct virtq *q)
{
	const char *why = NULL;
	bool driver_ok = s->status & VIRTIO_STATUS_DRIVER_OK;
	bool indirect = driver_ok && (s->driver_features & (1ull << VIRTIO_F_INDIRECT_DESC));
	bool event_idx = driver_ok && (s->driver_features & (1ull << VIRTIO_F_EVENT_IDX));
	if (q->indirect != indirect || q->event_idx != event_idx)
		return "queue options differ from the negotiated features";
	if (!q->ready) {
		/* Indices move only while a queue is ready; a reset clears them. */
		if (q->broken || q->signalled_used || q->last_avail || q->used_idx)
			return "a queue that is not ready has state";
		return NULL;
	}
	if (q->num > q->num_max)
		return "a queue is larger than this msb-vmm's device offers (the net queues went "
		       "from 256 to 64 entries, for one): the snapshot was made by an older "
		       "msb-vmm; make it again";
	if (virtq_check_config(q, d->mem, &why) < 0)
		return why;
	/* Chains popped but not returned: our devices complete every chain
	 * before they pause, so none; never more than the ring holds. */
	if ((uint16_t)(q->last_avail - q->used_idx) > q->num)
		return "queue indices are inconsistent";
	return NULL;
}

/* Decodes and checks everything but the device's own section, which is left
 * in *dev.  NULL, or the reason the blob is refused. */
static const char *decode(struct virtio_dev *d, struct vsnap_r *r, struct snap_state *s,
			  struct vsnap_r *dev)
{
	uint32_t magic = vsnap_get_u32(r);
	uint16_t version = vsnap_get_u16(r);
	uint16_t pad = vsnap_get_u16(r);
	uint32_t id = vsnap_get_u32(r);
	if (r->bad || magic != SNAP_MAGIC)
		return "not a virtio device state";
	if (version != SNAP_VERSION || pad)
		return "unknown format version";
	if (id != d->ops->device_id)
		return "it belongs to another kind of device";
	s->features = vsnap_get_u64(r);
	s->driver_features = vsnap_get_u64(r);
	s->dev_features_sel = vsnap_get_u32(r);
	s->drv_features_sel = vsnap_get_u32(r);
	s->queue_sel = vsnap_get_u32(r);
	s->status = vsnap_get_u32(r);
	s->isr = vsnap_get_u32(r);
	s->config_generation = vsnap_get_u32(r);
	s->config_len = vsnap_get_u16(r);
	if (s->config_len != d->config_len)
		return "configuration space size differs";
	vsnap_get(r, s->config, s->config_len);
	if (vsnap_get_u8(r) != d->nqueues)
		return "queue count differs";
	for (unsigned i = 0; i < d->nqueues; i++) {
		struct virtq *q = &s->vqs[i];
		q->num_max = d->vqs[i].num_max;
		q->num = vsnap_get_u16(r);
		uint8_t flags = vsnap_get_u8(r);
		if (flags & ~(QF_READY | QF_INDIRECT | QF_EVENT_IDX | QF_BROKEN))
			return "unknown queue flags";
		q->ready = flags & QF_READY;
		q->indirect = flags & QF_INDIRECT;
		q->event_idx = flags & QF_EVENT_IDX;
		q->broken = flags & QF_BROKEN;
		q->desc_gpa = vsnap_get_u64(r);
		q->avail_gpa = vsnap_get_u64(r);
		q->used_gpa = vsnap_get_u64(r);
		q->signalled_used = vsnap_get_u16(r);
		q->last_avail = vsnap_get_u16(r);
		q->used_idx = vsnap_get_u16(r);
	}
	uint32_t dlen = vsnap_get_u32(r);
	if (r->bad)
		return "truncated";
	if (dlen > SNAP_DEV_MAX || dlen != r->len - r->off)
		return "device section length does not match the blob";
	*dev = (struct vsnap_r){.p = r->p + r->off, .len = dlen};

	/* The transport: what this build of the device may offer, what a driver
	 * may have accepted, and a status the transport could have reached. */
	if ((s->features ^ d->base_features) & ~d->ops->media_features)
		return "offered features differ (another version of msb-vmm?)";
	if (s->driver_features & ~s->features)
		return "accepted features were never offered";
	if (s->status & ~STATUS_KNOWN)
		return "unknown status bits";
	if ((s->status & VIRTIO_STATUS_DRIVER_OK) && !(s->status & VIRTIO_STATUS_FEATURES_OK))
		return "DRIVER_OK without FEATURES_OK";
	if ((s->status & VIRTIO_STATUS_FEATURES_OK) &&
	    !(s->driver_features & (1ull << VIRTIO_F_VERSION_1)))
		return "FEATURES_OK without VIRTIO_F_VERSION_1";
	if (s->isr & ~(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG))
		return "unknown interrupt status bits";
	for (unsigned i = 0; i < d->nqueues; i++) {
		const char *why = check_queue(d, s, &s->vqs[i]);
		if (why)
			return why;
	}
	return NULL;
}

int virtio_dev_restore(struct virtio_dev *d, const uint8_t *blob, size_t len, struct msb_err *err)
{
	struct snap_state s;
	memset(&s, 0, sizeof(s));
	struct vsnap_r r = {.p = blob, .len = blob ? len : 0}, dev = {0};
	pthread_mutex_lock(&d->lock);
	if (d->started || __atomic_load_n(&d->status, __ATOMIC_SEQ_CST) != 0) {
		pthread_mutex_unlock(&d->lock);
		return msb_err_set(err, MSB_EK_STATE, 0,
				   "virtio %s: a restore needs a device fresh from its *_new()",
				   d->ops->name);
	}
	const char *why = decode(d, &r, &s, &dev);
	if (why) {
		pthread_mutex_unlock(&d->lock);
		return corrupt(d, err, why);
	}
	if (d->ops->load) {
		if (d->ops->load(d, &dev, err) < 0) {
			pthread_mutex_unlock(&d->lock);
			return -1;
		}
	} else if (dev.len) {
		pthread_mutex_unlock(&d->lock);
		return corrupt(d, err, "unexpected device section");
	}

	pthread_mutex_lock(&d->qlock);
	d->features = s.features;
	d->driver_features = s.driver_features;
	d->dev_features_sel = s.dev_features_sel;
	d->drv_features_sel = s.drv_features_sel;
	d->queue_sel = s.queue_sel;
	d->config_generation = s.config_generation;
	for (unsigned i = 0; i < d->nqueues; i++)
		d->vqs[i] = s.vqs[i];
	__atomic_store_n(&d->isr, s.isr, __ATOMIC_SEQ_CST);
	__atomic_store_n(&d->status, s.status, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&d->qlock);

	/* The configuration space is the new device's (its media, its CID). */
	bool changed = memcmp(s.config, d->config, d->config_len) != 0;
	if (d->ops->restored && d->ops->restored(d))
		changed = true;
	if (changed)
		virtio_dev_config_changed(d);
	if (s.status & VIRTIO_STATUS_DRIVER_OK) {
		if (d->ops->start && d->ops->start(d) < 0)
			virtio_dev_set_broken(d, "the device could not start");
		else
			d->started = true;
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}
