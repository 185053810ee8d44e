/* virtio-net: one receive and one transmit queue, a MAC address, link status
 * and the MTU in the configuration space, no offloads.  The backend is a
 * stream socket with length-prefixed frames (net.h), normally passt's.
 *
 * Transmit runs on the vCPU thread that notified: each chain is one frame,
 * copied out of guest memory by vnet_tx_frame() and written to the backend
 * without waiting.  A backend that cannot take the frame now (its socket
 * buffer is full) gets it dropped, as a NIC drops a frame when its wire is
 * busy, and counted (virtio_net_tx_dropped): the guest's TCP sends it again,
 * and the vCPU never waits for passt.  A frame the backend took in part is
 * kept whole in `pend` and finished first, by the next transmit or by the
 * device's thread when the socket has room, so the stream's framing holds.
 * Receive runs on the device's thread (started at DRIVER_OK): it reads the
 * backend's stream into `rx`, and moves each complete frame into the next
 * receive chain; with no chain available it stops reading until the driver
 * adds one (a kick), so a guest that does not read holds passt back instead
 * of growing a buffer here.
 *
 * passt and the guest's SYN-ACK: the passt of Debian 12 (2023-03) does not
 * acknowledge the SYN-ACK of a connection to a forwarded port (-p) until the
 * host's client sends data, so with a protocol where the server speaks first
 * (an SMTP or MySQL greeting, `nc -l` echoing) the guest's accept() never
 * returns and both sides wait: the guest resends its SYN-ACK, passt ignores
 * it.  The device completes the handshake itself: for each SYN-ACK the guest
 * transmits it delivers to the guest the ACK passt would send
 * (vnet_synack_reply()), with a small window that passt's next segment
 * replaces.  A passt that does send its ACK gives the guest a duplicate, which
 * TCP ignores.
 *
 * Without a backend (`--net none`, the base snapshot's VM) the link is down
 * and transmitted frames are dropped.  A restore into a device with a backend
 * brings the link up: the configuration space differs from the snapshot's and
 * the guest gets a configuration interrupt (snapshot.c).  When the backend
 * goes away (EOF, error) the link goes down the same way.  The backend socket
 * is closed only when the device is destroyed, so the transmit path never sees
 * a closed descriptor.
 */
#include "virtio/net.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "virtio/device.h"
#include "virtio/virtio_spec.h"

/* 64, not 256: the guest fills every receive buffer when eth0 comes up, ~300
 * guest kernel instructions each, which a PVM host emulates (256 cost ~60k
 * more per sandbox start).  64 buffers of ~1.5 KiB still hold ~96 KiB, and
 * with none free the device waits (want_buffers) instead of dropping. */
#define NET_QUEUE_SIZE 64
#define NET_RX	       0
#define NET_TX	       1

#define VIRTIO_NET_F_MTU     3
#define VIRTIO_NET_F_MAC     5
#define VIRTIO_NET_F_STATUS  16
#define VIRTIO_NET_S_LINK_UP 1u

/* Configuration space: mac[6], status, max_virtqueue_pairs, mtu (le16 each). */
#define CFG_STATUS 6
#define CFG_PAIRS  8
#define CFG_MTU	   10
#define CFG_LEN	   12
#define NET_MTU	   1500

/* What the device keeps of the backend's stream: several frames' worth, read
 * in one recv() where the backend has them.  At least one frame of the
 * largest length the stream can announce (65535), so that an oversized frame
 * is always read whole and dropped instead of stalling the stream. */
#define NET_RXBUF (2u * (VNET_PREFIX + 65535u))

/* Frames of the device's own waiting for a receive chain; more are dropped
 * (the guest resends its SYN-ACK and gets another). */
#define NET_OWN_FRAMES 8

