/* virtio-rng: fills the driver's buffers from getrandom(), on the vCPU
 * thread that notified. */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "virtio/device.h"
#include "virtio/virtio_spec.h"

#define RNG_QUEUE_SIZE 64
/* Per request: the kernel asks for small amounts; a huge buffer must not keep
 * a vCPU thread busy for long. */
#define RNG_MAX_BYTES (64u * 1024)

struct virtio_rng {
	struct virtio_dev dev;
	struct virtq_chain chain;
};

/* Fills the writable part of the chain; returns the bytes written. */
static uint32_t fill(struct virtio_dev *d, const struct virtq_chain *c)
{
	const struct guest_mem *m = d->mem;
	struct iovec iov[16];
	size_t total;
	int n = virtq_chain_iov(m, c, true, 0, RNG_MAX_BYTES, iov, 16, &total);
	uint32_t done = 0;
	for (int i = 0; i < n; i++) {
		size_t got = 0;
		while (got < iov[i].iov_len) {
			ssize_t r =
				getrandom((char *)iov[i].iov_base + got, iov[i].iov_len - got, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return done;
			got += (size_t)r;
			done += (uint32_t)r;
		}
	}
	return done;
}

static void rng_notify(struct virtio_dev *d, unsigned qi)
{
	if (qi == 0)
		virtio_dev_serve(d, 0, &((struct virtio_rng *)d)->chain, fill);
}

static void rng_destroy(struct virtio_dev *d)
{
	virtio_dev_release(d);
	free(d);
}

static const struct virtio_dev_ops rng_ops = {
	.name = "rng",
	.device_id = VIRTIO_ID_RNG,
	.notify = rng_notify,
	.destroy = rng_destroy,
};

struct virtio_dev *virtio_rng_new(const struct guest_mem *mem, int irqfd, struct msb_err *err)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));
	if (!r) {
		msb_err_sys(err, "allocating the entropy device");
		return NULL;
	}
	if (virtio_dev_init(&r->dev, &rng_ops, mem, irqfd, 0, 1, RNG_QUEUE_SIZE, err) < 0) {
		free(r);
		return NULL;
	}
	return &r->dev;
}
