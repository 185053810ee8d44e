/* PIO/MMIO bus dispatch and the legacy devices behind it (8250 UART, i8042),
 * driven the way a guest driver drives them.  No /dev/kvm needed. */
#include <fcntl.h>
#include <unistd.h>

#include "tests/unit/test.h"
#include "vmm/bus.h"
#include "vmm/i8042.h"
#include "vmm/serial.h"

struct rec {
	int calls;
	uint64_t off;
	uint32_t len;
	bool write;
	uint8_t val;
};

static void rec_fn(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write)
{
	struct rec *r = ctx;
	r->calls++;
	r->off = offset;
	r->len = len;
	r->write = is_write;
	if (is_write)
		r->val = *(uint8_t *)data;
	else
		memset(data, 0x11, len);
}

TEST(bus_dispatches_by_range)
{
	struct bus b;
	struct rec a = {0}, c = {0};
	struct msb_err err = {0};
	bus_init(&b);
	CHECK_INT(bus_add(&b, 0xd0001000, 0x1000, rec_fn, &c, &err), ==, 0);
	CHECK_INT(bus_add(&b, 0xd0000000, 0x1000, rec_fn, &a, &err), ==, 0);
	uint32_t v = 0x42;
	CHECK(bus_access(&b, 0xd0000070, &v, 4, true));
	CHECK(a.calls == 1 && a.off == 0x70 && a.len == 4 && a.write && a.val == 0x42);
	CHECK(bus_access(&b, 0xd0001ffc, &v, 4, false));
	CHECK(c.calls == 1 && c.off == 0xffc && !c.write && v == 0x11111111);
	/* Outside every range, or straddling the end of one: nobody is called,
	 * reads see all ones. */
	CHECK(!bus_access(&b, 0xd0002000, &v, 4, false));
	CHECK(v == 0xffffffff);
	CHECK(!bus_access(&b, 0xd0001ffe, &v, 4, false));
	CHECK(!bus_access(&b, 0xcffffffc, &v, 4, true));
	CHECK(a.calls == 1 && c.calls == 1);
}

TEST(bus_refuses_overlaps_and_bad_ranges)
{
	struct bus b;
	struct rec a = {0};
	struct msb_err err = {0};
	bus_init(&b);
	CHECK_INT(bus_add(&b, 0x3f8, 8, rec_fn, &a, &err), ==, 0);
	CHECK_INT(bus_add(&b, 0x3ff, 1, rec_fn, &a, &err), ==, -1);
	CHECK_INT(bus_add(&b, 0x3f0, 9, rec_fn, &a, &err), ==, -1);
	CHECK_INT(bus_add(&b, 0x3f0, 8, rec_fn, &a, &err), ==, 0);
	CHECK_INT(bus_add(&b, 0x400, 0, rec_fn, &a, &err), ==, -1);
	CHECK_INT(bus_add(&b, UINT64_MAX - 1, 4, rec_fn, &a, &err), ==, -1);
	CHECK_INT(b.n, ==, 2);
	for (unsigned i = 2; i < BUS_MAX_RANGES; i++)
		CHECK_INT(bus_add(&b, 0x1000 + i * 16, 16, rec_fn, &a, &err), ==, 0);
	CHECK_INT(bus_add(&b, 0x100000, 16, rec_fn, &a, &err), ==, -1);
	/* Still sorted: every range findable. */
	for (unsigned i = 0; i < b.n; i++)
		CHECK(bus_find(&b, b.ranges[i].base + b.ranges[i].len - 1, 1) == &b.ranges[i]);
}

static int irqs;
static void count_irq(void *ctx)
{
	(void)ctx;
	irqs++;
}

static uint8_t rd(struct serial *s, unsigned reg)
{
	uint8_t v = 0;
	serial_pio(s, reg, &v, 1, false);
	return v;
}

static void wr(struct serial *s, unsigned reg, uint8_t v)
{
	serial_pio(s, reg, &v, 1, true);
}

