/* The memory guard (see oom.h). */
#include "init/oom.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "init/metrics.h"
#include "init/repl.h"
#include "init/server_int.h"

#define OOM_FAST_MS    100   /* between checks when memory is short */
#define OOM_SLOW_MS    2000  /* between checks with plenty left */
#define OOM_FILL_KIB_S 32768 /* the fill rate the period allows for (32 MiB/s) */
#define OOM_HOLD_MS    30000 /* a victim that does not die: how long before another */
#define OOM_DYING_MAX  16    /* a victim's processes (the largest) watched until they are gone */
#define OOM_RECENT     8
#define OOM_SEEN_MAX   4096

/* ---- pure parts ------------------------------------------------------------- */

static bool parse_num(const char **p, const char *end, bool neg_ok, long long *out)
{
	const char *s = *p;
	while (s < end && *s == ' ')
		s++;
	bool neg = false;
	if (neg_ok && s < end && *s == '-')
		neg = true, s++;
	if (s >= end || *s < '0' || *s > '9')
		return false;
	unsigned long long v = 0;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (v > (unsigned long long)(INT64_MAX / 10) - 1)
			return false;
		v = v * 10 + (unsigned)(*s - '0');
	}
	if (s < end && *s != ' ' && *s != '\n')
		return false;
	*out = neg ? -(long long)v : (long long)v;
	*p = s;
	return true;
}

static bool skip_field(const char **p, const char *end)
{
	const char *s = *p;
	while (s < end && *s == ' ')
		s++;
	if (s >= end || *s == '\n')
		return false;
	while (s < end && *s != ' ' && *s != '\n')
		s++;
	*p = s;
	return true;
}

