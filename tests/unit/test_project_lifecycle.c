/* What the project verbs build on without a VM: the config hash `msb apply`
 * compares, launchers of `msb install` (quoting, marker, refusals), disk
 * usage, and the state DB's schema v2 migration. */
#include "test.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "project/install.h"
#include "project/lifecycle.h"
#include "project/menv.h"
#include "project/sandboxfile.h"
#include "project/state.h"

static char *tmpdir(struct test_ctx *t)
{
	char *d = strdup("/tmp/msb-life-XXXXXX");
	if (!d || !mkdtemp(d))
		TEST_FAIL("mkdtemp");
	return d;
}

static void rm_rf(const char *d)
{
	struct msb_err err;
	msb_remove_tree(d, &err);
}

/* The hash of sandbox `name` in the YAML text. */
static void hash_of(struct test_ctx *t, const char *yaml, const char *name, char *out)
{
	struct msb_sandboxfile *sf = NULL;
	struct msb_err err = {0};
	if (msb_sandboxfile_parse(yaml, strlen(yaml), "Sandboxfile", "/p", &sf, &err) < 0)
		TEST_FAIL("parse: %s", err.msg);
	const struct msb_sandbox *sb = msb_sandboxfile_find(sf, name);
	if (!sb) {
		msb_sandboxfile_free(sf);
		TEST_FAIL("no %s", name);
	}
	msb_sandbox_config_hash(sb, out);
	msb_sandboxfile_free(sf);
}

TEST(config_hash_tracks_what_a_start_uses)
{
	char a[32], b[32];
	const char *base = "sandboxes:\n  w:\n    image: python\n    memory: 512\n"
			   "    envs: [A=1]\n    scripts: {start: run}\n";
	hash_of(t, base, "w", a);
	CHECK_INT(strlen(a), ==, MSB_CONFIG_HASH_LEN);
	/* Not how it is written: key order, comments, flow vs block, defaults. */
	hash_of(t,
		"# c\nsandboxes:\n  w: {scripts: {start: run}, envs: [\"A=1\"], memory: 512, "
		"image: python, cpus: 1}  # c\n",
		"w", b);
	CHECK_STR(a, b);
	/* Each of these is a different start. */
	static const char *const variants[] = {
		"sandboxes:\n  w:\n    image: python:3\n    memory: 512\n    envs: [A=1]\n    "
		"scripts: {start: run}\n",
		"sandboxes:\n  w:\n    image: python\n    memory: 513\n    envs: [A=1]\n    "
		"scripts: {start: run}\n",
		"sandboxes:\n  w:\n    image: python\n    memory: 512\n    envs: [A=2]\n    "
		"scripts: {start: run}\n",
		"sandboxes:\n  w:\n    image: python\n    memory: 512\n    envs: [A=1]\n    "
		"scripts: {start: run2}\n",
		"sandboxes:\n  w:\n    image: python\n    memory: 512\n    envs: [A=1]\n    "
		"scripts: {start: run}\n    workdir: /x\n",
		"sandboxes:\n  w:\n    image: python\n    memory: 512\n    envs: [A=1]\n    "
		"scripts: {start: run}\n    command: [a]\n",
		"sandboxes:\n  w:\n    image: python\n    memory: 512\n    envs: [A=1]\n    "
		"scripts: {start: run}\n    shell: /bin/bash\n",
		"sandboxes:\n  w:\n    image: python\n    memory: 512\n    envs: [A=1]\n    "
		"scripts: {start: run}\n    cpus: 2\n",
		"sandboxes:\n  w:\n    image: python\n    memory: 512\n    envs: [A=1]\n    "
		"scripts: {start: run}\n    scope: none\n",
		/* "A=1" + "" vs "A" + "=1"-like splits must not collide. */
		"sandboxes:\n  w:\n    image: python\n    memory: 512\n    envs: [A==1]\n    "
		"scripts: {start: run}\n",
	};
	char seen[sizeof(variants) / sizeof(variants[0])][32];
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		hash_of(t, variants[i], "w", seen[i]);
		if (strcmp(seen[i], a) == 0)
			TEST_FAIL("variant %zu hashes as the original", i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(seen[i], seen[j]) == 0)
				TEST_FAIL("variants %zu and %zu collide", i, j);
	}
}

