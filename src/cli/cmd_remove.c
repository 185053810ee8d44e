/* msb remove|rm NAMES... [-f PATH]: delete sandboxes from the Sandboxfile,
 * leaving the rest of the file (comments, order, blank lines) as it was. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "project/edit.h"
#include "project/project.h"

int cmd_remove(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb remove NAME... [-f DIR|FILE]\n"
		     "       msb rm NAME...\n\n"
		     "Remove sandboxes from the Sandboxfile.  Every other line of the file stays\n"
		     "as it was.  All names must exist, or nothing is changed.  A sandbox's state\n"
		     "in .menv/ is kept; `msb clean NAME` removes it.\n\n"
		     "Options:\n"
		     "  -f, --file PATH  the project directory, or the config file in it\n"
		     "  -s, --sandbox    the names are sandboxes (the default)\n"
		     "  -h, --help       show this help\n");
}

int cmd_remove(int argc, char **argv)
{
	static const struct option opts[] = {
		{"file", required_argument, NULL, 'f'},
		{"sandbox", no_argument, NULL, 's'},
		{"build", no_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *cmd = argv[0];
	const char *file = NULL;
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":f:sbh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			file = optarg;
			break;
		case 's':
			break;
		case 'b':
			return cli_usage_error(cmd, "builds are not supported yet; name sandboxes");
		case 'h':
			usage(stdout);
			return 0;
		default:
			return cli_bad_option(cmd, c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "name the sandboxes to remove, e.g. msb %s web", cmd);
	struct msb_err err = {0};
	struct msb_project p;
	if (msb_project_resolve(file, false, &p, &err) < 0)
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
