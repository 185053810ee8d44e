/* msb snapshot create|ls|rm: user snapshots of running sandboxes (memory, device
 * state and the writable layer), restored by `msb fork` and
 * `msb exe --snapshot`. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "project/project.h"
#include "project/state.h"
#include "sandbox/snapshot.h"
#include "sandbox/usersnap.h"

int cmd_snapshot(int argc, char **argv);

static void snapshot_usage(FILE *out)
{
	fprintf(out,
		"Usage: msb snapshot create NAME --sandbox SANDBOX [-f DIR|FILE]\n"
		"       msb snapshot create NAME --pid MSB_VMM_PID\n"
		"       msb snapshot ls\n"
		"       msb snapshot rm NAME...\n"
		"       msb snapshot prune [--user] [--dry-run]\n\n"
		"Snapshot a running sandbox: its memory (every process keeps running), its\n"
		"devices and its writable layer (a reflink where the filesystem allows, else a\n"
		"sparse copy).  The sandbox stands still while its memory is written, then goes\n"
		"on.  Start copies of it with `msb fork NAME` or `msb exe --snapshot NAME`.\n\n"
		"  -s, --sandbox NAME   a sandbox of the project that `msb run` started\n"
		"  -f, --file PATH      the project directory, or the config file in it\n"
		"      --pid PID        the msb-vmm process of any sandbox (msb exe prints it at\n"
		"                       MSB_LOG=info)\n"
		"prune removes the base snapshots that can no longer be used (built from a\n"
		"kernel, initramfs or msb-vmm that changed since; msb also does this after it\n"
		"builds a new one), the warm snapshots of images (msb exe) whose base or root\n"
		"filesystem is gone or changed, and what interrupted builds left; running\n"
		"sandboxes are not disturbed.\n"
		"      --user           also remove user snapshots that cannot be restored\n"
		"                       (unreadable, or their image's root filesystem is gone)\n"
		"  -n, --dry-run        only say what would be removed\n"
		"Snapshots live in $MICROSANDBOX_HOME/snapshots/user/, base snapshots in\n"
		"$MICROSANDBOX_HOME/snapshots/base/ ($MSB_BASE_SNAPSHOTS), warm snapshots in\n"
		"$MICROSANDBOX_HOME/snapshots/warm/ ($MSB_WARM_SNAPSHOTS).\n");
}

/* The msb-vmm pid of project sandbox `name` from the state DB. */
static int project_vmm_pid(const char *file, const char *name, pid_t *pid, struct msb_err *err)
{
	struct msb_project p = {0};
	struct msb_state *st = NULL;
	struct msb_state_row row = {0};
	bool found = false;
	int rc = -1;
	if (msb_project_resolve(file, false, &p, err) < 0 || msb_project_state(&p, &st, err) < 0 ||
	    msb_state_get(st, name, p.config_name, &row, &found, err) < 0)
		goto out;
	if (!found || !msb_state_row_alive(&row) || row.microvm_pid <= 0) {
		msb_err_set(err, MSB_EK_STATE, 0,
			    "sandbox '%s' is not running; start it with `msb run -d %s`", name,
			    name);
		goto out;
	}
	*pid = row.microvm_pid;
	rc = 0;
out:
	msb_state_row_clear(&row);
	if (st)
		msb_state_close(st);
	msb_project_release(&p);
	return rc;
}

static int snapshot_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{"sandbox", required_argument, NULL, 's'},
		{"file", required_argument, NULL, 'f'},
		{"pid", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *sandbox = NULL, *file = NULL, *pid_s = NULL;
	int c, rc;
	optind = 0;
	while ((c = cli_getopt(argc, argv, ":s:f:h", opts, "snapshot", snapshot_usage, &rc)) >= 0) {
		if (c == 's')
			sandbox = optarg;
		else if (c == 'f')
			file = optarg;
		else if (c == 'p')
			pid_s = optarg;
	}
	if (c == CLI_OPT_DONE)
		return rc;
	if (optind + 1 != argc)
		return cli_usage_error("snapshot", "msb snapshot create takes one NAME");
	if (!sandbox == !pid_s)
		return cli_usage_error("snapshot",
				       "say which sandbox: --sandbox NAME or --pid PID");
	const char *name = argv[optind];
	struct msb_err err = {0};
	if (sandbox_snapshot_name_check(name, &err) < 0)
		return cli_fail("snapshot", &err);
	pid_t pid = 0;
	if (pid_s) {
		char *end = NULL;
		long v = strtol(pid_s, &end, 10);
		if (!*pid_s || *end || v <= 0 || v > 1 << 30)
			return cli_usage_error("snapshot", "--pid needs a process id, not '%s'",
					       pid_s);
		pid = (pid_t)v;
	} else if (project_vmm_pid(file, sandbox, &pid, &err) < 0) {
		return cli_fail("snapshot", &err);
	}
	struct sandbox_snapshot_info info;
	if (sandbox_snapshot_create(name, pid, sandbox, &info, &err) < 0)
		return cli_fail("snapshot", &err);
	printf("snapshot '%s' created: %u MiB of memory, writable layer: %s; the sandbox stood "
	       "still for %.1f s\n",
	       name, info.memory_mib, info.how, (double)info.paused_ms / 1000.0);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int snapshot_ls(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		snapshot_usage(stdout);
		return 0;
	}
	if (argc > 1)
		return cli_usage_error("snapshot", "msb snapshot ls takes no arguments");
	struct msb_err err = {0};
	_cleanup_free_ char *root = sandbox_user_root(&err);
	if (!root)
		return cli_fail("snapshot", &err);
	DIR *d = opendir(root);
	char **names = NULL;
	size_t n = 0;
	for (struct dirent *e; d && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue; /* ., .., and snapshots being made */
		char **nn = realloc(names, (n + 1) * sizeof(*names));
		if (!nn || !(nn[n] = strdup(e->d_name))) {
			names = nn ? nn : names;
			break;
		}
		names = nn;
		n++;
	}
	if (d)
		closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	printf("%-20s %-32s %-12s %5s %7s %-3s %s\n", "NAME", "IMAGE", "SOURCE", "CPUS", "MEMORY",
	       "RW", "CREATED");
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *dir = NULL;
		struct sandbox_snapmeta m = {0};
		struct msb_err e2 = {0};
		if (sandbox_user_snapshot_open(names[i], &dir, &m, &e2) < 0)
			printf("%-20s (unreadable: %s)\n", names[i], e2.msg);
		else
			printf("%-20s %-32s %-12s %5u %6uM %-3s %s\n", names[i],
			       m.image ? m.image : "-", m.source ? m.source : "-", m.cpus,
			       m.memory_mib, m.rw ? "yes" : "no", m.created ? m.created : "-");
		sandbox_snapmeta_clear(&m);
		free(names[i]);
	}
	free(names);
	return 0;
}

