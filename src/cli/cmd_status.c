/* msb status|ps|stat [NAMES...]: which sandboxes of the project run, checked
 * against the processes (a crashed VM shows as stopped, and its row is
 * corrected), with pids, resources, uptime and usage. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "cli/cli.h"
#include "cli/project_cli.h"
#include "project/lifecycle.h"
#include "common/log.h"
#include "project/menv.h"

int cmd_status(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb status [NAME...] [-f PATH] [-w]\n"
		     "       msb ps | stat ...\n\n"
		     "Show the sandboxes of the project (the named ones, else all): whether they\n"
		     "run (checked against the processes: a sandbox whose VM died shows as\n"
		     "stopped and its record is corrected), the msb-vmm pid, CPUs and memory,\n"
		     "uptime, CPU and memory use in the guest (asked from its agent over 250 ms;\n"
		     "CPU%% is 100 per busy vCPU; \"-\" when it does not answer within 5 s), and\n"
		     "the disk space its writable layer takes on the host.\n\n"
		     "Options:\n" PCLI_OPTS_HELP
		     "  -w, --watch      show it again every 2 s until interrupted\n");
}

enum { C_NAME, C_STATUS, C_PID, C_CPUS, C_MEM, C_UP, C_CPU, C_MUSE, C_DISK, NCOL };
static const char *const headers[NCOL] = {"NAME",   "STATUS", "PID",	 "CPUS", "MEMORY",
					  "UPTIME", "CPU%",   "MEM USE", "DISK"};

struct table {
	char (*cells)[NCOL][48];
	size_t n, cap;
};

static char (*add_row(struct table *t))[48]
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		void *p = realloc(t->cells, cap * sizeof(*t->cells));
		if (!p)
			return NULL;
		t->cells = p;
		t->cap = cap;
	}
	return t->cells[t->n++];
}

/* Ask the sandbox's agent for CPU and memory use (over 250 ms).  In a child
 * process with a deadline: a guest that does not answer (PVM under load, a
 * hung kernel) must not hang `msb status`. */
static bool sample(const char *sock, struct agent_metrics *out)
{
	int fds[2];
	if (!sock || !sock[0] || pipe2(fds, O_CLOEXEC) < 0)
		return false;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return false;
	}
	if (pid == 0) {
		close(fds[0]);
		struct msb_err err = {0};
		struct agent_client *c = agent_client_open(sock, 3000, &err);
		struct agent_metrics m;
		if (c && agent_metrics(c, 250, &m, &err) == 0 &&
		    write(fds[1], &m, sizeof(m)) != (ssize_t)sizeof(m))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
	bool ok = false;
	int r;
	while ((r = poll(&pfd, 1, 5000)) < 0 && errno == EINTR)
		;
	if (r == 1 && read(fds[0], out, sizeof(*out)) == (ssize_t)sizeof(*out))
		ok = true;
	close(fds[0]);
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return ok;
}

static void fill_row(struct pcli *c, char (*r)[48], const char *name, const struct msb_sandbox *sb,
		     const struct msb_state_row *row)
{
	bool alive = row && msb_state_row_alive(row);
	snprintf(r[C_NAME], 48, "%s", name);
	snprintf(r[C_STATUS], 48, "%s%s", alive ? "running" : "stopped", sb ? "" : " (removed)");
	if (alive)
		snprintf(r[C_PID], 48, "%d", (int)row->microvm_pid);
	else
		snprintf(r[C_PID], 48, "-");
	if (sb) {
		snprintf(r[C_CPUS], 48, "%u", sb->cpus ? sb->cpus : MSB_DEFAULT_CPUS);
		snprintf(r[C_MEM], 48, "%u MiB",
			 sb->memory_mib ? sb->memory_mib : MSB_DEFAULT_MEMORY);
	} else {
		snprintf(r[C_CPUS], 48, "-");
		snprintf(r[C_MEM], 48, "-");
	}
	pcli_duration(r[C_UP], 48,
		      alive ? msb_proc_uptime_s(row->microvm_pid > 0 ? row->microvm_start
								     : row->supervisor_start)
			    : -1);
	snprintf(r[C_CPU], 48, "-");
	snprintf(r[C_MUSE], 48, "-");
	struct msb_metrics m;
	bool found = false;
	struct msb_err err = {0};
	struct agent_metrics am;
	if (alive && sample(row->agent_socket, &am)) {
		/* Recorded for whoever reads the DB (the server's metrics). */
		m = (struct msb_metrics){.cpu_percent = am.cpu_x100 / 100.0,
					 .memory_bytes = (int64_t)am.mem_used,
					 .disk_bytes = (int64_t)am.disk_used,
					 .at = time(NULL)};
		if (msb_state_add_metrics(c->st, name, c->p.config_name, &m, &err) < 0)
			msb_debug("%s", err.msg);
	}
	/* Only figures sampled during this run, and recent ones. */
	if (alive &&
	    msb_state_latest_metrics(c->st, name, c->p.config_name, &m, &found, &err) == 0 &&
	    found && m.at >= row->modified_at && time(NULL) - m.at <= 60) {
		if (m.cpu_percent >= 0)
			snprintf(r[C_CPU], 48, "%.1f", m.cpu_percent);
		if (m.memory_bytes >= 0)
			pcli_bytes(r[C_MUSE], 48, (uint64_t)m.memory_bytes);
	}
	char *rw = msb_project_rw_dir(&c->p, name);
	uint64_t bytes;
	if (rw && msb_tree_usage(rw, &bytes) == 0)
		pcli_bytes(r[C_DISK], 48, bytes);
	else
		snprintf(r[C_DISK], 48, "-");
	free(rw);
}

