/* The file and metrics codec (agent/files_codec.c) with hostile fields, and
 * msb-init's pure metrics parsers (init/metrics.c). */
#include "tests/unit/test.h"
#include "agent/files_proto.h"
#include "init/metrics.h"

#include <stdint.h>
#include <string.h>

/* Fields only (no frame header) into b. */
static int decode_req(uint16_t type, struct agent_buf *b, struct agent_file_req *r)
{
	struct msb_err err;
	return agent_decode_file_req(b->data, b->len, type, r, &err);
}

TEST(request_paths_are_made_absolute)
{
	struct agent_buf b = {0};
	struct agent_file_req r;
	agent_put_str(&b, AGENT_T_PATH, "/etc/hosts");
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, 0);
	CHECK_STR(r.path, "/etc/hosts");
	agent_file_req_release(&r);

	b.len = 0;
	agent_put_str(&b, AGENT_T_PATH, "a/b");
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, 0);
	CHECK_STR(r.path, "/a/b");
	agent_file_req_release(&r);

	agent_put_str(&b, AGENT_T_CWD, "/work/");
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, 0);
	CHECK_STR(r.path, "/work/a/b");
	agent_file_req_release(&r);

	b.len = 0;
	agent_put_str(&b, AGENT_T_CWD, "rel");
	agent_put_str(&b, AGENT_T_PATH, "x");
	CHECK_INT(decode_req(AGENT_FILE_STAT, &b, &r), ==, 0);
	CHECK_STR(r.path, "/rel/x");
	agent_file_req_release(&r);
	agent_buf_release(&b);
}

TEST(request_options_belong_to_their_type)
{
	struct agent_buf b = {0};
	struct agent_file_req r;
	agent_put_str(&b, AGENT_T_PATH, "/d");
	agent_put_u32(&b, AGENT_T_MODE, 0700);
	agent_put_u32(&b, AGENT_T_PARENTS, 1);
	agent_put_u32(&b, AGENT_T_RECURSIVE, 1);
	CHECK_INT(decode_req(AGENT_FILE_MKDIR, &b, &r), ==, 0);
	CHECK(r.has_mode && r.mode == 0700 && r.parents);
	CHECK(!r.recursive); /* REMOVE's field: skipped, not obeyed */
	agent_file_req_release(&r);
	CHECK_INT(decode_req(AGENT_FILE_REMOVE, &b, &r), ==, 0);
	CHECK(r.recursive && !r.has_mode && !r.parents);
	agent_file_req_release(&r);
	/* SYMLINK needs ENT_LINK; elsewhere ENT_LINK is ignored. */
	CHECK_INT(decode_req(AGENT_FILE_SYMLINK, &b, &r), ==, -1);
	agent_put_str(&b, AGENT_T_ENT_LINK, "../t");
	agent_put_u64(&b, AGENT_T_ENT_MTIME, 1234);
	CHECK_INT(decode_req(AGENT_FILE_SYMLINK, &b, &r), ==, 0);
	CHECK_STR(r.target, "../t");
	CHECK(!r.has_mtime);
	agent_file_req_release(&r);
	CHECK_INT(decode_req(AGENT_FILE_WRITE, &b, &r), ==, 0);
	CHECK(!r.target && r.has_mtime && r.mtime == 1234);
	agent_file_req_release(&r);
	agent_buf_release(&b);
}

