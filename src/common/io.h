/* Descriptor I/O loops written once. */
#ifndef MSB_COMMON_IO_H
#define MSB_COMMON_IO_H

#include <stddef.h>

#include "common/error.h"

/* Write all `len` bytes of `buf` to the blocking descriptor `fd`, again after
 * EINTR and short writes.  0, or -1 with errno (EIO when write returned 0). */
int msb_write_all(int fd, const void *buf, size_t len);

/* The whole of the regular file `path` (at most `max` bytes), NUL-terminated
 * in *out (caller frees), its length in *len.  Errors: a missing file is
 * MSB_EK_NOT_FOUND; one that is not regular or is larger than max is
 * `bad_kind` (what that means is the caller's: a user's file is a usage error,
 * a store's document is corrupt); one that changed size while read is
 * MSB_EK_STATE (try again). */
int msb_read_file(const char *path, size_t max, enum msb_err_kind bad_kind, char **out, size_t *len,
		  struct msb_err *err);

#endif
