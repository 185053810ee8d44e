/* `msb exe` / `msb run` command lines, parsed without side effects so that
 * tests can check every refusal.  Upstream silently dropped bad -v/-p/--env
 * values; here each is refused with what to write instead. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "project/pairs.h"
#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cli.h"

void sandbox_cli_args_clear(struct sandbox_cli_args *a)
{
	free(a->target);
	msb_strv_clear(&a->envs);
	sandbox_net_clear(&a->net);
	sandbox_volumes_clear(&a->volumes);
	memset(a, 0, sizeof(*a));
}

static int parse_uint(const char *opt, const char *v, unsigned max, unsigned *out,
		      struct msb_err *err)
{
	char *end = NULL;
	errno = 0;
	unsigned long n = v && *v ? strtoul(v, &end, 10) : 0;
	if (!v || !*v || *end || errno || n == 0 || n > max || v[0] == '-')
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "%s needs a whole number from 1 to %u, not '%s'", opt, max,
				   v ? v : "");
	*out = (unsigned)n;
	return 0;
}

/* "--opt=value" or "--opt value"; *consumed says how many argv entries were used. */
static const char *opt_value(int argc, char **argv, int i, const char *name, const char *shrt,
			     int *consumed, bool *matched)
{
	const char *a = argv[i];
	size_t nl = strlen(name);
	*matched = false;
	*consumed = 1;
	if (strncmp(a, name, nl) == 0 && a[nl] == '=') {
		*matched = true;
		return a + nl + 1;
	}
	if (strcmp(a, name) == 0 || (shrt && strcmp(a, shrt) == 0)) {
		*matched = true;
		if (i + 1 < argc) {
			*consumed = 2;
			return argv[i + 1];
		}
		return NULL;
	}
	return NULL;
}

int sandbox_cli_parse(enum sandbox_cli_kind kind, int argc, char **argv, struct sandbox_cli_args *a,
		      struct msb_err *err)
{
	memset(a, 0, sizeof(*a));
	a->net.scope = MSB_SCOPE_DEFAULT;
	const char *target = NULL;
	int i = 1;
	for (; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			a->help = true;
			return 0;
		}
		if (arg[0] != '-' || arg[1] == '\0') {
			if (target) {
				sandbox_cli_args_clear(a);
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "unexpected argument '%s' (arguments for the "
						   "command go after '--')",
						   arg);
			}
			target = arg;
			continue;
		}
		int used = 1;
		bool m = false;
		const char *v;
