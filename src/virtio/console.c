/* virtio-console, one port (hvc0), no multiport: guest output goes to out_fd
 * on the vCPU thread that notified; host input from in_fd is fed by the
 * device's own thread, started at DRIVER_OK, whenever the driver has given
 * receive buffers. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "virtio/device.h"
#include "virtio/virtio_spec.h"

#define CONSOLE_QUEUE_SIZE 64
#define CONSOLE_RX	   0
#define CONSOLE_TX	   1

struct virtio_console {
	struct virtio_dev dev;
	int in_fd, out_fd;
	int kick_fd; /* eventfd: receive buffers were added, or stop */
	pthread_t thread;
	bool thread_running;
	bool stop;     /* atomic */
	bool in_eof;   /* only the thread touches it */
	bool out_dead; /* guest output is dropped after a write error */
	struct virtq_chain txchain, rxchain;
};

static void kick(struct virtio_console *c)
{
	uint64_t one = 1;
	if (write(c->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		msb_warn("virtio console: waking the input thread: %s", strerror(errno));
}

static void write_all(struct virtio_console *c, const struct iovec *iov, int n)
{
	for (int i = 0; i < n && !c->out_dead; i++) {
		size_t off = 0;
		while (off < iov[i].iov_len) {
			ssize_t w = write(c->out_fd, (char *)iov[i].iov_base + off,
					  iov[i].iov_len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && errno == EAGAIN) {
				struct pollfd p = {.fd = c->out_fd, .events = POLLOUT};
				poll(&p, 1, 1000);
				continue;
			}
			if (w <= 0) {
				msb_warn("virtio console: writing guest output: %s; dropping "
					 "further output",
					 strerror(errno));
				c->out_dead = true;
				return;
			}
			off += (size_t)w;
		}
	}
}

/* One chain of guest output to out_fd; the device writes nothing back. */
static uint32_t transmit(struct virtio_dev *d, const struct virtq_chain *ch)
{
	struct virtio_console *c = (struct virtio_console *)d;
	uint64_t off = 0;
	while (c->out_fd >= 0 && off < ch->read_len) {
		struct iovec iov[64];
		size_t span;
		int n = virtq_chain_iov(d->mem, ch, false, off, ch->read_len - off, iov, 64, &span);
		if (n <= 0)
			break;
		write_all(c, iov, n);
		off += span;
	}
	return 0;
}

static void console_notify(struct virtio_dev *d, unsigned qi)
{
	struct virtio_console *c = (struct virtio_console *)d;
	if (qi == CONSOLE_RX) {
		if (c->thread_running)
			kick(c);
		return;
	}
	virtio_dev_serve(d, CONSOLE_TX, &c->txchain, transmit);
}

/* Moves what in_fd has into one receive buffer.  Returns false when the
 * input is finished (EOF or error). */
static bool receive(struct virtio_console *c)
{
	struct virtio_dev *d = &c->dev;
	struct virtq *q = &d->vqs[CONSOLE_RX];
	bool more = true;
	pthread_mutex_lock(&d->qlock);
	const char *why;
	enum virtq_pop_result r =
		virtio_dev_running(d) ? virtq_pop(q, d->mem, &c->rxchain, &why) : VIRTQ_EMPTY;
	if (r == VIRTQ_BROKEN)
		virtio_dev_set_broken(d, why);
	if (r != VIRTQ_CHAIN)
		goto out;
	struct iovec iov[64];
	size_t span;
	int n = virtq_chain_iov(d->mem, &c->rxchain, true, 0, c->rxchain.write_len, iov, 64, &span);
	ssize_t got = n > 0 ? readv(c->in_fd, iov, n) : 0;
	if (got <= 0) {
		virtq_unpop(q);
		if (n > 0 && (got == 0 || (errno != EAGAIN && errno != EINTR)))
			more = false;
		if (n <= 0) {
			/* A buffer with no room: hand it back empty. */
			if (virtq_pop(q, d->mem, &c->rxchain, &why) == VIRTQ_CHAIN &&
			    virtq_push(q, d->mem, c->rxchain.head, 0) == 0)
				virtio_dev_queue_done(d, q);
		}
		goto out;
	}
	if (virtq_push(q, d->mem, c->rxchain.head, (uint32_t)got) < 0)
		virtio_dev_set_broken(d, "used ring outside guest memory");
	else
		virtio_dev_queue_done(d, q);
out:
	pthread_mutex_unlock(&d->qlock);
	return more;
}

static void *console_thread(void *arg)
{
	struct virtio_console *c = arg;
	struct virtio_dev *d = &c->dev;
	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&d->qlock);
		bool room = virtio_dev_running(d) && virtq_has_avail(&d->vqs[CONSOLE_RX], d->mem);
		pthread_mutex_unlock(&d->qlock);
		struct pollfd p[2] = {
			{.fd = c->kick_fd, .events = POLLIN},
			{.fd = (room && !c->in_eof) ? c->in_fd : -1, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			msb_warn("virtio console: poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents & POLLIN) {
			uint64_t v;
			if (read(c->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
			c->in_eof = !receive(c);
	}
	return NULL;
}

static int console_start(struct virtio_dev *d)
{
	struct virtio_console *c = (struct virtio_console *)d;
	if (c->in_fd < 0)
		return 0;
	__atomic_store_n(&c->stop, false, __ATOMIC_RELEASE);
	int e = pthread_create(&c->thread, NULL, console_thread, c);
	if (e) {
		msb_warn("virtio console: starting the input thread: %s", strerror(e));
		return -1;
	}
	c->thread_running = true;
	return 0;
}

static void console_stop(struct virtio_dev *d)
{
	struct virtio_console *c = (struct virtio_console *)d;
	if (!c->thread_running)
		return;
	__atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
	kick(c);
	pthread_join(c->thread, NULL);
	c->thread_running = false;
}

static void console_destroy(struct virtio_dev *d)
{
	struct virtio_console *c = (struct virtio_console *)d;
	close(c->kick_fd);
	virtio_dev_release(d);
	free(c);
}

static const struct virtio_dev_ops console_ops = {
	.name = "console",
	.device_id = VIRTIO_ID_CONSOLE,
	.notify = console_notify,
	.start = console_start,
	.stop = console_stop,
	.destroy = console_destroy,
	/* The input thread finishes the buffer it is filling before it sees
	 * `stop`, so stopping it is a pause; a restore needs no state of ours. */
	.pause = console_stop,
	.resume = console_start,
};

struct virtio_dev *virtio_console_new(const struct guest_mem *mem, int irqfd, int in_fd, int out_fd,
				      struct msb_err *err)
{
	struct virtio_console *c = calloc(1, sizeof(*c));
	if (!c) {
		msb_err_sys(err, "allocating the console device");
		return NULL;
	}
	c->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->kick_fd < 0) {
		msb_err_sys(err, "creating the console's eventfd");
		free(c);
		return NULL;
	}
	if (virtio_dev_init(&c->dev, &console_ops, mem, irqfd, 0, 2, CONSOLE_QUEUE_SIZE, err) < 0) {
		close(c->kick_fd);
		free(c);
		return NULL;
	}
	c->in_fd = in_fd;
	c->out_fd = out_fd;
	/* cols, rows, max_nr_ports, emerg_wr: none of them offered. */
	c->dev.config_len = 12;
	return &c->dev;
}
