/* API keys: msb_ + HS256 JWT {exp, iat}, as upstream makes and checks them. */
#include "tests/unit/test.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "server/auth.h"

/* Made independently (Python's hmac) for key "secret", exp 2e9, iat 1e9. */
static const char known_token[] =
	"msb_eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjIwMDAwMDAwMDAsImlhdCI6MTAwMDAwMDA"
	"wMH0.Zp6g3tqF7EwL9w21C57MXJFEu9z_D3btIicEODw3-80";

/* A token with arbitrary header and claims JSON, correctly signed. */
static char *sign(const char *key, const char *header, const char *claims)
{
	char *h = b64url_encode(header, strlen(header));
	char *c = b64url_encode(claims, strlen(claims));
	char signing[1024];
	snprintf(signing, sizeof(signing), "%s.%s", h, c);
	unsigned char mac[32];
	unsigned int len = 0;
	HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)signing, strlen(signing), mac,
	     &len);
	char *s = b64url_encode(mac, len);
	char *out = malloc(2048);
	snprintf(out, 2048, "msb_%s.%s", signing, s);
	free(h);
	free(c);
	free(s);
	return out;
}

TEST(made_token_matches_an_independent_implementation)
{
	struct msb_err err = {0};
	char *tok = NULL;
	CHECK_INT(auth_token_make("secret", 1000000000, 2000000000, &tok, &err), ==, 0);
	CHECK_STR(tok, known_token);
	free(tok);
	CHECK_INT(auth_check("secret", NULL, known_token, 1500000000), ==, AUTH_OK);
}

TEST(good_token_with_and_without_bearer)
{
	struct msb_err err = {0};
	char *tok = NULL;
	time_t now = 1700000000;
	CHECK_INT(auth_token_make("k3y", now, now + 3600, &tok, &err), ==, 0);
	char bearer[1024];
	snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
	CHECK_INT(auth_check("k3y", NULL, tok, now), ==, AUTH_OK);
	CHECK_INT(auth_check("k3y", NULL, bearer, now), ==, AUTH_OK);
	free(tok);
}

TEST(bad_signature_and_other_key_are_rejected)
{
	char tok[sizeof(known_token)];
	memcpy(tok, known_token, sizeof(tok));
	/* Flip one character of the signature. */
	tok[sizeof(tok) - 3] = tok[sizeof(tok) - 3] == 'A' ? 'B' : 'A';
	CHECK_INT(auth_check("secret", NULL, tok, 1500000000), ==, AUTH_BAD_TOKEN);
	CHECK_INT(auth_check("other", NULL, known_token, 1500000000), ==, AUTH_BAD_TOKEN);
	/* Flip a claim byte: the signature no longer covers it. */
	memcpy(tok, known_token, sizeof(tok));
	tok[60] = tok[60] == 'A' ? 'B' : 'A';
	CHECK_INT(auth_check("secret", NULL, tok, 1500000000), ==, AUTH_BAD_TOKEN);
}

TEST(expiry_with_upstreams_leeway)
{
	struct msb_err err = {0};
	char *tok = NULL;
	time_t now = 1700000000;
	CHECK_INT(auth_token_make("k", now - 7200, now - 3600, &tok, &err), ==, 0);
	CHECK_INT(auth_check("k", NULL, tok, now), ==, AUTH_BAD_TOKEN);
	free(tok);
	CHECK_INT(auth_token_make("k", now - 100, now - 30, &tok, &err), ==, 0);
	CHECK_INT(auth_check("k", NULL, tok, now), ==, AUTH_OK); /* within 60 s */
	CHECK_INT(auth_check("k", NULL, tok, now + 31), ==, AUTH_BAD_TOKEN);
	free(tok);
}

TEST(wrong_prefix_or_missing_is_invalid_credentials)
{
	CHECK_INT(auth_check("secret", NULL, NULL, 1500000000), ==, AUTH_NO_CREDENTIALS);
	CHECK_INT(auth_check("secret", NULL, known_token + 4, 1500000000), ==, AUTH_NO_CREDENTIALS);
	CHECK_INT(auth_check("secret", NULL, "Basic dXNlcjpwdw==", 1500000000), ==,
		  AUTH_NO_CREDENTIALS);
	CHECK_INT(auth_check("secret", NULL, "msb_", 1500000000), ==, AUTH_BAD_TOKEN);
	CHECK_INT(auth_check("secret", NULL, "msb_a.b", 1500000000), ==, AUTH_BAD_TOKEN);
	CHECK_INT(auth_check("secret", NULL, "msb_a.b.c.d", 1500000000), ==, AUTH_BAD_TOKEN);
	CHECK(strstr(auth_error_body(AUTH_NO_CREDENTIALS), "\"code\":1001"));
	CHECK(strstr(auth_error_body(AUTH_BAD_TOKEN), "\"Invalid or expired token\""));
}

TEST(proxy_authorization_wins)
{
	const char *bad = "Bearer msb_x.y.z";
	CHECK_INT(auth_check("secret", known_token, bad, 1500000000), ==, AUTH_OK);
	CHECK_INT(auth_check("secret", bad, known_token, 1500000000), ==, AUTH_BAD_TOKEN);
	CHECK_INT(auth_check("secret", "nothing", known_token, 1500000000), ==,
		  AUTH_NO_CREDENTIALS);
}