static int snapshot_rm(int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("snapshot", "msb snapshot rm needs at least one NAME");
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		struct msb_err err = {0};
		if (sandbox_snapshot_remove(argv[i], &err) < 0)
			rc = cli_fail("snapshot", &err);
		else
			printf("snapshot '%s' removed\n", argv[i]);
	}
	return rc;
}

static void print_mib(uint64_t bytes)
{
	printf("%.1f MiB", (double)bytes / (1 << 20));
}

struct prune_out {
	bool dry_run;
};

static void prune_report(void *ctx, const char *kind, const char *name, const char *why,
			 uint64_t bytes)
{
	const struct prune_out *po = ctx;
	printf("%s %s snapshot %s (%s): ", po->dry_run ? "would remove" : "removed", kind, name,
	       why);
	print_mib(bytes);
	printf("\n");
}

static int snapshot_prune(int argc, char **argv)
{
	static const struct option opts[] = {
		{"user", no_argument, NULL, 'u'},
		{"dry-run", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct prune_out po = {0};
	struct sandbox_prune_opts o = {.report = prune_report, .ctx = &po};
	int c, rc;
	optind = 0;
	while ((c = cli_getopt(argc, argv, ":nh", opts, "snapshot", snapshot_usage, &rc)) >= 0) {
		if (c == 'u')
			o.user = true;
		else if (c == 'n')
			o.dry_run = po.dry_run = true;
	}
	if (c == CLI_OPT_DONE)
		return rc;
	if (optind != argc)
		return cli_usage_error("snapshot", "msb snapshot prune takes no NAME");
	/* The current kernel, initramfs and msb-vmm: bases made before bases carried
	 * a record of what they were built from are judged against them. */
	struct sandbox_parts parts;
	struct msb_err err = {0};
	bool have_parts = sandbox_find_parts(NULL, &parts, &err) == 0;
	if (!have_parts)
		msb_debug("no current parts (%s): older bases without a record are kept", err.msg);
	o.parts = have_parts ? &parts : NULL;
	struct sandbox_prune_totals t;
	msb_err_clear(&err);
	int r = sandbox_snapshot_prune(&o, &t, &err);
	if (have_parts)
		sandbox_parts_clear(&parts);
	if (r < 0)
		return cli_fail("snapshot", &err);
	printf("%s %u snapshot%s, ", o.dry_run ? "would remove" : "removed", t.removed,
	       t.removed == 1 ? "" : "s");
	print_mib(t.bytes);
	printf(" %s; kept %u base snapshot%s", o.dry_run ? "to free" : "freed", t.kept,
	       t.kept == 1 ? "" : "s");
	if (t.kept_warm)
		printf(", %u warm snapshot%s", t.kept_warm, t.kept_warm == 1 ? "" : "s");
	if (o.user)
		printf(" and %u user snapshot%s", t.kept_user, t.kept_user == 1 ? "" : "s");
	if (t.busy)
		printf(", skipped %u being built", t.busy);
	printf("\n");
	if (t.failed) {
		msb_err_set(&err, MSB_EK_SYSTEM, 0, "%u could not be removed (see above)",
			    t.failed);
		return cli_fail("snapshot", &err);
	}
	return 0;
}

int cmd_snapshot(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		snapshot_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *verb = argv[1];
	if (strcmp(verb, "create") == 0)
		return snapshot_create(argc - 1, argv + 1);
	if (strcmp(verb, "ls") == 0 || strcmp(verb, "list") == 0)
		return snapshot_ls(argc - 1, argv + 1);
	if (strcmp(verb, "rm") == 0 || strcmp(verb, "remove") == 0)
		return snapshot_rm(argc - 1, argv + 1);
	if (strcmp(verb, "prune") == 0)
		return snapshot_prune(argc - 1, argv + 1);
	return cli_usage_error("snapshot", "unknown subcommand '%s' (create, ls, rm, prune)", verb);
}
