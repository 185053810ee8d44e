/* Starting a command for the agent and ending its whole process tree. */
#ifndef MSB_INIT_EXEC_H
#define MSB_INIT_EXEC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/proto.h"
#include "common/error.h"

struct spawned {
	pid_t pid;  /* also its session and process group id */
	int in_fd;  /* write end of its stdin, -1 when stdin is /dev/null */
	int out_fd; /* read ends of its stdout and stderr (non-blocking, CLOEXEC) */
	int err_fd;
};

/* The default environment of a command; EXEC's ENV entries override it. */
extern const char *exec_base_env[];

/* Adds to exec_base_env what this machine needs: when user space sees AVX
 * enabled (XCR0) but the kernel does not save that state on a task switch
 * (a guest booted with `noxsave` on an emulating host: docs/agent-protocol.md,
 * "Concurrent starts"), the exec_avx_env() entries.  Returns them joined by
 * spaces (static storage), or NULL.  Call once, before the first command. */
const char *exec_base_env_init(void);

#define EXEC_AVX_ENV_MAX 3
/* The environment entries that keep glibc (GLIBC_TUNABLES), OpenSSL
 * (OPENSSL_ia32cap) and Go (GODEBUG) off AVX when `xcr0` enables AVX state
 * that the kernel's `kernel_xstate` (ARCH_GET_XCOMP_SUPP) does not cover: how
 * many were put into `out` (static strings), 0 when the kernel covers it. */
size_t exec_avx_env(uint64_t xcr0, uint64_t kernel_xstate, const char *out[EXEC_AVX_ENV_MAX]);

/* Fork and exec `req` in a new session.  Returns 0 once the program has been
 * exec'd (a CLOEXEC pipe reports a failed chdir or exec synchronously), else
 * -1 with *wire_err set to the protocol error kind.  The caller owns the fds
 * and must reap the pid. */
int exec_spawn(const struct agent_exec_req *req, struct spawned *out, uint32_t *wire_err,
	       struct msb_err *err);

#define EXEC_MAX_FDS 8

/* The general form: fork and exec `req` in a new session with fds[i] as its
 * descriptor i (1 <= nfds <= EXEC_MAX_FDS; the caller keeps and closes its
 * copies); with `ctty`, descriptor 0 (a terminal's slave side) becomes the
 * session's controlling terminal.  Errors as exec_spawn(). */
int exec_spawn_fds(const struct agent_exec_req *req, const int *fds, int nfds, bool ctty,
		   pid_t *pid, uint32_t *wire_err, struct msb_err *err);

/* execvp()'s lookup of `name` in env's PATH.  Returns a new string (the
 * caller frees it), or NULL with errno (ENOENT, EACCES, ENOMEM). */
char *exec_find_program(const char *name, char *const *env);

/* SIGKILL every process of the tree started as `leader`: its session, its
 * process group and all descendants found through /proc, repeated until no
 * new process shows up (a fork racing the kill).  Returns how many were hit. */
int kill_tree(pid_t leader);

/* Build the environment: base entries, each replaced by an override of the
 * same name, then the remaining overrides.  Returned array and strings are
 * borrowed from the inputs except the array itself (free() it). */
char **exec_merge_env(const char *const *base, char *const *over, size_t nover);

#endif
