#include "tests/unit/test.h"
#include "agent/proto.h"

#include <stdint.h>

/* Build one frame into a fresh buffer; the caller releases it. */
static void build_exec(struct agent_buf *b, const char *const *argv, const char *const *env)
{
	struct msb_err err;
	agent_msg_begin(b, AGENT_EXEC, 7, 0);
	for (size_t i = 0; argv[i]; i++)
		agent_put_str(b, AGENT_T_ARGV, argv[i]);
	for (size_t i = 0; env && env[i]; i++)
		agent_put_str(b, AGENT_T_ENV, env[i]);
	agent_put_str(b, AGENT_T_CWD, "/tmp");
	agent_put_u64(b, AGENT_T_TIMEOUT_MS, 0x123456789ull);
	agent_put_u32(b, AGENT_T_STDIN, 1);
	if (agent_msg_end(b, &err) < 0)
		abort();
}

TEST(header_round_trip_is_little_endian)
{
	struct agent_hdr h = {.len = 0x01020304 & 0xfffff,
			      .type = AGENT_EXIT,
			      .flags = 0xbeef,
			      .id = 0xa1b2c3d4,
			      .stream = 2};
	uint8_t raw[AGENT_HDR_SIZE];
	agent_hdr_encode(raw, &h);
	CHECK_INT(raw[0], ==, 0x04);
	CHECK_INT(raw[4], ==, AGENT_EXIT);
	CHECK_INT(raw[8], ==, 0xd4);
	struct agent_hdr g;
	struct msb_err err;
	CHECK_INT(agent_hdr_decode(raw, &g, &err), ==, 0);
	CHECK_INT(g.len, ==, h.len);
	CHECK_INT(g.type, ==, h.type);
	CHECK_INT(g.flags, ==, h.flags);
	CHECK_INT(g.id, ==, h.id);
	CHECK_INT(g.stream, ==, h.stream);
}

TEST(oversized_frame_is_refused)
{
	uint8_t raw[AGENT_HDR_SIZE] = {0};
	struct agent_hdr h = {.len = AGENT_MAX_PAYLOAD + 1, .type = AGENT_DATA};
	agent_hdr_encode(raw, &h);
	struct msb_err err;
	CHECK_INT(agent_hdr_decode(raw, &h, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	raw[0] = raw[1] = raw[2] = raw[3] = 0xff;
	CHECK_INT(agent_hdr_decode(raw, &h, &err), ==, -1);
}

TEST(exec_round_trip)
{
	struct agent_buf b = {0};
	const char *argv[] = {"sh", "-c", "echo $X", NULL};
	const char *env[] = {"X=1", "EMPTY=", NULL};
	build_exec(&b, argv, env);
	struct agent_hdr h;
	struct msb_err err;
	CHECK_INT(agent_hdr_decode(b.data, &h, &err), ==, 0);
	CHECK_INT(h.len + AGENT_HDR_SIZE, ==, b.len);
	struct agent_exec_req r;
	CHECK_INT(agent_decode_exec(b.data + AGENT_HDR_SIZE, h.len, &r, &err), ==, 0);
	CHECK_INT(r.argc, ==, 3);
	CHECK_STR(r.argv[2], "echo $X");
	CHECK(r.argv[3] == NULL);
	CHECK_INT(r.envc, ==, 2);
	CHECK_STR(r.env[1], "EMPTY=");
	CHECK_STR(r.cwd, "/tmp");
	CHECK_INT(r.timeout_ms, ==, 0x123456789ll);
	CHECK(r.stdin_stream);
	agent_exec_req_release(&r);
	agent_buf_release(&b);
}

/* Hand-made payloads: what a hostile peer could send. */
static size_t field(uint8_t *p, uint16_t tag, uint32_t len, const void *v, uint32_t vlen)
{
	p[0] = (uint8_t)tag;
	p[1] = (uint8_t)(tag >> 8);
	for (int i = 0; i < 4; i++)
		p[2 + i] = (uint8_t)(len >> (8 * i));
	memcpy(p + 6, v, vlen);
	return 6 + vlen;
}

TEST(exec_refuses_hostile_fields)
{
	uint8_t p[256];
	struct agent_exec_req r;
	struct msb_err err;
	size_t n;

	/* A length that runs past the payload (and would overflow a 32-bit sum). */
	n = field(p, AGENT_T_ARGV, 0xffffffffu, "ls", 2);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	/* A truncated field header. */
	CHECK_INT(agent_decode_exec(p, 3, &r, &err), ==, -1);
	/* NUL inside an argument would silently cut it. */
	n = field(p, AGENT_T_ARGV, 4, "l\0s", 4);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, -1);
	/* No command at all / an empty one. */
	n = field(p, AGENT_T_CWD, 1, "/", 1);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	n = field(p, AGENT_T_ARGV, 0, "", 0);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, -1);
	/* Environment entries must be NAME=VALUE. */
	n = field(p, AGENT_T_ARGV, 2, "ls", 2);
	n += field(p + n, AGENT_T_ENV, 5, "NOVAL", 5);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, -1);
	n = field(p, AGENT_T_ARGV, 2, "ls", 2);
	n += field(p + n, AGENT_T_ENV, 3, "=xy", 3);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, -1);
	/* A timeout of the wrong width. */
	n = field(p, AGENT_T_ARGV, 2, "ls", 2);
	n += field(p + n, AGENT_T_TIMEOUT_MS, 4, "\1\0\0\0", 4);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, -1);
}

