/* msb snapshot prune without a VM: base and user snapshot directories made by
 * hand (state header, sparse memory, meta), then judged and removed. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "project/menv.h"
#include "sandbox/snapshot.h"
#include "test.h"

static char top[64];

static void put_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The first bytes of a state file as msb-vmm writes it (header, vm section). */
static void state_bytes(uint8_t b[SANDBOX_BASE_SHAPE_BYTES], unsigned cpus, uint64_t mem)
{
	memset(b, 0, SANDBOX_BASE_SHAPE_BYTES);
	memcpy(b, "MSBSNAP\0", 8);
	put32(b + 8, 1);
	put32(b + 32, 1);
	put32(b + 40, 16 + 16 + 4 + 16);
	put32(b + 44, cpus);
	put32(b + 48, 1);
	put32(b + 52, (uint32_t)mem);
	put32(b + 56, (uint32_t)(mem >> 32));
}

static char *path2(const char *a, const char *b)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", a, b) < 0)
		abort();
	return p;
}

static bool exists(const char *dir, const char *name)
{
	char *p = path2(dir, name);
	bool r = access(p, F_OK) == 0;
	free(p);
	return r;
}

/* A base snapshot directory `root/key` with state (of this shape) and a 1 MiB
 * memory file with 64 KiB of data. */
static void make_base(const char *root, const char *key, unsigned cpus, unsigned mib)
{
	char *d = path2(root, key);
	mkdir(d, 0700);
	uint8_t b[SANDBOX_BASE_SHAPE_BYTES];
	state_bytes(b, cpus, (uint64_t)mib << 20);
	char *s = path2(d, "state"), *m = path2(d, "memory");
	put_file(s, b, sizeof(b));
	static char data[64 * 1024];
	memset(data, 7, sizeof(data));
	put_file(m, data, sizeof(data));
	if (truncate(m, 1 << 20) < 0)
		abort();
	char *lock = NULL;
	if (asprintf(&lock, "%s.lock", d) < 0)
		abort();
	put_file(lock, "", 0);
	free(lock);
	free(s);
	free(m);
	free(d);
}

struct env {
	char base[128], user[128], home[128];
	char kernel[128], initrd[128], vmm[128];
	struct sandbox_parts parts;
	char reported[4096];
};

static void setup(struct env *e)
{
	snprintf(top, sizeof(top), "/tmp/msb-prunetest-XXXXXX");
	if (!mkdtemp(top))
		abort();
	snprintf(e->home, sizeof(e->home), "%s/home", top);
	snprintf(e->base, sizeof(e->base), "%s/base", top);
	snprintf(e->user, sizeof(e->user), "%s/home/snapshots/user", top);
	mkdir(e->home, 0700);
	mkdir(e->base, 0700);
	char snaps[160];
	snprintf(snaps, sizeof(snaps), "%s/snapshots", e->home);
	mkdir(snaps, 0700);
	mkdir(e->user, 0700);
	setenv("MICROSANDBOX_HOME", e->home, 1);
	setenv("MSB_BASE_SNAPSHOTS", e->base, 1);
	snprintf(e->kernel, sizeof(e->kernel), "%s/vmlinux", top);
	snprintf(e->initrd, sizeof(e->initrd), "%s/initramfs.cpio", top);
	snprintf(e->vmm, sizeof(e->vmm), "%s/msb-vmm", top);
	put_file(e->kernel, "kernel", 6);
	put_file(e->initrd, "initrd", 6);
	put_file(e->vmm, "vmm", 3);
	e->parts = (struct sandbox_parts){.kernel = e->kernel,
					  .initrd = e->initrd,
					  .vmm = e->vmm,
					  .base_cmdline = (char *)"console=hvc0"};
	e->reported[0] = '\0';
}

static void teardown(void)
{
	struct msb_err err = {0};
	msb_remove_tree(top, &err);
}

static void report(void *ctx, const char *kind, const char *name, const char *why, uint64_t bytes)
{
	struct env *e = ctx;
	size_t n = strlen(e->reported);
	snprintf(e->reported + n, sizeof(e->reported) - n, "%s %s (%s) %llu\n", kind, name, why,
		 (unsigned long long)bytes);
}

/* A base as msb builds it: directory named by the key, with its record. */
static void make_current_base(struct env *e, unsigned cpus, unsigned mib, char key[17])
{
	struct msb_err err = {0};
	if (sandbox_base_key(&e->parts, cpus, mib, key, &err) < 0)
		abort();
	make_base(e->base, key, cpus, mib);
	char *d = path2(e->base, key);
	if (sandbox_base_record(d, key, &e->parts, cpus, mib, &err) < 0)
		abort();
	free(d);
}

static pid_t dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	return p;
}

