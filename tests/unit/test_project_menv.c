/* .menv/ without a VM: rotating logs, tree removal, clean. */
#include "test.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/paths.h"
#include "project/edit.h"
#include "project/menv.h"

static off_t fsize(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : -1;
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

TEST(log_rotation)
{
	char dir[] = "/tmp/msb-log-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256], old[300];
	snprintf(path, sizeof(path), "%s/log/Sandboxfile/web.log", dir);
	snprintf(old, sizeof(old), "%s.old", path);
	struct msb_err err = {0};
	struct msb_rotlog *l;
	CHECK_INT(msb_rotlog_open(path, 100, &l, &err), ==, 0);
	char buf[200];
	memset(buf, 'x', sizeof(buf));
	CHECK_INT(msb_rotlog_write(l, buf, 60, &err), ==, 0);
	CHECK_INT(msb_rotlog_write(l, buf, 30, &err), ==, 0);
	CHECK_INT(fsize(path), ==, 90);
	CHECK_INT(fsize(old), ==, -1);
	CHECK_INT(msb_rotlog_write(l, buf, 20, &err), ==, 0);
	CHECK_INT(fsize(old), ==, 90);
	CHECK_INT(fsize(path), ==, 20);
	/* Bigger than the limit: rotated, then written whole. */
	CHECK_INT(msb_rotlog_write(l, buf, 150, &err), ==, 0);
	CHECK_INT(fsize(old), ==, 20);
	CHECK_INT(fsize(path), ==, 150);
	msb_rotlog_close(l);
	/* Reopening continues from the file's size. */
	CHECK_INT(msb_rotlog_open(path, 170, &l, &err), ==, 0);
	CHECK_INT(msb_rotlog_write(l, buf, 40, &err), ==, 0);
	CHECK_INT(fsize(path), ==, 40);
	CHECK_INT(fsize(old), ==, 150);
	msb_rotlog_close(l);
	CHECK_INT(msb_remove_tree(dir, &err), ==, 0);
	CHECK(access(dir, F_OK) != 0);
}

TEST(remove_tree_never_follows_symlinks)
{
	char dir[] = "/tmp/msb-rm-XXXXXX", keep[] = "/tmp/msb-keep-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	CHECK(mkdtemp(keep) != NULL);
	char p[512];
	snprintf(p, sizeof(p), "%s/precious", keep);
	put(p, "do not delete");
	snprintf(p, sizeof(p), "%s/a/b/c", dir);
	struct msb_err err = {0};
	CHECK_INT(msb_mkdir_p(p, 0755, &err), ==, 0);
	snprintf(p, sizeof(p), "%s/a/b/c/file", dir);
	put(p, "x");
	snprintf(p, sizeof(p), "%s/a/link", dir);
	CHECK_INT(symlink(keep, p), ==, 0);
	snprintf(p, sizeof(p), "%s/a/b/ro", dir);
	CHECK_INT(mkdir(p, 0500), ==, 0);
	CHECK_INT(msb_remove_tree(dir, &err), ==, 0);
	CHECK(access(dir, F_OK) != 0);
	snprintf(p, sizeof(p), "%s/precious", keep);
	CHECK_INT(fsize(p), ==, 13);
	CHECK_INT(msb_remove_tree(dir, &err), ==, 0); /* missing: fine */
	CHECK_INT(msb_remove_tree(keep, &err), ==, 0);
}

static void make_state(struct test_ctx *t, const struct msb_project *p, const char *name)
{
	struct msb_err err = {0};
	char *rw = msb_project_rw_dir(p, name), *log = msb_project_log_path(p, name);
	char f[512];
	CHECK_INT(msb_mkdir_p(rw, 0755, &err), ==, 0);
	snprintf(f, sizeof(f), "%s/written-inside", rw);
	put(f, "persisted");
	struct msb_rotlog *l;
	CHECK_INT(msb_rotlog_open(log, 0, &l, &err), ==, 0);
	CHECK_INT(msb_rotlog_write(l, "hello\n", 6, &err), ==, 0);
	msb_rotlog_close(l);
	free(rw);
	free(log);
}

TEST(clean_one_and_all)
{
	char dir[] = "/tmp/msb-clean-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	struct msb_err err = {0};
	struct msb_project p;
	CHECK_INT(msb_project_resolve(dir, true, &p, &err), ==, 0);
	CHECK_INT(msb_project_init(&p, NULL, &err), ==, 0);
	const char *names[] = {"web"};
	const struct msb_sandbox_spec spec = {.image = "python"};
	CHECK_INT(msb_sandboxfile_add(p.config_path, names, 1, &spec, &err), ==, 0);
	make_state(t, &p, "web");
	make_state(t, &p, "gone");
	struct msb_state *st;
	CHECK_INT(msb_project_state(&p, &st, &err), ==, 0);
	CHECK_INT(msb_state_set_running(st, "web", "Sandboxfile", "", getpid(), 0, "", &err), ==,
		  0);
	CHECK_INT(msb_state_set_running(st, "gone", "Sandboxfile", "", getpid(), 0, "", &err), ==,
		  0);
	CHECK_INT(msb_state_set_stopped(st, "gone", "Sandboxfile", &err), ==, 0);
	/* web is configured: needs --force; and it "runs" (our pid): refused even so. */
	CHECK_INT(msb_project_clean(&p, "web", false, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	CHECK(strstr(err.msg, "msb remove web") != NULL);
	CHECK_INT(msb_project_clean(&p, "web", true, &err), ==, -1);
	CHECK(strstr(err.msg, "running") != NULL);
	char *rw = msb_project_rw_dir(&p, "web");
	CHECK(access(rw, F_OK) == 0);
	free(rw);
	/* gone is not configured and stopped: cleaned, row and files removed. */
	CHECK_INT(msb_project_clean(&p, "gone", false, &err), ==, 0);
	char *grw = msb_project_rw_dir(&p, "gone"), *glog = msb_project_log_path(&p, "gone");
	CHECK(access(grw, F_OK) != 0);
	CHECK(access(glog, F_OK) != 0);
	free(grw);
	free(glog);
	struct msb_state_row row;
	bool found;
	CHECK_INT(msb_state_get(st, "gone", "Sandboxfile", &row, &found, &err), ==, 0);
	CHECK(!found);
	CHECK_INT(msb_state_set_stopped(st, "web", "Sandboxfile", &err), ==, 0);
	msb_state_close(st);
	CHECK_INT(msb_project_clean(&p, "web", true, &err), ==, 0);
	CHECK_INT(msb_project_clean(&p, "../etc", true, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	/* The whole .menv: needs --force while the Sandboxfile exists. */
	CHECK_INT(msb_project_clean(&p, NULL, false, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_STATE);
	CHECK(access(p.menv, F_OK) == 0);
	CHECK_INT(msb_project_clean(&p, NULL, true, &err), ==, 0);
	CHECK(access(p.menv, F_OK) != 0);
	CHECK(access(p.config_path, F_OK) == 0);
	msb_project_release(&p);
	CHECK_INT(msb_remove_tree(dir, &err), ==, 0);
}

TEST_MAIN(T(log_rotation), T(remove_tree_never_follows_symlinks), T(clean_one_and_all))
