/* msb-agent: a small host tool over the agent client library.
 *
 *   msb-agent --vsock PATH exec [--env K=V]... [--cwd D] [--timeout S] -- CMD ARGS...
 *   msb-agent --vsock PATH wait-ready [--timeout S]
 *   msb-agent --vsock PATH shutdown [--timeout S]
 *   msb-agent --vsock PATH setup [--root DEV] [--root-fstype T] [--overlay tmpfs|DEV]
 *             [--hostname NAME] [--clock now|NS] [--entropy N] [--machine-id HEX|random]
 *             [--timeout S]
 *
 * --connect-timeout S right after PATH bounds connecting and HELLO (default 60 s).
 *
 * exec forwards stdin/stdout/stderr and exits with the command's status
 * (128 + signal when signalled); a failure of the tool itself exits with the
 * error kind's status (docs/errors.md) and a message on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "agent/main_repl.h"
#include "agent/files_tool.h"
#include "agent/proto.h"
#include "common/log.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: msb-agent --vsock PATH [--connect-timeout S] COMMAND...  (default 60 s)\n"
		"       msb-agent --vsock PATH exec [--env K=V]... [--cwd DIR] [--timeout SECONDS]"
		" [--no-stdin] -- CMD [ARGS...]\n"
		"       msb-agent --vsock PATH wait-ready [--timeout SECONDS]\n"
		"       msb-agent --vsock PATH shutdown [--timeout SECONDS]\n"
		"       msb-agent --vsock PATH setup [--root DEV] [--root-fstype erofs|ext4]"
		" [--overlay tmpfs|DEV] [--hostname NAME] [--clock now|NS] [--entropy BYTES]"
		" [--machine-id HEX|random] [--timeout SECONDS]\n");
	agent_files_tool_usage(stderr);
	agent_repl_tool_usage(stderr);
}

static void notice(void *ctx, const char *msg)
{
	fprintf(stderr, "msb-agent: agent reports: %s\n", msg);
}

static int fail(const struct msb_err *err)
{
	fprintf(stderr, "msb-agent: %s\n", err->msg);
	return msb_err_exit_code(err->kind);
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < 0 || v > 1e7)
		return -1;
	*out = v;
	return 0;
}

/* Connecting and HELLO: generous, guest kernel work is slow on some hosts. */
static int connect_timeout_ms = 60000;

static int cmd_exec(const char *vsock, int argc, char **argv)
{
	struct msb_err err = {0};
	const char **env = calloc((size_t)argc + 1, sizeof(*env));
	size_t nenv = 0;
	const char *cwd = NULL;
	double timeout = 0;
	bool no_stdin = false;
	int i;
	if (!env)
		return 1;
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (strcmp(argv[i], "--env") == 0 && i + 1 < argc) {
			env[nenv++] = argv[++i];
		} else if (strcmp(argv[i], "--cwd") == 0 && i + 1 < argc) {
			cwd = argv[++i];
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc &&
			   parse_seconds(argv[i + 1], &timeout) == 0) {
			i++;
		} else if (strcmp(argv[i], "--no-stdin") == 0) {
			no_stdin = true;
		} else {
			break;
		}
	}
	if (i >= argc) {
		usage();
		free(env);
		return 2;
	}
	struct agent_client *c = agent_client_open(vsock, connect_timeout_ms, &err);
	if (!c) {
		free(env);
		return fail(&err);
	}
	agent_client_on_notice(c, notice, NULL);
	struct agent_exec_opts o = {
		.argv = (const char *const *)argv + i,
		.env = env,
		.cwd = cwd,
		.timeout_ms = (uint64_t)(timeout * 1000),
		.stdin_fd = no_stdin ? -1 : 0,
		.stdout_fd = 1,
		.stderr_fd = 2,
	};
	struct agent_exec_status st;
	int rc = agent_exec(c, &o, &st, &err);
	agent_client_free(c);
	free(env);
	if (rc < 0)
		return fail(&err);
	if (st.timed_out)
		fprintf(stderr, "msb-agent: the command timed out after %g s and was killed\n",
			timeout);
	if (st.oom_killed)
		fprintf(stderr, "msb-agent: the guest ran out of memory and its memory guard "
				"killed the command\n");
	return agent_exec_status_code(&st);
}

static int cmd_wait_ready(const char *vsock, double timeout)
{
	struct timespec start, now, pause = {0, 50 * 1000 * 1000};
	struct msb_err err = {0};
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		double spent = (double)(now.tv_sec - start.tv_sec) +
			       (double)(now.tv_nsec - start.tv_nsec) / 1e9;
		int left = (int)((timeout - spent) * 1000);
		if (left <= 0) {
			msb_err_wrap(&err, "the agent was not ready within %g s", timeout);
			err.kind = MSB_EK_TIMEOUT;
			return fail(&err);
		}
		struct agent_client *c = agent_client_open(vsock, left, &err);
		if (c) {
			printf("ready %s\n", agent_client_hostname(c));
			agent_client_free(c);
			return 0;
		}
		nanosleep(&pause, NULL);
	}
}

