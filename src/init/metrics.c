/* METRICS (see metrics.h). */
#include "init/metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "agent/files_proto.h"
#include "init/server_int.h"

#define METRICS_MIN_MS 10

struct mreq {
	struct mreq *next;
	struct conn *conn;
	uint32_t id;
	uint32_t interval_ms;
	uint64_t due_ms;
	struct cpu_sample start;
	bool have_start;
};

int metrics_parse_stat(const char *text, struct cpu_sample *out)
{
	memset(out, 0, sizeof(*out));
	bool have = false;
	for (const char *line = text; line && *line;) {
		if (strncmp(line, "cpu ", 4) == 0) {
			unsigned long long v[8] = {0};
			int n = sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
				       &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
			if (n < 4)
				return -1;
			/* user nice system idle iowait irq softirq steal */
			out->busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
			out->total = out->busy + v[3] + v[4];
			have = true;
		} else if (strncmp(line, "cpu", 3) == 0 && isdigit((unsigned char)line[3])) {
			out->ncpus++;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	if (!have)
		return -1;
	if (out->ncpus == 0)
		out->ncpus = 1;
	return 0;
}

uint32_t metrics_cpu_x100(const struct cpu_sample *a, const struct cpu_sample *b)
{
	if (b->total <= a->total || b->busy < a->busy)
		return 0;
	uint64_t dt = b->total - a->total, db = b->busy - a->busy;
	if (db > dt)
		db = dt;
	uint32_t n = b->ncpus ? b->ncpus : 1;
	return (uint32_t)((db * 10000u * n + dt / 2) / dt);
}

int metrics_parse_meminfo(const char *text, uint64_t *total, uint64_t *avail)
{
	bool ht = false, ha = false;
	for (const char *line = text; line && *line;) {
		unsigned long long kb;
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			*total = kb * 1024, ht = true;
		else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			*avail = kb * 1024, ha = true;
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	if (ht && ha && *avail > *total)
		*avail = *total;
	return ht && ha ? 0 : -1;
}

/* A small /proc file into buf (NUL-terminated); -1 on failure. */
static int slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return 0;
}

static int sample_cpu(struct cpu_sample *out)
{
	/* The cpu lines come first; 64 KiB holds them for hundreds of CPUs. */
	static char buf[64 << 10];
	if (slurp("/proc/stat", buf, sizeof(buf)) < 0)
		return -1;
	return metrics_parse_stat(buf, out);
}

static uint32_t count_procs(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	uint32_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (isdigit((unsigned char)de->d_name[0]))
			n++;
	closedir(d);
	return n;
}

static void reply(struct mreq *m)
{
	struct conn *c = m->conn;
	struct agent_metrics r = {.interval_ms = m->interval_ms};
	struct cpu_sample now;
	if (m->have_start && sample_cpu(&now) == 0) {
		r.cpu_x100 = metrics_cpu_x100(&m->start, &now);
		r.ncpus = now.ncpus;
	}
	if (!r.ncpus) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		r.ncpus = n > 0 ? (uint32_t)n : 1;
	}
	char buf[8192];
	uint64_t avail = 0;
	if (slurp("/proc/meminfo", buf, sizeof(buf)) == 0 &&
	    metrics_parse_meminfo(buf, &r.mem_total, &avail) == 0)
		r.mem_used = r.mem_total - avail;
	struct statvfs vfs;
	if (statvfs("/", &vfs) == 0 && vfs.f_blocks >= vfs.f_bfree) {
		r.disk_total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
		r.disk_used = (uint64_t)(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
	}
	r.procs = count_procs();
	struct timespec ts;
	if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0)
		r.uptime_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	struct msb_err err;
	agent_msg_begin(&c->out, AGENT_METRICS, m->id, 0);
	agent_put_metrics(&c->out, &r);
	if (agent_msg_end(&c->out, &err) < 0)
		c->closing = true;
}

void metrics_request(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p)
{
	struct msb_err err;
	uint32_t interval;
	if (h->id == 0) {
		send_error(c, 0, AGENT_E_BAD_REQUEST, 0, "METRICS needs a non-zero id");
		return;
	}
	if (agent_decode_metrics_req(p, h->len, &interval, &err) < 0) {
		send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, err.msg);
		return;
	}
	size_t pending = 0;
	for (struct mreq *m = s->metrics; m; m = m->next)
		pending++;
	if (pending >= MAX_CONNS * 4) {
		send_error(c, h->id, AGENT_E_LIMIT, 0, "too many METRICS requests are pending");
		return;
	}
	struct mreq *m = calloc(1, sizeof(*m));
	if (!m) {
		send_error(c, h->id, AGENT_E_LIMIT, ENOMEM, "out of memory");
		return;
	}
	if (interval < METRICS_MIN_MS)
		interval = METRICS_MIN_MS;
	m->conn = c;
	m->id = h->id;
	m->interval_ms = interval;
	m->have_start = sample_cpu(&m->start) == 0;
	m->due_ms = now_ms() + interval;
	m->next = s->metrics;
	s->metrics = m;
}

uint64_t metrics_tick(struct server *s, uint64_t now)
{
	uint64_t timeout = UINT64_MAX;
	for (struct mreq **pp = &s->metrics; *pp;) {
		struct mreq *m = *pp;
		if (now >= m->due_ms) {
			reply(m);
			*pp = m->next;
			free(m);
			continue;
		}
		if (m->due_ms - now < timeout)
			timeout = m->due_ms - now;
		pp = &m->next;
	}
	return timeout;
}

void metrics_conn_closed(struct server *s, struct conn *c)
{
	for (struct mreq **pp = &s->metrics; *pp;) {
		struct mreq *m = *pp;
		if (!c || m->conn == c) {
			*pp = m->next;
			free(m);
		} else {
			pp = &m->next;
		}
	}
}
