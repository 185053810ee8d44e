/* libmicrosandbox: the C client of an msb server (docs/sdk.md).
 *
 * ABI rules: every type is opaque except `struct msbc_metrics`, whose size is
 * fixed (it ends in reserved space); functions are only added, never changed.
 * Exported symbols are exactly the msbc_* functions below (version script
 * src/client/libmicrosandbox.map, version MICROSANDBOX_0).
 *
 * Errors: a function that can fail returns 0 on success or a negative
 * `enum msbc_status`; the client then holds the server's message
 * (msbc_client_errmsg), the HTTP status and the server's error code.  A client
 * is not thread-safe: use one per thread (they are cheap).
 *
 * Strings returned through `char **` are malloc'd and owned by the caller
 * (free them with free()); `const char *` results belong to the object they
 * came from and live as long as it does.
 */
#ifndef MICROSANDBOX_H
#define MICROSANDBOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MSBC_CLIENT_VERSION "0.2.0"

enum msbc_status {
	MSBC_OK = 0,
	MSBC_E_UNREACHABLE = -1, /* nothing listens at the server URL, connect failed */
	MSBC_E_AUTH = -2,	 /* 401: missing, malformed, badly signed or expired key */
	MSBC_E_INVALID = -3,	 /* the server refused the parameters (400/413/415/422) */
	MSBC_E_NOT_FOUND = -4,	 /* a named sandbox, exec or file does not exist */
	MSBC_E_STATE = -5,	 /* exists already / not running / busy */
	MSBC_E_TIMEOUT = -6,	 /* a deadline passed (server side or client side) */
	MSBC_E_NETWORK = -7,	 /* the server could not reach what it needed */
	MSBC_E_GUEST = -8,	 /* the guest failed */
	MSBC_E_SERVER = -9,	 /* any other server failure (5xx) */
	MSBC_E_PROTOCOL = -10,	 /* a reply this library does not understand */
	MSBC_E_USAGE = -11,	 /* a bad argument to this library (NULL, bad URL) */
	MSBC_E_NOMEM = -12,
	MSBC_E_IO = -13, /* a local file could not be read or written */
};

typedef struct msbc_client msbc_client;
typedef struct msbc_result msbc_result;

/* ---- the client --------------------------------------------------------- */

/* A client for `server_url` (NULL: $MSB_SERVER_URL, else
 * http://127.0.0.1:5555) with `api_key` (NULL: $MSB_API_KEY, else none).
 * Returns NULL only when out of memory.  Free with msbc_client_free(). */
msbc_client *msbc_client_new(const char *server_url, const char *api_key);
void msbc_client_free(msbc_client *c);

/* The last failure: its status, message (never NULL; "" after success),
 * HTTP status (0 when there was no reply) and the server's code (upstream's
 * 1001/1004/2001/5002 or a JSON-RPC code; 0 when none). */
int msbc_client_status(const msbc_client *c);
const char *msbc_client_errmsg(const msbc_client *c);
int msbc_client_http_status(const msbc_client *c);
int msbc_client_error_code(const msbc_client *c);
/* A fixed English name for a status ("unreachable", "auth", ...). */
const char *msbc_status_name(int status);

/* Bound every request's wait for a reply (seconds; 0 = none, the default).
 * Calls with their own timeout wait that long plus 30 s. */
void msbc_client_set_timeout(msbc_client *c, double seconds);

/* 0 when GET /api/v1/health answers 200. */
int msbc_health(msbc_client *c);

/* Any JSON-RPC method: `params_json` is a JSON value (NULL: none); on
 * success *result_json (caller frees) holds the `result` as JSON text. */
int msbc_rpc(msbc_client *c, const char *method, const char *params_json, char **result_json);

/* ---- sandboxes ------------------------------------------------------------ */

/* sandbox.start: `image` (NULL: must already be configured), `memory_mib`
 * and `cpus` (0: leave out), `extra_config_json` a JSON object merged into
 * the config (volumes, ports, envs, depends_on, workdir, shell, scripts,
 * exec; NULL for none).  *message (may be NULL) gets the server's text.
 * No client deadline (the server bounds a start) unless one was set with
 * msbc_client_set_timeout(). */
int msbc_sandbox_start(msbc_client *c, const char *name, const char *image, unsigned memory_mib,
		       unsigned cpus, const char *extra_config_json, char **message);
int msbc_sandbox_stop(msbc_client *c, const char *name);
/* sandbox.list: *json = {"sandboxes":[{name,status,image,pid}]}. */
int msbc_sandbox_list(msbc_client *c, char **json);

