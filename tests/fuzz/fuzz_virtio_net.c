/* virtio-net's two parsers of untrusted input.  data[0] picks one:
 * even: transmit chains from arbitrary guest memory (a ring at fixed places
 * whose descriptors come from the input, walked by the real walker), each
 * parsed by vnet_tx_frame(), which must return a frame within the MTU that is
 * exactly the chain's data after the header;
 * odd: the rest as a backend stream, cut into frames by vnet_stream_next(),
 * which must never point outside what it was given; each frame also goes
 * through vnet_synack_reply() (the guest's SYN-ACKs), which must read only
 * the frame and make nothing or an IPv4 TCP ACK. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "virtio/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (64u * 1024)
static uint8_t ram[RAM] __attribute__((aligned(4096)));
static struct virtq_chain chain;
static uint8_t frame[VNET_MAX_FRAME];
static uint8_t check[VNET_MAX_FRAME];

static void stream(const uint8_t *p, size_t n)
{
	size_t at = 0;
	for (;;) {
		size_t off, flen, used;
		int r = vnet_stream_next(p + at, n - at, &off, &flen, &used);
		if (r <= 0)
			return;
		if (used != off + flen || off != VNET_PREFIX || flen == 0 || flen > 65535 ||
		    used > n - at)
			__builtin_trap();
		uint8_t ack[VNET_SYNACK_REPLY_LEN];
		size_t r2 = vnet_synack_reply(p + at + off, flen, ack);
		if (r2 != 0 && (r2 != VNET_SYNACK_REPLY_LEN || ack[12] != 0x08 || ack[13] != 0 ||
				ack[47] != 0x10))
			__builtin_trap();
		at += used;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (data[0] & 1) {
		stream(data + 1, size - 1);
		return 0;
	}
	struct guest_mem m;
	memset(ram, 0, sizeof(ram));
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
		size_t len = 0;
		if (vnet_tx_frame(&m, &chain, frame, &len, &why) == 0) {
			if (len < VNET_MIN_FRAME || len > VNET_MAX_FRAME ||
			    len + VNET_HDR_LEN != chain.read_len || chain.nreadable != chain.nbufs)
				__builtin_trap();
			if (virtq_chain_read(&m, &chain, VNET_HDR_LEN, check, len) != len ||
			    memcmp(check, frame, len) != 0)
				__builtin_trap();
		} else if (len != 0 || !why) {
			__builtin_trap();
		}
		virtq_push(&q, &m, chain.head, 0);
	}
	return 0;
}
