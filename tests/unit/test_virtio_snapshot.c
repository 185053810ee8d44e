/* Device snapshots: each device is driven by the fake driver, paused, saved,
 * and restored into a fresh device over a copy of guest memory (what a new
 * msb-vmm does with a snapshot), then driven on.  Hostile blobs are refused
 * and leave the device as new. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tests/unit/test.h"
#include "tests/unit/test_virtio_driver.h"
#include "virtio/blk.h"
#include "tests/unit/test_virtio_vsock.h"

#define WAIT_MS 5000

/* A second driver over a copy of f's guest memory and ring bookkeeping, with
 * no device yet: the guest as a restored VM finds it. */
static void drv_clone(struct drv *dst, const struct drv *src)
{
	drv_open(dst);
	memcpy(dst->ram, src->ram, DRV_RAM_SIZE);
	memcpy(dst->vq, src->vq, sizeof(dst->vq));
	dst->heap = src->heap;
}

static void save(struct test_ctx *t, struct virtio_dev *d, uint8_t **blob, size_t *len)
{
	struct msb_err err = {0};
	CHECK_INT(virtio_dev_pause(d, &err), ==, 0);
	if (virtio_dev_save(d, blob, len, &err) < 0)
		TEST_FAIL("virtio_dev_save: %s", err.msg);
	CHECK(*len > 0);
}

static void restore(struct test_ctx *t, struct drv *f, struct virtio_dev *d, const uint8_t *blob,
		    size_t len)
{
	struct msb_err err = {0};
	f->d = d;
	if (virtio_dev_restore(d, blob, len, &err) < 0)
		TEST_FAIL("virtio_dev_restore: %s", err.msg);
}

static uint64_t config64(struct drv *f, uint64_t off)
{
	uint64_t v = 0;
	virtio_mmio_access(f->d, VIRTIO_MMIO_CONFIG + off, &v, 8, false);
	return v;
}

/* ---- blk ------------------------------------------------------------------------ */

static void make_disk(struct test_ctx *t, char *path, size_t size, int sectors, uint8_t fill)
{
	snprintf(path, size, "/tmp/msb-test-snapblk-XXXXXX");
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	uint8_t sector[512];
	for (int s = 0; s < sectors; s++) {
		memset(sector, fill + s, sizeof(sector));
		CHECK_INT(pwrite(fd, sector, 512, s * 512), ==, 512);
	}
	close(fd);
}

struct blkio {
	uint64_t hdr, data, status;
};

static void blkio_init(struct drv *f, struct blkio *io)
{
	io->hdr = drv_alloc(f, 16);
	io->data = drv_alloc(f, 4096);
	io->status = drv_alloc(f, 1);
}

/* One request of `len` data bytes; returns the status byte. */
static int blk_rq(struct test_ctx *t, struct drv *f, const struct blkio *io, uint32_t type,
		  uint64_t sector, uint32_t len)
{
	uint8_t *h = drv_host(f, io->hdr);
	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	*(uint8_t *)drv_host(f, io->status) = 0xee;
	struct drv_buf b[3] = {{io->hdr, 16, false},
			       {io->data, len, type == VIRTIO_BLK_T_IN},
			       {io->status, 1, true}};
	uint16_t head = drv_chain(f, 0, b, 3);
	drv_publish(f, 0, head);
	drv_kick(f, 0);
	uint32_t id;
	if (!drv_used(f, 0, &id, NULL))
		TEST_FAIL("request not completed");
	CHECK_INT(id, ==, head);
	return *(uint8_t *)drv_host(f, io->status);
}

