/* virtio-vsock: a fake guest driver on one side, real Unix sockets on the
 * host side, the device's own I/O thread in between. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tests/unit/test_virtio_vsock.h"

#define GUEST 3u

static void vs_open(struct test_ctx *t, struct vs *s)
{
	vs_open_cid(t, s, GUEST);
}

static struct vsock_hdr pkt(uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t len)
{
	return vs_pkt(GUEST, src_port, dst_port, op, len);
}

TEST(the_config_space_holds_the_cid)
{
	struct vs s;
	vs_open(t, &s);
	uint64_t cid = 0;
	virtio_mmio_access(s.f.d, VIRTIO_MMIO_CONFIG, &cid, 8, false);
	CHECK_INT(cid, ==, GUEST);
	CHECK_INT(drv_rd(&s.f, VIRTIO_MMIO_DEVICE_ID), ==, VIRTIO_ID_VSOCK);
	struct msb_err err = {0};
	CHECK(virtio_vsock_new(s.f.mem, -1, 2, "/tmp/x", &err) == NULL); /* CID 2 is the host */
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	CHECK(virtio_vsock_new(s.f.mem, -1, 3, longpath, &err) == NULL);
	CHECK(strstr(err.msg, "too long") != NULL);
	vs_close(&s);
}

TEST(guest_connects_to_a_host_listener)
{
	struct vs s;
	vs_open(t, &s);
	char lpath[100];
	snprintf(lpath, sizeof(lpath), "%s_1234", s.path);
	int lfd = unix_listen(lpath);
	CHECK(lfd >= 0);

	struct vsock_hdr h;
	vs_send(t, &s, pkt(5000, 1234, VSOCK_OP_REQUEST, 0), NULL);
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_RESPONSE);
	CHECK_INT(h.src_port, ==, 1234);
	CHECK_INT(h.dst_port, ==, 5000);
	CHECK_INT(h.buf_alloc, ==, VSOCK_BUF_ALLOC);
	int hfd = accept(lfd, NULL, NULL);
	CHECK(hfd >= 0);

	vs_send(t, &s, pkt(5000, 1234, VSOCK_OP_RW, 5), "hello");
	char buf[64] = {0};
	CHECK_INT(read_full(hfd, buf, 5), ==, 5);
	CHECK_STR(buf, "hello");

	CHECK_INT(write(hfd, "world!", 6), ==, 6);
	vs_recv(t, &s, &h, buf);
	CHECK_INT(h.op, ==, VSOCK_OP_RW);
	CHECK_INT(h.len, ==, 6);
	CHECK(memcmp(buf, "world!", 6) == 0);
	CHECK_INT(h.fwd_cnt, ==, 5); /* the 5 bytes written to the host */

	/* The guest closes: SHUTDOWN both ways, the device answers RST. */
	struct vsock_hdr sd = pkt(5000, 1234, VSOCK_OP_SHUTDOWN, 0);
	sd.flags = VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND;
	vs_send(t, &s, sd, NULL);
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_RST);
	CHECK_INT(read(hfd, buf, sizeof(buf)), ==, 0);
	CHECK_INT(vsock_conn_count(s.f.d), ==, 0);
	close(hfd);
	close(lfd);
	unlink(lpath);
	vs_close(&s);
}

TEST(a_guest_half_close_reaches_the_host)
{
	struct vs s;
	vs_open(t, &s);
	char lpath[100];
	snprintf(lpath, sizeof(lpath), "%s_2222", s.path);
	int lfd = unix_listen(lpath);
	CHECK(lfd >= 0);
	struct vsock_hdr h;
	vs_send(t, &s, pkt(7000, 2222, VSOCK_OP_REQUEST, 0), NULL);
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_RESPONSE);
	int hfd = accept(lfd, NULL, NULL);
	CHECK(hfd >= 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(hfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* The guest sends its request and shuts its sending side. */
	vs_send(t, &s, pkt(7000, 2222, VSOCK_OP_RW, 7), "request");
	struct vsock_hdr sd = pkt(7000, 2222, VSOCK_OP_SHUTDOWN, 0);
	sd.flags = VSOCK_SHUTDOWN_SEND;
	vs_send(t, &s, sd, NULL);
	char buf[16] = {0};
	CHECK_INT(read_full(hfd, buf, 7), ==, 7);
	CHECK_INT(read(hfd, buf, sizeof(buf)), ==, 0); /* EOF after the request */
	/* The host can still answer. */
	CHECK_INT(write(hfd, "reply", 5), ==, 5);
	vs_recv(t, &s, &h, buf);
	CHECK_INT(h.op, ==, VSOCK_OP_RW);
	CHECK(memcmp(buf, "reply", 5) == 0);
	close(hfd);
	/* The host closed: the guest is told both directions are shut. */
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_SHUTDOWN);
	CHECK_INT(h.flags, ==, VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV);
	vs_send(t, &s, pkt(7000, 2222, VSOCK_OP_RST, 0), NULL);
	CHECK_INT(vsock_conn_count(s.f.d), ==, 0);
	close(lfd);
	unlink(lpath);
	vs_close(&s);
}