TEST(shape_of_a_state_file)
{
	struct msb_err err = {0};
	uint8_t b[SANDBOX_BASE_SHAPE_BYTES];
	unsigned cpus = 0, mib = 0;
	state_bytes(b, 2, 256ull << 20);
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, 0);
	CHECK_INT(cpus, ==, 2);
	CHECK_INT(mib, ==, 256);
	state_bytes(b, 1, 5ull << 30);
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, 0);
	CHECK_INT(mib, ==, 5120);
	/* hostile or foreign bytes */
	for (size_t n = 0; n < sizeof(b); n++)
		CHECK_INT(sandbox_base_shape_parse(b, n, &cpus, &mib, &err), ==, -1);
	CHECK(strstr(err.msg, "truncated") != NULL);
	state_bytes(b, 1, 256ull << 20);
	b[0] = 'X';
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, -1);
	CHECK(strstr(err.msg, "not an msb-vmm state file") != NULL);
	state_bytes(b, 1, 256ull << 20);
	put32(b + 32, 10); /* another section first */
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, -1);
	state_bytes(b, 0, 256ull << 20);
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, -1);
	state_bytes(b, 256, 256ull << 20);
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, -1);
	state_bytes(b, 1, (256ull << 20) + 4096);
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, -1);
	state_bytes(b, 1, 0);
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, -1);
	state_bytes(b, 1, UINT64_MAX & ~((1ull << 20) - 1));
	CHECK_INT(sandbox_base_shape_parse(b, sizeof(b), &cpus, &mib, &err), ==, -1);
}

TEST(prune_keeps_current_bases_and_removes_stale_ones)
{
	static struct env e;
	setup(&e);
	struct msb_err err = {0};
	char cur1[17], cur2[17], changed[17], gone[17], legacy_cur[17];
	make_current_base(&e, 1, 256, cur1);
	make_current_base(&e, 2, 512, cur2);
	/* a base of another msb-vmm build whose file changed since */
	char other_vmm[160];
	snprintf(other_vmm, sizeof(other_vmm), "%s/other-vmm", top);
	put_file(other_vmm, "v1", 2);
	struct sandbox_parts other = e.parts;
	other.vmm = other_vmm;
	CHECK_INT(sandbox_base_key(&other, 1, 256, changed, &err), ==, 0);
	make_base(e.base, changed, 1, 256);
	char *d = path2(e.base, changed);
	CHECK_INT(sandbox_base_record(d, changed, &other, 1, 256, &err), ==, 0);
	free(d);
	/* a base of a kernel that was deleted */
	char gone_kernel[160];
	snprintf(gone_kernel, sizeof(gone_kernel), "%s/old-vmlinux", top);
	put_file(gone_kernel, "k0", 2);
	struct sandbox_parts old = e.parts;
	old.kernel = gone_kernel;
	CHECK_INT(sandbox_base_key(&old, 1, 128, gone, &err), ==, 0);
	make_base(e.base, gone, 1, 128);
	d = path2(e.base, gone);
	CHECK_INT(sandbox_base_record(d, gone, &old, 1, 128, &err), ==, 0);
	free(d);
	unlink(gone_kernel);
	/* other_vmm is rebuilt (another mtime): `changed` is stale now; a base of
	 * that other installation made since is current (not ours, still valid) */
	struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 678}};
	CHECK_INT(utimensat(AT_FDCWD, other_vmm, ts, 0), ==, 0);
	char still[17];
	CHECK_INT(sandbox_base_key(&other, 2, 256, still, &err), ==, 0);
	make_base(e.base, still, 2, 256);
	d = path2(e.base, still);
	CHECK_INT(sandbox_base_record(d, still, &other, 2, 256, &err), ==, 0);
	free(d);
	/* made before bases had a record: judged by its state file's shape */
	CHECK_INT(sandbox_base_key(&e.parts, 4, 1024, legacy_cur, &err), ==, 0);
	make_base(e.base, legacy_cur, 4, 1024);
	make_base(e.base, "00000000000000aa", 1, 256); /* legacy, another key */
	/* incomplete, and leftovers */
	make_base(e.base, "00000000000000bb", 1, 256);
	char *mem = path2(e.base, "00000000000000bb/memory");
	unlink(mem);
	free(mem);
	char tmpdead[64], tmplive[64], orphan[64];
	snprintf(tmpdead, sizeof(tmpdead), "%s.tmp-%d", cur1, (int)dead_pid());
	snprintf(tmplive, sizeof(tmplive), "%s.tmp-%d", cur1, (int)getpid());
	snprintf(orphan, sizeof(orphan), "00000000000000cc.lock");
	make_base(e.base, tmpdead, 1, 256);
	make_base(e.base, tmplive, 1, 256);
	d = path2(e.base, orphan);
	put_file(d, "", 0);
	free(d);

	/* a dry run removes nothing and reports the same */
	struct sandbox_prune_opts o = {
		.parts = &e.parts, .dry_run = true, .report = report, .ctx = &e};
	struct sandbox_prune_totals tot;
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 5);
	CHECK(exists(e.base, changed) && exists(e.base, gone) && exists(e.base, tmpdead));
	CHECK(strstr(e.reported, "changed since it was built") != NULL);

	e.reported[0] = '\0';
	o.dry_run = false;
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 5);
	CHECK_INT(tot.kept, ==, 4);
	CHECK_INT(tot.failed, ==, 0);
	/* each removal counted the space its files take (64 KiB of memory data in
	 * the four with a memory file) */
	CHECK_INT(tot.bytes, >=, 4 * 64 * 1024);
	CHECK(exists(e.base, cur1) && exists(e.base, cur2) && exists(e.base, still));
	CHECK(exists(e.base, legacy_cur));
	CHECK(!exists(e.base, changed) && !exists(e.base, gone));
	CHECK(!exists(e.base, "00000000000000aa") && !exists(e.base, "00000000000000bb"));
	CHECK(!exists(e.base, tmpdead) && exists(e.base, tmplive));
	CHECK(!exists(e.base, orphan));
	char lk[40];
	snprintf(lk, sizeof(lk), "%s.lock", changed);
	CHECK(!exists(e.base, lk)); /* the lock goes with its base */
	snprintf(lk, sizeof(lk), "%s.lock", cur1);
	CHECK(exists(e.base, lk));
	CHECK(strstr(e.reported, "base 00000000000000bb (incomplete") != NULL);
	CHECK(strstr(e.reported, "what it was built from is gone") != NULL);
	CHECK(strstr(e.reported, "an older msb made it") != NULL);
	CHECK(strstr(e.reported, "interrupted build") != NULL);

	/* a second run finds nothing */
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 0);
	teardown();
}

