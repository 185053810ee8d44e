/* msb self uninstall [--yes]: remove microsandbox's state ($MICROSANDBOX_HOME,
 * default ~/.microsandbox: images, layers, server key, installs) and the
 * launchers `msb install` made. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/paths.h"
#include "project/install.h"
#include "project/menv.h"

int cmd_self(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb self uninstall [-y|--yes]\n\n"
		     "Remove $MICROSANDBOX_HOME (default ~/.microsandbox: images, layers,\n"
		     "server key and log, installed sandboxes' state) and the launchers that\n"
		     "`msb install` wrote in $MSB_BIN_DIR (default ~/.local/bin).  Asks first\n"
		     "unless --yes.  Projects' .menv/ directories and the msb binary itself\n"
		     "are not touched.\n\n"
		     "  -y, --yes   do not ask\n"
		     "  -h, --help  show this help\n");
}

/* A server whose pid file names a live process still uses the home. */
static pid_t live_server(const char *home)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/server.pid", home);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	long pid = 0;
	int ok = fscanf(f, "%ld", &pid);
	fclose(f);
	if (ok != 1 || pid <= 0 || pid > INT_MAX)
		return 0;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM ? (pid_t)pid : 0;
}

static int uninstall(bool yes)
{
	const char *cmd = "self uninstall";
	struct msb_err err = {0};
	char home[PATH_MAX], real[PATH_MAX];
	_cleanup_free_ char *dir = NULL;
	char **names = NULL;
	size_t n = 0;
	if (msb_home(home, sizeof(home), &err) < 0 || msb_bin_dir(&dir, &err) < 0 ||
	    msb_launcher_list(dir, &names, &n, &err) < 0)
		return cli_fail(cmd, &err);
	int rc = 0;
	bool have_home = realpath(home, real) != NULL;
	const char *h = getenv("HOME");
	char hreal[PATH_MAX];
	/* Never the root or the user's home itself (MICROSANDBOX_HOME=~ by mistake). */
	if (have_home &&
	    (strcmp(real, "/") == 0 || (h && realpath(h, hreal) && strcmp(real, hreal) == 0))) {
		msb_err_set(&err, MSB_EK_USAGE, 0,
			    "refusing to remove %s: MICROSANDBOX_HOME points at a directory msb "
			    "does not own",
			    real);
		rc = cli_fail(cmd, &err);
		goto out;
	}
	pid_t srv = have_home ? live_server(real) : 0;
	if (srv) {
		msb_err_set(&err, MSB_EK_STATE, 0,
			    "the msb server (pid %d) uses %s; stop it first (msb server stop)",
			    (int)srv, real);
		rc = cli_fail(cmd, &err);
		goto out;
	}
	if (!have_home && n == 0) {
		printf("Nothing to remove: %s does not exist and no launchers are installed in "
		       "%s\n",
		       home, dir);
		goto out;
	}
	printf("This removes:\n");
	if (have_home)
		printf("  %s (images, layers, keys, logs)\n", real);
	for (size_t i = 0; i < n; i++)
		printf("  %s/%s (installed sandbox)\n", dir, names[i]);
	if (!yes) {
		printf("Continue? [y/N] ");
		fflush(stdout);
		char line[16] = "";
		if (!fgets(line, sizeof(line), stdin) || (line[0] != 'y' && line[0] != 'Y')) {
			printf("\nNothing was removed.\n");
			rc = 1;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (msb_launcher_remove(dir, names[i], &err) < 0) {
			rc = cli_fail(cmd, &err);
			goto out;
		}
	if (have_home && msb_remove_tree(real, &err) < 0) {
		rc = cli_fail(cmd, &err);
		goto out;
	}
	printf("Removed.  The msb binary itself is still at its place; delete it by hand.\n");
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int cmd_self(int argc, char **argv)
{
	const char *cmd = "self";
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "uninstall") != 0)
		return cli_usage_error(cmd, "unknown subcommand '%s' (only: uninstall)", argv[1]);
	bool yes = false;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-y") == 0 || strcmp(argv[i], "--yes") == 0) {
			yes = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			return cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
		}
	}
	return uninstall(yes);
}
