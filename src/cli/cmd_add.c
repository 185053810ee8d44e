/* msb add NAMES... -i IMAGE [...]: append sandboxes to the Sandboxfile,
 * keeping every comment, blank line and the order of the rest of the file. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/io.h"
#include "project/edit.h"
#include "project/project.h"

int cmd_add(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: msb add NAME... -i IMAGE [options]\n\n"
		"Add sandboxes to the Sandboxfile (run `msb init` first).  The rest of the\n"
		"file is kept byte for byte; the result is checked before it replaces the file.\n\n"
		"Options:\n"
		"  -i, --image IMAGE       image reference (python, ghcr.io/o/i:tag) or a local\n"
		"                          root filesystem directory (./rootfs, /srv/root)\n"
		"      --memory MIB        memory in MiB (default 1024)\n"
		"      --cpus, --cpu N     virtual CPUs, 1-255 (default 1)\n"
		"  -v, --volume HOST:GUEST mount a host directory (relative to the project);\n"
		"                          repeatable\n"
		"  -p, --port HOST:GUEST   forward a host port (or PORT for the same on both);\n"
		"                          repeatable\n"
		"      --env NAME=VALUE    environment variable; repeatable\n"
		"      --env-file PATH     read NAME=VALUE lines (# comments; a bare NAME takes\n"
		"                          its value from this environment)\n"
		"      --depends-on NAME   start NAME first; repeatable\n"
		"      --workdir PATH      working directory in the sandbox (absolute)\n"
		"      --shell PATH        shell for scripts and `msb shell` (default /bin/sh)\n"
		"      --script NAME=BODY  a script, run with `msb run SANDBOX~NAME`; repeatable\n"
		"      --start BODY        the start script (what `msb run SANDBOX` runs)\n"
		"      --import NAME=PATH  repeatable\n"
		"      --export NAME=PATH  repeatable\n"
		"      --scope SCOPE       network scope: none, group, public (default), any\n"
		"  -f, --file PATH         the project directory, or the config file in it\n"
		"  -h, --help              show this help\n");
}

struct strlist {
	const char **v;
	size_t n;
};

static int sl_push(struct strlist *l, const char *s)
{
	const char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -1;
	v[l->n++] = s;
	l->v = v;
	return 0;
}

struct kvlist {
	struct msb_kv *v;
	size_t n;
};

/* NAME=VALUE -> a kv pointing into a copy (freed by kl_free). */
static int kl_push(struct kvlist *l, const char *arg, const char *flag, struct msb_err *err)
{
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg)
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s '%s': write NAME=VALUE", flag, arg);
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->v[i].key) == (size_t)(eq - arg) &&
		    strncmp(l->v[i].key, arg, (size_t)(eq - arg)) == 0)
			return msb_err_set(err, MSB_EK_USAGE, 0, "%s: '%.*s' is given twice", flag,
					   (int)(eq - arg), arg);
	struct msb_kv *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	l->v = v;
	v[l->n].key = strndup(arg, (size_t)(eq - arg));
	v[l->n].value = strdup(eq + 1);
	l->n++;
	if (!v[l->n - 1].key || !v[l->n - 1].value)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	return 0;
}

static void kl_free(struct kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].value);
	}
	free(l->v);
}

/* Docker's env-file format: NAME=VALUE per line, taken literally; blank lines
 * and lines starting with '#' skipped; a bare NAME takes this process's value
 * (skipped when unset).  Appends owned strings to `owned` and `envs`. */
static int read_env_file(const char *path, struct strlist *envs, struct strlist *owned,
			 struct msb_err *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (msb_read_file(path, 1 << 20, MSB_EK_USAGE, &text, &len, err) < 0)
		return msb_err_wrap(err, "--env-file");
	if (strlen(text) != len)
		return msb_err_set(err, MSB_EK_USAGE, 0, "--env-file %s holds a NUL byte", path);
	unsigned lineno = 0;
	for (char *line = text, *next; line; line = next) {
		lineno++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		size_t l = strlen(line);
		if (l && line[l - 1] == '\r')
			line[--l] = '\0';
		const char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s || *s == '#')
			continue;
		char *entry = NULL;
		if (strchr(s, '=')) {
			if (*s == '=')
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "--env-file %s:%u: '%s' has no name; write "
						   "NAME=VALUE",
						   path, lineno, s);
			entry = strdup(s);
		} else {
			const char *v = getenv(s);
			if (!v)
				continue;
			if (asprintf(&entry, "%s=%s", s, v) < 0)
				entry = NULL;
		}
		if (!entry || sl_push(owned, entry) < 0 || sl_push(envs, entry) < 0) {
			free(entry);
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		}
	}
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	if (!*s || !isdigit((unsigned char)*s))
		return -1;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

enum {
	OPT_MEMORY = 256,
	OPT_CPUS,
	OPT_ENV,
	OPT_ENV_FILE,
	OPT_DEPENDS,
	OPT_WORKDIR,
	OPT_SHELL,
	OPT_SCRIPT,
	OPT_START,
	OPT_IMPORT,
	OPT_EXPORT,
	OPT_SCOPE,
};