TEST(unknown_ports_get_rst)
{
	struct vs s;
	vs_open(t, &s);
	struct vsock_hdr h;
	/* Nothing listens on host port 1023: the "ready" connection is refused. */
	vs_send(t, &s, pkt(6000, 1023, VSOCK_OP_REQUEST, 0), NULL);
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_RST);
	CHECK_INT(h.src_port, ==, 1023);
	CHECK_INT(h.dst_port, ==, 6000);
	/* Data for a connection that does not exist. */
	vs_send(t, &s, pkt(6001, 77, VSOCK_OP_RW, 3), "abc");
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_RST);
	/* An RST for an unknown connection is not answered. */
	vs_send(t, &s, pkt(6002, 78, VSOCK_OP_RST, 0), NULL);
	CHECK(!vs_recv_ms(&s, &h, NULL, 200));
	vs_close(&s);
}

TEST(host_connects_to_a_guest_port)
{
	struct vs s;
	vs_open(t, &s);
	int fd = host_connect(t, &s, 1024);
	/* Data sent before the guest accepted waits in the socket. */
	CHECK_INT(write(fd, "early", 5), ==, 5);
	struct vsock_hdr h;
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_REQUEST);
	CHECK_INT(h.dst_port, ==, 1024);
	uint32_t local = h.src_port;
	struct vsock_hdr r = pkt(1024, local, VSOCK_OP_RESPONSE, 0);
	vs_send(t, &s, r, NULL);
	char line[64];
	CHECK(read_line(fd, line, sizeof(line)) > 0);
	char expect[64];
	snprintf(expect, sizeof(expect), "OK %u\n", local);
	CHECK_STR(line, expect);

	char buf[64] = {0};
	vs_recv(t, &s, &h, buf);
	CHECK_INT(h.op, ==, VSOCK_OP_RW);
	CHECK_INT(h.len, ==, 5);
	CHECK(memcmp(buf, "early", 5) == 0);
	vs_send(t, &s, pkt(1024, local, VSOCK_OP_RW, 4), "pong");
	CHECK_INT(read_full(fd, buf, 4), ==, 4);
	CHECK(memcmp(buf, "pong", 4) == 0);

	/* The host half-closes: the guest sees SHUTDOWN(SEND) and can still send. */
	shutdown(fd, SHUT_WR);
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_SHUTDOWN);
	CHECK_INT(h.flags & VSOCK_SHUTDOWN_SEND, !=, 0);
	vs_send(t, &s, pkt(1024, local, VSOCK_OP_RW, 3), "bye");
	CHECK_INT(read_full(fd, buf, 3), ==, 3);
	/* The guest resets: the host socket is closed. */
	vs_send(t, &s, pkt(1024, local, VSOCK_OP_RST, 0), NULL);
	CHECK_INT(read(fd, buf, sizeof(buf)), ==, 0);
	close(fd);
	vs_close(&s);
}

TEST(a_guest_that_refuses_closes_the_host_socket)
{
	struct vs s;
	vs_open(t, &s);
	int fd = host_connect(t, &s, 4444);
	struct vsock_hdr h;
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_REQUEST);
	vs_send(t, &s, pkt(4444, h.src_port, VSOCK_OP_RST, 0), NULL);
	char buf[16];
	CHECK_INT(read(fd, buf, sizeof(buf)), ==, 0);
	close(fd);
	vs_close(&s);
}

