/* msb install|i IMAGE[~SCRIPT] [NAME] (and msi) / msb uninstall NAME...: a
 * sandbox as a command on PATH — a launcher script in $MSB_BIN_DIR or
 * ~/.local/bin that runs `msb exe` with the options saved here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "oci/pull.h"
#include "oci/store.h"
#include "project/install.h"
#include "project/lifecycle.h"
#include "sandbox/sandbox_cli.h"

int cmd_install(int argc, char **argv);
int cmd_uninstall(int argc, char **argv);

static void install_usage(FILE *out)
{
	fprintf(out, "Usage: msb install [-i] IMAGE[~SCRIPT] [NAME] [OPTIONS] [-- ARGS...]\n"
		     "       msi IMAGE[~SCRIPT] [NAME] ...\n\n"
		     "Make a sandbox a command: NAME (default: SCRIPT, else the image's name\n"
		     "without registry and tag) becomes a launcher in $MSB_BIN_DIR (default\n"
		     "~/.local/bin) that runs `msb exe` on IMAGE with these options; the\n"
		     "launcher's arguments go to the sandbox's command after ARGS.  The image is\n"
		     "pulled now.  Remove it with `msb uninstall NAME`.\n\n"
		     "Options (saved, as for msb exe):\n"
		     "  --cpus N, --memory MIB, --env K=V, --workdir PATH, -e/--exec CMD,\n"
		     "  -v/--volume H:G, -p/--port H:G, --scope S\n"
		     "  --script S    run the image's script S (as IMAGE~S)\n"
		     "  --force       replace an installed launcher of that name, or install a\n"
		     "                name that another command on PATH already has\n"
		     "  --no-pull     do not fetch the image now (the first run does)\n"
		     "  -h, --help    show this help\n");
}

static void uninstall_usage(FILE *out)
{
	fprintf(out, "Usage: msb uninstall NAME...\n\n"
		     "Remove the launchers `msb install` made in $MSB_BIN_DIR (default\n"
		     "~/.local/bin).  Files msb did not write are left alone.\n\n"
		     "  -h, --help  show this help\n");
}

/* msb exe's options that take a value (the next argument unless "=..."). */
static bool exe_takes_value(const char *a)
{
	static const char *const opts[] = {"--cpus",  "--memory", "--env", "--workdir",
					   "-v",      "--volume", "-p",	   "--port",
					   "--scope", "-e",	  "-x",	   "--exec"};
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strcmp(a, opts[i]) == 0)
			return true;
	return false;
}

static bool dir_on_path(const char *dir)
{
	const char *path = getenv("PATH");
	if (!path)
		return false;
	size_t l = strlen(dir);
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		if (n == l && strncmp(p, dir, l) == 0)
			return true;
		p += n;
		if (*p)
			p++;
	}
	return false;
}

/* A pull's one-line steps ("resolved ... to sha256:..."), so that a long
 * first pull does not look like a hang. */
static void pull_status(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "msb install: %s\n", msg);
}

