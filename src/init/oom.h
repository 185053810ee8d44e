/* msb-init's memory guard: an early out-of-memory kill in user space.
 *
 * Why: the guest has no swap, and when a command eats all memory the guest
 * kernel reclaims page cache over and over before its own OOM killer acts; on
 * a PVM host (every page fault and TLB flush emulated) that took more than 10
 * minutes.  So while commands run, msb-init (PID 1: no command can stop or
 * kill it) reads MemAvailable from /proc/meminfo on a short timer and, when it
 * falls below oom_threshold_kib(), SIGKILLs the agent command (its whole session
 * and process group) or REPL interpreter that holds the most resident memory
 * (docs/agent-protocol.md, "Memory guard").  The kernel's OOM killer stays as the
 * backstop.
 *
 * The kill path allocates nothing: /proc is read with getdents64 into the
 * guard's own buffers, locked in memory at its first check.  The decision
 * (parsers, threshold, victim) is pure, for the unit tests and the fuzzer. */
#ifndef MSB_INIT_OOM_H
#define MSB_INIT_OOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct server;

#define OOM_MAX_UNITS 264 /* agent commands (MAX_EXECS) + REPL interpreters, with room */
#define OOM_COMM_MAX  32

/* One process, from /proc/PID/stat. */
struct oom_proc {
	pid_t pid, ppid, pgid, sid;
	char state;	  /* 'R', 'S', 'Z'... */
	uint64_t rss_kib; /* resident set */
	uint64_t start;	  /* start time after boot, in clock ticks: tells a reused pid apart */
	char comm[OOM_COMM_MAX];
};

/* Parse /proc/PID/stat text (len bytes, NUL not required; comm may hold any
 * bytes including ") ").  `page_kib` is the page size in KiB.  -1 when the
 * text is not a stat line. */
int oom_parse_stat(const char *text, size_t len, unsigned page_kib, struct oom_proc *out);

/* The MemAvailable (KiB) below which the guard kills: 2% of MemTotal, at
 * least 8 MiB, at most a quarter of MemTotal. */
uint64_t oom_threshold_kib(uint64_t total_kib);

/* The smallest victim worth killing (KiB): 1/32 of MemTotal.  Memory held by
 * files in tmpfs is no process's; killing a small command would not help. */
uint64_t oom_min_victim_kib(uint64_t total_kib);

/* Victim choice.  A unit is one agent command or REPL interpreter: every
 * process whose pid, session or process group is its leader's pid counts
 * towards it.  A process that belongs to no unit (a command's daemon that
 * left its session) is a candidate by itself.  PID 1 and processes without
 * memory (kernel threads, zombies) are never candidates. */
struct oom_choice {
	size_t nunits;
	pid_t leader[OOM_MAX_UNITS];
	uint64_t sum_kib[OOM_MAX_UNITS];
	struct oom_proc top[OOM_MAX_UNITS]; /* each unit's largest process */
	struct oom_proc lone;		    /* the largest process of no unit */
};

/* Leaders that are 0 or 1, or repeated, are ignored; at most OOM_MAX_UNITS. */
void oom_choice_init(struct oom_choice *c, const pid_t *leaders, size_t n);
void oom_choice_add(struct oom_choice *c, const struct oom_proc *p);

struct oom_victim {
	pid_t leader;	     /* >1: kill this unit's session and group; 0: lone process */
	uint64_t kib;	     /* what the victim holds (a unit: all its processes) */
	struct oom_proc top; /* its largest process (the lone process itself) */
};

/* The unit (or lone process) with the most resident memory, if it holds at
 * least min_kib; false when there is none. */
bool oom_choice_pick(const struct oom_choice *c, uint64_t min_kib, struct oom_victim *out);

/* The kill's line for the kernel log (/dev/kmsg: dmesg, and the console),
 * OOM_KMSG_PREFIX first, one line ending in '\n'; snprintf's result. */
#define OOM_KMSG_PREFIX "<3>"
#define OOM_LINE_MAX	320 /* room for the longest (a 31-byte comm, 20-digit numbers) */
int oom_format_line(char *buf, size_t cap, const struct oom_victim *v, uint64_t total_kib,
		    uint64_t avail_kib);

/* ---- the server's hooks ---------------------------------------------------- */

/* Checks memory while the agent has commands or interpreters, kills when it
 * runs out.  Returns the ms until the next check (UINT64_MAX: nothing to
 * watch).  Active only as PID 1 (the guest's init): in host mode it returns
 * UINT64_MAX at once. */
uint64_t oom_tick(struct server *s, uint64_t now);
/* True once if `pid` was a unit leader killed by the guard (then forgotten):
 * for the REPL's "ran out of memory" message. */
bool oom_was_victim(struct server *s, pid_t pid);
void oom_free(struct server *s);

#endif