struct msbc_metrics {
	int running;
	int has_cpu;	      /* cpu_usage was reported */
	double cpu_usage;     /* percent */
	int64_t memory_mib;   /* -1: not reported */
	int64_t disk_bytes;   /* -1: not reported */
	uint64_t reserved[8]; /* zero */
};
int msbc_metrics_get(msbc_client *c, const char *name, struct msbc_metrics *out);

/* ---- running code and commands --------------------------------------------- */

/* sandbox.repl.run: `language` "python" or "node"; `timeout` seconds (0: none).
 * *out (caller frees with msbc_result_free) holds the output. */
int msbc_repl_run(msbc_client *c, const char *name, const char *language, const char *code,
		  double timeout, msbc_result **out);
/* sandbox.command.run: `args` has `nargs` strings (may be NULL when 0). */
int msbc_command_run(msbc_client *c, const char *name, const char *command, const char *const *args,
		     size_t nargs, double timeout, msbc_result **out);

/* stdout / stderr lines joined by "\n", trimmed (as upstream's SDKs). */
const char *msbc_result_stdout(const msbc_result *r);
const char *msbc_result_stderr(const msbc_result *r);
/* -1 for a REPL run (no exit code) */
int msbc_result_exit_code(const msbc_result *r);
/* command: exit code 0; REPL: status "success" and nothing on stderr */
int msbc_result_success(const msbc_result *r);
/* REPL status ("success", "error", ...) or "" */
const char *msbc_result_status(const msbc_result *r);
void msbc_result_free(msbc_result *r);

/* ---- streamed processes ---------------------------------------------------- */

enum msbc_stream { MSBC_STDOUT = 1, MSBC_STDERR = 2 };

/* Called for each piece of output as it arrives; return non-zero to stop
 * (the connection is closed, the server kills the process). */
typedef int (*msbc_output_fn)(void *ud, enum msbc_stream stream, const char *data, size_t len);

struct msbc_exit {
	int exit_code; /* -1 when killed by a signal */
	int signal;    /* 0 when none */
	int timed_out;
	int out_of_memory; /* the guest's memory guard killed it (in what was padding) */
	uint64_t reserved[4];
};

/* sandbox.exec.stream: run `command`, call `fn` with its output until it
 * ends, fill *exit (may be NULL).  `exec_id` (may be NULL; 64 bytes) gets the
 * exec's id as soon as it is known, for msbc_exec_stdin/signal from another
 * thread (with another client).  `with_stdin`: the process gets a pipe
 * (feed it with msbc_exec_stdin) instead of /dev/null. */
int msbc_exec_stream(msbc_client *c, const char *name, const char *command, const char *const *args,
		     size_t nargs, double timeout, int with_stdin, msbc_output_fn fn, void *ud,
		     char exec_id[64], struct msbc_exit *exit);
/* sandbox.exec.start: start without attaching; *exec_id 64 bytes. */
int msbc_exec_start(msbc_client *c, const char *name, const char *command, const char *const *args,
		    size_t nargs, double timeout, int with_stdin, char exec_id[64]);
/* sandbox.exec.stream {exec}: attach to a started exec. */
int msbc_exec_attach(msbc_client *c, const char *exec_id, msbc_output_fn fn, void *ud,
		     struct msbc_exit *exit);
/* sandbox.exec.stdin: write `len` bytes (any bytes); `eof` closes stdin after. */
int msbc_exec_stdin(msbc_client *c, const char *exec_id, const void *data, size_t len, int eof);
/* sandbox.exec.signal: `signal` a number 1-64. */
int msbc_exec_signal(msbc_client *c, const char *exec_id, int signal);
/* sandbox.exec.wait: `timeout` seconds (< 0: for ever); *exited 0 when it
 * had not ended by then. */
int msbc_exec_wait(msbc_client *c, const char *exec_id, double timeout, int *exited,
		   struct msbc_exit *exit);

/* ---- files ------------------------------------------------------------------ */

/* Write `len` bytes to the absolute `path` (mode: permission bits, or -1). */
int msbc_file_write(msbc_client *c, const char *name, const char *path, const void *data,
		    size_t len, int mode);
/* Read the whole file: *data (caller frees) gets its bytes plus a NUL. */
int msbc_file_read(msbc_client *c, const char *name, const char *path, void **data, size_t *len);
/* Stream a local file up / a sandbox file down (any size). */
int msbc_file_upload(msbc_client *c, const char *name, const char *local_path, const char *path,
		     int mode);
int msbc_file_download(msbc_client *c, const char *name, const char *path, const char *local_path);

#ifdef __cplusplus
}
#endif
#endif