TEST(prune_spares_locked_kept_and_unknown_bases)
{
	static struct env e;
	setup(&e);
	struct msb_err err = {0};
	make_base(e.base, "00000000000000aa", 1, 256); /* stale, but being built */
	make_base(e.base, "00000000000000dd", 1, 256); /* stale, but the one to keep */
	char *lock = path2(e.base, "00000000000000aa.lock");
	int fd = open(lock, O_RDWR);
	CHECK(fd >= 0);
	CHECK_INT(flock(fd, LOCK_EX), ==, 0);
	struct sandbox_prune_opts o = {.parts = &e.parts, .keep = "00000000000000dd"};
	struct sandbox_prune_totals tot;
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 0);
	CHECK_INT(tot.busy, ==, 1);
	CHECK(exists(e.base, "00000000000000aa") && exists(e.base, "00000000000000dd"));
	close(fd);
	/* without the current parts, a base without a record cannot be judged */
	o.parts = NULL;
	o.keep = NULL;
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 0);
	o.parts = &e.parts;
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 2);
	CHECK(!exists(e.base, "00000000000000aa.lock"));
	free(lock);
	/* the kernel command line changed: same files, other key */
	char key[17];
	make_current_base(&e, 1, 256, key);
	e.parts.base_cmdline = (char *)"console=hvc0 quiet";
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 1);
	CHECK(!exists(e.base, key));
	teardown();
}

static void make_user(struct env *e, const char *name, const char *meta)
{
	char *d = path2(e->user, name);
	mkdir(d, 0700);
	char *s = path2(d, "state"), *m = path2(d, "memory"), *mt = path2(d, "meta");
	put_file(s, "s", 1);
	put_file(m, "m", 1);
	if (meta)
		put_file(mt, meta, strlen(meta));
	free(s);
	free(m);
	free(mt);
	free(d);
}

TEST(prune_user_snapshots_only_when_asked)
{
	static struct env e;
	setup(&e);
	struct msb_err err = {0};
	char rootfs[160], meta[512], gone_meta[512];
	snprintf(rootfs, sizeof(rootfs), "%s/root.erofs", top);
	put_file(rootfs, "fs", 2);
	snprintf(meta, sizeof(meta),
		 "msb-snapshot 1\nname=ok\nimage=busybox\nrootfs=%s\ncpus=1\nmemory_mib=256\n",
		 rootfs);
	snprintf(gone_meta, sizeof(gone_meta),
		 "msb-snapshot 1\nname=old\nimage=busybox\nrootfs=%s/gone.erofs\ncpus=1\n"
		 "memory_mib=256\n",
		 top);
	make_user(&e, "ok", meta);
	make_user(&e, "old", gone_meta);
	make_user(&e, "broken", "msb-snapshot 9\n");
	make_user(&e, "nometa", NULL);
	char tmp[64];
	snprintf(tmp, sizeof(tmp), ".x.tmp-%d", (int)dead_pid());
	make_user(&e, tmp, NULL);
	struct sandbox_prune_opts o = {.parts = &e.parts, .report = report, .ctx = &e};
	struct sandbox_prune_totals tot;
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 0);
	CHECK(exists(e.user, "old") && exists(e.user, "broken") && exists(e.user, tmp));
	o.user = true;
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.removed, ==, 4);
	CHECK_INT(tot.kept_user, ==, 1);
	CHECK(exists(e.user, "ok"));
	CHECK(!exists(e.user, "old") && !exists(e.user, "broken") && !exists(e.user, "nometa"));
	CHECK(!exists(e.user, tmp));
	CHECK(strstr(e.reported, "user old (the root filesystem of busybox") != NULL);
	CHECK(strstr(e.reported, "user broken (unreadable") != NULL);
	teardown();
}

TEST_MAIN(T(shape_of_a_state_file), T(prune_keeps_current_bases_and_removes_stale_ones),
	  T(prune_spares_locked_kept_and_unknown_bases), T(prune_user_snapshots_only_when_asked))
