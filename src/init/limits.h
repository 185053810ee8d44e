/* Guest-side resource guards set up once by msb-init as PID 1 (docs/agent-protocol.md,
 * "Resource limits"). */
#ifndef MSB_INIT_LIMITS_H
#define MSB_INIT_LIMITS_H

#include "common/error.h"

/* Puts msb-init (and so every process it starts from then on) into the cgroup
 * /sys/fs/cgroup/msb with memory.max = MemTotal minus a reserve, so that a command
 * that exhausts memory meets the cgroup's OOM killer, which acts on the cgroup alone
 * and at once, instead of the global one, which on PVM reclaims for many minutes first.
 * PID 1 is never an OOM victim.  Needs cgroup2 at /sys/fs/cgroup (pid1_early). */
int limits_guard_memory(struct msb_err *err);

#endif