int oom_parse_stat(const char *text, size_t len, unsigned page_kib, struct oom_proc *out)
{
	memset(out, 0, sizeof(*out));
	const char *end = text + len;
	/* "PID (COMM) S PPID PGRP SID ...": comm is whatever the process named
	 * itself, so it ends at the LAST ')'. */
	const char *open = memchr(text, '(', len), *close = NULL;
	for (const char *q = end; q > text; q--)
		if (q[-1] == ')') {
			close = q - 1;
			break;
		}
	if (!open || !close || close < open)
		return -1;
	const char *p = text;
	long long v;
	if (!parse_num(&p, open, false, &v) || v <= 0 || v > INT32_MAX)
		return -1;
	out->pid = (pid_t)v;
	size_t clen = (size_t)(close - open - 1);
	if (clen >= sizeof(out->comm))
		clen = sizeof(out->comm) - 1;
	for (size_t i = 0; i < clen; i++) {
		unsigned char ch = (unsigned char)open[1 + i];
		out->comm[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	p = close + 1;
	if (p + 2 > end || p[0] != ' ' || p[1] == ' ' || p[1] == '\n')
		return -1;
	out->state = p[1];
	p += 2;
	long long f[3];
	for (int i = 0; i < 3; i++)
		if (!parse_num(&p, end, true, &f[i]) || f[i] < 0 || f[i] > INT32_MAX)
			return -1;
	out->ppid = (pid_t)f[0];
	out->pgid = (pid_t)f[1];
	out->sid = (pid_t)f[2];
	/* Fields 7..21 (tty_nr ... itrealvalue), starttime (22), vsize (23),
	 * then rss (24) in pages. */
	for (int field = 7; field < 22; field++)
		if (!skip_field(&p, end))
			return -1;
	if (!parse_num(&p, end, false, &v))
		return -1;
	out->start = (uint64_t)v;
	if (!skip_field(&p, end) || !parse_num(&p, end, true, &v))
		return -1;
	out->rss_kib = v > 0 ? (uint64_t)v * page_kib : 0;
	return 0;
}

uint64_t oom_threshold_kib(uint64_t total_kib)
{
	uint64_t t = total_kib / 50;
	if (t < 8192)
		t = 8192;
	if (t > total_kib / 4)
		t = total_kib / 4;
	return t;
}

uint64_t oom_min_victim_kib(uint64_t total_kib)
{
	return total_kib / 32;
}

void oom_choice_init(struct oom_choice *c, const pid_t *leaders, size_t n)
{
	c->nunits = 0;
	memset(&c->lone, 0, sizeof(c->lone));
	for (size_t i = 0; i < n && c->nunits < OOM_MAX_UNITS; i++) {
		if (leaders[i] <= 1)
			continue;
		bool seen = false;
		for (size_t j = 0; j < c->nunits && !seen; j++)
			seen = c->leader[j] == leaders[i];
		if (seen)
			continue;
		c->leader[c->nunits] = leaders[i];
		c->sum_kib[c->nunits] = 0;
		memset(&c->top[c->nunits], 0, sizeof(c->top[0]));
		c->nunits++;
	}
}

void oom_choice_add(struct oom_choice *c, const struct oom_proc *p)
{
	if (p->pid <= 1 || p->rss_kib == 0 || p->state == 'Z')
		return;
	for (size_t i = 0; i < c->nunits; i++) {
		pid_t l = c->leader[i];
		if (p->pid != l && p->pgid != l && p->sid != l)
			continue;
		c->sum_kib[i] += p->rss_kib;
		if (p->rss_kib > c->top[i].rss_kib)
			c->top[i] = *p;
		return;
	}
	if (p->rss_kib > c->lone.rss_kib)
		c->lone = *p;
}

bool oom_choice_pick(const struct oom_choice *c, uint64_t min_kib, struct oom_victim *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < c->nunits; i++) {
		if (c->sum_kib[i] > out->kib) {
			out->leader = c->leader[i];
			out->kib = c->sum_kib[i];
			out->top = c->top[i];
		}
	}
	if (c->lone.rss_kib > out->kib) {
		out->leader = 0;
		out->kib = c->lone.rss_kib;
		out->top = c->lone;
	}
	return out->kib > 0 && out->kib >= min_kib;
}

/* ---- the guard -------------------------------------------------------------- */

struct oom_guard {
	int meminfo_fd, kmsg_fd;
	unsigned page_kib;
	uint64_t next_ms;
	unsigned kills;
	bool off; /* its files could not be opened: no guard, and no retry */
	/* The last victim's largest processes, until they are gone or
	 * OOM_HOLD_MS passed: no other victim meanwhile. */
	struct oom_proc dying[OOM_DYING_MAX];
	size_t ndying;
	uint64_t held_until;
	pid_t recent[OOM_RECENT]; /* killed leaders, for oom_was_victim() */
	unsigned nrecent;
	struct oom_choice choice;
	pid_t leaders[OOM_MAX_UNITS];
	/* The last scan's processes: the kill needs no second pass over /proc
	 * (each read of a stat file costs ~10 ms of guest CPU on PVM). */
	struct {
		pid_t pid, pgid, sid;
		uint64_t start, rss_kib;
	} seen[OOM_SEEN_MAX];
	size_t nseen;
	char text[4096];
	char dents[8192];
};

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static ssize_t read_at0(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	while (len < cap - 1) {
		ssize_t n = pread(fd, buf + len, cap - 1 - len, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

static int read_proc(struct oom_guard *g, int dirfd, const char *pid, struct oom_proc *out)
{
	char path[32];
	snprintf(path, sizeof(path), "%s/stat", pid);
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read_at0(fd, g->text, sizeof(g->text));
	close(fd);
	if (n <= 0)
		return -1;
	return oom_parse_stat(g->text, (size_t)n, g->page_kib, out);
}

/* Calls fn for every process in /proc; no allocation (getdents64 into g->dents). */
static void each_proc(struct oom_guard *g,
		      void (*fn)(struct oom_guard *, const struct oom_proc *, void *), void *ctx)
{
	int dirfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return;
	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, g->dents, sizeof(g->dents));
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(g->dents + off);
			off += d->d_reclen;
			if (d->d_name[0] < '1' || d->d_name[0] > '9')
				continue;
			struct oom_proc p;
			if (read_proc(g, dirfd, d->d_name, &p) == 0)
				fn(g, &p, ctx);
		}
	}
	close(dirfd);
}

static void add_cb(struct oom_guard *g, const struct oom_proc *p, void *ctx)
{
	(void)ctx;
	if (p->pid == getpid())
		return;
	oom_choice_add(&g->choice, p);
	if (g->nseen < OOM_SEEN_MAX) {
		g->seen[g->nseen].pid = p->pid;
		g->seen[g->nseen].pgid = p->pgid;
		g->seen[g->nseen].sid = p->sid;
		g->seen[g->nseen].start = p->start;
		g->seen[g->nseen].rss_kib = p->rss_kib;
		g->nseen++;
	}
}

/* The kernel log (dmesg) and, at level 3, the console (the sandbox's console
 * log), where the kernel's own OOM kill is reported.  The line must end in
 * '\n': the kernel keeps a record without one open for a continuation, and
 * readers (dmesg, the console) see it only once the next message closes it,
 * which after an OOM kill may be never.  Without /dev/kmsg, on the console
 * through stderr. */
static void kmsg(struct oom_guard *g, const char *line)
{
	if (g->kmsg_fd >= 0 && write(g->kmsg_fd, line, strlen(line)) >= 0)
		return;
	if (g->kmsg_fd >= 0)
		fprintf(stderr, "msb-init: writing /dev/kmsg: %s\n", strerror(errno));
	fputs(line + strlen(OOM_KMSG_PREFIX), stderr);
}

/* `want` (from a scan) is still that process (its pid not given to another
 * since: same start time) and not yet a zombie or gone; its resident size now
 * in *rss_kib. */
static bool same_proc(struct oom_guard *g, const struct oom_proc *want, uint64_t *rss_kib)
{
	char name[16];
	snprintf(name, sizeof(name), "%d", (int)want->pid);
	int dirfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return false;
	struct oom_proc p = {0};
	bool alive = read_proc(g, dirfd, name, &p) == 0 && p.pid == want->pid &&
		     p.start == want->start && p.state != 'Z';
	close(dirfd);
	*rss_kib = p.rss_kib;
	return alive;
}

/* `want` still runs and holds memory. */
static bool still_there(struct oom_guard *g, pid_t pid, const void *ctx)
{
	(void)pid;
	uint64_t rss;
	return same_proc(g, ctx, &rss) && rss > 0;
}

/* `want` has not finished exiting: a killed process's resident count reads 0
 * as soon as it lets go of its memory map, while the kernel is still freeing
 * the pages (seconds on PVM); it is a zombie only after. */
static bool still_exiting(struct oom_guard *g, pid_t pid, const void *ctx)
{
	(void)pid;
	uint64_t rss;
	return same_proc(g, ctx, &rss);
}

/* `pid` is in the unit of leader *ctx now: the leader itself (a child of
 * ours, not reaped: its pid cannot be reused), or in its group or session. */
static bool in_unit(struct oom_guard *g, pid_t pid, const void *ctx)
{
	(void)g;
	pid_t l = *(const pid_t *)ctx;
	return pid == l || getpgid(pid) == l || getsid(pid) == l;
}

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* SIGKILL `pid` if `is_it` still recognises it: a process that is not our
 * child can exit and be reaped, and its pid go to another, between the scan
 * and the kill.  A pidfd pins the process before the check, so the signal
 * reaches the process that was checked or, if it died since, none.  False
 * when it was not sent (gone, or no longer the one). */
static bool kill_checked(struct oom_guard *g, pid_t pid,
			 bool (*is_it)(struct oom_guard *, pid_t, const void *), const void *ctx,
			 bool *unsure)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0 && errno != ENOSYS) {
		/* gone (ESRCH, or EINVAL: reaped, its pid not yet freed), or no
		 * descriptor or memory left: then it may still be there */
		if (unsure)
			*unsure = errno == EMFILE || errno == ENFILE || errno == ENOMEM;
		return false;
	}
	bool sent = is_it(g, pid, ctx) &&
		    (fd >= 0 ? syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0
			     : kill(pid, SIGKILL) == 0); /* a kernel before 5.3 */
	if (fd >= 0)
		close(fd);
	return sent;
}

