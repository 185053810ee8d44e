/* msb-init's memory guard (src/init/oom.c): /proc parsing, the threshold and
 * the choice of victim from fake process tables, hostile /proc text. */
#include <stdint.h>
#include <string.h>

#include "init/metrics.h"
#include "init/oom.h"
#include "test.h"

/* A stat line as Linux 6.1 writes it; rss (field 24) in pages. */
#define STAT(pid, comm, ppid, pgrp, sid, rss)                                                  \
	pid " (" comm ") S " ppid " " pgrp " " sid " 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 " \
	    "1234 10485760 " rss " 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"

static int parse(const char *text, struct oom_proc *p)
{
	return oom_parse_stat(text, strlen(text), 4, p);
}

TEST(stat_line_gives_ids_state_and_rss)
{
	struct oom_proc p;
	CHECK_INT(parse(STAT("123", "awk", "120", "120", "120", "25600"), &p), ==, 0);
	CHECK_INT(p.pid, ==, 123);
	CHECK_INT(p.ppid, ==, 120);
	CHECK_INT(p.pgid, ==, 120);
	CHECK_INT(p.sid, ==, 120);
	CHECK_INT(p.state, ==, 'S');
	CHECK_INT(p.rss_kib, ==, 25600 * 4);
	CHECK_INT(p.start, ==, 1234);
	CHECK_STR(p.comm, "awk");
}

TEST(start_time_tells_a_reused_pid_apart)
{
	/* The guard kills its held victim again only while pid and start time
	 * both match: a pid given to a new process has a later start time. */
	static const char reused[] = "123 (sh) S 1 123 123 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 "
				     "98765 10485760 300 18446744073709551615 1 1 0 0 0\n";
	struct oom_proc a, b;
	CHECK_INT(parse(STAT("123", "sh", "1", "123", "123", "300"), &a), ==, 0);
	CHECK_INT(parse(reused, &b), ==, 0);
	CHECK_INT(a.pid, ==, b.pid);
	CHECK_INT(a.rss_kib, ==, b.rss_kib);
	CHECK_INT(b.start, ==, 98765);
	CHECK(a.start != b.start);
	/* A negative start time is not a stat line. */
	static const char neg[] = "123 (sh) S 1 123 123 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 "
				  "-1 10485760 300 0\n";
	CHECK_INT(parse(neg, &b), ==, -1);
}

TEST(comm_with_parens_spaces_and_control_bytes)
{
	/* A process names itself (prctl PR_SET_NAME): ") S 1 1 1" inside comm
	 * must not be taken for the fields. */
	struct oom_proc p;
	CHECK_INT(parse(STAT("77", "x) S 1 1 1 (", "5", "6", "7", "10"), &p), ==, 0);
	CHECK_INT(p.ppid, ==, 5);
	CHECK_INT(p.sid, ==, 7);
	CHECK_INT(p.rss_kib, ==, 40);
	CHECK_STR(p.comm, "x) S 1 1 1 (");
	CHECK_INT(parse(STAT("78", "a\nb\x01", "1", "1", "1", "1"), &p), ==, 0);
	CHECK_STR(p.comm, "a?b?");
}

