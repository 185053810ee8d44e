/* msb_write_all (src/common/io.c): everything arrives through a pipe smaller
 * than the data; a closed reader is EPIPE.  msb_read_file: the whole file, and
 * each refusal with its kind. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/io.h"
#include "test.h"

#define BIG (1u << 20)

struct reader {
	int fd;
	size_t got;
	unsigned char *buf;
};

static void *drain(void *arg)
{
	struct reader *r = arg;
	ssize_t n;
	while ((n = read(r->fd, r->buf + r->got, BIG - r->got)) > 0)
		r->got += (size_t)n;
	return NULL;
}

TEST(all_bytes_arrive_through_a_small_pipe)
{
	int p[2];
	CHECK(pipe(p) == 0);
	fcntl(p[1], F_SETPIPE_SZ, 4096);
	unsigned char *data = malloc(BIG);
	struct reader r = {.fd = p[0], .buf = malloc(BIG)};
	CHECK(data && r.buf);
	for (size_t i = 0; i < BIG; i++)
		data[i] = (unsigned char)(i * 31 + 7);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, drain, &r) == 0);
	CHECK_INT(msb_write_all(p[1], data, BIG), ==, 0);
	close(p[1]);
	pthread_join(th, NULL);
	close(p[0]);
	CHECK_INT(r.got, ==, BIG);
	CHECK(memcmp(data, r.buf, BIG) == 0);
	CHECK_INT(msb_write_all(-1, data, 0), ==, 0); /* nothing to write: no call */
	free(data);
	free(r.buf);
}

TEST(closed_reader_is_epipe)
{
	signal(SIGPIPE, SIG_IGN);
	int p[2];
	CHECK(pipe(p) == 0);
	close(p[0]);
	errno = 0;
	CHECK_INT(msb_write_all(p[1], "x", 1), ==, -1);
	CHECK_INT(errno, ==, EPIPE);
	close(p[1]);
	CHECK_INT(msb_write_all(p[1], "x", 1), ==, -1);
	CHECK_INT(errno, ==, EBADF);
}

TEST(read_file_whole_and_refusals_with_their_kinds)
{
	char dir[] = "/tmp/msb-io-XXXXXX", path[64];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/f", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK_INT(msb_write_all(fd, "abc\0def", 7), ==, 0);
	close(fd);
	struct msb_err err = {0};
	char *text = NULL;
	size_t len = 1;
	CHECK_INT(msb_read_file(path, 7, MSB_EK_CORRUPT, &text, &len, &err), ==, 0);
	CHECK_INT(len, ==, 7);
	CHECK(memcmp(text, "abc\0def", 8) == 0); /* NUL-terminated too */
	free(text);
	/* One byte over the limit: the caller's kind for a bad file. */
	CHECK_INT(msb_read_file(path, 6, MSB_EK_CORRUPT, &text, &len, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	CHECK(text == NULL && len == 0);
	CHECK_INT(msb_read_file(dir, 1 << 20, MSB_EK_USAGE, &text, &len, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	CHECK(strstr(err.msg, "not a regular file") != NULL);
	/* Missing: not found, whatever the caller's kind. */
	unlink(path);
	CHECK_INT(msb_read_file(path, 1 << 20, MSB_EK_CORRUPT, &text, &len, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	/* An empty file is an empty string. */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK_INT(msb_read_file(path, 0, MSB_EK_USAGE, &text, &len, &err), ==, 0);
	CHECK(text && text[0] == '\0' && len == 0);
	free(text);
	unlink(path);
	rmdir(dir);
}

TEST_MAIN(T(all_bytes_arrive_through_a_small_pipe), T(closed_reader_is_epipe),
	  T(read_file_whole_and_refusals_with_their_kinds))