struct virtio_net {
	struct virtio_dev dev;
	int backend; /* connected stream socket, or -1; closed in destroy only */
	int kick_fd; /* eventfd: receive buffers were added, or stop */
	pthread_t thread;
	bool thread_running;
	bool stop;	   /* atomic */
	bool dead;	   /* atomic: the backend ended; the link is down */
	bool want_buffers; /* the thread: a frame waits for a receive chain */
	bool tx_warned;
	bool drop_warned;
	uint64_t tx_dropped; /* atomic: frames dropped because the backend was busy */
	size_t rxlen;
	uint8_t rx[NET_RXBUF];
	uint8_t tx[VNET_PREFIX + VNET_MAX_FRAME];
	/* The unsent end of a frame the backend took in part: pend[pend_off,
	 * pend_len).  Under qlock; pend_len read atomically by the thread. */
	size_t pend_off, pend_len;
	uint8_t pend[VNET_PREFIX + VNET_MAX_FRAME];
	/* Frames the device itself delivers to the guest (the SYN-ACK's ACK):
	 * a small ring under qlock, filled by transmit, emptied by deliver. */
	uint8_t own[NET_OWN_FRAMES][VNET_SYNACK_REPLY_LEN];
	unsigned own_head, own_count;
	struct virtq_chain txchain, rxchain;
};

/* ---- pure parts (net.h) ------------------------------------------------------- */