static int cmd_shutdown(const char *vsock, double timeout)
{
	struct msb_err err = {0};
	struct agent_client *c = agent_client_open(vsock, connect_timeout_ms, &err);
	if (!c)
		return fail(&err);
	int rc = agent_client_shutdown(c, (int)(timeout * 1000), &err);
	agent_client_free(c);
	return rc < 0 ? fail(&err) : 0;
}

/* `bytes` fresh random bytes from the host's kernel. */
static int host_random(void *buf, size_t bytes, struct msb_err *err)
{
	for (size_t got = 0; got < bytes;) {
		ssize_t n = getrandom((char *)buf + got, bytes - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return msb_err_sys(err, "getrandom");
		got += (size_t)n;
	}
	return 0;
}

static int cmd_setup(const char *vsock, int argc, char **argv)
{
	struct msb_err err = {0};
	struct agent_setup_opts o = {0};
	uint8_t entropy[AGENT_ENTROPY_MAX];
	char machine_id[33];
	double timeout = 120;
	for (int i = 0; i < argc; i++) {
		const char *opt = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			goto usage;
		i++;
		if (strcmp(opt, "--root") == 0) {
			o.root_dev = v;
		} else if (strcmp(opt, "--root-fstype") == 0) {
			o.root_fstype = v;
		} else if (strcmp(opt, "--overlay") == 0) {
			o.overlay = v;
		} else if (strcmp(opt, "--hostname") == 0) {
			o.hostname = v;
		} else if (strcmp(opt, "--clock") == 0) {
			char *end;
			if (strcmp(v, "now") == 0) {
				o.clock_now = true;
			} else {
				errno = 0;
				o.realtime_ns = strtoull(v, &end, 10);
				if (errno || end == v || *end || !o.realtime_ns)
					goto usage;
			}
		} else if (strcmp(opt, "--entropy") == 0) {
			char *end;
			unsigned long n = strtoul(v, &end, 10);
			if (end == v || *end || n < AGENT_ENTROPY_MIN || n > AGENT_ENTROPY_MAX) {
				fprintf(stderr, "msb-agent: --entropy takes %d to %d (bytes)\n",
					AGENT_ENTROPY_MIN, AGENT_ENTROPY_MAX);
				return 2;
			}
			if (host_random(entropy, n, &err) < 0)
				return fail(&err);
			o.entropy = entropy;
			o.entropy_len = n;
		} else if (strcmp(opt, "--machine-id") == 0) {
			if (strcmp(v, "random") == 0) {
				uint8_t b[16];
				if (host_random(b, sizeof(b), &err) < 0)
					return fail(&err);
				for (size_t k = 0; k < sizeof(b); k++)
					snprintf(machine_id + 2 * k, 3, "%02x", b[k]);
				v = machine_id;
			}
			o.machine_id = v;
		} else if (strcmp(opt, "--timeout") == 0) {
			if (parse_seconds(v, &timeout) < 0 || timeout < 0.001)
				goto usage;
		} else {
			goto usage;
		}
	}
	o.timeout_ms = (int)(timeout * 1000);
	struct agent_client *c = agent_client_open(vsock, connect_timeout_ms, &err);
	if (!c)
		return fail(&err);
	agent_client_on_notice(c, notice, NULL);
	int rc = agent_setup(c, &o, &err);
	explicit_bzero(entropy, sizeof(entropy));
	agent_client_free(c);
	return rc < 0 ? fail(&err) : 0;
usage:
	usage();
	return 2;
}

int main(int argc, char **argv)
{
	msb_log_init("msb-agent");
	if (argc < 4 || strcmp(argv[1], "--vsock") != 0) {
		usage();
		return 2;
	}
	if (strcmp(argv[3], "--connect-timeout") == 0) {
		double s;
		if (argc < 6 || parse_seconds(argv[4], &s) < 0) {
			usage();
			return 2;
		}
		connect_timeout_ms = (int)(s * 1000);
		argv[4] = argv[2];
		argv[3] = argv[1];
		argv += 2;
		argc -= 2;
	}
	const char *vsock = argv[2], *cmd = argv[3];
	if (agent_files_tool_has(cmd))
		return agent_files_tool(vsock, connect_timeout_ms, argc - 3, argv + 3);
	if (agent_repl_tool_has(cmd))
		return agent_repl_tool(vsock, connect_timeout_ms, argc - 3, argv + 3);
	if (strcmp(cmd, "exec") == 0)
		return cmd_exec(vsock, argc - 4, argv + 4);
	if (strcmp(cmd, "setup") == 0)
		return cmd_setup(vsock, argc - 4, argv + 4);
	double timeout = 30;
	if (argc == 6 && strcmp(argv[4], "--timeout") == 0) {
		if (parse_seconds(argv[5], &timeout) < 0) {
			usage();
			return 2;
		}
	} else if (argc != 4) {
		usage();
		return 2;
	}
	if (strcmp(cmd, "wait-ready") == 0)
		return cmd_wait_ready(vsock, timeout);
	if (strcmp(cmd, "shutdown") == 0)
		return cmd_shutdown(vsock, timeout);
	usage();
	return 2;
}
