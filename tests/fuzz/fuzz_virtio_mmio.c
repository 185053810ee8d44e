/* The virtio-mmio transport against arbitrary register sequences: each
 * 7-byte record is (flags, offset, value) for one access to an rng device
 * whose guest RAM starts with the input itself, so notifications walk rings
 * made of the same bytes.  The device must never touch memory outside guest
 * RAM (ASan) and must stay usable: after a reset it reads as new. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "virtio/device.h"
#include "virtio/virtio_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (64u * 1024)
static uint8_t ram[RAM] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct virtio_dev *dev;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dev) {
		struct msb_err err;
		gm_init_flat(&mem, ram, sizeof(ram));
		dev = virtio_rng_new(&mem, -1, &err);
		if (!dev)
			__builtin_trap();
	}
	memset(ram, 0, sizeof(ram));
	memcpy(ram, data, size < RAM ? size : RAM);
	static const uint32_t widths[4] = {4, 1, 2, 8};
	for (size_t i = 0; i + 7 <= size && i < 7 * 4096; i += 7) {
		uint8_t flags = data[i];
		uint16_t off;
		uint32_t val;
		memcpy(&off, data + i + 1, 2);
		memcpy(&val, data + i + 3, 4);
		uint64_t buf = val;
		/* Mostly aligned 32-bit register accesses, sometimes anything. */
		uint32_t len = widths[(flags >> 1) & 3];
		uint64_t offset = (flags & 8) ? off : (off & 0x1fc);
		virtio_mmio_access(dev, offset, &buf, len, flags & 1);
	}
	uint32_t zero = 0, v = 0;
	virtio_mmio_access(dev, VIRTIO_MMIO_STATUS, &zero, 4, true);
	virtio_mmio_access(dev, VIRTIO_MMIO_STATUS, &v, 4, false);
	if (v != 0)
		__builtin_trap();
	return 0;
}
