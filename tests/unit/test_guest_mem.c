#include "tests/unit/test.h"
#include "vmm/guest_mem.h"

static uint8_t ram[64 * 1024];

TEST(inside_is_allowed)
{
	struct guest_mem m;
	gm_init_flat(&m, ram, sizeof(ram));
	CHECK(gm_ptr(&m, 0, sizeof(ram)) == ram);
	CHECK(gm_ptr(&m, 100, 16) == ram + 100);
	CHECK(gm_ptr(&m, sizeof(ram), 0) == ram + sizeof(ram));
}

TEST(outside_and_overflow_are_refused)
{
	struct guest_mem m;
	gm_init_flat(&m, ram, sizeof(ram));
	CHECK(gm_ptr(&m, sizeof(ram), 1) == NULL);
	CHECK(gm_ptr(&m, sizeof(ram) - 1, 2) == NULL);
	CHECK(gm_ptr(&m, 1, UINT64_MAX) == NULL);
	CHECK(gm_ptr(&m, UINT64_MAX, 2) == NULL);
	CHECK(gm_ptr(&m, UINT64_MAX - 4, 8) == NULL);
	uint32_t v = 7;
	CHECK_INT(gm_write(&m, sizeof(ram) - 2, &v, 4), ==, -1);
	CHECK_INT(gm_read(&m, 8, &v, 4), ==, 0);
}

TEST(two_regions_around_the_mmio_gap)
{
	struct guest_mem m;
	struct msb_err err = {0};
	/* 4 GiB of address space, reserved lazily: never touched beyond a few pages. */
	if (gm_map(&m, 4ull << 30, &err) < 0)
		TEST_SKIP("cannot reserve 4 GiB of address space: %s", err.msg);
	CHECK_INT(m.nregions, ==, 2);
	CHECK(gm_ptr(&m, GM_MMIO_GAP_START - 8, 8) != NULL);
	CHECK(gm_ptr(&m, GM_MMIO_GAP_START - 8, 16) == NULL);
	CHECK(gm_ptr(&m, GM_MMIO_GAP_START, 1) == NULL);
	CHECK(gm_ptr(&m, GM_HIGH_RAM_START, 8) != NULL);
	CHECK(gm_ptr(&m, GM_HIGH_RAM_START + (1ull << 30) - 8, 8) != NULL);
	CHECK(gm_ptr(&m, GM_HIGH_RAM_START + (1ull << 30) - 8, 9) == NULL);
	gm_unmap(&m);
}

TEST(bad_sizes_are_refused_with_a_message)
{
	struct guest_mem m;
	struct msb_err err = {0};
	CHECK_INT(gm_map(&m, 0, &err), ==, -1);
	CHECK(strstr(err.msg, "multiple of 4 KiB") != NULL);
	CHECK_INT(gm_map(&m, 4097, &err), ==, -1);
}

TEST_MAIN(T(inside_is_allowed), T(outside_and_overflow_are_refused),
	  T(two_regions_around_the_mmio_gap), T(bad_sizes_are_refused_with_a_message))
