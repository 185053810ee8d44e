#include "tests/unit/test.h"
#include "agent/proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The payload of the frame just built (after its 16-byte header). */
static const uint8_t *payload(const struct agent_buf *b, size_t *n)
{
	*n = b->len - AGENT_HDR_SIZE;
	return b->data + AGENT_HDR_SIZE;
}

static void end(struct agent_buf *b)
{
	struct msb_err err;
	if (agent_msg_end(b, &err) < 0)
		abort();
}

TEST(repl_run_round_trip)
{
	struct agent_buf b = {0};
	agent_msg_begin(&b, AGENT_REPL_RUN, 9, 0);
	agent_put_str(&b, AGENT_T_LANGUAGE, "python");
	agent_put_str(&b, AGENT_T_CODE, "x = 1\nx + 1\n");
	agent_put_u64(&b, AGENT_T_TIMEOUT_MS, 1500);
	agent_put_str(&b, AGENT_T_CWD, "/work");
	agent_put_str(&b, AGENT_T_ENV, "A=1");
	agent_put_str(&b, AGENT_T_ENV, "B=two=2");
	agent_put_u32(&b, 77, 5); /* unknown, not critical: skipped */
	end(&b);
	size_t n;
	const uint8_t *p = payload(&b, &n);
	struct agent_repl_req r;
	struct msb_err err;
	CHECK_INT(agent_decode_repl_run(p, n, &r, &err), ==, 0);
	CHECK_STR(r.language, "python");
	CHECK_STR(r.code, "x = 1\nx + 1\n");
	CHECK_INT(r.timeout_ms, ==, 1500);
	CHECK_STR(r.cwd, "/work");
	CHECK_INT(r.envc, ==, 2);
	CHECK_STR(r.env[1], "B=two=2");
	CHECK(r.env[2] == NULL);
	agent_repl_req_release(&r);
	/* Empty code is a valid run (it prints nothing). */
	agent_buf_release(&b);
	agent_msg_begin(&b, AGENT_REPL_RUN, 9, 0);
	agent_put_str(&b, AGENT_T_LANGUAGE, "node");
	agent_put_str(&b, AGENT_T_CODE, "");
	end(&b);
	p = payload(&b, &n);
	CHECK_INT(agent_decode_repl_run(p, n, &r, &err), ==, 0);
	CHECK_STR(r.code, "");
	CHECK(r.cwd == NULL && r.env == NULL && r.timeout_ms == 0);
	agent_repl_req_release(&r);
	agent_buf_release(&b);
}

/* Each case: one field changed or missing; the decoder refuses and frees. */
TEST(repl_run_refuses_hostile_fields)
{
	static const struct {
		const char *what;
		uint16_t tag;
		const char *val;
		size_t len; /* 0: strlen */
	} bad[] = {
		{"no language", AGENT_T_LANGUAGE, NULL, 0},
		{"empty language", AGENT_T_LANGUAGE, "", 0},
		{"no code", AGENT_T_CODE, NULL, 0},
		{"NUL in code", AGENT_T_CODE, "a\0b", 3},
		{"relative cwd", AGENT_T_CWD, "tmp", 0},
		{"env without =", AGENT_T_ENV, "NOEQUALS", 0},
		{"env without name", AGENT_T_ENV, "=x", 0},
		{"timeout of 4 bytes", AGENT_T_TIMEOUT_MS, "abcd", 4},
		{"unknown critical field", AGENT_TAG_CRITICAL | 99, "x", 0},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct agent_buf b = {0};
		agent_msg_begin(&b, AGENT_REPL_RUN, 1, 0);
		if (bad[i].tag != AGENT_T_LANGUAGE)
			agent_put_str(&b, AGENT_T_LANGUAGE, "python");
		if (bad[i].tag != AGENT_T_CODE)
			agent_put_str(&b, AGENT_T_CODE, "1");
		if (bad[i].val)
			agent_put_bytes(&b, bad[i].tag, bad[i].val,
					bad[i].len ? bad[i].len : strlen(bad[i].val));
		end(&b);
		size_t n;
		const uint8_t *p = payload(&b, &n);
		struct agent_repl_req r;
		struct msb_err err;
		if (agent_decode_repl_run(p, n, &r, &err) == 0)
			TEST_FAIL("accepted: %s", bad[i].what);
		/* Every prefix that cuts a field is refused too (and leaks nothing). */
		for (size_t cut = 1; cut < n; cut++)
			if (agent_decode_repl_run(p, cut, &r, &err) == 0)
				agent_repl_req_release(&r);
		agent_buf_release(&b);
	}
}

