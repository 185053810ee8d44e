/* The device state decoder (virtio_dev_restore) against arbitrary blobs.
 * The first byte picks the device (blk empty slot, console, rng, vsock), the
 * rest is the blob; guest RAM starts with the whole input, so restored rings
 * are made of the same bytes.  A refused blob must leave the device as new;
 * an accepted one must drive safely (ASan) and survive a save and a restore
 * into a second device unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtio/device.h"
#include "virtio/virtio_spec.h"
#include "virtio/vsock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (1u << 20)
static uint8_t ram[RAM] __attribute__((aligned(4096)));
static struct guest_mem mem;
static char vsock_path[64];

static struct virtio_dev *make(uint8_t kind)
{
	struct msb_err err;
	struct virtio_dev *d = NULL;
	switch (kind % 4) {
	case 0:
		d = virtio_blk_new(&mem, -1, NULL, false, &err);
		break;
	case 1:
		d = virtio_console_new(&mem, -1, -1, -1, &err);
		break;
	case 2:
		d = virtio_rng_new(&mem, -1, &err);
		break;
	case 3:
		d = virtio_vsock_new(&mem, -1, 3, vsock_path, &err);
		if (d)
			vsock_set_manual(d);
		break;
	}
	if (!d)
		__builtin_trap();
	return d;
}

static void save(struct virtio_dev *d, uint8_t **blob, size_t *len)
{
	struct msb_err err;
	if (virtio_dev_pause(d, &err) < 0 || virtio_dev_save(d, blob, len, &err) < 0)
		__builtin_trap();
	virtio_dev_resume(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vsock_path[0]) {
		gm_init_flat(&mem, ram, sizeof(ram));
		snprintf(vsock_path, sizeof(vsock_path), "/tmp/msb-fuzz-snap-%d", (int)getpid());
	}
	if (size < 1)
		return 0;
	memset(ram, 0, sizeof(ram));
	memcpy(ram, data, size < RAM ? size : RAM);
	struct virtio_dev *d = make(data[0]);
	struct msb_err err;
	if (virtio_dev_restore(d, data + 1, size - 1, &err) < 0) {
		uint32_t status;
		virtio_mmio_access(d, VIRTIO_MMIO_STATUS, &status, 4, false);
		if (status != 0 || err.kind != MSB_EK_CORRUPT)
			__builtin_trap();
		virtio_dev_free(d);
		return 0;
	}

	/* What a restored guest would do first: notify every queue. */
	for (uint32_t q = 0; q < VIRTIO_MAX_QUEUES; q++)
		virtio_mmio_access(d, VIRTIO_MMIO_QUEUE_NOTIFY, &q, 4, true);
	if (data[0] % 4 == 3)
		vsock_poll(d, 0);

	/* Save, restore into a second device, save again: the same blob.  (Not
	 * for vsock, whose restore lists its connections in the other order and
	 * may queue credit updates.) */
	uint8_t *a, *b;
	size_t alen, blen;
	save(d, &a, &alen);
	virtio_dev_free(d);
	struct virtio_dev *d2 = make(data[0]);
	if (virtio_dev_restore(d2, a, alen, &err) < 0)
		__builtin_trap();
	save(d2, &b, &blen);
	if (data[0] % 4 != 3 && (alen != blen || memcmp(a, b, alen) != 0))
		__builtin_trap();
	virtio_dev_free(d2);
	free(a);
	free(b);
	return 0;
}
