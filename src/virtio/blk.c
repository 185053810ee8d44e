/* virtio-blk: a raw disk image file, read-only or read-write, or an empty
 * slot (no file, capacity 0) that a snapshot restore fills.  Requests are
 * carried out synchronously on the vCPU thread that notified, so pausing
 * needs no work: no vCPU runs then, and no request is half done. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "virtio/blk.h"
#include "virtio/device.h"
#include "virtio/virtio_spec.h"

#define BLK_QUEUE_SIZE 256

struct virtio_blk {
	struct virtio_dev dev;
	int fd; /* -1: an empty slot */
	bool readonly;
	uint64_t capacity; /* sectors */
	char id[BLK_ID_BYTES + 1];
	/* What a snapshot being restored says of the media it was taken with. */
	uint64_t saved_capacity;
	char saved_id[BLK_ID_BYTES + 1];
	struct virtq_chain chain;
};

/* One request: parse, carry out, write the status; the used length. */
static uint32_t blk_handle(struct virtio_dev *d, const struct virtq_chain *c)
{
	struct virtio_blk *b = (struct virtio_blk *)d;
	struct blk_req req;
	int st = blk_parse_request(d->mem, c, b->capacity, b->readonly, &req);
	if (st == VIRTIO_BLK_S_OK && b->fd < 0 &&
	    (req.type == VIRTIO_BLK_T_IN || req.type == VIRTIO_BLK_T_OUT))
		st = VIRTIO_BLK_S_IOERR; /* no media */
	if (st == VIRTIO_BLK_S_OK)
		return blk_execute(d->mem, c, &req, b->fd, b->id);
	if (st > 0)
		return blk_complete(d->mem, c, &req, (uint8_t)st);
	return 0;
}

static void blk_notify(struct virtio_dev *d, unsigned qi)
{
	if (qi == 0)
		virtio_dev_serve(d, 0, &((struct virtio_blk *)d)->chain, blk_handle);
}

static void blk_destroy(struct virtio_dev *d)
{
	struct virtio_blk *b = (struct virtio_blk *)d;
	if (b->fd >= 0)
		close(b->fd);
	virtio_dev_release(d);
	free(b);
}

/* Device state: capacity (u64), read-only (u8), id length (u8), id. */
static void blk_save(struct virtio_dev *d, struct vsnap_w *w)
{
	struct virtio_blk *b = (struct virtio_blk *)d;
	size_t n = strlen(b->id);
	vsnap_put_u64(w, b->capacity);
	vsnap_put_u8(w, b->readonly);
	vsnap_put_u8(w, (uint8_t)n);
	vsnap_put(w, b->id, n);
}

static int blk_load(struct virtio_dev *d, struct vsnap_r *r, struct msb_err *err)
{
	struct virtio_blk *b = (struct virtio_blk *)d;
	char id[BLK_ID_BYTES + 1] = {0};
	uint64_t capacity = vsnap_get_u64(r);
	uint8_t ro = vsnap_get_u8(r);
	uint8_t n = vsnap_get_u8(r);
	if (n > BLK_ID_BYTES)
		r->bad = true;
	else
		vsnap_get(r, id, n);
	if (r->bad || ro > 1 || r->off != r->len || memchr(id, 0, n))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "virtio blk: the saved disk state is malformed; take a new "
				   "snapshot");
	b->saved_capacity = capacity;
	memcpy(b->saved_id, id, sizeof(id));
	return 0;
}

/* The guest keeps the features it negotiated with the saved device: if that
 * said read-only, writes stay refused even when the new file is writable;
 * a new file opened read-only refuses writes whatever the guest believes
 * (blk_parse_request answers IOERR).  Other media: the guest re-reads the
 * capacity on the configuration change. */
static bool blk_restored(struct virtio_dev *d)
{
	struct virtio_blk *b = (struct virtio_blk *)d;
	if (virtio_dev_has_feature(d, VIRTIO_BLK_F_RO))
		b->readonly = true;
	return b->saved_capacity != b->capacity || strcmp(b->saved_id, b->id) != 0;
}

static const struct virtio_dev_ops blk_ops = {
	.name = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.notify = blk_notify,
	.destroy = blk_destroy,
	.save = blk_save,
	.load = blk_load,
	.restored = blk_restored,
	.media_features = 1ull << VIRTIO_BLK_F_RO,
};

static int disk_size(int fd, const char *path, uint64_t *size, struct msb_err *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return msb_err_sys(err, "examining disk %s", path);
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			return msb_err_sys(err, "reading the size of disk %s", path);
		return 0;
	}
	return msb_err_set(err, MSB_EK_USAGE, 0,
			   "disk %s is neither a regular file nor a block device; give a raw "
			   "disk image",
			   path);
}

struct virtio_dev *virtio_blk_new(const struct guest_mem *mem, int irqfd, const char *path,
				  bool readonly, struct msb_err *err)
{
	_cleanup_close_ int fd = -1;
	uint64_t size = 0;
	if (path) {
		fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (fd < 0) {
			int e = errno;
			msb_err_sys(err, "opening disk %s%s", path, readonly ? "" : " for writing");
			if (e == ENOENT)
				err->kind = MSB_EK_NOT_FOUND;
			return NULL;
		}
		if (disk_size(fd, path, &size, err) < 0)
			return NULL;
	} else {
		readonly = false;
	}

	struct virtio_blk *b = calloc(1, sizeof(*b));
	if (!b) {
		msb_err_sys(err, "allocating the block device");
		return NULL;
	}
	uint64_t features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_FLUSH);
	if (readonly)
		features |= 1ull << VIRTIO_BLK_F_RO;
	if (virtio_dev_init(&b->dev, &blk_ops, mem, irqfd, features, 1, BLK_QUEUE_SIZE, err) < 0) {
		free(b);
		return NULL;
	}
	b->readonly = readonly;
	b->capacity = size / BLK_SECTOR_SIZE;
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0)
		snprintf(b->id, sizeof(b->id), "msb-%llx-%llx", (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino);
	b->fd = steal_fd(&fd);

	/* Configuration space: capacity (le64), size_max (le32), seg_max (le32). */
	uint32_t seg_max = BLK_SEG_MAX;
	memcpy(b->dev.config, &b->capacity, 8);
	memcpy(b->dev.config + 12, &seg_max, 4);
	b->dev.config_len = 24;
	return &b->dev;
}