int cmd_add(int argc, char **argv)
{
	static const struct option opts[] = {
		{"image", required_argument, NULL, 'i'},
		{"memory", required_argument, NULL, OPT_MEMORY},
		{"cpus", required_argument, NULL, OPT_CPUS},
		{"cpu", required_argument, NULL, OPT_CPUS},
		{"volume", required_argument, NULL, 'v'},
		{"port", required_argument, NULL, 'p'},
		{"env", required_argument, NULL, OPT_ENV},
		{"env-file", required_argument, NULL, OPT_ENV_FILE},
		{"depends-on", required_argument, NULL, OPT_DEPENDS},
		{"workdir", required_argument, NULL, OPT_WORKDIR},
		{"shell", required_argument, NULL, OPT_SHELL},
		{"script", required_argument, NULL, OPT_SCRIPT},
		{"start", required_argument, NULL, OPT_START},
		{"import", required_argument, NULL, OPT_IMPORT},
		{"export", required_argument, NULL, OPT_EXPORT},
		{"scope", required_argument, NULL, OPT_SCOPE},
		{"file", required_argument, NULL, 'f'},
		{"sandbox", no_argument, NULL, 's'},
		{"build", no_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct msb_sandbox_spec spec = {0};
	struct strlist vols = {0}, ports = {0}, envs = {0}, deps = {0}, owned = {0}, cli_envs = {0};
	struct kvlist scripts = {0}, imports = {0}, exports = {0};
	const char *file = NULL, *env_file = NULL, *start = NULL;
	_cleanup_free_ char *scope = NULL;
	struct msb_err err = {0};
	struct msb_project p = {0};
	int rc = 2, c;
	unsigned long v;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":i:v:p:f:sbh", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'i':
			spec.image = optarg;
			break;
		case OPT_MEMORY:
			if (parse_uint(optarg, UINT32_MAX, &v) < 0) {
				rc = cli_usage_error("add",
						     "--memory '%s': give MiB as a whole "
						     "number, e.g. --memory 1024",
						     optarg);
				goto out;
			}
			spec.memory_mib = (uint32_t)v;
			break;
		case OPT_CPUS:
			if (parse_uint(optarg, 255, &v) < 0) {
				rc = cli_usage_error("add", "--cpus '%s': give 1-255", optarg);
				goto out;
			}
			spec.cpus = (uint8_t)v;
			break;
		case 'v':
			bad = sl_push(&vols, optarg);
			break;
		case 'p':
			bad = sl_push(&ports, optarg);
			break;
		case OPT_ENV:
			bad = sl_push(&cli_envs, optarg);
			break;
		case OPT_ENV_FILE:
			env_file = optarg;
			break;
		case OPT_DEPENDS:
			bad = sl_push(&deps, optarg);
			break;
		case OPT_WORKDIR:
			spec.workdir = optarg;
			break;
		case OPT_SHELL:
			spec.shell = optarg;
			break;
		case OPT_SCRIPT:
			if (kl_push(&scripts, optarg, "--script", &err) < 0) {
				rc = cli_fail("add", &err);
				goto out;
			}
			break;
		case OPT_START:
			start = optarg;
			break;
		case OPT_IMPORT:
		case OPT_EXPORT:
			if (kl_push(c == OPT_IMPORT ? &imports : &exports, optarg,
				    c == OPT_IMPORT ? "--import" : "--export", &err) < 0) {
				rc = cli_fail("add", &err);
				goto out;
			}
			break;
		case OPT_SCOPE:
			free(scope);
			scope = strdup(optarg);
			for (char *q = scope; q && *q; q++)
				*q = (char)tolower((unsigned char)*q);
			bad = !scope;
			break;
		case 'f':
			file = optarg;
			break;
		case 's':
			break;
		case 'b':
			rc = cli_usage_error("add", "builds are not supported yet; add sandboxes");
			goto out;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			rc = cli_bad_option("add", c, argv);
			goto out;
		}
		if (bad) {
			msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
			rc = cli_fail("add", &err);
			goto out;
		}
	}
	if (optind >= argc) {
		rc = cli_usage_error("add",
				     "name the sandboxes to add, e.g. msb add web -i python");
		goto out;
	}
	if (!spec.image) {
		rc = cli_usage_error("add", "an image is required: -i IMAGE, e.g. -i python");
		goto out;
	}
	if (start) {
		char *s = NULL;
		if (asprintf(&s, "%s=%s", MSB_START_SCRIPT, start) < 0) {
			s = NULL;
			msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		}
		if (!s || kl_push(&scripts, s, "--start/--script start", &err) < 0) {
			free(s);
			rc = cli_fail("add", &err);
			goto out;
		}
		free(s);
	}
	if (env_file && read_env_file(env_file, &envs, &owned, &err) < 0) {
		rc = cli_fail("add", &err);
		goto out;
	}
	for (size_t i = 0; i < cli_envs.n; i++)
		if (sl_push(&envs, cli_envs.v[i]) < 0) {
			msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
			rc = cli_fail("add", &err);
			goto out;
		}
	spec.volumes = vols.v;
	spec.nvolumes = vols.n;
	spec.ports = ports.v;
	spec.nports = ports.n;
	spec.envs = envs.v;
	spec.nenvs = envs.n;
	spec.depends_on = deps.v;
	spec.ndepends_on = deps.n;
	spec.scripts = scripts.v;
	spec.nscripts = scripts.n;
	spec.imports = imports.v;
	spec.nimports = imports.n;
	spec.exports = exports.v;
	spec.nexports = exports.n;
	spec.scope = scope;
	if (msb_project_resolve(file, false, &p, &err) < 0) {
		rc = cli_fail("add", &err);
		goto out;
	}
	const char *const *names = (const char *const *)argv + optind;
	size_t n = (size_t)(argc - optind);
	if (msb_sandboxfile_add(p.config_path, names, n, &spec, &err) < 0) {
		rc = cli_fail("add", &err);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		printf("Added sandbox %s to %s\n", names[i], p.config_path);
	rc = 0;
out:
	msb_project_release(&p);
	for (size_t i = 0; i < owned.n; i++)
		free((char *)owned.v[i]);
	free(owned.v);
	free(vols.v);
	free(ports.v);
	free(envs.v);
	free(cli_envs.v);
	free(deps.v);
	kl_free(&scripts);
	kl_free(&imports);
	kl_free(&exports);
	return rc;
}