int vnet_tx_frame(const struct guest_mem *m, const struct virtq_chain *c, uint8_t *out, size_t *len,
		  const char **why)
{
	*len = 0;
	if (c->nreadable != c->nbufs) {
		*why = "a transmit chain with writable buffers";
		return -1;
	}
	if (c->read_len < (uint64_t)VNET_HDR_LEN + VNET_MIN_FRAME) {
		*why = "a transmit chain shorter than the header and an Ethernet header";
		return -1;
	}
	uint64_t flen = c->read_len - VNET_HDR_LEN;
	if (flen > VNET_MAX_FRAME) {
		*why = "a transmitted frame larger than the MTU allows";
		return -1;
	}
	if (virtq_chain_read(m, c, VNET_HDR_LEN, out, (size_t)flen) != flen) {
		*why = "a transmit chain that could not be read";
		return -1;
	}
	*len = (size_t)flen;
	return 0;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += get_be16(p + i);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

#define ETH_HLEN_    14u
#define IP4_HLEN     20u
#define TCP_HLEN     20u
#define TCP_FIN	     0x01
#define TCP_SYN	     0x02
#define TCP_RST	     0x04
#define TCP_ACK	     0x10
#define REPLY_WINDOW 1024 /* until passt's next segment says more */

size_t vnet_synack_reply(const uint8_t *f, size_t len, uint8_t out[VNET_SYNACK_REPLY_LEN])
{
	if (len < ETH_HLEN_ + IP4_HLEN || get_be16(f + 12) != 0x0800)
		return 0;
	const uint8_t *ip = f + ETH_HLEN_;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	size_t tot = get_be16(ip + 2);
	if ((ip[0] >> 4) != 4 || ihl < IP4_HLEN || ip[9] != 6 || tot < ihl + TCP_HLEN ||
	    tot > len - ETH_HLEN_ || (get_be16(ip + 6) & 0x3fff) != 0)
		return 0; /* not IPv4 TCP, truncated, or a fragment */
	const uint8_t *tcp = ip + ihl;
	uint8_t fl = tcp[13];
	if ((fl & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) != (TCP_SYN | TCP_ACK))
		return 0;
	uint32_t seq =
		(uint32_t)tcp[4] << 24 | (uint32_t)tcp[5] << 16 | (uint32_t)tcp[6] << 8 | tcp[7];
	memset(out, 0, VNET_SYNACK_REPLY_LEN);
	memcpy(out, f + 6, 6); /* to the guest, from the peer's MAC */
	memcpy(out + 6, f, 6);
	put_be16(out + 12, 0x0800);
	uint8_t *oip = out + ETH_HLEN_, *otcp = oip + IP4_HLEN;
	oip[0] = 0x45;
	put_be16(oip + 2, IP4_HLEN + TCP_HLEN);
	put_be16(oip + 6, 0x4000); /* DF */
	oip[8] = 64;
	oip[9] = 6;
	memcpy(oip + 12, ip + 16, 4);
	memcpy(oip + 16, ip + 12, 4);
	put_be16(oip + 10, csum_fold(csum_add(0, oip, IP4_HLEN)));
	memcpy(otcp, tcp + 2, 2); /* ports swapped */
	memcpy(otcp + 2, tcp, 2);
	memcpy(otcp + 4, tcp + 8, 4); /* seq: what the guest acknowledged */
	seq += 1;
	otcp[8] = (uint8_t)(seq >> 24);
	otcp[9] = (uint8_t)(seq >> 16);
	otcp[10] = (uint8_t)(seq >> 8);
	otcp[11] = (uint8_t)seq;
	otcp[12] = (TCP_HLEN / 4) << 4;
	otcp[13] = TCP_ACK;
	put_be16(otcp + 14, REPLY_WINDOW);
	uint8_t pseudo[12] = {0};
	memcpy(pseudo, oip + 12, 8);
	pseudo[9] = 6;
	put_be16(pseudo + 10, TCP_HLEN);
	put_be16(otcp + 16,
		 csum_fold(csum_add(csum_add(0, pseudo, sizeof(pseudo)), otcp, TCP_HLEN)));
	return VNET_SYNACK_REPLY_LEN;
}

int vnet_stream_next(const uint8_t *buf, size_t n, size_t *off, size_t *flen, size_t *used)
{
	if (n < VNET_PREFIX)
		return 0;
	uint32_t l = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 |
		     (uint32_t)buf[3];
	if (l == 0 || l > 65535)
		return -1;
	if (n - VNET_PREFIX < l)
		return 0;
	*off = VNET_PREFIX;
	*flen = l;
	*used = VNET_PREFIX + (size_t)l;
	return 1;
}

/* ---- the device ----------------------------------------------------------------- */

static void kick(struct virtio_net *n)
{
	uint64_t one = 1;
	if (write(n->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		msb_warn("virtio net: waking the receive thread: %s", strerror(errno));
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* The backend is gone: link down, the guest told through a config interrupt. */
static void backend_lost(struct virtio_net *n, const char *why)
{
	if (__atomic_exchange_n(&n->dead, true, __ATOMIC_ACQ_REL))
		return;
	msb_warn("virtio net: the network backend %s; the guest's link is down", why);
	put_le16(n->dev.config + CFG_STATUS, 0);
	virtio_dev_config_changed(&n->dev);
}

/* One non-blocking send of p[0, len): the bytes the backend took (0 when its
 * buffer is full), or -1 when the backend is gone (errno set). */
static ssize_t send_some(struct virtio_net *n, const uint8_t *p, size_t len)
{
	for (;;) {
		ssize_t w = send(n->backend, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w >= 0)
			return w;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
}

/* Sends what is left of a partly sent frame.  Under qlock.  true when none is
 * left; false when the backend is still busy or gone. */
static bool flush_pending(struct virtio_net *n)
{
	while (n->pend_off < n->pend_len) {
		ssize_t w = send_some(n, n->pend + n->pend_off, n->pend_len - n->pend_off);
		if (w < 0) {
			backend_lost(n, strerror(errno));
			return false;
		}
		if (w == 0)
			return false;
		n->pend_off += (size_t)w;
	}
	n->pend_off = 0;
	__atomic_store_n(&n->pend_len, 0, __ATOMIC_RELEASE);
	return true;
}

static void count_drop(struct virtio_net *n)
{
	uint64_t k = __atomic_add_fetch(&n->tx_dropped, 1, __ATOMIC_RELAXED);
	if (!n->drop_warned)
		msb_debug("virtio net: the backend is busy; dropping transmitted frames (%llu so "
			  "far)",
			  (unsigned long long)k);
	n->drop_warned = true;
}

uint64_t virtio_net_tx_dropped(const struct virtio_dev *d)
{
	const struct virtio_net *n = (const struct virtio_net *)d;
	return __atomic_load_n(&n->tx_dropped, __ATOMIC_RELAXED);
}

/* Writes buf[0, total) (a length-prefixed frame) to the backend without
 * waiting: after what is left of an earlier frame, or dropped and counted when
 * the backend is busy.  true when the backend has it (or its start).  Under
 * qlock. */
static bool send_frame(struct virtio_net *n, const uint8_t *buf, size_t total)
{
	if (!flush_pending(n)) {
		if (!__atomic_load_n(&n->dead, __ATOMIC_ACQUIRE))
			count_drop(n);
		return false;
	}
	ssize_t w = send_some(n, buf, total);
	if (w < 0) {
		backend_lost(n, strerror(errno));
		return false;
	}
	if (w == 0) {
		count_drop(n);
		return false;
	}
	if ((size_t)w < total) {
		/* Begun: the rest must follow before any other frame. */
		memcpy(n->pend, buf + w, total - (size_t)w);
		n->pend_off = 0;
		__atomic_store_n(&n->pend_len, total - (size_t)w, __ATOMIC_RELEASE);
		if (n->thread_running)
			kick(n); /* the thread waits for room and finishes it */
	}
	return true;
}

static uint32_t transmit(struct virtio_dev *d, const struct virtq_chain *c)
{
	struct virtio_net *n = (struct virtio_net *)d;
	size_t len;
	const char *why;
	if (n->backend < 0 || __atomic_load_n(&n->dead, __ATOMIC_ACQUIRE))
		return 0; /* no link: the frame is dropped, as on a cable-less NIC */
	if (vnet_tx_frame(d->mem, c, n->tx + VNET_PREFIX, &len, &why) < 0) {
		if (!n->tx_warned)
			msb_debug("virtio net: dropping %s", why);
		n->tx_warned = true;
		return 0;
	}
	n->tx[0] = (uint8_t)(len >> 24);
	n->tx[1] = (uint8_t)(len >> 16);
	n->tx[2] = (uint8_t)(len >> 8);
	n->tx[3] = (uint8_t)len;
	/* The ACK only for a SYN-ACK passt gets: data after an ACK passt never
	 * saw the SYN-ACK of would make it reset the connection. */
	if (send_frame(n, n->tx, VNET_PREFIX + len) && n->own_count < NET_OWN_FRAMES &&
	    vnet_synack_reply(n->tx + VNET_PREFIX, len,
			      n->own[(n->own_head + n->own_count) % NET_OWN_FRAMES])) {
		n->own_count++;
		if (n->thread_running)
			kick(n);
	}
	return 0;
}

static void net_notify(struct virtio_dev *d, unsigned qi)
{
	struct virtio_net *n = (struct virtio_net *)d;
	if (qi == NET_RX) {
		if (n->thread_running)
			kick(n);
		return;
	}
	if (qi == NET_TX)
		virtio_dev_serve(d, NET_TX, &n->txchain, transmit);
}

/* Writes a frame into the receive chain just popped (large enough for it) and
 * marks it used.  false when the queue broke.  Under qlock. */
static bool put_frame(struct virtio_net *n, const uint8_t *f, size_t flen, bool *pushed)
{
	struct virtio_dev *d = &n->dev;
	if (n->rxchain.write_len < VNET_HDR_LEN + flen) {
		virtq_unpop(&d->vqs[NET_RX]); /* kept for the next frame */
		return true;
	}
	uint8_t hdr[VNET_HDR_LEN] = {0};
	put_le16(hdr + 10, 1); /* num_buffers */
	virtq_chain_write(d->mem, &n->rxchain, 0, hdr, sizeof(hdr));
	virtq_chain_write(d->mem, &n->rxchain, VNET_HDR_LEN, f, flen);
	if (virtq_push(&d->vqs[NET_RX], d->mem, n->rxchain.head, (uint32_t)(VNET_HDR_LEN + flen)) <
	    0) {
		virtio_dev_set_broken(d, "used ring outside guest memory");
		return false;
	}
	*pushed = true;
	return true;
}

/* Pops a receive chain into n->rxchain.  false when there is none (the
 * device then waits for the guest's buffers) or the queue broke.  Under qlock. */
static bool pop_rx(struct virtio_net *n)
{
	struct virtio_dev *d = &n->dev;
	const char *why;
	enum virtq_pop_result pr = virtq_pop(&d->vqs[NET_RX], d->mem, &n->rxchain, &why);
	if (pr == VIRTQ_BROKEN) {
		virtio_dev_set_broken(d, why);
		return false;
	}
	if (pr == VIRTQ_EMPTY) {
		n->want_buffers = true;
		return false;
	}
	return true;
}

/* Moves the complete frames in `rx` into receive chains while there are
 * chains.  The receive thread, under qlock. */
static void deliver(struct virtio_net *n)
{
	struct virtio_dev *d = &n->dev;
	struct virtq *q = &d->vqs[NET_RX];
	bool pushed = false;
	size_t done = 0;
	n->want_buffers = false;
	pthread_mutex_lock(&d->qlock);
	while (n->own_count && virtio_dev_running(d)) {
		if (!pop_rx(n))
			break;
		if (!put_frame(n, n->own[n->own_head], VNET_SYNACK_REPLY_LEN, &pushed))
			break;
		n->own_head = (n->own_head + 1) % NET_OWN_FRAMES;
		n->own_count--;
	}
	while (!n->want_buffers && virtio_dev_running(d)) {
		size_t off, flen, used;
		int r = vnet_stream_next(n->rx + done, n->rxlen - done, &off, &flen, &used);
		if (r < 0) {
			backend_lost(n, "sent a malformed stream");
			done = n->rxlen;
			break;
		}
		if (r == 0)
			break;
		if (flen < VNET_MIN_FRAME || flen > VNET_MAX_FRAME) {
			done += used; /* not a frame the guest takes: dropped */
			continue;
		}
		if (!pop_rx(n))
			break;
		/* A chain too small for the frame is kept and the frame dropped. */
		if (!put_frame(n, n->rx + done + off, flen, &pushed))
			break;
		done += used;
	}
	if (pushed)
		virtio_dev_queue_done(d, q);
	pthread_mutex_unlock(&d->qlock);
	if (done) {
		memmove(n->rx, n->rx + done, n->rxlen - done);
		n->rxlen -= done;
	}
}

static void *net_thread(void *arg)
{
	struct virtio_net *n = arg;
	while (!__atomic_load_n(&n->stop, __ATOMIC_ACQUIRE)) {
		deliver(n);
		bool dead = __atomic_load_n(&n->dead, __ATOMIC_ACQUIRE);
		bool reading = !dead && !n->want_buffers && n->rxlen < sizeof(n->rx);
		bool pending = !dead && __atomic_load_n(&n->pend_len, __ATOMIC_ACQUIRE) > 0;
		short ev = (short)((reading ? POLLIN : 0) | (pending ? POLLOUT : 0));
		struct pollfd p[2] = {{.fd = n->kick_fd, .events = POLLIN},
				      {.fd = ev ? n->backend : -1, .events = ev}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			msb_warn("virtio net: poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents & POLLIN) {
			uint64_t v;
			if (read(n->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
		}
		if (p[1].revents & POLLOUT) {
			pthread_mutex_lock(&n->dev.qlock);
			flush_pending(n);
			pthread_mutex_unlock(&n->dev.qlock);
		}
		if (reading && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t got = recv(n->backend, n->rx + n->rxlen, sizeof(n->rx) - n->rxlen,
					   MSG_DONTWAIT);
			if (got > 0)
				n->rxlen += (size_t)got;
			else if (got == 0)
				backend_lost(n, "closed the connection");
			else if (errno != EAGAIN && errno != EINTR)
				backend_lost(n, strerror(errno));
		}
	}
	return NULL;
}

/* passt learns the guest's MAC from the first frame the guest sends; until
 * then it addresses frames to 00:00:00:00:00:00, which the guest drops, so a
 * connection to a forwarded port (-p) never reaches a guest that has not sent
 * anything yet.  The device announces the MAC itself whenever it starts with
 * a backend: one broadcast frame from the MAC, of the IEEE 802 local
 * experimental EtherType, which passt ignores once it has noted the source. */
void vnet_announce_frame(const uint8_t mac[6], uint8_t out[VNET_ANNOUNCE_LEN])
{
	memset(out, 0, VNET_ANNOUNCE_LEN);
	out[3] = VNET_ANNOUNCE_LEN - 4; /* big-endian length prefix */
	memset(out + 4, 0xff, 6);
	memcpy(out + 10, mac, 6);
	out[16] = 0x88;
	out[17] = 0xb5;
}

static int net_start(struct virtio_dev *d)
{
	struct virtio_net *n = (struct virtio_net *)d;
	if (n->backend < 0)
		return 0;
	if (!__atomic_load_n(&n->dead, __ATOMIC_ACQUIRE)) {
		uint8_t f[VNET_ANNOUNCE_LEN];
		vnet_announce_frame(d->config, f);
		pthread_mutex_lock(&d->qlock);
		send_frame(n, f, sizeof(f)); /* the thread finishes it if need be */
		pthread_mutex_unlock(&d->qlock);
	}
	__atomic_store_n(&n->stop, false, __ATOMIC_RELEASE);
	int e = pthread_create(&n->thread, NULL, net_thread, n);
	if (e) {
		msb_warn("virtio net: starting the receive thread: %s", strerror(e));
		return -1;
	}
	n->thread_running = true;
	return 0;
}

/* Reset, free and pause alike: the thread finishes the delivery it is in (it
 * holds qlock for it) and exits.  `rx` keeps what the backend sent: dropping
 * part of a frame would break the stream. */
static void net_stop(struct virtio_dev *d)
{
	struct virtio_net *n = (struct virtio_net *)d;
	if (!n->thread_running)
		return;
	__atomic_store_n(&n->stop, true, __ATOMIC_RELEASE);
	kick(n);
	pthread_join(n->thread, NULL);
	n->thread_running = false;
}

static void net_destroy(struct virtio_dev *d)
{
	struct virtio_net *n = (struct virtio_net *)d;
	uint64_t dropped = virtio_net_tx_dropped(d);
	if (dropped)
		msb_info("virtio net: %llu transmitted frame(s) dropped while the backend was busy",
			 (unsigned long long)dropped);
	close(n->kick_fd);
	if (n->backend >= 0)
		close(n->backend);
	virtio_dev_release(d);
	free(n);
}

/* The device section of a snapshot: the MAC the guest's driver read. */
static void net_save(struct virtio_dev *d, struct vsnap_w *w)
{
	vsnap_put(w, d->config, 6);
}

static int net_load(struct virtio_dev *d, struct vsnap_r *r, struct msb_err *err)
{
	uint8_t mac[6];
	vsnap_get(r, mac, sizeof(mac));
	if (r->bad || r->off != r->len || (mac[0] & 1))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "virtio net: the saved state is malformed; take a new snapshot");
	memcpy(d->config, mac, sizeof(mac));
	return 0;
}

static const struct virtio_dev_ops net_ops = {
	.name = "net",
	.device_id = VIRTIO_ID_NET,
	.notify = net_notify,
	.start = net_start,
	.stop = net_stop,
	.destroy = net_destroy,
	.pause = net_stop,
	.resume = net_start,
	.save = net_save,
	.load = net_load,
};

struct virtio_dev *virtio_net_new(const struct guest_mem *mem, int irqfd, int backend_fd,
				  const uint8_t mac[6], struct msb_err *err)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n) {
		msb_err_sys(err, "allocating the network device");
		return NULL;
	}
	n->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->kick_fd < 0) {
		msb_err_sys(err, "creating the network device's eventfd");
		free(n);
		return NULL;
	}
	uint64_t features = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS) |
			    (1ull << VIRTIO_NET_F_MTU);
	if (virtio_dev_init(&n->dev, &net_ops, mem, irqfd, features, 2, NET_QUEUE_SIZE, err) < 0) {
		close(n->kick_fd);
		free(n);
		return NULL;
	}
	n->backend = backend_fd;
	memcpy(n->dev.config, mac, 6);
	put_le16(n->dev.config + CFG_STATUS, backend_fd >= 0 ? VIRTIO_NET_S_LINK_UP : 0);
	put_le16(n->dev.config + CFG_PAIRS, 1);
	put_le16(n->dev.config + CFG_MTU, NET_MTU);
	n->dev.config_len = CFG_LEN;
	return &n->dev;
}
