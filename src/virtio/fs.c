/* virtio-fs: one host directory (a volume) served to the guest as a FUSE
 * filesystem by fs_req.c/fs_ops.c, or an empty slot (a tag and no directory)
 * that a snapshot restore fills.  Requests are carried out on the vCPU thread
 * that notified, under qlock, as blk does: the hiprio queue (FORGET) and the
 * request queue share one server, so its tables need no lock of their own,
 * and pausing needs no work. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "virtio/device.h"
#include "virtio/fs.h"
#include "virtio/virtio_spec.h"

#define FS_QUEUE_SIZE 128
#define FS_NQUEUES    2 /* hiprio, one request queue */

struct virtio_fs {
	struct virtio_dev dev;
	struct fs_server *srv;
	char tag[FS_TAG_MAX + 1];
	struct virtq_chain chain;
};

static uint32_t fs_handle(struct virtio_dev *d, const struct virtq_chain *c)
{
	return fs_server_chain(((struct virtio_fs *)d)->srv, d->mem, c);
}

static void fs_notify(struct virtio_dev *d, unsigned qi)
{
	if (qi < FS_NQUEUES)
		virtio_dev_serve(d, qi, &((struct virtio_fs *)d)->chain, fs_handle);
}

/* A device reset ends the FUSE session: the guest forgets every inode. */
static void fs_stop(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->qlock);
	fs_server_reset(((struct virtio_fs *)d)->srv);
	pthread_mutex_unlock(&d->qlock);
}

static void fs_destroy(struct virtio_dev *d)
{
	struct virtio_fs *f = (struct virtio_fs *)d;
	fs_server_free(f->srv);
	virtio_dev_release(d);
	free(f);
}

/* Device state: tag length (u8), tag, mounted (u8).  The open inodes and
 * files of a mounted volume are host descriptors that no snapshot can carry,
 * so only unmounted devices (the base snapshot's empty slots) are restored. */
static void fs_save(struct virtio_dev *d, struct vsnap_w *w)
{
	struct virtio_fs *f = (struct virtio_fs *)d;
	size_t n = strlen(f->tag);
	vsnap_put_u8(w, (uint8_t)n);
	vsnap_put(w, f->tag, n);
	vsnap_put_u8(w, fs_server_mounted(f->srv));
}

static int fs_load(struct virtio_dev *d, struct vsnap_r *r, struct msb_err *err)
{
	struct virtio_fs *f = (struct virtio_fs *)d;
	char tag[FS_TAG_MAX + 1] = {0};
	uint8_t n = vsnap_get_u8(r);
	if (n > FS_TAG_MAX)
		r->bad = true;
	else
		vsnap_get(r, tag, n);
	uint8_t mounted = vsnap_get_u8(r);
	if (r->bad || mounted > 1 || r->off != r->len || memchr(tag, 0, n))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "virtio fs: the saved state is malformed; take a new snapshot");
	if (strcmp(tag, f->tag) != 0)
		return msb_err_set(
			err, MSB_EK_CORRUPT, 0,
			"virtio fs: the snapshot's tag is '%s' but the options give '%s'", tag,
			f->tag);
	if (mounted)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "virtio fs '%s' was mounted in the guest when the snapshot was "
				   "taken; a mounted volume cannot be restored (snapshot sandboxes "
				   "without volumes)",
				   tag);
	return 0;
}

static const struct virtio_dev_ops fs_ops = {
	.name = "fs",
	.device_id = VIRTIO_ID_FS,
	.notify = fs_notify,
	.stop = fs_stop,
	.destroy = fs_destroy,
	.save = fs_save,
	.load = fs_load,
};

/* Each inode the guest holds is a descriptor: allow as many as the hard
 * limit lets us (msb-vmm has no other use for a high limit). */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

struct virtio_dev *virtio_fs_new(const struct guest_mem *mem, int irqfd, const char *tag,
				 const char *dir, bool readonly, struct msb_err *err)
{
	size_t tl = strlen(tag);
	if (tl == 0 || tl > FS_TAG_MAX) {
		msb_err_set(err, MSB_EK_USAGE, 0, "a virtio-fs tag has 1 to %d bytes, not '%s'",
			    FS_TAG_MAX, tag);
		return NULL;
	}
	_cleanup_close_ int fd = -1;
	if (dir) {
		fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			int e = errno;
			msb_err_sys(err, "opening shared directory %s", dir);
			if (e == ENOENT)
				err->kind = MSB_EK_NOT_FOUND;
			else if (e == ENOTDIR)
				err->kind = MSB_EK_USAGE;
			return NULL;
		}
		raise_nofile();
	}
	struct virtio_fs *f = calloc(1, sizeof(*f));
	if (!f) {
		msb_err_sys(err, "allocating the file system device");
		return NULL;
	}
	f->srv = fs_server_new(steal_fd(&fd), readonly);
	if (!f->srv) {
		free(f);
		msb_err_sys(err, "allocating the file system device");
		return NULL;
	}
	if (virtio_dev_init(&f->dev, &fs_ops, mem, irqfd, 0, FS_NQUEUES, FS_QUEUE_SIZE, err) < 0) {
		fs_server_free(f->srv);
		free(f);
		return NULL;
	}
	memcpy(f->tag, tag, tl);
	/* Configuration space: tag[36] (NUL-padded), num_request_queues (le32). */
	uint32_t nreq = FS_NQUEUES - 1;
	memcpy(f->dev.config, tag, tl);
	memcpy(f->dev.config + FS_TAG_MAX, &nreq, 4);
	f->dev.config_len = FS_TAG_MAX + 4;
	return &f->dev;
}