TEST(bad_handshakes_are_closed)
{
	struct vs s;
	vs_open(t, &s);
	static const char *bad[] = {"HELLO 1\n", "CONNECT\n", "CONNECT 99999999999\n",
				    "CONNECT 12a\n", "CONNECT 1 2\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = unix_connect(s.path);
		CHECK(fd >= 0);
		CHECK_INT(write(fd, bad[i], strlen(bad[i])), ==, (ssize_t)strlen(bad[i]));
		char buf[16];
		/* EOF, or ECONNRESET when the device closed with bytes unread. */
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r != 0 && !(r < 0 && errno == ECONNRESET))
			TEST_FAIL("handshake \"%s\" was not refused", bad[i]);
		close(fd);
	}
	struct vsock_hdr h;
	CHECK(!vs_recv_ms(&s, &h, NULL, 100)); /* the guest heard of none of them */
	vs_close(&s);
}

TEST(the_connect_line_parser)
{
	uint32_t port = 0;
	CHECK_INT(vsock_parse_connect("CONNECT 1024\nxyz", 16, &port), ==, 13);
	CHECK_INT(port, ==, 1024);
	CHECK_INT(vsock_parse_connect("CONNECT 4294967295\r\n", 20, &port), ==, 20);
	CHECK_INT(port, ==, UINT32_MAX);
	CHECK_INT(vsock_parse_connect("CONN", 4, &port), ==, 0);
	CHECK_INT(vsock_parse_connect("CONNECT 10", 10, &port), ==, 0);
	CHECK_INT(vsock_parse_connect("CONNECT 4294967296\n", 19, &port), ==, -1);
	CHECK_INT(vsock_parse_connect("CONNECT 00000000000000001\n", 26, &port), ==, -1);
	CHECK_INT(vsock_parse_connect("connect 1\n", 10, &port), ==, -1);
	CHECK_INT(vsock_parse_connect("CONNECT -1\n", 11, &port), ==, -1);
	CHECK_INT(vsock_parse_connect("", 0, &port), ==, 0);
	/* The handshake parser takes PARK too, and says which it was. */
	bool park = true;
	CHECK_INT(vsock_parse_handshake("CONNECT 7\n", 10, &port, &park), ==, 10);
	CHECK(!park);
	CHECK_INT(vsock_parse_handshake("PARK 1024\nx", 11, &port, &park), ==, 10);
	CHECK(park);
	CHECK_INT(port, ==, 1024);
	CHECK_INT(vsock_parse_handshake("PAR", 3, &port, &park), ==, 0);
	CHECK_INT(vsock_parse_handshake("C", 1, &port, &park), ==, 0);
	CHECK_INT(vsock_parse_handshake("PARK x\n", 7, &port, &park), ==, -1);
	CHECK_INT(vsock_parse_handshake("PARKS 1\n", 8, &port, &park), ==, -1);
	CHECK_INT(vsock_parse_handshake("PARK 4294967296\n", 16, &port, &park), ==, -1);
}

TEST(host_data_respects_the_guest_credit)
{
	struct vs s;
	vs_open(t, &s);
	int fd = host_connect(t, &s, 1024);
	struct vsock_hdr h;
	vs_recv(t, &s, &h, NULL);
	uint32_t local = h.src_port;
	struct vsock_hdr r = pkt(1024, local, VSOCK_OP_RESPONSE, 0);
	r.buf_alloc = 1000; /* a small guest buffer */
	vs_send(t, &s, r, NULL);
	char line[64];
	CHECK(read_line(fd, line, sizeof(line)) > 0);
	static char big[5000];
	memset(big, 'x', sizeof(big));
	CHECK_INT(write(fd, big, sizeof(big)), ==, (ssize_t)sizeof(big));
	uint32_t got = 0;
	bool asked = false;
	while ((got < 1000 || !asked) && vs_recv_ms(&s, &h, NULL, VS_WAIT_MS)) {
		if (h.op == VSOCK_OP_RW)
			got += h.len;
		else if (h.op == VSOCK_OP_CREDIT_REQUEST)
			asked = true;
	}
	CHECK(asked);
	while (vs_recv_ms(&s, &h, NULL, 200)) /* and not a byte more */
		if (h.op == VSOCK_OP_RW)
			got += h.len;
	CHECK_INT(got, ==, 1000);
	/* The guest read it all: the rest flows in. */
	struct vsock_hdr cu = pkt(1024, local, VSOCK_OP_CREDIT_UPDATE, 0);
	cu.buf_alloc = 1000;
	cu.fwd_cnt = 1000;
	vs_send(t, &s, cu, NULL);
	while (got < 2000 && vs_recv_ms(&s, &h, NULL, VS_WAIT_MS))
		if (h.op == VSOCK_OP_RW)
			got += h.len;
	while (vs_recv_ms(&s, &h, NULL, 200))
		if (h.op == VSOCK_OP_RW)
			got += h.len;
	CHECK_INT(got, ==, 2000);
	close(fd);
	vs_close(&s);
}

