/* msb init [-f DIR|FILE] [DIR]: make a directory a project (idempotent). */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "project/project.h"

int cmd_init(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb init [-f DIR|FILE] [DIR]\n\n"
		     "Make a directory a microsandbox project: creates .menv/ (state database,\n"
		     "logs, each sandbox's writable layer), a Sandboxfile if there is none, and\n"
		     "adds .menv/ to .gitignore.  Running it again changes nothing.\n\n"
		     "Options:\n"
		     "  -f, --file PATH  the project directory, or the config file in it\n"
		     "                   (default: the current directory and ./Sandboxfile)\n"
		     "  -p, --path DIR   the same (the project directory)\n"
		     "  -h, --help       show this help\n");
}

int cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{"file", required_argument, NULL, 'f'},
		{"path", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *file = NULL;
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:f:p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
		case 'p':
			file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return cli_bad_option("init", c, argv);
		}
	}
	if (optind < argc) {
		if (file || optind + 1 < argc)
			return cli_usage_error("init",
					       "give the project directory once (DIR or -f)");
		file = argv[optind];
	}
	struct msb_err err = {0};
	struct msb_project p;
	if (msb_project_resolve(file, true, &p, &err) < 0)
		return cli_fail("init", &err);
	bool created = false;
	int rc = msb_project_init(&p, &created, &err);
	if (rc == 0)
		printf("Initialized microsandbox project in %s%s\n", p.dir,
		       created ? "" : " (already a project; nothing was overwritten)");
	msb_project_release(&p);
	return rc < 0 ? cli_fail("init", &err) : 0;
}