int cmd_install(int argc, char **argv)
{
	const char *cmd = "install";
	struct msb_err err = {0};
	const char *image = NULL, *name_arg = NULL, *script = NULL;
	bool force = false, pull = true;
	/* exe's options as typed, then IMAGE[~SCRIPT]: what the launcher runs. */
	_cleanup_free_ const char **saved = calloc((size_t)argc + 2, sizeof(char *));
	size_t nsaved = 0;
	char **args = NULL;
	size_t nargs = 0;
	if (!saved)
		return 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			args = argv + i + 1;
			nargs = (size_t)(argc - i - 1);
			break;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			install_usage(stdout);
			return 0;
		} else if (strcmp(a, "--force") == 0) {
			force = true;
		} else if (strcmp(a, "--no-pull") == 0) {
			pull = false;
		} else if (strcmp(a, "--script") == 0 || strncmp(a, "--script=", 9) == 0) {
			if (a[8] == '=')
				script = a + 9;
			else if (i + 1 < argc)
				script = argv[++i];
			else
				return cli_usage_error(cmd, "--script needs a value");
		} else if (strcmp(a, "-i") == 0 || strcmp(a, "--image") == 0) {
			if (i + 1 >= argc)
				return cli_usage_error(cmd, "%s needs a value", a);
			if (image)
				return cli_usage_error(cmd, "the image is given twice");
			image = argv[++i];
		} else if (a[0] == '-' && a[1]) {
			saved[nsaved++] = a;
			if (exe_takes_value(a)) {
				if (i + 1 >= argc)
					return cli_usage_error(cmd, "%s needs a value", a);
				saved[nsaved++] = argv[++i];
			}
		} else if (!image) {
			image = a;
		} else if (!name_arg) {
			name_arg = a;
		} else {
			return cli_usage_error(cmd, "unexpected argument '%s'", a);
		}
	}
	if (!image)
		return cli_usage_error(cmd, "no image given (msb install IMAGE [NAME])");
	_cleanup_free_ char *target = NULL;
	if (script && strchr(image, '~'))
		return cli_usage_error(cmd, "give the script once: IMAGE~SCRIPT or --script");
	if (asprintf(&target, script ? "%s~%s" : "%s", image, script) < 0)
		return 1;
	saved[nsaved] = target;
	/* Check the options exactly as the launcher's `msb exe` will. */
	size_t nv = nsaved + 2 + (nargs ? nargs + 1 : 0);
	_cleanup_free_ char **v = calloc(nv + 1, sizeof(char *));
	if (!v)
		return 1;
	v[0] = (char *)"exe";
	for (size_t i = 0; i <= nsaved; i++)
		v[i + 1] = (char *)saved[i];
	if (nargs) {
		v[nsaved + 2] = (char *)"--";
		for (size_t i = 0; i < nargs; i++)
			v[nsaved + 3 + i] = args[i];
	}
	struct sandbox_cli_args a;
	if (sandbox_cli_parse(SANDBOX_CLI_EXE, (int)nv, v, &a, &err) < 0)
		return cli_usage_error(cmd, "%s", err.msg);
	int rc = 0;
	_cleanup_free_ char *name = NULL, *dir = NULL, *exe = NULL, *text = NULL, *other = NULL;
	if (a.unsupported) {
		msb_err_set(&err, MSB_EK_USAGE, 0, "%s is not supported yet; install without it",
			    a.unsupported);
		goto fail;
	}
	if (name_arg) {
		if (!msb_sandbox_name_valid(name_arg)) {
			rc = cli_usage_error(cmd,
					     "'%s' is not a valid command name (1-63 of A-Z a-z "
					     "0-9 _ -, starting with a letter or digit)",
					     name_arg);
			goto out;
		}
		name = strdup(name_arg);
	} else if (msb_install_default_name(a.target, a.script, &name, &err) < 0) {
		goto fail;
	}
	if (!name || !(exe = msb_self_exe())) {
		msb_err_set(&err, MSB_EK_SYSTEM, 0, "cannot find the msb executable");
		goto fail;
	}
	if (msb_bin_dir(&dir, &err) < 0)
		goto fail;
	/* Upstream refuses a name that is already a command: so do we, except
	 * our own launcher (or with --force for a command elsewhere on PATH). */
	other = msb_which(name);
	if (other && !msb_launcher_is_ours(other, name) && !force) {
		msb_err_set(&err, MSB_EK_EXISTS, 0,
			    "'%s' is already a command (%s); pick another name (msb install %s "
			    "NAME) or pass --force to install it anyway",
			    name, other, image);
		goto fail;
	}
	if (msb_launcher_text(name, exe, saved, nsaved + 1, (const char *const *)args, nargs, &text,
			      &err) < 0)
		goto fail;
	if (pull) {
		struct oci_store *st = NULL;
		struct oci_image *img = NULL;
		if (oci_store_open(NULL, &st, &err) < 0)
			goto fail;
		struct oci_pull_opts po = {.status = pull_status};
		int r = oci_image_ensure(st, a.target, &po, &img, &err);
		oci_store_close(st);
		if (r < 0) {
			msb_err_wrap(&err, "image '%s'", a.target);
			goto fail;
		}
		oci_image_free(img);
	}
	if (msb_launcher_install(dir, name, text, force, &err) < 0)
		goto fail;
	printf("Installed '%s' as %s/%s\n", a.script ? a.script : a.target, dir, name);
	if (!dir_on_path(dir))
		printf("Note: %s is not on your PATH; add it to run '%s' by its name\n", dir, name);
	goto out;
fail:
	rc = cli_fail(cmd, &err);
out:
	sandbox_cli_args_clear(&a);
	return rc;
}

int cmd_uninstall(int argc, char **argv)
{
	const char *cmd = "uninstall";
	int first = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			uninstall_usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--") == 0) {
			first = i + 1;
			break;
		}
		if (argv[i][0] == '-')
			return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
	}
	if (first >= argc)
		return cli_usage_error(cmd, "which one? msb uninstall NAME");
	struct msb_err err = {0};
	_cleanup_free_ char *dir = NULL;
	if (msb_bin_dir(&dir, &err) < 0)
		return cli_fail(cmd, &err);
	int rc = 0;
	for (int i = first; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			continue;
		if (msb_launcher_remove(dir, argv[i], &err) < 0) {
			int r = cli_fail(cmd, &err);
			rc = rc ? rc : r;
			continue;
		}
		printf("Uninstalled '%s' (%s/%s)\n", argv[i], dir, argv[i]);
	}
	return rc;
}
