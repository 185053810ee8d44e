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
#include <unistd.h>

#include "common/log.h"
#include "virtio/virtio_spec.h"
#include "virtio/vsock_dev.h"

/* epoll tags for the two descriptors that are not connections. */
static char tag_kick, tag_listen;

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
			v->nconns < VSOCK_MAX_CONNS ? vsock_conn_new(v, fd, CONN_HANDSHAKE) : NULL;
		if (!c) {
			close(fd);
			continue;
		}
		c->deadline_ms = vsock_now_ms() + HANDSHAKE_TIMEOUT_MS;
	}
}

/* A parked connection a restore brought back for guest port `port`. */
static struct vsock_conn *find_parked(struct virtio_vsock *v, uint32_t port)
{
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		if (!c->dead && c->detached && c->parked && c->peer_port == port)
			return c;
	return NULL;
}

/* The host client on `h` takes over the parked connection `p`: its socket
 * becomes p's and the guest sees nothing but the data that follows. */
static void adopt(struct virtio_vsock *v, struct vsock_conn *h, struct vsock_conn *p)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "OK %u\n", p->local_port);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				 .data.ptr = p};
	if (epoll_ctl(v->epoll_fd, EPOLL_CTL_MOD, h->fd, &ev) < 0 ||
	    send(h->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		vsock_conn_close(v, h);
		return;
	}
	p->fd = h->fd;
	p->detached = p->parked = false;
	p->readable = p->writable = true;
	p->hup = h->hup;
	h->fd = -1; /* now p's */
	vsock_conn_close(v, h);
}

/* Reads "CONNECT <port>\n" (or "PARK <port>\n") without taking any byte
 * after it. */
static void host_handshake(struct virtio_vsock *v, struct vsock_conn *c)
{
	char line[32];
	ssize_t n = recv(c->fd, line, sizeof(line), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		c->readable = false;
		return;
	}
	uint32_t port = 0;
	bool park = false;
	int len = n > 0 ? vsock_parse_handshake(line, (size_t)n, &port, &park) : -1;
	if (len == 0) {
		c->readable = false; /* wait for the rest of the line */
		return;
	}
	if (len < 0) {
		/* Take what was peeked so that the host reads EOF, not a reset. */
		if (n > 0 && recv(c->fd, line, (size_t)n, MSG_DONTWAIT) < 0)
			msb_debug("virtio vsock: draining a bad handshake: %s", strerror(errno));
		vsock_conn_close(v, c);
		return;
	}
	if (recv(c->fd, line, (size_t)len, MSG_DONTWAIT) != len) {
		vsock_conn_close(v, c);
		return;
	}
	struct vsock_conn *p = park ? NULL : find_parked(v, port);
	if (p) {
		adopt(v, c, p);
		return;
	}
	c->local_port = vsock_alloc_port(v);
	c->peer_port = port;
	c->parked = park;
	c->state = CONN_CONNECTING;
	if (vsock_ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_REQUEST, 0) < 0)
		vsock_conn_close(v, c);
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

	uint64_t now = vsock_now_ms();
	for (struct vsock_conn *c = v->conns; c; c = c->next) {
		if (c->dead)
			continue;
		if (c->state == CONN_HANDSHAKE && c->readable)
			host_handshake(v, c);
		else if (c->state == CONN_HANDSHAKE && now >= c->deadline_ms)
			vsock_conn_close(v, c);
		else if (c->state == CONN_CONNECTING && c->hup)
			vsock_conn_reset(v, c); /* the host gave up waiting */
	}
	if (virtio_dev_running(&v->dev)) {
		vsock_tx_phase(v);
		for (struct vsock_conn *c = v->conns; c; c = c->next)
			if (!c->dead && c->writable && c->buf_end > c->buf_start)
				vsock_conn_flush(v, c);
		vsock_rx_phase(v);
		if (v->rx_pushed) {
			v->rx_pushed = false;
			virtio_dev_queue_done(&v->dev, vsock_rxq(v));
		}
	}
	vsock_conns_reap(v);

	if (!virtio_dev_running(&v->dev))
		return false;
	if (v->ctrl_len + 2 <= CTRL_MAX && virtq_has_avail(vsock_txq(v), v->dev.mem))
		return true;
	if (!virtq_has_avail(vsock_rxq(v), v->dev.mem))
		return false;
	if (v->ctrl_len)
		return true;
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		if (vsock_wants_to_send(c) && vsock_peer_credit(c))
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

