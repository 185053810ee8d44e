/* msb pull IMAGE: fetch an image into the store (always asking the registry). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "oci/pull.h"

int cmd_pull(int argc, char **argv);

struct progress {
	bool tty, quiet;
	unsigned drawn; /* lines drawn last time (tty) */
	bool *announced, *reported;
	size_t n;
};

static void human(uint64_t b, char *buf, size_t len)
{
	if (b >= 1000000)
		snprintf(buf, len, "%.1f MB", (double)b / 1e6);
	else if (b >= 1000)
		snprintf(buf, len, "%.1f kB", (double)b / 1e3);
	else
		snprintf(buf, len, "%" PRIu64 " B", b);
}

static void on_progress(void *ctx, const struct oci_fetch *items, size_t n)
{
	struct progress *p = ctx;
	if (p->quiet)
		return;
	if (p->n != n) {
		free(p->announced);
		free(p->reported);
		p->announced = calloc(n, sizeof(bool));
		p->reported = calloc(n, sizeof(bool));
		p->n = n;
		if (!p->announced || !p->reported) {
			p->n = 0;
			return;
		}
	}
	if (p->tty) {
		if (p->drawn)
			fprintf(stderr, "\033[%uA", p->drawn);
		for (size_t i = 0; i < n; i++) {
			const struct oci_fetch *f = &items[i];
			char d[32], t[32];
			human(f->done, d, sizeof(d));
			human(f->size, t, sizeof(t));
			const char *state = f->skipped	  ? "already in the store"
					    : f->finished ? "done"
					    : f->done	  ? "downloading"
							  : "waiting";
			unsigned pct = f->size ? (unsigned)(f->done * 100 / f->size) : 100;
			fprintf(stderr, "\033[2K%.19s  %-20s %3u%%  %s / %s%s\n", f->digest + 7,
				state, pct, d, t, f->resumed ? " (resumed)" : "");
		}
		p->drawn = (unsigned)n;
		fflush(stderr);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct oci_fetch *f = &items[i];
		char t[32];
		human(f->size, t, sizeof(t));
		if (!p->announced[i] && !f->finished) {
			fprintf(stderr, "%.19s: downloading %s%s\n", f->digest + 7, t,
				f->resumed ? " (resuming)" : "");
			p->announced[i] = true;
		}
		if (!p->reported[i] && f->finished) {
			fprintf(stderr, "%.19s: %s\n", f->digest + 7,
				f->skipped ? "already in the store" : "done");
			p->reported[i] = true;
		}
	}
}

static void on_status(void *ctx, const char *msg)
{
	struct progress *p = ctx;
	if (!p->quiet)
		fprintf(stderr, "%s\n", msg);
}

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb pull [-q|--quiet] IMAGE\n\n"
		     "Fetch IMAGE (e.g. python, node:20, ghcr.io/org/app@sha256:...) from its\n"
		     "registry into the store, verify it and build its root filesystem image.\n"
		     "The registry is always asked; an image already stored is not fetched again.\n"
		     "Settings: $MICROSANDBOX_HOME/config.json (see docs/images.md).\n");
}

int cmd_pull(int argc, char **argv)
{
	static const struct option opts[] = {
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct progress p = {.tty = cli_is_tty(2)};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			p.quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return cli_usage_error("pull", "unknown option");
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("pull", "expected one IMAGE");
	struct msb_err err = {0};
	struct oci_store *st = NULL;
	if (oci_store_open(NULL, &st, &err) < 0)
		return cli_fail("pull", &err);
	struct oci_pull_opts o = {.progress = on_progress, .status = on_status, .ctx = &p};
	struct oci_image *img = NULL;
	bool fresh = false;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = oci_pull(st, argv[optind], &o, &img, &fresh, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	free(p.announced);
	free(p.reported);
	if (r < 0) {
		oci_store_close(st);
		return cli_fail("pull", &err);
	}
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%s %s %s\n", img->reference, img->manifest_digest, fresh ? "up to date" : "pulled");
	if (!p.quiet)
		fprintf(stderr, "%s in %.2f s; root filesystem %s (%s)\n",
			fresh ? "checked" : "pulled", secs, img->rootfs_path, img->rootfs_format);
	oci_image_free(img);
	oci_store_close(st);
	return 0;
}
