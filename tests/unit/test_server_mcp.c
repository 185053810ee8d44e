/* MCP message handling at /mcp: Streamable HTTP (sessions, version header,
 * 202s, SSE) and upstream's 2024-11-05 plain POSTs. */
#include "tests/unit/test.h"

#include <jansson.h>
#include <strings.h>

#include "tests/unit/test_server_mock.h"

static struct mock m;
static struct sandbox_backend be;

static struct msb_server *server(void)
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

struct call {
	const char *session, *version, *accept, *method, *origin;
};

static void mcp(struct msb_server *s, const struct call *c, const char *body, struct srv_reply *rp)
{
	struct srv_request rq = {.method = c && c->method ? c->method : "POST",
				 .path = "/mcp",
				 .content_type = "application/json",
				 .accept = c ? c->accept : NULL,
				 .origin = c ? c->origin : NULL,
				 .mcp_session_id = c ? c->session : NULL,
				 .mcp_protocol_version = c ? c->version : NULL,
				 .body = body,
				 .body_len = body ? strlen(body) : 0};
	memset(rp, 0, sizeof(*rp));
	srv_handle(s, &rq, rp);
}

static json_t *parse(const struct srv_reply *rp)
{
	return json_loadb(rp->body ? rp->body : "", rp->len, 0, NULL);
}

