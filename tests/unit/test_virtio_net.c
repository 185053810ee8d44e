/* virtio-net: frames both ways through a socketpair standing in for passt,
 * hostile transmit chains and hostile backend streams, link status, and a
 * restore that brings the link up. */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "tests/unit/test.h"
#include "tests/unit/test_virtio_driver.h"
#include "virtio/net.h"

#define RX	0
#define TX	1
#define WAIT_MS 5000

static const uint8_t MAC[6] = {0x02, 0x6d, 0x73, 0x62, 0x00, 0x01};

struct net {
	struct drv f;
	int sv[2]; /* sv[0]: the device's backend; sv[1]: "passt" */
	uint64_t buf;
};

static bool readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, ms) == 1;
}

/* What "passt" reads first when the device starts with a backend: a broadcast
 * frame from `mac` (so passt learns the guest's MAC before the guest sends). */
static void expect_announcement(struct test_ctx *t, int fd, const uint8_t mac[6])
{
	uint8_t got[VNET_ANNOUNCE_LEN + 1];
	CHECK(readable(fd, WAIT_MS));
	CHECK_INT(read(fd, got, VNET_ANNOUNCE_LEN), ==, VNET_ANNOUNCE_LEN);
	CHECK_INT(got[0] | got[1] | got[2], ==, 0);
	CHECK_INT(got[3], ==, 60);
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	CHECK(memcmp(got + 4, bcast, 6) == 0);
	CHECK(memcmp(got + 10, mac, 6) == 0);
	CHECK_INT(got[16], ==, 0x88);
	CHECK_INT(got[17], ==, 0xb5);
}

static void net_open(struct test_ctx *t, struct net *n, bool backend)
{
	drv_open(&n->f);
	n->sv[0] = n->sv[1] = -1;
	if (backend)
		CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, n->sv), ==, 0);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_net_new(n->f.mem, n->f.irqfd, n->sv[0], MAC, &err);
	if (!d)
		TEST_FAIL("virtio_net_new: %s", err.msg);
	CHECK_INT(drv_start(&n->f, d, 2, 64), ==, 0xf);
	n->buf = drv_alloc(&n->f, 64 * 1024);
	if (backend)
		expect_announcement(t, n->sv[1], MAC);
}

static void net_close(struct net *n)
{
	drv_close(&n->f); /* closes sv[0] with the device */
	if (n->sv[1] >= 0)
		close(n->sv[1]);
}

static uint16_t cfg16(struct net *n, uint64_t off)
{
	uint16_t v = 0;
	virtio_mmio_access(n->f.d, VIRTIO_MMIO_CONFIG + off, &v, 2, false);
	return v;
}

/* A transmit chain: the 12-byte header in one buffer, `len` frame bytes
 * (filled with `fill`) in another. */
static void send_frame(struct net *n, uint64_t at, uint32_t len, uint8_t fill)
{
	memset(drv_host(&n->f, at), 0, VNET_HDR_LEN);
	memset(drv_host(&n->f, at + 64), fill, len);
	struct drv_buf b[2] = {{at, VNET_HDR_LEN, false}, {at + 64, len, false}};
	drv_publish(&n->f, TX, drv_chain(&n->f, TX, b, 2));
	drv_kick(&n->f, TX);
}

static void backend_write(struct test_ctx *t, struct net *n, uint32_t len, uint8_t fill)
{
	uint8_t frame[4 + 4096];
	frame[0] = (uint8_t)(len >> 24);
	frame[1] = (uint8_t)(len >> 16);
	frame[2] = (uint8_t)(len >> 8);
	frame[3] = (uint8_t)len;
	uint32_t body = len < 4096 ? len : 4096;
	memset(frame + 4, fill, body);
	CHECK_INT(write(n->sv[1], frame, 4 + body), ==, (ssize_t)(4 + body));
}

static void post_rx(struct net *n, uint64_t at, uint32_t len)
{
	struct drv_buf b = {at, len, true};
	drv_publish(&n->f, RX, drv_chain(&n->f, RX, &b, 1));
	drv_kick(&n->f, RX);
}

