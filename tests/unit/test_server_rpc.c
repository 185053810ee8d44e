/* The JSON-RPC envelope, routing, auth on routes and error mapping, through
 * srv_handle() with a scripted backend. */
#include "tests/unit/test.h"

#include <strings.h>

#include "server/auth.h"
#include "server/stream.h"
#include "tests/unit/test_server_mock.h"

static struct mock m;
static struct sandbox_backend be;

static struct msb_server *dev_server(void)
{
	memset(&m, 0, sizeof(m));
	be = mock_backend(&m);
	struct msb_server_config cfg = {.dev = true};
	struct msb_server *s = NULL;
	struct msb_err err = {0};
	if (msb_server_new(&cfg, &be, &s, &err) < 0)
		return NULL;
	return s;
}

#define RPC "/api/v1/rpc"

TEST(health_needs_no_key)
{
	memset(&m, 0, sizeof(m));
	be = mock_backend(&m);
	struct msb_server_config cfg = {.key = "k"};
	struct msb_server *s = NULL;
	struct msb_err err = {0};
	CHECK_INT(msb_server_new(&cfg, &be, &s, &err), ==, 0);
	struct srv_request rq = {.method = "GET", .path = "/api/v1/health"};
	struct srv_reply rp = {0};
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_STR(body_of(&rp), "{\"message\":\"Service is healthy\"}");
	srv_reply_release(&rp);
	/* ... while rpc and mcp need one. */
	post(s, RPC, "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.list\",\"id\":1}", &rp);
	CHECK_INT(rp.status, ==, 401);
	CHECK_STR(body_of(&rp), "{\"error\":\"Invalid credentials\",\"code\":1001}");
	srv_reply_release(&rp);
	post(s, "/mcp", "{}", &rp);
	CHECK_INT(rp.status, ==, 401);
	srv_reply_release(&rp);
	char *tok = NULL;
	CHECK_INT(auth_token_make("k", time(NULL), time(NULL) - 3600, &tok, &err), ==, 0);
	rq = (struct srv_request){.method = "POST",
				  .path = RPC,
				  .content_type = "application/json",
				  .authorization = tok,
				  .body = "{}",
				  .body_len = 2};
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 401);
	CHECK(strstr(body_of(&rp), "1004"));
	srv_reply_release(&rp);
	free(tok);
	CHECK_INT(auth_token_make("k", time(NULL), time(NULL) + 3600, &tok, &err), ==, 0);
	const char *body = "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.stop\",\"params\":{"
			   "\"sandbox\":\"a\"},\"id\":1}";
	rq.authorization = tok;
	rq.body = body;
	rq.body_len = strlen(body);
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_INT(m.calls, ==, 1);
	srv_reply_release(&rp);
	free(tok);
	msb_server_free(s);
}

TEST(envelope_errors)
{
	struct msb_server *s = dev_server();
	struct srv_reply rp;
	post(s, RPC, "{\"jsonrpc\":\"1.0\",\"method\":\"sandbox.list\",\"id\":7}", &rp);
	CHECK_INT(rp.status, ==, 400);
	CHECK(strstr(body_of(&rp), "\"code\":-32600"));
	CHECK(strstr(body_of(&rp), "\"id\":7"));
	srv_reply_release(&rp);
	post(s, RPC, "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.nope\",\"id\":\"x\"}", &rp);
	CHECK_INT(rp.status, ==, 404);
	CHECK_STR(body_of(&rp), "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":"
				"\"Method not found: sandbox.nope\"},\"id\":\"x\"}");
	srv_reply_release(&rp);
	post(s, RPC, "{\"jsonrpc\":\"2.0\",\"method\":", &rp);
	CHECK_INT(rp.status, ==, 400);
	CHECK(strncmp(rp.content_type, "text/plain", 10) == 0);
	srv_reply_release(&rp);
	post(s, RPC, "[1,2]", &rp);
	CHECK_INT(rp.status, ==, 422);
	srv_reply_release(&rp);
	post(s, RPC, "{\"jsonrpc\":2,\"method\":\"x\"}", &rp);
	CHECK_INT(rp.status, ==, 422);
	srv_reply_release(&rp);
	struct srv_request rq = {.method = "POST",
				 .path = RPC,
				 .content_type = "text/plain",
				 .body = "{}",
				 .body_len = 2};
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 415);
	srv_reply_release(&rp);
	rq.content_type = "application/json; charset=utf-8";
	rq.body_too_large = true;
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 413);
	srv_reply_release(&rp);
	rq = (struct srv_request){.method = "GET", .path = RPC};
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 405);
	srv_reply_release(&rp);
	rq.path = "/nowhere";
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 404);
	srv_reply_release(&rp);
	CHECK_INT(m.calls, ==, 0);
	msb_server_free(s);
}

