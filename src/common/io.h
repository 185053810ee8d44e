/* Descriptor I/O loops written once. */
#ifndef MSB_COMMON_IO_H
#define MSB_COMMON_IO_H

#include <stddef.h>

/* Write all `len` bytes of `buf` to the blocking descriptor `fd`, again after
 * EINTR and short writes.  0, or -1 with errno (EIO when write returned 0). */
int msb_write_all(int fd, const void *buf, size_t len);

#endif
