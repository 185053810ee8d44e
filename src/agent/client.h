/* The host side of the agent protocol: connect to a guest's msb-init through
 * msb-vmm's hybrid vsock socket, run commands (several at once on one
 * connection), stream their stdin/stdout/stderr with flow control, and shut
 * the guest down.  Single-threaded; one struct agent_client per connection.
 *
 * Typical use:
 *   struct agent_client *c = agent_client_open(vsock_path, 5000, &err);
 *   struct agent_exec_opts o = {.argv = argv, .stdin_fd = -1, .stdout_fd = 1, .stderr_fd = 2};
 *   struct agent_exec_status st;
 *   agent_exec(c, &o, &st, &err);
 *   agent_client_free(c);
 */
#ifndef MSB_AGENT_CLIENT_H
#define MSB_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Connect to msb-vmm's Unix socket `uds_path` and ask for guest `port`
 * ("CONNECT <port>\n" / "OK <n>\n").  Returns a connected, blocking fd owned by
 * the caller.  Fails with kind network when nobody answers or the guest does
 * not listen on that port (msb-vmm then closes the socket). */
int agent_vsock_connect(const char *uds_path, unsigned port, int timeout_ms, struct msb_err *err);
/* The same with "PARK <port>\n": msb-vmm keeps that connection across a
 * snapshot and hands it to the first client of each restored copy
 * (docs/snapshot.md).  A VMM without PARK closes the socket: kind network. */
int agent_vsock_park(const char *uds_path, unsigned port, int timeout_ms, struct msb_err *err);

struct agent_client;

/* agent_vsock_connect() to port 1024 and the HELLO exchange.  The caller owns
 * the result (agent_client_free()).  timeout_ms bounds the whole set-up.  A
 * guest that refuses or drops the connection before HELLO (its vsock
 * transport resets right after a restore) is tried again every 20 ms until
 * the timeout (without one: for 10 s); a missing or dead msb-vmm socket, an
 * ERROR or a timeout fail at once. */
struct agent_client *agent_client_open(const char *uds_path, int timeout_ms, struct msb_err *err);
/* Same over an already connected stream; takes ownership of fd. */
struct agent_client *agent_client_from_fd(int fd, int timeout_ms, struct msb_err *err);
void agent_client_free(struct agent_client *c);

/* The connection's socket (borrowed): for a watchdog on another thread to
 * shutdown(2), which makes the call blocked on it fail at once. */
int agent_client_fd(const struct agent_client *c);

/* Hostname and software name the agent announced (borrowed from c). */
const char *agent_client_hostname(const struct agent_client *c);
const char *agent_client_agent_name(const struct agent_client *c);

/* Errors the agent reports about the connection or about its own start-up
 * (ERROR frames with id 0 after HELLO) go to this callback; default: dropped. */
void agent_client_on_notice(struct agent_client *c, void (*fn)(void *ctx, const char *msg),
			    void *ctx);

struct agent_exec_opts {
	const char *const *argv; /* NULL-terminated; argv[0] is looked up in PATH */
	const char *const *env;	 /* NULL-terminated "K=V" overriding the default; may be NULL */
	const char *cwd;	 /* NULL: "/" */
	uint64_t timeout_ms;	 /* 0: none; the guest kills the whole process tree */
	int stdin_fd;		 /* read until EOF and forwarded; -1: stdin is /dev/null */
	int stdout_fd;		 /* output written here (all of it, blocking); -1: not */
	int stderr_fd;
	/* Called for each chunk of output (stream 1 or 2), after the fd write. */
	void (*on_output)(void *ctx, int stream, const void *data, size_t len);
	void *ctx;
	/* On a pseudo-terminal in the guest: stdin, stdout and stderr are its
	 * slave side; everything comes back as stream 1 (stderr_fd is unused). */
	bool pty;
	unsigned rows, cols; /* 0: 24 x 80; else 1..65535 */
	const char *term;    /* TERM for the command; NULL: "xterm" */
};

struct agent_exec_status {
	uint32_t pid;  /* in the guest */
	bool signaled; /* then `signal` is set, else `code` */
	int code;
	int signal;
	bool timed_out;	 /* the guest killed it at the deadline */
	bool oom_killed; /* the guest's memory guard killed it (out of memory) */
};

/* The shell convention: code, or 128 + signal. */
int agent_exec_status_code(const struct agent_exec_status *st);

struct agent_exec;

/* Start a command.  The handle belongs to c until agent_exec_wait(). */
struct agent_exec *agent_exec_start(struct agent_client *c, const struct agent_exec_opts *o,
				    struct msb_err *err);
/* Move bytes for every running command for at most timeout_ms (-1: until
 * something happened).  Fails when the connection broke. */
int agent_client_pump(struct agent_client *c, int timeout_ms, struct msb_err *err);
bool agent_exec_done(const struct agent_exec *e);
/* Pump until `e` ended, fill *st and free e.  Fails (kind from the agent's
 * error) when the command could not be started. */
