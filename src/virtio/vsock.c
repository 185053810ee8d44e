/* virtio-vsock with a hybrid host side, as Firecracker's: guest stream
 * connections become Unix stream sockets on the host.
 *
 * Host to guest: msb-vmm listens on `uds_path`; a host process connects,
 * writes "CONNECT <port>\n", and we send the guest a REQUEST; on the guest's
 * RESPONSE we answer "OK <local port>\n" and the socket carries the stream;
 * on RST we close the socket.  Guest to host port P: we connect to
 * "<uds_path>_P" and answer RESPONSE, or RST when nothing listens there.
 *
 * One I/O thread per device (started at DRIVER_OK) does all of the work: it
 * waits with epoll on the host sockets and on an eventfd that vCPU threads
 * kick on QueueNotify, so a vCPU never blocks on a host socket.  Host sockets
 * are non-blocking and edge-triggered; `readable` and `writable` remember an
 * edge until a call returns EAGAIN.
 *
 * Flow control is virtio's credit scheme.  Towards the host, each connection
 * accepts at most VSOCK_BUF_ALLOC bytes that are not yet written to its
 * socket (a guest that sends more is reset); what the socket does not take
 * at once waits in the connection's buffer.  Towards the guest, we read from
 * a socket only as much as the guest's advertised credit allows, straight
 * into its receive buffers.  Control packets (RESPONSE, RST, SHUTDOWN, credit
 * updates) wait in a bounded FIFO for receive buffers; while it is nearly
 * full we stop taking transmitted packets, which holds back a guest that
 * sends without giving receive buffers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "virtio/device.h"
#include "virtio/virtio_spec.h"
#include "virtio/vsock.h"

#define VSOCK_QUEUE_SIZE     256
#define VSOCK_MAX_CONNS	     1024
#define CTRL_MAX	     512
#define HANDSHAKE_TIMEOUT_MS 10000
#define FIRST_LOCAL_PORT     (1u << 30)

enum conn_state {
	CONN_HANDSHAKE,	 /* host connected, "CONNECT <port>" not read yet */
	CONN_CONNECTING, /* REQUEST sent to the guest, no answer yet */
	CONN_ESTABLISHED,
};

struct vsock_conn {
	struct vsock_conn *next;
	int fd;
	enum conn_state state;
	bool dead;
	uint32_t local_port; /* the host side's port */
	uint32_t peer_port;  /* the guest's port */
	bool readable, writable, hup;
	bool host_eof; /* the host shut its sending side; SHUTDOWN sent */
	bool shut_wr;  /* we shut the socket's sending side */
	uint32_t peer_shutdown;
	bool credit_requested;
	bool credit_update_queued;
	/* Guest to host. */
	uint32_t rx_cnt;  /* bytes received from the guest */
	uint32_t fwd_cnt; /* of which written to the socket */
	uint32_t last_fwd_sent;
	uint8_t *buf; /* VSOCK_BUF_ALLOC bytes once needed */
	uint32_t buf_start, buf_end;
	/* Host to guest. */
	uint32_t tx_cnt; /* bytes sent to the guest */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint64_t deadline_ms;
};

struct ctrl_pkt {
	uint32_t local_port, peer_port;
	uint16_t op;
	uint32_t flags;
};

struct virtio_vsock {
	struct virtio_dev dev;
	uint64_t guest_cid;
	char uds_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd, kick_fd, epoll_fd;
	pthread_t thread;
	bool thread_running;
	bool manual;
	bool stop; /* atomic */
	struct vsock_conn *conns;
	unsigned nconns;
	uint32_t next_port;
	struct ctrl_pkt ctrl[CTRL_MAX];
	unsigned ctrl_head, ctrl_len;
	bool rx_pushed;
	struct virtq_chain chain;
};

/* epoll tags for the two non-connection descriptors. */
static char tag_kick, tag_listen;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct virtq *rxq(struct virtio_vsock *v)
{
	return &v->dev.vqs[VSOCK_QUEUE_RX];
}

static struct virtq *txq(struct virtio_vsock *v)
{
	return &v->dev.vqs[VSOCK_QUEUE_TX];
}

/* ---- connections ---------------------------------------------------------- */

static struct vsock_conn *conn_find(struct virtio_vsock *v, uint32_t local, uint32_t peer)
{
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		if (!c->dead && c->local_port == local && c->peer_port == peer &&
		    c->state != CONN_HANDSHAKE)
			return c;
	return NULL;
}