TEST(pure_stream_parser)
{
	size_t off, flen, used;
	const uint8_t a[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0};
	CHECK_INT(vnet_stream_next(a, 3, &off, &flen, &used), ==, 0);
	CHECK_INT(vnet_stream_next(a, 6, &off, &flen, &used), ==, 0);
	CHECK_INT(vnet_stream_next(a, 7, &off, &flen, &used), ==, 1);
	CHECK_INT(off, ==, 4);
	CHECK_INT(flen, ==, 3);
	CHECK_INT(used, ==, 7);
	const uint8_t zero[] = {0, 0, 0, 0};
	CHECK_INT(vnet_stream_next(zero, 4, &off, &flen, &used), ==, -1);
	const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
	CHECK_INT(vnet_stream_next(huge, 4, &off, &flen, &used), ==, -1);
	const uint8_t big[] = {0, 1, 0, 0};
	CHECK_INT(vnet_stream_next(big, 4, &off, &flen, &used), ==, -1);
}

TEST(config_holds_mac_link_and_mtu)
{
	struct net n;
	net_open(t, &n, true);
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		virtio_mmio_access(n.f.d, VIRTIO_MMIO_CONFIG + (uint64_t)i, &mac[i], 1, false);
	CHECK(memcmp(mac, MAC, 6) == 0);
	CHECK_INT(cfg16(&n, 6), ==, 1);	    /* link up */
	CHECK_INT(cfg16(&n, 10), ==, 1500); /* mtu */
	CHECK_INT(virtio_dev_id(n.f.d), ==, 1);
	net_close(&n);
	net_open(t, &n, false);
	CHECK_INT(cfg16(&n, 6), ==, 0); /* no backend: link down */
	net_close(&n);
}

TEST(guest_frames_reach_the_backend_with_a_length_prefix)
{
	struct net n;
	net_open(t, &n, true);
	send_frame(&n, n.buf, 60, 0xab);
	uint32_t len = 99;
	CHECK(drv_wait_used(&n.f, TX, NULL, &len, WAIT_MS));
	CHECK_INT(len, ==, 0);
	uint8_t got[128];
	CHECK(readable(n.sv[1], WAIT_MS));
	CHECK_INT(read(n.sv[1], got, sizeof(got)), ==, 64);
	CHECK_INT(got[0] | got[1] | got[2], ==, 0);
	CHECK_INT(got[3], ==, 60);
	CHECK_INT(got[4], ==, 0xab);
	CHECK_INT(got[63], ==, 0xab);
	net_close(&n);
}

TEST(hostile_transmit_chains_are_dropped_and_the_device_goes_on)
{
	struct net n;
	net_open(t, &n, true);
	/* Shorter than the header plus an Ethernet header. */
	struct drv_buf tiny = {n.buf, 20, false};
	drv_publish(&n.f, TX, drv_chain(&n.f, TX, &tiny, 1));
	drv_kick(&n.f, TX);
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	/* Larger than the MTU allows. */
	struct drv_buf big = {n.buf, VNET_HDR_LEN + VNET_MAX_FRAME + 1, false};
	drv_publish(&n.f, TX, drv_chain(&n.f, TX, &big, 1));
	drv_kick(&n.f, TX);
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	/* Writable buffers in a transmit chain. */
	struct drv_buf wr[2] = {{n.buf, 100, false}, {n.buf + 200, 100, true}};
	drv_publish(&n.f, TX, drv_chain(&n.f, TX, wr, 2));
	drv_kick(&n.f, TX);
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	CHECK(!readable(n.sv[1], 50));
	CHECK(!drv_needs_reset(&n.f));
	/* A good frame still goes through, alone. */
	send_frame(&n, n.buf, 42, 0x11);
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	uint8_t got[256];
	CHECK(readable(n.sv[1], WAIT_MS));
	CHECK_INT(read(n.sv[1], got, sizeof(got)), ==, 46);
	net_close(&n);
}

