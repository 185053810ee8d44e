#include "project/lifecycle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

extern char **environ;

/* ---- config hash ------------------------------------------------------------ */

/* FNV-1a 64: enough to tell "changed" from "not changed" for configs nobody
 * crafts to collide (a collision only means `apply` misses a restart). */
struct hasher {
	uint64_t h;
};

static void h_bytes(struct hasher *s, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		s->h ^= b[i];
		s->h *= 0x100000001b3ull;
	}
}

/* Tag, length, bytes: "ab"+"c" and "a"+"bc" hash differently; NULL differs from "". */
static void h_str(struct hasher *s, char tag, const char *v)
{
	h_bytes(s, &tag, 1);
	uint64_t n = v ? strlen(v) : UINT64_MAX;
	h_bytes(s, &n, sizeof(n));
	if (v)
		h_bytes(s, v, strlen(v));
}

static void h_u64(struct hasher *s, char tag, uint64_t v)
{
	h_bytes(s, &tag, 1);
	h_bytes(s, &v, sizeof(v));
}

void msb_sandbox_config_hash(const struct msb_sandbox *sb, char out[MSB_CONFIG_HASH_LEN + 1])
{
	struct hasher s = {0xcbf29ce484222325ull};
	h_str(&s, 'i', sb->image_is_path && sb->image_path ? sb->image_path : sb->image);
	h_u64(&s, 'm', sb->memory_mib ? sb->memory_mib : MSB_DEFAULT_MEMORY);
	h_u64(&s, 'c', sb->cpus ? sb->cpus : MSB_DEFAULT_CPUS);
	h_u64(&s, 'V', sb->nvolumes);
	for (size_t i = 0; i < sb->nvolumes; i++) {
		h_str(&s, 'h',
		      sb->volumes[i].host_abs ? sb->volumes[i].host_abs : sb->volumes[i].host);
		h_str(&s, 'g', sb->volumes[i].guest);
	}
	h_u64(&s, 'P', sb->nports);
	for (size_t i = 0; i < sb->nports; i++)
		h_u64(&s, 'p', (uint64_t)sb->ports[i].host << 16 | sb->ports[i].guest);
	h_u64(&s, 'E', sb->nenvs);
	for (size_t i = 0; i < sb->nenvs; i++) {
		h_str(&s, 'k', sb->envs[i].name);
		h_str(&s, 'v', sb->envs[i].value);
	}
	h_u64(&s, 'D', sb->depends_on.n);
	for (size_t i = 0; i < sb->depends_on.n; i++)
		h_str(&s, 'd', sb->depends_on.v[i]);
	h_str(&s, 'w', sb->workdir);
	h_str(&s, 's', sb->shell ? sb->shell : MSB_DEFAULT_SHELL);
	h_u64(&s, 'S', sb->nscripts);
	for (size_t i = 0; i < sb->nscripts; i++) {
		h_str(&s, 'n', sb->scripts[i].key);
		h_str(&s, 'b', sb->scripts[i].value);
	}
	h_u64(&s, 'C', sb->command.n);
	for (size_t i = 0; i < sb->command.n; i++)
		h_str(&s, 'a', sb->command.v[i]);
	h_u64(&s, 'o', (uint64_t)sb->scope);
	snprintf(out, MSB_CONFIG_HASH_LEN + 1, "%016llx", (unsigned long long)s.h);
}

/* ---- processes ---------------------------------------------------------------- */

char *msb_self_exe(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	return strdup(buf);
}

int64_t msb_proc_uptime_s(uint64_t start_ticks)
{
	FILE *f = fopen("/proc/uptime", "re");
	if (!f)
		return -1;
	double up = 0;
	int ok = fscanf(f, "%lf", &up);
	fclose(f);
	long hz = sysconf(_SC_CLK_TCK);
	if (ok != 1 || hz <= 0)
		return -1;
	double s = up - (double)start_ticks / (double)hz;
	return s < 0 ? 0 : (int64_t)s;
}