static void drop_conns(struct virtio_vsock *v)
{
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		vsock_conn_close(v, c);
	vsock_conns_reap(v);
	v->ctrl_len = v->ctrl_head = 0;
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
	drop_conns(v);
}

/* Between two rounds nothing is half done: every chain a round pops is
 * pushed or given back within it.  Connections, their buffers and the
 * control packets not yet delivered stay as they are. */
static void vsock_pause(struct virtio_dev *d)
{
	struct virtio_vsock *v = (struct virtio_vsock *)d;
	if (!v->thread_running)
		return;
	__atomic_store_n(&v->stop, true, __ATOMIC_RELEASE);
	kick(v);
	pthread_join(v->thread, NULL);
	v->thread_running = false;
}

/* Device state: the guest CID, the next local port, the established
 * connections and the control packets not yet delivered:
 *
 *   u64 cid, u32 next port, u32 connections, each:
 *     u32 local port, peer port, flags (1 parked, 2 host EOF, 4/8 the
 *     guest shut its receiving/sending side), rx_cnt, fwd_cnt,
 *     last fwd_cnt sent, tx_cnt, peer buf_alloc, peer fwd_cnt
 *   u32 control packets, each: u32 local port, peer port, u16 op, u32 flags
 *
 * A restore keeps them: the guest's sockets stay connected (no transport
 * reset, the guest keeps the snapshot's CID).  Their host sockets belong to
 * the process that took the snapshot, so each comes back detached: what the
 * guest sends on it is dropped (its writer goes on running) until it closes
 * it, except that a parked one is handed to the first host client that
 * connects to its guest port.  Data the host had not yet written out is
 * dropped with them (a parked connection holding some is not parked). */
#define CF_PARKED   1u
#define CF_HOST_EOF 2u
#define CF_SHUT_RCV 4u
#define CF_SHUT_SND 8u

static void vsock_save(struct virtio_dev *d, struct vsnap_w *w)
{
	struct virtio_vsock *v = (struct virtio_vsock *)d;
	vsnap_put_u64(w, v->guest_cid);
	vsnap_put_u32(w, v->next_port);
	uint32_t n = 0;
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		n += !c->dead && c->state == CONN_ESTABLISHED;
	vsnap_put_u32(w, n);
	for (struct vsock_conn *c = v->conns; c; c = c->next) {
		if (c->dead || c->state != CONN_ESTABLISHED)
			continue;
		bool pending = c->buf_end != c->buf_start;
		uint32_t flags =
			(c->parked && !pending && !c->host_eof && !c->peer_shutdown ? CF_PARKED
										    : 0) |
			(c->host_eof ? CF_HOST_EOF : 0) |
			(c->peer_shutdown & VSOCK_SHUTDOWN_RCV ? CF_SHUT_RCV : 0) |
			(c->peer_shutdown & VSOCK_SHUTDOWN_SEND ? CF_SHUT_SND : 0);
		vsnap_put_u32(w, c->local_port);
		vsnap_put_u32(w, c->peer_port);
		vsnap_put_u32(w, flags);
		vsnap_put_u32(w, c->rx_cnt);
		vsnap_put_u32(w, c->fwd_cnt + (c->buf_end - c->buf_start));
		vsnap_put_u32(w, c->last_fwd_sent);
		vsnap_put_u32(w, c->tx_cnt);
		vsnap_put_u32(w, c->peer_buf_alloc);
		vsnap_put_u32(w, c->peer_fwd_cnt);
	}
	vsnap_put_u32(w, v->ctrl_len);
	for (unsigned i = 0; i < v->ctrl_len; i++) {
		const struct ctrl_pkt *p = &v->ctrl[(v->ctrl_head + i) % CTRL_MAX];
		vsnap_put_u32(w, p->local_port);
		vsnap_put_u32(w, p->peer_port);
		vsnap_put_u16(w, p->op);
		vsnap_put_u32(w, p->flags);
	}
}