TEST(hostile_requests_are_refused)
{
	struct msb_err err;
	struct agent_file_req r;
	struct agent_buf b = {0};
	/* No path; empty path; NUL; repeated; wrong width; mode out of range;
	 * empty cwd; too long; truncated field; unknown critical tag. */
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, -1);
	agent_put_str(&b, AGENT_T_PATH, "");
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, -1);
	b.len = 0;
	agent_put_bytes(&b, AGENT_T_PATH, "/a\0b", 4);
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, -1);
	b.len = 0;
	agent_put_str(&b, AGENT_T_PATH, "/a");
	agent_put_str(&b, AGENT_T_PATH, "/b");
	CHECK_INT(agent_decode_file_req(b.data, b.len, AGENT_FILE_READ, &r, &err), ==, -1);
	CHECK(strstr(err.msg, "FILE_READ: field") && strstr(err.msg, "repeated"));
	b.len = 0;
	agent_put_str(&b, AGENT_T_PATH, "/a");
	agent_put_bytes(&b, AGENT_T_MODE, "\1\2", 2);
	CHECK_INT(decode_req(AGENT_FILE_WRITE, &b, &r), ==, -1);
	b.len = 0;
	agent_put_str(&b, AGENT_T_PATH, "/a");
	agent_put_u32(&b, AGENT_T_MODE, 010000);
	CHECK_INT(decode_req(AGENT_FILE_WRITE, &b, &r), ==, -1);
	b.len = 0;
	agent_put_str(&b, AGENT_T_PATH, "a");
	agent_put_str(&b, AGENT_T_CWD, "");
	CHECK_INT(decode_req(AGENT_FILE_WRITE, &b, &r), ==, -1);
	b.len = 0;
	static char longp[AGENT_PATH_MAX + 8];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	agent_put_str(&b, AGENT_T_PATH, longp);
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, -1);
	b.len = 0;
	agent_put_str(&b, AGENT_T_PATH, "a");
	agent_put_str(&b, AGENT_T_CWD, longp + 10); /* long only once joined */
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, -1);
	b.len = 0;
	agent_put_str(&b, AGENT_T_PATH, "/a");
	CHECK_INT(agent_decode_file_req(b.data, b.len - 1, AGENT_FILE_READ, &r, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	agent_put_u32(&b, AGENT_TAG_CRITICAL | 88, 1);
	CHECK_INT(decode_req(AGENT_FILE_READ, &b, &r), ==, -1);
	agent_buf_release(&b);
}

TEST(entries_round_trip_and_hostile_names_are_refused)
{
	struct agent_file_info in = {.name = "a.txt",
				     .type = AGENT_FT_SYMLINK,
				     .size = 1ull << 40,
				     .mode = 04755,
				     .mtime = 1700000000,
				     .link = "../target"};
	struct agent_buf b = {0};
	agent_put_file_info(&b, &in);
	struct agent_file_info out;
	struct msb_err err;
	CHECK_INT(agent_decode_file_info(b.data, b.len, true, &out, &err), ==, 0);
	CHECK_STR(out.name, "a.txt");
	CHECK_STR(out.link, "../target");
	CHECK(out.type == AGENT_FT_SYMLINK && out.size == 1ull << 40 && out.mode == 04755 &&
	      out.mtime == 1700000000);
	agent_file_info_clear(&out);

	const char *bad[] = {"..", ".", "", "a/b", "../../etc/passwd", "/abs"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b.len = 0;
		in.name = (char *)bad[i];
		agent_put_file_entry(&b, &in);
		/* As a listing entry: refused; as a STAT's INFO: a name is a name. */
		CHECK_INT(agent_decode_file_entries(b.data, b.len, NULL, NULL, &err), ==, -1);
	}
	b.len = 0;
	in.name = "/abs";
	agent_put_file_info(&b, &in);
	CHECK_INT(agent_decode_file_info(b.data, b.len, false, &out, &err), ==, 0);
	agent_file_info_clear(&out);

	/* Unknown type, mode beyond 07777, no name, a repeated name. */
	in.name = "x";
	in.type = 9;
	b.len = 0;
	agent_put_file_info(&b, &in);
	CHECK_INT(agent_decode_file_info(b.data, b.len, false, &out, &err), ==, -1);
	in.type = AGENT_FT_FILE;
	in.mode = 070000;
	b.len = 0;
	agent_put_file_info(&b, &in);
	CHECK_INT(agent_decode_file_info(b.data, b.len, false, &out, &err), ==, -1);
	b.len = 0;
	agent_put_u32(&b, AGENT_T_ENT_TYPE, AGENT_FT_FILE);
	CHECK_INT(agent_decode_file_info(b.data, b.len, false, &out, &err), ==, -1);
	agent_put_str(&b, AGENT_T_ENT_NAME, "a");
	agent_put_str(&b, AGENT_T_ENT_NAME, "b");
	CHECK_INT(agent_decode_file_info(b.data, b.len, false, &out, &err), ==, -1);
	agent_buf_release(&b);
}

static int count_entry(void *ctx, struct agent_file_info *e, struct msb_err *err)
{
	(*(int *)ctx)++;
	agent_file_info_clear(e);
	return 0;
}

TEST(entries_frame_holds_many_and_skips_unknown_fields)
{
	struct agent_buf b = {0};
	struct agent_file_info e = {.name = "f", .type = AGENT_FT_FILE};
	for (int i = 0; i < 1000; i++)
		agent_put_file_entry(&b, &e);
	agent_put_str(&b, 89, "future"); /* not critical: skipped */
	int n = 0;
	struct msb_err err;
	CHECK_INT(agent_decode_file_entries(b.data, b.len, count_entry, &n, &err), ==, 0);
	CHECK_INT(n, ==, 1000);
	/* An ENTRY whose inner fields overrun it. */
	b.len = 0;
	agent_put_bytes(&b, AGENT_T_ENTRY, "\x4c\0\xff\xff\0\0", 6);
	CHECK_INT(agent_decode_file_entries(b.data, b.len, count_entry, &n, &err), ==, -1);
	agent_buf_release(&b);
}

TEST(metrics_round_trip_and_checks)
{
	struct agent_metrics m = {.interval_ms = 250,
				  .cpu_x100 = 9876,
				  .ncpus = 2,
				  .mem_total = 128 << 20,
				  .mem_used = 40 << 20,
				  .disk_total = 1ull << 32,
				  .disk_used = 1 << 20,
				  .procs = 7,
				  .uptime_ms = 123456};
	struct agent_buf b = {0};
	agent_put_metrics(&b, &m);
	struct agent_metrics g;
	struct msb_err err;
	CHECK_INT(agent_decode_metrics(b.data, b.len, &g, &err), ==, 0);
	CHECK(g.interval_ms == 250 && g.cpu_x100 == 9876 && g.ncpus == 2 && g.procs == 7);
	CHECK(g.mem_total == m.mem_total && g.mem_used == m.mem_used);
	CHECK(g.disk_total == m.disk_total && g.disk_used == m.disk_used && g.uptime_ms == 123456);
	/* A missing field, more used than total. */
	CHECK_INT(agent_decode_metrics(b.data, b.len - 14, &g, &err), ==, -1);
	m.mem_used = m.mem_total + 1;
	b.len = 0;
	agent_put_metrics(&b, &m);
	CHECK_INT(agent_decode_metrics(b.data, b.len, &g, &err), ==, -1);

	uint32_t iv;
	CHECK_INT(agent_decode_metrics_req(NULL, 0, &iv, &err), ==, 0);
	CHECK_INT(iv, ==, AGENT_METRICS_DEFAULT);
	b.len = 0;
	agent_put_u32(&b, AGENT_T_INTERVAL_MS, AGENT_METRICS_MAX + 1);
	CHECK_INT(agent_decode_metrics_req(b.data, b.len, &iv, &err), ==, -1);
	agent_buf_release(&b);
}

TEST(cpu_share_from_two_proc_stat_samples)
{
	const char *a = "cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 50 0 25 500 5 0 0 0 0 0\n"
			"cpu1 50 0 25 500 5 0 0 0 0 0\nintr 1 2 3\n";
	/* 200 ticks later: 100 busy (one CPU of two fully busy), 100 idle. */
	const char *b = "cpu  180 0 70 1100 10 0 0 0 0 0\ncpu0 130 0 45 500 5 0 0 0 0 0\n"
			"cpu1 50 0 25 600 5 0 0 0 0 0\n";
	struct cpu_sample sa, sb;
	CHECK_INT(metrics_parse_stat(a, &sa), ==, 0);
	CHECK_INT(metrics_parse_stat(b, &sb), ==, 0);
	CHECK_INT(sa.ncpus, ==, 2);
	CHECK_INT(sa.busy, ==, 150);
	CHECK_INT(sa.total, ==, 1160);
	CHECK_INT(metrics_cpu_x100(&sa, &sb), ==, 10000); /* 100 % = one busy vCPU */
	CHECK_INT(metrics_cpu_x100(&sa, &sa), ==, 0);
	CHECK_INT(metrics_cpu_x100(&sb, &sa), ==, 0); /* counters going back: 0 */
	/* Older kernels: 4 columns. */
	CHECK_INT(metrics_parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n", &sa), ==, 0);
	CHECK_INT(sa.busy, ==, 6);
	CHECK_INT(metrics_parse_stat("intr 1\n", &sa), ==, -1);
	CHECK_INT(metrics_parse_stat("cpu x y\n", &sa), ==, -1);
}

TEST(meminfo_gives_total_and_available)
{
	uint64_t total = 0, avail = 0;
	CHECK_INT(metrics_parse_meminfo("MemTotal:  131072 kB\nMemFree: 1 kB\n"
					"MemAvailable:   65536 kB\n",
					&total, &avail),
		  ==, 0);
	CHECK_INT(total, ==, 128ll << 20);
	CHECK_INT(avail, ==, 64ll << 20);
	CHECK_INT(metrics_parse_meminfo("MemTotal: 1 kB\n", &total, &avail), ==, -1);
}

TEST_MAIN(T(request_paths_are_made_absolute), T(request_options_belong_to_their_type),
	  T(hostile_requests_are_refused), T(entries_round_trip_and_hostile_names_are_refused),
	  T(entries_frame_holds_many_and_skips_unknown_fields), T(metrics_round_trip_and_checks),
	  T(cpu_share_from_two_proc_stat_samples), T(meminfo_gives_total_and_available))
