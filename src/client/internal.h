/* libmicrosandbox internals, shared by the files of src/client; never installed. */
#ifndef MSB_CLIENT_INTERNAL_H
#define MSB_CLIENT_INTERNAL_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>

#include "include/microsandbox.h"

#define MSBC_CONNECT_TIMEOUT_S 10L
/* A call with its own timeout waits that much longer for the server's reply
 * (the server enforces the timeout; this only bounds a server that hangs). */
#define MSBC_TIMEOUT_SLACK_S 30.0
/* Longest NDJSON event accepted from a stream (they carry output chunks). */
#define MSBC_MAX_EVENT (16 * 1024 * 1024)

struct msbc_client {
	char *url; /* no trailing '/' */
	char *key; /* NULL: no Authorization header */
	CURL *curl;
	double timeout; /* seconds, 0: none */
	int status;
	int http_status;
	int code;
	char errmsg[1024];
};

struct msbci_buf {
	char *p;
	size_t n, cap;
	int oom;
};

int msbci_buf_add(struct msbci_buf *b, const void *data, size_t len);
void msbci_buf_free(struct msbci_buf *b);

/* Record a failure on the client and return `status`. */
__attribute__((format(printf, 3, 4))) int msbci_fail(msbc_client *c, int status, const char *fmt,
						     ...);
/* Record the failure a non-success reply describes (any of the server's
 * error body shapes); `context` prefixes the message.  Returns the status. */
int msbci_fail_reply(msbc_client *c, long http, const char *body, size_t len, const char *context,
		     int files);
/* Record a libcurl failure (unreachable, timeout, ...). */
int msbci_fail_curl(msbc_client *c, CURLcode rc, const char *context);
void msbci_clear(msbc_client *c);

/* Prepare c->curl for one request to `path` (joined to the server URL):
 * method, auth header, timeouts.  `*headers` is the header list to free. */
int msbci_prepare(msbc_client *c, const char *method, const char *path, double timeout,
		  const char *content_type, struct curl_slist **headers);

/* POST a JSON-RPC call; `params` is stolen.  On success *result (caller
 * decrefs; may be NULL when not wanted) is the `result` member. */
int msbci_call(msbc_client *c, const char *method, json_t *params, double timeout,
	       const char *context, json_t **result);

/* The query-string URL path of the raw file route. */
char *msbci_file_path(msbc_client *c, const char *name, const char *path, int mode);

/* An argv array as a JSON array of strings (NULL on OOM). */
json_t *msbci_args_json(const char *const *args, size_t nargs);

#endif
