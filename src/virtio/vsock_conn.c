/* virtio-vsock connections: the packets the guest sends (tx_phase), the
 * packets and data it receives (rx_phase), and the per-connection state and
 * credit accounting between them.  See vsock.c for the whole picture. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "virtio/vsock_dev.h"

/* ---- connections ---------------------------------------------------------- */

struct vsock_conn *vsock_conn_find(struct virtio_vsock *v, uint32_t local, uint32_t peer)
{
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		if (!c->dead && c->local_port == local && c->peer_port == peer &&
		    c->state != CONN_HANDSHAKE)
			return c;
	return NULL;
}

struct vsock_conn *vsock_conn_new(struct virtio_vsock *v, int fd, enum conn_state state)
{
	struct vsock_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->state = state;
	c->readable = c->writable = true;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				 .data.ptr = c};
	if (epoll_ctl(v->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		msb_warn("virtio vsock: watching a host socket: %s", strerror(errno));
		free(c);
		return NULL;
	}
	c->next = v->conns;
	v->conns = c;
	v->nconns++;
	return c;
}

/* A connection restored from a snapshot: established in the guest, no host
 * socket until a host client adopts it (host_handshake in vsock.c). */
struct vsock_conn *vsock_conn_detached(struct virtio_vsock *v)
{
	struct vsock_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = -1;
	c->state = CONN_ESTABLISHED;
	c->detached = true;
	c->next = v->conns;
	v->conns = c;
	v->nconns++;
	return c;
}

/* Closes the host socket; the struct goes at the end of the round. */
void vsock_conn_close(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->dead)
		return;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->dead = true;
	v->nconns--;
}

void vsock_conns_reap(struct virtio_vsock *v)
{
	struct vsock_conn **pp = &v->conns;
	while (*pp) {
		struct vsock_conn *c = *pp;
		if (c->dead) {
			*pp = c->next;
			free(c->buf);
			free(c);
		} else {
			pp = &c->next;
		}
	}
}

uint32_t vsock_alloc_port(struct virtio_vsock *v)
{
	for (;;) {
		uint32_t p = v->next_port++;
		if (v->next_port < FIRST_LOCAL_PORT)
			v->next_port = FIRST_LOCAL_PORT;
		bool used = false;
		for (struct vsock_conn *c = v->conns; c && !used; c = c->next)
			used = !c->dead && c->state != CONN_HANDSHAKE && c->local_port == p;
		if (!used)
			return p;
	}
}

uint32_t vsock_peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* ---- packets to the guest ------------------------------------------------- */

int vsock_ctrl_queue(struct virtio_vsock *v, uint32_t local, uint32_t peer, uint16_t op,
		     uint32_t flags)
{
	if (v->ctrl_len == CTRL_MAX) {
		if (!v->warned_ctrl_full)
			msb_warn("virtio vsock: the guest gives no receive buffers; dropping "
				 "control packets");
		v->warned_ctrl_full = true;
		return -1;
	}
	v->ctrl[(v->ctrl_head + v->ctrl_len) % CTRL_MAX] =
		(struct ctrl_pkt){.local_port = local, .peer_port = peer, .op = op, .flags = flags};
	v->ctrl_len++;
	return 0;
}

/* Sends RST for the connection and closes its socket. */
void vsock_conn_reset(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state != CONN_HANDSHAKE)
		vsock_ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_RST, 0);
	vsock_conn_close(v, c);
}

static void fill_hdr(struct virtio_vsock *v, struct vsock_hdr *h, struct vsock_conn *c,
		     uint32_t local, uint32_t peer, uint16_t op, uint32_t flags, uint32_t len)
{
	*h = (struct vsock_hdr){
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = v->guest_cid,
		.src_port = local,
		.dst_port = peer,
		.len = len,
		.type = VSOCK_TYPE_STREAM,
		.op = op,
		.flags = flags,
		.buf_alloc = VSOCK_BUF_ALLOC,
		.fwd_cnt = c ? c->fwd_cnt : 0,
	};
	if (c)
		c->last_fwd_sent = c->fwd_cnt;
}

/* Pops a receive chain large enough for a header.  false when there is none
 * (or the queue broke). */
