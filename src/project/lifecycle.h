/* Starting and stopping a project's sandboxes from outside their supervisor:
 * what `msb up`, `down`, `apply`, `status` and `clean --force` share.
 *
 * A started sandbox is a detached `msb run NAME -d` process (the supervisor)
 * that owns its msb-vmm and its state row; stopping it is a SIGTERM to that
 * supervisor, which powers the guest off in order (the guest syncs and
 * unmounts the writable layer) and then exits.  See docs/sandboxfile.md. */
#ifndef MSB_PROJECT_LIFECYCLE_H
#define MSB_PROJECT_LIFECYCLE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "project/project.h"

#define MSB_CONFIG_HASH_LEN 16 /* hex digits */

/* A hash of everything of the sandbox's entry that a start uses (image,
 * resources, volumes, ports, envs, workdir, shell, scripts, command, scope,
 * dependencies), not of how it is written: reordering keys or changing
 * comments does not change it.  out gets MSB_CONFIG_HASH_LEN hex digits. */
void msb_sandbox_config_hash(const struct msb_sandbox *sb, char out[MSB_CONFIG_HASH_LEN + 1]);

/* Start `name` detached: run `<msb_exe> run NAME -d -f <config>` and wait for
 * it to say the sandbox runs (its stdout is dropped, its stderr is ours).  A
 * failure is MSB_EK_STATE naming the exit status and `msb log NAME`. */
int msb_project_start_detached(const struct msb_project *p, const char *msb_exe, const char *name,
			       struct msb_err *err);

/* Stop `name` if it runs: SIGTERM to its supervisor, then wait up to
 * timeout_ms for it to exit (an ordered power-off).  Past the deadline a
 * second SIGTERM makes the supervisor kill the VM; 5 s later both processes
 * get SIGKILL, the row is marked STOPPED and MSB_EK_TIMEOUT is returned.
 * *was_running (may be NULL) tells whether there was anything to stop.  A
 * dead RUNNING row is corrected to STOPPED. */
int msb_project_stop(const struct msb_project *p, struct msb_state *st, const char *name,
		     int timeout_ms, bool *was_running, struct msb_err *err);

/* The deadline for an ordered stop: $MSB_STOP_TIMEOUT seconds (the same
 * variable `msb run` reads) plus a minute for the supervisor, default 360 s. */
int msb_stop_timeout_ms(void);

/* Seconds since a process started (its /proc start time in clock ticks). */
int64_t msb_proc_uptime_s(uint64_t start_ticks);

/* The absolute path of the running executable (caller frees), or NULL. */
char *msb_self_exe(void);

#endif
