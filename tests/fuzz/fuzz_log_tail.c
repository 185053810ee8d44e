/* `msb log -t N` on arbitrary log bytes (guest console output is hostile):
 * msb_log_tail_offset() against a naive forward count.  Input: byte 0 picks
 * the line count (0..63), byte 1 the read chunk (1..64, so chunk boundaries
 * are crossed), the rest is the log. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "project/menv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Lines in buf: newlines, plus one for text after the last newline. */
static unsigned long count_lines(const uint8_t *buf, size_t len)
{
	unsigned long n = 0;
	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	if (len && buf[len - 1] != '\n')
		n++;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned long lines = data[0] % 64;
	size_t chunk = (size_t)(data[1] % 64) + 1;
	const uint8_t *log = data + 2;
	size_t len = size - 2;
	int fd = memfd_create("log", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (len && write(fd, log, len) != (ssize_t)len) {
		close(fd);
		return 0;
	}
	unsigned long left = 0;
	int64_t off = msb_log_tail_offset(fd, lines, chunk, &left);
	close(fd);
	if (off < 0 || (uint64_t)off > len)
		abort();
	unsigned long total = count_lines(log, len);
	if (lines == 0) {
		if ((size_t)off != len || left != 0)
			abort();
		return 0;
	}
	/* It starts a line, and what follows is the last min(lines, total). */
	if (off > 0 && log[off - 1] != '\n')
		abort();
	unsigned long want = total < lines ? total : lines;
	if (count_lines(log + off, len - (size_t)off) != want)
		abort();
	if (left != lines - want)
		abort();
	if (want < lines && off != 0)
		abort();
	return 0;
}