TEST(backend_frames_fill_receive_buffers_when_they_come)
{
	struct net n;
	net_open(t, &n, true);
	/* A frame before any buffer waits for one. */
	backend_write(t, &n, 100, 0x5a);
	usleep(20000);
	CHECK(!drv_used(&n.f, RX, NULL, NULL));
	post_rx(&n, n.buf, VNET_HDR_LEN + VNET_MAX_FRAME);
	uint32_t len;
	CHECK(drv_wait_used(&n.f, RX, NULL, &len, WAIT_MS));
	CHECK_INT(len, ==, VNET_HDR_LEN + 100);
	uint8_t *p = drv_host(&n.f, n.buf);
	CHECK_INT(p[10], ==, 1); /* num_buffers */
	CHECK_INT(p[0], ==, 0);
	CHECK_INT(p[VNET_HDR_LEN], ==, 0x5a);
	CHECK_INT(p[VNET_HDR_LEN + 99], ==, 0x5a);
	CHECK_INT(drv_irqs(&n.f), >=, 1);
	/* A frame split over two writes is put together. */
	post_rx(&n, n.buf + 4096, VNET_HDR_LEN + VNET_MAX_FRAME);
	const uint8_t part1[] = {0, 0, 0, 20, 1, 2, 3};
	CHECK_INT(write(n.sv[1], part1, sizeof(part1)), ==, (ssize_t)sizeof(part1));
	usleep(20000);
	uint8_t part2[17];
	memset(part2, 7, sizeof(part2));
	CHECK_INT(write(n.sv[1], part2, sizeof(part2)), ==, (ssize_t)sizeof(part2));
	CHECK(drv_wait_used(&n.f, RX, NULL, &len, WAIT_MS));
	CHECK_INT(len, ==, VNET_HDR_LEN + 20);
	CHECK_INT(((uint8_t *)drv_host(&n.f, n.buf + 4096))[VNET_HDR_LEN + 2], ==, 3);
	net_close(&n);
}