TEST(alg_none_and_missing_claims_are_rejected)
{
	char *tok = sign("secret", "{\"alg\":\"none\",\"typ\":\"JWT\"}",
			 "{\"exp\":2000000000,\"iat\":1}");
	CHECK_INT(auth_check("secret", NULL, tok, 1500000000), ==, AUTH_BAD_TOKEN);
	free(tok);
	tok = sign("secret", "{\"alg\":\"HS256\"}", "{\"exp\":2000000000}");
	CHECK_INT(auth_check("secret", NULL, tok, 1500000000), ==, AUTH_BAD_TOKEN);
	free(tok);
	tok = sign("secret", "{\"alg\":\"HS256\"}", "{\"exp\":\"2000000000\",\"iat\":1}");
	CHECK_INT(auth_check("secret", NULL, tok, 1500000000), ==, AUTH_BAD_TOKEN);
	free(tok);
	/* Extra claims (old clients' namespace) are ignored. */
	tok = sign("secret", "{\"alg\":\"HS256\"}",
		   "{\"exp\":2000000000,\"iat\":1,\"namespace\":\"default\"}");
	CHECK_INT(auth_check("secret", NULL, tok, 1500000000), ==, AUTH_OK);
	free(tok);
	/* Unsigned base64 padding characters are not base64url. */
	CHECK_INT(auth_check("secret", NULL, "msb_e30=.e30=.AAAA", 1500000000), ==, AUTH_BAD_TOKEN);
}

TEST(durations)
{
	struct msb_err err = {0};
	int64_t s = 0;
	CHECK_INT(auth_parse_duration("24h", &s, &err), ==, 0);
	CHECK_INT(s, ==, 86400);
	CHECK_INT(auth_parse_duration("2", &s, &err), ==, 0);
	CHECK_INT(s, ==, 7200);
	CHECK_INT(auth_parse_duration("30s", &s, &err), ==, 0);
	CHECK_INT(s, ==, 30);
	CHECK_INT(auth_parse_duration("15m", &s, &err), ==, 0);
	CHECK_INT(s, ==, 900);
	CHECK_INT(auth_parse_duration("1w", &s, &err), ==, 0);
	CHECK_INT(s, ==, 604800);
	CHECK_INT(auth_parse_duration("1mo", &s, &err), ==, 0);
	CHECK_INT(s, ==, 30 * 86400);
	CHECK_INT(auth_parse_duration("2y", &s, &err), ==, 0);
	CHECK_INT(s, ==, 2 * 365 * 86400);
	CHECK_INT(auth_parse_duration("0", &s, &err), ==, -1);
	CHECK_INT(auth_parse_duration("5x", &s, &err), ==, -1);
	CHECK_INT(auth_parse_duration("", &s, &err), ==, -1);
	CHECK_INT(auth_parse_duration("-1h", &s, &err), ==, -1);
	CHECK_INT(auth_parse_duration("99999999999999999999h", &s, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
}

TEST(random_keys_are_alphanumeric_and_differ)
{
	struct msb_err err = {0};
	char a[AUTH_KEY_LEN + 1], b[AUTH_KEY_LEN + 1];
	CHECK_INT(auth_random_key(a, &err), ==, 0);
	CHECK_INT(auth_random_key(b, &err), ==, 0);
	CHECK_INT(strlen(a), ==, AUTH_KEY_LEN);
	CHECK(strcmp(a, b) != 0);
	for (size_t i = 0; i < AUTH_KEY_LEN; i++)
		CHECK((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= 'A' && a[i] <= 'Z') ||
		      (a[i] >= '0' && a[i] <= '9'));
}

TEST(base64url_round_trip_and_rejects)
{
	unsigned char in[256], out[256];
	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)i;
	for (size_t n = 0; n < 40; n++) {
		char *e = b64url_encode(in + 200, n);
		size_t got = 0;
		CHECK_INT(b64url_decode(e, strlen(e), out, sizeof(out), &got), ==, 0);
		CHECK_INT(got, ==, n);
		CHECK(memcmp(out, in + 200, n) == 0);
		free(e);
	}
	size_t got;
	CHECK_INT(b64url_decode("a", 1, out, sizeof(out), &got), ==, -1);
	CHECK_INT(b64url_decode("ab+/", 4, out, sizeof(out), &got), ==, -1);
	CHECK_INT(b64url_decode("AB", 2, out, sizeof(out), &got), ==, -1); /* stray bits */
	CHECK_INT(b64url_decode("AAAAAAAA", 8, out, 2, &got), ==, -1);	   /* too small */
}

TEST_MAIN(T(made_token_matches_an_independent_implementation),
	  T(good_token_with_and_without_bearer), T(bad_signature_and_other_key_are_rejected),
	  T(expiry_with_upstreams_leeway), T(wrong_prefix_or_missing_is_invalid_credentials),
	  T(proxy_authorization_wins), T(alg_none_and_missing_claims_are_rejected), T(durations),
	  T(random_keys_are_alphanumeric_and_differ), T(base64url_round_trip_and_rejects))
