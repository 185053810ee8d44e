/* msb_write_all (src/common/io.c): everything arrives through a pipe smaller
 * than the data; a closed reader is EPIPE. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
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

TEST_MAIN(T(all_bytes_arrive_through_a_small_pipe), T(closed_reader_is_epipe))
