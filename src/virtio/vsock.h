/* virtio-vsock internals shared by the device (vsock.c), its packet parsers
 * (vsock_pkt.c), the unit tests and the fuzz targets. */
#ifndef MSB_VIRTIO_VSOCK_H
#define MSB_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

#define VSOCK_HOST_CID 2u

#define VSOCK_TYPE_STREAM 1u

#define VSOCK_OP_REQUEST	1u
#define VSOCK_OP_RESPONSE	2u
#define VSOCK_OP_RST		3u
#define VSOCK_OP_SHUTDOWN	4u
#define VSOCK_OP_RW		5u
#define VSOCK_OP_CREDIT_UPDATE	6u
#define VSOCK_OP_CREDIT_REQUEST 7u

#define VSOCK_SHUTDOWN_RCV  1u
#define VSOCK_SHUTDOWN_SEND 2u

/* The largest payload a packet may carry (Linux sends at most 64 KiB). */
#define VSOCK_MAX_PAYLOAD (64u * 1024)
/* What each connection may buffer towards the host (our buf_alloc). */
#define VSOCK_BUF_ALLOC (256u * 1024)

#define VSOCK_QUEUE_RX	  0
#define VSOCK_QUEUE_TX	  1
#define VSOCK_QUEUE_EVENT 2

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));

_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

/* Copy the header of a transmitted packet out of chain `c` and check that
 * its payload (hdr->len bytes right after it, in the readable part) is
 * there and not larger than VSOCK_MAX_PAYLOAD.  Pure.  0, or -1 with *why. */
int vsock_parse_tx(const struct guest_mem *m, const struct virtq_chain *c, struct vsock_hdr *hdr,
		   const char **why);

/* Parse the host's handshake line "CONNECT <port>\n" at the start of buf.
 * Returns the length of the line (newline included) and sets *port, 0 when
 * no newline came yet and the line may still be valid, -1 when malformed. */
int vsock_parse_connect(const char *buf, size_t len, uint32_t *port);
/* The same for either "CONNECT <port>\n" or "PARK <port>\n" (*park says
 * which): a parked connection is kept across a snapshot, for the first host
 * client that connects to its port after a restore (docs/snapshot.md). */
int vsock_parse_handshake(const char *buf, size_t len, uint32_t *port, bool *park);

/* For tests and fuzzers: make the device run without its I/O thread;
 * vsock_poll() then does one round of its work (wait up to timeout_ms for
 * host events, process queues and sockets) on the caller's thread.  Call
 * before DRIVER_OK. */
void vsock_set_manual(struct virtio_dev *d);
void vsock_poll(struct virtio_dev *d, int timeout_ms);

/* Number of live connections (for tests). */
unsigned vsock_conn_count(struct virtio_dev *d);

#endif