/* One table (rows that were wrongly RUNNING are named and corrected first). */
static int show(struct pcli *c, char **names, size_t n)
{
	int rc = 0;
	struct msb_err err = {0};
	struct msb_state_row *rows = NULL;
	size_t nrows = 0;
	struct table t = {0};
	if ((!c->st && msb_project_state(&c->p, &c->st, &err) < 0) ||
	    msb_state_list(c->st, c->p.config_name, &rows, &nrows, &err) < 0) {
		rc = cli_fail(c->cmd, &err);
		goto out;
	}
	for (size_t i = 0; i < nrows; i++) {
		if (rows[i].status != MSB_STATUS_RUNNING || msb_state_row_alive(&rows[i]))
			continue;
		fprintf(stderr,
			"msb status: sandbox '%s' was recorded as running, but its processes are "
			"gone (crashed or killed); it is recorded as stopped now\n",
			rows[i].name);
		if (msb_state_set_stopped(c->st, rows[i].name, c->p.config_name, &err) < 0) {
			rc = cli_fail(c->cmd, &err);
			goto out;
		}
		rows[i].status = MSB_STATUS_STOPPED;
	}
	if ((rc = pcli_check_names(c, names, n, true)) != 0)
		goto out;
	for (size_t i = 0; i < c->sf->nsandboxes; i++) {
		const struct msb_sandbox *sb = &c->sf->sandboxes[i];
		if (!pcli_named(names, n, sb->name))
			continue;
		const struct msb_state_row *row = NULL;
		for (size_t j = 0; j < nrows; j++)
			if (strcmp(rows[j].name, sb->name) == 0)
				row = &rows[j];
		char(*r)[48] = add_row(&t);
		if (!r)
			goto oom;
		fill_row(c, r, sb->name, sb, row);
	}
	/* Sandboxes removed from the file that still have state. */
	for (size_t j = 0; j < nrows; j++) {
		if (msb_sandboxfile_find(c->sf, rows[j].name) ||
		    !pcli_named(names, n, rows[j].name))
			continue;
		char(*r)[48] = add_row(&t);
		if (!r)
			goto oom;
		fill_row(c, r, rows[j].name, NULL, &rows[j]);
	}
	if (t.n == 0) {
		printf("No sandboxes in %s; add one with `msb add NAME -i IMAGE`.\n",
		       c->p.config_path);
		goto out;
	}
	size_t w[NCOL];
	for (int j = 0; j < NCOL; j++) {
		w[j] = strlen(headers[j]);
		for (size_t i = 0; i < t.n; i++)
			if (strlen(t.cells[i][j]) > w[j])
				w[j] = strlen(t.cells[i][j]);
	}
	for (int j = 0; j < NCOL; j++)
		printf(j + 1 < NCOL ? "%-*s  " : "%-*s\n", j + 1 < NCOL ? (int)w[j] : 0,
		       headers[j]);
	for (size_t i = 0; i < t.n; i++)
		for (int j = 0; j < NCOL; j++)
			printf(j + 1 < NCOL ? "%-*s  " : "%-*s\n", j + 1 < NCOL ? (int)w[j] : 0,
			       t.cells[i][j]);
	goto out;
oom:
	msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	rc = cli_fail(c->cmd, &err);
out:
	free(t.cells);
	msb_state_rows_free(rows, nrows);
	return rc;
}

int cmd_status(int argc, char **argv)
{
	const char *cmd = "status";
	static const struct option opts[] = {
		PCLI_LONG_OPTS, {"watch", no_argument, NULL, 'w'}, {0}};
	struct pcli c = {.cmd = cmd};
	bool watch = false;
	int o;
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":" PCLI_SHORT_OPTS "w", opts, NULL)) != -1) {
		switch (o) {
			PCLI_CASES(c, cmd, usage);
		case 'w':
			watch = true;
			break;
		default:
			return cli_bad_option(cmd, o, argv);
		}
	}
	char **names = argv + optind;
	size_t n = (size_t)(argc - optind);
	/* Not pcli_open(.., true): rows that were wrongly RUNNING are named here. */
	int rc = pcli_open(&c, false);
	if (rc)
		return rc;
	if (!watch) {
		rc = show(&c, names, n);
	} else {
		/* Until interrupted: the default SIGINT ends the process. */
		for (;;) {
			printf("\033[H\033[2J");
			if ((rc = show(&c, names, n)) != 0)
				break;
			printf("\n(every 2 s; Ctrl-C to stop)\n");
			fflush(stdout);
			sleep(2);
		}
	}
	pcli_close(&c);
	return rc;
}