TEST(the_device_sends_credit_updates_as_the_host_reads)
{
	struct vs s;
	vs_open(t, &s);
	int fd = host_connect(t, &s, 1024);
	struct vsock_hdr h;
	vs_recv(t, &s, &h, NULL);
	uint32_t local = h.src_port;
	vs_send(t, &s, pkt(1024, local, VSOCK_OP_RESPONSE, 0), NULL);
	char line[64];
	CHECK(read_line(fd, line, sizeof(line)) > 0);
	static char chunk[VSOCK_MAX_PAYLOAD];
	for (int i = 0; i < 2; i++)
		vs_send(t, &s, pkt(1024, local, VSOCK_OP_RW, sizeof(chunk)), chunk);
	static char sink[2 * VSOCK_MAX_PAYLOAD];
	CHECK_INT(read_full(fd, sink, sizeof(sink)), ==, (ssize_t)sizeof(sink));
	bool update = false;
	while (!update && vs_recv_ms(&s, &h, NULL, VS_WAIT_MS))
		if (h.op == VSOCK_OP_CREDIT_UPDATE && h.fwd_cnt >= VSOCK_BUF_ALLOC / 4)
			update = true;
	CHECK(update);
	while (vs_recv_ms(&s, &h, NULL, 200))
		;
	/* A credit request is answered at once. */
	vs_send(t, &s, pkt(1024, local, VSOCK_OP_CREDIT_REQUEST, 0), NULL);
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_CREDIT_UPDATE);
	CHECK_INT(h.fwd_cnt, ==, 2 * VSOCK_MAX_PAYLOAD);
	close(fd);
	vs_close(&s);
}

TEST(a_guest_that_ignores_credit_is_reset)
{
	struct vs s;
	vs_open(t, &s);
	int fd = host_connect(t, &s, 1024);
	struct vsock_hdr h;
	vs_recv(t, &s, &h, NULL);
	uint32_t local = h.src_port;
	vs_send(t, &s, pkt(1024, local, VSOCK_OP_RESPONSE, 0), NULL);
	/* The host never reads; the guest sends far more than the 256 KiB credit
	 * plus whatever the socket holds. */
	static char chunk[VSOCK_MAX_PAYLOAD];
	bool reset = false;
	for (int i = 0; i < 64 && !reset; i++) {
		vs_send(t, &s, pkt(1024, local, VSOCK_OP_RW, sizeof(chunk)), chunk);
		while (vs_recv_ms(&s, &h, NULL, 5))
			reset |= h.op == VSOCK_OP_RST;
	}
	while (!reset && vs_recv_ms(&s, &h, NULL, VS_WAIT_MS))
		reset = h.op == VSOCK_OP_RST;
	CHECK(reset);
	CHECK_INT(vsock_conn_count(s.f.d), ==, 0);
	close(fd);
	vs_close(&s);
}