TEST(start_result_and_id_handling)
{
	struct msb_server *s = dev_server();
	struct srv_reply rp;
	/* No id: none in the reply.  Unknown params (namespace) are ignored. */
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"params\":{\"sandbox\":\"web-1\","
	     "\"namespace\":\"default\",\"config\":{\"image\":\"microsandbox/python\","
	     "\"memory\":512,\"cpus\":1,\"envs\":[\"A=1\"],\"scripts\":{\"start\":\"x\"}}}}",
	     &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_STR(body_of(&rp),
		  "{\"jsonrpc\":\"2.0\",\"result\":\"Sandbox web-1 started successfully\"}");
	CHECK_STR(m.last_name, "web-1");
	CHECK_STR(m.last_image, "microsandbox/python");
	srv_reply_release(&rp);
	/* The alias path takes the method from the URL. */
	post(s, "/api/v1/sandbox/stop",
	     "{\"jsonrpc\":\"2.0\",\"params\":{\"sandbox\":\"web-1\"},\"id\":3}", &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_STR(
		body_of(&rp),
		"{\"jsonrpc\":\"2.0\",\"result\":\"Sandbox web-1 stopped successfully\",\"id\":3}");
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(upstream_validation_and_failures)
{
	struct msb_server *s = dev_server();
	struct srv_reply rp;
	static const char *const bad[] = {
		"{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"params\":{\"sandbox\":\"-x\"}"
		"}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"params\":{\"sandbox\":\"a\","
		"\"config\":{\"memory\":\"lots\"}}}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"params\":{\"sandbox\":\"a\","
		"\"config\":{\"cpus\":300}}}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"params\":{\"sandbox\":\"a\","
		"\"config\":{\"cpus\":1.5}}}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"params\":null}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.repl.run\",\"params\":{\"sandbox\":"
		"\"a\","
		"\"language\":\"cobol\",\"code\":\"1\"}}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.command.run\",\"params\":{\"sandbox\":"
		"\"a\",\"command\":\"ls\",\"args\":[1]}}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.stop\",\"params\":{\"sandbox\":\""
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		post(s, RPC, bad[i], &rp);
		if (rp.status != 400 || !strstr(body_of(&rp), "\"code\":2001"))
			TEST_FAIL("case %zu: %d %s", i, rp.status, body_of(&rp));
		srv_reply_release(&rp);
	}
	CHECK_INT(m.calls, ==, 0);
	m.fail = MSB_EK_SYSTEM;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.stop\",\"params\":{\"sandbox\":\"a\"}}",
	     &rp);
	CHECK_INT(rp.status, ==, 500);
	CHECK_STR(body_of(&rp), "{\"error\":\"mock failure (system)\",\"code\":5002}");
	srv_reply_release(&rp);
	/* kinds a client must tell apart are named (an extra member upstream ignores) */
	m.fail = MSB_EK_NOT_FOUND;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.stop\",\"params\":{\"sandbox\":\"a\"}}",
	     &rp);
	CHECK_INT(rp.status, ==, 500);
	CHECK_STR(body_of(&rp),
		  "{\"error\":\"mock failure (not_found)\",\"code\":5002,\"kind\":\"not_found\"}");
	srv_reply_release(&rp);
	m.fail = MSB_EK_USAGE;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.start\",\"params\":{\"sandbox\":\"a\"}}",
	     &rp);
	CHECK_INT(rp.status, ==, 400);
	CHECK(strstr(body_of(&rp), "\"code\":2001"));
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(repl_command_metrics_shapes)
{
	struct msb_server *s = dev_server();
	struct srv_reply rp;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.repl.run\",\"params\":{\"sandbox\":\"a\","
	     "\"language\":\"Python\",\"code\":\"1+1\",\"timeout\":5},\"id\":1}",
	     &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_STR(body_of(&rp),
		  "{\"jsonrpc\":\"2.0\",\"result\":{\"status\":\"success\","
		  "\"language\":\"Python\",\"output\":[{\"stream\":\"stdout\",\"text\":"
		  "\"2\"},{\"stream\":\"stderr\",\"text\":\"warn\"}]},\"id\":1}");
	CHECK_STR(m.last_lang, "Python");
	CHECK(m.last_timeout == 5.0);
	srv_reply_release(&rp);
	m.exit_code = 3;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.command.run\",\"params\":{\"sandbox\":"
	     "\"a\",\"command\":\"ls\",\"args\":[\"-l\",\"/\"]},\"id\":2}",
	     &rp);
	CHECK_STR(body_of(&rp),
		  "{\"jsonrpc\":\"2.0\",\"result\":{\"command\":\"ls\",\"args\":[\"-l\","
		  "\"/\"],\"exit_code\":3,\"success\":false,\"output\":[{\"stream\":"
		  "\"stdout\",\"text\":\"ls\"}],\"out_of_memory\":false},\"id\":2}");
	srv_reply_release(&rp);
	/* Killed by the guest's memory guard: 137 and the flag. */
	m.exit_code = 137;
	m.oom_killed = true;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.command.run\",\"params\":{\"sandbox\":"
	     "\"a\",\"command\":\"big\"},\"id\":2}",
	     &rp);
	CHECK(strstr(body_of(&rp), "\"exit_code\":137,\"success\":false,") != NULL);
	CHECK(strstr(body_of(&rp), "\"out_of_memory\":true}") != NULL);
	srv_reply_release(&rp);
	m.oom_killed = false;
	post(s, RPC, "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.metrics.get\",\"id\":3}", &rp);
	CHECK_STR(
		body_of(&rp),
		"{\"jsonrpc\":\"2.0\",\"result\":{\"sandboxes\":[{\"name\":\"a\",\"running\":true,"
		"\"cpu_usage\":1.5,\"memory_usage\":12,\"disk_usage\":4096},{\"name\":\"b\","
		"\"running\":false,\"cpu_usage\":null,\"memory_usage\":null,\"disk_usage\":null}]},"
		"\"id\":3}");
	srv_reply_release(&rp);
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.metrics.get\",\"params\":{\"sandbox\":\"*"
	     "\"},"
	     "\"id\":4}",
	     &rp);
	CHECK_INT(rp.status, ==, 200);
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(own_methods_map_error_kinds)
{
	struct msb_server *s = dev_server();
	struct srv_reply rp;
	static const struct {
		enum msb_err_kind kind;
		int status;
		const char *code;
	} cases[] = {
		{MSB_EK_NOT_FOUND, 404, "-32001"}, {MSB_EK_STATE, 409, "-32002"},
		{MSB_EK_TIMEOUT, 504, "-32003"},   {MSB_EK_GUEST, 502, "-32005"},
		{MSB_EK_SYSTEM, 500, "-32603"},	   {MSB_EK_USAGE, 400, "-32602"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m.fail = cases[i].kind;
		post(s, RPC, "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.list\",\"id\":1}", &rp);
		CHECK_INT(rp.status, ==, cases[i].status);
		CHECK(strstr(body_of(&rp), cases[i].code));
		CHECK(strstr(body_of(&rp), msb_err_kind_name(cases[i].kind)));
		srv_reply_release(&rp);
	}
	m.fail = MSB_EK_NONE;
	post(s, RPC, "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.list\",\"id\":1}", &rp);
	CHECK_STR(body_of(&rp),
		  "{\"jsonrpc\":\"2.0\",\"result\":{\"sandboxes\":[{\"name\":\"a\","
		  "\"status\":\"running\",\"image\":\"python\",\"pid\":42}]},\"id\":1}");
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(unavailable_backend_says_so)
{
	struct msb_server_config cfg = {.dev = true};
	struct msb_server *s = NULL;
	struct msb_err err = {0};
	CHECK_INT(msb_server_new(&cfg, sb_backend_unavailable(), &s, &err), ==, 0);
	struct srv_reply rp;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.repl.run\",\"params\":{\"sandbox\":\"a\","
	     "\"language\":\"python\",\"code\":\"1\"},\"id\":1}",
	     &rp);
	CHECK_INT(rp.status, ==, 500);
	CHECK(strstr(body_of(&rp), SB_UNAVAILABLE_MSG));
	srv_reply_release(&rp);
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.stream\",\"params\":{"
	     "\"sandbox\":\"a\",\"command\":\"ls\"},\"id\":1}",
	     &rp);
	CHECK_INT(rp.status, ==, 500);
	CHECK(rp.stream == NULL);
	CHECK(strstr(body_of(&rp), SB_UNAVAILABLE_MSG));
	srv_reply_release(&rp);
	msb_server_free(s);
}

