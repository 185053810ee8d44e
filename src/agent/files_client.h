/* Files and metrics through the agent (host side; docs/agent-protocol.md,
 * "Files" and "Metrics").  Included by agent/client.h.
 *
 * Guest paths are absolute, or relative to "/".  Transfers stream: the
 * callbacks see the data chunk by chunk (at most 64 KiB each) and the guest
 * never sends more than the client has taken, so neither side holds a whole
 * file.  Each call runs one request to its end on the (single-threaded)
 * client; commands started before keep being served meanwhile.
 *
 * Errors: the agent's (kind from agent_err_to_kind: not_found, usage for "is a
 * directory" and the like, guest for the rest) with its message, or the
 * callback's own error, or the connection's. */
#ifndef MSB_AGENT_FILES_CLIENT_H
#define MSB_AGENT_FILES_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/files_proto.h"
#include "common/error.h"

struct agent_client;

/* Takes `len` bytes of a download; -1 (err set) abandons it. */
typedef int (*agent_sink_fn)(void *ctx, const void *data, size_t len, struct msb_err *err);
/* Fills up to `cap` bytes of an upload; 0 at the end, -1 (err set) abandons it
 * (the guest then removes what it had written). */
typedef ssize_t (*agent_source_fn)(void *ctx, void *buf, size_t cap, struct msb_err *err);

/* Ready-made callbacks over a file descriptor; ctx points to the int fd. */
int agent_sink_fd(void *ctx, const void *data, size_t len, struct msb_err *err);
ssize_t agent_source_fd(void *ctx, void *buf, size_t cap, struct msb_err *err);

/* Download the regular file `path`.  *info (may be NULL) receives its stat
 * before the first byte; the caller clears it (agent_file_info_clear). */
int agent_file_read(struct agent_client *c, const char *path, agent_sink_fn sink, void *ctx,
		    struct agent_file_info *info, struct msb_err *err);

/* Upload to `path`: the guest writes a temporary file in the same directory
 * and renames it over `path` when the source ended, so `path` is either the
 * old file or the whole new one.  mode < 0: 0644.  parents: create missing
 * directories (0755) first. */
int agent_file_write(struct agent_client *c, const char *path, int mode, bool parents,
		     agent_source_fn source, void *ctx, struct msb_err *err);

/* agent_file_write() with every option. */
struct agent_file_write_opts {
	const char *path;
	int mode; /* < 0: 0644 */
	bool parents;
	bool set_mtime; /* give the new file this mtime (seconds since the epoch) */
	uint64_t mtime;
};
int agent_file_write_opts(struct agent_client *c, const struct agent_file_write_opts *o,
			  agent_source_fn source, void *ctx, struct msb_err *err);

/* Create `path` as a symlink to `target` (kept as it is; EEXIST when `path`
 * exists: remove it first). */
int agent_file_symlink(struct agent_client *c, const char *target, const char *path,
		       struct msb_err *err);

/* The entries of a directory (not "." and ".."), in the guest's order, at most
 * AGENT_LIST_MAX.  *entries is caller-owned (agent_file_list_free). */
int agent_file_list(struct agent_client *c, const char *path, struct agent_file_info **entries,
		    size_t *n, struct msb_err *err);
void agent_file_list_free(struct agent_file_info *entries, size_t n);

/* lstat (follow: stat) of `path`; *info is caller-owned (agent_file_info_clear). */
int agent_file_stat(struct agent_client *c, const char *path, bool follow,
		    struct agent_file_info *info, struct msb_err *err);
/* mode < 0: 0755 (else exactly that mode, umask aside); parents: mkdir -p. */
int agent_file_mkdir(struct agent_client *c, const char *path, int mode, bool parents,
		     struct msb_err *err);
/* A file, symlink or empty directory; recursive: a directory with its contents
 * (symlinks are not followed, other file systems mounted below are refused). */
int agent_file_remove(struct agent_client *c, const char *path, bool recursive,
		      struct msb_err *err);

/* CPU over interval_ms (0: the agent's default, 250 ms), memory, disk of "/",
 * processes, uptime.  cpu_x100 / 100.0 is the CPU percent, 100 per busy vCPU. */
int agent_metrics(struct agent_client *c, uint32_t interval_ms, struct agent_metrics *m,
		  struct msb_err *err);

const char *agent_file_type_str(uint32_t type);

#endif
