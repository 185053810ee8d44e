/* The files of .menv/ that need no VM: rotating logs and cleaning.
 *
 * Logs: .menv/log/<config>/<name>.log, rotated as upstream does: when a write
 * would take the file past max_bytes (MSB_LOG_MAX_BYTES, 10 MiB), the file is
 * renamed to <name>.log.old (replacing the previous .old) and a new one started,
 * so at most 2 x max_bytes are kept per sandbox. */
#ifndef MSB_PROJECT_MENV_H
#define MSB_PROJECT_MENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "project/project.h"

#define MSB_LOG_MAX_BYTES (10u * 1024 * 1024)

struct msb_rotlog;

/* Open (creating its directory and the file, mode 0640) for appending.  The
 * caller owns *out (msb_rotlog_close). */
int msb_rotlog_open(const char *path, uint64_t max_bytes, struct msb_rotlog **out,
		    struct msb_err *err);
/* Append all of buf, rotating first when it would not fit (a single write
 * larger than max_bytes goes whole into a fresh file). */
int msb_rotlog_write(struct msb_rotlog *log, const void *buf, size_t len, struct msb_err *err);
void msb_rotlog_close(struct msb_rotlog *log);

/* `msb clean` without a VM.
 *   name == NULL: remove the whole .menv/ — refused (MSB_EK_STATE) while the
 *     config file exists, unless force.
 *   name: remove the sandbox's writable layer, patch dir, logs and DB row —
 *     refused while the config still names it, unless force; refused while it
 *     runs (a live supervisor per msb_state_row_alive), force or not.
 * Directory trees are removed without following symlinks or crossing mounts. */
int msb_project_clean(const struct msb_project *p, const char *name, bool force,
		      struct msb_err *err);

/* rm -rf that does not follow symlinks or cross file systems; a missing path
 * is not an error. */
int msb_remove_tree(const char *path, struct msb_err *err);

/* Bytes allocated on disk under path (st_blocks: a sparse disk image counts
 * what it holds, not its size); -1 when path does not exist. */
int msb_tree_usage(const char *path, uint64_t *bytes);

/* `msb log -t N`: the offset in the log open as fd where its last `lines`
 * lines start (a final newline ends the last line; text after the last
 * newline is a line too), reading backwards `chunk` bytes at a time (0: 8 KiB).
 * lines == 0: the end.  *left gets how many lines the file lacked (to take
 * from the rotated .old before it).  -1 when fd cannot be read. */
int64_t msb_log_tail_offset(int fd, unsigned long lines, size_t chunk, unsigned long *left);

#endif
