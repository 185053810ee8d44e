/* The split virtqueue walker against hostile rings. */
#include "common/cleanup.h"
#include "tests/unit/test.h"
#include "virtio/virtio_spec.h"
#include "virtio/virtqueue.h"

#define RAM_SIZE (1u << 20)
static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static struct virtq_chain chain;

#define DESC  0x1000u
#define AVAIL 0x2000u
#define USED  0x3000u
#define NUM   16u

static void setup(struct guest_mem *m, struct virtq *q)
{
	memset(ram, 0, sizeof(ram));
	gm_init_flat(m, ram, sizeof(ram));
	memset(q, 0, sizeof(*q));
	q->num_max = q->num = NUM;
	q->desc_gpa = DESC;
	q->avail_gpa = AVAIL;
	q->used_gpa = USED;
	q->ready = true;
	q->indirect = true;
}

static void desc_at(uint64_t table, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
		    uint16_t next)
{
	struct virtq_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
	memcpy(ram + table + 16ull * i, &d, sizeof(d));
}

static void desc(uint32_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	desc_at(DESC, i, addr, len, flags, next);
}

/* Publishes `head` as the avail entry number `idx` (and idx + 1 as the index). */
static void avail(uint16_t idx, uint16_t head)
{
	memcpy(ram + AVAIL + VIRTQ_AVAIL_RING + 2u * (idx % NUM), &head, 2);
	uint16_t next = (uint16_t)(idx + 1);
	memcpy(ram + AVAIL + VIRTQ_AVAIL_IDX, &next, 2);
}

static uint16_t used_idx(void)
{
	uint16_t v;
	memcpy(&v, ram + USED + VIRTQ_USED_IDX, 2);
	return v;
}

#define W VIRTQ_DESC_F_WRITE
#define N VIRTQ_DESC_F_NEXT
#define I VIRTQ_DESC_F_INDIRECT

static enum virtq_pop_result pop(struct guest_mem *m, struct virtq *q, const char **why)
{
	*why = "";
	return virtq_pop(q, m, &chain, why);
}

TEST(a_normal_chain_is_walked_and_returned)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_EMPTY);
	desc(3, 0x8000, 16, N, 7);
	desc(7, 0x9000, 100, N | W, 1);
	desc(1, 0xa000, 1, W, 0);
	avail(0, 3);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_CHAIN);
	CHECK_INT(chain.head, ==, 3);
	CHECK_INT(chain.nbufs, ==, 3);
	CHECK_INT(chain.nreadable, ==, 1);
	CHECK_INT(chain.read_len, ==, 16);
	CHECK_INT(chain.write_len, ==, 101);
	CHECK_INT(chain.bufs[1].gpa, ==, 0x9000);
	CHECK(chain.bufs[2].writable);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_EMPTY);
	CHECK_INT(virtq_push(&q, &m, 3, 101), ==, 0);
	CHECK_INT(used_idx(), ==, 1);
	struct virtq_used_elem e;
	memcpy(&e, ram + USED + VIRTQ_USED_RING, sizeof(e));
	CHECK_INT(e.id, ==, 3);
	CHECK_INT(e.len, ==, 101);
	CHECK(virtq_want_interrupt(&q, &m));
	uint16_t no_irq = VIRTQ_AVAIL_F_NO_INTERRUPT;
	memcpy(ram + AVAIL, &no_irq, 2);
	CHECK(!virtq_want_interrupt(&q, &m));
}

TEST(the_avail_index_wraps_around_16_bits)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	q.last_avail = q.used_idx = 0xffff;
	desc(0, 0x8000, 8, 0, 0);
	avail(0xffff, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_CHAIN);
	CHECK_INT(q.last_avail, ==, 0);
	CHECK_INT(virtq_push(&q, &m, 0, 0), ==, 0);
	CHECK_INT(used_idx(), ==, 0);
}

TEST(a_descriptor_loop_breaks_the_queue)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	desc(0, 0x8000, 8, N, 1);
	desc(1, 0x8000, 8, N, 2);
	desc(2, 0x8000, 8, N, 0);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
	CHECK(strstr(why, "loop") != NULL);
	CHECK(q.broken);
	/* Stays broken: nothing is consumed after that. */
	desc(5, 0x8000, 8, 0, 0);
	avail(1, 5);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
	CHECK_INT(virtq_push(&q, &m, 5, 0), ==, -1);
}

