/* The split virtqueue walker against arbitrary guest memory.  The input's
 * first 16 bytes choose the queue (size, ring addresses, indirect allowed);
 * the rest is guest RAM.  Every chain the walker returns must lie inside guest
 * memory with consistent totals; a broken queue must stay broken. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "virtio/virtio_spec.h"
#include "virtio/virtqueue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (64u * 1024)
static uint8_t ram[RAM] __attribute__((aligned(4096)));
static struct virtq_chain chain;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 16)
		return 0;
	struct guest_mem m;
	memset(ram, 0, sizeof(ram));
	memcpy(ram, data + 16, size - 16 < RAM ? size - 16 : RAM);
	gm_init_flat(&m, ram, sizeof(ram));

	struct virtq q = {.num_max = 256};
	virtq_reset(&q);
	uint16_t num, desc, avail, used;
	memcpy(&num, data, 2);
	memcpy(&desc, data + 2, 2);
	memcpy(&avail, data + 4, 2);
	memcpy(&used, data + 6, 2);
	q.num = num;
	q.desc_gpa = desc;
	q.avail_gpa = avail;
	q.used_gpa = used;
	/* Byte 8: indirect allowed (1), EVENT_IDX (2); bytes 9-10: where the device's index starts.
	 */
	q.indirect = data[8] & 1;
	q.event_idx = data[8] & 2;
	memcpy(&q.last_avail, data + 9, 2);
	q.used_idx = q.last_avail;
	const char *why;
	if (virtq_check_config(&q, &m, &why) < 0)
		return 0;
	q.ready = true;

	for (int round = 0; round < 512; round++) {
		enum virtq_pop_result r = virtq_pop(&q, &m, &chain, &why);
		if (r == VIRTQ_EMPTY)
			break;
		if (r == VIRTQ_BROKEN) {
			if (!q.broken || virtq_pop(&q, &m, &chain, &why) != VIRTQ_BROKEN)
				__builtin_trap();
			break;
		}
		uint64_t rd = 0, wr = 0;
		if (chain.head >= q.num || chain.nbufs > VIRTQ_MAX_CHAIN ||
		    chain.nreadable > chain.nbufs)
			__builtin_trap();
		for (uint16_t i = 0; i < chain.nbufs; i++) {
			const struct virtq_buf *b = &chain.bufs[i];
			if (!gm_valid(&m, b->gpa, b->len) || b->writable != (i >= chain.nreadable))
				__builtin_trap();
			if (b->writable)
				wr += b->len;
			else
				rd += b->len;
		}
		if (rd != chain.read_len || wr != chain.write_len)
			__builtin_trap();
		/* Exercise the copy helpers over the whole chain. */
		uint8_t buf[512];
		virtq_chain_read(&m, &chain, data[11], buf, sizeof(buf));
		virtq_chain_write(&m, &chain, data[12], buf, data[13]);
		struct iovec iov[8];
		size_t total;
		virtq_chain_iov(&m, &chain, data[14] & 1, data[15], UINT64_MAX, iov, 8, &total);
		if (virtq_push(&q, &m, chain.head, (uint32_t)wr) < 0)
			break;
		(void)virtq_want_interrupt(&q, &m);
	}
	return 0;
}
