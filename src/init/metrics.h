/* METRICS for the agent server (docs/agent-protocol.md, "Metrics"): CPU busy
 * time from two /proc/stat samples INTERVAL_MS apart (the reply is deferred,
 * the loop goes on meanwhile), memory from /proc/meminfo, the disk of "/"
 * (statvfs: in the guest the overlay's writable layer), processes, uptime.
 * The parsers are pure, for the unit tests. */
#ifndef MSB_INIT_METRICS_H
#define MSB_INIT_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/proto.h"

struct server;
struct conn;

struct cpu_sample {
	uint64_t busy, total; /* clock ticks, all CPUs */
	uint32_t ncpus;	      /* "cpuN" lines */
};

/* Parse /proc/stat text.  busy = user+nice+system+irq+softirq+steal, total =
 * busy + idle + iowait.  -1 when the "cpu " line is missing or malformed. */
int metrics_parse_stat(const char *text, struct cpu_sample *out);
/* Busy share between two samples in 100ths of a percent of ONE CPU (10000 =
 * one CPU fully busy; at most 10000 * ncpus).  0 when no time passed. */
uint32_t metrics_cpu_x100(const struct cpu_sample *a, const struct cpu_sample *b);
/* MemTotal and MemAvailable in bytes; -1 when either is missing. */
int metrics_parse_meminfo(const char *text, uint64_t *total, uint64_t *avail);

void metrics_request(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p);
/* Answer the requests whose interval ended; returns the ms until the next one
 * is due (UINT64_MAX: none). */
uint64_t metrics_tick(struct server *s, uint64_t now);
/* Forget the requests of `c` (NULL: all). */
void metrics_conn_closed(struct server *s, struct conn *c);

#endif