TEST(malformed_packets_do_not_break_the_device)
{
	struct vs s;
	vs_open(t, &s);
	struct vsock_hdr h;
	static const char hundred[100];
	struct vsock_hdr p = pkt(1, 2, VSOCK_OP_RW, 100);
	vs_send(t, &s, p, hundred); /* well formed, for an unknown connection: RST */
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_RST);
	/* The header claims more than the descriptor holds. */
	unsigned slot = s.tx_next++ % VS_TX_SLOTS;
	uint64_t hdr = s.txhdr + sizeof(h) * slot;
	p.len = 60000;
	memcpy(drv_host(&s.f, hdr), &p, sizeof(p));
	drv_desc(&s.f, VSOCK_QUEUE_TX, (uint16_t)(2 * slot), hdr, sizeof(p), 0, 0);
	drv_publish(&s.f, VSOCK_QUEUE_TX, (uint16_t)(2 * slot));
	drv_kick(&s.f, VSOCK_QUEUE_TX);
	CHECK(drv_wait_used(&s.f, VSOCK_QUEUE_TX, NULL, NULL, VS_WAIT_MS));
	/* A header shorter than 44 bytes. */
	slot = s.tx_next++ % VS_TX_SLOTS;
	drv_desc(&s.f, VSOCK_QUEUE_TX, (uint16_t)(2 * slot), hdr, 20, 0, 0);
	drv_publish(&s.f, VSOCK_QUEUE_TX, (uint16_t)(2 * slot));
	drv_kick(&s.f, VSOCK_QUEUE_TX);
	CHECK(drv_wait_used(&s.f, VSOCK_QUEUE_TX, NULL, NULL, VS_WAIT_MS));
	/* Another guest's CID, the wrong socket type, a payload over 64 KiB. */
	p = pkt(1, 2, VSOCK_OP_REQUEST, 0);
	p.src_cid = 99;
	vs_send(t, &s, p, NULL);
	CHECK(!vs_recv_ms(&s, &h, NULL, 100)); /* dropped silently */
	p = pkt(1, 2, VSOCK_OP_REQUEST, 0);
	p.type = 2; /* seqpacket: not offered */
	vs_send(t, &s, p, NULL);
	vs_recv(t, &s, &h, NULL);
	CHECK_INT(h.op, ==, VSOCK_OP_RST);
	CHECK(!drv_needs_reset(&s.f));
	CHECK_INT(vsock_conn_count(s.f.d), ==, 0);
	vs_close(&s);
}

TEST(many_connections_at_once)
{
	struct vs s;
	vs_open(t, &s);
	enum { NCONN = 40 };
	int fds[NCONN];
	uint32_t local[NCONN];
	for (int i = 0; i < NCONN; i++)
		fds[i] = host_connect(t, &s, 2000 + (uint32_t)i);
	/* Answer every REQUEST (in whatever order they come). */
	for (int n = 0; n < NCONN; n++) {
		struct vsock_hdr h;
		vs_recv(t, &s, &h, NULL);
		CHECK_INT(h.op, ==, VSOCK_OP_REQUEST);
		int i = (int)h.dst_port - 2000;
		CHECK(i >= 0 && i < NCONN);
		local[i] = h.src_port;
		vs_send(t, &s, pkt(h.dst_port, h.src_port, VSOCK_OP_RESPONSE, 0), NULL);
	}
	CHECK_INT(vsock_conn_count(s.f.d), ==, NCONN);
	for (int i = 0; i < NCONN; i++) {
		char line[64], msg[32];
		CHECK(read_line(fds[i], line, sizeof(line)) > 0);
		int n = snprintf(msg, sizeof(msg), "to %d", i);
		vs_send(t, &s, pkt(2000 + (uint32_t)i, local[i], VSOCK_OP_RW, (uint32_t)n), msg);
	}
	for (int i = 0; i < NCONN; i++) {
		char buf[32] = {0}, msg[32];
		int n = snprintf(msg, sizeof(msg), "to %d", i);
		CHECK_INT(read_full(fds[i], buf, (size_t)n), ==, n);
		CHECK_STR(buf, msg);
		close(fds[i]);
	}
	vs_close(&s);
}

/* ---- 64 MiB each way ---------------------------------------------------- */

#define STREAM_BYTES (64u << 20)

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

struct streamer {
	int fd;
	uint64_t bytes;
	uint64_t errors;
};

static void *host_writer(void *arg)
{
	struct streamer *w = arg;
	static uint8_t buf[1 << 16];
	uint64_t off = 0;
	while (off < STREAM_BYTES) {
		size_t n = sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i);
		size_t done = 0;
		while (done < n) {
			ssize_t r = write(w->fd, buf + done, n - done);
			if (r <= 0)
				return NULL;
			done += (size_t)r;
		}
		off += n;
		w->bytes = off;
	}
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

