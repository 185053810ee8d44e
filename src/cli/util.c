#include "cli/cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

int cli_fail(const char *cmd, const struct msb_err *err)
{
	fprintf(stderr, "msb %s: %s\n", cmd, err->msg[0] ? err->msg : "failed");
	return msb_err_exit_code(err->kind == MSB_EK_NONE ? MSB_EK_INTERNAL : err->kind);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "msb %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'msb %s --help'.\n", cmd);
	return 2;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
	if (c == ':')
		return cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
	return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
	       const char *cmd, void (*usage)(FILE *out), int *rc)
{
	opterr = 0;
	int c = getopt_long(argc, argv, shortopts, longopts, NULL);
	if (c == 'h') {
		usage(stdout);
		*rc = 0;
		return CLI_OPT_DONE;
	}
	if (c == '?' || c == ':') {
		*rc = cli_bad_option(cmd, c, argv);
		return CLI_OPT_DONE;
	}
	return c;
}

bool cli_is_tty(int fd)
{
	return isatty(fd) == 1;
}
