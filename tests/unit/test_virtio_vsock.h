/* A fake Linux vsock driver for unit tests (test_virtio_vsock.c,
 * test_virtio_snapshot.c): receive buffers of 4 KiB as Linux posts them,
 * 8 event buffers, transmit slots of a header and up to 64 KiB of payload,
 * and the host side's Unix sockets. */
#ifndef MSB_TEST_VIRTIO_VSOCK_H
#define MSB_TEST_VIRTIO_VSOCK_H

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tests/unit/test.h"
#include "tests/unit/test_virtio_driver.h"
#include "virtio/vsock.h"

#define VS_QSIZE    64
#define VS_RXBUF    (sizeof(struct vsock_hdr) + 4096)
#define VS_EVENTS   8
#define VS_WAIT_MS  5000
#define VS_TX_SLOTS 32 /* 2 descriptors per packet */

struct vs {
	struct drv f;
	char path[80];
	uint64_t cid;
	uint64_t rx[VS_QSIZE];	/* receive buffer of descriptor i */
	uint64_t ev[VS_EVENTS]; /* event buffer of descriptor i */
	uint64_t txhdr, txdata; /* transmit buffers */
	unsigned tx_next;
};

static inline void vs_make_path(struct vs *s)
{
	static int n;
	snprintf(s->path, sizeof(s->path), "/tmp/msb-test-vsock-%d-%d", (int)getpid(), n++);
}

/* A device with guest CID `cid`, probed; receive and event buffers posted. */
static inline void vs_open_cid(struct test_ctx *t, struct vs *s, uint64_t cid)
{
	memset(s, 0, sizeof(*s));
	drv_open(&s->f);
	vs_make_path(s);
	s->cid = cid;
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_vsock_new(s->f.mem, s->f.irqfd, cid, s->path, &err);
	if (!d)
		TEST_FAIL("virtio_vsock_new: %s", err.msg);
	s->f.d = d;
	/* Receive buffers go in before DRIVER_OK, as Linux does. */
	CHECK_INT(drv_start(&s->f, d, 3, VS_QSIZE), ==, 0xf);
	for (uint16_t i = 0; i < VS_QSIZE; i++) {
		s->rx[i] = drv_alloc(&s->f, VS_RXBUF);
		drv_desc(&s->f, VSOCK_QUEUE_RX, i, s->rx[i], VS_RXBUF, VIRTQ_DESC_F_WRITE, 0);
		drv_publish(&s->f, VSOCK_QUEUE_RX, i);
	}
	for (uint16_t i = 0; i < VS_EVENTS; i++) {
		s->ev[i] = drv_alloc(&s->f, 4);
		drv_desc(&s->f, VSOCK_QUEUE_EVENT, i, s->ev[i], 4, VIRTQ_DESC_F_WRITE, 0);
		drv_publish(&s->f, VSOCK_QUEUE_EVENT, i);
	}
	drv_kick(&s->f, VSOCK_QUEUE_RX);
	drv_kick(&s->f, VSOCK_QUEUE_EVENT);
	s->txhdr = drv_alloc(&s->f, sizeof(struct vsock_hdr) * VS_TX_SLOTS);
	s->txdata = drv_alloc(&s->f, (uint64_t)VSOCK_MAX_PAYLOAD * VS_TX_SLOTS);
}

static inline void vs_close(struct vs *s)
{
	drv_close(&s->f);
}

