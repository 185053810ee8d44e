/* The virtio-mmio transport, driven through its registers (with the rng
 * device behind it, the simplest one). */
#include "tests/unit/test.h"
#include "tests/unit/test_virtio_driver.h"

static struct virtio_dev *new_rng(struct test_ctx *t, struct drv *f)
{
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_rng_new(f->mem, f->irqfd, &err);
	if (!d)
		TEST_FAIL("virtio_rng_new: %s", err.msg);
	f->d = d;
	return d;
}

TEST(identification_registers)
{
	struct drv f;
	drv_open(&f);
	new_rng(t, &f);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_MAGIC_VALUE), ==, 0x74726976);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_VERSION), ==, 2);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_DEVICE_ID), ==, VIRTIO_ID_RNG);
	CHECK_INT(virtio_dev_id(f.d), ==, 4);
	CHECK_STR(virtio_dev_name(f.d), "rng");
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_QUEUE_NUM_MAX), ==, 64);
	drv_wr(&f, VIRTIO_MMIO_QUEUE_SEL, 1); /* no such queue */
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_QUEUE_NUM_MAX), ==, 0);
	/* Registers are 32-bit: other widths read as zero and write nothing. */
	uint16_t half = 0xffff;
	virtio_mmio_access(f.d, VIRTIO_MMIO_MAGIC_VALUE, &half, 2, false);
	CHECK_INT(half, ==, 0);
	uint8_t byte = 7;
	virtio_mmio_access(f.d, VIRTIO_MMIO_STATUS, &byte, 1, true);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_STATUS), ==, 0);
	uint32_t v = 1;
	virtio_mmio_access(f.d, VIRTIO_MMIO_STATUS + 1, &v, 4, true); /* misaligned */
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_STATUS), ==, 0);
	drv_close(&f);
}

