/* The msb command line: a table of commands, each in its own cmd_<name>.c.
 * A command gets argv starting at its own name (argv[0] == "pull"), parses its
 * own options (with --help), and returns the process exit status; on failure
 * it reports through cli_fail() so every error reads the same way. */
#ifndef MSB_CLI_CLI_H
#define MSB_CLI_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "common/error.h"

struct cli_command {
	const char *name;
	const char *aliases[3]; /* NULL-terminated when fewer than 3 */
	const char *summary;	/* one line for `msb --help` */
	int (*run)(int argc, char **argv);
};

extern const struct cli_command cli_commands[];
extern const unsigned cli_ncommands;

/* Print "msb <cmd>: <message>" to stderr and return the exit status for the
 * error's kind (docs/errors.md). */
int cli_fail(const char *cmd, const struct msb_err *err);

/* Print a usage error ("msb <cmd>: <msg>" plus "Try 'msb <cmd> --help'.") and
 * return 2. */
__attribute__((format(printf, 2, 3))) int cli_usage_error(const char *cmd, const char *fmt, ...);

/* After getopt_long() with opterr = 0 returned '?' or ':' (a leading ':' in
 * the option string): one usage error naming the option, as cli_usage_error(). */
int cli_bad_option(const char *cmd, int c, char **argv);

/* getopt_long (opterr = 0; start `shortopts` with ':') with the cases every
 * option loop ends in: 'h' prints `usage` to stdout (exit status 0) and an
 * unknown option or a missing value is cli_bad_option().  Returns the option,
 * -1 after the last, or CLI_OPT_DONE with *rc the exit status to return. */
#define CLI_OPT_DONE (-2)
struct option;
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
	       const char *cmd, void (*usage)(FILE *out), int *rc);

/* True when stdout/stderr is a terminal (progress bars, colours). */
bool cli_is_tty(int fd);

#define MSB_VERSION "0.1.0"

#endif
