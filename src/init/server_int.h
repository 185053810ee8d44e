/* Internals of the agent server shared by server.c (connections, frames, the
 * loop) and command.c (running commands and moving their bytes). */
#ifndef MSB_INIT_SERVER_INT_H
#define MSB_INIT_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/proto.h"
#include "init/server.h"

#define MAX_LISTENERS 4
#define MAX_CONNS     AGENT_MAX_CONNS /* connections served at once */
/* Slots beyond MAX_CONNS: a HELLO while MAX_CONNS connections are served is
 * answered with ERROR limit ("the guest is busy") and the connection closed, so
 * that the host fails at once instead of retrying what looks like a vsock
 * reset.  With every slot taken a new connection is closed silently. */
#define REFUSE_CONNS	4
#define CONN_SLOTS	(MAX_CONNS + REFUSE_CONNS)
#define MAX_EXECS	256 /* across all connections */
#define MAX_BOOT_ERRORS 16
#define OUT_HIGH	(1u << 20) /* stop producing for a connection above this */
#define HANDSHAKE_MAX	64
#define AGENT_NAME	"msb-init 0.1"

enum conn_state { CONN_HANDSHAKE, CONN_HELLO, CONN_READY };

struct conn {
	int fd;
	enum conn_state state;
	struct agent_reader in;
	struct agent_buf out;
	char line[HANDSHAKE_MAX];
	size_t line_len;
	bool closing; /* close once `out` is flushed */
};

struct exec {
	struct exec *next;
	struct conn *conn; /* NULL once its connection went away */
	uint32_t id;
	pid_t pid;
	int fds[3];		  /* stdin (write end), stdout, stderr (read ends); -1 closed */
	uint64_t window[3];	  /* stdout/stderr: credit the host granted us */
	uint64_t stdin_credit;	  /* stdin bytes the host may still send */
	struct agent_buf pending; /* stdin received, not yet in the pipe */
	bool stdin_eof;		  /* the host sent EOF on stdin */
	bool stdin_closed;	  /* and we closed the pipe (or the command did) */
	bool reaped;
	int status;
	uint64_t deadline_ms; /* 0: none */
	bool timed_out;
	bool oom_killed; /* reaped after the memory guard killed it */
	bool pty;	 /* fds[0] and fds[1] are the PTY master (fds[2] -1) */
};

#define REPL_LANGS   2 /* python, node */
#define REPL_MAX_FDS (REPL_LANGS * 4)
struct repl_engine;
struct oom_guard;

struct server {
	struct server_opts opts;
	char hostname[256];
	int sigfd;
	struct {
		int fd;
		enum listener_role role;
	} listeners[MAX_LISTENERS];
	size_t nlisteners;
	struct conn *conns[CONN_SLOTS];
	struct exec *execs;
	size_t nexecs;
	struct msb_err boot_errors[MAX_BOOT_ERRORS];
	size_t nboot_errors;
	int ready_fd;
	struct agent_buf ready_out;
	bool shutdown;
	unsigned next_host_port;
	/* File transfers in progress (files.c), METRICS waiting for their interval
	 * (metrics.c). */
	struct ftx *files;
	struct mreq *metrics;
	char machine_id[33]; /* SETUP's, waiting for a root to be written to; "" = none */
	struct repl_engine *repl[REPL_LANGS]; /* persistent interpreters, started on use */
	struct oom_guard *oom;		      /* the memory guard (oom.c), started on use */
};

uint64_t now_ms(void);

/* Queue frames on a connection; a failure to build one closes it. */
void send_error(struct conn *c, uint32_t id, uint32_t kind, int errnum, const char *msg);
void send_simple(struct conn *c, uint16_t type, uint32_t id, uint32_t stream);
void send_window(struct conn *c, uint32_t id, uint32_t stream, uint32_t inc);

void close_fd(int *fd);

/* Commands (command.c). */
struct exec *find_exec(struct server *s, struct conn *c, uint32_t id);
void exec_free(struct server *s, struct exec *e);
void handle_exec(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p);
void handle_stdin(struct conn *c, struct exec *e, const struct agent_hdr *h, const uint8_t *p);
/* Move one chunk from the command's stdout/stderr to its connection. */
void exec_read(struct exec *e, int stream);
void exec_write_stdin(struct exec *e);
/* Close stdin when due; send EXIT and free `e` once it is over. */
void exec_maybe_finish(struct server *s, struct exec *e);
void reap(struct server *s);
void check_deadlines(struct server *s, uint64_t now);

/* SETUP: root, clock, entropy, hostname, machine id (setup.c). */
void handle_setup(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p);

/* Commands on a pseudo-terminal (pty.c). */
struct spawned;
/* Like exec_spawn(), on a new PTY: in_fd (a dup, -1 without STDIN) and out_fd
 * are its master, err_fd is -1. */
int pty_spawn(const struct agent_exec_req *req, struct spawned *out, uint32_t *wire_err,
	      struct msb_err *err);
void handle_resize(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p);
/* The host's stdin ended: type the terminal's EOF character (Ctrl-D), as a
 * user would, so that a program reading the terminal sees its end. */
void pty_send_eof(int master);

/* Persistent REPLs (repl.c). */
struct pollfd;
void handle_repl_run(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p);
/* Deadlines, queued runs; returns ms until the next deadline (UINT64_MAX: none). */
uint64_t repl_tick(struct server *s, uint64_t now);
/* Adds the interpreters' descriptors to watch (at most REPL_MAX_FDS). */
size_t repl_poll_add(struct server *s, struct pollfd *pfd);
void repl_poll_ready(struct server *s, int fd, short revents);
void repl_reaped(struct server *s, pid_t pid, int status);
/* The connection goes away: its queued runs are dropped, its running one interrupted. */
void repl_conn_gone(struct server *s, struct conn *c);
/* Kill every interpreter and free the engines. */
void repl_shutdown(struct server *s);
/* The running interpreters' pids (at most cap); for the memory guard (oom.c). */
size_t repl_pids(struct server *s, pid_t *out, size_t cap);

/* File requests and METRICS (files.c, metrics.c).  files_frame() takes the
 * FILE_* and METRICS requests and the DATA/EOF/WINDOW/ERROR frames of a file
 * transfer; false: not one of those. */
struct ftx;
struct mreq;
bool files_frame(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p);
/* Moves downloads on and answers due METRICS; returns the ms the loop may
 * sleep at most (0: work is waiting, UINT64_MAX: no limit). */
uint64_t files_tick(struct server *s, uint64_t now);
/* Abandon the connection's transfers (uploads leave nothing behind). */
void files_conn_closed(struct server *s, struct conn *c);
void files_free_all(struct server *s);

#endif