TEST(uart_looks_like_a_16550a)
{
	int p[2];
	CHECK(pipe2(p, O_NONBLOCK) == 0);
	struct serial s;
	serial_init(&s, p[1], count_irq, NULL);
	irqs = 0;
	/* Scratch register and IER read back (what the 8250 probe checks). */
	wr(&s, 7, 0xa5);
	CHECK_INT(rd(&s, 7), ==, 0xa5);
	wr(&s, 1, 0xff);
	CHECK_INT(rd(&s, 1), ==, 0x0f);
	CHECK_INT(irqs, ==, 1); /* THRI enabled with THR empty */
	wr(&s, 1, 0);
	irqs = 0;
	/* FIFO bits in IIR once the FIFO is enabled. */
	wr(&s, 2, 0x01);
	CHECK_INT(rd(&s, 2) & 0xc0, ==, 0xc0);
	/* Loopback: MCR's outputs come back in MSR. */
	wr(&s, 4, 0x10 | 0x0a);
	CHECK_INT(rd(&s, 6) & 0xf0, ==, 0x90);
	wr(&s, 4, 0x08);
	CHECK_INT(rd(&s, 6), ==, 0xb0);
	/* DLAB: divisor latches, not THR/IER. */
	wr(&s, 3, 0x80);
	wr(&s, 0, 0x01);
	wr(&s, 1, 0x00);
	CHECK_INT(rd(&s, 0), ==, 0x01);
	wr(&s, 3, 0x03);
	/* Transmit: bytes out, THR always empty. */
	wr(&s, 0, 'o');
	wr(&s, 0, 'k');
	CHECK_INT(rd(&s, 5) & 0x60, ==, 0x60);
	char buf[8] = {0};
	CHECK_INT(read(p[0], buf, sizeof(buf)), ==, 2);
	CHECK_STR(buf, "ok");
	CHECK_INT(irqs, ==, 0);
	/* Enabling THRI interrupts at once; IIR says so once, then "none". */
	wr(&s, 1, 0x02);
	CHECK_INT(irqs, ==, 1);
	CHECK_INT(rd(&s, 2) & 0x0f, ==, 0x02);
	CHECK_INT(rd(&s, 2) & 0x0f, ==, 0x01);
	wr(&s, 0, '!');
	CHECK_INT(irqs, ==, 2);
	serial_destroy(&s);
	close(p[0]);
	close(p[1]);
}

TEST(uart_without_output_drops_bytes)
{
	struct serial s;
	serial_init(&s, -1, NULL, NULL);
	wr(&s, 1, 0x02);
	wr(&s, 0, 'x');
	CHECK_INT(rd(&s, 5) & 0x20, ==, 0x20);
	serial_destroy(&s);
}

static int resets;
static void count_reset(void *ctx)
{
	(void)ctx;
	resets++;
}

static uint8_t kin(struct i8042 *k, int port)
{
	uint8_t v = 0;
	if (port == 0x64)
		i8042_command_pio(k, 0, &v, 1, false);
	else
		i8042_data_pio(k, 0, &v, 1, false);
	return v;
}

static void kout(struct i8042 *k, int port, uint8_t v)
{
	if (port == 0x64)
		i8042_command_pio(k, 0, &v, 1, true);
	else
		i8042_data_pio(k, 0, &v, 1, true);
}

TEST(i8042_answers_the_driver_and_resets)
{
	struct i8042 k;
	i8042_init(&k, count_reset, NULL);
	resets = 0;
	CHECK_INT(kin(&k, 0x64) & 1, ==, 0);
	kout(&k, 0x64, 0x20); /* read CTR */
	CHECK_INT(kin(&k, 0x64) & 1, ==, 1);
	uint8_t ctr = kin(&k, 0x60);
	CHECK_INT(kin(&k, 0x64) & 1, ==, 0);
	kout(&k, 0x64, 0x60); /* write CTR */
	kout(&k, 0x60, (uint8_t)(ctr | 0x01));
	kout(&k, 0x64, 0x20);
	CHECK_INT(kin(&k, 0x60), ==, ctr | 0x01);
	kout(&k, 0x64, 0xaa); /* self test */
	CHECK_INT(kin(&k, 0x60), ==, 0x55);
	CHECK_INT(resets, ==, 0);
	kout(&k, 0x64, 0xfe);
	CHECK_INT(resets, ==, 1);
	i8042_destroy(&k);
}

TEST_MAIN(T(bus_dispatches_by_range), T(bus_refuses_overlaps_and_bad_ranges),
	  T(uart_looks_like_a_16550a), T(uart_without_output_drops_bytes),
	  T(i8042_answers_the_driver_and_resets))
