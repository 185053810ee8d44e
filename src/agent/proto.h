/* The agent protocol: wire constants and a pure codec used by msb-init (guest)
 * and by the host client.  docs/agent-protocol.md is the specification; this
 * header only names what it defines.
 *
 * A connection is a byte stream of frames.  Each frame is a 16-byte header
 * (little endian) followed by `len` payload bytes:
 *
 *   u32 len  u16 type  u16 flags  u32 id  u32 stream
 *
 * Most payloads are a list of fields (u16 tag, u32 len, bytes); DATA carries
 * raw bytes.  Unknown message types are answered with an ERROR, unknown fields
 * are skipped unless their tag has AGENT_TAG_CRITICAL set.
 *
 * Nothing here does I/O or keeps global state, so all of it can be fuzzed.
 */
#ifndef MSB_AGENT_PROTO_H
#define MSB_AGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define AGENT_PROTO_VERSION  1
#define AGENT_HDR_SIZE	     16
#define AGENT_MAX_PAYLOAD    (1u << 20)	  /* a frame's payload never exceeds 1 MiB */
#define AGENT_DATA_CHUNK     (64u << 10)  /* senders split DATA into chunks of at most this */
#define AGENT_INITIAL_WINDOW (256u << 10) /* flow-control credit per stream at its start */
#define AGENT_MAX_ARGS	     4096	  /* argv and env entries per EXEC, each */
#define AGENT_MAX_CONNS	     32		  /* connections msb-init serves at once; more get "busy" */

/* Well-known vsock ports (guest side unless said otherwise). */
#define AGENT_PORT_AGENT      1024 /* msb-init serves the protocol here */
#define AGENT_PORT_POWER      1025 /* any connection powers the guest off in order */
#define AGENT_PORT_HOST_READY 1023 /* HOST port: msb-init sends one READY frame */

enum agent_type {
	AGENT_HELLO = 0x01,	  /* both ways: version handshake, client first */
	AGENT_READY = 0x02,	  /* guest -> host port 1023, once */
	AGENT_ERROR = 0x03,	  /* a request (id) failed, or id 0: the connection */
	AGENT_OK = 0x04,	  /* a request without other reply succeeded */
	AGENT_EXEC = 0x10,	  /* host: run a command; id names it from now on */
	AGENT_STARTED = 0x11,	  /* guest: the command runs (PID) */
	AGENT_DATA = 0x12,	  /* both: raw bytes of stream `stream` */
	AGENT_EOF = 0x13,	  /* both: stream `stream` ended */
	AGENT_EXIT = 0x14,	  /* guest: the command ended; last frame of its id */
	AGENT_WINDOW = 0x15,	  /* both: more credit for stream `stream` */
	AGENT_SIGNAL = 0x16,	  /* host: send a signal to the command's process group */
	AGENT_RESIZE = 0x17,	  /* host: a PTY command's terminal size changed (ROWS, COLS) */
	AGENT_SHUTDOWN = 0x20,	  /* host: power the guest off in order (OK first) */
	AGENT_SETUP = 0x21,	  /* host: root, clock, entropy, identity (after a restore) */
	AGENT_REPL_RUN = 0x50,	  /* host: run code in the language's persistent interpreter */
	AGENT_REPL_RESULT = 0x51, /* guest: how a REPL run ended; last frame of its id */
};

/* Stream ids of a command: its file descriptor numbers. */
enum agent_stream { AGENT_STDIN = 0, AGENT_STDOUT = 1, AGENT_STDERR = 2 };

#define AGENT_TAG_CRITICAL 0x8000 /* a receiver that does not know the tag must refuse */

