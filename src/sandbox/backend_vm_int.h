/* Internals shared by backend_vm.c (sandboxes, upstream's methods) and
 * backend_vm_io.c (streaming execs and files). */
#ifndef MSB_SANDBOX_BACKEND_VM_INT_H
#define MSB_SANDBOX_BACKEND_VM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/proto.h"

#include "project/menv.h"
#include "project/sandboxfile.h"
#include "sandbox/backend_vm.h"
#include "sandbox/sandbox.h"

struct vm_exec;

/* command.run connections per sandbox: one per command in flight, opened when
 * all are busy, at most CMD_CONNS_MAX; at most CMD_IDLE_MAX idle ones are kept
 * for the next commands, the rest closed. */
#define CMD_CONNS_MAX 16
#define CMD_IDLE_MAX  8

/* msb-init serves AGENT_MAX_CONNS connections at once (agent/proto.h) and answers
 * any more "busy" (kind state).  The server opens at most VM_CONNS_MAX
 * to one sandbox (the pool, REPLs, metrics, config.exec, streams, file
 * transfers): one is the sandbox's own (sb->agent), one is left so that a
 * connection closed just before is not counted twice while the guest has not
 * seen its end.  Past the budget a stream or transfer fails with a "busy"
 * error (kind state) at once, a command waits for the pool. */
#define VM_CONNS_MAX (AGENT_MAX_CONNS - 2)

struct vm_entry {
	char *name;
	struct sandbox *sb;  /* NULL while starting and after a stop */
	pthread_mutex_t use; /* e->sb at a stop and for the metrics' host view */
	/* command.run's connections (the pool): idle ones, how many are in use;
	 * `closed` once the sandbox stops (waiters fail, returns are freed). */
	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cv;
	struct agent_client *idle[CMD_IDLE_MAX];
	unsigned nidle, busy;
	bool closed;
	unsigned conns; /* agent connections of the server open (VM_CONNS_MAX), under pool_mu */
	/* Connections of their own for REPL runs, one per interpreter (python,
	 * node: each interpreter's runs stay in order, the two run at once), and
	 * for metrics (opened on first use), so that none waits for a command. */
	pthread_mutex_t repl_use[2], metrics_use;
	struct agent_client *repl[2], *metrics;
	int metrics_sock;    /* the metrics connection's socket (for its watchdog) */
	char *vsock;	     /* msb-vmm's agent socket (a copy: sb goes at a stop) */
	struct msb_strv env; /* image Env, then the sandbox's */
	char *workdir;
	char *exec;		/* config.exec, run by the owner thread after the boot */
	struct msb_rotlog *log; /* the sandbox's log in the project (NULL: none) */
	pthread_mutex_t log_mu;
	unsigned refs; /* users besides the list */
	bool dead;     /* unlinked from the list */
	/* The owner thread boots the VM and lives as long as it: msb-vmm dies with
	 * the thread that forked it (PR_SET_PDEATHSIG), so no HTTP connection
	 * thread may be that thread. */
	bool booted, release;
	pid_t boot_pid; /* msb-vmm while booting (a shutdown kills it) */
	int boot_rc;
	struct msb_err boot_err;
	struct vm_entry *next;
};

struct vm_backend {
	struct sandbox_backend ops; /* first: the server's `self` is this struct */
	pthread_mutex_t lock;
	pthread_cond_t cv; /* boots done, owners gone, execs released */
	char *project_dir;
	struct vm_entry *list;
	unsigned owners; /* owner threads still running */
	struct vm_exec *execs;
	unsigned long next_exec;
	unsigned file_timeout_ms; /* a file request whose guest is silent this long fails */
	bool down;
};

/* Waits on cv (mu held) until signalled or `ms` milliseconds have passed on
 * `clock`, the clock cv was made with. */
void vm_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, clockid_t clock, unsigned ms);

/* The thread of a watchdog (vm_watch, vm_guard): it calls tick every slice_ms
 * with mu held until tick returns true or vm_ticker_stop() is called.  A tick
 * may drop mu around slow work (a probe); once it holds mu again it must
 * check `stop` (the call it watches may have ended meanwhile, its socket gone
 * back to a pool) before it acts. */
struct vm_ticker {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* on CLOCK_MONOTONIC */
	bool stop, started;
	unsigned slice_ms;
	bool (*tick)(struct vm_ticker *t, void *arg);
	void *arg;
};
int vm_ticker_start(struct vm_ticker *t, unsigned slice_ms,
		    bool (*tick)(struct vm_ticker *t, void *arg), void *arg, struct msb_err *err);
/* Ends the thread and waits for it (nothing when it was not started). */
void vm_ticker_stop(struct vm_ticker *t);

/* A watchdog for a blocking agent call on connection `sock` (which the
 * agent client owns): once the clock has run for timeout_ms without being
 * reset (last_ms) and while not paused, it shuts the socket down, so that the
 * call fails at once, and sets `fired`. */