static bool rx_pop(struct virtio_vsock *v)
{
	const char *why;
	enum virtq_pop_result r = virtq_pop(vsock_rxq(v), v->dev.mem, &v->chain, &why);
	if (r == VIRTQ_BROKEN)
		virtio_dev_set_broken(&v->dev, why);
	if (r != VIRTQ_CHAIN)
		return false;
	if (v->chain.write_len < sizeof(struct vsock_hdr)) {
		virtio_dev_set_broken(&v->dev, "receive buffer smaller than a packet header");
		return false;
	}
	return true;
}

static void rx_push(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	virtq_chain_write(v->dev.mem, &v->chain, 0, h, sizeof(*h));
	if (virtq_push(vsock_rxq(v), v->dev.mem, v->chain.head, (uint32_t)sizeof(*h) + h->len) < 0)
		virtio_dev_set_broken(&v->dev, "used ring outside guest memory");
	v->rx_pushed = true;
}

/* Delivers queued control packets; true when none is left. */
static bool ctrl_flush(struct virtio_vsock *v)
{
	while (v->ctrl_len && virtio_dev_running(&v->dev)) {
		if (!rx_pop(v))
			return false;
		const struct ctrl_pkt *p = &v->ctrl[v->ctrl_head];
		struct vsock_conn *c = vsock_conn_find(v, p->local_port, p->peer_port);
		if (c && p->op == VSOCK_OP_CREDIT_UPDATE)
			c->credit_update_queued = false;
		struct vsock_hdr h;
		fill_hdr(v, &h, c, p->local_port, p->peer_port, p->op, p->flags, 0);
		rx_push(v, &h);
		v->ctrl_head = (v->ctrl_head + 1) % CTRL_MAX;
		v->ctrl_len--;
	}
	return v->ctrl_len == 0;
}

bool vsock_wants_to_send(const struct vsock_conn *c)
{
	return !c->dead && c->state == CONN_ESTABLISHED && c->readable && !c->host_eof &&
	       !(c->peer_shutdown & VSOCK_SHUTDOWN_RCV);
}

/* Moves one packet's worth of data from the host socket to the guest.
 * Returns true when a packet was sent. */
static bool rx_data(struct virtio_vsock *v, struct vsock_conn *c)
{
	uint32_t credit = vsock_peer_credit(c);
	if (credit == 0) {
		if (!c->credit_requested && vsock_ctrl_queue(v, c->local_port, c->peer_port,
							     VSOCK_OP_CREDIT_REQUEST, 0) == 0)
			c->credit_requested = true;
		return false;
	}
	if (!rx_pop(v))
		return false;
	uint64_t room = v->chain.write_len - sizeof(struct vsock_hdr);
	uint64_t cap = room < credit ? room : credit;
	if (cap > VSOCK_MAX_PAYLOAD)
		cap = VSOCK_MAX_PAYLOAD;
	struct iovec iov[64];
	size_t span;
	int n = virtq_chain_iov(v->dev.mem, &v->chain, true, sizeof(struct vsock_hdr), cap, iov, 64,
				&span);
	ssize_t got = n > 0 ? readv(c->fd, iov, n) : -1;
	if (got > 0) {
		struct vsock_hdr h;
		fill_hdr(v, &h, c, c->local_port, c->peer_port, VSOCK_OP_RW, 0, (uint32_t)got);
		rx_push(v, &h);
		c->tx_cnt += (uint32_t)got;
		return true;
	}
	virtq_unpop(vsock_rxq(v));
	if (n <= 0) {
		/* A receive buffer with no room for data: use it for nothing else. */
		c->readable = false;
	} else if (got == 0) {
		c->host_eof = true;
		uint32_t flags = VSOCK_SHUTDOWN_SEND | (c->hup ? VSOCK_SHUTDOWN_RCV : 0);
		vsock_ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_SHUTDOWN, flags);
	} else if (errno == EAGAIN) {
		c->readable = false;
	} else if (errno != EINTR) {
		vsock_conn_reset(v, c);
	}
	return false;
}

void vsock_rx_phase(struct virtio_vsock *v)
{
	bool progress = true;
	while (progress && virtio_dev_running(&v->dev)) {
		progress = false;
		if (!ctrl_flush(v))
			return;
		for (struct vsock_conn *c = v->conns; c; c = c->next) {
			if (!vsock_wants_to_send(c))
				continue;
			if (rx_data(v, c))
				progress = true;
			if (!ctrl_flush(v))
				return;
		}
	}
}

