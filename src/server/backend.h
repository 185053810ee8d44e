/* The sandbox backend: what the server drives to start, stop and use sandboxes.
 *
 * The HTTP, JSON-RPC and MCP layers parse and validate every request, then call
 * one of these operations; they never touch a VM themselves.  The sandbox
 * manager (issue 5) fills a `struct sandbox_backend` and hands it to
 * msb_server_new().  Until it exists the server is built with
 * sb_backend_unavailable(), whose every operation fails with
 * "sandboxes are not available in this build yet".
 *
 * Conventions for every operation:
 *   - `self` is the backend's own state (struct sandbox_backend.self).
 *   - They may be called from many HTTP threads at once; the backend locks.
 *   - On failure they return -1 and fill `err`; err->kind decides the JSON-RPC
 *     error and HTTP status (docs/api.md): usage -> 400, not_found -> 404,
 *     exists/state -> 409, timeout -> 504, everything else -> 500.
 *   - Sandbox names reaching the backend already satisfy the name rule
 *     (sb_name_valid()); paths are non-empty; numbers are range-checked.
 *   - Strings the backend returns through out-parameters are malloc'd and
 *     owned by the caller (the server frees them).
 */
#ifndef MSB_SERVER_BACKEND_H
#define MSB_SERVER_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

/* ---- upstream-compatible operations ------------------------------------------ */

/* A list of strings (argv, volumes, "K=V" envs).  Borrowed from the request. */
struct sb_strv {
	const char *const *v;
	size_t n;
};

/* sandbox.start's `config` (upstream §3).  has_* say which optional fields the
 * caller sent; with image == NULL the sandbox must already be configured. */
struct sb_start_config {
	const char *image;
	bool has_memory, has_cpus;
	uint32_t memory_mib;
	uint8_t cpus;
	struct sb_strv volumes, ports, envs, depends_on;
	const char *workdir, *shell, *exec;
	struct sb_strv script_names, script_bodies; /* scripts{} as two parallel lists */
};

/* One line of output, as upstream returns it: {"stream":"stdout","text":...}. */
enum sb_stream { SB_STDOUT = 0, SB_STDERR = 1 };
struct sb_line {
	enum sb_stream stream;
	char *text; /* owned by the sb_output */
};
struct sb_output {
	struct sb_line *lines;
	size_t n, cap;
};
/* Append a line (copies `len` bytes of `text`); -1 with err when out of memory. */
int sb_output_add(struct sb_output *out, enum sb_stream s, const char *text, size_t len,
		  struct msb_err *err);
void sb_output_release(struct sb_output *out);

struct sb_repl_result {
	char *status; /* "success" (upstream) or "error"; owned */
	struct sb_output output;
};
struct sb_command_result {
	int exit_code;
	bool oom_killed; /* the guest's memory guard killed it (exit_code 137) */
	struct sb_output output;
};

/* sandbox.metrics.get: one row per sandbox; has_* false -> JSON null. */
struct sb_metrics {
	char *name;
	bool running;
	bool has_cpu, has_memory, has_disk;
	double cpu_usage;    /* percent */
	uint64_t memory_mib; /* MiB */
	uint64_t disk_bytes; /* bytes */
};
/* sandbox.list: one row per configured sandbox. */
struct sb_info {
	char *name;
	char *status; /* "running" | "stopped" | "starting" | ... */
	char *image;  /* may be NULL */
	int64_t pid;  /* supervisor pid, 0 when none */
};

/* ---- this project's own operations --------------------------------------------- */

#define SB_EXEC_ID_MAX 64

struct sb_exec_spec {
	const char *sandbox;
	const char *command;
	struct sb_strv args;
	struct sb_strv env; /* "K=V" */
	const char *cwd;    /* NULL = the sandbox's workdir */
	double timeout_s;   /* 0 = none */
	bool stdin_open;    /* false: stdin is /dev/null */
	bool tty;
};

enum sb_event_type { SB_EV_STDOUT = 0, SB_EV_STDERR = 1, SB_EV_EXIT = 2 };
struct sb_exec_event {
	enum sb_event_type type;
	const void *data; /* STDOUT/STDERR: bytes, valid until the next exec_next call */
	size_t len;
	int exit_code;	 /* EXIT: the exit status, or -1 when signalled */
	int signal;	 /* EXIT: the terminating signal, 0 when none */
	bool timed_out;	 /* EXIT: killed because timeout_s passed */
	bool oom_killed; /* EXIT: the guest's memory guard killed it */
};
struct sb_exec_status {
	bool exited;
	int exit_code;
	int signal;
	bool timed_out;
	bool oom_killed;
};

