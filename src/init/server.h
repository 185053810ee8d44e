/* The agent server inside msb-init: one poll() loop that accepts host
 * connections, runs commands for them and streams their output with
 * per-stream flow control (docs/agent-protocol.md).
 *
 * The same loop runs as PID 1 in the guest (vsock listeners) and as an
 * ordinary host process for tests (`msb-init --serve-unix PATH`, which also
 * speaks msb-vmm's hybrid "CONNECT <port>" handshake so that host clients
 * use exactly one code path).
 */
#ifndef MSB_INIT_SERVER_H
#define MSB_INIT_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

enum listener_role {
	LISTEN_AGENT,  /* each connection speaks the agent protocol */
	LISTEN_POWER,  /* each connection requests an orderly power-off */
	LISTEN_HYBRID, /* "CONNECT <port>\n" first, then as that port (tests) */
};

struct pid1;

struct server_opts {
	bool pid1;	      /* reap every child; the guest's init */
	struct pid1 *p1;      /* with pid1: its state, for SETUP's root; else NULL */
	const char *hostname; /* announced in HELLO and READY; NULL: gethostname() */
	/* Opens a non-blocking socket connecting to the host's ready port, or
	 * returns -1 (nobody to tell; not an error).  NULL: no announcement. */
	int (*ready_connect)(void *ctx);
	void *ready_ctx;
};

struct server;

/* Creates the server; it owns nothing yet.  NULL on failure (err filled). */
struct server *server_new(const struct server_opts *opts, struct msb_err *err);
/* Hands a listening socket over (the server closes it). */
int server_add_listener(struct server *s, int fd, enum listener_role role, struct msb_err *err);
/* A failure during start-up (a mount, the hostname...): sent to every host
 * that connects, as ERROR frames with id 0 after the HELLO reply. */
void server_add_boot_error(struct server *s, const struct msb_err *e);
/* Runs until a host asks for shutdown (returns 0) or the loop cannot go on
 * (-1).  Before returning 0 every command's process tree has been killed. */
int server_run(struct server *s, struct msb_err *err);
void server_free(struct server *s);

#endif