TEST(a_self_loop_breaks_the_queue)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	desc(4, 0x8000, 8, N | W, 4);
	avail(0, 4);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
}

TEST(the_longest_legal_chain_is_accepted)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	for (uint16_t i = 0; i < NUM; i++)
		desc(i, 0x8000, 8, i + 1u < NUM ? N : 0, (uint16_t)(i + 1));
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_CHAIN);
	CHECK_INT(chain.nbufs, ==, NUM);
}

TEST(buffers_outside_guest_memory_are_refused)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	static const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{RAM_SIZE - 4, 8}, {RAM_SIZE, 1},	  {UINT64_MAX - 2, 16},
		{UINT64_MAX, 1},   {0x8000, 0xffffffffu}, {RAM_SIZE + 4096, 0},
	};
	for (size_t k = 0; k < MSB_ARRAY_SIZE(bad); k++) {
		setup(&m, &q);
		desc(0, 0x8000, 8, N, 1);
		desc(1, bad[k].addr, bad[k].len, W, 0);
		avail(0, 0);
		CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
		CHECK(strstr(why, "outside") != NULL);
	}
}

TEST(indices_out_of_range_are_refused)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	avail(0, NUM); /* head == queue size */
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
	CHECK(strstr(why, "head") != NULL);

	setup(&m, &q);
	desc(0, 0x8000, 8, N, 0xffff);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
	CHECK(strstr(why, "next") != NULL);

	setup(&m, &q);
	uint16_t far = NUM + 1; /* the driver claims 17 new chains in a 16-entry ring */
	memcpy(ram + AVAIL + VIRTQ_AVAIL_IDX, &far, 2);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
}

TEST(readable_after_writable_is_refused)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	desc(0, 0x8000, 8, N | W, 1);
	desc(1, 0x8000, 8, 0, 0);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
}

TEST(an_indirect_table_is_walked)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	uint64_t table = 0x20000;
	desc_at(table, 0, 0x8000, 16, N, 2);
	desc_at(table, 2, 0x9000, 512, N | W, 1);
	desc_at(table, 1, 0xa000, 1, W, 0);
	desc(0, 0x7000, 4, N, 1); /* a direct buffer first, then the table */
	desc(1, table, 3 * 16, I, 0);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_CHAIN);
	CHECK_INT(chain.nbufs, ==, 4);
	CHECK_INT(chain.nreadable, ==, 2);
	CHECK_INT(chain.write_len, ==, 513);
	CHECK_INT(chain.bufs[3].gpa, ==, 0xa000);
}

/* Each case: one indirect descriptor (addr, len, flags) and table contents. */
static void bad_indirect(struct test_ctx *t, uint64_t addr, uint32_t len, uint16_t flags,
			 bool negotiated, const char *expect)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	q.indirect = negotiated;
	desc(0, addr, len, flags, 1);
	desc(1, 0x8000, 1, W, 0);
	avail(0, 0);
	if (pop(&m, &q, &why) != VIRTQ_BROKEN)
		TEST_FAIL("indirect %#llx/%u/%#x accepted", (unsigned long long)addr, len, flags);
	if (!strstr(why, expect))
		TEST_FAIL("reason \"%s\" lacks \"%s\"", why, expect);
}

TEST(bad_indirect_tables_are_refused)
{
	uint64_t table = 0x20000;
	/* A valid 2-entry table that the cases below point at or around. */
	bad_indirect(t, table, 0, I, true, "multiple of 16");
	bad_indirect(t, table, 24, I, true, "multiple of 16");
	bad_indirect(t, table + 8, 32, I, true, "misaligned");
	bad_indirect(t, table, 16 * (VIRTQ_MAX_INDIRECT + 1), I, true, "too large");
	bad_indirect(t, RAM_SIZE - 16, 32, I, true, "outside");
	bad_indirect(t, table, 32, I | N, true, "NEXT");
	bad_indirect(t, table, 32, I, false, "not negotiated");
}

