/* Descriptor I/O loops (io.h). */
#include "common/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

int msb_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int msb_read_file(const char *path, size_t max, enum msb_err_kind bad_kind, char **out, size_t *len,
		  struct msb_err *err)
{
	*out = NULL;
	*len = 0;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return msb_err_set(err, MSB_EK_NOT_FOUND, ENOENT, "opening %s", path);
		return msb_err_sys(err, "opening %s", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return msb_err_sys(err, "reading %s", path);
	if (!S_ISREG(st.st_mode))
		return msb_err_set(err, bad_kind, 0, "%s is not a regular file", path);
	if ((uint64_t)st.st_size > max)
		return msb_err_set(err, bad_kind, 0, "%s is larger than %zu bytes", path, max);
	size_t size = (size_t)st.st_size;
	_cleanup_free_ char *buf = malloc(size + 1);
	if (!buf)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "reading %s", path);
	/* One byte more than its size: a file that grew is not taken half-read. */
	size_t got = 0;
	while (got <= size) {
		ssize_t r = read(fd, buf + got, size + 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return msb_err_sys(err, "reading %s", path);
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got != size)
		return msb_err_set(err, MSB_EK_STATE, 0, "%s changed while it was read; try again",
				   path);
	buf[got] = '\0';
	*len = got;
	*out = steal_pointer(&buf);
	return 0;
}
