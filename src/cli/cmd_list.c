/* msb list [-f PATH]: the project's sandboxes as a table. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/project_cli.h"
#include "common/cleanup.h"
#include "project/project.h"

int cmd_list(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb list [-f PATH]\n\n"
		     "List the sandboxes of the Sandboxfile: image, CPUs and memory, network\n"
		     "scope, ports, volumes, scripts and dependencies.\n\n"
		     "Options:\n" PCLI_OPTS_HELP);
}

enum {
	COL_NAME,
	COL_IMAGE,
	COL_RES,
	COL_SCOPE,
	COL_PORTS,
	COL_VOLUMES,
	COL_SCRIPTS,
	COL_DEPS,
	NCOL
};
static const char *const headers[NCOL] = {"NAME",  "IMAGE",   "CPUS/MEMORY", "SCOPE",
					  "PORTS", "VOLUMES", "SCRIPTS",     "DEPENDS ON"};

/* Columns padded to their width; the last one is not padded. */
static void print_row(const char *const *cells, const size_t *width)
{
	for (int j = 0; j < NCOL; j++) {
		if (j + 1 < NCOL)
			printf("%-*s  ", (int)width[j], cells[j]);
		else
			printf("%s\n", cells[j]);
	}
}

/* Join parts with ", "; "-" when there are none. */
static char *join(char **parts, size_t n)
{
	size_t len = 2;
	for (size_t i = 0; i < n; i++)
		len += strlen(parts[i]) + 2;
	char *s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(s, ", ");
		strcat(s, parts[i]);
	}
	if (!n)
		strcpy(s, "-");
	return s;
}

static int row_cells(const struct msb_sandbox *sb, char **cells)
{
	size_t np = sb->nports + sb->nvolumes + sb->nscripts + 1;
	_cleanup_free_ char **parts = calloc(np, sizeof(*parts));
	if (!parts)
		return -1;
	cells[COL_NAME] = strdup(sb->name);
	cells[COL_IMAGE] = strdup(sb->image);
	if (asprintf(&cells[COL_RES], "%u / %u MiB", sb->cpus ? sb->cpus : MSB_DEFAULT_CPUS,
		     sb->memory_mib ? sb->memory_mib : MSB_DEFAULT_MEMORY) < 0)
		cells[COL_RES] = NULL;
	cells[COL_SCOPE] = strdup(msb_scope_name(sb->scope));
	size_t k = 0;
	for (size_t i = 0; i < sb->nports; i++, k++)
		if (asprintf(&parts[k], "%u:%u", sb->ports[i].host, sb->ports[i].guest) < 0)
			return -1;
	cells[COL_PORTS] = join(parts, sb->nports);
	for (size_t i = 0; i < k; i++)
		free(parts[i]);
	_cleanup_free_ char **vp = calloc(sb->nvolumes + 1, sizeof(*vp));
	if (!vp)
		return -1;
	for (size_t i = 0; i < sb->nvolumes; i++)
		if (asprintf(&vp[i], "%s:%s", sb->volumes[i].host, sb->volumes[i].guest) < 0)
			return -1;
	cells[COL_VOLUMES] = join(vp, sb->nvolumes);
	for (size_t i = 0; i < sb->nvolumes; i++)
		free(vp[i]);
	for (size_t i = 0; i < sb->nscripts; i++)
		parts[i] = sb->scripts[i].key;
	cells[COL_SCRIPTS] = join(parts, sb->nscripts);
	cells[COL_DEPS] = join(sb->depends_on.v, sb->depends_on.n);
	for (int i = 0; i < NCOL; i++)
		if (!cells[i])
			return -1;
	return 0;
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {PCLI_LONG_OPTS, {0}};
	struct pcli pc = {.cmd = "list"};
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":" PCLI_SHORT_OPTS, opts, NULL)) != -1) {
		switch (c) {
			PCLI_CASES(pc, "list", usage);
		default:
			return cli_bad_option("list", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("list", "unexpected argument '%s'", argv[optind]);
	struct msb_err err = {0};
	struct msb_project p;
	struct msb_sandboxfile *sf = NULL;
	if (msb_project_resolve(pc.file, false, &p, &err) < 0)
		return cli_fail("list", &err);
	if (msb_project_load(&p, &sf, &err) < 0) {
		msb_project_release(&p);
		return cli_fail("list", &err);
	}
	int rc = 0;
	if (sf->nsandboxes == 0) {
		printf("No sandboxes in %s; add one with `msb add NAME -i IMAGE`.\n",
		       p.config_path);
		goto out;
	}
	char **cells = calloc(sf->nsandboxes * NCOL, sizeof(*cells));
	if (!cells) {
		msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		rc = cli_fail("list", &err);
		goto out;
	}
	size_t width[NCOL];
	for (int j = 0; j < NCOL; j++)
		width[j] = strlen(headers[j]);
	for (size_t i = 0; i < sf->nsandboxes && rc == 0; i++) {
		if (row_cells(&sf->sandboxes[i], cells + i * NCOL) < 0) {
			msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
			rc = cli_fail("list", &err);
			break;
		}
		for (int j = 0; j < NCOL; j++) {
			size_t l = strlen(cells[i * NCOL + j]);
			if (l > width[j])
				width[j] = l;
		}
	}
	if (rc == 0) {
		print_row(headers, width);
		for (size_t i = 0; i < sf->nsandboxes; i++)
			print_row((const char *const *)cells + i * NCOL, width);
	}
	for (size_t i = 0; i < sf->nsandboxes * NCOL; i++)
		free(cells[i]);
	free(cells);
out:
	msb_sandboxfile_free(sf);
	msb_project_release(&p);
	return rc;
}
