/* msb log NAME [-F] [-t N]: a sandbox's log (.menv/log/<config>/<name>.log and
 * the rotated .old before it): the guest console and, for sandboxes started
 * in the background, the output of what they run. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/project_cli.h"
#include "common/cleanup.h"
#include "common/io.h"
#include "project/menv.h"

int cmd_log(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb log NAME [-f PATH] [-F] [-t N]\n\n"
		     "Print the sandbox's log: its guest console and the output of what it ran\n"
		     "in the background (msb up, msb run -d).  The log is rotated at 10 MiB: the\n"
		     "previous part (NAME.log.old) is printed first.\n\n"
		     "Options:\n" PCLI_OPTS_HELP
		     "  -F, --follow     keep printing what is appended (across rotations) until\n"
		     "                   interrupted\n"
		     "  -t, --tail N     only the last N lines\n");
}

/* Copy fd from its offset to the end; -1 when stdout is gone. */
static int copy_rest(int fd)
{
	char buf[65536];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		if (msb_write_all(1, buf, (size_t)r) < 0)
			return -1;
	}
}

static int follow(const char *path, int fd)
{
	struct stat cur;
	if (fd >= 0 && fstat(fd, &cur) < 0)
		return -1;
	for (;;) {
		if (fd >= 0 && copy_rest(fd) < 0)
			return 0;
		struct timespec d = {0, 250 * 1000 * 1000};
		nanosleep(&d, NULL);
		struct stat now;
		if (stat(path, &now) < 0)
			continue; /* between the rename and the new file */
		if (fd >= 0 && now.st_ino == cur.st_ino && now.st_dev == cur.st_dev) {
			off_t off = lseek(fd, 0, SEEK_CUR);
			if (now.st_size < off)
				lseek(fd, 0, SEEK_SET); /* truncated */
			continue;
		}
		/* Rotated (or created): finish the old file, go on with the new one. */
		if (fd >= 0) {
			if (copy_rest(fd) < 0)
				return 0;
			close(fd);
		}
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && fstat(fd, &cur) < 0) {
			close(fd);
			fd = -1;
		}
	}
}

int cmd_log(int argc, char **argv)
{
	const char *cmd = "log";
	static const struct option opts[] = {
		PCLI_LONG_OPTS,
		{"follow", no_argument, NULL, 'F'},
		{"tail", required_argument, NULL, 't'},
		{0},
	};
	struct pcli c = {.cmd = cmd};
	bool fol = false;
	unsigned long tail = 0;
	bool has_tail = false;
	int o;
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":" PCLI_SHORT_OPTS "Ft:", opts, NULL)) != -1) {
		switch (o) {
			PCLI_CASES(c, cmd, usage);
		case 'F':
			fol = true;
			break;
		case 't': {
			char *end;
			errno = 0;
			tail = strtoul(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || errno)
				return cli_usage_error(
					cmd, "--tail takes a number of lines, not '%s'", optarg);
			has_tail = true;
			break;
		}
		default:
			return cli_bad_option(cmd, o, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error(cmd, "which sandbox? msb log NAME");
	if (argc - optind > 1)
		return cli_usage_error(cmd, "one sandbox at a time; unexpected '%s'",
				       argv[optind + 1]);
	char *name = argv[optind];
	int rc = pcli_open(&c, false);
	if (rc)
		return rc;
	struct msb_err err = {0};
	_cleanup_free_ char *path = NULL, *old = NULL;
	_cleanup_close_ int fd = -1, ofd = -1;
	if (!msb_sandbox_name_valid(name)) {
		rc = cli_usage_error(cmd, "'%s' is not a sandbox name", name);
		goto out;
	}
	path = msb_project_log_path(&c.p, name);
	if (!path || asprintf(&old, "%s.old", path) < 0) {
		old = NULL;
		msb_err_set(&err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		rc = cli_fail(cmd, &err);
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ofd = open(old, O_RDONLY | O_CLOEXEC);
	/* A sandbox removed from the file still has its log until `msb clean`. */
	if (!msb_sandboxfile_find(c.sf, name) && fd < 0 && ofd < 0) {
		msb_err_set(&err, MSB_EK_NOT_FOUND, 0,
			    "no sandbox '%s' in %s; run `msb list` to see the names", name,
			    c.p.config_path);
		rc = cli_fail(cmd, &err);
		goto out;
	}
	if (fd < 0 && ofd < 0 && !fol) {
		fprintf(stderr,
			"msb log: sandbox '%s' has no log yet (it has not run); start it with "
			"`msb up %s`\n",
			name, name);
		goto out;
	}
	unsigned long left = tail;
	if (fd >= 0 && has_tail) {
		int64_t off = msb_log_tail_offset(fd, tail, 0, &left);
		lseek(fd, off > 0 ? (off_t)off : 0, SEEK_SET);
	}
	if (ofd >= 0 && (!has_tail || left > 0)) {
		unsigned long ignored;
		int64_t off = has_tail ? msb_log_tail_offset(ofd, left, 0, &ignored) : 0;
		lseek(ofd, off > 0 ? (off_t)off : 0, SEEK_SET);
		if (copy_rest(ofd) < 0)
			goto out;
	}
	if (fd >= 0 && copy_rest(fd) < 0)
		goto out;
	if (fol) {
		follow(path, fd);
		fd = -1; /* follow owns and closes it */
	}
out:
	pcli_close(&c);
	return rc;
}