int oom_format_line(char *buf, size_t cap, const struct oom_victim *v, uint64_t total_kib,
		    uint64_t avail_kib)
{
	unsigned long long res = v->kib / 1024, avail = avail_kib / 1024, total = total_kib / 1024;
	if (v->leader > 1)
		return snprintf(buf, cap,
				OOM_KMSG_PREFIX "msb-init: Out of memory: Killed process %d (%s) "
						"and the rest of command %d, %llu MiB resident in "
						"all; MemAvailable was %llu of %llu MiB\n",
				(int)v->top.pid, v->top.comm, (int)v->leader, res, avail, total);
	return snprintf(buf, cap,
			OOM_KMSG_PREFIX "msb-init: Out of memory: Killed process %d (%s), %llu MiB "
					"resident; MemAvailable was %llu of %llu MiB\n",
			(int)v->top.pid, v->top.comm, res, avail, total);
}

static void kill_victim(struct oom_guard *g, const struct oom_victim *v, uint64_t total_kib,
			uint64_t avail_kib, uint64_t now)
{
	if (v->leader > 1) {
		/* Stop the group first so that it cannot fork past the kill.  The
		 * group's id is the leader's pid, which cannot be reused while the
		 * leader is not reaped: a kill of the group is safe as is. */
		pid_t l = v->leader;
		kill(-l, SIGSTOP);
		/* The rest of its session, process by process: each checked. */
		for (size_t i = 0; i < g->nseen; i++)
			if (g->seen[i].pid > 1 && g->seen[i].pgid != l &&
			    (g->seen[i].pid == l || g->seen[i].sid == l))
				kill_checked(g, g->seen[i].pid, in_unit, &l, NULL);
		kill(-l, SIGKILL);
		g->recent[g->nrecent++ % OOM_RECENT] = v->leader;
	} else {
		/* Not in recent[]: no command or interpreter waits for it, and an
		 * entry nobody takes out could name a later one with its pid. */
		if (!kill_checked(g, v->top.pid, still_there, &v->top, NULL))
			return; /* gone by itself; checked again soon */
	}
	g->kills++;
	/* Its largest processes, watched until they are gone (held_dying()). */
	g->ndying = 0;
	if (v->leader <= 1)
		g->dying[g->ndying++] = v->top;
	for (size_t i = 0; v->leader > 1 && i < g->nseen; i++) {
		struct oom_proc p = {.pid = g->seen[i].pid,
				     .start = g->seen[i].start,
				     .rss_kib = g->seen[i].rss_kib};
		if (p.pid <= 1 || p.rss_kib == 0 ||
		    (p.pid != v->leader && g->seen[i].pgid != v->leader &&
		     g->seen[i].sid != v->leader))
			continue;
		size_t at = g->ndying < OOM_DYING_MAX ? g->ndying++ : OOM_DYING_MAX;
		if (at == OOM_DYING_MAX) { /* full: in place of the smallest, if larger */
			size_t min = 0;
			for (size_t j = 1; j < OOM_DYING_MAX; j++)
				if (g->dying[j].rss_kib < g->dying[min].rss_kib)
					min = j;
			if (g->dying[min].rss_kib >= p.rss_kib)
				continue;
			at = min;
		}
		g->dying[at] = p;
	}
	g->held_until = now + OOM_HOLD_MS;
	char line[OOM_LINE_MAX];
	oom_format_line(line, sizeof(line), v, total_kib, avail_kib);
	kmsg(g, line);
}

