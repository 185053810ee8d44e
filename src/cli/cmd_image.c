/* msb image ls | rm | prune | inspect | import: the local image store. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "oci/import.h"
#include "oci/store.h"

int cmd_image(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: msb image ls [-q]\n"
		"       msb image rm IMAGE...\n"
		"       msb image prune\n"
		"       msb image inspect IMAGE\n"
		"       msb image import PATH NAME\n\n"
		"IMAGE is a reference (python, localhost:5000/x:1) or a manifest digest prefix.\n"
		"import takes an OCI layout directory, an OCI or docker-archive tar, or a root\n"
		"filesystem directory, and stores it under NAME (a reference such as\n"
		"microsandbox/python).\n");
}

static void human(uint64_t b, char *buf, size_t len)
{
	if (b >= 1000000000)
		snprintf(buf, len, "%.2f GB", (double)b / 1e9);
	else if (b >= 1000000)
		snprintf(buf, len, "%.1f MB", (double)b / 1e6);
	else
		snprintf(buf, len, "%.1f kB", (double)b / 1e3);
}

static int image_ls(struct oci_store *st, int argc, char **argv)
{
	bool quiet = argc > 1 && strcmp(argv[1], "-q") == 0;
	struct oci_image **v = NULL;
	size_t n = 0;
	struct msb_err err = {0};
	if (oci_store_list(st, &v, &n, &err) < 0)
		return cli_fail("image ls", &err);
	if (!quiet)
		printf("%-50s %-14s %-10s %s\n", "REFERENCE", "DIGEST", "SIZE", "PULLED");
	for (size_t i = 0; i < n; i++) {
		if (quiet) {
			printf("%s\n", v[i]->reference);
			continue;
		}
		char sz[32], when[32];
		human(v[i]->size, sz, sizeof(sz));
		time_t t = (time_t)v[i]->pulled_at;
		struct tm tm;
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M", localtime_r(&t, &tm));
		printf("%-50s %-14.12s %-10s %s\n", v[i]->reference, v[i]->manifest_digest + 7, sz,
		       when);
	}
	oci_image_list_free(v, n);
	return 0;
}

static json_t *strv_to_json(char *const *v)
{
	if (!v)
		return json_null();
	json_t *a = json_array();
	for (size_t i = 0; v[i]; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *opt_str(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int image_inspect(struct oci_store *st, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage_error("image inspect", "expected one IMAGE");
	struct oci_image *img = NULL;
	struct msb_err err = {0};
	if (oci_store_get(st, argv[1], &img, &err) < 0)
		return cli_fail("image inspect", &err);
	json_t *j = json_object();
	json_object_set_new(j, "reference", json_string(img->reference));
	json_object_set_new(j, "manifest_digest", json_string(img->manifest_digest));
	json_object_set_new(j, "index_digest", opt_str(img->index_digest));
	json_object_set_new(j, "config_digest", opt_str(img->config_digest));
	json_object_set_new(j, "media_type", opt_str(img->media_type));
	json_object_set_new(j, "size", json_integer((json_int_t)img->size));
	json_object_set_new(j, "pulled_at", json_integer(img->pulled_at));
	json_object_set_new(j, "rootfs_path", json_string(img->rootfs_path));
	json_object_set_new(j, "rootfs_format", opt_str(img->rootfs_format));
	json_t *c = json_object();
	json_object_set_new(c, "os", opt_str(img->config.os));
	json_object_set_new(c, "architecture", opt_str(img->config.architecture));
	json_object_set_new(c, "env", strv_to_json(img->config.env));
	json_object_set_new(c, "cmd", strv_to_json(img->config.cmd));
	json_object_set_new(c, "entrypoint", strv_to_json(img->config.entrypoint));
	json_object_set_new(c, "working_dir", opt_str(img->config.working_dir));
	json_object_set_new(c, "user", opt_str(img->config.user));
	json_object_set_new(c, "exposed_ports", strv_to_json(img->config.exposed_ports));
	json_object_set_new(j, "config", c);
	json_t *ls = json_array();
	for (size_t i = 0; i < img->n_layers; i++) {
		json_t *l = json_object();
		json_object_set_new(l, "digest", json_string(img->layers[i].digest));
		json_object_set_new(l, "media_type", json_string(img->layers[i].media_type));
		json_object_set_new(l, "size", json_integer((json_int_t)img->layers[i].size));
		json_object_set_new(l, "path", opt_str(img->layers[i].path));
		json_array_append_new(ls, l);
	}
	json_object_set_new(j, "layers", ls);
	char *s = json_dumps(j, JSON_INDENT(2));
	printf("%s\n", s ? s : "{}");
	free(s);
	json_decref(j);
	oci_image_free(img);
	return 0;
}

static int image_rm(struct oci_store *st, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("image rm", "expected at least one IMAGE");
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		struct msb_err err = {0};
		if (oci_store_remove(st, argv[i], &err) < 0)
			rc = cli_fail("image rm", &err);
		else
			printf("Removed %s\n", argv[i]);
	}
	return rc;
}

static int image_prune(struct oci_store *st, int argc, char **argv)
{
	uint64_t freed = 0;
	struct msb_err err = {0};
	if (oci_store_prune(st, &freed, &err) < 0)
		return cli_fail("image prune", &err);
	char sz[32];
	human(freed, sz, sizeof(sz));
	printf("Reclaimed %s\n", sz);
	return 0;
}

static int image_import(struct oci_store *st, int argc, char **argv)
{
	if (argc != 3)
		return cli_usage_error("image import", "expected PATH and NAME");
	struct oci_image *img = NULL;
	struct msb_err err = {0};
	if (oci_import(st, argv[1], argv[2], &img, &err) < 0)
		return cli_fail("image import", &err);
	printf("%s %s imported\n", img->reference, img->manifest_digest);
	oci_image_free(img);
	return 0;
}

int cmd_image(int argc, char **argv)
{
	static const struct {
		const char *name, *alias;
		int (*fn)(struct oci_store *, int, char **);
	} subs[] = {
		{"ls", "list", image_ls},	{"rm", "remove", image_rm},
		{"prune", NULL, image_prune},	{"inspect", NULL, image_inspect},
		{"import", NULL, image_import},
	};
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(argv[1], subs[i].name) != 0 &&
		    (!subs[i].alias || strcmp(argv[1], subs[i].alias) != 0))
			continue;
		struct msb_err err = {0};
		struct oci_store *st = NULL;
		if (oci_store_open(NULL, &st, &err) < 0)
			return cli_fail("image", &err);
		int rc = subs[i].fn(st, argc - 1, argv + 1);
		oci_store_close(st);
		return rc;
	}
	return cli_usage_error("image", "unknown subcommand '%s'", argv[1]);
}