/* Publishes one packet from the guest; returns its head descriptor. */
static inline uint16_t vs_post(struct vs *s, struct vsock_hdr h, const void *data)
{
	unsigned slot = s->tx_next++ % VS_TX_SLOTS;
	uint64_t hdr = s->txhdr + sizeof(h) * slot, buf = s->txdata + VSOCK_MAX_PAYLOAD * slot;
	memcpy(drv_host(&s->f, hdr), &h, sizeof(h));
	if (h.len && data)
		memcpy(drv_host(&s->f, buf), data, h.len);
	uint16_t d0 = (uint16_t)(2 * slot), d1 = (uint16_t)(d0 + 1);
	drv_desc(&s->f, VSOCK_QUEUE_TX, d0, hdr, sizeof(h), h.len ? VIRTQ_DESC_F_NEXT : 0, d1);
	drv_desc(&s->f, VSOCK_QUEUE_TX, d1, buf, h.len, 0, 0);
	drv_publish(&s->f, VSOCK_QUEUE_TX, d0);
	drv_kick(&s->f, VSOCK_QUEUE_TX);
	return d0;
}

/* Sends one packet from the guest and waits until the device took it. */
static inline void vs_send(struct test_ctx *t, struct vs *s, struct vsock_hdr h, const void *data)
{
	uint16_t d0 = vs_post(s, h, data);
	uint32_t id;
	if (!drv_wait_used(&s->f, VSOCK_QUEUE_TX, &id, NULL, VS_WAIT_MS))
		TEST_FAIL("the device did not take a packet");
	CHECK_INT(id, ==, d0);
}

static inline struct vsock_hdr vs_pkt(uint64_t cid, uint32_t src_port, uint32_t dst_port,
				      uint16_t op, uint32_t len)
{
	return (struct vsock_hdr){.src_cid = cid,
				  .dst_cid = VSOCK_HOST_CID,
				  .src_port = src_port,
				  .dst_port = dst_port,
				  .len = len,
				  .type = VSOCK_TYPE_STREAM,
				  .op = op,
				  .buf_alloc = 256 * 1024};
}

/* Receives one packet on the guest side (payload into `data`, if any) and
 * posts its buffer again. */
static inline bool vs_recv_ms(struct vs *s, struct vsock_hdr *h, void *data, int ms)
{
	uint32_t id, len;
	if (!drv_wait_used(&s->f, VSOCK_QUEUE_RX, &id, &len, ms))
		return false;
	uint8_t *b = drv_host(&s->f, s->rx[id]);
	memcpy(h, b, sizeof(*h));
	if (data && h->len <= VS_RXBUF - sizeof(*h))
		memcpy(data, b + sizeof(*h), h->len);
	drv_publish(&s->f, VSOCK_QUEUE_RX, (uint16_t)id);
	drv_kick(&s->f, VSOCK_QUEUE_RX);
	return len == sizeof(*h) + h->len;
}

/* vs_recv_ms() that must succeed, with a packet from the host to our CID. */
static inline void vs_recv(struct test_ctx *t, struct vs *s, struct vsock_hdr *h, void *data)
{
	if (!vs_recv_ms(s, h, data, VS_WAIT_MS))
		TEST_FAIL("no packet for the guest");
	CHECK_INT(h->src_cid, ==, VSOCK_HOST_CID);
	CHECK_INT(h->dst_cid, ==, s->cid);
	CHECK_INT(h->type, ==, VSOCK_TYPE_STREAM);
}

static inline int unix_listen(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A blocking connection with a 5 s receive timeout. */
static inline int unix_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static inline ssize_t read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;
	while (n + 1 < size) {
		ssize_t r = read(fd, buf + n, 1);
		if (r <= 0)
			return r;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
	return (ssize_t)n;
}

static inline ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t n = 0;
	while (n < len) {
		ssize_t r = read(fd, (char *)buf + n, len - n);
		if (r <= 0)
			return n ? (ssize_t)n : r;
		n += (size_t)r;
	}
	return (ssize_t)n;
}

/* Host side of a host-initiated connection: connects and asks for `port`. */
static inline int host_connect(struct test_ctx *t, struct vs *s, uint32_t port)
{
	int fd = unix_connect(s->path);
	CHECK(fd >= 0);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	CHECK_INT(write(fd, line, (size_t)n), ==, n);
	return fd;
}

#endif