TEST(hostile_backend_frames_are_dropped_and_a_corrupt_stream_drops_the_link)
{
	struct net n;
	net_open(t, &n, true);
	post_rx(&n, n.buf, VNET_HDR_LEN + VNET_MAX_FRAME);
	/* Too big for the MTU, too short for Ethernet: dropped; the next is delivered. */
	backend_write(t, &n, 2000, 0xee);
	backend_write(t, &n, 10, 0xee);
	backend_write(t, &n, 64, 0x42);
	uint32_t len;
	CHECK(drv_wait_used(&n.f, RX, NULL, &len, WAIT_MS));
	CHECK_INT(len, ==, VNET_HDR_LEN + 64);
	CHECK_INT(((uint8_t *)drv_host(&n.f, n.buf))[VNET_HDR_LEN], ==, 0x42);
	/* The largest length the stream can announce is read whole and dropped. */
	{
		static uint8_t huge[4 + 65535];
		huge[1] = 0;
		huge[2] = 0xff;
		huge[3] = 0xff;
		size_t off = 0;
		while (off < sizeof(huge)) {
			ssize_t w = write(n.sv[1], huge + off, sizeof(huge) - off);
			CHECK(w > 0);
			off += (size_t)w;
		}
	}
	backend_write(t, &n, 64, 0x43);
	post_rx(&n, n.buf + 4096, VNET_HDR_LEN + VNET_MAX_FRAME);
	CHECK(drv_wait_used(&n.f, RX, NULL, &len, WAIT_MS));
	CHECK_INT(len, ==, VNET_HDR_LEN + 64);
	CHECK_INT(((uint8_t *)drv_host(&n.f, n.buf + 4096))[VNET_HDR_LEN], ==, 0x43);
	/* A chain too small for a frame keeps waiting for one that fits. */
	post_rx(&n, n.buf + 8192, VNET_HDR_LEN + 30);
	backend_write(t, &n, 100, 0x01);
	backend_write(t, &n, 30, 0x02);
	CHECK(drv_wait_used(&n.f, RX, NULL, &len, WAIT_MS));
	CHECK_INT(len, ==, VNET_HDR_LEN + 30);
	/* A zero length is no frame: the stream is corrupt, the link goes down. */
	uint32_t gen0 = drv_rd(&n.f, VIRTIO_MMIO_CONFIG_GENERATION);
	const uint8_t zero[4] = {0};
	CHECK_INT(write(n.sv[1], zero, 4), ==, 4);
	uint64_t deadline = drv_now_ms() + WAIT_MS;
	while (cfg16(&n, 6) != 0 && drv_now_ms() < deadline)
		usleep(1000);
	CHECK_INT(cfg16(&n, 6), ==, 0);
	CHECK(drv_rd(&n.f, VIRTIO_MMIO_CONFIG_GENERATION) != gen0);
	CHECK(drv_rd(&n.f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	/* With the link down, transmitted frames are dropped. */
	send_frame(&n, n.buf + 16384, 60, 0x33);
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	CHECK(!readable(n.sv[1], 50));
	net_close(&n);
}

TEST(backend_closing_drops_the_link)
{
	struct net n;
	net_open(t, &n, true);
	close(n.sv[1]);
	n.sv[1] = -1;
	uint64_t deadline = drv_now_ms() + WAIT_MS;
	while (cfg16(&n, 6) != 0 && drv_now_ms() < deadline)
		usleep(1000);
	CHECK_INT(cfg16(&n, 6), ==, 0);
	send_frame(&n, n.buf, 60, 0x33); /* no SIGPIPE, no crash: dropped */
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	net_close(&n);
}

/* "passt" reads nothing for a while: every transmit still completes at once
 * (the vCPU never waits), the frames that found no room are dropped and
 * counted, and the stream holds whole frames only (one begun is finished). */
TEST(a_backend_that_does_not_read_never_holds_the_vcpu)
{
	struct net n;
	net_open(t, &n, true);
	int small = 4096;
	CHECK_INT(setsockopt(n.sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), ==, 0);
	enum { FRAMES = 400, LEN = 1000 };
	uint64_t t0 = drv_now_ms();
	for (int i = 0; i < FRAMES; i++) {
		send_frame(&n, n.buf, LEN, (uint8_t)i);
		CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	}
	CHECK_INT(drv_now_ms() - t0, <, 3000); /* was 5 s per frame once full */
	uint64_t dropped = virtio_net_tx_dropped(n.f.d);
	CHECK_INT(dropped, >, 0);
	CHECK_INT(dropped, <, FRAMES);
	CHECK_INT(cfg16(&n, 6), ==, 1); /* a busy backend is no lost backend */
	/* Now "passt" reads: whole frames, in order, each of one fill. */
	static uint8_t got[FRAMES * (4 + LEN)];
	size_t have = 0;
	while (have < sizeof(got) && readable(n.sv[1], 300)) {
		ssize_t r = read(n.sv[1], got + have, sizeof(got) - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	CHECK_INT(have % (4 + LEN), ==, 0);
	size_t frames = have / (4 + LEN);
	int last = -1;
	for (size_t k = 0; k < frames; k++) {
		const uint8_t *f = got + k * (4 + LEN);
		CHECK_INT(f[0] << 24 | f[1] << 16 | f[2] << 8 | f[3], ==, LEN);
		CHECK_INT(memcmp(f + 4, f + 5, LEN - 1), ==, 0);
		CHECK_INT((int)f[4], !=, last);
		last = f[4];
	}
	CHECK_INT(frames + dropped, ==, FRAMES);
	/* And the device goes on: the next frame arrives whole. */
	send_frame(&n, n.buf, 60, 0x5a);
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	CHECK(readable(n.sv[1], WAIT_MS));
	CHECK_INT(read(n.sv[1], got, sizeof(got)), ==, 64);
	CHECK_INT(got[4], ==, 0x5a);
	net_close(&n);
}

/* A SYN-ACK the guest sent on a VM (from passt's --pcap): 10.0.2.15:8080 to
 * 10.0.2.2:54360, seq 0x0ba053c2, ack 0xfc5f593a, options MSS and WS. */
static const uint8_t SYNACK[] = {0x02, 0xfc, 0x00, 0x00, 0x00, 0x01, 0x02, 0x6d, 0x73, 0x62, 0x00,
				 0x01, 0x08, 0x00, 0x45, 0x00, 0x00, 0x30, 0x00, 0x00, 0x40, 0x00,
				 0x40, 0x06, 0x22, 0xb8, 0x0a, 0x00, 0x02, 0x0f, 0x0a, 0x00, 0x02,
				 0x02, 0x1f, 0x90, 0xd4, 0x58, 0x0b, 0xa0, 0x53, 0xc2, 0xfc, 0x5f,
				 0x59, 0x3a, 0x70, 0x12, 0xfa, 0xf0, 0xc8, 0x23, 0x00, 0x00, 0x02,
				 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x05};

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* The ACK that completes the guest's handshake: addressed back to the guest,
 * seq/ack right, both checksums valid (the guest checks them: no offload). */
TEST(synack_reply_is_the_ack_passt_would_send)
{
	uint8_t out[VNET_SYNACK_REPLY_LEN];
	CHECK_INT(vnet_synack_reply(SYNACK, sizeof(SYNACK), out), ==, VNET_SYNACK_REPLY_LEN);
	CHECK(memcmp(out, SYNACK + 6, 6) == 0); /* to the guest's MAC */
	CHECK(memcmp(out + 6, SYNACK, 6) == 0);
	const uint8_t *ip = out + 14, *tcp = out + 34;
	CHECK_INT(ip[0], ==, 0x45);
	CHECK_INT(ip[2] << 8 | ip[3], ==, 40);
	CHECK_INT(ip[9], ==, 6);
	CHECK(memcmp(ip + 12, SYNACK + 30, 4) == 0); /* from 10.0.2.2 */
	CHECK(memcmp(ip + 16, SYNACK + 26, 4) == 0); /* to 10.0.2.15 */
	CHECK_INT(sum16(ip, 20, 0), ==, 0xffff);
	CHECK_INT(tcp[0] << 8 | tcp[1], ==, 54360);
	CHECK_INT(tcp[2] << 8 | tcp[3], ==, 8080);
	CHECK(memcmp(tcp + 4, SYNACK + 42, 4) == 0);		/* seq = the SYN-ACK's ack */
	static const uint8_t ack[4] = {0x0b, 0xa0, 0x53, 0xc3}; /* its seq + 1 */
	CHECK(memcmp(tcp + 8, ack, 4) == 0);
	CHECK_INT(tcp[12], ==, 0x50);
	CHECK_INT(tcp[13], ==, 0x10);
	CHECK_INT(tcp[14] << 8 | tcp[15], >, 0);
	uint8_t pseudo[12] = {0};
	memcpy(pseudo, ip + 12, 8);
	pseudo[9] = 6;
	pseudo[11] = 20;
	CHECK_INT(sum16(tcp, 20, sum16(pseudo, sizeof(pseudo), 0)), ==, 0xffff);
	/* seq + 1 wraps */
	uint8_t w[sizeof(SYNACK)];
	memcpy(w, SYNACK, sizeof(w));
	memset(w + 38, 0xff, 4);
	CHECK_INT(vnet_synack_reply(w, sizeof(w), out), ==, VNET_SYNACK_REPLY_LEN);
	CHECK_INT(out[42] | out[43] | out[44] | out[45], ==, 0);
}

/* Only a whole IPv4 TCP SYN-ACK gets a reply: every truncation, other
 * flags, other protocols, fragments and bad header lengths get none. */
TEST(synack_reply_ignores_everything_else)
{
	uint8_t out[VNET_SYNACK_REPLY_LEN], f[sizeof(SYNACK)];
	for (size_t n = 0; n < 14 + 40; n++)
		CHECK_INT(vnet_synack_reply(SYNACK, n, out), ==, 0);
	static const struct {
		size_t at;
		uint8_t v;
	} bad[] = {
		{47, 0x02}, /* SYN alone */
		{47, 0x10}, /* ACK alone */
		{47, 0x16}, /* SYN ACK RST */
		{47, 0x13}, /* SYN ACK FIN */
		{23, 17},   /* UDP */
		{12, 0x86}, /* not IPv4 */
		{14, 0x65}, /* IP version 6 in an IPv4 frame */
		{14, 0x44}, /* IHL 16 bytes */
		{14, 0x4f}, /* IHL 60 bytes: past the segment */
		{20, 0x20}, /* more fragments */
		{21, 0x01}, /* a fragment offset */
		{16, 0xff}, /* total length past the frame */
		{17, 0x10}, /* total length shorter than IP + TCP */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(f, SYNACK, sizeof(f));
		f[bad[i].at] = bad[i].v;
		CHECK_INT(vnet_synack_reply(f, sizeof(f), out), ==, 0);
	}
}

/* The device delivers the ACK itself when the guest transmits a SYN-ACK, and
 * still passes the SYN-ACK to the backend. */
TEST(a_guest_synack_gets_its_ack_from_the_device)
{
	struct net n;
	net_open(t, &n, true);
	post_rx(&n, n.buf + 32768, 2048);
	uint64_t at = n.buf;
	memset(drv_host(&n.f, at), 0, VNET_HDR_LEN);
	memcpy(drv_host(&n.f, at + 64), SYNACK, sizeof(SYNACK));
	struct drv_buf b[2] = {{at, VNET_HDR_LEN, false}, {at + 64, sizeof(SYNACK), false}};
	drv_publish(&n.f, TX, drv_chain(&n.f, TX, b, 2));
	drv_kick(&n.f, TX);
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	uint8_t got[128];
	CHECK(readable(n.sv[1], WAIT_MS));
	CHECK_INT(read(n.sv[1], got, sizeof(got)), ==, 4 + (ssize_t)sizeof(SYNACK));
	CHECK(memcmp(got + 4, SYNACK, sizeof(SYNACK)) == 0);
	uint32_t len = 0;
	CHECK(drv_wait_used(&n.f, RX, NULL, &len, WAIT_MS));
	CHECK_INT(len, ==, VNET_HDR_LEN + VNET_SYNACK_REPLY_LEN);
	uint8_t want[VNET_SYNACK_REPLY_LEN];
	vnet_synack_reply(SYNACK, sizeof(SYNACK), want);
	CHECK(memcmp(drv_host(&n.f, n.buf + 32768 + VNET_HDR_LEN), want, sizeof(want)) == 0);
	/* A SYN-ACK the busy backend never got gets no ACK either (passt would
	 * reset a connection whose data comes before its SYN-ACK). */
	int small = 4096;
	CHECK_INT(setsockopt(n.sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), ==, 0);
	uint64_t before = virtio_net_tx_dropped(n.f.d);
	for (int i = 0; i < 200 && virtio_net_tx_dropped(n.f.d) == before; i++) {
		send_frame(&n, n.buf + 4096, 1000, 0x11);
		CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	}
	CHECK_INT(virtio_net_tx_dropped(n.f.d), >, before);
	post_rx(&n, n.buf + 40960, 2048);
	drv_publish(&n.f, TX, drv_chain(&n.f, TX, b, 2));
	drv_kick(&n.f, TX);
	CHECK(drv_wait_used(&n.f, TX, NULL, NULL, WAIT_MS));
	CHECK_INT(virtio_net_tx_dropped(n.f.d), >, before + 1);
	CHECK(!drv_wait_used(&n.f, RX, NULL, NULL, 300));
	net_close(&n);
}

TEST(restore_without_link_into_a_device_with_a_backend_brings_the_link_up)
{
	struct net n;
	net_open(t, &n, false); /* the base snapshot's VM: --net none */
	struct msb_err err = {0};
	CHECK_INT(virtio_dev_pause(n.f.d, &err), ==, 0);
	uint8_t *blob = NULL;
	size_t len = 0;
	if (virtio_dev_save(n.f.d, &blob, &len, &err) < 0)
		TEST_FAIL("save: %s", err.msg);
	uint32_t gen0 = drv_rd(&n.f, VIRTIO_MMIO_CONFIG_GENERATION);

	struct net m;
	drv_open(&m.f);
	memcpy(m.f.ram, n.f.ram, DRV_RAM_SIZE);
	memcpy(m.f.vq, n.f.vq, sizeof(m.f.vq));
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, m.sv), ==, 0);
	static const uint8_t other[6] = {0x02, 0, 0, 0, 0, 9};
	struct virtio_dev *d = virtio_net_new(m.f.mem, m.f.irqfd, m.sv[0], other, &err);
	CHECK(d != NULL);
	m.f.d = d;
	/* Hostile blobs first: every truncation is refused and leaves it new. */
	for (size_t cut = 0; cut < len; cut++)
		CHECK_INT(virtio_dev_restore(d, blob, cut, &err), ==, -1);
	if (virtio_dev_restore(d, blob, len, &err) < 0)
		TEST_FAIL("restore: %s", err.msg);
	CHECK_INT(cfg16(&m, 6), ==, 1);
	uint8_t mac0 = 0;
	virtio_mmio_access(d, VIRTIO_MMIO_CONFIG + 5, &mac0, 1, false);
	CHECK_INT(mac0, ==, MAC[5]); /* the MAC the guest read stays */
	CHECK(drv_rd(&m.f, VIRTIO_MMIO_CONFIG_GENERATION) != gen0);
	CHECK(drv_rd(&m.f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	/* The restored device announces the MAC the guest has, not the new one. */
	expect_announcement(t, m.sv[1], MAC);
	/* And frames flow: guest to backend. */
	m.buf = n.buf;
	send_frame(&m, m.buf, 60, 0x77);
	CHECK(drv_wait_used(&m.f, TX, NULL, NULL, WAIT_MS));
	CHECK(readable(m.sv[1], WAIT_MS));
	free(blob);
	net_close(&m);
	net_close(&n);
}

TEST_MAIN(T(pure_stream_parser), T(config_holds_mac_link_and_mtu),
	  T(guest_frames_reach_the_backend_with_a_length_prefix),
	  T(hostile_transmit_chains_are_dropped_and_the_device_goes_on),
	  T(backend_frames_fill_receive_buffers_when_they_come),
	  T(hostile_backend_frames_are_dropped_and_a_corrupt_stream_drops_the_link),
	  T(backend_closing_drops_the_link), T(a_backend_that_does_not_read_never_holds_the_vcpu),
	  T(synack_reply_is_the_ack_passt_would_send), T(synack_reply_ignores_everything_else),
	  T(a_guest_synack_gets_its_ack_from_the_device),
	  T(restore_without_link_into_a_device_with_a_backend_brings_the_link_up))