/* ---- packets from the guest ----------------------------------------------- */

/* When the guest has shut its side and everything it sent is written out:
 * pass the shutdown on to the host socket, or finish the connection. */
static void maybe_finish(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->dead || c->buf_end != c->buf_start)
		return;
	if ((c->peer_shutdown & VSOCK_SHUTDOWN_SEND) && !c->shut_wr && !c->detached) {
		shutdown(c->fd, SHUT_WR);
		c->shut_wr = true;
	}
	if (c->peer_shutdown == (VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV))
		vsock_conn_reset(v, c); /* the guest waits for our RST to finish closing */
}

static void note_forwarded(struct virtio_vsock *v, struct vsock_conn *c, uint32_t n)
{
	c->fwd_cnt += n;
	if (c->fwd_cnt - c->last_fwd_sent >= VSOCK_BUF_ALLOC / 4 && !c->credit_update_queued &&
	    vsock_ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_CREDIT_UPDATE, 0) == 0)
		c->credit_update_queued = true;
}

/* Writes out what the connection buffered for the host. */
void vsock_conn_flush(struct virtio_vsock *v, struct vsock_conn *c)
{
	while (c->buf_end > c->buf_start) {
		ssize_t w = send(c->fd, c->buf + c->buf_start, c->buf_end - c->buf_start,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EAGAIN) {
				c->writable = false;
				return;
			}
			if (errno == EINTR)
				continue;
			vsock_conn_reset(v, c);
			return;
		}
		c->buf_start += (uint32_t)w;
		note_forwarded(v, c, (uint32_t)w);
	}
	c->buf_start = c->buf_end = 0;
	maybe_finish(v, c);
}

/* The payload of the packet in v->chain (after its header) goes to the host:
 * straight to the socket when nothing is waiting, the rest into the buffer. */
static void host_write(struct virtio_vsock *v, struct vsock_conn *c, uint32_t len)
{
	const uint64_t hdr = sizeof(struct vsock_hdr);
	uint32_t done = 0;
	if (c->detached) {
		/* Nobody on the host reads it: dropped, so the guest's writer goes on
		 * (a process started before the snapshot keeps running in the copy). */
		c->parked = false; /* its stream is no longer whole */
		note_forwarded(v, c, len);
		return;
	}
	if (c->buf_end == c->buf_start) {
		struct iovec iov[64];
		size_t span;
		int n = virtq_chain_iov(v->dev.mem, &v->chain, false, hdr, len, iov, 64, &span);
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = n > 0 ? sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			vsock_conn_reset(v, c);
			return;
		}
		if (w < 0 && errno == EAGAIN)
			c->writable = false;
		if (w > 0) {
			done = (uint32_t)w;
			note_forwarded(v, c, done);
		}
	}
	if (done == len)
		return;
	if (!c->buf) {
		c->buf = malloc(VSOCK_BUF_ALLOC);
		if (!c->buf) {
			vsock_conn_reset(v, c);
			return;
		}
	}
	uint32_t rest = len - done;
	if (c->buf_end + rest > VSOCK_BUF_ALLOC) {
		memmove(c->buf, c->buf + c->buf_start, c->buf_end - c->buf_start);
		c->buf_end -= c->buf_start;
		c->buf_start = 0;
	}
	/* The credit check before this call keeps buffered data within the size. */
	c->buf_end += (uint32_t)virtq_chain_read(v->dev.mem, &v->chain, hdr + done,
						 c->buf + c->buf_end, rest);
}

/* The guest asks to connect to host port h->dst_port. */
static void guest_connect(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s_%u", v->uds_path, h->dst_port);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (n < 0 || (size_t)n >= sizeof(addr.sun_path) || fd < 0 || v->nconns >= VSOCK_MAX_CONNS ||
	    connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		vsock_ctrl_queue(v, h->dst_port, h->src_port, VSOCK_OP_RST, 0);
		return;
	}
	struct vsock_conn *c = vsock_conn_new(v, fd, CONN_ESTABLISHED);
	if (!c) {
		vsock_ctrl_queue(v, h->dst_port, h->src_port, VSOCK_OP_RST, 0);
		return;
	}
	steal_fd(&fd);
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	vsock_ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_RESPONSE, 0);
}