enum agent_tag {
	AGENT_T_VERSION = 1,	 /* u32 */
	AGENT_T_NAME = 2,	 /* string: software name and version */
	AGENT_T_HOSTNAME = 3,	 /* string */
	AGENT_T_ERR_KIND = 10,	 /* u32, enum agent_err */
	AGENT_T_ERR_ERRNO = 11,	 /* u32 */
	AGENT_T_ERR_MSG = 12,	 /* string */
	AGENT_T_ARGV = 20,	 /* string, repeated, in order */
	AGENT_T_ENV = 21,	 /* string "K=V", repeated */
	AGENT_T_CWD = 22,	 /* string */
	AGENT_T_TIMEOUT_MS = 23, /* u64, 0 = none */
	AGENT_T_STDIN = 24,	 /* u32: 1 = the host streams stdin, 0 = /dev/null */
	AGENT_T_PID = 30,	 /* u32 */
	AGENT_T_EXIT_CODE = 40,	 /* u32 (0..255) */
	AGENT_T_SIGNAL = 41,	 /* u32 */
	AGENT_T_TIMED_OUT = 42,	 /* u32 0/1 */
	AGENT_T_OOM_KILLED = 43, /* u32 0/1: the guest's memory guard killed it */
	AGENT_T_INCREMENT = 50,	 /* u32 */
	/* SETUP (HOSTNAME above is its hostname too) */
	AGENT_T_ROOT_DEV = 60,	  /* string: /dev/vdX, the read-only image */
	AGENT_T_ROOT_FSTYPE = 61, /* string: erofs | ext4 */
	AGENT_T_OVERLAY = 62,	  /* string: tmpfs | /dev/vdY (ext4 writable layer) */
	AGENT_T_REALTIME_NS = 63, /* u64: the host's CLOCK_REALTIME */
	AGENT_T_ENTROPY = 64,	  /* bytes: 32..256, mixed into the kernel's pool */
	AGENT_T_MACHINE_ID = 65,  /* string: 32 lowercase hex digits */
	AGENT_T_NET = 66,	  /* string: "ADDR/PREFIX GATEWAY DNS" (IPv4) for eth0 */
	/* string "TAG ro|rw PATH": mount virtio-fs TAG at PATH (repeatable);
	 * critical: an agent that cannot mount must not pretend it did. */
	AGENT_T_MOUNT = AGENT_TAG_CRITICAL | 67,
	/* string, repeatable: a program whose files to read into the page cache
	 * (a name looked up in WARM_PATH, or an absolute path): the warm snapshot */
	AGENT_T_WARM = 68,
	AGENT_T_WARM_PATH = 69, /* string: the PATH WARM names are looked up in */
	/* REPL_RUN and REPL_RESULT */
	AGENT_T_LANGUAGE = 90,	     /* string: python | node */
	AGENT_T_CODE = 91,	     /* string: the code of one run */
	AGENT_T_REPL_STATUS = 92,    /* u32, enum agent_repl_status */
	AGENT_T_REPL_MESSAGE = 93,   /* string: the exception, the timeout, the death */
	AGENT_T_REPL_RESTARTED = 94, /* u32 1: a fresh interpreter (earlier state is gone) */
	/* EXEC on a pseudo-terminal: critical, an agent without PTYs must refuse. */
	AGENT_T_PTY = AGENT_TAG_CRITICAL | 110, /* u32 1 */
	AGENT_T_ROWS = 111,			/* u32 1..65535 (EXEC with PTY, RESIZE) */
	AGENT_T_COLS = 112,			/* u32 1..65535 */
	AGENT_T_TERM = 113,			/* string: TERM for the command */
};

/* REPL_RESULT's status. */
enum agent_repl_status {
	AGENT_REPL_OK = 0,
	AGENT_REPL_ERROR = 1,	/* an exception, or the interpreter died */
	AGENT_REPL_TIMEOUT = 2, /* interrupted at the deadline: an error too */
};