int agent_exec_wait(struct agent_client *c, struct agent_exec *e, struct agent_exec_status *st,
		    struct msb_err *err);
/* Send a signal to the command's process group. */
int agent_exec_signal(struct agent_client *c, struct agent_exec *e, int sig, struct msb_err *err);

/* A PTY command's terminal changed size (rows, cols 1..65535); the guest's
 * foreground job gets SIGWINCH. */
int agent_exec_resize(struct agent_client *c, struct agent_exec *e, unsigned rows, unsigned cols,
		      struct msb_err *err);

/* agent_exec_start() + agent_exec_wait(). */
int agent_exec(struct agent_client *c, const struct agent_exec_opts *o,
	       struct agent_exec_status *st, struct msb_err *err);

/* SETUP (docs/agent-protocol.md): after a restore, mount the root, set the
 * clock, mix in entropy, set the hostname and the machine id.  NULL/0 fields
 * are not sent; without root_dev it is a resync, allowed any time.  Values
 * are checked here with the agent's rules (kind usage).  The agent's refusal
 * fails with its message and mapped kind. */
struct agent_setup_opts {
	const char *root_dev;	 /* "/dev/vda": read-only image, once per boot */
	const char *root_fstype; /* "erofs" | "ext4"; NULL: the agent tries both */
	const char *overlay;	 /* "tmpfs" | "/dev/vdb" (ext4 writable layer); NULL: tmpfs */
	const char *hostname;
	uint64_t realtime_ns; /* the guest's new CLOCK_REALTIME; 0: unchanged */
	bool clock_now;	      /* send the host's CLOCK_REALTIME at the moment of sending */
	const void *entropy;  /* 32..256 bytes for the guest's kernel pool */
	size_t entropy_len;
	const char *machine_id;	   /* 32 lowercase hex digits, for /etc/machine-id */
	const char *net;	   /* eth0: "ADDR/PREFIX GATEWAY DNS" (agent_parse_net), or NULL */
	const char *const *mounts; /* "TAG ro|rw PATH" each (agent_parse_mount) */
	size_t nmounts;
	/* Programs whose files the guest reads into its page cache (names looked
	 * up in warm_path, or absolute paths): for a warm snapshot, never per copy. */
	const char *const *warm;
	size_t nwarm;
	const char *warm_path; /* NULL: the guest's default */
	int timeout_ms;	       /* for the answer; 0: 120 s (mounting waits for the disk) */
};
int agent_setup(struct agent_client *c, const struct agent_setup_opts *o, struct msb_err *err);

/* ---- persistent REPLs ----------------------------------------------------------------
 * One interpreter per language per guest, started on first use (python3 or
 * python, node or nodejs from the image's PATH); variables persist between
 * runs, runs of one language are serialized. */
enum agent_repl_status_kind {
	AGENT_REPL_RESULT_OK = 0,
	AGENT_REPL_RESULT_ERROR = 1, /* an exception (message: its text), or the interpreter died */
	AGENT_REPL_RESULT_TIMEOUT = 2, /* interrupted at the deadline: a failure too */
};

struct agent_repl_result {
	enum agent_repl_status_kind status;
	char *message;	/* owned (agent_repl_result_release()); NULL when OK */
	bool restarted; /* a fresh interpreter ran it: earlier state is gone */
};
void agent_repl_result_release(struct agent_repl_result *r);

struct agent_repl_opts {
	const char *language; /* python | node (also python3, nodejs, javascript, js) */
	const char *code;
	uint64_t timeout_ms; /* 0: none */
	/* Only used when this run starts the interpreter: */
	const char *cwd;	/* NULL: "/" */
	const char *const *env; /* NULL-terminated "K=V" overriding the default */
	/* Output as it comes: stream 1 (stdout) or 2 (stderr). */
	void (*on_output)(void *ctx, int stream, const void *data, size_t len);
	void *ctx;
};

/* Run code and wait for its end.  0: it ran, *result says how (anything but
 * OK is a failure of the code, a timeout included).  -1: it could not run
 * (unknown language, no interpreter in the image: kind not_found, the
 * connection broke). */
int agent_repl_run_opts(struct agent_client *c, const struct agent_repl_opts *o,
			struct agent_repl_result *result, struct msb_err *err);
int agent_repl_run(struct agent_client *c, const char *language, const char *code,
		   uint64_t timeout_ms,
		   void (*out_fn)(void *ctx, int stream, const void *data, size_t len), void *ctx,
		   struct agent_repl_result *result, struct msb_err *err);

/* Ask the guest to power off in order; returns when it acknowledged (or closed
 * the connection, which a guest going down may do first). */
int agent_client_shutdown(struct agent_client *c, int timeout_ms, struct msb_err *err);

#include "agent/files_client.h" /* files and metrics */

#endif
