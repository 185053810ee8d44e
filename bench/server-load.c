/* A small HTTP/1.1 load generator for bench/server: N connections (one thread
 * each, keep-alive) send GET <path> back to back for S seconds and count the
 * 200 answers.
 *
 *   cc -O2 -pthread -o server-load bench/server-load.c
 *   server-load 127.0.0.1 5555 /api/v1/health 16 5
 *   -> requests=<n> errors=<n> seconds=<s> rps=<n>
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in addr;
static char request[512];
static size_t request_len;
static atomic_bool stop;
static atomic_ulong done, errors;

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One response: the status code, or -1 when the connection broke. */
static int read_response(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	char *end = NULL;
	while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
		if (len == cap)
			return -1;
		ssize_t n = read(fd, buf + len, cap - len);
		if (n <= 0)
			return -1;
		len += (size_t)n;
	}
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	size_t body = 0;
	const char *cl = memmem(buf, (size_t)(end - buf), "\r\nContent-Length:", 17);
	if (!cl)
		cl = memmem(buf, (size_t)(end - buf), "\r\ncontent-length:", 17);
	if (cl)
		body = strtoul(cl + 17, NULL, 10);
	size_t have = len - (size_t)(end + 4 - buf);
	while (have < body) {
		char tmp[4096];
		size_t want = body - have < sizeof(tmp) ? body - have : sizeof(tmp);
		ssize_t n = read(fd, tmp, want);
		if (n <= 0)
			return -1;
		have += (size_t)n;
	}
	return status;
}

static void *worker(void *arg)
{
	(void)arg;
	char buf[8192];
	int fd = dial();
	while (!atomic_load(&stop)) {
		if (fd < 0 && (fd = dial()) < 0) {
			atomic_fetch_add(&errors, 1);
			usleep(1000);
			continue;
		}
		if (write(fd, request, request_len) != (ssize_t)request_len) {
			close(fd);
			fd = -1;
			atomic_fetch_add(&errors, 1);
			continue;
		}
		int st = read_response(fd, buf, sizeof(buf));
		if (st == 200)
			atomic_fetch_add(&done, 1);
		else
			atomic_fetch_add(&errors, 1);
		if (st < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s HOST PORT PATH CONNECTIONS SECONDS\n", argv[0]);
		return 2;
	}
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
		fprintf(stderr, "%s: not an IPv4 address\n", argv[1]);
		return 2;
	}
	int conns = atoi(argv[4]);
	double secs = atof(argv[5]);
	if (conns < 1 || conns > 1024 || secs <= 0) {
		fprintf(stderr, "bad CONNECTIONS or SECONDS\n");
		return 2;
	}
	request_len =
		(size_t)snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n",
				 argv[3], argv[1], argv[2]);
	pthread_t *t = calloc((size_t)conns, sizeof(*t));
	if (!t)
		return 1;
	double t0 = now_s();
	for (int i = 0; i < conns; i++)
		if (pthread_create(&t[i], NULL, worker, NULL) != 0) {
			perror("pthread_create");
			return 1;
		}
	struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
	nanosleep(&ts, NULL);
	atomic_store(&stop, true);
	for (int i = 0; i < conns; i++)
		pthread_join(t[i], NULL);
	double el = now_s() - t0;
	unsigned long n = atomic_load(&done);
	printf("requests=%lu errors=%lu seconds=%.2f rps=%.0f\n", n, atomic_load(&errors), el,
	       (double)n / el);
	free(t);
	return 0;
}
