#include "cli/project_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include "cli/cli.h"
#include "project/lifecycle.h"

int pcli_open(struct pcli *c, bool state)
{
	struct msb_err err = {0};
	if (msb_project_resolve(c->file, false, &c->p, &err) < 0)
		return cli_fail(c->cmd, &err);
	if (msb_project_load(&c->p, &c->sf, &err) < 0)
		goto fail;
	if (state) {
		if (msb_project_state(&c->p, &c->st, &err) < 0)
			goto fail;
		/* "RUNNING" is a claim: rows whose supervisor or VM is gone become
		 * STOPPED before anything reads them. */
		size_t fixed = 0;
		if (msb_state_reconcile(c->st, &fixed, &err) < 0)
			goto fail;
	}
	return 0;
fail:;
	int rc = cli_fail(c->cmd, &err);
	pcli_close(c);
	return rc;
}

int pcli_lock(struct pcli *c)
{
	struct msb_err err = {0};
	/* The directory itself: no lock file to create (a refused command
	 * changes nothing), and `clean` may remove it while holding it. */
	const char *path = c->p.menv;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		msb_err_sys(&err, "opening %s", path);
		return cli_fail(c->cmd, &err);
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			fprintf(stderr,
				"msb %s: another msb up/down/apply/clean works on %s; waiting for "
				"it...\n",
				c->cmd, c->p.dir);
		while (flock(fd, LOCK_EX) < 0) {
			if (errno != EINTR) {
				msb_err_sys(&err, "locking %s", path);
				close(fd);
				return cli_fail(c->cmd, &err);
			}
		}
	}
	c->lock_fd = fd;
	c->locked = true;
	return 0;
}

int pcli_open_locked(struct pcli *c)
{
	int rc = pcli_open(c, true);
	if (rc)
		return rc;
	if ((rc = pcli_lock(c)) != 0)
		pcli_close(c);
	return rc;
}

int pcli_lifecycle_opts(struct pcli *c, int argc, char **argv, int *timeout_ms,
			void (*usage)(FILE *out))
{
	static const struct option with_detach[] = {
		PCLI_LONG_OPTS,
		{"detach", no_argument, NULL, 'd'},
		{0},
	};
	static const struct option with_timeout[] = {
		PCLI_LONG_OPTS,
		{"timeout", required_argument, NULL, 't'},
		{0},
	};
	const struct option *opts = timeout_ms ? with_timeout : with_detach;
	const char *shorts = timeout_ms ? ":" PCLI_SHORT_OPTS "t:" : ":" PCLI_SHORT_OPTS "d";
	const char *cmd = c->cmd;
	int o;
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		switch (o) {
			PCLI_CASES(*c, cmd, usage);
		case 'd':
			break;
		case 't': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end || v < 1 || v > 86400)
				return cli_usage_error(cmd,
						       "--timeout takes whole seconds (1..86400), "
						       "not '%s'",
						       optarg);
			*timeout_ms = (int)v * 1000;
			break;
		}
		default:
			return cli_bad_option(cmd, o, argv);
		}
	}
	return PCLI_GO;
}

int pcli_running(struct pcli *c, const char *name, bool *alive, int *pid)
{
	struct msb_err err = {0};
	struct msb_state_row row;
	bool found = false;
	if (msb_state_get(c->st, name, c->p.config_name, &row, &found, &err) < 0)
		return cli_fail(c->cmd, &err);
	*alive = found && msb_state_row_alive(&row);
	if (pid)
		*pid = found ? (int)row.microvm_pid : 0;
	if (found)
		msb_state_row_clear(&row);
	return 0;
}

char *pcli_self_exe(struct pcli *c, int *rc)
{
	char *exe = msb_self_exe();
	if (!exe) {
		struct msb_err err = {0};
		msb_err_set(&err, MSB_EK_SYSTEM, 0,
			    "cannot find the msb executable (/proc/self/exe)");
		*rc = cli_fail(c->cmd, &err);
	}
	return exe;
}

void pcli_close(struct pcli *c)
{
	if (c->locked)
		close(c->lock_fd);
	c->locked = false;
	if (c->st)
		msb_state_close(c->st);
	c->st = NULL;
	msb_sandboxfile_free(c->sf);
	c->sf = NULL;
	msb_project_release(&c->p);
}

bool pcli_named(char **names, size_t n, const char *name)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

