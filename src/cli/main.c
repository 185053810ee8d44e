/* msb: entry point.  Invoked as msx / msi / msr it behaves as `msb exe` /
 * `msb install` / `msb run`, as upstream's aliases do. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"

static void usage(FILE *out)
{
	fprintf(out, "msb — microsandbox: run untrusted code in hardware-isolated microVMs\n\n"
		     "Usage: msb [--error|--warn|--info|--debug|--trace] <command> [options]\n"
		     "       msb -V | --version\n\nCommands:\n");
	for (unsigned i = 0; i < cli_ncommands; i++)
		fprintf(out, "  %-12s %s\n", cli_commands[i].name, cli_commands[i].summary);
	fprintf(out, "\nRun 'msb <command> --help' for a command's options.\n"
		     "Environment: MICROSANDBOX_HOME (default ~/.microsandbox), MSB_LOG.\n");
}

static const struct cli_command *find_command(const char *name)
{
	for (unsigned i = 0; i < cli_ncommands; i++) {
		const struct cli_command *c = &cli_commands[i];
		if (strcmp(c->name, name) == 0)
			return c;
		for (unsigned j = 0; j < 3 && c->aliases[j]; j++)
			if (strcmp(c->aliases[j], name) == 0)
				return c;
	}
	return NULL;
}

static const char *alias_of(const char *argv0)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", argv0);
	const char *base = basename(buf);
	if (strcmp(base, "msx") == 0)
		return "exe";
	if (strcmp(base, "msi") == 0)
		return "install";
	if (strcmp(base, "msr") == 0)
		return "run";
	return NULL;
}

int main(int argc, char **argv)
{
	msb_log_init("msb");
	const char *alias = alias_of(argv[0]);
	if (alias) {
		const struct cli_command *c = find_command(alias);
		if (!c) {
			fprintf(stderr, "msb: '%s' is not available in this build\n", alias);
			return 1;
		}
		argv[0] = (char *)alias;
		return c->run(argc, argv);
	}
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("msb v%s\n", MSB_VERSION);
			return 0;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--error") == 0) {
			msb_log_set_level(MSB_LOG_ERROR);
		} else if (strcmp(a, "--warn") == 0) {
			msb_log_set_level(MSB_LOG_WARN);
		} else if (strcmp(a, "--info") == 0) {
			msb_log_set_level(MSB_LOG_INFO);
		} else if (strcmp(a, "--debug") == 0) {
			msb_log_set_level(MSB_LOG_DEBUG);
		} else if (strcmp(a, "--trace") == 0) {
			msb_log_set_level(MSB_LOG_TRACE);
		} else {
			fprintf(stderr, "msb: unknown option '%s'\nTry 'msb --help'.\n", a);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stdout);
		return 0;
	}
	const struct cli_command *c = find_command(argv[i]);
	if (!c) {
		fprintf(stderr, "msb: unknown command '%s'\nTry 'msb --help'.\n", argv[i]);
		return 2;
	}
	return c->run(argc - i, argv + i);
}
