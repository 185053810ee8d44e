/* API keys, as upstream makes and checks them: "msb_" + an HS256 JWT whose
 * claims are {exp, iat}, signed with the contents of server.key.
 *
 * All functions here are pure (no I/O except auth_random_key) so that tests and
 * the fuzzer can drive them with a fixed clock. */
#ifndef MSB_SERVER_AUTH_H
#define MSB_SERVER_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/error.h"

#define AUTH_TOKEN_PREFIX "msb_"
/* Seconds of clock skew accepted past `exp` (upstream's jsonwebtoken default). */
#define AUTH_LEEWAY_S 60
/* Length of a generated server key (upstream: 32 random alphanumerics). */
#define AUTH_KEY_LEN 32

enum auth_result {
	AUTH_OK = 0,
	AUTH_NO_CREDENTIALS, /* no header, or not "msb_..." -> 401 code 1001 */
	AUTH_BAD_TOKEN,	     /* bad JWT, bad signature, expired -> 401 code 1004 */
};

/* Checks the request's credentials.  Proxy-Authorization wins over
 * Authorization when present (either may be NULL); "Bearer " is optional.
 * The signature is compared in constant time. */
enum auth_result auth_check(const char *key, const char *proxy_authorization,
			    const char *authorization, time_t now);

/* The 401 body for a failed check: {"error":...,"code":1001|1004}.  Static. */
const char *auth_error_body(enum auth_result r);

/* Makes "msb_<jwt>" with the given claims.  *token is malloc'd, owned by the
 * caller. */
int auth_token_make(const char *key, int64_t iat, int64_t exp, char **token, struct msb_err *err);

/* Parses upstream's keygen duration: <n>s|m|h|d|w|mo|y (mo = 30 days,
 * y = 365 days); a bare number is hours. */
int auth_parse_duration(const char *s, int64_t *seconds, struct msb_err *err);

/* AUTH_KEY_LEN random characters of [A-Za-z0-9] from the kernel's CSPRNG,
 * NUL-terminated. */
int auth_random_key(char out[AUTH_KEY_LEN + 1], struct msb_err *err);

/* Unpadded base64url (src/common/b64.c, msb_b64_url).  encode: malloc'd result
 * or NULL when out of memory.  decode: -1 on a bad character, a bad length or
 * when `cap` is too small. */
char *b64url_encode(const void *data, size_t len);
int b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap, size_t *outlen);

#endif
