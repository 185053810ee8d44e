/* The project's one error contract.
 *
 * Every function that can fail returns a negative value (usually -1) and fills a
 * caller-owned `struct msb_err`.  Callers add context on the way up with
 * msb_err_wrap(), so the message a user finally reads goes from the outermost
 * operation to the root cause: "starting sandbox 'web': opening disk
 * /x/rootfs.img: No such file or directory".
 *
 * The `kind` says who can fix it; the CLI maps it to an exit status and the
 * server to a JSON-RPC error, each in exactly one place (see docs/errors.md).
 * `errnum` keeps the errno of the root cause (0 when none).
 *
 * die() does not exist: library code never exits the process.
 */
#ifndef MSB_COMMON_ERROR_H
#define MSB_COMMON_ERROR_H

#include <stdarg.h>
#include <stddef.h>

enum msb_err_kind {
	MSB_EK_NONE = 0,
	MSB_EK_USAGE,	  /* the caller's input is wrong: bad flag, bad syntax */
	MSB_EK_NOT_FOUND, /* a named thing (sandbox, image, file) does not exist */
	MSB_EK_EXISTS,	  /* a named thing exists already */
	MSB_EK_STATE,	  /* the thing is in the wrong state (not running, busy) */
	MSB_EK_SYSTEM,	  /* the host refused: permissions, missing /dev/kvm, ENOSPC */
	MSB_EK_NETWORK,	  /* a registry or server could not be reached */
	MSB_EK_GUEST,	  /* the guest misbehaved or reported a failure */
	MSB_EK_TIMEOUT,	  /* a deadline passed */
	MSB_EK_CORRUPT,	  /* data failed a check: digest, checksum, format */
	MSB_EK_INTERNAL,  /* a bug of ours */
};

#define MSB_ERR_MSG_MAX 1024

struct msb_err {
	enum msb_err_kind kind;
	int errnum;
	char msg[MSB_ERR_MSG_MAX];
};

/* Fill `err` and return -1.  `errnum` is an errno value or 0; when non-zero its
 * strerror() text is appended as ": <text>". */
__attribute__((format(printf, 4, 5))) int msb_err_set(struct msb_err *err, enum msb_err_kind kind,
						      int errnum, const char *fmt, ...);
__attribute__((format(printf, 4, 0))) int msb_err_vset(struct msb_err *err, enum msb_err_kind kind,
						       int errnum, const char *fmt, va_list ap);

/* Shorthand for the common case: a system call failed; errno is read here. */
#define msb_err_sys(err, ...) msb_err_set((err), MSB_EK_SYSTEM, errno, __VA_ARGS__)

/* Prefix the existing message with context ("<context>: <old message>") and
 * return -1.  The kind and errnum are kept. */
__attribute__((format(printf, 2, 3))) int msb_err_wrap(struct msb_err *err, const char *fmt, ...);

/* Reset to "no error". */
void msb_err_clear(struct msb_err *err);

/* A short stable name for a kind ("usage", "not_found", ...), for logs and APIs. */
const char *msb_err_kind_name(enum msb_err_kind kind);

/* The CLI's exit status for a kind (docs/errors.md). */
int msb_err_exit_code(enum msb_err_kind kind);

#endif