int pcli_check_names(struct pcli *c, char **names, size_t n, bool or_state)
{
	struct msb_err err = {0};
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return cli_usage_error(c->cmd, "'%s' is named twice", names[i]);
		if (msb_sandboxfile_find(c->sf, names[i]))
			continue;
		if (or_state && c->st && msb_sandbox_name_valid(names[i])) {
			struct msb_state_row row;
			bool found = false;
			if (msb_state_get(c->st, names[i], c->p.config_name, &row, &found, &err) <
			    0)
				return cli_fail(c->cmd, &err);
			if (found) {
				msb_state_row_clear(&row);
				continue;
			}
		}
		msb_err_set(&err, MSB_EK_NOT_FOUND, 0,
			    "no sandbox '%s' in %s; run `msb list` to see the names", names[i],
			    c->p.config_path);
		return cli_fail(c->cmd, &err);
	}
	return 0;
}

void pcli_duration(char *buf, size_t len, int64_t s)
{
	if (s < 0)
		snprintf(buf, len, "-");
	else if (s < 60)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600),
			 (long long)(s % 3600 / 60));
	else
		snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400),
			 (long long)(s % 86400 / 3600));
}

void pcli_bytes(char *buf, size_t len, uint64_t b)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	if (b < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)b);
		return;
	}
	double v = (double)b / 1024;
	int u = 0;
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, units[u]);
}

int pcli_stop(struct pcli *c, const char *name, int timeout_ms)
{
	struct msb_err err = {0};
	bool was = false;
	fflush(stdout);
	if (msb_project_stop(&c->p, c->st, name, timeout_ms, &was, &err) < 0)
		return cli_fail(c->cmd, &err);
	if (was)
		printf("Stopped sandbox '%s'\n", name);
	return 0;
}

int pcli_start(struct pcli *c, const char *exe, const struct msb_sandbox *sb, const char *verb)
{
	struct msb_err err = {0};
	fflush(stdout);
	if (msb_project_start_detached(&c->p, exe, sb->name, &err) < 0)
		return cli_fail(c->cmd, &err);
	char hash[MSB_CONFIG_HASH_LEN + 1];
	msb_sandbox_config_hash(sb, hash);
	if (msb_state_set_config_hash(c->st, sb->name, c->p.config_name, hash, &err) < 0)
		return cli_fail(c->cmd, &err);
	struct msb_state_row row;
	bool found = false;
	if (msb_state_get(c->st, sb->name, c->p.config_name, &row, &found, &err) == 0 && found) {
		printf("%s sandbox '%s' (msb-vmm pid %d)\n", verb, sb->name, (int)row.microvm_pid);
		msb_state_row_clear(&row);
	} else {
		printf("%s sandbox '%s'\n", verb, sb->name);
	}
	return 0;
}

int pcli_wait_ready(struct pcli *c, const char *name, struct msb_state_row *row,
		    struct msb_err *err)
{
	const char *e = getenv("MSB_BOOT_TIMEOUT");
	long limit = e ? strtol(e, NULL, 10) : 0;
	if (limit <= 0 || limit > 86400)
		limit = 1800;
	for (long waited = 0;; waited++) {
		bool found = false;
		msb_state_row_clear(row);
		if (msb_state_get(c->st, name, c->p.config_name, row, &found, err) < 0)
			return -1;
		if (!found || !msb_state_row_alive(row) || row->agent_socket[0])
			return 0;
		if (waited >= limit * 5)
			break;
		usleep(200 * 1000);
	}
	return msb_err_set(err, MSB_EK_TIMEOUT, 0,
			   "sandbox '%s' did not finish starting within %ld s; see `msb log %s`",
			   name, limit, name);
}

int pcli_wait_deps(struct pcli *c, const struct msb_sandbox *sb)
{
	struct msb_err err = {0};
	for (size_t i = 0; i < sb->depends_on.n; i++) {
		const char *dep = sb->depends_on.v[i];
		struct msb_state_row row = {0};
		bool found = false;
		if (msb_state_get(c->st, dep, c->p.config_name, &row, &found, &err) < 0)
			return cli_fail(c->cmd, &err);
		bool booting = found && msb_state_row_alive(&row) && !row.agent_socket[0];
		if (booting) {
			printf("Waiting for sandbox '%s' to be up before starting '%s'\n", dep,
			       sb->name);
			fflush(stdout);
			if (pcli_wait_ready(c, dep, &row, &err) < 0) {
				msb_state_row_clear(&row);
				return cli_fail(c->cmd, &err);
			}
		}
		msb_state_row_clear(&row);
	}
	return 0;
}
