/* Standard base64 (RFC 4648 §4, padded) for binary data inside JSON. */
#ifndef MSB_COMMON_B64_H
#define MSB_COMMON_B64_H

#include <stddef.h>

/* malloc'd, NUL-terminated; NULL when out of memory or too large. */
char *msb_b64_encode(const void *data, size_t len, size_t *out_len);
/* malloc'd bytes; NULL on bad input (wrong length, bad character or padding)
 * or out of memory.  Whitespace is not accepted. */
unsigned char *msb_b64_decode(const char *s, size_t len, size_t *out_len);

#endif
