/* msb down [NAMES...]: stop running sandboxes of the project in order, the
 * ones that others depend on last. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/project_cli.h"
#include "project/lifecycle.h"

int cmd_down(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb down [NAME...] [-f PATH] [-t SECONDS]\n\n"
		     "Stop the named sandboxes (all running ones of the project without names),\n"
		     "sandboxes before the ones they depend on.  Each guest is powered off in\n"
		     "order (it syncs and unmounts its writable layer), so what it wrote is kept.\n"
		     "Sandboxes no longer in the Sandboxfile that still run are stopped first.\n\n"
		     "Options:\n" PCLI_OPTS_HELP
		     "  -t, --timeout S  how long one ordered stop may take before the VM is\n"
		     "                   killed (default: $MSB_STOP_TIMEOUT + 60, i.e. 360)\n");
}

int cmd_down(int argc, char **argv)
{
	const char *cmd = "down";
	struct pcli c = {.cmd = cmd};
	int timeout_ms = msb_stop_timeout_ms();
	int rc = pcli_lifecycle_opts(&c, argc, argv, &timeout_ms, usage);
	if (rc != PCLI_GO)
		return rc;
	char **names = argv + optind;
	size_t n = (size_t)(argc - optind);
	if ((rc = pcli_open_locked(&c)) != 0)
		return rc;
	const struct msb_sandbox **order = NULL;
	size_t norder = 0;
	struct msb_state_row *rows = NULL;
	size_t nrows = 0;
	struct msb_err err = {0};
	if ((rc = pcli_check_names(&c, names, n, true)) != 0)
		goto out;
	if (msb_sandboxfile_start_order(c.sf, NULL, 0, &order, &norder, &err) < 0 ||
	    msb_state_list(c.st, c.p.config_name, &rows, &nrows, &err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	size_t stopped = 0;
	/* Running, but no longer configured: nothing can depend on them. */
	/* A sandbox that does not stop in time is killed and reported; the others
	 * are still stopped. */
	for (size_t i = 0; i < nrows; i++) {
		if (msb_sandboxfile_find(c.sf, rows[i].name) ||
		    !pcli_named(names, n, rows[i].name) || !msb_state_row_alive(&rows[i]))
			continue;
		int r = pcli_stop(&c, rows[i].name, timeout_ms);
		rc = rc ? rc : r;
		stopped++;
	}
	for (size_t i = norder; i-- > 0;) {
		if (!pcli_named(names, n, order[i]->name))
			continue;
		bool alive = false;
		int r = pcli_running(&c, order[i]->name, &alive, NULL);
		if (r) {
			rc = r;
			goto out;
		}
		if (!alive) {
			if (n)
				printf("Sandbox '%s' is not running\n", order[i]->name);
			continue;
		}
		r = pcli_stop(&c, order[i]->name, timeout_ms);
		rc = rc ? rc : r;
		stopped++;
	}
	if (rc == 0 && n == 0 && stopped == 0)
		printf("No sandbox of %s is running\n", c.p.config_path);
out:
	msb_state_rows_free(rows, nrows);
	free(order);
	pcli_close(&c);
	return rc;
}