TEST(repl_result_round_trip_and_checks)
{
	struct agent_buf b = {0};
	agent_msg_begin(&b, AGENT_REPL_RESULT, 3, 0);
	agent_put_u32(&b, AGENT_T_REPL_STATUS, AGENT_REPL_TIMEOUT);
	agent_put_str(&b, AGENT_T_REPL_MESSAGE, "timed out after 5 ms");
	agent_put_u32(&b, AGENT_T_REPL_RESTARTED, 1);
	end(&b);
	size_t n;
	const uint8_t *p = payload(&b, &n);
	struct agent_repl_outcome o;
	struct msb_err err;
	CHECK_INT(agent_decode_repl_result(p, n, &o, &err), ==, 0);
	CHECK_INT(o.status, ==, AGENT_REPL_TIMEOUT);
	CHECK_STR(o.message, "timed out after 5 ms");
	CHECK(o.restarted);
	agent_repl_outcome_release(&o);
	agent_buf_release(&b);
	/* A status this side does not know must not be read as success. */
	agent_msg_begin(&b, AGENT_REPL_RESULT, 3, 0);
	agent_put_u32(&b, AGENT_T_REPL_STATUS, 3);
	end(&b);
	p = payload(&b, &n);
	CHECK_INT(agent_decode_repl_result(p, n, &o, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	agent_buf_release(&b);
	agent_msg_begin(&b, AGENT_REPL_RESULT, 3, 0);
	agent_put_str(&b, AGENT_T_REPL_MESSAGE, "no status");
	end(&b);
	p = payload(&b, &n);
	CHECK_INT(agent_decode_repl_result(p, n, &o, &err), ==, -1);
	agent_buf_release(&b);
}

TEST(exec_with_pty_round_trip)
{
	struct agent_buf b = {0};
	agent_msg_begin(&b, AGENT_EXEC, 4, 0);
	agent_put_str(&b, AGENT_T_ARGV, "sh");
	agent_put_u32(&b, AGENT_T_PTY, 1);
	agent_put_u32(&b, AGENT_T_ROWS, 50);
	agent_put_u32(&b, AGENT_T_COLS, 65535);
	agent_put_str(&b, AGENT_T_TERM, "xterm-256color");
	end(&b);
	size_t n;
	const uint8_t *p = payload(&b, &n);
	struct agent_exec_req r;
	struct msb_err err;
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, 0);
	CHECK(r.pty);
	CHECK_INT(r.rows, ==, 50);
	CHECK_INT(r.cols, ==, 65535);
	CHECK_STR(r.term, "xterm-256color");
	agent_exec_req_release(&r);
	agent_buf_release(&b);
	/* The PTY tag is critical: a decoder that skipped it would run the
	 * command without a terminal. */
	CHECK(AGENT_T_PTY & AGENT_TAG_CRITICAL);
}

TEST(exec_pty_fields_are_checked)
{
	static const struct {
		uint16_t tag;
		uint32_t v;
		const char *s;
	} bad[] = {
		{AGENT_T_ROWS, 0, NULL},
		{AGENT_T_COLS, 65536, NULL},
		{AGENT_T_TERM, 0, ""},
		{AGENT_T_TERM, 0, "xterm;rm -rf"},
		{AGENT_T_TERM, 0, "../../etc/x"},
		{AGENT_T_TERM, 0,
		 "a-very-long-terminal-name-that-nobody-has-ever-seen-anywhere-xxxxxx"
		 "yz"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct agent_buf b = {0};
		agent_msg_begin(&b, AGENT_EXEC, 4, 0);
		agent_put_str(&b, AGENT_T_ARGV, "sh");
		agent_put_u32(&b, AGENT_T_PTY, 1);
		if (bad[i].s)
			agent_put_str(&b, bad[i].tag, bad[i].s);
		else
			agent_put_u32(&b, bad[i].tag, bad[i].v);
		end(&b);
		size_t n;
		const uint8_t *p = payload(&b, &n);
		struct agent_exec_req r;
		struct msb_err err;
		if (agent_decode_exec(p, n, &r, &err) == 0)
			TEST_FAIL("case %zu accepted", i);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
		agent_buf_release(&b);
	}
}

TEST(resize_needs_both_dimensions_in_range)
{
	struct agent_buf b = {0};
	uint16_t rows, cols;
	struct msb_err err;
	size_t n;
	const uint8_t *p;
	agent_msg_begin(&b, AGENT_RESIZE, 4, 0);
	agent_put_u32(&b, AGENT_T_ROWS, 40);
	agent_put_u32(&b, AGENT_T_COLS, 120);
	end(&b);
	p = payload(&b, &n);
	CHECK_INT(agent_decode_resize(p, n, &rows, &cols, &err), ==, 0);
	CHECK_INT(rows, ==, 40);
	CHECK_INT(cols, ==, 120);
	/* Cut anywhere: refused. */
	for (size_t cut = 0; cut < n; cut++)
		CHECK_INT(agent_decode_resize(p, cut, &rows, &cols, &err), ==, -1);
	agent_buf_release(&b);
	agent_msg_begin(&b, AGENT_RESIZE, 4, 0);
	agent_put_u32(&b, AGENT_T_ROWS, 40);
	agent_put_u32(&b, AGENT_T_COLS, 0);
	end(&b);
	p = payload(&b, &n);
	CHECK_INT(agent_decode_resize(p, n, &rows, &cols, &err), ==, -1);
	agent_buf_release(&b);
}

TEST(new_types_have_names)
{
	CHECK_STR(agent_type_name(AGENT_REPL_RUN), "REPL_RUN");
	CHECK_STR(agent_type_name(AGENT_REPL_RESULT), "REPL_RESULT");
	CHECK_STR(agent_type_name(AGENT_RESIZE), "RESIZE");
}

TEST_MAIN(T(repl_run_round_trip), T(repl_run_refuses_hostile_fields),
	  T(repl_result_round_trip_and_checks), T(exec_with_pty_round_trip),
	  T(exec_pty_fields_are_checked), T(resize_needs_both_dimensions_in_range),
	  T(new_types_have_names))