TEST(upstream_plain_post_initialize)
{
	struct msb_server *s = server();
	struct srv_reply rp;
	mcp(s, NULL,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
	    "\"protocolVersion\":"
	    "\"2024-11-05\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}"
	    "}",
	    &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_STR(rp.content_type, "application/json");
	json_t *j = parse(&rp);
	json_t *res = json_object_get(j, "result");
	CHECK_STR(json_string_value(json_object_get(res, "protocolVersion")), "2024-11-05");
	CHECK_STR(json_string_value(json_object_get(json_object_get(res, "serverInfo"), "name")),
		  "microsandbox-server");
	CHECK(json_is_false(json_object_get(
		json_object_get(json_object_get(res, "capabilities"), "tools"), "listChanged")));
	CHECK(json_object_get(json_object_get(res, "capabilities"), "prompts"));
	CHECK_INT(json_integer_value(json_object_get(j, "id")), ==, 1);
	json_decref(j);
	const char *sid = reply_header_value(&rp, "Mcp-Session-Id");
	CHECK(sid && strlen(sid) == 32);
	srv_reply_release(&rp);
	/* Upstream answers notifications with an empty 200. */
	mcp(s, NULL, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_INT(rp.len, ==, 0);
	srv_reply_release(&rp);
	/* ... and unknown methods with -32603 "MCP method error". */
	mcp(s, NULL, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/list\"}", &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK(strstr(body_of(&rp), "-32603"));
	CHECK(strstr(body_of(&rp), "MCP method error"));
	srv_reply_release(&rp);
	mcp(s, NULL, "{\"jsonrpc\":\"1.0\",\"id\":2,\"method\":\"tools/list\"}", &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK(strstr(body_of(&rp), "-32600"));
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(version_negotiation)
{
	struct msb_server *s = server();
	struct srv_reply rp;
	static const struct {
		const char *asked, *got;
	} cases[] = {
		{"2025-06-18", "2025-06-18"},
		{"2025-03-26", "2025-03-26"},
		{"2025-11-25", "2025-11-25"},
		{"1999-01-01", "2025-11-25"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[256];
		snprintf(body, sizeof(body),
			 "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"initialize\",\"params\":{"
			 "\"protocolVersion\":\"%s\"}}",
			 cases[i].asked);
		mcp(s, NULL, body, &rp);
		json_t *j = parse(&rp);
		CHECK_STR(json_string_value(
				  json_object_get(json_object_get(j, "result"), "protocolVersion")),
			  cases[i].got);
		json_decref(j);
		srv_reply_release(&rp);
	}
	/* A request with an unsupported MCP-Protocol-Version header is refused. */
	struct call c = {.version = "2099-01-01"};
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &rp);
	CHECK_INT(rp.status, ==, 400);
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(sessions)
{
	struct msb_server *s = server();
	struct srv_reply rp;
	struct call c = {.accept = "application/json, text/event-stream"};
	mcp(s, &c,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
	    "\"protocolVersion\":"
	    "\"2025-06-18\"}}",
	    &rp);
	char sid[64];
	snprintf(sid, sizeof(sid), "%s", reply_header_value(&rp, "Mcp-Session-Id"));
	srv_reply_release(&rp);
	c.session = sid;
	c.version = "2025-06-18";
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", &rp);
	CHECK_INT(rp.status, ==, 202);
	CHECK_INT(rp.len, ==, 0);
	srv_reply_release(&rp);
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}", &rp);
	CHECK_INT(rp.status, ==, 200);
	CHECK_STR(body_of(&rp), "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}");
	srv_reply_release(&rp);
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"nope/nope\"}", &rp);
	CHECK(strstr(body_of(&rp), "-32601"));
	srv_reply_release(&rp);
	/* GET has no stream to offer. */
	c.method = "GET";
	mcp(s, &c, NULL, &rp);
	CHECK_INT(rp.status, ==, 405);
	srv_reply_release(&rp);
	/* DELETE ends the session; afterwards its id is unknown. */
	c.method = "DELETE";
	mcp(s, &c, NULL, &rp);
	CHECK_INT(rp.status, ==, 200);
	srv_reply_release(&rp);
	c.method = NULL;
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}", &rp);
	CHECK_INT(rp.status, ==, 404);
	srv_reply_release(&rp);
	c.session = "0123456789abcdef0123456789abcdef";
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}", &rp);
	CHECK_INT(rp.status, ==, 404);
	srv_reply_release(&rp);
	/* Malformed JSON: 400 with a parse error for new clients. */
	c.session = NULL;
	mcp(s, &c, "{\"jsonrpc\":", &rp);
	CHECK_INT(rp.status, ==, 400);
	CHECK(strstr(body_of(&rp), "-32700"));
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(tools_list_has_upstreams_schemas)
{
	struct msb_server *s = server();
	struct srv_reply rp;
	mcp(s, NULL, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", &rp);
	json_t *j = parse(&rp);
	json_t *tools = json_object_get(json_object_get(j, "result"), "tools");
	CHECK_INT(json_array_size(tools), ==, 7);
	static const char *const names[] = {"sandbox_start",	   "sandbox_stop",
					    "sandbox_run_code",	   "sandbox_run_command",
					    "sandbox_get_metrics", "sandbox_write_file",
					    "sandbox_read_file"};
	for (size_t i = 0; i < 7; i++) {
		json_t *tool = json_array_get(tools, i);
		CHECK_STR(json_string_value(json_object_get(tool, "name")), names[i]);
		json_t *schema = json_object_get(tool, "inputSchema");
		CHECK_STR(json_string_value(json_object_get(schema, "type")), "object");
	}
	json_t *start = json_object_get(json_array_get(tools, 0), "inputSchema");
	json_t *image = json_object_get(
		json_object_get(json_object_get(json_object_get(start, "properties"), "config"),
				"properties"),
		"image");
	CHECK_INT(json_array_size(json_object_get(image, "enum")), ==, 2);
	json_t *req = json_object_get(json_object_get(json_array_get(tools, 2), "inputSchema"),
				      "required");
	CHECK_INT(json_array_size(req), ==, 3);
	json_decref(j);
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(tools_call_maps_to_methods)
{
	struct msb_server *s = server();
	struct srv_reply rp;
	mcp(s, NULL,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"sandbox_start\",\"arguments\":{\"sandbox\":\"py\",\"config\":{\"image\":"
	    "\"microsandbox/python\"}}}}",
	    &rp);
	CHECK_STR(body_of(&rp),
		  "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":"
		  "\"text\",\"text\":\"\\\"Sandbox py started successfully\\\"\"}]}}");
	CHECK_STR(m.last_image, "microsandbox/python");
	srv_reply_release(&rp);
	/* Upstream: a failed start is an isError result ... */
	m.fail = MSB_EK_SYSTEM;
	mcp(s, NULL,
	    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"sandbox_stop\",\"arguments\":{\"sandbox\":\"py\"}}}",
	    &rp);
	CHECK(strstr(body_of(&rp), "\"isError\":true"));
	CHECK(strstr(body_of(&rp), "Error: mock failure"));
	srv_reply_release(&rp);
	/* ... a failed run a JSON-RPC error (for upstream's clients) ... */
	mcp(s, NULL,
	    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"sandbox_run_code\",\"arguments\":{\"sandbox\":\"py\",\"code\":\"1\",\"language\":"
	    "\"python\"}}}",
	    &rp);
	CHECK(strstr(body_of(&rp), "-32603"));
	srv_reply_release(&rp);
	/* ... and an isError result for current clients, over SSE when accepted. */
	struct call c = {.version = "2025-06-18", .accept = "application/json, text/event-stream"};
	mcp(s, &c,
	    "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"sandbox_run_code\",\"arguments\":{\"sandbox\":\"py\",\"code\":\"1\",\"language\":"
	    "\"python\"}}}",
	    &rp);
	CHECK_STR(rp.content_type, "text/event-stream");
	CHECK(strncmp(body_of(&rp), "event: message\ndata: {", 22) == 0);
	CHECK(strstr(body_of(&rp), "\"isError\":true"));
	CHECK(strstr(body_of(&rp), "}\n\n"));
	srv_reply_release(&rp);
	m.fail = MSB_EK_NONE;
	mcp(s, &c,
	    "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"sandbox_write_file\",\"arguments\":{\"sandbox\":\"py\",\"path\":\"/a\",\"content\":"
	    "\"hey\"}}}",
	    &rp);
	CHECK_INT(m.written_len, ==, 3);
	CHECK(!strstr(body_of(&rp), "isError"));
	srv_reply_release(&rp);
	mcp(s, &c,
	    "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":{\"name\":"
	    "\"no_such_tool\",\"arguments\":{}}}",
	    &rp);
	CHECK(strstr(body_of(&rp), "-32602"));
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(prompts)
{
	struct msb_server *s = server();
	struct srv_reply rp;
	mcp(s, NULL, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/list\"}", &rp);
	json_t *j = parse(&rp);
	json_t *p = json_object_get(json_object_get(j, "result"), "prompts");
	CHECK_INT(json_array_size(p), ==, 2);
	CHECK_STR(json_string_value(json_object_get(json_array_get(p, 0), "name")),
		  "create_python_sandbox");
	CHECK_STR(json_string_value(json_object_get(json_array_get(p, 1), "name")),
		  "create_node_sandbox");
	json_decref(j);
	srv_reply_release(&rp);
	mcp(s, NULL,
	    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\",\"params\":{\"name\":"
	    "\"create_node_sandbox\"}}",
	    &rp);
	CHECK(strstr(body_of(&rp), "node-sandbox"));
	CHECK(strstr(body_of(&rp), "microsandbox/node"));
	CHECK(strstr(body_of(&rp), "\"role\":\"user\""));
	srv_reply_release(&rp);
	mcp(s, NULL,
	    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"prompts/get\",\"params\":{\"name\":"
	    "\"create_python_sandbox\",\"arguments\":{\"sandbox_name\":\"mine\"}}}",
	    &rp);
	CHECK(strstr(body_of(&rp), "'mine'"));
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST(batches_and_origin)
{
	struct msb_server *s = server();
	struct srv_reply rp;
	struct call c = {.version = "2025-03-26"};
	mcp(s, &c,
	    "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"method\":"
	    "\"notifications/x\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]",
	    &rp);
	json_t *j = parse(&rp);
	CHECK_INT(json_array_size(j), ==, 2);
	json_decref(j);
	srv_reply_release(&rp);
	mcp(s, &c, "[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}]", &rp);
	CHECK_INT(rp.status, ==, 202);
	srv_reply_release(&rp);
	/* Without keys (--dev), only loopback pages may call. */
	c.origin = "http://evil.example";
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &rp);
	CHECK_INT(rp.status, ==, 403);
	srv_reply_release(&rp);
	c.origin = "http://localhost:3000";
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &rp);
	CHECK_INT(rp.status, ==, 200);
	srv_reply_release(&rp);
	c.origin = "http://localhost.evil.example";
	mcp(s, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &rp);
	CHECK_INT(rp.status, ==, 403);
	srv_reply_release(&rp);
	msb_server_free(s);
}

TEST_MAIN(T(upstream_plain_post_initialize), T(version_negotiation), T(sessions),
	  T(tools_list_has_upstreams_schemas), T(tools_call_maps_to_methods), T(prompts),
	  T(batches_and_origin))
