/* virtio-blk against a temporary disk file, through the transport. */
#include <fcntl.h>
#include <sys/stat.h>

#include "tests/unit/test.h"
#include "tests/unit/test_virtio_driver.h"
#include "virtio/blk.h"

#define DISK_SECTORS 64

struct blk_fixture {
	struct drv f;
	char path[64];
	int fd; /* our view of the disk file */
	uint64_t hdr, data, status;
};

static void blk_open(struct test_ctx *t, struct blk_fixture *x, bool readonly)
{
	drv_open(&x->f);
	snprintf(x->path, sizeof(x->path), "/tmp/msb-test-blk-XXXXXX");
	x->fd = mkstemp(x->path);
	CHECK(x->fd >= 0);
	uint8_t sector[512];
	for (int s = 0; s < DISK_SECTORS; s++) {
		memset(sector, s, sizeof(sector));
		CHECK_INT(pwrite(x->fd, sector, 512, s * 512), ==, 512);
	}
	struct msb_err err = {0};
	struct virtio_dev *d = virtio_blk_new(x->f.mem, x->f.irqfd, x->path, readonly, &err);
	if (!d)
		TEST_FAIL("virtio_blk_new: %s", err.msg);
	CHECK_INT(drv_start(&x->f, d, 1, 16), ==, 0xf);
	x->hdr = drv_alloc(&x->f, 16);
	x->data = drv_alloc(&x->f, 64 * 1024);
	x->status = drv_alloc(&x->f, 1);
}

static void blk_close(struct blk_fixture *x)
{
	drv_close(&x->f);
	close(x->fd);
	unlink(x->path);
}

static void set_hdr(struct blk_fixture *x, uint32_t type, uint64_t sector)
{
	uint8_t *h = drv_host(&x->f, x->hdr);
	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	*(uint8_t *)drv_host(&x->f, x->status) = 0xee;
}

/* Runs one request made of header, `len` data bytes (writable for IN/GET_ID),
 * status; returns the status byte and the used length in *used. */
static int request(struct test_ctx *t, struct blk_fixture *x, uint32_t type, uint64_t sector,
		   uint32_t len, uint32_t *used)
{
	set_hdr(x, type, sector);
	bool w = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
	struct drv_buf b[3] = {{x->hdr, 16, false}, {x->data, len, w}, {x->status, 1, true}};
	struct drv_buf nodata[2] = {{x->hdr, 16, false}, {x->status, 1, true}};
	uint16_t head = len ? drv_chain(&x->f, 0, b, 3) : drv_chain(&x->f, 0, nodata, 2);
	drv_publish(&x->f, 0, head);
	drv_kick(&x->f, 0);
	uint32_t id;
	if (!drv_used(&x->f, 0, &id, used))
		TEST_FAIL("request not completed");
	CHECK_INT(id, ==, head);
	return *(uint8_t *)drv_host(&x->f, x->status);
}

