/* The libmicrohttpd layer over real loopback sockets, with a scripted
 * backend: streamed exec output, a client that disconnects from a silent
 * process, streamed uploads and downloads, and stopping with a stream open. */
#include "tests/unit/test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/test_server_mock.h"

static struct mock m;
static struct sandbox_backend be;

static struct msb_server *start(void)
{
	memset(&m, 0, sizeof(m));
	be = mock_backend(&m);
	struct msb_server_config cfg = {.dev = true, .port = 0};
	struct msb_server *s = NULL;
	struct msb_err err = {0};
	if (msb_server_new(&cfg, &be, &s, &err) < 0 || msb_server_listen(s, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		msb_server_free(s);
		return NULL;
	}
	return s;
}

static int dial(struct msb_server *s)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(msb_server_port(s))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends a whole HTTP/1.0 request and reads the reply until the server closes. */
static size_t exchange(struct msb_server *s, const char *req, size_t req_len, char *out, size_t cap)
{
	int fd = dial(s);
	if (fd < 0)
		return 0;
	size_t off = 0;
	while (off < req_len) {
		ssize_t n = write(fd, req + off, req_len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	size_t got = 0;
	ssize_t n;
	while (got < cap - 1 && (n = read(fd, out + got, cap - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fd);
	return got;
}

static const char *body_start(const char *reply)
{
	const char *p = strstr(reply, "\r\n\r\n");
	return p ? p + 4 : "";
}

TEST(exec_output_streams_over_http)
{
	struct msb_server *s = start();
	CHECK(s);
	m.events[0] = (struct sb_exec_event){.type = SB_EV_STDOUT, .data = "one\n", .len = 4};
	m.events[1] = (struct sb_exec_event){.type = SB_EV_STDOUT, .data = "two\n", .len = 4};
	m.events[2] = (struct sb_exec_event){.type = SB_EV_EXIT, .exit_code = 0};
	m.nevents = 3;
	const char *body = "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.stream\",\"params\":{"
			   "\"sandbox\":\"a\",\"command\":\"seq\"},\"id\":1}";
	char req[512], reply[4096];
	int n = snprintf(req, sizeof(req),
			 "POST /api/v1/rpc HTTP/1.0\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 strlen(body), body);
	exchange(s, req, (size_t)n, reply, sizeof(reply));
	CHECK(strncmp(reply, "HTTP/1.0 200", 12) == 0 || strncmp(reply, "HTTP/1.1 200", 12) == 0);
	CHECK(strstr(reply, "Content-Type: application/x-ndjson"));
	CHECK(strstr(reply, "X-Msb-Exec: e-seq"));
	CHECK_STR(body_start(reply), "{\"event\":\"started\",\"exec\":\"e-seq\"}\n"
				     "{\"event\":\"stdout\",\"data\":\"one\\n\"}\n"
				     "{\"event\":\"stdout\",\"data\":\"two\\n\"}\n"
				     "{\"event\":\"exit\",\"exit_code\":0,\"signal\":null,"
				     "\"timed_out\":false,\"out_of_memory\":false}\n");
	for (int i = 0; i < 100 && !m.released; i++)
		usleep(10000);
	CHECK(m.released);
	msb_server_free(s);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(a_client_that_leaves_releases_its_exec)
{
	struct msb_server *s = start();
	CHECK(s);
	m.silent = true;
	const char *body = "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.stream\",\"params\":{"
			   "\"sandbox\":\"a\",\"command\":\"sleep\"},\"id\":1}";
	char req[512], buf[1024];
	int n = snprintf(
		req, sizeof(req),
		"POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
		"Content-Length: %zu\r\n\r\n%s",
		strlen(body), body);
	int fd = dial(s);
	CHECK(fd >= 0);
	CHECK_INT(write(fd, req, (size_t)n), ==, n);
	size_t got = 0;
	ssize_t r;
	buf[0] = '\0';
	while (!strstr(buf, "started") && got < sizeof(buf) - 1 &&
	       (r = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
		got += (size_t)r;
		buf[got] = '\0';
	}
	CHECK(strstr(buf, "200 OK"));
	CHECK(strstr(buf, "started"));
	CHECK(!m.released);
	double t0 = now_s();
	close(fd);
	/* Noticed within a few backend waits (250 ms each), not at a keep-alive. */
	while (!m.released && now_s() - t0 < 5)
		usleep(10000);
	CHECK(m.released);
	CHECK(now_s() - t0 < 2);
	msb_server_free(s);
}

TEST(stopping_ends_open_streams)
{
	struct msb_server *s = start();
	CHECK(s);
	m.silent = true;
	const char *body = "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.stream\",\"params\":{"
			   "\"exec\":\"e-1\"},\"id\":1}";
	char req[512], buf[1024];
	int n = snprintf(
		req, sizeof(req),
		"POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
		"Content-Length: %zu\r\n\r\n%s",
		strlen(body), body);
	int fd = dial(s);
	CHECK(fd >= 0);
	CHECK_INT(write(fd, req, (size_t)n), ==, n);
	CHECK(read(fd, buf, sizeof(buf) - 1) > 0);
	double t0 = now_s();
	msb_server_free(s);
	CHECK(now_s() - t0 < 3);
	CHECK(m.released);
	close(fd);
}

TEST(uploads_stream_to_the_backend)
{
	struct msb_server *s = start();
	CHECK(s);
	char reply[4096];
	const char req[] = "PUT /api/v1/sandbox/file?sandbox=a&path=/tmp/f&mode=0600 HTTP/1.0\r\n"
			   "Content-Length: 11\r\n\r\nhello world";
	exchange(s, req, sizeof(req) - 1, reply, sizeof(reply));
	CHECK(strstr(reply, " 200 "));
	CHECK_STR(body_start(reply),
		  "{\"jsonrpc\":\"2.0\",\"result\":{\"path\":\"/tmp/f\",\"size\":11}}");
	CHECK_INT(m.written_len, ==, 11);
	CHECK(memcmp(m.written, "hello world", 11) == 0);
	CHECK(m.committed);
	/* The mock holds 64 bytes: a longer upload fails part-way, is not
	 * committed, and the client gets the error (not a reset). */
	char big[512];
	int n = snprintf(big, sizeof(big),
			 "PUT /api/v1/sandbox/file?sandbox=a&path=/tmp/g HTTP/1.0\r\n"
			 "Content-Length: 200\r\n\r\n");
	memset(big + n, 'x', 200);
	exchange(s, big, (size_t)n + 200, reply, sizeof(reply));
	CHECK(strstr(reply, " 500 "));
	CHECK(strstr(reply, "mock file full"));
	CHECK(!m.committed);
	msb_server_free(s);
}

TEST(downloads_stream_from_the_backend)
{
	struct msb_server *s = start();
	CHECK(s);
	memcpy(m.file, "\0\1binary\n", 9);
	m.file_len = 9;
	char reply[4096];
	const char req[] = "GET /api/v1/sandbox/file?sandbox=a&path=/bin/x HTTP/1.0\r\n\r\n";
	size_t n = exchange(s, req, sizeof(req) - 1, reply, sizeof(reply));
	CHECK(strstr(reply, " 200 "));
	CHECK(strstr(reply, "Content-Length: 9"));
	CHECK(strstr(reply, "application/octet-stream"));
	const char *b = strstr(reply, "\r\n\r\n") + 4;
	CHECK_INT(n - (size_t)(b - reply), ==, 9);
	CHECK(memcmp(b, "\0\1binary\n", 9) == 0);
	m.fail = MSB_EK_NOT_FOUND;
	exchange(s, req, sizeof(req) - 1, reply, sizeof(reply));
	CHECK(strstr(reply, " 404 "));
	CHECK(strstr(reply, "-32001"));
	msb_server_free(s);
}

TEST_MAIN(T(exec_output_streams_over_http), T(a_client_that_leaves_releases_its_exec),
	  T(stopping_ends_open_streams), T(uploads_stream_to_the_backend),
	  T(downloads_stream_from_the_backend))