struct vm_watch {
	int sock;
	unsigned timeout_ms;
	struct vm_ticker tk;
	atomic_bool paused, fired;
	_Atomic uint64_t last_ms; /* CLOCK_MONOTONIC ms of the last sign of life */
};
int vm_watch_start(struct vm_watch *w, int sock, unsigned timeout_ms, struct msb_err *err);
/* Ends the watchdog; returns whether it fired. */
bool vm_watch_stop(struct vm_watch *w);

/* A reference on a running sandbox's entry (NULL with err when there is none). */
struct vm_entry *vm_get_running(struct vm_backend *b, const char *name, struct msb_err *err);
/* Drop a reference. */
void vm_put(struct vm_backend *b, struct vm_entry *e);
/* Another reference on an entry the caller holds one on. */
void vm_ref(struct vm_backend *b, struct vm_entry *e);

/* A new agent connection to the sandbox, within the guest limit
 * (b->file_timeout_ms, at most CONNECT_MAX_MS): a hung guest fails with kind
 * timeout and a message that says so. */
#define CONNECT_MAX_MS 60000
struct agent_client *vm_agent_open(struct vm_backend *b, struct vm_entry *e, struct msb_err *err);

/* A place in the sandbox's connection budget for one new agent connection
 * (an idle command connection is closed to make room when needed); -1 with a
 * "busy" error (kind state) when all VM_CONNS_MAX are in use.  `what` names
 * the request for the message.  vm_conn_release() once it is closed. */
int vm_conn_reserve(struct vm_entry *e, const char *what, struct msb_err *err);
void vm_conn_release(struct vm_entry *e);

/* A connection for one command: an idle one, else a new one while fewer than
 * CMD_CONNS_MAX are in use and the budget allows, else the next one given back
 * (a "busy" error when the budget is full and none of the pool is in use).  An
 * idle connection the guest closed meanwhile is replaced (a command is never
 * sent twice).  NULL with err also when the sandbox stopped or the client left. */
struct agent_client *vm_conn_take(struct vm_backend *b, struct vm_entry *e, struct msb_err *err);
/* Give a connection back: kept idle when it is healthy and there is room, else
 * closed (the guest then kills whatever still ran on it). */
void vm_conn_give(struct vm_entry *e, struct agent_client *c, bool healthy);

/* Whether the guest's agent answers: a new agent connection and its HELLO
 * within limit ms (a connection of its own, so that nothing waits behind a
 * hung guest).  0: it answered; -1 with kind timeout: it did not; -1 with
 * another kind: not known (no place in the budget, the sandbox stopped). */
int vm_guest_probe(struct vm_backend *b, struct vm_entry *e, unsigned limit, struct msb_err *err);

/* How long past a call's own timeout the host waits for the guest to report
 * its end before it gives up on a guest that does not answer. */
#define HOST_GRACE_MS 30000

/* A thread beside one blocking agent call of a request (a REPL run, a command
 * without a client check of its own) that shuts the call's connection down,
 * so that the call fails at once, when
 *  - the host deadline passes (the code's own timeout + HOST_GRACE_MS: the
 *    guest enforces the timeout; one that has not reported by then is not
 *    answering);
 *  - the call has been silent for the guest limit (b->file_timeout_ms) and the
 *    guest then does not answer a probe (vm_guest_probe) within that limit
 *    either: a hung guest (the limit is generous: a loaded PVM guest is slow).  A
 *    guest that answers is running silent code, which goes on (a call without
 *    a timeout has no other bound, and may legitimately run for hours);
 *  - the HTTP client went away (nobody waits for the result; the guest
 *    interrupts what ran on the closed connection). */
enum guard_why { GUARD_NONE, GUARD_DEADLINE, GUARD_HUNG, GUARD_GONE };

struct vm_guard {
	struct vm_backend *b;
	struct vm_entry *e;
	int sock;
	uint64_t deadline; /* monotonic ms, 0: none */
	bool (*alive)(void *arg);
	void *alive_arg;
	_Atomic uint64_t last_ms; /* the call's last sign of life (output) */
	atomic_int why;
	struct vm_ticker tk;
};

/* deadline: monotonic ms (0: none); watch_client: end the call when this
 * request's HTTP client goes away (sb_client_get()). */
int vm_guard_start(struct vm_guard *g, struct vm_backend *b, struct vm_entry *e, int sock,
		   uint64_t deadline, bool watch_client, struct msb_err *err);
/* Ends the guard; returns why it ended the call (GUARD_NONE: it did not). */
int vm_guard_stop(struct vm_guard *g);
/* The error for a call the guard ended; `what` names the call ("the python
 * run", "'make'"). */
int vm_guard_err(const struct vm_guard *g, int why, const char *what, struct msb_err *err);

/* backend_vm_io.c */
void vm_io_install(struct sandbox_backend *ops);
/* Release the execs of a sandbox that stops (started ones nobody streamed). */
void vm_io_release_sandbox(struct vm_backend *b, const char *name);
/* Kill and free every exec (shutdown); new ones fail once b->down is set. */
void vm_io_shutdown(struct vm_backend *b);

#endif
