/* Base64 with both alphabets (src/common/b64.c): RFC 4648 vectors, round trips
 * of every length, and what each alphabet refuses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "test.h"

static void check_enc(struct test_ctx *t, const struct msb_b64 *a, const char *in, const char *want)
{
	size_t n = 0;
	char *e = msb_b64_encode_as(a, in, strlen(in), &n);
	CHECK_STR(e, want);
	CHECK_INT(n, ==, strlen(want));
	unsigned char out[64];
	size_t got = 0;
	CHECK_INT(msb_b64_decode_as(a, e, n, out, sizeof(out), &got), ==, 0);
	CHECK_INT(got, ==, strlen(in));
	CHECK(memcmp(out, in, got) == 0);
	free(e);
}

TEST(rfc4648_vectors)
{
	static const char *const v[][3] = {
		{"", "", ""},
		{"f", "Zg==", "Zg"},
		{"fo", "Zm8=", "Zm8"},
		{"foo", "Zm9v", "Zm9v"},
		{"foob", "Zm9vYg==", "Zm9vYg"},
		{"fooba", "Zm9vYmE=", "Zm9vYmE"},
		{"foobar", "Zm9vYmFy", "Zm9vYmFy"},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		check_enc(t, &msb_b64_std, v[i][0], v[i][1]);
		check_enc(t, &msb_b64_url, v[i][0], v[i][2]);
	}
	/* the two characters the alphabets differ in */
	check_enc(t, &msb_b64_std, "\xfb\xff", "+/8=");
	check_enc(t, &msb_b64_url, "\xfb\xff", "-_8");
}

TEST(round_trips_of_every_length)
{
	unsigned char in[300], out[300];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 37 + 11);
	const struct msb_b64 *alpha[] = {&msb_b64_std, &msb_b64_url};
	for (int k = 0; k < 2; k++)
		for (size_t n = 0; n <= 100; n++) {
			size_t el = 0, got = 0;
			char *e = msb_b64_encode_as(alpha[k], in + 200 - n, n, &el);
			CHECK(e != NULL);
			CHECK_INT(strlen(e), ==, el);
			CHECK_INT(el, ==, k == 0 ? (n + 2) / 3 * 4 : (n * 4 + 2) / 3);
			CHECK_INT(msb_b64_decode_as(alpha[k], e, el, out, n, &got), ==, 0);
			CHECK_INT(got, ==, n);
			CHECK(memcmp(out, in + 200 - n, n) == 0);
			if (n) /* one byte short of room */
				CHECK_INT(msb_b64_decode_as(alpha[k], e, el, out, n - 1, &got), ==,
					  -1);
			free(e);
		}
	/* the allocating pair (standard alphabet) */
	size_t n = 0;
	char *e = msb_b64_encode(in, 5, &n);
	unsigned char *d = msb_b64_decode(e, n, &n);
	CHECK(d != NULL && n == 5 && memcmp(d, in, 5) == 0);
	free(d);
	free(e);
	d = msb_b64_decode("", 0, &n);
	CHECK(d != NULL && n == 0);
	free(d);
}

TEST(hostile_input_is_refused)
{
	size_t n = 0;
	static const char *const bad_std[] = {
		"Zg=",	    /* not a multiple of 4 */
		"Zg",	    /* padding required */
		"Z===",	    /* three '=' */
		"Zm=v",	    /* '=' inside */
		"=Zm9",	    /* '=' first */
		"Zm9v\n",   /* whitespace */
		"Zm9-",	    /* url alphabet */
		"Zm9v====", /* a whole quad of padding */
		"Zm9\0",    /* NUL */
	};
	for (size_t i = 0; i < sizeof(bad_std) / sizeof(bad_std[0]); i++) {
		size_t len = strlen(bad_std[i]) + (i == 8);
		unsigned char *d = msb_b64_decode(bad_std[i], len, &n);
		if (d)
			TEST_FAIL("'%s' decoded", bad_std[i]);
	}
	/* the standard alphabet accepts stray bits (as before); base64url does not */
	unsigned char *d = msb_b64_decode("Zh==", 4, &n);
	CHECK(d != NULL && n == 1 && d[0] == 'f');
	free(d);
	unsigned char out[16];
	static const char *const bad_url[] = {"a", "ab+/", "AB", "Zh", "Zm9v=", "Zg==", "Zm 9"};
	for (size_t i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++)
		if (msb_b64_decode_as(&msb_b64_url, bad_url[i], strlen(bad_url[i]), out,
				      sizeof(out), &n) == 0)
			TEST_FAIL("'%s' decoded as base64url", bad_url[i]);
}

TEST_MAIN(T(rfc4648_vectors), T(round_trips_of_every_length), T(hostile_input_is_refused))