/* Error kinds on the wire: fixed numbers, independent of enum msb_err_kind. */
enum agent_err {
	AGENT_E_INTERNAL = 1,
	AGENT_E_BAD_REQUEST = 2, /* malformed frame or fields, wrong state */
	AGENT_E_UNSUPPORTED = 3, /* unknown type or critical field, version */
	AGENT_E_NOT_FOUND = 4,	 /* command or cwd does not exist */
	AGENT_E_EXISTS = 5,	 /* id already in use */
	AGENT_E_SYSTEM = 6,	 /* a syscall failed in the guest */
	AGENT_E_LIMIT = 7,	 /* too many commands / connections */
	AGENT_E_PERMISSION = 8,
};

const char *agent_type_name(uint16_t type);
const char *agent_err_name(uint32_t kind);
/* The project-wide kind for a wire error (docs/errors.md). */
enum msb_err_kind agent_err_to_kind(uint32_t kind);
/* The wire error for an errno from the guest. */
uint32_t agent_err_from_errno(int errnum);

struct agent_hdr {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	uint32_t id;
	uint32_t stream;
};

void agent_hdr_encode(uint8_t out[AGENT_HDR_SIZE], const struct agent_hdr *h);
/* Fails (kind corrupt) when len exceeds AGENT_MAX_PAYLOAD. */
int agent_hdr_decode(const uint8_t in[AGENT_HDR_SIZE], struct agent_hdr *h, struct msb_err *err);

/* ---- building frames ----------------------------------------------------------
 * A growable byte buffer; frames are appended to it.  Allocation failure or an
 * oversized frame sets `failed`, checked once by agent_msg_end(). */
struct agent_buf {
	uint8_t *data;
	size_t len, cap;
	size_t msg_start; /* offset of the frame being built */
	bool failed;
};

void agent_buf_release(struct agent_buf *b);
/* Drop the first n bytes (they were sent). */
void agent_buf_consume(struct agent_buf *b, size_t n);
/* Make room for n more bytes; returns a pointer to them or NULL. */
uint8_t *agent_buf_reserve(struct agent_buf *b, size_t n);

void agent_msg_begin(struct agent_buf *b, uint16_t type, uint32_t id, uint32_t stream);
void agent_put_bytes(struct agent_buf *b, uint16_t tag, const void *v, size_t n);
void agent_put_str(struct agent_buf *b, uint16_t tag, const char *s);
void agent_put_u32(struct agent_buf *b, uint16_t tag, uint32_t v);
void agent_put_u64(struct agent_buf *b, uint16_t tag, uint64_t v);
/* Raw payload bytes (DATA). */
void agent_put_raw(struct agent_buf *b, const void *v, size_t n);
/* Patch the length in; -1 (kind internal) if anything failed since begin. */
int agent_msg_end(struct agent_buf *b, struct msb_err *err);

/* Convenience: a whole ERROR frame. */
int agent_put_error(struct agent_buf *b, uint32_t id, uint32_t kind, int errnum, const char *msg,
		    struct msb_err *err);

/* ---- reading frames -------------------------------------------------------------
 * Reassembles frames from a byte stream.  Read into agent_reader_space(), then
 * agent_reader_commit(); agent_reader_next() yields complete frames whose
 * payload stays valid until the next call to any agent_reader_* function. */
struct agent_reader {
	uint8_t *buf;
	size_t cap, start, end;
};

int agent_reader_init(struct agent_reader *r, struct msb_err *err);
void agent_reader_release(struct agent_reader *r);
/* Where to read to and how much fits (always > 0 unless a frame is pending). */
uint8_t *agent_reader_space(struct agent_reader *r, size_t *avail);
void agent_reader_commit(struct agent_reader *r, size_t n);
/* 1: a frame in *h / *payload; 0: need more bytes; -1: the stream is corrupt
 * (the connection must be closed). */
int agent_reader_next(struct agent_reader *r, struct agent_hdr *h, const uint8_t **payload,
		      struct msb_err *err);

/* ---- fields ---------------------------------------------------------------------- */
struct agent_field {
	uint16_t tag;
	uint32_t len;
	const uint8_t *val;
};

