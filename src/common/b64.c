#include "common/b64.h"

#include <stdint.h>
#include <stdlib.h>

static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *msb_b64_encode(const void *data, size_t len, size_t *out_len)
{
	const unsigned char *p = data;
	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	size_t n = (len + 2) / 3 * 4;
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = chars[v >> 18 & 63];
		out[o++] = chars[v >> 12 & 63];
		out[o++] = i + 1 < len ? chars[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? chars[v & 63] : '=';
	}
	out[o] = '\0';
	if (out_len)
		*out_len = o;
	return out;
}

static int val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

unsigned char *msb_b64_decode(const char *s, size_t len, size_t *out_len)
{
	if (len % 4)
		return NULL;
	size_t pad = 0;
	if (len && s[len - 1] == '=')
		pad++;
	if (len > 1 && s[len - 2] == '=')
		pad++;
	unsigned char *out = malloc(len / 4 * 3 + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		for (size_t j = 0; j < 4; j++) {
			int d = val(s[i + j]);
			if (d < 0) {
				/* '=' only as the last one or two characters. */
				if (s[i + j] != '=' || i + 4 != len || j < 4 - pad) {
					free(out);
					return NULL;
				}
				d = 0;
			}
			v = v << 6 | (uint32_t)d;
		}
		out[o++] = (unsigned char)(v >> 16);
		if (!(i + 4 == len && pad >= 2))
			out[o++] = (unsigned char)(v >> 8 & 0xff);
		if (!(i + 4 == len && pad >= 1))
			out[o++] = (unsigned char)(v & 0xff);
	}
	*out_len = o;
	return out;
}
