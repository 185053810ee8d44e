/* Internals of the agent client for requests other than EXEC (file transfers,
 * metrics: files_client.c).  Such a request registers a handler; the client's
 * frame loop (agent_client_pump) hands it every frame with its id. */
#ifndef MSB_AGENT_CLIENT_INT_H
#define MSB_AGENT_CLIENT_INT_H

#include "agent/client.h"
#include "agent/proto.h"

struct agent_req {
	struct agent_req *next;
	uint32_t id;
	/* 0: handled; -1: the connection cannot go on (err set). */
	int (*on_frame)(struct agent_req *r, struct agent_client *c, const struct agent_hdr *h,
			const uint8_t *p, struct msb_err *err);
};

/* A fresh request id (never 0). */
uint32_t agent_client_new_id(struct agent_client *c);
void agent_client_req_add(struct agent_client *c, struct agent_req *r);
void agent_client_req_del(struct agent_client *c, struct agent_req *r);
/* The outgoing buffer: frames appended here are sent by agent_client_pump(). */
struct agent_buf *agent_client_out(struct agent_client *c);

#endif