static void *host_reader(void *arg)
{
	struct streamer *r = arg;
	static uint8_t buf[1 << 16];
	for (;;) {
		ssize_t n = read(r->fd, buf, sizeof(buf));
		if (n <= 0)
			return NULL;
		for (ssize_t i = 0; i < n; i++)
			r->errors += buf[i] != pattern(r->bytes + (uint64_t)i);
		r->bytes += (uint64_t)n;
	}
}

TEST(stream_64_mib_each_way_without_loss)
{
	struct vs s;
	vs_open(t, &s);
	int fd = host_connect(t, &s, 1024);
	struct timeval tv = {.tv_sec = 60};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct vsock_hdr h;
	vs_recv(t, &s, &h, NULL);
	uint32_t local = h.src_port;
	const uint32_t guest_buf = 256 * 1024;
	struct vsock_hdr r = pkt(1024, local, VSOCK_OP_RESPONSE, 0);
	r.buf_alloc = guest_buf;
	vs_send(t, &s, r, NULL);
	char line[64];
	CHECK(read_line(fd, line, sizeof(line)) > 0);

	/* Host to guest: the guest checks every byte and returns credit. */
	uint64_t t0 = drv_now_ms();
	struct streamer w = {.fd = fd};
	pthread_t th;
	pthread_create(&th, NULL, host_writer, &w);
	static uint8_t data[4096];
	uint64_t got = 0, bad = 0;
	uint32_t reported = 0;
	bool eof = false;
	while (!eof) {
		if (!vs_recv_ms(&s, &h, data, 10000))
			break;
		if (h.op == VSOCK_OP_SHUTDOWN) {
			eof = true;
		} else if (h.op == VSOCK_OP_RW) {
			for (uint32_t i = 0; i < h.len; i++)
				bad += data[i] != pattern(got + i);
			got += h.len;
		}
		if ((uint32_t)got - reported >= guest_buf / 2 || h.op == VSOCK_OP_CREDIT_REQUEST) {
			struct vsock_hdr cu = pkt(1024, local, VSOCK_OP_CREDIT_UPDATE, 0);
			cu.buf_alloc = guest_buf;
			cu.fwd_cnt = reported = (uint32_t)got;
			vs_send(t, &s, cu, NULL);
		}
	}
	pthread_join(th, NULL);
	uint64_t t1 = drv_now_ms();
	CHECK(eof);
	CHECK_INT(got, ==, STREAM_BYTES);
	CHECK_INT(bad, ==, 0);

	/* Guest to host, within the device's credit. */
	struct streamer rd = {.fd = fd};
	pthread_create(&th, NULL, host_reader, &rd);
	static uint8_t chunk[VSOCK_MAX_PAYLOAD];
	uint64_t sent = 0;
	uint32_t peer_fwd = 0, peer_alloc = VSOCK_BUF_ALLOC;
	while (sent < STREAM_BYTES) {
		uint32_t credit = peer_alloc - ((uint32_t)sent - peer_fwd);
		if (credit == 0) {
			if (!vs_recv_ms(&s, &h, NULL, 10000))
				break;
			if (h.op == VSOCK_OP_CREDIT_UPDATE || h.op == VSOCK_OP_RW) {
				peer_fwd = h.fwd_cnt;
				peer_alloc = h.buf_alloc;
			}
			continue;
		}
		uint32_t n = credit < sizeof(chunk) ? credit : (uint32_t)sizeof(chunk);
		if (n > STREAM_BYTES - sent)
			n = (uint32_t)(STREAM_BYTES - sent);
		for (uint32_t i = 0; i < n; i++)
			chunk[i] = pattern(sent + i);
		vs_send(t, &s, pkt(1024, local, VSOCK_OP_RW, n), chunk);
		sent += n;
		while (vs_recv_ms(&s, &h, NULL, 0))
			if (h.op == VSOCK_OP_CREDIT_UPDATE) {
				peer_fwd = h.fwd_cnt;
				peer_alloc = h.buf_alloc;
			}
	}
	struct vsock_hdr sd = pkt(1024, local, VSOCK_OP_SHUTDOWN, 0);
	sd.flags = VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV;
	vs_send(t, &s, sd, NULL);
	pthread_join(th, NULL);
	uint64_t t2 = drv_now_ms();
	CHECK_INT(sent, ==, STREAM_BYTES);
	CHECK_INT(rd.bytes, ==, STREAM_BYTES);
	CHECK_INT(rd.errors, ==, 0);
	printf("# 64 MiB host->guest in %llu ms, guest->host in %llu ms\n",
	       (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1));
	close(fd);
	vs_close(&s);
}

