/* The per-project state database, .menv/sandbox.db (SQLite).
 *
 * One row per (sandbox name, config file).  "RUNNING" is only a claim made by
 * the supervisor that wrote it: each row also records the supervisor's and the
 * VM process's start time (/proc/<pid>/stat field 22, clock ticks since boot)
 * and the boot id, so a reader can tell a live process from a dead one or from
 * a recycled pid, and a crashed VM reads as stopped (msb_state_row_alive,
 * msb_state_reconcile).  Schema and migration rules: docs/sandboxfile.md. */
#ifndef MSB_PROJECT_STATE_H
#define MSB_PROJECT_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

#define MSB_STATE_SCHEMA_VERSION 3

enum msb_sandbox_status { MSB_STATUS_STOPPED = 0, MSB_STATUS_RUNNING = 1 };

struct msb_state_row {
	char *name;
	char *config_file;	    /* the Sandboxfile's name within the project */
	char *config_last_modified; /* RFC 3339 with nanoseconds, UTC */
	enum msb_sandbox_status status;
	pid_t supervisor_pid, microvm_pid; /* 0 when none */
	uint64_t supervisor_start, microvm_start;
	char *boot_id; /* /proc/sys/kernel/random/boot_id when the pids were recorded */
	char *rootfs_paths;
	int64_t created_at, modified_at; /* unix seconds */
	char *config_hash;  /* msb_sandbox_config_hash() at the start, or "" (unknown) */
	char *agent_socket; /* msb-vmm's vsock socket while running, or "" */
};

struct msb_state;

/* Open (creating and migrating as needed) the database at `path`.  The caller
 * owns *out (msb_state_close). */
int msb_state_open(const char *path, struct msb_state **out, struct msb_err *err);
void msb_state_close(struct msb_state *st);

/* The row for (name, config_file); *found false when there is none. */
int msb_state_get(struct msb_state *st, const char *name, const char *config_file,
		  struct msb_state_row *row, bool *found, struct msb_err *err);
/* All rows (of config_file, or all when NULL), ordered by name.  Caller owns
 * the array (msb_state_rows_free). */
int msb_state_list(struct msb_state *st, const char *config_file, struct msb_state_row **rows,
		   size_t *n, struct msb_err *err);
void msb_state_row_clear(struct msb_state_row *row);
void msb_state_rows_free(struct msb_state_row *rows, size_t n);

/* Upsert RUNNING with both pids; their start times and the boot id are read
 * from /proc here (a pid that is not running is refused). */
int msb_state_set_running(struct msb_state *st, const char *name, const char *config_file,
			  const char *config_last_modified, pid_t supervisor_pid, pid_t microvm_pid,
			  const char *rootfs_paths, struct msb_err *err);
/* Mark STOPPED and forget the pids (a no-op when there is no row). */
int msb_state_set_stopped(struct msb_state *st, const char *name, const char *config_file,
			  struct msb_err *err);
/* Record the hash of the config the sandbox was started with (`msb apply`). */
int msb_state_set_config_hash(struct msb_state *st, const char *name, const char *config_file,
			      const char *hash, struct msb_err *err);
/* Record where the running sandbox's agent answers (cleared when stopped). */
int msb_state_set_agent_socket(struct msb_state *st, const char *name, const char *config_file,
			       const char *path, struct msb_err *err);
int msb_state_delete(struct msb_state *st, const char *name, const char *config_file,
		     struct msb_err *err);

/* The newest sandbox_metrics row of a sandbox (written by whoever samples
 * the guest); *found false when there is none.  -1 in a field: not measured. */
struct msb_metrics {
	double cpu_percent;
	int64_t memory_bytes, disk_bytes;
	int64_t at; /* unix seconds */
};
int msb_state_latest_metrics(struct msb_state *st, const char *name, const char *config_file,
			     struct msb_metrics *m, bool *found, struct msb_err *err);
/* Append a sample (fields < 0 are stored as NULL); the newest 100 per sandbox
 * are kept.  A sandbox without a row records nothing. */
int msb_state_add_metrics(struct msb_state *st, const char *name, const char *config_file,
			  const struct msb_metrics *m, struct msb_err *err);

/* True when the row says RUNNING and its supervisor is that same process,
 * still alive (same boot, same pid, same start time), and so is its msb-vmm
 * when one was recorded (a crashed VM reads as stopped). */
bool msb_state_row_alive(const struct msb_state_row *row);
/* Rewrite RUNNING rows that are not alive as STOPPED; *fixed counts them. */
int msb_state_reconcile(struct msb_state *st, size_t *fixed, struct msb_err *err);

/* /proc/<pid>/stat start time; -1 when the process does not exist. */
int msb_proc_start_time(pid_t pid, uint64_t *ticks);
/* The file's modification time as RFC 3339 with nanoseconds (caller frees). */
int msb_file_mtime_rfc3339(const char *path, char **out, struct msb_err *err);

#endif