/* The guest accepted a connection the host asked for. */
static void guest_accepted(struct virtio_vsock *v, struct vsock_conn *c)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "OK %u\n", c->local_port);
	/* A fresh socket's buffer takes a line this short at once. */
	if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		vsock_conn_reset(v, c);
		return;
	}
	c->state = CONN_ESTABLISHED;
}

static void handle_packet(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	if (h->src_cid != v->guest_cid || h->dst_cid != VSOCK_HOST_CID)
		return; /* not ours to answer */
	struct vsock_conn *c = vsock_conn_find(v, h->dst_port, h->src_port);
	if (h->type != VSOCK_TYPE_STREAM) {
		if (c)
			vsock_conn_close(v, c);
		if (h->op != VSOCK_OP_RST)
			vsock_ctrl_queue(v, h->dst_port, h->src_port, VSOCK_OP_RST, 0);
		return;
	}
	if (!c) {
		if (h->op == VSOCK_OP_REQUEST)
			guest_connect(v, h);
		else if (h->op != VSOCK_OP_RST)
			vsock_ctrl_queue(v, h->dst_port, h->src_port, VSOCK_OP_RST, 0);
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (vsock_peer_credit(c))
		c->credit_requested = false;
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state == CONN_CONNECTING)
			guest_accepted(v, c);
		else
			vsock_conn_reset(v, c);
		break;
	case VSOCK_OP_RW:
		if (c->state != CONN_ESTABLISHED || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND) ||
		    h->len > VSOCK_BUF_ALLOC - (c->rx_cnt - c->fwd_cnt)) {
			vsock_conn_reset(v, c); /* data out of turn, or beyond our credit */
			break;
		}
		c->rx_cnt += h->len;
		host_write(v, c, h->len);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break; /* the credit fields were taken above */
	case VSOCK_OP_CREDIT_REQUEST:
		if (!c->credit_update_queued && vsock_ctrl_queue(v, c->local_port, c->peer_port,
								 VSOCK_OP_CREDIT_UPDATE, 0) == 0)
			c->credit_update_queued = true;
		break;
	case VSOCK_OP_SHUTDOWN:
		if (c->state != CONN_ESTABLISHED) {
			vsock_conn_reset(v, c);
			break;
		}
		c->peer_shutdown |= h->flags & (VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV);
		maybe_finish(v, c);
		break;
	case VSOCK_OP_RST:
		vsock_conn_close(v, c);
		break;
	default: /* REQUEST for a live connection, unknown operations */
		vsock_conn_reset(v, c);
		break;
	}
}

void vsock_tx_phase(struct virtio_vsock *v)
{
	bool pushed = false;
	/* Each packet queues at most two control packets. */
	while (virtio_dev_running(&v->dev) && v->ctrl_len + 2 <= CTRL_MAX) {
		const char *why;
		enum virtq_pop_result r = virtq_pop(vsock_txq(v), v->dev.mem, &v->chain, &why);
		if (r == VIRTQ_EMPTY)
			break;
		if (r == VIRTQ_BROKEN) {
			virtio_dev_set_broken(&v->dev, why);
			break;
		}
		struct vsock_hdr h;
		if (vsock_parse_tx(v->dev.mem, &v->chain, &h, &why) == 0) {
			handle_packet(v, &h);
		} else if (v->chain.read_len >= sizeof(h)) {
			/* A header with an impossible length: reset that connection. */
			msb_debug("virtio vsock: dropping a packet: %s", why);
			struct vsock_conn *c = vsock_conn_find(v, h.dst_port, h.src_port);
			if (c && h.src_cid == v->guest_cid)
				vsock_conn_reset(v, c);
		}
		if (virtq_push(vsock_txq(v), v->dev.mem, v->chain.head, 0) < 0) {
			virtio_dev_set_broken(&v->dev, "used ring outside guest memory");
			break;
		}
		pushed = true;
	}
	if (pushed)
		virtio_dev_queue_done(&v->dev, vsock_txq(v));
}
