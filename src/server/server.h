/* The msb server: HTTP routes, JSON-RPC, API keys and MCP in front of a
 * sandbox backend (backend.h).  docs/api.md and docs/mcp.md describe the wire
 * protocol; this header is the C interface the CLI and the tests use.
 *
 *   struct msb_server *s;
 *   msb_server_new(&cfg, backend, &s, &err);   configure (no sockets yet)
 *   msb_server_listen(s, &err);                bind and serve on threads
 *   ... until SIGTERM ...
 *   msb_server_free(s);                        stop serving, backend shutdown
 *
 * srv_handle() is the whole request logic without sockets: the HTTP layer,
 * the unit tests and the fuzzer all call it. */
#ifndef MSB_SERVER_SERVER_H
#define MSB_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "server/backend.h"

#define SRV_DEFAULT_PORT    5555
#define SRV_MAX_BODY	    (2u << 20) /* JSON bodies: upstream's (axum's) 2 MiB */
#define SRV_MAX_CONNECTIONS 256
#define SRV_IDLE_TIMEOUT_S  60
#define MSB_SERVER_VERSION  "0.1.0" /* serverInfo.version (MCP), matches msb -V */

struct msb_server_config {
	const char *host;	  /* an IP literal; NULL = 127.0.0.1 */
	uint16_t port;		  /* 0 = any free port (msb_server_port() tells) */
	const char *key;	  /* server.key contents; NULL only with dev */
	bool dev;		  /* no authentication */
	const char *project_dir;  /* where sandboxes' Sandboxfile lives (for the backend) */
	size_t max_body;	  /* 0 = SRV_MAX_BODY */
	unsigned max_connections; /* 0 = SRV_MAX_CONNECTIONS */
	unsigned idle_timeout_s;  /* 0 = SRV_IDLE_TIMEOUT_S */
};

struct msb_server;

/* Copies what it needs from cfg; `be` must outlive the server.  *out is
 * owned by the caller (msb_server_free). */
int msb_server_new(const struct msb_server_config *cfg, const struct sandbox_backend *be,
		   struct msb_server **out, struct msb_err *err);
/* Binds host:port and starts serving on libmicrohttpd's threads. */
int msb_server_listen(struct msb_server *s, struct msb_err *err);
/* The bound port (after msb_server_listen). */
uint16_t msb_server_port(const struct msb_server *s);
/* Stops accepting, ends open streams, waits for the connection threads,
 * then asks the backend to stop its sandboxes; frees s.  NULL is fine. */
void msb_server_free(struct msb_server *s);

/* ---- the request logic, without sockets ----------------------------------------------- */

/* One request; all strings borrowed.  Header values are NULL when absent. */
struct srv_request {
	const char *method; /* "GET", "POST", ... */
	const char *path;   /* without the query string */
	const char *content_type, *accept, *authorization, *proxy_authorization, *origin;
	const char *mcp_session_id, *mcp_protocol_version;
	const char *body;
	size_t body_len;
	bool body_too_large; /* the HTTP layer stopped reading at max_body */
};

struct srv_stream; /* a streamed response body (stream.h) */

#define SRV_MAX_EXTRA_HEADERS 4
struct srv_reply {
	int status;
	const char *content_type; /* static string */
	char *body;		  /* owned; may be NULL with len 0 */
	size_t len;
	struct {
		const char *name; /* static */
		char *value;	  /* owned */
	} headers[SRV_MAX_EXTRA_HEADERS];
	unsigned nheaders;
	struct srv_stream *stream; /* owned; when set, the body comes from it */
};

/* Fills `rp` for `rq`.  Never fails: every problem becomes an HTTP reply. */
void srv_handle(struct msb_server *s, const struct srv_request *rq, struct srv_reply *rp);
void srv_reply_release(struct srv_reply *rp);

/* True once msb_server_free() began: long streams end early. */
bool srv_stopping(const struct msb_server *s);

#endif