TEST(nested_and_looping_indirect_tables_are_refused)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	uint64_t table = 0x20000;

	setup(&m, &q);
	desc_at(table, 0, 0x8000, 16, N, 1);
	desc_at(table, 1, table, 32, I, 0);
	desc(0, table, 32, I, 0);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
	CHECK(strstr(why, "nested") != NULL);

	setup(&m, &q);
	desc_at(table, 0, 0x8000, 16, N, 1);
	desc_at(table, 1, 0x8000, 16, N, 0);
	desc(0, table, 32, I, 0);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
	CHECK(strstr(why, "loop") != NULL);

	setup(&m, &q);
	desc_at(table, 0, 0x8000, 16, N, 2);
	desc(0, table, 32, I, 0);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_BROKEN);
	CHECK(strstr(why, "range") != NULL);
}

TEST(descriptors_are_read_once)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	desc(0, 0x8000, 8, N, 1);
	desc(1, 0x9000, 64, W, 0);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_CHAIN);
	/* The guest rewrites the length after the walker checked it. */
	desc(1, 0x9000, 0xfffff000u, W, 0);
	uint8_t big[256];
	memset(big, 0xab, sizeof(big));
	memset(ram + 0x9000 + 64, 0, 256);
	CHECK_INT(virtq_chain_write(&m, &chain, 0, big, sizeof(big)), ==, 64);
	CHECK_INT(ram[0x9000 + 63], ==, 0xab);
	CHECK_INT(ram[0x9000 + 64], ==, 0);
	struct iovec iov[4];
	size_t total;
	CHECK_INT(virtq_chain_iov(&m, &chain, true, 0, UINT64_MAX, iov, 4, &total), ==, 1);
	CHECK_INT(total, ==, 64);
}

TEST(chain_copies_cross_buffer_boundaries)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	memcpy(ram + 0x8000, "hello ", 6);
	memcpy(ram + 0x9000, "world", 5);
	desc(0, 0x8000, 6, N, 1);
	desc(1, 0x9000, 5, N, 2);
	desc(2, 0xa000, 3, N | W, 3);
	desc(3, 0xb000, 3, W, 0);
	avail(0, 0);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_CHAIN);
	char buf[16] = {0};
	CHECK_INT(virtq_chain_read(&m, &chain, 4, buf, sizeof(buf)), ==, 7);
	CHECK_STR(buf, "o world");
	CHECK_INT(virtq_chain_write(&m, &chain, 2, "xyz!", 4), ==, 4);
	CHECK(memcmp(ram + 0xa002, "x", 1) == 0);
	CHECK(memcmp(ram + 0xb000, "yz!", 3) == 0);
	virtq_unpop(&q);
	CHECK_INT(pop(&m, &q, &why), ==, VIRTQ_CHAIN);
	CHECK_INT(chain.head, ==, 0);
}

TEST(queue_configurations_are_checked)
{
	struct guest_mem m;
	struct virtq q;
	const char *why;
	setup(&m, &q);
	CHECK_INT(virtq_check_config(&q, &m, &why), ==, 0);
	q.num = 12;
	CHECK_INT(virtq_check_config(&q, &m, &why), ==, -1);
	q.num = 32; /* above num_max */
	CHECK_INT(virtq_check_config(&q, &m, &why), ==, -1);
	q.num = 0;
	CHECK_INT(virtq_check_config(&q, &m, &why), ==, -1);
	setup(&m, &q);
	q.desc_gpa = DESC + 8;
	CHECK_INT(virtq_check_config(&q, &m, &why), ==, -1);
	setup(&m, &q);
	q.used_gpa = RAM_SIZE - 64;
	CHECK_INT(virtq_check_config(&q, &m, &why), ==, -1);
	setup(&m, &q);
	q.avail_gpa = UINT64_MAX - 1;
	CHECK_INT(virtq_check_config(&q, &m, &why), ==, -1);
}

TEST_MAIN(T(a_normal_chain_is_walked_and_returned), T(the_avail_index_wraps_around_16_bits),
	  T(a_descriptor_loop_breaks_the_queue), T(a_self_loop_breaks_the_queue),
	  T(the_longest_legal_chain_is_accepted), T(buffers_outside_guest_memory_are_refused),
	  T(indices_out_of_range_are_refused), T(readable_after_writable_is_refused),
	  T(an_indirect_table_is_walked), T(bad_indirect_tables_are_refused),
	  T(nested_and_looping_indirect_tables_are_refused), T(descriptors_are_read_once),
	  T(chain_copies_cross_buffer_boundaries), T(queue_configurations_are_checked))
