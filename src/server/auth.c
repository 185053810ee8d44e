/* HS256 JWT API keys (see auth.h). */
#include "server/auth.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/b64.h"
#include "common/cleanup.h"

char *b64url_encode(const void *data, size_t len)
{
	return msb_b64_encode_as(&msb_b64_url, data, len, NULL);
}

int b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
	return msb_b64_decode_as(&msb_b64_url, s, len, out, cap, outlen);
}

static int hs256(const char *key, const char *msg, size_t len, unsigned char mac[32])
{
	unsigned int mac_len = 0;
	if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, len, mac,
		  &mac_len) ||
	    mac_len != 32)
		return -1;
	return 0;
}

int auth_token_make(const char *key, int64_t iat, int64_t exp, char **token, struct msb_err *err)
{
	static const char header[] = "{\"typ\":\"JWT\",\"alg\":\"HS256\"}";
	char claims[96];
	snprintf(claims, sizeof(claims), "{\"exp\":%" PRId64 ",\"iat\":%" PRId64 "}", exp, iat);
	_cleanup_free_ char *h = b64url_encode(header, strlen(header));
	_cleanup_free_ char *c = b64url_encode(claims, strlen(claims));
	if (!h || !c)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "making a token");
	size_t signed_len = strlen(h) + 1 + strlen(c);
	_cleanup_free_ char *signing = malloc(signed_len + 1);
	if (!signing)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "making a token");
	snprintf(signing, signed_len + 1, "%s.%s", h, c);
	unsigned char mac[32];
	if (hs256(key, signing, signed_len, mac) < 0)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "HMAC-SHA256 failed");
	_cleanup_free_ char *sig = b64url_encode(mac, sizeof(mac));
	if (!sig)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "making a token");
	size_t n = strlen(AUTH_TOKEN_PREFIX) + signed_len + 1 + strlen(sig) + 1;
	char *t = malloc(n);
	if (!t)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "making a token");
	snprintf(t, n, "%s%s.%s", AUTH_TOKEN_PREFIX, signing, sig);
	*token = t;
	return 0;
}

/* A JSON integer claim that fits in int64 and is not negative. */
static bool claim_int(json_t *claims, const char *name, int64_t *v)
{
	json_t *j = json_object_get(claims, name);
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = json_integer_value(j);
	return true;
}

static enum auth_result check_jwt(const char *key, const char *jwt, time_t now)
{
	const char *dot1 = strchr(jwt, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
		return AUTH_BAD_TOKEN;
	/* Signature first: nothing the caller sent is parsed before it is
	 * authenticated except its base64 framing. */
	unsigned char want[32], got[64];
	size_t got_len = 0;
	size_t sig_len = strlen(dot2 + 1);
	if (b64url_decode(dot2 + 1, sig_len, got, sizeof(got), &got_len) < 0 || got_len != 32)
		return AUTH_BAD_TOKEN;
	if (hs256(key, jwt, (size_t)(dot2 - jwt), want) < 0)
		return AUTH_BAD_TOKEN;
	if (CRYPTO_memcmp(want, got, 32) != 0)
		return AUTH_BAD_TOKEN;

	unsigned char buf[1024];
	size_t n = 0;
	if (b64url_decode(jwt, (size_t)(dot1 - jwt), buf, sizeof(buf) - 1, &n) < 0)
		return AUTH_BAD_TOKEN;
	json_t *hdr = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
	bool alg_ok = json_is_object(hdr) && json_is_string(json_object_get(hdr, "alg")) &&
		      strcmp(json_string_value(json_object_get(hdr, "alg")), "HS256") == 0;
	json_decref(hdr);
	if (!alg_ok)
		return AUTH_BAD_TOKEN;

	if (b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof(buf) - 1, &n) < 0)
		return AUTH_BAD_TOKEN;
	json_t *claims = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
	int64_t exp = 0, iat = 0;
	bool ok = json_is_object(claims) && claim_int(claims, "exp", &exp) &&
		  claim_int(claims, "iat", &iat);
	json_decref(claims);
	if (!ok)
		return AUTH_BAD_TOKEN;
	if (exp > INT64_MAX - AUTH_LEEWAY_S || (int64_t)now > exp + AUTH_LEEWAY_S)
		return AUTH_BAD_TOKEN;
	return AUTH_OK;
}

enum auth_result auth_check(const char *key, const char *proxy_authorization,
			    const char *authorization, time_t now)
{
	const char *v = proxy_authorization ? proxy_authorization : authorization;
	if (!v)
		return AUTH_NO_CREDENTIALS;
	if (strncmp(v, "Bearer ", 7) == 0)
		v += 7;
	if (strncmp(v, AUTH_TOKEN_PREFIX, strlen(AUTH_TOKEN_PREFIX)) != 0)
		return AUTH_NO_CREDENTIALS;
	if (!key || !*key)
		return AUTH_BAD_TOKEN;
	return check_jwt(key, v + strlen(AUTH_TOKEN_PREFIX), now);
}

const char *auth_error_body(enum auth_result r)
{
	if (r == AUTH_NO_CREDENTIALS)
		return "{\"error\":\"Invalid credentials\",\"code\":1001}";
	return "{\"error\":\"Invalid or expired token\",\"code\":1004}";
}

int auth_parse_duration(const char *s, int64_t *seconds, struct msb_err *err)
{
	static const struct {
		const char *suffix;
		int64_t mult;
	} units[] = {
		{"", 3600},   {"s", 1},	     {"m", 60},	      {"h", 3600},
		{"d", 86400}, {"w", 604800}, {"mo", 2592000}, {"y", 31536000},
	};
	const char *p = s;
	int64_t n = 0;
	if (!s || *p < '0' || *p > '9')
		goto bad;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (INT64_MAX - 9) / 10)
			goto bad;
		n = n * 10 + (*p - '0');
	}
	for (size_t i = 0; i < MSB_ARRAY_SIZE(units); i++) {
		if (strcmp(p, units[i].suffix) != 0)
			continue;
		if (n == 0 || n > INT64_MAX / units[i].mult / 4)
			goto bad;
		*seconds = n * units[i].mult;
		return 0;
	}
bad:
	return msb_err_set(err, MSB_EK_USAGE, 0,
			   "invalid duration '%s': use a positive number with s, m, h, d, w, mo "
			   "or y (a bare number means hours), e.g. 24h or 7d",
			   s ? s : "");
}

int auth_random_key(char out[AUTH_KEY_LEN + 1], struct msb_err *err)
{
	static const char alnum[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	size_t i = 0;
	while (i < AUTH_KEY_LEN) {
		unsigned char buf[64];
		ssize_t n = getrandom(buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return msb_err_sys(err, "reading random bytes for the server key");
		}
		/* 248 = 4 * 62: rejecting bytes above it keeps the choice uniform. */
		for (ssize_t j = 0; j < n && i < AUTH_KEY_LEN; j++)
			if (buf[j] < 248)
				out[i++] = alnum[buf[j] % 62];
	}
	out[AUTH_KEY_LEN] = '\0';
	return 0;
}
