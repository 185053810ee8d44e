/* msb-agent repl and pty:
 *
 *   msb-agent --vsock PATH repl LANGUAGE [--timeout S] [--cwd DIR] [--env K=V]... [--code CODE]
 *   msb-agent --vsock PATH pty [--env K=V]... [--cwd DIR] [--term T] -- CMD [ARGS...]
 *
 * repl runs CODE (or all of stdin) in the guest's persistent interpreter,
 * stdout and stderr as they come; exit 0 when it ran without error, 1 with
 * an exception (its text on stderr), 5 after a timeout; a failure to run at
 * all exits with the error kind's status (3: no such interpreter).
 * pty runs CMD on a pseudo-terminal with this terminal (docs/cli.md). */
#include "agent/main_repl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/client.h"
#include "common/cleanup.h"
#include "sandbox/tty.h"

bool agent_repl_tool_has(const char *cmd)
{
	return strcmp(cmd, "repl") == 0 || strcmp(cmd, "pty") == 0;
}

void agent_repl_tool_usage(FILE *out)
{
	fprintf(out, "       msb-agent --vsock PATH repl LANGUAGE [--timeout S] [--cwd DIR]"
		     " [--env K=V]... [--code CODE]  (else code from stdin)\n"
		     "       msb-agent --vsock PATH pty [--env K=V]... [--cwd DIR] [--term T]"
		     " -- CMD [ARGS...]\n");
}

static int fail(const struct msb_err *err)
{
	fprintf(stderr, "msb-agent: %s\n", err->msg);
	return msb_err_exit_code(err->kind);
}

static void to_fd(void *ctx, int stream, const void *data, size_t len)
{
	(void)ctx;
	const char *p = data;
	while (len) {
		ssize_t n = write(stream == 2 ? 2 : 1, p, len);
		if (n <= 0)
			return; /* our own stdout is gone: nothing to tell */
		p += n;
		len -= (size_t)n;
	}
}

static char *read_all(int fd)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	while (buf) {
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				break;
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n == 0) {
			buf[len] = '\0';
			return buf;
		}
		if (n < 0)
			break;
		len += (size_t)n;
	}
	free(buf);
	return NULL;
}

static int cmd_repl(const char *vsock, int connect_timeout_ms, int argc, char **argv)
{
	struct msb_err err = {0};
	if (argc < 2) {
		agent_repl_tool_usage(stderr);
		return 2;
	}
	struct agent_repl_opts o = {.language = argv[1], .on_output = to_fd};
	_cleanup_free_ const char **env = calloc((size_t)argc + 1, sizeof(*env));
	_cleanup_free_ char *code = NULL;
	size_t nenv = 0;
	double timeout = 0;
	if (!env)
		return 1;
	for (int i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			goto usage;
		const char *opt = argv[i], *v = argv[++i];
		char *end;
		if (strcmp(opt, "--code") == 0) {
			o.code = v;
		} else if (strcmp(opt, "--cwd") == 0) {
			o.cwd = v;
		} else if (strcmp(opt, "--env") == 0) {
			env[nenv++] = v;
		} else if (strcmp(opt, "--timeout") == 0) {
			timeout = strtod(v, &end);
			if (end == v || *end || timeout < 0 || timeout > 1e7)
				goto usage;
		} else {
			goto usage;
		}
	}
	o.env = nenv ? env : NULL;
	o.timeout_ms = (uint64_t)(timeout * 1000 + 0.5);
	if (!o.code) {
		code = read_all(0);
		if (!code) {
			fprintf(stderr, "msb-agent: reading the code from stdin failed\n");
			return 1;
		}
		o.code = code;
	}
	struct agent_client *c = agent_client_open(vsock, connect_timeout_ms, &err);
	if (!c)
		return fail(&err);
	struct agent_repl_result res;
	int rc = agent_repl_run_opts(c, &o, &res, &err);
	agent_client_free(c);
	if (rc < 0)
		return fail(&err);
	if (res.restarted)
		fprintf(stderr,
			"msb-agent: note: a fresh %s interpreter ran this (the earlier one "
			"had ended; its state is gone)\n",
			o.language);
	rc = res.status == AGENT_REPL_RESULT_OK	       ? 0
	     : res.status == AGENT_REPL_RESULT_TIMEOUT ? msb_err_exit_code(MSB_EK_TIMEOUT)
						       : 1;
	if (rc)
		fprintf(stderr, "msb-agent: %s\n", res.message ? res.message : "the run failed");
	agent_repl_result_release(&res);
	return rc;
usage:
	agent_repl_tool_usage(stderr);
	return 2;
}

static int cmd_pty(const char *vsock, int connect_timeout_ms, int argc, char **argv)
{
	struct msb_err err = {0};
	_cleanup_free_ const char **env = calloc((size_t)argc + 1, sizeof(*env));
	size_t nenv = 0;
	struct agent_exec_opts o = {0};
	int i;
	if (!env)
		return 1;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			goto usage;
		if (strcmp(argv[i], "--env") == 0)
			env[nenv++] = argv[++i];
		else if (strcmp(argv[i], "--cwd") == 0)
			o.cwd = argv[++i];
		else if (strcmp(argv[i], "--term") == 0)
			o.term = argv[++i];
		else
			goto usage;
	}
	if (i >= argc)
		goto usage;
	o.argv = (const char *const *)argv + i;
	o.env = env;
	struct agent_client *c = agent_client_open(vsock, connect_timeout_ms, &err);
	if (!c)
		return fail(&err);
	int code = 0;
	int rc = tty_session_run(c, &o, NULL, &code, &err);
	agent_client_free(c);
	return rc < 0 ? fail(&err) : code;
usage:
	agent_repl_tool_usage(stderr);
	return 2;
}

int agent_repl_tool(const char *vsock, int connect_timeout_ms, int argc, char **argv)
{
	if (strcmp(argv[0], "repl") == 0)
		return cmd_repl(vsock, connect_timeout_ms, argc, argv);
	return cmd_pty(vsock, connect_timeout_ms, argc, argv);
}
