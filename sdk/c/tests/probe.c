/* A test driver for libmicrosandbox (tests/integration/test_sdk_c.py):
 *
 *   probe URL KEY|- OP [ARGS...]
 *
 * runs one operation (or "all": every operation on sandbox "sdk-box") and
 * prints one line per call: "op <op> <rc> <status-name> <http> <code> <message>"
 * followed by its result when it succeeded.
 */
#include <microsandbox.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static msbc_client *c;

static void report(const char *op, int rc)
{
	printf("op %s %d %s %d %d %s\n", op, rc, msbc_status_name(rc), msbc_client_http_status(c),
	       msbc_client_error_code(c), rc < 0 ? msbc_client_errmsg(c) : "");
}

static int on_output(void *ud, enum msbc_stream stream, const char *data, size_t len)
{
	(void)ud;
	printf("output %s %zu %.*s\n", stream == MSBC_STDOUT ? "stdout" : "stderr", len, (int)len,
	       data);
	return 0;
}

/* "interactive": on the first output, answer on stdin through a second
 * client (the first one is busy streaming), as a caller in another thread
 * would. */
struct interactive {
	msbc_client *other;
	char id[64];
	int answered;
};

static int on_interactive(void *ud, enum msbc_stream stream, const char *data, size_t len)
{
	struct interactive *it = ud;
	printf("output %s %zu %.*s\n", stream == MSBC_STDOUT ? "stdout" : "stderr", len, (int)len,
	       data);
	fflush(stdout);
	if (!it->answered) {
		it->answered = 1;
		int rc = msbc_exec_stdin(it->other, it->id, "ping\n", 5, 0);
		printf("op stdin %d %s 0 0 %s\n", rc, msbc_status_name(rc),
		       rc < 0 ? msbc_client_errmsg(it->other) : "");
	}
	return 0;
}

static void print_result(msbc_result *r)
{
	printf("result exit=%d success=%d status=%s stdout=[%s] stderr=[%s]\n",
	       msbc_result_exit_code(r), msbc_result_success(r), msbc_result_status(r),
	       msbc_result_stdout(r), msbc_result_stderr(r));
	msbc_result_free(r);
}

static void all(const char *box, const char *upload_src, const char *download_dst)
{
	char *s = NULL;
	msbc_result *r = NULL;
	const char *args[] = {"-c", "echo hi"};
	int rc;
	report("health", msbc_health(c));
	rc = msbc_sandbox_start(c, box, "microsandbox/python", 256, 2,
				"{\"envs\":[\"A=1\"],\"workdir\":\"/w\",\"volumes\":[\"./d:/d\"],"
				"\"ports\":[\"8080:80\"]}",
				&s);
	report("start", rc);
	if (rc == 0)
		printf("message %s\n", s);
	free(s);
	rc = msbc_repl_run(c, box, "python", "print(42)", 5, &r);
	report("repl", rc);
	if (rc == 0)
		print_result(r);
	rc = msbc_command_run(c, box, "sh", args, 2, 7, &r);
	report("command", rc);
	if (rc == 0)
		print_result(r);
	struct msbc_metrics m;
	rc = msbc_metrics_get(c, box, &m);
	report("metrics", rc);
	if (rc == 0)
		printf("metrics running=%d cpu=%d:%.1f mem=%lld disk=%lld\n", m.running, m.has_cpu,
		       m.cpu_usage, (long long)m.memory_mib, (long long)m.disk_bytes);
	char id[64] = "";
	struct msbc_exit ex;
	rc = msbc_exec_stream(c, box, "sh", args, 2, 3, 1, on_output, NULL, id, &ex);
	report("stream", rc);
	if (rc == 0)
		printf("exit id=%s code=%d signal=%d timed_out=%d\n", id, ex.exit_code, ex.signal,
		       ex.timed_out);
	report("stdin", msbc_exec_stdin(c, id[0] ? id : "e1", "\x00\x01", 2, 1));
	report("signal", msbc_exec_signal(c, id[0] ? id : "e1", 2));
	report("file_write", msbc_file_write(c, box, "/tmp/w", "hello", 5, 0600));
	void *data = NULL;
	size_t len = 0;
	rc = msbc_file_read(c, box, "/tmp/r", &data, &len);
	report("file_read", rc);
	if (rc == 0)
		printf("read %zu %.*s\n", len, (int)len, (char *)data);
	free(data);
	if (upload_src)
		report("upload", msbc_file_upload(c, box, upload_src, "/tmp/up", -1));
	if (download_dst)
		report("download", msbc_file_download(c, box, "/etc/hostname", download_dst));
	rc = msbc_sandbox_list(c, &s);
	report("list", rc);
	if (rc == 0)
		printf("list %s\n", s);
	free(s);
	report("stop", msbc_sandbox_stop(c, box));
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: probe URL KEY|- OP [ARGS...]\n");
		return 2;
	}
	c = msbc_client_new(argv[1], strcmp(argv[2], "-") ? argv[2] : NULL);
	if (!c)
		return 1;
	const char *op = argv[3];
	if (!strcmp(op, "all")) {
		all(argc > 4 ? argv[4] : "sdk-box", argc > 5 ? argv[5] : NULL,
		    argc > 6 ? argv[6] : NULL);
	} else if (!strcmp(op, "interactive")) {
		struct interactive it = {.other = msbc_client_new(argv[1], NULL)};
		struct msbc_exit ex;
		int rc = msbc_exec_stream(c, "sdk-box", "interactive", NULL, 0, 0, 1,
					  on_interactive, &it, it.id, &ex);
		report("stream", rc);
		printf("exit id=%s code=%d timed_out=%d\n", it.id, ex.exit_code, ex.timed_out);
		msbc_client_free(it.other);
	} else if (!strcmp(op, "stream")) {
		struct msbc_exit ex;
		report("stream", msbc_exec_stream(c, "sdk-box", argv[4], NULL, 0, 0, 0, on_output,
						  NULL, NULL, &ex));
	} else if (!strcmp(op, "big")) {
		/* code of argv[4] MiB: over the server's body limit */
		size_t n = (size_t)atoi(argv[4]) << 20;
		char *code = malloc(n + 1);
		msbc_result *r = NULL;
		if (!code)
			return 1;
		memset(code, 'x', n);
		code[n] = '\0';
		report("repl", msbc_repl_run(c, "sdk-box", "python", code, 0, &r));
		msbc_result_free(r);
		free(code);
	} else if (!strcmp(op, "start")) {
		report("start", msbc_sandbox_start(c, argv[4], NULL, 0, 0, NULL, NULL));
	} else if (!strcmp(op, "rpc")) {
		char *res = NULL;
		int rc = msbc_rpc(c, argv[4], argc > 5 ? argv[5] : NULL, &res);
		report("rpc", rc);
		if (rc == 0)
			printf("rpc %s\n", res);
		free(res);
	} else if (!strcmp(op, "read")) {
		void *data = NULL;
		size_t len;
		report("file_read", msbc_file_read(c, argv[4], argv[5], &data, &len));
		free(data);
	} else {
		fprintf(stderr, "unknown op %s\n", op);
		msbc_client_free(c);
		return 2;
	}
	msbc_client_free(c);
	return 0;
}
