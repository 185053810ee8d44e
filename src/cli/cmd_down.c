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

static bool named(char **names, size_t n, const char *name)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

int cmd_down(int argc, char **argv)
{
	const char *cmd = "down";
	static const struct option opts[] = {
		PCLI_LONG_OPTS,
		{"timeout", required_argument, NULL, 't'},
		{0},
	};
	struct pcli c = {.cmd = cmd};
	int timeout_ms = msb_stop_timeout_ms();
	int o;
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":" PCLI_SHORT_OPTS "t:", opts, NULL)) != -1) {
		switch (o) {
			PCLI_CASES(c, cmd, usage);
		case 't': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end || v < 1 || v > 86400)
				return cli_usage_error(cmd,
						       "--timeout takes whole seconds (1..86400), "
						       "not '%s'",
						       optarg);
			timeout_ms = (int)v * 1000;
			break;
		}
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
		if (msb_sandboxfile_find(c.sf, rows[i].name) || !named(names, n, rows[i].name) ||
		    !msb_state_row_alive(&rows[i]))
			continue;
		int r = pcli_stop(&c, rows[i].name, timeout_ms);
		rc = rc ? rc : r;
		stopped++;
	}
	for (size_t i = norder; i-- > 0;) {
		if (!named(names, n, order[i]->name))
			continue;
		struct msb_state_row row;
		bool found = false;
		if (msb_state_get(c.st, order[i]->name, c.p.config_name, &row, &found, &err) < 0) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
		bool alive = found && msb_state_row_alive(&row);
		if (found)
			msb_state_row_clear(&row);
		if (!alive) {
			if (n)
				printf("Sandbox '%s' is not running\n", order[i]->name);
			continue;
		}
		int r = pcli_stop(&c, order[i]->name, timeout_ms);
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
