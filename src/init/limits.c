#include "init/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define CGROUP_MSB  CGROUP_ROOT "/msb"

static int write_str(const char *path, const char *s, struct msb_err *err)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening %s", path);
	ssize_t n = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	if (n != (ssize_t)strlen(s)) {
		errno = n < 0 ? e : EIO;
		return msb_err_sys(err, "writing '%s' to %s", s, path);
	}
	return 0;
}

static unsigned long long mem_total_kib(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return 0;
	char line[128];
	unsigned long long kib = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

int limits_guard_memory(struct msb_err *err)
{
	unsigned long long total = mem_total_kib() * 1024;
	if (total == 0)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "reading MemTotal from /proc/meminfo");
	/* What stays outside the cgroup for the kernel: an eighth, 16-128 MiB. */
	unsigned long long reserve = total / 8;
	if (reserve < 16ULL << 20)
		reserve = 16ULL << 20;
	if (reserve > 128ULL << 20)
		reserve = 128ULL << 20;
	if (reserve >= total / 2)
		reserve = total / 2;
	char max[32];
	snprintf(max, sizeof(max), "%llu", total - reserve);
	if (mkdir(CGROUP_MSB, 0755) < 0 && errno != EEXIST)
		return msb_err_sys(err, "creating the cgroup %s", CGROUP_MSB);
	if (write_str(CGROUP_ROOT "/cgroup.subtree_control", "+memory", err) < 0 ||
	    write_str(CGROUP_MSB "/memory.max", max, err) < 0 ||
	    write_str(CGROUP_MSB "/cgroup.procs", "0", err) < 0)
		return -1;
	msb_debug("commands share %s with memory.max %s", CGROUP_MSB, max);
	return 0;
}