TEST(features_are_masked_to_what_is_offered)
{
	struct drv f;
	drv_open(&f);
	new_rng(t, &f);
	drv_wr(&f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_DEVICE_FEATURES), ==, 1); /* VERSION_1 */
	drv_wr(&f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_DEVICE_FEATURES), ==,
		  (1u << VIRTIO_F_INDIRECT_DESC) | (1u << VIRTIO_F_EVENT_IDX));
	drv_wr(&f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_DEVICE_FEATURES), ==, 0);
	drv_wr(&f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	for (uint32_t sel = 0; sel < 3; sel++) {
		drv_wr(&f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
		drv_wr(&f, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	}
	CHECK_INT(f.d->driver_features, ==,
		  (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_INDIRECT_DESC) |
			  (1ull << VIRTIO_F_EVENT_IDX));
	drv_wr(&f, VIRTIO_MMIO_STATUS, 0xb); /* FEATURES_OK */
	CHECK(drv_rd(&f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	/* Frozen once FEATURES_OK is set. */
	drv_wr(&f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	drv_wr(&f, VIRTIO_MMIO_DRIVER_FEATURES, 0);
	CHECK(virtio_dev_has_feature(f.d, VIRTIO_F_INDIRECT_DESC));
	drv_close(&f);
}

TEST(a_legacy_driver_is_refused)
{
	struct drv f;
	drv_open(&f);
	new_rng(t, &f);
	drv_wr(&f, VIRTIO_MMIO_STATUS, 3);
	drv_wr(&f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	drv_wr(&f, VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIRTIO_F_INDIRECT_DESC);
	drv_wr(&f, VIRTIO_MMIO_STATUS, 0xb);
	CHECK(!(drv_rd(&f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK));
	drv_wr(&f, VIRTIO_MMIO_STATUS, 0xf);
	CHECK(!(drv_rd(&f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK));
	drv_close(&f);
}

/* Offers one rng request of `len` bytes; returns the used length. */
static uint32_t rng_request(struct test_ctx *t, struct drv *f, uint64_t buf, uint32_t len)
{
	struct drv_buf b = {buf, len, true};
	uint16_t head = drv_chain(f, 0, &b, 1);
	drv_publish(f, 0, head);
	drv_kick(f, 0);
	uint32_t id, used;
	if (!drv_used(f, 0, &id, &used))
		TEST_FAIL("no used element");
	CHECK_INT(id, ==, head);
	return used;
}

TEST(the_rng_fills_buffers_and_interrupts)
{
	struct drv f;
	drv_open(&f);
	f.refuse = 1ull << VIRTIO_F_EVENT_IDX; /* interrupts follow the avail flags */
	struct virtio_dev *d = new_rng(t, &f);
	CHECK_INT(drv_start(&f, d, 1, 8), ==, 0xf);
	CHECK(!virtio_dev_has_feature(d, VIRTIO_F_EVENT_IDX));
	uint64_t buf = drv_alloc(&f, 4096);
	CHECK_INT(rng_request(t, &f, buf, 4096), ==, 4096);
	int zeros = 0;
	for (int i = 0; i < 4096; i++)
		zeros += ((uint8_t *)drv_host(&f, buf))[i] == 0;
	CHECK_INT(zeros, <, 64); /* about 16 expected from random bytes */
	CHECK_INT(drv_irqs(&f), >=, 1);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), ==, VIRTIO_MMIO_INT_VRING);
	drv_wr(&f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS), ==, 0);
	/* With interrupts suppressed by the driver, none is sent. */
	uint16_t no_irq = VIRTQ_AVAIL_F_NO_INTERRUPT;
	memcpy(drv_host(&f, f.vq[0].avail), &no_irq, 2);
	CHECK_INT(rng_request(t, &f, buf, 16), ==, 16);
	CHECK_INT(drv_irqs(&f), ==, 0);
	drv_close(&f);
}

TEST(event_idx_suppresses_interrupts_and_asks_for_notifies)
{
	struct drv f;
	drv_open(&f);
	struct virtio_dev *d = new_rng(t, &f);
	CHECK_INT(drv_start(&f, d, 1, 8), ==, 0xf);
	CHECK(virtio_dev_has_feature(d, VIRTIO_F_EVENT_IDX));
	uint64_t buf = drv_alloc(&f, 64);
	/* The driver wants an interrupt once the used index passes 3. */
	drv_set_used_event(&f, 0, 3);
	(void)drv_irqs(&f);
	int irqs_at[6];
	for (int i = 0; i < 6; i++) {
		CHECK_INT(rng_request(t, &f, buf, 8), ==, 8);
		irqs_at[i] = (int)drv_irqs(&f);
		/* The device found the queue empty and asks to be told of the next. */
		CHECK_INT(drv_avail_event(&f, 0), ==, i + 1);
	}
	CHECK_INT(irqs_at[0] + irqs_at[1] + irqs_at[2], ==, 0);
	CHECK_INT(irqs_at[3], ==, 1); /* used index 4: stepped over 3 */
	CHECK_INT(irqs_at[4] + irqs_at[5], ==, 0);
	drv_close(&f);
}

TEST(queue_changes_after_driver_ok_are_ignored)
{
	struct drv f;
	drv_open(&f);
	struct virtio_dev *d = new_rng(t, &f);
	CHECK_INT(drv_start(&f, d, 1, 8), ==, 0xf);
	/* The driver tries to grow the queue and move its rings after DRIVER_OK. */
	drv_wr(&f, VIRTIO_MMIO_QUEUE_SEL, 0);
	drv_wr(&f, VIRTIO_MMIO_QUEUE_READY, 0);
	drv_wr(&f, VIRTIO_MMIO_QUEUE_NUM, 64);
	drv_wr(&f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x700000);
	drv_wr(&f, VIRTIO_MMIO_QUEUE_USED_HIGH, 1);
	CHECK_INT(d->vqs[0].num, ==, 8);
	CHECK_INT(d->vqs[0].desc_gpa, ==, f.vq[0].desc);
	CHECK_INT(d->vqs[0].used_gpa, ==, f.vq[0].used);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_QUEUE_READY), ==, 1);
	/* The queue keeps working with the size it had: 8 slots wrap at 8. */
	uint64_t buf = drv_alloc(&f, 64);
	for (int i = 0; i < 20; i++)
		CHECK_INT(rng_request(t, &f, buf, 8), ==, 8);
	CHECK(!drv_needs_reset(&f));
	drv_close(&f);
}

TEST(a_bad_queue_configuration_needs_reset)
{
	struct drv f;
	drv_open(&f);
	new_rng(t, &f);
	drv_wr(&f, VIRTIO_MMIO_STATUS, 3);
	drv_wr(&f, VIRTIO_MMIO_QUEUE_SEL, 0);
	drv_wr(&f, VIRTIO_MMIO_QUEUE_NUM, 3); /* not a power of two */
	drv_wr(&f, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_QUEUE_READY), ==, 0);
	CHECK(drv_needs_reset(&f));
	CHECK(drv_rd(&f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	CHECK_INT(drv_irqs(&f), ==, 1);
	drv_wr(&f, VIRTIO_MMIO_STATUS, 0);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_STATUS), ==, 0);
	CHECK_INT(drv_rd(&f, VIRTIO_MMIO_QUEUE_NUM_MAX), ==, 64);
	drv_close(&f);
}

TEST(a_broken_ring_needs_reset_and_reset_recovers)
{
	struct drv f;
	drv_open(&f);
	struct virtio_dev *d = new_rng(t, &f);
	CHECK_INT(drv_start(&f, d, 1, 8), ==, 0xf);
	drv_desc(&f, 0, 0, 0x1000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	drv_publish(&f, 0, 0);
	drv_kick(&f, 0);
	CHECK(drv_needs_reset(&f));
	CHECK(!drv_used(&f, 0, NULL, NULL));
	/* Further notifications are ignored while broken. */
	drv_desc(&f, 0, 1, 0x1000, 8, VIRTQ_DESC_F_WRITE, 0);
	drv_publish(&f, 0, 1);
	drv_kick(&f, 0);
	CHECK(!drv_used(&f, 0, NULL, NULL));
	/* A reset and a new probe bring the device back. */
	memset(drv_host(&f, f.vq[0].avail), 0, 64);
	memset(drv_host(&f, f.vq[0].used), 0, 128);
	CHECK_INT(drv_start(&f, d, 1, 8), ==, 0xf);
	uint64_t buf = drv_alloc(&f, 32);
	CHECK_INT(rng_request(t, &f, buf, 32), ==, 32);
	drv_close(&f);
}

TEST(config_space_reads_are_bounded)
{
	struct drv f;
	drv_open(&f);
	struct msb_err err = {0};
	f.d = virtio_console_new(f.mem, f.irqfd, -1, -1, &err);
	CHECK(f.d != NULL);
	uint64_t v = 0x1234;
	virtio_mmio_access(f.d, VIRTIO_MMIO_CONFIG, &v, 8, false);
	CHECK_INT(v, ==, 0);
	v = 0x1234;
	virtio_mmio_access(f.d, VIRTIO_MMIO_CONFIG + 8, &v, 8, false); /* crosses the end */
	CHECK_INT(v, ==, 0);
	virtio_mmio_access(f.d, 0xfff, &v, 1, false);
	virtio_mmio_access(f.d, UINT64_MAX - 3, &v, 4, true);
	drv_close(&f);
}

struct hammer {
	struct drv *f;
	int rounds;
};

static void *hammer_registers(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < h->rounds; i++) {
		(void)drv_rd(h->f, VIRTIO_MMIO_STATUS);
		(void)drv_rd(h->f, VIRTIO_MMIO_INTERRUPT_STATUS);
		drv_wr(h->f, VIRTIO_MMIO_INTERRUPT_ACK, 1);
		drv_wr(h->f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	}
	return NULL;
}

TEST(several_vcpus_may_access_at_once)
{
	struct drv f;
	drv_open(&f);
	struct virtio_dev *d = new_rng(t, &f);
	CHECK_INT(drv_start(&f, d, 1, 8), ==, 0xf);
	struct hammer h = {&f, 20000};
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, hammer_registers, &h);
	uint64_t buf = drv_alloc(&f, 64);
	for (int i = 0; i < 200; i++) {
		struct drv_buf b = {buf, 64, true};
		drv_publish(&f, 0, drv_chain(&f, 0, &b, 1));
		drv_kick(&f, 0);
		CHECK(drv_wait_used(&f, 0, NULL, NULL, 1000));
	}
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK(!drv_needs_reset(&f));
	drv_close(&f);
}

TEST_MAIN(T(identification_registers), T(features_are_masked_to_what_is_offered),
	  T(a_legacy_driver_is_refused), T(the_rng_fills_buffers_and_interrupts),
	  T(event_idx_suppresses_interrupts_and_asks_for_notifies),
	  T(queue_changes_after_driver_ok_are_ignored), T(a_bad_queue_configuration_needs_reset),
	  T(a_broken_ring_needs_reset_and_reset_recovers), T(config_space_reads_are_bounded),
	  T(several_vcpus_may_access_at_once))
