/* The agent protocol's file and metrics requests: wire constants and their pure
 * codec (files_codec.c), shared by msb-init and the host client.  The
 * specification is docs/agent-protocol.md ("Files", "Metrics"); proto.h has
 * the frame format these build on.
 *
 * Types 0x30-0x3f and 0x40, tags 70-89 (files) and 100-109 (metrics) belong
 * to these requests. */
#ifndef MSB_AGENT_FILES_PROTO_H
#define MSB_AGENT_FILES_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/proto.h"
#include "common/error.h"

enum agent_file_type_msg {
	AGENT_FILE_READ = 0x30,	   /* host: send a file: INFO, DATA..., EOF (stream 1) */
	AGENT_FILE_WRITE = 0x31,   /* host: DATA... EOF (stream 0) become a file; OK */
	AGENT_FILE_LIST = 0x32,	   /* host: ENTRIES... then OK */
	AGENT_FILE_STAT = 0x33,	   /* host: INFO */
	AGENT_FILE_MKDIR = 0x34,   /* host: OK */
	AGENT_FILE_REMOVE = 0x35,  /* host: OK */
	AGENT_FILE_INFO = 0x36,	   /* guest: one entry's fields */
	AGENT_FILE_ENTRIES = 0x37, /* guest: ENTRY fields, each a nested field list */
	AGENT_FILE_SYMLINK = 0x38, /* host: PATH becomes a symlink to ENT_LINK; OK */
	AGENT_METRICS = 0x40,	   /* host: request (INTERVAL_MS); guest: the figures */
};

/* A file transfer's stream: the host writes stream 0, the guest stream 1. */
enum { AGENT_FILE_UP = 0, AGENT_FILE_DOWN = 1 };

enum agent_file_tag {
	AGENT_T_PATH = 70,	/* string: absolute, or relative to CWD (22) or "/" */
	AGENT_T_MODE = 71,	/* u32: permission bits (07777) */
	AGENT_T_PARENTS = 72,	/* u32 0/1: create missing parent directories */
	AGENT_T_RECURSIVE = 73, /* u32 0/1: remove a directory with its contents */
	AGENT_T_FOLLOW = 74,	/* u32 0/1: STAT follows a final symlink */
	AGENT_T_ENTRY = 75,	/* nested fields: one directory entry */
	AGENT_T_ENT_NAME = 76,	/* string */
	AGENT_T_ENT_TYPE = 77,	/* u32, enum agent_file_type */
	AGENT_T_ENT_SIZE = 78,	/* u64 bytes */
	AGENT_T_ENT_MODE = 79,	/* u32: permission bits (07777) */
	AGENT_T_ENT_MTIME = 80, /* u64: seconds since the epoch (earlier: 0) */
	AGENT_T_ENT_LINK = 81,	/* string: a symlink's target */
};

enum agent_metrics_tag {
	AGENT_T_INTERVAL_MS = 100, /* u32: the CPU sampling interval */
	AGENT_T_CPU_X100 = 101,	   /* u32: CPU busy, 100ths of a percent of ONE vCPU */
	AGENT_T_NCPUS = 102,	   /* u32: online vCPUs (cpu percent max = 100 * this) */
	AGENT_T_MEM_TOTAL = 103,   /* u64 bytes (MemTotal) */
	AGENT_T_MEM_USED = 104,	   /* u64 bytes (MemTotal - MemAvailable) */
	AGENT_T_DISK_TOTAL = 105,  /* u64 bytes of "/" (statvfs) */
	AGENT_T_DISK_USED = 106,   /* u64 bytes */
	AGENT_T_PROCS = 107,	   /* u32: processes */
	AGENT_T_UPTIME_MS = 108,   /* u64 */
};

enum agent_file_type {
	AGENT_FT_FILE = 1,
	AGENT_FT_DIR = 2,
	AGENT_FT_SYMLINK = 3,
	AGENT_FT_OTHER = 4, /* device, fifo, socket */
};

#define AGENT_PATH_MAX	      4096
#define AGENT_LIST_MAX	      65536 /* entries of one FILE_LIST; more: ERROR limit */
#define AGENT_METRICS_DEFAULT 250   /* ms of CPU sampling when INTERVAL_MS is absent */
#define AGENT_METRICS_MAX     10000

/* A decoded FILE_* request.  Only the fields of its type are accepted:
 * MODE and PARENTS (WRITE, MKDIR), ENT_MTIME (WRITE: the new file's mtime),
 * RECURSIVE (REMOVE), FOLLOW (STAT), ENT_LINK (SYMLINK: required). */
struct agent_file_req {
	char *path; /* owned; the CWD already applied: always absolute */
	uint32_t mode;
	bool has_mode;
	bool parents, recursive, follow;
	bool has_mtime;
	uint64_t mtime;
	char *target; /* owned; SYMLINK's ENT_LINK, taken as it is */
};
/* Validates: PATH present, non-empty, below AGENT_PATH_MAX (after CWD); CWD
 * non-empty; MODE within 07777.  Fails with kind usage (unknown critical field)
 * or corrupt. */
int agent_decode_file_req(const uint8_t *p, size_t n, uint16_t type, struct agent_file_req *out,
			  struct msb_err *err);
void agent_file_req_release(struct agent_file_req *r);

/* What FILE_STAT, FILE_READ's INFO and each FILE_LIST entry describe. */
struct agent_file_info {
	char *name; /* owned: a list entry's name; INFO: the path's last component */
	uint32_t type;
	uint64_t size;
	uint32_t mode;
	uint64_t mtime;
	char *link; /* owned; symlinks only, else NULL */
};
void agent_file_info_clear(struct agent_file_info *e);

/* The fields of one entry (INFO's payload). */
void agent_put_file_info(struct agent_buf *b, const struct agent_file_info *e);
/* One ENTRY field holding them (FILE_ENTRIES). */
void agent_put_file_entry(struct agent_buf *b, const struct agent_file_info *e);
/* Decode the fields of one entry.  With `entry_name` the name must be one path
 * component (no '/', not "", "." or ".."): a listing is used to build paths
 * on the host, so a hostile guest must not name "../x".  Type must be known. */
int agent_decode_file_info(const uint8_t *p, size_t n, bool entry_name, struct agent_file_info *out,
			   struct msb_err *err);
/* FILE_ENTRIES: calls fn for each ENTRY (decoded as above); stops at fn's -1. */
int agent_decode_file_entries(const uint8_t *p, size_t n,
			      int (*fn)(void *ctx, struct agent_file_info *e, struct msb_err *err),
			      void *ctx, struct msb_err *err);

struct agent_metrics {
	uint32_t interval_ms;
	uint32_t cpu_x100; /* 100ths of a percent of one vCPU: 10000 = one busy vCPU */
	uint32_t ncpus;
	uint64_t mem_total, mem_used;
	uint64_t disk_total, disk_used;
	uint32_t procs;
	uint64_t uptime_ms;
};
void agent_put_metrics(struct agent_buf *b, const struct agent_metrics *m);
/* Every field is required in a reply; used <= total is checked. */
int agent_decode_metrics(const uint8_t *p, size_t n, struct agent_metrics *m, struct msb_err *err);
/* The request's INTERVAL_MS (default AGENT_METRICS_DEFAULT, at most
 * AGENT_METRICS_MAX, else kind usage). */
int agent_decode_metrics_req(const uint8_t *p, size_t n, uint32_t *interval_ms,
			     struct msb_err *err);

/* The name of a type of this header ("FILE_READ"...), or NULL. */
const char *agent_file_type_name(uint16_t type);

#endif
