/* The server's sandbox backend on real VMs (src/server/backend.h), what
 * `msb server start` uses (docs/api.md, "The VM backend").
 *
 * start (config.image, memory, cpus, envs, workdir, exec; or the sandbox of that
 * name in <project_dir>/Sandboxfile; volumes and ports refused), idempotent start,
 * stop, command.run (upstream's lines, timeout), repl.run (the agent's persistent
 * interpreters), metrics (the guest's, else the host's view), list, streaming
 * execs and files (backend_vm_io.c: an agent connection each), shutdown.  Each VM
 * is booted by a thread of its own that lives as long as the VM.  Sandboxes have
 * a tmpfs writable layer and are stopped by SIGKILL (nothing to flush).
 */
#ifndef MSB_SANDBOX_BACKEND_VM_H
#define MSB_SANDBOX_BACKEND_VM_H

#include "common/error.h"
#include "server/backend.h"

/* project_dir may be NULL (then only config.image starts sandboxes).  Caller-owned. */
struct sandbox_backend *sandbox_backend_vm_new(const char *project_dir, struct msb_err *err);
/* Stops every sandbox still running and frees. */
void sandbox_backend_vm_free(struct sandbox_backend *b);

#endif
