/* The state of a virtio-vsock device, shared by its two halves: vsock.c
 * (the device, its I/O thread, the host listener and handshakes) and
 * vsock_conn.c (connections and the packets between guest and host).
 * Internal to src/virtio.  Everything here runs on the I/O thread (or on the
 * caller of vsock_poll()); nothing is locked. */
#ifndef MSB_VIRTIO_VSOCK_DEV_H
#define MSB_VIRTIO_VSOCK_DEV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>
#include <time.h>

#include "virtio/device.h"
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
	bool parked;   /* opened with "PARK <port>": a restore keeps it for the next host client */
	bool detached; /* restored without its host socket (fd -1): the guest's data is dropped */
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
	bool warned_ctrl_full; /* said once that control packets were dropped */
	struct virtq_chain chain;
};

static inline uint64_t vsock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline struct virtq *vsock_rxq(struct virtio_vsock *v)
{
	return &v->dev.vqs[VSOCK_QUEUE_RX];
}

static inline struct virtq *vsock_txq(struct virtio_vsock *v)
{
	return &v->dev.vqs[VSOCK_QUEUE_TX];
}

/* Connections (vsock_conn.c).  Closed connections stay in the list, dead,
 * until vsock_conns_reap() at the end of a round. */
struct vsock_conn *vsock_conn_new(struct virtio_vsock *v, int fd, enum conn_state state);
struct vsock_conn *vsock_conn_detached(struct virtio_vsock *v);
void vsock_conn_close(struct virtio_vsock *v, struct vsock_conn *c);
void vsock_conn_reset(struct virtio_vsock *v, struct vsock_conn *c);
void vsock_conns_reap(struct virtio_vsock *v);
uint32_t vsock_alloc_port(struct virtio_vsock *v);
int vsock_ctrl_queue(struct virtio_vsock *v, uint32_t local, uint32_t peer, uint16_t op,
		     uint32_t flags);
void vsock_tx_phase(struct virtio_vsock *v);
void vsock_rx_phase(struct virtio_vsock *v);
void vsock_conn_flush(struct virtio_vsock *v, struct vsock_conn *c);
bool vsock_wants_to_send(const struct vsock_conn *c);
uint32_t vsock_peer_credit(const struct vsock_conn *c);
struct vsock_conn *vsock_conn_find(struct virtio_vsock *v, uint32_t local, uint32_t peer);

#endif