TEST(blk_restored_with_other_media_reports_the_new_capacity)
{
	char a[64], b[64];
	make_disk(t, a, sizeof(a), 8, 0x10);
	make_disk(t, b, sizeof(b), 32, 0x80);
	struct drv f;
	drv_open(&f);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_blk_new(f.mem, f.irqfd, a, false, &err);
	CHECK(d != NULL);
	CHECK_INT(drv_start(&f, d, 1, 16), ==, 0xf);
	struct blkio io;
	blkio_init(&f, &io);
	CHECK_INT(blk_rq(t, &f, &io, VIRTIO_BLK_T_IN, 3, 512), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(*(uint8_t *)drv_host(&f, io.data), ==, 0x13);
	uint32_t gen = drv_rd(&f, VIRTIO_MMIO_CONFIG_GENERATION);
	uint8_t *blob;
	size_t len;
	save(t, d, &blob, &len);

	struct drv g;
	drv_clone(&g, &f);
	drv_irqs(&g);
	struct virtio_dev *d2 = virtio_blk_new(g.mem, g.irqfd, b, false, &err);
	CHECK(d2 != NULL);
	restore(t, &g, d2, blob, len);
	CHECK_INT(drv_rd(&g, VIRTIO_MMIO_STATUS), ==, 0xf);
	CHECK_INT(config64(&g, 0), ==, 32);
	CHECK_INT(drv_rd(&g, VIRTIO_MMIO_CONFIG_GENERATION), !=, gen);
	CHECK(drv_rd(&g, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	CHECK(drv_irqs(&g) > 0);
	/* The rings go on where they were: the next read sees the new file. */
	CHECK_INT(blk_rq(t, &g, &io, VIRTIO_BLK_T_IN, 20, 512), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(*(uint8_t *)drv_host(&g, io.data), ==, 0x80 + 20);
	CHECK_INT(blk_rq(t, &g, &io, VIRTIO_BLK_T_OUT, 1, 512), ==, VIRTIO_BLK_S_OK);

	/* The old device goes on too after a resume (the same VM). */
	virtio_dev_resume(d);
	CHECK_INT(blk_rq(t, &f, &io, VIRTIO_BLK_T_IN, 7, 512), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(*(uint8_t *)drv_host(&f, io.data), ==, 0x17);
	free(blob);
	drv_close(&f);
	drv_close(&g);
	unlink(a);
	unlink(b);
}

TEST(blk_empty_slot_fails_io_until_a_restore_gives_it_a_file)
{
	char a[64];
	make_disk(t, a, sizeof(a), 8, 0x40);
	struct drv f;
	drv_open(&f);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_blk_new(f.mem, f.irqfd, NULL, false, &err);
	CHECK(d != NULL);
	CHECK_INT(drv_start(&f, d, 1, 16), ==, 0xf);
	CHECK_INT(config64(&f, 0), ==, 0);
	struct blkio io;
	blkio_init(&f, &io);
	CHECK_INT(blk_rq(t, &f, &io, VIRTIO_BLK_T_IN, 0, 512), ==, VIRTIO_BLK_S_IOERR);
	CHECK_INT(blk_rq(t, &f, &io, VIRTIO_BLK_T_OUT, 0, 512), ==, VIRTIO_BLK_S_IOERR);
	CHECK_INT(blk_rq(t, &f, &io, VIRTIO_BLK_T_IN, 0, 0), ==, VIRTIO_BLK_S_IOERR);
	uint8_t *blob;
	size_t len;
	save(t, d, &blob, &len);

	/* The slot is given a file. */
	struct drv g;
	drv_clone(&g, &f);
	struct virtio_dev *d2 = virtio_blk_new(g.mem, g.irqfd, a, false, &err);
	restore(t, &g, d2, blob, len);
	CHECK_INT(config64(&g, 0), ==, 8);
	CHECK(drv_irqs(&g) > 0);
	CHECK_INT(blk_rq(t, &g, &io, VIRTIO_BLK_T_IN, 2, 512), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(*(uint8_t *)drv_host(&g, io.data), ==, 0x42);
	uint8_t *blob2;
	size_t len2;
	save(t, d2, &blob2, &len2);

	/* And taken away again. */
	struct drv h;
	drv_clone(&h, &g);
	struct virtio_dev *d3 = virtio_blk_new(h.mem, h.irqfd, NULL, false, &err);
	restore(t, &h, d3, blob2, len2);
	CHECK_INT(config64(&h, 0), ==, 0);
	CHECK(drv_rd(&h, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	CHECK_INT(blk_rq(t, &h, &io, VIRTIO_BLK_T_IN, 2, 512), ==, VIRTIO_BLK_S_IOERR);
	free(blob);
	free(blob2);
	drv_close(&f);
	drv_close(&g);
	drv_close(&h);
	unlink(a);
}

TEST(blk_keeps_the_negotiated_read_only_flag)
{
	char a[64];
	make_disk(t, a, sizeof(a), 8, 0);
	struct drv f;
	drv_open(&f);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_blk_new(f.mem, f.irqfd, a, false, &err);
	CHECK_INT(drv_start(&f, d, 1, 16), ==, 0xf);
	uint8_t *blob;
	size_t len;
	save(t, d, &blob, &len);

	/* Writable in the snapshot, read-only now: the guest still believes it
	 * may write; writes fail. */
	struct drv g;
	drv_clone(&g, &f);
	struct virtio_dev *d2 = virtio_blk_new(g.mem, g.irqfd, a, true, &err);
	restore(t, &g, d2, blob, len);
	drv_wr(&g, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	CHECK(!(drv_rd(&g, VIRTIO_MMIO_DEVICE_FEATURES) & (1u << VIRTIO_BLK_F_RO)));
	struct blkio io;
	blkio_init(&g, &io);
	CHECK_INT(blk_rq(t, &g, &io, VIRTIO_BLK_T_OUT, 1, 512), ==, VIRTIO_BLK_S_IOERR);
	CHECK_INT(blk_rq(t, &g, &io, VIRTIO_BLK_T_IN, 1, 512), ==, VIRTIO_BLK_S_OK);
	/* After a guest reset the device offers what its media allows. */
	drv_wr(&g, VIRTIO_MMIO_STATUS, 0);
	drv_wr(&g, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	CHECK(drv_rd(&g, VIRTIO_MMIO_DEVICE_FEATURES) & (1u << VIRTIO_BLK_F_RO));
	free(blob);
	drv_close(&f);
	drv_close(&g);
	unlink(a);
}

/* ---- rng and console ------------------------------------------------------------- */

TEST(rng_goes_on_after_a_restore)
{
	struct drv f;
	drv_open(&f);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_rng_new(f.mem, f.irqfd, &err);
	CHECK_INT(drv_start(&f, d, 1, 8), ==, 0xf);
	uint64_t buf = drv_alloc(&f, 64);
	/* Wrap the ring once so that the indices matter. */
	for (int i = 0; i < 11; i++) {
		struct drv_buf b = {buf, 64, true};
		drv_publish(&f, 0, drv_chain(&f, 0, &b, 1));
		drv_kick(&f, 0);
		uint32_t used;
		CHECK(drv_used(&f, 0, NULL, &used));
		CHECK_INT(used, ==, 64);
	}
	uint8_t *blob;
	size_t len;
	save(t, d, &blob, &len);
	struct drv g;
	drv_clone(&g, &f);
	restore(t, &g, virtio_rng_new(g.mem, g.irqfd, &err), blob, len);
	memset(drv_host(&g, buf), 0, 64);
	struct drv_buf b = {buf, 64, true};
	drv_publish(&g, 0, drv_chain(&g, 0, &b, 1));
	drv_kick(&g, 0);
	uint32_t used;
	CHECK(drv_used(&g, 0, NULL, &used));
	CHECK_INT(used, ==, 64);
	static const uint8_t zero[64];
	CHECK(memcmp(drv_host(&g, buf), zero, 64) != 0);
	/* Nothing changed that the guest would have to re-read. */
	CHECK(!(drv_rd(&g, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG));
	free(blob);
	drv_close(&f);
	drv_close(&g);
}

static void con_write(struct test_ctx *t, struct drv *f, uint64_t buf, const char *s)
{
	size_t n = strlen(s);
	memcpy(drv_host(f, buf), s, n);
	struct drv_buf b = {buf, (uint32_t)n, false};
	drv_publish(f, 1, drv_chain(f, 1, &b, 1));
	drv_kick(f, 1);
	CHECK(drv_used(f, 1, NULL, NULL));
}

TEST(console_output_continues_to_the_new_fd)
{
	int in[2], out1[2], out2[2];
	CHECK_INT(pipe2(in, O_CLOEXEC), ==, 0);
	CHECK_INT(pipe2(out1, O_CLOEXEC | O_NONBLOCK), ==, 0);
	CHECK_INT(pipe2(out2, O_CLOEXEC | O_NONBLOCK), ==, 0);
	struct drv f;
	drv_open(&f);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_console_new(f.mem, f.irqfd, in[0], out1[1], &err);
	CHECK_INT(drv_start(&f, d, 2, 16), ==, 0xf);
	uint64_t txbuf = drv_alloc(&f, 256), rxbuf = drv_alloc(&f, 256);
	con_write(t, &f, txbuf, "before ");
	char got[64] = {0};
	CHECK_INT(read(out1[0], got, sizeof(got)), ==, 7);
	CHECK_STR(got, "before ");

	/* Host input typed while the device is paused arrives after resume. */
	struct msb_err perr = {0};
	CHECK_INT(virtio_dev_pause(d, &perr), ==, 0);
	struct drv_buf rb = {rxbuf, 256, true};
	drv_publish(&f, 0, drv_chain(&f, 0, &rb, 1));
	drv_kick(&f, 0);
	CHECK_INT(write(in[1], "typed", 5), ==, 5);
	uint32_t used = 0;
	CHECK(!drv_wait_used(&f, 0, NULL, &used, 100));
	virtio_dev_resume(d);
	CHECK(drv_wait_used(&f, 0, NULL, &used, WAIT_MS));
	CHECK_INT(used, ==, 5);
	CHECK(memcmp(drv_host(&f, rxbuf), "typed", 5) == 0);

	uint8_t *blob;
	size_t len;
	save(t, d, &blob, &len);
	struct drv g;
	drv_clone(&g, &f);
	restore(t, &g, virtio_console_new(g.mem, g.irqfd, -1, out2[1], &err), blob, len);
	con_write(t, &g, txbuf, "after\n");
	memset(got, 0, sizeof(got));
	CHECK_INT(read(out2[0], got, sizeof(got)), ==, 6);
	CHECK_STR(got, "after\n");
	CHECK(read(out1[0], got, sizeof(got)) < 0); /* nothing more on the old fd */
	free(blob);
	drv_close(&f);
	drv_close(&g);
	for (int i = 0; i < 2; i++) {
		close(in[i]);
		close(out1[i]);
		close(out2[i]);
	}
}

/* ---- vsock ----------------------------------------------------------------------- */

/* A host connection to guest port `port`, accepted by the fake guest. */
static int vs_connect(struct test_ctx *t, struct vs *s, uint32_t port, uint32_t *local)
{
	int fd = host_connect(t, s, port);
	struct vsock_hdr h;
	vs_recv(t, s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_REQUEST);
	CHECK_INT(h.dst_port, ==, port);
	*local = h.src_port;
	vs_send(t, s, vs_pkt(s->cid, port, *local, VSOCK_OP_RESPONSE, 0), NULL);
	char ok[32];
	CHECK(read_line(fd, ok, sizeof(ok)) > 0);
	CHECK(strncmp(ok, "OK ", 3) == 0);
	return fd;
}

TEST(vsock_pause_loses_nothing_and_keeps_connections)
{
	struct vs s;
	vs_open_cid(t, &s, 3);
	uint32_t local;
	int fd = vs_connect(t, &s, 1024, &local);
	struct msb_err err = {0};
	CHECK_INT(virtio_dev_pause(s.f.d, &err), ==, 0);
	/* Both directions while paused: nothing moves, nothing is lost. */
	CHECK_INT(write(fd, "host->guest", 11), ==, 11);
	vs_post(&s, vs_pkt(3, 1024, local, VSOCK_OP_RW, 11), "guest->host");
	struct vsock_hdr h;
	CHECK(!vs_recv_ms(&s, &h, NULL, 100));
	virtio_dev_resume(s.f.d);
	char buf[64] = {0};
	CHECK(vs_recv_ms(&s, &h, buf, WAIT_MS));
	CHECK_INT(h.op, ==, VSOCK_OP_RW);
	CHECK_INT(h.len, ==, 11);
	CHECK(memcmp(buf, "host->guest", 11) == 0);
	memset(buf, 0, sizeof(buf));
	size_t got = 0;
	while (got < 11) {
		ssize_t r = read(fd, buf + got, 11 - got);
		CHECK(r > 0);
		got += (size_t)r;
	}
	CHECK_STR(buf, "guest->host");
	CHECK_INT(vsock_conn_count(s.f.d), ==, 1);
	close(fd);
	drv_close(&s.f);
}

/* A copy of the saved device in a new one (new socket path, CID 7 asked for). */
static struct virtio_dev *vs_restore_copy(struct test_ctx *t, struct vs *s, struct vs *n,
					  const uint8_t *blob, size_t len)
{
	*n = *s;
	drv_clone(&n->f, &s->f);
	vs_make_path(n);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_vsock_new(n->f.mem, n->f.irqfd, 7, n->path, &err);
	CHECK(d != NULL);
	drv_irqs(&n->f);
	restore(t, &n->f, d, blob, len);
	return d;
}

TEST(vsock_restore_keeps_the_guest_connections_and_cid)
{
	struct vs s;
	vs_open_cid(t, &s, 3);
	uint32_t local;
	int fd = vs_connect(t, &s, 1024, &local);
	uint8_t *blob;
	size_t len;
	save(t, s.f.d, &blob, &len);
	struct vs n;
	struct virtio_dev *d = vs_restore_copy(t, &s, &n, blob, len);
	CHECK_INT(drv_rd(&n.f, VIRTIO_MMIO_STATUS), ==, 0xf);
	/* No transport reset: the guest keeps its CID and its connection. */
	CHECK_INT(config64(&n.f, 0), ==, 3);
	CHECK(!drv_used(&n.f, VSOCK_QUEUE_EVENT, NULL, NULL));
	CHECK_INT(vsock_conn_count(d), ==, 1);

	/* Without its host socket, what the guest sends on it is dropped (no
	 * RST, so its writer goes on: more than one buffer's worth here), and
	 * the credit comes back. */
	struct vsock_hdr h;
	for (int i = 0; i < 80; i++)
		vs_send(t, &n, vs_pkt(3, 1024, local, VSOCK_OP_RW, 4000), NULL);
	vs_send(t, &n, vs_pkt(3, 1024, local, VSOCK_OP_CREDIT_REQUEST, 0), NULL);
	bool credit = false;
	while (!credit && vs_recv_ms(&n, &h, NULL, WAIT_MS)) {
		CHECK(h.op != VSOCK_OP_RST);
		credit = h.op == VSOCK_OP_CREDIT_UPDATE && h.fwd_cnt == 320000;
	}
	CHECK(credit);
	/* A host client gets a new guest connection: the old one is no one's. */
	uint32_t local2;
	int fd2 = vs_connect(t, &n, 1024, &local2);
	CHECK(local2 != local);
	CHECK_INT(vsock_conn_count(d), ==, 2);
	/* The guest closing the old one gets its RST. */
	struct vsock_hdr shut = vs_pkt(3, 1024, local, VSOCK_OP_SHUTDOWN, 0);
	shut.flags = VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV;
	vs_send(t, &n, shut, NULL);
	CHECK(vs_recv_ms(&n, &h, NULL, WAIT_MS));
	CHECK_INT(h.op, ==, VSOCK_OP_RST);
	CHECK_INT(h.dst_port, ==, 1024);
	CHECK_INT(h.src_port, ==, local);

	/* The saving process's connection is still open until it resumes. */
	virtio_dev_resume(s.f.d);
	char buf[16] = {0};
	CHECK_INT(write(fd, "still", 5), ==, 5);
	CHECK(vs_recv_ms(&s, &h, buf, WAIT_MS));
	CHECK_INT(h.op, ==, VSOCK_OP_RW);
	close(fd);
	close(fd2);
	free(blob);
	drv_close(&s.f);
	drv_close(&n.f);
}

TEST(vsock_a_parked_connection_goes_to_the_first_client_after_a_restore)
{
	struct vs s;
	vs_open_cid(t, &s, 3);
	int fd = unix_connect(s.path);
	CHECK(fd >= 0);
	CHECK_INT(write(fd, "PARK 1024\n", 10), ==, 10);
	struct vsock_hdr h;
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_REQUEST);
	uint32_t local = h.src_port;
	vs_send(t, &s, vs_pkt(3, 1024, local, VSOCK_OP_RESPONSE, 0), NULL);
	char line[32];
	CHECK(read_line(fd, line, sizeof(line)) > 0);
	CHECK(strncmp(line, "OK ", 3) == 0);
	/* The guest's answer, read by the host before the snapshot. */
	vs_send(t, &s, vs_pkt(3, 1024, local, VSOCK_OP_RW, 5), "hello");
	char buf[16] = {0};
	CHECK_INT(read_full(fd, buf, 5), ==, 5);
	uint8_t *blob;
	size_t len;
	save(t, s.f.d, &blob, &len);
	struct vs n;
	struct virtio_dev *d = vs_restore_copy(t, &s, &n, blob, len);
	/* Nothing for the guest to do until a host client sends something. */
	CHECK(!vs_recv_ms(&n, &h, NULL, 200));
	CHECK_INT(drv_irqs(&n.f), ==, 0);

	/* CONNECT 1024 takes it: no REQUEST, its port, the stream goes on. */
	int fd2 = host_connect(t, &n, 1024);
	CHECK(read_line(fd2, line, sizeof(line)) > 0);
	char want[32];
	snprintf(want, sizeof(want), "OK %u\n", local);
	CHECK_STR(line, want);
	CHECK_INT(write(fd2, "ping", 4), ==, 4);
	memset(buf, 0, sizeof(buf));
	CHECK(vs_recv_ms(&n, &h, buf, WAIT_MS));
	CHECK_INT(h.op, ==, VSOCK_OP_RW);
	CHECK_INT(h.src_port, ==, local);
	CHECK(memcmp(buf, "ping", 4) == 0);
	vs_send(t, &n, vs_pkt(3, 1024, local, VSOCK_OP_RW, 4), "pong");
	memset(buf, 0, sizeof(buf));
	CHECK_INT(read_full(fd2, buf, 4), ==, 4);
	CHECK_STR(buf, "pong");
	CHECK_INT(vsock_conn_count(d), ==, 1);
	/* Only once: the next client gets a new guest connection. */
	uint32_t local2;
	int fd3 = vs_connect(t, &n, 1024, &local2);
	CHECK(local2 != local);
	close(fd);
	close(fd2);
	close(fd3);
	free(blob);
	drv_close(&s.f);
	drv_close(&n.f);
}

/* ---- hostile blobs and misuse ------------------------------------------------------ */

/* A fresh rng device must refuse `blob` with kind corrupt and stay new. */
static void refused(struct test_ctx *t, struct drv *g, const uint8_t *blob, size_t len,
		    const char *what)
{
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_rng_new(g->mem, g->irqfd, &err);
	if (virtio_dev_restore(d, blob, len, &err) == 0)
		TEST_FAIL("a blob with %s was accepted", what);
	if (err.kind != MSB_EK_CORRUPT)
		TEST_FAIL("%s: kind %d, %s", what, err.kind, err.msg);
	g->d = d;
	CHECK_INT(drv_rd(g, VIRTIO_MMIO_STATUS), ==, 0);
	CHECK_INT(drv_start(g, d, 1, 8), ==, 0xf);
	virtio_dev_free(d);
	g->d = NULL;
}

/* Offsets in a version-1 rng blob (one queue, empty config space). */
#define OFF_STATUS 40
#define OFF_ISR	   44
#define OFF_QNUM   55
#define OFF_QDESC  58
#define OFF_QUSED  74
#define OFF_LASTAV 84
#define OFF_DEVLEN 88

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

TEST(hostile_blobs_are_refused)
{
	struct drv f;
	drv_open(&f);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_rng_new(f.mem, f.irqfd, &err);
	CHECK_INT(drv_start(&f, d, 1, 8), ==, 0xf);
	uint8_t *blob;
	size_t len;
	save(t, d, &blob, &len);
	CHECK_INT(len, ==, OFF_DEVLEN + 4);
	uint16_t num;
	memcpy(&num, blob + OFF_QNUM, 2);
	CHECK_INT(num, ==, 8);
	struct drv g;
	drv_clone(&g, &f);

	for (size_t n = 0; n < len; n++)
		refused(t, &g, blob, n, "a truncated body");
	uint8_t *b = malloc(len + 1);
	memcpy(b, blob, len);
	b[len] = 0;
	refused(t, &g, b, len + 1, "trailing bytes");
#define MUTATE(what, stmt)                    \
	do {                                  \
		memcpy(b, blob, len);         \
		stmt;                         \
		refused(t, &g, b, len, what); \
	} while (0)
	MUTATE("a bad magic", b[0] ^= 1);
	MUTATE("another version", b[4] = 2);
	MUTATE("another device id", b[8] = VIRTIO_ID_BLOCK);
	MUTATE("unknown status bits", b[OFF_STATUS] |= 0x20);
	MUTATE("DRIVER_OK without FEATURES_OK",
	       b[OFF_STATUS] &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK);
	MUTATE("unknown isr bits", b[OFF_ISR] = 4);
	MUTATE("a queue above the maximum", b[OFF_QNUM] = 0; b[OFF_QNUM + 1] = 1);
	MUTATE("a queue size not a power of two", b[OFF_QNUM] = 6);
	MUTATE("a misaligned ring", b[OFF_QDESC] |= 8);
	MUTATE("a ring outside memory", put32(b + OFF_QUSED, DRV_RAM_SIZE));
	MUTATE("unknown queue flags", b[OFF_QNUM + 2] |= 0x10);
	MUTATE("indices apart by more than the ring", b[OFF_LASTAV] = 9);
	MUTATE("a device section", put32(b + OFF_DEVLEN, 1));
	MUTATE("features never offered", b[20] |= 0x80);
	/* A snapshot of an msb-vmm whose queue was larger says so. */
	memcpy(b, blob, len);
	b[OFF_QNUM] = 0;
	b[OFF_QNUM + 1] = 1;
	struct virtio_dev *big = virtio_rng_new(g.mem, g.irqfd, &err);
	CHECK_INT(virtio_dev_restore(big, b, len, &err), ==, -1);
	CHECK(strstr(err.msg, "older msb-vmm; make it again") != NULL);
	virtio_dev_free(big);
	free(b);

	/* Misuse: save while running, restore into a device in use. */
	virtio_dev_resume(d);
	uint8_t *x;
	size_t xl;
	CHECK_INT(virtio_dev_save(d, &x, &xl, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	CHECK_INT(virtio_dev_restore(d, blob, len, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	/* A blob of another kind of device. */
	struct virtio_dev *c = virtio_console_new(g.mem, g.irqfd, -1, -1, &err);
	CHECK_INT(virtio_dev_restore(c, blob, len, &err), ==, -1);
	CHECK(strstr(err.msg, "another kind of device") != NULL);
	virtio_dev_free(c);
	free(blob);
	drv_close(&f);
	drv_close(&g);
}

/* Restores `b` into a fresh empty blk slot; returns the result (0 or -1). */
static int blk_try(struct drv *g, const uint8_t *b, size_t len, struct msb_err *err)
{
	struct virtio_dev *d = virtio_blk_new(g->mem, g->irqfd, NULL, false, err);
	int rc = virtio_dev_restore(d, b, len, err);
	if (rc < 0 && drv_irqs(g) != 0)
		rc = -2; /* a refused blob must not have reached the guest */
	virtio_dev_free(d);
	return rc;
}

/* The device sections: blk (capacity u64, read-only u8, serial length u8,
 * serial) and vsock (CID u64), the last bytes of their blobs. */
TEST(device_sections_are_checked)
{
	struct drv f;
	drv_open(&f);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_blk_new(f.mem, f.irqfd, NULL, false, &err);
	CHECK_INT(drv_start(&f, d, 1, 16), ==, 0xf);
	uint8_t *blob;
	size_t len;
	save(t, d, &blob, &len);
	CHECK_INT(blob[len - 1], ==, 0); /* no serial for an empty slot */
	struct drv g;
	drv_clone(&g, &f);
	drv_irqs(&g);
	uint8_t *b = malloc(len + 2);
	CHECK_INT(blk_try(&g, blob, len, &err), ==, 0);
	drv_irqs(&g);
	memcpy(b, blob, len);
	b[len - 2] = 2;
	CHECK_INT(blk_try(&g, b, len, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	memcpy(b, blob, len);
	b[len - 1] = 1; /* a serial byte that is not there */
	CHECK_INT(blk_try(&g, b, len, &err), ==, -1);
	/* A serial of one byte: "x" is fine (other media: a config change), NUL is not. */
	uint32_t dlen;
	memcpy(b, blob, len);
	memcpy(&dlen, b + len - 14, 4);
	CHECK_INT(dlen, ==, 10);
	dlen = 11;
	memcpy(b + len - 14, &dlen, 4);
	b[len - 1] = 1;
	b[len] = 'x';
	CHECK_INT(blk_try(&g, b, len + 1, &err), ==, 0);
	CHECK(drv_irqs(&g) > 0);
	b[len] = 0;
	CHECK_INT(blk_try(&g, b, len + 1, &err), ==, -1);
	free(b);
	free(blob);
	drv_close(&f);

	/* vsock: u64 cid, u32 next port, u32 connections (0), u32 control
	 * packets (0) at the end of its blob. */
	struct vs s;
	vs_open_cid(t, &s, 3);
	save(t, s.f.d, &blob, &len);
	uint64_t cid;
	memcpy(&cid, blob + len - 20, 8);
	CHECK_INT(cid, ==, 3);
	struct {
		size_t off;
		uint64_t v;
		unsigned width;
	} bad[] = {
		{20, 0, 8},   {20, 2, 8}, {20, 1ull << 32, 8}, /* reserved or too big CIDs */
		{12, 5, 4},				       /* a local port below 2^30 */
		{8, 1, 4},				       /* a connection that is not there */
		{8, 1025, 4},				       /* more than the device takes */
		{4, 513, 4},				       /* more control packets than fit */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *c = malloc(len);
		memcpy(c, blob, len);
		memcpy(c + len - bad[i].off, &bad[i].v, bad[i].width);
		char path[96];
		snprintf(path, sizeof(path), "%s-r", s.path);
		struct virtio_dev *v = virtio_vsock_new(g.mem, g.irqfd, 4, path, &err);
		CHECK_INT(virtio_dev_restore(v, c, len, &err), ==, -1);
		CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
		CHECK_INT(vsock_conn_count(v), ==, 0);
		virtio_dev_free(v);
		free(c);
	}
	free(blob);
	drv_close(&s.f);
	drv_close(&g);
}

TEST_MAIN(T(blk_restored_with_other_media_reports_the_new_capacity),
	  T(blk_empty_slot_fails_io_until_a_restore_gives_it_a_file),
	  T(blk_keeps_the_negotiated_read_only_flag), T(rng_goes_on_after_a_restore),
	  T(console_output_continues_to_the_new_fd),
	  T(vsock_pause_loses_nothing_and_keeps_connections),
	  T(vsock_restore_keeps_the_guest_connections_and_cid),
	  T(vsock_a_parked_connection_goes_to_the_first_client_after_a_restore),
	  T(hostile_blobs_are_refused), T(device_sections_are_checked))
