/* The project directory (init, -f), the state DB checked against reality, and
 * the exec order. */
#include "test.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "project/exec.h"
#include "common/paths.h"
#include "project/project.h"

static char *tmpdir(struct test_ctx *t)
{
	char *d = strdup("/tmp/msb-proj-XXXXXX");
	if (!d || !mkdtemp(d))
		TEST_FAIL("mkdtemp");
	return d;
}

static void rm_rf(const char *d)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", d);
}

static char *slurp(const char *path)
{
	char *text = NULL;
	size_t len;
	struct msb_err err;
	if (msb_read_file(path, 1 << 20, MSB_EK_USAGE, &text, &len, &err) < 0)
		return NULL;
	return text;
}

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

TEST(init_is_complete_and_idempotent)
{
	_cleanup_free_ char *d = tmpdir(t);
	struct msb_err err = {0};
	struct msb_project p;
	CHECK_INT(msb_project_resolve(d, true, &p, &err), ==, 0);
	CHECK_STR(p.config_name, "Sandboxfile");
	bool created;
	CHECK_INT(msb_project_init(&p, &created, &err), ==, 0);
	CHECK(created);
	char path[512];
	snprintf(path, sizeof(path), "%s/.menv/log", d);
	CHECK(is_dir(path));
	snprintf(path, sizeof(path), "%s/.menv/rw", d);
	CHECK(is_dir(path));
	snprintf(path, sizeof(path), "%s/.menv/sandbox.db", d);
	CHECK(access(path, F_OK) == 0);
	_cleanup_free_ char *cfg = slurp(p.config_path);
	CHECK_STR(cfg, "# Sandbox configurations\nsandboxes:\n");
	snprintf(path, sizeof(path), "%s/.gitignore", d);
	_cleanup_free_ char *gi = slurp(path);
	CHECK_STR(gi, ".menv/\n");
	/* A user's edits survive a second init. */
	FILE *f = fopen(p.config_path, "a");
	fputs("  a: {image: x}\n", f);
	fclose(f);
	f = fopen(path, "w");
	fputs("node_modules\n/.menv", f);
	fclose(f);
	CHECK_INT(msb_project_init(&p, &created, &err), ==, 0);
	CHECK(!created);
	_cleanup_free_ char *cfg2 = slurp(p.config_path);
	CHECK_STR(cfg2, "# Sandbox configurations\nsandboxes:\n  a: {image: x}\n");
	_cleanup_free_ char *gi2 = slurp(path);
	CHECK_STR(gi2, "node_modules\n/.menv");
	f = fopen(path, "w");
	fputs("node_modules", f);
	fclose(f);
	CHECK_INT(msb_project_init(&p, &created, &err), ==, 0);
	_cleanup_free_ char *gi3 = slurp(path);
	CHECK_STR(gi3, "node_modules\n.menv/\n");
	msb_project_release(&p);
	rm_rf(d);
}