static struct vsock_conn *conn_new(struct virtio_vsock *v, int fd, enum conn_state state)
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

/* Closes the host socket; the struct goes at the end of the round. */
static void conn_close(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->dead)
		return;
	close(c->fd);
	c->fd = -1;
	c->dead = true;
	v->nconns--;
}

static void conns_reap(struct virtio_vsock *v)
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

static uint32_t alloc_port(struct virtio_vsock *v)
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

static uint32_t peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* ---- packets to the guest ------------------------------------------------- */

static int ctrl_queue(struct virtio_vsock *v, uint32_t local, uint32_t peer, uint16_t op,
		      uint32_t flags)
{
	if (v->ctrl_len == CTRL_MAX) {
		msb_warn("virtio vsock: the guest gives no receive buffers; dropping a packet");
		return -1;
	}
	v->ctrl[(v->ctrl_head + v->ctrl_len) % CTRL_MAX] =
		(struct ctrl_pkt){.local_port = local, .peer_port = peer, .op = op, .flags = flags};
	v->ctrl_len++;
	return 0;
}

/* Sends RST for the connection and closes its socket. */
static void conn_reset(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state != CONN_HANDSHAKE)
		ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_RST, 0);
	conn_close(v, c);
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
	enum virtq_pop_result r = virtq_pop(rxq(v), v->dev.mem, &v->chain, &why);
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
	if (virtq_push(rxq(v), v->dev.mem, v->chain.head, (uint32_t)sizeof(*h) + h->len) < 0)
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
		struct vsock_conn *c = conn_find(v, p->local_port, p->peer_port);
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

static bool wants_to_send(const struct vsock_conn *c)
{
	return !c->dead && c->state == CONN_ESTABLISHED && c->readable && !c->host_eof &&
	       !(c->peer_shutdown & VSOCK_SHUTDOWN_RCV);
}

/* Moves one packet's worth of data from the host socket to the guest.
 * Returns true when a packet was sent. */
static bool rx_data(struct virtio_vsock *v, struct vsock_conn *c)
{
	uint32_t credit = peer_credit(c);
	if (credit == 0) {
		if (!c->credit_requested &&
		    ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_CREDIT_REQUEST, 0) == 0)
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
	virtq_unpop(rxq(v));
	if (n <= 0) {
		/* A receive buffer with no room for data: use it for nothing else. */
		c->readable = false;
	} else if (got == 0) {
		c->host_eof = true;
		uint32_t flags = VSOCK_SHUTDOWN_SEND | (c->hup ? VSOCK_SHUTDOWN_RCV : 0);
		ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_SHUTDOWN, flags);
	} else if (errno == EAGAIN) {
		c->readable = false;
	} else if (errno != EINTR) {
		conn_reset(v, c);
	}
	return false;
}

static void rx_phase(struct virtio_vsock *v)
{
	bool progress = true;
	while (progress && virtio_dev_running(&v->dev)) {
		progress = false;
		if (!ctrl_flush(v))
			return;
		for (struct vsock_conn *c = v->conns; c; c = c->next) {
			if (!wants_to_send(c))
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
	if ((c->peer_shutdown & VSOCK_SHUTDOWN_SEND) && !c->shut_wr) {
		shutdown(c->fd, SHUT_WR);
		c->shut_wr = true;
	}
	if (c->peer_shutdown == (VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV))
		conn_reset(v, c); /* the guest waits for our RST to finish closing */
}

static void note_forwarded(struct virtio_vsock *v, struct vsock_conn *c, uint32_t n)
{
	c->fwd_cnt += n;
	if (c->fwd_cnt - c->last_fwd_sent >= VSOCK_BUF_ALLOC / 4 && !c->credit_update_queued &&
	    ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_CREDIT_UPDATE, 0) == 0)
		c->credit_update_queued = true;
}

/* Writes out what the connection buffered for the host. */
static void conn_flush(struct virtio_vsock *v, struct vsock_conn *c)
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
			conn_reset(v, c);
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
	if (c->buf_end == c->buf_start) {
		struct iovec iov[64];
		size_t span;
		int n = virtq_chain_iov(v->dev.mem, &v->chain, false, hdr, len, iov, 64, &span);
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = n > 0 ? sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			conn_reset(v, c);
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
			conn_reset(v, c);
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
		ctrl_queue(v, h->dst_port, h->src_port, VSOCK_OP_RST, 0);
		return;
	}
	struct vsock_conn *c = conn_new(v, fd, CONN_ESTABLISHED);
	if (!c) {
		ctrl_queue(v, h->dst_port, h->src_port, VSOCK_OP_RST, 0);
		return;
	}
	steal_fd(&fd);
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_RESPONSE, 0);
}