#define OPT(name, shrt) ((v = opt_value(argc, argv, i, name, shrt, &used, &m)), m)
#define NEED_VALUE(name)                                                                    \
	do {                                                                                \
		if (!v) {                                                                   \
			sandbox_cli_args_clear(a);                                          \
			return msb_err_set(err, MSB_EK_USAGE, 0, "%s needs a value", name); \
		}                                                                           \
	} while (0)
		if (OPT("--exec", "-e") || OPT("-x", NULL)) {
			NEED_VALUE("--exec");
			a->exec = v;
		} else if (kind == SANDBOX_CLI_EXE && (OPT("--image", "-i"))) {
			NEED_VALUE("--image");
			if (target) {
				sandbox_cli_args_clear(a);
				return msb_err_set(err, MSB_EK_USAGE, 0,
						   "the image is given twice");
			}
			target = v;
		} else if (kind == SANDBOX_CLI_EXE && OPT("--cpus", NULL)) {
			if (parse_uint("--cpus", v, 255, &a->cpus, err) < 0)
				goto fail;
		} else if (kind == SANDBOX_CLI_EXE && OPT("--memory", NULL)) {
			if (parse_uint("--memory", v, 1u << 20, &a->memory_mib, err) < 0)
				goto fail;
		} else if (kind == SANDBOX_CLI_EXE && OPT("--env", NULL)) {
			NEED_VALUE("--env");
			struct msb_env_pair p = {0};
			if (msb_env_pair_parse(v, &p, err) < 0) {
				msb_err_wrap(err, "--env '%s'", v);
				goto fail;
			}
			msb_env_pair_clear(&p);
			if (msb_strv_push(&a->envs, v, err) < 0)
				goto fail;
		} else if (kind == SANDBOX_CLI_EXE && OPT("--workdir", NULL)) {
			NEED_VALUE("--workdir");
			if (v[0] != '/') {
				msb_err_set(
					err, MSB_EK_USAGE, 0,
					"--workdir must be an absolute path in the sandbox, not "
					"'%s'",
					v);
				goto fail;
			}
			a->workdir = v;
		} else if (OPT("--volume", "-v")) {
			NEED_VALUE("--volume");
			/* Checked now (the host directory exists): a refusal starts
			 * nothing. */
			if (sandbox_volumes_add(&a->volumes, v, NULL, err) < 0) {
				msb_err_wrap(err, "--volume '%s'", v);
				goto fail;
			}
		} else if (OPT("--port", "-p")) {
			NEED_VALUE("--port");
			struct sandbox_port p;
			if (sandbox_port_parse(v, &p, err) < 0 ||
			    sandbox_net_add_port(&a->net, &p, err) < 0) {
				msb_err_wrap(err, "--port");
				goto fail;
			}
		} else if (OPT("--scope", NULL)) {
			NEED_VALUE("--scope");
			if (msb_scope_parse(v, true, &a->net.scope) < 0) {
				msb_err_set(err, MSB_EK_USAGE, 0,
					    "--scope '%s': write none, group, public or any", v);
				goto fail;
			}
			a->scope_set = true;
		} else if (OPT("--snapshot", NULL)) {
			NEED_VALUE("--snapshot");
			a->snapshot = v;
		} else if (strcmp(arg, "--cold") == 0) {
			a->cold = true;
		} else if (kind == SANDBOX_CLI_RUN && OPT("--file", "-f")) {
			NEED_VALUE("--file");
			a->file = v;
		} else if (kind == SANDBOX_CLI_RUN &&
			   (strcmp(arg, "-d") == 0 || strcmp(arg, "--detach") == 0)) {
			a->detach = true;
		} else {
			sandbox_cli_args_clear(a);
			return msb_err_set(err, MSB_EK_USAGE, 0, "unknown option '%s'", arg);
		}
		i += used - 1;
#undef OPT
#undef NEED_VALUE
	}
	a->args = argv + i;
	a->nargs = (size_t)(argc - i);
	if (a->net.scope == MSB_SCOPE_NONE && a->net.nports) {
		msb_err_set(err, MSB_EK_USAGE, 0,
			    "--port needs a network, and --scope none has none: drop one of them");
		goto fail;
	}
	if (a->snapshot && a->cold) {
		msb_err_set(
			err, MSB_EK_USAGE, 0,
			"--snapshot restores a snapshot and --cold boots without one: give one");
		goto fail;
	}
	if (kind == SANDBOX_CLI_EXE && a->snapshot) {
		/* The snapshot fixes the image and the VM's shape. */
		if (target || a->cpus || a->memory_mib) {
			msb_err_set(err, MSB_EK_USAGE, 0,
				    "--snapshot fixes the image, --cpus and --memory: leave them "
				    "out");
			goto fail;
		}
		target = a->snapshot;
	}
	if (!target) {
		msb_err_set(err, MSB_EK_USAGE, 0, "%s",
			    kind == SANDBOX_CLI_EXE ? "no image given (msb exe IMAGE)"
						    : "no sandbox given (msb run NAME)");
		goto fail;
	}
	if (!(a->target = strdup(target))) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		goto fail;
	}
	/* NAME~SCRIPT: the last '~' (an image reference never contains one). */
	char *tilde = strrchr(a->target, '~');
	if (tilde) {
		*tilde = '\0';
		a->script = tilde + 1;
		if (!*a->script || !*a->target) {
			msb_err_set(err, MSB_EK_USAGE, 0, "'%s': write NAME~SCRIPT with both parts",
				    target);
			goto fail;
		}
	}
	if (a->script && a->exec) {
		msb_err_set(err, MSB_EK_USAGE, 0, "give either ~SCRIPT or --exec, not both");
		goto fail;
	}
	return 0;
fail:
	sandbox_cli_args_clear(a);
	return -1;
}