struct agent_iter {
	const uint8_t *p;
	size_t left;
};

static inline void agent_iter_init(struct agent_iter *it, const uint8_t *p, size_t n)
{
	it->p = p;
	it->left = n;
}
/* 1: *f holds the next field; 0: end; -1: truncated field (kind corrupt). */
int agent_iter_next(struct agent_iter *it, struct agent_field *f, struct msb_err *err);
int agent_field_u32(const struct agent_field *f, uint32_t *v, struct msb_err *err);
int agent_field_u64(const struct agent_field *f, uint64_t *v, struct msb_err *err);
/* A NUL-free string, copied into a new allocation owned by the caller. */
int agent_field_str(const struct agent_field *f, char **s, struct msb_err *err);

/* Fails (kind usage) when the tag is critical: the receiver does not know it. */
int agent_field_unknown(const struct agent_field *f, uint16_t type, struct msb_err *err);

/* ---- decoded messages ------------------------------------------------------------- */
struct agent_hello {
	uint32_t version;
	char *name; /* owned; may be NULL */
};
int agent_decode_hello(const uint8_t *p, size_t n, struct agent_hello *out, struct msb_err *err);
void agent_hello_release(struct agent_hello *h);

struct agent_exec_req {
	char **argv; /* NULL-terminated, owned */
	size_t argc;
	char **env; /* NULL-terminated "K=V", owned */
	size_t envc;
	char *cwd; /* owned; NULL = default */
	uint64_t timeout_ms;
	bool stdin_stream;
	/* PTY: stdin, stdout and stderr are one pseudo-terminal, streamed as 0 and 1. */
	bool pty;
	uint16_t rows, cols; /* 0: not given */
	char *term;	     /* owned; NULL: not given */
};
/* Validates: argc >= 1, no empty argv[0], env entries contain '=' after a
 * non-empty name, counts within AGENT_MAX_ARGS. */
int agent_decode_exec(const uint8_t *p, size_t n, struct agent_exec_req *out, struct msb_err *err);
void agent_exec_req_release(struct agent_exec_req *r);

struct agent_error {
	uint32_t kind;
	uint32_t errnum;
	char *msg; /* owned; may be NULL */
};
int agent_decode_error(const uint8_t *p, size_t n, struct agent_error *out, struct msb_err *err);
void agent_error_release(struct agent_error *e);

struct agent_exit {
	bool has_code;
	uint32_t code;
	uint32_t signal; /* 0 when exited normally */
	bool timed_out;
	bool oom_killed; /* msb-init's memory guard killed it (SIGKILL) */
};
int agent_decode_exit(const uint8_t *p, size_t n, struct agent_exit *out, struct msb_err *err);

/* SETUP.  Every field is optional; strings are validated here, so the guest
 * can use them as they are (device names /dev/[a-z0-9/_-]+ below 64 bytes,
 * hostname [A-Za-z0-9.-] below 64 bytes not starting with '-' or '.'). */
#define AGENT_ENTROPY_MIN 32
#define AGENT_ENTROPY_MAX 256

/* eth0's IPv4 configuration (SETUP's NET): address/prefix, default gateway
 * inside that prefix, one name server; addresses in network byte order. */
struct agent_net {
	uint32_t addr, gateway, dns;
	uint8_t prefix; /* 1..30 */
};
/* "ADDR/PREFIX GATEWAY DNS", e.g. "10.0.2.15/24 10.0.2.2 10.0.2.3": dotted
 * quads, single spaces, the gateway in the address's network and neither the
 * network nor the broadcast address.  0 or -1 (kind corrupt) with a reason. */
int agent_parse_net(const char *v, size_t n, struct agent_net *out, struct msb_err *err);