TEST(unknown_fields_are_skipped_unless_critical)
{
	uint8_t p[256];
	struct agent_exec_req r;
	struct msb_err err;
	size_t n = field(p, 999, 3, "abc", 3);
	n += field(p + n, AGENT_T_ARGV, 2, "ls", 2);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, 0);
	CHECK_STR(r.argv[0], "ls");
	agent_exec_req_release(&r);
	n += field(p + n, AGENT_TAG_CRITICAL | 999, 0, "", 0);
	CHECK_INT(agent_decode_exec(p, n, &r, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
}

TEST(too_many_arguments_are_refused)
{
	size_t n = (AGENT_MAX_ARGS + 1) * 7;
	uint8_t *p = malloc(n);
	CHECK(p != NULL);
	for (size_t i = 0; i <= AGENT_MAX_ARGS; i++)
		field(p + i * 7, AGENT_T_ARGV, 1, "a", 1);
	struct agent_exec_req r;
	struct msb_err err;
	int rc = agent_decode_exec(p, n, &r, &err);
	free(p);
	CHECK_INT(rc, ==, -1);
	CHECK(strstr(err.msg, "arguments") != NULL);
}

TEST(exit_needs_exactly_one_outcome)
{
	uint8_t p[64];
	struct agent_exit x;
	struct msb_err err;
	size_t n = field(p, AGENT_T_EXIT_CODE, 4, "\3\0\0\0", 4);
	CHECK_INT(agent_decode_exit(p, n, &x, &err), ==, 0);
	CHECK(x.has_code);
	CHECK_INT(x.code, ==, 3);
	n += field(p + n, AGENT_T_SIGNAL, 4, "\11\0\0\0", 4);
	CHECK_INT(agent_decode_exit(p, n, &x, &err), ==, -1);
	CHECK_INT(agent_decode_exit(p, 0, &x, &err), ==, -1);
	n = field(p, AGENT_T_EXIT_CODE, 4, "\0\1\0\0", 4);
	CHECK_INT(agent_decode_exit(p, n, &x, &err), ==, -1);
}

/* OOM_KILLED: absent (an older guest) is false; a u32 flag like TIMED_OUT
 * (0 false, other true); any other length is refused. */
TEST(exit_carries_the_memory_guards_kill)
{
	uint8_t p[64];
	struct agent_exit x;
	struct msb_err err;
	size_t n = field(p, AGENT_T_SIGNAL, 4, "\11\0\0\0", 4);
	CHECK_INT(agent_decode_exit(p, n, &x, &err), ==, 0);
	CHECK(!x.oom_killed && !x.timed_out);
	n += field(p + n, AGENT_T_OOM_KILLED, 4, "\1\0\0\0", 4);
	CHECK_INT(agent_decode_exit(p, n, &x, &err), ==, 0);
	CHECK(x.oom_killed);
	CHECK_INT(x.signal, ==, 9);
	CHECK(!x.timed_out);
	size_t base = field(p, AGENT_T_SIGNAL, 4, "\11\0\0\0", 4);
	n = base + field(p + base, AGENT_T_OOM_KILLED, 4, "\0\0\0\0", 4);
	CHECK_INT(agent_decode_exit(p, n, &x, &err), ==, 0);
	CHECK(!x.oom_killed);
	n = base + field(p + base, AGENT_T_OOM_KILLED, 1, "\1", 1);
	CHECK_INT(agent_decode_exit(p, n, &x, &err), ==, -1);
}

TEST(reader_reassembles_frames_split_anywhere)
{
	struct agent_buf b = {0};
	struct msb_err err;
	const char *argv[] = {"true", NULL};
	build_exec(&b, argv, NULL);
	agent_msg_begin(&b, AGENT_DATA, 7, 0);
	agent_put_raw(&b, "hello", 5);
	CHECK_INT(agent_msg_end(&b, &err), ==, 0);
	agent_msg_begin(&b, AGENT_EOF, 7, 0);
	CHECK_INT(agent_msg_end(&b, &err), ==, 0);
	for (size_t split = 0; split <= b.len; split++) {
		struct agent_reader r;
		CHECK_INT(agent_reader_init(&r, &err), ==, 0);
		size_t fed = 0;
		int frames = 0;
		uint16_t types[3] = {0};
		while (fed < b.len || frames < 3) {
			size_t avail;
			uint8_t *dst = agent_reader_space(&r, &avail);
			size_t chunk = fed < split ? split - fed : b.len - fed;
			if (chunk > avail)
				chunk = avail;
			memcpy(dst, b.data + fed, chunk);
			agent_reader_commit(&r, chunk);
			fed += chunk;
			struct agent_hdr h;
			const uint8_t *pl;
			int rc;
			while ((rc = agent_reader_next(&r, &h, &pl, &err)) > 0) {
				CHECK(frames < 3);
				types[frames++] = h.type;
				if (h.type == AGENT_DATA)
					CHECK(h.len == 5 && memcmp(pl, "hello", 5) == 0);
			}
			CHECK_INT(rc, ==, 0);
			if (chunk == 0)
				break;
		}
		CHECK_INT(frames, ==, 3);
		CHECK_INT(types[0], ==, AGENT_EXEC);
		CHECK_INT(types[1], ==, AGENT_DATA);
		CHECK_INT(types[2], ==, AGENT_EOF);
		agent_reader_release(&r);
	}
	agent_buf_release(&b);
}

TEST(reader_takes_a_maximal_frame_behind_small_ones)
{
	struct agent_reader r;
	struct msb_err err;
	CHECK_INT(agent_reader_init(&r, &err), ==, 0);
	struct agent_buf b = {0};
	for (int i = 0; i < 3; i++) {
		agent_msg_begin(&b, AGENT_OK, (uint32_t)i, 0);
		CHECK_INT(agent_msg_end(&b, &err), ==, 0);
	}
	agent_msg_begin(&b, AGENT_DATA, 9, 1);
	uint8_t *big = calloc(1, AGENT_MAX_PAYLOAD);
	CHECK(big != NULL);
	big[AGENT_MAX_PAYLOAD - 1] = 0x5a;
	agent_put_raw(&b, big, AGENT_MAX_PAYLOAD);
	free(big);
	CHECK_INT(agent_msg_end(&b, &err), ==, 0);
	size_t fed = 0;
	int frames = 0;
	while (frames < 4) {
		size_t avail;
		uint8_t *dst = agent_reader_space(&r, &avail);
		CHECK(avail > 0);
		size_t chunk = b.len - fed < 1000 ? b.len - fed : 1000;
		memcpy(dst, b.data + fed, chunk);
		agent_reader_commit(&r, chunk);
		fed += chunk;
		struct agent_hdr h;
		const uint8_t *pl;
		while (agent_reader_next(&r, &h, &pl, &err) > 0) {
			frames++;
			if (h.type == AGENT_DATA) {
				CHECK_INT(h.len, ==, AGENT_MAX_PAYLOAD);
				CHECK_INT(pl[AGENT_MAX_PAYLOAD - 1], ==, 0x5a);
			}
		}
		CHECK(chunk > 0 || frames == 4);
	}
	agent_buf_release(&b);
	agent_reader_release(&r);
}

TEST(building_an_oversized_frame_fails_and_leaves_whole_frames)
{
	struct agent_buf b = {0};
	struct msb_err err;
	agent_msg_begin(&b, AGENT_OK, 1, 0);
	CHECK_INT(agent_msg_end(&b, &err), ==, 0);
	size_t before = b.len;
	agent_msg_begin(&b, AGENT_DATA, 2, 1);
	uint8_t *big = calloc(1, AGENT_MAX_PAYLOAD + 1);
	CHECK(big != NULL);
	agent_put_raw(&b, big, AGENT_MAX_PAYLOAD + 1);
	free(big);
	CHECK_INT(agent_msg_end(&b, &err), ==, -1);
	CHECK_INT(b.len, ==, before);
	agent_buf_release(&b);
}

TEST(error_frame_round_trip)
{
	struct agent_buf b = {0};
	struct msb_err err;
	CHECK_INT(agent_put_error(&b, 5, AGENT_E_NOT_FOUND, 2, "no such file", &err), ==, 0);
	struct agent_hdr h;
	CHECK_INT(agent_hdr_decode(b.data, &h, &err), ==, 0);
	CHECK_INT(h.type, ==, AGENT_ERROR);
	struct agent_error e;
	CHECK_INT(agent_decode_error(b.data + AGENT_HDR_SIZE, h.len, &e, &err), ==, 0);
	CHECK_INT(e.kind, ==, AGENT_E_NOT_FOUND);
	CHECK_INT(e.errnum, ==, 2);
	CHECK_STR(e.msg, "no such file");
	CHECK_INT(agent_err_to_kind(e.kind), ==, MSB_EK_NOT_FOUND);
	agent_error_release(&e);
	agent_buf_release(&b);
}

TEST_MAIN(T(header_round_trip_is_little_endian), T(oversized_frame_is_refused), T(exec_round_trip),
	  T(exec_refuses_hostile_fields), T(unknown_fields_are_skipped_unless_critical),
	  T(too_many_arguments_are_refused), T(exit_needs_exactly_one_outcome),
	  T(exit_carries_the_memory_guards_kill), T(reader_reassembles_frames_split_anywhere),
	  T(reader_takes_a_maximal_frame_behind_small_ones),
	  T(building_an_oversized_frame_fails_and_leaves_whole_frames), T(error_frame_round_trip))
