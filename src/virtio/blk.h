/* virtio-blk request parsing, a pure function of the chain and the guest
 * memory it points to, kept apart from the device so that it can be fuzzed
 * and tested without a disk. */
#ifndef MSB_VIRTIO_BLK_H
#define MSB_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtqueue.h"

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO	     5
#define VIRTIO_BLK_F_FLUSH   9

#define VIRTIO_BLK_T_IN	    0u
#define VIRTIO_BLK_T_OUT    1u
#define VIRTIO_BLK_T_FLUSH  4u
#define VIRTIO_BLK_T_GET_ID 8u

#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define BLK_SECTOR_SIZE 512u
#define BLK_HDR_SIZE	16u
#define BLK_ID_BYTES	20u
#define BLK_SEG_MAX	126u

/* A request, checked.  Data lies in the readable part of the chain (OUT) or
 * the writable part (IN, GET_ID), `data_off` bytes in; the status byte is the
 * last writable byte. */
struct blk_req {
	uint32_t type;
	uint64_t sector;
	uint64_t data_off;
	uint64_t data_len;
	bool data_writable;
	uint64_t status_off; /* in the writable part */
};

/* Parse and check the request in chain `c` against a disk of `capacity`
 * sectors.  Returns VIRTIO_BLK_S_OK when the request should be carried out,
 * VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP when it must be completed with
 * that status and no I/O (req->status_off is then valid), or -1 when the
 * chain has no writable byte for a status (complete it with length 0). */
int blk_parse_request(const struct guest_mem *m, const struct virtq_chain *c, uint64_t capacity,
		      bool readonly, struct blk_req *req);

/* Carry out a request that blk_parse_request() accepted, on `fd`; write the
 * status byte; return the number of bytes written to the guest (the used
 * length).  `id` is the GET_ID answer (at most BLK_ID_BYTES are used). */
uint32_t blk_execute(const struct guest_mem *m, const struct virtq_chain *c,
		     const struct blk_req *req, int fd, const char *id);

/* Complete a request without I/O: write `status`, return the used length. */
uint32_t blk_complete(const struct guest_mem *m, const struct virtq_chain *c,
		      const struct blk_req *req, uint8_t status);

#endif