/* Drains a stream reply into buf. */
static size_t drain(struct srv_stream *st, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		ssize_t r = srv_stream_read(st, buf + n, cap - 1 - n < 7 ? cap - 1 - n : 7);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	return n;
}

TEST(exec_stream_ndjson_and_sse)
{
	struct msb_server *s = dev_server();
	m.events[0] = (struct sb_exec_event){.type = SB_EV_STDOUT, .data = "hi\n", .len = 3};
	m.events[1] = (struct sb_exec_event){.type = SB_EV_STDERR, .data = "\xff\x00", .len = 2};
	m.events[2] = (struct sb_exec_event){.type = SB_EV_EXIT, .exit_code = 3};
	m.nevents = 3;
	struct srv_reply rp;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.stream\",\"params\":{"
	     "\"sandbox\":\"a\",\"command\":\"cat\"},\"id\":1}",
	     &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK(rp.stream != NULL);
	CHECK_STR(rp.content_type, "application/x-ndjson");
	CHECK_STR(reply_header_value(&rp, "X-Msb-Exec"), "e-cat");
	char buf[1024];
	drain(rp.stream, buf, sizeof(buf));
	CHECK_STR(buf, "{\"event\":\"started\",\"exec\":\"e-cat\"}\n"
		       "{\"event\":\"stdout\",\"data\":\"hi\\n\"}\n"
		       "{\"event\":\"stderr\",\"data_base64\":\"/wA=\"}\n"
		       "{\"event\":\"exit\",\"exit_code\":3,\"signal\":null,\"timed_out\":false,"
		       "\"out_of_memory\":false}\n");
	CHECK(!m.released);
	srv_reply_release(&rp);
	CHECK(m.released); /* the client is gone: the exec is released */

	/* Attach to a running exec, as SSE; the backend fails mid-way. */
	m.next_event = 0;
	m.nevents = 1;
	struct srv_request rq = {.method = "POST",
				 .path = RPC,
				 .content_type = "application/json",
				 .accept = "text/event-stream",
				 .body = "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.stream\","
					 "\"params\":{\"exec\":\"e-1\"},\"id\":1}"};
	rq.body_len = strlen(rq.body);
	memset(&rp, 0, sizeof(rp));
	srv_handle(s, &rq, &rp);
	CHECK_STR(rp.content_type, "text/event-stream");
	drain(rp.stream, buf, sizeof(buf));
	CHECK_STR(buf, "event: stdout\ndata: {\"event\":\"stdout\",\"data\":\"hi\\n\"}\n\n"
		       "event: error\ndata: {\"event\":\"error\",\"code\":-32002,\"message\":"
		       "\"exec e-1 has ended\"}\n\n");
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(exec_control_methods)
{
	struct msb_server *s = dev_server();
	struct srv_reply rp;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.start\",\"params\":{"
	     "\"sandbox\":\"a\",\"command\":\"sh\",\"env\":[\"A=1\"],\"stdin\":true},\"id\":1}",
	     &rp);
	CHECK_STR(body_of(&rp), "{\"jsonrpc\":\"2.0\",\"result\":{\"exec\":\"e-sh\"},\"id\":1}");
	srv_reply_release(&rp);
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.start\",\"params\":{"
	     "\"sandbox\":\"a\",\"command\":\"sh\",\"env\":[\"=1\"]},\"id\":1}",
	     &rp);
	CHECK_INT(rp.status, ==, 400);
	srv_reply_release(&rp);
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.stdin\",\"params\":{"
	     "\"exec\":\"e-sh\",\"data_base64\":\"AGJj\",\"eof\":true},\"id\":2}",
	     &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_INT(m.stdin_len, ==, 3);
	CHECK(memcmp(m.stdin_buf, "\0bc", 3) == 0);
	srv_reply_release(&rp);
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.signal\",\"params\":{"
	     "\"exec\":\"e-sh\",\"signal\":\"SIGKILL\"},\"id\":3}",
	     &rp);
	CHECK_INT(m.last_signal, ==, 9);
	srv_reply_release(&rp);
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.signal\",\"params\":{"
	     "\"exec\":\"e-sh\",\"signal\":\"SIGNOPE\"},\"id\":3}",
	     &rp);
	CHECK_INT(rp.status, ==, 400);
	srv_reply_release(&rp);
	m.exit_code = 0;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.wait\",\"params\":{"
	     "\"exec\":\"e-sh\"},\"id\":4}",
	     &rp);
	CHECK_STR(body_of(&rp),
		  "{\"jsonrpc\":\"2.0\",\"result\":{\"exec\":\"e-sh\",\"exited\":true,"
		  "\"exit_code\":0,\"signal\":null,\"timed_out\":false,\"out_of_memory\":false},"
		  "\"id\":4}");
	srv_reply_release(&rp);
	m.oom_killed = true;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.wait\",\"params\":{"
	     "\"exec\":\"e-sh\"},\"id\":4}",
	     &rp);
	CHECK(strstr(body_of(&rp), "\"out_of_memory\":true}") != NULL);
	srv_reply_release(&rp);
	m.oom_killed = false;
	/* A process that does not exit within the timeout: waited for in
	 * slices, then exited:false. */
	m.silent = true;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.exec.wait\",\"params\":{"
	     "\"exec\":\"e-sh\",\"timeout\":0.6},\"id\":5}",
	     &rp);
	CHECK(strstr(body_of(&rp), "\"exited\":false,\"exit_code\":null"));
	CHECK_INT(m.wait_calls, ==, 3);
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(inline_files)
{
	struct msb_server *s = dev_server();
	struct srv_reply rp;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.file.write\",\"params\":{"
	     "\"sandbox\":\"a\",\"path\":\"/x\",\"data\":\"AAEC\",\"encoding\":\"base64\"},"
	     "\"id\":1}",
	     &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_INT(m.written_len, ==, 3);
	CHECK(m.committed);
	srv_reply_release(&rp);
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.file.write\",\"params\":{"
	     "\"sandbox\":\"a\",\"path\":\"relative\",\"data\":\"x\"},\"id\":1}",
	     &rp);
	CHECK_INT(rp.status, ==, 400);
	srv_reply_release(&rp);
	memcpy(m.file, "hello", 5);
	m.file_len = 5;
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.file.read\",\"params\":{"
	     "\"sandbox\":\"a\",\"path\":\"/x\"},\"id\":2}",
	     &rp);
	CHECK_STR(body_of(&rp), "{\"jsonrpc\":\"2.0\",\"result\":{\"path\":\"/x\",\"size\":5,"
				"\"encoding\":\"utf-8\",\"data\":\"hello\"},\"id\":2}");
	srv_reply_release(&rp);
	m.file[1] = (char)0xc3; /* invalid UTF-8 comes back as base64 */
	post(s, RPC,
	     "{\"jsonrpc\":\"2.0\",\"method\":\"sandbox.file.read\",\"params\":{"
	     "\"sandbox\":\"a\",\"path\":\"/x\"},\"id\":2}",
	     &rp);
	CHECK(strstr(body_of(&rp), "\"encoding\":\"base64\",\"data\":\"aMNsbG8=\""));
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(cors_preflight_and_head)
{
	struct msb_server *s = dev_server();
	struct srv_request rq = {.method = "OPTIONS", .path = RPC};
	struct srv_reply rp = {0};
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 204);
	CHECK(strstr(reply_header_value(&rp, "Access-Control-Allow-Headers"), "Authorization"));
	CHECK(strstr(reply_header_value(&rp, "Access-Control-Allow-Methods"), "POST"));
	srv_reply_release(&rp);
	rq.method = "HEAD";
	rq.path = "/api/v1/health";
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 200);
	srv_reply_release(&rp);
	rq.method = "GET";
	rq.path = "/api/v1/sandbox/start";
	srv_handle(s, &rq, &rp);
	CHECK_INT(rp.status, ==, 405);
	CHECK_STR(reply_header_value(&rp, "Allow"), "POST");
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST_MAIN(T(health_needs_no_key), T(cors_preflight_and_head), T(envelope_errors),
	  T(start_result_and_id_handling), T(upstream_validation_and_failures),
	  T(repl_command_metrics_shapes), T(own_methods_map_error_kinds),
	  T(unavailable_backend_says_so), T(exec_stream_ndjson_and_sse), T(exec_control_methods),
	  T(inline_files))
