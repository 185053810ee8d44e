/* The child side of the processes msb starts for a sandbox (msb-vmm, passt):
 * one set-up for all of them. */
#ifndef MSB_SANDBOX_CHILD_H
#define MSB_SANDBOX_CHILD_H

#include <sys/types.h>

/* In a child just after fork(): its own session (no terminal's signals reach
 * it, and the scheduler weighs it as one job), killed with msb (PDEATHSIG;
 * it exits at once when `parent`, msb's pid before the fork, is already
 * gone), stdin from /dev/null, stdout to out_fd and stderr to err_fd (-1:
 * /dev/null), fd3 (> 0) as descriptor 3 (the network pair's end), no signal
 * blocked; then execv(argv[0], argv).  Never returns: exit status 1 when a
 * step or the exec fails (the reason on stderr for the exec). */
__attribute__((noreturn)) void sandbox_child_exec(pid_t parent, int out_fd, int err_fd, int fd3,
						  char *const argv[]);

#endif