/* A volume: the virtio-fs tag and where it goes in the guest. */
#define AGENT_MOUNTS_MAX 8
struct agent_mount {
	char tag[37];	/* [A-Za-z0-9_-], 1..36 bytes */
	char path[256]; /* absolute, no "." or ".." component, not "/" */
	bool readonly;
};
/* A mount point as struct agent_mount's path takes it (also what msb checks
 * in a volume's guest path). */
bool agent_valid_mount_path(const char *v, size_t n);
/* "TAG ro|rw PATH" into *out: 0, or -1 (kind corrupt) with a reason. */
int agent_parse_mount(const char *v, size_t n, struct agent_mount *out, struct msb_err *err);

/* WARM: at most 8 programs, each a name without '/' or an absolute path
 * below 256 bytes; WARM_PATH below 1024 bytes.  No NUL in either. */
#define AGENT_WARM_MAX	    8
#define AGENT_WARM_NAME_MAX 256
#define AGENT_WARM_PATH_MAX 1024
bool agent_valid_warm_name(const char *v, size_t n);

struct agent_setup_req {
	char root_dev[64];   /* "" = no root setup in this request */
	char root_fstype[8]; /* "" = try erofs, then ext4 */
	char overlay[64];    /* "" = tmpfs */
	char hostname[64];   /* "" = unchanged */
	bool has_realtime;
	uint64_t realtime_ns; /* nanoseconds since the epoch, > 0 */
	uint8_t entropy[AGENT_ENTROPY_MAX];
	size_t entropy_len;   /* 0 = none */
	char machine_id[33];  /* "" = none */
	struct agent_net net; /* net.prefix 0 = no network setup */
	struct agent_mount mounts[AGENT_MOUNTS_MAX];
	unsigned nmounts;
	char warm[AGENT_WARM_MAX][AGENT_WARM_NAME_MAX]; /* WARM: programs to prefetch */
	unsigned nwarm;
	char warm_path[AGENT_WARM_PATH_MAX]; /* WARM_PATH: "" = /usr/bin:/bin */
};
/* Fails (kind corrupt) on a bad or repeated field, and on ROOT_FSTYPE or
 * OVERLAY without ROOT_DEV; (kind usage) on an unknown critical field. */
int agent_decode_setup(const uint8_t *p, size_t n, struct agent_setup_req *out,
		       struct msb_err *err);
bool agent_valid_dev(const char *v, size_t n);
bool agent_valid_hostname(const char *v, size_t n);
bool agent_valid_machine_id(const char *v, size_t n);

/* RESIZE: both ROWS and COLS, each 1..65535. */
int agent_decode_resize(const uint8_t *p, size_t n, uint16_t *rows, uint16_t *cols,
			struct msb_err *err);

struct agent_repl_req {
	char *language; /* owned, non-empty */
	char *code;	/* owned; may be empty */
	uint64_t timeout_ms;
	char *cwd;  /* owned; NULL: "/"; used when the interpreter starts */
	char **env; /* NULL-terminated "K=V", owned; used when the interpreter starts */
	size_t envc;
};
int agent_decode_repl_run(const uint8_t *p, size_t n, struct agent_repl_req *out,
			  struct msb_err *err);
void agent_repl_req_release(struct agent_repl_req *r);

struct agent_repl_outcome {
	uint32_t status; /* enum agent_repl_status; other values are refused */
	char *message;	 /* owned; may be NULL */
	bool restarted;
};
int agent_decode_repl_result(const uint8_t *p, size_t n, struct agent_repl_outcome *out,
			     struct msb_err *err);
void agent_repl_outcome_release(struct agent_repl_outcome *o);

/* The first u32 field with `tag` (STARTED's PID, WINDOW's INCREMENT, SIGNAL's
 * SIGNAL); fails (kind corrupt) when absent or malformed. */
int agent_decode_u32(const uint8_t *p, size_t n, uint16_t type, uint16_t tag, uint32_t *v,
		     struct msb_err *err);

#endif
