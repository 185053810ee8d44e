/* msb up [NAMES...]: start sandboxes of the project in the background, each
 * after the ones it depends on. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/project_cli.h"
#include "common/cleanup.h"
#include "project/lifecycle.h"

int cmd_up(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb up [NAME...] [-f PATH]\n\n"
		     "Start the named sandboxes (all of the Sandboxfile without names) in the\n"
		     "background, each after the sandboxes it depends on (depends_on), as\n"
		     "`msb run NAME -d` would.  Running ones are left alone.  Each runs its\n"
		     "start script, else its command, else its shell; its output goes to its\n"
		     "log (msb log NAME).  Stop them with `msb down`.\n\n"
		     "Options:\n" PCLI_OPTS_HELP
		     "  -d, --detach     accepted for upstream compatibility (always detached)\n");
}

/* Start one sandbox and record the hash of the config it was started with. */
int msb_cli_start_one(struct pcli *c, const char *exe, const struct msb_sandbox *sb,
		      const char *verb);

int msb_cli_start_one(struct pcli *c, const char *exe, const struct msb_sandbox *sb,
		      const char *verb)
{
	struct msb_err err = {0};
	fflush(stdout);
	if (msb_project_start_detached(&c->p, exe, sb->name, &err) < 0)
		return cli_fail(c->cmd, &err);
	char hash[MSB_CONFIG_HASH_LEN + 1];
	msb_sandbox_config_hash(sb, hash);
	if (msb_state_set_config_hash(c->st, sb->name, c->p.config_name, hash, &err) < 0)
		return cli_fail(c->cmd, &err);
	struct msb_state_row row;
	bool found = false;
	if (msb_state_get(c->st, sb->name, c->p.config_name, &row, &found, &err) == 0 && found) {
		printf("%s sandbox '%s' (msb-vmm pid %d)\n", verb, sb->name, (int)row.microvm_pid);
		msb_state_row_clear(&row);
	} else {
		printf("%s sandbox '%s'\n", verb, sb->name);
	}
	return 0;
}

int cmd_up(int argc, char **argv)
{
	const char *cmd = "up";
	static const struct option opts[] = {
		PCLI_LONG_OPTS,
		{"detach", no_argument, NULL, 'd'},
		{0},
	};
	struct pcli c = {.cmd = cmd};
	int o;
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":" PCLI_SHORT_OPTS "d", opts, NULL)) != -1) {
		switch (o) {
			PCLI_CASES(c, cmd, usage);
		case 'd':
			break;
		default:
			return cli_bad_option(cmd, o, argv);
		}
	}
	char **names = argv + optind;
	size_t n = (size_t)(argc - optind);
	int rc = pcli_open(&c, true);
	if (rc)
		return rc;
	if ((rc = pcli_lock(&c)) != 0) {
		pcli_close(&c);
		return rc;
	}
	const struct msb_sandbox **order = NULL;
	size_t norder = 0;
	struct msb_err err = {0};
	_cleanup_free_ char *exe = msb_self_exe();
	if ((rc = pcli_check_names(&c, names, n, false)) != 0)
		goto out;
	if (msb_sandboxfile_start_order(c.sf, (const char *const *)names, n, &order, &norder,
					&err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	if (!exe) {
		msb_err_set(&err, MSB_EK_SYSTEM, 0,
			    "cannot find the msb executable (/proc/self/exe)");
		rc = cli_fail(cmd, &err);
		goto out;
	}
	if (norder == 0)
		printf("No sandboxes in %s; add one with `msb add NAME -i IMAGE`.\n",
		       c.p.config_path);
	for (size_t i = 0; i < norder; i++) {
		struct msb_state_row row;
		bool found = false;
		if (msb_state_get(c.st, order[i]->name, c.p.config_name, &row, &found, &err) < 0) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
		bool alive = found && msb_state_row_alive(&row);
		if (alive)
			printf("Sandbox '%s' is already running (msb-vmm pid %d)\n", order[i]->name,
			       (int)row.microvm_pid);
		if (found)
			msb_state_row_clear(&row);
		if (!alive && ((rc = pcli_wait_deps(&c, order[i])) != 0 ||
			       (rc = pcli_start(&c, exe, order[i], "Started")) != 0)) {
			if (i > 0)
				fprintf(stderr,
					"msb up: the sandboxes started before '%s' keep running; "
					"`msb down` stops them\n",
					order[i]->name);
			goto out;
		}
	}
out:
	free(order);
	pcli_close(&c);
	return rc;
}
