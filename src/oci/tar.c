#include "oci/tar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/paths.h"

#define NAME_CAP 4096

int oci_tar_clean_name(const char *name, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	if (len == 0 || name[0] == '/')
		return -1;
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && name[j] != '/')
			j++;
		size_t n = j - i;
		if (n == 0 || (n == 1 && name[i] == '.')) {
			/* empty or "." component: skip */
		} else if (n == 2 && name[i] == '.' && name[i + 1] == '.') {
			return -1;
		} else {
			if (memchr(name + i, '\0', n))
				return -1;
			if (o + (o ? 1 : 0) + n + 1 > cap)
				return -1;
			if (o)
				out[o++] = '/';
			memcpy(out + o, name + i, n);
			o += n;
		}
		i = j + 1;
	}
	if (o == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

static int64_t parse_num(const unsigned char *p, size_t n)
{
	if (p[0] & 0x80) {
		/* GNU base-256 */
		uint64_t v = p[0] & 0x3f;
		for (size_t i = 1; i < n; i++) {
			if (v > (UINT64_MAX >> 9))
				return -1;
			v = (v << 8) | p[i];
		}
		return v > INT64_MAX ? -1 : (int64_t)v;
	}
	uint64_t v = 0;
	size_t i = 0;
	while (i < n && (p[i] == ' ' || p[i] == '\0'))
		i++;
	for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
		if (v > (UINT64_MAX >> 4))
			return -1;
		v = v * 8 + (uint64_t)(p[i] - '0');
	}
	return v > INT64_MAX ? -1 : (int64_t)v;
}

static int read_full(int fd, void *buf, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = read(fd, (char *)buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

static int skip(int fd, uint64_t n)
{
	char buf[65536];
	while (n > 0) {
		size_t want = n < sizeof(buf) ? (size_t)n : sizeof(buf);
		if (read_full(fd, buf, want) < 0)
			return -1;
		n -= want;
	}
	return 0;
}

/* Read a `size`-byte extended header body into a NUL-terminated buffer (bounded). */
static char *read_ext(int fd, uint64_t size)
{
	if (size > 1 << 20)
		return NULL;
	uint64_t padded = (size + 511) & ~(uint64_t)511;
	char *b = malloc((size_t)padded + 1);
	if (!b || read_full(fd, b, (size_t)padded) < 0) {
		free(b);
		return NULL;
	}
	b[size] = '\0';
	return b;
}

/* The "path" record of a pax header, or NULL. */
static char *pax_path(const char *b, size_t len)
{
	size_t i = 0;
	while (i < len) {
		char *end;
		unsigned long rec = strtoul(b + i, &end, 10);
		if (end == b + i || *end != ' ' || rec == 0 || i + rec > len)
			return NULL;
		const char *kv = end + 1;
		size_t kvlen = (size_t)(b + i + rec - kv);
		if (kvlen > 5 && strncmp(kv, "path=", 5) == 0 && kv[kvlen - 1] == '\n')
			return strndup(kv + 5, kvlen - 6);
		i += rec;
	}
	return NULL;
}

int oci_tar_extract(const char *tar_path, const char *dest, uint64_t max_bytes, struct msb_err *err)
{
	_cleanup_close_ int fd = open(tar_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening %s", tar_path);
	unsigned char h[512];
	_cleanup_free_ char *long_name = NULL;
	uint64_t total = 0;
	int zeros = 0;
	for (;;) {
		if (read_full(fd, h, sizeof(h)) < 0) {
			if (zeros > 0)
				return 0; /* one zero block then EOF: tolerated */
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: truncated tar", tar_path);
		}
		bool zero = true;
		for (size_t i = 0; i < sizeof(h) && zero; i++)
			zero = h[i] == 0;
		if (zero) {
			if (++zeros == 2)
				return 0;
			continue;
		}
		zeros = 0;
		unsigned sum = 0;
		for (size_t i = 0; i < 512; i++)
			sum += (i >= 148 && i < 156) ? ' ' : h[i];
		int64_t want_sum = parse_num(h + 148, 8);
		if (want_sum < 0 || (unsigned)want_sum != sum)
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "%s is not a tar archive (bad header checksum)",
					   tar_path);
		int64_t size = parse_num(h + 124, 12);
		if (size < 0)
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: bad entry size", tar_path);
		char type = (char)h[156];
		if (type == 'L' || type == 'x') {
			_cleanup_free_ char *b = read_ext(fd, (uint64_t)size);
			if (!b)
				return msb_err_set(err, MSB_EK_CORRUPT, 0,
						   "%s: bad extended header", tar_path);
			free(long_name);
			long_name =
				type == 'L' ? strndup(b, (size_t)size) : pax_path(b, (size_t)size);
			continue;
		}
		if (type == 'g') {
			if (skip(fd, ((uint64_t)size + 511) & ~(uint64_t)511) < 0)
				return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: truncated",
						   tar_path);
			continue;
		}
		char raw[NAME_CAP];
		if (long_name) {
			snprintf(raw, sizeof(raw), "%s", long_name);
			free(long_name);
			long_name = NULL;
		} else {
			char nm[101], pfx[156];
			memcpy(nm, h, 100);
			nm[100] = '\0';
			memcpy(pfx, h + 345, 155);
			pfx[155] = '\0';
			if (memcmp(h + 257, "ustar", 5) == 0 && pfx[0])
				snprintf(raw, sizeof(raw), "%s/%s", pfx, nm);
			else
				snprintf(raw, sizeof(raw), "%s", nm);
		}
		char name[NAME_CAP];
		uint64_t padded = ((uint64_t)size + 511) & ~(uint64_t)511;
		if (oci_tar_clean_name(raw, strlen(raw), name, sizeof(name)) < 0) {
			if (strcmp(raw, ".") == 0 || strcmp(raw, "./") == 0) {
				if (skip(fd, padded) < 0)
					return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: truncated",
							   tar_path);
				continue;
			}
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "%s: refusing the entry '%s' (absolute or with '..')",
					   tar_path, raw);
		}
		char path[NAME_CAP * 2];
		snprintf(path, sizeof(path), "%s/%s", dest, name);
		if (type == '5') {
			if (msb_mkdir_p(path, 0755, err) < 0)
				return -1;
			if (skip(fd, padded) < 0)
				return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: truncated",
						   tar_path);
			continue;
		}
		if (type != '0' && type != '\0' && type != '7') {
			/* links, devices, fifos: not needed for archive formats */
			if (skip(fd, padded) < 0)
				return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: truncated",
						   tar_path);
			continue;
		}
		total += (uint64_t)size;
		if (total > max_bytes)
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "%s holds more than %llu bytes; refusing it", tar_path,
					   (unsigned long long)max_bytes);
		char *slash = strrchr(path, '/');
		*slash = '\0';
		if (msb_mkdir_p(path, 0755, err) < 0)
			return -1;
		*slash = '/';
		/* O_NOFOLLOW + O_EXCL: never write through something already there. */
		_cleanup_close_ int out =
			open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (out < 0)
			return msb_err_sys(err, "%s: extracting %s", tar_path, name);
		char buf[65536];
		uint64_t left = (uint64_t)size;
		while (left > 0) {
			size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
			if (read_full(fd, buf, n) < 0)
				return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: truncated",
						   tar_path);
			if (msb_write_all(out, buf, n) < 0)
				return msb_err_sys(err, "writing %s", path);
			left -= n;
		}
		if (skip(fd, padded - (uint64_t)size) < 0)
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: truncated", tar_path);
	}
}
