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

int cmd_up(int argc, char **argv)
{
	const char *cmd = "up";
	struct pcli c = {.cmd = cmd};
	int rc = pcli_lifecycle_opts(&c, argc, argv, NULL, usage);
	if (rc != PCLI_GO)
		return rc;
	char **names = argv + optind;
	size_t n = (size_t)(argc - optind);
	if ((rc = pcli_open_locked(&c)) != 0)
		return rc;
	const struct msb_sandbox **order = NULL;
	size_t norder = 0;
	struct msb_err err = {0};
	_cleanup_free_ char *exe = NULL;
	if ((rc = pcli_check_names(&c, names, n, false)) != 0)
		goto out;
	if (msb_sandboxfile_start_order(c.sf, (const char *const *)names, n, &order, &norder,
					&err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	if (!(exe = pcli_self_exe(&c, &rc)))
		goto out;
	if (norder == 0)
		printf("No sandboxes in %s; add one with `msb add NAME -i IMAGE`.\n",
		       c.p.config_path);
	for (size_t i = 0; i < norder; i++) {
		bool alive = false;
		int pid = 0;
		if ((rc = pcli_running(&c, order[i]->name, &alive, &pid)) != 0)
			goto out;
		if (alive)
			printf("Sandbox '%s' is already running (msb-vmm pid %d)\n", order[i]->name,
			       pid);
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
