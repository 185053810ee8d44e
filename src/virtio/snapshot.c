/* Device snapshots (virtio.h).  Placeholder until the device state is
 * implemented: every call fails with kind unsupported-as-internal. */
#include "virtio/device.h"

int virtio_dev_pause(struct virtio_dev *d, struct msb_err *err)
{
	return msb_err_set(err, MSB_EK_INTERNAL, 0, "%s: snapshots are not implemented yet",
			   virtio_dev_name(d));
}

void virtio_dev_resume(struct virtio_dev *d)
{
	(void)d;
}

int virtio_dev_save(struct virtio_dev *d, uint8_t **blob, size_t *len, struct msb_err *err)
{
	*blob = NULL;
	*len = 0;
	return msb_err_set(err, MSB_EK_INTERNAL, 0, "%s: snapshots are not implemented yet",
			   virtio_dev_name(d));
}

int virtio_dev_restore(struct virtio_dev *d, const uint8_t *blob, size_t len, struct msb_err *err)
{
	(void)blob;
	(void)len;
	return msb_err_set(err, MSB_EK_INTERNAL, 0, "%s: snapshots are not implemented yet",
			   virtio_dev_name(d));
}
