/* Base64 (RFC 4648): one codec, two alphabets.  msb_b64_std: §4, padded, for
 * binary data inside JSON.  msb_b64_url: §5, unpadded and canonical only, for
 * JWTs (src/server/auth.c). */
#ifndef MSB_COMMON_B64_H
#define MSB_COMMON_B64_H

#include <stdbool.h>
#include <stddef.h>

struct msb_b64 {
	char c62, c63;	/* the two characters the alphabets differ in */
	bool pad;	/* encode with '=' and require it when decoding */
	bool canonical; /* refuse unused trailing bits that are not zero */
};
extern const struct msb_b64 msb_b64_std, msb_b64_url;

/* malloc'd, NUL-terminated; NULL when out of memory or too large.  *out_len
 * (optional): the string's length. */
char *msb_b64_encode_as(const struct msb_b64 *a, const void *data, size_t len, size_t *out_len);
/* Decode into out (cap bytes).  -1 on a bad character, a bad length or
 * padding, stray bits (canonical alphabets), or when cap is too small.
 * Whitespace is not accepted. */
int msb_b64_decode_as(const struct msb_b64 *a, const char *s, size_t len, unsigned char *out,
		      size_t cap, size_t *out_len);

/* Standard alphabet, padded. */
char *msb_b64_encode(const void *data, size_t len, size_t *out_len);
/* malloc'd bytes; NULL on bad input or out of memory. */
unsigned char *msb_b64_decode(const char *s, size_t len, size_t *out_len);

#endif