/* The guest accepted a connection the host asked for. */
static void guest_accepted(struct virtio_vsock *v, struct vsock_conn *c)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "OK %u\n", c->local_port);
	/* A fresh socket's buffer takes a line this short at once. */
	if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		conn_reset(v, c);
		return;
	}
	c->state = CONN_ESTABLISHED;
}

static void handle_packet(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	if (h->src_cid != v->guest_cid || h->dst_cid != VSOCK_HOST_CID)
		return; /* not ours to answer */
	struct vsock_conn *c = conn_find(v, h->dst_port, h->src_port);
	if (h->type != VSOCK_TYPE_STREAM) {
		if (c)
			conn_close(v, c);
		if (h->op != VSOCK_OP_RST)
			ctrl_queue(v, h->dst_port, h->src_port, VSOCK_OP_RST, 0);
		return;
	}
	if (!c) {
		if (h->op == VSOCK_OP_REQUEST)
			guest_connect(v, h);
		else if (h->op != VSOCK_OP_RST)
			ctrl_queue(v, h->dst_port, h->src_port, VSOCK_OP_RST, 0);
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (peer_credit(c))
		c->credit_requested = false;
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state == CONN_CONNECTING)
			guest_accepted(v, c);
		else
			conn_reset(v, c);
		break;
	case VSOCK_OP_RW:
		if (c->state != CONN_ESTABLISHED || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND) ||
		    h->len > VSOCK_BUF_ALLOC - (c->rx_cnt - c->fwd_cnt)) {
			conn_reset(v, c); /* data out of turn, or beyond our credit */
			break;
		}
		c->rx_cnt += h->len;
		host_write(v, c, h->len);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break; /* the credit fields were taken above */
	case VSOCK_OP_CREDIT_REQUEST:
		if (!c->credit_update_queued &&
		    ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_CREDIT_UPDATE, 0) == 0)
			c->credit_update_queued = true;
		break;
	case VSOCK_OP_SHUTDOWN:
		if (c->state != CONN_ESTABLISHED) {
			conn_reset(v, c);
			break;
		}
		c->peer_shutdown |= h->flags & (VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV);
		maybe_finish(v, c);
		break;
	case VSOCK_OP_RST:
		conn_close(v, c);
		break;
	default: /* REQUEST for a live connection, unknown operations */
		conn_reset(v, c);
		break;
	}
}

static void tx_phase(struct virtio_vsock *v)
{
	bool pushed = false;
	/* Each packet queues at most two control packets. */
	while (virtio_dev_running(&v->dev) && v->ctrl_len + 2 <= CTRL_MAX) {
		const char *why;
		enum virtq_pop_result r = virtq_pop(txq(v), v->dev.mem, &v->chain, &why);
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
			struct vsock_conn *c = conn_find(v, h.dst_port, h.src_port);
			if (c && h.src_cid == v->guest_cid)
				conn_reset(v, c);
		}
		if (virtq_push(txq(v), v->dev.mem, v->chain.head, 0) < 0) {
			virtio_dev_set_broken(&v->dev, "used ring outside guest memory");
			break;
		}
		pushed = true;
	}
	if (pushed)
		virtio_dev_queue_done(&v->dev, txq(v));
}

/* ---- host side ------------------------------------------------------------ */

static void host_accept(struct virtio_vsock *v)
{
	for (;;) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				msb_warn("virtio vsock: accepting on %s: %s", v->uds_path,
					 strerror(errno));
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		struct vsock_conn *c =
			v->nconns < VSOCK_MAX_CONNS ? conn_new(v, fd, CONN_HANDSHAKE) : NULL;
		if (!c) {
			close(fd);
			continue;
		}
		c->deadline_ms = now_ms() + HANDSHAKE_TIMEOUT_MS;
	}
}

