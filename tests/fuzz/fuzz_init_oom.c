/* msb-init's memory guard on hostile /proc text (a process names itself, so
 * /proc/PID/stat carries bytes a user chose): oom_parse_stat() on arbitrary
 * bytes, its result fed to the victim choice, and the meminfo parser the guard
 * uses.  Input: byte 0 picks the page size in KiB (1..16), the rest is the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "init/metrics.h"
#include "init/oom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct oom_choice choice;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned page_kib = (unsigned)(data[0] % 16) + 1;
	/* Exactly the input's bytes (no NUL): ASan sees any read past them. */
	size_t len = size - 1;
	char *text = malloc(len ? len : 1);
	if (!text)
		return 0;
	memcpy(text, data + 1, len);
	struct oom_proc p;
	if (oom_parse_stat(text, len, page_kib, &p) == 0) {
		if (p.pid <= 0 || p.ppid < 0 || p.pgid < 0 || p.sid < 0)
			abort();
		size_t n = strnlen(p.comm, sizeof(p.comm));
		if (n >= sizeof(p.comm))
			abort();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p.comm[i] < 0x20 || (unsigned char)p.comm[i] >= 0x7f)
				abort();
		pid_t leaders[2] = {p.pgid, p.sid};
		oom_choice_init(&choice, leaders, 2);
		oom_choice_add(&choice, &p);
		struct oom_victim v;
		bool picked = oom_choice_pick(&choice, 0, &v);
		if (picked != (p.pid > 1 && p.rss_kib > 0 && p.state != 'Z'))
			abort();
		if (picked && (v.top.pid != p.pid || v.kib != p.rss_kib))
			abort();
		/* The kernel-log line: one record of one line, whatever comm holds. */
		char line[OOM_LINE_MAX];
		v.leader = p.sid;
		int w = oom_format_line(line, sizeof(line), &v, p.rss_kib, p.rss_kib / 2);
		if (w <= 0 || w >= (int)sizeof(line) || strchr(line, '\n') != line + w - 1)
			abort();
	}
	char *z = malloc(len + 1);
	if (z) {
		memcpy(z, data + 1, len);
		z[len] = '\0';
		uint64_t total = 0, avail = 0;
		if (metrics_parse_meminfo(z, &total, &avail) == 0 && avail > total)
			abort();
		free(z);
	}
	free(text);
	return 0;
}
