/* virtio-vsock packets from the guest, through the real device (without its
 * thread: vsock_poll() runs it here) and real host sockets: a listener on
 * host port 1024 accepts what the guest opens and answers with data.  Each
 * record of the input is a packet: u16 descriptor length, 44-byte header,
 * payload.  The handshake line parser gets the raw input too. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "virtio/device.h"
#include "virtio/virtio_spec.h"
#include "virtio/vsock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM	 (1u << 20)
#define QSIZE	 32
#define DESC(q)	 (0x1000u * (1 + 3 * (q)))
#define AVAIL(q) (DESC(q) + 0x1000u - 0x200u)
#define USED(q)	 (DESC(q) + 0x2000u)
#define RXBUF	 0x20000u
#define TXBUF	 0x80000u

static uint8_t ram[RAM] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct virtio_dev *dev;
static int listener = -1;

static void wr(uint64_t off, uint32_t v)
{
	virtio_mmio_access(dev, off, &v, 4, true);
}

static void setup(void)
{
	struct msb_err err;
	char path[64];
	gm_init_flat(&mem, ram, sizeof(ram));
	snprintf(path, sizeof(path), "/tmp/msb-fuzz-vsock-%d", (int)getpid());
	dev = virtio_vsock_new(&mem, -1, 3, path, &err);
	if (!dev)
		__builtin_trap();
	vsock_set_manual(dev);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_1024", path);
	unlink(a.sun_path);
	listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (bind(listener, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(listener, 64) < 0)
		__builtin_trap();
}

static void put16(uint64_t gpa, uint16_t v)
{
	memcpy(ram + gpa, &v, 2);
}

static void desc(unsigned q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
	memcpy(ram + DESC(q) + 16 * i, &d, sizeof(d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dev)
		setup();
	uint32_t port;
	(void)vsock_parse_connect((const char *)data, size, &port);
	bool park;
	int hl = vsock_parse_handshake((const char *)data, size, &port, &park);
	if (hl > (int)size || (hl > 0 && data[hl - 1] != '\n'))
		__builtin_trap();

	memset(ram, 0, 0x80000 + 0x10000);
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, 3);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1);
	wr(VIRTIO_MMIO_STATUS, 0xb);
	for (unsigned q = 0; q < 3; q++) {
		wr(VIRTIO_MMIO_QUEUE_SEL, q);
		wr(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
		wr(VIRTIO_MMIO_QUEUE_DESC_LOW, DESC(q));
		wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL(q));
		wr(VIRTIO_MMIO_QUEUE_USED_LOW, USED(q));
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	/* Receive buffers: 16 of 4 KiB + header. */
	for (unsigned i = 0; i < 16; i++) {
		desc(VSOCK_QUEUE_RX, i, RXBUF + 0x2000 * i, 44 + 4096, VIRTQ_DESC_F_WRITE, 0);
		put16(AVAIL(VSOCK_QUEUE_RX) + 4 + 2 * i, (uint16_t)i);
	}
	put16(AVAIL(VSOCK_QUEUE_RX) + 2, 16);
	wr(VIRTIO_MMIO_STATUS, 0xf);

	/* Transmit: one packet per record, two descriptors each. */
	size_t off = 0;
	unsigned n = 0;
	uint64_t buf = TXBUF;
	while (off + 2 + 44 <= size && n < QSIZE / 2) {
		uint16_t dlen;
		memcpy(&dlen, data + off, 2);
		off += 2;
		size_t avail = size - off;
		size_t take = dlen < avail ? dlen : avail;
		if (take < 44)
			take = 44;
		memcpy(ram + buf, data + off, take);
		off += take;
		/* Header and payload in separate descriptors, as Linux sends them. */
		desc(VSOCK_QUEUE_TX, 2 * n, buf, 44, take > 44 ? VIRTQ_DESC_F_NEXT : 0,
		     (uint16_t)(2 * n + 1));
		desc(VSOCK_QUEUE_TX, 2 * n + 1, buf + 44, (uint32_t)(take - 44), 0, 0);
		put16(AVAIL(VSOCK_QUEUE_TX) + 4 + 2 * n, (uint16_t)(2 * n));
		buf += (take + 15) & ~(size_t)15;
		n++;
		put16(AVAIL(VSOCK_QUEUE_TX) + 2, (uint16_t)n);
		vsock_poll(dev, 0);
		/* The host service accepts and answers. */
		int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (write(fd, "hello guest", 11) < 0)
				__builtin_trap();
			vsock_poll(dev, 0);
			close(fd);
		}
	}
	vsock_poll(dev, 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	if (vsock_conn_count(dev) != 0)
		__builtin_trap();
	return 0;
}