TEST(file_option_semantics)
{
	_cleanup_free_ char *d = tmpdir(t);
	struct msb_err err = {0};
	struct msb_project p;
	char path[512];
	/* A file path: its parent is the project, its name the config. */
	snprintf(path, sizeof(path), "%s/dev.yaml", d);
	CHECK_INT(msb_project_resolve(path, false, &p, &err), ==, 0);
	CHECK_STR(p.dir, d);
	CHECK_STR(p.config_name, "dev.yaml");
	CHECK_STR(p.config_path, path);
	struct msb_sandboxfile *sf;
	CHECK_INT(msb_project_load(&p, &sf, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "msb init") != NULL);
	/* init with that file path writes that file. */
	msb_project_release(&p);
	CHECK_INT(msb_project_resolve(path, true, &p, &err), ==, 0);
	CHECK_STR(p.config_name, "dev.yaml");
	CHECK_INT(msb_project_init(&p, NULL, &err), ==, 0);
	CHECK(access(path, F_OK) == 0);
	CHECK_INT(msb_project_load(&p, &sf, &err), ==, 0);
	msb_sandboxfile_free(sf);
	char *lp = msb_project_log_path(&p, "web");
	snprintf(path, sizeof(path), "%s/.menv/log/dev.yaml/web.log", d);
	CHECK_STR(lp, path);
	free(lp);
	char *rw = msb_project_rw_dir(&p, "web");
	snprintf(path, sizeof(path), "%s/.menv/rw/dev.yaml/web", d);
	CHECK_STR(rw, path);
	free(rw);
	msb_project_release(&p);
	/* init -f of a missing directory creates it; others refuse it. */
	snprintf(path, sizeof(path), "%s/new/proj", d);
	CHECK_INT(msb_project_resolve(path, false, &p, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK_INT(msb_project_resolve(path, true, &p, &err), ==, 0);
	CHECK(is_dir(path));
	CHECK_STR(p.config_name, "Sandboxfile");
	msb_project_release(&p);
	/* The config name must be one path segment. */
	snprintf(path, sizeof(path), "%s/..", d);
	CHECK_INT(msb_project_resolve(path, false, &p, &err), ==, 0); /* a directory */
	msb_project_release(&p);
	CHECK_INT(msb_project_resolve("/nonexistent-dir-xyz/Sandboxfile", false, &p, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	rm_rf(d);
}

TEST(state_db_rows_and_reality)
{
	_cleanup_free_ char *d = tmpdir(t);
	char db[512];
	snprintf(db, sizeof(db), "%s/sandbox.db", d);
	struct msb_err err = {0};
	struct msb_state *st;
	CHECK_INT(msb_state_open(db, &st, &err), ==, 0);
	/* A live child as "supervisor", a dead pid as "VM". */
	pid_t child = fork();
	if (child == 0) {
		pause();
		_exit(0);
	}
	CHECK(child > 0);
	CHECK_INT(msb_state_set_running(st, "web", "Sandboxfile", "2026-01-01T00:00:00.000000000Z",
					child, 0, "overlayfs:/a:/b", &err),
		  ==, 0);
	struct msb_state_row row;
	bool found;
	CHECK_INT(msb_state_get(st, "web", "Sandboxfile", &row, &found, &err), ==, 0);
	CHECK(found);
	CHECK_INT(row.status, ==, MSB_STATUS_RUNNING);
	CHECK_INT(row.supervisor_pid, ==, child);
	CHECK(row.supervisor_start > 0);
	CHECK_STR(row.rootfs_paths, "overlayfs:/a:/b");
	CHECK(msb_state_row_alive(&row));
	/* The same pid with another start time (a recycled pid) is not alive. */
	row.supervisor_start++;
	CHECK(!msb_state_row_alive(&row));
	msb_state_row_clear(&row);
	/* Refuses to record a pid that is not running. */
	CHECK_INT(msb_state_set_running(st, "x", "Sandboxfile", "", 999999999, 0, NULL, &err), ==,
		  -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	size_t fixed;
	CHECK_INT(msb_state_reconcile(st, &fixed, &err), ==, 0);
	CHECK_INT(fixed, ==, 0);
	/* The "supervisor" dies: the row reads as stopped after reconcile. */
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	CHECK_INT(msb_state_get(st, "web", "Sandboxfile", &row, &found, &err), ==, 0);
	CHECK(!msb_state_row_alive(&row));
	msb_state_row_clear(&row);
	CHECK_INT(msb_state_reconcile(st, &fixed, &err), ==, 0);
	CHECK_INT(fixed, ==, 1);
	CHECK_INT(msb_state_get(st, "web", "Sandboxfile", &row, &found, &err), ==, 0);
	CHECK_INT(row.status, ==, MSB_STATUS_STOPPED);
	CHECK_INT(row.supervisor_pid, ==, 0);
	msb_state_row_clear(&row);
	/* A second row, a list, a delete. */
	CHECK_INT(msb_state_set_running(st, "api", "dev.yaml", "", getpid(), getpid(), "", &err),
		  ==, 0);
	struct msb_state_row *rows;
	size_t n;
	CHECK_INT(msb_state_list(st, NULL, &rows, &n, &err), ==, 0);
	CHECK_INT(n, ==, 2);
	CHECK_STR(rows[0].name, "api");
	CHECK_STR(rows[1].name, "web");
	msb_state_rows_free(rows, n);
	CHECK_INT(msb_state_list(st, "Sandboxfile", &rows, &n, &err), ==, 0);
	CHECK_INT(n, ==, 1);
	msb_state_rows_free(rows, n);
	CHECK_INT(msb_state_delete(st, "api", "dev.yaml", &err), ==, 0);
	CHECK_INT(msb_state_get(st, "api", "dev.yaml", &row, &found, &err), ==, 0);
	CHECK(!found);
	msb_state_close(st);
	/* Reopening keeps the data and does not migrate twice. */
	CHECK_INT(msb_state_open(db, &st, &err), ==, 0);
	CHECK_INT(msb_state_get(st, "web", "Sandboxfile", &row, &found, &err), ==, 0);
	CHECK(found);
	msb_state_row_clear(&row);
	msb_state_close(st);
	rm_rf(d);
}

TEST(state_db_newer_schema_and_garbage)
{
	_cleanup_free_ char *d = tmpdir(t);
	char db[512];
	snprintf(db, sizeof(db), "%s/sandbox.db", d);
	sqlite3 *raw;
	CHECK_INT(sqlite3_open(db, &raw), ==, SQLITE_OK);
	CHECK_INT(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), ==, SQLITE_OK);
	sqlite3_close(raw);
	struct msb_err err = {0};
	struct msb_state *st;
	CHECK_INT(msb_state_open(db, &st, &err), ==, -1);
	CHECK(strstr(err.msg, "newer msb") != NULL);
	FILE *f = fopen(db, "w");
	fputs("this is not a database, just text long enough to be read as a header......", f);
	fclose(f);
	CHECK_INT(msb_state_open(db, &st, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	rm_rf(d);
}

TEST(proc_start_time)
{
	uint64_t a, b;
	CHECK_INT(msb_proc_start_time(getpid(), &a), ==, 0);
	CHECK_INT(msb_proc_start_time(getpid(), &b), ==, 0);
	CHECK(a == b);
	CHECK_INT(msb_proc_start_time(1, &b), ==, 0);
	CHECK(b <= a);
	CHECK_INT(msb_proc_start_time(0, &b), ==, -1);
	CHECK_INT(msb_proc_start_time(-5, &b), ==, -1);
}

static struct msb_sandboxfile *load(struct test_ctx *t, const char *y)
{
	struct msb_err err = {0};
	struct msb_sandboxfile *sf;
	if (msb_sandboxfile_parse(y, strlen(y), "S", "/p", &sf, &err) < 0)
		TEST_FAIL("%s", err.msg);
	return sf;
}

static void plan_is(struct test_ctx *t, const struct msb_sandbox *sb, const char *script,
		    const char *exec, char *const *args, size_t nargs, enum msb_exec_source source,
		    const char *want)
{
	struct msb_err err = {0};
	struct msb_exec_plan p;
	if (msb_exec_resolve(sb, script, exec, args, nargs, &p, &err) < 0)
		TEST_FAIL("%s", err.msg);
	char got[512] = "";
	for (size_t i = 0; i < p.argc; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "",
			 p.argv[i]);
	CHECK(p.argv[p.argc] == NULL);
	CHECK_INT(p.source, ==, source);
	CHECK_STR(got, want);
	msb_exec_plan_clear(&p);
}

TEST(exec_order)
{
	struct msb_sandboxfile *sf =
		load(t, "sandboxes:\n"
			"  full: {image: x, shell: /bin/bash, command: [python, app.py],\n"
			"         scripts: {start: run, test: pytest}}\n"
			"  cmd: {image: x, shell: /bin/bash, command: [python, app.py]}\n"
			"  sh: {image: x, shell: /bin/bash}\n"
			"  none: {image: x}\n");
	const struct msb_sandbox *full = msb_sandboxfile_find(sf, "full");
	const struct msb_sandbox *cmd = msb_sandboxfile_find(sf, "cmd");
	const struct msb_sandbox *sh = msb_sandboxfile_find(sf, "sh");
	const struct msb_sandbox *none = msb_sandboxfile_find(sf, "none");
	char *args[] = {"-v", "x y"};
	plan_is(t, full, NULL, "ls -l", NULL, 0, MSB_EXEC_FROM_EXEC, "ls -l");
	plan_is(t, full, "test", NULL, args, 2, MSB_EXEC_FROM_SCRIPT,
		"/.sandbox/scripts/test -v x y");
	plan_is(t, full, "shell", NULL, args, 1, MSB_EXEC_FROM_SHELL, "/bin/bash -v");
	plan_is(t, none, "shell", NULL, NULL, 0, MSB_EXEC_FROM_SHELL, "/bin/sh");
	plan_is(t, full, NULL, NULL, NULL, 0, MSB_EXEC_FROM_START, "/.sandbox/scripts/start");
	plan_is(t, cmd, NULL, NULL, NULL, 0, MSB_EXEC_FROM_COMMAND, "python app.py");
	plan_is(t, cmd, NULL, NULL, args, 2, MSB_EXEC_FROM_COMMAND, "python -v x y");
	plan_is(t, sh, NULL, NULL, args, 1, MSB_EXEC_FROM_SHELL, "/bin/bash -v");
	plan_is(t, none, NULL, "true", NULL, 0, MSB_EXEC_FROM_EXEC, "true");
	struct msb_err err = {0};
	struct msb_exec_plan p;
	CHECK_INT(msb_exec_resolve(none, NULL, NULL, NULL, 0, &p, &err), ==, -1);
	CHECK(strstr(err.msg, "nothing to run") != NULL);
	CHECK_INT(msb_exec_resolve(full, "nope", NULL, NULL, 0, &p, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK_INT(msb_exec_resolve(full, "test", "ls", NULL, 0, &p, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	msb_sandboxfile_free(sf);
}

TEST(scripts_written_with_shebang)
{
	struct msb_sandboxfile *sf =
		load(t, "sandboxes:\n"
			"  a: {image: x, shell: /bin/bash,\n"
			"      scripts: {start: \"python app.py\", shell: zsh}}\n"
			"  b: {image: x, scripts: {t: \"echo hi\"}}\n");
	_cleanup_free_ char *d = tmpdir(t);
	struct msb_err err = {0};
	char p[512];
	snprintf(p, sizeof(p), "%s/.sandbox/scripts/stale", d);
	CHECK_INT(msb_mkdir_p(p, 0755, &err), ==, 0);
	CHECK_INT(msb_exec_write_scripts(d, &sf->sandboxes[0], &err), ==, 0);
	CHECK(access(p, F_OK) != 0); /* replaced, not merged */
	snprintf(p, sizeof(p), "%s/.sandbox/scripts/start", d);
	_cleanup_free_ char *start = slurp(p);
	CHECK_STR(start, "#!/bin/bash\npython app.py\n");
	struct stat st;
	CHECK_INT(stat(p, &st), ==, 0);
	CHECK_INT(st.st_mode & 07777, ==, 0750);
	snprintf(p, sizeof(p), "%s/.sandbox/scripts/shell", d);
	_cleanup_free_ char *sh = slurp(p);
	CHECK_STR(sh, "#!/bin/bash\nzsh\n");
	/* A user `shell` script wins over the built-in ~shell. */
	struct msb_exec_plan plan;
	CHECK_INT(msb_exec_resolve(&sf->sandboxes[0], "shell", NULL, NULL, 0, &plan, &err), ==, 0);
	CHECK_STR(plan.argv[0], "/.sandbox/scripts/shell");
	msb_exec_plan_clear(&plan);
	CHECK_INT(msb_exec_write_scripts(d, &sf->sandboxes[1], &err), ==, 0);
	snprintf(p, sizeof(p), "%s/.sandbox/scripts/t", d);
	_cleanup_free_ char *tt = slurp(p);
	CHECK_STR(tt, "#!/bin/sh\necho hi\n");
	snprintf(p, sizeof(p), "%s/.sandbox/scripts/start", d);
	CHECK(access(p, F_OK) != 0);
	msb_sandboxfile_free(sf);
	rm_rf(d);
}

TEST_MAIN(T(init_is_complete_and_idempotent), T(file_option_semantics),
	  T(state_db_rows_and_reality), T(state_db_newer_schema_and_garbage), T(proc_start_time),
	  T(exec_order), T(scripts_written_with_shebang))
