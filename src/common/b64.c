#include "common/b64.h"

#include <stdint.h>
#include <stdlib.h>

const struct msb_b64 msb_b64_std = {.c62 = '+', .c63 = '/', .pad = true};
const struct msb_b64 msb_b64_url = {.c62 = '-', .c63 = '_', .canonical = true};

static char chr(const struct msb_b64 *a, uint32_t v)
{
	static const char common[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	return v < 62 ? common[v] : v == 62 ? a->c62 : a->c63;
}

static int val(const struct msb_b64 *a, char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == a->c62)
		return 62;
	if (c == a->c63)
		return 63;
	return -1;
}

char *msb_b64_encode_as(const struct msb_b64 *a, const void *data, size_t len, size_t *out_len)
{
	const unsigned char *p = data;
	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	size_t n = (len + 2) / 3 * 4; /* padded: unpadded is never longer */
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		size_t left = len - i; /* 1, 2, or 3 and more */
		uint32_t v = (uint32_t)p[i] << 16;
		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		out[o++] = chr(a, v >> 18 & 63);
		out[o++] = chr(a, v >> 12 & 63);
		if (left > 1)
			out[o++] = chr(a, v >> 6 & 63);
		else if (a->pad)
			out[o++] = '=';
		if (left > 2)
			out[o++] = chr(a, v & 63);
		else if (a->pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	if (out_len)
		*out_len = o;
	return out;
}

int msb_b64_decode_as(const struct msb_b64 *a, const char *s, size_t len, unsigned char *out,
		      size_t cap, size_t *out_len)
{
	size_t pad = 0;
	if (a->pad) {
		if (len % 4)
			return -1;
		/* '=' only as the last one or two characters */
		while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
			pad++;
	}
	size_t n = len - pad;
	if (n % 4 == 1 || (pad && n % 4 != 4 - pad))
		return -1;
	if (n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > cap)
		return -1;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = val(a, s[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits & 0xff);
		}
	}
	/* Non-canonical trailing bits would let two strings decode alike. */
	if (a->canonical && bits && (acc & ((1u << bits) - 1)))
		return -1;
	*out_len = o;
	return 0;
}

char *msb_b64_encode(const void *data, size_t len, size_t *out_len)
{
	return msb_b64_encode_as(&msb_b64_std, data, len, out_len);
}

unsigned char *msb_b64_decode(const char *s, size_t len, size_t *out_len)
{
	size_t cap = len / 4 * 3 + 1;
	unsigned char *out = malloc(cap);
	if (out && msb_b64_decode_as(&msb_b64_std, s, len, out, cap, out_len) < 0) {
		free(out);
		return NULL;
	}
	return out;
}