TEST(config_reports_capacity_and_features)
{
	struct blk_fixture x;
	blk_open(t, &x, false);
	uint64_t cap = 0;
	virtio_mmio_access(x.f.d, VIRTIO_MMIO_CONFIG, &cap, 8, false);
	CHECK_INT(cap, ==, DISK_SECTORS);
	drv_wr(&x.f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t feat = drv_rd(&x.f, VIRTIO_MMIO_DEVICE_FEATURES);
	CHECK(feat & (1u << VIRTIO_BLK_F_FLUSH));
	CHECK(!(feat & (1u << VIRTIO_BLK_F_RO)));
	blk_close(&x);
	blk_open(t, &x, true);
	drv_wr(&x.f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	feat = drv_rd(&x.f, VIRTIO_MMIO_DEVICE_FEATURES);
	CHECK(feat & (1u << VIRTIO_BLK_F_RO));
	blk_close(&x);
}

TEST(read_write_flush_and_get_id)
{
	struct blk_fixture x;
	uint32_t used;
	blk_open(t, &x, false);
	uint8_t *data = drv_host(&x.f, x.data);
	CHECK_INT(request(t, &x, VIRTIO_BLK_T_IN, 5, 1024, &used), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(used, ==, 1025);
	CHECK_INT(data[0], ==, 5);
	CHECK_INT(data[1023], ==, 6);

	memset(data, 0x5a, 2048);
	CHECK_INT(request(t, &x, VIRTIO_BLK_T_OUT, 10, 2048, &used), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(used, ==, 1);
	uint8_t back[2048];
	CHECK_INT(pread(x.fd, back, sizeof(back), 10 * 512), ==, 2048);
	CHECK_INT(back[0], ==, 0x5a);
	CHECK_INT(back[2047], ==, 0x5a);
	CHECK_INT(pread(x.fd, back, 1, 14 * 512), ==, 1);
	CHECK_INT(back[0], ==, 14); /* the next sector is untouched */

	CHECK_INT(request(t, &x, VIRTIO_BLK_T_FLUSH, 0, 0, &used), ==, VIRTIO_BLK_S_OK);
	memset(data, 0, 32);
	CHECK_INT(request(t, &x, VIRTIO_BLK_T_GET_ID, 0, 20, &used), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(used, ==, 21);
	CHECK(memcmp(data, "msb-", 4) == 0);
	CHECK_INT(request(t, &x, 11 /* discard: not offered */, 0, 0, &used), ==,
		  VIRTIO_BLK_S_UNSUPP);
	/* The last sector is readable, one past it is not. */
	CHECK_INT(request(t, &x, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 512, &used), ==,
		  VIRTIO_BLK_S_OK);
	CHECK_INT(request(t, &x, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 1024, &used), ==,
		  VIRTIO_BLK_S_IOERR);
	CHECK_INT(used, ==, 1);
	blk_close(&x);
}

TEST(a_read_only_disk_refuses_writes)
{
	struct blk_fixture x;
	uint32_t used;
	blk_open(t, &x, true);
	memset(drv_host(&x.f, x.data), 0x77, 512);
	CHECK_INT(request(t, &x, VIRTIO_BLK_T_OUT, 0, 512, &used), ==, VIRTIO_BLK_S_IOERR);
	uint8_t b;
	CHECK_INT(pread(x.fd, &b, 1, 0), ==, 1);
	CHECK_INT(b, ==, 0);
	CHECK_INT(request(t, &x, VIRTIO_BLK_T_IN, 0, 512, &used), ==, VIRTIO_BLK_S_OK);
	blk_close(&x);
}

TEST(sector_bounds_and_overflow_are_checked)
{
	struct blk_fixture x;
	uint32_t used;
	blk_open(t, &x, false);
	static const uint64_t bad[] = {DISK_SECTORS,	    DISK_SECTORS + 1, UINT64_MAX,
				       UINT64_MAX - 1,	    1ull << 55,	      (1ull << 63) / 256,
				       UINT64_MAX / 512 + 1};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_INT(request(t, &x, VIRTIO_BLK_T_IN, bad[i], 512, &used), ==,
			  VIRTIO_BLK_S_IOERR);
		CHECK_INT(request(t, &x, VIRTIO_BLK_T_OUT, bad[i], 512, &used), ==,
			  VIRTIO_BLK_S_IOERR);
	}
	/* A length that is not whole sectors. */
	CHECK_INT(request(t, &x, VIRTIO_BLK_T_IN, 0, 100, &used), ==, VIRTIO_BLK_S_IOERR);
	struct stat st;
	CHECK_INT(fstat(x.fd, &st), ==, 0);
	CHECK_INT(st.st_size, ==, DISK_SECTORS * 512); /* nothing was written past the end */
	CHECK(!drv_needs_reset(&x.f));
	blk_close(&x);
}

TEST(malformed_requests_complete_with_an_error)
{
	struct blk_fixture x;
	blk_open(t, &x, false);
	uint32_t id, used;
	/* A header shorter than 16 bytes. */
	set_hdr(&x, VIRTIO_BLK_T_IN, 0);
	struct drv_buf shorthdr[2] = {{x.hdr, 8, false}, {x.status, 1, true}};
	drv_publish(&x.f, 0, drv_chain(&x.f, 0, shorthdr, 2));
	drv_kick(&x.f, 0);
	CHECK(drv_used(&x.f, 0, &id, &used));
	CHECK_INT(*(uint8_t *)drv_host(&x.f, x.status), ==, VIRTIO_BLK_S_IOERR);
	/* No writable byte for the status: completed with length 0, nothing written. */
	struct drv_buf nostatus[1] = {{x.hdr, 16, false}};
	set_hdr(&x, VIRTIO_BLK_T_IN, 0);
	drv_publish(&x.f, 0, drv_chain(&x.f, 0, nostatus, 1));
	drv_kick(&x.f, 0);
	CHECK(drv_used(&x.f, 0, &id, &used));
	CHECK_INT(used, ==, 0);
	CHECK_INT(*(uint8_t *)drv_host(&x.f, x.status), ==, 0xee);
	/* The header split over two descriptors is fine. */
	set_hdr(&x, VIRTIO_BLK_T_IN, 3);
	struct drv_buf split[4] = {{x.hdr, 4, false},
				   {x.hdr + 4, 12, false},
				   {x.data, 512, true},
				   {x.status, 1, true}};
	drv_publish(&x.f, 0, drv_chain(&x.f, 0, split, 4));
	drv_kick(&x.f, 0);
	CHECK(drv_used(&x.f, 0, &id, &used));
	CHECK_INT(*(uint8_t *)drv_host(&x.f, x.status), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(((uint8_t *)drv_host(&x.f, x.data))[0], ==, 3);
	CHECK(!drv_needs_reset(&x.f));
	blk_close(&x);
}

TEST(requests_in_indirect_tables_as_linux_sends_them)
{
	struct blk_fixture x;
	blk_open(t, &x, false);
	set_hdr(&x, VIRTIO_BLK_T_IN, 7);
	/* header, two data segments, status: all in one indirect table. */
	uint64_t table = drv_alloc(&x.f, 4 * 16);
	struct virtq_desc ind[4] = {
		{x.hdr, 16, VIRTQ_DESC_F_NEXT, 1},
		{x.data, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2},
		{x.data + 4096, 1024, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3},
		{x.status, 1, VIRTQ_DESC_F_WRITE, 0},
	};
	memcpy(drv_host(&x.f, table), ind, sizeof(ind));
	drv_desc(&x.f, 0, 5, table, sizeof(ind), VIRTQ_DESC_F_INDIRECT, 0);
	drv_publish(&x.f, 0, 5);
	drv_kick(&x.f, 0);
	uint32_t id, used;
	CHECK(drv_used(&x.f, 0, &id, &used));
	CHECK_INT(id, ==, 5);
	CHECK_INT(used, ==, 1537);
	CHECK_INT(*(uint8_t *)drv_host(&x.f, x.status), ==, VIRTIO_BLK_S_OK);
	CHECK_INT(((uint8_t *)drv_host(&x.f, x.data))[0], ==, 7);
	CHECK_INT(((uint8_t *)drv_host(&x.f, x.data + 4096))[0], ==, 8);
	CHECK_INT(((uint8_t *)drv_host(&x.f, x.data + 4096))[1023], ==, 9);
	blk_close(&x);
}

TEST(the_parser_reads_the_header_once)
{
	/* The parser works on its copy: a header rewritten after parsing changes
	 * nothing that blk_execute() does. */
	static uint8_t ram[1 << 16];
	struct guest_mem m;
	gm_init_flat(&m, ram, sizeof(ram));
	static struct virtq_chain c;
	c.nbufs = 3;
	c.nreadable = 1;
	c.bufs[0] = (struct virtq_buf){0x100, 16, false};
	c.bufs[1] = (struct virtq_buf){0x1000, 512, true};
	c.bufs[2] = (struct virtq_buf){0x2000, 1, true};
	c.read_len = 16;
	c.write_len = 513;
	uint32_t type = VIRTIO_BLK_T_IN;
	uint64_t sector = 2;
	memcpy(ram + 0x100, &type, 4);
	memcpy(ram + 0x108, &sector, 8);
	struct blk_req req;
	CHECK_INT(blk_parse_request(&m, &c, 4, false, &req), ==, VIRTIO_BLK_S_OK);
	sector = UINT64_MAX / 512; /* the guest changes its mind */
	memcpy(ram + 0x108, &sector, 8);
	char path[] = "/tmp/msb-test-blk-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	uint8_t s[2048];
	for (int i = 0; i < 4; i++)
		memset(s + 512 * i, 0x10 + i, 512);
	CHECK_INT(write(fd, s, sizeof(s)), ==, (ssize_t)sizeof(s));
	CHECK_INT(blk_execute(&m, &c, &req, fd, "x"), ==, 513);
	CHECK_INT(ram[0x1000], ==, 0x12);
	CHECK_INT(ram[0x2000], ==, VIRTIO_BLK_S_OK);
	close(fd);
	unlink(path);
}

TEST(a_missing_disk_is_reported)
{
	struct guest_mem m;
	static uint8_t ram[4096];
	gm_init_flat(&m, ram, sizeof(ram));
	struct msb_err err = {0};
	CHECK(virtio_blk_new(&m, -1, "/nonexistent/disk.img", true, &err) == NULL);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "/nonexistent/disk.img") != NULL);
	CHECK(virtio_blk_new(&m, -1, "/tmp", true, &err) == NULL);
	CHECK(strstr(err.msg, "raw disk image") != NULL);
}

TEST_MAIN(T(config_reports_capacity_and_features), T(read_write_flush_and_get_id),
	  T(a_read_only_disk_refuses_writes), T(sector_bounds_and_overflow_are_checked),
	  T(malformed_requests_complete_with_an_error),
	  T(requests_in_indirect_tables_as_linux_sends_them), T(the_parser_reads_the_header_once),
	  T(a_missing_disk_is_reported))
