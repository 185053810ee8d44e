/* virtio-blk requests: parsing (pure) and carrying them out on a file. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "virtio/blk.h"

int blk_parse_request(const struct guest_mem *m, const struct virtq_chain *c, uint64_t capacity,
		      bool readonly, struct blk_req *req)
{
	memset(req, 0, sizeof(*req));
	if (c->write_len == 0)
		return -1;
	req->status_off = c->write_len - 1;

	uint8_t hdr[BLK_HDR_SIZE];
	if (c->read_len < BLK_HDR_SIZE ||
	    virtq_chain_read(m, c, 0, hdr, sizeof(hdr)) != sizeof(hdr))
		return VIRTIO_BLK_S_IOERR;
	/* One copy of the header; nothing below reads guest memory again. */
	memcpy(&req->type, hdr, 4);
	memcpy(&req->sector, hdr + 8, 8);

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (req->type == VIRTIO_BLK_T_IN) {
			req->data_writable = true;
			req->data_off = 0;
			req->data_len = c->write_len - 1;
		} else {
			if (readonly)
				return VIRTIO_BLK_S_IOERR;
			req->data_off = BLK_HDR_SIZE;
			req->data_len = c->read_len - BLK_HDR_SIZE;
		}
		if (req->data_len % BLK_SECTOR_SIZE)
			return VIRTIO_BLK_S_IOERR;
		if (req->sector > capacity ||
		    req->data_len / BLK_SECTOR_SIZE > capacity - req->sector)
			return VIRTIO_BLK_S_IOERR;
		/* pread/pwrite take a size_t and an off_t: keep both in range. */
		if (req->data_len > (uint64_t)SSIZE_MAX ||
		    req->sector > (uint64_t)INT64_MAX / BLK_SECTOR_SIZE)
			return VIRTIO_BLK_S_IOERR;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_FLUSH:
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID:
		req->data_writable = true;
		req->data_len = c->write_len - 1;
		if (req->data_len > BLK_ID_BYTES)
			req->data_len = BLK_ID_BYTES;
		return VIRTIO_BLK_S_OK;
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

uint32_t blk_complete(const struct guest_mem *m, const struct virtq_chain *c,
		      const struct blk_req *req, uint8_t status)
{
	virtq_chain_write(m, c, req->status_off, &status, 1);
	uint64_t used = 1;
	if (status == VIRTIO_BLK_S_OK && req->data_writable)
		used += req->data_len;
	return (uint32_t)used;
}

/* Moves req->data_len bytes between the chain and the file at the request's
 * sector, in as many system calls as the file needs. */
static int transfer(const struct guest_mem *m, const struct virtq_chain *c,
		    const struct blk_req *req, int fd)
{
	uint64_t done = 0;
	off_t pos = (off_t)(req->sector * BLK_SECTOR_SIZE);
	while (done < req->data_len) {
		struct iovec iov[IOV_MAX];
		size_t span;
		int n = virtq_chain_iov(m, c, req->data_writable, req->data_off + done,
					req->data_len - done, iov, IOV_MAX, &span);
		if (n <= 0)
			return -1;
		ssize_t r = req->data_writable ? preadv(fd, iov, n, pos + (off_t)done)
					       : pwritev(fd, iov, n, pos + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1; /* an error, or the file shrank under us */
		done += (uint64_t)r;
	}
	return 0;
}

uint32_t blk_execute(const struct guest_mem *m, const struct virtq_chain *c,
		     const struct blk_req *req, int fd, const char *id)
{
	uint8_t status = VIRTIO_BLK_S_OK;
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (transfer(m, c, req, fd) < 0)
			status = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (fdatasync(fd) < 0 && errno != EINVAL && errno != EBADF)
			status = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		char buf[BLK_ID_BYTES] = {0};
		strncpy(buf, id, sizeof(buf));
		if (virtq_chain_write(m, c, 0, buf, req->data_len) != req->data_len)
			status = VIRTIO_BLK_S_IOERR;
		break;
	}
	default:
		status = VIRTIO_BLK_S_UNSUPP;
	}
	return blk_complete(m, c, req, status);
}