static int vsock_load(struct virtio_dev *d, struct vsnap_r *r, struct msb_err *err)
{
	struct virtio_vsock *v = (struct virtio_vsock *)d;
	uint64_t cid = vsnap_get_u64(r);
	uint32_t next_port = vsnap_get_u32(r);
	uint32_t n = vsnap_get_u32(r);
	bool bad = r->bad || cid < 3 || cid > UINT32_MAX || next_port < FIRST_LOCAL_PORT ||
		   n > VSOCK_MAX_CONNS;
	for (uint32_t i = 0; i < n && !bad; i++) {
		uint32_t f[9];
		for (int k = 0; k < 9; k++)
			f[k] = vsnap_get_u32(r);
		if (r->bad || (f[2] & ~(CF_PARKED | CF_HOST_EOF | CF_SHUT_RCV | CF_SHUT_SND)) ||
		    f[3] - f[4] > VSOCK_BUF_ALLOC || vsock_conn_find(v, f[0], f[1])) {
			bad = true;
			break;
		}
		struct vsock_conn *c = vsock_conn_detached(v);
		if (!c) {
			drop_conns(v);
			return msb_err_sys(err, "virtio vsock: restoring its connections");
		}
		c->local_port = f[0];
		c->peer_port = f[1];
		c->parked = f[2] & CF_PARKED;
		c->host_eof = f[2] & CF_HOST_EOF;
		c->peer_shutdown = (f[2] & CF_SHUT_RCV ? VSOCK_SHUTDOWN_RCV : 0) |
				   (f[2] & CF_SHUT_SND ? VSOCK_SHUTDOWN_SEND : 0);
		c->rx_cnt = f[3];
		c->fwd_cnt = f[4];
		c->last_fwd_sent = f[5];
		c->tx_cnt = f[6];
		c->peer_buf_alloc = f[7];
		c->peer_fwd_cnt = f[8];
	}
	uint32_t nctrl = bad ? 0 : vsnap_get_u32(r);
	bad = bad || r->bad || nctrl > CTRL_MAX;
	for (uint32_t i = 0; i < nctrl && !bad; i++) {
		struct ctrl_pkt p;
		p.local_port = vsnap_get_u32(r);
		p.peer_port = vsnap_get_u32(r);
		p.op = vsnap_get_u16(r);
		p.flags = vsnap_get_u32(r);
		bad = r->bad;
		if (!bad)
			v->ctrl[v->ctrl_len++] = p;
	}
	if (bad || r->off != r->len) {
		drop_conns(v);
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "virtio vsock: the saved state is malformed; take a new "
				   "snapshot");
	}
	/* The guest keeps the CID it had: its connections stay as they were. */
	v->guest_cid = cid;
	memcpy(v->dev.config, &cid, 8);
	v->next_port = next_port;
	return 0;
}

/* After a restore: a connection whose data was dropped with its host socket
 * owes the guest the credit for it, once it is as much as a running device
 * would announce (note_forwarded); less is answered when the guest asks.  A
 * parked connection, whose host read everything, gets nothing: the guest's
 * first work after the restore is the host's request. */
static bool vsock_restored(struct virtio_dev *d)
{
	struct virtio_vsock *v = (struct virtio_vsock *)d;
	for (struct vsock_conn *c = v->conns; c; c = c->next)
		if (!c->dead && c->fwd_cnt - c->last_fwd_sent >= VSOCK_BUF_ALLOC / 4 &&
		    !c->credit_update_queued &&
		    vsock_ctrl_queue(v, c->local_port, c->peer_port, VSOCK_OP_CREDIT_UPDATE, 0) ==
			    0)
			c->credit_update_queued = true;
	return false;
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
	.pause = vsock_pause,
	.resume = vsock_start,
	.save = vsock_save,
	.load = vsock_load,
	.restored = vsock_restored,
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
