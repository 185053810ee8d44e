/* msb remove|rm NAMES... [-f PATH]: delete sandboxes from the Sandboxfile,
 * leaving the rest of the file (comments, order, blank lines) as it was. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "cli/project_cli.h"
#include "project/edit.h"
#include "project/project.h"

int cmd_remove(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb remove NAME... [-f PATH]\n"
		     "       msb rm NAME...\n\n"
		     "Remove sandboxes from the Sandboxfile.  Every other line of the file stays\n"
		     "as it was.  All names must exist, or nothing is changed.  A sandbox's state\n"
		     "in .menv/ is kept; `msb clean NAME` removes it.\n\n"
		     "Options:\n" PCLI_OPTS_HELP
		     "  -s, --sandbox    the names are sandboxes (the default)\n");
}

int cmd_remove(int argc, char **argv)
{
	static const struct option opts[] = {PCLI_LONG_OPTS, {0}};
	const char *cmd = argv[0];
	struct pcli pc = {.cmd = cmd};
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":" PCLI_SHORT_OPTS, opts, NULL)) != -1) {
		switch (c) {
			PCLI_CASES(pc, cmd, usage);
		default:
			return cli_bad_option(cmd, c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "name the sandboxes to remove, e.g. msb %s web", cmd);
	struct msb_err err = {0};
	struct msb_project p;
	if (msb_project_resolve(pc.file, false, &p, &err) < 0)
		return cli_fail(cmd, &err);
	const char *const *names = (const char *const *)argv + optind;
	size_t n = (size_t)(argc - optind);
	int rc = msb_sandboxfile_remove(p.config_path, names, n, &err);
	if (rc == 0)
		for (size_t i = 0; i < n; i++)
			printf("Removed sandbox %s from %s\n", names[i], p.config_path);
	msb_project_release(&p);
	return rc < 0 ? cli_fail(cmd, &err) : 0;
}
