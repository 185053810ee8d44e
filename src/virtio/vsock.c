/* virtio-vsock (placeholder until the device lands: refuses to be created). */
#include "virtio/device.h"

struct virtio_dev *virtio_vsock_new(const struct guest_mem *mem, int irqfd, uint64_t guest_cid,
				    const char *uds_path, struct msb_err *err)
{
	msb_err_set(err, MSB_EK_INTERNAL, 0, "virtio-vsock is not implemented yet");
	return NULL;
}
