/* The little codec behind virtio device snapshots (snapshot.c), shared with
 * the devices that add state of their own.  Internal to src/virtio.
 *
 * Everything is little-endian with fixed widths.  The writer grows a malloc'd
 * buffer and remembers a failed allocation; the reader never reads past its
 * end: once a read would, `bad` is set and every later read returns zeros, so
 * a decoder reads all of its fields and checks `bad` once at the end.
 */
#ifndef MSB_VIRTIO_SNAPSHOT_H
#define MSB_VIRTIO_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vsnap_w {
	uint8_t *buf;
	size_t len, cap;
	bool oom;
};

struct vsnap_r {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

void vsnap_put(struct vsnap_w *w, const void *data, size_t len);
void vsnap_put_u8(struct vsnap_w *w, uint8_t v);
void vsnap_put_u16(struct vsnap_w *w, uint16_t v);
void vsnap_put_u32(struct vsnap_w *w, uint32_t v);
void vsnap_put_u64(struct vsnap_w *w, uint64_t v);

/* Copies `len` bytes out, or zeros them and sets r->bad when fewer are left. */
void vsnap_get(struct vsnap_r *r, void *data, size_t len);
uint8_t vsnap_get_u8(struct vsnap_r *r);
uint16_t vsnap_get_u16(struct vsnap_r *r);
uint32_t vsnap_get_u32(struct vsnap_r *r);
uint64_t vsnap_get_u64(struct vsnap_r *r);

#endif