int msb_stop_timeout_ms(void)
{
	const char *e = getenv("MSB_STOP_TIMEOUT");
	long v = e ? strtol(e, NULL, 10) : 0;
	return (int)(((v > 0 && v < 86400 ? v : 300) + 60) * 1000);
}

int msb_project_start_detached(const struct msb_project *p, const char *msb_exe, const char *name,
			       struct msb_err *err)
{
	char *const argv[] = {(char *)msb_exe, "run", (char *)name, "-d", "-f",
			      p->config_path,  NULL};
	posix_spawn_file_actions_t fa;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawn(&pid, msb_exe, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		errno = rc;
		return msb_err_sys(err, "starting %s", msb_exe);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return msb_err_sys(err, "waiting for the start of '%s'", name);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		return msb_err_set(err, MSB_EK_STATE, 0,
				   "sandbox '%s' did not start (exit status %d, its message is "
				   "above); see `msb log %s`",
				   name, WEXITSTATUS(status), name);
	return msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' did not start (signal %d)", name,
			   WTERMSIG(status));
}

static bool same_process(pid_t pid, uint64_t start)
{
	uint64_t t;
	return pid > 0 && msb_proc_start_time(pid, &t) == 0 && t == start;
}

/* Wait until the process is gone (or replaced); false at the deadline. */
static bool wait_gone(pid_t pid, uint64_t start, int timeout_ms)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (!same_process(pid, start))
			return true;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= timeout_ms)
			return false;
		struct timespec d = {0, 100 * 1000 * 1000};
		nanosleep(&d, NULL);
	}
}

int msb_project_stop(const struct msb_project *p, struct msb_state *st, const char *name,
		     int timeout_ms, bool *was_running, struct msb_err *err)
{
	if (was_running)
		*was_running = false;
	struct msb_state_row row;
	bool found;
	if (msb_state_get(st, name, p->config_name, &row, &found, err) < 0)
		return -1;
	if (!found)
		return 0;
	int rc = 0;
	if (!msb_state_row_alive(&row)) {
		if (row.status == MSB_STATUS_RUNNING)
			rc = msb_state_set_stopped(st, name, p->config_name, err);
		msb_state_row_clear(&row);
		return rc;
	}
	if (was_running)
		*was_running = true;
	pid_t sup = row.supervisor_pid, vm = row.microvm_pid;
	uint64_t sup_start = row.supervisor_start, vm_start = row.microvm_start;
	msb_state_row_clear(&row);
	if (kill(sup, SIGTERM) < 0 && errno != ESRCH)
		return msb_err_sys(err, "stopping sandbox '%s' (pid %d)", name, (int)sup);
	if (wait_gone(sup, sup_start, timeout_ms)) {
		/* The supervisor marks its row STOPPED on its way out; one that died
		 * before it could has left it RUNNING. */
		if (msb_state_get(st, name, p->config_name, &row, &found, err) < 0)
			return -1;
		bool same = found && row.status == MSB_STATUS_RUNNING &&
			    row.supervisor_pid == sup && row.supervisor_start == sup_start;
		if (found)
			msb_state_row_clear(&row);
		return same ? msb_state_set_stopped(st, name, p->config_name, err) : 0;
	}
	/* A second signal makes the supervisor kill the VM at once. */
	if (same_process(sup, sup_start))
		kill(sup, SIGTERM);
	if (!wait_gone(sup, sup_start, 5000)) {
		if (same_process(vm, vm_start))
			kill(vm, SIGKILL);
		if (same_process(sup, sup_start))
			kill(sup, SIGKILL);
		wait_gone(sup, sup_start, 5000);
	}
	struct msb_err e2 = {0};
	if (msb_state_set_stopped(st, name, p->config_name, &e2) < 0)
		return msb_err_set(err, e2.kind, e2.errnum, "%s", e2.msg);
	return msb_err_set(err, MSB_EK_TIMEOUT, 0,
			   "sandbox '%s' did not power off in order within %d s and was killed; "
			   "raise MSB_STOP_TIMEOUT if its guest needs longer",
			   name, timeout_ms / 1000);
}
