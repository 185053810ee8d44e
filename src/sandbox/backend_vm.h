/* The server's sandbox backend on real VMs (src/server/backend.h).
 *
 * What works: start (config.image, memory, cpus, envs, workdir; or the sandbox of that
 * name in <project_dir>/Sandboxfile), idempotent start, stop, command.run (output as
 * upstream's lines, timeout), list, metrics (running yes/no; figures null), shutdown.
 * Sandboxes have a tmpfs writable layer (nothing persists across stop/start yet) and are
 * stopped by SIGKILL (nothing to flush).  Not yet: REPLs, streaming execs, files: they fail
 * with kind system and "not supported by this backend yet".
 *
 * To plug it in: in cmd_server.c's serve(),
 *   struct sandbox_backend *b = sandbox_backend_vm_new(cfg.project_dir, &err);
 *   msb_server_new(&cfg, b, &s, &err);  ...  sandbox_backend_vm_free(b);
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
