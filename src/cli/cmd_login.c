/* msb login / msb logout: registry credentials in $MICROSANDBOX_HOME/auth.json (0600). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/paths.h"
#include "oci/registry.h"
#include "oci/settings.h"

int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);

int cmd_login(int argc, char **argv)
{
	static const struct option opts[] = {
		{"username", required_argument, NULL, 'u'},
		{"password", required_argument, NULL, 'p'},
		{"password-stdin", no_argument, NULL, 's'},
		{"no-verify", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *user = NULL, *pass = NULL;
	bool from_stdin = false, verify = true;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "u:p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			user = optarg;
			break;
		case 'p':
			pass = optarg;
			break;
		case 's':
			from_stdin = true;
			break;
		case 'n':
			verify = false;
			break;
		case 'h':
			printf("Usage: msb login [REGISTRY] -u USER (-p PASSWORD | "
			       "--password-stdin)\n"
			       "                 [--no-verify]\n\n"
			       "Check the credentials against REGISTRY (default docker.io), then\n"
			       "store them in $MICROSANDBOX_HOME/auth.json (mode 0600).\n"
			       "~/.docker/config.json is read too: a `docker login` also works.\n");
			return 0;
		default:
			return cli_usage_error("login", "unknown option");
		}
	}
	if (argc - optind > 1)
		return cli_usage_error("login", "expected at most one REGISTRY");
	const char *registry = optind < argc ? argv[optind] : "docker.io";
	char line[4096];
	if (from_stdin) {
		if (pass)
			return cli_usage_error("login", "--password and --password-stdin conflict");
		if (!fgets(line, sizeof(line), stdin))
			return cli_usage_error("login", "no password on standard input");
		line[strcspn(line, "\r\n")] = '\0';
		pass = line;
	}
	if (!user || !*user || !pass || !*pass)
		return cli_usage_error("login",
				       "give -u USER and -p PASSWORD (or --password-stdin)");
	char home[4096];
	struct msb_err err = {0};
	if (msb_home(home, sizeof(home), &err) < 0)
		return cli_fail("login", &err);
	char key[512];
	oci_registry_key(registry, key, sizeof(key));
	if (verify) {
		struct oci_settings s;
		if (oci_settings_load(&s, home, &err) < 0)
			return cli_fail("login", &err);
		int r = oci_registry_check_login(&s, key, user, pass, &err);
		oci_settings_release(&s);
		if (r < 0) {
			msb_err_wrap(&err, "checking the credentials for %s (nothing was stored)",
				     key);
			return cli_fail("login", &err);
		}
	}
	if (oci_creds_store(home, registry, user, pass, &err) < 0)
		return cli_fail("login", &err);
	printf("Login credentials for %s saved\n", key);
	return 0;
}

int cmd_logout(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		printf("Usage: msb logout [REGISTRY]\n\nForget the credentials `msb login` stored "
		       "for REGISTRY (default docker.io).\n");
		return 0;
	}
	if (argc > 2)
		return cli_usage_error("logout", "expected at most one REGISTRY");
	const char *registry = argc > 1 ? argv[1] : "docker.io";
	char home[4096];
	struct msb_err err = {0};
	if (msb_home(home, sizeof(home), &err) < 0 || oci_creds_remove(home, registry, &err) < 0)
		return cli_fail("logout", &err);
	char key[512];
	oci_registry_key(registry, key, sizeof(key));
	printf("Removed login credentials for %s\n", key);
	return 0;
}
