/* Volumes (src/sandbox/volumes.c): -v syntax, host checks, limits, and what
 * msb-vmm (--fs) and SETUP (MOUNT) get. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "project/pairs.h"
#include "sandbox/snapshot.h"
#include "sandbox/volumes.h"
#include "test.h"

static char dir[256];

static void make_dirs(struct test_ctx *t)
{
	snprintf(dir, sizeof(dir), "%s/msb-vol-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir));
	char p[300];
	for (int i = 0; i < 6; i++) {
		snprintf(p, sizeof(p), "%s/d%d", dir, i);
		CHECK(mkdir(p, 0755) == 0);
	}
	snprintf(p, sizeof(p), "%s/file", dir);
	FILE *f = fopen(p, "w");
	CHECK(f);
	fclose(f);
}

static void remove_dirs(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

TEST(parse_and_argv)
{
	make_dirs(t);
	struct sandbox_volumes v = {0};
	struct msb_err err = {0};
	CHECK_INT(sandbox_volumes_add(&v, "d0:/data", dir, &err), ==, 0);
	CHECK_INT(sandbox_volumes_add(&v, "./d1:/srv/ro:ro", dir, &err), ==, 0);
	char abs2[300];
	snprintf(abs2, sizeof(abs2), "%s/d2:/w:rw", dir);
	CHECK_INT(sandbox_volumes_add(&v, abs2, NULL, &err), ==, 0);
	CHECK_INT(v.n, ==, 3);
	char want[300];
	snprintf(want, sizeof(want), "%s/d1", dir);
	CHECK_STR(v.v[1].host, want);
	CHECK_STR(v.v[1].guest, "/srv/ro");
	CHECK(v.v[1].readonly && !v.v[0].readonly && !v.v[2].readonly);

	struct msb_strv a = {0};
	CHECK_INT(sandbox_volumes_fs_argv(&a, SANDBOX_FS_SLOTS, &v, &err), ==, 0);
	CHECK_INT(a.n, ==, 2 * SANDBOX_FS_SLOTS);
	CHECK_STR(a.v[0], "--fs");
	snprintf(want, sizeof(want), "msbvol1=%s/d1,ro", dir);
	CHECK_STR(a.v[3], want);
	CHECK_STR(a.v[7], "msbvol3");
	msb_strv_clear(&a);
	/* Fewer slots than volumes (an old snapshot's VM). */
	CHECK_INT(sandbox_volumes_fs_argv(&a, 2, &v, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	msb_strv_clear(&a);
	CHECK_INT(sandbox_volumes_fs_argv(&a, 2, NULL, &err), ==, 0);
	CHECK_STR(a.v[1], "msbvol0");
	msb_strv_clear(&a);

	struct msb_strv m = {0};
	CHECK_INT(sandbox_volumes_mounts(&v, &m, &err), ==, 0);
	CHECK_INT(m.n, ==, 3);
	CHECK_STR(m.v[0], "msbvol0 rw /data");
	CHECK_STR(m.v[1], "msbvol1 ro /srv/ro");
	msb_strv_clear(&m);
	sandbox_volumes_clear(&v);

	/* Without a base directory a relative host path is the working directory's. */
	char here[PATH_MAX], real[PATH_MAX];
	CHECK(getcwd(here, sizeof(here)) && realpath(dir, real));
	CHECK(chdir(real) == 0);
	int r = sandbox_volumes_add(&v, "./d3:/c", NULL, &err);
	CHECK(chdir(here) == 0);
	CHECK_INT(r, ==, 0);
	snprintf(want, sizeof(want), "%s/d3", real);
	CHECK_STR(v.v[0].host, want);
	sandbox_volumes_clear(&v);
	remove_dirs();
}

TEST(refusals)
{
	make_dirs(t);
	struct sandbox_volumes v = {0};
	struct msb_err err = {0};
	static const struct {
		const char *spec;
		enum msb_err_kind kind;
		const char *says;
	} bad[] = {
		{"d0:relative", MSB_EK_USAGE, "absolute"},
		{":/a", MSB_EK_USAGE, "not a volume"},
		{"d0:", MSB_EK_USAGE, "not a volume"},
		{"d0:/", MSB_EK_USAGE, "other than /"},
		{"d0:/a/../b", MSB_EK_USAGE, "'..'"},
		{"d0:/a:rx", MSB_EK_USAGE, "HOST:GUEST:ro"},
		{"missing:/a", MSB_EK_NOT_FOUND, "create it"},
		{"file:/a", MSB_EK_USAGE, "not a directory"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		if (sandbox_volumes_add(&v, bad[i].spec, dir, &err) == 0)
			TEST_FAIL("'%s' was accepted", bad[i].spec);
		CHECK_INT(err.kind, ==, bad[i].kind);
		if (!strstr(err.msg, bad[i].says))
			TEST_FAIL("'%s': '%s' does not say '%s'", bad[i].spec, err.msg,
				  bad[i].says);
	}
	CHECK_INT(v.n, ==, 0);
	/* Overlapping guest paths, then more volumes than slots. */
	CHECK_INT(sandbox_volumes_add(&v, "d0:/data", dir, &err), ==, 0);
	CHECK_INT(sandbox_volumes_add(&v, "d1:/data/sub", dir, &err), ==, -1);
	CHECK(strstr(err.msg, "overlaps"));
	for (int i = 1; i < SANDBOX_FS_SLOTS; i++) {
		char s[32];
		snprintf(s, sizeof(s), "d%d:/v%d", i, i);
		CHECK_INT(sandbox_volumes_add(&v, s, dir, &err), ==, 0);
	}
	CHECK_INT(sandbox_volumes_add(&v, "d5:/v5", dir, &err), ==, -1);
	CHECK(strstr(err.msg, "at most 4 volumes"));
	CHECK_INT(v.n, ==, SANDBOX_FS_SLOTS);
	sandbox_volumes_clear(&v);
	remove_dirs();
}

/* A Sandboxfile's entries (resolved), with a mode suffix, then the command
 * line's merged in and checked as one set. */
TEST(pairs_and_merge)
{
	make_dirs(t);
	char h0[300], h1[300];
	snprintf(h0, sizeof(h0), "%s/d0", dir);
	snprintf(h1, sizeof(h1), "%s/d1", dir);
	struct msb_path_pair p[2] = {
		{.host = (char *)"./d0", .guest = (char *)"/data:ro", .host_abs = h0},
		{.host = (char *)"./d1", .guest = (char *)"/w", .host_abs = h1}};
	struct sandbox_volumes v = {0}, cli = {0};
	struct msb_err err = {0};
	CHECK_INT(sandbox_volumes_from_pairs(&v, p, 2, &err), ==, 0);
	CHECK_STR(v.v[0].guest, "/data");
	CHECK(v.v[0].readonly && !v.v[1].readonly);
	CHECK_INT(sandbox_volumes_add(&cli, "d2:/extra", dir, &err), ==, 0);
	CHECK_INT(sandbox_volumes_merge(&v, &cli, &err), ==, 0);
	CHECK_INT(v.n, ==, 3);
	CHECK_INT(sandbox_volumes_merge(&v, &cli, &err), ==, -1); /* /extra twice */
	CHECK(strstr(err.msg, "overlaps"));
	sandbox_volumes_clear(&cli);
	sandbox_volumes_clear(&v);
	remove_dirs();
}

/* The run metadata keeps the VM's virtio-fs slots (a restore declares the
 * same) and the volumes mounted (msb snapshot create refuses them). */
TEST(metadata_keeps_slots_and_volumes)
{
	struct msb_err err = {0};
	struct sandbox_snapmeta m = {.name = (char *)"s", .disks = 2, .fs_slots = 4, .volumes = 1};
	char *text = sandbox_snapmeta_format(&m, &err);
	CHECK(text);
	CHECK(strstr(text, "fs_slots=4\n") && strstr(text, "volumes=1\n"));
	struct sandbox_snapmeta back;
	CHECK_INT(sandbox_snapmeta_parse(text, strlen(text), &back, &err), ==, 0);
	CHECK_INT(back.fs_slots, ==, 4);
	CHECK_INT(back.volumes, ==, 1);
	sandbox_snapmeta_clear(&back);
	free(text);
	/* Older metadata: no slots, no volumes. */
	const char old[] = "msb-snapshot 1\nname=s\ndisks=2\n";
	CHECK_INT(sandbox_snapmeta_parse(old, sizeof(old) - 1, &back, &err), ==, 0);
	CHECK_INT(back.fs_slots, ==, 0);
	CHECK_INT(back.volumes, ==, 0);
	sandbox_snapmeta_clear(&back);
	const char bad[] = "msb-snapshot 1\nfs_slots=99\n";
	CHECK_INT(sandbox_snapmeta_parse(bad, sizeof(bad) - 1, &back, &err), ==, -1);
}

TEST_MAIN(T(parse_and_argv), T(refusals), T(pairs_and_merge), T(metadata_keeps_slots_and_volumes))