/* Reads "CONNECT <port>\n" without taking any byte after it. */
static void host_handshake(struct virtio_vsock *v, struct vsock_conn *c)
{
	char line[32];
	ssize_t n = recv(c->fd, line, sizeof(line), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		c->readable = false;
		return;
	}
	uint32_t port = 0;
	int len = n > 0 ? vsock_parse_connect(line, (size_t)n, &port) : -1;
	if (len == 0) {
		c->readable = false; /* wait for the rest of the line */
		return;
	}
	if (len < 0) {
		/* Take what was peeked so that the host reads EOF, not a reset. */
		if (n > 0 && recv(c->fd, line, (size_t)n, MSG_DONTWAIT) < 0)
			msb_debug("virtio vsock: draining a bad handshake: %s", strerror(errno));
		conn_close(v, c);
		return;
	}
	if (recv(c->fd, line, (size_t)len, MSG_DONTWAIT) != len) {
		conn_close(v, c);
		return;
	}
	c->local_port = alloc_port(v);
	c->peer_port = port;
	c->state = CONN_CONNECTING;
	if (ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_REQUEST, 0) < 0)
		conn_close(v, c);
}

static void handle_event(struct virtio_vsock *v, const struct epoll_event *ev)
{
	if (ev->data.ptr == &tag_kick) {
		uint64_t n;
		if (read(v->kick_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
			msb_warn("virtio vsock: reading the kick eventfd: %s", strerror(errno));
		return;
	}
	if (ev->data.ptr == &tag_listen) {
		host_accept(v);
		return;
	}
	struct vsock_conn *c = ev->data.ptr;
	if (c->dead)
		return;
	if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->writable = true;
	if (ev->events & (EPOLLHUP | EPOLLERR))
		c->hup = true;
}

/* One round: wait for events, then move everything that can move.  Returns
 * true when more work is ready right away. */
static bool vsock_round(struct virtio_vsock *v, int timeout_ms)
{
	struct epoll_event evs[64];
	int n = epoll_wait(v->epoll_fd, evs, 64, timeout_ms);
	for (int i = 0; i < n; i++)
		handle_event(v, &evs[i]);

	uint64_t now = now_ms();
	for (struct vsock_conn *c = v->conns; c; c = c->next) {
		if (c->dead)
			continue;
		if (c->state == CONN_HANDSHAKE && c->readable)
			host_handshake(v, c);
		else if (c->state == CONN_HANDSHAKE && now >= c->deadline_ms)
			conn_close(v, c);
		else if (c->state == CONN_CONNECTING && c->hup)
			conn_reset(v, c); /* the host gave up waiting */
	}
	if (virtio_dev_running(&v->dev)) {
		tx_phase(v);
		for (struct vsock_conn *c = v->conns; c; c = c->next)
			if (!c->dead && c->writable && c->buf_end > c->buf_start)
				conn_flush(v, c);
		rx_phase(v);
		if (v->rx_pushed) {
			v->rx_pushed = false;
			virtio_dev_queue_done(&v->dev, rxq(v));
		}
	}
	conns_reap(v);

	if (!virtio_dev_running(&v->dev))
		return false;
	if (v->ctrl_len + 2 <= CTRL_MAX && virtq_has_avail(txq(v), v->dev.mem))
		return true;
	if (!virtq_has_avail(rxq(v), v->dev.mem))
		return false;
	if (v->ctrl_len)
		return true;
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		if (wants_to_send(c) && peer_credit(c))
			return true;
	return false;
}

static bool any_handshake(struct virtio_vsock *v)
{
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		if (!c->dead && c->state == CONN_HANDSHAKE)
			return true;
	return false;
}

static void *vsock_thread(void *arg)
{
	struct virtio_vsock *v = arg;
	bool more = true;
	while (!__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE))
		more = vsock_round(v, more ? 0 : any_handshake(v) ? 1000 : -1);
	return NULL;
}

void vsock_poll(struct virtio_dev *d, int timeout_ms)
{
	struct virtio_vsock *v = (struct virtio_vsock *)d;
	while (vsock_round(v, timeout_ms))
		timeout_ms = 0;
}

void vsock_set_manual(struct virtio_dev *d)
{
	((struct virtio_vsock *)d)->manual = true;
}

unsigned vsock_conn_count(struct virtio_dev *d)
{
	return ((struct virtio_vsock *)d)->nconns;
}

/* ---- device ------------------------------------------------------------------ */

static void kick(struct virtio_vsock *v)
{
	uint64_t one = 1;
	if (write(v->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		msb_warn("virtio vsock: waking the I/O thread: %s", strerror(errno));
}

static void vsock_notify(struct virtio_dev *d, unsigned q)
{
	kick((struct virtio_vsock *)d);
}

static int vsock_start(struct virtio_dev *d)
{
	struct virtio_vsock *v = (struct virtio_vsock *)d;
	if (v->manual)
		return 0;
	__atomic_store_n(&v->stop, false, __ATOMIC_RELEASE);
	int e = pthread_create(&v->thread, NULL, vsock_thread, v);
	if (e) {
		msb_warn("virtio vsock: starting the I/O thread: %s", strerror(e));
		return -1;
	}
	v->thread_running = true;
	return 0;
}

static void vsock_stop(struct virtio_dev *d)
{
	struct virtio_vsock *v = (struct virtio_vsock *)d;
	if (v->thread_running) {
		__atomic_store_n(&v->stop, true, __ATOMIC_RELEASE);
		kick(v);
		pthread_join(v->thread, NULL);
		v->thread_running = false;
	}
	/* The guest's sockets are gone with the reset: so are the host's. */
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		conn_close(v, c);
	conns_reap(v);
	v->ctrl_len = v->ctrl_head = 0;
}

static void vsock_destroy(struct virtio_dev *d)
{
	struct virtio_vsock *v = (struct virtio_vsock *)d;
	vsock_stop(d);
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		unlink(v->uds_path);
	}
	if (v->kick_fd >= 0)
		close(v->kick_fd);
	if (v->epoll_fd >= 0)
		close(v->epoll_fd);
	virtio_dev_release(d);
	free(v);
}

static const struct virtio_dev_ops vsock_ops = {
	.name = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.notify = vsock_notify,
	.start = vsock_start,
	.stop = vsock_stop,
	.destroy = vsock_destroy,
};

static int vsock_listen(struct virtio_vsock *v, struct msb_err *err)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	memcpy(addr.sun_path, v->uds_path, strlen(v->uds_path) + 1);
	struct stat st;
	/* A socket left behind by an earlier run would make bind() fail. */
	if (lstat(v->uds_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(v->uds_path);
	v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (v->listen_fd < 0)
		return msb_err_sys(err, "creating the vsock socket");
	if (bind(v->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(v->listen_fd, 128) < 0) {
		msb_err_sys(err, "listening on %s", v->uds_path);
		close(v->listen_fd);
		v->listen_fd = -1;
		return -1;
	}
	return 0;
}

struct virtio_dev *virtio_vsock_new(const struct guest_mem *mem, int irqfd, uint64_t guest_cid,
				    const char *uds_path, struct msb_err *err)
{
	if (guest_cid < 3 || guest_cid > UINT32_MAX) {
		msb_err_set(err, MSB_EK_USAGE, 0, "vsock guest CID %llu is reserved; use 3 or more",
			    (unsigned long long)guest_cid);
		return NULL;
	}
	/* Room for "_<port>" after the path, for guest-initiated connections. */
	if (strlen(uds_path) + 12 > sizeof(((struct sockaddr_un *)0)->sun_path)) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "vsock socket path %s is too long; use a path under %zu bytes",
			    uds_path, sizeof(((struct sockaddr_un *)0)->sun_path) - 12);
		return NULL;
	}
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	if (!v) {
		msb_err_sys(err, "allocating the vsock device");
		return NULL;
	}
	v->listen_fd = v->kick_fd = v->epoll_fd = -1;
	if (virtio_dev_init(&v->dev, &vsock_ops, mem, irqfd, 0, 3, VSOCK_QUEUE_SIZE, err) < 0) {
		free(v);
		return NULL;
	}
	v->guest_cid = guest_cid;
	v->next_port = FIRST_LOCAL_PORT;
	strcpy(v->uds_path, uds_path);
	memcpy(v->dev.config, &guest_cid, 8);
	v->dev.config_len = 8;

	v->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	v->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (v->kick_fd < 0 || v->epoll_fd < 0) {
		msb_err_sys(err, "creating the vsock event descriptors");
		goto fail;
	}
	if (vsock_listen(v, err) < 0)
		goto fail;
	struct epoll_event kev = {.events = EPOLLIN, .data.ptr = &tag_kick};
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &tag_listen};
	if (epoll_ctl(v->epoll_fd, EPOLL_CTL_ADD, v->kick_fd, &kev) < 0 ||
	    epoll_ctl(v->epoll_fd, EPOLL_CTL_ADD, v->listen_fd, &lev) < 0) {
		msb_err_sys(err, "watching the vsock descriptors");
		goto fail;
	}
	return &v->dev;
fail:
	vsock_destroy(&v->dev);
	return NULL;
}