/* The last victim still exits (its memory is being freed): SIGKILL again what
 * of it is left, forget what is gone.  True while any of it is left: then no
 * other victim, or a second command would die for the first one's memory. */
static bool held_dying(struct oom_guard *g)
{
	size_t n = 0;
	for (size_t i = 0; i < g->ndying; i++) {
		bool unsure = false;
		if (kill_checked(g, g->dying[i].pid, still_exiting, &g->dying[i], &unsure) ||
		    unsure)
			g->dying[n++] = g->dying[i];
	}
	g->ndying = n;
	return n > 0;
}

/* The guard's files and its locked pages, at its first check. */
static int guard_open(struct oom_guard *g)
{
	g->meminfo_fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	if (g->meminfo_fd < 0) {
		msb_info("memory guard off: /proc/meminfo: %s", strerror(errno));
		return -1;
	}
	g->kmsg_fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	struct stat st;
	if (g->kmsg_fd >= 0 && (fstat(g->kmsg_fd, &st) < 0 || !S_ISCHR(st.st_mode))) {
		close(g->kmsg_fd);
		g->kmsg_fd = -1;
	}
	long page = sysconf(_SC_PAGESIZE);
	g->page_kib = page >= 1024 ? (unsigned)(page / 1024) : 4;
	/* Its pages are in memory before they are needed: faulting them in while
	 * memory runs out would wait for the reclaim the guard is there to cut. */
	if (mlock(g, sizeof(*g)) < 0)
		msb_debug("oom: mlock: %s", strerror(errno));
	return 0;
}

