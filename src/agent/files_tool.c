/* msb-agent's file and metrics subcommands (see usage below and
 * docs/agent-protocol.md, "msb-agent"). */
#include "agent/files_tool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/client.h"

static const char *const cmds[] = {"read", "write", "ls", "stat", "mkdir", "rm", "ln", "metrics"};

bool agent_files_tool_has(const char *cmd)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmd, cmds[i]) == 0)
			return true;
	return false;
}

void agent_files_tool_usage(FILE *out)
{
	fprintf(out, "       msb-agent --vsock PATH read GUEST_PATH             (to stdout)\n"
		     "       msb-agent --vsock PATH write [--mode OCTAL] [--parents] [--mtime S]"
		     " GUEST_PATH  (from stdin)\n"
		     "       msb-agent --vsock PATH ls GUEST_DIR\n"
		     "       msb-agent --vsock PATH stat [--follow] GUEST_PATH\n"
		     "       msb-agent --vsock PATH mkdir [-p] [--mode OCTAL] GUEST_DIR\n"
		     "       msb-agent --vsock PATH rm [-r] GUEST_PATH\n"
		     "       msb-agent --vsock PATH ln TARGET GUEST_PATH\n"
		     "       msb-agent --vsock PATH metrics [--interval MS]\n");
}

static int fail(const struct msb_err *err)
{
	fprintf(stderr, "msb-agent: %s\n", err->msg);
	return msb_err_exit_code(err->kind);
}

static int parse_mode(const char *s, int *mode)
{
	char *end;
	long v = strtol(s, &end, 8);
	if (end == s || *end || v < 0 || v > 07777)
		return -1;
	*mode = (int)v;
	return 0;
}

/* "TYPE MODE SIZE MTIME NAME[ -> LINK]", tab-separated. */
static void print_info(const struct agent_file_info *e)
{
	printf("%s\t%04o\t%llu\t%llu\t%s", agent_file_type_str(e->type), e->mode,
	       (unsigned long long)e->size, (unsigned long long)e->mtime, e->name);
	if (e->link)
		printf("\t-> %s", e->link);
	putchar('\n');
}

static void notice(void *ctx, const char *msg)
{
	fprintf(stderr, "msb-agent: agent reports: %s\n", msg);
}

int agent_files_tool(const char *vsock, int connect_timeout_ms, int argc, char **argv)
{
	const char *cmd = argv[0];
	int mode = -1;
	bool parents = false, recursive = false, follow = false;
	unsigned long interval = 0;
	unsigned long long mtime = 0;
	bool set_mtime = false;
	int i;
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		const char *o = argv[i];
		if (strcmp(o, "--") == 0) {
			i++;
			break;
		} else if (strcmp(o, "--mode") == 0 && i + 1 < argc &&
			   (!strcmp(cmd, "write") || !strcmp(cmd, "mkdir"))) {
			if (parse_mode(argv[++i], &mode) < 0)
				goto usage;
		} else if ((strcmp(o, "--parents") == 0 || strcmp(o, "-p") == 0) &&
			   (!strcmp(cmd, "write") || !strcmp(cmd, "mkdir"))) {
			parents = true;
		} else if ((strcmp(o, "-r") == 0 || strcmp(o, "--recursive") == 0) &&
			   !strcmp(cmd, "rm")) {
			recursive = true;
		} else if (strcmp(o, "--mtime") == 0 && i + 1 < argc && !strcmp(cmd, "write")) {
			char *end;
			mtime = strtoull(argv[++i], &end, 10);
			if (*end || !argv[i][0])
				goto usage;
			set_mtime = true;
		} else if (strcmp(o, "--follow") == 0 && !strcmp(cmd, "stat")) {
			follow = true;
		} else if (strcmp(o, "--interval") == 0 && i + 1 < argc &&
			   !strcmp(cmd, "metrics")) {
			char *end;
			interval = strtoul(argv[++i], &end, 10);
			if (*end || interval > AGENT_METRICS_MAX)
				goto usage;
		} else {
			goto usage;
		}
	}
	bool metrics = strcmp(cmd, "metrics") == 0, ln = strcmp(cmd, "ln") == 0;
	if (argc - i != (metrics ? 0 : ln ? 2 : 1))
		goto usage;
	const char *path = metrics ? NULL : argv[argc - 1];

	struct msb_err err = {0};
	struct agent_client *c = agent_client_open(vsock, connect_timeout_ms, &err);
	if (!c)
		return fail(&err);
	agent_client_on_notice(c, notice, NULL);
	int rc = 0, fd;
	if (strcmp(cmd, "read") == 0) {
		fd = 1;
		rc = agent_file_read(c, path, agent_sink_fd, &fd, NULL, &err);
	} else if (strcmp(cmd, "write") == 0) {
		fd = 0;
		struct agent_file_write_opts wo = {.path = path,
						   .mode = mode,
						   .parents = parents,
						   .set_mtime = set_mtime,
						   .mtime = mtime};
		rc = agent_file_write_opts(c, &wo, agent_source_fd, &fd, &err);
	} else if (ln) {
		rc = agent_file_symlink(c, argv[i], path, &err);
	} else if (strcmp(cmd, "ls") == 0) {
		struct agent_file_info *ents;
		size_t n;
		rc = agent_file_list(c, path, &ents, &n, &err);
		for (size_t k = 0; rc == 0 && k < n; k++)
			print_info(&ents[k]);
		if (rc == 0)
			agent_file_list_free(ents, n);
	} else if (strcmp(cmd, "stat") == 0) {
		struct agent_file_info e;
		rc = agent_file_stat(c, path, follow, &e, &err);
		if (rc == 0) {
			print_info(&e);
			agent_file_info_clear(&e);
		}
	} else if (strcmp(cmd, "mkdir") == 0) {
		rc = agent_file_mkdir(c, path, mode, parents, &err);
	} else if (strcmp(cmd, "rm") == 0) {
		rc = agent_file_remove(c, path, recursive, &err);
	} else {
		struct agent_metrics m;
		rc = agent_metrics(c, (uint32_t)interval, &m, &err);
		if (rc == 0)
			printf("{\"cpu_percent\": %.2f, \"ncpus\": %u, \"memory_total\": %llu, "
			       "\"memory_used\": %llu, \"disk_total\": %llu, \"disk_used\": %llu, "
			       "\"processes\": %u, \"uptime_ms\": %llu, \"interval_ms\": %u}\n",
			       m.cpu_x100 / 100.0, m.ncpus, (unsigned long long)m.mem_total,
			       (unsigned long long)m.mem_used, (unsigned long long)m.disk_total,
			       (unsigned long long)m.disk_used, m.procs,
			       (unsigned long long)m.uptime_ms, m.interval_ms);
	}
	agent_client_free(c);
	if (fflush(stdout) != 0 && rc == 0) {
		msb_err_sys(&err, "writing to stdout");
		rc = -1;
	}
	return rc < 0 ? fail(&err) : 0;
usage:
	fprintf(stderr, "usage:\n");
	agent_files_tool_usage(stderr);
	return 2;
}