/* A Linux-like driver: it kicks only when avail_event asks for it, while the
 * device's thread consumes concurrently.  A lost notification would leave
 * packets unconsumed and time out. */
TEST(event_idx_notifications_are_never_lost)
{
	struct vs s;
	vs_open(t, &s);
	CHECK(virtio_dev_has_feature(s.f.d, VIRTIO_F_EVENT_IDX));
	enum { PACKETS = 20000, IN_FLIGHT = 16 };
	struct vsock_hdr rst = pkt(9, 9, VSOCK_OP_RST, 0); /* unknown: never answered */
	memcpy(drv_host(&s.f, s.txhdr), &rst, sizeof(rst));
	for (uint16_t i = 0; i < 32; i++)
		drv_desc(&s.f, VSOCK_QUEUE_TX, i, s.txhdr, sizeof(rst), 0, 0);
	struct drv_vq *q = &s.f.vq[VSOCK_QUEUE_TX];
	unsigned kicks = 0;
	uint64_t deadline = drv_now_ms() + 30000;
	for (unsigned i = 0; i < PACKETS; i++) {
		while ((uint16_t)(i - q->used_seen) >= IN_FLIGHT) {
			if (!drv_used(&s.f, VSOCK_QUEUE_TX, NULL, NULL) && drv_now_ms() > deadline)
				TEST_FAIL("stuck after %u packets, %u kicks", i, kicks);
		}
		uint16_t old = q->avail_idx;
		drv_publish(&s.f, VSOCK_QUEUE_TX, (uint16_t)(i % 32));
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		uint16_t event = drv_avail_event(&s.f, VSOCK_QUEUE_TX), now = q->avail_idx;
		if ((uint16_t)(now - event - 1) < (uint16_t)(now - old)) {
			drv_kick(&s.f, VSOCK_QUEUE_TX);
			kicks++;
		}
	}
	while (q->used_seen != q->avail_idx)
		if (!drv_used(&s.f, VSOCK_QUEUE_TX, NULL, NULL) && drv_now_ms() > deadline)
			TEST_FAIL("%u packets never consumed",
				  (unsigned)(q->avail_idx - q->used_seen));
	printf("# %d packets, %u notifications\n", PACKETS, kicks);
	CHECK_INT(kicks, <, PACKETS);
	vs_close(&s);
}

TEST(a_reset_closes_every_host_socket)
{
	struct vs s;
	vs_open(t, &s);
	int fd = host_connect(t, &s, 1024);
	struct vsock_hdr h;
	vs_recv(t, &s, &h, NULL);
	vs_send(t, &s, pkt(1024, h.src_port, VSOCK_OP_RESPONSE, 0), NULL);
	char line[64];
	CHECK(read_line(fd, line, sizeof(line)) > 0);
	drv_wr(&s.f, VIRTIO_MMIO_STATUS, 0);
	CHECK_INT(read(fd, line, sizeof(line)), ==, 0);
	close(fd);
	vs_close(&s);
}

TEST_MAIN(T(the_config_space_holds_the_cid), T(guest_connects_to_a_host_listener),
	  T(a_guest_half_close_reaches_the_host), T(unknown_ports_get_rst),
	  T(host_connects_to_a_guest_port), T(a_guest_that_refuses_closes_the_host_socket),
	  T(bad_handshakes_are_closed), T(the_connect_line_parser),
	  T(host_data_respects_the_guest_credit),
	  T(the_device_sends_credit_updates_as_the_host_reads),
	  T(a_guest_that_ignores_credit_is_reset), T(malformed_packets_do_not_break_the_device),
	  T(many_connections_at_once), T(stream_64_mib_each_way_without_loss),
	  T(event_idx_notifications_are_never_lost), T(a_reset_closes_every_host_socket))