static size_t collect_leaders(struct server *s, pid_t *out, size_t cap)
{
	size_t n = 0;
	for (struct exec *e = s->execs; e && n < cap; e = e->next)
		if (!e->reaped && e->pid > 1)
			out[n++] = e->pid;
	return n + repl_pids(s, out + n, cap - n);
}

uint64_t oom_tick(struct server *s, uint64_t now)
{
	if (!s->opts.pid1)
		return UINT64_MAX;
	struct oom_guard *g = s->oom;
	if (g && g->off)
		return UINT64_MAX;
	if (!g) {
		pid_t probe[1];
		if (collect_leaders(s, probe, 1) == 0)
			return UINT64_MAX;
		g = s->oom = calloc(1, sizeof(*g));
		if (!g)
			return UINT64_MAX; /* tried again with the next command */
		g->meminfo_fd = g->kmsg_fd = -1;
	}
	size_t nleaders = collect_leaders(s, g->leaders, OOM_MAX_UNITS);
	if (nleaders == 0) {
		g->next_ms = 0;
		return UINT64_MAX;
	}
	/* The first check once a command has run for OOM_SLOW_MS: a short
	 * command costs nothing (one check is ~10 ms of guest CPU on PVM). */
	if (!g->next_ms)
		g->next_ms = now + OOM_SLOW_MS;
	if (now < g->next_ms)
		return g->next_ms - now;
	if (g->meminfo_fd < 0 && guard_open(g) < 0) {
		/* Not opts.pid1 = false: SETUP and the rest still act as PID 1. */
		g->off = true;
		return UINT64_MAX;
	}
	uint64_t total, avail;
	if (read_at0(g->meminfo_fd, g->text, sizeof(g->text)) <= 0 ||
	    metrics_parse_meminfo(g->text, &total, &avail) < 0) {
		g->next_ms = now + OOM_SLOW_MS;
		return OOM_SLOW_MS;
	}
	uint64_t total_kib = total / 1024, avail_kib = avail / 1024;
	uint64_t thr = oom_threshold_kib(total_kib);
	if (avail_kib > thr) {
		/* Check again before a fast fill could use up the headroom. */
		uint64_t ms = (avail_kib - thr) * 1000 / OOM_FILL_KIB_S;
		ms = ms < OOM_FAST_MS ? OOM_FAST_MS : ms > OOM_SLOW_MS ? OOM_SLOW_MS : ms;
		g->next_ms = now + ms;
		return ms;
	}
	g->next_ms = now + OOM_FAST_MS;
	if (g->ndying && now < g->held_until && held_dying(g))
		return OOM_FAST_MS;
	oom_choice_init(&g->choice, g->leaders, nleaders);
	g->nseen = 0;
	each_proc(g, add_cb, NULL);
	struct oom_victim v;
	if (oom_choice_pick(&g->choice, oom_min_victim_kib(total_kib), &v))
		kill_victim(g, &v, total_kib, avail_kib, now);
	else
		g->next_ms = now + OOM_SLOW_MS; /* nothing worth killing holds it */
	return g->next_ms - now;
}

bool oom_was_victim(struct server *s, pid_t pid)
{
	struct oom_guard *g = s->oom;
	if (!g || pid <= 1)
		return false;
	for (unsigned i = 0; i < OOM_RECENT; i++)
		if (g->recent[i] == pid) {
			g->recent[i] = 0;
			return true;
		}
	return false;
}

void oom_free(struct server *s)
{
	struct oom_guard *g = s->oom;
	if (!g)
		return;
	if (g->meminfo_fd >= 0)
		close(g->meminfo_fd);
	if (g->kmsg_fd >= 0)
		close(g->kmsg_fd);
	munlock(g, sizeof(*g));
	free(g);
	s->oom = NULL;
}
