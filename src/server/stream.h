/* Streamed response bodies: a command's output as it comes (NDJSON or
 * Server-Sent Events), a file's bytes as they are read.  The HTTP layer pulls
 * bytes with srv_stream_read() on the connection's own thread. */
#ifndef MSB_SERVER_STREAM_H
#define MSB_SERVER_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "server/backend.h"

struct msb_server;
struct srv_stream;

enum srv_stream_format {
	STREAM_NDJSON, /* application/x-ndjson: one JSON object a line */
	STREAM_SSE,    /* text/event-stream: "event: <type>\ndata: <json>\n\n" */
};

/* The events of exec `id` (already started), ending with its "exit" (or an
 * "error") event.  With `announce`, the first event is
 * {"event":"started","exec":id}.  The stream owns the exec: freeing it calls
 * the backend's exec_release, so a client that goes away kills its process.
 * NULL when out of memory. */
struct srv_stream *srv_stream_exec_new(struct msb_server *s, const char *id,
				       enum srv_stream_format fmt, bool announce);

/* Seconds of silence after which a keep-alive goes out (an SSE comment, or an
 * empty NDJSON line), so that a vanished client is noticed. */
#define STREAM_KEEPALIVE_S 15
/* How long one backend wait lasts before the stream checks for shutdown. */
#define STREAM_POLL_MS 250

/* The bytes of an open backend read handle `h`; the stream owns it. */
struct srv_stream *srv_stream_file_new(struct msb_server *s, void *h);

/* Fills up to `max` bytes: > 0 bytes written, 0 = the body is complete,
 * -1 = abort the connection (backend failure mid-file). */
ssize_t srv_stream_read(struct srv_stream *st, char *buf, size_t max);

const char *srv_stream_content_type(const struct srv_stream *st);

/* Called between backend waits: false means the client is gone, and the
 * stream ends at once (the HTTP layer checks its socket), so a silent
 * process is not kept for a client that left. */
void srv_stream_set_alive_check(struct srv_stream *st, bool (*alive)(void *arg), void *arg);
void srv_stream_free(struct srv_stream *st);

/* Encodes one event (pure; used by the stream and the tests).  Output that
 * is valid UTF-8 goes as "data", anything else as "data_base64".  Returns a
 * malloc'd frame and its length, NULL when out of memory. */
char *stream_encode_event(enum srv_stream_format fmt, const struct sb_exec_event *ev, size_t *len);
/* Encodes an arbitrary JSON object as a frame of `event` type. */
char *stream_encode_json(enum srv_stream_format fmt, const char *event, json_t *obj, size_t *len);

#endif
