/* virtio-console: guest output to a pipe, host input from a pipe. */
#include <fcntl.h>

#include "tests/unit/test.h"
#include "tests/unit/test_virtio_driver.h"

#define RX 0
#define TX 1

struct con {
	struct drv f;
	int in[2], out[2];
	uint64_t buf;
};

static void con_open(struct test_ctx *t, struct con *c)
{
	drv_open(&c->f);
	CHECK_INT(pipe2(c->in, O_CLOEXEC), ==, 0);
	CHECK_INT(pipe2(c->out, O_CLOEXEC | O_NONBLOCK), ==, 0);
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_console_new(c->f.mem, c->f.irqfd, c->in[0], c->out[1], &err);
	if (!d)
		TEST_FAIL("virtio_console_new: %s", err.msg);
	CHECK_INT(drv_start(&c->f, d, 2, 16), ==, 0xf);
	c->buf = drv_alloc(&c->f, 4096);
}

static void con_close(struct con *c)
{
	drv_close(&c->f);
	for (int i = 0; i < 2; i++) {
		close(c->in[i]);
		close(c->out[i]);
	}
}

TEST(guest_output_reaches_the_fd)
{
	struct con c;
	con_open(t, &c);
	memcpy(drv_host(&c.f, c.buf), "Linux version", 13);
	memcpy(drv_host(&c.f, c.buf + 100), " 6.1\n", 5);
	struct drv_buf b[2] = {{c.buf, 13, false}, {c.buf + 100, 5, false}};
	drv_publish(&c.f, TX, drv_chain(&c.f, TX, b, 2));
	drv_kick(&c.f, TX);
	uint32_t len = 99;
	CHECK(drv_used(&c.f, TX, NULL, &len));
	CHECK_INT(len, ==, 0);
	char out[64] = {0};
	CHECK_INT(read(c.out[0], out, sizeof(out)), ==, 18);
	CHECK_STR(out, "Linux version 6.1\n");
	con_close(&c);
}

TEST(host_input_fills_receive_buffers)
{
	struct con c;
	con_open(t, &c);
	/* Input that arrives before any buffer waits for one. */
	CHECK_INT(write(c.in[1], "ls\n", 3), ==, 3);
	usleep(20000);
	CHECK(!drv_used(&c.f, RX, NULL, NULL));
	struct drv_buf b = {c.buf, 64, true};
	drv_publish(&c.f, RX, drv_chain(&c.f, RX, &b, 1));
	drv_kick(&c.f, RX);
	uint32_t len;
	CHECK(drv_wait_used(&c.f, RX, NULL, &len, 5000));
	CHECK_INT(len, ==, 3);
	CHECK(memcmp(drv_host(&c.f, c.buf), "ls\n", 3) == 0);
	CHECK_INT(drv_irqs(&c.f), >=, 1);
	/* A second buffer, then more input. */
	drv_publish(&c.f, RX, drv_chain(&c.f, RX, &b, 1));
	drv_kick(&c.f, RX);
	CHECK_INT(write(c.in[1], "pwd\n", 4), ==, 4);
	CHECK(drv_wait_used(&c.f, RX, NULL, &len, 5000));
	CHECK_INT(len, ==, 4);
	/* EOF on the input: nothing more arrives, and nothing spins. */
	close(c.in[1]);
	c.in[1] = -1;
	drv_publish(&c.f, RX, drv_chain(&c.f, RX, &b, 1));
	drv_kick(&c.f, RX);
	CHECK(!drv_wait_used(&c.f, RX, NULL, &len, 100));
	con_close(&c);
}

TEST_MAIN(T(guest_output_reaches_the_fd), T(host_input_fills_receive_buffers))
