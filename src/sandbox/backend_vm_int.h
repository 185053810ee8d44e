/* Internals shared by backend_vm.c (sandboxes, upstream's methods) and
 * backend_vm_io.c (streaming execs and files). */
#ifndef MSB_SANDBOX_BACKEND_VM_INT_H
#define MSB_SANDBOX_BACKEND_VM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "project/sandboxfile.h"
#include "sandbox/backend_vm.h"
#include "sandbox/sandbox.h"

struct vm_exec;

/* command.run connections per sandbox: one per command in flight, opened when
 * all are busy, at most CMD_CONNS_MAX (msb-init serves 32 connections); at most
 * CMD_IDLE_MAX idle ones are kept for the next commands, the rest closed. */
#define CMD_CONNS_MAX 16
#define CMD_IDLE_MAX  8

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
	/* Connections of their own for REPL runs, one per interpreter (python,
	 * node: each interpreter's runs stay in order, the two run at once), and
	 * for metrics (opened on first use), so that none waits for a command. */
	pthread_mutex_t repl_use[2], metrics_use;
	struct agent_client *repl[2], *metrics;
	int metrics_sock;    /* the metrics connection's socket (for its watchdog) */
	char *vsock;	     /* msb-vmm's agent socket (a copy: sb goes at a stop) */
	struct msb_strv env; /* image Env, then the sandbox's */
	char *workdir;
	char *exec;    /* config.exec, run by the owner thread after the boot */
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

/* A watchdog for a blocking agent call on connection `sock` (which the
 * agent client owns): once the clock has run for timeout_ms without being
 * reset (last_ms) and while not paused, it shuts the socket down, so that the
 * call fails at once, and sets `fired`.  A thread of its own. */
struct vm_watch {
	int sock;
	unsigned timeout_ms;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* on CLOCK_MONOTONIC */
	bool stop, started;
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

/* backend_vm_io.c */
void vm_io_install(struct sandbox_backend *ops);
/* Release the execs of a sandbox that stops (started ones nobody streamed). */
void vm_io_release_sandbox(struct vm_backend *b, const char *name);
/* Kill and free every exec (shutdown); new ones fail once b->down is set. */
void vm_io_shutdown(struct vm_backend *b);

#endif