TEST(shell_quote)
{
	struct {
		const char *in, *out;
	} cases[] = {
		{"", "''"},
		{"abc", "'abc'"},
		{"it's", "'it'\\''s'"},
		{"$HOME `x` \"q\" \\", "'$HOME `x` \"q\" \\'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		_cleanup_free_ char *q = msb_shell_quote(cases[i].in);
		CHECK_STR(q, cases[i].out);
	}
}

TEST(launcher_text_exact)
{
	const char *opts[] = {"--memory", "512", "py~x"};
	const char *args[] = {"-u"};
	struct msb_err err = {0};
	_cleanup_free_ char *text = NULL;
	CHECK_INT(msb_launcher_text("py", "/opt/msb bin/msb", opts, 3, args, 1, &text, &err), ==,
		  0);
	CHECK_STR(text, "#!/bin/sh\n# MSB-ALIAS: py\n"
			"# A sandbox installed by `msb install`; `msb uninstall py` removes it.\n"
			"exec '/opt/msb bin/msb' exe '--memory' '512' 'py~x' -- '-u' \"$@\"\n");
	char *bad = NULL;
	CHECK_INT(msb_launcher_text("a/b", "/msb", opts, 3, NULL, 0, &bad, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	const char *nl[] = {"--env", "A=1\nrm -rf /", "img"};
	CHECK_INT(msb_launcher_text("a", "/msb", nl, 3, NULL, 0, &bad, &err), ==, -1);
	CHECK(bad == NULL);
}

static void put(struct test_ctx *t, const char *dir, const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		TEST_FAIL("writing %s", path);
	fputs(text, f);
	fclose(f);
}

TEST(launchers_install_list_remove)
{
	_cleanup_free_ char *d = tmpdir(t);
	char bin[256], path[300];
	snprintf(bin, sizeof(bin), "%s/bin", d);
	struct msb_err err = {0};
	_cleanup_free_ char *text = NULL;
	const char *opts[] = {"img"};
	CHECK_INT(msb_launcher_text("tool", "/msb", opts, 1, NULL, 0, &text, &err), ==, 0);
	CHECK_INT(msb_launcher_install(bin, "tool", text, false, &err), ==, 0);
	snprintf(path, sizeof(path), "%s/tool", bin);
	struct stat st;
	CHECK_INT(stat(path, &st), ==, 0);
	CHECK_INT(st.st_mode & 07777, ==, 0755);
	CHECK(msb_launcher_is_ours(path, "tool"));
	CHECK(msb_launcher_is_ours(path, NULL));
	CHECK(!msb_launcher_is_ours(path, "too"));
	CHECK(!msb_launcher_is_ours(path, "tools"));
	CHECK_INT(msb_launcher_install(bin, "tool", text, false, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_EXISTS);
	CHECK_INT(msb_launcher_install(bin, "tool", text, true, &err), ==, 0);
	/* Foreign files, a symlink to a launcher, a directory: not ours. */
	put(t, bin, "other", "#!/bin/sh\necho hi\n");
	put(t, bin, "fake", "#!/bin/bash\n# MSB-ALIAS: fake\n");
	char link[300];
	snprintf(link, sizeof(link), "%s/alias", bin);
	CHECK_INT(symlink(path, link), ==, 0);
	snprintf(path, sizeof(path), "%s/dir", bin);
	CHECK_INT(mkdir(path, 0755), ==, 0);
	CHECK_INT(msb_launcher_install(bin, "other", text, true, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_EXISTS);
	char **names;
	size_t n;
	CHECK_INT(msb_launcher_list(bin, &names, &n, &err), ==, 0);
	CHECK_INT(n, ==, 1);
	CHECK_STR(names[0], "tool");
	free(names[0]);
	free(names);
	CHECK_INT(msb_launcher_remove(bin, "other", &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	CHECK_INT(msb_launcher_remove(bin, "alias", &err), ==, -1);
	CHECK_INT(msb_launcher_remove(bin, "nope", &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK_INT(msb_launcher_remove(bin, "../x", &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	CHECK_INT(msb_launcher_remove(bin, "tool", &err), ==, 0);
	snprintf(path, sizeof(path), "%s/other", bin);
	CHECK_INT(access(path, F_OK), ==, 0);
	snprintf(path, sizeof(path), "%s/missing", d);
	CHECK_INT(msb_launcher_list(path, &names, &n, &err), ==, 0);
	CHECK_INT(n, ==, 0);
	rm_rf(d);
}

TEST(install_default_names)
{
	struct {
		const char *image, *script, *want;
	} ok[] = {
		{"python", NULL, "python"},
		{"docker.io/library/python:3.11", NULL, "python"},
		{"localhost:5000/team/tool@sha256:abcd", NULL, "tool"},
		{"ghcr.io/x/y:1", "lint", "lint"},
	};
	struct msb_err err = {0};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		_cleanup_free_ char *name = NULL;
		CHECK_INT(msb_install_default_name(ok[i].image, ok[i].script, &name, &err), ==, 0);
		CHECK_STR(name, ok[i].want);
	}
	char *name = NULL;
	CHECK_INT(msb_install_default_name("x/.hidden", NULL, &name, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	CHECK(strstr(err.msg, "msb install x/.hidden NAME") != NULL);
}

TEST(tree_usage_counts_allocated_bytes)
{
	_cleanup_free_ char *d = tmpdir(t);
	char path[300];
	snprintf(path, sizeof(path), "%s/sparse", d);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	CHECK_INT(fseek(f, 1 << 30, SEEK_SET), ==, 0); /* a 1 GiB hole */
	fputs("x", f);
	fclose(f);
	uint64_t bytes = 0;
	CHECK_INT(msb_tree_usage(d, &bytes), ==, 0);
	CHECK_INT(bytes, <, 1 << 20);
	snprintf(path, sizeof(path), "%s/none", d);
	CHECK_INT(msb_tree_usage(path, &bytes), ==, -1);
	rm_rf(d);
}

TEST(state_v1_db_migrates_to_config_hash)
{
	_cleanup_free_ char *d = tmpdir(t);
	char path[300];
	snprintf(path, sizeof(path), "%s/sandbox.db", d);
	sqlite3 *raw;
	CHECK_INT(sqlite3_open(path, &raw), ==, SQLITE_OK);
	/* The schema as version 1 wrote it, with one row. */
	CHECK_INT(
		sqlite3_exec(raw,
			     "CREATE TABLE sandboxes (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
			     "config_file TEXT NOT NULL, config_last_modified TEXT NOT NULL, "
			     "status TEXT NOT NULL, supervisor_pid INTEGER NOT NULL DEFAULT 0, "
			     "supervisor_start INTEGER NOT NULL DEFAULT 0, microvm_pid INTEGER NOT "
			     "NULL DEFAULT 0, microvm_start INTEGER NOT NULL DEFAULT 0, boot_id "
			     "TEXT NOT NULL DEFAULT '', rootfs_paths TEXT NOT NULL DEFAULT '', "
			     "created_at INTEGER NOT NULL DEFAULT 0, modified_at INTEGER NOT NULL "
			     "DEFAULT 0, UNIQUE (name, config_file));"
			     "CREATE TABLE sandbox_metrics (id INTEGER PRIMARY KEY, sandbox_id "
			     "INTEGER NOT NULL, cpu_usage REAL, memory_usage INTEGER, disk_usage "
			     "INTEGER, created_at INTEGER NOT NULL DEFAULT 0);"
			     "INSERT INTO sandboxes (name, config_file, config_last_modified, "
			     "status) VALUES ('a', 'Sandboxfile', 't', 'STOPPED');"
			     "PRAGMA user_version = 1;",
			     NULL, NULL, NULL),
		==, SQLITE_OK);
	sqlite3_close(raw);
	struct msb_state *st;
	struct msb_err err = {0};
	CHECK_INT(msb_state_open(path, &st, &err), ==, 0);
	struct msb_state_row row;
	bool found;
	CHECK_INT(msb_state_get(st, "a", "Sandboxfile", &row, &found, &err), ==, 0);
	CHECK(found);
	CHECK_STR(row.config_hash, "");
	msb_state_row_clear(&row);
	CHECK_INT(msb_state_set_config_hash(st, "a", "Sandboxfile", "00ff", &err), ==, 0);
	CHECK_INT(msb_state_get(st, "a", "Sandboxfile", &row, &found, &err), ==, 0);
	CHECK_STR(row.config_hash, "00ff");
	msb_state_row_clear(&row);
	/* Metrics: none yet, then the newest row. */
	struct msb_metrics m;
	CHECK_INT(msb_state_latest_metrics(st, "a", "Sandboxfile", &m, &found, &err), ==, 0);
	CHECK(!found);
	msb_state_close(st);
	CHECK_INT(sqlite3_open(path, &raw), ==, SQLITE_OK);
	CHECK_INT(sqlite3_exec(raw,
			       "INSERT INTO sandbox_metrics (sandbox_id, cpu_usage, memory_usage, "
			       "disk_usage, created_at) VALUES (1, 5.5, 100, NULL, 10), (1, 12.5, "
			       "200, NULL, 20);",
			       NULL, NULL, NULL),
		  ==, SQLITE_OK);
	sqlite3_close(raw);
	CHECK_INT(msb_state_open(path, &st, &err), ==, 0);
	CHECK_INT(msb_state_latest_metrics(st, "a", "Sandboxfile", &m, &found, &err), ==, 0);
	CHECK(found);
	CHECK(m.cpu_percent > 12.4 && m.cpu_percent < 12.6);
	CHECK_INT(m.memory_bytes, ==, 200);
	CHECK_INT(m.disk_bytes, ==, -1);
	CHECK_INT(m.at, ==, 20);
	/* Samples appended; the newest 100 are kept; NULL fields read as -1. */
	for (int i = 0; i < 105; i++) {
		struct msb_metrics add = {
			.cpu_percent = i, .memory_bytes = -1, .disk_bytes = 7, .at = 100 + i};
		CHECK_INT(msb_state_add_metrics(st, "a", "Sandboxfile", &add, &err), ==, 0);
	}
	CHECK_INT(msb_state_latest_metrics(st, "a", "Sandboxfile", &m, &found, &err), ==, 0);
	CHECK(found && m.cpu_percent > 103.9 && m.memory_bytes == -1 && m.disk_bytes == 7);
	msb_state_close(st);
	CHECK_INT(sqlite3_open(path, &raw), ==, SQLITE_OK);
	sqlite3_stmt *q;
	CHECK_INT(sqlite3_prepare_v2(raw, "SELECT count(*) FROM sandbox_metrics", -1, &q, NULL), ==,
		  SQLITE_OK);
	CHECK_INT(sqlite3_step(q), ==, SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(q, 0), ==, 100);
	sqlite3_finalize(q);
	sqlite3_close(raw);
	rm_rf(d);
}

TEST(uptime_of_this_process)
{
	uint64_t ticks;
	CHECK_INT(msb_proc_start_time(getpid(), &ticks), ==, 0);
	int64_t up = msb_proc_uptime_s(ticks);
	CHECK(up >= 0 && up < 3600);
}

TEST_MAIN(T(config_hash_tracks_what_a_start_uses), T(shell_quote), T(launcher_text_exact),
	  T(launchers_install_list_remove), T(install_default_names),
	  T(tree_usage_counts_allocated_bytes), T(state_v1_db_migrates_to_config_hash),
	  T(uptime_of_this_process))
