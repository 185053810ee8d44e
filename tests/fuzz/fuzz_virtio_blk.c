/* virtio-blk requests from arbitrary guest memory: a ring at fixed places
 * whose descriptors come from the input, walked by the real walker, parsed
 * by blk_parse_request() and carried out on a 32 KiB in-memory disk.  No
 * request may touch the disk outside its size. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtio/blk.h"
#include "virtio/virtio_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM	     (64u * 1024)
#define DISK_SECTORS 64u
static uint8_t ram[RAM] __attribute__((aligned(4096)));
static struct virtq_chain chain;
static int disk = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (disk < 0) {
		disk = memfd_create("fuzz-disk", MFD_CLOEXEC);
		if (disk < 0 || ftruncate(disk, DISK_SECTORS * BLK_SECTOR_SIZE) < 0)
			__builtin_trap();
	}
	if (size < 2)
		return 0;
	bool readonly = data[0] & 1;
	struct guest_mem m;
	memset(ram, 0, sizeof(ram));
	/* The input is laid out from the descriptor table (GPA 0) on; the avail
	 * ring (at 0x1000) offers head 0, then whatever the input put there. */
	memcpy(ram, data + 1, size - 1 < RAM ? size - 1 : RAM);
	gm_init_flat(&m, ram, sizeof(ram));
	struct virtq q = {.num_max = 16};
	virtq_reset(&q);
	q.desc_gpa = 0;
	q.avail_gpa = 0x1000;
	q.used_gpa = 0x1100;
	q.ready = true;
	q.indirect = true;
	uint16_t idx;
	memcpy(&idx, ram + 0x1002, 2);
	if (idx == 0) {
		idx = 1;
		memcpy(ram + 0x1002, &idx, 2);
	}
	for (int n = 0; n < 16; n++) {
		const char *why;
		if (virtq_pop(&q, &m, &chain, &why) != VIRTQ_CHAIN)
			break;
		struct blk_req req;
		int st = blk_parse_request(&m, &chain, DISK_SECTORS, readonly, &req);
		if (st == VIRTIO_BLK_S_OK) {
			if ((req.type == VIRTIO_BLK_T_IN || req.type == VIRTIO_BLK_T_OUT) &&
			    (req.sector > DISK_SECTORS ||
			     req.sector * BLK_SECTOR_SIZE + req.data_len >
				     DISK_SECTORS * BLK_SECTOR_SIZE))
				__builtin_trap();
			if (readonly && req.type == VIRTIO_BLK_T_OUT)
				__builtin_trap();
			blk_execute(&m, &chain, &req, disk, "fuzz");
		} else if (st > 0) {
			blk_complete(&m, &chain, &req, (uint8_t)st);
		}
		virtq_push(&q, &m, chain.head, 0);
	}
	struct stat st;
	if (fstat(disk, &st) < 0 || st.st_size != DISK_SECTORS * BLK_SECTOR_SIZE)
		__builtin_trap();
	return 0;
}