TEST(hostile_stat_text_is_refused)
{
	struct oom_proc p;
	const char *bad[] = {
		"",
		"123",
		"123 (awk)",
		"123 (awk) S",
		"123 (awk) S 1 1",
		"abc (awk) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
		"-5 (awk) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
		"123 awk) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
		"123 (awk S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
		")123 (awk S 1 1 1\n",
		"123 (awk) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", /* no rss */
		"123 (awk) S 1x 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
		"99999999999999999999999 (a) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
		"1 (a) S 99999999999 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
		"1 (a) S -1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
		"1 (a)  S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i], &p) == 0)
			TEST_FAIL("accepted bad stat %zu: %s", i, bad[i]);
	/* A length that stops short of the text: nothing past it is read. */
	const char *s = STAT("5", "sh", "1", "5", "5", "100");
	CHECK_INT(oom_parse_stat(s, 20, 4, &p), ==, -1);
	/* rss that overflows is refused, a negative one counts as none. */
	CHECK_INT(parse(STAT("5", "sh", "1", "5", "5", "99999999999999999999"), &p), ==, -1);
	CHECK_INT(parse(STAT("5", "sh", "1", "5", "5", "-3"), &p), ==, 0);
	CHECK_INT(p.rss_kib, ==, 0);
}

TEST(meminfo_as_the_guard_reads_it)
{
	/* The guard uses the METRICS parser; odd text must not give a low value. */
	uint64_t total = 0, avail = 0;
	CHECK_INT(metrics_parse_meminfo("MemTotal:         118212 kB\nMemFree:           90000 kB\n"
					"MemAvailable:      7000 kB\n",
					&total, &avail),
		  ==, 0);
	CHECK_INT(total, ==, 118212ull * 1024);
	CHECK_INT(avail, ==, 7000ull * 1024);
	CHECK_INT(metrics_parse_meminfo("MemTotal: 100 kB\n", &total, &avail), ==, -1);
	CHECK_INT(metrics_parse_meminfo("MemAvailable: 5 kB\nMemTotal:\n", &total, &avail), ==, -1);
	CHECK_INT(metrics_parse_meminfo("", &total, &avail), ==, -1);
}

TEST(threshold_is_two_percent_at_least_8_mib)
{
	CHECK_INT(oom_threshold_kib(118212), ==, 8192);		     /* a 128 MiB guest */
	CHECK_INT(oom_threshold_kib(4u << 20), ==, (4u << 20) / 50); /* 4 GiB: ~82 MiB */
	/* A tiny guest: never more than a quarter of it. */
	CHECK_INT(oom_threshold_kib(16384), ==, 4096);
	CHECK_INT(oom_threshold_kib(0), ==, 0);
	CHECK_INT(oom_min_victim_kib(118212), ==, 118212 / 32);
}

static struct oom_proc proc(pid_t pid, pid_t pgid, pid_t sid, uint64_t kib, const char *comm)
{
	struct oom_proc p = {
		.pid = pid, .ppid = 1, .pgid = pgid, .sid = sid, .state = 'R', .rss_kib = kib};
	strncpy(p.comm, comm, sizeof(p.comm) - 1);
	return p;
}

static struct oom_choice choice;

TEST(largest_command_tree_is_the_victim)
{
	pid_t leaders[] = {100, 200, 300};
	oom_choice_init(&choice, leaders, 3);
	struct oom_proc tab[] = {
		proc(1, 0, 0, 900, "msb-init"),	      /* PID 1: never */
		proc(100, 100, 100, 2000, "sh"),      /* command 100 */
		proc(101, 100, 100, 30000, "awk"),    /* its child: 32000 together */
		proc(200, 200, 200, 31000, "python"), /* command 200: one big process */
		proc(250, 250, 200, 1500, "worker"),  /* own group, same session: 200's */
		proc(300, 300, 300, 1000, "sleep"),
		proc(2, 0, 0, 0, "kthreadd"), /* kernel threads have no memory */
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		oom_choice_add(&choice, &tab[i]);
	struct oom_victim v;
	CHECK(oom_choice_pick(&choice, 4096, &v));
	CHECK_INT(v.leader, ==, 200);
	CHECK_INT(v.kib, ==, 32500);
	CHECK_INT(v.top.pid, ==, 200);
	CHECK_STR(v.top.comm, "python");
}

TEST(daemon_outside_every_command_is_a_candidate_by_itself)
{
	pid_t leaders[] = {100};
	oom_choice_init(&choice, leaders, 1);
	struct oom_proc a = proc(100, 100, 100, 5000, "sh");
	struct oom_proc d = proc(555, 555, 555, 80000, "hog"); /* setsid'd away */
	oom_choice_add(&choice, &a);
	oom_choice_add(&choice, &d);
	struct oom_victim v;
	CHECK(oom_choice_pick(&choice, 4096, &v));
	CHECK_INT(v.leader, ==, 0);
	CHECK_INT(v.top.pid, ==, 555);
	CHECK_INT(v.kib, ==, 80000);
}

TEST(nothing_worth_killing)
{
	/* Memory held by tmpfs files, not processes: no victim below the minimum. */
	pid_t leaders[] = {100};
	oom_choice_init(&choice, leaders, 1);
	struct oom_proc a = proc(100, 100, 100, 3000, "sh");
	oom_choice_add(&choice, &a);
	struct oom_victim v;
	CHECK(!oom_choice_pick(&choice, 4096, &v));
	CHECK(oom_choice_pick(&choice, 1000, &v));
	/* No processes at all. */
	oom_choice_init(&choice, leaders, 1);
	CHECK(!oom_choice_pick(&choice, 0, &v));
}

TEST(init_zombies_and_bad_leaders_are_never_chosen)
{
	pid_t leaders[] = {0, 1, 100, 100, -4};
	oom_choice_init(&choice, leaders, 5);
	CHECK_INT(choice.nunits, ==, 1);
	struct oom_proc init = proc(1, 1, 1, 999999, "msb-init");
	struct oom_proc z = proc(100, 100, 100, 999999, "awk");
	z.state = 'Z';
	oom_choice_add(&choice, &init);
	oom_choice_add(&choice, &z);
	struct oom_victim v;
	CHECK(!oom_choice_pick(&choice, 0, &v));
	/* A process whose group is 1 (started by init without setsid) is not
	 * counted to a unit with leader 1, and is never killed as a group. */
	struct oom_proc p = proc(400, 1, 1, 50000, "stray");
	oom_choice_add(&choice, &p);
	CHECK(oom_choice_pick(&choice, 0, &v));
	CHECK_INT(v.leader, ==, 0);
	CHECK_INT(v.top.pid, ==, 400);
}

TEST(more_leaders_than_units_are_capped)
{
	static pid_t many[OOM_MAX_UNITS + 50];
	for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
		many[i] = (pid_t)(1000 + i);
	oom_choice_init(&choice, many, sizeof(many) / sizeof(many[0]));
	CHECK_INT(choice.nunits, ==, OOM_MAX_UNITS);
	/* A process of a leader past the cap counts as a lone process. */
	struct oom_proc p = proc(1000 + OOM_MAX_UNITS + 10, 1000 + OOM_MAX_UNITS + 10,
				 1000 + OOM_MAX_UNITS + 10, 7000, "late");
	oom_choice_add(&choice, &p);
	struct oom_victim v;
	CHECK(oom_choice_pick(&choice, 0, &v));
	CHECK_INT(v.leader, ==, 0);
	CHECK_INT(v.top.pid, ==, p.pid);
}

TEST(kill_line_for_the_kernel_log)
{
	/* One /dev/kmsg record: the level prefix, one line, what was killed and
	 * why, in dmesg and on the console.  The final '\n' matters: without it
	 * the kernel holds the record open for a continuation and neither dmesg
	 * nor the console shows it until the next kernel message. */
	struct oom_victim v = {.leader = 4200, .kib = 100 * 1024 + 500};
	v.top = proc(4242, 4200, 4200, 90 * 1024, "awk");
	char line[OOM_LINE_MAX];
	int n = oom_format_line(line, sizeof(line), &v, 120 * 1024, 2 * 1024 + 1000);
	CHECK_STR(line,
		  OOM_KMSG_PREFIX "msb-init: Out of memory: Killed process 4242 (awk) and the "
				  "rest of command 4200, 100 MiB resident in all; MemAvailable was "
				  "2 of 120 MiB\n");
	CHECK_INT(n, ==, (int)strlen(line));
	v.leader = 0;
	oom_format_line(line, sizeof(line), &v, 120 * 1024, 2 * 1024);
	CHECK_STR(line,
		  OOM_KMSG_PREFIX "msb-init: Out of memory: Killed process 4242 (awk), 100 MiB "
				  "resident; MemAvailable was 2 of 120 MiB\n");
	/* The longest line fits: a full comm and the largest numbers. */
	v.leader = INT32_MAX;
	v.top.pid = INT32_MAX;
	v.kib = UINT64_MAX;
	memset(v.top.comm, 'x', sizeof(v.top.comm) - 1);
	n = oom_format_line(line, sizeof(line), &v, UINT64_MAX, UINT64_MAX);
	CHECK_INT(n, <, OOM_LINE_MAX);
	CHECK(strchr(line, '\n') == line + n - 1);
}

TEST_MAIN(T(stat_line_gives_ids_state_and_rss), T(start_time_tells_a_reused_pid_apart),
	  T(comm_with_parens_spaces_and_control_bytes), T(hostile_stat_text_is_refused),
	  T(meminfo_as_the_guard_reads_it), T(threshold_is_two_percent_at_least_8_mib),
	  T(largest_command_tree_is_the_victim),
	  T(daemon_outside_every_command_is_a_candidate_by_itself), T(nothing_worth_killing),
	  T(init_zombies_and_bad_leaders_are_never_chosen), T(more_leaders_than_units_are_capped),
	  T(kill_line_for_the_kernel_log))
