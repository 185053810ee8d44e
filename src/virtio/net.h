/* virtio-net's pure parts, for the device (net.c), its unit tests and its
 * fuzz target.  Internal to src/virtio; msb-vmm sees virtio_net_new() in
 * virtio.h.
 *
 * The backend is a stream socket speaking QEMU's "stream" netdev protocol, as
 * passt does: every Ethernet frame is preceded by its length as a 4-byte
 * big-endian number.  Both directions are untrusted: the guest's transmit
 * chains and the backend's stream are parsed here, bounds-checked, into
 * buffers the device owns.
 */
#ifndef MSB_VIRTIO_NET_H
#define MSB_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>

#include "virtio/virtqueue.h"
#include "vmm/guest_mem.h"

#define VIRTIO_ID_NET 1u

/* struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start,
 * csum_offset, num_buffers (VERSION_1 always has num_buffers). */
#define VNET_HDR_LEN 12u
/* An Ethernet header, the smallest frame we pass on. */
#define VNET_MIN_FRAME 14u
/* The largest frame either way: the guest's MTU is 1500 (VIRTIO_NET_F_MTU and
 * passt's --mtu), so 1514 plus a VLAN tag; larger frames are dropped. */
#define VNET_MAX_FRAME 1522u
/* The stream's length prefix. */
#define VNET_PREFIX 4u

/* A transmit chain (driver to device): the header, then the frame, all in
 * readable buffers.  Copies the frame into out[VNET_MAX_FRAME] and sets *len.
 * -1 with *why (static text) for a chain that is not a frame we pass on:
 * shorter than the header plus an Ethernet header, larger than
 * VNET_MAX_FRAME, or with writable buffers. */
int vnet_tx_frame(const struct guest_mem *m, const struct virtq_chain *c, uint8_t *out, size_t *len,
		  const char **why);

/* The frame (with its length prefix) announcing the guest's MAC to the
 * backend when the device starts with one (net.c). */
#define VNET_ANNOUNCE_LEN (VNET_PREFIX + 60u)
void vnet_announce_frame(const uint8_t mac[6], uint8_t out[VNET_ANNOUNCE_LEN]);

/* The handshake helper (net.c "passt and the guest's SYN-ACK").  For a frame
 * the guest transmits that is an IPv4 TCP segment with SYN and ACK set (and
 * no RST or FIN): writes into out the frame that completes the handshake on
 * the peer's behalf (Ethernet, IPv4, TCP ACK: seq = the segment's ack, ack =
 * its seq + 1, addresses and ports swapped, checksums filled) and returns its
 * length, VNET_SYNACK_REPLY_LEN.  0 for any other frame. */
#define VNET_SYNACK_REPLY_LEN 54u
size_t vnet_synack_reply(const uint8_t *f, size_t len, uint8_t out[VNET_SYNACK_REPLY_LEN]);

/* Frames the guest transmitted that the device dropped because the backend
 * could not take them at once (its socket buffer was full).  The vCPU never
 * waits for the backend (net.c). */
struct virtio_dev;
uint64_t virtio_net_tx_dropped(const struct virtio_dev *d);

/* The next frame in `buf` (`n` bytes received from the backend so far):
 * 1 with *off and *flen (where the frame is) and *used (prefix + frame, to drop
 * from the buffer); 0 when more bytes are needed; -1 for a length no frame
 * has (0, or above 65535: a corrupt stream).  Frames shorter than
 * VNET_MIN_FRAME or longer than VNET_MAX_FRAME are returned too: the caller
 * drops them. */
int vnet_stream_next(const uint8_t *buf, size_t n, size_t *off, size_t *flen, size_t *used);

#endif