struct sandbox_backend {
	const char *name; /* "unavailable", "vm", "mock" (logs, /health) */
	void *self;

	/* Upstream semantics, with upstream's bugs fixed: starting a running
	 * sandbox is idempotent; `exec` is honoured.  *message is the result
	 * string ("Sandbox X started successfully"). */
	int (*start)(void *self, const char *name, const struct sb_start_config *cfg,
		     char **message, struct msb_err *err);
	int (*stop)(void *self, const char *name, char **message, struct msb_err *err);
	/* A REPL timeout is an error (kind timeout), not success. */
	int (*repl_run)(void *self, const char *name, const char *language, const char *code,
			double timeout_s, struct sb_repl_result *res, struct msb_err *err);
	int (*command_run)(void *self, const char *name, const char *command,
			   const struct sb_strv *args, double timeout_s,
			   struct sb_command_result *res, struct msb_err *err);
	/* name == NULL: every configured sandbox.  *rows is malloc'd, freed with
	 * sb_metrics_free(). */
	int (*metrics)(void *self, const char *name, struct sb_metrics **rows, size_t *n,
		       struct msb_err *err);
	int (*list)(void *self, struct sb_info **rows, size_t *n, struct msb_err *err);

	/* Streaming execution.  exec_start fills `id` (NUL-terminated). */
	int (*exec_start)(void *self, const struct sb_exec_spec *spec, char id[SB_EXEC_ID_MAX],
			  struct msb_err *err);
	/* Waits up to timeout_ms for the next event: 1 = *ev filled, 0 = nothing
	 * yet, -1 = error.  After the EXIT event it returns -1 (kind state). */
	int (*exec_next)(void *self, const char *id, int timeout_ms, struct sb_exec_event *ev,
			 struct msb_err *err);
	int (*exec_stdin)(void *self, const char *id, const void *data, size_t len, bool eof,
			  struct msb_err *err);
	int (*exec_signal)(void *self, const char *id, int sig, struct msb_err *err);
	/* Waits up to timeout_ms (>= 0) for the exit; st->exited false when it
	 * has not exited yet.  The server calls it in short slices. */
	int (*exec_wait)(void *self, const char *id, int timeout_ms, struct sb_exec_status *st,
			 struct msb_err *err);
	/* The client is gone or done: the backend kills the process if it still
	 * runs and frees the id.  Never fails. */
	void (*exec_release)(void *self, const char *id);

	/* Files, streamed in chunks so that large files are never held in memory.
	 * A write handle becomes visible at `path` only on file_close_write(commit
	 * = true); commit = false discards it. */
	int (*file_open_write)(void *self, const char *sandbox, const char *path, unsigned mode,
			       void **h, struct msb_err *err);
	int (*file_write)(void *self, void *h, const void *buf, size_t len, struct msb_err *err);
	int (*file_close_write)(void *self, void *h, bool commit, struct msb_err *err);
	int (*file_open_read)(void *self, const char *sandbox, const char *path, void **h,
			      uint64_t *size, struct msb_err *err);
	/* Returns bytes read, 0 at end of file, -1 on error. */
	ssize_t (*file_read)(void *self, void *h, void *buf, size_t len, struct msb_err *err);
	void (*file_close_read)(void *self, void *h);

	/* The server is stopping: stop every sandbox it started, cleanly.  It
	 * has stopped accepting requests, but some may still be inside the
	 * backend (a long command, a start): those must then fail promptly. */
	void (*shutdown)(void *self);
};

/* Whether the client of the request this thread serves has gone away.  The
 * HTTP layer sets the check for the length of a request (thread-local; NULL
 * clears it); a backend operation that may run long (command.run) polls
 * sb_client_gone() and stops work nobody waits for.  False without a check. */
void sb_client_set(bool (*alive)(void *arg), void *arg);
bool sb_client_gone(void);
/* This thread's check (NULLs without one), for a watchdog thread of the
 * request to call: the check itself is safe from any thread. */
void sb_client_get(bool (**alive)(void *arg), void **arg);

void sb_metrics_free(struct sb_metrics *rows, size_t n);
void sb_info_free(struct sb_info *rows, size_t n);
void sb_repl_result_release(struct sb_repl_result *r);
void sb_command_result_release(struct sb_command_result *r);

/* Upstream's sandbox name rule: 1-63 chars of [A-Za-z0-9_-], first alphanumeric. */
bool sb_name_valid(const char *name);

/* The backend of a build without sandboxes: every operation fails with kind
 * system and the message SB_UNAVAILABLE_MSG.  Static; never freed. */
#define SB_UNAVAILABLE_MSG "sandboxes are not available in this build yet"
const struct sandbox_backend *sb_backend_unavailable(void);

#endif
